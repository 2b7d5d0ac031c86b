//! The per-pod monitor (`peapod pod-monitor UID`): one small single-threaded process per
//! pod, the parent and subreaper of the pod's infra process and containers. It prepares the
//! volumes and then executes what [`crate::plan`] decides: init containers in order
//! (sidecars kept running), the app containers, restarts with the kubelet's back-off,
//! probes, lifecycle hooks and the ordered stop. It writes the containers' CRI logs and
//! records every start and exit durably (each container's `status.json`, the pod's
//! `observed.json` and events). Network probes run on short-lived threads inside the pod's
//! network namespace; exec probes and hooks are runtime `exec` children it reaps itself.
//! A pod with host ports has them published by a proxy (`peapod_sandbox::ports`) bound
//! before the infra starts and closed in `finish`; its threads exist only then.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use peapod_api::status::{ObservedContainer, ObservedPod, ObservedState};
use peapod_oci::cgroups::MigrationWarmer;
use peapod_oci::runtime::Runtime;
use peapod_oci::ProcessOverrides;
use peapod_store::Lock;

use crate::crilog::LineSplitter;
use crate::engine::{proc_start_time, Engine};
use crate::monitor::{
    close_inherited_fds, create_in_runtime, output_streams, reap_children, Output,
};
use crate::plan::{self, Action, AfterExit, ProbeKind, ProbeVerdict, Role};
use crate::pod::{container_name, join_sub_path, pod_labels};
use crate::probe::{NetworkCheck, ProbeOutcome};
use crate::record::{ContainerConfig, ContainerStatus, MountRecord, NetworkMode, Phase, PodLink};

/// The most of a termination message (or of a probe's output) that is kept, as the kubelet.
const MESSAGE_LIMIT: usize = 4096;
/// A wait at least this long counts as going idle (see `peapod_sys::release_free_heap`).
const IDLE: Duration = Duration::from_secs(1);

/// One container of the pod spec and what became of it.
struct Slot {
    spec: Container,
    init: bool,
    attempt: u32,
    state: ObservedState,
    last_state: Option<ObservedState>,
    container_id: Option<String>,
    image_id: String,
    running: Option<RunningContainer>,
}

struct RunningContainer {
    config: ContainerConfig,
    pid: i32,
    status: ContainerStatus,
    streams: Vec<(OwnedFd, LineSplitter)>,
    log: File,
    stop_signal: i32,
    /// The attach frame kind (stdout/stderr) of each entry of `streams`.
    stream_kinds: Vec<u8>,
    /// `peapod attach` / `kubectl attach` clients.
    hub: Option<crate::attach::Hub>,
    output: Output,
    _lock: Lock,
}

/// What a polled descriptor belongs to.
#[derive(Clone, Copy)]
enum Polled {
    /// A container's output stream (slot, stream).
    Stream(usize, usize),
    /// A container's attach socket or one of its clients (slot, index in `Hub::fds`).
    Attach(usize, usize),
}

/// What a job (a probe or a hook under way) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    Probe(ProbeKind),
    PostStart,
    PreStop,
}

/// A probe or hook under way: a runtime `exec` child (`pid`), a network check on a thread
/// (its result arrives on the channel) or a sleep (done at `deadline`).
struct Job {
    slot: usize,
    attempt: u32,
    kind: JobKind,
    pid: Option<i32>,
    sleep: bool,
    deadline: Instant,
    output: Option<PathBuf>,
    /// For messages: the command or the check.
    what: String,
}

struct PodMonitor<'a> {
    engine: &'a Engine,
    uid: String,
    pod: Pod,
    infra: ContainerConfig,
    infra_pid: i32,
    /// The init of the pod's shared pid namespace (shareProcessNamespace).
    pid_ns_owner: Option<i32>,
    infra_status: ContainerStatus,
    /// Held while the monitor lives: the infra's `monitor.lock`.
    _infra_lock: Option<Lock>,
    /// The pod's published host ports (None, and no thread, when it has none).
    host_ports: Option<peapod_sandbox::ports::Proxy>,
    observed: ObservedPod,
    slots: Vec<Slot>,
    desired: plan::Desired,
    plan: plan::Observed,
    volumes_ready: bool,
    volumes_retry: Option<Instant>,
    jobs: BTreeMap<u64, Job>,
    next_job: u64,
    /// Containers that exited and are yet to be deleted from the runtime.
    exited: Vec<ContainerConfig>,
    /// Events not yet written (see `event`).
    events: std::cell::RefCell<Vec<crate::pod::PodEvent>>,
    /// Network checks report here and write a byte to `wake_tx` so that poll returns.
    results_tx: mpsc::Sender<(u64, ProbeOutcome)>,
    results_rx: mpsc::Receiver<(u64, ProbeOutcome)>,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    /// The pipe to the `apply --wait` that started this monitor (`--report-changes`): a
    /// line each time `observed.json` changes, until every app container runs or the
    /// reader is gone, so that the command needs no watch on the pod's directory.
    report: Option<OwnedFd>,
    /// Keeps cgroup migrations fast while the pod's containers start (see
    /// `MigrationWarmer`): from the monitor's start until every app container runs.
    warmer: Option<MigrationWarmer>,
}

/// How long a warmer keeps cgroup migrations fast for one start of containers.
const WARM_LIMIT: Duration = Duration::from_secs(2);

/// Entry point. Reports `ok` once the sandbox is up (or `error: …`), then runs the pod.
pub fn run(engine: &Engine, uid: &str, report_changes: bool) -> Result<()> {
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    let mask = peapod_infra::block_lifecycle_signals()?;
    let dir = engine.pod_dir(uid);
    let _lock = Lock::try_exclusive(&dir.join("monitor.lock"))?
        .ok_or_else(|| anyhow!("another monitor is already running for pod {uid}"))?;
    peapod_store::replace(
        &dir.join("monitor.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    let mut pm = match start_sandbox(engine, uid) {
        Ok(mut pm) => {
            // A reader that went away (the CLI killed) must not take the monitor down.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ok");
            let _ = out.flush();
            if report_changes {
                pm.report = out.as_fd().try_clone_to_owned().ok();
                if let Some(fd) = &pm.report {
                    // A reader that stops reading must never block the monitor.
                    let _ = nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                    );
                }
            }
            if let Ok(null) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(&null);
            }
            pm
        }
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "error: {e:#}");
            return Err(e);
        }
    };
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("creating the signalfd")?;
    pm.run_loop(&sigfd)
}

/// The planner's view of one container spec.
fn container_plan(c: &Container, init: bool) -> plan::ContainerSpec {
    let role = match (init, c.restart_policy.as_deref()) {
        (true, Some("Always")) => Role::Sidecar,
        (true, _) => Role::Init,
        (false, _) => Role::App,
    };
    let mut spec = plan::ContainerSpec::new(role);
    for (kind, probe) in [
        (ProbeKind::Startup, &c.startup_probe),
        (ProbeKind::Liveness, &c.liveness_probe),
        (ProbeKind::Readiness, &c.readiness_probe),
    ] {
        spec.probes[kind as usize] = probe.as_ref().map(plan::ProbeTiming::from_probe);
    }
    let lifecycle = c.lifecycle.as_ref();
    spec.post_start = lifecycle.and_then(|l| l.post_start.as_ref()).is_some();
    spec.pre_stop = lifecycle.and_then(|l| l.pre_stop.as_ref()).is_some();
    spec
}

