//! `pods/log`: a container's CRI log file as plain text — `container`, `previous`,
//! `tailLines`, `timestamps`, `sinceSeconds`/`sinceTime`, `limitBytes`, and `follow`
//! (a chunked stream that ends when the container has exited and its log is drained).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::api::Q;
use super::status::ApiError;
use super::{blocking, AppState};
use crate::crilog;
use crate::engine::Engine;

/// What to print.
#[derive(Debug, Clone)]
struct Opts {
    follow: bool,
    timestamps: bool,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

/// `GET pods/NAME/log`.
pub async fn logs(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
) -> Result<Response, ApiError> {
    let since = match (q.num("sinceSeconds"), q.get("sinceTime")) {
        (Some(s), _) => Some(Utc::now() - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::bad_request(format!("invalid sinceTime {t:?}")))?
                .with_timezone(&Utc),
        ),
        _ => None,
    };
    let opts = Opts {
        follow: q.flag("follow"),
        timestamps: q.flag("timestamps"),
        tail: q.num("tailLines").filter(|n| *n >= 0).map(|n| n as usize),
        since,
        limit: q.num("limitBytes").filter(|n| *n > 0).map(|n| n as usize),
    };
    let container = q.get("container").map(str::to_string);
    let previous = q.flag("previous");
    let engine = st.engine.clone();
    let (path, id) = blocking(move || {
        let view = engine.find_pod(&ns, &name)?;
        let spec = view.pod.spec.clone().unwrap_or_default();
        let cname = match container {
            Some(c) => c,
            None if spec.containers.len() == 1 => spec.containers[0].name.clone(),
            None => {
                let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        };
        let c = crate::kube::pod_container(&engine, &ns, &name, Some(&cname), previous)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        // Made but not started yet (its record exists a moment before its process): as
        // the kubelet, refuse rather than return an empty log that would end a follow.
        if !previous && c.state == crate::record::State::Created {
            return Err(ApiError::bad_request(format!(
                "container \"{cname}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        }
        Ok((engine.log_path(&c.config), c.config.id.clone()))
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let engine = st.engine.clone();
    tokio::task::spawn_blocking(move || produce(&engine, &path, &id, &opts, &tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_default())
}

/// Renders complete lines of `data` (a whole number of records) into text.
struct Renderer {
    opts: Opts,
    /// The time of the line being continued by partial records.
    open_line: bool,
    sent: usize,
}

impl Renderer {
    /// Text for the records in `lines`; `first` applies tailLines.
    fn render(&mut self, data: &[u8], first: bool) -> Vec<u8> {
        let records: Vec<crilog::Record<'_>> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(crilog::parse_record)
            .collect();
        // Group records into lines: (start index, end index exclusive).
        let mut lines: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for (i, r) in records.iter().enumerate() {
            if r.full {
                lines.push((start, i + 1));
                start = i + 1;
            }
        }
        if start < records.len() {
            lines.push((start, records.len()));
        }
        let skip = match (first, self.opts.tail) {
            (true, Some(n)) => lines.len().saturating_sub(n),
            _ => 0,
        };
        let mut out = Vec::new();
        for &(a, b) in &lines[skip..] {
            if let Some(since) = self.opts.since {
                let t = DateTime::parse_from_rfc3339(records[a].time)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(since);
                if t < since {
                    continue;
                }
            }
            for r in &records[a..b] {
                if self.opts.timestamps && !self.open_line {
                    out.extend_from_slice(r.time.as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(r.content);
                self.open_line = !r.full;
                if r.full {
                    out.push(b'\n');
                }
            }
        }
        if let Some(limit) = self.opts.limit {
            out.truncate(limit.saturating_sub(self.sent));
        }
        self.sent += out.len();
        out
    }

    fn exhausted(&self) -> bool {
        self.opts.limit.is_some_and(|l| self.sent >= l)
    }
}

fn produce(
    engine: &Arc<Engine>,
    path: &PathBuf,
    id: &str,
    opts: &Opts,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut r = Renderer {
        opts: opts.clone(),
        open_line: false,
        sent: 0,
    };
    let mut file = std::fs::File::open(path).ok();
    let mut pending: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        if file.is_none() {
            file = std::fs::File::open(path).ok();
        }
        if let Some(f) = file.as_mut() {
            let _ = f.read_to_end(&mut pending);
        }
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let chunk: Vec<u8> = pending.drain(..complete).collect();
        let text = r.render(&chunk, first);
        first = false;
        if !text.is_empty() && tx.blocking_send(Bytes::from(text)).is_err() {
            return;
        }
        if !opts.follow || r.exhausted() {
            return;
        }
        if !engine.log_may_grow(id) {
            // One last read picks up what the monitor wrote before it finished.
            let mut rest = Vec::new();
            if let Some(f) = file.as_mut() {
                let _ = f.read_to_end(&mut rest);
                if !rest.is_empty() {
                    let _ = f.seek(SeekFrom::Current(-(rest.len() as i64)));
                    continue;
                }
            }
            return;
        }
        if tx.is_closed() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
