//! End-to-end tests of the CRI v1 front of `peapod serve`, as root, called over its unix
//! socket as a kubelet or crictl would, with a tonic client: the runtime's identity and
//! conditions, the image service against the engine's store and a loopback registry, and
//! the kubelet's flow of pod sandboxes and containers.

mod common;

#[path = "../crates/image/tests/registry_support/mod.rs"]
#[allow(unused_imports)]
mod registry_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cri_client::{channel, rt, CriServer};
use common::Peapod;
use peapod_cri::v1 as cri;
use peapod_cri::v1::image_service_client::ImageServiceClient;
use peapod_cri::v1::runtime_service_client::RuntimeServiceClient;
use registry_support::{Auth, Registry};
use tonic::transport::Channel;

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
        assert!(
            status.info["config"].contains(common::runtime_binary_name()),
            "{:?}",
            status.info
        );
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
        rs.update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "10.244.3.0/24".into(),
                }),
            }),
        })
        .await
        .unwrap();
        let status = rs
            .status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
        assert_eq!(config["podCIDR"], "10.244.3.0/24", "{config}");
        // What is not served says so instead of answering wrongly.
        let err = rs
            .checkpoint_container(cri::CheckpointContainerRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(
            err.message().contains("CheckpointContainer"),
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

fn sandbox_config(name: &str, uid: &str, attempt: u32, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "kube-test".into(),
            attempt,
        }),
        hostname: format!("{name}-host"),
        log_directory: log_dir.to_str().unwrap().into(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["kube-test.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "from-the-test".to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(
    name: &str,
    script: &str,
    sc: Option<cri::LinuxContainerSecurityContext>,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: spec("busybox"),
        command: vec!["sh".into(), "-c".into(), script.into()],
        envs: vec![cri::KeyValue {
            key: "GREETING".into(),
            value: "hi".into(),
        }],
        labels: [("role".to_string(), name.to_string())].into(),
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: sc,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn exec(
    rs: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
) -> cri::ExecSyncResponse {
    rs.exec_sync(cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 10,
    })
    .await
    .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
    .into_inner()
}

async fn create_and_start(
    rs: &mut RuntimeServiceClient<Channel>,
    sandbox: &cri::PodSandboxConfig,
    sandbox_id: &str,
    config: cri::ContainerConfig,
) -> String {
    let id = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rs.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    id
}

async fn container_status(
    rs: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> cri::ContainerStatus {
    rs.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: true,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

/// The kubelet's flow: a sandbox, containers in it (logs, exec, shared network), both
/// visible to `peapod ps -a` and `get pods`, then stop and remove, each twice.
#[test]
fn a_kubelet_runs_a_pod_through_sandbox_and_containers() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_web_1234");
    let config = sandbox_config("web", "uid-1234", 0, &log_dir);
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let run = |c: cri::PodSandboxConfig| cri::RunPodSandboxRequest {
            config: Some(c),
            runtime_handler: String::new(),
        };
        let sid = rs
            .run_pod_sandbox(run(config.clone()))
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        assert_eq!(sid.len(), 64, "{sid}");
        // A retry of the same kubelet pod and attempt is the same sandbox.
        let again = rs
            .run_pod_sandbox(run(config.clone()))
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        assert_eq!(again, sid);
        let st = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sid.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let status = st.status.unwrap();
        assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
        let ip = status.network.unwrap().ip;
        assert!(ip.starts_with(&p.subnet_prefix), "{ip}");
        assert_eq!(status.metadata.unwrap().uid, "uid-1234");
        assert_eq!(status.labels["app"], "web");
        assert_eq!(status.annotations["note"], "from-the-test");
        assert!(status.created_at > 0);
        assert!(st.info["info"].contains("\"pid\""), "{:?}", st.info);
        let list = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, sid);
        let none = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: [("app".to_string(), "other".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(none.is_empty());

        let c1 = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("app", "echo hello; echo oops >&2; sleep 1000", None),
        )
        .await;
        let s1 = container_status(&mut rs, &c1).await;
        assert_eq!(s1.state, cri::ContainerState::ContainerRunning as i32);
        assert!(s1.started_at >= s1.created_at && s1.created_at > 0);
        assert_eq!(s1.metadata.unwrap().name, "app");
        assert!(s1.image_ref.starts_with("sha256:"), "{}", s1.image_ref);
        let log = log_dir.join("app/0.log");
        assert_eq!(s1.log_path, log.to_str().unwrap());
        let text = common::eventually(Duration::from_secs(10), "the CRI log", || {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            (t.contains(" stdout F hello") && t.contains(" stderr F oops")).then_some(t)
        });
        let first = text.lines().next().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(first.split(' ').next().unwrap()).is_ok(),
            "{first}"
        );
        // The kubelet rotates the log: renames it, asks for a reopen, reads the new one.
        std::fs::rename(&log, log.with_extension("log.1")).unwrap();
        rs.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: c1.clone(),
        })
        .await
        .unwrap();
        assert!(log.exists());
        exec(
            &mut rs,
            &c1,
            &["sh", "-c", "echo after-rotation > /proc/1/fd/1"],
        )
        .await;
        common::eventually(Duration::from_secs(10), "a line in the new log", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(" stdout F after-rotation")
                .then_some(())
        });
        let host = exec(&mut rs, &c1, &["cat", "/etc/hostname"]).await;
        assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "web-host");
        assert_eq!(host.exit_code, 0);
        let env = exec(&mut rs, &c1, &["sh", "-c", "echo $GREETING"]).await;
        assert_eq!(String::from_utf8_lossy(&env.stdout).trim(), "hi");
        let three = exec(
            &mut rs,
            &c1,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        )
        .await;
        assert_eq!(three.exit_code, 3);
        assert_eq!(String::from_utf8_lossy(&three.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&three.stderr), "err\n");
        let resolv = exec(&mut rs, &c1, &["cat", "/etc/resolv.conf"]).await;
        let resolv = String::from_utf8_lossy(&resolv.stdout).into_owned();
        assert!(
            resolv.contains("nameserver 10.96.0.10") && resolv.contains("options ndots:5"),
            "{resolv}"
        );
        // A command past its timeout is killed and reported as such.
        let slow = rs
            .exec_sync(cri::ExecSyncRequest {
                container_id: c1.clone(),
                cmd: vec!["sleep".into(), "30".into()],
                timeout: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(slow.code(), tonic::Code::DeadlineExceeded, "{slow}");
        let sleeps = exec(&mut rs, &c1, &["sh", "-c", "ps | grep -c '[s]leep 30'"]).await;
        assert_eq!(String::from_utf8_lossy(&sleeps.stdout).trim(), "0");

        // A second container shares the sandbox's network: the same eth0 address.
        let c2 = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("side", "sleep 1000", None),
        )
        .await;
        let ifc1 = exec(&mut rs, &c1, &["ifconfig", "eth0"]).await;
        let ifc2 = exec(&mut rs, &c2, &["ifconfig", "eth0"]).await;
        let (ip1, mac1) = common::eth0_addr_mac(&String::from_utf8_lossy(&ifc1.stdout));
        let (ip2, mac2) = common::eth0_addr_mac(&String::from_utf8_lossy(&ifc2.stdout));
        assert_eq!((&ip1, &mac1), (&ip2, &mac2));
        assert_eq!(ip1, ip);
        let listed = rs
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sid.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 2);
        let by_label = rs
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: [("role".to_string(), "side".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, c2);

        // One engine behind every front.
        let ps = p.ok(&["ps", "-a", "--no-trunc"]);
        for id in [&c1, &c2, &sid] {
            assert!(ps.contains(id.as_str()), "{id} not in ps -a:\n{ps}");
        }
        assert!(ps.contains("k8s_app_web_kube-test_uid-1234_0"), "{ps}");
        // The sandbox's pod shows the kubelet's containers as kubectl would.
        let web_row = || {
            let pods = p.ok(&["get", "pods", "-n", "kube-test"]);
            pods.lines()
                .find(|l| l.split_whitespace().next() == Some("web"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| panic!("no web in\n{pods}"))
        };
        assert_eq!(web_row(), "2/2 Running 0");

        // Stop and remove, each twice.
        for _ in 0..2 {
            rs.stop_container(cri::StopContainerRequest {
                container_id: c1.clone(),
                timeout: 2,
            })
            .await
            .unwrap();
        }
        let s1 = container_status(&mut rs, &c1).await;
        assert_eq!(s1.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(s1.exit_code, 137, "sh ignores SIGTERM as pid 1: killed");
        assert_eq!(s1.reason, "Error");
        assert!(s1.finished_at >= s1.started_at);
        let exited = rs
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerExited as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(exited.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![&c1]);
        for _ in 0..2 {
            rs.remove_container(cri::RemoveContainerRequest {
                container_id: c1.clone(),
            })
            .await
            .unwrap();
        }
        let gone = rs
            .container_status(cri::ContainerStatusRequest {
                container_id: c1.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);
        for _ in 0..2 {
            rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sid.clone(),
            })
            .await
            .unwrap();
        }
        // Recovery (run before every command) leaves a stopped CRI sandbox stopped.
        p.ok(&["ps", "-a"]);
        // kubectl prints a terminated container's reason over the pod's: the container
        // StopPodSandbox killed is an Error (a sandbox without containers says NotReady).
        assert_eq!(web_row(), "0/1 Error 0");
        let st = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sid.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
        assert_eq!(
            container_status(&mut rs, &c2).await.state,
            cri::ContainerState::ContainerExited as i32
        );
        assert!(!p.ipam_text().contains(&ip), "{}", p.ipam_text());
        assert!(p.bridge_ports().is_empty(), "{:?}", p.bridge_ports());
        for _ in 0..2 {
            rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sid.clone(),
            })
            .await
            .unwrap();
        }
        let left = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(left.is_empty(), "{left:?}");
        let left = rs
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
    });
    assert_eq!(p.mounts(), Vec::<String>::new());
    assert!(!p.ipam_text().contains("10.241."), "{}", p.ipam_text());
    assert!(p.bridge_ports().is_empty());
    assert_eq!(p.ok(&["ps", "-aq"]), "");
    assert!(!p.ok(&["get", "pods", "-A"]).contains("web"));
}

