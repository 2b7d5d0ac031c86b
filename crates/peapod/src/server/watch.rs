//! resourceVersions and watches. The engine keeps no revision counter, so the server
//! numbers changes itself: `Cache::sync` reads every pod from the engine, compares each
//! with what it saw last, and gives a changed pod the next resourceVersion, recording an
//! ADDED, MODIFIED or DELETED event (kept in a bounded history and broadcast to watches).
//! Every list/get syncs first (so what the CLI did is seen at once); a poller syncs every
//! 200 ms while someone watches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::status::ApiError;
use super::AppState;
use crate::engine::Engine;

/// How many events a late watch can still catch up with.
const HISTORY: usize = 2048;

/// One change of one pod.
#[derive(Debug, Clone)]
pub struct Event {
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    /// The resourceVersion it made.
    pub rv: u64,
    /// The pod (its last state for DELETED).
    pub object: Value,
}

struct Inner {
    /// The resourceVersion this server run started from (milliseconds since the epoch,
    /// so versions grow across restarts and an older one is recognisably expired).
    base: u64,
    rv: u64,
    /// uid → (the pod JSON with its resourceVersion).
    pods: HashMap<String, Value>,
    history: VecDeque<Arc<Event>>,
}

/// The change numbering.
pub struct Cache {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Self {
            inner: Mutex::new(Inner {
                base,
                rv: base,
                pods: HashMap::new(),
                history: VecDeque::new(),
            }),
            tx: broadcast::channel(HISTORY).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the engine's pods and records what changed; returns every pod (with its
    /// resourceVersion) and the current resourceVersion. Blocking.
    pub fn sync(&self, engine: &Engine) -> anyhow::Result<(Vec<Value>, u64)> {
        // Read under the lock, so a slower reader never records an older state after a newer.
        let mut inner = self.lock();
        let views = engine.list_pods(None)?;
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(views.len());
        let mut events = Vec::new();
        for view in views {
            let mut value = serde_json::to_value(&view.pod)?;
            let changed = match inner.pods.get(&view.uid) {
                Some(old) => strip_rv(old) != strip_rv(&value),
                None => true,
            };
            if changed {
                inner.rv += 1;
                value["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
                let kind = if inner.pods.contains_key(&view.uid) {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                events.push(Event {
                    kind,
                    rv: inner.rv,
                    object: value.clone(),
                });
                inner.pods.insert(view.uid.clone(), value.clone());
            } else {
                value = inner.pods[&view.uid].clone();
            }
            seen.insert(view.uid, ());
            out.push(value);
        }
        let gone: Vec<String> = inner
            .pods
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for uid in gone {
            let mut value = inner.pods.remove(&uid).unwrap_or_default();
            inner.rv += 1;
            value["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            events.push(Event {
                kind: "DELETED",
                rv: inner.rv,
                object: value,
            });
        }
        for e in events {
            let e = Arc::new(e);
            inner.history.push_back(e.clone());
            if inner.history.len() > HISTORY {
                inner.history.pop_front();
            }
            let _ = self.tx.send(e);
        }
        Ok((out, inner.rv))
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }
}

/// Syncs every 200 ms while a watch is open.
pub async fn poll(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if state.cache.tx.receiver_count() == 0 {
            continue;
        }
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || st.cache.sync(&st.engine)).await;
    }
}

/// Renders one event for the wire (a Table row or the object itself).
pub type Render = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A watch: events after `from` (all current pods as ADDED for none/"0") that `render`
/// accepts, streamed as JSON lines until the client leaves or `timeout` passes; with
/// `bookmarks`, a BOOKMARK with the current resourceVersion every 30 s.
pub fn stream(
    state: &AppState,
    from: Option<u64>,
    timeout: Option<Duration>,
    bookmarks: bool,
    render: Render,
) -> Result<Response, ApiError> {
    let mut rx = state.cache.tx.subscribe();
    let (initial, mut last): (Vec<(&'static str, Value)>, u64) = {
        let inner = state.cache.lock();
        match from {
            None | Some(0) => (
                inner.pods.values().map(|p| ("ADDED", p.clone())).collect(),
                inner.rv,
            ),
            Some(rv) => {
                let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
                if rv < inner.base || (rv + 1 < oldest && inner.history.len() >= HISTORY) {
                    let status = ApiError::new(
                        410,
                        "Expired",
                        format!(
                            "too old resource version: {rv} ({})",
                            oldest.max(inner.base + 1) - 1
                        ),
                    );
                    (vec![("ERROR", status.body())], inner.rv)
                } else {
                    (
                        inner
                            .history
                            .iter()
                            .filter(|e| e.rv > rv)
                            .map(|e| (e.kind, e.object.clone()))
                            .collect(),
                        inner.rv,
                    )
                }
            }
        }
    };
    let (tx, out_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let line = |kind: &str, obj: Value| -> Bytes {
        let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    };
    let mut first = Vec::new();
    for (kind, obj) in initial {
        if kind == "ERROR" {
            first.push(line(kind, obj));
        } else if let Some(o) = render(&obj) {
            first.push(line(kind, o));
        }
    }
    tokio::spawn(async move {
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        if e.rv <= last {
                            continue;
                        }
                        last = e.rv;
                        if let Some(o) = render(&e.object) {
                            if tx.send(line(e.kind, o)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    if tx.is_closed() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return;
                    }
                    if bookmarks && last_bookmark.elapsed() >= Duration::from_secs(30) {
                        last_bookmark = tokio::time::Instant::now();
                        let mark = json!({"kind": "Pod", "apiVersion": "v1",
                                          "metadata": {"resourceVersion": last.to_string()}});
                        if tx.send(line("BOOKMARK", mark)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let body = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_default())
}
