//! Pods on the engine: a pod is a sandbox (peapod's infra process holding the pod's
//! namespaces and IP) plus containers that join it by path — the same mechanism as
//! `run --network container:X`. Every pod container, the infra included, is an ordinary
//! container record (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`), so `ps`,
//! `inspect`, `exec` and `logs` work on them unchanged. This module stores pods, computes
//! their status, and creates and deletes them; `pod_monitor` runs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use peapod_api::status::{ObservedPod, ObservedState};
use peapod_sandbox::netns;
use peapod_store::Lock;

use crate::engine::{user_error, wait_until, Engine};
use crate::record::{ContainerConfig, NetworkMode, Phase, PodLink, State};

/// A stored pod with its current status filled in.
#[derive(Debug, Clone)]
pub struct PodView {
    /// The pod, `status` computed now.
    pub pod: Pod,
    /// Its uid.
    pub uid: String,
}

impl PodView {
    /// Namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// Name.
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }
}

/// What `apply` did with one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Made.
    Created,
    /// Nothing to change.
    Unchanged,
    /// Metadata or images updated.
    Configured,
}

/// chrono → the Kubernetes API's time type.
pub fn k8s_time(t: chrono::DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or_default(),
    )
}

/// The Kubernetes API's time type → chrono.
pub fn chrono_time(t: &Time) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// A new random uid in the RFC 4122 version 4 form Kubernetes uses.
fn new_uid() -> String {
    let h = peapod_store::new_id();
    let mut b: Vec<char> = h[..32].chars().collect();
    b[12] = '4';
    b[16] = ['8', '9', 'a', 'b'][usize::from(b[16].to_digit(16).unwrap_or(0) as u8 % 4)];
    let s: String = b.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// The docker-style name of a pod container.
pub fn container_name(
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
    attempt: u32,
) -> String {
    format!("k8s_{container}_{pod}_{namespace}_{uid}_{attempt}")
}

impl Engine {
    /// The directory of all pods.
    pub fn pods_dir(&self) -> PathBuf {
        self.paths.lib.join("pods")
    }

    /// One pod's directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// The pod's cgroup (absolute cgroups path), parent of its containers' cgroups.
    pub fn pod_cgroup(&self, uid: &str) -> String {
        format!("/{}/pod{uid}", self.config.cgroup_parent)
    }

    /// The log directory of a pod's containers.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.paths
            .log
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"))
    }

    pub(crate) fn pods_lock(&self) -> Result<Lock> {
        Ok(Lock::exclusive(&self.paths.lib.join("pods.lock"))?)
    }

    /// The pod's lifecycle lock, held by whoever makes, recovers or deletes its sandbox
    /// (never by its monitor), so no two commands do so at once and recovery leaves alone a
    /// pod another live command is working on.
    pub(crate) fn pod_lock_path(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("lifecycle.lock")
    }

    /// Reads a pod's stored manifest.
    pub fn stored_pod(&self, uid: &str) -> Result<Option<Pod>> {
        Ok(peapod_store::read_json(
            &self.pod_dir(uid).join("pod.json"),
        )?)
    }

    /// The uids of the pod directories (not the dot-named ones being made or removed).
    pub fn pod_uids(&self) -> Result<Vec<String>> {
        let dir = self.pods_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|uid| !uid.starts_with('.'))
            .collect())
    }

    /// Every stored pod manifest with its uid (nothing else is read).
    fn stored_pods(&self) -> Result<Vec<(String, Pod)>> {
        let mut out = Vec::new();
        for uid in self.pod_uids()? {
            if let Some(pod) = self.stored_pod(&uid)? {
                out.push((uid, pod));
            }
        }
        Ok(out)
    }

    /// Every pod (in `namespace`, or all), with status.
    pub fn list_pods(&self, namespace: Option<&str>) -> Result<Vec<PodView>> {
        // Container records are read only when some pod's monitor is gone.
        let mut containers = None;
        let mut out = Vec::new();
        for (uid, pod) in self.stored_pods()? {
            if namespace.is_some_and(|ns| pod.metadata.namespace.as_deref() != Some(ns)) {
                continue;
            }
            out.push(self.view(pod, &uid, &mut containers)?);
        }
        out.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        Ok(out)
    }

    /// A pod by namespace and name; only its status is computed.
    pub fn find_pod(&self, namespace: &str, name: &str) -> Result<PodView> {
        match self.find_pod_uid(namespace, name)? {
            Some(uid) => self.pod_view(&uid),
            None => Err(user_error(format!("pods \"{name}\" not found"))),
        }
    }

    /// The uid of the pod `namespace/name`: only the names of the stored pods are decoded
    /// (a command that names one pod need not build every pod of the host).
    pub fn find_pod_uid(&self, namespace: &str, name: &str) -> Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Named {
            metadata: NamedMeta,
        }
        #[derive(serde::Deserialize)]
        struct NamedMeta {
            name: Option<String>,
            namespace: Option<String>,
        }
        for uid in self.pod_uids()? {
            let Some(head) =
                peapod_store::read_json::<Named>(&self.pod_dir(&uid).join("pod.json"))?
            else {
                continue;
            };
            if head.metadata.name.as_deref() == Some(name)
                && head.metadata.namespace.as_deref().unwrap_or("default") == namespace
            {
                return Ok(Some(uid));
            }
        }
        Ok(None)
    }

    /// The pod with uid `uid`, its status computed now.
    pub fn pod_view(&self, uid: &str) -> Result<PodView> {
        let pod = self
            .stored_pod(uid)?
            .ok_or_else(|| user_error(format!("pod {uid} not found")))?;
        self.view(pod, uid, &mut None)
    }

    /// The pod with its status: what the monitor observed, corrected by what is true now
    /// when the monitor is gone (a container it saw running may have died since).
    fn view(
        &self,
        mut pod: Pod,
        uid: &str,
        containers: &mut Option<Vec<crate::engine::Container>>,
    ) -> Result<PodView> {
        let dir = self.pod_dir(uid);
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Utc::now, chrono_time);
        let mut observed: ObservedPod = peapod_store::read_json(&dir.join("observed.json"))?
            .unwrap_or(ObservedPod {
                sandbox_ready: false,
                pod_ip: None,
                host_ip: None,
                start_time: None,
                scheduled_at: created,
                containers: Vec::new(),
            });
        let monitor_alive = Lock::is_held(&dir.join("monitor.lock"))?;
        if !monitor_alive {
            if containers.is_none() {
                *containers = Some(self.list()?);
            }
            let containers = containers.as_deref().unwrap_or_default();
            for oc in &mut observed.containers {
                let Some(id) = oc
                    .container_id
                    .as_deref()
                    .and_then(|c| c.strip_prefix("peapod://"))
                else {
                    continue;
                };
                let Some(c) = containers.iter().find(|c| c.config.id == id) else {
                    continue;
                };
                if let (
                    ObservedState::Running { started_at },
                    State::Exited { code, finished_at },
                ) = (&oc.state, &c.state)
                {
                    oc.state = ObservedState::Terminated {
                        exit_code: *code,
                        signal: None,
                        reason: if *code == 0 {
                            "Completed".into()
                        } else {
                            "Error".into()
                        },
                        message: c.status.as_ref().and_then(|s| s.error.clone()),
                        started_at: Some(*started_at),
                        finished_at: *finished_at,
                    }
                }
            }
            if let Some(infra) = containers.iter().find(|c| {
                c.config
                    .pod
                    .as_ref()
                    .is_some_and(|l| l.uid == uid && l.infra)
            }) {
                observed.sandbox_ready = matches!(infra.state, State::Running { .. });
            }
        }
        pod.status = Some(peapod_api::status::pod_status(&pod, &observed));
        // A CRI sandbox's containers are the kubelet's, not its spec's.
        self.cri_pod_status(uid, &mut pod, &observed)?;
        Ok(PodView {
            pod,
            uid: uid.to_string(),
        })
    }

    /// The container records of one pod (infra included), newest first.
    pub fn pod_containers(&self, uid: &str) -> Result<Vec<crate::engine::Container>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.config.pod.as_ref().is_some_and(|l| l.uid == uid))
            .collect())
    }

    /// The pod's events, oldest first.
    pub fn pod_events(&self, uid: &str) -> Result<Vec<Event>> {
        Ok(peapod_store::read_json(&self.pod_dir(uid).join("events.json"))?.unwrap_or_default())
    }

    /// Records an event for a pod (count-merged with the previous identical one).
    pub fn record_event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) -> Result<()> {
        self.record_events(pod, &[PodEvent::now(kind, reason, message)])
    }

    /// Records events for a pod, in order, with one read and one write of its events file
    /// (each count-merged with the previous identical one).
    pub fn record_events(&self, pod: &Pod, new: &[PodEvent]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let path = self.pod_dir(&uid).join("events.json");
        let _lock = Lock::exclusive(&self.pod_dir(&uid).join("events.lock"))?;
        let mut events: Vec<Event> = peapod_store::read_json(&path)?.unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        for e in new {
            let now = k8s_time(e.at);
            if let Some(last) = events.last_mut() {
                if last.reason.as_deref() == Some(e.reason.as_str())
                    && last.message.as_deref() == Some(e.message.as_str())
                {
                    last.count = Some(last.count.unwrap_or(1) + 1);
                    last.last_timestamp = Some(now);
                    continue;
                }
            }
            events.push(Event {
                metadata: ObjectMeta {
                    name: Some(format!(
                        "{name}.{:x}",
                        e.at.timestamp_nanos_opt().unwrap_or_default()
                    )),
                    namespace: Some(namespace.clone()),
                    ..Default::default()
                },
                involved_object: ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: Some(uid.clone()),
                    api_version: Some("v1".into()),
                    ..Default::default()
                },
                reason: Some(e.reason.clone()),
                message: Some(e.message.clone()),
                type_: Some(e.kind.clone()),
                count: Some(1),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                source: Some(EventSource {
                    component: Some("peapod".into()),
                    host: None,
                }),
                ..Default::default()
            });
        }
        Ok(peapod_store::replace_json(&path, &events)?)
    }

    /// `apply`/`create -f` of one validated, defaulted pod.
    pub fn apply_pod(&self, mut pod: Pod, create_only: bool) -> Result<Applied> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let lock = self.pods_lock()?;
        if let Ok(existing) = self.find_pod(&namespace, &name) {
            if create_only {
                bail!(user_error(format!("pods \"{name}\" already exists")));
            }
            let mut old = existing.pod.clone();
            old.status = None;
            // Fields the server set are not the user's to change.
            if let (Some(new_spec), Some(old_spec)) = (pod.spec.as_mut(), old.spec.as_ref()) {
                if new_spec.node_name.is_none() {
                    new_spec.node_name = old_spec.node_name.clone();
                }
            }
            if old.spec == pod.spec
                && old.metadata.labels == pod.metadata.labels
                && old.metadata.annotations == pod.metadata.annotations
            {
                return Ok(Applied::Unchanged);
            }
            if let Err(invalid) = peapod_api::validate::validate_update(&old, &pod) {
                bail!(user_error(invalid.to_string()));
            }
            old.metadata.labels = pod.metadata.labels.clone();
            old.metadata.annotations = pod.metadata.annotations.clone();
            old.spec = pod.spec.clone();
            peapod_store::write_json(&self.pod_dir(&existing.uid).join("pod.json"), &old)?;
            return Ok(Applied::Configured);
        }
        // Host ports peapod cannot publish are refused before anything is made.
        crate::hostport::pod_host_ports(&pod)?;
        let uid = new_uid();
        pod.metadata.uid = Some(uid.clone());
        pod.metadata.namespace = Some(namespace.clone());
        pod.metadata.creation_timestamp = Some(k8s_time(Utc::now()));
        pod.metadata.resource_version = Some("1".into());
        pod.status = None;
        let node = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.clone());
        }
        let staging = self.pods_dir().join(format!(".{uid}"));
        peapod_store::create_dir_all(&staging)?;
        // Taken before the pod is visible and kept until its monitor runs, so recovery
        // never mistakes a pod being created for one whose creator died.
        let pod_lock = Lock::exclusive(&staging.join("lifecycle.lock"))?;
        peapod_store::write_json(&staging.join("pod.json"), &pod)?;
        fs::rename(&staging, self.pod_dir(&uid))
            .with_context(|| format!("committing pod {name}"))?;
        drop(lock);
        crate::fault::point("pod-committed")?;
        self.record_event(
            &pod,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {namespace}/{name} to {node}"),
        )?;
        if let Err(e) = self.start_pod(&pod, &uid, 0) {
            // Marked deleted first: a teardown that fails half way is finished by recovery,
            // never mistaken for a pod to bring back.
            let mut gone = pod.clone();
            gone.metadata.deletion_timestamp = Some(k8s_time(Utc::now()));
            gone.metadata.deletion_grace_period_seconds = Some(0);
            let _ = peapod_store::write_json(&self.pod_dir(&uid).join("pod.json"), &gone);
            let _ = self.teardown_pod(&uid);
            return Err(e);
        }
        drop(pod_lock);
        Ok(Applied::Created)
    }

    /// Makes the pod's sandbox record (infra: netns, IP, /etc files), named with `attempt`,
    /// and starts its monitor. The caller holds the pod's lifecycle lock.
    pub(crate) fn start_pod(&self, pod: &Pod, uid: &str, attempt: u32) -> Result<()> {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let host_network = spec.host_network.unwrap_or(false);
        let id = peapod_store::new_id();
        let hostname = if host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            spec.hostname.clone().unwrap_or_else(|| name.clone())
        };
        let mut infra = ContainerConfig {
            id: id.clone(),
            name: container_name("POD", &name, &namespace, uid, attempt),
            created: Utc::now(),
            image: "peapod/infra".into(),
            image_id: String::new(),
            args: vec!["peapod".into(), "infra".into()],
            env: Vec::new(),
            cwd: "/".into(),
            user: "0".into(),
            tty: false,
            open_stdin: false,
            auto_remove: false,
            hostname,
            network_mode: if host_network {
                NetworkMode::Host
            } else {
                NetworkMode::Bridge
            },
            netns: (!host_network).then(|| self.paths.netns().join(&id)),
            endpoint: None,
            mounts: Vec::new(),
            // Published by the pod monitor for as long as the sandbox lives.
            ports: self.sandbox_host_ports(pod, uid)?,
            // Not run by an OCI runtime: the infra is peapod itself.
            runtime: PathBuf::from("peapod-infra"),
            cgroups_path: String::new(),
            phase: Phase::Creating,
            labels: pod_labels(pod, "POD"),
            pod: Some(PodLink {
                uid: uid.to_string(),
                namespace: namespace.clone(),
                pod_name: name.clone(),
                container_name: "POD".into(),
                infra: true,
                init: false,
                attempt,
                ipc: None,
                uts: None,
                pid: None,
            }),
            log_path: None,
            resources: Default::default(),
        };
        // Write-ahead record, then the network, then the /etc files.
        let dir = self.container_dir(&id);
        {
            let _lock = self.global_lock()?;
            let staging = self.paths.containers().join(format!(".{id}"));
            peapod_store::create_dir_all(&staging)?;
            peapod_store::write_json(&staging.join("container.json"), &infra)?;
            fs::rename(&staging, &dir).with_context(|| format!("committing {}", dir.display()))?;
            peapod_store::atomic_write(&self.pod_dir(uid).join("infra.id"), id.as_bytes())?;
        }
        crate::fault::point("sandbox-committed")?;
        if let Some(pin) = infra.netns.clone() {
            netns::create(&pin)
                .with_context(|| format!("creating the pod network namespace {}", pin.display()))?;
            crate::fault::point("netns-created")?;
            let endpoint = peapod_sandbox::PodNetwork::new(
                &self.paths.network(),
                &self.paths.cni_conf_dir(),
                self.config.network.clone(),
            )
            .attach(&id, &pin)
            .context("attaching the pod to the network")?;
            infra.endpoint = Some(endpoint);
        }
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut hosts = if host_network {
            fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            peapod_sandbox::etc::hosts(&infra.hostname, infra.endpoint.as_ref().map(|e| e.ip))
        };
        for alias in spec.host_aliases.iter().flatten() {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            hosts.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{names}\n",
                alias.ip
            ));
        }
        let mut resolv = peapod_sandbox::etc::resolv_conf(&host_resolv);
        if let Some(dns) = &spec.dns_config {
            let mut lines = Vec::new();
            for ns in dns.nameservers.iter().flatten() {
                lines.push(format!("nameserver {ns}"));
            }
            if let Some(search) = &dns.searches {
                lines.push(format!("search {}", search.join(" ")));
            }
            if spec.dns_policy.as_deref() == Some("None") {
                resolv = lines.join("\n") + "\n";
            } else {
                resolv.push_str(&(lines.join("\n") + "\n"));
            }
        }
        // Derived files: a sandbox made anew (recovery) writes them again.
        peapod_store::replace(&dir.join("hosts"), hosts.as_bytes())?;
        peapod_store::replace(&dir.join("resolv.conf"), resolv.as_bytes())?;
        peapod_store::replace(
            &dir.join("hostname"),
            format!("{}\n", infra.hostname).as_bytes(),
        )?;
        infra.phase = Phase::Created;
        peapod_store::write_json(&dir.join("container.json"), &infra)?;
        crate::fault::point("sandbox-ready")?;

        let exe = crate::engine::self_exe();
        let mut cmd = Command::new(exe);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("pod-monitor").arg(uid);
        // Memory of a long-lived monitor: its few threads share one malloc arena (glibc
        // gives each thread that allocates an arena of its own, ~100 KiB dirty each, kept
        // after the thread ends), their stacks are unmapped when they end (not cached), and
        // blocks from 16 KiB are mapped apart, so the start's big temporaries leave no holes
        // in the heap (its infra inherits these too).
        let tunables = "glibc.malloc.arena_max=1:glibc.pthread.stack_cache_size=0:glibc.malloc.mmap_threshold=16384";
        cmd.env(
            "GLIBC_TUNABLES",
            match std::env::var("GLIBC_TUNABLES") {
                Ok(t) if !t.is_empty() => format!("{t}:{tunables}"),
                _ => tunables.to_string(),
            },
        );
        if self.monitor_reports.is_some() {
            cmd.arg("--report-changes");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the pod monitor")?;
        let mut stdout = child.stdout.take().expect("the child's stdout is piped");
        let line = crate::engine::read_report_on(
            &mut child,
            &mut stdout,
            "the pod monitor",
            Duration::from_secs(60),
        )?;
        if line == "ok" {
            if let Some(reports) = &self.monitor_reports {
                let mut reports = reports.lock().unwrap_or_else(|e| e.into_inner());
                reports.push((uid.to_string(), stdout));
            }
            return Ok(());
        }
        let _ = child.wait();
        Err(anyhow!(
            "starting pod {name}: {}",
            line.trim_end()
                .strip_prefix("error: ")
                .unwrap_or("the pod monitor exited before the sandbox was ready")
        ))
    }

    /// `delete pod`: marks the pod Terminating, lets its monitor stop the containers
    /// (SIGTERM, grace period, SIGKILL, infra last), then removes every resource. Bounded
    /// and idempotent: a dead or stuck monitor is handled here.
    pub fn delete_pod(&self, view: &PodView, grace: Option<i64>) -> Result<()> {
        let dir = self.pod_dir(&view.uid);
        let mut pod = self
            .stored_pod(&view.uid)?
            .ok_or_else(|| user_error(format!("pods \"{}\" not found", view.name())))?;
        let spec_grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = grace.unwrap_or(spec_grace).max(0);
        // Waits for a creation or recovery of this pod in flight (each is bounded).
        let _pod_lock = Lock::exclusive(&self.pod_lock_path(&view.uid))?;
        if pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp =
                Some(k8s_time(Utc::now() + chrono::Duration::seconds(grace)));
            pod.metadata.deletion_grace_period_seconds = Some(grace);
            peapod_store::write_json(&dir.join("pod.json"), &pod)?;
        }
        crate::fault::point("delete-marked")?;
        let monitor_lock = dir.join("monitor.lock");
        if Lock::is_held(&monitor_lock)? {
            let pid: Option<i32> = fs::read_to_string(dir.join("monitor.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            crate::fault::point("delete-signalled")?;
            let limit = Duration::from_secs(grace as u64 + 15);
            if !wait_until(limit, || !Lock::is_held(&monitor_lock).unwrap_or(false)) {
                // A stuck monitor: its containers are killed by the teardown below.
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        self.teardown_pod(&view.uid)
    }

    /// Removes every resource of a pod: its containers (killed if still alive), the
    /// sandbox (network, netns), emptyDir volumes, logs and records. Each step is attempted.
    pub fn teardown_pod(&self, uid: &str) -> Result<()> {
        let mut errors = Vec::new();
        let containers = self.pod_containers(uid)?;
        // App and init containers first, together (each unmount of a rootfs waits for an
        // RCU grace period: one after the other they added up), the infra last.
        let (infra, apps): (Vec<_>, Vec<_>) = containers
            .iter()
            .partition(|c| c.config.pod.as_ref().is_some_and(|l| l.infra));
        for group in [apps, infra] {
            let failed: Vec<String> = std::thread::scope(|scope| {
                let removals: Vec<_> = group
                    .iter()
                    .map(|c| scope.spawn(move || self.remove(c, true, true)))
                    .collect();
                group
                    .iter()
                    .zip(removals)
                    .filter_map(|(c, r)| match r.join() {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(format!("{}: {e:#}", c.config.name)),
                        Err(_) => Some(format!("{}: the removal panicked", c.config.name)),
                    })
                    .collect()
            });
            errors.extend(failed);
        }
        crate::fault::point("teardown-containers-removed")?;
        let dir = self.pod_dir(uid);
        // The pod's cgroup, once its containers' are gone (the runtime removed those).
        let mount = Path::new("/sys/fs/cgroup");
        let layout = peapod_oci::cgroups::detect(mount);
        for cg in peapod_oci::cgroups::dirs(mount, layout, &self.pod_cgroup(uid)) {
            if let Err(e) = fs::remove_dir(&cg) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(format!(
                        "removing cgroup {}: {e}{}",
                        cg.display(),
                        cgroup_occupants(&cg)
                    ));
                }
            }
        }
        if layout == peapod_oci::cgroups::CgroupLayout::V1 {
            // runc also makes the directory in a hybrid host's cgroup2 mount.
            let _ = fs::remove_dir(
                mount
                    .join("unified")
                    .join(self.pod_cgroup(uid).trim_start_matches('/')),
            );
        }
        let volumes = dir.join("volumes");
        if let Ok(rd) = fs::read_dir(&volumes) {
            for v in rd.flatten() {
                let _ = peapod_image::rootfs::unmount(&v.path());
            }
        }
        if let Some(pod) = self.stored_pod(uid)? {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let _ = fs::remove_dir_all(self.pod_log_dir(&ns, &name, uid));
        }
        crate::engine::finish_removal(&dir, errors, "deleting the pod")
    }
}

