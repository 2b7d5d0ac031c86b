//! Server-side `meta.k8s.io/v1` Tables, which kubectl prints for `get`: the columns and
//! cells of pods (kubectl's `printPod`, from `peapod_api::print`), nodes, events and
//! namespaces.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// Whether the request asked for a Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// The row object kubectl gets: metadata only (default), the whole object, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// `includeObject=None`.
    None,
    /// Default: PartialObjectMetadata.
    Metadata,
    /// `includeObject=Object`.
    Object,
}

impl Include {
    /// From the query value.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Which kind of object a table lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pods.
    Pods,
    /// Nodes.
    Nodes,
    /// Events.
    Events,
    /// Namespaces.
    Namespaces,
}

fn columns(kind: Kind) -> Vec<Value> {
    let cols: &[(&str, i32, &str)] = match kind {
        Kind::Pods => &[
            ("Name", 0, "name"),
            ("Ready", 0, ""),
            ("Status", 0, ""),
            ("Restarts", 0, ""),
            ("Age", 0, ""),
            ("IP", 1, ""),
            ("Node", 1, ""),
            ("Nominated Node", 1, ""),
            ("Readiness Gates", 1, ""),
        ],
        Kind::Nodes => &[
            ("Name", 0, "name"),
            ("Status", 0, ""),
            ("Roles", 0, ""),
            ("Age", 0, ""),
            ("Version", 0, ""),
            ("Internal-IP", 1, ""),
            ("External-IP", 1, ""),
            ("OS-Image", 1, ""),
            ("Kernel-Version", 1, ""),
            ("Container-Runtime", 1, ""),
        ],
        Kind::Events => &[
            ("Last Seen", 0, ""),
            ("Type", 0, ""),
            ("Reason", 0, ""),
            ("Object", 0, ""),
            ("Message", 0, ""),
        ],
        Kind::Namespaces => &[("Name", 0, "name"), ("Status", 0, ""), ("Age", 0, "")],
    };
    cols.iter()
        .map(|(name, priority, format)| {
            json!({"name": name, "type": "string", "format": format, "description": name, "priority": priority})
        })
        .collect()
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || "<unknown>".into(),
            |t| peapod_api::print::human_age(now - t.with_timezone(&Utc)),
        )
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// The cells of one object.
pub fn cells(kind: Kind, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let strs: Vec<String> = match kind {
        Kind::Pods => match serde_json::from_value::<Pod>(obj.clone()) {
            Ok(pod) => peapod_api::print::table_cells(&pod, now),
            Err(_) => vec![s(obj, "/metadata/name").to_string()],
        },
        Kind::Nodes => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            let roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                obj.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|a| a["type"] == t))
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            vec![
                s(obj, "/metadata/name").to_string(),
                if ready { "Ready" } else { "NotReady" }.to_string(),
                if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                },
                age(obj, now),
                s(obj, "/status/nodeInfo/kubeletVersion").to_string(),
                addr("InternalIP"),
                addr("ExternalIP"),
                s(obj, "/status/nodeInfo/osImage").to_string(),
                s(obj, "/status/nodeInfo/kernelVersion").to_string(),
                s(obj, "/status/nodeInfo/containerRuntimeVersion").to_string(),
            ]
        }
        Kind::Events => {
            let last = ["/lastTimestamp", "/eventTime", "/firstTimestamp"]
                .iter()
                .find_map(|p| obj.pointer(p).and_then(Value::as_str))
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(
                    || "<unknown>".into(),
                    |t| peapod_api::print::human_age(now - t.with_timezone(&Utc)),
                );
            vec![
                last,
                s(obj, "/type").to_string(),
                s(obj, "/reason").to_string(),
                format!(
                    "{}/{}",
                    s(obj, "/involvedObject/kind").to_lowercase(),
                    s(obj, "/involvedObject/name")
                ),
                s(obj, "/message").to_string(),
            ]
        }
        Kind::Namespaces => vec![
            s(obj, "/metadata/name").to_string(),
            "Active".into(),
            age(obj, now),
        ],
    };
    strs.into_iter().map(Value::String).collect()
}

fn row_object(obj: &Value, include: Include) -> Option<Value> {
    match include {
        Include::None => None,
        Include::Object => Some(obj.clone()),
        Include::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        })),
    }
}

/// A Table of `objs`.
pub fn table(kind: Kind, objs: &[Value], include: Include, rv: u64) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(kind, o, now)});
            if let Some(obj) = row_object(o, include) {
                row["object"] = obj;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns(kind),
        "rows": rows,
    })
}
