//! The kubectl-style commands: `apply`/`create -f`, `get pods`, `describe pod`,
//! `delete pod`, and pod container selection for `exec`/`logs`, with kubectl's wording.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;

use crate::engine::{user_error, Container, Engine};
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

/// Decodes, defaults and validates every pod of the manifests, all before anything is made.
fn load_pods(files: &[String]) -> Result<Vec<(String, Pod)>> {
    let mut pods = Vec::new();
    for (source, text) in read_manifests(files)? {
        let decoded = peapod_api::decode::decode_pods(&text)
            .map_err(|e| user_error(format!("error parsing {source}: {e}")))?;
        for mut pod in decoded {
            peapod_api::defaults::apply_defaults(&mut pod);
            if let Err(invalid) = peapod_api::validate::validate_pod(&pod) {
                bail!(user_error(format!(
                    "error when creating \"{source}\": {invalid}"
                )));
            }
            pods.push((source.clone(), pod));
        }
    }
    Ok(pods)
}

/// `apply -f` (and `create -f` with `create_only`).
pub fn apply(
    engine: &Engine,
    files: &[String],
    create_only: bool,
    out: &mut impl Write,
) -> Result<i32> {
    let pods = load_pods(files)?;
    let mut failed = 0;
    for (source, pod) in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match engine.apply_pod(pod, create_only) {
            Ok(Applied::Created) => writeln!(out, "pod/{name} created")?,
            Ok(Applied::Unchanged) => writeln!(out, "pod/{name} unchanged")?,
            Ok(Applied::Configured) => writeln!(out, "pod/{name} configured")?,
            Err(e) => {
                let verb = if create_only { "creating" } else { "applying" };
                eprintln!("Error from server: error when {verb} \"{source}\": {e:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn check_pod_resource(resource: &str) -> Result<()> {
    match resource {
        "pods" | "pod" | "po" => Ok(()),
        other => bail!(user_error(format!(
            "the server doesn't have a resource type \"{other}\" (peapod serves pods)"
        ))),
    }
}

/// `get pods [NAME...] [-n NS | -A] [-o wide|yaml|json|name]`.
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
    check_pod_resource(&resource)?;
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

/// `describe pod NAME...`.
pub fn describe(
    engine: &Engine,
    resource: &str,
    names: &[String],
    namespace: &str,
    out: &mut impl Write,
) -> Result<i32> {
    check_pod_resource(resource)?;
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

/// `delete pod NAME...` or `delete -f FILE`: returns once every resource is gone.
pub fn delete(
    engine: &Engine,
    args: &[String],
    files: &[String],
    namespace: &str,
    grace: Option<i64>,
    ignore_not_found: bool,
    out: &mut impl Write,
) -> Result<i32> {
    let mut targets: Vec<(String, String)> = Vec::new();
    if !files.is_empty() {
        for (_, text) in read_manifests(files)? {
            for pod in
                peapod_api::decode::decode_pods(&text).map_err(|e| user_error(e.to_string()))?
            {
                let ns = pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string());
                targets.push((ns, pod.metadata.name.clone().unwrap_or_default()));
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
        check_pod_resource(&resource)?;
        names.extend(rest.iter().cloned());
        if names.is_empty() {
            bail!(user_error(
                "resource(s) were provided, but no name was specified"
            ));
        }
        targets.extend(names.into_iter().map(|n| (namespace.to_string(), n)));
    }
    let mut failed = 0;
    for (ns, name) in targets {
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
    let start = std::time::Instant::now();
    let mut pending = targets;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (ns, name) in pending {
            let view = engine.find_pod(&ns, &name)?;
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
                still.push((ns, name));
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
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(0)
}