/// CapEff of a `/proc/self/status`.
fn cap_eff(status: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(status);
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {text}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

/// Security contexts observed from inside (user, groups, read-only rootfs, capabilities),
/// a sandbox sharing one pid namespace, and a second attempt of the same kubelet pod.
#[test]
fn security_contexts_shared_pid_and_attempts() {
    const CAP_NET_RAW: u64 = 1 << 13;
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_sec_77");
    let mut config = sandbox_config("sec", "uid-77", 0, &log_dir);
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = cri::NamespaceMode::Pod as i32;
    }
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let sid = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let pod_pid = |sc: cri::LinuxContainerSecurityContext| cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..sc
        };
        let user = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "user",
                "sleep 1001",
                Some(pod_pid(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: 1000 }),
                    run_as_group: Some(cri::Int64Value { value: 3000 }),
                    supplemental_groups: vec![4000],
                    ..Default::default()
                })),
            ),
        )
        .await;
        let ro = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "ro",
                "sleep 1002",
                Some(pod_pid(cri::LinuxContainerSecurityContext {
                    readonly_rootfs: true,
                    ..Default::default()
                })),
            ),
        )
        .await;
        let nocap = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "nocap",
                "sleep 1003",
                Some(pod_pid(cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        drop_capabilities: vec!["NET_RAW".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            ),
        )
        .await;
        let plain = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("plain", "sleep 1004", Some(pod_pid(Default::default()))),
        )
        .await;

        let id = exec(&mut rs, &user, &["id"]).await;
        let id = String::from_utf8_lossy(&id.stdout).into_owned();
        assert!(
            id.contains("uid=1000") && id.contains("gid=3000") && id.contains("4000"),
            "{id}"
        );
        let touch = exec(&mut rs, &ro, &["touch", "/newfile"]).await;
        assert_ne!(touch.exit_code, 0);
        assert!(
            String::from_utf8_lossy(&touch.stderr).contains("Read-only file system"),
            "{:?}",
            String::from_utf8_lossy(&touch.stderr)
        );
        let writable = exec(&mut rs, &plain, &["touch", "/newfile"]).await;
        assert_eq!(writable.exit_code, 0);
        let without = exec(&mut rs, &nocap, &["cat", "/proc/self/status"]).await;
        let with = exec(&mut rs, &plain, &["cat", "/proc/self/status"]).await;
        assert_eq!(cap_eff(&without.stdout) & CAP_NET_RAW, 0);
        assert_ne!(cap_eff(&with.stdout) & CAP_NET_RAW, 0);
        // One pid namespace for the pod: every container's process is seen from one.
        let ps = exec(&mut rs, &plain, &["ps", "-o", "args"]).await;
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        for s in ["sleep 1001", "sleep 1002", "sleep 1003", "sleep 1004"] {
            assert!(ps.contains(s), "{s} not seen:\n{ps}");
        }

        // Resources become cgroup limits; an OOM kill is reported as containerd does.
        let mut hog_config = container_config("hog", "tail /dev/zero", None);
        hog_config.command = vec!["tail".into(), "/dev/zero".into()];
        hog_config.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            security_context: None,
        });
        let hog = create_and_start(&mut rs, &config, &sid, hog_config).await;
        let start = std::time::Instant::now();
        let hog_status = loop {
            let st = container_status(&mut rs, &hog).await;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{st:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            (hog_status.exit_code, hog_status.reason.as_str()),
            (137, "OOMKilled")
        );
        let limits = hog_status.resources.unwrap().linux.unwrap();
        assert_eq!(
            (limits.memory_limit_in_bytes, limits.cpu_shares),
            (32 << 20, 512)
        );

        // The kubelet's next attempt of the same pod is a new sandbox beside the first.
        let next = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config("sec", "uid-77", 1, &log_dir)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        assert_ne!(next, sid);
        let pods = p.ok(&["get", "pods", "-n", "kube-test"]);
        assert_eq!(pods.lines().count(), 3, "{pods}");
        for id in [&sid, &next] {
            for _ in 0..2 {
                rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .unwrap();
            }
        }
    });
    assert_eq!(p.mounts(), Vec::<String>::new());
    assert!(!p.ipam_text().contains("10.241."), "{}", p.ipam_text());
    assert!(p.bridge_ports().is_empty());
    assert_eq!(p.ok(&["ps", "-aq"]), "");
}

/// The server's SPDY/3.1 framing, to speak to the streaming server as client-go does.
#[path = "../crates/peapod/src/server/spdy.rs"]
#[allow(dead_code)]
mod spdy;

/// A minimal SPDY/3.1 client of a streaming URL: upgrades, opens streams with headers,
/// writes to them and collects what comes back until the server ends the session.
struct SpdyClient {
    rd: tokio::io::ReadHalf<tokio::net::TcpStream>,
    wr: tokio::io::WriteHalf<tokio::net::TcpStream>,
    codec: spdy::HeaderCodec,
    next: u32,
}

