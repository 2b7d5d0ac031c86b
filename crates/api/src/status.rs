//! The pod status rules as the kubelet applies them: what peapod observed about a pod's
//! sandbox and containers ([`ObservedPod`]) becomes the `PodStatus` the API would report —
//! phase (kubelet `getPhase`), conditions (`pkg/kubelet/status/generate.go`), init and app
//! container statuses in spec order, IPs, start time and QoS class (`ComputePodQOS`).
//!
//! Pure: the observations, including every timestamp, come from the caller; this module
//! reads no clock and touches no process or file.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What a container is doing now (or did last), as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ObservedState {
    /// Not running yet (or between restarts): `ContainerCreating`, `CrashLoopBackOff`,
    /// `ErrImageNeverPull`, `PodInitializing`...
    Waiting {
        reason: String,
        message: Option<String>,
    },
    /// Its process is running.
    Running { started_at: DateTime<Utc> },
    /// Its process exited (`signal` is set when a signal killed it).
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
    },
}

/// One init or app container as observed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObservedContainer {
    pub name: String,
    pub init: bool,
    /// e.g. `peapod://<64 hex>`; `None` before the container was created.
    pub container_id: Option<String>,
    /// The image as written in the spec.
    pub image: String,
    /// e.g. `sha256:...`.
    pub image_id: String,
    pub state: ObservedState,
    pub last_state: Option<ObservedState>,
    pub restart_count: i32,
    /// Readiness as the monitor's probes decided it; `None`: ready iff running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Started (postStart done, startup probe passed); `None`: started iff running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// Everything observed about a pod that its status is computed from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObservedPod {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// Creation time: the `PodScheduled` transition.
    pub scheduled_at: DateTime<Utc>,
    /// Init and app containers. A spec container without an entry is reported the way the
    /// kubelet reports one it has not created yet: Waiting `PodInitializing` when the pod has
    /// init containers, else `ContainerCreating`.
    pub containers: Vec<ObservedContainer>,
}

/// The kubelet's `ContainerCreating` waiting reason.
const CONTAINER_CREATING: &str = "ContainerCreating";
/// The kubelet's `PodInitializing` waiting reason.
const POD_INITIALIZING: &str = "PodInitializing";

/// The status the kubelet would report for `pod` given what was observed.
pub fn pod_status(pod: &Pod, observed: &ObservedPod) -> PodStatus {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let has_init = !spec
        .init_containers
        .as_deref()
        .unwrap_or_default()
        .is_empty();
    let pod_started = observed.start_time.unwrap_or(observed.scheduled_at);

    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, true, has_init, observed))
        .collect();
    let app_statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, false, has_init, observed))
        .collect();

    let phase = phase(spec, &init_statuses, &app_statuses);

    let mut conditions = vec![condition(
        "PodReadyToStartContainers",
        observed.sandbox_ready,
        None,
        pod_started,
    )];
    conditions.push(initialized_condition(
        spec,
        &init_statuses,
        phase,
        observed,
        pod_started,
    ));
    let containers_ready = containers_ready_condition(spec, &init_statuses, &app_statuses, phase);
    let ready_at = ready_transition(&app_statuses, &init_statuses, pod_started);
    conditions.push(pod_ready_condition(
        spec,
        &conditions,
        &containers_ready,
        ready_at,
    ));
    conditions.push(condition(
        "ContainersReady",
        containers_ready.ready,
        containers_ready.why(),
        ready_at,
    ));
    conditions.push(condition("PodScheduled", true, None, observed.scheduled_at));

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: observed.host_ip.clone(),
        host_ips: observed
            .host_ip
            .as_ref()
            .map(|ip| vec![HostIP { ip: ip.clone() }]),
        pod_ip: observed.pod_ip.clone(),
        pod_ips: observed
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: observed.start_time.map(to_time),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(app_statuses),
        qos_class: Some(qos_class(spec).to_string()),
        ..PodStatus::default()
    }
}

