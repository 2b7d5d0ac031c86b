//! Patches on a pod's JSON: RFC 7386 JSON merge patch (`kubectl label`/`annotate`,
//! `patch --type=merge`) and the Pod subset of strategic merge patch (client-side `kubectl
//! apply`, `kubectl patch`): lists of containers, volumes, env, ports, volumeMounts,
//! hostAliases merged by their key, `$patch: delete|replace`, `$deleteFromPrimitiveList`;
//! `$setElementOrder` and `$retainKeys` are ignored.

use serde_json::{Map, Value};

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
}