#[inline(never)]
fn start_sandbox<'a>(engine: &'a Engine, uid: &str) -> Result<PodMonitor<'a>> {
    let warmer = MigrationWarmer::start(WARM_LIMIT, Some(&engine.warm_lock()));
    nix::sys::prctl::set_child_subreaper(true).context("becoming the pod's subreaper")?;
    let pod = engine
        .stored_pod(uid)?
        .ok_or_else(|| anyhow!("pod {uid} has no record"))?;
    // The sandbox record's id is kept in the pod's directory: no scan of every container.
    let infra_id = fs::read_to_string(engine.pod_dir(uid).join("infra.id"))
        .with_context(|| format!("pod {uid} has no sandbox record"))?;
    let infra: ContainerConfig =
        peapod_store::read_json(&engine.container_dir(infra_id.trim()).join("container.json"))?
            .ok_or_else(|| anyhow!("pod {uid} has no sandbox record"))?;
    // Bound before the infra starts, so a host port another pod or process holds fails
    // the sandbox before anything runs; kept until `finish`. Threads only when there are
    // host ports.
    let host_ports = match (&infra.endpoint, infra.ports.is_empty()) {
        (Some(ep), false) => Some(
            peapod_sandbox::ports::spawn(&infra.ports, ep.ip)
                .context("publishing the pod's host ports")?,
        ),
        _ => None,
    };
    crate::fault::point("pod-monitor-before-infra")?;
    let mut cmd = crate::engine::infra_command();
    cmd.arg("--hostname").arg(&infra.hostname);
    if let Some(pin) = &infra.netns {
        cmd.arg("--netns").arg(pin);
    }
    let share_pid = pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    if share_pid {
        cmd.arg("--share-pid");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the infra process")?;
    let line =
        crate::engine::read_report(&mut child, "the infra process", Duration::from_secs(30))?;
    let reported = line.as_str();
    let pid_ns_owner: Option<i32> = match reported.strip_prefix("ok") {
        Some("") => None,
        Some(rest) => rest.trim().parse().ok(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the infra process failed: {}",
                reported.trim_start_matches("error: ")
            );
        }
    };

    let infra_pid = child.id() as i32;
    // The child is reaped by our own waitpid loop, not by `Child`.
    std::mem::forget(child);
    crate::fault::point("pod-monitor-after-infra")?;
    let now = Utc::now();
    let infra_status = ContainerStatus {
        pid: infra_pid,
        pid_start: proc_start_time(infra_pid).unwrap_or_default(),
        started_at: Some(now),
        ..Default::default()
    };
    let infra_dir = engine.container_dir(&infra.id);
    peapod_store::replace_json(&infra_dir.join("status.json"), &infra_status)?;
    let infra_lock = Lock::try_exclusive(&infra_dir.join("monitor.lock"))?;
    let spec = pod.spec.clone().unwrap_or_default();
    let mut slots = Vec::new();
    let mut specs = Vec::new();
    for (init, list) in [
        (true, spec.init_containers.clone().unwrap_or_default()),
        (false, spec.containers.clone()),
    ] {
        for c in list {
            let waiting = if init || spec.init_containers.as_ref().is_none_or(|l| l.is_empty()) {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            specs.push(container_plan(&c, init));
            slots.push(Slot {
                spec: c,
                init,
                attempt: 0,
                state: ObservedState::Waiting {
                    reason: waiting.into(),
                    message: None,
                },
                last_state: None,
                container_id: None,
                image_id: String::new(),
                running: None,
            });
        }
    }
    let restart = &engine.config.restart;
    let desired = plan::Desired {
        policy: plan::RestartPolicy::parse(spec.restart_policy.as_deref()),
        containers: specs,
        backoff: plan::BackoffPolicy::new(
            Duration::from_secs_f64(restart.backoff_initial_seconds),
            Duration::from_secs_f64(restart.backoff_max_seconds),
        ),
        grace: Duration::from_secs(
            spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64
        ),
    };
    let plan_state = plan::Observed::new(&desired);
    let observed = ObservedPod {
        sandbox_ready: true,
        pod_ip: infra
            .endpoint
            .as_ref()
            .map(|e| e.ip.to_string())
            .or_else(crate::engine::host_ip),
        host_ip: crate::engine::host_ip(),
        start_time: Some(now),
        scheduled_at: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, crate::pod::chrono_time),
        containers: Vec::new(),
    };
    let (wake_rx, wake_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
            .context("creating the probe pipe")?;
    let (results_tx, results_rx) = mpsc::channel();
    let mut pm = PodMonitor {
        engine,
        uid: uid.to_string(),
        pod,
        infra,
        infra_pid,
        pid_ns_owner,
        infra_status,
        _infra_lock: infra_lock,
        host_ports,
        observed,
        slots,
        desired,
        plan: plan_state,
        volumes_ready: false,
        volumes_retry: None,
        jobs: BTreeMap::new(),
        next_job: 0,
        exited: Vec::new(),
        events: Default::default(),
        results_tx,
        results_rx,
        wake_rx,
        wake_tx,
        report: None,
        warmer: Some(warmer),
    };
    pm.continue_from_previous_monitor();
    pm.save_observed()?;
    Ok(pm)
}

/// A signal by name (`SIGUSR1`, `USR1`) or number, as in a spec's or image's stop signal.
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..65).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().ok().map(|s| s as i32)
}

/// The last `limit` bytes of a file, as text.
fn tail_of(path: &std::path::Path, limit: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(limit as u64)));
    let mut buf = Vec::new();
    let _ = f.take(limit as u64).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last lines of a CRI log, their content only (for FallbackToLogsOnError: 80 lines,
/// 2048 bytes at most, as the kubelet).
fn log_tail(path: &std::path::Path) -> String {
    let text = tail_of(path, 64 * 1024);
    let mut lines: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_, _, _, content) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some(content)
        })
        .collect();
    let skip = lines.len().saturating_sub(80);
    lines.drain(..skip);
    let mut out = lines.join("\n");
    if out.len() > 2048 {
        let mut cut = out.len() - 2048;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}

