//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, and `v4`) and over SPDY/3.1
//! (`v4.channel.k8s.io` streams, for kubectl 1.27–1.29). WebSocket: every message is a
//! binary frame whose first byte is the channel — 0 stdin, 1 stdout, 2 stderr, 3 the final
//! `Status`, 4 terminal size, 255 (v5) "close this channel". SPDY: one stream per channel,
//! opened by the client. Both feed one transport-free session (`run_session`: `In` from
//! the client, `Out` to it). The command runs through the OCI runtime's `exec`; with
//! `tty=true` the runtime gets a pty as its stdio and proxies it to one inside the
//! container, resizes reaching it as SIGWINCH. The session ends with the remaining output,
//! the Status, and a close.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::Q;
use super::status::ApiError;
use super::{blocking, AppState};

pub(crate) const V5: &str = "v5.channel.k8s.io";
pub(crate) const V4: &str = "v4.channel.k8s.io";

/// `pods/portforward`: not served yet, said plainly.
pub async fn unsupported(req: axum::extract::Request) -> Response {
    let what = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("peapod does not support pods/{what} yet (kubectl exec works)"),
    )
    .into_response()
}

/// The container a `pods/exec` or `pods/attach` request names: 404 for a missing pod, 400
/// for anything else wrong with the request.
pub(super) fn request_container(
    engine: &crate::engine::Engine,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Result<crate::engine::Container, ApiError> {
    crate::kube::pod_container(engine, ns, name, container, false).map_err(|e| {
        let api = ApiError::from_engine(&e);
        if api.code == 404 {
            api
        } else {
            ApiError::bad_request(format!("{e:#}"))
        }
    })
}

/// Sends the final `Status` on channel 3 and a normal close frame.
pub(crate) async fn finish<S>(sink: &mut S, status: Value)
where
    S: futures::Sink<Message> + Unpin,
{
    let _ = sink
        .send(frame(3, &serde_json::to_vec(&status).unwrap_or_default()))
        .await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

/// How a session runs.
pub(crate) struct Session {
    cmd: std::process::Command,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Session {
    /// A session running `cmd` (from `exec_command_for`) with the streams asked for.
    pub(crate) fn new(
        cmd: std::process::Command,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> Self {
        Self {
            cmd,
            stdin,
            stdout,
            stderr,
            tty,
        }
    }
}

/// The process a `pods/exec` request asks for, checked and ready to spawn.
async fn session_for(st: &AppState, ns: String, name: String, q: &Q) -> Result<Session, ApiError> {
    let command = q.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let tty = q.flag("tty");
    let container = q.get("container").map(str::to_string);
    let engine = st.engine.clone();
    let cmd = blocking(move || {
        let c = request_container(&engine, &ns, &name, container.as_deref())?;
        engine
            .exec_command_for(&c, &command, tty)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))
    })
    .await?;
    Ok(Session {
        cmd,
        stdin: q.flag("stdin"),
        stdout: q.get("stdout").is_none_or(|v| v == "true" || v == "1"),
        stderr: q.flag("stderr"),
        tty,
    })
}

/// `GET pods/NAME/exec?command=…&container=…&stdin=…&stdout=…&stderr=…&tty=…`.
pub async fn exec(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("exec needs a WebSocket upgrade ({V5}): {e}"))
    })?;
    let session = session_for(&st, ns, name, &q).await?;
    Ok(ws
        .protocols([V5, V4])
        .on_upgrade(move |socket| over_websocket(socket, |tx, rx| run_session(session, tx, rx)))
        .into_response())
}

/// `POST pods/NAME/exec` with `Upgrade: SPDY/3.1`: what kubectl 1.27–1.29 speak (and later
/// ones fall back to). The `v4.channel.k8s.io` stream protocol: the client opens the
/// streams (`error`, `stdin`, `stdout`, `stderr`, `resize`), the exit `Status` goes on
/// `error`.
pub async fn exec_spdy(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    mut req: axum::extract::Request,
) -> Result<Response, ApiError> {
    check_spdy_upgrade(&req)?;
    let session = session_for(&st, ns, name, &q).await?;
    let w = Wanted {
        stdin: session.stdin,
        stdout: session.stdout,
        stderr: session.stderr,
        tty: session.tty,
    };
    Ok(upgrade_to_spdy(&mut req, w, move |tx, rx| {
        run_session(session, tx, rx)
    }))
}

