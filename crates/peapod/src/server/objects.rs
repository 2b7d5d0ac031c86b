//! core/v1 configmaps and secrets: list (and a polling watch), get, create, update (PUT),
//! patch (JSON merge, strategic merge, JSON patch, server-side apply as upsert) and delete,
//! over the same store, normalisation and validation as the CLI (`crate::objects`).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{json, Value};

use super::api::Q;
use super::pods::filter;
use super::status::{json_response, ok, ApiError};
use super::table::{wants_table, Include};
use super::{blocking, patch, AppState};
use crate::objects::{ObjectError, Put, StoredObject};

type Res = Result<Response, ApiError>;

/// What the API needs beyond the store: the list kind and the Table columns.
pub trait ServedObject: StoredObject {
    /// `ConfigMapList`.
    const LIST_KIND: &'static str;
    /// The Table's column names.
    const COLUMNS: &'static [&'static str];
    /// One Table row's cells.
    fn cells(&self, now: DateTime<Utc>) -> Vec<String>;
}

impl ServedObject for ConfigMap {
    const LIST_KIND: &'static str = "ConfigMapList";
    const COLUMNS: &'static [&'static str] = &["Name", "Data", "Age"];
    fn cells(&self, now: DateTime<Utc>) -> Vec<String> {
        peapod_api::objects::config_map_cells(self, now)
    }
}

