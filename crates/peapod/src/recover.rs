//! Crash recovery: after any peapod process was killed (`kill -9` at any step) or the host
//! rebooted, brings every pod back to what its records promise and removes what nothing
//! owns any more. It runs before every state-touching command and periodically in `serve`.
//! When nothing is wrong it costs one directory scan, two small reads and one lock probe
//! per pod; the full garbage collection runs only when something was found wrong, after a
//! reboot, or from `serve`.
//!
//! What it does, per pod:
//! - monitor dead, not being deleted, containers not all finished for good per
//!   restartPolicy: leftover processes killed, the old sandbox torn down (infra record,
//!   netns pin, veth, IP), a new one made with attempt + 1 and a new pod monitor started
//!   through the ordinary start path (the monitor continues from `observed.json`);
//! - monitor dead, finished for good: leftover processes killed, the sandbox released;
//! - monitor alive but its infra process dead: the monitor is killed and the pod recovered
//!   as above (the kubelet's "sandbox changed, it will be killed and re-created");
//! - being deleted and its monitor dead (or stuck past the grace period): the teardown is
//!   finished; a monitor never told (its deleter died first) is sent SIGTERM.
//!
//! Every decision is taken under the pod's lifecycle lock, which creators and deleters hold
//! too, so a pod a live command is working on is left alone and no two commands recover
//! the same pod. It never touches a pod whose monitor is alive and well.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use peapod_api::status::{ObservedPod, ObservedState};
use peapod_sandbox::netns;
use peapod_store::Lock;
use serde::{Deserialize, Serialize};

use crate::engine::{proc_start_time, wait_until, Container, Engine};
use crate::record::{ContainerConfig, ContainerStatus};

/// How long past its deletion deadline a terminating pod's monitor may live before it is
/// taken for stuck and killed.
const DELETE_SLACK: chrono::Duration = chrono::Duration::seconds(15);

/// First and longest wait between two failed sandbox re-creations of one pod.
const RETRY_INITIAL: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Pods (`namespace/name`) whose sandbox was re-created and monitor restarted.
    pub restarted: Vec<String>,
    /// Pods whose interrupted deletion was finished.
    pub deleted: Vec<String>,
    /// Finished pods whose dead sandbox was released.
    pub released: Vec<String>,
    /// Garbage removed: addresses, veths, pins, mounts, cgroups, directories.
    pub garbage: Vec<String>,
    /// What could not be done (retried by the next pass).
    pub errors: Vec<String>,
}

impl RecoveryReport {
    /// Whether the pass changed anything.
    pub fn changed(&self) -> bool {
        !(self.restarted.is_empty()
            && self.deleted.is_empty()
            && self.released.is_empty()
            && self.garbage.is_empty())
    }
}

/// Back-off of a pod whose sandbox could not be re-created (`pods/<uid>/recovery.json`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RetryState {
    /// The attempt number of the last sandbox made (kept when its record is gone).
    last_attempt: u32,
    /// Failed re-creations in a row.
    failures: u32,
    /// No new try before this.
    retry_after: Option<DateTime<Utc>>,
}

/// The only fields of a pod manifest the scan needs.
#[derive(Debug, Deserialize)]
struct PodHead {
    metadata: HeadMeta,
}

#[derive(Debug, Deserialize)]
struct HeadMeta {
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<DateTime<Utc>>,
}

/// Whether a pod whose monitor is gone still has containers to run: some init container
/// has not succeeded yet (and the pod has not failed), or some app container has not
/// finished for good. A container seen running when its monitor died exited with an
/// unknown status: that is a failure, restarted under `Always` and `OnFailure`, final under
/// `Never`. No observations at all (the monitor died before its first) means everything is
/// still to run.
pub fn needs_to_run(pod: &Pod, observed: Option<&ObservedPod>) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let Some(observed) = observed.filter(|o| !o.containers.is_empty()) else {
        return true;
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let state_of = |name: &str, init: bool| {
        observed
            .containers
            .iter()
            .find(|c| c.name == name && c.init == init)
            .map(|c| &c.state)
    };
    for c in spec.init_containers.iter().flatten() {
        match state_of(&c.name, true) {
            Some(ObservedState::Terminated { exit_code: 0, .. }) => continue,
            // A failed init container fails the pod under Never; else it is retried.
            Some(ObservedState::Terminated { .. } | ObservedState::Running { .. }) => {
                return policy != "Never"
            }
            Some(ObservedState::Waiting { .. }) | None => return true,
        }
    }
    spec.containers
        .iter()
        .any(|c| match state_of(&c.name, false) {
            Some(ObservedState::Terminated { exit_code, .. }) => match policy {
                "Never" => false,
                "OnFailure" => *exit_code != 0,
                _ => true,
            },
            Some(ObservedState::Running { .. }) => policy != "Never",
            Some(ObservedState::Waiting { .. }) | None => true,
        })
}

