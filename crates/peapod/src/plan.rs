//! The pod monitor's brain: given the pod's containers as specified ([`Desired`]), what the
//! monitor has observed of them ([`Observed`]) and the time, which [`Action`]s to take next
//! and when to look again. Pure: no processes, files or clocks. The monitor's loop observes
//! (exits, probe results, hook results), records them here through the `Observed` methods,
//! and executes the actions; restart policy, the kubelet's back-off, init and sidecar
//! ordering, probe scheduling and thresholds, and termination order are decided here and
//! table-tested without processes.

use std::time::{Duration, Instant};

/// `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The API value; anything unknown was rejected by validation, `Always` is the default.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }
}

/// What a container is to the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An init container: runs to completion, in order, before the next.
    Init,
    /// An init container with `restartPolicy: Always`: starts in order, keeps running,
    /// stops after the app containers.
    Sidecar,
    /// An app container.
    App,
}

/// The three probes of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [Self::Startup, Self::Liveness, Self::Readiness];

    fn index(self) -> usize {
        self as usize
    }

    /// As the kubelet names it in events: `Liveness probe failed: …`.
    pub fn title(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }
}

/// A probe's schedule and thresholds (its handler and timeout are the executor's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeTiming {
    /// The API's fields with the API's defaults (0 s delay, 10 s period, thresholds 1 and 3).
    pub fn from_probe(p: &k8s_openapi::api::core::v1::Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Self {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// One container of the spec, as far as planning goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub role: Role,
    /// Indexed by [`ProbeKind`].
    pub probes: [Option<ProbeTiming>; 3],
    pub post_start: bool,
    pub pre_stop: bool,
}

impl ContainerSpec {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            probes: [None; 3],
            post_start: false,
            pre_stop: false,
        }
    }

    fn probe(&self, kind: ProbeKind) -> Option<&ProbeTiming> {
        self.probes[kind.index()].as_ref()
    }
}

/// The kubelet's restart back-off: the first restart is immediate, then `initial`, doubling
/// up to `max`; an entry not renewed for `reset` (2 × max, i.e. ten minutes) starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset: Duration,
}

impl BackoffPolicy {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            reset: max * 2,
        }
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300))
    }
}

/// The pod as specified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub policy: RestartPolicy,
    /// Init containers (and sidecars) in spec order, then app containers.
    pub containers: Vec<ContainerSpec>,
    pub backoff: BackoffPolicy,
    /// terminationGracePeriodSeconds: how long a stop may take before SIGKILL.
    pub grace: Duration,
}

/// Where a container's process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Not started yet (or its last launch failed: see `retry_at`).
    Pending,
    /// A launch is under way.
    Starting,
    Running {
        since: Instant,
    },
    Exited {
        code: i32,
        at: Instant,
    },
}

/// A lifecycle hook's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hook {
    #[default]
    NotRun,
    Running,
    Done,
}

/// How far a container's stop has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stop {
    #[default]
    No,
    /// A stop was decided (probe failure, failed postStart, termination); preStop not run.
    Requested,
    /// The preStop hook is running.
    HookRunning,
    /// The preStop hook finished: the stop signal is next.
    PreStopped,
    /// The stop signal was sent at this time.
    Signalled(Instant),
    /// SIGKILL was sent.
    Killed,
}

/// A probe's running tally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub in_flight: bool,
    pub last_at: Option<Instant>,
    pub successes: u32,
    pub failures: u32,
}

/// A kubelet back-off entry: the current delay and when it was last renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffEntry {
    pub delay: Duration,
    pub updated: Instant,
}

/// What the monitor observed of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    pub run: Run,
    pub restarts: i32,
    pub backoff: Option<BackoffEntry>,
    /// A failed launch (image pull, config error) is retried at this time.
    pub retry_at: Option<Instant>,
    pub launch_failures: u32,
    pub post_start: Hook,
    pub stop: Stop,
    /// The startup probe passed (or there is none).
    pub startup_passed: bool,
    /// The readiness probe's verdict.
    pub probe_ready: bool,
    pub probes: [ProbeState; 3],
    /// Finished for good: it will not be started again.
    pub done: bool,
    /// An init container that exited 0.
    pub succeeded: bool,
}

impl Default for ContainerState {
    fn default() -> Self {
        Self {
            run: Run::Pending,
            restarts: 0,
            backoff: None,
            retry_at: None,
            launch_failures: 0,
            post_start: Hook::NotRun,
            stop: Stop::No,
            startup_passed: false,
            probe_ready: false,
            probes: [ProbeState::default(); 3],
            done: false,
            succeeded: false,
        }
    }
}

impl ContainerState {
    pub fn running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }
}