impl SpdyClient {
    /// POSTs an upgrade to `url` offering `protocol`; panics unless the answer is 101.
    async fn connect(url: &str, protocol: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        assert!(
            host.starts_with("127.0.0.1:"),
            "the streaming server listens on loopback: {url}"
        );
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(
                tcp.read(&mut b).await.unwrap(),
                1,
                "upgrade answer cut short"
            );
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains(protocol), "{head}");
        let (rd, wr) = tokio::io::split(tcp);
        SpdyClient {
            rd,
            wr,
            codec: spdy::HeaderCodec::new(),
            next: 1,
        }
    }

    /// Opens a stream (client streams are odd) with these headers; returns its id.
    async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        use tokio::io::AsyncWriteExt;
        let id = self.next;
        self.next += 2;
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        p.extend(self.codec.encode(headers));
        self.wr
            .write_all(&spdy::control(spdy::SYN_STREAM, 0, &p))
            .await
            .unwrap();
        id
    }

    async fn send(&mut self, stream: u32, data: &[u8], fin: bool) {
        use tokio::io::AsyncWriteExt;
        let flags = if fin { spdy::FLAG_FIN } else { 0 };
        self.wr
            .write_all(&spdy::data_frame(stream, flags, data))
            .await
            .unwrap();
    }

    /// Reads until `stream`'s data holds `needle`; returns that data (other streams' data
    /// is dropped).
    async fn read_until(&mut self, stream: u32, needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let read = async {
            while !got.windows(needle.len()).any(|w| w == needle) {
                match spdy::read_frame(&mut self.rd).await {
                    Ok(spdy::Frame::Data {
                        stream: s, data, ..
                    }) if s == stream => got.extend(data),
                    Ok(_) => {}
                    Err(e) => panic!("the session ended before {needle:?}: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("no answer within 30 s");
        got
    }

    /// Reads until every stream in `until` is finished (or the session ends); returns the
    /// data of each stream.
    async fn collect(&mut self, until: &[u32]) -> std::collections::HashMap<u32, Vec<u8>> {
        let mut got: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut done: Vec<u32> = Vec::new();
        let read = async {
            while !until.iter().all(|s| done.contains(s)) {
                match spdy::read_frame(&mut self.rd).await {
                    Ok(spdy::Frame::Data {
                        stream,
                        flags,
                        data,
                    }) => {
                        got.entry(stream).or_default().extend(data);
                        if flags & spdy::FLAG_FIN != 0 {
                            done.push(stream);
                        }
                    }
                    Ok(spdy::Frame::Control { kind, data, .. }) => {
                        if kind == spdy::GOAWAY {
                            return;
                        }
                        if kind == spdy::RST_STREAM && data.len() >= 4 {
                            done.push(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the streaming session did not end within 30 s");
        got
    }
}

/// The exit code in a remotecommand Status from the error stream (0 for Success).
/// StopPodSandbox then RemovePodSandbox, as the kubelet ends a pod.
async fn stop_and_remove(rs: &mut RuntimeServiceClient<Channel>, id: &str) {
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap();
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap();
}

/// The streaming URL of an Exec.
async fn exec_url(rs: &mut RuntimeServiceClient<Channel>, req: cri::ExecRequest) -> String {
    rs.exec(req).await.unwrap().into_inner().url
}

/// The streaming URL of an Attach.
async fn attach_url(rs: &mut RuntimeServiceClient<Channel>, req: cri::AttachRequest) -> String {
    rs.attach(req).await.unwrap().into_inner().url
}

/// The streaming URL of a PortForward.
async fn forward_url(
    rs: &mut RuntimeServiceClient<Channel>,
    req: cri::PortForwardRequest,
) -> String {
    rs.port_forward(req).await.unwrap().into_inner().url
}

fn status_exit_code(error_stream: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(error_stream)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(error_stream)));
    if v["status"] == "Success" {
        return 0;
    }
    assert_eq!(v["reason"], "NonZeroExitCode", "{v}");
    v["details"]["causes"][0]["message"]
        .as_str()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no exit code in {v}"))
}

/// Exec (pipes and a tty), Attach with stdin and stdin_once, and PortForward to a busybox
/// `nc` listener, each through the URL the RPC returns, as a SPDY client; PortForward
/// also as a WebSocket client (binary and base64 channels).
#[test]
fn exec_attach_and_port_forward_through_the_streaming_server() {
    const V4: &str = "v4.channel.k8s.io";
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_stream_55");
    let config = sandbox_config("stream", "uid-55", 0, &log_dir);
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let sid = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let main = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "main",
                // The answer is written only once the line has been recorded.
                "mkfifo /tmp/f; while true; do nc -l -p 8080 < /tmp/f | (read l; echo \"$l\" >> /tmp/last; echo pong) > /tmp/f; done",
                None,
            ),
        )
        .await;

        // Exec with stdin, stdout and stderr: output, stdin's end and the exit code.
        let bad = rs
            .exec(cri::ExecRequest {
                container_id: main.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        let url = exec_url(&mut rs, cri::ExecRequest {
                container_id: main.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat; echo to-stderr >&2; exit 3".into(),
                ],
                tty: false,
                stdin: true,
                stdout: true,
                stderr: true,
            }).await;
        assert!(url.contains("/exec/"), "{url}");
        let mut c = SpdyClient::connect(&url, V4).await;
        let err = c.open(&[("streamtype", "error")]).await;
        let stdin = c.open(&[("streamtype", "stdin")]).await;
        let stdout = c.open(&[("streamtype", "stdout")]).await;
        let stderr = c.open(&[("streamtype", "stderr")]).await;
        c.send(stdin, b"hello from stdin\n", true).await;
        let got = c.collect(&[err, stdout, stderr]).await;
        assert_eq!(String::from_utf8_lossy(&got[&stdout]), "hello from stdin\n");
        assert_eq!(String::from_utf8_lossy(&got[&stderr]), "to-stderr\n");
        assert_eq!(status_exit_code(&got[&err]), 3);
        // A URL is single-use.
        let status = upgrade_status(&url, V4).await;
        assert_eq!(status, 404, "a used token must not serve again");

        // Exec with a tty: the command sees a terminal; success is a Success Status.
        let url = exec_url(&mut rs, cri::ExecRequest {
                container_id: main.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "test -t 0 && test -t 1 && echo on-a-tty".into(),
                ],
                tty: true,
                stdin: true,
                stdout: true,
                stderr: false,
            }).await;
        let mut c = SpdyClient::connect(&url, V4).await;
        let err = c.open(&[("streamtype", "error")]).await;
        let stdin = c.open(&[("streamtype", "stdin")]).await;
        let stdout = c.open(&[("streamtype", "stdout")]).await;
        let resize = c.open(&[("streamtype", "resize")]).await;
        c.send(resize, br#"{"Width":100,"Height":30}"#, false).await;
        let got = c.collect(&[err, stdout]).await;
        let _ = stdin;
        // Line endings are the terminal's business (see the report on "\r\r\n").
        let out = String::from_utf8_lossy(&got[&stdout]).replace('\r', "");
        assert_eq!(out, "on-a-tty\n", "{:?}", got[&stdout]);
        assert_eq!(status_exit_code(&got[&err]), 0);

        // Attach to a container that reads one line and exits with a code of its own.
        let mut reader = container_config(
            "reader",
            "read line; echo got:$line; echo bye >&2; exit 7",
            None,
        );
        reader.stdin = true;
        reader.stdin_once = true;
        let reader = create_and_start(&mut rs, &config, &sid, reader).await;
        let url = attach_url(&mut rs, cri::AttachRequest {
                container_id: reader.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            }).await;
        assert!(url.contains("/attach/"), "{url}");
        let mut c = SpdyClient::connect(&url, V4).await;
        let err = c.open(&[("streamtype", "error")]).await;
        let stdin = c.open(&[("streamtype", "stdin")]).await;
        let stdout = c.open(&[("streamtype", "stdout")]).await;
        let stderr = c.open(&[("streamtype", "stderr")]).await;
        c.send(stdin, b"attached\n", true).await;
        let got = c.collect(&[err]).await;
        assert_eq!(
            String::from_utf8_lossy(got.get(&stdout).map_or(&[][..], |v| v)),
            "got:attached\n"
        );
        assert_eq!(
            String::from_utf8_lossy(got.get(&stderr).map_or(&[][..], |v| v)),
            "bye\n"
        );
        assert_eq!(status_exit_code(&got[&err]), 7);
        let st = container_status(&mut rs, &reader).await;
        assert_eq!(st.exit_code, 7, "{st:?}");

        // Exec and attach over WebSocket (v5: stdin's end is a close of channel 0).
        let url = exec_url(&mut rs, cri::ExecRequest {
                container_id: main.clone(),
                cmd: vec!["sh".into(), "-c".into(), "cat; echo ws-err >&2; exit 4".into()],
                tty: false,
                stdin: true,
                stdout: true,
                stderr: true,
            }).await;
        let got = ws_session(&url, b"ws stdin\n").await;
        assert_eq!(String::from_utf8_lossy(&got[&1]), "ws stdin\n");
        assert_eq!(String::from_utf8_lossy(&got[&2]), "ws-err\n");
        assert_eq!(status_exit_code(&got[&3]), 4);
        let mut reader = container_config("wsreader", "read line; echo ws-got:$line; exit 5", None);
        reader.stdin = true;
        reader.stdin_once = true;
        let reader = create_and_start(&mut rs, &config, &sid, reader).await;
        let url = attach_url(&mut rs, cri::AttachRequest {
                container_id: reader.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            }).await;
        let got = ws_session(&url, b"attached over ws\n").await;
        assert_eq!(String::from_utf8_lossy(&got[&1]), "ws-got:attached over ws\n");
        assert_eq!(status_exit_code(&got[&3]), 5);

        // Port-forward to the nc listener in the sandbox: a line there, the answer back.
        let url = forward_url(&mut rs, cri::PortForwardRequest {
                pod_sandbox_id: sid.clone(),
                port: vec![8080],
            }).await;
        assert!(url.contains("/portforward/"), "{url}");
        let mut c = SpdyClient::connect(&url, "portforward.k8s.io").await;
        let err = c
            .open(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ])
            .await;
        let data = c
            .open(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
            .await;
        // A client that waits for the answer before it ends its side, as a request would.
        c.send(data, b"ping through the forward\n", false).await;
        assert_eq!(c.read_until(data, b"\n").await, b"pong\n");
        c.send(data, &[], true).await;
        let got = c.collect(&[data, err]).await;
        assert!(got.get(&data).is_none_or(|d| d.is_empty()), "{got:?}");
        assert!(got.get(&err).is_none_or(|e| e.is_empty()), "{got:?}");
        let last = exec(&mut rs, &main, &["cat", "/tmp/last"]).await;
        assert_eq!(
            String::from_utf8_lossy(&last.stdout),
            "ping through the forward\n"
        );
        // A port nothing listens on: the error stream says so.
        let url = forward_url(&mut rs, cri::PortForwardRequest {
                pod_sandbox_id: sid.clone(),
                port: vec![],
            }).await;
        let mut c = SpdyClient::connect(&url, "portforward.k8s.io").await;
        let err = c
            .open(&[
                ("streamtype", "error"),
                ("port", "8081"),
                ("requestid", "1"),
            ])
            .await;
        let data = c
            .open(&[("streamtype", "data"), ("port", "8081"), ("requestid", "1")])
            .await;
        let got = c.collect(&[err, data]).await;
        let msg = String::from_utf8_lossy(&got[&err]).to_string();
        assert!(msg.contains("localhost:8081"), "{msg}");

        // Port-forward over WebSocket, as the kubelet's streaming server speaks it: binary
        // channels with the request's port, then base64 channels with ports from the URL
        // (one of them refused on its error channel).
        let got = ws_forward(&mut rs, &sid, &[8080], "", WS_V4, b"over binary channels\n").await;
        assert_eq!(got[&0], b"pong\n");
        let got = ws_forward(
            &mut rs,
            &sid,
            &[],
            "?port=8080&port=8081",
            WS_V4_BASE64,
            b"over base64 channels\n",
        )
        .await;
        assert_eq!(got[&0], b"pong\n");
        let refused = String::from_utf8_lossy(&got[&3]).to_string();
        assert!(refused.contains("localhost:8081"), "{refused}");
        let last = exec(&mut rs, &main, &["cat", "/tmp/last"]).await;
        assert_eq!(
            String::from_utf8_lossy(&last.stdout),
            "ping through the forward\nover binary channels\nover base64 channels\n"
        );
        // A sub-protocol it does not speak, or no port anywhere: refused before upgrading.
        for (ports, query, protocol, want) in [
            (vec![8080], "", "v5.channel.k8s.io", "not supported"),
            (vec![], "", WS_V4, "\"port\" is required"),
            (vec![], "?port=0", WS_V4, "must be > 0"),
        ] {
            let url = forward_url(&mut rs, cri::PortForwardRequest {
                    pod_sandbox_id: sid.clone(),
                    port: ports,
                }).await;
            match ws_connect(&format!("{url}{query}"), protocol).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status(), 400);
                    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                        .to_string();
                    assert!(body.contains(want), "{body}");
                }
                Err(e) => panic!("{query} {protocol}: {e}"),
                Ok(_) => panic!("{query} {protocol}: upgraded"),
            }
        }

        stop_and_remove(&mut rs, &sid).await;
    });
}

/// A remotecommand session (exec or attach) over WebSocket `v5.channel.k8s.io`: sends
/// `stdin` and its end, then collects every channel until the server closes.
async fn ws_session(url: &str, stdin: &[u8]) -> std::collections::HashMap<u8, Vec<u8>> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, chosen) = ws_connect(url, "v5.channel.k8s.io")
        .await
        .unwrap_or_else(|e| panic!("upgrading {url}: {e}"));
    assert_eq!(chosen, "v5.channel.k8s.io");
    let mut frame = vec![0u8];
    frame.extend_from_slice(stdin);
    ws.send(Message::Binary(frame.into())).await.unwrap();
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .unwrap();
    let mut got: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) if !b.is_empty() => {
                    got.entry(b[0]).or_default().extend_from_slice(&b[1..])
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the WebSocket session did not end within 30 s");
    got
}