/// Answers a checked SPDY upgrade with 101 and runs `core` over the upgraded connection.
pub(crate) fn upgrade_to_spdy<F, Fut>(
    req: &mut axum::extract::Request,
    w: Wanted,
    core: F,
) -> Response
where
    F: FnOnce(mpsc::Sender<Out>, mpsc::Receiver<In>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            over_spdy(hyper_util::rt::TokioIo::new(upgraded), w, core).await;
        }
    });
    spdy_switching()
}

/// Refuses a request that is not a SPDY/3.1 upgrade offering `v4.channel.k8s.io`.
pub(crate) fn check_spdy_upgrade(req: &axum::extract::Request) -> Result<(), ApiError> {
    let upgrade = req
        .headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return Err(ApiError::bad_request(format!(
            "this needs a WebSocket ({V5}) or SPDY/3.1 upgrade"
        )));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    if !offered.iter().any(|p| p == V4) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("unable to upgrade: no common stream protocol with {offered:?}: peapod speaks {V4} over SPDY"),
        ));
    }
    Ok(())
}

/// The 101 answer to a SPDY upgrade.
pub(crate) fn spdy_switching() -> Response {
    Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "Upgrade")
        .header(axum::http::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", V4)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// Splits concatenated JSON values (kubectl's resize stream) off the front of `buf`.
fn take_json_values(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut used = 0;
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    while let Some(Ok(v)) = it.next() {
        used = it.byte_offset();
        out.push(serde_json::to_vec(&v).unwrap_or_default());
    }
    buf.drain(..used);
    out
}

/// The streams a SPDY client opens for a session.
#[derive(Clone, Copy)]
pub(crate) struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A session over SPDY: waits for the client's streams, then relays between them and
/// `core` (its `Out` to the streams, the streams' data to its `In`).
pub(crate) async fn over_spdy<T, F, Fut>(io: T, w: Wanted, core: F)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: FnOnce(mpsc::Sender<Out>, mpsc::Receiver<In>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use super::spdy::Event;
    let (writer, mut events) = super::spdy::session(io);
    let mut wanted = vec!["error"];
    if w.stdin {
        wanted.push("stdin");
    }
    if w.stdout {
        wanted.push("stdout");
    }
    if w.stderr && !w.tty {
        wanted.push("stderr");
    }
    if w.tty {
        wanted.push("resize");
    }
    let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut early: Vec<Event> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !wanted.iter().all(|w| ids.contains_key(*w)) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Opened { stream, kind, .. })) => {
                ids.insert(kind, stream);
            }
            Ok(Some(Event::Gone)) | Ok(None) | Err(_) => return,
            Ok(Some(e)) => early.push(e),
        }
    }
    let id = |k: &str| ids.get(k).copied();
    let (stdin_id, resize_id) = (id("stdin"), id("resize"));
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    let (in_tx, in_rx) = mpsc::channel::<In>(64);
    let input = tokio::spawn(async move {
        let mut resize_buf = Vec::new();
        let mut pending = early.into_iter();
        loop {
            let e = match pending.next() {
                Some(e) => e,
                None => match events.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            let msgs = match e {
                Event::Data { stream, data } if Some(stream) == stdin_id => vec![In::Stdin(data)],
                Event::Data { stream, data } if Some(stream) == resize_id => {
                    resize_buf.extend_from_slice(&data);
                    take_json_values(&mut resize_buf)
                        .into_iter()
                        .map(In::Resize)
                        .collect()
                }
                Event::Closed { stream } if Some(stream) == stdin_id => vec![In::CloseStdin],
                Event::Gone => break,
                _ => Vec::new(),
            };
            for m in msgs {
                if in_tx.send(m).await.is_err() {
                    return;
                }
            }
        }
        let _ = in_tx.send(In::CloseStdin).await;
    });
    let (error_id, stdout_id, stderr_id) = (id("error"), id("stdout"), id("stderr"));
    let output = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            match m {
                Out::Data(ch, data) => {
                    let target = if ch == 2 {
                        stderr_id.or(stdout_id)
                    } else {
                        stdout_id
                    };
                    if let Some(sid) = target {
                        if !writer.send(sid, &data, false).await {
                            return;
                        }
                    }
                }
                Out::Status(status) => {
                    // v4: the error stream carries the Status (Success included).
                    if let Some(eid) = error_id {
                        let json = serde_json::to_vec(&status).unwrap_or_default();
                        writer.send(eid, &json, true).await;
                    }
                    for sid in [stdout_id, stderr_id].into_iter().flatten() {
                        writer.send(sid, &[], true).await;
                    }
                    writer.goaway(0).await;
                    return;
                }
            }
        }
    });
    core(tx, in_rx).await;
    let _ = output.await;
    input.abort();
}

