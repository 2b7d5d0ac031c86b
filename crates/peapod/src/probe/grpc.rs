//! `grpc` probes: `grpc.health.v1.Health/Check` over plain-text HTTP/2 (h2c), as the
//! kubelet makes them with grpc-go: a blocking dial that retries until the deadline, then
//! one call; only `SERVING` passes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};
use tonic::codegen::Service;
use tonic::transport::{Endpoint, Uri};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::{dial, go_duration, join_host_port, ProbeOutcome, KUBE_VERSION};

/// The kubelet's message when no connection could be made in time (grpc-go keeps retrying a
/// refused connection, so this is also the message when nothing listens).
pub(super) fn connect_timeout_message(addr: &str, timeout: Duration) -> String {
    format!(
        "timeout: failed to connect service \"{addr}\" within {}: context deadline exceeded",
        go_duration(timeout)
    )
}

/// Runs the health check to `host:port` before `deadline` (`timeout` is for the messages).
pub(super) async fn check(
    host: &str,
    port: u16,
    service: Option<&str>,
    deadline: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    let addr = join_host_port(host, port);
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(format!("kube-probe/{KUBE_VERSION}")))
    {
        Ok(endpoint) => endpoint,
        Err(e) => {
            return ProbeOutcome::fail(format!(
                "error: failed to connect service at \"{addr}\": {e}"
            ))
        }
    };
    let mut backoff = Duration::from_millis(100);
    let channel = loop {
        let dialer = Dialer {
            host: host.to_owned(),
            port,
        };
        match timeout_at(deadline, endpoint.connect_with_connector(dialer)).await {
            Ok(Ok(channel)) => break channel,
            Ok(Err(_)) => {
                if timeout_at(deadline, sleep(backoff)).await.is_err() {
                    return ProbeOutcome::fail(connect_timeout_message(&addr, timeout));
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(_) => return ProbeOutcome::fail(connect_timeout_message(&addr, timeout)),
        }
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.unwrap_or_default().to_owned(),
    });
    // The remaining time travels as `grpc-timeout`, as grpc-go sends the context deadline.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let rpc_timeout = || {
        ProbeOutcome::fail(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        ))
    };
    match timeout_at(deadline, HealthClient::new(channel).check(request)).await {
        Err(_) => rpc_timeout(),
        Ok(Err(status)) => match status.code() {
            Code::Unimplemented => ProbeOutcome::fail(format!(
                "error: this server does not implement the grpc health protocol \
                 (grpc.health.v1.Health): {}",
                status.message()
            )),
            Code::DeadlineExceeded => rpc_timeout(),
            code => ProbeOutcome::fail(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {}",
                go_code(code),
                status.message()
            )),
        },
        Ok(Ok(response)) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                ProbeOutcome::pass()
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name().to_owned())
                    .unwrap_or_else(|_| status.to_string());
                ProbeOutcome::fail(format!("service unhealthy (responded with \"{name}\")"))
            }
        }
    }
}

/// grpc-go's names of the status codes (`codes.Code.String`).
fn go_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// tonic's connector: our own dial, so that the socket is made on the check's thread (in
/// the pod's network namespace) with the same name lookup and errors as the other checks.
struct Dialer {
    host: String,
    port: u16,
}

impl Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (host, port) = (self.host.clone(), self.port);
        Box::pin(async move {
            dial(&host, port)
                .await
                .map(TokioIo::new)
                .map_err(|e| io::Error::other(e.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::thread::JoinHandle;

    use tokio::sync::oneshot;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::Server;

    use super::*;
    use crate::probe::tests::{refusing_port, require_root, NetnsThread};
    use crate::probe::{run_check, NetworkCheck};

    /// tonic-health's server on 127.0.0.1 with the overall status ("") set, on a thread and
    /// runtime of its own, shut down on drop.
    struct HealthServer {
        port: u16,
        shutdown: Option<oneshot::Sender<()>>,
        thread: Option<JoinHandle<()>>,
    }

    impl HealthServer {
        fn start(status: tonic_health::ServingStatus) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let (tx, rx) = oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let (reporter, service) = tonic_health::server::health_reporter();
                    reporter.set_service_status("", status).await;
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                            let _ = rx.await;
                        })
                        .await
                        .unwrap();
                });
            });
            HealthServer {
                port,
                shutdown: Some(tx),
                thread: Some(thread),
            }
        }

        fn check(&self, service: Option<&str>) -> NetworkCheck {
            NetworkCheck::Grpc {
                host: "127.0.0.1".into(),
                port: self.port,
                service: service.map(str::to_owned),
            }
        }
    }

    impl Drop for HealthServer {
        fn drop(&mut self) {
            if let Some(tx) = self.shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    const SECS5: Duration = Duration::from_secs(5);

    #[test]
    fn serving_passes() {
        require_root();
        let server = HealthServer::start(tonic_health::ServingStatus::Serving);
        assert_eq!(
            run_check(None, &server.check(None), SECS5),
            ProbeOutcome::pass()
        );
    }

    #[test]
    fn not_serving_fails_with_the_status() {
        require_root();
        let server = HealthServer::start(tonic_health::ServingStatus::NotServing);
        assert_eq!(
            run_check(None, &server.check(None), SECS5),
            ProbeOutcome::fail("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    #[test]
    fn an_unknown_service_fails_with_the_rpc_error() {
        require_root();
        let server = HealthServer::start(tonic_health::ServingStatus::Serving);
        let outcome = run_check(None, &server.check(Some("no.such.Service")), SECS5);
        assert!(!outcome.success);
        assert!(
            outcome
                .message
                .starts_with("error: health rpc probe failed: rpc error: code = NotFound desc = "),
            "{outcome:?}"
        );
    }

    #[test]
    fn nothing_listening_fails_once_the_timeout_is_spent() {
        require_root();
        let (_held, port) = refusing_port();
        let check = NetworkCheck::Grpc {
            host: "127.0.0.1".into(),
            port,
            service: None,
        };
        assert_eq!(
            run_check(None, &check, Duration::from_secs(1)),
            ProbeOutcome::fail(format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context \
                 deadline exceeded"
            ))
        );
    }

    #[test]
    fn grpc_checks_run_inside_the_given_network_namespace() {
        require_root();
        // The server's socket and thread are made inside the namespace.
        let (netns, server) =
            NetnsThread::start(|| HealthServer::start(tonic_health::ServingStatus::Serving));
        // On the host the same port is bound but not listening.
        let host_socket = tokio::net::TcpSocket::new_v4().unwrap();
        host_socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], server.port)))
            .expect("the port is free on the host (a different namespace)");
        let inside = run_check(Some(&netns.ns_path()), &server.check(None), SECS5);
        assert_eq!(inside, ProbeOutcome::pass());
        let outside = run_check(None, &server.check(None), Duration::from_secs(1));
        assert!(
            outside
                .message
                .starts_with("timeout: failed to connect service"),
            "{outside:?}"
        );
        drop(server);
        drop(netns);
    }

    #[test]
    fn go_code_names() {
        assert_eq!(go_code(Code::Cancelled), "Canceled");
        assert_eq!(go_code(Code::Ok), "OK");
    }
}
