//! End-to-end tests of the kubelet's lifecycle semantics in the pod monitor, as root:
//! restart back-off as configured, probes (exec, httpGet, tcpSocket; pass, fail, timeout),
//! readiness gating READY, liveness restarts, sidecar start and stop order, lifecycle hooks,
//! stop signals and termination messages. Workloads are busybox's sh, httpd and nc.

mod common;

use std::time::Duration;

use common::{eventually, get_line, manifest, pod_json, wait_pod, Peapod};
use serde_json::Value;

/// Seconds since boot, as written by the workloads from `/proc/uptime`.
fn stamps(text: &str, prefix: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .collect()
}

fn events(p: &Peapod, pod: &str) -> String {
    let describe = p.ok(&["describe", "pod", pod]);
    describe
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn container_status(p: &Peapod, pod: &str, i: usize) -> Value {
    pod_json(p, pod)["status"]["containerStatuses"][i].clone()
}

/// A crash-looping container is restarted at once, then after 1 s, 2 s, 2 s (the configured
/// back-off), shows `CrashLoopBackOff` with its restart count, and never restarts early.
#[test]
fn crash_loop_back_off_is_spaced_as_configured() {
    let p = Peapod::new();
    let config = p.root.join("etc/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[restart]\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\n");
    std::fs::write(&config, text).unwrap();
    let host = p.root.join("starts");
    std::fs::create_dir_all(&host).unwrap();
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: looper
spec:
  volumes:
  - name: log
    hostPath:
      path: {}
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "echo start $(cut -d' ' -f1 /proc/uptime) >> /log/starts; exit 1"]
    volumeMounts:
    - name: log
      mountPath: /log
"#,
        host.display()
    );
    p.ok(&["apply", "-f", &manifest(&p, "looper.yaml", &pod)]);
    let line = wait_pod(&p, "looper", "0/1", "CrashLoopBackOff");
    let restarts = line.split_whitespace().nth(3).unwrap();
    assert!(restarts.parse::<u32>().unwrap() >= 1, "{line}");
    let starts = eventually(Duration::from_secs(30), "six starts", || {
        let s = stamps(
            &std::fs::read_to_string(host.join("starts")).unwrap_or_default(),
            "start ",
        );
        (s.len() >= 6).then_some(s)
    });
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Immediate, then 1 s, then doubling up to the 2 s maximum: never earlier than that.
    let floor = [0.0, 1.0, 2.0, 2.0, 2.0];
    for (k, (&gap, &want)) in gaps.iter().zip(floor.iter()).enumerate() {
        assert!(
            gap >= want - 0.05 && gap < want + 3.0,
            "restart {k} came after {gap:.2}s, expected {want}s: gaps {gaps:?}"
        );
    }
    let status = container_status(&p, "looper", 0);
    assert!(status["restartCount"].as_i64().unwrap() >= 4, "{status}");
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
    assert!(events(&p, "looper").contains("Back-off restarting failed container"));
    // kubectl's RESTARTS column: `N (Xs ago)`.
    let line = get_line(&p, "looper");
    assert!(line.contains(" ago)"), "{line}");
    p.ok(&["delete", "pod", "looper", "--now"]);
}