/// Everything observed of the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub containers: Vec<ContainerState>,
    /// The pod is being deleted: every container stops, SIGKILL at the deadline.
    pub terminating: Option<Instant>,
    /// An init container failed for good: the pod failed.
    pub failed: bool,
    /// The app containers were started: init containers do not run again (sidecars keep
    /// being restarted, and app restarts no longer wait for them).
    pub initialized: bool,
}

/// What the monitor should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Launch these containers (at once, in parallel).
    Start(Vec<usize>),
    PostStart(usize),
    Probe(usize, ProbeKind),
    PreStop(usize),
    /// The container's stop signal (SIGTERM unless the image or spec says otherwise).
    Terminate(usize),
    Kill(usize),
    /// Terminating and nothing runs any more: stop the infra and exit.
    Finish,
}

/// The actions due now and the next time something falls due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<Instant>,
}

impl Plan {
    fn wake(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// What the monitor should report when a container exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// Started again at once.
    Restart,
    /// Started again after this delay: Waiting `CrashLoopBackOff`.
    BackOff(Duration),
    /// Not started again.
    Done,
}

/// What a probe result means for the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Nothing changed.
    Same,
    /// The startup probe passed: the container counts as started.
    Started,
    /// Readiness flipped.
    Ready(bool),
    /// A liveness or startup probe crossed its failure threshold: the container is stopped
    /// and restarted per restartPolicy.
    Restart,
}

/// Whether a container that exited with `code` runs again.
pub fn restarts(policy: RestartPolicy, role: Role, code: i32) -> bool {
    match (role, policy) {
        (Role::Sidecar, _) => true,
        (Role::Init, RestartPolicy::Never) => false,
        (Role::Init, _) => code != 0,
        (Role::App, RestartPolicy::Always) => true,
        (Role::App, RestartPolicy::OnFailure) => code != 0,
        (Role::App, RestartPolicy::Never) => false,
    }
}

impl Observed {
    pub fn new(desired: &Desired) -> Self {
        Self {
            containers: vec![ContainerState::default(); desired.containers.len()],
            terminating: None,
            failed: false,
            initialized: false,
        }
    }

    /// Every app container finished for good (the pod Succeeded or Failed).
    pub fn apps_done(&self, desired: &Desired) -> bool {
        let mut apps = self.apps(desired).peekable();
        apps.peek().is_some() && apps.all(|(_, s)| s.done)
    }

