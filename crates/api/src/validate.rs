//! Validation of Pods as the API server does it (`ValidatePodCreate` and `ValidatePodUpdate`
//! in `k8s.io/kubernetes pkg/apis/core/validation`), with its field paths and words, all
//! problems reported together, and kubectl's rendering of the result:
//! `The Pod "x" is invalid: spec.containers[0].image: Required value`.
//!
//! It checks a decoded Pod and owns nothing else: no decoding ([`crate::decode`]), no
//! defaulting ([`crate::defaults`]). The API server validates after defaulting; so does
//! peapod, but a field that defaulting fills (namespace, policies, protocols) is only
//! checked when set, so that an undefaulted Pod can be validated too.
//!
//! Where peapod is stricter than Kubernetes the message says so: mount paths and `hostPath`
//! paths must be absolute, images may not contain whitespace, `emptyDir` media are `""` and
//! `Memory` only, and only `emptyDir`, `hostPath`, `configMap`, `secret`, `downwardAPI` and
//! `projected` (without service account tokens or trust bundles) volumes can be provided.
//! ConfigMaps and Secrets themselves are validated in [`crate::objects`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, EnvFromSource, EnvVar, KeyToPath, ObjectFieldSelector, Pod,
    PodDNSConfig, PodSpec, Probe, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The kind of a field error, as the API server names it (`field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseKind {
    /// A required field is missing or empty: "Required value".
    Required,
    /// A value is malformed or out of range: "Invalid value".
    Invalid,
    /// A value must be unique and is not: "Duplicate value".
    Duplicate,
    /// A reference names nothing that exists: "Not found".
    NotFound,
    /// A value is not one of an enumeration: "Unsupported value".
    NotSupported,
    /// A field may not be set or changed here: "Forbidden".
    Forbidden,
    /// A value is longer than allowed: "Too long".
    TooLong,
}

impl CauseKind {
    /// The API server's words for this kind, as printed in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::Required => "Required value",
            CauseKind::Invalid => "Invalid value",
            CauseKind::Duplicate => "Duplicate value",
            CauseKind::NotFound => "Not found",
            CauseKind::NotSupported => "Unsupported value",
            CauseKind::Forbidden => "Forbidden",
            CauseKind::TooLong => "Too long",
        }
    }

    /// The `reason` of a Kubernetes `StatusCause` for this kind (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            CauseKind::Required => "FieldValueRequired",
            CauseKind::Invalid => "FieldValueInvalid",
            CauseKind::Duplicate => "FieldValueDuplicate",
            CauseKind::NotFound => "FieldValueNotFound",
            CauseKind::NotSupported => "FieldValueNotSupported",
            CauseKind::Forbidden => "FieldValueForbidden",
            CauseKind::TooLong => "FieldValueTooLong",
        }
    }
}

impl fmt::Display for CauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The field's path, like `spec.containers[0].name`.
    pub field: String,
    /// What kind of problem it is.
    pub kind: CauseKind,
    /// The offending value as the API server prints it: strings quoted (`"Bad_Name"`),
    /// numbers and booleans bare (`70000`). `None` when the message shows no value (always
    /// for `Required`, `Forbidden` and `TooLong`).
    pub value: Option<String>,
    /// The explanation after the value; may be empty.
    pub detail: String,
}

impl Cause {
    /// `field: Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::without_value(field, CauseKind::Required, detail)
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::without_value(field, CauseKind::Forbidden, detail)
    }

    /// `field: Too long: detail`.
    pub fn too_long(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::without_value(field, CauseKind::TooLong, detail)
    }

    /// `field: Invalid value: <value>: detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::with_value(field, CauseKind::Invalid, value, detail)
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::with_value(field, CauseKind::Duplicate, value, "")
    }

    /// `field: Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::with_value(field, CauseKind::NotFound, value, "")
    }

    /// `field: Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::with_value(field, CauseKind::NotSupported, value, detail)
    }

    fn without_value(field: impl Into<String>, kind: CauseKind, detail: impl Into<String>) -> Self {
        Cause {
            field: field.into(),
            kind,
            value: None,
            detail: detail.into(),
        }
    }

    fn with_value(
        field: impl Into<String>,
        kind: CauseKind,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Cause {
            field: field.into(),
            kind,
            value: Some(value.into().to_string()),
            detail: detail.into(),
        }
    }

    /// The message without the field, as in a `StatusCause`: `Invalid value: "x": detail`.
    pub fn message(&self) -> String {
        let mut message = self.kind.as_str().to_owned();
        if let Some(value) = &self.value {
            message.push_str(": ");
            message.push_str(value);
        }
        if !self.detail.is_empty() {
            message.push_str(": ");
            message.push_str(&self.detail);
        }
        message
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// An object the API server would refuse, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The object's kind: `Pod`.
    pub kind: String,
    /// The object's name (may be empty when the name itself is missing).
    pub name: String,
    /// The problems, in the API server's order, never empty.
    pub causes: Vec<Cause>,
}

