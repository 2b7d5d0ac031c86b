//! Patches on a pod's JSON: RFC 7386 JSON merge patch (`kubectl label`/`annotate`,
//! `patch --type=merge`) and the Pod subset of strategic merge patch (client-side `kubectl
//! apply`, `kubectl patch`): lists of containers, volumes, env, ports, volumeMounts,
//! hostAliases merged by their key, `$patch: delete|replace`, `$deleteFromPrimitiveList`;
//! `$setElementOrder` and `$retainKeys` are ignored; and RFC 6902 JSON patch (`kubectl
//! patch --type=json`).

use serde_json::{Map, Value};

use super::status::ApiError;

/// The patch kind a PATCH request's Content-Type names: `merge`, `strategic`, `apply`
/// (server-side apply) or `json`; 415 for anything else, as the API server answers.
pub fn kind_of(headers: &axum::http::HeaderMap) -> Result<&'static str, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match ct {
        "application/merge-patch+json" => Ok("merge"),
        "application/strategic-merge-patch+json" => Ok("strategic"),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok("apply"),
        "application/json-patch+json" => Ok("json"),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"),
        )),
    }
}

/// RFC 7386.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field of the Pod schema (None: replace the list).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "readinessGates"
        | "resourceClaims"
        | "schedulingGates" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        _ => None,
    }
}

/// A patch value with its directives removed, for insertion.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// Strategic merge patch for the Pod schema.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = clean(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) => {
                strategic(t.entry(k.clone()).or_insert(Value::Null), v);
            }
            Value::Array(items) => match (merge_key(k), t.get_mut(k)) {
                (Some(key), Some(Value::Array(list))) => merge_list(list, items, key),
                _ => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .map(clean)
                        .collect();
                    t.insert(k.clone(), Value::Array(items));
                }
            },
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| list.iter().position(|x| x.get(key) == Some(id)));
        match item.get("$patch").and_then(Value::as_str) {
            Some("delete") => {
                if let Some(i) = pos {
                    list.remove(i);
                }
            }
            Some("replace") => {
                list.clear();
                list.push(clean(item));
            }
            _ => match pos {
                Some(i) => strategic(&mut list[i], item),
                None => list.push(clean(item)),
            },
        }
    }
}

fn pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// The parent container of `path` and the last segment.
fn parent<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut parts = pointer(path)?;
    let last = parts.pop().ok_or("the root cannot be patched")?;
    let mut v = doc;
    for p in parts {
        v = match v {
            Value::Object(m) => m.get_mut(&p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok((v, last))
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = parent(doc, path)?;
    match parent {
        Value::Object(m) => m.remove(&last),
        Value::Array(a) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    }
    .ok_or_else(|| format!("path {path:?} does not exist"))
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = parent(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("invalid array index in {path:?}"))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

/// RFC 6902: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is a list of operations")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("an operation needs a path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or("the operation needs a value")
        };
        match op["op"].as_str().unwrap_or_default() {
            "add" => add_at(doc, path, value()?)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "replace" => {
                remove_at(doc, path)?;
                add_at(doc, path, value()?)?;
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("move and copy need from")?;
                let v = if op["op"] == "move" {
                    remove_at(doc, from)?
                } else {
                    doc.pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("path {from:?} does not exist"))?
                };
                add_at(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path:?} failed"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        merge(
            &mut t,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        );
        assert_eq!(t, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn strategic_containers_by_name() {
        let mut t = json!({"spec": {"containers": [
            {"name": "app", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "busybox"}]}});
        strategic(
            &mut t,
            &json!({"metadata": {"labels": {"tier": "front"}}, "spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"name": "app", "image": "nginx:1.28", "env": [{"name": "B", "value": "2"}]},
                               {"name": "sidecar", "$patch": "delete"}]}}),
        );
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"tier": "front"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1.28", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}})
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"x": [1, 2]}});
        json_patch(
            &mut d,
            &json!([
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
                {"op": "add", "path": "/spec/x/-", "value": 3},
                {"op": "remove", "path": "/spec/x/0"},
                {"op": "test", "path": "/spec/x/0", "value": 2},
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"metadata": {"labels": {"a/b": "2"}}, "spec": {"x": [2, 3]}})
        );
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
