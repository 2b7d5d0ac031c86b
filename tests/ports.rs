//! End-to-end tests of published pod host ports, as root: `hostPort` of a YAML pod and
//! `port_mappings` of a CRI sandbox are served on loopback by the pod monitor's proxy for
//! the sandbox's life; a host port already taken fails the pod's creation and leaves
//! nothing; a recovered sandbox publishes again. Every host port is a free loopback port
//! picked by binding 127.0.0.1:0; traffic goes to loopback only.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::cri_client::{channel, rt, CriServer};
use common::{eventually, manifest, pod_json, wait_pod, Peapod};
use peapod_cri::v1 as cri;
use peapod_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::Value;

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to 127.0.0.1:`port` and reads to EOF: `Ok(reply)`, or the connect error.
fn fetch(port: u16) -> std::io::Result<String> {
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reply = String::new();
    // A reset (the pod not listening yet) reads as an empty reply.
    let _ = c.read_to_string(&mut reply);
    Ok(reply)
}

/// Polls until 127.0.0.1:`port` answers "hi" (the server in the pod may start after the
/// pod is Running; until then the proxy accepts and closes).
fn wait_served(port: u16) {
    eventually(
        Duration::from_secs(30),
        &format!("hi on port {port}"),
        || fetch(port).ok().filter(|r| r == "hi\n"),
    );
}

/// Nothing listens on 127.0.0.1:`port`, and it can be bound again.
fn assert_closed(port: u16) {
    match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "port {port}: {e}"),
        Ok(_) => panic!("port {port} still accepts connections"),
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("port {port} cannot be bound again: {e}"));
}

/// A pod whose container answers "hi" to every connection on port 8080, published on
/// 127.0.0.1:`host_port`.
fn server_pod(name: &str, host_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    imagePullPolicy: Never
    command: ["nc", "-ll", "-p", "8080", "-e", "echo", "hi"]
    ports:
    - containerPort: 8080
      hostPort: {host_port}
      hostIP: 127.0.0.1
"#
    )
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// (pod records, netns pins, IP allocations) of the test's root.
fn sandbox_counts(p: &Peapod) -> (usize, usize, usize) {
    let ipam: Value = serde_json::from_str(&p.ipam_text()).unwrap_or(Value::Null);
    (
        count_entries(&p.root.join("lib/pods")),
        count_entries(&p.root.join("run/netns")),
        ipam["allocations"].as_object().map_or(0, |a| a.len()),
    )
}

#[test]
fn a_pods_host_port_is_served_until_the_pod_is_deleted() {
    let p = Peapod::new();
    let port = free_port();
    let file = manifest(&p, "web.yaml", &server_pod("web", port));
    assert_eq!(p.ok(&["apply", "-f", &file]).trim(), "pod/web created");
    wait_pod(&p, "web", "1/1", "Running");
    wait_served(port);
    // A second connection is served too (the proxy keeps listening).
    assert_eq!(fetch(port).unwrap(), "hi\n");
    // The sandbox's record shows the mapping, as `ps` shows a `run -p` container's.
    let uid = pod_json(&p, "web")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let infra = p
        .ps_line(&format!("k8s_POD_web_default_{uid}_0"))
        .expect("the sandbox in ps -a");
    assert!(
        infra.contains(&format!("127.0.0.1:{port}->8080/tcp")),
        "{infra}"
    );
    let describe = p.ok(&["describe", "pod", "web"]);
    assert!(
        describe
            .lines()
            .any(|l| l.trim_start().starts_with("Host Port:")
                && l.ends_with(&format!(" {port}/TCP"))),
        "{describe}"
    );
    p.ok(&["delete", "pod", "web", "--now"]);
    assert_closed(port);
}

#[test]
fn a_taken_host_port_fails_the_pod_and_leaves_nothing() {
    let p = Peapod::new();
    let port = free_port();
    let first = manifest(&p, "first.yaml", &server_pod("first", port));
    p.ok(&["apply", "-f", &first]);
    wait_pod(&p, "first", "1/1", "Running");
    wait_served(port);
    let before = sandbox_counts(&p);
    assert_eq!(before, (1, 1, 1), "one pod: record, netns, IP");

    // Another pod asking for the same hostPort, hostIP and protocol.
    let second = manifest(&p, "second.yaml", &server_pod("second", port));
    let (code, err) = p.fails(&["apply", "-f", &second]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/tcp")) && err.contains("in use"),
        "the error names the port: {err}"
    );
    assert!(
        common::get_line(&p, "second").is_empty(),
        "no pod record of the failed pod"
    );
    assert_eq!(
        sandbox_counts(&p),
        before,
        "nothing of the failed pod is left"
    );
    // The first pod is untouched and keeps serving.
    assert_eq!(fetch(port).unwrap(), "hi\n");

    // A port any other process holds fails a pod the same way.
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let held = holder.local_addr().unwrap().port();
    let third = manifest(&p, "third.yaml", &server_pod("third", held));
    let (_, err) = p.fails(&["apply", "-f", &third]);
    assert!(err.contains(&format!("127.0.0.1:{held}/tcp")), "{err}");
    assert_eq!(sandbox_counts(&p), before);
    drop(holder);

    // SCTP cannot be proxied: refused before anything is made, naming the field.
    let sctp = manifest(
        &p,
        "sctp.yaml",
        &server_pod("sctp", free_port()).replace("hostIP: 127.0.0.1", "protocol: SCTP"),
    );
    let (code, err) = p.fails(&["apply", "-f", &sctp]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "The Pod \"sctp\" is invalid: spec.containers[0].ports[0].protocol: Unsupported value: \"SCTP\""
        ),
        "{err}"
    );
    assert_eq!(sandbox_counts(&p), before);

    p.ok(&["delete", "pod", "first", "--now"]);
    assert_closed(port);
    assert_eq!(sandbox_counts(&p), (0, 0, 0));
}