pub(crate) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// The Status on channel 3 for an exit code (or a failure to run).
pub(crate) fn exit_status(code: Result<i32, String>) -> Value {
    match code {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(n) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {n}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]},
        }),
        Err(message) => json!({"metadata": {}, "status": "Failure", "message": message}),
    }
}

/// What a session sends its client, whatever the transport (WebSocket channels or SPDY
/// streams): output on channel 1 (stdout) or 2 (stderr), then the final `Status`.
#[derive(Debug)]
pub(crate) enum Out {
    Data(u8, Vec<u8>),
    Status(Value),
}

/// What the client sends a session: stdin bytes, stdin's end, a terminal size (JSON).
#[derive(Debug)]
pub(crate) enum In {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(Vec<u8>),
}

/// Copies a blocking reader into channel `ch` output until EOF.
fn pump(
    mut r: impl Read + Send + 'static,
    ch: u8,
    tx: mpsc::Sender<Out>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(Out::Data(ch, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Resizes the pty whose slave is `slave_path` and tells the runtime (SIGWINCH).
fn resize(slave_path: &str, pid: u32, msg: &[u8]) {
    let Ok(size) = serde_json::from_slice::<Value>(msg) else {
        return;
    };
    let (w, h) = (
        size["Width"].as_u64().unwrap_or(0),
        size["Height"].as_u64().unwrap_or(0),
    );
    if w == 0 || h == 0 {
        return;
    }
    let _ = std::process::Command::new("stty")
        .args([
            "-F",
            slave_path,
            "rows",
            &h.to_string(),
            "cols",
            &w.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGWINCH,
    );
}

/// A session over WebSocket (v5 or v4 channels) with `core`.
pub(crate) async fn over_websocket<F, Fut>(socket: WebSocket, core: F)
where
    F: FnOnce(mpsc::Sender<Out>, mpsc::Receiver<In>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some(V5);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            match m {
                Out::Data(ch, data) => {
                    if sink.send(frame(ch, &data)).await.is_err() {
                        return;
                    }
                }
                Out::Status(status) => {
                    finish(&mut sink, status).await;
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });
    let (in_tx, in_rx) = mpsc::channel::<In>(64);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let input = match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    0 => In::Stdin(b[1..].to_vec()),
                    4 => In::Resize(b[1..].to_vec()),
                    255 if v5 && b.get(1) == Some(&0) => In::CloseStdin,
                    _ => continue,
                },
                Message::Close(_) => break,
                _ => continue,
            };
            if in_tx.send(input).await.is_err() {
                break;
            }
        }
        let _ = in_tx.send(In::CloseStdin).await;
    });
    core(tx, in_rx).await;
    let _ = writer.await;
    reader.abort();
}