    fn apps<'a>(
        &'a self,
        desired: &'a Desired,
    ) -> impl Iterator<Item = (usize, &'a ContainerState)> + 'a {
        self.containers
            .iter()
            .enumerate()
            .filter(|(i, _)| desired.containers[*i].role == Role::App)
    }

    /// Running, its postStart hook done and its startup probe passed.
    pub fn started(&self, desired: &Desired, i: usize) -> bool {
        let s = &self.containers[i];
        s.running() && s.post_start != Hook::NotRun && s.post_start != Hook::Running && {
            desired.containers[i].probe(ProbeKind::Startup).is_none() || s.startup_passed
        }
    }

    /// Ready: started, and its readiness probe (if any) passed; never while stopping.
    pub fn ready(&self, desired: &Desired, i: usize) -> bool {
        let s = &self.containers[i];
        self.started(desired, i)
            && s.stop == Stop::No
            && (desired.containers[i].probe(ProbeKind::Readiness).is_none() || s.probe_ready)
    }

    /// A launch was begun.
    pub fn launching(&mut self, i: usize) {
        let s = &mut self.containers[i];
        s.run = Run::Starting;
        s.retry_at = None;
    }

    /// The container's process runs (its postStart hook, if any, comes next).
    pub fn started_at(&mut self, desired: &Desired, i: usize, now: Instant) {
        let s = &mut self.containers[i];
        s.run = Run::Running { since: now };
        s.launch_failures = 0;
        s.post_start = if desired.containers[i].post_start {
            Hook::NotRun
        } else {
            Hook::Done
        };
        s.stop = Stop::No;
        s.startup_passed = false;
        s.probe_ready = false;
        s.probes = [ProbeState::default(); 3];
    }

    /// A launch failed before the process ran: retried after the back-off.
    pub fn launch_failed(&mut self, desired: &Desired, i: usize, now: Instant) -> Duration {
        let s = &mut self.containers[i];
        let factor = 1u32 << s.launch_failures.min(10);
        let delay = (desired.backoff.initial * factor).min(desired.backoff.max);
        s.launch_failures += 1;
        s.run = Run::Pending;
        s.retry_at = Some(now + delay);
        delay
    }

    /// The container's process exited: decides whether and when it runs again.
    pub fn exited(&mut self, desired: &Desired, i: usize, code: i32, now: Instant) -> AfterExit {
        let spec = &desired.containers[i];
        let stopping_pod = self.terminating.is_some() || self.failed;
        // Once the app containers are done, sidecars are stopped, not restarted.
        let apps_done = spec.role == Role::Sidecar && self.apps_done(desired);
        let s = &mut self.containers[i];
        s.run = Run::Exited { code, at: now };
        s.stop = Stop::No;
        s.post_start = Hook::NotRun;
        s.probes = [ProbeState::default(); 3];
        s.startup_passed = false;
        s.probe_ready = false;
        if spec.role == Role::Init && code == 0 {
            s.succeeded = true;
        }
        if stopping_pod || apps_done || !restarts(desired.policy, spec.role, code) {
            s.done = true;
            if spec.role == Role::Init && code != 0 && self.terminating.is_none() {
                self.failed = true;
            }
            return AfterExit::Done;
        }
        let b = desired.backoff;
        match s.backoff {
            Some(e) if now.saturating_duration_since(e.updated) <= b.reset => {
                AfterExit::BackOff(e.delay)
            }
            _ => AfterExit::Restart,
        }
    }

    /// The postStart hook finished; a failure stops the container.
    pub fn post_start_done(&mut self, i: usize, ok: bool) {
        let s = &mut self.containers[i];
        if !s.running() {
            return;
        }
        if ok {
            s.post_start = Hook::Done;
        } else if s.stop == Stop::No {
            s.stop = Stop::Requested;
        }
    }

    /// The preStop hook finished (either way, the stop signal comes next).
    pub fn pre_stop_done(&mut self, i: usize) {
        let s = &mut self.containers[i];
        if s.stop == Stop::HookRunning {
            s.stop = Stop::PreStopped;
        }
    }

    /// A probe's result, counted against its thresholds.
    pub fn probe_result(
        &mut self,
        desired: &Desired,
        i: usize,
        kind: ProbeKind,
        ok: bool,
    ) -> ProbeVerdict {
        let Some(timing) = desired.containers[i].probe(kind).copied() else {
            return ProbeVerdict::Same;
        };
        let s = &mut self.containers[i];
        s.probes[kind.index()].in_flight = false;
        if !s.running() || s.stop != Stop::No {
            return ProbeVerdict::Same;
        }
        let p = &mut s.probes[kind.index()];
        if ok {
            p.successes += 1;
            p.failures = 0;
        } else {
            p.failures += 1;
            p.successes = 0;
        }
        let passed = p.successes >= timing.success_threshold;
        let failed = p.failures >= timing.failure_threshold;
        match kind {
            ProbeKind::Startup if passed && !s.startup_passed => {
                s.startup_passed = true;
                ProbeVerdict::Started
            }
            ProbeKind::Startup | ProbeKind::Liveness if failed => {
                s.stop = Stop::Requested;
                ProbeVerdict::Restart
            }
            ProbeKind::Readiness if passed && !s.probe_ready => {
                s.probe_ready = true;
                ProbeVerdict::Ready(true)
            }
            ProbeKind::Readiness if failed && s.probe_ready => {
                s.probe_ready = false;
                ProbeVerdict::Ready(false)
            }
            _ => ProbeVerdict::Same,
        }
    }

    /// Marks what an action set in motion, so the next plan does not repeat it.
    pub fn acting(&mut self, desired: &Desired, action: &Action, now: Instant) {
        match *action {
            Action::Start(ref list) => {
                for &i in list {
                    if desired.containers[i].role == Role::App {
                        self.initialized = true;
                    }
                    let restart = matches!(self.containers[i].run, Run::Exited { .. });
                    self.launching(i);
                    let s = &mut self.containers[i];
                    // A restart is counted, and its back-off entry renewed, when it begins,
                    // as the kubelet does.
                    if restart {
                        s.restarts += 1;
                        let b = desired.backoff;
                        s.backoff = Some(BackoffEntry {
                            delay: match s.backoff {
                                Some(e) if now.saturating_duration_since(e.updated) <= b.reset => {
                                    (e.delay * 2).min(b.max)
                                }
                                _ => b.initial,
                            },
                            updated: now,
                        });
                    }
                }
            }
            Action::PostStart(i) => self.containers[i].post_start = Hook::Running,
            Action::Probe(i, kind) => {
                let p = &mut self.containers[i].probes[kind.index()];
                p.in_flight = true;
                p.last_at = Some(now);
            }
            Action::PreStop(i) => self.containers[i].stop = Stop::HookRunning,
            Action::Terminate(i) => self.containers[i].stop = Stop::Signalled(now),
            Action::Kill(i) => self.containers[i].stop = Stop::Killed,
            Action::Finish => {}
        }
    }
}