impl PodMonitor<'_> {
    /// Records an event: kept until the loop's next save (`flush_events`), so the events of
    /// one step (a pod's start makes six or more) cost one write of the events file.
    fn event(&self, kind: &str, reason: &str, message: &str) {
        self.events
            .borrow_mut()
            .push(crate::pod::PodEvent::now(kind, reason, message));
    }

    fn flush_events(&self) {
        let events = std::mem::take(&mut *self.events.borrow_mut());
        let _ = self.engine.record_events(&self.pod, &events);
    }

    fn pod_name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    /// A monitor started again for a pod that had one (killed, or the host rebooted)
    /// continues its history: restart counts, attempt numbers (new container names never
    /// collide), and containers that were running count as exited with status unknown,
    /// restarted per restartPolicy. Init containers run again, as the kubelet re-runs them
    /// in a new sandbox.
    #[inline(never)]
    fn continue_from_previous_monitor(&mut self) {
        let path = self.engine.pod_dir(&self.uid).join("observed.json");
        let Ok(Some(previous)) = peapod_store::read_json::<ObservedPod>(&path) else {
            return;
        };
        let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
        for c in self.engine.pod_containers(&self.uid).unwrap_or_default() {
            if let Some(link) = c.config.pod.as_ref().filter(|l| !l.infra) {
                let next = attempts.entry(link.container_name.clone()).or_default();
                *next = (*next).max(link.attempt + 1);
            }
        }
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let name = self.slots[i].spec.name.clone();
            let init = self.slots[i].init;
            self.slots[i].attempt = attempts.get(&name).copied().unwrap_or(0);
            let Some(pc) = previous
                .containers
                .iter()
                .find(|c| c.name == name && c.init == init)
            else {
                continue;
            };
            self.plan.containers[i].restarts = pc.restart_count;
            let slot = &mut self.slots[i];
            slot.last_state = pc.last_state.clone();
            slot.container_id = pc.container_id.clone();
            slot.image_id = pc.image_id.clone();
            let role = self.desired.containers[i].role;
            match &pc.state {
                ObservedState::Running { started_at } if role != Role::Init => {
                    let lost = ObservedState::Terminated {
                        exit_code: 255,
                        signal: None,
                        reason: "Unknown".into(),
                        message: Some(
                            "The container could not be located when the pod was restored".into(),
                        ),
                        started_at: Some(*started_at),
                        finished_at: Utc::now(),
                    };
                    self.plan.containers[i].run = plan::Run::Running { since: now };
                    match self.plan.exited(&self.desired, i, 255, now) {
                        AfterExit::Done => self.slots[i].state = lost,
                        _ => {
                            self.slots[i].last_state = Some(lost);
                            self.plan.containers[i].restarts += 1;
                        }
                    }
                    // The restart is immediate: the back-off entry died with the monitor.
                    self.plan.containers[i].run = plan::Run::Pending;
                }
                ObservedState::Terminated { exit_code, .. }
                    if role == Role::App
                        && !plan::restarts(self.desired.policy, role, *exit_code) =>
                {
                    slot.state = pc.state.clone();
                    self.plan.containers[i].done = true;
                    self.plan.containers[i].run = plan::Run::Exited {
                        code: *exit_code,
                        at: now,
                    };
                }
                _ => {}
            }
        }
    }

    fn observed_containers(&self) -> Vec<ObservedContainer> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let running = s.running.is_some();
                ObservedContainer {
                    name: s.spec.name.clone(),
                    init: s.init,
                    container_id: s.container_id.clone(),
                    image: s.spec.image.clone().unwrap_or_default(),
                    image_id: s.image_id.clone(),
                    state: s.state.clone(),
                    last_state: s.last_state.clone(),
                    restart_count: self.plan.containers[i].restarts,
                    ready: running.then(|| self.plan.ready(&self.desired, i)),
                    started: running.then(|| self.plan.started(&self.desired, i)),
                }
            })
            .collect()
    }

    fn save_observed(&mut self) -> Result<()> {
        self.flush_events();
        self.observed.containers = self.observed_containers();
        peapod_store::replace_json(
            &self.engine.pod_dir(&self.uid).join("observed.json"),
            &self.observed,
        )?;
        self.report_change();
        if self.started_or_stopping() {
            self.warmer = None;
        }
        Ok(())
    }

    /// Every app container runs, or the pod is being stopped.
    fn started_or_stopping(&self) -> bool {
        self.plan.terminating.is_some()
            || self
                .slots
                .iter()
                .filter(|s| !s.init)
                .all(|s| matches!(s.state, ObservedState::Running { .. }))
    }

    /// Tells the waiting `apply --wait` (if any) that the records changed; lets go of it
    /// once every app container runs (all it waits for) or once it is gone.
    fn report_change(&mut self) {
        let Some(fd) = &self.report else { return };
        let gone = matches!(
            nix::unistd::write(fd, b".\n"),
            Err(e) if e != Errno::EAGAIN && e != Errno::EINTR
        );
        if gone || self.started_or_stopping() {
            self.report = None;
        }
    }

    /// Writes `observed.json` only when something a reader can see changed.
    #[inline(never)]
    fn save_observed_if_changed(&mut self, saved: &mut Option<ObservedPod>) -> Result<()> {
        self.flush_events();
        self.observed.containers = self.observed_containers();
        if saved.as_ref() != Some(&self.observed) {
            self.save_observed()?;
            *saved = Some(self.observed.clone());
        }
        Ok(())
    }

    fn run_loop(&mut self, sigfd: &SignalFd) -> Result<()> {
        // Sized when output is read, emptied when the monitor goes idle.
        let mut buf: Vec<u8> = Vec::new();
        let mut saved: Option<ObservedPod> = None;
        // Whether the loop did work since it last gave free heap back, and since when it has
        // had nothing due.
        let mut busy = true;
        let mut quiet_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.expire_jobs(now);
            let mut wake: Option<Instant> = None;
            if !self.volumes_ready && self.plan.terminating.is_none() {
                if self.volumes_retry.is_none_or(|t| now >= t) {
                    match self.prepare_volumes() {
                        Ok(()) => self.volumes_ready = true,
                        Err(e) => {
                            self.event("Warning", "FailedMount", &format!("{e:#}"));
                            self.volumes_retry = Some(now + Duration::from_secs(2));
                        }
                    }
                }
                wake = self.volumes_retry.filter(|_| !self.volumes_ready);
            }
            if self.volumes_ready || self.plan.terminating.is_some() {
                let p = plan::plan(&self.desired, &self.plan, now);
                for a in &p.actions {
                    self.plan.acting(&self.desired, a, now);
                }
                // Acting changes what is due (a failed launch sets its retry time): plan
                // again right away rather than sleep on a wake-up time computed before.
                let acted = !p.actions.is_empty();
                busy |= acted;
                if acted {
                    quiet_since = None;
                }
                // Signals go to every container at once (the kubelet stops a pod's
                // containers in parallel); the rest in the planned order.
                let (signals, rest): (Vec<Action>, Vec<Action>) = p
                    .actions
                    .into_iter()
                    .partition(|a| matches!(a, Action::Terminate(_) | Action::Kill(_)));
                self.signal_all(&signals);
                for a in rest {
                    if a == Action::Finish {
                        self.delete_exited();
                        return self.finish();
                    }
                    self.execute(a);
                }
                let w = if acted { Some(now) } else { p.wake_at };
                if let Some(w) = w {
                    wake = Some(wake.map_or(w, |x| x.min(w)));
                }
            }
            // Containers that exited are deleted from the runtime after what was due (a
            // finished init container after the next container's start).
            self.delete_exited();
            self.save_observed_if_changed(&mut saved)?;
            for j in self.jobs.values() {
                wake = Some(wake.map_or(j.deadline, |x| x.min(j.deadline)));
            }
            let now = Instant::now();
            // Idle for IDLE after work: what the work freed, and the code it ran, need not
            // stay resident (the monitor's memory is most of a pod's engine overhead). Not at
            // once: the last of the start (threads ending, the CLI's last reads) would fault
            // the code back in.
            if busy && wake.is_none_or(|d| d > now + IDLE) {
                let at = *quiet_since.get_or_insert(now) + IDLE;
                if now >= at {
                    buf = Vec::new();
                    peapod_sys::release_idle_text();
                    peapod_sys::release_free_heap();
                    peapod_sys::release_unused_stack();
                    busy = false;
                    quiet_since = None;
                } else {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
            let timeout = wake.map_or(PollTimeout::NONE, |d| {
                PollTimeout::try_from(
                    d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1,
                )
                .unwrap_or(PollTimeout::MAX)
            });
            let mut index: Vec<Polled> = Vec::new();
            let mut fds: Vec<PollFd> = vec![
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            for (si, slot) in self.slots.iter().enumerate() {
                if let Some(r) = &slot.running {
                    for (fi, (fd, _)) in r.streams.iter().enumerate() {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        index.push(Polled::Stream(si, fi));
                    }
                    for (hi, fd) in r.hub.iter().flat_map(|h| h.fds()).enumerate() {
                        fds.push(PollFd::new(fd, PollFlags::POLLIN));
                        index.push(Polled::Attach(si, hi));
                    }
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("polling the pod's containers"),
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if buf.is_empty() && ready.iter().any(|&r| r) {
                buf = vec![0u8; 64 * 1024];
            }
            let mut signals = Vec::new();
            if ready[0] {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    signals.push(info.ssi_signo as i32);
                }
            }
            if ready[1] {
                while matches!(nix::unistd::read(self.wake_rx.as_fd(), &mut buf[..64]), Ok(n) if n > 0)
                {
                }
            }
            // Output first, so the last lines land before the exit is recorded.
            let mut closed: Vec<(usize, usize)> = Vec::new();
            let mut attach: Vec<(usize, usize)> = Vec::new();
            for (k, &item) in index.iter().enumerate() {
                if !ready[k + 2] {
                    continue;
                }
                let (si, fi) = match item {
                    Polled::Stream(si, fi) => (si, fi),
                    Polled::Attach(si, hi) => {
                        attach.push((si, hi));
                        continue;
                    }
                };
                let r = self.slots[si].running.as_mut().expect("indexed slot runs");
                let (fd, splitter) = &mut r.streams[fi];
                match nix::unistd::read(fd.as_fd(), &mut buf) {
                    Ok(0) | Err(Errno::EIO) => closed.push((si, fi)),
                    Ok(n) => {
                        let _ = splitter.feed(&buf[..n], Utc::now(), &mut r.log);
                        let kind = r.stream_kinds[fi];
                        if let Some(hub) = r.hub.as_mut() {
                            hub.broadcast(kind, &buf[..n]);
                        }
                    }
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(_) => closed.push((si, fi)),
                }
            }
            for &(si, fi) in closed.iter().rev() {
                if let Some(r) = self.slots[si].running.as_mut() {
                    let (_, mut splitter) = r.streams.remove(fi);
                    r.stream_kinds.remove(fi);
                    let _ = splitter.finish(Utc::now(), &mut r.log);
                }
            }
            // Clients in reverse, so that a client leaving does not shift the next index.
            for &(si, hi) in attach.iter().rev() {
                if let Some(r) = self.slots[si].running.as_mut() {
                    if let Some(hub) = r.hub.as_mut() {
                        if hi == 0 {
                            hub.accept();
                        } else {
                            hub.read_client(hi - 1, &mut r.output);
                        }
                    }
                }
            }
            if signals
                .iter()
                .any(|&s| s == libc::SIGTERM || s == libc::SIGINT)
                && self.plan.terminating.is_none()
            {
                self.begin_termination();
            }
            while let Ok((id, outcome)) = self.results_rx.try_recv() {
                if let Some(job) = self.jobs.remove(&id) {
                    self.job_done(job, outcome);
                }
            }
            for (pid, code) in reap_children() {
                if pid == self.infra_pid {
                    self.infra_status.exit_code = Some(code);
                    self.infra_status.finished_at = Some(Utc::now());
                    let _ = peapod_store::replace_json(
                        &self
                            .engine
                            .container_dir(&self.infra.id)
                            .join("status.json"),
                        &self.infra_status,
                    );
                    self.observed.sandbox_ready = false;
                    continue;
                }
                if let Some(si) = self
                    .slots
                    .iter()
                    .position(|s| s.running.as_ref().is_some_and(|r| r.pid == pid))
                {
                    self.on_exit(si, code);
                    continue;
                }
                if let Some(id) = self
                    .jobs
                    .iter()
                    .find(|(_, j)| j.pid == Some(pid))
                    .map(|(id, _)| *id)
                {
                    let job = self.jobs.remove(&id).expect("found above");
                    let output = job
                        .output
                        .as_deref()
                        .map(|p| tail_of(p, MESSAGE_LIMIT))
                        .unwrap_or_default();
                    let outcome = ProbeOutcome {
                        success: code == 0,
                        message: if code == 0 {
                            output
                        } else if output.trim().is_empty() {
                            format!("command {} exited with {code}", job.what)
                        } else {
                            output
                        },
                    };
                    self.job_done(job, outcome);
                }
            }
        }
    }

    /// `runtime delete` of the containers that exited, in parallel (each is a runtime
    /// process of a few milliseconds; a pod's containers often end together).
    #[inline(never)]
    fn delete_exited(&mut self) {
        let exited = std::mem::take(&mut self.exited);
        let state_root = self.engine.paths.runtime_state();
        in_parallel(&exited, |config| {
            let runtime = Runtime {
                binary: config.runtime.clone(),
                state_root: state_root.clone(),
            };
            let _ = runtime.delete(&config.id);
        });
    }

    fn volume_path(&self, name: &str) -> Option<PathBuf> {
        let spec = self.pod.spec.as_ref()?;
        let v = spec.volumes.iter().flatten().find(|v| v.name == name)?;
        if let Some(hp) = &v.host_path {
            return Some(PathBuf::from(&hp.path));
        }
        Some(self.engine.pod_dir(&self.uid).join("volumes").join(name))
    }

    /// emptyDirs made (tmpfs for `medium: Memory`), hostPaths checked per their `type`,
    /// configMap/secret/downwardAPI/projected files written (read-only tmpfs, `objects`).
    #[inline(never)]
    fn prepare_volumes(&self) -> Result<()> {
        let Some(spec) = self.pod.spec.as_ref() else {
            return Ok(());
        };
        for v in spec.volumes.iter().flatten() {
            if let Some(hp) = &v.host_path {
                check_host_path(&hp.path, hp.type_.as_deref().unwrap_or("")).with_context(
                    || format!("MountVolume.SetUp failed for volume \"{}\"", v.name),
                )?;
            } else if let Some(ed) = &v.empty_dir {
                let dir = self.engine.pod_dir(&self.uid).join("volumes").join(&v.name);
                fs::create_dir_all(&dir)
                    .with_context(|| format!("creating emptyDir {}", dir.display()))?;
                if ed.medium.as_deref() == Some("Memory") && !crate::engine::is_mountpoint(&dir) {
                    let mut opts = "mode=0777".to_string();
                    if let Some(size) = &ed.size_limit {
                        opts.push_str(&format!(",size={}", quantity_bytes(&size.0)?));
                    }
                    nix::mount::mount(
                        Some("tmpfs"),
                        &dir,
                        Some("tmpfs"),
                        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                        Some(opts.as_str()),
                    )
                    .with_context(|| format!("mounting tmpfs for emptyDir {}", v.name))?;
                } else {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o777));
                }
            } else if crate::objects::is_api_data_volume(v) {
                let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
                let objects = self.engine.namespace_objects(namespace)?;
                let dir = self.engine.pod_dir(&self.uid).join("volumes").join(&v.name);
                crate::objects::prepare_api_volume(&dir, v, &self.pod, &objects).with_context(
                    || format!("MountVolume.SetUp failed for volume \"{}\"", v.name),
                )?;
            } else {
                bail!(
                    "volume {:?}: peapod supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes only",
                    v.name
                );
            }
        }
        Ok(())
    }

    /// Launches several containers: what needs the monitor (image, pull, the config) one
    /// by one, then each container's records, rootfs and runtime create+start on a thread
    /// of its own (the records' fsyncs and the runtime's processes overlap), then the
    /// bookkeeping one by one again.
    fn launch_many(&mut self, sis: &[usize]) {
        if !self.warmer.as_ref().is_some_and(|w| w.is_warming()) {
            self.warmer = Some(MigrationWarmer::start(
                WARM_LIMIT,
                Some(&self.engine.warm_lock()),
            ));
        }
        let mut staged = Vec::new();
        for &si in sis {
            match self.stage(si) {
                Ok(st) => staged.push((si, st)),
                Err((reason, e)) => self.launch_failed(si, reason, e),
            }
        }
        let engine = self.engine;
        let launched: Vec<_> = if staged.len() == 1 {
            vec![make_and_run(engine, &staged[0].1)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = staged
                    .iter()
                    .map(|(_, st)| scope.spawn(|| make_and_run(engine, st)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err((
                                "RunContainerError",
                                anyhow!("launch thread panicked"),
                                false,
                            ))
                        })
                    })
                    .collect()
            })
        };
        for ((si, st), result) in staged.into_iter().zip(launched) {
            let name = st.spec.name.clone();
            match result {
                Ok((p, started)) => {
                    self.event("Normal", "Created", &format!("Created container: {name}"));
                    if let Err((reason, e)) = self.finish_launch(si, p, started) {
                        self.launch_failed(si, reason, e);
                    }
                }
                Err((reason, e, made)) => {
                    if made {
                        self.event("Normal", "Created", &format!("Created container: {name}"));
                    }
                    self.launch_failed(si, reason, e)
                }
            }
        }
    }

    fn launch_failed(&mut self, si: usize, reason: &'static str, e: anyhow::Error) {
        self.plan.launch_failed(&self.desired, si, Instant::now());
        let slot = &mut self.slots[si];
        let message = format!("{e:#}");
        slot.state = ObservedState::Waiting {
            reason: reason.to_string(),
            message: Some(message.clone()),
        };
        let kind = match reason {
            "ErrImageNeverPull" => "ErrImageNeverPull",
            "ImagePullBackOff" => "BackOff",
            _ => "Failed",
        };
        self.event("Warning", kind, &message);
    }

    /// What a launch needs from the monitor: the image (pulled if the policy says so) and
    /// the container's config.
    fn stage(&mut self, si: usize) -> std::result::Result<Staged, LaunchError> {
        let engine = self.engine;
        let spec = self.slots[si].spec.clone();
        let image_name = spec.image.clone().unwrap_or_default();
        let images = engine.images().map_err(|e| ("CreateContainerError", e))?;
        let policy = spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let present = images.resolve(&image_name).ok();
        let must_pull = match policy.as_str() {
            "Always" => true,
            "Never" => false,
            _ => present.is_none(),
        };
        let image = if must_pull {
            let backing_off = matches!(&self.slots[si].state,
                ObservedState::Waiting { reason, .. } if reason == "ErrImagePull" || reason == "ImagePullBackOff");
            self.event(
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image_name}\""),
            );
            // A pull can take long: `describe` shows it now, not once it is done.
            self.flush_events();
            let started = Instant::now();
            let pulled = images
                .pull(
                    &image_name,
                    &crate::objects::pod_pull_options(engine, &self.pod),
                    &mut |_| {},
                )
                .map_err(|e| {
                    (
                        if backing_off {
                            "ImagePullBackOff"
                        } else {
                            "ErrImagePull"
                        },
                        anyhow!("Failed to pull image \"{image_name}\": {e}"),
                    )
                })?;
            let image = images
                .resolve(&pulled.id)
                .map_err(|e| ("ErrImagePull", e.into()))?;
            self.event(
                "Normal",
                "Pulled",
                &format!(
                    "Successfully pulled image \"{image_name}\" in {:.3}s. Image size: {} bytes.",
                    started.elapsed().as_secs_f64(),
                    image.size
                ),
            );
            image
        } else {
            match present {
                Some(i) => {
                    if self.slots[si].attempt == 0 && self.slots[si].container_id.is_none() {
                        self.event(
                            "Normal",
                            "Pulled",
                            &format!("Container image \"{image_name}\" already present on machine"),
                        );
                    }
                    i
                }
                None => {
                    return Err((
                        "ErrImageNeverPull",
                        anyhow!(
                        "Container image \"{image_name}\" is not present with pull policy of Never"
                    ),
                    ))
                }
            }
        };
        let config = self
            .container_config(&spec, &image)
            .map_err(|e| ("CreateContainerConfigError", e))?;
        let process = peapod_oci::MergedProcess {
            args: config.args.clone(),
            env: config.env.clone(),
            cwd: config.cwd.clone(),
            user: config.user.clone(),
        };
        let stop_signal = self.stop_signal(&spec, &image);
        Ok(Staged {
            spec,
            config,
            process,
            image,
            images,
            stop_signal,
        })
    }

    fn finish_launch(
        &mut self,
        si: usize,
        p: Prepared,
        started: Started,
    ) -> std::result::Result<(), LaunchError> {
        let Prepared {
            config,
            image_id,
            lock,
            stop_signal,
        } = p;
        let Started {
            pid,
            output,
            log,
            status,
        } = started;
        let spec = self.slots[si].spec.clone();
        let now = status.started_at.unwrap_or_else(Utc::now);
        self.event(
            "Normal",
            "Started",
            &format!("Started container {}", spec.name),
        );
        let streams = output_streams(&output).map_err(|e| ("RunContainerError", e))?;
        let stream_kinds = match output {
            Output::Tty(_) => vec![crate::attach::STDOUT],
            Output::Pipes { .. } => vec![crate::attach::STDOUT, crate::attach::STDERR],
        };
        // Without an attach socket the container still runs; `attach` then says why.
        let hub = crate::attach::Hub::bind(
            crate::attach::socket_path(&self.engine.paths.run, &config.id),
            spec.stdin_once.unwrap_or(false),
        )
        .ok();
        let attempt = config.pod.as_ref().map_or(0, |l| l.attempt);
        if attempt >= 2 {
            self.collect_old_instances(&spec.name, attempt);
        }
        self.plan.started_at(&self.desired, si, Instant::now());
        let slot = &mut self.slots[si];
        slot.container_id = Some(format!("peapod://{}", config.id));
        slot.image_id = image_id;
        slot.state = ObservedState::Running { started_at: now };
        slot.attempt = attempt + 1;
        slot.running = Some(RunningContainer {
            config,
            pid,
            status,
            streams,
            log,
            stop_signal,
            stream_kinds,
            hub,
            output,
            _lock: lock,
        });
        Ok(())
    }

    /// The signal that stops the container: the spec's `lifecycle.stopSignal`, else the
    /// image's `StopSignal`, else SIGTERM.
    fn stop_signal(&self, spec: &Container, image: &peapod_image::ImageRecord) -> i32 {
        let from_spec = spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.as_deref())
            .and_then(parse_signal);
        from_spec
            .or_else(|| {
                let images = self.engine.images().ok()?;
                let config = images.config(image).ok()?;
                config
                    .config()
                    .as_ref()
                    .and_then(|c| c.stop_signal().clone())
                    .and_then(|s| parse_signal(&s))
            })
            .unwrap_or(libc::SIGTERM)
    }

    /// Keeps the current and the previous instance of a restarted container (for
    /// `logs --previous`), as the kubelet does; older ones are removed.
    fn collect_old_instances(&self, container: &str, current: u32) {
        let Ok(all) = self.engine.pod_containers(&self.uid) else {
            return;
        };
        for c in all {
            let Some(link) = c.config.pod.as_ref() else {
                continue;
            };
            if !link.infra && link.container_name == container && link.attempt + 1 < current {
                let _ = self.engine.teardown(&c.config, true);
            }
        }
    }

    /// An env var's value: literal (with `$(VAR)` references to earlier variables left as
    /// given), or from the downward API (`fieldRef`, `resourceFieldRef`).
    fn env_value(&self, spec: &Container, e: &k8s_openapi::api::core::v1::EnvVar) -> String {
        if let Some(v) = &e.value {
            return v.clone();
        }
        let Some(from) = &e.value_from else {
            return String::new();
        };
        if let Some(f) = &from.field_ref {
            return field_value(&self.pod, &f.field_path, &self.observed);
        }
        if let Some(r) = &from.resource_field_ref {
            let res = spec.resources.as_ref();
            let (kind, name) = r.resource.split_once('.').unwrap_or(("", ""));
            let map = match kind {
                "limits" => res.and_then(|r| r.limits.as_ref()),
                "requests" => res.and_then(|r| r.requests.as_ref()),
                _ => None,
            };
            return match (name, map.and_then(|m| m.get(name))) {
                ("cpu", Some(q)) => {
                    let divisor = r
                        .divisor
                        .as_ref()
                        .and_then(|d| milli_cpu(&d.0))
                        .unwrap_or(1000)
                        .max(1);
                    milli_cpu(&q.0).map_or_else(String::new, |m| m.div_ceil(divisor).to_string())
                }
                ("memory", Some(q)) => {
                    let divisor = r
                        .divisor
                        .as_ref()
                        .and_then(|d| quantity_bytes(&d.0).ok())
                        .unwrap_or(1)
                        .max(1);
                    quantity_bytes(&q.0)
                        .map_or_else(|_| String::new(), |b| b.div_ceil(divisor).to_string())
                }
                // No limit: the node's allocatable, as the kubelet reports it.
                ("cpu", None) => std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .to_string(),
                _ => String::new(),
            };
        }
        String::new()
    }

    /// The container record for one pod container: Kubernetes' command/args rules over the
    /// image's Entrypoint/Cmd, the infra's namespaces, the pod's volumes.
    fn container_config(
        &self,
        spec: &Container,
        image: &peapod_image::ImageRecord,
    ) -> Result<ContainerConfig> {
        let engine = self.engine;
        let images = engine.images()?;
        let ic = images.config(image)?.config().clone().unwrap_or_default();
        let image_process = crate::engine::image_process(&ic);
        let argv = match (&spec.command, &spec.args) {
            (Some(cmd), args) => Some(
                cmd.iter()
                    .chain(args.iter().flatten())
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            (None, Some(args)) => Some(
                image_process
                    .entrypoint
                    .iter()
                    .chain(args.iter())
                    .cloned()
                    .collect(),
            ),
            (None, None) => None,
        };
        let sc = spec.security_context.as_ref();
        let user = sc
            .and_then(|s| s.run_as_user)
            .map(|u| match sc.and_then(|s| s.run_as_group) {
                Some(g) => format!("{u}:{g}"),
                None => u.to_string(),
            });
        let overrides = ProcessOverrides {
            entrypoint: argv.as_ref().map(|_| String::new()),
            cmd: argv.unwrap_or_default(),
            env: {
                let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
                let objects = engine.namespace_objects(namespace)?;
                let resolved =
                    crate::objects::container_env(spec, &objects, |e| self.env_value(spec, e))?;
                for message in &resolved.skipped {
                    self.event("Warning", "InvalidEnvironmentVariableNames", message);
                }
                resolved
                    .vars
                    .into_iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect()
            },
            working_dir: spec.working_dir.clone(),
            user,
        };
        let process = peapod_oci::merge_process(&image_process, &overrides)?;
        let mut mounts = Vec::new();
        for vm in spec.volume_mounts.iter().flatten() {
            let base = self
                .volume_path(&vm.name)
                .ok_or_else(|| anyhow!("volume {:?} is not declared", vm.name))?;
            let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => join_sub_path(&base, sub)?,
                None => base,
            };
            // The kubelet mounts configMap, secret, downwardAPI and projected volumes
            // read-only whatever the mount says.
            let api_data = self
                .pod
                .spec
                .as_ref()
                .and_then(|sp| sp.volumes.iter().flatten().find(|v| v.name == vm.name))
                .is_some_and(crate::objects::is_api_data_volume);
            let ro = vm.read_only.unwrap_or(false) || api_data;
            mounts.push(MountRecord {
                kind: "bind".into(),
                name: None,
                source,
                destination: vm.mount_path.clone(),
                rw: !ro,
                mode: if ro { "ro".into() } else { String::new() },
                anonymous: false,
            });
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let namespace = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let attempt = self
            .slots
            .iter()
            .find(|s| s.spec.name == spec.name)
            .map_or(0, |s| s.attempt);
        let id = peapod_store::new_id();
        // The kubelet bind-mounts a host file at terminationMessagePath and reads it after
        // the container exits.
        let termination_log = self.termination_log(&spec.name, attempt);
        if let Some(dir) = termination_log.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        File::create(&termination_log)
            .with_context(|| format!("creating {}", termination_log.display()))?;
        mounts.push(MountRecord {
            kind: "bind".into(),
            name: None,
            source: termination_log,
            destination: spec
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            rw: true,
            mode: String::new(),
            anonymous: false,
        });
        let host_network = self.infra.network_mode == NetworkMode::Host;
        let pod_spec = self.pod.spec.clone().unwrap_or_default();
        // hostIPC joins the host's ipc namespace by path, as the pod's own is joined.
        let ipc_owner = if pod_spec.host_ipc.unwrap_or(false) {
            1
        } else {
            self.infra_pid
        };
        let ns_path = |ns: &str| {
            let owner = if ns == "ipc" {
                ipc_owner
            } else {
                self.infra_pid
            };
            Some(PathBuf::from(format!("/proc/{owner}/ns/{ns}")))
        };
        let runtime = Runtime::resolve(
            engine
                .runtime_override
                .as_deref()
                .or(engine.config.runtime.as_deref()),
            &engine.paths.runtime_state(),
        )?;
        Ok(ContainerConfig {
            id: id.clone(),
            name: container_name(&spec.name, &name, &namespace, &self.uid, attempt),
            created: Utc::now(),
            image: spec.image.clone().unwrap_or_default(),
            image_id: image.id.clone(),
            args: process.args,
            env: process.env,
            cwd: process.cwd,
            user: process.user,
            tty: spec.tty.unwrap_or(false),
            open_stdin: spec.stdin.unwrap_or(false),
            auto_remove: false,
            hostname: self.infra.hostname.clone(),
            network_mode: if host_network {
                NetworkMode::Host
            } else {
                NetworkMode::Container(self.infra.id.clone())
            },
            netns: None,
            endpoint: None,
            mounts,
            ports: Vec::new(),
            runtime: runtime.binary,
            // One cgroup per pod, the parent of its containers' (as the kubelet's pod<uid>).
            cgroups_path: format!("{}/{id}", engine.pod_cgroup(&self.uid)),
            phase: Phase::Creating,
            labels: pod_labels(&self.pod, &spec.name),
            pod: Some(PodLink {
                uid: self.uid.clone(),
                namespace: namespace.clone(),
                pod_name: name.clone(),
                container_name: spec.name.clone(),
                infra: false,
                init: self
                    .slots
                    .iter()
                    .any(|s| s.init && s.spec.name == spec.name),
                attempt,
                ipc: ns_path("ipc"),
                uts: ns_path("uts"),
                pid: if pod_spec.host_pid.unwrap_or(false) {
                    Some(PathBuf::from("/proc/1/ns/pid"))
                } else {
                    self.pid_ns_owner
                        .map(|p| PathBuf::from(format!("/proc/{p}/ns/pid")))
                },
            }),
            log_path: Some(
                engine
                    .pod_log_dir(&namespace, &name, &self.uid)
                    .join(&spec.name)
                    .join(format!("{attempt}.log")),
            ),
            resources: kubelet_resources(spec),
        })
    }

    /// The host file bind-mounted at a container's terminationMessagePath.
    fn termination_log(&self, container: &str, attempt: u32) -> PathBuf {
        self.engine
            .pod_dir(&self.uid)
            .join("termination")
            .join(format!("{container}-{attempt}"))
    }

    /// A container's termination message: its terminationMessagePath file, or with
    /// `FallbackToLogsOnError` the end of its log when that is empty and the exit failed.
    fn termination_message(&self, si: usize, r: &RunningContainer, code: i32) -> Option<String> {
        let spec = &self.slots[si].spec;
        let attempt = r.config.pod.as_ref().map_or(0, |l| l.attempt);
        let file = self.termination_log(&spec.name, attempt);
        let mut message = tail_of(&file, MESSAGE_LIMIT);
        let _ = fs::remove_file(&file);
        if message.is_empty()
            && code != 0
            && spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            if let Some(log) = &r.config.log_path {
                message = log_tail(log);
            }
        }
        (!message.is_empty()).then_some(message)
    }

    #[inline(never)]
    fn on_exit(&mut self, si: usize, code: i32) {
        let now = Utc::now();
        let Some(mut r) = self.slots[si].running.take() else {
            return;
        };
        // What the process wrote just before it exited may still be in the pipes (or the
        // pty): read it now, bounded, so the log and attached clients get the last lines.
        drain_streams(&mut r);
        for (_, mut splitter) in std::mem::take(&mut r.streams) {
            let _ = splitter.finish(now, &mut r.log);
        }
        // The attach socket goes only once the exit is on record (below), so that a reader
        // never sees a running container without one.
        let hub = r.hub.take();
        let _ = r.log.sync_data();
        r.status.exit_code = Some(code);
        r.status.finished_at = Some(now);
        let dir = self.engine.container_dir(&r.config.id);
        let oom = code == 137 && crate::engine::oom_killed(&r.config.cgroups_path);
        if oom {
            r.status.error = Some("OOMKilled".into());
        }
        let _ = peapod_store::replace_json(&dir.join("status.json"), &r.status);
        if let Some(hub) = hub {
            hub.exit(code);
        }
        // Deleted with the other containers that exited at the same time, at once.
        self.exited.push(r.config.clone());
        let message = self.termination_message(si, &r, code);
        let slot = &mut self.slots[si];
        let started_at = match slot.state {
            ObservedState::Running { started_at } => Some(started_at),
            _ => r.status.started_at,
        };
        let terminated = ObservedState::Terminated {
            exit_code: code,
            signal: (code > 128).then_some(code - 128),
            reason: if oom {
                "OOMKilled".into()
            } else if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message,
            started_at,
            finished_at: now,
        };
        let name = slot.spec.name.clone();
        drop(r);
        match self.plan.exited(&self.desired, si, code, Instant::now()) {
            AfterExit::Done => self.slots[si].state = terminated,
            AfterExit::Restart => {
                let slot = &mut self.slots[si];
                slot.last_state = Some(terminated.clone());
                slot.state = terminated;
            }
            AfterExit::BackOff(delay) => {
                let pod = self.pod_name();
                let slot = &mut self.slots[si];
                slot.last_state = Some(terminated);
                slot.state = ObservedState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {} restarting failed container={name} pod={pod}",
                        format_delay(delay)
                    )),
                };
                self.event("Warning", "BackOff", "Back-off restarting failed container");
            }
        }
    }

    #[inline(never)]
    fn begin_termination(&mut self) {
        let pod = self
            .engine
            .stored_pod(&self.uid)
            .ok()
            .flatten()
            .unwrap_or_else(|| self.pod.clone());
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let grace = Duration::from_secs(grace);
        self.desired.grace = grace;
        self.plan.terminating = Some(Instant::now() + grace);
        let names: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.running.is_some())
            .map(|s| s.spec.name.clone())
            .collect();
        for n in names {
            self.event("Normal", "Killing", &format!("Stopping container {n}"));
        }
    }

    /// Carries out one planned action.
    #[inline(never)]
    fn execute(&mut self, action: Action) {
        match action {
            Action::Start(list) => self.launch_many(&list),
            Action::PostStart(i) => self.run_hook(i, JobKind::PostStart),
            Action::PreStop(i) => self.run_hook(i, JobKind::PreStop),
            Action::Probe(i, kind) => self.run_probe(i, kind),
            Action::Terminate(_) | Action::Kill(_) => self.signal_all(&[action]),
            Action::Finish => {}
        }
    }

    /// Sends each `Terminate` (the container's stop signal) and `Kill` (SIGKILL, to every
    /// process of the container) at once, a runtime `kill` per container.
    #[inline(never)]
    fn signal_all(&self, actions: &[Action]) {
        let targets: Vec<(&ContainerConfig, i32)> = actions
            .iter()
            .filter_map(|a| {
                let (i, sig) = match *a {
                    Action::Terminate(i) => (i, None),
                    Action::Kill(i) => (i, Some(libc::SIGKILL)),
                    _ => return None,
                };
                let r = self.slots[i].running.as_ref()?;
                Some((&r.config, sig.unwrap_or(r.stop_signal)))
            })
            .collect();
        let state_root = self.engine.paths.runtime_state();
        in_parallel(&targets, |&(config, sig)| {
            let runtime = Runtime {
                binary: config.runtime.clone(),
                state_root: state_root.clone(),
            };
            let _ = runtime.kill(&config.id, sig, sig == libc::SIGKILL);
        });
    }

    fn add_job(&mut self, job: Job) -> u64 {
        self.next_job += 1;
        self.jobs.insert(self.next_job, job);
        self.next_job
    }

    /// Runs `argv` in the container as an exec probe or hook: a runtime `exec` child of this
    /// monitor, its output in a file, killed with its process tree at `timeout`.
    fn spawn_exec(&mut self, i: usize, kind: JobKind, argv: &[String], timeout: Duration) {
        let attempt = self.slots[i].attempt;
        let what = format!("{:?}", argv.join(" "));
        let Some(r) = &self.slots[i].running else {
            return;
        };
        let runtime = Runtime {
            binary: r.config.runtime.clone(),
            state_root: self.engine.paths.runtime_state(),
        };
        let out_dir = self.engine.pod_dir(&self.uid).join("probes");
        let _ = fs::create_dir_all(&out_dir);
        let out_path =
            out_dir.join(format!("{}-{:?}", self.slots[i].spec.name, kind).replace(['(', ')'], ""));
        let spawned = File::create(&out_path).and_then(|out| {
            let err = out.try_clone()?;
            runtime
                .exec_command(
                    &r.config.id,
                    argv,
                    false,
                    &r.config.env,
                    Some(&r.config.cwd),
                )
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        });
        let deadline = Instant::now() + timeout;
        match spawned {
            Ok(child) => {
                let pid = child.id() as i32;
                // Reaped by the monitor's own waitpid loop, not by `Child`.
                std::mem::forget(child);
                self.add_job(Job {
                    slot: i,
                    attempt,
                    kind,
                    pid: Some(pid),
                    sleep: false,
                    deadline,
                    output: Some(out_path),
                    what,
                });
            }
            Err(e) => self.settle_now(i, kind, false, format!("running the runtime's exec: {e}")),
        }
    }

    /// Starts a network check on its own thread inside the pod's network namespace.
    fn spawn_network(&mut self, i: usize, kind: JobKind, check: NetworkCheck, timeout: Duration) {
        let attempt = self.slots[i].attempt;
        let id = self.add_job(Job {
            slot: i,
            attempt,
            kind,
            pid: None,
            sleep: false,
            // The thread reports its own timeout; this bound covers a lost thread.
            deadline: Instant::now() + timeout + Duration::from_secs(2),
            output: None,
            what: format!("{check:?}"),
        });
        let tx = self.results_tx.clone();
        let wake = self.wake_tx.try_clone();
        let netns = if self.infra.network_mode == NetworkMode::Host {
            None
        } else {
            self.infra
                .netns
                .clone()
                .or_else(|| Some(PathBuf::from(format!("/proc/{}/ns/net", self.infra_pid))))
        };
        crate::probe::spawn_check(netns, check, timeout, move |outcome| {
            let _ = tx.send((id, outcome));
            if let Ok(w) = wake {
                let _ = nix::unistd::write(&w, b"!");
            }
        });
    }

    fn pod_ip(&self) -> String {
        self.observed
            .pod_ip
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    fn run_probe(&mut self, i: usize, kind: ProbeKind) {
        let spec = &self.slots[i].spec;
        let probe: Option<Probe> = match kind {
            ProbeKind::Startup => spec.startup_probe.clone(),
            ProbeKind::Liveness => spec.liveness_probe.clone(),
            ProbeKind::Readiness => spec.readiness_probe.clone(),
        };
        let Some(probe) = probe else {
            return;
        };
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let job = JobKind::Probe(kind);
        if let Some(exec) = &probe.exec {
            let argv = exec.command.clone().unwrap_or_default();
            self.spawn_exec(i, job, &argv, timeout);
            return;
        }
        let ip = self.pod_ip();
        let spec = &self.slots[i].spec;
        let check = if let Some(h) = &probe.http_get {
            crate::probe::http_check(h, spec, &ip)
        } else if let Some(t) = &probe.tcp_socket {
            crate::probe::tcp_check(t, spec, &ip)
        } else if let Some(g) = &probe.grpc {
            crate::probe::grpc_check(g, &ip)
        } else {
            return;
        };
        match check {
            Ok(check) => self.spawn_network(i, job, check, timeout),
            Err(e) => self.settle_now(i, job, false, e.to_string()),
        }
    }

    fn run_hook(&mut self, i: usize, kind: JobKind) {
        let lifecycle = self.slots[i].spec.lifecycle.clone().unwrap_or_default();
        let handler: Option<LifecycleHandler> = match kind {
            JobKind::PostStart => lifecycle.post_start,
            _ => lifecycle.pre_stop,
        };
        let Some(h) = handler else {
            return;
        };
        // Hooks are bounded by the grace period, as the kubelet bounds preStop.
        let timeout = self.desired.grace.max(Duration::from_secs(1));
        let attempt = self.slots[i].attempt;
        if let Some(exec) = &h.exec {
            let argv = exec.command.clone().unwrap_or_default();
            self.spawn_exec(i, kind, &argv, timeout);
        } else if let Some(http) = &h.http_get {
            let ip = self.pod_ip();
            match crate::probe::http_hook_check(http, &self.slots[i].spec, &ip) {
                Ok(check) => self.spawn_network(i, kind, check, timeout),
                Err(e) => {
                    self.settle_now(i, kind, false, e.to_string());
                }
            }
        } else if let Some(sleep) = &h.sleep {
            self.add_job(Job {
                slot: i,
                attempt,
                kind,
                pid: None,
                sleep: true,
                deadline: Instant::now() + Duration::from_secs(sleep.seconds.max(0) as u64),
                output: None,
                what: format!("sleep {}", sleep.seconds),
            });
        } else {
            // tcpSocket hooks are deprecated and do nothing in the kubelet either.
            self.settle_now(i, kind, true, String::new());
        }
    }

    /// A probe or hook whose outcome is known without running anything (it could not be
    /// started, or there is nothing to run).
    fn settle_now(&mut self, i: usize, kind: JobKind, success: bool, message: String) {
        let job = Job {
            slot: i,
            attempt: self.slots[i].attempt,
            kind,
            pid: None,
            sleep: false,
            deadline: Instant::now(),
            output: None,
            what: String::new(),
        };
        self.job_done(job, ProbeOutcome { success, message });
    }

    /// Jobs past their deadline: sleeps succeed, everything else failed by timeout (an exec
    /// job's process tree is killed).
    #[inline(never)]
    fn expire_jobs(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| now >= j.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let job = self.jobs.remove(&id).expect("listed above");
            if job.sleep {
                self.job_done(
                    job,
                    ProbeOutcome {
                        success: true,
                        message: String::new(),
                    },
                );
                continue;
            }
            if let Some(pid) = job.pid {
                crate::engine::kill_tree(pid);
            }
            let message = format!("command {} timed out", job.what);
            self.job_done(
                job,
                ProbeOutcome {
                    success: false,
                    message,
                },
            );
        }
    }

    /// A probe or hook finished: events, and the verdict handed to the planner.
    #[inline(never)]
    fn job_done(&mut self, job: Job, outcome: ProbeOutcome) {
        if let Some(out) = &job.output {
            let _ = fs::remove_file(out);
        }
        let i = job.slot;
        // A result for an earlier run of the container means nothing now.
        if self.slots[i].attempt != job.attempt || self.slots[i].running.is_none() {
            return;
        }
        let name = self.slots[i].spec.name.clone();
        let message = outcome.message.trim_end().to_string();
        match job.kind {
            JobKind::Probe(kind) => {
                if !outcome.success {
                    self.event(
                        "Warning",
                        "Unhealthy",
                        &format!("{} probe failed: {message}", kind.title()),
                    );
                }
                let verdict = self
                    .plan
                    .probe_result(&self.desired, i, kind, outcome.success);
                if verdict == ProbeVerdict::Restart {
                    self.event(
                        "Normal",
                        "Killing",
                        &format!(
                            "Container {name} failed {} probe, will be restarted",
                            kind.title().to_lowercase()
                        ),
                    );
                }
            }
            JobKind::PostStart => {
                if !outcome.success {
                    self.event(
                        "Warning",
                        "FailedPostStartHook",
                        &format!("PostStartHook failed: {message}"),
                    );
                    self.event("Normal", "Killing", "FailedPostStartHook");
                }
                self.plan.post_start_done(i, outcome.success);
            }
            JobKind::PreStop => {
                if !outcome.success {
                    self.event(
                        "Warning",
                        "FailedPreStopHook",
                        &format!("PreStopHook failed: {message}"),
                    );
                }
                self.plan.pre_stop_done(i);
            }
        }
    }

    /// Every container is gone: stop the infra last and record it.
    #[inline(never)]
    fn finish(&mut self) -> Result<()> {
        // Closed before the monitor's lock goes: whoever waits on it finds the ports free.
        self.host_ports = None;
        for job in std::mem::take(&mut self.jobs).into_values() {
            if let Some(pid) = job.pid {
                crate::engine::kill_tree(pid);
            }
            if let Some(out) = &job.output {
                let _ = fs::remove_file(out);
            }
        }
        if self.infra_status.exit_code.is_none() {
            let pid = nix::unistd::Pid::from_raw(self.infra_pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            let gone = || {
                !matches!(
                    nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                    Ok(nix::sys::wait::WaitStatus::StillAlive)
                )
            };
            if !crate::engine::wait_until(Duration::from_secs(5), gone) {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            self.infra_status.exit_code = Some(0);
            self.infra_status.finished_at = Some(Utc::now());
            peapod_store::replace_json(
                &self
                    .engine
                    .container_dir(&self.infra.id)
                    .join("status.json"),
                &self.infra_status,
            )?;
        }
        self.observed.sandbox_ready = false;
        self.save_observed()
    }
}

/// Reads whatever is already waiting on a container's output streams (never blocking: each
/// read follows a zero-timeout poll), into its log and to its attached clients.
fn drain_streams(r: &mut RunningContainer) {
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..64 {
        let mut progressed = false;
        for (fi, (fd, splitter)) in r.streams.iter_mut().enumerate() {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let readable = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
                && fds[0]
                    .revents()
                    .is_some_and(|e| e.contains(PollFlags::POLLIN));
            if !readable {
                continue;
            }
            if let Ok(n) = nix::unistd::read(fd.as_fd(), &mut buf) {
                if n > 0 {
                    progressed = true;
                    let _ = splitter.feed(&buf[..n], Utc::now(), &mut r.log);
                    if let Some(hub) = r.hub.as_mut() {
                        hub.broadcast(r.stream_kinds[fi], &buf[..n]);
                    }
                }
            }
        }
        if !progressed {
            return;
        }
    }
}

/// A back-off as the kubelet prints it: `10s`, `1m20s`, `5m0s`.
fn format_delay(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if d.subsec_millis() != 0 && s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{s}s")
    }
}

