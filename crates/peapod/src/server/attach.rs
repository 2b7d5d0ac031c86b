//! `pods/attach`, as `kubectl attach` speaks it: over WebSocket (`v5.channel.k8s.io`, and
//! `v4`) or SPDY/3.1 (kubectl 1.27–1.29), through the same transports as exec. The
//! container's output comes from its pod monitor's attach socket, stdin and terminal sizes
//! go back to it, and when the container exits its code ends the session as a `Status`.
//! Leaving (kubectl's Ctrl-C) never touches the container.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::api::Q;
use super::exec::{
    check_spdy_upgrade, exit_status, over_websocket, request_container, upgrade_to_spdy, In, Out,
    Wanted, V4, V5,
};
use super::status::ApiError;
use super::{blocking, AppState};
use crate::attach as proto;

/// What the session relays.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) socket: std::path::PathBuf,
    pub(crate) stdin: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

/// The running container a `pods/attach` request names, and what to relay.
async fn session_for(st: &AppState, ns: String, name: String, q: &Q) -> Result<Session, ApiError> {
    let container = q.get("container").map(str::to_string);
    let want_stdin = q.flag("stdin");
    let engine = st.engine.clone();
    let (socket, open_stdin, tty) = blocking(move || {
        let c = request_container(&engine, &ns, &name, container.as_deref())?;
        if !matches!(c.state, crate::record::State::Running { .. }) {
            return Err(ApiError::bad_request(format!(
                "container {} is not running",
                c.config
                    .pod
                    .as_ref()
                    .map_or(&c.config.name, |l| &l.container_name)
            )));
        }
        Ok((
            proto::socket_path(&engine.paths.run, &c.config.id),
            c.config.open_stdin,
            c.config.tty,
        ))
    })
    .await?;
    Ok(Session {
        socket,
        stdin: want_stdin && open_stdin,
        stderr: q.flag("stderr"),
        tty: q.flag("tty") && tty,
    })
}

/// `GET pods/NAME/attach?container=…&stdin=…&stdout=…&stderr=…&tty=…` (WebSocket).
pub async fn attach(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("attach needs a WebSocket upgrade ({V5}): {e}"))
    })?;
    let s = session_for(&st, ns, name, &q).await?;
    Ok(ws
        .protocols([V5, V4])
        .on_upgrade(move |socket| over_websocket(socket, move |tx, rx| relay(s, tx, rx)))
        .into_response())
}

/// `POST pods/NAME/attach` with `Upgrade: SPDY/3.1`.
pub async fn attach_spdy(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    mut req: axum::extract::Request,
) -> Result<Response, ApiError> {
    check_spdy_upgrade(&req)?;
    let s = session_for(&st, ns, name, &q).await?;
    let w = Wanted {
        stdin: s.stdin,
        stdout: true,
        stderr: s.stderr,
        tty: s.tty,
    };
    Ok(upgrade_to_spdy(&mut req, w, move |tx, rx| relay(s, tx, rx)))
}

/// A channel-4 size (`{"Width":…,"Height":…}`) as an attach resize frame.
fn resize_frame(msg: &[u8]) -> Option<Vec<u8>> {
    let size: Value = serde_json::from_slice(msg).ok()?;
    let cols = u16::try_from(size["Width"].as_u64()?).ok()?;
    let rows = u16::try_from(size["Height"].as_u64()?).ok()?;
    let mut p = rows.to_be_bytes().to_vec();
    p.extend_from_slice(&cols.to_be_bytes());
    Some(proto::frame(proto::RESIZE, &p))
}

/// Relays between the client (`tx`, `input`) and the container's attach socket until the
/// container exits (its code becomes the Status) or the client leaves.
pub(crate) async fn relay(s: Session, tx: mpsc::Sender<Out>, mut input: mpsc::Receiver<In>) {
    let unix = match tokio::net::UnixStream::connect(&s.socket).await {
        Ok(u) => u,
        Err(e) => {
            let status = exit_status(Err(format!("attaching to the container: {e}")));
            let _ = tx.send(Out::Status(status)).await;
            return;
        }
    };
    let (mut from_container, mut to_container) = unix.into_split();
    let stdin = s.stdin;
    // Client → container: stdin, stdin's end, resizes. Ends when the client leaves.
    let mut forward = tokio::spawn(async move {
        while let Some(m) = input.recv().await {
            let f = match m {
                In::Stdin(d) if stdin => Some(proto::frame(proto::STDIN, &d)),
                In::CloseStdin if stdin => Some(proto::frame(proto::CLOSE_STDIN, &[])),
                In::Resize(j) => resize_frame(&j),
                _ => None,
            };
            if let Some(f) = f {
                if to_container.write_all(&f).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut code: Option<i32> = None;
    'relay: loop {
        let n = tokio::select! {
            r = from_container.read(&mut buf) => r.unwrap_or(0),
            _ = &mut forward => return,
        };
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        for (kind, payload) in proto::take_frames(&mut pending) {
            let out = match kind {
                proto::STDOUT => Out::Data(1, payload),
                proto::STDERR if s.stderr => Out::Data(2, payload),
                proto::EXIT => {
                    code = String::from_utf8_lossy(&payload).trim().parse().ok();
                    break 'relay;
                }
                _ => continue,
            };
            if tx.send(out).await.is_err() {
                forward.abort();
                return;
            }
        }
    }
    forward.abort();
    let _ = tx
        .send(Out::Status(exit_status(Ok(code.unwrap_or(0)))))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_sizes_become_resize_frames() {
        let f = resize_frame(br#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!(
            proto::take_frames(&mut f.clone()),
            vec![(proto::RESIZE, vec![0, 40, 0, 120])]
        );
        assert!(resize_frame(b"{}").is_none());
        assert!(resize_frame(br#"{"Width":70000,"Height":1}"#).is_none());
    }
}
