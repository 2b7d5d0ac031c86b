//! A CRI client for the end-to-end tests: `peapod serve` with its CRI socket in the
//! test's root, and a tonic channel over that unix socket, as a kubelet connects.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Peapod;

/// `peapod serve` with its CRI socket in the test's root; killed on drop.
pub struct CriServer {
    child: Child,
    pub socket: PathBuf,
}

impl CriServer {
    pub fn start(p: &Peapod) -> Self {
        let socket = p.root.join("cri.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = p
            .cmd(&[
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cri-socket",
                socket.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting peapod serve");
        let mut s = CriServer { child, socket };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&s.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no CRI socket at {}",
                s.socket.display()
            );
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("peapod serve exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }
}

impl Drop for CriServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn channel(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connecting to the CRI socket")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
