//! Events (the pods' recorded events), this machine as the one Node, and namespaces
//! (`default` plus every namespace a pod uses).

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::api::Q;
use super::pods::{filter, sync};
use super::status::{ok, ApiError};
use super::table::{self, Include, Kind};
use super::{blocking, AppState};
use crate::pod::k8s_time;

type Res = Result<Response, ApiError>;

/// Go's name of this architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn list_response(
    kind: Kind,
    list_kind: &str,
    items: Vec<Value>,
    rv: u64,
    q: &Q,
    headers: &HeaderMap,
) -> Response {
    if table::wants_table(headers) {
        return ok(&table::table(
            kind,
            &items,
            Include::parse(q.get("includeObject")),
            rv,
        ));
    }
    ok(&json!({
        "kind": list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
}

/// Every recorded event of every pod, as API objects, that `keep` accepts. Blocking.
fn all_events(st: &AppState, keep: &dyn Fn(&Value) -> bool) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for view in st.engine.list_pods(None)? {
        for (i, e) in st.engine.pod_events(&view.uid)?.into_iter().enumerate() {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["kind"] = json!("Event");
            v["apiVersion"] = json!("v1");
            if v.pointer("/metadata/uid").is_none() {
                v["metadata"]["uid"] = json!(format!("{}-{i}", view.uid));
            }
            let count = v["count"].as_i64().unwrap_or(1);
            v["metadata"]["resourceVersion"] = json!(count.to_string());
            if let Some(t) = v.get("firstTimestamp").cloned() {
                v["metadata"]["creationTimestamp"] = t;
            }
            if keep(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

async fn events_impl(st: AppState, ns: Option<String>, q: Q, headers: HeaderMap) -> Res {
    let keep = filter(ns, &q)?;
    if q.flag("watch") {
        return Ok(watch_events(st, keep, &q, &headers));
    }
    let st2 = st.clone();
    let items = blocking(move || all_events(&st2, &keep)).await?;
    Ok(list_response(
        Kind::Events,
        "EventList",
        items,
        st.cache.rv(),
        &q,
        &headers,
    ))
}

/// A watch of events, by polling every 500 ms: new events ADDED, count changes MODIFIED.
/// Watching from a list's resourceVersion skips the events that exist now.
fn watch_events(
    st: AppState,
    keep: impl Fn(&Value) -> bool + Send + Sync + 'static,
    q: &Q,
    headers: &HeaderMap,
) -> Response {
    let as_table = table::wants_table(headers);
    let include = Include::parse(q.get("includeObject"));
    let from_list = q
        .get("resourceVersion")
        .is_some_and(|v| v != "0" && !v.is_empty());
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(16);
    let keep = std::sync::Arc::new(keep);
    tokio::spawn(async move {
        let mut seen: std::collections::HashMap<String, String> = Default::default();
        let mut first = true;
        loop {
            let (st2, keep2) = (st.clone(), keep.clone());
            let Ok(items) = blocking(move || all_events(&st2, &*keep2)).await else {
                return;
            };
            for e in items {
                let key = format!("{}", e["metadata"]["uid"]);
                let rv = e["metadata"]["resourceVersion"].to_string();
                let kind = match seen.insert(key, rv.clone()) {
                    None if first && from_list => continue,
                    None => "ADDED",
                    Some(old) if old != rv => "MODIFIED",
                    Some(_) => continue,
                };
                let obj = if as_table {
                    table::table(Kind::Events, std::slice::from_ref(&e), include, 1)
                } else {
                    e
                };
                let mut line =
                    serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
                line.push(b'\n');
                if tx.send(line.into()).await.is_err() {
                    return;
                }
            }
            first = false;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if tx.is_closed() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_default()
}

/// `GET /api/v1/events`.
pub async fn events_all(State(st): State<AppState>, q: Q, headers: HeaderMap) -> Res {
    events_impl(st, None, q, headers).await
}

/// `GET /api/v1/namespaces/NS/events`.
pub async fn events(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    events_impl(st, Some(ns), q, headers).await
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn boot_time() -> DateTime<Utc> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now)
}

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_default()
}

/// This machine as a Node.
pub fn node_object() -> Value {
    static STARTED: OnceLock<DateTime<Utc>> = OnceLock::new();
    let started = *STARTED.get_or_init(Utc::now);
    let name = hostname();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": "110",
        "ephemeral-storage": "0",
    });
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": format!("peapod-node-{}", machine_id.trim()),
            "resourceVersion": "1",
            "creationTimestamp": k8s_time(boot_time()),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": go_arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": go_arch(),
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "peapod is posting ready status",
                 "lastHeartbeatTime": k8s_time(Utc::now()), "lastTransitionTime": k8s_time(started)},
            ],
            "addresses": [
                {"type": "InternalIP", "address": crate::engine::host_ip().unwrap_or_else(|| "127.0.0.1".into())},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": machine_id.trim(),
                "systemUUID": "",
                "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
                "kernelVersion": kernel,
                "osImage": os_image(),
                "containerRuntimeVersion": "peapod://0.1.0",
                "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        },
    })
}

/// `GET /api/v1/nodes`.
pub async fn nodes(State(st): State<AppState>, q: Q, headers: HeaderMap) -> Res {
    let keep = filter(None, &q)?;
    let items: Vec<Value> = std::iter::once(node_object()).filter(|n| keep(n)).collect();
    if q.flag("watch") {
        return Ok(static_watch(Kind::Nodes, items, &q, &headers));
    }
    Ok(list_response(
        Kind::Nodes,
        "NodeList",
        items,
        st.cache.rv(),
        &q,
        &headers,
    ))
}

/// `GET /api/v1/nodes/NAME`.
pub async fn node_one(name: &str, q: &Q, headers: &HeaderMap) -> Res {
    let n = node_object();
    if n["metadata"]["name"] != name {
        return Err(ApiError::not_found("nodes", name));
    }
    if table::wants_table(headers) {
        return Ok(ok(&table::table(
            Kind::Nodes,
            &[n],
            Include::parse(q.get("includeObject")),
            1,
        )));
    }
    Ok(ok(&n))
}

/// `GET /api/v1/nodes/NAME`.
pub async fn node(Path(name): Path<String>, q: Q, headers: HeaderMap) -> Res {
    node_one(&name, &q, &headers).await
}

fn namespace_obj(name: &str) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": format!("peapod-namespace-{name}"),
            "resourceVersion": "1",
            "creationTimestamp": k8s_time(boot_time()),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

async fn namespace_names(st: &AppState) -> Result<Vec<String>, ApiError> {
    let (pods, _) = sync(st).await?;
    let mut names: Vec<String> = ["default", "kube-system"]
        .iter()
        .map(|s| s.to_string())
        .chain(pods.iter().filter_map(|p| {
            p.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string)
        }))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// `GET /api/v1/namespaces`.
pub async fn namespaces(State(st): State<AppState>, q: Q, headers: HeaderMap) -> Res {
    let keep = filter(None, &q)?;
    let items: Vec<Value> = namespace_names(&st)
        .await?
        .iter()
        .map(|n| namespace_obj(n))
        .filter(|n| keep(n))
        .collect();
    if q.flag("watch") {
        return Ok(static_watch(Kind::Namespaces, items, &q, &headers));
    }
    Ok(list_response(
        Kind::Namespaces,
        "NamespaceList",
        items,
        st.cache.rv(),
        &q,
        &headers,
    ))
}

/// `GET /api/v1/namespaces/NAME`.
pub async fn namespace(
    State(st): State<AppState>,
    Path(name): Path<String>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    if !namespace_names(&st).await?.contains(&name) {
        return Err(ApiError::not_found("namespaces", &name));
    }
    let n = namespace_obj(&name);
    if table::wants_table(&headers) {
        return Ok(ok(&table::table(
            Kind::Namespaces,
            &[n],
            Include::parse(q.get("includeObject")),
            1,
        )));
    }
    Ok(ok(&n))
}

/// `GET services`: peapod has none (an empty list, so `kubectl cluster-info` and
/// `kubectl get services` work).
pub async fn services(State(st): State<AppState>, q: Q, headers: HeaderMap) -> Res {
    if table::wants_table(&headers) {
        let mut t = table::table(Kind::Namespaces, &[], Include::None, st.cache.rv());
        t["columnDefinitions"] =
            json!([{"name": "Name", "type": "string", "format": "name", "priority": 0}]);
        return Ok(ok(&t));
    }
    let _ = q;
    Ok(ok(&json!({
        "kind": "ServiceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": st.cache.rv().to_string()},
        "items": [],
    })))
}

/// `/healthz`, `/livez`, `/readyz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// A watch of objects that do not change while the server runs: ADDED for each (unless
/// watching from a list's resourceVersion), then the stream stays open until the client
/// leaves or `timeoutSeconds` passes.
fn static_watch(kind: Kind, items: Vec<Value>, q: &Q, headers: &HeaderMap) -> Response {
    let as_table = table::wants_table(headers);
    let include = Include::parse(q.get("includeObject"));
    let from_list = q
        .get("resourceVersion")
        .is_some_and(|v| v != "0" && !v.is_empty());
    let timeout = q
        .num("timeoutSeconds")
        .map(|s| std::time::Duration::from_secs(s.max(1) as u64));
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(16);
    tokio::spawn(async move {
        if !from_list {
            for item in items {
                let obj = if as_table {
                    table::table(kind, std::slice::from_ref(&item), include, 1)
                } else {
                    item
                };
                let mut line = serde_json::to_vec(&json!({"type": "ADDED", "object": obj}))
                    .unwrap_or_default();
                line.push(b'\n');
                if tx.send(line.into()).await.is_err() {
                    return;
                }
            }
        }
        let start = tokio::time::Instant::now();
        while !tx.is_closed() && timeout.is_none_or(|t| start.elapsed() < t) {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_default()
}
