//! The kubectl-style commands: `apply`/`create -f` (Pods, ConfigMaps and Secrets, in file
//! order), `get`, `describe` and `delete` of pods, configmaps and secrets, and pod container
//! selection for `exec`/`logs`, with kubectl's wording.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use peapod_api::decode::Object;

use crate::engine::{user_error, Container, Engine};
use crate::objects::{ObjectError, Put, StoredObject};
use crate::pod::Applied;

/// Reads manifests from files, directories (their *.yaml, *.yml, *.json) or `-` (stdin).
fn read_manifests(files: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading manifests from stdin")?;
            out.push(("STDIN".to_string(), text));
            continue;
        }
        let p = Path::new(f);
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {f}"))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            for e in entries {
                let text = std::fs::read_to_string(&e)
                    .with_context(|| format!("reading {}", e.display()))?;
                out.push((e.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(p).map_err(|e| {
                user_error(format!(
                    "the path \"{f}\" does not exist or cannot be read: {e}"
                ))
            })?;
            out.push((f.clone(), text));
        }
    }
    Ok(out)
}

/// Decodes, defaults and validates every object of the manifests, all before anything is
/// made; in file order.
fn load_objects(files: &[String]) -> Result<Vec<(String, Object)>> {
    let mut objects = Vec::new();
    for (source, text) in read_manifests(files)? {
        let decoded = peapod_api::decode::decode_objects(&text)
            .map_err(|e| user_error(format!("error parsing {source}: {e}")))?;
        for mut object in decoded {
            let checked = match &mut object {
                Object::Pod(pod) => {
                    peapod_api::defaults::apply_defaults(pod);
                    peapod_api::validate::validate_pod(pod)
                        .and_then(|()| crate::hostport::pod_host_ports(pod).map(drop))
                }
                Object::ConfigMap(c) => c.validate(),
                Object::Secret(s) => {
                    s.normalize();
                    s.validate()
                }
            };
            if let Err(invalid) = checked {
                bail!(user_error(format!(
                    "error when creating \"{source}\": {invalid}"
                )));
            }
            objects.push((source.clone(), object));
        }
    }
    Ok(objects)
}

/// The pods of the manifests, decoded, defaulted and validated with everything else.
fn load_pods(files: &[String]) -> Result<Vec<(String, Pod)>> {
    Ok(load_objects(files)?
        .into_iter()
        .filter_map(|(source, o)| match o {
            Object::Pod(p) => Some((source, *p)),
            _ => None,
        })
        .collect())
}

fn applied_word(applied: Applied) -> &'static str {
    match applied {
        Applied::Created => "created",
        Applied::Unchanged => "unchanged",
        Applied::Configured => "configured",
    }
}

/// Stores one ConfigMap or Secret for `apply`/`create`; prints kubectl's line.
fn put_object<T: StoredObject>(
    engine: &Engine,
    object: T,
    create_only: bool,
    out: &mut impl Write,
) -> Result<(), ObjectError> {
    let name = object.meta().name.clone().unwrap_or_default();
    let how = if create_only { Put::Create } else { Put::Apply };
    let (applied, _) = engine.put_object(object, how)?;
    let _ = writeln!(out, "{}/{name} {}", T::SINGULAR, applied_word(applied));
    Ok(())
}

