//! Decoding manifests into `k8s-openapi` objects, as strictly as the API server decodes with
//! `fieldValidation=Strict`: every document must be a `v1` `Pod`, `ConfigMap` or `Secret`
//! (or a `v1` `List`/`PodList` of them), and a field the schema does not know is an error
//! naming its path. [`decode_objects`] returns every kind; [`decode_pods`] only Pods.
//!
//! It owns only the text-to-object step: no defaulting ([`crate::defaults`]), no validation of
//! values ([`crate::validate`]) and no I/O (callers read files and hand over the text).
//!
//! How strictness is checked: each document is decoded to a `serde_json::Value`, then to a
//! `Pod`; the `Pod` is serialised again and every key present in the input but absent from
//! the re-serialised value is an unknown field. `k8s-openapi` serialises every field it
//! decoded (empty lists and maps included), so the only keys that legitimately disappear are
//! those whose value was `null`; for those, the field is probed by decoding the document
//! again with `{}` in its place (a known field then fails to decode or reappears, an unknown
//! one is silently ignored again).

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// One decoded object of a manifest, of a kind peapod serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A `v1` Pod.
    Pod(Box<Pod>),
    /// A `v1` ConfigMap.
    ConfigMap(ConfigMap),
    /// A `v1` Secret.
    Secret(Secret),
}

impl Object {
    /// The kind, as in `kind:` (`Pod`, `ConfigMap`, `Secret`).
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Pod(p) => &p.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::Secret(s) => &s.metadata,
        }
    }
}

/// Where a failing object sits in the input: its document, counted from 1 among the non-empty
/// documents (a multi-document YAML stream or concatenated JSON objects), and, inside a
/// `List`/`PodList`, its index in `items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentRef {
    /// 1-based number of the document among the non-empty documents of the input.
    pub number: usize,
    /// 0-based index in the document's `items` when the document is a list.
    pub item: Option<usize>,
}

impl fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.number)?;
        if let Some(item) = self.item {
            write!(f, " (items[{item}])")?;
        }
        Ok(())
    }
}

