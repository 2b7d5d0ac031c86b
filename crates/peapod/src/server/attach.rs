//! `pods/attach` over WebSocket (`v5.channel.k8s.io`, and `v4`), as `kubectl attach`
//! speaks it: the container's output on channels 1 and 2 from its pod monitor's attach
//! socket, stdin from channel 0, terminal sizes from channel 4, and when the container
//! exits its code as a `Status` on channel 3. Leaving (kubectl's Ctrl-C) never touches the
//! container.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::api::Q;
use super::exec::{exit_status, finish, frame, request_container, V4, V5};
use super::status::ApiError;
use super::{blocking, AppState};
use crate::attach as proto;

/// What the session relays.
struct Session {
    socket: std::path::PathBuf,
    stdin: bool,
    stderr: bool,
}

/// `GET pods/NAME/attach?container=…&stdin=…&stdout=…&stderr=…&tty=…`.
pub async fn attach(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("attach needs a WebSocket upgrade ({V5}): {e}"))
    })?;
    let container = q.get("container").map(str::to_string);
    let want_stdin = q.flag("stdin");
    let engine = st.engine.clone();
    let (socket, open_stdin) = blocking(move || {
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
        ))
    })
    .await?;
    let session = Session {
        socket,
        stdin: want_stdin && open_stdin,
        stderr: q.flag("stderr"),
    };
    Ok(ws
        .protocols([V5, V4])
        .on_upgrade(move |socket| run(socket, session))
        .into_response())
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

async fn run(socket: WebSocket, s: Session) {
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some(V5);
    let (mut sink, mut stream) = socket.split();
    let unix = match tokio::net::UnixStream::connect(&s.socket).await {
        Ok(u) => u,
        Err(e) => {
            finish(
                &mut sink,
                exit_status(Err(format!("attaching to the container: {e}"))),
            )
            .await;
            return;
        }
    };
    let (mut from_container, mut to_container) = unix.into_split();
    let stdin = s.stdin;
    // Client → container: stdin, stdin's end, resizes. Ends when the client leaves.
    let mut input = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let out = match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    0 if stdin => Some(proto::frame(proto::STDIN, &b[1..])),
                    4 => resize_frame(&b[1..]),
                    255 if v5 && b.get(1) == Some(&0) && stdin => {
                        Some(proto::frame(proto::CLOSE_STDIN, &[]))
                    }
                    _ => None,
                },
                Message::Close(_) => break,
                _ => None,
            };
            if let Some(f) = out {
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
            _ = &mut input => {
                // The client left: nothing more to say.
                let _ = sink.close().await;
                return;
            }
        };
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        for (kind, payload) in proto::take_frames(&mut pending) {
            let msg = match kind {
                proto::STDOUT => frame(1, &payload),
                proto::STDERR if s.stderr => frame(2, &payload),
                proto::EXIT => {
                    code = String::from_utf8_lossy(&payload).trim().parse().ok();
                    break 'relay;
                }
                _ => continue,
            };
            if sink.send(msg).await.is_err() {
                input.abort();
                return;
            }
        }
    }
    input.abort();
    finish(&mut sink, exit_status(Ok(code.unwrap_or(0)))).await;
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
