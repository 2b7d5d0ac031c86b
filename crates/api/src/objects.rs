//! ConfigMaps and Secrets, pure: defaulting (a Secret's `type` and `stringData`), validation
//! as the API server does it (`ValidateConfigMap`, `ValidateSecret` and their updates in
//! `k8s.io/kubernetes pkg/apis/core/validation`), and kubectl's printing of them (`get`
//! tables, `describe`).
//!
//! It owns nothing about where they are stored nor how pods use them (the binary's
//! `objects` module): no I/O here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::validate::{
    is_config_map_key, validate_meta_update, validate_object_meta, Cause, Causes, FieldPath,
    Invalid,
};

/// The most a ConfigMap's or Secret's data may hold, in bytes (`core.MaxSecretSize`).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// The Secret types whose required keys the API server checks, and their keys.
pub mod secret_type {
    /// Arbitrary data (the default).
    pub const OPAQUE: &str = "Opaque";
    /// A `~/.dockercfg` file in `.dockercfg`.
    pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
    /// A `~/.docker/config.json` file in `.dockerconfigjson`.
    pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
    /// `username` and/or `password`.
    pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
    /// `ssh-privatekey`.
    pub const SSH_AUTH: &str = "kubernetes.io/ssh-auth";
    /// `tls.crt` and `tls.key`.
    pub const TLS: &str = "kubernetes.io/tls";
    /// A service account token (needs the `kubernetes.io/service-account.name` annotation).
    pub const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
    /// The key of a dockercfg Secret.
    pub const DOCKERCFG_KEY: &str = ".dockercfg";
    /// The key of a dockerconfigjson Secret.
    pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
}

/// What the API server does to a Secret before validating it: `stringData` merged into
/// `data` (a `stringData` key wins) and dropped, an empty `type` made `Opaque`.
pub fn normalize_secret(secret: &mut Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    if secret.type_.as_deref().unwrap_or_default().is_empty() {
        secret.type_ = Some(secret_type::OPAQUE.to_owned());
    }
}

/// The total size of the data, as the API server counts it.
fn data_size<'a>(
    strings: impl Iterator<Item = &'a String>,
    bytes: impl Iterator<Item = &'a ByteString>,
) -> usize {
    strings.map(String::len).sum::<usize>() + bytes.map(|b| b.0.len()).sum::<usize>()
}