/// What keeps a cgroup from being removed, for the error: its child cgroups and processes.
fn cgroup_occupants(cg: &Path) -> String {
    let children: Vec<String> = fs::read_dir(cg)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    let procs: Vec<&str> = procs.split_whitespace().collect();
    format!(
        " (child cgroups: [{}]; processes: [{}])",
        children.join(", "),
        procs.join(", ")
    )
}

/// The Docker labels kubelet puts on pod containers.
pub fn pod_labels(pod: &Pod, container: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (
            "io.kubernetes.pod.name".to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.uid".to_string(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.container.name".to_string(),
            container.to_string(),
        ),
    ])
}

/// A hostPath or emptyDir source path check shared by the monitor: `sub` joined under
/// `base` must stay inside it.
pub fn join_sub_path(base: &Path, sub: &str) -> Result<PathBuf> {
    if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
        bail!("subPath {sub:?} must be a relative path without '..'");
    }
    let joined = base.join(sub);
    fs::create_dir_all(&joined)
        .with_context(|| format!("creating subPath {}", joined.display()))?;
    let real = joined
        .canonicalize()
        .with_context(|| format!("resolving {}", joined.display()))?;
    let real_base = base
        .canonicalize()
        .with_context(|| format!("resolving {}", base.display()))?;
    if !real.starts_with(&real_base) {
        bail!("subPath {sub:?} escapes its volume through a symlink");
    }
    Ok(real)
}

