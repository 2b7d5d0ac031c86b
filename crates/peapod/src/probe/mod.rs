//! Network probes and lifecycle `httpGet` hooks, made by peapod itself from inside the pod's
//! network namespace — never by running curl or nc in the image: HTTP(S) GET, TCP connect
//! and the gRPC health protocol, with the kubelet's success rules and its messages (those
//! the `Unhealthy` events carry).
//!
//! It owns only the check itself: resolving an action against its container (named ports,
//! default host and path) and running it on a thread of its own that has entered the pod's
//! network namespace. Periods, thresholds, restarts and events belong to the pod monitor;
//! this module writes no file and never changes the namespace of the caller's thread.

// Until the pod monitor calls it (issue 4): remove with the first caller.

mod grpc;
mod http;

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nix::sched::{setns, CloneFlags};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The Kubernetes minor version peapod implements (k8s-openapi `v1_33`), as the kubelet puts
/// it in its User-Agent (`kube-probe/1.33`).
const KUBE_VERSION: &str = "1.33";

/// The scheme of an HTTP check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpScheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS, the certificate not verified (the kubelet's `InsecureSkipVerify`).
    Https,
}

impl HttpScheme {
    fn as_str(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }
}

/// What an HTTP check is for: the kubelet judges the two differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPurpose {
    /// A liveness, readiness or startup probe (`kube-probe/1.33`): success iff
    /// 200 <= status < 400. Redirects are followed on the same host only; a redirect to
    /// another host ends the check with that 3xx response (a success with a warning).
    Probe,
    /// A `postStart`/`preStop` hook (`kube-lifecycle/1.33`): success iff a response arrives,
    /// whatever its status, as the kubelet's hook runner only fails on transport errors.
    /// Redirects are followed to any host.
    Hook,
}

/// A network check resolved against its pod and container: everything needed to run it,
/// owned, with no reference left to the pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCheck {
    /// `httpGet`: one GET (plus redirects) with `Connection: close`.
    Http {
        /// Probe or lifecycle hook.
        purpose: HttpPurpose,
        /// `http` or `https`.
        scheme: HttpScheme,
        /// Where to connect: `httpGet.host`, else the pod IP. An IP literal or a name.
        host: String,
        /// The resolved port.
        port: u16,
        /// The request target (path and query), starting with `/`, percent-encoded.
        path: String,
        /// `httpGet.httpHeaders` in order; a `Host` header replaces the request's host.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`: a TCP connection is opened and closed.
    Tcp {
        /// `tcpSocket.host`, else the pod IP.
        host: String,
        /// The resolved port.
        port: u16,
    },
    /// `grpc`: `grpc.health.v1.Health/Check` over plain-text HTTP/2.
    Grpc {
        /// Always the pod IP (the API has no host for gRPC probes).
        host: String,
        /// `grpc.port`.
        port: u16,
        /// `grpc.service`; `None` asks for the server's overall health (`""`).
        service: Option<String>,
    },
}

/// An action that cannot be turned into a check. The field names are relative to the probe
/// or handler (`httpGet.port`); the caller puts the container and probe in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A named port that the container does not declare in `ports[].name`.
    #[error("{field}: port {name:?} not found in the ports of container {container:?}")]
    UnknownPortName {
        /// `httpGet.port` or `tcpSocket.port`.
        field: &'static str,
        /// The name asked for.
        name: String,
        /// The container searched.
        container: String,
    },
    /// A port number outside 1..=65535 (given, or found through a port name).
    #[error("{field}: invalid port number: {port}: must be between 1 and 65535, inclusive")]
    InvalidPort {
        /// `httpGet.port`, `tcpSocket.port` or `grpc.port`.
        field: &'static str,
        /// The number.
        port: i64,
    },
    /// `httpGet.scheme` other than `HTTP` or `HTTPS`.
    #[error("httpGet.scheme: unsupported value {0:?}: supported values: \"HTTP\", \"HTTPS\"")]
    UnsupportedScheme(String),
    /// A header name that is not an HTTP token.
    #[error("httpGet.httpHeaders[{index}].name: invalid HTTP header name {name:?}")]
    InvalidHeaderName {
        /// Its index in `httpHeaders`.
        index: usize,
        /// The name.
        name: String,
    },
    /// A header value with a control character (CR, LF, NUL…).
    #[error("httpGet.httpHeaders[{index}].value: invalid value for header {name:?}")]
    InvalidHeaderValue {
        /// Its index in `httpHeaders`.
        index: usize,
        /// The header's name.
        name: String,
    },
    /// No `host` in the action and no pod IP to default to.
    #[error("{field}: no host given and the pod has no IP")]
    NoHost {
        /// `httpGet.host`, `tcpSocket.host` or `grpc` (no host field).
        field: &'static str,
    },
}

