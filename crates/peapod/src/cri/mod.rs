//! The CRI v1 front (`runtime.v1.RuntimeService`, `runtime.v1.ImageService`) on a unix
//! socket, served by `peapod serve` beside the Kubernetes API: the kubelet of a real node
//! (`containerRuntimeEndpoint: unix:///run/peapod/cri.sock`) or crictl drives the same
//! engine as the CLI. Owns only the translation between CRI messages and the engine; every
//! blocking engine call runs on the blocking pool.

mod events;
mod images;
mod runtime;
pub mod stats;
pub mod streaming;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use peapod_cri::v1::image_service_server::ImageServiceServer;
use peapod_cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::engine::Engine;

/// The CRI API version this server speaks.
pub const CRI_VERSION: &str = "v1";
/// The runtime name `crictl version` shows.
pub const RUNTIME_NAME: &str = "peapod";

/// The default socket: `<run>/cri.sock` (`/run/peapod/cri.sock` for the default root).
pub fn default_socket(engine: &Engine) -> PathBuf {
    engine.paths.run.join("cri.sock")
}

/// Runs an engine call on the blocking pool, mapping its error to a gRPC status.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tonic::Status> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| tonic::Status::internal(format!("engine task failed: {e}")))?
}

/// An engine error as a gRPC status: user errors (bad names, missing objects) keep their
/// text; "not found" becomes NotFound.
pub(crate) fn status_of(e: &anyhow::Error) -> tonic::Status {
    let text = format!("{e:#}");
    if text.contains("not found") || text.contains("No such") {
        tonic::Status::not_found(text)
    } else if e.downcast_ref::<crate::engine::UserError>().is_some() {
        tonic::Status::invalid_argument(text)
    } else {
        tonic::Status::internal(text)
    }
}

/// Binds `socket` (root-only) and serves both CRI services, and the streaming server of
/// Exec, Attach and PortForward on `streaming` (`peapod serve --cri-streaming`, default
/// loopback with a random port, as containerd's `stream_server_port = "0"`), until the
/// process ends.
pub async fn serve_with(
    engine: Arc<Engine>,
    socket: &Path,
    streaming: std::net::SocketAddr,
) -> Result<()> {
    let streaming = streaming::Streaming::start(streaming).await?;
    eprintln!("peapod CRI streaming on http://{}", streaming.addr());
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        anyhow::bail!("another CRI server is running on {}", socket.display());
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(runtime::Runtime::new(
            engine.clone(),
            streaming,
        )))
        .add_service(ImageServiceServer::new(images::Images::new(engine)))
        .serve_with_incoming(incoming)
        .await
        .context("serving CRI")
}
