//! Golden tests for kubectl-style printing: `kubectl get pods` (plain, `-o wide`, `-A`) and
//! `kubectl describe pod` for the seed's pods, with statuses computed by `pod_status` from
//! observations. The expected text lives in `fixtures/golden/*.txt`; run with
//! `UPDATE_GOLDEN=1` to rewrite it after an intended change, then review the diff.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use peapod_api::k8s_openapi::api::core::v1::{Event, Pod};
use peapod_api::print::{describe_pod, pods_table};
use peapod_api::status::{pod_status, ObservedContainer, ObservedPod, ObservedState};
use serde_json::{json, Value};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The moment every golden is printed at.
fn now() -> DateTime<Utc> {
    at("2020-06-15T14:53:48Z")
}

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// A pod as the API server would hold it after defaulting, with the status computed from
/// `observed`.
fn pod(mut manifest: Value, observed: &ObservedPod) -> Pod {
    let metadata = manifest["metadata"].as_object_mut().unwrap();
    metadata.entry("namespace").or_insert(json!("default"));
    metadata.insert("uid".into(), json!("a66c7066-35c2-4be6-b58a-0df6ede9d95d"));
    metadata.insert(
        "creationTimestamp".into(),
        json!(observed.scheduled_at.to_rfc3339()),
    );
    let spec = manifest["spec"].as_object_mut().unwrap();
    spec.insert("nodeName".into(), json!("node2"));
    spec.insert("priority".into(), json!(0));
    spec.entry("restartPolicy").or_insert(json!("Always"));
    let mut pod: Pod = serde_json::from_value(manifest).unwrap();
    pod.status = Some(pod_status(&pod, observed));
    pod
}

fn container(name: &str, init: bool, id: &str, state: ObservedState) -> ObservedContainer {
    ObservedContainer {
        name: name.to_string(),
        init,
        container_id: Some(format!("peapod://{}", id.repeat(64 / id.len()))),
        image: "busybox".to_string(),
        image_id: "sha256:1c35c441208254cb7c3844ba95a96485388cef9ccc0646d562c7fc026e04c807"
            .to_string(),
        state,
        last_state: None,
        restart_count: 0,
        ready: None,
        started: None,
    }
}

fn running_since(s: &str) -> ObservedState {
    ObservedState::Running { started_at: at(s) }
}

fn observed_pod(ip: &str, scheduled: &str, containers: Vec<ObservedContainer>) -> ObservedPod {
    ObservedPod {
        sandbox_ready: true,
        pod_ip: Some(ip.to_string()),
        host_ip: Some("10.160.18.181".to_string()),
        start_time: Some(at(scheduled)),
        scheduled_at: at(scheduled),
        containers,
    }
}

/// The seed's `two-containers-volume`: two busybox containers sharing a hostPath volume.
fn two_containers_volume() -> Pod {
    let containers = ["c1", "c2"].map(|name| {
        json!({
            "name": name,
            "image": "busybox",
            "imagePullPolicy": "Never",
            "stdin": true,
            "tty": true,
            "volumeMounts": [{"name": "shared-data", "mountPath": "/data"}],
        })
    });
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "two-containers-volume"},
        "spec": {
            "volumes": [{"name": "shared-data", "hostPath": {"path": "/data", "type": ""}}],
            "containers": containers,
        }
    });
    let observed = observed_pod(
        "172.172.1.36",
        "2020-06-15T14:53:43Z",
        vec![
            container("c1", false, "b5b2", running_since("2020-06-15T14:53:44Z")),
            container("c2", false, "5276", running_since("2020-06-15T14:53:45Z")),
        ],
    );
    pod(manifest, &observed)
}

/// The seed's `init-container-test`: an init container touches a file in an emptyDir the
/// app container then sees.
fn init_container_test() -> Pod {
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "init-container-test", "labels": {"app": "demo", "tier": "test"}},
        "spec": {
            "volumes": [{"name": "app-volume", "emptyDir": {}}],
            "initContainers": [{
                "image": "busybox",
                "imagePullPolicy": "Never",
                "name": "data-container",
                "stdin": true,
                "tty": true,
                "command": ["touch", "/data/test.txt"],
                "volumeMounts": [{"mountPath": "/data", "name": "app-volume"}],
            }],
            "containers": [{
                "image": "busybox",
                "imagePullPolicy": "Never",
                "name": "app-container",
                "stdin": true,
                "tty": true,
                "env": [{"name": "GREETING", "value": "hello"}],
                "volumeMounts": [{"mountPath": "/data", "name": "app-volume"}],
            }],
        }
    });
    let observed = observed_pod(
        "172.172.1.37",
        "2020-06-15T14:53:10Z",
        vec![
            container(
                "data-container",
                true,
                "bbc4",
                ObservedState::Terminated {
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".to_string(),
                    message: None,
                    started_at: Some(at("2020-06-15T14:53:11Z")),
                    finished_at: at("2020-06-15T14:53:11Z"),
                },
            ),
            container(
                "app-container",
                false,
                "ce67",
                running_since("2020-06-15T14:53:12Z"),
            ),
        ],
    );
    pod(manifest, &observed)
}