/// Readiness gates READY: an exec probe flips it both ways; a tcpSocket probe against
/// busybox nc passes; a probe that times out counts as a failure and its process is killed.
#[test]
fn readiness_probes_gate_ready() {
    let p = Peapod::new();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: gated
spec:
  containers:
  - name: exec
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
      failureThreshold: 1
  - name: tcp
    image: busybox
    imagePullPolicy: Never
    command: ["nc", "-ll", "-p", "9000", "-e", "/bin/true"]
    readinessProbe:
      tcpSocket:
        port: 9000
      periodSeconds: 1
  - name: slow
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    readinessProbe:
      exec:
        command: ["sleep", "7"]
      timeoutSeconds: 1
      periodSeconds: 60
"#;
    p.ok(&["apply", "-f", &manifest(&p, "gated.yaml", pod)]);
    // exec: not ready (no file), tcp: ready, slow: times out.
    wait_pod(&p, "gated", "1/3", "Running");
    let ready = |i: usize| container_status(&p, "gated", i)["ready"].as_bool().unwrap();
    assert!(!ready(0) && ready(1) && !ready(2));
    p.ok(&["exec", "gated", "-c", "exec", "--", "touch", "/tmp/ready"]);
    wait_pod(&p, "gated", "2/3", "Running");
    let conditions = pod_json(&p, "gated")["status"]["conditions"].clone();
    let ready_cond = conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ContainersReady")
        .unwrap()
        .clone();
    assert_eq!(ready_cond["status"], "False", "{conditions}");
    assert!(
        ready_cond["message"].as_str().unwrap().contains("[slow]"),
        "{ready_cond}"
    );
    p.ok(&["exec", "gated", "-c", "exec", "--", "rm", "/tmp/ready"]);
    wait_pod(&p, "gated", "1/3", "Running");
    let ev = eventually(Duration::from_secs(10), "the timeout event", || {
        let ev = events(&p, "gated");
        ev.contains("timed out").then_some(ev)
    });
    assert!(ev.contains("Readiness probe failed"), "{ev}");
    // The timed-out probe's process tree was killed: no `sleep 7` left in the container.
    let ps = p.ok(&["exec", "gated", "-c", "slow", "--", "ps", "-o", "args"]);
    assert!(!ps.contains("sleep 7"), "{ps}");
    // Readiness never restarts.
    let restarts: Vec<i64> = (0..3)
        .map(|i| {
            container_status(&p, "gated", i)["restartCount"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(restarts, [0, 0, 0]);
    p.ok(&["delete", "pod", "gated", "--now"]);
}

/// A liveness httpGet probe against busybox httpd passes while the page is there and
/// restarts the container once it is gone (events Unhealthy and Killing); a startup probe
/// holds liveness back until it passes.
#[test]
fn liveness_probe_restarts_and_startup_probe_holds_it_back() {
    let p = Peapod::new();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  # httpd as pid 1 ignores SIGTERM: the liveness kill needs the SIGKILL after the grace.
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"]
    ports:
    - name: http
      containerPort: 8080
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 1
      failureThreshold: 2
"#;
    p.ok(&["apply", "-f", &manifest(&p, "live.yaml", pod)]);
    wait_pod(&p, "live", "1/1", "Running");
    let status = eventually(Duration::from_secs(10), "started", || {
        let s = container_status(&p, "live", 0);
        (s["started"] == true).then_some(s)
    });
    assert_eq!(status["restartCount"], 0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        container_status(&p, "live", 0)["restartCount"],
        0,
        "a passing liveness probe restarted the container"
    );
    p.ok(&["exec", "live", "--", "rm", "/www/healthz"]);
    let status = eventually(Duration::from_secs(20), "a liveness restart", || {
        let s = container_status(&p, "live", 0);
        (s["restartCount"].as_i64() >= Some(1)).then_some(s)
    });
    assert!(status["lastState"]["terminated"].is_object(), "{status}");
    let ev = events(&p, "live");
    assert!(
        ev.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{ev}"
    );
    assert!(
        ev.contains("Container web failed liveness probe, will be restarted"),
        "{ev}"
    );
    // The restarted container serves the page again and stays up.
    wait_pod(&p, "live", "1/1", "Running");
    p.ok(&["delete", "pod", "live", "--now"]);
}

/// Sidecars start in order before the next init container and the app, keep running, and
/// stop after the app on deletion; app containers stop first, sidecars in reverse order.
#[test]
fn sidecars_start_first_and_stop_last() {
    let p = Peapod::new();
    let host = p.root.join("order");
    std::fs::create_dir_all(&host).unwrap();
    let script = |name: &str| {
        format!(
            "trap 'echo stop-{name} $(cut -d\" \" -f1 /proc/uptime) >> /log/order; exit 0' TERM; echo start-{name} $(cut -d' ' -f1 /proc/uptime) >> /log/order; while true; do sleep 0.1; done"
        )
    };
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: sided
spec:
  terminationGracePeriodSeconds: 20
  volumes:
  - name: log
    hostPath:
      path: {host}
  initContainers:
  - name: side1
    image: busybox
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", {s1:?}]
    volumeMounts: [{{name: log, mountPath: /log}}]
    startupProbe:
      exec:
        command: ["grep", "start-side1", "/log/order"]
      periodSeconds: 1
  - name: side2
    image: busybox
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", {s2:?}]
    volumeMounts: [{{name: log, mountPath: /log}}]
  - name: once
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "echo start-once $(cut -d' ' -f1 /proc/uptime) >> /log/order"]
    volumeMounts: [{{name: log, mountPath: /log}}]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", {app:?}]
    volumeMounts: [{{name: log, mountPath: /log}}]
"#,
        host = host.display(),
        s1 = script("side1"),
        s2 = script("side2"),
        app = script("app"),
    );
    p.ok(&["apply", "-f", &manifest(&p, "sided.yaml", &pod)]);
    // READY counts the app and the sidecars, as kubectl does.
    wait_pod(&p, "sided", "3/3", "Running");
    p.ok(&["delete", "pod", "sided"]);
    let order = std::fs::read_to_string(host.join("order")).unwrap();
    let at = |what: &str| -> f64 {
        stamps(&order, &format!("{what} "))
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no {what} in:\n{order}"))
    };
    let sequence = [
        "start-side1",
        "start-side2",
        "start-once",
        "start-app",
        "stop-app",
        "stop-side2",
        "stop-side1",
    ];
    for w in sequence.windows(2) {
        assert!(
            at(w[0]) <= at(w[1]),
            "{} should come before {}:\n{order}",
            w[0],
            w[1]
        );
    }
}

/// postStart and preStop hooks (exec and sleep), a spec stop signal, and termination
/// messages from the file and from the logs (FallbackToLogsOnError).
#[test]
fn hooks_stop_signal_and_termination_messages() {
    let p = Peapod::new();
    let host = p.root.join("hooks");
    std::fs::create_dir_all(&host).unwrap();
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  restartPolicy: Never
  volumes:
  - name: log
    hostPath:
      path: {host}
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo got-usr1 >> /log/app; exit 0' USR1; trap 'echo got-term >> /log/app; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{{name: log, mountPath: /log}}]
    lifecycle:
      stopSignal: SIGUSR1
      postStart:
        exec:
          command: ["sh", "-c", "echo post-start > /log/post"]
      preStop:
        exec:
          command: ["sh", "-c", "echo pre-stop > /log/pre"]
  - name: message
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "echo bye from the file > /dev/termination-log; exit 3"]
  - name: fallback
    image: busybox
    imagePullPolicy: Never
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo line one; echo last words; exit 4"]
"#,
        host = host.display()
    );
    p.ok(&["apply", "-f", &manifest(&p, "hooked.yaml", &pod)]);
    let term = |i: usize| -> Option<Value> {
        let t = container_status(&p, "hooked", i)["state"]["terminated"].clone();
        t.is_object().then_some(t)
    };
    let message = eventually(Duration::from_secs(20), "message exited", || term(1));
    assert_eq!(message["exitCode"], 3);
    assert_eq!(message["message"], "bye from the file\n");
    let fallback = eventually(Duration::from_secs(20), "fallback exited", || term(2));
    assert_eq!(fallback["exitCode"], 4);
    assert_eq!(fallback["message"], "line one\nlast words");
    let post = eventually(Duration::from_secs(20), "the postStart hook", || {
        std::fs::read_to_string(host.join("post")).ok()
    });
    assert_eq!(post, "post-start\n");
    assert!(!host.join("pre").exists(), "preStop ran before any stop");
    p.ok(&["delete", "pod", "hooked"]);
    assert_eq!(
        std::fs::read_to_string(host.join("pre")).unwrap(),
        "pre-stop\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("app")).unwrap(),
        "got-usr1\n"
    );
}

