//! core/v1 pods: list (and watch), get, create, delete, patch (JSON merge, strategic
//! merge, server-side apply as upsert) and update, through the engine's own decoding,
//! defaulting and validation, so the CLI and the server agree on what a valid pod is.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::api::Q;
use super::status::{json_response, ok, ApiError};
use super::table::{self, Include, Kind};
use super::{blocking, patch, select, watch, AppState};
use crate::pod::k8s_time;

type Res = Result<Response, ApiError>;

/// `GET /api/v1/pods`.
pub async fn list_all(State(st): State<AppState>, q: Q, headers: HeaderMap) -> Res {
    list_impl(st, None, q, headers).await
}

/// `GET /api/v1/namespaces/NS/pods`.
pub async fn list(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    list_impl(st, Some(ns), q, headers).await
}

/// Syncs the cache with the engine and returns every pod and the resourceVersion.
pub async fn sync(st: &AppState) -> Result<(Vec<Value>, u64), ApiError> {
    let st = st.clone();
    blocking(move || Ok(st.cache.sync(&st.engine)?)).await
}

fn rv_of(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// A list or watch of objects of `kind`, filtered by namespace and selectors.
pub fn filter(
    ns: Option<String>,
    q: &Q,
) -> Result<impl Fn(&Value) -> bool + Send + Sync + Clone + 'static, ApiError> {
    let fs = q.get("fieldSelector").map(str::to_string);
    let ls = q.get("labelSelector").map(str::to_string);
    select::fields_match(&json!({}), fs.as_deref())?;
    select::labels_match(&json!({}), ls.as_deref())?;
    Ok(move |o: &Value| {
        ns.as_deref()
            .is_none_or(|n| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n))
            && select::fields_match(o, fs.as_deref()).unwrap_or(false)
            && select::labels_match(o, ls.as_deref()).unwrap_or(false)
    })
}

async fn list_impl(st: AppState, ns: Option<String>, q: Q, headers: HeaderMap) -> Res {
    let as_table = table::wants_table(&headers);
    let include = Include::parse(q.get("includeObject"));
    let keep = filter(ns, &q)?;
    if q.flag("watch") {
        sync(&st).await?;
        let from = q.get("resourceVersion").and_then(|v| v.parse().ok());
        let timeout = q
            .num("timeoutSeconds")
            .map(|s| Duration::from_secs(s.max(1) as u64));
        let render: watch::Render = Arc::new(move |o: &Value| {
            if !keep(o) {
                return None;
            }
            Some(if as_table {
                table::table(Kind::Pods, std::slice::from_ref(o), include, rv_of(o))
            } else {
                o.clone()
            })
        });
        let bookmarks = q.flag("allowWatchBookmarks");
        return watch::stream(&st, from, timeout, bookmarks, render);
    }
    let (pods, rv) = sync(&st).await?;
    let items: Vec<Value> = pods.into_iter().filter(|p| keep(p)).collect();
    if as_table {
        return Ok(ok(&table::table(Kind::Pods, &items, include, rv)));
    }
    Ok(ok(&json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })))
}