/// The QoS class the kubelet computes (`ComputePodQOS`): `Guaranteed` when every container
/// sets CPU and memory limits and, summed over the pod, requests equal limits;
/// `BestEffort` when nobody requests or limits CPU or memory; `Burstable` otherwise.
///
/// A limit without a request counts as a request of the same amount, which is what the API
/// server's defaulting writes, so the answer is the same before and after defaulting.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let resources = container.resources.as_ref();
        let container_limits = resources.and_then(|r| r.limits.as_ref());
        let container_requests = resources.and_then(|r| r.requests.as_ref());
        let mut effective_requests: BTreeMap<&str, i128> = BTreeMap::new();
        for (name, quantity) in container_limits.into_iter().flatten() {
            effective_requests.insert(name, parse_quantity(&quantity.0).unwrap_or(0));
        }
        for (name, quantity) in container_requests.into_iter().flatten() {
            effective_requests.insert(name, parse_quantity(&quantity.0).unwrap_or(0));
        }
        for (name, value) in effective_requests {
            if is_qos_resource(name) && value > 0 {
                *requests.entry(name).or_default() += value;
            }
        }
        let mut found = 0;
        for (name, quantity) in container_limits.into_iter().flatten() {
            let value = parse_quantity(&quantity.0).unwrap_or(0);
            if is_qos_resource(name) && value > 0 {
                found += 1;
                *limits.entry(name).or_default() += value;
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(n, r)| limits.get(n) == Some(r))
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// Whether a quantity string is a valid quantity greater than zero.
pub(crate) fn quantity_is_positive(text: &str) -> bool {
    parse_quantity(text).is_some_and(|v| v > 0)
}

fn is_qos_resource(name: &str) -> bool {
    name == "cpu" || name == "memory"
}

/// A resource quantity (`100m`, `0.5`, `128Mi`, `1G`, `1e3`) in billionths, exact for every
/// value the API accepts for CPU and memory; `None` when it is not a quantity.
fn parse_quantity(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // Value as mantissa * 10^-scale.
    let digits = format!("{whole}{fraction}");
    let mantissa: i128 = digits.parse().ok()?;
    let scale = i32::try_from(fraction.len()).ok()?;
    let (multiplier, exponent): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse().ok()?),
        _ => return None,
    };
    // Billionths: mantissa * multiplier * 10^(exponent - scale + 9).
    let power = exponent - scale + 9;
    let mut value = mantissa.checked_mul(multiplier)?;
    if power >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(power).ok()?)?)?;
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(-power).ok()?)?;
        // The API rounds sub-nano fractions up.
        value = (value + divisor - 1) / divisor;
    }
    Some(if negative { -value } else { value })
}

fn is_restartable_init(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn container_status(
    container: &Container,
    init: bool,
    has_init: bool,
    observed: &ObservedPod,
) -> ContainerStatus {
    let found = observed
        .containers
        .iter()
        .find(|o| o.init == init && o.name == container.name);
    let volume_mounts = container.volume_mounts.as_ref().map(|mounts| {
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: read_only.then_some(true),
                    recursive_read_only: read_only.then(|| {
                        m.recursive_read_only
                            .clone()
                            .filter(|r| r == "Enabled")
                            .unwrap_or_else(|| "Disabled".to_string())
                    }),
                }
            })
            .collect()
    });
    let Some(found) = found else {
        let reason = if has_init {
            POD_INITIALIZING
        } else {
            CONTAINER_CREATING
        };
        return ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            state: Some(api_state(
                &ObservedState::Waiting {
                    reason: reason.to_string(),
                    message: None,
                },
                None,
            )),
            started: Some(false),
            ..ContainerStatus::default()
        };
    };
    let running = matches!(found.state, ObservedState::Running { .. });
    let started = running && found.started.unwrap_or(true);
    let ready = if init && !is_restartable_init(container) {
        matches!(found.state, ObservedState::Terminated { exit_code: 0, .. })
    } else {
        started && found.ready.unwrap_or(true)
    };
    ContainerStatus {
        name: container.name.clone(),
        state: Some(api_state(&found.state, found.container_id.as_deref())),
        last_state: found.last_state.as_ref().map(|s| api_state(s, None)),
        ready,
        restart_count: found.restart_count,
        image: found.image.clone(),
        image_id: found.image_id.clone(),
        container_id: found.container_id.clone(),
        started: Some(started),
        // The kubelet reports mounts only for containers the runtime has created.
        volume_mounts: found.container_id.as_ref().and(volume_mounts),
        ..ContainerStatus::default()
    }
}