impl ServedObject for Secret {
    const LIST_KIND: &'static str = "SecretList";
    const COLUMNS: &'static [&'static str] = &["Name", "Type", "Data", "Age"];
    fn cells(&self, now: DateTime<Utc>) -> Vec<String> {
        peapod_api::objects::secret_cells(self, now)
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        let message = e.to_string();
        match e {
            ObjectError::NotFound { resource, name } => ApiError::not_found(resource, &name),
            ObjectError::AlreadyExists { resource, name } => {
                ApiError::already_exists(resource, &name)
            }
            ObjectError::Conflict { resource, name } => ApiError {
                details: Some(json!({"name": name, "kind": resource})),
                ..ApiError::new(409, "Conflict", message)
            },
            ObjectError::Invalid(invalid) => ApiError::invalid(&invalid),
            ObjectError::Store(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

fn to_value<T: ServedObject>(object: &T) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or_default();
    v["kind"] = json!(T::KIND);
    v["apiVersion"] = json!("v1");
    v
}

fn table<T: ServedObject>(objects: &[Value], include: Include, rv: &str) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = serde_json::from_value::<T>(o.clone())
                .map(|t| t.cells(now))
                .unwrap_or_default();
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Object => row["object"] = o.clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    let columns: Vec<Value> = T::COLUMNS
        .iter()
        .map(|name| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": "string", "format": format, "description": name, "priority": 0})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn respond<T: ServedObject>(code: StatusCode, obj: &Value, headers: &HeaderMap, q: &Q) -> Response {
    if wants_table(headers) {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0");
        return json_response(
            code,
            &table::<T>(
                std::slice::from_ref(obj),
                Include::parse(q.get("includeObject")),
                rv,
            ),
        );
    }
    json_response(code, obj)
}

/// Every object of a kind (in `ns` or all) as JSON, with the store's revision. Blocking.
fn list_values<T: ServedObject>(
    st: &AppState,
    ns: Option<&str>,
) -> Result<(Vec<Value>, String), ApiError> {
    let items: Vec<T> = st.engine.list_objects(ns)?;
    Ok((
        items.iter().map(to_value).collect(),
        st.engine.object_revision(),
    ))
}

/// `GET /api/v1/{configmaps,secrets}`.
pub async fn list_all<T: ServedObject>(
    State(st): State<AppState>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    list_impl::<T>(st, None, q, headers).await
}

/// `GET /api/v1/namespaces/NS/{configmaps,secrets}`.
pub async fn list<T: ServedObject>(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    list_impl::<T>(st, Some(ns), q, headers).await
}

async fn list_impl<T: ServedObject>(
    st: AppState,
    ns: Option<String>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    let keep = filter(ns.clone(), &q)?;
    if q.flag("watch") {
        return Ok(watch::<T>(st, ns, keep, &q, &headers));
    }
    let st2 = st.clone();
    let (items, rv) = blocking(move || list_values::<T>(&st2, ns.as_deref())).await?;
    let items: Vec<Value> = items.into_iter().filter(|o| keep(o)).collect();
    if wants_table(&headers) {
        return Ok(ok(&table::<T>(
            &items,
            Include::parse(q.get("includeObject")),
            &rv,
        )));
    }
    Ok(ok(&json!({
        "kind": T::LIST_KIND,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
        "items": items,
    })))
}

/// A watch by polling the store every 500 ms: ADDED, MODIFIED (resourceVersion changed) and
/// DELETED events. Watching from a list's resourceVersion skips what exists now.
fn watch<T: ServedObject>(
    st: AppState,
    ns: Option<String>,
    keep: impl Fn(&Value) -> bool + Send + Sync + 'static,
    q: &Q,
    headers: &HeaderMap,
) -> Response {
    let as_table = wants_table(headers);
    let include = Include::parse(q.get("includeObject"));
    let from_list = q
        .get("resourceVersion")
        .is_some_and(|v| v != "0" && !v.is_empty());
    let timeout = q
        .num("timeoutSeconds")
        .map(|s| Duration::from_secs(s.max(1) as u64));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut seen: HashMap<String, Value> = HashMap::new();
        let mut first = true;
        loop {
            let (st2, ns2) = (st.clone(), ns.clone());
            let Ok((items, _)) = blocking(move || list_values::<T>(&st2, ns2.as_deref())).await
            else {
                return;
            };
            let mut now_seen = HashMap::new();
            let mut events = Vec::new();
            for o in items.into_iter().filter(|o| keep(o)) {
                let uid = o["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                let kind = match seen.get(&uid) {
                    None if first && from_list => None,
                    None => Some("ADDED"),
                    Some(old)
                        if old["metadata"]["resourceVersion"]
                            != o["metadata"]["resourceVersion"] =>
                    {
                        Some("MODIFIED")
                    }
                    Some(_) => None,
                };
                if let Some(kind) = kind {
                    events.push((kind, o.clone()));
                }
                now_seen.insert(uid, o);
            }
            for (uid, o) in &seen {
                if !now_seen.contains_key(uid) {
                    events.push(("DELETED", o.clone()));
                }
            }
            seen = now_seen;
            first = false;
            for (kind, o) in events {
                let object = if as_table {
                    let rv = o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("0")
                        .to_owned();
                    table::<T>(std::slice::from_ref(&o), include, &rv)
                } else {
                    o
                };
                let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
                    .unwrap_or_default();
                line.push(b'\n');
                if tx.send(line.into()).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() || timeout.is_some_and(|t| start.elapsed() >= t) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
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

/// `GET …/NAME`.
pub async fn get_one<T: ServedObject>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
) -> Res {
    let st2 = st.clone();
    let n = name.clone();
    let found: Option<T> = blocking(move || Ok(st2.engine.get_object(&ns, &n)?)).await?;
    let object = found.ok_or_else(|| ApiError::not_found(T::RESOURCE, &name))?;
    Ok(respond::<T>(
        StatusCode::OK,
        &to_value(&object),
        &headers,
        &q,
    ))
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_json::from_str(text)
        .or_else(|_| serde_saphyr::from_str::<Value>(text))
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}

/// Decodes a submitted object of kind `T` for namespace `ns` (strictly with
/// `fieldValidation=Strict`, otherwise unknown fields dropped, with warnings for `Warn`).
fn decode<T: ServedObject>(
    body: &Value,
    ns: &str,
    q: &Q,
    warnings: &mut Vec<String>,
) -> Result<T, ApiError> {
    let mut body = body.clone();
    let Some(o) = body.as_object_mut() else {
        return Err(ApiError::bad_request("the request body is not an object"));
    };
    o.entry("apiVersion").or_insert(json!("v1"));
    o.entry("kind").or_insert(json!(T::KIND));
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        if m.get("resourceVersion").is_some_and(|v| v == "") {
            m.remove("resourceVersion");
        }
    }
    if o.get("kind").and_then(Value::as_str) != Some(T::KIND) {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {}",
            T::KIND
        )));
    }
    let text = serde_json::to_string(&body).unwrap_or_default();
    let strict = q.get("fieldValidation") == Some("Strict");
    let object: T = match peapod_api::decode::decode_objects(&text) {
        Ok(objects) if objects.len() == 1 => serde_json::from_value(body.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "expected one object in the request body",
            ))
        }
        Err(peapod_api::decode::DecodeError::UnknownFields { fields, .. }) if !strict => {
            if q.get("fieldValidation") != Some("Ignore") {
                warnings.extend(fields.iter().map(|f| format!("unknown field {f:?}")));
            }
            serde_json::from_value(body).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        Err(e) => {
            let m = e.to_string();
            let m = m
                .split_once(": ")
                .map_or(m.clone(), |(_, rest)| rest.to_owned());
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: {m}",
                kind = T::KIND
            )));
        }
    };
    let mut object = object;
    let meta = object.meta_mut();
    match meta.namespace.as_deref() {
        Some(n) if n != ns && !n.is_empty() => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => meta.namespace = Some(ns.to_owned()),
    }
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        if let Some(prefix) = meta.generate_name.clone() {
            meta.name = Some(format!("{prefix}{}", &peapod_store::new_id()[..5]));
        }
    }
    Ok(object)
}

fn dry_run(q: &Q) -> bool {
    q.get("dryRun") == Some("All")
}