/// How a check went, with the kubelet's wording.
///
/// On failure `message` is what the kubelet puts after `Liveness probe failed: ` in an
/// `Unhealthy` event (or after `error: ` in a `FailedPostStartHook`/`FailedPreStopHook` one).
/// On success it is empty, except when the kubelet would record a `ProbeWarning` event (an
/// HTTP probe that ended on a redirect): then it is that warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The check passed.
    pub success: bool,
    /// Why it failed, or a warning; empty otherwise.
    pub message: String,
}

impl ProbeOutcome {
    fn pass() -> Self {
        ProbeOutcome {
            success: true,
            message: String::new(),
        }
    }

    fn warn(message: String) -> Self {
        ProbeOutcome {
            success: true,
            message,
        }
    }

    fn fail(message: String) -> Self {
        ProbeOutcome {
            success: false,
            message,
        }
    }
}

/// Resolves an `httpGet` probe against its container: scheme (default HTTP), host (default
/// the pod IP), port (named ports looked up in `ports[].name`), path (default `/`), headers.
pub fn http_check(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    http_action(action, container, pod_ip, HttpPurpose::Probe)
}

/// Resolves a lifecycle hook's `httpGet` (`postStart`, `preStop`) like [`http_check`]; the
/// check it makes succeeds on any HTTP response, as the kubelet's hooks do.
pub fn http_hook_check(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    http_action(action, container, pod_ip, HttpPurpose::Hook)
}

fn http_action(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
    purpose: HttpPurpose,
) -> Result<NetworkCheck, ProbeError> {
    let scheme = match action.scheme.as_deref() {
        None | Some("") | Some("HTTP") => HttpScheme::Http,
        Some("HTTPS") => HttpScheme::Https,
        Some(other) => return Err(ProbeError::UnsupportedScheme(other.to_owned())),
    };
    let host = host_or_pod_ip(action.host.as_deref(), pod_ip, "httpGet.host")?;
    let port = resolve_port(&action.port, container, "httpGet.port")?;
    let mut headers = Vec::new();
    for (index, h) in action.http_headers.iter().flatten().enumerate() {
        if hyper::header::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(ProbeError::InvalidHeaderName {
                index,
                name: h.name.clone(),
            });
        }
        if hyper::header::HeaderValue::from_str(&h.value).is_err() {
            return Err(ProbeError::InvalidHeaderValue {
                index,
                name: h.name.clone(),
            });
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    Ok(NetworkCheck::Http {
        purpose,
        scheme,
        host,
        port,
        path: http::request_target(action.path.as_deref().unwrap_or("")),
        headers,
    })
}

/// Resolves a `tcpSocket` probe (or the deprecated `tcpSocket` lifecycle handler): host
/// (default the pod IP) and port (named ports looked up in `ports[].name`).
pub fn tcp_check(
    action: &TCPSocketAction,
    container: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    Ok(NetworkCheck::Tcp {
        host: host_or_pod_ip(action.host.as_deref(), pod_ip, "tcpSocket.host")?,
        port: resolve_port(&action.port, container, "tcpSocket.port")?,
    })
}

/// Resolves a `grpc` probe: the pod IP, `grpc.port`, `grpc.service`.
pub fn grpc_check(action: &GRPCAction, pod_ip: &str) -> Result<NetworkCheck, ProbeError> {
    Ok(NetworkCheck::Grpc {
        host: host_or_pod_ip(None, pod_ip, "grpc")?,
        port: port_number(i64::from(action.port), "grpc.port")?,
        service: action.service.clone(),
    })
}

fn host_or_pod_ip(
    host: Option<&str>,
    pod_ip: &str,
    field: &'static str,
) -> Result<String, ProbeError> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Ok(h.to_owned()),
        None if !pod_ip.is_empty() => Ok(pod_ip.to_owned()),
        None => Err(ProbeError::NoHost { field }),
    }
}