impl fmt::Display for Invalid {
    /// kubectl's text: `The Pod "x" is invalid: cause` with one cause,
    /// `The Pod "x" is invalid: [cause1, cause2]` with several.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "The {} {:?} is invalid: ", self.kind, self.name)?;
        match self.causes.as_slice() {
            [one] => write!(f, "{one}"),
            causes => {
                f.write_str("[")?;
                for (i, cause) in causes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{cause}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// Validate a Pod for creation, as the API server does, reporting every problem.
pub fn validate_pod(pod: &Pod) -> Result<(), Invalid> {
    let mut causes = Causes::default();
    validate_pod_into(pod, &mut causes);
    causes.into_result(pod)
}

/// Validate an update of `old` into `new`: `new` must be a valid Pod, its name, namespace
/// and uid unchanged (an empty uid keeps the old one), and its spec may differ from the old
/// one only in the fields the API server lets a running Pod change: container and init
/// container images, `activeDeadlineSeconds` (set, or lowered), added tolerations (or a
/// changed `tolerationSeconds`), and `terminationGracePeriodSeconds` from a negative value
/// to 1. Labels, annotations and other metadata may change. Both Pods are compared after
/// defaulting, so an undefaulted `new` is compared fairly.
pub fn validate_update(old: &Pod, new: &Pod) -> Result<(), Invalid> {
    let mut old = old.clone();
    let mut new = new.clone();
    crate::defaults::apply_defaults(&mut old);
    crate::defaults::apply_defaults(&mut new);

    let mut causes = Causes::default();
    validate_meta_update(&old.metadata, &new.metadata, &mut causes);
    validate_pod_into(&new, &mut causes);
    let empty = PodSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    validate_spec_update(old_spec, new_spec, &mut causes);
    causes.into_result(&new)
}

/// Every set volume source of a volume, by its field name, in the API server's order.
pub(crate) fn volume_sources(volume: &Volume) -> Vec<&'static str> {
    let sources = [
        ("hostPath", volume.host_path.is_some()),
        ("emptyDir", volume.empty_dir.is_some()),
        ("gcePersistentDisk", volume.gce_persistent_disk.is_some()),
        (
            "awsElasticBlockStore",
            volume.aws_elastic_block_store.is_some(),
        ),
        ("gitRepo", volume.git_repo.is_some()),
        ("secret", volume.secret.is_some()),
        ("nfs", volume.nfs.is_some()),
        ("iscsi", volume.iscsi.is_some()),
        ("glusterfs", volume.glusterfs.is_some()),
        ("flexVolume", volume.flex_volume.is_some()),
        ("cinder", volume.cinder.is_some()),
        ("cephfs", volume.cephfs.is_some()),
        ("flocker", volume.flocker.is_some()),
        ("downwardAPI", volume.downward_api.is_some()),
        ("fc", volume.fc.is_some()),
        ("azureFile", volume.azure_file.is_some()),
        ("configMap", volume.config_map.is_some()),
        ("vsphereVolume", volume.vsphere_volume.is_some()),
        ("quobyte", volume.quobyte.is_some()),
        ("azureDisk", volume.azure_disk.is_some()),
        (
            "photonPersistentDisk",
            volume.photon_persistent_disk.is_some(),
        ),
        ("projected", volume.projected.is_some()),
        ("portworxVolume", volume.portworx_volume.is_some()),
        ("scaleIO", volume.scale_io.is_some()),
        ("storageos", volume.storageos.is_some()),
        ("csi", volume.csi.is_some()),
        ("ephemeral", volume.ephemeral.is_some()),
        ("image", volume.image.is_some()),
        (
            "persistentVolumeClaim",
            volume.persistent_volume_claim.is_some(),
        ),
        ("rbd", volume.rbd.is_some()),
    ];
    sources
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Messages and value checks of k8s.io/apimachinery/pkg/util/validation.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MAX: usize = 63;
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const PORT_NAME_MAX: usize = 15;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const QUANTITY_FMT: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";
const IS_NEGATIVE: &str = "must be greater than or equal to 0";
const FIELD_IMMUTABLE: &str = "field is immutable";
const INIT_ONLY_WITH_RESTART_ALWAYS: &str =
    "may not be set for init containers without restartPolicy=Always";

/// The pod spec fields an update may change, in the API server's words.
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    // Go's `RegexError` concatenates "'x', " and " or ", hence the double spaces.
    let mut text = format!("{message} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            text.push_str(" or ");
        }
        text.push_str(&format!("'{example}', "));
    }
    text.push_str(&format!("regex used for validation is '{format}')"));
    text
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_dns1123_label(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| is_lower_alnum(c) || c == '-')
        && value.starts_with(is_lower_alnum)
        && value.ends_with(is_lower_alnum)
}

fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errors.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_dns1123_label(value) {
        errors.push(regex_error(
            DNS1123_LABEL_ERR,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errors
}

pub(crate) fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(matches_dns1123_label) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

fn matches_qualified_name_part(value: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !value.is_empty()
        && value.chars().all(inner)
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                for message in is_dns1123_subdomain(prefix) {
                    errors.push(format!("prefix part {message}"));
                }
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !matches_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let valid = value.chars().all(valid_char) && !value.starts_with(|c: char| c.is_ascii_digit());
    if value.is_empty() || !valid {
        errors.push(regex_error(
            ENV_VAR_NAME_ERR,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errors.extend(dot_errors(value));
    errors
}

/// Go's `hasChDirPrefix` checks, shared by env var names and config keys: `.`, `..` and a
/// `..` prefix are refused.
fn dot_errors(value: &str) -> Option<String> {
    if value == "." {
        Some("must not be '.'".to_owned())
    } else if value == ".." {
        Some("must not be '..'".to_owned())
    } else if value.starts_with("..") {
        Some("must not start with '..'".to_owned())
    } else {
        None
    }
}

const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// `IsConfigMapKey`: the keys of ConfigMaps and Secrets (they become file names).
pub(crate) fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if value.is_empty() || !value.chars().all(valid) {
        errors.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errors.extend(dot_errors(value));
    errors
}

fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_owned()]
    }
}

fn is_valid_port_name(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > PORT_NAME_MAX {
        errors.push(max_len_error(PORT_NAME_MAX));
    }
    if name.is_empty() || !name.chars().all(|c| is_lower_alnum(c) || c == '-') {
        errors.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    } else if !name.chars().any(|c| c.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen".to_owned());
    }
    errors
}

/// A resource quantity's value, or `None` when it is not a well-formed quantity.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let (sign, rest) = match text.strip_prefix(['+', '-']) {
        Some(rest) => (if text.starts_with('-') { -1.0 } else { 1.0 }, rest),
        None => (1.0, text),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(sign * number * multiplier)
}

fn is_absolute(path: &str) -> bool {
    path.starts_with('/')
}

fn has_backsteps(path: &str) -> bool {
    path.split(['/', '\\']).any(|part| part == "..")
}

// ---------------------------------------------------------------------------------------
// The validation walk.

/// Field paths as the API server prints them: `spec.containers[0].resources.limits[cpu]`.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub(crate) fn root(name: &str) -> Self {
        FieldPath(name.to_owned())
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        FieldPath(format!("{}.{name}", self.0))
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }
}

impl From<&FieldPath> for String {
    fn from(path: &FieldPath) -> String {
        path.0.clone()
    }
}

#[derive(Default)]
pub(crate) struct Causes(Vec<Cause>);

impl Causes {
    pub(crate) fn push(&mut self, cause: Cause) {
        // The API server's aggregate drops repeated messages.
        if !self.0.contains(&cause) {
            self.0.push(cause);
        }
    }

    pub(crate) fn invalid_each(&mut self, path: &FieldPath, value: &str, messages: Vec<String>) {
        for message in messages {
            self.push(Cause::invalid(path, value, message));
        }
    }

    fn into_result(self, pod: &Pod) -> Result<(), Invalid> {
        self.into_invalid("Pod", pod.metadata.name.as_deref().unwrap_or_default())
    }

    /// `Err` with every cause for an object of `kind` named `name`, when there is one.
    pub(crate) fn into_invalid(self, kind: &str, name: &str) -> Result<(), Invalid> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(Invalid {
            kind: kind.to_owned(),
            name: name.to_owned(),
            causes: self.0,
        })
    }
}

fn validate_pod_into(pod: &Pod, causes: &mut Causes) {
    validate_object_meta(&pod.metadata, causes);
    let empty = PodSpec::default();
    validate_pod_spec(pod.spec.as_ref().unwrap_or(&empty), causes);
}

pub(crate) fn validate_object_meta(meta: &ObjectMeta, causes: &mut Causes) {
    let path = FieldPath::root("metadata");
    let name = meta.name.as_deref().unwrap_or_default();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        // A prefix may end with '-': the generated suffix follows it.
        let masked = match generate_name.strip_suffix('-') {
            Some(stem) => format!("{stem}a"),
            None => generate_name.to_owned(),
        };
        causes.invalid_each(
            &path.child("generateName"),
            generate_name,
            is_dns1123_subdomain(&masked),
        );
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            causes.push(Cause::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        causes.invalid_each(&path.child("name"), name, is_dns1123_subdomain(name));
    }
    if let Some(namespace) = meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        causes.invalid_each(
            &path.child("namespace"),
            namespace,
            is_dns1123_label(namespace),
        );
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, &path.child("labels"), causes);
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, &path.child("annotations"), causes);
    }
}

fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath, causes: &mut Causes) {
    for (key, value) in labels {
        causes.invalid_each(path, key, is_qualified_name(key));
        causes.invalid_each(path, value, is_valid_label_value(value));
    }
}

fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &FieldPath,
    causes: &mut Causes,
) {
    let mut total = 0;
    for (key, value) in annotations {
        causes.invalid_each(path, key, is_qualified_name(&key.to_lowercase()));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        causes.push(Cause::too_long(
            path,
            format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        ));
    }
}

fn validate_pod_spec(spec: &PodSpec, causes: &mut Causes) {
    let path = FieldPath::root("spec");
    let volumes = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), causes);

    let containers = &spec.containers;
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let containers_path = path.child("containers");
    if containers.is_empty() {
        causes.push(Cause::required(&containers_path, ""));
    }
    let mut names = BTreeSet::new();
    for (i, container) in containers.iter().enumerate() {
        let path = containers_path.index(i);
        validate_container(container, &path, &volumes, &mut names, causes);
        if container.restart_policy.is_some() {
            causes.push(Cause::forbidden(
                &path.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
        validate_app_probes(container, &path, causes);
    }
    let init_path = path.child("initContainers");
    for (i, container) in init_containers.iter().enumerate() {
        let path = init_path.index(i);
        validate_container(container, &path, &volumes, &mut names, causes);
        validate_init_only(container, &path, causes);
    }

    if spec.host_network == Some(true) {
        for (list_path, list) in [
            (&containers_path, containers.as_slice()),
            (&init_path, init_containers),
        ] {
            for (i, container) in list.iter().enumerate() {
                for (j, port) in container.ports.iter().flatten().enumerate() {
                    if port.host_port.unwrap_or(0) != port.container_port {
                        causes.push(Cause::invalid(
                            &list_path
                                .index(i)
                                .child("ports")
                                .index(j)
                                .child("containerPort"),
                            port.container_port,
                            "must match `hostPort` when `hostNetwork` is true",
                        ));
                    }
                }
            }
        }
    }

    if let Some(policy) = spec.restart_policy.as_deref().filter(|p| !p.is_empty()) {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            causes.push(Cause::not_supported(
                &path.child("restartPolicy"),
                policy,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    let dns_policy = spec.dns_policy.as_deref().unwrap_or_default();
    if !dns_policy.is_empty()
        && !matches!(
            dns_policy,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        causes.push(Cause::not_supported(
            &path.child("dnsPolicy"),
            dns_policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    if let Some(selector) = &spec.node_selector {
        validate_labels(selector, &path.child("nodeSelector"), causes);
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        causes.push(Cause::invalid(
            &path.child("securityContext").child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    validate_dns_config(
        spec.dns_config.as_ref(),
        dns_policy,
        &path.child("dnsConfig"),
        causes,
    );

    if let Some(name) = spec
        .service_account_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        causes.invalid_each(
            &path.child("serviceAccountName"),
            name,
            is_dns1123_subdomain(name),
        );
    }
    if let Some(seconds) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&seconds) {
            causes.push(Cause::invalid(
                &path.child("activeDeadlineSeconds"),
                seconds,
                format!("must be between 1 and {}, inclusive", i32::MAX),
            ));
        }
    }
    if let Some(seconds) = spec.termination_grace_period_seconds {
        if seconds < 0 {
            causes.push(Cause::invalid(
                &path.child("terminationGracePeriodSeconds"),
                seconds,
                IS_NEGATIVE,
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            causes.invalid_each(&path.child(field), value, is_dns1123_label(value));
        }
    }
    if let Some(tolerations) = &spec.tolerations {
        validate_tolerations(tolerations, &path.child("tolerations"), causes);
    }
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let path = path.child("hostAliases").index(i);
        if alias.ip.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid(
                &path.child("ip"),
                alias.ip.as_str(),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        for (j, hostname) in alias.hostnames.iter().flatten().enumerate() {
            causes.invalid_each(
                &path.child("hostnames").index(j),
                hostname,
                is_dns1123_subdomain(hostname),
            );
        }
    }
}

/// Validate the volumes; return the names declared (duplicates included once).
fn validate_volumes(volumes: &[Volume], causes: &mut Causes) -> BTreeSet<String> {
    let path = FieldPath::root("spec").child("volumes");
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let path = path.index(i);
        let name_path = path.child("name");
        if volume.name.is_empty() {
            causes.push(Cause::required(&name_path, ""));
        } else {
            causes.invalid_each(&name_path, &volume.name, is_dns1123_label(&volume.name));
        }
        if !volume.name.is_empty() && !names.insert(volume.name.clone()) {
            causes.push(Cause::duplicate(&name_path, volume.name.as_str()));
        }
        validate_volume_source(volume, &path, causes);
    }
    names
}

fn validate_volume_source(volume: &Volume, path: &FieldPath, causes: &mut Causes) {
    let sources = volume_sources(volume);
    match sources.as_slice() {
        [] => causes.push(Cause::required(path, "must specify a volume type")),
        [_, more @ ..] => {
            for source in more {
                causes.push(Cause::forbidden(
                    &path.child(source),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    for source in &sources {
        if !matches!(
            *source,
            "hostPath" | "emptyDir" | "configMap" | "secret" | "downwardAPI" | "projected"
        ) {
            causes.push(Cause::forbidden(
                &path.child(source),
                "peapod supports only `emptyDir`, `hostPath`, `configMap`, `secret`, `downwardAPI` and `projected` volumes",
            ));
        }
    }
    validate_api_data_volume(volume, path, causes);
    if let Some(host_path) = &volume.host_path {
        let path = path.child("hostPath");
        let path_path = path.child("path");
        if host_path.path.is_empty() {
            causes.push(Cause::required(&path_path, ""));
        } else {
            if !is_absolute(&host_path.path) {
                causes.push(Cause::invalid(
                    &path_path,
                    host_path.path.as_str(),
                    "must be an absolute path (peapod does not resolve relative host paths)",
                ));
            }
            if has_backsteps(&host_path.path) {
                causes.push(Cause::invalid(
                    &path_path,
                    host_path.path.as_str(),
                    "must not contain '..'",
                ));
            }
        }
        const HOST_PATH_TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if let Some(kind) = &host_path.type_ {
            if !HOST_PATH_TYPES.contains(&kind.as_str()) {
                causes.push(Cause::not_supported(
                    &path.child("type"),
                    kind.as_str(),
                    HOST_PATH_TYPES,
                ));
            }
        }
    }
    if let Some(empty_dir) = &volume.empty_dir {
        let path = path.child("emptyDir");
        let medium = empty_dir.medium.as_deref().unwrap_or_default();
        if !matches!(medium, "" | "Memory") {
            let detail = "supported values: \"\", \"Memory\" (peapod does not provide HugePages)";
            causes.push(Cause {
                detail: detail.to_owned(),
                ..Cause::not_supported(&path.child("medium"), medium, &[])
            });
        }
        if let Some(limit) = &empty_dir.size_limit {
            validate_quantity(&limit.0, &path.child("sizeLimit"), causes);
        }
    }
}

/// Checks shared by init and app containers; `names` collects container names across both.
fn validate_container(
    container: &Container,
    path: &FieldPath,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    causes: &mut Causes,
) {
    let name_path = path.child("name");
    if container.name.is_empty() {
        causes.push(Cause::required(&name_path, ""));
    } else {
        causes.invalid_each(
            &name_path,
            &container.name,
            is_dns1123_label(&container.name),
        );
        if !names.insert(container.name.clone()) {
            causes.push(Cause::duplicate(&name_path, container.name.as_str()));
        }
    }

    let image = container.image.as_deref().unwrap_or_default();
    let image_path = path.child("image");
    if image.is_empty() {
        causes.push(Cause::required(&image_path, ""));
    } else if image.trim() != image {
        causes.push(Cause::invalid(
            &image_path,
            image,
            "must not have leading or trailing whitespace",
        ));
    } else if image.contains(char::is_whitespace) {
        causes.push(Cause::invalid(
            &image_path,
            image,
            "must not contain whitespace (not a valid image reference for peapod)",
        ));
    }

    validate_ports(container, &path.child("ports"), causes);
    validate_env(
        container.env.as_deref().unwrap_or_default(),
        &path.child("env"),
        causes,
    );
    validate_env_from(
        container.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
        causes,
    );
    validate_volume_mounts(
        container.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        container,
        &path.child("volumeMounts"),
        causes,
    );

    if let Some(policy) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            causes.push(Cause::not_supported(
                &path.child("imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
    if let Some(resources) = &container.resources {
        validate_resources(resources, &path.child("resources"), causes);
    }
    if let Some(policy) = container
        .termination_message_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !matches!(policy, "File" | "FallbackToLogsOnError") {
            causes.push(Cause::invalid(
                &path.child("terminationMessagePolicy"),
                policy,
                "must be 'File' or 'FallbackToLogsOnError'",
            ));
        }
    }
    for (field, probe) in [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ] {
        if let Some(probe) = probe {
            validate_probe(probe, &path.child(field), causes);
        }
    }
}

fn validate_ports(container: &Container, path: &FieldPath, causes: &mut Causes) {
    let mut names = BTreeSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let path = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let messages = is_valid_port_name(name);
            if !messages.is_empty() {
                causes.invalid_each(&path.child("name"), name, messages);
            } else if !names.insert(name) {
                causes.push(Cause::duplicate(&path.child("name"), name));
            }
        }
        if port.container_port == 0 {
            causes.push(Cause::required(&path.child("containerPort"), ""));
        } else {
            for message in is_valid_port_num(port.container_port.into()) {
                causes.push(Cause::invalid(
                    &path.child("containerPort"),
                    port.container_port,
                    message,
                ));
            }
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            for message in is_valid_port_num(host_port.into()) {
                causes.push(Cause::invalid(&path.child("hostPort"), host_port, message));
            }
        }
        if let Some(protocol) = port.protocol.as_deref().filter(|p| !p.is_empty()) {
            if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
                causes.push(Cause::not_supported(
                    &path.child("protocol"),
                    protocol,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
        if let Some(ip) = port.host_ip.as_deref().filter(|p| !p.is_empty()) {
            if ip.parse::<std::net::IpAddr>().is_err() {
                causes.push(Cause::invalid(
                    &path.child("hostIP"),
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
    }
}

fn validate_env(vars: &[EnvVar], path: &FieldPath, causes: &mut Causes) {
    for (i, var) in vars.iter().enumerate() {
        let path = path.index(i);
        if var.name.is_empty() {
            causes.push(Cause::required(&path.child("name"), ""));
        } else {
            causes.invalid_each(&path.child("name"), &var.name, is_env_var_name(&var.name));
        }
        let Some(source) = &var.value_from else {
            continue;
        };
        let path = path.child("valueFrom");
        let count = [
            source.field_ref.is_some(),
            source.resource_field_ref.is_some(),
            source.config_map_key_ref.is_some(),
            source.secret_key_ref.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if count == 0 {
            causes.push(Cause::invalid(
                &path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if count > 1 {
            causes.push(Cause::invalid(
                &path,
                "",
                "may not have more than one field specified at a time",
            ));
        } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            causes.push(Cause::invalid(
                &path,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        if let Some(field_ref) = &source.field_ref {
            validate_field_ref(field_ref, &path.child("fieldRef"), causes);
        }
        if let Some(r) = &source.config_map_key_ref {
            validate_key_selector(&r.name, &r.key, &path.child("configMapKeyRef"), causes);
        }
        if let Some(r) = &source.secret_key_ref {
            validate_key_selector(&r.name, &r.key, &path.child("secretKeyRef"), causes);
        }
    }
}

/// A `configMapKeyRef`/`secretKeyRef`: a DNS-subdomain name and a config key.
fn validate_key_selector(name: &str, key: &str, path: &FieldPath, causes: &mut Causes) {
    validate_object_name(name, &path.child("name"), causes);
    if key.is_empty() {
        causes.push(Cause::required(&path.child("key"), ""));
    } else {
        causes.invalid_each(&path.child("key"), key, is_config_map_key(key));
    }
}

/// A referenced ConfigMap's or Secret's name: required, a DNS subdomain.
fn validate_object_name(name: &str, path: &FieldPath, causes: &mut Causes) {
    if name.is_empty() {
        causes.push(Cause::required(path, ""));
    } else {
        causes.invalid_each(path, name, is_dns1123_subdomain(name));
    }
}

fn validate_env_from(sources: &[EnvFromSource], path: &FieldPath, causes: &mut Causes) {
    for (i, source) in sources.iter().enumerate() {
        let item = path.index(i);
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            causes.invalid_each(&item.child("prefix"), prefix, is_env_var_name(prefix));
        }
        let mut count = 0;
        if let Some(r) = &source.config_map_ref {
            count += 1;
            validate_object_name(&r.name, &item.child("configMapRef").child("name"), causes);
        }
        if let Some(r) = &source.secret_ref {
            count += 1;
            validate_object_name(&r.name, &item.child("secretRef").child("name"), causes);
        }
        if count == 0 {
            causes.push(Cause::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            causes.push(Cause::forbidden(
                &item,
                "may not have more than one field specified at a time",
            ));
        }
    }
}

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn validate_mode(mode: Option<i32>, path: &FieldPath, causes: &mut Causes) {
    if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
        causes.push(Cause::invalid(path, mode, FILE_MODE_ERROR));
    }
}

/// The API server's `validateLocalNonReservedPath`: relative, no `..` element, not
/// starting with `..`.
fn validate_local_path(target: &str, path: &FieldPath, causes: &mut Causes) {
    if is_absolute(target) {
        causes.push(Cause::invalid(path, target, "must be a relative path"));
    }
    if has_backsteps(target) {
        causes.push(Cause::invalid(path, target, "must not contain '..'"));
    }
    if target.starts_with("..") && !target.starts_with("../") {
        causes.push(Cause::invalid(path, target, "must not start with '..'"));
    }
}

fn validate_items(items: &[KeyToPath], path: &FieldPath, causes: &mut Causes) {
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        if item.key.is_empty() {
            causes.push(Cause::required(&path.child("key"), ""));
        }
        if item.path.is_empty() {
            causes.push(Cause::required(&path.child("path"), ""));
        }
        validate_local_path(&item.path, &path.child("path"), causes);
        validate_mode(item.mode, &path.child("mode"), causes);
    }
}

fn validate_downward_api_files(
    items: &[DownwardAPIVolumeFile],
    path: &FieldPath,
    causes: &mut Causes,
) {
    const SUPPORTED: &[&str] = &[
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
    ];
    const RESOURCES: &[&str] = &[
        "limits.cpu",
        "limits.ephemeral-storage",
        "limits.memory",
        "requests.cpu",
        "requests.ephemeral-storage",
        "requests.memory",
    ];
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        if item.path.is_empty() {
            causes.push(Cause::required(&path.child("path"), ""));
        }
        validate_local_path(&item.path, &path.child("path"), causes);
        validate_mode(item.mode, &path.child("mode"), causes);
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(field_ref), None) => {
                let field_path = field_ref.field_path.as_str();
                let subscripted = ["metadata.labels['", "metadata.annotations['"]
                    .iter()
                    .any(|prefix| field_path.starts_with(prefix) && field_path.ends_with("']"));
                let fpath = path.child("fieldRef");
                if field_path.is_empty() {
                    causes.push(Cause::required(&fpath.child("fieldPath"), ""));
                } else if !subscripted && !SUPPORTED.contains(&field_path) {
                    causes.push(Cause::not_supported(
                        &fpath.child("fieldPath"),
                        field_path,
                        SUPPORTED,
                    ));
                }
            }
            (None, Some(resource_ref)) => {
                let rpath = path.child("resourceFieldRef");
                if resource_ref
                    .container_name
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
                {
                    causes.push(Cause::required(&rpath.child("containerName"), ""));
                }
                if resource_ref.resource.is_empty() {
                    causes.push(Cause::required(&rpath.child("resource"), ""));
                } else if !RESOURCES.contains(&resource_ref.resource.as_str()) {
                    causes.push(Cause::not_supported(
                        &rpath.child("resource"),
                        resource_ref.resource.as_str(),
                        RESOURCES,
                    ));
                }
            }
            (Some(_), Some(_)) => causes.push(Cause::invalid(
                &path,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            )),
            (None, None) => causes.push(Cause::required(
                &path,
                "one of fieldRef and resourceFieldRef is required",
            )),
        }
    }
}

/// configMap, secret, downwardAPI and projected volumes, as `validateVolumeSource` checks
/// them (`projected` without service account tokens or cluster trust bundles: peapod has no
/// service accounts).
fn validate_api_data_volume(volume: &Volume, path: &FieldPath, causes: &mut Causes) {
    if let Some(source) = &volume.config_map {
        let path = path.child("configMap");
        validate_object_name(&source.name, &path.child("name"), causes);
        validate_mode(source.default_mode, &path.child("defaultMode"), causes);
        validate_items(
            source.items.as_deref().unwrap_or_default(),
            &path.child("items"),
            causes,
        );
    }
    if let Some(source) = &volume.secret {
        let path = path.child("secret");
        validate_object_name(
            source.secret_name.as_deref().unwrap_or_default(),
            &path.child("secretName"),
            causes,
        );
        validate_mode(source.default_mode, &path.child("defaultMode"), causes);
        validate_items(
            source.items.as_deref().unwrap_or_default(),
            &path.child("items"),
            causes,
        );
    }
    if let Some(source) = &volume.downward_api {
        let path = path.child("downwardAPI");
        validate_mode(source.default_mode, &path.child("defaultMode"), causes);
        validate_downward_api_files(
            source.items.as_deref().unwrap_or_default(),
            &path.child("items"),
            causes,
        );
    }
    if let Some(source) = &volume.projected {
        let path = path.child("projected");
        validate_mode(source.default_mode, &path.child("defaultMode"), causes);
        let mut paths = BTreeSet::new();
        for (i, projection) in source.sources.iter().flatten().enumerate() {
            let path = path.child("sources").index(i);
            let mut set = Vec::new();
            let mut targets: Vec<&str> = Vec::new();
            if let Some(p) = &projection.config_map {
                set.push("configMap");
                let path = path.child("configMap");
                validate_object_name(&p.name, &path.child("name"), causes);
                let items = p.items.as_deref().unwrap_or_default();
                validate_items(items, &path.child("items"), causes);
                targets.extend(items.iter().map(|k| k.path.as_str()));
            }
            if let Some(p) = &projection.secret {
                set.push("secret");
                let path = path.child("secret");
                validate_object_name(&p.name, &path.child("name"), causes);
                let items = p.items.as_deref().unwrap_or_default();
                validate_items(items, &path.child("items"), causes);
                targets.extend(items.iter().map(|k| k.path.as_str()));
            }
            if let Some(p) = &projection.downward_api {
                set.push("downwardAPI");
                let items = p.items.as_deref().unwrap_or_default();
                validate_downward_api_files(
                    items,
                    &path.child("downwardAPI").child("items"),
                    causes,
                );
                targets.extend(items.iter().map(|f| f.path.as_str()));
            }
            for (field, is_set) in [
                (
                    "serviceAccountToken",
                    projection.service_account_token.is_some(),
                ),
                (
                    "clusterTrustBundle",
                    projection.cluster_trust_bundle.is_some(),
                ),
            ] {
                if is_set {
                    set.push(field);
                    causes.push(Cause::forbidden(
                        &path.child(field),
                        "peapod does not provide service account tokens or cluster trust bundles",
                    ));
                }
            }
            match set.as_slice() {
                [] => causes.push(Cause::required(&path, "must specify exactly 1 volume type")),
                [_] => {}
                [_, more @ ..] => {
                    for field in more {
                        causes.push(Cause::forbidden(
                            &path.child(field),
                            "may not specify more than 1 volume type per source",
                        ));
                    }
                }
            }
            for target in targets {
                if !target.is_empty() && !paths.insert(target.to_owned()) {
                    causes.push(Cause::invalid(&path, target, "conflicting duplicate paths"));
                }
            }
        }
    }
}

fn validate_field_ref(selector: &ObjectFieldSelector, path: &FieldPath, causes: &mut Causes) {
    const SUPPORTED: &[&str] = &[
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ];
    let field_path = selector.field_path.as_str();
    if field_path.is_empty() {
        causes.push(Cause::required(&path.child("fieldPath"), ""));
        return;
    }
    let subscripted = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|prefix| field_path.starts_with(prefix) && field_path.ends_with("']"));
    if !subscripted && !SUPPORTED.contains(&field_path) {
        causes.push(Cause::not_supported(
            &path.child("fieldPath"),
            field_path,
            SUPPORTED,
        ));
    }
    if let Some(version) = selector.api_version.as_deref().filter(|v| !v.is_empty()) {
        if version != "v1" {
            causes.push(Cause::invalid(
                &path.child("apiVersion"),
                version,
                "only `v1` field selectors are supported",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    container: &Container,
    path: &FieldPath,
    causes: &mut Causes,
) {
    let mut mount_points = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let path = path.index(i);
        if mount.name.is_empty() {
            causes.push(Cause::required(&path.child("name"), ""));
        } else if !volumes.contains(&mount.name) {
            causes.push(Cause::not_found(&path.child("name"), mount.name.as_str()));
        }
        let mount_path = path.child("mountPath");
        if mount.mount_path.is_empty() {
            causes.push(Cause::required(&mount_path, ""));
        } else if !is_absolute(&mount.mount_path) {
            causes.push(Cause::invalid(
                &mount_path,
                mount.mount_path.as_str(),
                "must be an absolute path (peapod does not resolve mount paths against the working directory)",
            ));
        }
        if !mount_points.insert(mount.mount_path.as_str()) {
            causes.push(Cause::invalid(
                &mount_path,
                mount.mount_path.as_str(),
                "must be unique",
            ));
        }
        for (field, value) in [
            ("subPath", &mount.sub_path),
            ("subPathExpr", &mount.sub_path_expr),
        ] {
            let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
                continue;
            };
            let field_path = path.child(field);
            if is_absolute(value) {
                causes.push(Cause::invalid(
                    &field_path,
                    value,
                    "must be a relative path",
                ));
            }
            if has_backsteps(value) {
                causes.push(Cause::invalid(&field_path, value, "must not contain '..'"));
            }
        }
        if mount.sub_path.as_deref().is_some_and(|v| !v.is_empty()) {
            if let Some(expr) = mount.sub_path_expr.as_deref().filter(|v| !v.is_empty()) {
                causes.push(Cause::invalid(
                    &path.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
        }
        if let Some(propagation) = mount.mount_propagation.as_deref() {
            let propagation_path = path.child("mountPropagation");
            if !matches!(propagation, "None" | "HostToContainer" | "Bidirectional") {
                causes.push(Cause::not_supported(
                    &propagation_path,
                    propagation,
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            } else if propagation == "Bidirectional" {
                let privileged = container
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false);
                if !privileged {
                    causes.push(Cause::forbidden(
                        &propagation_path,
                        "Bidirectional mount propagation is available only to privileged containers",
                    ));
                }
            }
        }
    }
}

fn validate_resources(resources: &ResourceRequirements, path: &FieldPath, causes: &mut Causes) {
    let empty = BTreeMap::new();
    let limits = resources.limits.as_ref().unwrap_or(&empty);
    let requests = resources.requests.as_ref().unwrap_or(&empty);
    for (field, list) in [("limits", limits), ("requests", requests)] {
        for (name, quantity) in list {
            let path = path.child(field).key(name);
            let standard = name.contains('/')
                || matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-");
            if !standard {
                causes.push(Cause::invalid(
                    &path,
                    name.as_str(),
                    "must be a standard resource for containers",
                ));
            }
            validate_quantity(&quantity.0, &path, causes);
        }
    }
    for (name, request) in requests {
        let (Some(limit), Some(request_value)) = (limits.get(name), parse_quantity(&request.0))
        else {
            continue;
        };
        let Some(limit_value) = parse_quantity(&limit.0) else {
            continue;
        };
        if request_value > limit_value {
            causes.push(Cause::invalid(
                &path.child("requests").key(name),
                request.0.as_str(),
                format!("must be less than or equal to {name} limit of {}", limit.0),
            ));
        }
    }
}

fn validate_quantity(text: &str, path: &FieldPath, causes: &mut Causes) {
    match parse_quantity(text) {
        None => causes.push(Cause::invalid(
            path,
            text,
            format!("quantities must match the regular expression '{QUANTITY_FMT}'"),
        )),
        Some(value) if value < 0.0 => causes.push(Cause::invalid(path, text, IS_NEGATIVE)),
        Some(_) => {}
    }
}

fn validate_probe(probe: &Probe, path: &FieldPath, causes: &mut Causes) {
    let handlers = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ];
    let set: Vec<&str> = handlers
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    match set.as_slice() {
        [] => causes.push(Cause::required(path, "must specify a handler type")),
        [_, more @ ..] => {
            for handler in more {
                causes.push(Cause::forbidden(
                    &path.child(handler),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    if let Some(exec) = &probe.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            causes.push(Cause::required(&path.child("exec").child("command"), ""));
        }
    }
    if let Some(http) = &probe.http_get {
        let path = path.child("httpGet");
        validate_port_num_or_name(&http.port, &path.child("port"), causes);
        if let Some(scheme) = http.scheme.as_deref().filter(|s| !s.is_empty()) {
            if !matches!(scheme, "HTTP" | "HTTPS") {
                causes.push(Cause::not_supported(
                    &path.child("scheme"),
                    scheme,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        validate_port_num_or_name(&tcp.port, &path.child("tcpSocket").child("port"), causes);
    }
    if let Some(grpc) = &probe.grpc {
        for message in is_valid_port_num(grpc.port.into()) {
            causes.push(Cause::invalid(
                &path.child("grpc").child("port"),
                grpc.port,
                message,
            ));
        }
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value.filter(|v| *v < 0) {
            causes.push(Cause::invalid(&path.child(field), value, IS_NEGATIVE));
        }
    }
    if let Some(seconds) = probe.termination_grace_period_seconds.filter(|s| *s <= 0) {
        causes.push(Cause::invalid(
            &path.child("terminationGracePeriodSeconds"),
            seconds,
            "must be greater than 0",
        ));
    }
}

fn validate_port_num_or_name(port: &IntOrString, path: &FieldPath, causes: &mut Causes) {
    match port {
        IntOrString::Int(number) => {
            for message in is_valid_port_num((*number).into()) {
                causes.push(Cause::invalid(path, *number, message));
            }
        }
        IntOrString::String(name) => causes.invalid_each(path, name, is_valid_port_name(name)),
    }
}

/// Probe rules of app containers (and sidecars): liveness and startup probes need a
/// success threshold of 1, readiness probes no termination grace period.
fn validate_app_probes(container: &Container, path: &FieldPath, causes: &mut Causes) {
    for (field, probe) in [
        ("livenessProbe", &container.liveness_probe),
        ("startupProbe", &container.startup_probe),
    ] {
        if let Some(threshold) = probe
            .as_ref()
            .and_then(|p| p.success_threshold)
            .filter(|t| *t != 1)
        {
            causes.push(Cause::invalid(
                &path.child(field).child("successThreshold"),
                threshold,
                "must be 1",
            ));
        }
    }
    if let Some(seconds) = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.termination_grace_period_seconds)
    {
        causes.push(Cause::invalid(
            &path
                .child("readinessProbe")
                .child("terminationGracePeriodSeconds"),
            seconds,
            "must not be set for readinessProbes",
        ));
    }
}

/// Rules for init containers: only `restartPolicy: Always` (a sidecar) may be set, and only
/// sidecars may have lifecycle hooks and probes.
fn validate_init_only(container: &Container, path: &FieldPath, causes: &mut Causes) {
    let sidecar = match container.restart_policy.as_deref() {
        None => false,
        Some("Always") => true,
        Some(policy) => {
            causes.push(Cause::not_supported(
                &path.child("restartPolicy"),
                policy,
                &["Always"],
            ));
            false
        }
    };
    if sidecar {
        validate_app_probes(container, path, causes);
        return;
    }
    for (field, set) in [
        ("lifecycle", container.lifecycle.is_some()),
        ("livenessProbe", container.liveness_probe.is_some()),
        ("readinessProbe", container.readiness_probe.is_some()),
        ("startupProbe", container.startup_probe.is_some()),
    ] {
        if set {
            causes.push(Cause::forbidden(
                &path.child(field),
                INIT_ONLY_WITH_RESTART_ALWAYS,
            ));
        }
    }
}

fn validate_dns_config(
    config: Option<&PodDNSConfig>,
    dns_policy: &str,
    path: &FieldPath,
    causes: &mut Causes,
) {
    let Some(config) = config else {
        if dns_policy == "None" {
            causes.push(Cause::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
        }
        return;
    };
    let nameservers = config.nameservers.as_deref().unwrap_or_default();
    if nameservers.len() > 3 {
        causes.push(Cause::invalid(
            &path.child("nameservers"),
            nameservers.to_vec(),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, server) in nameservers.iter().enumerate() {
        if server.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid(
                &path.child("nameservers").index(i),
                server.as_str(),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if dns_policy == "None" && nameservers.is_empty() {
        causes.push(Cause::required(
            &path.child("nameservers"),
            "must provide at least one DNS nameserver when `dnsPolicy` is None",
        ));
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        causes.push(Cause::invalid(
            &path.child("searches"),
            searches.to_vec(),
            "must not have more than 32 search paths",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search != "." {
            let domain = search.strip_suffix('.').unwrap_or(search);
            causes.invalid_each(
                &path.child("searches").index(i),
                domain,
                is_dns1123_subdomain(domain),
            );
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().is_none_or(str::is_empty) {
            causes.push(Cause::required(
                &path.child("options").index(i),
                "Option.Name must not be empty",
            ));
        }
    }
}

fn validate_tolerations(tolerations: &[Toleration], path: &FieldPath, causes: &mut Causes) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let path = path.index(i);
        let key = toleration.key.as_deref().unwrap_or_default();
        let operator = toleration.operator.as_deref().unwrap_or_default();
        let value = toleration.value.as_deref().unwrap_or_default();
        let effect = toleration.effect.as_deref().unwrap_or_default();
        if !key.is_empty() {
            causes.invalid_each(&path.child("key"), key, is_qualified_name(key));
        }
        if key.is_empty() && operator != "Exists" {
            causes.push(Cause::invalid(
                &path.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            causes.push(Cause::invalid(
                &path.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let messages = is_valid_label_value(value);
                if !messages.is_empty() {
                    causes.push(Cause::invalid(
                        &path.child("operator"),
                        value,
                        messages.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    causes.push(Cause::invalid(
                        &path.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => causes.push(Cause::not_supported(
                &path.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            causes.push(Cause::not_supported(
                &path.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Updates.

pub(crate) fn validate_meta_update(old: &ObjectMeta, new: &ObjectMeta, causes: &mut Causes) {
    let path = FieldPath::root("metadata");
    let fields = [
        ("name", &old.name, &new.name),
        ("namespace", &old.namespace, &new.namespace),
    ];
    for (field, old, new) in fields {
        if old.as_deref().unwrap_or_default() != new.as_deref().unwrap_or_default() {
            causes.push(Cause::invalid(
                &path.child(field),
                new.as_deref().unwrap_or_default(),
                FIELD_IMMUTABLE,
            ));
        }
    }
    // An update that names no uid keeps the stored one, as the API server's BeforeUpdate does.
    let new_uid = new.uid.as_deref().unwrap_or_default();
    if !new_uid.is_empty() && new_uid != old.uid.as_deref().unwrap_or_default() {
        causes.push(Cause::invalid(&path.child("uid"), new_uid, FIELD_IMMUTABLE));
    }
}

fn validate_spec_update(old: &PodSpec, new: &PodSpec, causes: &mut Causes) {
    let path = FieldPath::root("spec");
    let lists = [
        (
            "containers",
            old.containers.as_slice(),
            new.containers.as_slice(),
        ),
        (
            "initContainers",
            old.init_containers.as_deref().unwrap_or_default(),
            new.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (field, old, new) in lists {
        if old.len() != new.len() {
            causes.push(Cause::forbidden(
                &path.child(field),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }

    match (old.active_deadline_seconds, new.active_deadline_seconds) {
        (_, Some(seconds)) if !(0..=i64::from(i32::MAX)).contains(&seconds) => {
            causes.push(Cause::invalid(
                &path.child("activeDeadlineSeconds"),
                seconds,
                format!("must be between 0 and {}, inclusive", i32::MAX),
            ));
            return;
        }
        (Some(old_seconds), Some(seconds)) if old_seconds < seconds => {
            causes.push(Cause::invalid(
                &path.child("activeDeadlineSeconds"),
                seconds,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (Some(_), None) => causes.push(Cause::invalid(
            &path.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    validate_only_added_tolerations(
        old.tolerations.as_deref().unwrap_or_default(),
        new.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
        causes,
    );

    // Undo the changes an update may make, then require the rest to be equal.
    let mut munged = new.clone();
    for (container, old) in munged.containers.iter_mut().zip(&old.containers) {
        container.image.clone_from(&old.image);
    }
    if let (Some(containers), Some(old)) = (munged.init_containers.as_mut(), &old.init_containers) {
        for (container, old) in containers.iter_mut().zip(old) {
            container.image.clone_from(&old.image);
        }
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.scheduling_gates.clone_from(&old.scheduling_gates);
    munged.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|s| s < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }

    let old_value = semantic_value(old);
    let new_value = semantic_value(&munged);
    if old_value != new_value {
        let mut diff = Vec::new();
        spec_diff(&old_value, &new_value, "spec", &mut diff);
        causes.push(Cause::forbidden(
            &path,
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{}",
                diff.join("\n")
            ),
        ));
    }
}

fn validate_only_added_tolerations(
    old: &[Toleration],
    new: &[Toleration],
    path: &FieldPath,
    causes: &mut Causes,
) {
    for old in old {
        let kept = new.iter().any(|new| {
            let mut old = old.clone();
            old.toleration_seconds = new.toleration_seconds;
            old == *new
        });
        if !kept {
            causes.push(Cause::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}

/// A spec as JSON with the API server's semantic equality: an empty list equals no list.
fn semantic_value(spec: &PodSpec) -> Value {
    fn prune(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !matches!(v, Value::Array(items) if items.is_empty()));
                map.values_mut().for_each(prune);
            }
            Value::Array(items) => items.iter_mut().for_each(prune),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    prune(&mut value);
    value
}

/// Lines `path: old -> new` for every leaf that differs, for the update error's detail.
fn spec_diff(old: &Value, new: &Value, path: &str, lines: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old_map), Value::Object(new_map)) => {
            let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
            for key in keys {
                let old = old_map.get(key).unwrap_or(&Value::Null);
                let new = new_map.get(key).unwrap_or(&Value::Null);
                spec_diff(old, new, &format!("{path}.{key}"), lines);
            }
        }
        (Value::Array(old_items), Value::Array(new_items))
            if old_items.len() == new_items.len() =>
        {
            for (i, (old, new)) in old_items.iter().zip(new_items).enumerate() {
                spec_diff(old, new, &format!("{path}[{i}]"), lines);
            }
        }
        (old, new) if old != new => lines.push(format!("  {path}: {old} -> {new}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_pods;
    use crate::defaults::apply_defaults;

    fn pod(yaml: &str) -> Pod {
        let mut pod = decode_pods(yaml).unwrap().remove(0);
        apply_defaults(&mut pod);
        pod
    }

    const BASE: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '1000']\n";

    #[test]
    fn a_plain_pod_is_valid() {
        validate_pod(&pod(BASE)).unwrap();
    }

    #[test]
    fn one_cause_renders_like_kubectl() {
        let err = validate_pod(&pod(&BASE.replace("name: c", "name: Bad_Name"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The Pod \"x\" is invalid: spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(err.causes[0].kind.reason(), "FieldValueInvalid");
    }

    #[test]
    fn several_causes_are_reported_together_in_brackets() {
        let yaml = BASE
            .replace("    image: busybox\n", "    imagePullPolicy: Sometimes\n")
            .replace("  containers:", "  restartPolicy: Sometimes\n  containers:");
        let err = validate_pod(&pod(&yaml)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The Pod \"x\" is invalid: [spec.containers[0].image: Required value, spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\", spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        );
    }

    #[test]
    fn numbers_are_printed_bare() {
        let yaml = BASE.replace(
            "    image: busybox\n",
            "    image: busybox\n    ports:\n    - containerPort: 70000\n",
        );
        let err = validate_pod(&pod(&yaml)).unwrap_err();
        assert_eq!(
            err.causes[0].to_string(),
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
    }

    #[test]
    fn missing_containers_and_name() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {}\n");
        let err = validate_pod(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The Pod \"\" is invalid: [metadata.name: Required value: name or generateName is required, spec.containers: Required value]"
        );
    }

    #[test]
    fn duplicate_names_across_init_and_app_containers() {
        let yaml = format!("{BASE}  initContainers:\n  - name: c\n    image: busybox\n");
        let err = validate_pod(&pod(&yaml)).unwrap_err();
        assert_eq!(
            err.causes,
            vec![Cause::duplicate("spec.initContainers[0].name", "c")]
        );
    }

    #[test]
    fn a_volume_needs_exactly_one_source_before_defaulting() {
        let mut p = decode_pods(&BASE.replace(
            "  containers:",
            "  volumes:\n  - name: nothing\n  containers:",
        ))
        .unwrap()
        .remove(0);
        let err = validate_pod(&p).unwrap_err();
        assert_eq!(
            err.causes,
            vec![Cause::required(
                "spec.volumes[0]",
                "must specify a volume type"
            )]
        );
        // Defaulting gives such a volume an emptyDir, as the API server does.
        apply_defaults(&mut p);
        validate_pod(&p).unwrap();
    }

    #[test]
    fn sidecars_may_have_probes_and_restart_always() {
        let yaml = format!(
            "{BASE}  initContainers:\n  - name: side\n    image: busybox\n    restartPolicy: Always\n    livenessProbe:\n      exec:\n        command: [\"true\"]\n"
        );
        validate_pod(&pod(&yaml)).unwrap();
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1"), Some(1.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("-2k"), Some(-2000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Gb"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn update_may_change_images() {
        // The tag decides the defaulted pull policy: keep it unchanged between the two.
        let old = pod(&BASE.replace("image: busybox", "image: busybox:1.35"));
        let new = pod(&BASE.replace("image: busybox", "image: busybox:1.36"));
        validate_update(&old, &new).unwrap();
        let mut labelled = old.clone();
        labelled.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        validate_update(&old, &labelled).unwrap();
    }

    #[test]
    fn update_may_not_change_the_command() {
        let old = pod(BASE);
        let new = pod(&BASE.replace("'1000'", "'5'"));
        let err = validate_update(&old, &new).unwrap_err();
        assert_eq!(err.causes.len(), 1);
        let message = err.to_string();
        assert!(message.starts_with("The Pod \"x\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{message}");
        assert!(
            message.contains("spec.containers[0].command[1]: \"1000\" -> \"5\""),
            "{message}"
        );
    }

    #[test]
    fn update_rules_for_deadlines_tolerations_and_identity() {
        let old = pod(&BASE.replace("  containers:", "  activeDeadlineSeconds: 100\n  tolerations:\n  - key: a\n    operator: Exists\n  containers:"));
        let lower = pod(&BASE.replace("  containers:", "  activeDeadlineSeconds: 50\n  tolerations:\n  - key: a\n    operator: Exists\n  - key: b\n    operator: Exists\n  containers:"));
        validate_update(&old, &lower).unwrap();
        let higher = pod(&BASE.replace("  containers:", "  activeDeadlineSeconds: 200\n  tolerations:\n  - key: a\n    operator: Exists\n  containers:"));
        let err = validate_update(&old, &higher).unwrap_err();
        assert_eq!(
            err.causes[0].detail,
            "must be less than or equal to previous value"
        );
        let removed = pod(&BASE.replace(
            "  containers:",
            "  activeDeadlineSeconds: 100\n  containers:",
        ));
        let err = validate_update(&old, &removed).unwrap_err();
        assert_eq!(
            err.causes[0].detail,
            "existing toleration can not be modified except its tolerationSeconds"
        );

        let renamed = pod(&BASE.replace("name: x", "name: z"));
        let err = validate_update(&pod(BASE), &renamed).unwrap_err();
        assert_eq!(
            err.causes[0].to_string(),
            "metadata.name: Invalid value: \"z\": field is immutable"
        );
    }

    #[test]
    fn undefaulted_pods_compare_fairly_on_update() {
        let old = pod(BASE);
        let raw = decode_pods(BASE).unwrap().remove(0);
        validate_update(&old, &raw).unwrap();
    }

    #[test]
    fn label_values_and_keys() {
        let yaml = BASE.replace(
            "  name: x\n",
            "  name: x\n  labels:\n    'a/b/c': ok\n    good: 'bad value'\n",
        );
        let err = validate_pod(&pod(&yaml)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"), "{text}");
        assert!(text.contains("metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string"), "{text}");
    }
}