/// `apply -f` (and `create -f` with `create_only`).
pub fn apply(
    engine: &Engine,
    files: &[String],
    create_only: bool,
    out: &mut impl Write,
) -> Result<i32> {
    let objects = load_objects(files)?;
    let mut failed = 0;
    let verb = if create_only { "creating" } else { "applying" };
    for (source, object) in objects {
        let result =
            match object {
                Object::Pod(pod) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    match engine.apply_pod(*pod, create_only) {
                        Ok(applied) => {
                            writeln!(out, "pod/{name} {}", applied_word(applied))?;
                            Ok(())
                        }
                        Err(e) => Err(format!(
                            "Error from server: error when {verb} \"{source}\": {e:#}"
                        )),
                    }
                }
                Object::ConfigMap(c) => put_object(engine, c, create_only, out)
                    .map_err(|e| object_error(&e, verb, &source)),
                Object::Secret(s) => put_object(engine, s, create_only, out)
                    .map_err(|e| object_error(&e, verb, &source)),
            };
        if let Err(message) = result {
            eprintln!("{message}");
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// kubectl's line for a failed ConfigMap or Secret: `Error from server (AlreadyExists): …`.
fn object_error(e: &ObjectError, verb: &str, source: &str) -> String {
    let reason = match e {
        ObjectError::NotFound { .. } => " (NotFound)",
        ObjectError::AlreadyExists { .. } => " (AlreadyExists)",
        ObjectError::Conflict { .. } => " (Conflict)",
        ObjectError::Invalid(_) => " (Invalid)",
        ObjectError::Store(_) => "",
    };
    format!("Error from server{reason}: error when {verb} \"{source}\": {e}")
}

/// The resource a `get`/`describe`/`delete` argument names, as kubectl spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Pods,
    ConfigMaps,
    Secrets,
}

fn resource_of(resource: &str) -> Result<Resource> {
    match resource {
        "pods" | "pod" | "po" => Ok(Resource::Pods),
        "configmaps" | "configmap" | "cm" => Ok(Resource::ConfigMaps),
        "secrets" | "secret" => Ok(Resource::Secrets),
        other => bail!(user_error(format!(
            "the server doesn't have a resource type \"{other}\" (peapod serves pods, configmaps and secrets)"
        ))),
    }
}

/// `get configmaps|secrets`: the named objects (or all), printed as kubectl does.
#[allow(clippy::too_many_arguments)]
fn get_objects<T: StoredObject>(
    engine: &Engine,
    names: &[String],
    namespace: &str,
    all_namespaces: bool,
    output: Option<&str>,
    table: fn(&[T], bool) -> String,
    out: &mut impl Write,
) -> Result<i32> {
    let all: Vec<T> = engine.list_objects(if all_namespaces {
        None
    } else {
        Some(namespace)
    })?;
    let mut items = Vec::new();
    let mut missing = 0;
    if names.is_empty() {
        items = all;
    } else {
        for n in names {
            match all
                .iter()
                .find(|o| o.meta().name.as_deref() == Some(n.as_str()))
            {
                Some(o) => items.push(o.clone()),
                None => {
                    eprintln!(
                        "Error from server (NotFound): {} \"{n}\" not found",
                        T::RESOURCE
                    );
                    missing += 1;
                }
            }
        }
    }
    match output {
        None | Some("wide") => {
            if items.is_empty() {
                if missing == 0 {
                    if all_namespaces {
                        eprintln!("No resources found");
                    } else {
                        eprintln!("No resources found in {namespace} namespace.");
                    }
                }
            } else {
                write!(out, "{}", table(&items, all_namespaces))?;
            }
        }
        Some("name") => {
            for o in &items {
                writeln!(out, "{}/{}", T::SINGULAR, o.meta().name.as_deref().unwrap_or_default())?;
            }
        }
        Some(fmt @ ("json" | "yaml")) => {
            let value = if names.len() == 1 && items.len() == 1 {
                serde_json::to_value(&items[0])?
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
            };
            if fmt == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                write!(out, "{}", serde_saphyr_to_string(&value)?)?;
            }
        }
        Some(other) => bail!(user_error(format!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
        ))),
    }
    Ok(if missing > 0 { 1 } else { 0 })
}