fn api_state(state: &ObservedState, container_id: Option<&str>) -> ContainerState {
    match state {
        ObservedState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: non_empty(reason),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        ObservedState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(to_time(*started_at)),
            }),
            ..ContainerState::default()
        },
        ObservedState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: container_id.map(str::to_string),
                exit_code: *exit_code,
                signal: *signal,
                reason: non_empty(reason),
                message: message.clone(),
                started_at: started_at.map(to_time),
                finished_at: Some(to_time(*finished_at)),
            }),
            ..ContainerState::default()
        },
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn status_for<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn waiting(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

fn last_terminated(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
}

/// kubelet `getPhase` for a pod that is not being torn down.
fn phase(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    app_statuses: &[ContainerStatus],
) -> &'static str {
    let mut pending_regular_init = 0;
    let mut pending_restartable_init = 0;
    let mut failed_initialization = 0;
    let (mut unknown, mut running_n, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);

    for container in spec.init_containers.iter().flatten() {
        let Some(status) = status_for(init_statuses, &container.name) else {
            if is_restartable_init(container) {
                unknown += 1;
            } else {
                pending_regular_init += 1;
            }
            continue;
        };
        if is_restartable_init(container) {
            if running(status) {
                if status.started != Some(true) {
                    pending_restartable_init += 1;
                }
                running_n += 1;
            } else if terminated(status).is_some() {
                // Terminated sidecars do not count towards the phase.
            } else if waiting(status) {
                if last_terminated(status).is_none() {
                    pending_restartable_init += 1;
                    waiting_n += 1;
                }
            } else {
                pending_restartable_init += 1;
                unknown += 1;
            }
        } else if running(status) {
            pending_regular_init += 1;
        } else if let Some(t) = terminated(status) {
            if t.exit_code != 0 {
                failed_initialization += 1;
            }
        } else if waiting(status) {
            match last_terminated(status) {
                Some(t) if t.exit_code != 0 => failed_initialization += 1,
                Some(_) => {}
                None => pending_regular_init += 1,
            }
        } else {
            pending_regular_init += 1;
        }
    }

    for container in &spec.containers {
        let Some(status) = status_for(app_statuses, &container.name) else {
            unknown += 1;
            continue;
        };
        if running(status) {
            running_n += 1;
        } else if let Some(t) = terminated(status) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if waiting(status) {
            if last_terminated(status).is_some() {
                stopped += 1;
            } else {
                waiting_n += 1;
            }
        } else {
            unknown += 1;
        }
    }

    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_initialization > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_regular_init > 0 || pending_restartable_init > 0 || waiting_n > 0 {
        return "Pending";
    }
    if running_n > 0 && unknown == 0 {
        return "Running";
    }
    if running_n == 0 && stopped > 0 && unknown == 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    type_: &str,
    status: bool,
    why: Option<(String, String)>,
    at: DateTime<Utc>,
) -> PodCondition {
    let (reason, message) = match why {
        Some((reason, message)) => (Some(reason), non_empty(&message)),
        None => (None, None),
    };
    PodCondition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason,
        message,
        last_transition_time: Some(to_time(at)),
        ..PodCondition::default()
    }
}

