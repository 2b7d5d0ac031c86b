//! The CRI streaming server, as containerd's: `Exec`, `Attach` and `PortForward` check the
//! request and answer a URL (`http://<addr>/exec/<token>`, `/attach/…`, `/portforward/…`)
//! on a plain HTTP server of its own (loopback by default); the kubelet, or crictl, then
//! upgrades a connection to it. A token is random, single-use and expires after a minute.
//! Exec and attach speak the remotecommand protocols through the same transports as the
//! Kubernetes API's `pods/exec` (SPDY/3.1 `v4.channel.k8s.io`, WebSocket `v5`/`v4`);
//! port-forward speaks SPDY/3.1 `portforward.k8s.io` (per forwarded connection the client
//! opens an `error` and a `data` stream carrying `port` and `requestid`) and WebSocket as
//! the kubelet's `portforward/websocket.go` does (`v4.channel.k8s.io`, its base64 variant,
//! or no sub-protocol: one connection per port of the request, or of the `port` query
//! parameters when the request named none, on channels 2i (data) and 2i+1 (error), each
//! opened by a frame holding the port as a little-endian u16). Either way the server
//! connects to `localhost:<port>` in the sandbox's network namespace and relays bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::server::attach as attach_session;
use crate::server::exec::{self, Wanted, V4, V5};
use crate::server::spdy;

/// How long a URL stays valid (containerd's `StreamIdleTimeout` for tokens).
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many URLs wait for their connection (containerd's `maxInFlight`).
const MAX_IN_FLIGHT: usize = 1000;
/// The SPDY sub-protocol of port-forward.
pub const PORT_FORWARD_V1: &str = "portforward.k8s.io";
/// Port-forward's WebSocket sub-protocols (binary channels, base64 text channels); a
/// client offering none gets binary channels.
pub const PORT_FORWARD_WS_V4: &str = "v4.channel.k8s.io";
pub const PORT_FORWARD_WS_V4_BASE64: &str = "v4.base64.channel.k8s.io";

/// What a token stands for, checked and ready when its connection arrives.
pub enum Pending {
    /// An exec: the runtime's `exec` command and the streams asked for.
    Exec(exec::Session, Wanted),
    /// An attach to a container's attach socket.
    Attach(attach_session::Session),
    /// A port-forward into a sandbox.
    PortForward(PortForward),
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(..) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// A port-forward's target.
#[derive(Debug, Clone, Default)]
pub struct PortForward {
    /// The sandbox's network namespace (None: the host's).
    pub netns: Option<PathBuf>,
    /// The ports of the request (WebSocket clients may name them in the URL instead).
    pub ports: Vec<u16>,
}

/// The streaming server: its address and the tokens not used yet.
pub struct Streaming {
    addr: SocketAddr,
    tokens: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Streaming {
    /// Binds `listen` (port 0: a random port) and serves until the process ends.
    pub async fn start(listen: SocketAddr) -> Result<Arc<Self>> {
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the CRI streaming server on {listen}"))?;
        let addr = tcp.local_addr()?;
        let me = Arc::new(Self {
            addr,
            tokens: Mutex::new(HashMap::new()),
        });
        let router = axum::Router::new()
            .route("/{kind}/{token}", axum::routing::any(serve_token))
            .with_state(me.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(me)
    }

    /// The address URLs point at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Keeps `what` under a new token and returns its URL.
    pub fn url_for(&self, what: Pending) -> Result<String, tonic::Status> {
        let kind = what.kind();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, (made, _)| made.elapsed() < TOKEN_TTL);
        if tokens.len() >= MAX_IN_FLIGHT {
            return Err(tonic::Status::resource_exhausted(
                "maximum number of in-flight streaming requests exceeded",
            ));
        }
        let token = new_token();
        tokens.insert(token.clone(), (Instant::now(), what));
        Ok(format!("http://{}/{kind}/{token}", self.addr))
    }

    /// The ports a port-forward token's request named (None: no such token).
    fn ports_of(&self, token: &str) -> Option<Vec<u16>> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some((made, Pending::PortForward(pf))) if made.elapsed() < TOKEN_TTL => {
                Some(pf.ports.clone())
            }
            _ => None,
        }
    }

    /// Takes a token's request (once), if it is still valid and of this kind.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some((made, p)) if p.kind() == kind && made.elapsed() < TOKEN_TTL => {}
            _ => return None,
        }
        tokens.remove(token).map(|(_, p)| p)
    }
}

/// A random URL-safe token (8 random bytes, as containerd's).
fn new_token() -> String {
    peapod_store::new_id()[..16].to_string()
}

fn plain(code: u16, text: impl Into<String>) -> Response {
    Response::builder()
        .status(code)
        .header(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )
        .body(axum::body::Body::from(text.into()))
        .unwrap_or_default()
}