fn find(pods: &[Value], ns: &str, name: &str) -> Option<Value> {
    pods.iter()
        .find(|p| {
            p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                && p.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .cloned()
}

fn respond(code: StatusCode, obj: &Value, headers: &HeaderMap, q: &Q) -> Response {
    if table::wants_table(headers) {
        let include = Include::parse(q.get("includeObject"));
        return json_response(
            code,
            &table::table(Kind::Pods, std::slice::from_ref(obj), include, rv_of(obj)),
        );
    }
    json_response(code, obj)
}

/// `respond` plus `Warning: 299 - "…"` headers.
fn respond_warning(
    code: StatusCode,
    obj: &Value,
    headers: &HeaderMap,
    q: &Q,
    warnings: &[String],
) -> Response {
    let mut r = respond(code, obj, headers, q);
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

/// `GET pods/NAME`.
pub async fn get_one(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    let (pods, _) = sync(&st).await?;
    let pod = find(&pods, &ns, &name).ok_or_else(|| ApiError::not_found("pods", &name))?;
    Ok(respond(StatusCode::OK, &pod, &headers, &q))
}

/// Decodes exactly one pod, strictly, with the API server's wording for bad input.
fn decode_one(text: &str) -> Result<Pod, ApiError> {
    use peapod_api::decode::DecodeError;
    let pods = peapod_api::decode::decode_pods(text).map_err(|e| {
        let msg = match &e {
            DecodeError::UnknownFields { .. } | DecodeError::InvalidType { .. } => {
                let m = e.to_string();
                let m = m
                    .split_once(": ")
                    .map_or(m.clone(), |(_, rest)| rest.to_string());
                format!("Pod in version \"v1\" cannot be handled as a Pod: {m}")
            }
            _ => e.to_string(),
        };
        ApiError::bad_request(msg)
    })?;
    match <[Pod; 1]>::try_from(pods) {
        Ok([pod]) => Ok(pod),
        Err(v) => Err(ApiError::bad_request(format!(
            "expected one Pod in the request body, found {}",
            v.len()
        ))),
    }
}

fn dry_run(q: &Q) -> bool {
    q.get("dryRun") == Some("All")
}

/// `fieldValidation`: Strict refuses unknown fields, Warn drops them with a warning,
/// Ignore drops them silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// 400 on unknown fields.
    Strict,
    /// Drop, and answer with `Warning` headers.
    Warn,
    /// Drop.
    Ignore,
}

impl Validation {
    fn of(q: &Q) -> Self {
        match q.get("fieldValidation") {
            Some("Strict") => Self::Strict,
            Some("Ignore") => Self::Ignore,
            _ => Self::Warn,
        }
    }
}

/// Removes the field at `spec.containers[0].imagee` from `v`.
fn remove_field(v: &mut Value, path: &str) {
    let mut segments: Vec<String> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            segments.push(rest[..i].to_string());
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                segments.push(rest[1..end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            segments.push(rest.to_string());
        }
    }
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Decodes, places in `ns`, defaults and validates a submitted pod; unknown fields per
/// `mode` (their warnings pushed to `warnings`).
fn prepare(
    body: &Value,
    ns: &str,
    mode: Validation,
    warnings: &mut Vec<String>,
) -> Result<Pod, ApiError> {
    let mut body = body.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
        m.remove("generation");
    }
    if mode != Validation::Strict {
        let text = serde_json::to_string(&body).unwrap_or_default();
        if let Err(peapod_api::decode::DecodeError::UnknownFields { fields, .. }) =
            peapod_api::decode::decode_pods(&text)
        {
            for f in fields {
                remove_field(&mut body, &f);
                if mode == Validation::Warn {
                    warnings.push(format!("unknown field {f:?}"));
                }
            }
        }
    }
    let mut pod = decode_one(&serde_json::to_string(&body).unwrap_or_default())?;
    match pod.metadata.namespace.as_deref() {
        Some(n) if n != ns && !n.is_empty() => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => pod.metadata.namespace = Some(ns.to_string()),
    }
    if pod.metadata.name.as_deref().unwrap_or_default().is_empty() {
        if let Some(prefix) = pod.metadata.generate_name.clone() {
            let id = peapod_store::new_id();
            pod.metadata.name = Some(format!("{prefix}{}", &id[..5]));
        }
    }
    peapod_api::defaults::apply_defaults(&mut pod);
    peapod_api::validate::validate_pod(&pod).map_err(|i| ApiError::invalid(&i))?;
    Ok(pod)
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_json::from_str(text)
        .or_else(|_| serde_saphyr::from_str::<Value>(text))
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}

/// Creates `pod` (already prepared); returns the stored pod.
fn create_blocking(st: &AppState, pod: Pod, ns: &str) -> Result<Value, ApiError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if st.engine.find_pod(ns, &name).is_ok() {
        return Err(ApiError::already_exists("pods", &name));
    }
    st.engine.apply_pod(pod, true)?;
    let (pods, _) = st.cache.sync(&st.engine)?;
    find(&pods, ns, &name).ok_or_else(|| ApiError::not_found("pods", &name))
}

/// `POST pods`.
pub async fn create(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let value = parse_body(&body)?;
    let mut warnings = Vec::new();
    let pod = prepare(&value, &ns, Validation::of(&q), &mut warnings)?;
    if dry_run(&q) {
        return Ok(respond_warning(
            StatusCode::CREATED,
            &serde_json::to_value(&pod).unwrap_or_default(),
            &headers,
            &q,
            &warnings,
        ));
    }
    let st2 = st.clone();
    let created = blocking(move || create_blocking(&st2, pod, &ns)).await?;
    Ok(respond_warning(
        StatusCode::CREATED,
        &created,
        &headers,
        &q,
        &warnings,
    ))
}

/// Replaces the stored pod with `merged` (a whole object): validation as an update.
fn update_blocking(
    st: &AppState,
    merged: &Value,
    ns: &str,
    name: &str,
    dry: bool,
    mode: Validation,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let pod = prepare(merged, ns, mode, warnings)?;
    if pod.metadata.name.as_deref() != Some(name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let view = st.engine.find_pod(ns, name)?;
    let mut old = view.pod.clone();
    old.status = None;
    let mut pod = pod;
    // Fields the server set are not the user's to change (as the CLI's apply).
    if let (Some(new_spec), Some(old_spec)) = (pod.spec.as_mut(), old.spec.as_ref()) {
        if new_spec.node_name.is_none() {
            new_spec.node_name = old_spec.node_name.clone();
        }
    }
    peapod_api::validate::validate_update(&old, &pod).map_err(|i| ApiError::invalid(&i))?;
    if dry {
        let mut pod = pod;
        pod.metadata.uid = old.metadata.uid.clone();
        pod.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
        pod.metadata.deletion_timestamp = old.metadata.deletion_timestamp.clone();
        let mut v = serde_json::to_value(&pod).unwrap_or_default();
        v["status"] = serde_json::to_value(&view.pod.status).unwrap_or_default();
        return Ok(v);
    }
    st.engine.apply_pod(pod, false)?;
    let (pods, _) = st.cache.sync(&st.engine)?;
    find(&pods, ns, name).ok_or_else(|| ApiError::not_found("pods", name))
}

/// `PATCH pods/NAME`.
pub async fn patch(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let kind = super::patch::kind_of(&headers)?;
    let p = parse_body(&body)?;
    let dry = dry_run(&q);
    let mode = Validation::of(&q);
    let st2 = st.clone();
    let (code, obj, warnings) = blocking(move || {
        let mut warnings = Vec::new();
        let (pods, _) = st2.cache.sync(&st2.engine)?;
        let Some(current) = find(&pods, &ns, &name) else {
            if kind != "apply" {
                return Err(ApiError::not_found("pods", &name));
            }
            let pod = prepare(&p, &ns, mode, &mut warnings)?;
            if pod.metadata.name.as_deref() != Some(name.as_str()) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            let obj = if dry {
                serde_json::to_value(&pod).unwrap_or_default()
            } else {
                create_blocking(&st2, pod, &ns)?
            };
            return Ok((StatusCode::CREATED, obj, warnings));
        };
        let mut merged = current.clone();
        if let Some(o) = merged.as_object_mut() {
            o.remove("status");
        }
        match kind {
            "merge" => patch::merge(&mut merged, &p),
            "json" => patch::json_patch(&mut merged, &p).map_err(ApiError::bad_request)?,
            _ => patch::strategic(&mut merged, &p),
        }
        let obj = update_blocking(&st2, &merged, &ns, &name, dry, mode, &mut warnings)?;
        Ok((StatusCode::OK, obj, warnings))
    })
    .await?;
    Ok(respond_warning(code, &obj, &headers, &q, &warnings))
}

/// `PUT pods/NAME`.
pub async fn replace(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let value = parse_body(&body)?;
    let dry = dry_run(&q);
    let st2 = st.clone();
    let mode = Validation::of(&q);
    let (obj, warnings) = blocking(move || {
        let mut warnings = Vec::new();
        let obj = update_blocking(&st2, &value, &ns, &name, dry, mode, &mut warnings)?;
        Ok((obj, warnings))
    })
    .await?;
    Ok(respond_warning(
        StatusCode::OK,
        &obj,
        &headers,
        &q,
        &warnings,
    ))
}

/// Pods being deleted in the background (by uid).
fn deleting() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static SET: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    SET.get_or_init(Default::default)
}

/// `DELETE pods/NAME`: graceful. The engine stops and removes the pod in the background;
/// if that is done within a second the answer is the pod's last state (a GET afterwards is
/// 404), otherwise the pod marked with deletionTimestamp, and watchers see it go (DELETED).
pub async fn delete(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(&body)?
    };
    let grace = q
        .num("gracePeriodSeconds")
        .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
    let dry = dry_run(&q)
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    let st2 = st.clone();
    let (mut pod, view) = blocking(move || {
        let (pods, _) = st2.cache.sync(&st2.engine)?;
        let pod = find(&pods, &ns, &name).ok_or_else(|| ApiError::not_found("pods", &name))?;
        let view = st2.engine.find_pod(&ns, &name)?;
        Ok((pod, view))
    })
    .await?;
    let spec_grace = pod
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    let g = grace.unwrap_or(spec_grace).max(0);
    if pod.pointer("/metadata/deletionTimestamp").is_none() {
        pod["metadata"]["deletionTimestamp"] =
            serde_json::to_value(k8s_time(Utc::now() + chrono::Duration::seconds(g)))
                .unwrap_or_default();
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(g);
    }
    if dry {
        return Ok(respond(StatusCode::OK, &pod, &headers, &q));
    }
    let uid = view.uid.clone();
    let fresh = deleting()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid.clone());
    if fresh {
        let st2 = st.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = st2.engine.delete_pod(&view, grace);
            deleting()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&uid);
            let _ = st2.cache.sync(&st2.engine);
            if let Err(e) = &result {
                eprintln!("deleting pod {}/{}: {e:#}", view.namespace(), view.name());
            }
            result
        });
        match tokio::time::timeout(std::time::Duration::from_secs(1), task).await {
            Ok(Ok(Err(e))) => return Err(ApiError::from_engine(&e)),
            Ok(_) => return Ok(respond(StatusCode::OK, &pod, &headers, &q)),
            Err(_) => {}
        }
    }
    // Still stopping: the pod as it is now, Terminating.
    let (pods, _) = sync(&st).await?;
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(respond(
        StatusCode::OK,
        &find(&pods, &ns, &name).unwrap_or(pod),
        &headers,
        &q,
    ))
}