type LaunchError = (&'static str, anyhow::Error);

/// A container to launch, as the monitor staged it.
struct Staged {
    spec: Container,
    config: ContainerConfig,
    process: peapod_oci::MergedProcess,
    image: peapod_image::ImageRecord,
    images: peapod_image::ImageStore,
    stop_signal: i32,
}

/// A container record with its rootfs and bundle, ready for the runtime.
struct Prepared {
    config: ContainerConfig,
    image_id: String,
    lock: Lock,
    stop_signal: i32,
}

/// What the runtime started.
struct Started {
    pid: i32,
    output: Output,
    log: File,
    status: ContainerStatus,
}

/// Commits a staged container's record, makes its rootfs and bundle, then creates and
/// starts it; safe to run for several containers at once. An error says whether the
/// container was made (its `Created` event is due).
fn make_and_run(
    engine: &Engine,
    st: &Staged,
) -> std::result::Result<(Prepared, Started), (&'static str, anyhow::Error, bool)> {
    let config = engine
        .commit_and_make(
            st.config.clone(),
            Some(&st.config.name),
            &st.image,
            &st.images,
            &st.process,
        )
        .map_err(|e| ("CreateContainerError", e, false))?;
    let dir = engine.container_dir(&config.id);
    let lock = Lock::try_exclusive(&dir.join("monitor.lock"))
        .map_err(|e| ("RunContainerError", e.into(), true))?
        .ok_or_else(|| {
            (
                "RunContainerError",
                anyhow!("container {} is locked by another monitor", config.name),
                true,
            )
        })?;
    let started = run_prepared(engine, &config).map_err(|(r, e)| (r, e, true))?;
    Ok((
        Prepared {
            config,
            image_id: st.image.id.clone(),
            lock,
            stop_signal: st.stop_signal,
        },
        started,
    ))
}

/// `runtime create` + `start` of a prepared container; safe to run for several containers
/// at once (each waits only for its own runtime processes).
fn run_prepared(
    engine: &Engine,
    config: &ContainerConfig,
) -> std::result::Result<Started, LaunchError> {
    let runtime = Runtime {
        binary: config.runtime.clone(),
        state_root: engine.paths.runtime_state(),
    };
    let dir = engine.container_dir(&config.id);
    let (pid, output, log, started) =
        create_in_runtime(engine, config, &runtime, true).map_err(|e| ("RunContainerError", e))?;
    if !started {
        if let Err(e) = runtime.start(&config.id) {
            let _ = runtime.delete(&config.id);
            return Err(("RunContainerError", e.into()));
        }
    }
    let status = ContainerStatus {
        pid,
        pid_start: proc_start_time(pid).unwrap_or_default(),
        started_at: Some(Utc::now()),
        ..Default::default()
    };
    peapod_store::replace_json(&dir.join("status.json"), &status)
        .map_err(|e| ("RunContainerError", e.into()))?;
    Ok(Started {
        pid,
        output,
        log,
        status,
    })
}

/// The kubelet's mapping of a container's requests and limits to cgroup values: shares
/// from the CPU request (2 when none), CFS quota from the CPU limit, the memory limit.
pub fn kubelet_resources(c: &Container) -> peapod_oci::Resources {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let lim = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let milli = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| { m.and_then(|m| m.get("cpu")).and_then(|q| milli_cpu(&q.0)) };
    let cpu_request = milli(req).or(milli(lim)).unwrap_or(0);
    let shares = (cpu_request * 1024 / 1000).max(2);
    let quota = milli(lim).map(|m| (m as i64 * 100_000 / 1000).max(1000));
    let memory = lim
        .and_then(|m| m.get("memory"))
        .and_then(|q| quantity_bytes(&q.0).ok())
        .map(|b| b as i64);
    peapod_oci::Resources {
        cpu_shares: Some(shares),
        cpu_quota: quota,
        cpu_period: quota.map(|_| 100_000),
        memory_limit: memory,
        pids_limit: None,
    }
}

/// The downward API's `fieldRef` paths.
fn field_value(pod: &Pod, path: &str, observed: &ObservedPod) -> String {
    let meta = &pod.metadata;
    let from_map = |m: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        m.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let key_of = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" => observed.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" => observed.host_ip.clone().unwrap_or_default(),
        _ => {
            if let Some(k) = key_of("metadata.labels['") {
                from_map(&meta.labels, &k)
            } else if let Some(k) = key_of("metadata.annotations['") {
                from_map(&meta.annotations, &k)
            } else {
                String::new()
            }
        }
    }
}