/// Runs the exec: the process (with pipes, or a pty for tty) fed from `input`, its output
/// and then its exit `Status` to `tx`.
pub(crate) async fn run_session(
    mut s: Session,
    tx: mpsc::Sender<Out>,
    mut input: mpsc::Receiver<In>,
) {
    // Spawn the process with pipes, or with a pty for tty.
    let mut pumps = Vec::new();
    let mut stdin_w: Option<Box<dyn Write + Send>> = None;
    let mut slave_path = String::new();
    let spawned = if s.tty {
        match nix::pty::openpty(None, None) {
            Ok(pty) => {
                slave_path = std::fs::read_link(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
                ))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
                let slave: OwnedFd = pty.slave;
                let (a, b) = (slave.try_clone(), slave.try_clone());
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        s.cmd
                            .stdin(Stdio::from(slave))
                            .stdout(Stdio::from(a))
                            .stderr(Stdio::from(b));
                        let child = s.cmd.spawn();
                        // Drop our copies of the slave so EOF/EIO arrives when the runtime exits.
                        s.cmd = std::process::Command::new("true");
                        let master = std::fs::File::from(pty.master);
                        if let Ok(m2) = master.try_clone() {
                            if s.stdin {
                                stdin_w = Some(Box::new(m2));
                            }
                        }
                        pumps.push(pump(master, 1, tx.clone()));
                        child.map_err(|e| e.to_string())
                    }
                    _ => Err("allocating a pty".to_string()),
                }
            }
            Err(e) => Err(format!("allocating a pty: {e}")),
        }
    } else {
        s.cmd
            .stdin(if s.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match s.cmd.spawn() {
            Ok(mut child) => {
                if let Some(o) = child.stdout.take() {
                    pumps.push(pump(o, 1, tx.clone()));
                }
                if let Some(e) = child.stderr.take() {
                    if s.stderr {
                        pumps.push(pump(e, 2, tx.clone()));
                    } else {
                        let mut e = e;
                        pumps.push(std::thread::spawn(move || {
                            let _ = std::io::copy(&mut e, &mut std::io::sink());
                        }));
                    }
                }
                if let Some(i) = child.stdin.take() {
                    stdin_w = Some(Box::new(i));
                }
                Ok(child)
            }
            Err(e) => Err(e.to_string()),
        }
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = tx
                .send(Out::Status(exit_status(Err(format!(
                    "starting the exec: {e}"
                )))))
                .await;
            return;
        }
    };
    let pid = child.id();

    // Client → process: stdin, stdin close, resize. Runs on a thread for the blocking writes.
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    let tty = s.tty;
    let stdin_thread = std::thread::spawn(move || {
        while let Ok(Some(data)) = in_rx.recv() {
            if let Some(w) = stdin_w.as_mut() {
                if w.write_all(&data).and_then(|_| w.flush()).is_err() {
                    stdin_w = None;
                }
            }
        }
        drop(stdin_w);
    });
    let reader = tokio::spawn(async move {
        let mut first_resize = true;
        while let Some(msg) = input.recv().await {
            match msg {
                In::Stdin(data) => {
                    let _ = in_tx.send(Some(data));
                }
                In::Resize(size) if tty => {
                    let path = slave_path.clone();
                    tokio::task::spawn_blocking(move || resize(&path, pid, &size));
                    if first_resize {
                        // The runtime may not have been listening for SIGWINCH yet: tell
                        // it again (it reads the current size from its terminal).
                        first_resize = false;
                        tokio::spawn(async move {
                            for ms in [200, 800] {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(pid as i32),
                                    nix::sys::signal::Signal::SIGWINCH,
                                );
                            }
                        });
                    }
                }
                In::Resize(_) => {}
                In::CloseStdin => {
                    let _ = in_tx.send(None);
                }
            }
        }
        let _ = in_tx.send(None);
    });

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(crate::engine::exit_code);
    // Drain the output (bounded: a background process may keep the pipes open).
    let drained = tokio::task::spawn_blocking(move || {
        for p in pumps {
            let _ = p.join();
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
    let _ = tx.send(Out::Status(exit_status(status))).await;
    reader.abort();
    let _ = stdin_thread;
}
