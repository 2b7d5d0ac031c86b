//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, and `v4`): every message is a binary
//! frame whose first byte is the channel — 0 stdin, 1 stdout, 2 stderr, 3 the final
//! `Status`, 4 terminal size, 255 (v5) "close this channel". The command runs through the
//! OCI runtime's `exec`; with `tty=true` the runtime gets a pty as its stdio and proxies it
//! to one inside the container, resizes reaching it as SIGWINCH. The session ends with the
//! remaining output, the Status on channel 3, and a close frame (1000).

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

pub(super) const V5: &str = "v5.channel.k8s.io";
pub(super) const V4: &str = "v4.channel.k8s.io";

/// `POST pods/NAME/exec` (SPDY, kubectl before 1.30): not supported.
pub async fn spdy() -> Response {
    ApiError::bad_request(
        "peapod serves exec over WebSocket (v5.channel.k8s.io) only: use kubectl 1.30 or later \
         (with 1.29, set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true)",
    )
    .into_response()
}

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
pub(super) async fn finish<S>(sink: &mut S, status: Value)
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
struct Session {
    cmd: std::process::Command,
    stdin: bool,
    stderr: bool,
    tty: bool,
}

/// `GET pods/NAME/exec?command=…&container=…&stdin=…&stdout=…&stderr=…&tty=…`.
pub async fn exec(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let command = q.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("exec needs a WebSocket upgrade ({V5}): {e}"))
    })?;
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
    let session = Session {
        cmd,
        stdin: q.flag("stdin"),
        stderr: q.flag("stderr"),
        tty,
    };
    Ok(ws
        .protocols([V5, V4])
        .on_upgrade(move |socket| run(socket, session))
        .into_response())
}

pub(super) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// The Status on channel 3 for an exit code (or a failure to run).
pub(super) fn exit_status(code: Result<i32, String>) -> Value {
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

/// Copies a blocking reader into channel `ch` frames until EOF.
fn pump(
    mut r: impl Read + Send + 'static,
    ch: u8,
    tx: mpsc::Sender<Message>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(frame(ch, &buf[..n])).is_err() {
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

async fn run(socket: WebSocket, mut s: Session) {
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some(V5);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });

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
                .send(frame(
                    3,
                    &serde_json::to_vec(&exit_status(Err(format!("starting the exec: {e}"))))
                        .unwrap_or_default(),
                ))
                .await;
            let _ = tx
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
            drop(tx);
            let _ = writer.await;
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
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    0 => {
                        let _ = in_tx.send(Some(b[1..].to_vec()));
                    }
                    4 if tty => {
                        let (path, size) = (slave_path.clone(), b[1..].to_vec());
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
                    255 if v5 && b.get(1) == Some(&0) => {
                        let _ = in_tx.send(None);
                    }
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
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
    let _ = tx
        .send(frame(
            3,
            &serde_json::to_vec(&exit_status(status)).unwrap_or_default(),
        ))
        .await;
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(tx);
    let _ = writer.await;
    reader.abort();
    let _ = stdin_thread;
}