/// Go's `fmt.Sprintf("%s", []string{...})`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn initialized_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    phase: &str,
    observed: &ObservedPod,
    pod_started: DateTime<Utc>,
) -> PodCondition {
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let mut incomplete = Vec::new();
    for container in init_containers {
        let status = status_for(init_statuses, &container.name);
        let complete = if is_restartable_init(container) {
            status.is_some_and(|s| s.started == Some(true))
        } else {
            status
                .and_then(terminated)
                .is_some_and(|t| t.exit_code == 0)
        };
        if !complete {
            incomplete.push(container.name.as_str());
        }
    }
    // The last init container to finish initialized the pod.
    let at = observed
        .containers
        .iter()
        .filter(|o| o.init)
        .filter_map(|o| match &o.state {
            ObservedState::Terminated { finished_at, .. } => Some(*finished_at),
            ObservedState::Running { started_at } => Some(*started_at),
            ObservedState::Waiting { .. } => None,
        })
        .max()
        .unwrap_or(pod_started)
        .max(pod_started);
    if incomplete.is_empty() {
        return condition("Initialized", true, None, at);
    }
    if phase == "Succeeded" {
        return condition(
            "Initialized",
            true,
            Some(("PodCompleted".to_string(), String::new())),
            at,
        );
    }
    condition(
        "Initialized",
        false,
        Some((
            "ContainersNotInitialized".to_string(),
            format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            ),
        )),
        pod_started,
    )
}

/// The outcome of kubelet's `GenerateContainersReadyCondition`.
struct ContainersReady {
    ready: bool,
    reason: String,
    message: String,
}

impl ContainersReady {
    fn why(&self) -> Option<(String, String)> {
        (!self.ready).then(|| (self.reason.clone(), self.message.clone()))
    }
}

fn containers_ready_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    app_statuses: &[ContainerStatus],
    phase: &str,
) -> ContainersReady {
    let mut unready = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_restartable_init(c))
        .map(|c| (c, init_statuses));
    let apps = spec.containers.iter().map(|c| (c, app_statuses));
    for (container, statuses) in sidecars.chain(apps) {
        if !status_for(statuses, &container.name).is_some_and(|s| s.ready) {
            unready.push(container.name.as_str());
        }
    }
    let not_ready = |reason: &str, message: String| ContainersReady {
        ready: false,
        reason: reason.to_string(),
        message,
    };
    match phase {
        "Succeeded" => not_ready("PodCompleted", String::new()),
        "Failed" => not_ready("PodFailed", String::new()),
        _ if !unready.is_empty() => not_ready(
            "ContainersNotReady",
            format!("containers with unready status: {}", go_list(&unready)),
        ),
        _ => ContainersReady {
            ready: true,
            reason: String::new(),
            message: String::new(),
        },
    }
}

fn pod_ready_condition(
    spec: &PodSpec,
    conditions: &[PodCondition],
    containers_ready: &ContainersReady,
    at: DateTime<Utc>,
) -> PodCondition {
    if !containers_ready.ready {
        return condition("Ready", false, containers_ready.why(), at);
    }
    let mut unready = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => unready.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => unready.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if unready.is_empty() {
        condition("Ready", true, None, at)
    } else {
        condition(
            "Ready",
            false,
            Some(("ReadinessGatesNotReady".to_string(), unready.join(", "))),
            at,
        )
    }
}

/// When readiness last changed: the latest start or finish among app containers and
/// sidecars, or the pod's start when none has one yet.
fn ready_transition(
    app_statuses: &[ContainerStatus],
    init_statuses: &[ContainerStatus],
    pod_started: DateTime<Utc>,
) -> DateTime<Utc> {
    app_statuses
        .iter()
        .chain(init_statuses.iter().filter(|s| running(s)))
        .filter_map(|s| {
            let state = s.state.as_ref()?;
            if let Some(r) = &state.running {
                return r.started_at.as_ref().map(from_time);
            }
            state
                .terminated
                .as_ref()
                .and_then(|t| t.finished_at.as_ref())
                .map(from_time)
        })
        .max()
        .unwrap_or(pod_started)
        .max(pod_started)
}

