//! kubectl's printing of pods, reproduced byte for byte where peapod has the data: the
//! `kubectl get pods` table (`printPod` in `pkg/printers/internalversion/printers.go`), its
//! ages (`duration.HumanDuration`) and `kubectl describe pod` (`kubectl/pkg/describe`).
//!
//! Both printers write through [`align`], a port of Go's `text/tabwriter`, so columns line up
//! exactly as kubectl's do — including the quirks, such as `QoS Class:` aligning with the
//! last volume's fields. Pure: `now` is a parameter and nothing is read or written.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, Event, Pod, PodCondition, PodSpec, PodStatus,
    Probe, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::status::{from_time, from_timestamp};

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: about two significant figures
/// ("45s", "2m5s", "15m", "3h5m", "2d3h", "5d", "3y45d"); "0s" for up to a second into the
/// future (clock skew), "<invalid>" beyond that.
pub fn human_age(d: chrono::Duration) -> String {
    // Go's time.Duration is whole nanoseconds; truncating divisions match its conversions.
    let nanos = d
        .num_nanoseconds()
        .unwrap_or(if d < chrono::Duration::zero() {
            i64::MIN
        } else {
            i64::MAX
        });
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// kubectl's `translateTimestampSince`: the age of `at`, or `<unknown>` without one.
fn age_since(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        Some(at) => human_age(now - at),
        None => "<unknown>".to_string(),
    }
}

/// The READY, STATUS and RESTARTS columns, computed together as `printPod` does (which
/// containers count depends on whether the pod is still initializing).
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
}

fn condition_true(status: &PodStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .is_some_and(|c| c.status == "True")
}