/// The wait before the next try after `failures` failed sandbox re-creations.
fn retry_delay(failures: u32) -> Duration {
    (RETRY_INITIAL * (1u32 << failures.min(5))).min(RETRY_MAX)
}

/// Whether the pid recorded in `status` still runs (same start time: no pid reuse).
fn alive(status: &ContainerStatus) -> bool {
    status.pid > 0 && proc_start_time(status.pid) == Some(status.pid_start)
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

impl Engine {
    /// One recovery pass over every pod (see the module docs); a full garbage collection
    /// follows when anything was wrong or the host rebooted since the last pass. Problems
    /// with one pod are reported and do not stop the others.
    pub fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let dir = self.pods_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => Some(e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut suspicious = false;
        for entry in entries.into_iter().flatten().flatten() {
            let Some(uid) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if uid.starts_with('.') {
                suspicious = true;
                continue;
            }
            if !entry.path().join("pod.json").exists() {
                // Half removed: the garbage collection's.
                suspicious = true;
                continue;
            }
            if let Err(e) = self.recover_pod(&uid, &mut report) {
                report.errors.push(format!("pod {uid}: {e:#}"));
            }
        }
        let rebooted = self.boot_changed();
        if suspicious || rebooted || report.changed() || !report.errors.is_empty() {
            match self.collect_garbage() {
                Ok(g) => report.garbage.extend(g),
                Err(e) => report.errors.push(format!("collecting garbage: {e:#}")),
            }
            if rebooted {
                self.record_boot();
            }
        }
        Ok(report)
    }

    /// Looks at one pod and recovers it if it needs it.
    fn recover_pod(&self, uid: &str, report: &mut RecoveryReport) -> Result<()> {
        let dir = self.pod_dir(uid);
        let Some(head) = peapod_store::read_json::<PodHead>(&dir.join("pod.json"))? else {
            return Ok(());
        };
        let monitor_lock = dir.join("monitor.lock");
        let monitor_alive = Lock::is_held(&monitor_lock)?;
        let deleting = head.metadata.deletion_timestamp;
        if deleting.is_none() && dir.join(crate::engine_cri::CRI_RECORD).exists() {
            // A CRI sandbox is the kubelet's: it re-creates a dead one with a new attempt
            // and removes stopped ones; only an interrupted removal is finished here.
            return Ok(());
        }
        if monitor_alive {
            match deleting {
                None if !self.sandbox_died(uid)? => return Ok(()),
                None => {}
                Some(deadline) => {
                    // A deleter holds the lifecycle lock while it waits for the monitor.
                    let Some(_pod_lock) = Lock::try_exclusive(&self.pod_lock_path(uid))? else {
                        return Ok(());
                    };
                    if Utc::now() < deadline + DELETE_SLACK {
                        // Its deleter may have died before telling it: tell it (again).
                        signal(self.monitor_pid(uid), nix::sys::signal::Signal::SIGTERM);
                        return Ok(());
                    }
                }
            }
            // A stuck terminating monitor, or one whose sandbox died: it goes.
            self.kill_monitor(uid);
        }
        let Some(_pod_lock) = Lock::try_exclusive(&self.pod_lock_path(uid))? else {
            return Ok(());
        };
        // Checked again under the lock: another command may have just recovered the pod.
        if Lock::is_held(&monitor_lock)? {
            return Ok(());
        }
        let Some(pod) = self.stored_pod(uid)? else {
            return Ok(());
        };
        let label = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        if pod.metadata.deletion_timestamp.is_some() {
            self.kill_leftovers(uid)?;
            self.teardown_pod(uid)?;
            report.deleted.push(label);
            return Ok(());
        }
        let observed: Option<ObservedPod> = peapod_store::read_json(&dir.join("observed.json"))?;
        if !needs_to_run(&pod, observed.as_ref()) {
            // Finished for good: nothing runs any more, the sandbox is released once.
            if dir.join("infra.id").exists() {
                self.kill_leftovers(uid)?;
                self.remove_sandboxes(uid)?;
                let _ = fs::remove_file(dir.join("infra.id"));
                report.released.push(label);
            }
            return Ok(());
        }
        let retry_path = dir.join("recovery.json");
        let mut retry: RetryState = peapod_store::read_json(&retry_path)?.unwrap_or_default();
        if retry.retry_after.is_some_and(|t| Utc::now() < t) {
            return Ok(());
        }
        self.kill_leftovers(uid)?;
        let last = self.remove_sandboxes(uid)?;
        let attempt = last.map_or(retry.last_attempt, |a| a.max(retry.last_attempt)) + 1;
        retry.last_attempt = attempt;
        // The attempt is durable before the sandbox bearing it exists.
        peapod_store::write_json(&retry_path, &retry)?;
        match self.start_pod(&pod, uid, attempt) {
            Ok(()) => {
                retry.failures = 0;
                retry.retry_after = None;
                peapod_store::write_json(&retry_path, &retry)?;
                report.restarted.push(label);
                Ok(())
            }
            Err(e) => {
                let _ = self.kill_leftovers(uid);
                let _ = self.remove_sandboxes(uid);
                retry.retry_after = Some(
                    Utc::now()
                        + chrono::Duration::from_std(retry_delay(retry.failures))
                            .unwrap_or_default(),
                );
                retry.failures += 1;
                peapod_store::write_json(&retry_path, &retry)?;
                let _ = self.record_event(
                    &pod,
                    "Warning",
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e:#}"),
                );
                Err(e.context(format!("re-creating the sandbox of pod {label}")))
            }
        }
    }

    /// The live pod monitor's pid (0 when unknown).
    fn monitor_pid(&self, uid: &str) -> i32 {
        fs::read_to_string(self.pod_dir(uid).join("monitor.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL to the pod monitor, then a bounded wait for its lock to go.
    fn kill_monitor(&self, uid: &str) {
        signal(self.monitor_pid(uid), nix::sys::signal::Signal::SIGKILL);
        let lock = self.pod_dir(uid).join("monitor.lock");
        wait_until(Duration::from_secs(5), || {
            !Lock::is_held(&lock).unwrap_or(false)
        });
    }

    /// Whether the pod's current infra process ran and is gone (its monitor still lives).
    fn sandbox_died(&self, uid: &str) -> Result<bool> {
        let Ok(id) = fs::read_to_string(self.pod_dir(uid).join("infra.id")) else {
            return Ok(false);
        };
        let status: Option<ContainerStatus> =
            peapod_store::read_json(&self.container_dir(id.trim()).join("status.json"))?;
        Ok(status.is_some_and(|s| s.pid > 0 && (s.exit_code.is_some() || !alive(&s))))
    }

    /// Kills every process left of the pod's containers and infra (their monitor is gone)
    /// and records the exits nobody saw; the runtime's state of each is deleted.
    fn kill_leftovers(&self, uid: &str) -> Result<()> {
        use nix::sys::signal::Signal;
        let containers = self.pod_containers(uid)?;
        // The infra first with SIGTERM: it takes the pod's pid namespace init with it.
        for c in containers.iter().filter(|c| is_infra(&c.config)) {
            if let Some(st) = c.status.as_ref().filter(|s| alive(s)) {
                signal(st.pid, Signal::SIGTERM);
                if !wait_until(Duration::from_secs(2), || !alive(st)) {
                    signal(st.pid, Signal::SIGKILL);
                }
            }
        }
        for c in containers.iter().filter(|c| !is_infra(&c.config)) {
            let _ = self
                .runtime_of(&c.config)
                .kill(&c.config.id, libc::SIGKILL, true);
            kill_cgroup(&c.config.cgroups_path);
        }
        let mut errors = Vec::new();
        for c in &containers {
            let Some(st) = &c.status else { continue };
            if !wait_until(Duration::from_secs(10), || !alive(st)) {
                errors.push(format!(
                    "{} (pid {}) did not die after SIGKILL",
                    c.config.name, st.pid
                ));
                continue;
            }
            self.record_unknown_exit(c)?;
            if !is_infra(&c.config) && self.paths.runtime_state().join(&c.config.id).exists() {
                let _ = self.runtime_of(&c.config).delete(&c.config.id);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("; "))
        }
    }

    /// A container that was running when its monitor died exited with an unknown status:
    /// 255, as `derive_state` reports it.
    fn record_unknown_exit(&self, c: &Container) -> Result<()> {
        let Some(mut st) = c.status.clone() else {
            return Ok(());
        };
        if st.exit_code.is_some() {
            return Ok(());
        }
        st.exit_code = Some(255);
        st.finished_at = Some(Utc::now());
        st.error = Some("the container's monitor died; its exit status is unknown".into());
        peapod_store::replace_json(&self.container_dir(&c.config.id).join("status.json"), &st)?;
        Ok(())
    }

    /// Removes every sandbox (infra) record of the pod with its netns, veth and IP;
    /// returns the highest attempt among them.
    fn remove_sandboxes(&self, uid: &str) -> Result<Option<u32>> {
        let mut last = None;
        for c in self.pod_containers(uid)? {
            let Some(link) = c.config.pod.as_ref().filter(|l| l.infra) else {
                continue;
            };
            last = last.max(Some(link.attempt));
            self.remove(&c, true, false)
                .with_context(|| format!("removing the old sandbox {}", c.config.name))?;
        }
        Ok(last)
    }

    /// Whether the host booted since the last pass (a reboot empties `/run`, and the
    /// kernel's boot id changes).
    fn boot_changed(&self) -> bool {
        let now = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let seen = fs::read_to_string(self.paths.run.join("boot_id")).unwrap_or_default();
        now != seen
    }

    fn record_boot(&self) {
        if let Ok(now) = fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            let _ = peapod_store::create_dir_all(&self.paths.run);
            let _ = peapod_store::atomic_write(&self.paths.run.join("boot_id"), now.as_bytes());
        }
    }

    /// Removes what no record owns: staging directories of interrupted commits, container
    /// and pod directories left half removed, rootfs and emptyDir mounts, netns pins,
    /// addresses, veths and CNI attachments, runtime state, cgroups, logs and names of
    /// containers and pods that no longer exist. Returns what was removed.
    ///
    /// Each kind is made after its owner's record is committed and removed before it, so
    /// "no record" means "nobody will ever remove it".
    pub fn collect_garbage(&self) -> Result<Vec<String>> {
        // One collector at a time; a second caller leaves it to the first.
        let Some(_gc) = Lock::try_exclusive(&self.paths.lib.join("gc.lock"))? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        let containers = self.paths.containers();
        let pods = self.pods_dir();
        let has_container = |id: &str| containers.join(id).join("container.json").exists();
        let has_pod = |uid: &str| pods.join(uid).join("pod.json").exists();

        // Mounts first: nothing below may be removed through a mount.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| PathBuf::from(unescape(m)))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for point in points {
            let orphan = if let Ok(rest) = point.strip_prefix(&containers) {
                first_component(rest).is_some_and(|id| !has_container(&id))
            } else if let Ok(rest) = point.strip_prefix(&pods) {
                first_component(rest).is_some_and(|uid| !has_pod(&uid))
            } else {
                false
            };
            if orphan {
                let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
                removed.push(format!("mount {}", point.display()));
            }
        }

        {
            let _lock = self.global_lock()?;
            for (name, path) in dir_entries(&containers) {
                if name.starts_with('.') || !has_container(&name) {
                    remove_tree(&path, &mut removed);
                }
            }
            let names = self.paths.lib.join("names");
            for (_, path) in dir_entries(&names) {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                if !has_container(holder.trim()) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        {
            let _lock = self.pods_lock()?;
            for (name, path) in dir_entries(&pods) {
                if name.starts_with('.') {
                    remove_tree(&path, &mut removed);
                } else if !has_pod(&name) {
                    // A pod being torn down holds its lifecycle lock.
                    if let Some(_l) = Lock::try_exclusive(&path.join("lifecycle.lock"))? {
                        remove_tree(&path, &mut removed);
                    }
                }
            }
        }
        for (name, path) in dir_entries(&self.paths.netns()) {
            if !has_container(&name) {
                if let Err(e) = netns::remove(&path) {
                    removed.push(format!("(failed) netns pin {}: {e}", path.display()));
                } else {
                    removed.push(format!("netns pin {}", path.display()));
                }
            }
        }
        match self
            .network()
            .collect_garbage(&|owner| has_container(owner))
        {
            Ok(r) => removed.extend(r),
            Err(e) => removed.push(format!("(failed) network: {e}")),
        }
        for (name, _) in dir_entries(&self.paths.runtime_state()) {
            // Dot entries are the built-in runtime's own (its link, seccomp cache, staged
            // bundles), never a container.
            if !name.starts_with('.') && !has_container(&name) {
                if let Ok(rt) = peapod_oci::runtime::Runtime::resolve(
                    self.runtime_override
                        .as_deref()
                        .or(self.config.runtime.as_deref()),
                    &self.paths.runtime_state(),
                ) {
                    let _ = rt.kill(&name, libc::SIGKILL, true);
                    let _ = rt.delete(&name);
                    removed.push(format!("runtime state of {name}"));
                }
            }
        }
        self.collect_cgroups(&has_container, &has_pod, &mut removed);
        for (name, path) in dir_entries(&self.paths.log.join("pods")) {
            let uid = name.rsplit('_').next().unwrap_or_default();
            if !has_pod(uid) {
                remove_tree(&path, &mut removed);
            }
        }
        for (name, path) in dir_entries(&self.paths.log.join("containers")) {
            if name
                .strip_suffix(".log")
                .is_some_and(|id| !has_container(id))
            {
                let _ = fs::remove_file(&path);
                removed.push(format!("log {}", path.display()));
            }
        }
        Ok(removed)
    }

    /// Cgroups under the cgroup parent of pods and containers that no longer exist (their
    /// processes killed first), and container cgroups inside live pods' of removed
    /// containers. Only names peapod makes are touched: `pod<uid>` and 64-hex ids.
    fn collect_cgroups(
        &self,
        has_container: &dyn Fn(&str) -> bool,
        has_pod: &dyn Fn(&str) -> bool,
        removed: &mut Vec<String>,
    ) {
        let mount = Path::new("/sys/fs/cgroup");
        let layout = peapod_oci::cgroups::detect(mount);
        let parent = format!("/{}", self.config.cgroup_parent);
        let mut parents = peapod_oci::cgroups::dirs(mount, layout, &parent);
        if layout == peapod_oci::cgroups::CgroupLayout::V1 {
            parents.push(mount.join("unified").join(&self.config.cgroup_parent));
        }
        let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
        for base in parents {
            for (name, path) in dir_entries(&base) {
                if let Some(uid) = name.strip_prefix("pod") {
                    let pod_gone = !has_pod(uid);
                    for (child, child_path) in dir_entries(&path) {
                        if is_id(&child) && (pod_gone || !has_container(&child)) {
                            remove_cgroup(&child_path, removed);
                        }
                    }
                    if pod_gone {
                        remove_cgroup(&path, removed);
                    }
                } else if is_id(&name) && !has_container(&name) {
                    remove_cgroup(&path, removed);
                }
            }
        }
    }
}

fn is_infra(c: &ContainerConfig) -> bool {
    c.pod.as_ref().is_some_and(|l| l.infra)
}

/// SIGKILL to every process of a container's cgroup (in every hierarchy): its processes
/// die even when the runtime has lost track of them.
fn kill_cgroup(cgroups_path: &str) {
    if cgroups_path.is_empty() {
        return;
    }
    let mount = Path::new("/sys/fs/cgroup");
    let layout = peapod_oci::cgroups::detect(mount);
    for dir in peapod_oci::cgroups::dirs(mount, layout, cgroups_path) {
        kill_procs(&dir);
    }
}

fn kill_procs(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Kills what is left in a cgroup and removes it (bounded: a process in uninterruptible
/// sleep keeps it until the next pass).
fn remove_cgroup(dir: &Path, removed: &mut Vec<String>) {
    kill_procs(dir);
    let gone = wait_until(Duration::from_secs(2), || match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    });
    removed.push(if gone {
        format!("cgroup {}", dir.display())
    } else {
        format!("(failed) cgroup {}", dir.display())
    });
}

/// The entries of `dir` as (name, path); none when it cannot be read.
fn dir_entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let set: BTreeSet<(String, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    set.into_iter().collect()
}

fn remove_tree(path: &Path, removed: &mut Vec<String>) {
    match fs::remove_dir_all(path) {
        Ok(()) => removed.push(format!("directory {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => removed.push(format!("(failed) directory {}: {e}", path.display())),
    }
}

fn first_component(rest: &Path) -> Option<String> {
    rest.components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .map(str::to_string)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                b[i + 1..i + 4]
                    .iter()
                    .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a recovery pass before a command; what it could not do is printed as warnings and
/// never fails the command itself.
pub fn before_command(engine: &Engine) {
    match engine.recover() {
        Ok(report) => {
            for e in &report.errors {
                eprintln!("Warning: recovery: {e}");
            }
        }
        Err(e) => eprintln!("Warning: recovery: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peapod_api::status::ObservedContainer;

    fn pod(policy: &str, init: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| k8s_openapi::api::core::v1::Container {
            name: n.to_string(),
            ..Default::default()
        };
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                containers: apps.iter().map(c).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(code: i32) -> ObservedState {
        ObservedState::Terminated {
            exit_code: code,
            signal: None,
            reason: String::new(),
            message: None,
            started_at: None,
            finished_at: Utc::now(),
        }
    }

    fn running() -> ObservedState {
        ObservedState::Running {
            started_at: Utc::now(),
        }
    }

    fn waiting() -> ObservedState {
        ObservedState::Waiting {
            reason: "PodInitializing".into(),
            message: None,
        }
    }

    fn observed(states: &[(&str, bool, ObservedState)]) -> ObservedPod {
        ObservedPod {
            sandbox_ready: true,
            pod_ip: None,
            host_ip: None,
            start_time: None,
            scheduled_at: Utc::now(),
            containers: states
                .iter()
                .map(|(name, init, state)| ObservedContainer {
                    name: name.to_string(),
                    init: *init,
                    container_id: None,
                    image: String::new(),
                    image_id: String::new(),
                    state: state.clone(),
                    last_state: None,
                    restart_count: 0,
                    ready: None,
                    started: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_pod_without_observations_still_has_everything_to_run() {
        assert!(needs_to_run(&pod("Never", &[], &["a"]), None));
        assert!(needs_to_run(
            &pod("Never", &[], &["a"]),
            Some(&observed(&[]))
        ));
    }

    #[test]
    fn app_containers_follow_the_restart_policy() {
        // (policy, state of the one app container, runs again)
        let table = [
            ("Always", running(), true),
            ("Always", terminated(0), true),
            ("Always", terminated(1), true),
            ("OnFailure", running(), true),
            ("OnFailure", terminated(0), false),
            ("OnFailure", terminated(2), true),
            ("Never", running(), false),
            ("Never", terminated(0), false),
            ("Never", terminated(1), false),
            ("Never", waiting(), true),
        ];
        for (policy, state, expected) in table {
            let o = observed(&[("a", false, state.clone())]);
            assert_eq!(
                needs_to_run(&pod(policy, &[], &["a"]), Some(&o)),
                expected,
                "{policy} {state:?}"
            );
        }
    }

    #[test]
    fn init_containers_come_first() {
        let p = pod("Never", &["i"], &["a"]);
        // The init container failed under Never: the pod failed, nothing more runs.
        let o = observed(&[("i", true, terminated(1)), ("a", false, waiting())]);
        assert!(!needs_to_run(&p, Some(&o)));
        // Under OnFailure it is retried.
        let p2 = pod("OnFailure", &["i"], &["a"]);
        assert!(needs_to_run(&p2, Some(&o)));
        // Interrupted while running: retried unless Never.
        let o = observed(&[("i", true, running()), ("a", false, waiting())]);
        assert!(!needs_to_run(&p, Some(&o)));
        assert!(needs_to_run(&p2, Some(&o)));
        // Done: the app container decides.
        let o = observed(&[("i", true, terminated(0)), ("a", false, terminated(0))]);
        assert!(!needs_to_run(&p, Some(&o)));
        assert!(!needs_to_run(&p2, Some(&o)));
        assert!(needs_to_run(&pod("Always", &["i"], &["a"]), Some(&o)));
        // A container missing from the observations has yet to run.
        let o = observed(&[("i", true, terminated(0))]);
        assert!(needs_to_run(&p, Some(&o)));
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        assert_eq!(retry_delay(0), Duration::from_secs(10));
        assert_eq!(retry_delay(1), Duration::from_secs(20));
        assert_eq!(retry_delay(5), Duration::from_secs(300));
        assert_eq!(retry_delay(40), Duration::from_secs(300));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