/// A CPU quantity ("500m", "1", "0.5") in millicores.
fn milli_cpu(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u64),
    }
}

/// A Kubernetes quantity ("64Mi", "1G", "1000") in bytes.
fn quantity_bytes(q: &str) -> Result<u64> {
    const SUFFIXES: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            let n: f64 = n.parse().map_err(|_| anyhow!("invalid quantity {q:?}"))?;
            return Ok((n * mult as f64) as u64);
        }
    }
    q.parse::<f64>()
        .map(|n| n as u64)
        .map_err(|_| anyhow!("invalid quantity {q:?}"))
}

/// The kubelet's hostPath type checks (and creation for the `…OrCreate` types).
pub fn check_host_path(path: &str, kind: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let p = std::path::Path::new(path);
    let meta = fs::metadata(p);
    let fail =
        |what: &str| -> Result<()> { bail!("hostPath type check failed: {path} is not {what}") };
    match kind {
        "" => {
            if meta.is_err() {
                fs::create_dir_all(p).with_context(|| format!("creating hostPath {path}"))?;
            }
            Ok(())
        }
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("a directory"),
            Err(_) => {
                fs::create_dir_all(p).with_context(|| format!("creating hostPath {path}"))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p, fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("chmod {path}"))
            }
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("a file"),
            Err(_) => {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .with_context(|| format!("creating hostPath file {path}"))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p, fs::Permissions::from_mode(0o644))
                    .with_context(|| format!("chmod {path}"))
            }
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => bail!("hostPath type {other:?} is not supported"),
    }
}