/// Why manifest text could not be turned into Pods. Every variant names the document it
/// comes from; the messages follow the API server's and kubectl's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not well-formed YAML or JSON (the message carries the line and column,
    /// counted in the whole input).
    #[error("error decoding {document}: {message}")]
    Syntax {
        /// The document that failed to parse.
        document: DocumentRef,
        /// The parser's message, prefixed with `yaml:` or `json:`.
        message: String,
    },
    /// A document is a scalar or a sequence, not an object.
    #[error(
        "error decoding {document}: expected an object with `apiVersion` and `kind`, found {found}"
    )]
    NotAnObject {
        /// The offending document.
        document: DocumentRef,
        /// What was found instead: "a list", "a string", ...
        found: &'static str,
    },
    /// The object has no (or an empty) `kind`.
    #[error("error decoding {document}: Object 'Kind' is missing in '{object}'")]
    MissingKind {
        /// The offending document.
        document: DocumentRef,
        /// The first 60 characters of the object, as compact JSON.
        object: String,
    },
    /// The object has no (or an empty) `apiVersion`.
    #[error("error decoding {document}: Object 'apiVersion' is missing in '{object}'")]
    MissingApiVersion {
        /// The offending document.
        document: DocumentRef,
        /// The first 60 characters of the object, as compact JSON.
        object: String,
    },
    /// The kind/version pair is not served by peapod, nor a core `v1` kind it plans to serve.
    #[error("error decoding {document}: no matches for kind {kind:?} in version {api_version:?}")]
    NoMatch {
        /// The offending document.
        document: DocumentRef,
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// A core `v1` kind that Kubernetes has but peapod does not support yet (Service,
    /// PersistentVolumeClaim, ...): only Pods, ConfigMaps and Secrets can be created.
    #[error("error decoding {document}: peapod does not support kind {kind:?} ({api_version}) yet: only Pods, ConfigMaps and Secrets can be created")]
    UnsupportedKind {
        /// The offending document.
        document: DocumentRef,
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// A kind peapod serves, where only Pods are expected ([`decode_pods`]).
    #[error("error decoding {document}: expected a Pod, found kind {kind:?}")]
    NotAPod {
        /// The offending document.
        document: DocumentRef,
        /// The object's `kind`.
        kind: String,
    },
    /// A value has the wrong type for its field, e.g. a string where a boolean is expected.
    #[error("error decoding {document}: {path}: {message}")]
    InvalidType {
        /// The offending document.
        document: DocumentRef,
        /// The field's path, like `spec.containers[0].stdin`.
        path: String,
        /// What was wrong, like `invalid type: string "yes", expected a boolean`.
        message: String,
    },
    /// Fields present in the input are unknown to the Pod schema (the API server's strict
    /// field validation).
    #[error("error decoding {document}: strict decoding error: {}", unknown_fields_message(.fields))]
    UnknownFields {
        /// The offending document.
        document: DocumentRef,
        /// Paths of the unknown fields, like `spec.containers[0].imagee` (keys in sorted order).
        fields: Vec<String>,
    },
}

impl DecodeError {
    /// The document (and list item) the error comes from.
    pub fn document(&self) -> DocumentRef {
        match self {
            DecodeError::Syntax { document, .. }
            | DecodeError::NotAnObject { document, .. }
            | DecodeError::MissingKind { document, .. }
            | DecodeError::MissingApiVersion { document, .. }
            | DecodeError::NoMatch { document, .. }
            | DecodeError::UnsupportedKind { document, .. }
            | DecodeError::NotAPod { document, .. }
            | DecodeError::InvalidType { document, .. }
            | DecodeError::UnknownFields { document, .. } => *document,
        }
    }
}

fn unknown_fields_message(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Core `v1` kinds that a Kubernetes API server serves but peapod does not (yet): reported
/// as [`DecodeError::UnsupportedKind`] rather than as an unknown kind.
const CORE_V1_KINDS_NOT_SUPPORTED: &[&str] = &[
    "Binding",
    "Endpoints",
    "Event",
    "LimitRange",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "PodTemplate",
    "ReplicationController",
    "ResourceQuota",
    "Service",
    "ServiceAccount",
];

/// How many characters of an object a missing-kind or missing-apiVersion error quotes.
const OBJECT_EXCERPT_CHARS: usize = 60;

/// Decode every Pod in `text`: single- or multi-document YAML (`---` separators; empty
/// documents are skipped) or JSON (one object, several concatenated objects, or a `v1`
/// `List`/`PodList` with `items`). Lists are flattened in order.
///
/// Decoding is strict: unknown fields, wrong types, other kinds and missing `kind` or
/// `apiVersion` are errors, the first failing document ending the decode. Values are not
/// validated nor defaulted here. An input with no objects gives an empty vector: whether that
/// is an error (kubectl: "no objects passed to create") is the caller's decision.
pub fn decode_pods(text: &str) -> Result<Vec<Pod>, DecodeError> {
    let mut pods = Vec::new();
    for (document, object) in decode_located(text)? {
        match object {
            Object::Pod(pod) => pods.push(*pod),
            other => {
                return Err(DecodeError::NotAPod {
                    document,
                    kind: other.kind().to_owned(),
                })
            }
        }
    }
    Ok(pods)
}

/// Decode every object in `text` (Pods, ConfigMaps and Secrets, in input order), with the
/// same rules as [`decode_pods`].
pub fn decode_objects(text: &str) -> Result<Vec<Object>, DecodeError> {
    Ok(decode_located(text)?.into_iter().map(|(_, o)| o).collect())
}

/// Decode every object with the document it comes from.
pub fn decode_located(text: &str) -> Result<Vec<(DocumentRef, Object)>, DecodeError> {
    let mut objects = Vec::new();
    for (number, parsed) in parse_documents(text)?.into_iter().enumerate() {
        let document = DocumentRef {
            number: number + 1,
            item: None,
        };
        decode_document(parsed, document, &mut objects)?;
    }
    Ok(objects)
}

/// Split the input into parsed, non-empty documents (syntax errors are numbered by their
/// position among the documents seen so far).
fn parse_documents(text: &str) -> Result<Vec<Value>, DecodeError> {
    let trimmed = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.starts_with('{') {
        match parse_json_stream(text) {
            Ok(values) => return Ok(values),
            Err(json_error) => {
                // A YAML flow mapping also starts with `{`: fall back to YAML, but report the
                // JSON error if the text is not YAML either.
                return parse_yaml_stream(text).map_err(|_| json_error);
            }
        }
    }
    parse_yaml_stream(text)
}

fn parse_json_stream(text: &str) -> Result<Vec<Value>, DecodeError> {
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value {
            Ok(Value::Null) => {}
            Ok(value) => values.push(value),
            Err(e) => {
                return Err(DecodeError::Syntax {
                    document: DocumentRef {
                        number: values.len() + 1,
                        item: None,
                    },
                    message: format!("json: {e}"),
                })
            }
        }
    }
    Ok(values)
}

fn parse_yaml_stream(text: &str) -> Result<Vec<Value>, DecodeError> {
    let mut values = Vec::new();
    for (first_line, source) in split_yaml_documents(text) {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        // kubectl reads YAML 1.1 (`defaultMode: 0644` is 420), as does this.
        options.legacy_octal_numbers = true;
        // YAML's `.inf`/`.nan` have no JSON form: keep them as strings so that a field
        // expecting a number reports a type error with its path.
        options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::AsString;
        match serde_saphyr::from_str_with_options::<Value>(source, options) {
            Ok(Value::Null) => {}
            Ok(value) => values.push(value),
            Err(e) => {
                let render = serde_saphyr::render_options! {
                    formatter: &serde_saphyr::UserMessageFormatter,
                    snippets: serde_saphyr::SnippetMode::Off,
                    line_offset: first_line as u64,
                };
                return Err(DecodeError::Syntax {
                    document: DocumentRef {
                        number: values.len() + 1,
                        item: None,
                    },
                    message: format!("yaml: {}", e.render_with_options(render)),
                });
            }
        }
    }
    Ok(values)
}

/// Split a YAML stream at document-start markers (`---` at the start of a line, alone or
/// followed by a space), as kubectl's YAML reader does. Each piece keeps its marker line and
/// comes with the number of lines before it, so that error lines count in the whole input.
fn split_yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut offset = 0;
    for (line_number, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if is_marker && offset > start {
            documents.push((start_line, &text[start..offset]));
            start = offset;
            start_line = line_number;
        }
        offset += line.len();
    }
    if start < text.len() || documents.is_empty() {
        documents.push((start_line, &text[start..]));
    }
    documents
}

