//! `peapod serve`: the Kubernetes API over the engine, so the real `kubectl` (1.30 and
//! later) drives peapod. HTTPS with a generated CA and a bearer token on a TCP port, and the
//! same API without authentication on a root-only unix socket. Every request is served
//! from the engine's own records (the CLI and the server are two fronts over one engine);
//! a small cache only numbers changes (resourceVersion) and feeds watches.

mod api;
pub(crate) mod attach;
mod discovery;
mod engine_ext;
pub(crate) mod exec;
mod logs;
mod objects;
mod others;
mod patch;
mod pki;
mod pods;
mod select;
pub(crate) mod spdy;
mod status;
mod table;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::engine::Engine;
pub use pki::kubeconfig;
use status::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The one engine.
    pub engine: Arc<Engine>,
    /// resourceVersions and watch events.
    pub cache: Arc<watch::Cache>,
}

/// Options of `peapod serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TCP address of the HTTPS endpoint.
    pub listen: SocketAddr,
    /// The unix socket (default `<run>/api.sock`).
    pub socket: Option<PathBuf>,
    /// The CRI socket (default `<run>/cri.sock`).
    pub cri_socket: Option<PathBuf>,
    /// Where the CRI streaming server (exec, attach, port-forward URLs) listens.
    pub cri_streaming: SocketAddr,
}

/// Runs the server until killed.
pub fn serve(engine: Engine, opts: ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(engine, opts))
}

async fn run(engine: Engine, opts: ServeOptions) -> Result<()> {
    let pki = pki::ensure(&engine.paths.etc, Some(opts.listen.ip()))?;
    let state = AppState {
        engine: Arc::new(engine),
        cache: Arc::new(watch::Cache::new()),
    };
    {
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.cache.sync(&st.engine))
            .await
            .context("initial sync")??;
    }
    tokio::spawn(watch::poll(state.clone()));
    let mut router = api::router(state.clone());
    if std::env::var_os("PEAPOD_SERVE_LOG").is_some() {
        router = router.layer(middleware::from_fn(log_request));
    }
    let token = Arc::new(pki.token.clone());
    let authed = router
        .clone()
        .layer(middleware::from_fn_with_state(token, auth));

    let tcp = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));

    let socket = opts
        .socket
        .clone()
        .unwrap_or_else(|| state.engine.paths.run.join("api.sock"));
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        anyhow::bail!("another peapod serve is running on {}", socket.display());
    }
    let _ = std::fs::remove_file(&socket);
    let unix = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    }
    eprintln!(
        "peapod API serving on https://{} and unix://{}",
        opts.listen,
        socket.display()
    );

    let cri_socket = opts
        .cri_socket
        .clone()
        .unwrap_or_else(|| crate::cri::default_socket(&state.engine));
    {
        let engine = state.engine.clone();
        let path = cri_socket.clone();
        let streaming = opts.cri_streaming;
        // Bound before serving, so that a second server fails here, not later.
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!("another CRI server is running on {}", path.display());
        }
        tokio::spawn(async move {
            if let Err(e) = crate::cri::serve_with(engine, &path, streaming).await {
                eprintln!("CRI server: {e:#}");
            }
        });
    }
    eprintln!("peapod CRI serving on unix://{}", cri_socket.display());
    let unix_router = router;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = unix.accept().await else {
                continue;
            };
            tokio::spawn(serve_conn(conn, unix_router.clone()));
        }
    });
    loop {
        let (conn, _) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = authed.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(conn).await {
                serve_conn(tls, router).await;
            }
        });
    }
}

/// Serves one HTTP/1.1 connection (with upgrades, for exec).
async fn serve_conn<I>(io: I, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// One line per request on stderr (with `PEAPOD_SERVE_LOG` set): method, path and query,
/// Accept, Content-Type, status.
async fn log_request(req: Request, next: Next) -> Response {
    let line = {
        let h = req.headers();
        let header = |n: axum::http::header::HeaderName| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        format!(
            "{} {} accept={} content-type={}",
            req.method(),
            req.uri(),
            header(axum::http::header::ACCEPT),
            header(axum::http::header::CONTENT_TYPE)
        )
    };
    let resp = next.run(req).await;
    eprintln!("{line} -> {}", resp.status().as_u16());
    resp
}

/// The bearer token check of the TCP endpoint.
async fn auth(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        ApiError::new(401, "Unauthorized", "Unauthorized").into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a blocking engine call off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}