/// The kubelet's `ResolveContainerPort`: a number as is, a name through `ports[].name`.
fn resolve_port(
    port: &IntOrString,
    container: &Container,
    field: &'static str,
) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(n) => port_number(i64::from(*n), field),
        IntOrString::String(name) => {
            let found = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match found {
                Some(p) => port_number(i64::from(p.container_port), field),
                None => Err(ProbeError::UnknownPortName {
                    field,
                    name: name.clone(),
                    container: container.name.clone(),
                }),
            }
        }
    }
}

fn port_number(port: i64, field: &'static str) -> Result<u16, ProbeError> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ProbeError::InvalidPort { field, port }),
    }
}

/// Runs `check` from inside the network namespace at `netns` (a pin such as
/// `run/netns/<id>` or a `/proc/PID/ns/net`; `None` = the host's) and waits for it.
///
/// The check runs on a new thread that `setns`es into the namespace and drives a
/// current-thread tokio runtime; the caller's thread never changes namespace. Everything,
/// from the connection to the last byte read, is bounded by `timeout`; running out of time
/// is a failure worded as the kubelet words it.
#[cfg(test)]
pub fn run_check(netns: Option<&Path>, check: &NetworkCheck, timeout: Duration) -> ProbeOutcome {
    let (tx, rx) = mpsc::channel();
    spawn_check(
        netns.map(Path::to_path_buf),
        check.clone(),
        timeout,
        move |outcome| {
            let _ = tx.send(outcome);
        },
    );
    // The thread enforces `timeout` itself; this bound only matters if it is wedged outside
    // the runtime (opening the namespace file), and then it is left behind.
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::fail(timeout_message(check, timeout)),
    }
}

/// Like `run_check` without blocking: `done` is called exactly once with the outcome, on
/// the check's own thread (or on the caller's, at once, if no thread can be started).
pub fn spawn_check(
    netns: Option<PathBuf>,
    check: NetworkCheck,
    timeout: Duration,
    done: impl FnOnce(ProbeOutcome) + Send + 'static,
) {
    // Shared so that `done` is still ours to call when the thread cannot be spawned.
    let slot = Arc::new(Mutex::new(Some(done)));
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("peapod-probe".into())
        .spawn(move || {
            let outcome = check_in_netns(netns.as_deref(), &check, timeout);
            let done = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(done) = done {
                done(outcome);
            }
        });
    if let Err(e) = spawned {
        let done = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = done {
            done(ProbeOutcome::fail(format!("start a probe thread: {e}")));
        }
    }
}