/// Decode one parsed document (an object or a list of objects) and append its objects.
fn decode_document(
    value: Value,
    document: DocumentRef,
    objects: &mut Vec<(DocumentRef, Object)>,
) -> Result<(), DecodeError> {
    let object = match value {
        Value::Object(object) => object,
        other => {
            return Err(DecodeError::NotAnObject {
                document,
                found: describe(&other),
            })
        }
    };
    let (api_version, kind) = type_meta(&object, document)?;
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => objects.push((
            document,
            Object::Pod(Box::new(decode_strict(Value::Object(object), document)?)),
        )),
        ("v1", "ConfigMap") => objects.push((
            document,
            Object::ConfigMap(decode_strict(Value::Object(object), document)?),
        )),
        ("v1", "Secret") => objects.push((
            document,
            Object::Secret(decode_strict(Value::Object(object), document)?),
        )),
        ("v1", "List" | "PodList" | "ConfigMapList" | "SecretList") => {
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
            let items = list_items(object, document)?;
            for (index, item) in items.into_iter().enumerate() {
                let document = DocumentRef {
                    item: Some(index),
                    ..document
                };
                let item = match item {
                    // The API server's typed lists' items carry no type meta.
                    Value::Object(mut item) if item_kind.is_some() => {
                        item.entry("apiVersion")
                            .or_insert_with(|| Value::from("v1"));
                        item.entry("kind")
                            .or_insert_with(|| Value::from(item_kind.unwrap_or_default()));
                        Value::Object(item)
                    }
                    other => other,
                };
                if item.get("kind").and_then(Value::as_str) == Some("List") {
                    // A list nested in a list is not something the API server takes either.
                    return Err(DecodeError::NoMatch {
                        document,
                        api_version: "v1".to_owned(),
                        kind: "List".to_owned(),
                    });
                }
                decode_document(item, document, objects)?;
            }
        }
        ("v1", kind) if CORE_V1_KINDS_NOT_SUPPORTED.contains(&kind) => {
            return Err(DecodeError::UnsupportedKind {
                document,
                api_version,
                kind: kind.to_owned(),
            })
        }
        _ => {
            return Err(DecodeError::NoMatch {
                document,
                api_version,
                kind,
            })
        }
    }
    Ok(())
}

