//! `httpGet` probes and hooks: one HTTP/1.1 GET per connection (`Connection: close`, as the
//! kubelet disables keep-alives), over TLS without certificate verification for `HTTPS`.
//!
//! Redirects follow Go's `http.Client` with the kubelet's policy: 301, 302, 303, 307 and 308
//! with a `Location` are followed, at most 10 requests in all (then `stopped after 10
//! redirects`, a failure). A probe follows only redirects to the same host name (another
//! port or scheme is fine); a redirect elsewhere ends the probe on that 3xx response, which
//! is a success with the `Probe terminated redirects` warning. A hook follows any redirect.

use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::{Body as _, Incoming};
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, LOCATION, REFERER, USER_AGENT,
};
use hyper::Response;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::{
    dial, go_io_error, join_host_port, HttpPurpose, HttpScheme, ProbeOutcome, KUBE_VERSION,
};

/// The kubelet reads at most this much of a probe's response body.
const MAX_BODY: usize = 10 * 1024;

/// Go's `http.Client` gives up when an 11th request would be needed.
const MAX_REQUESTS: usize = 10;

/// An HTTP check, borrowed from its [`super::NetworkCheck::Http`].
pub(super) struct Request<'a> {
    pub purpose: HttpPurpose,
    pub scheme: HttpScheme,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

/// `httpGet.path` as a request target: `/` when empty, a leading `/` added, any fragment
/// dropped, and bytes that may not appear in a URI percent-encoded (as Go's `url.URL`
/// prints them).
pub(super) fn request_target(path: &str) -> String {
    let path = path.split('#').next().unwrap_or("");
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The URL as Go prints it in errors (`http://10.0.0.5:8080/healthz`).
pub(super) fn url_string(scheme: HttpScheme, host: &str, port: u16, target: &str) -> String {
    format!(
        "{}://{}{}",
        scheme.as_str(),
        join_host_port(host, port),
        target
    )
}

/// Where one request of the chain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: HttpScheme,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn url(&self) -> String {
        url_string(self.scheme, &self.host, self.port, &self.path)
    }

    /// Resolves a `Location` against this URL (RFC 3986 reference resolution, enough of
    /// it for redirects). The error is the whole failure message.
    fn resolve(&self, location: &str) -> Result<Target, String> {
        let parse_error = |why: &str| {
            format!(
                "Get \"{}\": failed to parse Location header \"{location}\": {why}",
                self.url()
            )
        };
        if let Some(rest) = location.strip_prefix("//") {
            return self
                .with_authority(self.scheme, rest)
                .map_err(|w| parse_error(&w));
        }
        if let Some((scheme, rest)) = split_scheme(location) {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "http" => HttpScheme::Http,
                "https" => HttpScheme::Https,
                other => {
                    return Err(format!(
                        "Get \"{location}\": unsupported protocol scheme \"{other}\""
                    ))
                }
            };
            let Some(rest) = rest.strip_prefix("//") else {
                return Err(parse_error("missing host"));
            };
            return self
                .with_authority(scheme, rest)
                .map_err(|w| parse_error(&w));
        }
        let current_path = self.path.split('?').next().unwrap_or("/");
        let path = if location.starts_with('/') {
            location.to_owned()
        } else if location.starts_with('?') {
            format!("{current_path}{location}")
        } else {
            let dir = &current_path[..current_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Target {
            path: request_target(&remove_dot_segments(&path)),
            ..self.clone()
        })
    }

    /// A target from `host[:port][/path]` (user info ignored).
    fn with_authority(&self, scheme: HttpScheme, rest: &str) -> Result<Target, String> {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6.find(']').ok_or("missing ']' in host")?;
            (&v6[..close], v6[close + 1..].strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        let port = match port.filter(|p| !p.is_empty()) {
            None => match scheme {
                HttpScheme::Http => 80,
                HttpScheme::Https => 443,
            },
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("invalid port \":{p}\" after host"))?,
        };
        Ok(Target {
            scheme,
            host: host.to_owned(),
            port,
            path: request_target(&remove_dot_segments(path)),
        })
    }
}

/// `scheme:rest` when `s` starts with a URI scheme.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &s[colon + 1..]))
}

/// RFC 3986 section 5.2.4 on the path part (the query is kept as is).
fn remove_dot_segments(target: &str) -> String {
    let (path, query) = match target.find('?') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    joined + query
}