/// `get pods|configmaps|secrets [NAME...] [-n NS | -A] [-o wide|yaml|json|name]`.
pub fn get(
    engine: &Engine,
    resource: &str,
    names: &[String],
    namespace: &str,
    all_namespaces: bool,
    output: Option<&str>,
    out: &mut impl Write,
) -> Result<i32> {
    // `get pod/x` is accepted as kubectl does.
    let (resource, names): (String, Vec<String>) = match resource.split_once('/') {
        Some((r, n)) => (
            r.to_string(),
            std::iter::once(n.to_string())
                .chain(names.iter().cloned())
                .collect(),
        ),
        None => (resource.to_string(), names.to_vec()),
    };
    match resource_of(&resource)? {
        Resource::Pods => {}
        Resource::ConfigMaps => {
            return get_objects::<ConfigMap>(
                engine,
                &names,
                namespace,
                all_namespaces,
                output,
                |items, all| peapod_api::objects::config_maps_table(items, all, Utc::now()),
                out,
            )
        }
        Resource::Secrets => {
            return get_objects::<Secret>(
                engine,
                &names,
                namespace,
                all_namespaces,
                output,
                |items, all| peapod_api::objects::secrets_table(items, all, Utc::now()),
                out,
            )
        }
    }
    let all = engine.list_pods(if all_namespaces {
        None
    } else {
        Some(namespace)
    })?;
    let mut pods = Vec::new();
    let mut missing = 0;
    if names.is_empty() {
        pods = all.into_iter().map(|v| v.pod).collect();
    } else {
        for n in &names {
            match all.iter().find(|v| v.name() == n) {
                Some(v) => pods.push(v.pod.clone()),
                None => {
                    eprintln!("Error from server (NotFound): pods \"{n}\" not found");
                    missing += 1;
                }
            }
        }
    }
    let single = names.len() == 1;
    match output {
        None | Some("wide") => {
            if pods.is_empty() {
                if missing == 0 {
                    if all_namespaces {
                        eprintln!("No resources found");
                    } else {
                        eprintln!("No resources found in {namespace} namespace.");
                    }
                }
            } else {
                let text = peapod_api::print::pods_table(&pods, output == Some("wide"), all_namespaces, Utc::now());
                write!(out, "{text}")?;
            }
        }
        Some("name") => {
            for p in &pods {
                writeln!(out, "pod/{}", p.metadata.name.as_deref().unwrap_or_default())?;
            }
        }
        Some(fmt @ ("json" | "yaml")) => {
            let value = if single && pods.len() == 1 {
                serde_json::to_value(&pods[0])?
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods, "metadata": {"resourceVersion": ""}})
            };
            if fmt == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                let yaml = serde_saphyr_to_string(&value)?;
                write!(out, "{yaml}")?;
            }
        }
        Some(other) => bail!(user_error(format!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
        ))),
    }
    Ok(if missing > 0 { 1 } else { 0 })
}

fn serde_saphyr_to_string(v: &serde_json::Value) -> Result<String> {
    serde_saphyr::to_string(v).map_err(|e| anyhow::anyhow!("rendering YAML: {e}"))
}

