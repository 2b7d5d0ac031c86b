//! End-to-end tests of the CRI v1 front of `peapod serve`, as root, called over its unix
//! socket as a kubelet or crictl would, with a tonic client: the runtime's identity and
//! conditions, and the image service against the engine's store and a loopback registry.

mod common;

#[path = "../crates/image/tests/registry_support/mod.rs"]
#[allow(unused_imports)]
mod registry_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Peapod;
use hyper_util::rt::TokioIo;
use peapod_cri::v1 as cri;
use peapod_cri::v1::image_service_client::ImageServiceClient;
use peapod_cri::v1::runtime_service_client::RuntimeServiceClient;
use registry_support::{Auth, Registry};
use tonic::transport::{Channel, Endpoint, Uri};

/// `peapod serve` with its CRI socket in the test's root; killed on drop.
struct CriServer {
    child: Child,
    socket: PathBuf,
}

impl CriServer {
    fn start(p: &Peapod) -> Self {
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

async fn channel(socket: &Path) -> Channel {
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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

#[test]
fn version_status_and_runtime_config() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let v = rs
            .version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("peapod", "v1")
        );
        let status = rs
            .status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let conditions = status.status.unwrap().conditions;
        for want in ["RuntimeReady", "NetworkReady"] {
            let c = conditions
                .iter()
                .find(|c| c.r#type == want)
                .unwrap_or_else(|| panic!("no {want} in {conditions:?}"));
            assert!(c.status, "{c:?}");
        }
        assert!(status.info["config"].contains("runc"), "{:?}", status.info);
        let config = rs
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            config.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );
        let bad = rs
            .update_runtime_config(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig {
                        pod_cidr: "10.0.0.0/33".into(),
                    }),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        // What is not served says so instead of answering wrongly.
        let err = rs
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(
            err.message().contains("ListContainers"),
            "{}",
            err.message()
        );
    });
}

#[test]
fn image_service_lists_pulls_and_removes() {
    let p = Peapod::new();
    let registry = Registry::start(Auth::Basic("kube", "let-me-in"));
    let addr = registry.addr();
    registry.push(
        common::busybox_archive(),
        "cri/bb:1",
        "oci",
        Some("kube:let-me-in"),
    );
    let server = CriServer::start(&p);
    rt().block_on(async {
        let mut is = ImageServiceClient::new(channel(&server.socket).await);
        let list = is
            .list_images(cri::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
        let busybox = list
            .iter()
            .find(|i| i.repo_tags.iter().any(|t| t.contains("busybox")))
            .unwrap_or_else(|| panic!("busybox not listed: {list:?}"))
            .clone();
        assert!(busybox.id.starts_with("sha256:") && busybox.size > 0);
        let st = is
            .image_status(cri::ImageStatusRequest {
                image: spec("busybox"),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image.unwrap().id, busybox.id);
        assert!(st.info["info"].contains("imageSpec"));
        // Missing: an empty status, not an error (the kubelet then pulls).
        let missing = is
            .image_status(cri::ImageStatusRequest {
                image: spec(&format!("{addr}/cri/bb:1")),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(missing.image.is_none());
        // Without credentials the registry refuses; with the request's, the pull works.
        let image = format!("{addr}/cri/bb:1");
        let refused = is
            .pull_image(cri::PullImageRequest {
                image: spec(&image),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            refused.message().contains("authentication required"),
            "{}",
            refused.message()
        );
        let pulled = is
            .pull_image(cri::PullImageRequest {
                image: spec(&image),
                auth: Some(cri::AuthConfig {
                    username: "kube".into(),
                    password: "let-me-in".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(pulled.image_ref.starts_with("sha256:"));
        let listed = is
            .list_images(cri::ListImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: spec(&image),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, pulled.image_ref);
        let fs = is
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        let used = fs.image_filesystems[0].used_bytes.unwrap().value;
        assert!(used > 0);
        // Remove is idempotent; the image is gone after it.
        for _ in 0..2 {
            is.remove_image(cri::RemoveImageRequest {
                image: spec(&image),
            })
            .await
            .unwrap();
        }
        let after = is
            .image_status(cri::ImageStatusRequest {
                image: spec(&image),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(after.image.is_none());
    });
}