/// Validates without storing (dry run): the object as it would be stored.
fn dry<T: ServedObject>(st: &AppState, mut object: T, how: &Put) -> Result<Value, ApiError> {
    object.normalize();
    let meta = object.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let existing: Option<T> = st.engine.get_object(&ns, &name)?;
    match (&existing, how) {
        (Some(_), Put::Create) => {
            return Err(ObjectError::AlreadyExists {
                resource: T::RESOURCE,
                name,
            }
            .into())
        }
        (None, Put::Replace(_)) => {
            return Err(ObjectError::NotFound {
                resource: T::RESOURCE,
                name,
            }
            .into())
        }
        (Some(old), _) => object
            .validate_update(old)
            .map_err(|i| ApiError::invalid(&i))?,
        (None, _) => object.validate().map_err(|i| ApiError::invalid(&i))?,
    }
    Ok(to_value(&object))
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

/// `POST …/NS/{configmaps,secrets}`.
pub async fn create<T: ServedObject>(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let value = parse_body(&body)?;
    let mut warnings = Vec::new();
    let object: T = decode(&value, &ns, &q, &mut warnings)?;
    let is_dry = dry_run(&q);
    let st2 = st.clone();
    let stored = blocking(move || {
        if is_dry {
            return dry(&st2, object, &Put::Create);
        }
        let (_, stored) = st2.engine.put_object(object, Put::Create)?;
        Ok(to_value(&stored))
    })
    .await?;
    Ok(with_warnings(
        respond::<T>(StatusCode::CREATED, &stored, &headers, &q),
        &warnings,
    ))
}

/// `PUT …/NAME`: a whole object; its resourceVersion, when given, must be the current one.
pub async fn replace<T: ServedObject>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let value = parse_body(&body)?;
    let mut warnings = Vec::new();
    let object: T = decode(&value, &ns, &q, &mut warnings)?;
    if object.meta().name.as_deref() != Some(name.as_str()) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let rv = object.meta().resource_version.clone();
    let is_dry = dry_run(&q);
    let st2 = st.clone();
    let stored = blocking(move || {
        if is_dry {
            return dry(&st2, object, &Put::Replace(rv));
        }
        let (_, stored) = st2.engine.put_object(object, Put::Replace(rv))?;
        Ok(to_value(&stored))
    })
    .await?;
    Ok(with_warnings(
        respond::<T>(StatusCode::OK, &stored, &headers, &q),
        &warnings,
    ))
}

/// `PATCH …/NAME`.
pub async fn patch<T: ServedObject>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let kind = super::patch::kind_of(&headers)?;
    let p = parse_body(&body)?;
    let is_dry = dry_run(&q);
    let st2 = st.clone();
    let q2 = q.clone();
    let (code, obj, warnings) = blocking(move || {
        let q = q2;
        let mut warnings = Vec::new();
        let current: Option<T> = st2.engine.get_object(&ns, &name)?;
        let Some(current) = current else {
            if kind != "apply" {
                return Err(ApiError::not_found(T::RESOURCE, &name));
            }
            let object: T = decode(&p, &ns, &q, &mut warnings)?;
            let stored = if is_dry {
                dry(&st2, object, &Put::Create)?
            } else {
                to_value(&st2.engine.put_object(object, Put::Create)?.1)
            };
            return Ok((StatusCode::CREATED, stored, warnings));
        };
        let mut merged = to_value(&current);
        match kind {
            "json" => patch::json_patch(&mut merged, &p).map_err(ApiError::bad_request)?,
            "strategic" => patch::strategic(&mut merged, &p),
            _ => patch::merge(&mut merged, &p),
        }
        let object: T = decode(&merged, &ns, &q, &mut warnings)?;
        if object.meta().name.as_deref() != Some(name.as_str()) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let stored = if is_dry {
            dry(&st2, object, &Put::Apply)?
        } else {
            to_value(&st2.engine.put_object(object, Put::Apply)?.1)
        };
        Ok((StatusCode::OK, stored, warnings))
    })
    .await?;
    Ok(with_warnings(
        respond::<T>(code, &obj, &headers, &q),
        &warnings,
    ))
}

/// `DELETE …/NAME`: the API server's success Status.
pub async fn delete<T: ServedObject>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
) -> Res {
    let st2 = st.clone();
    let n = name.clone();
    let is_dry = dry_run(&q);
    let deleted: T = blocking(move || {
        if is_dry {
            let found: Option<T> = st2.engine.get_object(&ns, &n)?;
            return found.ok_or_else(|| ApiError::not_found(T::RESOURCE, &n));
        }
        Ok(st2.engine.delete_object::<T>(&ns, &n)?)
    })
    .await?;
    Ok(ok(&json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": name,
            "kind": T::RESOURCE,
            "uid": deleted.meta().uid,
        },
    })))
}
