//! ConfigMaps and Secrets: their store (`lib/objects/<namespace>/{configmaps,secrets}/
//! <name>.json`, Secrets 0600 in 0700 directories), what pods take from them — environment
//! variables (`env[].valueFrom`, `envFrom`), the files of configMap, secret, downwardAPI and
//! projected volumes, registry credentials (`imagePullSecrets`) — and the kubelet's
//! AtomicWriter that puts a volume's files in place.
//!
//! Resolution is pure (a namespace's objects are read once into [`NamespaceObjects`]);
//! decoding and validation are `peapod_api`'s. The one effect on the host beyond files is
//! [`prepare_api_volume`]'s tmpfs (read-only once written, as the kubelet mounts these
//! volumes read-only), which the pod's teardown unmounts with its other volumes.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, EnvVar, KeyToPath, Pod, ResourceFieldSelector,
    Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use peapod_api::validate::Invalid;
use peapod_store::Lock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Engine;
use crate::pod::{k8s_time, Applied};

/// The mode of a volume file when neither the item nor the volume sets one.
const DEFAULT_FILE_MODE: i32 = 0o644;

/// A kind of object kept here: ConfigMap or Secret.
pub trait StoredObject: Clone + Serialize + DeserializeOwned + PartialEq + Send + 'static {
    /// `ConfigMap`.
    const KIND: &'static str;
    /// `configmaps`, the API resource and the store directory.
    const RESOURCE: &'static str;
    /// `configmap`, as kubectl prints `configmap/x created` and the kubelet's errors.
    const SINGULAR: &'static str;
    /// Whether the files are private (Secrets).
    const PRIVATE: bool;
    /// Its metadata.
    fn meta(&self) -> &ObjectMeta;
    /// Its metadata, mutable.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// What the API server does before validating (Secrets: stringData, type).
    fn normalize(&mut self) {}
    /// Validation for creation.
    fn validate(&self) -> Result<(), Invalid>;
    /// Validation of an update of `old` into `self`.
    fn validate_update(&self, old: &Self) -> Result<(), Invalid>;
    /// Whether `self` says the same as `other` (what `apply` compares: labels, annotations
    /// and content; not the fields the server sets).
    fn same_content(&self, other: &Self) -> bool;
}

impl StoredObject for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const RESOURCE: &'static str = "configmaps";
    const SINGULAR: &'static str = "configmap";
    const PRIVATE: bool = false;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn validate(&self) -> Result<(), Invalid> {
        peapod_api::objects::validate_config_map(self)
    }
    fn validate_update(&self, old: &Self) -> Result<(), Invalid> {
        peapod_api::objects::validate_config_map_update(old, self)
    }
    fn same_content(&self, other: &Self) -> bool {
        same_meta(&self.metadata, &other.metadata)
            && self.data.clone().unwrap_or_default() == other.data.clone().unwrap_or_default()
            && self.binary_data.clone().unwrap_or_default()
                == other.binary_data.clone().unwrap_or_default()
            && self.immutable == other.immutable
    }
}

impl StoredObject for Secret {
    const KIND: &'static str = "Secret";
    const RESOURCE: &'static str = "secrets";
    const SINGULAR: &'static str = "secret";
    const PRIVATE: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn normalize(&mut self) {
        peapod_api::objects::normalize_secret(self);
    }
    fn validate(&self) -> Result<(), Invalid> {
        peapod_api::objects::validate_secret(self)
    }
    fn validate_update(&self, old: &Self) -> Result<(), Invalid> {
        peapod_api::objects::validate_secret_update(old, self)
    }
    fn same_content(&self, other: &Self) -> bool {
        same_meta(&self.metadata, &other.metadata)
            && self.data.clone().unwrap_or_default() == other.data.clone().unwrap_or_default()
            && self.type_ == other.type_
            && self.immutable == other.immutable
    }
}

fn same_meta(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.labels.clone().unwrap_or_default() == b.labels.clone().unwrap_or_default()
        && a.annotations.clone().unwrap_or_default() == b.annotations.clone().unwrap_or_default()
}

/// Why a ConfigMap or Secret could not be stored or found. Messages are the API server's.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such object: `configmaps "x" not found`.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// `configmaps` or `secrets`.
        resource: &'static str,
        /// The name asked for.
        name: String,
    },
    /// `create` of an existing object: `configmaps "x" already exists`.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// `configmaps` or `secrets`.
        resource: &'static str,
        /// The name.
        name: String,
    },
    /// An update based on an older resourceVersion.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")]
    Conflict {
        /// `configmaps` or `secrets`.
        resource: &'static str,
        /// The name.
        name: String,
    },
    /// The object is invalid (creation or update rules).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Reading or writing the store failed.
    #[error("{0:#}")]
    Store(#[from] anyhow::Error),
}

/// How a stored object is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// `apply`: create, or update if it exists (unchanged when equal).
    Apply,
    /// `create`: fails with [`ObjectError::AlreadyExists`].
    Create,
    /// `replace` (PUT): must exist; with `Some(rv)`, only if still at that resourceVersion.
    Replace(Option<String>),
}