/// The next actions. Order: stops first, then starts, hooks and probes.
pub fn plan(desired: &Desired, observed: &Observed, now: Instant) -> Plan {
    let mut plan = Plan::default();
    let stopping_pod = observed.terminating.is_some() || observed.failed;
    if stopping_pod {
        plan_stops(desired, observed, now, &mut plan);
        if observed.terminating.is_some()
            && observed
                .containers
                .iter()
                .all(|s| !s.running() && s.run != Run::Starting)
        {
            plan.actions.push(Action::Finish);
        }
        return plan;
    }
    // Containers asked to stop (probe failure, failed postStart) take the stop path.
    for (i, s) in observed.containers.iter().enumerate() {
        if s.running() && s.stop != Stop::No {
            plan_stop_one(desired, observed, i, now, None, &mut plan);
        }
    }
    if observed.apps_done(desired) {
        plan_sidecar_stops(desired, observed, now, None, &mut plan);
        return plan;
    }
    plan_starts(desired, observed, now, &mut plan);
    for (i, s) in observed.containers.iter().enumerate() {
        if !s.running() || s.stop != Stop::No {
            continue;
        }
        let spec = &desired.containers[i];
        if s.post_start == Hook::NotRun {
            plan.actions.push(Action::PostStart(i));
            continue;
        }
        if s.post_start == Hook::Running {
            continue;
        }
        let Run::Running { since } = s.run else {
            continue;
        };
        let startup_pending = spec.probe(ProbeKind::Startup).is_some() && !s.startup_passed;
        for kind in ProbeKind::ALL {
            let Some(timing) = spec.probe(kind) else {
                continue;
            };
            // The startup probe runs alone until it passes, then never again.
            if (kind == ProbeKind::Startup) != startup_pending {
                continue;
            }
            let p = &s.probes[kind.index()];
            if p.in_flight {
                continue;
            }
            let due = match p.last_at {
                Some(last) => last + timing.period,
                None => since + timing.initial_delay,
            };
            if now >= due {
                plan.actions.push(Action::Probe(i, kind));
                plan.wake(now + timing.period);
            } else {
                plan.wake(due);
            }
        }
    }
    plan
}

/// Init containers one by one (a sidecar lets the next start once it has started), then
/// every app container at once; restarts when their back-off has passed.
fn plan_starts(desired: &Desired, observed: &Observed, now: Instant, plan: &mut Plan) {
    let mut start = Vec::new();
    let consider = |s: &ContainerState, plan: &mut Plan| -> bool {
        // Returns whether the container may start now (and records when it may later).
        if s.done || s.running() || s.run == Run::Starting {
            return false;
        }
        if let Some(t) = s.retry_at {
            if now < t {
                plan.wake(t);
                return false;
            }
        }
        if let (Run::Exited { at, .. }, Some(e)) = (s.run, s.backoff) {
            let b = desired.backoff;
            if at.saturating_duration_since(e.updated) <= b.reset && now < at + e.delay {
                plan.wake(at + e.delay);
                return false;
            }
        }
        true
    };
    let mut inits_done = true;
    for (i, spec) in desired.containers.iter().enumerate() {
        let s = &observed.containers[i];
        match spec.role {
            Role::Init if observed.initialized => {}
            Role::Init | Role::Sidecar => {
                if !inits_done {
                    continue;
                }
                // Sidecars keep being restarted after the init phase.
                if consider(s, plan) {
                    start.push(i);
                }
                let satisfied = match spec.role {
                    Role::Init => s.succeeded,
                    _ => observed.started(desired, i),
                };
                if !satisfied {
                    inits_done = false;
                }
            }
            Role::App => {
                if (inits_done || observed.initialized) && consider(s, plan) {
                    start.push(i);
                }
            }
        }
    }
    if !start.is_empty() {
        plan.actions.push(Action::Start(start));
    }
}

/// The pod stops (deletion or failure): app and init containers first, then sidecars in
/// reverse order; SIGKILL for whatever still runs at the deadline.
fn plan_stops(desired: &Desired, observed: &Observed, now: Instant, plan: &mut Plan) {
    let deadline = observed.terminating;
    let mut others_running = false;
    for (i, s) in observed.containers.iter().enumerate() {
        if desired.containers[i].role != Role::Sidecar && (s.running() || s.run == Run::Starting) {
            others_running = true;
            plan_stop_one(desired, observed, i, now, deadline, plan);
        }
    }
    if !others_running {
        plan_sidecar_stops(desired, observed, now, deadline, plan);
    } else if let Some(d) = deadline {
        // Sidecars get no grace beyond the pod's.
        for (i, s) in observed.containers.iter().enumerate() {
            if desired.containers[i].role == Role::Sidecar && s.running() && now >= d {
                plan_stop_one(desired, observed, i, now, deadline, plan);
            }
        }
    }
}