/// The body of a check thread: enter the namespace, run the check on a runtime of its own.
fn check_in_netns(netns: Option<&Path>, check: &NetworkCheck, timeout: Duration) -> ProbeOutcome {
    if let Some(path) = netns {
        let entered = File::open(path)
            .and_then(|f| setns(&f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
        if let Err(e) = entered {
            return ProbeOutcome::fail(format!("enter network namespace {}: {e}", path.display()));
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ProbeOutcome::fail(format!("start a probe runtime: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let outcome = runtime.block_on(async {
        match check {
            NetworkCheck::Tcp { host, port } => tcp(host, *port, deadline, timeout).await,
            NetworkCheck::Http {
                purpose,
                scheme,
                host,
                port,
                path,
                headers,
            } => {
                let request = http::Request {
                    purpose: *purpose,
                    scheme: *scheme,
                    host,
                    port: *port,
                    path,
                    headers,
                };
                http::check(&request, deadline).await
            }
            NetworkCheck::Grpc {
                host,
                port,
                service,
            } => grpc::check(host, *port, service.as_deref(), deadline, timeout).await,
        }
    });
    // A name lookup still running on the blocking pool must not hold the thread.
    runtime.shutdown_background();
    outcome
}

/// The kubelet's message for a check that ran out of time as a whole.
fn timeout_message(check: &NetworkCheck, timeout: Duration) -> String {
    match check {
        NetworkCheck::Tcp { host, port } => {
            format!("dial tcp {}: i/o timeout", join_host_port(host, *port))
        }
        NetworkCheck::Http {
            scheme,
            host,
            port,
            path,
            ..
        } => format!(
            "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting \
             headers)",
            http::url_string(*scheme, host, *port, path)
        ),
        NetworkCheck::Grpc { host, port, .. } => {
            grpc::connect_timeout_message(&join_host_port(host, *port), timeout)
        }
    }
}

/// `tcpSocket`: open and close a connection (Go's `net.DialTimeout`).
async fn tcp(host: &str, port: u16, deadline: Instant, timeout: Duration) -> ProbeOutcome {
    match tokio::time::timeout_at(deadline, dial(host, port)).await {
        Ok(Ok(_stream)) => ProbeOutcome::pass(),
        Ok(Err(e)) => ProbeOutcome::fail(e.0),
        Err(_) => ProbeOutcome::fail(timeout_message(
            &NetworkCheck::Tcp {
                host: host.to_owned(),
                port,
            },
            timeout,
        )),
    }
}

/// A failed dial, worded as Go's `net.OpError` (`dial tcp 10.0.0.5:80: connect: connection
/// refused`).
#[derive(Debug)]
struct DialError(String);

/// Opens a TCP connection to `host:port`, resolving a name if needed (in this thread's
/// network namespace, with the host's resolver configuration, as the kubelet resolves).
async fn dial(host: &str, port: u16) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.collect(),
            Err(_) => Vec::new(),
        },
    };
    if addrs.is_empty() {
        return Err(DialError(format!("dial tcp: lookup {host}: no such host")));
    }
    let mut first_error = None;
    for addr in addrs {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        };
        let connected = match socket {
            Ok(s) => s.connect(addr).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    DialError(format!("dial tcp {addr}: connect: {}", go_io_error(&e)))
                });
            }
        }
    }
    Err(first_error.expect("at least one address was tried"))
}

