//! Field and label selectors, evaluated on an object's JSON (`metadata.name=x`,
//! `involvedObject.uid=…`, `status.phase!=Failed`; `app=web,tier!=db,env in (a,b),!x`).

use serde_json::Value;

use super::status::ApiError;

/// The string value at a dotted path (missing: empty).
fn field(obj: &Value, path: &str) -> String {
    let mut v = obj;
    for part in path.split('.') {
        match v.get(part) {
            Some(x) => v = x,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether `obj` matches the field selector.
pub fn fields_match(obj: &Value, selector: Option<&str>) -> Result<bool, ApiError> {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return Ok(true);
    };
    for term in sel.split(',').filter(|t| !t.is_empty()) {
        let (path, neg, want) = if let Some((p, w)) = term.split_once("!=") {
            (p, true, w)
        } else if let Some((p, w)) = term.split_once("==") {
            (p, false, w)
        } else if let Some((p, w)) = term.split_once('=') {
            (p, false, w)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector: {term:?}"
            )));
        };
        if (field(obj, path.trim()) == want.trim()) == neg {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Splits on commas outside parentheses.
fn terms(sel: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&sel[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `obj`'s labels match the label selector.
pub fn labels_match(obj: &Value, selector: Option<&str>) -> Result<bool, ApiError> {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return Ok(true);
    };
    let labels = obj.pointer("/metadata/labels");
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    for term in terms(sel) {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|s| s.trim().to_string())
                .collect()
        };
        let ok = if let Some(k) = term.strip_prefix('!') {
            get(k.trim()).is_none()
        } else if let Some((k, v)) = term.split_once("!=") {
            get(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==") {
            get(k.trim()) == Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            get(k.trim()) == Some(v.trim())
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            get(k.trim()).is_none_or(|v| !set(rest).iter().any(|s| s == v))
        } else if let Some((k, rest)) = term.split_once(" in ") {
            get(k.trim()).is_some_and(|v| set(rest).iter().any(|s| s == v))
        } else if term
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./".contains(c))
        {
            get(term).is_some()
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: {term:?}"
            )));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "f"}}, "status": {"phase": "Running"}});
        assert!(fields_match(&o, Some("metadata.name=a")).unwrap());
        assert!(!fields_match(&o, Some("metadata.name=b")).unwrap());
        assert!(fields_match(&o, Some("status.phase!=Failed,status.phase!=Succeeded")).unwrap());
        assert!(labels_match(&o, Some("app=web")).unwrap());
        assert!(labels_match(&o, Some("app in (web, db),!x,tier")).unwrap());
        assert!(!labels_match(&o, Some("app notin (web)")).unwrap());
        assert!(!labels_match(&o, Some("app!=web")).unwrap());
    }
}