/// Runs an HTTP check to the end (all redirects, the body read) before `deadline`.
pub(super) async fn check(req: &Request<'_>, deadline: Instant) -> ProbeOutcome {
    let mut target = Target {
        scheme: req.scheme,
        host: req.host.to_owned(),
        port: req.port,
        path: req.path.to_owned(),
    };
    // Go's `req.Host`: the first `Host` header, when not empty.
    let mut host_override = req
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.clone())
        .filter(|v| !v.is_empty());
    let mut referer = None;
    let mut tls = None;
    let mut requests = 0;
    loop {
        let url = target.url();
        requests += 1;
        let sent = timeout_at(
            deadline,
            send(
                req,
                &target,
                host_override.as_deref(),
                referer.as_deref(),
                &mut tls,
            ),
        )
        .await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(why)) => return ProbeOutcome::fail(format!("Get \"{url}\": {why}")),
            Err(_) => {
                return ProbeOutcome::fail(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while \
                     awaiting headers)"
                ))
            }
        };
        let location = redirect_location(&response);
        if let Some(location) = location {
            let next = match target.resolve(&location) {
                Ok(next) => next,
                Err(message) => return ProbeOutcome::fail(message),
            };
            let follow = req.purpose == HttpPurpose::Hook || next.host == req.host;
            if follow {
                if requests >= MAX_REQUESTS {
                    return ProbeOutcome::fail(format!(
                        "Get \"{location}\": stopped after {MAX_REQUESTS} redirects"
                    ));
                }
                // Go keeps a custom Host only through a relative redirect, and sends no
                // Referer from https to http.
                if split_scheme(&location).is_some() || location.starts_with("//") {
                    host_override = None;
                }
                referer = (target.scheme == HttpScheme::Http || next.scheme == HttpScheme::Https)
                    .then(|| url.clone());
                target = next;
                continue;
            }
        }
        return finish(req.purpose, response, deadline).await;
    }
}

/// The `Location` of a response Go's client would follow.
fn redirect_location(response: &Response<Incoming>) -> Option<String> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(LOCATION)?;
    let location = String::from_utf8_lossy(location.as_bytes())
        .trim()
        .to_owned();
    (!location.is_empty()).then_some(location)
}

/// Judges the final response: status for a probe (after reading at most 10 KiB of body),
/// mere arrival for a hook.
async fn finish(
    purpose: HttpPurpose,
    response: Response<Incoming>,
    deadline: Instant,
) -> ProbeOutcome {
    if purpose == HttpPurpose::Hook {
        return ProbeOutcome::pass();
    }
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let body = match timeout_at(deadline, read_capped(&mut body)).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(e)) => return ProbeOutcome::fail(go_body_error(&e)),
        Err(_) => {
            return ProbeOutcome::fail(
                "context deadline exceeded (Client.Timeout or context cancellation while \
                 reading body)"
                    .into(),
            )
        }
    };
    match status {
        200..=299 => ProbeOutcome::pass(),
        300..=399 => {
            ProbeOutcome::warn(format!("Probe terminated redirects, Response body: {body}"))
        }
        _ => ProbeOutcome::fail(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// Reads the body up to [`MAX_BODY`] bytes; the rest is never read (the connection closes).
async fn read_capped(body: &mut Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < MAX_BODY {
        let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await else {
            break;
        };
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    out.truncate(MAX_BODY);
    Ok(out)
}

/// One request on a new connection, up to the response head.
async fn send(
    req: &Request<'_>,
    target: &Target,
    host_override: Option<&str>,
    referer: Option<&str>,
    tls: &mut Option<TlsConnector>,
) -> Result<Response<Incoming>, String> {
    let request = build_request(req, target, host_override, referer)?;
    let stream = dial(&target.host, target.port).await.map_err(|e| e.0)?;
    let addrs = (stream.local_addr().ok(), stream.peer_addr().ok());
    match target.scheme {
        HttpScheme::Http => exchange(TokioIo::new(stream), request, addrs).await,
        HttpScheme::Https => {
            let connector = match tls {
                Some(c) => c.clone(),
                None => tls.insert(insecure_tls()?).clone(),
            };
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("tls: invalid server name {:?}: {e}", target.host))?;
            let stream = connector.connect(name, stream).await.map_err(tls_error)?;
            exchange(TokioIo::new(stream), request, addrs).await
        }
    }
}

/// The GET with the kubelet's headers: the user's, then `User-Agent: kube-probe/1.33` (or
/// `kube-lifecycle/1.33`) and `Accept: */*` unless given (an empty `Accept` removes it).
fn build_request(
    req: &Request<'_>,
    target: &Target,
    host_override: Option<&str>,
    referer: Option<&str>,
) -> Result<hyper::Request<String>, String> {
    let mut request = hyper::Request::get(target.path.as_str())
        .body(String::new())
        .map_err(|e| format!("parse \"{}\": {e}", target.url()))?;
    let headers = request.headers_mut();
    let host = host_override
        .map(str::to_owned)
        .unwrap_or_else(|| join_host_port(&target.host, target.port));
    headers.insert(
        HOST,
        HeaderValue::from_str(&host).map_err(|_| format!("invalid Host header {host:?}"))?,
    );
    for (name, value) in req.headers {
        // Checked when the check was built; a bad one cannot get here.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if name != HOST {
            headers.append(name, value);
        }
    }
    if !headers.contains_key(USER_AGENT) {
        let agent = match req.purpose {
            HttpPurpose::Probe => format!("kube-probe/{KUBE_VERSION}"),
            HttpPurpose::Hook => format!("kube-lifecycle/{KUBE_VERSION}"),
        };
        headers.insert(USER_AGENT, HeaderValue::from_str(&agent).expect("ASCII"));
    }
    match headers.get(ACCEPT).map(|v| v.is_empty()) {
        None => {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(true) => {
            headers.remove(ACCEPT);
        }
        Some(false) => {}
    }
    if let Some(referer) = referer.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(REFERER, referer);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// HTTP/1.1 over `io`: handshake, send, wait for the response head. The connection is
/// driven by a task of the check's runtime, which goes away with it.
async fn exchange<T>(
    io: T,
    request: hyper::Request<String>,
    addrs: (Option<SocketAddr>, Option<SocketAddr>),
) -> Result<Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(io)
        .await
        .map_err(|e| go_hyper_error(&e, addrs))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| go_hyper_error(&e, addrs))
}

/// A transport error as Go's `net/http` words it.
fn go_hyper_error(
    e: &hyper::Error,
    (local, peer): (Option<SocketAddr>, Option<SocketAddr>),
) -> String {
    if e.is_incomplete_message() {
        // The server closed the connection without a complete response.
        return "EOF".into();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match (local, peer) {
                (Some(l), Some(p)) => format!("read tcp {l}->{p}: read: {}", go_io_error(io)),
                _ => go_io_error(io),
            };
        }
        source = s.source();
    }
    if e.is_parse() {
        return format!(
            "net/http: HTTP/1.x transport connection broken: malformed HTTP response: {e}"
        );
    }
    e.to_string()
}

