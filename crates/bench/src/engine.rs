//! The operations every measured engine (peapod, Podman) offers the harness, each one the
//! command a user would type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

/// Engine memory of the running pods, workload processes excluded.
#[derive(Debug, Clone, Default)]
pub struct EnginePss {
    /// Sum over every engine process, KiB.
    pub total_kib: u64,
    /// Per kind of process (e.g. "pod-monitor", "infra", "conmon"): (kind, processes, KiB).
    pub parts: Vec<(String, usize, u64)>,
}

impl EnginePss {
    /// Adds one process of a kind.
    pub fn add(&mut self, kind: &str, kib: u64) {
        self.total_kib += kib;
        match self.parts.iter_mut().find(|p| p.0 == kind) {
            Some(p) => {
                p.1 += 1;
                p.2 += kib;
            }
            None => self.parts.push((kind.to_string(), 1, kib)),
        }
    }

    /// `kind: n × avg KiB` for the notes.
    pub fn describe(&self, pods: usize) -> String {
        self.parts
            .iter()
            .map(|(k, n, kib)| {
                format!(
                    "{k} {n} proc, {:.2} MiB/pod",
                    *kib as f64 / 1024.0 / pods.max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One engine under test.
pub trait Engine {
    /// "peapod" or "podman".
    fn label(&self) -> &'static str;
    /// Creates the pods of a manifest and returns once all their containers run.
    fn apply(&self, manifest: &Path) -> Result<Duration>;
    /// [`Engine::apply`] of every manifest at once, as separate processes; wall time.
    fn apply_together(&self, manifests: &[PathBuf]) -> Result<Duration>;
    /// Runs `true` in a container of a pod and waits for it.
    fn exec_true(&self, pod: &str, container: &str) -> Result<Duration>;
    /// Deletes pods with grace period 0 and returns once every resource is gone.
    fn delete(&self, pods: &[String]) -> Result<Duration>;
    /// PSS of the engine's per-pod processes for the running pods.
    fn engine_pss(&self) -> Result<EnginePss>;
    /// What is left after every pod was deleted (containers, pods, veths), for a warning.
    fn leftovers(&self) -> Vec<String>;
}