/// A host-network pod's ports are the host's already: nothing is published for them (a
/// proxy on the port would keep the container's own server from binding it).
#[test]
fn a_host_network_pod_publishes_nothing() {
    let p = Peapod::new();
    let port = free_port();
    let file = manifest(
        &p,
        "hostnet.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /tmp/w && echo hi > /tmp/w/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/w"]
    ports:
    - containerPort: {port}
      hostPort: {port}
      hostIP: 127.0.0.1
"#
        ),
    );
    p.ok(&["apply", "-f", &file]);
    wait_pod(&p, "hostnet", "1/1", "Running");
    let body = eventually(
        Duration::from_secs(30),
        "httpd on the host's loopback",
        || {
            let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            std::io::Write::write_all(&mut c, b"GET / HTTP/1.0\r\n\r\n").ok()?;
            let mut reply = String::new();
            c.read_to_string(&mut reply).ok()?;
            Some(reply)
        },
    );
    assert!(
        body.starts_with("HTTP/1.") && body.ends_with("\r\n\r\nhi\n"),
        "{body}"
    );
    let uid = pod_json(&p, "hostnet")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let infra = p
        .ps_line(&format!("k8s_POD_hostnet_default_{uid}_0"))
        .expect("the sandbox in ps -a");
    assert!(!infra.contains("->"), "nothing published: {infra}");
    assert_eq!(
        common::get_line(&p, "hostnet").split_whitespace().nth(3),
        Some("0"),
        "the server never failed to bind"
    );
    p.ok(&["delete", "pod", "hostnet", "--now"]);
    assert_closed(port);
}

/// `kill -9` of the pod monitor takes the proxy with it; recovery makes a new sandbox (a
/// new pod IP) whose monitor publishes the port again.
#[test]
fn a_recovered_pod_serves_its_host_port_again() {
    let p = Peapod::new();
    let port = free_port();
    let file = manifest(&p, "rec.yaml", &server_pod("rec", port));
    p.ok(&["apply", "-f", &file]);
    wait_pod(&p, "rec", "1/1", "Running");
    wait_served(port);
    let uid = pod_json(&p, "rec")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let pid_file = p.root.join("lib/pods").join(&uid).join("monitor.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    // Each `get pods` recovers; the restarted container is served on the new sandbox.
    let line = eventually(Duration::from_secs(40), "the pod recovered", || {
        let line = common::get_line(&p, "rec");
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(1) == Some(&"1/1")
            && cols.get(2) == Some(&"Running")
            && cols.get(3) == Some(&"1"))
        .then_some(line)
    });
    assert!(
        p.ps_line(&format!("k8s_POD_rec_default_{uid}_1")).is_some(),
        "a new sandbox: {line}"
    );
    wait_served(port);
    p.ok(&["delete", "pod", "rec", "--now"]);
    assert_closed(port);
}

fn sandbox_config(
    name: &str,
    log_dir: &Path,
    mappings: Vec<cri::PortMapping>,
) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "kube-test".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.to_str().unwrap().into(),
        port_mappings: mappings,
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

/// What the kubelet sends for `containerPort: 8080, hostPort: host_port, hostIP: 127.0.0.1`.
fn mapping(host_port: u16, protocol: cri::Protocol) -> cri::PortMapping {
    cri::PortMapping {
        protocol: protocol as i32,
        container_port: 8080,
        host_port: host_port.into(),
        host_ip: "127.0.0.1".into(),
    }
}

#[test]
fn a_cri_sandboxs_port_mappings_are_served_until_it_stops() {
    let p = Peapod::new();
    let server = CriServer::start(&p);
    let log_dir = p.root.join("kubelet-logs");
    let port = free_port();
    let config = sandbox_config("web", &log_dir, vec![mapping(port, cri::Protocol::Tcp)]);
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
        let id = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sid.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "web".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    command: ["nc", "-ll", "-p", "8080", "-e", "echo", "hi"]
                        .map(String::from)
                        .to_vec(),
                    log_path: "web/0.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rs.start_container(cri::StartContainerRequest { container_id: id })
            .await
            .unwrap();
        wait_served(port);

        // A second sandbox asking for the same port fails, and no sandbox of it remains.
        let other = sandbox_config("other", &log_dir, vec![mapping(port, cri::Protocol::Tcp)]);
        let e = rs.run_pod_sandbox(run(other)).await.unwrap_err();
        assert!(
            e.message().contains(&format!("127.0.0.1:{port}/tcp")),
            "the error names the port: {e:?}"
        );
        // SCTP cannot be proxied: refused as an invalid argument, naming the field.
        let sctp = sandbox_config(
            "sctp",
            &log_dir,
            vec![mapping(free_port(), cri::Protocol::Sctp)],
        );
        let e = rs.run_pod_sandbox(run(sctp)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains("port_mappings[0].protocol: SCTP"),
            "{e:?}"
        );
        let all = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(
            all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec![sid.as_str()],
            "only the first sandbox exists"
        );
        assert_eq!(sandbox_counts(&p), (1, 1, 1));
        assert_eq!(fetch(port).unwrap(), "hi\n", "the first keeps serving");

        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sid.clone(),
        })
        .await
        .unwrap();
        assert_closed(port);
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sid,
        })
        .await
        .unwrap();
    });
    assert_eq!(sandbox_counts(&p), (0, 0, 0));
}