/// A failing postStart hook kills the container (FailedPostStartHook) and it is restarted;
/// a preStop sleep delays the stop signal.
#[test]
fn failed_post_start_restarts_and_pre_stop_sleep_delays() {
    let p = Peapod::new();
    let host = p.root.join("sleepy");
    std::fs::create_dir_all(&host).unwrap();
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: sleepy
spec:
  # `sleep` as pid 1 ignores SIGTERM: the failed postStart's kill needs the SIGKILL.
  terminationGracePeriodSeconds: 4
  volumes:
  - name: log
    hostPath:
      path: {host}
  containers:
  - name: bad
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "1000"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "exit 7"]
  - name: slow
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo term $(cut -d\" \" -f1 /proc/uptime) >> /log/t; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{{name: log, mountPath: /log}}]
    lifecycle:
      preStop:
        sleep:
          seconds: 2
"#,
        host = host.display()
    );
    p.ok(&["apply", "-f", &manifest(&p, "sleepy.yaml", &pod)]);
    eventually(Duration::from_secs(30), "a postStart restart", || {
        (container_status(&p, "sleepy", 0)["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    let ev = events(&p, "sleepy");
    assert!(ev.contains("FailedPostStartHook"), "{ev}");
    let uptime = || -> f64 {
        std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let asked = uptime();
    p.ok(&["delete", "pod", "sleepy"]);
    let t = stamps(&std::fs::read_to_string(host.join("t")).unwrap(), "term ");
    assert_eq!(t.len(), 1);
    assert!(
        t[0] - asked >= 1.95,
        "SIGTERM came {:.2}s after the delete, before the 2 s preStop sleep",
        t[0] - asked
    );
}