/// Read `apiVersion` and `kind`, checked in the API server's order (kind first).
fn type_meta(
    object: &Map<String, Value>,
    document: DocumentRef,
) -> Result<(String, String), DecodeError> {
    let field = |name: &str| -> Result<Option<String>, DecodeError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(DecodeError::InvalidType {
                document,
                path: name.to_owned(),
                message: format!("invalid type: {}, expected a string", unexpected(other)),
            }),
        }
    };
    let kind = field("kind")?;
    let api_version = field("apiVersion")?;
    let Some(kind) = kind else {
        return Err(DecodeError::MissingKind {
            document,
            object: excerpt(object),
        });
    };
    let Some(api_version) = api_version else {
        return Err(DecodeError::MissingApiVersion {
            document,
            object: excerpt(object),
        });
    };
    Ok((api_version, kind))
}

/// The `items` of a `List`/`PodList`, rejecting fields a list does not have.
fn list_items(
    mut object: Map<String, Value>,
    document: DocumentRef,
) -> Result<Vec<Value>, DecodeError> {
    let unknown: Vec<String> = object
        .keys()
        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "items"))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownFields {
            document,
            fields: unknown,
        });
    }
    match object.remove("items") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(DecodeError::InvalidType {
            document,
            path: "items".to_owned(),
            message: format!("invalid type: {}, expected a sequence", unexpected(&other)),
        }),
    }
}

/// Decode one object strictly.
fn decode_strict<T: DeserializeOwned + Serialize>(
    input: Value,
    document: DocumentRef,
) -> Result<T, DecodeError> {
    let object: T = deserialize(&input).map_err(|(path, message)| DecodeError::InvalidType {
        document,
        path,
        message,
    })?;
    let output = serde_json::to_value(&object).expect("a decoded object always serialises to JSON");
    let mut unknown = Vec::new();
    let mut path = Vec::new();
    find_unknown_fields::<T>(&input, &input, &output, &mut path, &mut unknown);
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownFields {
            document,
            fields: unknown,
        });
    }
    Ok(object)
}

/// Decode an object, giving on failure the failing field's path and the message.
fn deserialize<T: DeserializeOwned>(input: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_path_to_error renders the root as ".".
        let path = if path == "." { String::new() } else { path };
        (path, message)
    })
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Step]) -> String {
    let mut rendered = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !rendered.is_empty() {
                    rendered.push('.');
                }
                rendered.push_str(key);
            }
            Step::Index(index) => {
                rendered.push_str(&format!("[{index}]"));
            }
        }
    }
    rendered
}

/// Collect the paths of keys present in `input` but absent from `output` (the re-serialised
/// object). `document` is the whole input, used to probe keys whose value is `null`.
fn find_unknown_fields<T: DeserializeOwned + Serialize>(
    document: &Value,
    input: &Value,
    output: &Value,
    path: &mut Vec<Step>,
    unknown: &mut Vec<String>,
) {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, input_value) in input {
                path.push(Step::Key(key.clone()));
                match output.get(key) {
                    Some(output_value) => {
                        find_unknown_fields::<T>(document, input_value, output_value, path, unknown)
                    }
                    None if input_value.is_null() && is_known_null_field::<T>(document, path) => {}
                    None => unknown.push(render_path(path)),
                }
                path.pop();
            }
        }
        (Value::Array(input), Value::Array(output)) => {
            for (index, (input_value, output_value)) in input.iter().zip(output).enumerate() {
                path.push(Step::Index(index));
                find_unknown_fields::<T>(document, input_value, output_value, path, unknown);
                path.pop();
            }
        }
        // Scalars (strings, numbers, int-or-string, quantities, times) have no fields.
        _ => {}
    }
}