/// Runs `f` on every item, each on a thread of its own but the last, and returns when all
/// are done (one item: no thread at all).
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    let Some((last, others)) = items.split_last() else {
        return;
    };
    std::thread::scope(|scope| {
        for item in others {
            scope.spawn(|| f(item));
        }
        f(last);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cgroup_mapping() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
        }))
        .unwrap();
        let r = kubelet_resources(&c);
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.memory_limit, Some(64 << 20));
        let best_effort: Container =
            serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let r = kubelet_resources(&best_effort);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(2), None, None)
        );
        assert_eq!(milli_cpu("1.5"), Some(1500));
        assert_eq!(milli_cpu("100m"), Some(100));
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(quantity_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(quantity_bytes("1000").unwrap(), 1000);
        assert!(quantity_bytes("lots").is_err());
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        let f = dir.path().join("f");
        let ds = d.to_str().unwrap();
        let fs_ = f.to_str().unwrap();
        assert!(check_host_path(ds, "Directory").is_err());
        check_host_path(ds, "DirectoryOrCreate").unwrap();
        check_host_path(ds, "Directory").unwrap();
        assert!(check_host_path(ds, "File").is_err());
        assert!(check_host_path(fs_, "File").is_err());
        check_host_path(fs_, "FileOrCreate").unwrap();
        check_host_path(fs_, "File").unwrap();
        assert!(check_host_path(fs_, "DirectoryOrCreate").is_err());
        assert!(check_host_path(fs_, "Socket").is_err());
        assert!(check_host_path("/dev/null", "CharDevice").is_ok());
        assert!(check_host_path("/dev/null", "BlockDevice").is_err());
        assert!(check_host_path(ds, "Bogus").is_err());
    }
}