const WS_V4: &str = "v4.channel.k8s.io";
const WS_V4_BASE64: &str = "v4.base64.channel.k8s.io";

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket upgrade of a streaming URL offering `protocol`.
async fn ws_connect(
    url: &str,
    protocol: &str,
) -> Result<(Ws, String), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let rest = url.strip_prefix("http://").expect("an http URL");
    let host = &rest[..rest.find('/').expect("a path")];
    assert!(host.starts_with("127.0.0.1:"), "{url}");
    let mut req = format!("ws://{rest}").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, chosen))
}

/// One WebSocket port-forward session to the sandbox's line-answering listener: checks
/// the port frames opening every channel, sends `line` on port 0's data channel, reads
/// until its answer ends in a newline and returns each channel's data after the port
/// frames (error channels are read until the answer came). A connection refused while the
/// listener restarts between connections is retried with a new URL.
async fn ws_forward(
    rs: &mut RuntimeServiceClient<Channel>,
    sid: &str,
    ports: &[i32],
    query: &str,
    protocol: &str,
    line: &[u8],
) -> std::collections::HashMap<u8, Vec<u8>> {
    use base64::Engine as _;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let b64 = protocol == WS_V4_BASE64;
    let want_ports: Vec<u16> = if ports.is_empty() {
        query
            .trim_start_matches('?')
            .split('&')
            .filter_map(|kv| kv.strip_prefix("port="))
            .map(|p| p.parse().unwrap())
            .collect()
    } else {
        ports.iter().map(|p| *p as u16).collect()
    };
    let start = Instant::now();
    loop {
        let url = forward_url(
            rs,
            cri::PortForwardRequest {
                pod_sandbox_id: sid.into(),
                port: ports.to_vec(),
            },
        )
        .await;
        let (mut ws, chosen) = ws_connect(&format!("{url}{query}"), protocol)
            .await
            .unwrap_or_else(|e| panic!("upgrading {url}{query}: {e}"));
        assert_eq!(chosen, protocol);
        let decode = |m: Message| -> Option<(u8, Vec<u8>)> {
            match m {
                Message::Binary(b) if !b64 => Some((b[0], b[1..].to_vec())),
                Message::Text(t) if b64 => {
                    let t = t.as_str();
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(&t[1..])
                        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
                    Some((t.as_bytes()[0] - b'0', data))
                }
                Message::Close(_) => None,
                other => panic!("unexpected {other:?} on a {protocol} session"),
            }
        };
        let mut got: std::collections::HashMap<u8, Vec<u8>> = Default::default();
        let mut opened = std::collections::HashSet::new();
        let session = async {
            // Every channel opens with its port, little-endian.
            while opened.len() < 2 * want_ports.len() {
                let m = ws.next().await.expect("the session ended").unwrap();
                let (ch, data) = decode(m).expect("closed before the port frames");
                if opened.insert(ch) {
                    let port = want_ports[usize::from(ch / 2)];
                    assert_eq!(data, port.to_le_bytes(), "channel {ch}'s first frame");
                } else {
                    got.entry(ch).or_default().extend(data);
                }
            }
            let frame = if b64 {
                let mut t = String::from("0");
                t.push_str(&base64::engine::general_purpose::STANDARD.encode(line));
                Message::Text(t.into())
            } else {
                let mut v = vec![0u8];
                v.extend_from_slice(line);
                Message::Binary(v.into())
            };
            ws.send(frame).await.unwrap();
            while !got.get(&0).is_some_and(|d| d.ends_with(b"\n"))
                && got.get(&1).is_none_or(|e| e.is_empty())
            {
                let Some(m) = ws.next().await else { break };
                let Some((ch, data)) = decode(m.unwrap()) else {
                    break;
                };
                got.entry(ch).or_default().extend(data);
            }
            // Error channels of other ports have had their say by now, or have nothing.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while want_ports.len() > 1 && got.get(&3).is_none_or(|e| e.is_empty()) {
                    let Some(Ok(m)) = ws.next().await else { break };
                    let Some((ch, data)) = decode(m) else { break };
                    got.entry(ch).or_default().extend(data);
                }
            })
            .await;
        };
        tokio::time::timeout(Duration::from_secs(30), session)
            .await
            .expect("no answer through the WebSocket port-forward within 30 s");
        let _ = ws.close(None).await;
        let err = String::from_utf8_lossy(got.get(&1).map_or(&[][..], |v| v)).to_string();
        if err.contains("refused") && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(err.is_empty(), "port {}: {err}", want_ports[0]);
        return got;
    }
}