fn upgrade_kind(req: &axum::extract::Request) -> String {
    req.headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The stream protocols a SPDY client offers.
fn offered(req: &axum::extract::Request) -> Vec<String> {
    req.headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect()
}

/// `/{exec,attach,portforward}/{token}`: the token's session over the upgraded connection.
async fn serve_token(
    State(st): State<Arc<Streaming>>,
    Path((kind, token)): Path<(String, String)>,
    mut req: axum::extract::Request,
) -> Response {
    if !matches!(kind.as_str(), "exec" | "attach" | "portforward") {
        return plain(404, format!("no streaming endpoint {kind:?}"));
    }
    let upgrade = upgrade_kind(&req);
    let spdy = upgrade == "spdy/3.1";
    if !spdy && upgrade != "websocket" {
        return plain(
            400,
            format!("{kind} needs a SPDY/3.1 or WebSocket upgrade, got {upgrade:?}"),
        );
    }
    // The protocol is checked before the token is spent, so a client may retry.
    let protocols = offered(&req);
    let wanted = if kind == "portforward" {
        PORT_FORWARD_V1
    } else {
        V4
    };
    if spdy && !protocols.iter().any(|p| p == wanted) {
        return plain(
            403,
            format!("unable to upgrade: no common stream protocol with {protocols:?}: peapod speaks {wanted} over SPDY"),
        );
    }
    // A WebSocket port-forward: its sub-protocol and ports, as the kubelet checks them.
    let mut ws_forward = None;
    if !spdy && kind == "portforward" {
        let protocol = match ws_port_forward_protocol(&req) {
            Ok(p) => p,
            Err(msg) => return plain(400, msg),
        };
        let mut ports = match st.ports_of(&token) {
            Some(p) => p,
            None => return plain(404, format!("unknown or expired {kind} token {token:?}")),
        };
        if ports.is_empty() {
            ports = match query_ports(req.uri().query().unwrap_or_default()) {
                Ok(p) => p,
                Err(msg) => return plain(400, msg),
            };
        }
        // Two channels per port, numbered by one byte.
        if ports.len() > 128 {
            return plain(
                400,
                format!("{} ports asked for: at most 128 per WebSocket", ports.len()),
            );
        }
        ws_forward = Some((protocol, ports));
    }
    let Some(pending) = st.take(&kind, &token) else {
        return plain(404, format!("unknown or expired {kind} token {token:?}"));
    };
    if !spdy {
        let (mut parts, _) = req.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return plain(400, format!("{kind}: bad WebSocket upgrade: {e}")),
        };
        if let (Pending::PortForward(pf), Some((protocol, ports))) = (&pending, ws_forward) {
            let netns = pf.netns.clone();
            let base64 = protocol == Some(PORT_FORWARD_WS_V4_BASE64);
            let ws = match protocol {
                Some(p) => ws.protocols([p]),
                None => ws,
            };
            return ws
                .on_upgrade(move |socket| port_forward_ws(socket, netns, ports, base64))
                .into_response();
        }
        let ws = ws.protocols([V5, V4]);
        return match pending {
            Pending::Exec(session, _) => ws
                .on_upgrade(move |socket| {
                    exec::over_websocket(socket, |tx, rx| exec::run_session(session, tx, rx))
                })
                .into_response(),
            Pending::Attach(s) => ws
                .on_upgrade(move |socket| {
                    exec::over_websocket(socket, move |tx, rx| attach_session::relay(s, tx, rx))
                })
                .into_response(),
            Pending::PortForward(_) => plain(500, "port-forward without its ports"),
        };
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        match pending {
            Pending::Exec(session, w) => {
                exec::over_spdy(io, w, |tx, rx| exec::run_session(session, tx, rx)).await
            }
            Pending::Attach(s) => {
                let w = Wanted {
                    stdin: s.stdin,
                    stdout: true,
                    stderr: s.stderr,
                    tty: s.tty,
                };
                exec::over_spdy(io, w, move |tx, rx| attach_session::relay(s, tx, rx)).await
            }
            Pending::PortForward(pf) => port_forward(io, pf.netns).await,
        }
    });
    Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "Upgrade")
        .header(axum::http::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", wanted)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// One forwarded connection's streams, as they open.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: String,
    /// Data for the connection (None: the client finished writing).
    to_conn: Option<mpsc::Sender<Option<Vec<u8>>>>,
}