impl Engine {
    /// `lib/objects`.
    fn objects_dir(&self) -> PathBuf {
        self.paths.lib.join("objects")
    }

    fn object_kind_dir<T: StoredObject>(&self, namespace: &str) -> PathBuf {
        self.objects_dir().join(namespace).join(T::RESOURCE)
    }

    fn object_path<T: StoredObject>(&self, namespace: &str, name: &str) -> PathBuf {
        self.object_kind_dir::<T>(namespace)
            .join(format!("{name}.json"))
    }

    /// The next resourceVersion of the object store (a counter under the store's lock).
    fn next_object_revision(&self) -> Result<String> {
        let path = self.objects_dir().join("revision");
        let current: u64 = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let next = (current + 1).to_string();
        peapod_store::atomic_write(&path, next.as_bytes())?;
        Ok(next)
    }

    /// The object store's current resourceVersion (`0` before the first write).
    pub fn object_revision(&self) -> String {
        fs::read_to_string(self.objects_dir().join("revision"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "0".to_owned())
    }

    /// One stored object, if it exists.
    pub fn get_object<T: StoredObject>(&self, namespace: &str, name: &str) -> Result<Option<T>> {
        if !valid_file_name(name) {
            return Ok(None);
        }
        Ok(peapod_store::read_json(
            &self.object_path::<T>(namespace, name),
        )?)
    }

    /// Every stored object of a kind, in one namespace or all, sorted by namespace and name.
    pub fn list_objects<T: StoredObject>(&self, namespace: Option<&str>) -> Result<Vec<T>> {
        let namespaces: Vec<String> = match namespace {
            Some(ns) => vec![ns.to_owned()],
            None => match fs::read_dir(self.objects_dir()) {
                Ok(rd) => rd
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).context("reading the object store"),
            },
        };
        let mut out = Vec::new();
        for ns in namespaces {
            let dir = self.object_kind_dir::<T>(&ns);
            let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
                Ok(rd) => rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|e| e == "json")
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            names.sort();
            for path in names {
                if let Some(object) = peapod_store::read_json(&path)? {
                    out.push(object);
                }
            }
        }
        out.sort_by(|a: &T, b: &T| {
            (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
        });
        Ok(out)
    }

    /// Stores a decoded object (normalised and validated here, with the update rules when it
    /// exists); the namespace defaults to `default`. Returns what was done and the object as
    /// stored.
    pub fn put_object<T: StoredObject>(
        &self,
        mut object: T,
        how: Put,
    ) -> Result<(Applied, T), ObjectError> {
        object.normalize();
        let meta = object.meta_mut();
        let namespace = meta
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        meta.namespace = Some(namespace.clone());
        let name = meta.name.clone().unwrap_or_default();
        object.validate()?;
        peapod_store::create_dir_all(&self.objects_dir()).map_err(anyhow::Error::from)?;
        let _lock =
            Lock::exclusive(&self.paths.lib.join("objects.lock")).map_err(anyhow::Error::from)?;
        let existing: Option<T> = self.get_object(&namespace, &name)?;
        let not_found = || ObjectError::NotFound {
            resource: T::RESOURCE,
            name: name.clone(),
        };
        let stored = match (existing, &how) {
            (Some(_), Put::Create) => {
                return Err(ObjectError::AlreadyExists {
                    resource: T::RESOURCE,
                    name,
                })
            }
            (None, Put::Replace(_)) => return Err(not_found()),
            (Some(old), _) => {
                if let Put::Replace(Some(rv)) = &how {
                    if old.meta().resource_version.as_deref() != Some(rv.as_str()) {
                        return Err(ObjectError::Conflict {
                            resource: T::RESOURCE,
                            name,
                        });
                    }
                }
                if object.same_content(&old) {
                    return Ok((Applied::Unchanged, old));
                }
                // What the server set stays the server's.
                let meta = object.meta_mut();
                meta.uid = old.meta().uid.clone();
                meta.creation_timestamp = old.meta().creation_timestamp.clone();
                object.validate_update(&old)?;
                object.meta_mut().resource_version = Some(self.next_object_revision()?);
                self.write_object(&object, &namespace, &name)?;
                return Ok((Applied::Configured, object));
            }
            (None, _) => {
                let meta = object.meta_mut();
                meta.uid = Some(new_uid());
                meta.creation_timestamp = Some(k8s_time(Utc::now()));
                meta.resource_version = Some(self.next_object_revision()?);
                meta.generation = None;
                meta.managed_fields = None;
                self.write_object(&object, &namespace, &name)?;
                object
            }
        };
        Ok((Applied::Created, stored))
    }