fn object_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn config_map_causes(config_map: &ConfigMap, causes: &mut Causes) {
    validate_object_meta(&config_map.metadata, causes);
    let empty = BTreeMap::new();
    let data = config_map.data.as_ref().unwrap_or(&empty);
    let empty_binary = BTreeMap::new();
    let binary = config_map.binary_data.as_ref().unwrap_or(&empty_binary);
    let data_path = FieldPath::root("data");
    for key in data.keys() {
        causes.invalid_each(&data_path.key(key), key, is_config_map_key(key));
        if binary.contains_key(key) {
            causes.push(Cause::invalid(
                &data_path.key(key),
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    let binary_path = FieldPath::root("binaryData");
    for key in binary.keys() {
        causes.invalid_each(&binary_path.key(key), key, is_config_map_key(key));
    }
    if data_size(data.values(), binary.values()) > MAX_DATA_SIZE {
        // The API server reports the whole object, whose path prints as `[]`.
        causes.push(Cause::too_long(
            "[]",
            format!("may not be more than {MAX_DATA_SIZE} bytes"),
        ));
    }
}

/// Validate a ConfigMap for creation, reporting every problem:
/// `The ConfigMap "x" is invalid: data[a b]: Invalid value: "a b": a valid config key …`.
pub fn validate_config_map(config_map: &ConfigMap) -> Result<(), Invalid> {
    let mut causes = Causes::default();
    config_map_causes(config_map, &mut causes);
    causes.into_invalid("ConfigMap", object_name(&config_map.metadata))
}

/// The rules of an `immutable` object: once set, it stays set and the data stays.
fn immutable_update(
    old_immutable: Option<bool>,
    new_immutable: Option<bool>,
    data_equal: &[(&str, bool)],
    causes: &mut Causes,
) {
    if old_immutable != Some(true) {
        return;
    }
    const DETAIL: &str = "field is immutable when `immutable` is set";
    if new_immutable != Some(true) {
        causes.push(Cause::forbidden("immutable", DETAIL));
    }
    for (field, equal) in data_equal {
        if !equal {
            causes.push(Cause::forbidden(*field, DETAIL));
        }
    }
}

/// Validate an update of `old` into `new`: `new` valid, name and namespace unchanged, and
/// nothing changed but metadata when `old` is immutable.
pub fn validate_config_map_update(old: &ConfigMap, new: &ConfigMap) -> Result<(), Invalid> {
    let mut causes = Causes::default();
    validate_meta_update(&old.metadata, &new.metadata, &mut causes);
    config_map_causes(new, &mut causes);
    immutable_update(
        old.immutable,
        new.immutable,
        &[
            ("data", old.data == new.data),
            ("binaryData", old.binary_data == new.binary_data),
        ],
        &mut causes,
    );
    causes.into_invalid("ConfigMap", object_name(&new.metadata))
}

fn secret_causes(secret: &Secret, causes: &mut Causes) {
    use secret_type::*;
    validate_object_meta(&secret.metadata, causes);
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let data_path = FieldPath::root("data");
    for key in data.keys() {
        causes.invalid_each(&data_path.key(key), key, is_config_map_key(key));
    }
    // Keys of `stringData` not yet merged (an unnormalised Secret) are checked too.
    for key in secret.string_data.iter().flatten().map(|(k, _)| k) {
        if !data.contains_key(key) {
            causes.invalid_each(
                &FieldPath::root("stringData").key(key),
                key,
                is_config_map_key(key),
            );
        }
    }
    let strings = secret.string_data.iter().flatten().map(|(_, v)| v);
    if data_size(strings, data.values()) > MAX_DATA_SIZE {
        causes.push(Cause::too_long(
            &data_path,
            format!("may not be more than {MAX_DATA_SIZE} bytes"),
        ));
    }
    let has = |key: &str| {
        data.contains_key(key)
            || secret
                .string_data
                .as_ref()
                .is_some_and(|s| s.contains_key(key))
    };
    let bytes = |key: &str| -> Option<Vec<u8>> {
        secret
            .string_data
            .as_ref()
            .and_then(|s| s.get(key))
            .map(|s| s.clone().into_bytes())
            .or_else(|| data.get(key).map(|b| b.0.clone()))
    };
    let json_key = |key: &str, causes: &mut Causes| match bytes(key) {
        None => causes.push(Cause::required(&data_path.key(key), "")),
        Some(content) => {
            if let Err(e) =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&content)
            {
                causes.push(Cause::invalid(
                    &data_path.key(key),
                    "<secret contents redacted>",
                    e.to_string(),
                ));
            }
        }
    };
    match secret.type_.as_deref().unwrap_or_default() {
        "" | OPAQUE => {}
        SERVICE_ACCOUNT_TOKEN => {
            let named = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| !n.is_empty());
            if !named {
                causes.push(Cause::required(
                    &FieldPath::root("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        DOCKERCFG => json_key(DOCKERCFG_KEY, causes),
        DOCKER_CONFIG_JSON => json_key(DOCKER_CONFIG_JSON_KEY, causes),
        BASIC_AUTH if !has("username") && !has("password") => {
            causes.push(Cause::required(&data_path.key("username"), ""));
            causes.push(Cause::required(&data_path.key("password"), ""));
        }
        SSH_AUTH if bytes("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            causes.push(Cause::required(&data_path.key("ssh-privatekey"), ""));
        }
        TLS => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    causes.push(Cause::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
}

/// Validate a Secret for creation (before or after [`normalize_secret`]), reporting every
/// problem, with the API server's rules for each well-known `type`.
pub fn validate_secret(secret: &Secret) -> Result<(), Invalid> {
    let mut causes = Causes::default();
    secret_causes(secret, &mut causes);
    causes.into_invalid("Secret", object_name(&secret.metadata))
}

/// Validate an update of `old` into `new` (both normalised): `new` valid, name, namespace
/// and `type` unchanged, and nothing changed but metadata when `old` is immutable.
pub fn validate_secret_update(old: &Secret, new: &Secret) -> Result<(), Invalid> {
    let mut causes = Causes::default();
    validate_meta_update(&old.metadata, &new.metadata, &mut causes);
    secret_causes(new, &mut causes);
    let old_type = old.type_.as_deref().unwrap_or(secret_type::OPAQUE);
    let new_type = new.type_.as_deref().unwrap_or(secret_type::OPAQUE);
    if old_type != new_type {
        causes.push(Cause::invalid("type", new_type, "field is immutable"));
    }
    immutable_update(
        old.immutable,
        new.immutable,
        &[("data", old.data == new.data)],
        &mut causes,
    );
    causes.into_invalid("Secret", object_name(&new.metadata))
}

// ---------------------------------------------------------------------------------------
// kubectl's printing.

fn age(meta: &ObjectMeta, now: DateTime<Utc>) -> String {
    match &meta.creation_timestamp {
        Some(t) => crate::print::human_age(now - crate::status::from_time(t)),
        None => "<unknown>".to_owned(),
    }
}

/// The number of keys `kubectl get configmaps` shows in DATA.
pub fn config_map_keys(config_map: &ConfigMap) -> usize {
    config_map.data.as_ref().map_or(0, BTreeMap::len)
        + config_map.binary_data.as_ref().map_or(0, BTreeMap::len)
}

/// `kubectl get configmaps` cells: NAME, DATA, AGE.
pub fn config_map_cells(config_map: &ConfigMap, now: DateTime<Utc>) -> Vec<String> {
    vec![
        object_name(&config_map.metadata).to_owned(),
        config_map_keys(config_map).to_string(),
        age(&config_map.metadata, now),
    ]
}

/// `kubectl get secrets` cells: NAME, TYPE, DATA, AGE.
pub fn secret_cells(secret: &Secret, now: DateTime<Utc>) -> Vec<String> {
    vec![
        object_name(&secret.metadata).to_owned(),
        secret.type_.clone().unwrap_or_default(),
        secret.data.as_ref().map_or(0, BTreeMap::len).to_string(),
        age(&secret.metadata, now),
    ]
}

fn table(header: &[&str], rows: Vec<(String, Vec<String>)>, all_namespaces: bool) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut header = header.to_vec();
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut text = header.join("\t");
    text.push('\n');
    for (namespace, mut cells) in rows {
        if all_namespaces {
            cells.insert(0, namespace);
        }
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    crate::print::align(&text, 6, 3)
}

/// `kubectl get configmaps` (`-A` with `all_namespaces`); empty for no ConfigMaps.
pub fn config_maps_table(items: &[ConfigMap], all_namespaces: bool, now: DateTime<Utc>) -> String {
    let rows = items
        .iter()
        .map(|c| {
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                config_map_cells(c, now),
            )
        })
        .collect();
    table(&["NAME", "DATA", "AGE"], rows, all_namespaces)
}

/// `kubectl get secrets` (`-A` with `all_namespaces`); empty for no Secrets.
pub fn secrets_table(items: &[Secret], all_namespaces: bool, now: DateTime<Utc>) -> String {
    let rows = items
        .iter()
        .map(|s| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                secret_cells(s, now),
            )
        })
        .collect();
    table(&["NAME", "TYPE", "DATA", "AGE"], rows, all_namespaces)
}

/// Name, Namespace, Labels and Annotations lines of `describe`, tab-separated.
fn describe_meta(meta: &ObjectMeta, text: &mut String) {
    text.push_str(&format!("Name:\t{}\n", object_name(meta)));
    text.push_str(&format!(
        "Namespace:\t{}\n",
        meta.namespace.as_deref().unwrap_or_default()
    ));
    text.push_str("Labels:\t");
    match meta.labels.as_ref().filter(|l| !l.is_empty()) {
        None => text.push_str("<none>\n"),
        Some(labels) => {
            let lines: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&lines.join("\n\t"));
            text.push('\n');
        }
    }
    text.push_str("Annotations:\t");
    let shown: Vec<String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .map(|(k, v)| format!("{k}: {}", v.trim_end_matches('\n')))
        .collect();
    if shown.is_empty() {
        text.push_str("<none>\n");
    } else {
        text.push_str(&shown.join("\n\t"));
        text.push('\n');
    }
}

/// `kubectl describe configmap`.
pub fn describe_config_map(config_map: &ConfigMap) -> String {
    let mut text = String::new();
    describe_meta(&config_map.metadata, &mut text);
    text.push_str("\nData\n====\n");
    for (key, value) in config_map.data.iter().flatten() {
        text.push_str(&format!("{key}:\n----\n{value}\n\n"));
    }
    text.push_str("\nBinaryData\n====\n");
    for (key, value) in config_map.binary_data.iter().flatten() {
        text.push_str(&format!("{key}: {} bytes\n", value.0.len()));
    }
    text.push_str("\nEvents:\t<none>\n");
    crate::print::align(&text, 0, 2)
}

/// `kubectl describe secret`: sizes only, never the contents.
pub fn describe_secret(secret: &Secret) -> String {
    let mut text = String::new();
    describe_meta(&secret.metadata, &mut text);
    text.push_str(&format!(
        "\nType:\t{}\n",
        secret.type_.as_deref().unwrap_or_default()
    ));
    text.push_str("\nData\n====\n");
    for (key, value) in secret.data.iter().flatten() {
        text.push_str(&format!("{key}:\t{} bytes\n", value.0.len()));
    }
    crate::print::align(&text, 0, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_objects, Object};

    fn config_map(yaml: &str) -> ConfigMap {
        match decode_objects(yaml).unwrap().remove(0) {
            Object::ConfigMap(c) => c,
            other => panic!("not a ConfigMap: {other:?}"),
        }
    }

    fn secret(yaml: &str) -> Secret {
        match decode_objects(yaml).unwrap().remove(0) {
            Object::Secret(s) => s,
            other => panic!("not a Secret: {other:?}"),
        }
    }

    const CM: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a.conf: hello\n";

    #[test]
    fn valid_config_map_and_bad_keys() {
        validate_config_map(&config_map(CM)).unwrap();
        let bad = config_map(&format!(
            "{CM}  'a b': x\n  ..x: z\nbinaryData:\n  a.conf: aGk=\n"
        ));
        let err = validate_config_map(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("The ConfigMap \"settings\" is invalid: ["),
            "{err}"
        );
        assert!(err.contains("data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"), "{err}");
        assert!(
            err.contains("data[..x]: Invalid value: \"..x\": must not start with '..'"),
            "{err}"
        );
        assert!(
            err.contains(
                "data[a.conf]: Invalid value: \"a.conf\": duplicate of key present in binaryData"
            ),
            "{err}"
        );
    }

    #[test]
    fn config_map_size_and_name() {
        let mut big = config_map(CM);
        big.data = Some(BTreeMap::from([(
            "k".into(),
            "x".repeat(MAX_DATA_SIZE + 1),
        )]));
        assert_eq!(
            validate_config_map(&big).unwrap_err().to_string(),
            "The ConfigMap \"settings\" is invalid: []: Too long: may not be more than 1048576 bytes"
        );
        let named = config_map(&CM.replace("name: settings", "name: Bad_Name"));
        let err = validate_config_map(&named).unwrap_err();
        assert_eq!(err.causes[0].field, "metadata.name");
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old = config_map(&format!("{CM}immutable: true\n"));
        let mut new = old.clone();
        new.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        validate_config_map_update(&old, &new).unwrap();
        new.data = Some(BTreeMap::from([("a.conf".into(), "changed".into())]));
        new.immutable = None;
        assert_eq!(
            validate_config_map_update(&old, &new).unwrap_err().to_string(),
            "The ConfigMap \"settings\" is invalid: [immutable: Forbidden: field is immutable when `immutable` is set, data: Forbidden: field is immutable when `immutable` is set]"
        );
    }

    #[test]
    fn secrets_merge_string_data_and_default_their_type() {
        let mut s = secret("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: b2xk\n  b: Yg==\nstringData:\n  a: new\n");
        validate_secret(&s).unwrap();
        normalize_secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.string_data.is_none());
        let data = s.data.unwrap();
        assert_eq!(data["a"].0, b"new");
        assert_eq!(data["b"].0, b"b");
    }

    #[test]
    fn secret_data_must_be_base64() {
        let e = decode_objects(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: 'not base64!'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("error decoding document 1: data.a: "), "{e}");
    }

    #[test]
    fn secret_types_require_their_keys() {
        let base = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
        let check = |extra: &str| {
            let mut s = secret(&format!("{base}{extra}"));
            normalize_secret(&mut s);
            validate_secret(&s).map_err(|e| e.to_string())
        };
        assert_eq!(
            check("type: kubernetes.io/dockerconfigjson\n").unwrap_err(),
            "The Secret \"s\" is invalid: data[.dockerconfigjson]: Required value"
        );
        let e =
            check("type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{'\n")
                .unwrap_err();
        assert!(
            e.starts_with("The Secret \"s\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "),
            "{e}"
        );
        check("type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{}}'\n").unwrap();
        assert_eq!(
            check("type: kubernetes.io/tls\nstringData:\n  tls.crt: x\n").unwrap_err(),
            "The Secret \"s\" is invalid: data[tls.key]: Required value"
        );
        assert_eq!(
            check("type: kubernetes.io/basic-auth\n").unwrap_err(),
            "The Secret \"s\" is invalid: [data[username]: Required value, data[password]: Required value]"
        );
        check("type: kubernetes.io/basic-auth\nstringData:\n  password: p\n").unwrap();
        check("type: example.com/custom\n").unwrap();
    }

    #[test]
    fn secret_type_is_immutable() {
        let mut old = secret("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  tls.crt: a\n  tls.key: b\n");
        normalize_secret(&mut old);
        let mut new = old.clone();
        new.type_ = Some("kubernetes.io/tls".into());
        assert_eq!(
            validate_secret_update(&old, &new).unwrap_err().to_string(),
            "The Secret \"s\" is invalid: type: Invalid value: \"kubernetes.io/tls\": field is immutable"
        );
    }

    #[test]
    fn tables_and_describe() {
        let now = Utc::now();
        let mut c = config_map(CM);
        c.metadata.namespace = Some("default".into());
        c.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(now.timestamp() - 5).unwrap(),
        ));
        assert_eq!(
            config_maps_table(std::slice::from_ref(&c), false, now),
            "NAME       DATA   AGE\nsettings   1      5s\n"
        );
        assert_eq!(
            config_maps_table(&[c.clone()], true, now),
            "NAMESPACE   NAME       DATA   AGE\ndefault     settings   1      5s\n"
        );
        assert_eq!(
            describe_config_map(&c),
            "Name:         settings\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nData\n====\na.conf:\n----\nhello\n\n\nBinaryData\n====\n\nEvents:  <none>\n"
        );
        let mut s = secret("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: default\nstringData:\n  password: hunter2\n");
        normalize_secret(&mut s);
        s.metadata.creation_timestamp = c.metadata.creation_timestamp.clone();
        assert_eq!(
            secrets_table(&[s.clone()], false, now),
            "NAME   TYPE     DATA   AGE\ns      Opaque   1      5s\n"
        );
        assert_eq!(
            describe_secret(&s),
            "Name:         s\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nType:  Opaque\n\nData\n====\npassword:  7 bytes\n"
        );
    }
}