/// An I/O error as Go prints a syscall error: the C library's text, lower-cased first letter
/// (`connection refused`, `no route to host`).
fn go_io_error(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `net.JoinHostPort`: IPv6 literals in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration as Go's `time.Duration.String` prints it (`1s`, `1.5s`, `500ms`, `1m30s`).
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    // Integer part and the fractional digits, trailing zeros trimmed, of nanos / unit.
    let fixed = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let frac = value % unit;
        if frac == 0 {
            format!("{whole}{suffix}")
        } else {
            let width = unit.ilog10() as usize;
            let digits = format!("{frac:0width$}");
            format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fixed(nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return fixed(nanos, 1_000_000, "ms");
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let s = fixed(nanos % 60_000_000_000, 1_000_000_000, "s");
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;
    use std::net::TcpListener;
    use std::process::Command;

    /// Root-only tests fail loudly rather than skip.
    pub(crate) fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test enters network namespaces and must run as root"
        );
    }

    /// A port on 127.0.0.1 that is bound but not listening for as long as the socket lives:
    /// a connection to it is refused, deterministically.
    pub(crate) fn refusing_port() -> (TcpSocket, u16) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    fn container_with_ports() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![
                ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("metrics".into()),
                    container_port: 9090,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let c = container_with_ports();
        let action = HTTPGetAction {
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        };
        let check = http_check(&action, &c, "10.0.0.5").unwrap();
        assert_eq!(
            check,
            NetworkCheck::Http {
                purpose: HttpPurpose::Probe,
                scheme: HttpScheme::Http,
                host: "10.0.0.5".into(),
                port: 9090,
                path: "/".into(),
                headers: vec![],
            }
        );
        let tcp = TCPSocketAction {
            port: IntOrString::String("http".into()),
            host: Some("127.0.0.1".into()),
        };
        assert_eq!(
            tcp_check(&tcp, &c, "10.0.0.5").unwrap(),
            NetworkCheck::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn an_unknown_named_port_is_an_error_naming_the_field() {
        let c = container_with_ports();
        let action = TCPSocketAction {
            port: IntOrString::String("grpc".into()),
            host: None,
        };
        let err = tcp_check(&action, &c, "10.0.0.5").unwrap_err();
        assert_eq!(
            err,
            ProbeError::UnknownPortName {
                field: "tcpSocket.port",
                name: "grpc".into(),
                container: "app".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "tcpSocket.port: port \"grpc\" not found in the ports of container \"app\""
        );
    }

    #[test]
    fn http_actions_are_defaulted_and_checked() {
        let c = container_with_ports();
        let action = HTTPGetAction {
            host: Some("example.test".into()),
            scheme: Some("HTTPS".into()),
            path: Some("healthz?full=1".into()),
            port: IntOrString::Int(8443),
            http_headers: Some(vec![k8s_openapi::api::core::v1::HTTPHeader {
                name: "X-Probe".into(),
                value: "yes".into(),
            }]),
        };
        assert_eq!(
            http_hook_check(&action, &c, "10.0.0.5").unwrap(),
            NetworkCheck::Http {
                purpose: HttpPurpose::Hook,
                scheme: HttpScheme::Https,
                host: "example.test".into(),
                port: 8443,
                path: "/healthz?full=1".into(),
                headers: vec![("X-Probe".into(), "yes".into())],
            }
        );
        let bad_port = HTTPGetAction {
            port: IntOrString::Int(70000),
            ..Default::default()
        };
        assert_eq!(
            http_check(&bad_port, &c, "10.0.0.5").unwrap_err(),
            ProbeError::InvalidPort {
                field: "httpGet.port",
                port: 70000
            }
        );
        let bad_scheme = HTTPGetAction {
            port: IntOrString::Int(80),
            scheme: Some("FTP".into()),
            ..Default::default()
        };
        assert_eq!(
            http_check(&bad_scheme, &c, "10.0.0.5").unwrap_err(),
            ProbeError::UnsupportedScheme("FTP".into())
        );
        let bad_header = HTTPGetAction {
            port: IntOrString::Int(80),
            http_headers: Some(vec![k8s_openapi::api::core::v1::HTTPHeader {
                name: "Bad Name".into(),
                value: "x".into(),
            }]),
            ..Default::default()
        };
        assert_eq!(
            http_check(&bad_header, &c, "10.0.0.5")
                .unwrap_err()
                .to_string(),
            "httpGet.httpHeaders[0].name: invalid HTTP header name \"Bad Name\""
        );
        let no_ip = HTTPGetAction {
            port: IntOrString::Int(80),
            ..Default::default()
        };
        assert_eq!(
            http_check(&no_ip, &c, "").unwrap_err(),
            ProbeError::NoHost {
                field: "httpGet.host"
            }
        );
    }

    #[test]
    fn grpc_actions_take_the_pod_ip() {
        let action = GRPCAction {
            port: 9000,
            service: Some("liveness".into()),
        };
        assert_eq!(
            grpc_check(&action, "10.0.0.5").unwrap(),
            NetworkCheck::Grpc {
                host: "10.0.0.5".into(),
                port: 9000,
                service: Some("liveness".into())
            }
        );
        let zero = GRPCAction {
            port: 0,
            service: None,
        };
        assert_eq!(
            grpc_check(&zero, "10.0.0.5").unwrap_err(),
            ProbeError::InvalidPort {
                field: "grpc.port",
                port: 0
            }
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn tcp_connects_to_a_listener() {
        require_root();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = NetworkCheck::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let outcome = run_check(None, &check, Duration::from_secs(5));
        assert_eq!(outcome, ProbeOutcome::pass());
        // The connection really reached the listener.
        listener.set_nonblocking(true).unwrap();
        assert!(
            listener.accept().is_ok(),
            "the probe's connection is queued"
        );
    }

    #[test]
    fn tcp_fails_where_nothing_listens() {
        require_root();
        let (_held, port) = refusing_port();
        let check = NetworkCheck::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let outcome = run_check(None, &check, Duration::from_secs(5));
        assert_eq!(
            outcome,
            ProbeOutcome::fail(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[test]
    fn spawn_check_reports_through_the_callback() {
        require_root();
        let (_held, port) = refusing_port();
        let (tx, rx) = mpsc::channel();
        spawn_check(
            None,
            NetworkCheck::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            Duration::from_secs(5),
            move |o| tx.send(o).unwrap(),
        );
        let outcome = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(!outcome.success);
        assert!(
            outcome.message.ends_with("connection refused"),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_missing_namespace_is_a_failure_naming_it() {
        require_root();
        let check = NetworkCheck::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let missing = Path::new("/run/peapod-probe-test/no-such-netns");
        let outcome = run_check(Some(missing), &check, Duration::from_secs(5));
        assert!(!outcome.success);
        assert!(
            outcome
                .message
                .starts_with("enter network namespace /run/peapod-probe-test/no-such-netns: "),
            "{outcome:?}"
        );
    }

    /// A thread living in a network namespace of its own (loopback up) until dropped.
    pub(crate) struct NetnsThread {
        tid: i32,
        stop: Option<mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl NetnsThread {
        /// Starts the thread; `inside` runs in the new namespace before the thread parks.
        pub(crate) fn start<T: Send + 'static>(
            inside: impl FnOnce() -> T + Send + 'static,
        ) -> (Self, T) {
            let (ready_tx, ready_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare CLONE_NEWNET");
                // A child forked from this thread inherits its network namespace.
                let status = Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("run ip link set lo up");
                assert!(status.success(), "ip link set lo up: {status}");
                let value = inside();
                ready_tx
                    .send((nix::unistd::gettid().as_raw(), value))
                    .unwrap();
                let _ = stop_rx.recv();
            });
            let (tid, value) = ready_rx
                .recv()
                .expect("the namespace thread started (see its panic above)");
            (
                NetnsThread {
                    tid,
                    stop: Some(stop_tx),
                    thread: Some(thread),
                },
                value,
            )
        }

        pub(crate) fn ns_path(&self) -> PathBuf {
            PathBuf::from(format!("/proc/self/task/{}/ns/net", self.tid))
        }
    }

    impl Drop for NetnsThread {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn checks_run_inside_the_given_network_namespace() {
        require_root();
        // Listening on loopback inside a fresh namespace: invisible from the host's.
        let (netns, listener) = NetnsThread::start(|| TcpListener::bind("127.0.0.1:0").unwrap());
        let port = listener.local_addr().unwrap().port();
        // On the host the same port is bound but not listening: refused, whatever else runs.
        let host_socket = TcpSocket::new_v4().unwrap();
        host_socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("the port is free on the host (a different namespace)");
        let check = NetworkCheck::Tcp {
            host: "127.0.0.1".into(),
            port,
        };

        let inside = run_check(Some(&netns.ns_path()), &check, Duration::from_secs(5));
        assert_eq!(inside, ProbeOutcome::pass());
        listener.set_nonblocking(true).unwrap();
        assert!(
            listener.accept().is_ok(),
            "the connection arrived at the listener inside the namespace"
        );

        let outside = run_check(None, &check, Duration::from_secs(5));
        assert!(!outside.success, "{outside:?}");
        assert!(
            outside.message.ends_with("connection refused"),
            "{outside:?}"
        );
        drop(listener);
        drop(netns);
    }
}