    fn write_object<T: StoredObject>(&self, object: &T, namespace: &str, name: &str) -> Result<()> {
        let dir = self.object_kind_dir::<T>(namespace);
        if T::PRIVATE {
            // 0700 first, so a file is never readable by others, not even before its chmod.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        } else {
            peapod_store::create_dir_all(&dir)?;
        }
        let path = dir.join(format!("{name}.json"));
        peapod_store::write_json(&path, object)?;
        if T::PRIVATE {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        Ok(())
    }

    /// Deletes a stored object; returns it.
    pub fn delete_object<T: StoredObject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<T, ObjectError> {
        let not_found = || ObjectError::NotFound {
            resource: T::RESOURCE,
            name: name.to_owned(),
        };
        if !self.objects_dir().exists() {
            return Err(not_found());
        }
        let _lock =
            Lock::exclusive(&self.paths.lib.join("objects.lock")).map_err(anyhow::Error::from)?;
        let object: T = self.get_object(namespace, name)?.ok_or_else(not_found)?;
        let path = self.object_path::<T>(namespace, name);
        fs::remove_file(&path)
            .with_context(|| format!("removing {}", path.display()))
            .map_err(ObjectError::Store)?;
        Ok(object)
    }

    /// The ConfigMaps and Secrets of one namespace, for resolving one pod's references.
    pub fn namespace_objects(&self, namespace: &str) -> Result<NamespaceObjects> {
        let by_name = |meta: &ObjectMeta| meta.name.clone().unwrap_or_default();
        Ok(NamespaceObjects {
            namespace: namespace.to_owned(),
            config_maps: self
                .list_objects::<ConfigMap>(Some(namespace))?
                .into_iter()
                .map(|c| (by_name(&c.metadata), c))
                .collect(),
            secrets: self
                .list_objects::<Secret>(Some(namespace))?
                .into_iter()
                .map(|s| (by_name(&s.metadata), s))
                .collect(),
        })
    }
}

/// A random RFC 4122 version 4 uid, as Kubernetes gives objects.
fn new_uid() -> String {
    let hex = peapod_store::new_id();
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16]) % 4];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Whether `name` can be a file name in the store (validated names always can).
fn valid_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

// ---------------------------------------------------------------------------------------
// Resolution, pure.

/// One namespace's ConfigMaps and Secrets by name.
#[derive(Debug, Clone, Default)]
pub struct NamespaceObjects {
    /// The namespace (for messages).
    pub namespace: String,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
}

/// A reference a pod makes that cannot be resolved now; the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `configmap "x" not found` / `secret "x" not found`.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// The referenced name.
        name: String,
    },
    /// `couldn't find key k in ConfigMap ns/x` (an env var's key).
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingEnvKey {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// The object.
        name: String,
        /// The key.
        key: String,
    },
    /// `configmap references non-existent config key: k` (a volume item's key).
    #[error("{kind} references non-existent {what} key: {key}")]
    MissingVolumeKey {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// `config` or `secret`.
        what: &'static str,
        /// The key.
        key: String,
    },
    /// Several problems of one projected volume.
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Several(Vec<ConfigError>),
}

impl NamespaceObjects {
    fn config_map(&self, name: &str) -> Result<&ConfigMap, ConfigError> {
        self.config_maps.get(name).ok_or(ConfigError::NotFound {
            kind: "configmap",
            name: name.to_owned(),
        })
    }

    fn secret(&self, name: &str) -> Result<&Secret, ConfigError> {
        self.secrets.get(name).ok_or(ConfigError::NotFound {
            kind: "secret",
            name: name.to_owned(),
        })
    }
}

/// A container's environment as the kubelet makes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// `NAME=value` pairs: envFrom's first, then env's; a later name replaces an earlier one's
    /// value in place.
    pub vars: Vec<(String, String)>,
    /// Keys of envFrom sources skipped because they are not valid variable names, with the
    /// kubelet's `InvalidEnvironmentVariableNames` event message for each source.
    pub skipped: Vec<String>,
}

impl ResolvedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }
}

/// kubectl's and the kubelet's `IsEnvVarName`.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name != "."
        && name != ".."
        && !name.starts_with("..")
}

/// The environment of `container` (the kubelet's `makeEnvironmentVariables`): each envFrom
/// source's keys with its prefix (invalid names skipped), then each env var, whose value is
/// `literal(var)` unless it comes from a ConfigMap or Secret key. A missing object or key is
/// an error unless the reference is `optional`.
pub fn container_env(
    container: &Container,
    objects: &NamespaceObjects,
    mut literal: impl FnMut(&EnvVar) -> String,
) -> Result<ResolvedEnv, ConfigError> {
    let mut env = ResolvedEnv::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (kind, name, pairs): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &source.config_map_ref {
                match objects.config_map(&r.name) {
                    Ok(c) => (
                        "configMap",
                        &r.name,
                        c.data.clone().unwrap_or_default().into_iter().collect(),
                    ),
                    Err(_) if r.optional == Some(true) => continue,
                    Err(e) => return Err(e),
                }
            } else if let Some(r) = &source.secret_ref {
                match objects.secret(&r.name) {
                    Ok(s) => (
                        "secret",
                        &r.name,
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    Err(_) if r.optional == Some(true) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (key, value) in pairs {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            env.skipped.push(format!(
                "Keys [{}] from the EnvFrom {kind} {}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", "),
                objects.namespace
            ));
        }
    }
    for var in container.env.iter().flatten() {
        let from = var.value_from.as_ref();
        let value = if let Some(r) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
            let optional = r.optional == Some(true);
            let found = match objects.config_map(&r.name) {
                Ok(c) => c.data.as_ref().and_then(|d| d.get(&r.key)).cloned(),
                Err(_) if optional => continue,
                Err(e) => return Err(e),
            };
            match found {
                Some(v) => v,
                None if optional => continue,
                None => {
                    return Err(ConfigError::MissingEnvKey {
                        kind: "ConfigMap",
                        namespace: objects.namespace.clone(),
                        name: r.name.clone(),
                        key: r.key.clone(),
                    })
                }
            }
        } else if let Some(r) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            let optional = r.optional == Some(true);
            let found = match objects.secret(&r.name) {
                Ok(s) => s.data.as_ref().and_then(|d| d.get(&r.key)).cloned(),
                Err(_) if optional => continue,
                Err(e) => return Err(e),
            };
            match found {
                Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                None if optional => continue,
                None => {
                    return Err(ConfigError::MissingEnvKey {
                        kind: "Secret",
                        namespace: objects.namespace.clone(),
                        name: r.name.clone(),
                        key: r.key.clone(),
                    })
                }
            }
        } else {
            literal(var)
        };
        env.set(var.name.clone(), value);
    }
    Ok(env)
}