/// A port-forward session: every (error, data) pair of streams with the same `requestid`
/// becomes a connection to `localhost:<port>` in `netns`.
async fn port_forward<T>(io: T, netns: Option<PathBuf>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (writer, mut events) = spdy::session(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Data stream id → its request id.
    let mut by_data: HashMap<u32, String> = HashMap::new();
    let mut pending_data: HashMap<u32, Vec<Option<Vec<u8>>>> = HashMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            spdy::Event::Opened {
                stream,
                kind,
                headers,
            } => {
                let header = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                // Clients before requestid pair streams by order: the error stream, then data.
                let rid = header("requestid");
                let pair = pairs.entry(rid.clone()).or_default();
                pair.port = header("port");
                match kind.as_str() {
                    "error" => pair.error = Some(stream),
                    "data" => {
                        pair.data = Some(stream);
                        by_data.insert(stream, rid.clone());
                    }
                    _ => continue,
                }
                if let (Some(err), Some(data)) = (pair.error, pair.data) {
                    let (tx, rx) = mpsc::channel(256);
                    for d in pending_data.remove(&data).unwrap_or_default() {
                        let _ = tx.try_send(d);
                    }
                    pair.to_conn = Some(tx);
                    tokio::spawn(forward(
                        writer.clone(),
                        netns.clone(),
                        pair.port.clone(),
                        err,
                        data,
                        rx,
                    ));
                }
            }
            spdy::Event::Data { stream, data } => {
                let tx = by_data
                    .get(&stream)
                    .and_then(|rid| pairs.get(rid))
                    .and_then(|p| p.to_conn.clone());
                match tx {
                    Some(tx) => {
                        let _ = tx.send(Some(data)).await;
                    }
                    None => pending_data.entry(stream).or_default().push(Some(data)),
                }
            }
            spdy::Event::Closed { stream } => {
                if let Some(rid) = by_data.remove(&stream) {
                    if let Some(p) = pairs.get_mut(&rid) {
                        if let Some(tx) = p.to_conn.take() {
                            let _ = tx.send(None).await;
                        }
                    }
                }
            }
            spdy::Event::Gone => break,
        }
    }
}

/// Connects to `localhost:<port>` inside `netns`: a thread of its own enters the namespace
/// (a socket keeps the namespace it was made in), so no shared thread changes namespace.
async fn connect_in(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cri-portforward".into())
        .spawn(move || {
            let result = (|| -> std::io::Result<std::net::TcpStream> {
                if let Some(path) = &netns {
                    let f = std::fs::File::open(path)?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                let timeout = Duration::from_secs(5);
                let v4 = SocketAddr::from(([127, 0, 0, 1], port));
                let s = std::net::TcpStream::connect_timeout(&v4, timeout).or_else(|e| {
                    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                    std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e)
                })?;
                s.set_nonblocking(true)?;
                Ok(s)
            })();
            let _ = tx.send(result);
        })?;
    let std = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(std)
}

/// One forwarded connection: errors go on the error stream; both streams end with it.
async fn forward(
    writer: spdy::Writer,
    netns: Option<PathBuf>,
    port: String,
    error_id: u32,
    data_id: u32,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
) {
    let port_num = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            let msg = format!("invalid port header {port:?}: expected a port in 1-65535");
            writer.send(error_id, msg.as_bytes(), true).await;
            writer.send(data_id, &[], true).await;
            return;
        }
    };
    let conn = match connect_in(netns, port_num).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("failed to connect to localhost:{port_num} inside the sandbox: {e}");
            writer.send(error_id, msg.as_bytes(), true).await;
            writer.send(data_id, &[], true).await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(Some(d)) = from_client.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !writer.send(data_id, &buf[..n], false).await {
                    break;
                }
            }
        }
    }
    writer.send(data_id, &[], true).await;
    writer.send(error_id, &[], true).await;
    up.abort();
}

/// The sub-protocol a WebSocket port-forward gets: the first the client offers that the
/// kubelet's `wsstream` knows (None: the client offered none, binary channels).
fn ws_port_forward_protocol(req: &axum::extract::Request) -> Result<Option<&'static str>, String> {
    let offered: Vec<String> = req
        .headers()
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    let known = [PORT_FORWARD_WS_V4, PORT_FORWARD_WS_V4_BASE64];
    offered
        .iter()
        .find_map(|o| known.iter().find(|k| **k == o.as_str()).copied())
        .map(Some)
        .ok_or_else(|| {
            format!("requested protocol(s) are not supported: {offered:?}; supports {known:?}")
        })
}

/// The ports of a WebSocket port-forward URL (`?port=80&port=8080`, or `?port=80,8080`),
/// checked as the kubelet's `NewV4Options` checks them.
fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    let values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.into_owned())
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {value:?} as a port: {e}"))?;
            if port == 0 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// One WebSocket channel frame: the channel as a byte (binary) or a digit followed by