/// A pod whose only container keeps failing.
fn crash_looping() -> Pod {
    let manifest = json!({
        "metadata": {"name": "crasher", "namespace": "tools"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["false"]}]},
    });
    let mut main = container(
        "main",
        false,
        "77aa",
        ObservedState::Waiting {
            reason: "CrashLoopBackOff".to_string(),
            message: Some("back-off 40s restarting failed container=main".to_string()),
        },
    );
    main.restart_count = 3;
    main.last_state = Some(ObservedState::Terminated {
        exit_code: 1,
        signal: None,
        reason: "Error".to_string(),
        message: None,
        started_at: Some(at("2020-06-15T14:53:40Z")),
        finished_at: at("2020-06-15T14:53:40Z"),
    });
    pod(
        manifest,
        &observed_pod("172.172.1.38", "2020-06-15T14:51:00Z", vec![main]),
    )
}

/// A pod still running its first init container, created a day and a half ago.
fn initializing() -> Pod {
    let manifest = json!({
        "metadata": {"name": "waiting-for-db"},
        "spec": {
            "initContainers": [
                {"name": "wait", "image": "busybox", "command": ["sleep", "3600"]},
                {"name": "migrate", "image": "busybox"},
            ],
            "containers": [{"name": "app", "image": "busybox"}],
        },
    });
    let wait = container("wait", true, "9c1d", running_since("2020-06-14T02:53:48Z"));
    pod(
        manifest,
        &observed_pod("172.172.1.39", "2020-06-14T02:53:40Z", vec![wait]),
    )
}

fn pods() -> Vec<Pod> {
    vec![
        init_container_test(),
        two_containers_volume(),
        initializing(),
        crash_looping(),
    ]
}

/// A core/v1 Event about `two-containers-volume`, as the scheduler or the kubelet reports it.
fn event(reason: &str, first: &str, last: &str, count: i32, message: &str) -> Value {
    let source = if reason == "Scheduled" {
        "default-scheduler"
    } else {
        "kubelet"
    };
    json!({
        "metadata": {"name": format!("two-containers-volume.{reason}.{first}"), "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "two-containers-volume"},
        "type": "Normal",
        "reason": reason,
        "source": {"component": source},
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
        "message": message,
    })
}

#[test]
fn get_pods() {
    check_golden("get-pods", &pods_table(&pods(), false, false, now()));
}

#[test]
fn get_pods_wide() {
    check_golden("get-pods-wide", &pods_table(&pods(), true, false, now()));
}

#[test]
fn get_pods_all_namespaces() {
    check_golden(
        "get-pods-all-namespaces",
        &pods_table(&pods(), false, true, now()),
    );
}

#[test]
fn describe_two_containers_volume() {
    let t = "2020-06-15T14:53:43Z";
    let events: Vec<Event> = serde_json::from_value(json!([
        event(
            "Scheduled",
            t,
            t,
            1,
            "Successfully assigned default/two-containers-volume to node2"
        ),
        event(
            "Pulled",
            "2020-06-15T14:53:44Z",
            "2020-06-15T14:53:45Z",
            2,
            "Container image \"busybox\" already present on machine"
        ),
        event(
            "Created",
            "2020-06-15T14:53:44Z",
            "2020-06-15T14:53:44Z",
            1,
            "Created container: c1"
        ),
        event(
            "Started",
            "2020-06-15T14:53:44Z",
            "2020-06-15T14:53:44Z",
            1,
            "Started container c1"
        ),
        event(
            "Created",
            "2020-06-15T14:53:45Z",
            "2020-06-15T14:53:45Z",
            1,
            "Created container: c2"
        ),
        event(
            "Started",
            "2020-06-15T14:53:45Z",
            "2020-06-15T14:53:45Z",
            1,
            "Started container c2"
        ),
    ]))
    .unwrap();
    check_golden(
        "describe-two-containers-volume",
        &describe_pod(&two_containers_volume(), &events, now()),
    );
}

#[test]
fn describe_init_container_test() {
    check_golden(
        "describe-init-container-test",
        &describe_pod(&init_container_test(), &[], now()),
    );
}

#[test]
fn describe_crash_looping() {
    check_golden(
        "describe-crasher",
        &describe_pod(&crash_looping(), &[], now()),
    );
}