/// A chrono time as the API's `Time`, at the whole-second precision the API keeps.
pub(crate) fn to_time(at: DateTime<Utc>) -> Time {
    let seconds = at.timestamp().clamp(
        k8s_openapi::jiff::Timestamp::MIN.as_second(),
        k8s_openapi::jiff::Timestamp::MAX.as_second(),
    );
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
}

/// The API's `Time` as a chrono time.
pub(crate) fn from_time(time: &Time) -> DateTime<Utc> {
    from_timestamp(time.0)
}

/// A `jiff` timestamp (inside `Time` and `MicroTime`) as a chrono time.
pub(crate) fn from_timestamp(ts: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    let mut seconds = ts.as_second();
    let mut nanos = ts.subsec_nanosecond();
    if nanos < 0 {
        seconds -= 1;
        nanos += 1_000_000_000;
    }
    DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn pod(restart_policy: &str, init: &[&str], apps: &[&str]) -> Pod {
        let containers = |names: &[&str]| -> Vec<serde_json::Value> {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect()
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "restartPolicy": restart_policy,
                "initContainers": containers(init),
                "containers": containers(apps),
            }
        }))
        .unwrap()
    }

    fn running(name: &str) -> ObservedContainer {
        container(
            name,
            false,
            ObservedState::Running {
                started_at: at("2024-05-01T12:00:10Z"),
            },
        )
    }

    fn exited(name: &str, code: i32) -> ObservedContainer {
        container(
            name,
            false,
            ObservedState::Terminated {
                exit_code: code,
                signal: None,
                reason: if code == 0 { "Completed" } else { "Error" }.to_string(),
                message: None,
                started_at: Some(at("2024-05-01T12:00:10Z")),
                finished_at: at("2024-05-01T12:00:20Z"),
            },
        )
    }

    fn waiting(name: &str, reason: &str) -> ObservedContainer {
        container(
            name,
            false,
            ObservedState::Waiting {
                reason: reason.to_string(),
                message: None,
            },
        )
    }

    fn init(mut c: ObservedContainer) -> ObservedContainer {
        c.init = true;
        c
    }

    fn restarted(mut c: ObservedContainer, code: i32) -> ObservedContainer {
        c.restart_count = 1;
        c.last_state = Some(exited(&c.name, code).state);
        c
    }

    fn container(name: &str, init: bool, state: ObservedState) -> ObservedContainer {
        ObservedContainer {
            name: name.to_string(),
            init,
            container_id: Some(format!("peapod://{name}")),
            image: "busybox".to_string(),
            image_id: "sha256:abc".to_string(),
            state,
            last_state: None,
            restart_count: 0,
            ready: None,
            started: None,
        }
    }

    fn observed(containers: Vec<ObservedContainer>) -> ObservedPod {
        ObservedPod {
            sandbox_ready: true,
            pod_ip: Some("10.88.0.5".to_string()),
            host_ip: Some("192.168.1.10".to_string()),
            start_time: Some(at("2024-05-01T12:00:01Z")),
            scheduled_at: at("2024-05-01T12:00:00Z"),
            containers,
        }
    }

    fn phase_of(
        policy: &str,
        init: &[&str],
        apps: &[&str],
        seen: Vec<ObservedContainer>,
    ) -> String {
        pod_status(&pod(policy, init, apps), &observed(seen))
            .phase
            .unwrap()
    }

    #[test]
    fn phase_table() {
        // (case, restartPolicy, init containers, app containers, observed, phase)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
            Vec<ObservedContainer>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            ("nothing created", "Always", &[], &["a"], vec![], "Pending"),
            (
                "creating",
                "Always",
                &[],
                &["a"],
                vec![waiting("a", "ContainerCreating")],
                "Pending",
            ),
            (
                "one of two started",
                "Always",
                &[],
                &["a", "b"],
                vec![running("a")],
                "Pending",
            ),
            (
                "all running",
                "Always",
                &[],
                &["a", "b"],
                vec![running("a"), running("b")],
                "Running",
            ),
            (
                "one running one exited",
                "Never",
                &[],
                &["a", "b"],
                vec![running("a"), exited("b", 1)],
                "Running",
            ),
            (
                "exited 0, Always",
                "Always",
                &[],
                &["a"],
                vec![exited("a", 0)],
                "Running",
            ),
            (
                "exited 0, OnFailure",
                "OnFailure",
                &[],
                &["a"],
                vec![exited("a", 0)],
                "Succeeded",
            ),
            (
                "exited 0, Never",
                "Never",
                &[],
                &["a"],
                vec![exited("a", 0)],
                "Succeeded",
            ),
            (
                "exited 1, Never",
                "Never",
                &[],
                &["a"],
                vec![exited("a", 1)],
                "Failed",
            ),
            (
                "exited 1, OnFailure",
                "OnFailure",
                &[],
                &["a"],
                vec![exited("a", 1)],
                "Running",
            ),
            (
                "exited 1, Always",
                "Always",
                &[],
                &["a"],
                vec![exited("a", 1)],
                "Running",
            ),
            (
                "mixed exits, Never",
                "Never",
                &[],
                &["a", "b"],
                vec![exited("a", 0), exited("b", 2)],
                "Failed",
            ),
            (
                "crash loop counts as stopped",
                "Always",
                &[],
                &["a"],
                vec![restarted(waiting("a", "CrashLoopBackOff"), 1)],
                "Running",
            ),
            (
                "init running",
                "Always",
                &["i"],
                &["a"],
                vec![init(running("i"))],
                "Pending",
            ),
            (
                "init done, app pending",
                "Always",
                &["i"],
                &["a"],
                vec![init(exited("i", 0))],
                "Pending",
            ),
            (
                "init done, app running",
                "Always",
                &["i"],
                &["a"],
                vec![init(exited("i", 0)), running("a")],
                "Running",
            ),
            (
                "init failed, Never",
                "Never",
                &["i"],
                &["a"],
                vec![init(exited("i", 1))],
                "Failed",
            ),
            (
                "init failed, OnFailure",
                "OnFailure",
                &["i"],
                &["a"],
                vec![init(exited("i", 1))],
                "Pending",
            ),
            (
                "init crash looping, Always",
                "Always",
                &["i"],
                &["a"],
                vec![init(restarted(waiting("i", "CrashLoopBackOff"), 1))],
                "Pending",
            ),
        ];
        for (name, policy, init, apps, seen, want) in cases {
            assert_eq!(phase_of(policy, init, apps, seen), want, "{name}");
        }
    }

    fn conditions(status: &PodStatus) -> Vec<(String, String, Option<String>, Option<String>)> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    }

    fn cond(
        t: &str,
        s: &str,
        r: Option<&str>,
        m: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (
            t.to_string(),
            s.to_string(),
            r.map(String::from),
            m.map(String::from),
        )
    }

    #[test]
    fn a_failing_readiness_probe_keeps_the_pod_unready() {
        let mut b = running("b");
        b.ready = Some(false);
        let status = pod_status(
            &pod("Always", &[], &["a", "b"]),
            &observed(vec![running("a"), b]),
        );
        let ready: Vec<bool> = status
            .container_statuses
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.ready)
            .collect();
        assert_eq!(ready, [true, false]);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let c = conditions(&status);
        assert!(c.contains(&cond(
            "ContainersReady",
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status: [b]")
        )));
        // A container whose startup probe has not passed is neither started nor ready.
        let mut a = running("a");
        a.started = Some(false);
        let status = pod_status(&pod("Always", &[], &["a"]), &observed(vec![a]));
        let a = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!((a.started, a.ready), (Some(false), false));
    }

    #[test]
    fn conditions_while_initializing() {
        let status = pod_status(
            &pod("Always", &["x", "y"], &["a", "b"]),
            &observed(vec![init(exited("x", 0)), init(running("y"))]),
        );
        assert_eq!(
            conditions(&status),
            [
                cond("PodReadyToStartContainers", "True", None, None),
                cond(
                    "Initialized",
                    "False",
                    Some("ContainersNotInitialized"),
                    Some("containers with incomplete status: [y]")
                ),
                cond(
                    "Ready",
                    "False",
                    Some("ContainersNotReady"),
                    Some("containers with unready status: [a b]")
                ),
                cond(
                    "ContainersReady",
                    "False",
                    Some("ContainersNotReady"),
                    Some("containers with unready status: [a b]")
                ),
                cond("PodScheduled", "True", None, None),
            ]
        );
        // App containers the kubelet has not created yet wait on the init containers.
        let app = &status.container_statuses.as_ref().unwrap()[0];
        let waiting = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("PodInitializing"));
        assert_eq!(app.started, Some(false));
        assert!(!app.ready);
        let inits = status.init_container_statuses.as_ref().unwrap();
        assert!(inits[0].ready);
        assert!(!inits[1].ready);
        assert_eq!(inits[1].started, Some(true));
    }

    #[test]
    fn conditions_when_running() {
        let status = pod_status(
            &pod("Always", &["i"], &["a"]),
            &observed(vec![init(exited("i", 0)), running("a")]),
        );
        assert_eq!(
            conditions(&status),
            [
                cond("PodReadyToStartContainers", "True", None, None),
                cond("Initialized", "True", None, None),
                cond("Ready", "True", None, None),
                cond("ContainersReady", "True", None, None),
                cond("PodScheduled", "True", None, None),
            ]
        );
        let times: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| from_time(c.last_transition_time.as_ref().unwrap()))
            .collect();
        assert_eq!(
            times,
            [
                at("2024-05-01T12:00:01Z"),
                at("2024-05-01T12:00:20Z"),
                at("2024-05-01T12:00:10Z").max(at("2024-05-01T12:00:01Z")),
                at("2024-05-01T12:00:10Z"),
                at("2024-05-01T12:00:00Z"),
            ]
        );
    }

    #[test]
    fn conditions_after_completion_and_failure() {
        let done = pod_status(&pod("Never", &[], &["a"]), &observed(vec![exited("a", 0)]));
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            conditions(&done)[2],
            cond("Ready", "False", Some("PodCompleted"), None)
        );
        let failed = pod_status(&pod("Never", &[], &["a"]), &observed(vec![exited("a", 1)]));
        assert_eq!(
            conditions(&failed)[3],
            cond("ContainersReady", "False", Some("PodFailed"), None)
        );
        let mut sandbox_down = observed(vec![]);
        sandbox_down.sandbox_ready = false;
        let status = pod_status(&pod("Always", &[], &["a"]), &sandbox_down);
        assert_eq!(
            conditions(&status)[0],
            cond("PodReadyToStartContainers", "False", None, None)
        );
        let creating = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            creating
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
    }

    #[test]
    fn container_statuses_in_spec_order_with_details() {
        let mut b = restarted(running("b"), 137);
        b.restart_count = 3;
        let status = pod_status(
            &pod("Always", &[], &["a", "b"]),
            &observed(vec![b, running("a")]),
        );
        let statuses = status.container_statuses.unwrap();
        assert_eq!(statuses[0].name, "a");
        assert_eq!(statuses[1].name, "b");
        assert_eq!(statuses[1].restart_count, 3);
        assert_eq!(statuses[1].container_id.as_deref(), Some("peapod://b"));
        assert_eq!(statuses[1].image_id, "sha256:abc");
        let last = statuses[1]
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 137);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert!(statuses[1].ready);
        assert_eq!(statuses[1].started, Some(true));
        assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.5"));
        assert_eq!(status.pod_ips.unwrap()[0].ip, "10.88.0.5");
        assert_eq!(status.host_ips.unwrap()[0].ip, "192.168.1.10");
        assert_eq!(
            status.start_time.as_ref().map(from_time),
            Some(at("2024-05-01T12:00:01Z"))
        );
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(status.init_container_statuses, None);
    }

    #[test]
    fn volume_mounts_reported_for_created_containers() {
        let spec: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": true},
                                               {"name": "w", "mountPath": "/w"}]},
                {"name": "b", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}
        }))
        .unwrap();
        let mut b = waiting("b", "ErrImageNeverPull");
        b.container_id = None;
        let status = pod_status(&spec, &observed(vec![running("a"), b]));
        let statuses = status.container_statuses.unwrap();
        let mounts = statuses[0].volume_mounts.as_ref().unwrap();
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[0].recursive_read_only.as_deref(), Some("Disabled"));
        assert_eq!(mounts[1].read_only, None);
        assert_eq!(mounts[1].recursive_read_only, None);
        assert_eq!(statuses[1].volume_mounts, None);
        assert_eq!(statuses[1].container_id, None);
    }

    fn spec_with(resources: &[serde_json::Value]) -> PodSpec {
        let containers: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": r}))
            .collect();
        serde_json::from_value(json!({ "containers": containers })).unwrap()
    }

    #[test]
    fn qos_table() {
        let both = json!({"limits": {"cpu": "500m", "memory": "128Mi"},
                          "requests": {"cpu": "0.5", "memory": "134217728"}});
        let cases = [
            ("nothing", vec![json!({})], "BestEffort"),
            (
                "zero requests",
                vec![json!({"requests": {"cpu": "0"}})],
                "BestEffort",
            ),
            (
                "other resources only",
                vec![json!({"limits": {"ephemeral-storage": "1Gi"}})],
                "BestEffort",
            ),
            (
                "equal, spelled differently",
                vec![both.clone()],
                "Guaranteed",
            ),
            (
                "limits only (requests default to them)",
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}})],
                "Guaranteed",
            ),
            (
                "requests below limits",
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"},
                                                "requests": {"cpu": "500m", "memory": "1Gi"}})],
                "Burstable",
            ),
            (
                "cpu limit only",
                vec![json!({"limits": {"cpu": "1"}})],
                "Burstable",
            ),
            (
                "one container without limits",
                vec![both.clone(), json!({})],
                "Burstable",
            ),
            (
                "requests only",
                vec![json!({"requests": {"memory": "64Mi"}})],
                "Burstable",
            ),
        ];
        for (name, resources, want) in cases {
            assert_eq!(qos_class(&spec_with(&resources)), want, "{name}");
        }
        // Init containers count too.
        let mut spec = spec_with(&[both]);
        spec.init_containers = Some(vec![serde_json::from_value(json!({"name": "i"})).unwrap()]);
        assert_eq!(qos_class(&spec), "Burstable");
    }

    #[test]
    fn quantities() {
        let cases = [
            ("1", Some(1_000_000_000)),
            ("500m", Some(500_000_000)),
            ("0.5", Some(500_000_000)),
            ("1Ki", Some(1024 * 1_000_000_000)),
            ("1k", Some(1_000_000_000_000)),
            ("1e3", Some(1_000_000_000_000)),
            ("1n", Some(1)),
            ("-2", Some(-2_000_000_000)),
            ("", None),
            ("abc", None),
            ("1Qi", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_quantity(text), want, "{text}");
        }
    }

    #[test]
    fn times_convert_both_ways() {
        let t = at("2020-06-15T14:38:10Z");
        assert_eq!(from_time(&to_time(t)), t);
        // The API keeps whole seconds.
        assert_eq!(from_time(&to_time(at("2020-06-15T14:38:10.75Z"))), t);
    }
}