/// The HTTP status of a SPDY upgrade request to `url` (to see a spent token refused).
async fn upgrade_status(url: &str, protocol: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Stats of a busy container and its sandbox: CPU time, the working set, the writable
/// layer (a file the container wrote), eth0 of the pod, and the list filters.
#[test]
fn stats_of_a_busy_container_and_its_sandbox() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_stats_66");
    let config = sandbox_config("stats", "uid-66", 0, &log_dir);
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let sid = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let busy = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "busy",
                "dd if=/dev/zero of=/written bs=1024 count=512 2>/dev/null; while true; do :; done",
                None,
            ),
        )
        .await;
        let idle = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("idle", "sleep 1003", None),
        )
        .await;
        // The written file is there before its size is asked for.
        let start = Instant::now();
        while exec(&mut rs, &busy, &["stat", "-c", "%s", "/written"])
            .await
            .stdout
            != b"524288\n"
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "/written never reached 512 KiB"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = |id: &str| cri::ContainerStatsRequest {
            container_id: id.into(),
        };
        let first = rs
            .container_stats(stats(&busy))
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert_eq!(first.attributes.as_ref().unwrap().id, busy);
        assert_eq!(
            first
                .attributes
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .name,
            "busy"
        );
        let cpu = first.cpu.unwrap();
        assert!(cpu.timestamp > 0);
        assert!(cpu.usage_core_nano_seconds.unwrap().value > 0, "{cpu:?}");
        let mem = first.memory.unwrap();
        assert!(mem.working_set_bytes.unwrap().value > 0, "{mem:?}");
        assert!(mem.usage_bytes.unwrap().value >= mem.working_set_bytes.unwrap().value);
        let layer = first.writable_layer.unwrap();
        assert!(layer.used_bytes.unwrap().value >= 512 * 1024, "{layer:?}");
        assert!(layer.inodes_used.unwrap().value >= 1, "{layer:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = rs
            .container_stats(stats(&busy))
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let cpu2 = second.cpu.unwrap();
        assert!(
            cpu2.usage_core_nano_seconds.unwrap().value
                > cpu.usage_core_nano_seconds.unwrap().value
        );
        assert!(cpu2.usage_nano_cores.unwrap().value > 0, "{cpu2:?}");

        // Filters: by sandbox, by id, by label.
        let list =
            |f: cri::ContainerStatsFilter| cri::ListContainerStatsRequest { filter: Some(f) };
        let ids = |s: Vec<cri::ContainerStats>| {
            let mut v: Vec<String> = s.into_iter().map(|s| s.attributes.unwrap().id).collect();
            v.sort();
            v
        };
        let mut both = vec![busy.clone(), idle.clone()];
        both.sort();
        let by_sandbox = rs
            .list_container_stats(list(cri::ContainerStatsFilter {
                pod_sandbox_id: sid.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(ids(by_sandbox), both);
        let by_label = rs
            .list_container_stats(list(cri::ContainerStatsFilter {
                label_selector: [("role".to_string(), "idle".to_string())].into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(ids(by_label), vec![idle.clone()]);
        let by_id = rs
            .list_container_stats(list(cri::ContainerStatsFilter {
                id: busy[..12].to_string(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(ids(by_id), vec![busy.clone()]);

        // The sandbox: its cgroup's CPU and memory, eth0, its containers.
        let ps = rs
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: sid.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert_eq!(ps.attributes.as_ref().unwrap().id, sid);
        let linux = ps.linux.unwrap();
        assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
        let net = linux.network.expect("eth0 counters of the pod");
        assert_eq!(net.default_interface.unwrap().name, "eth0");
        let mut in_pod: Vec<String> = linux
            .containers
            .into_iter()
            .map(|c| c.attributes.unwrap().id)
            .collect();
        in_pod.sort();
        assert_eq!(in_pod, both);
        let listed = rs
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: [("app".to_string(), "stats".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(listed.len(), 1);
        let none = rs
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: [("app".to_string(), "other".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert!(none.is_empty());

        // UpdateContainerResources: the running container's cgroup gets the new limits.
        rs.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: idle.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let (mem_file, cpu_file) = if v2 {
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max")
        } else {
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            )
        };
        let mem = exec(&mut rs, &idle, &["cat", mem_file]).await;
        assert_eq!(
            String::from_utf8_lossy(&mem.stdout).trim(),
            (64u64 << 20).to_string()
        );
        let cpu = exec(&mut rs, &idle, &["cat", cpu_file]).await;
        let cpu = String::from_utf8_lossy(&cpu.stdout).to_string();
        assert!(cpu.starts_with("50000"), "{cpu}");
        let st = container_status(&mut rs, &idle).await;
        let linux = st.resources.unwrap().linux.unwrap();
        assert_eq!(
            (linux.memory_limit_in_bytes, linux.cpu_quota),
            (64 << 20, 50_000)
        );
        let limited = rs
            .container_stats(stats(&idle))
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let available = limited
            .memory
            .unwrap()
            .available_bytes
            .expect("a limit gives available bytes");
        assert!(
            available.value > 0 && available.value < 64 << 20,
            "{available:?}"
        );

        stop_and_remove(&mut rs, &sid).await;
    });
}

/// GetContainerEvents: the sandbox's and containers' lifecycle from the service's own
/// calls, an exit seen by the service on its own, each with the sandbox's status.
#[test]
fn container_events_stream_lifecycle_and_exits() {
    use cri::ContainerEventType as E;
    use futures::StreamExt;
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_events_88");
    let config = sandbox_config("events", "uid-88", 0, &log_dir);
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let mut watcher = RuntimeServiceClient::new(channel(&server.socket).await);
        let mut stream = watcher
            .get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let sid = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let short = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("short", "exit 2", None),
        )
        .await;
        let long = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config("long", "sleep 1004", None),
        )
        .await;
        let mut seen: Vec<(String, i32)> = Vec::new();
        let mut short_status = None;
        let wait = async {
            while !seen.contains(&(short.clone(), E::ContainerStoppedEvent as i32)) {
                let ev = stream.next().await.expect("the stream ended").unwrap();
                assert_eq!(
                    ev.pod_sandbox_status.as_ref().map(|s| s.id.as_str()),
                    Some(sid.as_str()),
                    "{ev:?}"
                );
                if ev.container_id == short
                    && ev.container_event_type == E::ContainerStoppedEvent as i32
                {
                    short_status = ev
                        .containers_statuses
                        .iter()
                        .find(|c| c.id == short)
                        .cloned();
                }
                seen.push((ev.container_id, ev.container_event_type));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("no STOPPED event for the exited container");
        assert_eq!(
            short_status
                .expect("the exited container's status")
                .exit_code,
            2
        );
        rs.stop_container(cri::StopContainerRequest {
            container_id: long.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        rs.remove_container(cri::RemoveContainerRequest {
            container_id: long.clone(),
        })
        .await
        .unwrap();
        let wait = async {
            while !seen.contains(&(long.clone(), E::ContainerDeletedEvent as i32)) {
                let ev = stream.next().await.expect("the stream ended").unwrap();
                seen.push((ev.container_id, ev.container_event_type));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("no DELETED event");
        let of = |id: &str| -> Vec<i32> {
            seen.iter()
                .filter(|(i, _)| i == id)
                .map(|(_, t)| *t)
                .collect()
        };
        assert_eq!(
            of(&sid),
            vec![
                E::ContainerCreatedEvent as i32,
                E::ContainerStartedEvent as i32
            ]
        );
        assert_eq!(
            of(&short),
            vec![
                E::ContainerCreatedEvent as i32,
                E::ContainerStartedEvent as i32,
                E::ContainerStoppedEvent as i32
            ]
        );
        assert_eq!(
            of(&long),
            vec![
                E::ContainerCreatedEvent as i32,
                E::ContainerStartedEvent as i32,
                E::ContainerStoppedEvent as i32,
                E::ContainerDeletedEvent as i32
            ]
        );

        stop_and_remove(&mut rs, &sid).await;
        let wait = async {
            while !seen.contains(&(sid.clone(), E::ContainerDeletedEvent as i32)) {
                let ev = stream.next().await.expect("the stream ended").unwrap();
                seen.push((ev.container_id, ev.container_event_type));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("no DELETED event for the sandbox");
        assert!(seen.contains(&(sid.clone(), E::ContainerStoppedEvent as i32)));
    });
}

/// The value of a `/proc/<pid>/status` field (e.g. `NoNewPrivs`, `Seccomp`, `Groups`).
fn status_field(status: &[u8], field: &str) -> String {
    let text = String::from_utf8_lossy(status);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .trim()
        .to_string()
}

/// The optional fields (`shared:N`, `master:N`) of the mount at `point` in a mountinfo.
fn propagation_of(mountinfo: &[u8], point: &str) -> String {
    let text = String::from_utf8_lossy(mountinfo);
    let line = text
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some(point))
        .unwrap_or_else(|| panic!("no mount at {point} in\n{text}"));
    line.split(" - ")
        .next()
        .unwrap()
        .split_whitespace()
        .skip(6)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pid in ContainerStatus's verbose info (containerd's shape), checked against the
/// rest of that info.
async fn verbose_pid(
    rs: &mut RuntimeServiceClient<Channel>,
    id: &str,
    sandbox: &str,
) -> (i64, serde_json::Value) {
    let resp = rs
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    assert_eq!(info["sandboxID"], sandbox, "{info}");
    assert_eq!(info["removing"], false);
    assert_eq!(
        info["config"]["metadata"]["name"],
        resp.status.unwrap().metadata.unwrap().name.as_str()
    );
    assert!(info["runtimeSpec"]["process"]["args"].is_array(), "{info}");
    let pid = info["pid"].as_i64().unwrap();
    assert!(pid > 0, "{info}");
    (pid, info)
}

/// Namespace modes (TARGET and CONTAINER pid; NODE network, pid and ipc), the kubelet's
/// cgroup parent and sysctls, devices, mount propagation both ways, run_as_username,
/// supplemental groups, masked and read-only paths, no_new_privs, seccomp (runtime default,
/// a localhost profile, none when privileged), privileged, SIGTERM before the stop timeout,
/// the verbose ContainerStatus, and the ListPodSandbox filters.
#[test]
fn namespaces_devices_mounts_and_security_paths() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_ns_99");
    let mut config = sandbox_config("ns", "uid-99", 0, &log_dir);
    let kube_parent = format!("/{}/kubepods", p.cgroup_parent);
    if let Some(linux) = config.linux.as_mut() {
        linux.cgroup_parent = kube_parent.clone();
        linux.sysctls = [
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "500".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]
        .into();
    }
    let mut host_config = sandbox_config("hostns", "uid-98", 0, &log_dir);
    host_config.dns_config = None;
    host_config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                pid: cri::NamespaceMode::Node as i32,
                ipc: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    // Two shared tmpfs mounts on the host: one seen by a container as HOST_TO_CONTAINER
    // (and PRIVATE), one BIDIRECTIONAL.
    let (src_a, src_b) = (p.root.join("prop-a"), p.root.join("prop-b"));
    for (src, name) in [(&src_a, "prop-a"), (&src_b, "prop-b")] {
        std::fs::create_dir_all(src).unwrap();
        let sh = format!(
            "mount -t tmpfs {name} {0} && mount --make-shared {0}",
            src.display()
        );
        let ok = std::process::Command::new("sh")
            .args(["-c", &sh])
            .status()
            .unwrap();
        assert!(ok.success(), "{sh}");
    }
    std::fs::create_dir(src_b.join("inner")).unwrap();
    let profile = p.root.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(channel(&server.socket).await);
        let run = |c: &cri::PodSandboxConfig| cri::RunPodSandboxRequest {
            config: Some(c.clone()),
            runtime_handler: String::new(),
        };
        let sid = rs
            .run_pod_sandbox(run(&config))
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        // A runtime handler names the OCI runtime of the sandbox's containers.
        let bad = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(host_config.clone()),
                runtime_handler: "no-such-runtime".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::NotFound, "{bad:?}");
        assert!(
            bad.message()
                .contains("runtime handler \"no-such-runtime\""),
            "{bad:?}"
        );
        let hid = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(host_config.clone()),
                runtime_handler: "runc".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;

        let target = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "target",
                "trap 'exit 3' TERM; while true; do sleep 1; done",
                None,
            ),
        )
        .await;
        let joiner = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "joiner",
                "sleep 2002",
                Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Target as i32,
                        target_id: target.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
        )
        .await;
        let mut own_config = container_config(
            "own",
            "sleep 2003",
            Some(cri::LinuxContainerSecurityContext {
                run_as_username: "nobody".into(),
                supplemental_groups: vec![4000, 4001],
                masked_paths: vec!["/proc/version".into()],
                readonly_paths: vec!["/tmp".into()],
                no_new_privs: true,
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        );
        own_config.devices = vec![cri::Device {
            container_path: "/dev/mydev".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        }];
        let mount = |host: &Path, inside: &str, prop: cri::MountPropagation| cri::Mount {
            container_path: inside.into(),
            host_path: host.to_str().unwrap().into(),
            propagation: prop as i32,
            ..Default::default()
        };
        own_config.mounts = vec![
            mount(
                &src_a,
                "/slave",
                cri::MountPropagation::PropagationHostToContainer,
            ),
            mount(
                &src_a,
                "/private",
                cri::MountPropagation::PropagationPrivate,
            ),
        ];
        let own = create_and_start(&mut rs, &config, &sid, own_config).await;
        let mut priv_config = container_config(
            "priv",
            "sleep 2004",
            Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
        );
        priv_config.mounts = vec![mount(
            &src_b,
            "/shared",
            cri::MountPropagation::PropagationBidirectional,
        )];
        let privileged = create_and_start(&mut rs, &config, &sid, priv_config).await;
        let filtered = create_and_start(
            &mut rs,
            &config,
            &sid,
            container_config(
                "filtered",
                "sleep 2005",
                Some(cri::LinuxContainerSecurityContext {
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: profile.to_str().unwrap().into(),
                    }),
                    ..Default::default()
                }),
            ),
        )
        .await;
        let hostnet = create_and_start(
            &mut rs,
            &host_config,
            &hid,
            container_config(
                "hostnet",
                "sleep 2006",
                // The kubelet repeats the pod's modes in every container's.
                Some(cri::LinuxContainerSecurityContext {
                    namespace_options: host_config
                        .linux
                        .as_ref()
                        .and_then(|l| l.security_context.as_ref())
                        .and_then(|s| s.namespace_options.clone()),
                    ..Default::default()
                }),
            ),
        )
        .await;

        // TARGET: the joiner is in the target's pid namespace; CONTAINER: its own.
        let (target_pid, _) = verbose_pid(&mut rs, &target, &sid).await;
        let (joiner_pid, _) = verbose_pid(&mut rs, &joiner, &sid).await;
        let (own_pid, own_info) = verbose_pid(&mut rs, &own, &sid).await;
        let pid_ns = |pid| common::ns_inode(pid, "pid");
        assert_eq!(pid_ns(joiner_pid), pid_ns(target_pid));
        assert_ne!(pid_ns(own_pid), pid_ns(target_pid));
        let ps = exec(&mut rs, &joiner, &["ps", "-o", "args"]).await;
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        assert!(ps.contains("exit 3") && ps.contains("sleep 2002"), "{ps}");
        let ps = exec(&mut rs, &own, &["ps", "-o", "pid,args"]).await;
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        assert!(!ps.contains("exit 3"), "{ps}");
        assert!(
            ps.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "2003"]),
            "{ps}"
        );
        // The kubelet's cgroup parent holds every container of the sandbox.
        for (id, pid) in [(&target, target_pid), (&own, own_pid)] {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(cg.contains(&format!("{kube_parent}/{id}")), "{cg}");
        }
        // Sysctls of the sandbox, in its network and ipc namespaces.
        let port = exec(
            &mut rs,
            &target,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&port.stdout).trim(), "500");
        let shm = exec(
            &mut rs,
            &target,
            &["cat", "/proc/sys/kernel/shm_rmid_forced"],
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&shm.stdout).trim(), "1");

        // run_as_username from the image's /etc/passwd, supplemental groups.
        let id = exec(&mut rs, &own, &["id"]).await;
        let id = String::from_utf8_lossy(&id.stdout).into_owned();
        assert!(
            id.starts_with("uid=65534(nobody) gid=65534(nobody)"),
            "{id}"
        );
        let status = exec(&mut rs, &own, &["cat", "/proc/self/status"]).await;
        let groups = status_field(&status.stdout, "Groups");
        assert!(
            groups.contains("4000") && groups.contains("4001"),
            "{groups}"
        );
        assert_eq!(status_field(&status.stdout, "NoNewPrivs"), "1");
        assert_eq!(status_field(&status.stdout, "Seccomp"), "2");
        // A device node of the host's, usable.
        let dev = exec(
            &mut rs,
            &own,
            &[
                "sh",
                "-c",
                "stat -c '%F %t:%T' /dev/mydev && echo x > /dev/mydev",
            ],
        )
        .await;
        assert_eq!(
            dev.exit_code,
            0,
            "{:?}",
            String::from_utf8_lossy(&dev.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&dev.stdout).trim(),
            "character special file 1:3"
        );
        assert!(
            own_info["runtimeSpec"]["linux"]["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["path"] == "/dev/mydev")),
            "{own_info}"
        );
        // Masked and read-only paths as asked (the control container reads /proc/version).
        let version = exec(&mut rs, &own, &["cat", "/proc/version"]).await;
        assert_eq!(version.stdout, b"");
        let version = exec(&mut rs, &target, &["cat", "/proc/version"]).await;
        assert!(String::from_utf8_lossy(&version.stdout).starts_with("Linux"));
        let tmp = exec(&mut rs, &own, &["touch", "/tmp/x"]).await;
        assert!(
            String::from_utf8_lossy(&tmp.stderr).contains("Read-only file system"),
            "{tmp:?}"
        );
        // HOST_TO_CONTAINER: a mount the host makes later is seen through /slave only.
        let info = exec(&mut rs, &own, &["cat", "/proc/self/mountinfo"]).await;
        assert!(
            propagation_of(&info.stdout, "/slave").contains("master:"),
            "{}",
            String::from_utf8_lossy(&info.stdout)
        );
        assert!(!propagation_of(&info.stdout, "/private").contains("master:"));
        let sub = src_a.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "sub", sub.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::write(sub.join("hello"), "from the host\n").unwrap();
        let seen = exec(&mut rs, &own, &["cat", "/slave/sub/hello"]).await;
        assert_eq!(String::from_utf8_lossy(&seen.stdout), "from the host\n");
        let unseen = exec(&mut rs, &own, &["ls", "/private/sub"]).await;
        assert_eq!(unseen.stdout, b"");

        // Privileged: every capability, no seccomp, /sys writable; BIDIRECTIONAL: a mount
        // made in the container appears on the host.
        let status = exec(&mut rs, &privileged, &["cat", "/proc/self/status"]).await;
        // Every capability peapod itself holds (containerd's WithAllCurrentCapabilities).
        let mine = std::fs::read("/proc/self/status").unwrap();
        let bounding = u64::from_str_radix(&status_field(&mine, "CapBnd"), 16).unwrap();
        assert_eq!(cap_eff(&status.stdout), bounding);
        assert_eq!(status_field(&status.stdout, "Seccomp"), "0");
        let info = exec(&mut rs, &privileged, &["cat", "/proc/self/mountinfo"]).await;
        assert!(propagation_of(&info.stdout, "/shared").contains("shared:"));
        let made = exec(
            &mut rs,
            &privileged,
            &[
                "sh",
                "-c",
                "mount -t tmpfs inner /shared/inner && echo from-the-container > /shared/inner/f",
            ],
        )
        .await;
        assert_eq!(
            made.exit_code,
            0,
            "{:?}",
            String::from_utf8_lossy(&made.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(src_b.join("inner/f")).unwrap(),
            "from-the-container\n"
        );
        // A localhost seccomp profile: mkdir fails, the rest works.
        let mk = exec(&mut rs, &filtered, &["mkdir", "/made"]).await;
        assert_ne!(mk.exit_code, 0);
        assert!(
            String::from_utf8_lossy(&mk.stderr).contains("Operation not permitted"),
            "{mk:?}"
        );
        let touch = exec(&mut rs, &filtered, &["touch", "/made"]).await;
        assert_eq!(touch.exit_code, 0);

        // NODE network, pid and ipc: the host's namespaces and hostname.
        let (host_pid, host_info) = verbose_pid(&mut rs, &hostnet, &hid).await;
        assert!(
            host_info["runtimeType"]
                .as_str()
                .is_some_and(|r| r.ends_with("runc")),
            "{host_info}"
        );
        let me = std::process::id() as i64;
        for ns in ["net", "pid", "ipc"] {
            assert_eq!(
                common::ns_inode(host_pid, ns),
                common::ns_inode(me, ns),
                "{ns}"
            );
        }
        assert_ne!(
            common::ns_inode(target_pid, "net"),
            common::ns_inode(me, "net")
        );
        let name = exec(&mut rs, &hostnet, &["hostname"]).await;
        assert_eq!(
            String::from_utf8_lossy(&name.stdout).trim(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
        );
        let st = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: hid.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.runtime_handler, "runc");
        let opts = st.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(opts.network, cri::NamespaceMode::Node as i32);

        // Stop sends SIGTERM first: the target's trap exits 3 well before the timeout.
        rs.stop_container(cri::StopContainerRequest {
            container_id: target.clone(),
            timeout: 60,
        })
        .await
        .unwrap();
        let st = container_status(&mut rs, &target).await;
        assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));

        // ListPodSandbox by id prefix and by state.
        let list = |f: cri::PodSandboxFilter| cri::ListPodSandboxRequest { filter: Some(f) };
        let ids = |items: Vec<cri::PodSandbox>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let by_id = rs
            .list_pod_sandbox(list(cri::PodSandboxFilter {
                id: sid[..10].into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(ids(by_id), vec![sid.clone()]);
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: hid.clone(),
        })
        .await
        .unwrap();
        let state = |s: cri::PodSandboxState| cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue { state: s as i32 }),
            ..Default::default()
        };
        let ready = rs
            .list_pod_sandbox(list(state(cri::PodSandboxState::SandboxReady)))
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(ids(ready), vec![sid.clone()]);
        let not_ready = rs
            .list_pod_sandbox(list(state(cri::PodSandboxState::SandboxNotready)))
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(ids(not_ready), vec![hid.clone()]);

        for id in [&sid, &hid] {
            rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        }
    });
    for m in [
        src_b.join("inner"),
        src_a.join("sub"),
        src_a.clone(),
        src_b.clone(),
    ] {
        let _ = std::process::Command::new("umount").arg(&m).status();
    }
    assert_eq!(p.mounts(), Vec::<String>::new());
    assert_eq!(p.ok(&["ps", "-aq"]), "");
}

async fn run_sandbox(
    rs: &mut RuntimeServiceClient<Channel>,
    config: &cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    rs.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

/// The sandboxes of one kubelet pod (by its uid), newest first.
async fn sandboxes_of(rs: &mut RuntimeServiceClient<Channel>, uid: &str) -> Vec<cri::PodSandbox> {
    rs.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .filter(|s| s.metadata.as_ref().is_some_and(|m| m.uid == uid))
        .collect()
}

/// Entries of a directory of this root (none when it is absent).
fn entries(p: &Peapod, dir: &str) -> Vec<String> {
    std::fs::read_dir(p.root.join(dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses IPAM holds.
fn ipam_allocations(p: &Peapod) -> usize {
    let ipam: serde_json::Value =
        serde_json::from_str(&p.ipam_text()).unwrap_or(serde_json::Value::Null);
    ipam["allocations"].as_object().map_or(0, |a| a.len())
}

/// Nothing of any sandbox is left: records, netns pins, addresses, veths, mounts, cgroups.
fn assert_no_sandbox_left(p: &Peapod) {
    for dir in ["lib/pods", "lib/containers", "run/netns"] {
        assert_eq!(entries(p, dir), Vec::<String>::new(), "left in {dir}");
    }
    assert_eq!(ipam_allocations(p), 0, "IPs left: {}", p.ipam_text());
    assert_eq!(p.bridge_ports(), Vec::<String>::new(), "veths left");
    assert_eq!(p.mounts(), Vec::<String>::new(), "mounts left");
    let cgroups = common::cgroups_left(p);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// A kubelet under load: RunPodSandbox for one pod and attempt sent four times at once,
/// given up on by its client (the gRPC deadline passes) and retried, failing half way and
/// retried, and a new attempt after StopPodSandbox. Each (name, namespace, uid, attempt)
/// is one sandbox with one address, a retry never meets a stale reservation, and stop and
/// remove leave nothing.
#[test]
fn run_pod_sandbox_retries_and_cancellations_are_one_sandbox() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs/kube-test_retry");
    rt().block_on(async {
        let ch = channel(&server.socket).await;
        let mut rs = RuntimeServiceClient::new(ch.clone());

        // Four RunPodSandbox of one pod and attempt at once: one sandbox.
        let config = sandbox_config("retry", "uid-r1", 0, &log_dir);
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (mut c, config) = (RuntimeServiceClient::new(ch.clone()), config.clone());
                tokio::spawn(async move { run_sandbox(&mut c, &config).await })
            })
            .collect();
        let mut ids = Vec::new();
        for call in calls {
            ids.push(call.await.unwrap().expect("a concurrent RunPodSandbox"));
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        let listed = sandboxes_of(&mut rs, "uid-r1").await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, ids[0]);
        assert_eq!(listed[0].state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(entries(&p, "run/netns").len(), 1, "one netns");
        assert_eq!(ipam_allocations(&p), 1, "one address: {}", p.ipam_text());
        assert_eq!(p.bridge_ports().len(), 1, "one veth");

        // A new attempt after a stop: a second sandbox, the first listed NotReady.
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: ids[0].clone(),
        })
        .await
        .unwrap();
        let next = sandbox_config("retry", "uid-r1", 1, &log_dir);
        let second = run_sandbox(&mut rs, &next).await.unwrap();
        assert_ne!(second, ids[0]);
        assert_eq!(run_sandbox(&mut rs, &next).await.unwrap(), second);
        let listed = sandboxes_of(&mut rs, "uid-r1").await;
        let states: Vec<(u32, &str, i32)> = listed
            .iter()
            .map(|s| (s.metadata.as_ref().unwrap().attempt, s.id.as_str(), s.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (
                    1,
                    second.as_str(),
                    cri::PodSandboxState::SandboxReady as i32
                ),
                (
                    0,
                    ids[0].as_str(),
                    cri::PodSandboxState::SandboxNotready as i32
                ),
            ]
        );
        for id in [&ids[0], &second] {
            stop_and_remove(&mut rs, id).await;
        }
        assert_no_sandbox_left(&p);

        // The client gives up (its deadline passes while the sandbox is being made) and
        // retries at once: the sandbox being made, Ready, and only it.
        let gave_up = sandbox_config("gaveup", "uid-r2", 0, &log_dir);
        let mut hasty = tonic::Request::new(cri::RunPodSandboxRequest {
            config: Some(gave_up.clone()),
            runtime_handler: String::new(),
        });
        hasty.set_timeout(Duration::from_millis(1));
        let cancelled = rs.run_pod_sandbox(hasty).await;
        assert!(
            cancelled.is_err(),
            "a sandbox made within 1 ms? {cancelled:?}"
        );
        let id = run_sandbox(&mut rs, &gave_up)
            .await
            .expect("the retry of a cancelled RunPodSandbox");
        let listed = sandboxes_of(&mut rs, "uid-r2").await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(entries(&p, "run/netns").len(), 1, "one netns");
        assert_eq!(ipam_allocations(&p), 1, "one address: {}", p.ipam_text());
        stop_and_remove(&mut rs, &id).await;
        assert_no_sandbox_left(&p);

        // Refused configs make nothing: a sysctl the kernel does not have, an SCTP host port.
        let mut bad = sandbox_config("failing", "uid-r3", 0, &log_dir);
        bad.linux.as_mut().unwrap().sysctls =
            [("net.ipv4.no_such_sysctl".to_string(), "1".to_string())].into();
        let e = run_sandbox(&mut rs, &bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message()
                .contains("linux.sysctls[\"net.ipv4.no_such_sysctl\"]: no such sysctl"),
            "{}",
            e.message()
        );
        let mut bad = sandbox_config("failing", "uid-r3", 0, &log_dir);
        bad.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Sctp as i32,
            container_port: 80,
            host_port: 18080,
            host_ip: "127.0.0.1".into(),
        }];
        let e = run_sandbox(&mut rs, &bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("SCTP"), "{}", e.message());
        assert_no_sandbox_left(&p);

        // A RunPodSandbox failing half way (its host port is taken, found once the netns,
        // address and veth exist) leaves nothing; the retry, the port free, runs.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut config = sandbox_config("failing", "uid-r3", 0, &log_dir);
        config.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: i32::from(port),
            host_ip: "127.0.0.1".into(),
        }];
        // Four at once: the ones that waited for the failed maker try for themselves, and
        // each says why it failed.
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (mut c, config) = (RuntimeServiceClient::new(ch.clone()), config.clone());
                tokio::spawn(async move { run_sandbox(&mut c, &config).await })
            })
            .collect();
        for call in calls {
            let e = call.await.unwrap().unwrap_err();
            assert!(
                e.message().contains("publishing the pod's host ports"),
                "{e:?}"
            );
        }
        assert_no_sandbox_left(&p);
        drop(taken);
        let id = run_sandbox(&mut rs, &config)
            .await
            .expect("the retry of a failed RunPodSandbox");
        let listed = sandboxes_of(&mut rs, "uid-r3").await;
        assert_eq!(
            listed
                .iter()
                .map(|s| (s.id.as_str(), s.state))
                .collect::<Vec<_>>(),
            vec![(id.as_str(), cri::PodSandboxState::SandboxReady as i32)]
        );
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        assert_no_sandbox_left(&p);
    });
}