/// Whether the `null`-valued key at `path` is a field of the schema: decode the document
/// again with `{}` in its place. A known field either rejects `{}` or decodes it into a
/// value that is serialised again; an unknown field is ignored whatever its value.
fn is_known_null_field<T: DeserializeOwned + Serialize>(document: &Value, path: &[Step]) -> bool {
    let mut probe = document.clone();
    let mut slot = &mut probe;
    for step in path {
        slot = match (step, slot) {
            (Step::Key(key), Value::Object(map)) => match map.get_mut(key) {
                Some(next) => next,
                None => return false,
            },
            (Step::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    *slot = Value::Object(Map::new());
    let Ok(object) = serde_json::from_value::<T>(probe) else {
        return true;
    };
    let Ok(output) = serde_json::to_value(&object) else {
        return true;
    };
    let mut node = &output;
    for step in path {
        node = match (step, node) {
            (Step::Key(key), Value::Object(map)) => match map.get(key) {
                Some(next) => next,
                None => return false,
            },
            (Step::Index(index), Value::Array(items)) => match items.get(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// The first [`OBJECT_EXCERPT_CHARS`] characters of an object as compact JSON.
fn excerpt(object: &Map<String, Value>) -> String {
    let json = serde_json::to_string(object).unwrap_or_default();
    json.chars().take(OBJECT_EXCERPT_CHARS).collect()
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as serde's "invalid type" messages describe it.
fn unexpected(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    fn err(text: &str) -> String {
        decode_pods(text).unwrap_err().to_string()
    }

    #[test]
    fn decodes_a_single_pod() {
        let pods = decode_pods(POD).unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("a"));
        let spec = pods[0].spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("busybox"));
    }

    #[test]
    fn multi_document_skips_empty_documents() {
        let text = format!(
            "---\n# nothing here\n---\n{POD}---\n{}\n---\n",
            POD.replace("name: a", "name: b")
        );
        let pods = decode_pods(&text).unwrap();
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(decode_pods("").unwrap().is_empty());
        assert!(decode_pods("# only a comment\n---\n").unwrap().is_empty());
    }

    #[test]
    fn json_object_stream_and_lists() {
        let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        assert_eq!(decode_pods(one).unwrap().len(), 1);
        assert_eq!(decode_pods(&format!("{one}\n{one}")).unwrap().len(), 2);
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{one},{one}]}}"#);
        assert_eq!(decode_pods(&list).unwrap().len(), 2);
        let pod_list = r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}]}"#;
        assert_eq!(
            decode_pods(pod_list).unwrap()[0].metadata.name.as_deref(),
            Some("p")
        );
    }

    #[test]
    fn list_items_are_located_by_index() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: b}\n  spec: {nodeNam: x}\n";
        assert_eq!(
            err(list),
            "error decoding document 1 (items[1]): strict decoding error: unknown field \"spec.nodeNam\""
        );
    }

    #[test]
    fn unknown_fields_are_listed_with_paths() {
        let text = POD
            .replace(
                "    image: busybox",
                "    imagee: busybox\n    image: busybox",
            )
            .replace("  name: a", "  name: a\n  labelz: {}");
        assert_eq!(
            err(&text),
            "error decoding document 1: strict decoding error: unknown field \"metadata.labelz\", unknown field \"spec.containers[0].imagee\""
        );
        assert!(err(&format!("{POD}bogus: 1\n")).ends_with("unknown field \"bogus\""));
    }

    #[test]
    fn nulls_empty_collections_and_scalars_are_not_unknown() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  creationTimestamp: null\n  labels: {}\n  annotations: ~\nspec:\n  volumes: []\n  securityContext: {}\n  hostPath: ~\n  containers:\n  - name: c\n    image: busybox\n    args: []\n    env: null\n    resources:\n      limits: {cpu: 1, memory: 1Gi}\n    ports:\n    - containerPort: 80\n    livenessProbe:\n      httpGet: {port: http, path: /}\n    readinessProbe:\n      tcpSocket: {port: 8080}\nstatus: {}\n";
        let e = err(text);
        // `spec.hostPath: ~` is unknown even though its value is null.
        assert_eq!(
            e,
            "error decoding document 1: strict decoding error: unknown field \"spec.hostPath\""
        );
        let ok = text.replace("  hostPath: ~\n", "");
        decode_pods(&ok).unwrap();
    }

    #[test]
    fn yaml_1_1_scalars_like_kubectl() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  volumes:\n  - name: v\n    secret:\n      secretName: s\n      defaultMode: 0644\n  containers:\n  - name: c\n    image: busybox\n    stdin: yes\n    tty: on\n";
        let pod = decode_pods(text).unwrap().remove(0);
        let spec = pod.spec.unwrap();
        let mode = spec.volumes.unwrap()[0]
            .secret
            .as_ref()
            .unwrap()
            .default_mode;
        assert_eq!(mode, Some(0o644));
        assert_eq!(spec.containers[0].stdin, Some(true));
        assert_eq!(spec.containers[0].tty, Some(true));
    }

    #[test]
    fn type_errors_carry_the_path() {
        let text = POD.replace(
            "    image: busybox",
            "    image: busybox\n    stdin: \"yes\"",
        );
        assert_eq!(
            err(&text),
            "error decoding document 1: spec.containers[0].stdin: invalid type: string \"yes\", expected a boolean"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(
            err("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"),
            "error decoding document 1: no matches for kind \"Deployment\" in version \"apps/v1\""
        );
        assert!(matches!(
            decode_pods("apiVersion: v1\nkind: Service\n"),
            Err(DecodeError::UnsupportedKind { .. })
        ));
        assert_eq!(
            err("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"),
            "error decoding document 1: expected a Pod, found kind \"ConfigMap\""
        );
        assert_eq!(
            err("apiVersion: v1\nmetadata: {name: x}\n"),
            "error decoding document 1: Object 'Kind' is missing in '{\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\"}}'"
        );
        assert!(
            err("kind: Pod\n").contains("Object 'apiVersion' is missing in '{\"kind\":\"Pod\"}'")
        );
        assert!(err("- a\n- b\n").contains("found a list"));
    }

    #[test]
    fn syntax_errors_count_lines_in_the_whole_input() {
        let text = format!("{POD}---\napiVersion: v1\nkind: Pod\nmetadata: name: x\n");
        let e = decode_pods(&text).unwrap_err();
        assert_eq!(e.document().number, 2);
        let message = e.to_string();
        assert!(
            message.starts_with("error decoding document 2: yaml: "),
            "{message}"
        );
        assert!(message.contains("line 12"), "{message}");
        assert!(err("{\"apiVersion\": \"v1\",").starts_with("error decoding document 1: json: "));
    }

    #[test]
    fn document_numbers_are_one_based_and_skip_empty_documents() {
        let text = format!(
            "---\n---\n{POD}---\n{}",
            POD.replace("    image: busybox", "    image: busybox\n    tty: 3")
        );
        let e = decode_pods(&text).unwrap_err();
        assert_eq!(
            e.document(),
            DocumentRef {
                number: 2,
                item: None
            }
        );
    }

    #[test]
    fn split_keeps_marker_lines_with_their_document() {
        let parts = split_yaml_documents("a: 1\n---\nb: 2\n--- {c: 3}\n----\n");
        assert_eq!(
            parts,
            vec![(0, "a: 1\n"), (1, "---\nb: 2\n"), (3, "--- {c: 3}\n----\n")]
        );
    }
}