/// One file of a volume: its content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// The bytes.
    pub data: Vec<u8>,
    /// The permission bits.
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// What the node offers a container without limits (the downward API's default limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAllocatable {
    /// CPUs.
    pub cpus: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl NodeAllocatable {
    /// This machine's.
    pub fn this_machine() -> Self {
        let memory_kib: u64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: memory_kib * 1024,
        }
    }
}

fn mode_of(mode: Option<i32>) -> u32 {
    (mode.unwrap_or(DEFAULT_FILE_MODE) & 0o777) as u32
}

/// The kubelet's configMap/secret `MakePayload`: every key (or the `items`), with modes.
fn key_payload(
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    kind: &'static str,
    what: &'static str,
) -> Result<Payload, ConfigError> {
    let default_mode = default_mode.or(Some(DEFAULT_FILE_MODE));
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, data) in entries {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode: mode_of(default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = entries.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::MissingVolumeKey {
                        kind,
                        what,
                        key: item.key.clone(),
                    });
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode: mode_of(item.mode.or(default_mode)),
                    },
                );
            }
        }
    }
    Ok(payload)
}

fn config_map_entries(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut entries: BTreeMap<String, Vec<u8>> = c
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in c.binary_data.iter().flatten() {
        entries.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    entries
}

fn secret_entries(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v): (&String, &ByteString)| (k.clone(), v.0.clone()))
        .collect()
}