/// The last running sidecar is stopped first; the one before it once that one has exited.
fn plan_sidecar_stops(
    desired: &Desired,
    observed: &Observed,
    now: Instant,
    deadline: Option<Instant>,
    plan: &mut Plan,
) {
    let last = (0..desired.containers.len()).rev().find(|&i| {
        desired.containers[i].role == Role::Sidecar
            && (observed.containers[i].running() || observed.containers[i].run == Run::Starting)
    });
    if let Some(i) = last {
        plan_stop_one(desired, observed, i, now, deadline, plan);
    }
    if let Some(d) = deadline {
        for (i, s) in observed.containers.iter().enumerate() {
            if Some(i) != last && s.running() && now >= d && s.stop != Stop::Killed {
                plan.actions.push(Action::Kill(i));
            }
        }
    }
}

/// One container's stop: preStop (if any), the stop signal, SIGKILL once the grace period
/// (or the pod's deadline) has passed.
fn plan_stop_one(
    desired: &Desired,
    observed: &Observed,
    i: usize,
    now: Instant,
    deadline: Option<Instant>,
    plan: &mut Plan,
) {
    let s = &observed.containers[i];
    if !s.running() {
        // A launch in flight is stopped once it reports.
        return;
    }
    let spec = &desired.containers[i];
    let hard = deadline.is_some_and(|d| now >= d);
    if hard {
        if s.stop != Stop::Killed {
            plan.actions.push(Action::Kill(i));
        }
        return;
    }
    if let Some(d) = deadline {
        plan.wake(d);
    }
    match s.stop {
        Stop::No | Stop::Requested if spec.pre_stop => plan.actions.push(Action::PreStop(i)),
        Stop::No | Stop::Requested | Stop::PreStopped => {
            plan.actions.push(Action::Terminate(i));
            plan.wake(now + desired.grace);
        }
        Stop::HookRunning => {}
        Stop::Signalled(at) => {
            let kill_at = deadline.map_or(at + desired.grace, |d| d.min(at + desired.grace));
            if now >= kill_at {
                plan.actions.push(Action::Kill(i));
            } else {
                plan.wake(kill_at);
            }
        }
        Stop::Killed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn desired(policy: RestartPolicy, roles: &[Role]) -> Desired {
        Desired {
            policy,
            containers: roles.iter().map(|&r| ContainerSpec::new(r)).collect(),
            backoff: BackoffPolicy::default(),
            grace: secs(30),
        }
    }

    /// Applies a plan's actions to the observation as the monitor would.
    fn act(d: &Desired, o: &mut Observed, now: Instant) -> Vec<Action> {
        let p = plan(d, o, now);
        for a in &p.actions {
            o.acting(d, a, now);
        }
        p.actions
    }

    #[test]
    fn restart_policy_table() {
        use RestartPolicy::*;
        use Role::*;
        let cases = [
            (Always, App, 0, true),
            (Always, App, 1, true),
            (OnFailure, App, 0, false),
            (OnFailure, App, 2, true),
            (Never, App, 1, false),
            (Always, Init, 0, false),
            (Always, Init, 1, true),
            (OnFailure, Init, 1, true),
            (Never, Init, 1, false),
            (Never, Sidecar, 0, true),
            (Never, Sidecar, 1, true),
        ];
        for (policy, role, code, want) in cases {
            assert_eq!(
                restarts(policy, role, code),
                want,
                "{policy:?} {role:?} exit {code}"
            );
        }
    }

    #[test]
    fn backoff_is_immediate_then_10_20_40_up_to_300_and_resets_after_ten_minutes() {
        let d = desired(RestartPolicy::Always, &[Role::App]);
        let mut o = Observed::new(&d);
        let t0 = Instant::now();
        let mut now = t0;
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        let mut delays = Vec::new();
        for _ in 0..8 {
            o.started_at(&d, 0, now);
            now += secs(1);
            match o.exited(&d, 0, 1, now) {
                AfterExit::Restart => delays.push(0),
                AfterExit::BackOff(delay) => delays.push(delay.as_secs()),
                AfterExit::Done => panic!("Always restarts"),
            }
            // Nothing starts before the back-off has passed; the plan wakes at its end.
            let waiting = plan(&d, &o, now);
            let delay = secs(*delays.last().unwrap());
            if !delay.is_zero() {
                assert!(waiting.actions.is_empty(), "{waiting:?}");
                assert_eq!(waiting.wake_at, Some(now + delay));
            }
            now += delay;
            assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        }
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(o.containers[0].restarts, 8);
        // Running for more than ten minutes: the entry has expired, the restart is immediate.
        o.started_at(&d, 0, now);
        now += secs(601);
        assert_eq!(o.exited(&d, 0, 1, now), AfterExit::Restart);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        assert_eq!(o.containers[0].backoff.unwrap().delay, secs(10));
    }

    #[test]
    fn configured_backoff_is_used() {
        let mut d = desired(RestartPolicy::OnFailure, &[Role::App]);
        d.backoff = BackoffPolicy::new(secs(1), secs(4));
        let mut o = Observed::new(&d);
        let mut now = Instant::now();
        act(&d, &mut o, now);
        let mut delays = Vec::new();
        for _ in 0..5 {
            o.started_at(&d, 0, now);
            let after = o.exited(&d, 0, 3, now);
            let delay = match after {
                AfterExit::BackOff(x) => x,
                _ => Duration::ZERO,
            };
            delays.push(delay.as_secs());
            now += delay;
            act(&d, &mut o, now);
        }
        assert_eq!(delays, vec![0, 1, 2, 4, 4]);
        // OnFailure: a clean exit ends it.
        o.started_at(&d, 0, now);
        assert_eq!(o.exited(&d, 0, 0, now), AfterExit::Done);
        assert!(plan(&d, &o, now + secs(100)).actions.is_empty());
    }

    #[test]
    fn init_containers_run_one_by_one_then_all_apps_at_once() {
        let d = desired(
            RestartPolicy::Always,
            &[Role::Init, Role::Init, Role::App, Role::App],
        );
        let mut o = Observed::new(&d);
        let now = Instant::now();
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        assert!(
            act(&d, &mut o, now).is_empty(),
            "nothing while init 0 starts"
        );
        o.started_at(&d, 0, now);
        assert!(act(&d, &mut o, now).is_empty(), "nothing while init 0 runs");
        assert_eq!(o.exited(&d, 0, 0, now), AfterExit::Done);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![1])]);
        o.started_at(&d, 1, now);
        // A failing init container is retried (policy Always) with back-off, apps wait.
        assert_eq!(o.exited(&d, 1, 1, now), AfterExit::Restart);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![1])]);
        o.started_at(&d, 1, now);
        assert_eq!(o.exited(&d, 1, 0, now), AfterExit::Done);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![2, 3])]);
    }

    #[test]
    fn once_initialized_apps_restart_without_waiting_for_sidecars_or_inits() {
        let d = desired(
            RestartPolicy::Always,
            &[Role::Init, Role::Sidecar, Role::App],
        );
        let mut o = Observed::new(&d);
        let now = Instant::now();
        act(&d, &mut o, now);
        o.started_at(&d, 0, now);
        o.exited(&d, 0, 0, now);
        act(&d, &mut o, now);
        o.started_at(&d, 1, now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![2])]);
        o.started_at(&d, 2, now);
        // Both crash; the sidecar backs off, the app restarts on its own schedule.
        assert_eq!(o.exited(&d, 1, 1, now), AfterExit::Restart);
        assert_eq!(o.exited(&d, 2, 1, now), AfterExit::Restart);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![1, 2])]);
        o.started_at(&d, 1, now);
        o.started_at(&d, 2, now);
        let later = now + secs(1);
        assert!(matches!(o.exited(&d, 1, 1, later), AfterExit::BackOff(_)));
        assert_eq!(o.exited(&d, 2, 1, later), AfterExit::BackOff(secs(10)));
        let p = plan(&d, &o, later + secs(10));
        assert_eq!(p.actions, vec![Action::Start(vec![1, 2])]);
    }

    #[test]
    fn failed_init_with_never_fails_the_pod() {
        let d = desired(RestartPolicy::Never, &[Role::Init, Role::App]);
        let mut o = Observed::new(&d);
        let now = Instant::now();
        act(&d, &mut o, now);
        o.started_at(&d, 0, now);
        assert_eq!(o.exited(&d, 0, 2, now), AfterExit::Done);
        assert!(o.failed);
        assert!(act(&d, &mut o, now + secs(60)).is_empty());
    }

    #[test]
    fn sidecars_let_the_next_start_once_started_and_restart_when_they_exit() {
        let mut d = desired(
            RestartPolicy::Never,
            &[Role::Sidecar, Role::Init, Role::App],
        );
        d.containers[0].probes[ProbeKind::Startup as usize] = Some(ProbeTiming {
            initial_delay: secs(0),
            period: secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        });
        let mut o = Observed::new(&d);
        let now = Instant::now();
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        o.started_at(&d, 0, now);
        // Running but its startup probe has not passed: the init container waits.
        assert_eq!(
            act(&d, &mut o, now),
            vec![Action::Probe(0, ProbeKind::Startup)]
        );
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Startup, true),
            ProbeVerdict::Started
        );
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![1])]);
        o.started_at(&d, 1, now);
        o.exited(&d, 1, 0, now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![2])]);
        o.started_at(&d, 2, now);
        // The sidecar exits: restarted despite restartPolicy Never.
        assert_eq!(o.exited(&d, 0, 1, now), AfterExit::Restart);
        assert_eq!(act(&d, &mut o, now), vec![Action::Start(vec![0])]);
        o.started_at(&d, 0, now);
        // The app finishes for good: the sidecar is stopped, not restarted.
        assert_eq!(o.exited(&d, 2, 0, now), AfterExit::Done);
        let actions = act(&d, &mut o, now);
        assert_eq!(actions, vec![Action::Terminate(0)]);
        assert_eq!(o.exited(&d, 0, 143, now), AfterExit::Done);
        assert!(act(&d, &mut o, now).is_empty());
    }

    #[test]
    fn termination_stops_apps_first_then_sidecars_in_reverse_then_finishes() {
        let mut d = desired(
            RestartPolicy::Always,
            &[Role::Sidecar, Role::Sidecar, Role::App, Role::App],
        );
        d.containers[3].pre_stop = true;
        let mut o = Observed::new(&d);
        let now = Instant::now();
        for i in 0..4 {
            o.started_at(&d, i, now);
        }
        o.terminating = Some(now + secs(30));
        assert_eq!(
            act(&d, &mut o, now),
            vec![Action::Terminate(2), Action::PreStop(3)]
        );
        o.pre_stop_done(3);
        assert_eq!(act(&d, &mut o, now), vec![Action::Terminate(3)]);
        assert_eq!(o.exited(&d, 2, 143, now), AfterExit::Done);
        assert!(act(&d, &mut o, now).is_empty(), "sidecars wait for app 3");
        o.exited(&d, 3, 0, now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Terminate(1)]);
        assert!(act(&d, &mut o, now).is_empty());
        o.exited(&d, 1, 143, now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Terminate(0)]);
        o.exited(&d, 0, 143, now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Finish]);
    }

    #[test]
    fn the_deadline_kills_whatever_still_runs() {
        let d = desired(RestartPolicy::Always, &[Role::Sidecar, Role::App]);
        let mut o = Observed::new(&d);
        let now = Instant::now();
        o.started_at(&d, 0, now);
        o.started_at(&d, 1, now);
        o.terminating = Some(now + secs(5));
        assert_eq!(act(&d, &mut o, now), vec![Action::Terminate(1)]);
        let p = plan(&d, &o, now + secs(1));
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at, Some(now + secs(5)));
        let later = now + secs(5);
        let mut actions = act(&d, &mut o, later);
        actions.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(actions, vec![Action::Kill(0), Action::Kill(1)]);
        assert!(act(&d, &mut o, later).is_empty(), "killed once");
        o.exited(&d, 0, 137, later);
        o.exited(&d, 1, 137, later);
        assert_eq!(act(&d, &mut o, later), vec![Action::Finish]);
    }

    #[test]
    fn grace_zero_kills_at_once() {
        let d = desired(RestartPolicy::Always, &[Role::App]);
        let mut o = Observed::new(&d);
        let now = Instant::now();
        o.started_at(&d, 0, now);
        o.terminating = Some(now);
        assert_eq!(act(&d, &mut o, now), vec![Action::Kill(0)]);
    }

    fn probe(period: u64, success: u32, failure: u32, delay: u64) -> Option<ProbeTiming> {
        Some(ProbeTiming {
            initial_delay: secs(delay),
            period: secs(period),
            success_threshold: success,
            failure_threshold: failure,
        })
    }

    #[test]
    fn readiness_follows_thresholds_and_waits_for_the_initial_delay() {
        let mut d = desired(RestartPolicy::Always, &[Role::App]);
        d.containers[0].probes[ProbeKind::Readiness as usize] = probe(10, 2, 3, 5);
        let mut o = Observed::new(&d);
        let t = Instant::now();
        o.started_at(&d, 0, t);
        let p = plan(&d, &o, t);
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at, Some(t + secs(5)));
        assert!(!o.ready(&d, 0), "not ready before the first success");
        let t = t + secs(5);
        assert_eq!(
            act(&d, &mut o, t),
            vec![Action::Probe(0, ProbeKind::Readiness)]
        );
        assert!(act(&d, &mut o, t + secs(20)).is_empty(), "one at a time");
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Readiness, true),
            ProbeVerdict::Same
        );
        let p = plan(&d, &o, t + secs(1));
        assert_eq!(p.wake_at, Some(t + secs(10)));
        act(&d, &mut o, t + secs(10));
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Readiness, true),
            ProbeVerdict::Ready(true)
        );
        assert!(o.ready(&d, 0));
        for n in 1..=3 {
            act(&d, &mut o, t + secs(10 + 10 * n));
            let v = o.probe_result(&d, 0, ProbeKind::Readiness, false);
            assert_eq!(
                v,
                if n == 3 {
                    ProbeVerdict::Ready(false)
                } else {
                    ProbeVerdict::Same
                }
            );
        }
        assert!(!o.ready(&d, 0));
        assert!(o.containers[0].running(), "readiness never restarts");
    }

    #[test]
    fn liveness_failures_restart_and_startup_holds_the_others_back() {
        let mut d = desired(RestartPolicy::Always, &[Role::App]);
        d.containers[0].probes[ProbeKind::Startup as usize] = probe(1, 1, 2, 0);
        d.containers[0].probes[ProbeKind::Liveness as usize] = probe(1, 1, 2, 0);
        d.containers[0].probes[ProbeKind::Readiness as usize] = probe(1, 1, 1, 0);
        let mut o = Observed::new(&d);
        let t = Instant::now();
        o.started_at(&d, 0, t);
        assert_eq!(
            act(&d, &mut o, t),
            vec![Action::Probe(0, ProbeKind::Startup)]
        );
        o.probe_result(&d, 0, ProbeKind::Startup, true);
        let mut both = act(&d, &mut o, t);
        both.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            both,
            vec![
                Action::Probe(0, ProbeKind::Liveness),
                Action::Probe(0, ProbeKind::Readiness)
            ]
        );
        o.probe_result(&d, 0, ProbeKind::Readiness, true);
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Liveness, false),
            ProbeVerdict::Same
        );
        act(&d, &mut o, t + secs(1));
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Liveness, false),
            ProbeVerdict::Restart
        );
        assert!(!o.ready(&d, 0), "a container being stopped is not ready");
        assert_eq!(act(&d, &mut o, t + secs(1)), vec![Action::Terminate(0)]);
        // Not dead after the grace period: SIGKILL.
        assert_eq!(act(&d, &mut o, t + secs(31)), vec![Action::Kill(0)]);
        assert_eq!(o.exited(&d, 0, 137, t + secs(31)), AfterExit::Restart);
        assert_eq!(act(&d, &mut o, t + secs(31)), vec![Action::Start(vec![0])]);
    }

    #[test]
    fn startup_failure_restarts_and_post_start_gates_probes() {
        let mut d = desired(RestartPolicy::Never, &[Role::App]);
        d.containers[0].post_start = true;
        d.containers[0].probes[ProbeKind::Startup as usize] = probe(1, 1, 1, 0);
        let mut o = Observed::new(&d);
        let t = Instant::now();
        o.started_at(&d, 0, t);
        assert_eq!(act(&d, &mut o, t), vec![Action::PostStart(0)]);
        assert!(
            act(&d, &mut o, t).is_empty(),
            "no probe while postStart runs"
        );
        assert!(!o.started(&d, 0));
        o.post_start_done(0, true);
        assert_eq!(
            act(&d, &mut o, t),
            vec![Action::Probe(0, ProbeKind::Startup)]
        );
        assert_eq!(
            o.probe_result(&d, 0, ProbeKind::Startup, false),
            ProbeVerdict::Restart
        );
        assert_eq!(act(&d, &mut o, t), vec![Action::Terminate(0)]);
        // restartPolicy Never: the killed container stays terminated.
        assert_eq!(o.exited(&d, 0, 143, t), AfterExit::Done);
        assert!(o.apps_done(&d));
    }

    #[test]
    fn failed_post_start_stops_the_container() {
        let mut d = desired(RestartPolicy::Always, &[Role::App]);
        d.containers[0].post_start = true;
        d.containers[0].pre_stop = true;
        let mut o = Observed::new(&d);
        let t = Instant::now();
        o.started_at(&d, 0, t);
        act(&d, &mut o, t);
        o.post_start_done(0, false);
        // The kubelet runs preStop for every kill with a grace period, this one included.
        assert_eq!(act(&d, &mut o, t), vec![Action::PreStop(0)]);
        o.pre_stop_done(0);
        assert_eq!(act(&d, &mut o, t), vec![Action::Terminate(0)]);
        assert_eq!(o.exited(&d, 0, 143, t), AfterExit::Restart);
    }

    #[test]
    fn launch_failures_back_off() {
        let d = desired(RestartPolicy::Always, &[Role::App]);
        let mut o = Observed::new(&d);
        let t = Instant::now();
        act(&d, &mut o, t);
        assert_eq!(o.launch_failed(&d, 0, t), secs(10));
        let p = plan(&d, &o, t);
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at, Some(t + secs(10)));
        act(&d, &mut o, t + secs(10));
        assert_eq!(o.launch_failed(&d, 0, t + secs(10)), secs(20));
    }
}
