//! `GetContainerEvents`: the stream the kubelet's evented PLEG reads. Events come from the
//! CRI service's own actions (create, start, stop, remove of containers and sandboxes, as
//! containerd sends them, a sandbox's id standing for its container) and from exits seen
//! by polling: a container or sandbox last reported STARTED that is no longer running
//! becomes STOPPED. Each event carries its sandbox's status and its containers' statuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peapod_cri::v1 as cri;
use peapod_cri::v1::ContainerEventType as Kind;
use tokio::sync::broadcast;

use crate::engine::Engine;
use crate::engine_cri::nanos;
use crate::record::State;

/// How often exits are looked for.
const POLL: Duration = Duration::from_secs(1);

/// The event hub of the CRI service.
pub struct Events {
    tx: broadcast::Sender<cri::ContainerEventResponse>,
    /// The last event type sent for each id (exits are reported once).
    last: Mutex<HashMap<String, Kind>>,
}

impl Events {
    /// A hub whose poller (exits) runs on the current runtime.
    pub fn start(engine: Arc<Engine>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(1024);
        let me = Arc::new(Self {
            tx,
            last: Mutex::new(HashMap::new()),
        });
        tokio::spawn(poll(me.clone(), engine));
        me
    }

    /// A new subscriber: events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.tx.subscribe()
    }

    /// Sends `kind` for `id` (a container, or a sandbox standing for itself) of sandbox
    /// `sandbox_id`, with the sandbox's status as it is now. Blocking (reads records).
    pub fn emit(&self, engine: &Engine, id: &str, sandbox_id: &str, kind: Kind) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            // Retries and the poller racing an RPC report a change once.
            if last.get(id) == Some(&kind) {
                return;
            }
            if kind == Kind::ContainerDeletedEvent {
                last.remove(id);
            } else {
                last.insert(id.to_string(), kind);
            }
        }
        let now = nanos(chrono::Utc::now());
        let sandbox = engine.cri_sandbox(sandbox_id).ok().flatten();
        let containers = match &sandbox {
            Some(v) => engine
                .cri_containers()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, r)| r.sandbox_id == v.id)
                .map(|(c, r)| super::runtime::container_status(&c, &r))
                .collect(),
            None => Vec::new(),
        };
        // Nobody listening is fine.
        let _ = self.tx.send(cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: now,
            pod_sandbox_status: sandbox.as_ref().map(super::runtime::sandbox_status),
            containers_statuses: containers,
        });
    }

    /// The last event type sent for `id`.
    fn last(&self, id: &str) -> Option<Kind> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Records `id` as started without an event (found running when first seen).
    fn seen_running(&self, id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_insert(Kind::ContainerStartedEvent);
    }
}

/// Looks for exits: STARTED containers and sandboxes that no longer run become STOPPED.
async fn poll(events: Arc<Events>, engine: Arc<Engine>) {
    loop {
        tokio::time::sleep(POLL).await;
        let (ev, eng) = (events.clone(), engine.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for (c, r) in eng.cri_containers().unwrap_or_default() {
                let id = &c.config.id;
                match (&c.state, ev.last(id)) {
                    (State::Running { .. }, None) => ev.seen_running(id),
                    (State::Exited { .. }, Some(Kind::ContainerStartedEvent)) => {
                        ev.emit(&eng, id, &r.sandbox_id, Kind::ContainerStoppedEvent)
                    }
                    _ => {}
                }
            }
            for v in eng.cri_sandboxes().unwrap_or_default() {
                match (v.ready(), ev.last(&v.id)) {
                    (true, None) => ev.seen_running(&v.id),
                    (false, Some(Kind::ContainerStartedEvent)) => {
                        ev.emit(&eng, &v.id, &v.id, Kind::ContainerStoppedEvent)
                    }
                    _ => {}
                }
            }
        })
        .await;
    }
}