fn go_body_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "unexpected EOF".into()
    } else {
        go_hyper_error(e, (None, None))
    }
}

/// A TLS handshake error as Go's `crypto/tls` words the common ones.
fn tls_error(e: io::Error) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                "tls: first record does not look like a TLS handshake".into()
            }
            rustls::Error::AlertReceived(alert) => {
                format!(
                    "remote error: tls: {}",
                    spaced_lowercase(&format!("{alert:?}"))
                )
            }
            other => format!("tls: {other}"),
        };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "EOF".into();
    }
    go_io_error(&e)
}

/// `HandshakeFailure` → `handshake failure`.
fn spaced_lowercase(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A TLS client that accepts any server certificate, as the kubelet's probes do
/// (`InsecureSkipVerify`); the handshake signatures are still checked.
fn insecure_tls() -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;
    use crate::probe::tests::{refusing_port, require_root};
    use crate::probe::{run_check, NetworkCheck};

    /// What a test server does with a request head.
    enum Reply {
        /// Writes these bytes and closes.
        Send(Vec<u8>),
        /// Keeps the connection open and never answers.
        Silence,
    }

    /// A one-connection-at-a-time HTTP(S) server on 127.0.0.1 that records request heads.
    struct TestServer {
        port: u16,
        requests: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl TestServer {
        fn start(
            tls: Option<Arc<rustls::ServerConfig>>,
            reply: impl Fn(&str) -> Reply + Send + 'static,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (seen, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let mut held = Vec::new();
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut stream: Box<dyn ReadWrite> = match &tls {
                        None => Box::new(conn),
                        Some(config) => Box::new(rustls::StreamOwned::new(
                            rustls::ServerConnection::new(Arc::clone(config)).unwrap(),
                            conn,
                        )),
                    };
                    let Some(head) = read_head(&mut *stream) else {
                        continue;
                    };
                    seen.lock().unwrap().push(head.clone());
                    match reply(&head) {
                        Reply::Send(bytes) => {
                            // The client may hang up early (a capped body): not an error.
                            let _ = stream.write_all(&bytes);
                            let _ = stream.flush();
                        }
                        Reply::Silence => held.push(stream),
                    }
                }
            });
            TestServer {
                port,
                requests,
                stop,
                thread: Some(thread),
            }
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }

        fn check(&self, scheme: HttpScheme, path: &str) -> NetworkCheck {
            NetworkCheck::Http {
                purpose: HttpPurpose::Probe,
                scheme,
                host: "127.0.0.1".into(),
                port: self.port,
                path: path.into(),
                headers: vec![],
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    trait ReadWrite: Read + Write + Send {}
    impl<T: Read + Write + Send> ReadWrite for T {}

    fn read_head(stream: &mut dyn ReadWrite) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    fn response(status: &str, extra_headers: &str, body: &str) -> Reply {
        Reply::Send(
            format!(
                "HTTP/1.1 {status}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    const SECS5: Duration = Duration::from_secs(5);

    #[test]
    fn a_200_passes_with_the_kubelet_headers() {
        require_root();
        let server = TestServer::start(None, |_| response("200 OK", "", "ok"));
        let outcome = run_check(None, &server.check(HttpScheme::Http, "/healthz"), SECS5);
        assert_eq!(outcome, ProbeOutcome::pass());
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let head = &requests[0];
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        for line in [
            format!("Host: 127.0.0.1:{}\r\n", server.port),
            "User-Agent: kube-probe/1.33\r\n".into(),
            "Accept: */*\r\n".into(),
            "Connection: close\r\n".into(),
        ] {
            assert!(head.contains(&line), "{line:?} missing in {head}");
        }
    }

    #[test]
    fn a_500_fails_with_its_status_code() {
        require_root();
        let server = TestServer::start(None, |_| response("500 Internal Server Error", "", "no"));
        let outcome = run_check(None, &server.check(HttpScheme::Http, "/"), SECS5);
        assert_eq!(
            outcome,
            ProbeOutcome::fail("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[test]
    fn headers_are_sent_and_a_host_header_replaces_the_host() {
        require_root();
        let server = TestServer::start(None, |_| response("204 No Content", "", ""));
        let check = NetworkCheck::Http {
            purpose: HttpPurpose::Probe,
            scheme: HttpScheme::Http,
            host: "127.0.0.1".into(),
            port: server.port,
            path: "/".into(),
            headers: vec![
                ("Host".into(), "app.example.test".into()),
                ("X-Probe".into(), "1".into()),
                ("User-Agent".into(), "mine".into()),
            ],
        };
        assert_eq!(run_check(None, &check, SECS5), ProbeOutcome::pass());
        let head = &server.requests()[0];
        assert!(head.contains("Host: app.example.test\r\n"), "{head}");
        assert_eq!(head.matches("Host:").count(), 1, "{head}");
        assert!(head.contains("X-Probe: 1\r\n"), "{head}");
        assert!(head.contains("User-Agent: mine\r\n"), "{head}");
        assert!(!head.contains("kube-probe"), "{head}");
    }

    #[test]
    fn a_redirect_on_the_same_host_is_followed() {
        require_root();
        let server = TestServer::start(None, |head| {
            if head.starts_with("GET /old ") {
                response("302 Found", "Location: /new?x=1\r\n", "")
            } else if head.starts_with("GET /new?x=1 ") {
                response("500 Internal Server Error", "", "")
            } else {
                response("404 Not Found", "", "")
            }
        });
        let outcome = run_check(None, &server.check(HttpScheme::Http, "/old"), SECS5);
        // The 500 at the end of the redirect decides.
        assert_eq!(
            outcome,
            ProbeOutcome::fail("HTTP probe failed with statuscode: 500".into())
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(
            requests[1].contains(&format!(
                "Referer: http://127.0.0.1:{}/old\r\n",
                server.port
            )),
            "{}",
            requests[1]
        );
    }

    #[test]
    fn a_redirect_to_another_host_ends_the_probe_with_a_warning() {
        require_root();
        // The body is larger than the kubelet reads: the warning carries 10 KiB of it.
        let big = "x".repeat(64 * 1024);
        let server = TestServer::start(None, move |_| {
            response(
                "301 Moved Permanently",
                "Location: http://elsewhere.test/\r\n",
                &big,
            )
        });
        let outcome = run_check(None, &server.check(HttpScheme::Http, "/"), SECS5);
        assert!(outcome.success, "{outcome:?}");
        let prefix = "Probe terminated redirects, Response body: ";
        assert!(
            outcome.message.starts_with(prefix),
            "{}",
            &outcome.message[..80]
        );
        assert_eq!(outcome.message.len(), prefix.len() + MAX_BODY);
        assert_eq!(server.requests().len(), 1, "not followed");
    }

    #[test]
    fn a_redirect_loop_stops_after_ten_requests() {
        require_root();
        let server = TestServer::start(None, |_| response("302 Found", "Location: /again\r\n", ""));
        let outcome = run_check(None, &server.check(HttpScheme::Http, "/"), SECS5);
        assert_eq!(
            outcome,
            ProbeOutcome::fail("Get \"/again\": stopped after 10 redirects".into())
        );
        assert_eq!(server.requests().len(), 10);
    }

    #[test]
    fn a_server_that_never_answers_fails_on_the_timeout() {
        require_root();
        let server = TestServer::start(None, |_| Reply::Silence);
        let outcome = run_check(
            None,
            &server.check(HttpScheme::Http, "/"),
            Duration::from_secs(1),
        );
        assert_eq!(
            outcome,
            ProbeOutcome::fail(format!(
                "Get \"http://127.0.0.1:{}/\": context deadline exceeded (Client.Timeout \
                 exceeded while awaiting headers)",
                server.port
            ))
        );
        assert_eq!(server.requests().len(), 1, "the request was sent");
    }

    #[test]
    fn a_refused_connection_fails_as_go_words_it() {
        require_root();
        let (_held, port) = refusing_port();
        let check = NetworkCheck::Http {
            purpose: HttpPurpose::Probe,
            scheme: HttpScheme::Http,
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: vec![],
        };
        assert_eq!(
            run_check(None, &check, SECS5),
            ProbeOutcome::fail(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            ))
        );
    }

    #[test]
    fn https_with_a_self_signed_certificate_passes() {
        require_root();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let server = TestServer::start(Some(Arc::new(config)), |_| response("200 OK", "", "ok"));
        let outcome = run_check(None, &server.check(HttpScheme::Https, "/tls"), SECS5);
        assert_eq!(outcome, ProbeOutcome::pass());
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].starts_with("GET /tls HTTP/1.1\r\n"),
            "{requests:?}"
        );
    }

    #[test]
    fn https_to_a_plain_server_fails() {
        require_root();
        // A plain HTTP server answers the ClientHello with a 400, as real ones do.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = conn.read(&mut hello);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        });
        let check = NetworkCheck::Http {
            purpose: HttpPurpose::Probe,
            scheme: HttpScheme::Https,
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
            headers: vec![],
        };
        let outcome = run_check(None, &check, SECS5);
        server.join().unwrap();
        assert_eq!(
            outcome,
            ProbeOutcome::fail(format!(
                "Get \"https://127.0.0.1:{port}/\": tls: first record does not look like a TLS \
                 handshake"
            ))
        );
    }

    #[test]
    fn a_hook_passes_on_any_response_and_fails_without_one() {
        require_root();
        let server = TestServer::start(None, |_| response("500 Internal Server Error", "", ""));
        let mut check = server.check(HttpScheme::Http, "/prestop");
        if let NetworkCheck::Http { purpose, .. } = &mut check {
            *purpose = HttpPurpose::Hook;
        }
        assert_eq!(run_check(None, &check, SECS5), ProbeOutcome::pass());
        let head = &server.requests()[0];
        assert!(
            head.contains("User-Agent: kube-lifecycle/1.33\r\n"),
            "{head}"
        );

        let (_held, port) = refusing_port();
        if let NetworkCheck::Http { port: p, .. } = &mut check {
            *p = port;
        }
        let outcome = run_check(None, &check, SECS5);
        assert!(!outcome.success);
        assert!(
            outcome.message.ends_with("connect: connection refused"),
            "{outcome:?}"
        );
    }

    #[test]
    fn paths_become_request_targets() {
        assert_eq!(request_target(""), "/");
        assert_eq!(request_target("healthz"), "/healthz");
        assert_eq!(request_target("/a b?q=\"1\"#frag"), "/a%20b?q=%221%22");
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Target {
            scheme: HttpScheme::Http,
            host: "10.0.0.5".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        };
        let at = |loc: &str| base.resolve(loc).unwrap();
        assert_eq!(at("/c").path, "/c");
        assert_eq!(at("c").path, "/a/c");
        assert_eq!(at("../c").path, "/c");
        assert_eq!(at("?y=2").path, "/a/b?y=2");
        let abs = at("https://[fd00::1]:8443/z");
        assert_eq!(
            (abs.scheme, abs.host.as_str(), abs.port, abs.path.as_str()),
            (HttpScheme::Https, "fd00::1", 8443, "/z")
        );
        let relative_scheme = at("//other.test");
        assert_eq!(
            (
                relative_scheme.host.as_str(),
                relative_scheme.port,
                relative_scheme.path.as_str()
            ),
            ("other.test", 80, "/")
        );
        assert_eq!(
            base.resolve("ftp://x/").unwrap_err(),
            "Get \"ftp://x/\": unsupported protocol scheme \"ftp\""
        );
    }
}