fn last_termination(status: &ContainerStatus) -> Option<DateTime<Utc>> {
    status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.finished_at.as_ref().map(from_time).unwrap_or_default())
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn summarize(pod: &Pod) -> PodSummary {
    let empty_spec = PodSpec::default();
    let empty_status = PodStatus::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => phase.clone(),
    };
    if status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_string();
    }

    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let restartable = |name: &str| {
        init_containers
            .iter()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let total = spec.containers.len()
        + init_containers
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .count();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart = None;
    let mut sidecar_last_restart = None;

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += i64::from(cs.restart_count);
        last_restart = later(last_restart, last_termination(cs));
        let is_sidecar = restartable(&cs.name);
        if is_sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            sidecar_last_restart = later(sidecar_last_restart, last_termination(cs));
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        initializing = true;
        let waiting_reason = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing");
        reason = if let Some(t) = &state.terminated {
            match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(s) if s != 0 => format!("Init:Signal:{s}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            }
        } else if let Some(r) = waiting_reason {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        break;
    }

    if !initializing || condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            last_restart = later(last_restart, last_termination(cs));
            let state = cs.state.clone().unwrap_or_default();
            let waiting_reason = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting_reason {
                reason = r.to_string();
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.signal {
                        Some(s) if s != 0 => format!("Signal:{s}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(status, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod.metadata.deletion_timestamp.is_some();
    if deleting && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }
    PodSummary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

/// The STATUS column of `kubectl get pods`.
pub fn status_reason(pod: &Pod) -> String {
    summarize(pod).reason
}

/// The READY column of `kubectl get pods`: ready app containers (and started sidecars) over
/// app containers plus sidecars, e.g. `2/2`.
pub fn ready_column(pod: &Pod) -> String {
    let s = summarize(pod);
    format!("{}/{}", s.ready, s.total)
}

/// The RESTARTS column of `kubectl get pods`: `0`, or `3 (5s ago)` with the age of the
/// latest last-termination among the containers counted.
pub fn restarts_column(pod: &Pod, now: DateTime<Utc>) -> String {
    let s = summarize(pod);
    match s.last_restart {
        Some(at) if s.restarts != 0 && at != DateTime::<Utc>::default() => {
            format!("{} ({} ago)", s.restarts, human_age(now - at))
        }
        _ => s.restarts.to_string(),
    }
}

/// One row of `kubectl get pods -o wide`: name, ready, status, restarts, age, IP, node,
/// nominated node, readiness gates (empty wide cells as `<none>`).
pub fn table_cells(pod: &Pod, now: DateTime<Utc>) -> Vec<String> {
    let or_none = |s: Option<&str>| match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "<none>".to_string(),
    };
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let pod_ip = status
        .and_then(|s| s.pod_ips.as_ref())
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str());
    let gates = spec
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default();
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let passing = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c.type_ == g.condition_type)
                    .is_some_and(|c| c.status == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        pod.metadata.name.clone().unwrap_or_default(),
        ready_column(pod),
        status_reason(pod),
        restarts_column(pod, now),
        age_since(pod.metadata.creation_timestamp.as_ref().map(from_time), now),
        or_none(pod_ip),
        or_none(spec.and_then(|s| s.node_name.as_deref())),
        or_none(status.and_then(|s| s.nominated_node_name.as_deref())),
        readiness_gates,
    ]
}

/// `kubectl get pods` (`-o wide` with `wide`, `-A` with `all_namespaces`), pods in the
/// order given. Empty when there are no pods: kubectl then prints only "No resources found"
/// on stderr, which is the caller's business.
pub fn pods_table(pods: &[Pod], wide: bool, all_namespaces: bool, now: DateTime<Utc>) -> String {
    if pods.is_empty() {
        return String::new();
    }
    let columns = if wide { 9 } else { 5 };
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        header.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut text = header.join("\t");
    text.push('\n');
    for pod in pods {
        let mut cells = table_cells(pod, now);
        cells.truncate(columns);
        if all_namespaces {
            cells.insert(0, pod.metadata.namespace.clone().unwrap_or_default());
        }
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    // kubectl's printers.GetNewTabWriter: minwidth 6, padding 3.
    align(&text, 6, 3)
}

/// Go's `text/tabwriter` with flags 0 and a space pad character, applied to a whole text:
/// cells are tab-terminated; a column block is a run of consecutive lines that have a cell
/// in that column, and each cell in it is padded to the block's widest cell plus `padding`
/// (at least `minwidth`). The text after a line's last tab is never padded.
pub(crate) fn align(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(
        &lines,
        &mut widths,
        0,
        lines.len(),
        minwidth,
        padding,
        &mut out,
    );
    out
}

fn cell_width(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block for this column starts here; print the lines before it.
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, minwidth, padding, out);
        widths.pop();
        line0 = this;
        // Like Go's loop, skip the line that ended the block: it has no cell here.
        this += 1;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(&w) = widths.get(j) {
                let pad = w.saturating_sub(cell_width(cell));
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

/// Text written at kubectl describe's indentation levels (two spaces each), aligned at
/// the end by [`align`] with describe's padding of 2.
struct Describe {
    text: String,
}

impl Describe {
    fn put(&mut self, level: usize, s: &str) {
        for _ in 0..level {
            self.text.push_str("  ");
        }
        self.text.push_str(s);
    }
}

/// Go's `time.RFC1123Z` ("Mon, 15 Jun 2020 14:38:10 +0000"), in UTC; Go's zero time when
/// there is none, as kubectl prints an unset timestamp.
fn rfc1123z(at: Option<DateTime<Utc>>) -> String {
    match at {
        Some(at) => at.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        None => "Mon, 01 Jan 0001 00:00:00 +0000".to_string(),
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `kubectl describe pod`, with `events` about the pod (in any order).
pub fn describe_pod(pod: &Pod, events: &[Event], now: DateTime<Utc>) -> String {
    let empty_spec = PodSpec::default();
    let empty_status = PodStatus::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let meta = &pod.metadata;
    let mut w = Describe {
        text: String::new(),
    };

    w.put(
        0,
        &format!("Name:\t{}\n", meta.name.as_deref().unwrap_or_default()),
    );
    w.put(
        0,
        &format!(
            "Namespace:\t{}\n",
            meta.namespace.as_deref().unwrap_or_default()
        ),
    );
    if let Some(priority) = spec.priority {
        w.put(0, &format!("Priority:\t{priority}\n"));
    }
    if let Some(class) = non_empty(spec.priority_class_name.as_deref()) {
        w.put(0, &format!("Priority Class Name:\t{class}\n"));
    }
    if let Some(class) = non_empty(spec.runtime_class_name.as_deref()) {
        w.put(0, &format!("Runtime Class Name:\t{class}\n"));
    }
    if let Some(account) = non_empty(spec.service_account_name.as_deref()) {
        w.put(0, &format!("Service Account:\t{account}\n"));
    }
    match non_empty(spec.node_name.as_deref()) {
        None => w.put(0, "Node:\t<none>\n"),
        Some(node) => w.put(
            0,
            &format!(
                "Node:\t{node}/{}\n",
                status.host_ip.as_deref().unwrap_or_default()
            ),
        ),
    }
    if let Some(start) = &status.start_time {
        w.put(
            0,
            &format!("Start Time:\t{}\n", rfc1123z(Some(from_time(start)))),
        );
    }
    labels_multiline(&mut w, "Labels", meta.labels.as_ref());
    annotations_multiline(&mut w, meta.annotations.as_ref());
    let phase = status.phase.as_deref().unwrap_or_default();
    match &meta.deletion_timestamp {
        Some(deleted) if phase != "Failed" && phase != "Succeeded" => {
            w.put(
                0,
                &format!(
                    "Status:\tTerminating (lasts {})\n",
                    age_since(Some(from_time(deleted)), now)
                ),
            );
            if let Some(grace) = meta.deletion_grace_period_seconds {
                w.put(0, &format!("Termination Grace Period:\t{grace}s\n"));
            }
        }
        _ => w.put(0, &format!("Status:\t{phase}\n")),
    }
    if let Some(reason) = non_empty(status.reason.as_deref()) {
        w.put(0, &format!("Reason:\t{reason}\n"));
    }
    if let Some(message) = non_empty(status.message.as_deref()) {
        w.put(0, &format!("Message:\t{message}\n"));
    }
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
    {
        w.put(0, &format!("SeccompProfile:\t{}\n", profile.type_));
        if profile.type_ == "Localhost" {
            w.put(
                0,
                &format!(
                    "LocalhostProfile:\t{}\n",
                    profile.localhost_profile.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    w.put(
        0,
        &format!("IP:\t{}\n", status.pod_ip.as_deref().unwrap_or_default()),
    );
    match status.pod_ips.as_deref() {
        None | Some([]) => w.put(0, "IPs:\t<none>\n"),
        Some(ips) => {
            w.put(0, "IPs:\n");
            for ip in ips {
                w.put(1, &format!("IP:\t{}\n", ip.ip));
            }
        }
    }
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        w.put(
            0,
            &format!("Controlled By:\t{}/{}\n", owner.kind, owner.name),
        );
    }
    if let Some(nominated) = non_empty(status.nominated_node_name.as_deref()) {
        w.put(0, &format!("NominatedNodeName:\t{nominated}\n"));
    }
    if let Some(resources) = &spec.resources {
        w.put(0, "Resources:\n");
        describe_resources(&mut w, resources, 1);
    }

    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    if !init_containers.is_empty() {
        describe_containers(
            &mut w,
            "Init Containers",
            init_containers,
            status
                .init_container_statuses
                .as_deref()
                .unwrap_or_default(),
            pod,
        );
    }
    describe_containers(
        &mut w,
        "Containers",
        &spec.containers,
        status.container_statuses.as_deref().unwrap_or_default(),
        pod,
    );

    let conditions = status.conditions.as_deref().unwrap_or_default();
    let gates = spec.readiness_gates.as_deref().unwrap_or_default();
    if !gates.is_empty() {
        w.put(0, "Readiness Gates:\n  Type\tStatus\n");
        for gate in gates {
            let state = conditions
                .iter()
                .find(|c| c.type_ == gate.condition_type)
                .map_or("<none>", |c| c.status.as_str());
            w.put(1, &format!("{} \t{state} \n", gate.condition_type));
        }
    }
    if !conditions.is_empty() {
        w.put(0, "Conditions:\n  Type\tStatus\n");
        for PodCondition { type_, status, .. } in conditions {
            w.put(1, &format!("{type_} \t{status} \n"));
        }
    }
    describe_volumes(&mut w, spec.volumes.as_deref().unwrap_or_default());
    let qos = match non_empty(status.qos_class.as_deref()) {
        Some(q) => q,
        None => crate::status::qos_class(spec),
    };
    w.put(0, &format!("QoS Class:\t{qos}\n"));
    labels_multiline(&mut w, "Node-Selectors", spec.node_selector.as_ref());
    tolerations_multiline(&mut w, spec.tolerations.as_deref().unwrap_or_default());
    describe_events(&mut w, events, now);
    align(&w.text, 0, 2)
}

/// `printLabelsMultiline`: `key=value` lines in key order, or `<none>`.
fn labels_multiline(
    w: &mut Describe,
    title: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) {
    w.put(0, &format!("{title}:\t"));
    let labels = labels.filter(|l| !l.is_empty());
    let Some(labels) = labels else {
        w.put(0, "<none>\n");
        return;
    };
    for (i, (key, value)) in labels.iter().enumerate() {
        if i != 0 {
            w.put(0, "\t");
        }
        w.put(0, &format!("{key}={value}\n"));
    }
}

/// kubectl shortens annotation lines beyond this many bytes.
const MAX_ANNOTATION_LEN: usize = 140;

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `printAnnotationsMultiline`: `key: value` lines, long or multi-line values below their key.
fn annotations_multiline(
    w: &mut Describe,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) {
    w.put(0, "Annotations:\t");
    let shown: Vec<(&String, &String)> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .collect();
    if shown.is_empty() {
        w.put(0, "<none>\n");
        return;
    }
    for (i, (key, value)) in shown.into_iter().enumerate() {
        if i != 0 {
            w.put(0, "\t");
        }
        let value = value.strip_suffix('\n').unwrap_or(value);
        if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.put(0, &format!("{key}:\n"));
            for line in value.split('\n') {
                w.put(
                    0,
                    &format!("\t  {}\n", shorten(line, MAX_ANNOTATION_LEN - 2)),
                );
            }
        } else {
            w.put(0, &format!("{key}: {value}\n"));
        }
    }
}

/// `printPodTolerationsMultiline`, tolerations sorted by key.
fn tolerations_multiline(w: &mut Describe, tolerations: &[k8s_openapi::api::core::v1::Toleration]) {
    w.put(0, "Tolerations:\t");
    if tolerations.is_empty() {
        w.put(0, "<none>\n");
        return;
    }
    let mut sorted: Vec<_> = tolerations.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, t) in sorted.into_iter().enumerate() {
        if i != 0 {
            w.put(0, "\t");
        }
        let key = t.key.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        let mut line = key.to_string();
        if !value.is_empty() {
            let _ = write!(line, "={value}");
        }
        if !effect.is_empty() {
            let _ = write!(line, ":{effect}");
        }
        if t.operator.as_deref() == Some("Exists") && value.is_empty() {
            if !key.is_empty() || !effect.is_empty() {
                line.push_str(" op=Exists");
            } else {
                line.push_str("op=Exists");
            }
        }
        if let Some(seconds) = t.toleration_seconds {
            let _ = write!(line, " for {seconds}s");
        }
        line.push('\n');
        w.put(0, &line);
    }
}

fn describe_resources(
    w: &mut Describe,
    resources: &k8s_openapi::api::core::v1::ResourceRequirements,
    level: usize,
) {
    for (title, list) in [
        ("Limits", &resources.limits),
        ("Requests", &resources.requests),
    ] {
        let Some(list) = list.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        w.put(level, &format!("{title}:\n"));
        for (name, quantity) in list {
            w.put(level + 1, &format!("{name}:\t{}\n", quantity.0));
        }
    }
}

fn describe_containers(
    w: &mut Describe,
    label: &str,
    containers: &[Container],
    statuses: &[ContainerStatus],
    pod: &Pod,
) {
    let none = if containers.is_empty() { " <none>" } else { "" };
    w.put(0, &format!("{label}:{none}\n"));
    for container in containers {
        let status = statuses.iter().find(|s| s.name == container.name);
        w.put(1, &format!("{}:\n", container.name));
        if let Some(status) = status {
            w.put(
                2,
                &format!(
                    "Container ID:\t{}\n",
                    status.container_id.as_deref().unwrap_or_default()
                ),
            );
        }
        w.put(
            2,
            &format!(
                "Image:\t{}\n",
                container.image.as_deref().unwrap_or_default()
            ),
        );
        if let Some(status) = status {
            w.put(2, &format!("Image ID:\t{}\n", status.image_id));
        }
        let ports = container.ports.as_deref().unwrap_or_default();
        let protocol = |p: &k8s_openapi::api::core::v1::ContainerPort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".to_string())
        };
        let port_list: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p.container_port, protocol(p)))
            .collect();
        let host_list: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p.host_port.unwrap_or(0), protocol(p)))
            .collect();
        for (single, plural, list) in [
            ("Port", "Ports", port_list),
            ("Host Port", "Host Ports", host_list),
        ] {
            let joined = list.join(", ");
            if joined.contains(',') {
                w.put(2, &format!("{plural}:\t{joined}\n"));
            } else if joined.is_empty() {
                w.put(2, &format!("{single}:\t<none>\n"));
            } else {
                w.put(2, &format!("{single}:\t{joined}\n"));
            }
        }
        if let Some(profile) = container
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
        {
            w.put(2, &format!("SeccompProfile:\t{}\n", profile.type_));
            if profile.type_ == "Localhost" {
                w.put(
                    3,
                    &format!(
                        "LocalhostProfile:\t{}\n",
                        profile.localhost_profile.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
        for (title, words) in [("Command", &container.command), ("Args", &container.args)] {
            let Some(words) = words.as_ref().filter(|w| !w.is_empty()) else {
                continue;
            };
            w.put(2, &format!("{title}:\n"));
            for word in words {
                for line in word.split('\n') {
                    w.put(3, &format!("{line}\n"));
                }
            }
        }
        if let Some(status) = status {
            describe_state(w, "State", status.state.as_ref());
            if status
                .last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some())
            {
                describe_state(w, "Last State", status.last_state.as_ref());
            }
            let ready = if status.ready { "True" } else { "False" };
            w.put(2, &format!("Ready:\t{ready}\n"));
            w.put(2, &format!("Restart Count:\t{}\n", status.restart_count));
        }
        if let Some(resources) = &container.resources {
            describe_resources(w, resources, 2);
        }
        for (title, probe) in [
            ("Liveness", &container.liveness_probe),
            ("Readiness", &container.readiness_probe),
            ("Startup", &container.startup_probe),
        ] {
            if let Some(probe) = probe {
                w.put(2, &format!("{title}:\t{}\n", describe_probe(probe)));
            }
        }
        describe_env(w, container, pod);
        describe_mounts(w, container);
    }
}

fn describe_state(w: &mut Describe, name: &str, state: Option<&ContainerState>) {
    let state = state.cloned().unwrap_or_default();
    if let Some(running) = &state.running {
        w.put(2, &format!("{name}:\tRunning\n"));
        let started = running.started_at.as_ref().map(from_time);
        w.put(3, &format!("Started:\t{}\n", rfc1123z(started)));
    } else if let Some(waiting) = &state.waiting {
        w.put(2, &format!("{name}:\tWaiting\n"));
        if let Some(reason) = non_empty(waiting.reason.as_deref()) {
            w.put(3, &format!("Reason:\t{reason}\n"));
        }
    } else if let Some(t) = &state.terminated {
        w.put(2, &format!("{name}:\tTerminated\n"));
        if let Some(reason) = non_empty(t.reason.as_deref()) {
            w.put(3, &format!("Reason:\t{reason}\n"));
        }
        if let Some(message) = non_empty(t.message.as_deref()) {
            w.put(3, &format!("Message:\t{message}\n"));
        }
        w.put(3, &format!("Exit Code:\t{}\n", t.exit_code));
        if let Some(signal) = t.signal.filter(|s| *s > 0) {
            w.put(3, &format!("Signal:\t{signal}\n"));
        }
        let started = t.started_at.as_ref().map(from_time);
        let finished = t.finished_at.as_ref().map(from_time);
        w.put(3, &format!("Started:\t{}\n", rfc1123z(started)));
        w.put(3, &format!("Finished:\t{}\n", rfc1123z(finished)));
    } else {
        w.put(2, &format!("{name}:\tWaiting\n"));
    }
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// kubectl's `DescribeProbe`.
fn describe_probe(probe: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        probe.initial_delay_seconds.unwrap_or(0),
        probe.timeout_seconds.unwrap_or(0),
        probe.period_seconds.unwrap_or(0),
        probe.success_threshold.unwrap_or(0),
        probe.failure_threshold.unwrap_or(0),
    );
    if let Some(exec) = &probe.exec {
        let command = exec.command.as_deref().unwrap_or_default().join(" ");
        return format!("exec [{command}] {attrs}");
    }
    if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host = http.host.as_deref().unwrap_or_default();
        let port = int_or_string(&http.port);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = http.path.as_deref().unwrap_or_default();
        return format!("http-get {scheme}://{authority}{path} {attrs}");
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.as_deref().unwrap_or_default();
        return format!("tcp-socket {host}:{} {attrs}", int_or_string(&tcp.port));
    }
    if let Some(grpc) = &probe.grpc {
        let service = grpc.service.as_deref().unwrap_or_default();
        return format!("grpc <pod>:{} {service} {attrs}", grpc.port);
    }
    format!("unknown {attrs}")
}

/// The value kubectl's resolver shows for a `fieldRef` environment variable.
fn field_value(pod: &Pod, path: &str) -> String {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        _ => None,
    };
    value.unwrap_or_default()
}

fn describe_env(w: &mut Describe, container: &Container, pod: &Pod) {
    let env_from = container.env_from.as_deref().unwrap_or_default();
    if !env_from.is_empty() {
        w.put(2, "Environment Variables from:\n");
        for source in env_from {
            let (from, name, optional) = if let Some(c) = &source.config_map_ref {
                ("ConfigMap", c.name.as_str(), c.optional.unwrap_or(false))
            } else if let Some(s) = &source.secret_ref {
                ("Secret", s.name.as_str(), s.optional.unwrap_or(false))
            } else {
                ("", "", false)
            };
            match non_empty(source.prefix.as_deref()) {
                None => w.put(3, &format!("{name}\t{from}\tOptional: {optional}\n")),
                Some(prefix) => w.put(
                    3,
                    &format!("{name}\t{from} with prefix '{prefix}'\tOptional: {optional}\n"),
                ),
            }
        }
    }
    let env = container.env.as_deref().unwrap_or_default();
    if env.is_empty() {
        w.put(2, "Environment:\t<none>\n");
        return;
    }
    w.put(2, "Environment:\n");
    for var in env {
        let Some(from) = &var.value_from else {
            let value = var.value.as_deref().unwrap_or_default();
            for (i, line) in value.split('\n').enumerate() {
                if i == 0 {
                    w.put(3, &format!("{}:\t{line}\n", var.name));
                } else {
                    w.put(3, &format!("\t{line}\n"));
                }
            }
            continue;
        };
        if let Some(field) = &from.field_ref {
            let api_version = field.api_version.as_deref().unwrap_or("v1");
            w.put(
                3,
                &format!(
                    "{}:\t{} ({api_version}:{})\n",
                    var.name,
                    field_value(pod, &field.field_path),
                    field.field_path
                ),
            );
        } else if let Some(resource) = &from.resource_field_ref {
            let (kind, name) = resource
                .resource
                .split_once('.')
                .unwrap_or(("", resource.resource.as_str()));
            let list = container.resources.as_ref().and_then(|r| match kind {
                "limits" => r.limits.as_ref(),
                "requests" => r.requests.as_ref(),
                _ => None,
            });
            let value = match list.and_then(|l| l.get(name)) {
                Some(q) => q.0.clone(),
                None if kind == "limits" && (name == "cpu" || name == "memory") => {
                    "node allocatable".to_string()
                }
                None => "0".to_string(),
            };
            w.put(
                3,
                &format!("{}:\t{value} ({})\n", var.name, resource.resource),
            );
        } else if let Some(secret) = &from.secret_key_ref {
            w.put(
                3,
                &format!(
                    "{}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                    var.name,
                    secret.key,
                    secret.name,
                    secret.optional.unwrap_or(false)
                ),
            );
        } else if let Some(config) = &from.config_map_key_ref {
            w.put(
                3,
                &format!(
                    "{}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                    var.name,
                    config.key,
                    config.name,
                    config.optional.unwrap_or(false)
                ),
            );
        }
    }
}

fn describe_mounts(w: &mut Describe, container: &Container) {
    let mut mounts: Vec<_> = container.volume_mounts.iter().flatten().collect();
    if mounts.is_empty() {
        w.put(2, "Mounts:\t<none>\n");
    } else {
        w.put(2, "Mounts:\n");
    }
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    for mount in mounts {
        let mut flags = if mount.read_only.unwrap_or(false) {
            "ro".to_string()
        } else {
            "rw".to_string()
        };
        if let Some(sub) = non_empty(mount.sub_path.as_deref()) {
            let _ = write!(flags, ",path={sub:?}");
        }
        w.put(
            3,
            &format!("{} from {} ({flags})\n", mount.mount_path, mount.name),
        );
    }
    let mut devices: Vec<_> = container.volume_devices.iter().flatten().collect();
    if !devices.is_empty() {
        w.put(2, "Devices:\n");
        devices.sort_by(|a, b| a.device_path.cmp(&b.device_path));
        for device in devices {
            w.put(3, &format!("{} from {}\n", device.device_path, device.name));
        }
    }
}

fn describe_volumes(w: &mut Describe, volumes: &[Volume]) {
    if volumes.is_empty() {
        w.put(0, "Volumes:\t<none>\n");
        return;
    }
    w.put(0, "Volumes:\n");
    for volume in volumes {
        w.put(1, &format!("{}:\n", volume.name));
        if let Some(host) = &volume.host_path {
            let kind = host.type_.as_deref().unwrap_or("<none>");
            w.put(
                2,
                &format!(
                    "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{kind}\n",
                    host.path
                ),
            );
        } else if let Some(empty) = &volume.empty_dir {
            let size = empty
                .size_limit
                .as_ref()
                .filter(|q| crate::status::quantity_is_positive(&q.0))
                .map_or_else(|| "<unset>".to_string(), |q| q.0.clone());
            w.put(
                2,
                &format!(
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{size}\n",
                    empty.medium.as_deref().unwrap_or_default()
                ),
            );
        } else if let Some(secret) = &volume.secret {
            w.put(
                2,
                &format!(
                    "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                    secret.secret_name.as_deref().unwrap_or_default(),
                    secret.optional.unwrap_or(false)
                ),
            );
        } else if let Some(config) = &volume.config_map {
            w.put(
                2,
                &format!(
                    "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                    config.name,
                    config.optional.unwrap_or(false)
                ),
            );
        } else if let Some(claim) = &volume.persistent_volume_claim {
            w.put(
                2,
                &format!(
                    "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
                    claim.claim_name,
                    claim.read_only.unwrap_or(false)
                ),
            );
        } else if let Some(downward) = &volume.downward_api {
            w.put(
                2,
                "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n",
            );
            for item in downward.items.iter().flatten() {
                if let Some(field) = &item.field_ref {
                    w.put(3, &format!("{} -> {}\n", field.field_path, item.path));
                }
                if let Some(resource) = &item.resource_field_ref {
                    w.put(3, &format!("{} -> {}\n", resource.resource, item.path));
                }
            }
        } else if let Some(image) = &volume.image {
            w.put(
                2,
                &format!(
                    "Type:\tImage (a container image or OCI artifact)\n    Reference:\t{}\n    PullPolicy:\t{}\n",
                    image.reference.as_deref().unwrap_or_default(),
                    image.pull_policy.as_deref().unwrap_or_default()
                ),
            );
        } else {
            w.put(1, "<unknown>\n");
        }
    }
}

/// kubectl's `DescribeEvents`: oldest first, ages like `5s` or
/// `5s (x3 over 10s)`.
fn describe_events(w: &mut Describe, events: &[Event], now: DateTime<Utc>) {
    if events.is_empty() {
        w.put(0, "Events:\t<none>\n");
        return;
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    let last_seen = |e: &Event| e.last_timestamp.as_ref().map(from_time);
    // kubectl's SortableEvents: by series last observation, else last timestamp, else
    // event time.
    sorted.sort_by_key(|e| match &e.series {
        Some(series) => series
            .last_observed_time
            .as_ref()
            .map(|t| from_timestamp(t.0)),
        None => last_seen(e).or_else(|| e.event_time.as_ref().map(|t| from_timestamp(t.0))),
    });
    // kubectl flushes its tabwriter here; "Events:" has no tab, so it ends every column
    // block just the same.
    w.put(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.put(1, "----\t------\t----\t----\t-------\n");
    for e in sorted {
        let first = match &e.event_time {
            Some(t) => age_since(Some(from_timestamp(t.0)), now),
            None => age_since(e.first_timestamp.as_ref().map(from_time), now),
        };
        let count = e.count.unwrap_or(0);
        let interval = if let Some(series) = &e.series {
            let last = series
                .last_observed_time
                .as_ref()
                .map(|t| from_timestamp(t.0));
            format!(
                "{} (x{} over {first})",
                age_since(last, now),
                series.count.unwrap_or(0)
            )
        } else if count > 1 {
            format!("{} (x{count} over {first})", age_since(last_seen(e), now))
        } else {
            first
        };
        let source = e
            .source
            .as_ref()
            .and_then(|s| non_empty(s.component.as_deref()))
            .or(e.reporting_component.as_deref())
            .unwrap_or_default();
        w.put(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{}\n",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        at("2024-05-01T12:00:00Z")
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    /// A pod named `p` with app containers `a` (and `b`, `c`...) matching `statuses`, init
    /// containers matching `init`, and the given phase and conditions.
    fn pod_with(phase: &str, init: Value, statuses: Value, ready: bool) -> Pod {
        let names = |v: &Value| -> Vec<Value> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| json!({"name": s["name"], "image": "busybox"}))
                .collect()
        };
        let initialized = init
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == 0);
        let cond = |b: bool| if b { "True" } else { "False" };
        pod(json!({
            "metadata": {"name": "p", "namespace": "default",
                         "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"initContainers": names(&init), "containers": names(&statuses)},
            "status": {
                "phase": phase,
                "conditions": [
                    {"type": "Initialized", "status": cond(initialized)},
                    {"type": "Ready", "status": cond(ready)},
                ],
                "initContainerStatuses": init,
                "containerStatuses": statuses,
            }
        }))
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
               "state": {"running": {"startedAt": "2024-05-01T11:59:30Z"}}})
    }

    fn waiting(name: &str, reason: &str) -> Value {
        json!({"name": name, "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": reason}}})
    }

    fn terminated(name: &str, code: i32, reason: &str, signal: i32) -> Value {
        json!({"name": name, "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": reason, "signal": signal,
                                        "finishedAt": "2024-05-01T11:59:50Z"}}})
    }

    #[test]
    fn human_age_matches_go() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (599, "9m59s"),
            (600, "10m"),
            (900, "15m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (5 * 86400, "5d"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (3 * 365 * 86400 + 45 * 86400, "3y45d"),
            (4 * 365 * 86400, "4y"),
            (9 * 365 * 86400 + 3 * 86400, "9y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(
                human_age(chrono::Duration::seconds(seconds)),
                want,
                "{seconds}s"
            );
        }
        // Fractions truncate as Go's conversions do.
        assert_eq!(human_age(chrono::Duration::milliseconds(1999)), "1s");
        assert_eq!(human_age(chrono::Duration::milliseconds(-1999)), "0s");
    }

    #[test]
    fn status_reason_table() {
        let cases: Vec<(&str, Pod, &str)> = vec![
            (
                "running",
                pod_with("Running", json!([]), json!([running("a")]), true),
                "Running",
            ),
            (
                "first init container running",
                pod_with(
                    "Pending",
                    json!([running("i")]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:0/1",
            ),
            (
                "init container not created yet",
                pod_with(
                    "Pending",
                    json!([
                        terminated("i", 0, "Completed", 0),
                        waiting("j", "PodInitializing")
                    ]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:1/2",
            ),
            (
                "init container failed",
                pod_with(
                    "Failed",
                    json!([terminated("i", 1, "Error", 0)]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:Error",
            ),
            (
                "init container without reason",
                pod_with(
                    "Pending",
                    json!([terminated("i", 2, "", 0)]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:ExitCode:2",
            ),
            (
                "init container killed",
                pod_with(
                    "Pending",
                    json!([terminated("i", 137, "", 9)]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:Signal:9",
            ),
            (
                "init container crash looping",
                pod_with(
                    "Pending",
                    json!([waiting("i", "CrashLoopBackOff")]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "Init:CrashLoopBackOff",
            ),
            (
                "initialized, app not created",
                pod_with(
                    "Pending",
                    json!([terminated("i", 0, "Completed", 0)]),
                    json!([waiting("a", "PodInitializing")]),
                    false,
                ),
                "PodInitializing",
            ),
            (
                "completed",
                pod_with(
                    "Succeeded",
                    json!([]),
                    json!([terminated("a", 0, "Completed", 0)]),
                    false,
                ),
                "Completed",
            ),
            (
                "error",
                pod_with(
                    "Failed",
                    json!([]),
                    json!([terminated("a", 1, "Error", 0)]),
                    false,
                ),
                "Error",
            ),
            (
                "reasonless exit",
                pod_with(
                    "Failed",
                    json!([]),
                    json!([terminated("a", 3, "", 0)]),
                    false,
                ),
                "ExitCode:3",
            ),
            (
                "reasonless signal",
                pod_with(
                    "Failed",
                    json!([]),
                    json!([terminated("a", 137, "", 9)]),
                    false,
                ),
                "Signal:9",
            ),
            (
                "crash loop",
                pod_with(
                    "Running",
                    json!([]),
                    json!([waiting("a", "CrashLoopBackOff")]),
                    false,
                ),
                "CrashLoopBackOff",
            ),
            (
                "creating",
                pod_with(
                    "Pending",
                    json!([]),
                    json!([waiting("a", "ContainerCreating")]),
                    false,
                ),
                "ContainerCreating",
            ),
            (
                "image never pulled",
                pod_with(
                    "Pending",
                    json!([]),
                    json!([waiting("a", "ErrImageNeverPull")]),
                    false,
                ),
                "ErrImageNeverPull",
            ),
            (
                "completed beside running and ready",
                pod_with(
                    "Running",
                    json!([]),
                    json!([terminated("a", 0, "Completed", 0), running("b")]),
                    true,
                ),
                "Running",
            ),
            (
                "completed beside running, pod not ready",
                pod_with(
                    "Running",
                    json!([]),
                    json!([terminated("a", 0, "Completed", 0), running("b")]),
                    false,
                ),
                "NotReady",
            ),
            (
                "first container wins",
                pod_with(
                    "Running",
                    json!([]),
                    json!([
                        waiting("a", "CrashLoopBackOff"),
                        waiting("b", "ContainerCreating")
                    ]),
                    false,
                ),
                "CrashLoopBackOff",
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(status_reason(&pod), want, "{name}");
        }
    }

    #[test]
    fn terminating_and_status_reason() {
        let mut p = pod_with("Running", json!([]), json!([running("a")]), true);
        p.metadata.deletion_timestamp = Some(crate::status::to_time(now()));
        assert_eq!(status_reason(&p), "Terminating");
        // A finished pod being deleted keeps its phase.
        let mut done = pod_with(
            "Succeeded",
            json!([]),
            json!([terminated("a", 0, "Completed", 0)]),
            false,
        );
        done.metadata.deletion_timestamp = Some(crate::status::to_time(now()));
        assert_eq!(status_reason(&done), "Completed");
        // status.reason overrides the phase (e.g. Evicted).
        let evicted = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []},
                                 "status": {"phase": "Failed", "reason": "Evicted"}}),
        );
        assert_eq!(status_reason(&evicted), "Evicted");
    }

    #[test]
    fn ready_column_counts_ready_running_containers() {
        let p = pod_with(
            "Running",
            json!([]),
            json!([running("a"), waiting("b", "CrashLoopBackOff")]),
            false,
        );
        assert_eq!(ready_column(&p), "1/2");
        let p = pod_with(
            "Running",
            json!([]),
            json!([running("a"), running("b")]),
            true,
        );
        assert_eq!(ready_column(&p), "2/2");
        // Not counted while initializing.
        let p = pod_with(
            "Pending",
            json!([running("i")]),
            json!([running("a")]),
            false,
        );
        assert_eq!(ready_column(&p), "0/1");
    }

    #[test]
    fn restarts_column_shows_age_of_latest_restart() {
        let p = pod_with("Running", json!([]), json!([running("a")]), true);
        assert_eq!(restarts_column(&p, now()), "0");
        let mut a = running("a");
        a["restartCount"] = json!(2);
        a["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:40Z"}});
        let mut b = running("b");
        b["restartCount"] = json!(1);
        b["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:55Z"}});
        let p = pod_with("Running", json!([]), json!([a, b]), true);
        assert_eq!(restarts_column(&p, now()), "3 (5s ago)");
        // While initializing, only init container restarts count.
        let mut i = waiting("i", "CrashLoopBackOff");
        i["restartCount"] = json!(4);
        i["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}});
        let p = pod_with(
            "Pending",
            json!([i]),
            json!([waiting("a", "PodInitializing")]),
            false,
        );
        assert_eq!(restarts_column(&p, now()), "4 (2m ago)");
    }

    #[test]
    fn table_cells_fill_wide_columns() {
        let p = pod_with("Running", json!([]), json!([running("a")]), true);
        assert_eq!(
            table_cells(&p, now()),
            ["p", "1/1", "Running", "0", "60s", "<none>", "<none>", "<none>", "<none>"]
        );
        let p = pod(json!({"metadata": {"name": "q"},
            "spec": {"containers": [], "nodeName": "host", "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"podIPs": [{"ip": "10.0.0.2"}], "conditions": [{"type": "x", "status": "True"}]}}));
        let cells = table_cells(&p, now());
        assert_eq!(cells[4], "<unknown>");
        assert_eq!(cells[5..], ["10.0.0.2", "host", "<none>", "1/2"]);
    }

    #[test]
    fn align_pads_column_blocks_like_go_tabwriter() {
        assert_eq!(
            align("a\tbb\tc\naaa\tb\tc\n", 0, 2),
            "a    bb  c\naaa  b   c\n"
        );
        // A line without a tab ends the block; an empty last cell is not padded but the
        // cell before it is.
        assert_eq!(
            align("ab\tx\nno tabs\na\t\n", 0, 2),
            "ab  x\nno tabs\na  \n"
        );
        // Lines with fewer cells break only the deeper columns.
        assert_eq!(
            align("a\tb\tc\nlonger\td\nx\tyyyy\tz\n", 0, 1),
            "a      b c\nlonger d\nx      yyyy z\n"
        );
        assert_eq!(align("A\tB\nx\ty\n", 6, 3), "A     B\nx     y\n");
    }

    #[test]
    fn pods_table_all_namespaces_puts_namespace_first() {
        let p = pod_with("Running", json!([]), json!([running("a")]), true);
        assert_eq!(
            pods_table(&[p], false, true, now()),
            "NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE\n\
             default     p      1/1     Running   0          60s\n"
        );
        assert_eq!(pods_table(&[], false, false, now()), "");
    }

    #[test]
    fn describe_mounts_sorts_and_flags() {
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/z"},
            {"name": "w", "mountPath": "/a", "readOnly": true, "subPath": "sub"}]}))
        .unwrap();
        let mut w = Describe {
            text: String::new(),
        };
        describe_mounts(&mut w, &c);
        assert_eq!(
            w.text,
            "    Mounts:\n      /a from w (ro,path=\"sub\")\n      /z from v (rw)\n"
        );
    }

    #[test]
    fn describe_events_counts_and_sorts() {
        let events: Vec<Event> = serde_json::from_value(json!([
            {"metadata": {"name": "e2"}, "involvedObject": {}, "type": "Warning", "reason": "BackOff",
             "firstTimestamp": "2024-05-01T11:59:50Z", "lastTimestamp": "2024-05-01T11:59:55Z", "count": 3,
             "source": {"component": "kubelet"}, "message": "Back-off restarting failed container\n"},
            {"metadata": {"name": "e1"}, "involvedObject": {}, "type": "Normal", "reason": "Scheduled",
             "firstTimestamp": "2024-05-01T11:59:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 1,
             "reportingComponent": "default-scheduler", "message": "Successfully assigned default/p to host"},
        ]))
        .unwrap();
        let mut w = Describe {
            text: String::new(),
        };
        describe_events(&mut w, &events, now());
        assert_eq!(
            align(&w.text, 0, 2),
            "Events:\n\
             \x20 Type     Reason     Age               From               Message\n\
             \x20 ----     ------     ----              ----               -------\n\
             \x20 Normal   Scheduled  60s               default-scheduler  Successfully assigned default/p to host\n\
             \x20 Warning  BackOff    5s (x3 over 10s)  kubelet            Back-off restarting failed container\n"
        );
    }

    #[test]
    fn describe_terminating_pod() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "default",
                         "deletionTimestamp": "2024-05-01T11:59:55Z", "deletionGracePeriodSeconds": 30},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]},
            "status": {"phase": "Running"}}));
        let text = describe_pod(&p, &[], now());
        assert!(
            text.contains("\nStatus:                    Terminating (lasts 5s)\nTermination Grace Period:  30s\n"),
            "{text}"
        );
        assert!(
            text.contains("\nNode:                      <none>\n"),
            "{text}"
        );
        assert!(
            text.contains("\nIPs:                       <none>\n"),
            "{text}"
        );
        // Without a status the container section stops after the spec's fields.
        assert!(
            text.contains("  a:\n    Image:        busybox\n    Port:         <none>\n"),
            "{text}"
        );
    }

    #[test]
    fn describe_probe_formats() {
        let probe: Probe = serde_json::from_value(json!({"httpGet": {"port": 8080, "path": "/healthz"},
            "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}))
        .unwrap();
        assert_eq!(
            describe_probe(&probe),
            "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"
        );
        let probe: Probe =
            serde_json::from_value(json!({"exec": {"command": ["cat", "/tmp/ok"]}})).unwrap();
        assert_eq!(
            describe_probe(&probe),
            "exec [cat /tmp/ok] delay=0s timeout=0s period=0s #success=0 #failure=0"
        );
    }
}