fn config_map_payload(
    objects: &NamespaceObjects,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, ConfigError> {
    let entries = match objects.config_map(name) {
        Ok(c) => config_map_entries(c),
        Err(_) if optional => BTreeMap::new(),
        Err(e) => return Err(e),
    };
    key_payload(
        &entries,
        items,
        default_mode,
        optional,
        "configmap",
        "config",
    )
}

fn secret_payload(
    objects: &NamespaceObjects,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, ConfigError> {
    let entries = match objects.secret(name) {
        Ok(s) => secret_entries(s),
        Err(_) if optional => BTreeMap::new(),
        Err(e) => return Err(e),
    };
    key_payload(&entries, items, default_mode, optional, "secret", "secret")
}

/// Go's `%q` of a string (`strconv.Quote`): what the kubelet writes for label values.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The kubelet's `fieldpath.FormatMap`: `key="value"` lines sorted by key, values quoted as
/// Go's `%q`, no newline after the last.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A downward API `fieldRef` of a volume file (`ExtractFieldPathAsString`).
pub fn volume_field_value(pod: &Pod, field_path: &str) -> String {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| {
        field_path
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    if let Some(key) = subscript("metadata.labels['") {
        return meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&key))
            .cloned()
            .unwrap_or_default();
    }
    if let Some(key) = subscript("metadata.annotations['") {
        return meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key))
            .cloned()
            .unwrap_or_default();
    }
    match field_path {
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A `resourceFieldRef` of `container` (the kubelet's `ExtractContainerResourceValue`): the
/// limit or request divided by the divisor (default 1), rounded up; an unset limit is the
/// node's allocatable, an unset request 0.
pub fn resource_field_value(
    container: &Container,
    selector: &ResourceFieldSelector,
    node: NodeAllocatable,
) -> String {
    let parse = |q: &str| peapod_api::validate::parse_quantity(q);
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|d| parse(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let Some((kind, name)) = selector.resource.split_once('.') else {
        return String::new();
    };
    let resources = container.resources.as_ref();
    let map = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    let value = map
        .and_then(|m| m.get(name))
        .and_then(|q| parse(&q.0))
        .unwrap_or(match (kind, name) {
            ("limits", "cpu") => node.cpus as f64,
            ("limits", "memory") => node.memory_bytes as f64,
            _ => 0.0,
        });
    if name == "cpu" {
        // Go compares milli-values: ceil(milli(value) / milli(divisor)).
        let milli = |v: f64| (v * 1000.0).ceil();
        (milli(value) / milli(divisor).max(1.0)).ceil().to_string()
    } else {
        (value.ceil() / divisor.ceil().max(1.0)).ceil().to_string()
    }
}

fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    pod: &Pod,
    node: NodeAllocatable,
) -> Payload {
    let mut payload = Payload::new();
    for item in items {
        let data = if let Some(f) = &item.field_ref {
            volume_field_value(pod, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            let spec = pod.spec.as_ref();
            let container = spec.and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
            });
            container.map_or_else(String::new, |c| resource_field_value(c, r, node))
        } else {
            String::new()
        };
        let path = item.path.trim_end_matches('/').to_owned();
        payload.insert(
            path,
            FileProjection {
                data: data.into_bytes(),
                mode: mode_of(item.mode.or(default_mode)),
            },
        );
    }
    payload
}

/// The files of `volume` when it is a configMap, secret, downwardAPI or projected volume
/// (`None` for other kinds), as the kubelet's volume plugins make them.
pub fn volume_payload(
    volume: &Volume,
    pod: &Pod,
    objects: &NamespaceObjects,
    node: NodeAllocatable,
) -> Option<Result<Payload, ConfigError>> {
    if let Some(source) = &volume.config_map {
        return Some(config_map_payload(
            objects,
            &source.name,
            source.items.as_deref(),
            source.default_mode,
            source.optional == Some(true),
        ));
    }
    if let Some(source) = &volume.secret {
        return Some(secret_payload(
            objects,
            source.secret_name.as_deref().unwrap_or_default(),
            source.items.as_deref(),
            source.default_mode,
            source.optional == Some(true),
        ));
    }
    if let Some(source) = &volume.downward_api {
        return Some(Ok(downward_payload(
            source.items.as_deref().unwrap_or_default(),
            source.default_mode,
            pod,
            node,
        )));
    }
    let source = volume.projected.as_ref()?;
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for projection in source.sources.iter().flatten() {
        let part = if let Some(c) = &projection.config_map {
            config_map_payload(
                objects,
                &c.name,
                c.items.as_deref(),
                source.default_mode,
                c.optional == Some(true),
            )
        } else if let Some(s) = &projection.secret {
            secret_payload(
                objects,
                &s.name,
                s.items.as_deref(),
                source.default_mode,
                s.optional == Some(true),
            )
        } else if let Some(d) = &projection.downward_api {
            Ok(downward_payload(
                d.items.as_deref().unwrap_or_default(),
                source.default_mode,
                pod,
                node,
            ))
        } else {
            continue;
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(e) => errors.push(e),
        }
    }
    Some(match errors.len() {
        0 => Ok(payload),
        1 => Err(errors.remove(0)),
        _ => Err(ConfigError::Several(errors)),
    })
}

/// Whether the pod monitor provides this volume's files (configMap, secret, downwardAPI,
/// projected).
pub fn is_api_data_volume(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

// ---------------------------------------------------------------------------------------
// The kubelet's AtomicWriter.

/// The symlink naming the current timestamped directory.
const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// Puts `payload` in `target` the way the kubelet's AtomicWriter does, so a reader sees the
/// old set of files or the new, never a mix: the files go to a new `..<timestamp>.<random>`
/// directory (0755, files with their modes), the `..data` symlink is swapped to it by
/// rename, every top-level entry of the payload is a symlink `name -> ..data/name`, entries
/// no longer in the payload and the old directory are removed. Returns false (and changes
/// nothing) when the current files already are the payload.
pub fn write_volume(target: &Path, payload: &Payload, now: DateTime<Utc>) -> io::Result<bool> {
    for path in payload.keys() {
        if path.is_empty()
            || path.starts_with('/')
            || path.starts_with("..")
            || path.split('/').any(|c| c == ".." || c.is_empty())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path {path:?} in a volume payload"),
            ));
        }
    }
    fs::create_dir_all(target)?;
    let old_dir = fs::read_link(target.join(DATA_DIR)).ok();
    if let Some(old) = &old_dir {
        if current_files(&target.join(old))? == *payload {
            return Ok(false);
        }
    }
    let name = format!(
        "..{}.{}",
        now.format("%Y_%m_%d_%H_%M_%S"),
        u64::from_str_radix(&peapod_store::new_id()[..12], 16).unwrap_or_default()
    );
    let dir = target.join(&name);
    fs::DirBuilder::new().mode(0o755).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let written = (|| -> io::Result<()> {
        for (path, file) in payload {
            let full = dir.join(path);
            if let Some(parent) = full.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)?;
            }
            fs::write(&full, &file.data)?;
            fs::set_permissions(&full, fs::Permissions::from_mode(file.mode))?;
        }
        let tmp = target.join(DATA_DIR_TMP);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)?;
        fs::rename(&tmp, target.join(DATA_DIR))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let top: std::collections::BTreeSet<&str> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for entry in &top {
        let link = target.join(entry);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(entry), &link)?;
        }
    }
    for entry in fs::read_dir(target)?.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with("..") {
            continue;
        }
        if !top.contains(file_name.as_ref()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_dir {
        let _ = fs::remove_dir_all(target.join(old));
    }
    peapod_store::sync_dir(target).map_err(|e| e.source)?;
    Ok(true)
}