/// base64 (text), as `wsstream` writes them.
fn ws_frame(channel: u8, data: &[u8], base64: bool) -> Message {
    if base64 {
        use base64::Engine as _;
        let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        text.push(char::from(b'0' + channel));
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(text.into())
    } else {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(channel);
        v.extend_from_slice(data);
        Message::Binary(v.into())
    }
}

/// A client frame as (channel, data); None for what carries no channel data.
fn ws_channel_data(msg: Message, base64: bool) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) if !base64 && !b.is_empty() => Some((b[0], b[1..].to_vec())),
        Message::Text(t) if base64 && !t.is_empty() => {
            use base64::Engine as _;
            let t = t.as_str();
            let channel = t.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .ok()?;
            Some((channel, data))
        }
        _ => None,
    }
}

/// A WebSocket port-forward session: port i is forwarded over channels 2i (data, both
/// ways) and 2i+1 (error, to the client); each channel's first frame is the port (u16,
/// little-endian). The session ends when every connection has ended or the client goes.
async fn port_forward_ws(socket: WebSocket, netns: Option<PathBuf>, ports: Vec<u16>, base64: bool) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((channel, data)) = out_rx.recv().await {
            if sink.send(ws_frame(channel, &data, base64)).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    });
    let mut to_conns = Vec::new();
    let mut conns = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data, error] {
            let _ = out_tx.send((ch, port.to_le_bytes().to_vec())).await;
        }
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        to_conns.push(tx);
        conns.spawn(forward_ws(
            out_tx.clone(),
            netns.clone(),
            *port,
            data,
            error,
            rx,
        ));
    }
    drop(out_tx);
    let reader = async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((channel, data)) = ws_channel_data(msg, base64) else {
                continue;
            };
            // Only data channels (even) are read; what a finished connection gets is dropped.
            if channel % 2 == 0 {
                if let Some(tx) = to_conns.get(usize::from(channel / 2)) {
                    let _ = tx.send(data).await;
                }
            }
        }
    };
    tokio::select! {
        _ = reader => conns.abort_all(),
        _ = async { while conns.join_next().await.is_some() {} } => {}
    }
    let _ = writer.await;
}

/// One port of a WebSocket port-forward: the connection's bytes on channel `data`, a
/// failure on channel `error`.
async fn forward_ws(
    out: mpsc::Sender<(u8, Vec<u8>)>,
    netns: Option<PathBuf>,
    port: u16,
    data: u8,
    error: u8,
    mut from_client: mpsc::Receiver<Vec<u8>>,
) {
    let conn = match connect_in(netns, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod: failed to connect to localhost:{port} inside the sandbox: {e}"
            );
            let _ = out.send((error, msg.into_bytes())).await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(d) = from_client.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send((data, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    up.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_query_parameters_as_the_kubelet_reads_them() {
        assert_eq!(
            query_ports("port=80&port=8080,9090"),
            Ok(vec![80, 8080, 9090])
        );
        assert_eq!(query_ports("port=80%2C81"), Ok(vec![80, 81]));
        assert_eq!(
            query_ports("other=1"),
            Err("query parameter \"port\" is required".to_string())
        );
        assert!(query_ports("port=")
            .unwrap_err()
            .contains("cannot be empty"));
        assert!(query_ports("port=0").unwrap_err().contains("must be > 0"));
        assert!(query_ports("port=70000")
            .unwrap_err()
            .contains("unable to parse"));
    }

    #[test]
    fn channel_frames_binary_and_base64() {
        let port = 8080u16.to_le_bytes();
        assert_eq!(
            ws_frame(1, &port, false),
            Message::Binary(vec![1, 0x90, 0x1f].into())
        );
        assert_eq!(ws_frame(1, &port, true), Message::Text("1kB8=".into()));
        assert_eq!(
            ws_channel_data(Message::Text("0aGk=".into()), true),
            Some((0, b"hi".to_vec()))
        );
        assert_eq!(
            ws_channel_data(Message::Binary(vec![2, b'h'].into()), false),
            Some((2, b"h".to_vec()))
        );
        assert_eq!(ws_channel_data(Message::Binary(vec![].into()), false), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tokens_are_single_use_and_of_one_kind() {
        let s = Streaming::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = s.url_for(Pending::PortForward(Default::default())).unwrap();
        let prefix = format!("http://{}/portforward/", s.addr());
        let token = url.strip_prefix(&prefix).expect("a portforward URL");
        assert_eq!(token.len(), 16);
        assert!(s.take("exec", token).is_none(), "a token is for one kind");
        assert!(s.take("portforward", token).is_some());
        assert!(
            s.take("portforward", token).is_none(),
            "a token is single-use"
        );
        let other = s.url_for(Pending::PortForward(Default::default())).unwrap();
        assert_ne!(other, url);
    }
}