/// An event to record for a pod: type (`Normal`, `Warning`), reason, message and when.
#[derive(Debug, Clone)]
pub struct PodEvent {
    /// `Normal` or `Warning`.
    pub kind: String,
    /// The reason (`Created`, `BackOff`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl PodEvent {
    /// An event happening now.
    pub fn now(kind: &str, reason: &str, message: &str) -> Self {
        Self {
            kind: kind.into(),
            reason: reason.into(),
            message: message.into(),
            at: Utc::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_events_is_one_write_in_order_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(Some(dir.path().to_path_buf()), None).unwrap();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        fs::create_dir_all(engine.pod_dir("u1")).unwrap();
        engine
            .record_event(&pod, "Normal", "Scheduled", "Assigned")
            .unwrap();
        // An hour before the write (whole seconds: that is what the record keeps).
        let t0 = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
        let batch = [
            PodEvent::now("Normal", "Pulled", "present"),
            PodEvent::now("Normal", "Created", "a"),
            PodEvent::now("Normal", "Created", "a"),
            PodEvent {
                at: t0,
                ..PodEvent::now("Warning", "BackOff", "back-off")
            },
        ];
        engine.record_events(&pod, &batch).unwrap();
        let events = engine.pod_events("u1").unwrap();
        let got: Vec<(&str, &str, i32)> = events
            .iter()
            .map(|e| {
                (
                    e.type_.as_deref().unwrap(),
                    e.reason.as_deref().unwrap(),
                    e.count.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Normal", "Scheduled", 1),
                ("Normal", "Pulled", 1),
                ("Normal", "Created", 2),
                ("Warning", "BackOff", 1)
            ]
        );
        // Each keeps the time it happened, not the time of the write.
        assert_eq!(events[3].first_timestamp, Some(k8s_time(t0)));
        assert_eq!(
            events[3].involved_object.name.as_deref(),
            Some("web"),
            "names the pod"
        );
    }
}