/// `describe configmap|secret NAME...`.
fn describe_objects<T: StoredObject>(
    engine: &Engine,
    names: &[String],
    namespace: &str,
    describe: fn(&T) -> String,
    out: &mut impl Write,
) -> Result<i32> {
    let mut failed = 0;
    let names: Vec<String> = if names.is_empty() {
        engine
            .list_objects::<T>(Some(namespace))?
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect()
    } else {
        names.to_vec()
    };
    for (i, n) in names.iter().enumerate() {
        match engine.get_object::<T>(namespace, n)? {
            Some(o) => {
                if i > 0 {
                    writeln!(out)?;
                    writeln!(out)?;
                }
                write!(out, "{}", describe(&o))?;
            }
            None => {
                eprintln!(
                    "Error from server (NotFound): {} \"{n}\" not found",
                    T::RESOURCE
                );
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `describe pod|configmap|secret NAME...`.
pub fn describe(
    engine: &Engine,
    resource: &str,
    names: &[String],
    namespace: &str,
    out: &mut impl Write,
) -> Result<i32> {
    match resource_of(resource)? {
        Resource::Pods => {}
        Resource::ConfigMaps => {
            return describe_objects(
                engine,
                names,
                namespace,
                peapod_api::objects::describe_config_map,
                out,
            )
        }
        Resource::Secrets => {
            return describe_objects(
                engine,
                names,
                namespace,
                peapod_api::objects::describe_secret,
                out,
            )
        }
    }
    let mut failed = 0;
    for (i, n) in names.iter().enumerate() {
        match engine.find_pod(namespace, n) {
            Ok(v) => {
                if i > 0 {
                    writeln!(out)?;
                    writeln!(out)?;
                }
                let events = engine.pod_events(&v.uid)?;
                write!(
                    out,
                    "{}",
                    peapod_api::print::describe_pod(&v.pod, &events, Utc::now())
                )?;
            }
            Err(_) => {
                eprintln!("Error from server (NotFound): pods \"{n}\" not found");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// What `delete` is asked to delete: `TYPE NAME...`, `TYPE --all`, or `-f FILE...`.
pub struct DeleteTargets<'a> {
    /// The resource type and names.
    pub args: &'a [String],
    /// Manifest files or directories.
    pub files: &'a [String],
    /// Every resource of the type in the namespace.
    pub all: bool,
}

/// `delete pod|configmap|secret NAME...`, `delete TYPE --all` or `delete -f FILE` (every
/// kind in it): returns once every resource is gone.
pub fn delete(
    engine: &Engine,
    what: &DeleteTargets<'_>,
    namespace: &str,
    grace: Option<i64>,
    ignore_not_found: bool,
    out: &mut impl Write,
) -> Result<i32> {
    let DeleteTargets { args, files, all } = *what;
    let mut targets: Vec<(Resource, String, String)> = Vec::new();
    if all && (!files.is_empty() || args.len() != 1 || args[0].contains('/')) {
        bail!(user_error(
            "--all takes one resource type and no names or files: peapod delete pods --all"
        ));
    }
    if !files.is_empty() {
        for (_, text) in read_manifests(files)? {
            for object in
                peapod_api::decode::decode_objects(&text).map_err(|e| user_error(e.to_string()))?
            {
                let meta = object.metadata();
                let ns = meta
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string());
                let resource = match object {
                    Object::Pod(_) => Resource::Pods,
                    Object::ConfigMap(_) => Resource::ConfigMaps,
                    Object::Secret(_) => Resource::Secrets,
                };
                targets.push((resource, ns, meta.name.clone().unwrap_or_default()));
            }
        }
    } else {
        let Some((resource, rest)) = args.split_first() else {
            bail!(user_error("You must provide one or more resources by argument or filename: peapod delete pod NAME | -f FILE"));
        };
        let (resource, mut names) = match resource.split_once('/') {
            Some((r, n)) => (r.to_string(), vec![n.to_string()]),
            None => (resource.clone(), Vec::new()),
        };
        let kind = resource_of(&resource)?;
        names.extend(rest.iter().cloned());
        if all {
            names = match kind {
                Resource::Pods => engine
                    .list_pods(Some(namespace))?
                    .into_iter()
                    .filter(|v| v.pod.metadata.deletion_timestamp.is_none())
                    .filter_map(|v| v.pod.metadata.name)
                    .collect(),
                Resource::ConfigMaps => engine
                    .list_objects::<ConfigMap>(Some(namespace))?
                    .into_iter()
                    .filter_map(|o| o.metadata.name)
                    .collect(),
                Resource::Secrets => engine
                    .list_objects::<Secret>(Some(namespace))?
                    .into_iter()
                    .filter_map(|o| o.metadata.name)
                    .collect(),
            };
            if names.is_empty() {
                eprintln!("No resources found in {namespace} namespace.");
                return Ok(0);
            }
        }
        if names.is_empty() {
            bail!(user_error(
                "resource(s) were provided, but no name was specified"
            ));
        }
        targets.extend(names.into_iter().map(|n| (kind, namespace.to_string(), n)));
    }
    let mut failed = 0;
    for (kind, ns, name) in targets {
        let deleted = match kind {
            Resource::Pods => None,
            Resource::ConfigMaps => Some(
                engine
                    .delete_object::<ConfigMap>(&ns, &name)
                    .map(|_| ConfigMap::SINGULAR),
            ),
            Resource::Secrets => Some(
                engine
                    .delete_object::<Secret>(&ns, &name)
                    .map(|_| Secret::SINGULAR),
            ),
        };
        match deleted {
            None => {}
            Some(Ok(singular)) => {
                writeln!(out, "{singular} \"{name}\" deleted")?;
                continue;
            }
            Some(Err(ObjectError::NotFound { .. })) if ignore_not_found => continue,
            Some(Err(e @ ObjectError::NotFound { .. })) => {
                eprintln!("Error from server (NotFound): {e}");
                failed += 1;
                continue;
            }
            Some(Err(e)) => {
                eprintln!("error: deleting {name}: {e}");
                failed += 1;
                continue;
            }
        }
        match engine.find_pod(&ns, &name) {
            Ok(v) => match engine.delete_pod(&v, grace) {
                Ok(()) => writeln!(out, "pod \"{name}\" deleted")?,
                Err(e) => {
                    eprintln!("error: deleting pod \"{name}\": {e:#}");
                    failed += 1;
                }
            },
            Err(_) if ignore_not_found => {}
            Err(_) => {
                eprintln!("Error from server (NotFound): pods \"{name}\" not found");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The container record behind `POD [-c NAME]`: kubectl's default container (the
/// `kubectl.kubernetes.io/default-container` annotation, else the first), its current
/// instance, or with `previous` the one before.
/// What `exec`, `attach` and `logs` act on: a container by name or id, or (with `-c` or
/// `--previous`, or when no container has that name) a pod's container.
pub fn container_or_pod_container(
    engine: &Engine,
    namespace: &str,
    name: &str,
    pod_container_name: Option<&str>,
    previous: bool,
) -> Result<Container> {
    match (pod_container_name, previous, engine.find(name)) {
        (None, false, Ok(c)) => Ok(c),
        (_, _, Err(e)) if engine.find_pod(namespace, name).is_err() => Err(e),
        _ => pod_container(engine, namespace, name, pod_container_name, previous),
    }
}

pub fn pod_container(
    engine: &Engine,
    namespace: &str,
    pod: &str,
    name: Option<&str>,
    previous: bool,
) -> Result<Container> {
    let view = engine.find_pod(namespace, pod)?;
    let spec = view.pod.spec.clone().unwrap_or_default();
    let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    let chosen = match name {
        Some(n) => {
            let known = names.iter().any(|c| c == n)
                || spec.init_containers.iter().flatten().any(|c| c.name == n);
            if !known {
                bail!(user_error(format!(
                    "container {n} is not valid for pod {pod}"
                )));
            }
            n.to_string()
        }
        None => {
            let annotated = view
                .pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
                .filter(|a| names.contains(a))
                .cloned();
            let c = annotated
                .clone()
                .unwrap_or_else(|| names.first().cloned().unwrap_or_default());
            if annotated.is_none() && names.len() > 1 {
                eprintln!("Defaulted container \"{c}\" out of: {}", names.join(", "));
            }
            c
        }
    };
    let mut instances: Vec<Container> = engine
        .pod_containers(&view.uid)?
        .into_iter()
        .filter(|c| {
            c.config
                .pod
                .as_ref()
                .is_some_and(|l| !l.infra && l.container_name == chosen)
        })
        .collect();
    instances.sort_by_key(|c| std::cmp::Reverse(c.config.pod.as_ref().map_or(0, |l| l.attempt)));
    let found = if previous {
        instances.get(1)
    } else {
        instances.first()
    };
    match found {
        Some(c) => Ok(c.clone()),
        None if previous => bail!(user_error(format!(
            "previous terminated container \"{chosen}\" in pod \"{pod}\" not found"
        ))),
        None => bail!(user_error(format!(
            "container \"{chosen}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
        ))),
    }
}

/// Waiting reasons that mean a pod will not come up without a change.
const FATAL_WAITING: [&str; 7] = [
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// `apply --wait`: returns 0 once every container of every pod in the manifests runs, 1
/// with the reason as soon as one cannot (as `podman kube play` waits).
pub fn wait_running(
    engine: &Engine,
    files: &[String],
    timeout: std::time::Duration,
) -> Result<i32> {
    let targets: Vec<(String, String)> = load_pods(files)?
        .into_iter()
        .map(|(_, p)| {
            (
                p.metadata.namespace.unwrap_or_else(|| "default".into()),
                p.metadata.name.unwrap_or_default(),
            )
        })
        .collect();
    // Each pod is found once; then only its own records are read, each time its monitor
    // says they changed (on the pipe of a monitor this command started) or replaces one
    // (inotify on the pod's directory, for the other pods), at least every WAIT_POLL_MS.
    let mut reports: Vec<(String, std::process::ChildStdout)> = engine
        .monitor_reports
        .as_ref()
        .map(|r| std::mem::take(&mut *r.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    // Made only for pods without a pipe: its teardown at exit waits for a grace period.
    let mut changes: Option<Inotify> = None;
    fn watch(changes: &mut Option<Inotify>, dir: &std::path::Path) {
        if changes.is_none() {
            *changes = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok();
        }
        if let Some(changes) = changes {
            // Records are replaced by rename (closing a file opened for writing would also
            // be this command's own lock checks).
            let _ = changes.add_watch(dir, AddWatchFlags::IN_MOVED_TO);
        }
    }
    let mut pending = Vec::new();
    for (ns, name) in targets {
        let uid = engine
            .find_pod_uid(&ns, &name)?
            .ok_or_else(|| user_error(format!("pods \"{name}\" not found")))?;
        if !reports.iter().any(|(u, _)| *u == uid) {
            watch(&mut changes, &engine.pod_dir(&uid));
        }
        pending.push((uid, name));
    }
    let start = std::time::Instant::now();
    let mut buf = [0u8; 512];
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (uid, name) in pending {
            let view = engine
                .pod_view(&uid)
                .with_context(|| format!("waiting for pod {name}"))?;
            let status = view.pod.status.clone().unwrap_or_default();
            if status.phase.as_deref() == Some("Failed") {
                bail!(user_error(format!(
                    "pod {name} failed: {}",
                    peapod_api::print::status_reason(&view.pod)
                )));
            }
            let statuses = status.container_statuses.clone().unwrap_or_default();
            let want = view.pod.spec.as_ref().map_or(0, |s| s.containers.len());
            let running = statuses
                .iter()
                .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                .count();
            let fatal = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(statuses.iter())
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .find(|r| FATAL_WAITING.contains(&r.as_str()));
            if let Some(reason) = fatal {
                bail!(user_error(format!("pod {name} cannot start: {reason}")));
            }
            if running < want || want == 0 {
                still.push((uid, name));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > timeout {
            bail!(user_error(format!(
                "timed out waiting for pods to run: {:?}",
                pending.iter().map(|p| &p.1).collect::<Vec<_>>()
            )));
        }
        reports.retain(|(uid, _)| pending.iter().any(|(u, _)| u == uid));
        let mut fds: Vec<PollFd> = reports
            .iter()
            .map(|(_, pipe)| PollFd::new(pipe.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(changes) = &changes {
            fds.push(PollFd::new(changes.as_fd(), PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(WAIT_POLL_MS));
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if let Some(changes) = &changes {
            let _ = changes.read_events();
        }
        // A pipe at its end (the monitor let go of it, or died): that pod is watched the
        // other way from now on.
        let mut ended = Vec::new();
        for (i, (uid, pipe)) in reports.iter_mut().enumerate() {
            if ready[i] && matches!(std::io::Read::read(pipe, &mut buf), Ok(0) | Err(_)) {
                ended.push(i);
                watch(&mut changes, &engine.pod_dir(uid));
            }
        }
        for i in ended.into_iter().rev() {
            reports.remove(i);
        }
    }
    Ok(0)
}

/// The longest `apply --wait` goes without looking at its pods (when no change was seen).
const WAIT_POLL_MS: u16 = 50;