/// The files under a timestamped directory, as a payload.
fn current_files(dir: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in fs::read_dir(&d)?.flatten() {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push((entry.path(), format!("{name}/")));
            } else {
                out.insert(
                    name,
                    FileProjection {
                        data: fs::read(entry.path())?,
                        mode: meta.permissions().mode() & 0o777,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Makes the directory of a configMap, secret, downwardAPI or projected volume: a tmpfs
/// (Secrets never touch the disk, as with the kubelet) holding the payload written by
/// [`write_volume`], then remounted read-only, so no container can write to it whatever its
/// mount options. Called again, it rewrites changed contents in place.
pub fn prepare_api_volume(
    dir: &Path,
    volume: &Volume,
    pod: &Pod,
    objects: &NamespaceObjects,
) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let Some(payload) = volume_payload(volume, pod, objects, NodeAllocatable::this_machine())
    else {
        return Ok(());
    };
    let payload = payload?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if crate::engine::is_mountpoint(dir) {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
        .with_context(|| format!("remounting {} read-write", dir.display()))?;
    } else {
        mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=0755"))
            .with_context(|| format!("mounting a tmpfs on {}", dir.display()))?;
    }
    let written = write_volume(dir, &payload, Utc::now())
        .with_context(|| format!("writing the files of volume {:?}", volume.name));
    let sealed = mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
        None::<&str>,
    )
    .with_context(|| format!("remounting {} read-only", dir.display()));
    written?;
    sealed?;
    Ok(())
}

/// The pull options for a pod's images: the node's (config.toml, credential files) with the
/// credentials of the pod's `imagePullSecrets` first (dockerconfigjson and dockercfg
/// Secrets), as the kubelet tries a pod's pull secrets before the node's. A missing or
/// malformed secret is skipped, as the kubelet only warns about it.
pub fn pod_pull_options(engine: &Engine, pod: &Pod) -> peapod_image::PullOptions {
    let mut options = engine.pull_options();
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return options;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut secrets: Vec<Secret> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for n in &names {
        match engine.get_object::<Secret>(namespace, n).ok().flatten() {
            Some(secret) => secrets.push(secret),
            None => missing.push(n),
        }
    }
    if !missing.is_empty() {
        // The kubelet pulls anyway, and says so.
        let _ = engine.record_event(
            pod,
            "Warning",
            "FailedToRetrieveImagePullSecret",
            &format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        );
    }
    let mut credentials = pull_secret_credentials(&secrets);
    credentials.merge(std::mem::take(&mut options.credentials));
    options.credentials = credentials;
    options
}

/// Registry credentials from pull secrets, earlier secrets first.
pub fn pull_secret_credentials(secrets: &[Secret]) -> peapod_image::Credentials {
    use peapod_api::objects::secret_type::*;
    let mut credentials = peapod_image::Credentials::new();
    for secret in secrets {
        let key = match secret.type_.as_deref() {
            Some(DOCKER_CONFIG_JSON) => DOCKER_CONFIG_JSON_KEY,
            Some(DOCKERCFG) => DOCKERCFG_KEY,
            _ => continue,
        };
        let Some(data) = secret.data.as_ref().and_then(|d| d.get(key)) else {
            continue;
        };
        if let Ok(parsed) = peapod_image::Credentials::from_docker_config(&data.0) {
            credentials.merge(parsed);
        }
    }
    credentials
}

#[cfg(test)]
mod tests {
    use super::*;
    use peapod_api::decode::{decode_objects, Object};

    fn objects(yaml: &str) -> (Vec<Pod>, NamespaceObjects) {
        let mut ns = NamespaceObjects {
            namespace: "default".into(),
            ..Default::default()
        };
        let mut pods = Vec::new();
        for o in decode_objects(yaml).unwrap() {
            match o {
                Object::Pod(p) => pods.push(*p),
                Object::ConfigMap(c) => {
                    ns.config_maps.insert(c.metadata.name.clone().unwrap(), c);
                }
                Object::Secret(mut s) => {
                    peapod_api::objects::normalize_secret(&mut s);
                    ns.secrets.insert(s.metadata.name.clone().unwrap(), s);
                }
            }
        }
        (pods, ns)
    }

    const NODE: NodeAllocatable = NodeAllocatable {
        cpus: 4,
        memory_bytes: 8 << 30,
    };

    const OBJECTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata:\n  greeting: hello\n  app.conf: \"mode=fast\\n\"\n  bad-name: x\n  1st: one\nbinaryData:\n  blob: AAEC\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData:\n  password: hunter2\n";

    fn container(yaml: &str) -> Container {
        let text = format!("{OBJECTS}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{yaml}");
        objects(&text)
            .0
            .remove(0)
            .spec
            .unwrap()
            .containers
            .remove(0)
    }

    #[test]
    fn env_from_key_refs_and_literals() {
        let (_, ns) = objects(OBJECTS);
        let c = container("    envFrom:\n    - configMapRef: {name: cfg}\n      prefix: CFG_\n    - secretRef: {name: sec}\n    env:\n    - name: GREETING\n      valueFrom:\n        configMapKeyRef: {name: cfg, key: greeting}\n    - name: password\n      value: literal\n    - name: PW\n      valueFrom:\n        secretKeyRef: {name: sec, key: password}\n");
        let env = container_env(&c, &ns, |v| v.value.clone().unwrap_or_default()).unwrap();
        assert_eq!(
            env.vars,
            [
                ("CFG_1st", "one"),
                ("CFG_app.conf", "mode=fast\n"),
                ("CFG_bad-name", "x"),
                ("CFG_greeting", "hello"),
                ("password", "literal"),
                ("GREETING", "hello"),
                ("PW", "hunter2"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(env.skipped.is_empty());
        // Without a prefix, a key starting with a digit is not a variable name.
        let c = container("    envFrom:\n    - configMapRef: {name: cfg}\n");
        let env = container_env(&c, &ns, |_| String::new()).unwrap();
        assert_eq!(env.skipped, ["Keys [1st] from the EnvFrom configMap default/cfg were skipped since they are considered invalid environment variable names."]);
        assert!(env.vars.iter().all(|(k, _)| k != "1st"));
    }

    #[test]
    fn missing_objects_and_keys_say_what_the_kubelet_says() {
        let (_, ns) = objects(OBJECTS);
        let err = |yaml: &str| {
            container_env(&container(yaml), &ns, |_| String::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("    env:\n    - name: A\n      valueFrom:\n        configMapKeyRef: {name: nope, key: a}\n"),
            "configmap \"nope\" not found"
        );
        assert_eq!(
            err("    env:\n    - name: A\n      valueFrom:\n        configMapKeyRef: {name: cfg, key: nope}\n"),
            "couldn't find key nope in ConfigMap default/cfg"
        );
        assert_eq!(
            err("    env:\n    - name: A\n      valueFrom:\n        secretKeyRef: {name: sec, key: nope}\n"),
            "couldn't find key nope in Secret default/sec"
        );
        assert_eq!(
            err("    envFrom:\n    - secretRef: {name: nope}\n"),
            "secret \"nope\" not found"
        );
        let optional = container("    envFrom:\n    - secretRef: {name: nope, optional: true}\n    env:\n    - name: A\n      valueFrom:\n        configMapKeyRef: {name: cfg, key: nope, optional: true}\n    - name: B\n      valueFrom:\n        secretKeyRef: {name: nope, key: x, optional: true}\n");
        let env = container_env(&optional, &ns, |_| String::new()).unwrap();
        assert!(env.vars.is_empty());
    }

    fn pod_with_volume(volume: &str) -> (Pod, NamespaceObjects) {
        let text = format!("{OBJECTS}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\n  uid: u-1\n  labels:\n    app: web\n    quote: 'say \"hi\"'\n  annotations:\n    note: \"two\\nlines\"\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      limits: {{memory: 64Mi}}\n      requests: {{cpu: 250m}}\n  volumes:\n{volume}");
        let (mut pods, ns) = objects(&text);
        (pods.remove(0), ns)
    }

    fn payload(volume: &str) -> Result<Payload, ConfigError> {
        let (pod, ns) = pod_with_volume(volume);
        let v = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0].clone();
        volume_payload(&v, &pod, &ns, NODE).unwrap()
    }

    fn files(p: &Payload) -> Vec<(String, String, u32)> {
        p.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    String::from_utf8_lossy(&v.data).into_owned(),
                    v.mode,
                )
            })
            .collect()
    }

    #[test]
    fn config_map_and_secret_volumes() {
        let all = payload("  - name: v\n    configMap: {name: cfg}\n").unwrap();
        let names: Vec<&str> = all.keys().map(String::as_str).collect();
        assert_eq!(names, ["1st", "app.conf", "bad-name", "blob", "greeting"]);
        assert_eq!(all["blob"].data, [0, 1, 2]);
        assert_eq!(all["greeting"].mode, 0o644);
        let items = payload("  - name: v\n    configMap:\n      name: cfg\n      defaultMode: 0440\n      items:\n      - {key: greeting, path: a/b/hello.txt}\n      - {key: app.conf, path: app.conf, mode: 0600}\n").unwrap();
        assert_eq!(
            files(&items),
            [
                ("a/b/hello.txt".into(), "hello".into(), 0o440),
                ("app.conf".into(), "mode=fast\n".into(), 0o600)
            ]
        );
        assert_eq!(
            payload("  - name: v\n    configMap:\n      name: cfg\n      items:\n      - {key: nope, path: x}\n").unwrap_err().to_string(),
            "configmap references non-existent config key: nope"
        );
        assert!(payload("  - name: v\n    configMap:\n      name: cfg\n      optional: true\n      items:\n      - {key: nope, path: x}\n").unwrap().is_empty());
        assert_eq!(
            payload("  - name: v\n    secret: {secretName: nope}\n")
                .unwrap_err()
                .to_string(),
            "secret \"nope\" not found"
        );
        assert!(
            payload("  - name: v\n    secret: {secretName: nope, optional: true}\n")
                .unwrap()
                .is_empty()
        );
        let secret =
            payload("  - name: v\n    secret: {secretName: sec, defaultMode: 0400}\n").unwrap();
        assert_eq!(
            files(&secret),
            [("password".into(), "hunter2".into(), 0o400)]
        );
    }

    #[test]
    fn downward_api_volumes_render_like_the_kubelet() {
        let p = payload("  - name: v\n    downwardAPI:\n      items:\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}\n      - {path: app, fieldRef: {fieldPath: \"metadata.labels['app']\"}}\n      - {path: id/uid, fieldRef: {fieldPath: metadata.uid}, mode: 0400}\n      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}\n      - {path: cpu, resourceFieldRef: {containerName: c, resource: limits.cpu}}\n      - {path: req, resourceFieldRef: {containerName: c, resource: requests.cpu, divisor: 1m}}\n").unwrap();
        assert_eq!(
            files(&p),
            [
                ("annotations".into(), "note=\"two\\nlines\"".into(), 0o644),
                ("app".into(), "web".into(), 0o644),
                ("cpu".into(), "4".into(), 0o644),
                ("id/uid".into(), "u-1".into(), 0o400),
                (
                    "labels".into(),
                    "app=\"web\"\nquote=\"say \\\"hi\\\"\"".into(),
                    0o644
                ),
                ("mem".into(), "64".into(), 0o644),
                ("req".into(), "250".into(), 0o644),
            ]
        );
        assert_eq!(go_quote("a\u{0}\u{7f}é"), "\"a\\x00\\x7fé\"");
    }

    #[test]
    fn projected_volumes_combine_their_sources() {
        let p = payload("  - name: v\n    projected:\n      defaultMode: 0444\n      sources:\n      - configMap:\n          name: cfg\n          items: [{key: greeting, path: greeting}]\n      - secret: {name: sec}\n      - secret: {name: gone, optional: true}\n      - downwardAPI:\n          items: [{path: name, fieldRef: {fieldPath: metadata.name}}]\n").unwrap();
        assert_eq!(
            files(&p),
            [
                ("greeting".into(), "hello".into(), 0o444),
                ("name".into(), "p".into(), 0o444),
                ("password".into(), "hunter2".into(), 0o444),
            ]
        );
        let e = payload("  - name: v\n    projected:\n      sources:\n      - configMap: {name: a}\n      - secret: {name: b}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "[configmap \"a\" not found, secret \"b\" not found]"
        );
    }

    #[test]
    fn atomic_writer_swaps_a_data_symlink() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let file = |data: &str, mode| FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        };
        let first = Payload::from([
            ("a".to_owned(), file("1", 0o600)),
            ("sub/b".to_owned(), file("2", 0o644)),
        ]);
        let now = Utc::now();
        assert!(write_volume(&target, &first, now).unwrap());
        let data = fs::read_link(target.join("..data")).unwrap();
        let ts = data.to_string_lossy().into_owned();
        assert!(
            ts.starts_with(&format!("..{}.", now.format("%Y_%m_%d_%H_%M_%S"))),
            "{ts}"
        );
        assert_eq!(
            fs::read_link(target.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(target.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(target.join("sub/b")).unwrap(), "2");
        assert_eq!(
            fs::metadata(target.join("a")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(target.join(&ts)).unwrap().mode() & 0o777,
            0o755
        );
        // The same payload again: nothing changes.
        assert!(!write_volume(&target, &first, now).unwrap());
        assert_eq!(fs::read_link(target.join("..data")).unwrap(), data);
        // A new payload: new directory, stale entries and the old directory gone.
        let second = Payload::from([("c".to_owned(), file("3", 0o644))]);
        assert!(write_volume(&target, &second, now).unwrap());
        assert_ne!(fs::read_link(target.join("..data")).unwrap(), data);
        assert!(!target.join(&ts).exists());
        assert!(fs::symlink_metadata(target.join("a")).is_err());
        assert!(fs::symlink_metadata(target.join("sub")).is_err());
        assert_eq!(fs::read_to_string(target.join("c")).unwrap(), "3");
        let entries = fs::read_dir(&target).unwrap().count();
        assert_eq!(entries, 3, "..data, its directory and c");
        let escape = Payload::from([("../x".to_owned(), file("", 0o644))]);
        assert!(write_volume(&target, &escape, now).is_err());
    }

    #[test]
    fn pull_secrets_become_registry_credentials() {
        let (_, ns) = objects("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{\"localhost:5000\":{\"auth\":\"dTE6cDE=\"}}}'\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\ntype: kubernetes.io/dockercfg\nstringData:\n  .dockercfg: '{\"localhost:5000\":{\"auth\":\"dTI6cDI=\"},\"quay.io\":{\"auth\":\"dTM6cDM=\"}}'\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: c}\nstringData: {x: z}\n");
        let secrets: Vec<Secret> = ns.secrets.values().cloned().collect();
        let creds = pull_secret_credentials(&secrets);
        let local = creds.get("localhost:5000").unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("u1", "p1")
        );
        assert_eq!(creds.get("quay.io").unwrap().username, "u3");
    }
}
