//! `runtime.v1.RuntimeService`: the runtime's identity and conditions, pod sandboxes and
//! containers over the engine (`engine_cri.rs`), ExecSync. What is not served yet answers
//! `Unimplemented` with its name, so a kubelet or crictl gets a clear error rather than a
//! wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use peapod_cri::v1 as cri;
use peapod_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::events::Events;
use super::stats::{self, CpuRates};
use super::streaming::{Pending, PortForward, Streaming};
use super::{status_of, CRI_VERSION, RUNTIME_NAME};
use crate::engine::{Container, Engine};
use crate::engine_cri::{nanos, CriContainer, CriSandbox, ExecTimeout, SandboxView};
use crate::record::State;
use crate::server::attach::Session as AttachSession;
use crate::server::exec::{Session as ExecSession, Wanted};
use peapod_cri::v1::ContainerEventType as Event;

pub struct Runtime {
    engine: Arc<Engine>,
    /// The streaming server Exec, Attach and PortForward URLs point at.
    streaming: Arc<Streaming>,
    /// GetContainerEvents' source.
    events: Arc<Events>,
    /// Previous CPU samples, for the rates in stats.
    rates: Arc<CpuRates>,
    /// The pod CIDR the kubelet last gave (`UpdateRuntimeConfig`).
    pod_cidr: std::sync::Mutex<Option<String>>,
}

impl Runtime {
    pub fn new(engine: Arc<Engine>, streaming: Arc<Streaming>) -> Self {
        Self {
            events: Events::start(engine.clone()),
            engine,
            streaming,
            rates: Arc::new(CpuRates::default()),
            pod_cidr: std::sync::Mutex::new(None),
        }
    }
}

/// The CRI list filters every container list applies: an id prefix, a sandbox id prefix,
/// a label selector (empty means any).
fn container_selected(
    c: &crate::engine::Container,
    r: &crate::engine_cri::CriContainer,
    id: &str,
    sandbox: &str,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    (id.is_empty() || c.config.id.starts_with(id))
        && (sandbox.is_empty() || r.sandbox_id.starts_with(sandbox))
        && labels_match(labels, &r.labels)
}

/// The same for sandboxes: an id prefix and a label selector.
fn sandbox_selected(
    v: &crate::engine_cri::SandboxView,
    id: &str,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    (id.is_empty() || v.id.starts_with(id)) && labels_match(labels, &v.record.labels)
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("peapod does not implement CRI {rpc} yet"))
}

/// containerd's checks of the streams an Exec or Attach asks for.
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

/// Exec and Attach need a running container.
fn running(c: &Container) -> Result<(), Status> {
    if matches!(c.state, State::Running { .. }) {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "container {} is not running",
            c.config.id
        )))
    }
}

/// A container's stats now: its cgroup's CPU and memory, its writable layer.
fn container_stats_of(
    engine: &Engine,
    rates: &CpuRates,
    c: &Container,
    r: &CriContainer,
    now: i64,
) -> cri::ContainerStats {
    let running = matches!(c.state, State::Running { .. });
    let (cpu, mem, _) = if running {
        stats::read_cgroup(&c.config.cgroups_path)
    } else {
        (None, None, None)
    };
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.config.id.clone(),
            metadata: Some(container_metadata(r)),
            labels: hash_map(&r.labels),
            annotations: hash_map(&r.annotations),
        }),
        cpu: Some(rates.usage(&c.config.id, now, cpu)),
        memory: stats::memory_usage(now, mem),
        writable_layer: Some(stats::writable_layer(
            now,
            &engine.container_dir(&c.config.id).join("upper"),
        )),
        swap: None,
    }
}

/// A sandbox's stats now: its pod cgroup, its network namespace's eth0, its running
/// containers.
fn sandbox_stats_of(
    engine: &Engine,
    rates: &CpuRates,
    v: &SandboxView,
    containers: &[(Container, CriContainer)],
    now: i64,
) -> cri::PodSandboxStats {
    let cgroup = if v.record.cgroup_parent.is_empty() {
        engine.pod_cgroup(&v.uid)
    } else {
        format!("/{}", v.record.cgroup_parent.trim_matches('/'))
    };
    let (cpu, mem, pids) = stats::read_cgroup(&cgroup);
    let network = match (v.infra_pid(), v.record.network) {
        (Some(pid), crate::engine_cri::NsMode::Pod) => stats::network_usage(now, pid),
        _ => None,
    };
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: v.id.clone(),
            metadata: Some(sandbox_metadata(&v.record)),
            labels: hash_map(&v.record.labels),
            annotations: hash_map(&v.record.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(rates.usage(&v.id, now, cpu)),
            memory: stats::memory_usage(now, mem),
            network,
            process: Some(cri::ProcessUsage {
                timestamp: now,
                process_count: pids.map(|value| cri::UInt64Value { value }),
            }),
            containers: containers
                .iter()
                .filter(|(c, r)| r.sandbox_id == v.id && matches!(c.state, State::Running { .. }))
                .map(|(c, r)| container_stats_of(engine, rates, c, r, now))
                .collect(),
        }),
        windows: None,
    }
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: type_.to_string(),
        status: ok,
        reason: if ok {
            String::new()
        } else {
            reason.to_string()
        },
        message: if ok { String::new() } else { message },
    }
}

fn hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A label selector of a list filter: every pair must be present.
fn labels_match(selector: &HashMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn find_container(engine: &Engine, id: &str) -> Result<(Container, CriContainer), Status> {
    engine
        .cri_container(id)
        .map_err(|e| status_of(&e))?
        .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))
}

fn sandbox_state(v: &SandboxView) -> i32 {
    if v.ready() {
        cri::PodSandboxState::SandboxReady as i32
    } else {
        cri::PodSandboxState::SandboxNotready as i32
    }
}

fn sandbox_metadata(r: &CriSandbox) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: r.name.clone(),
        uid: r.kube_uid.clone(),
        namespace: r.namespace.clone(),
        attempt: r.attempt,
    }
}

pub(super) fn sandbox_status(v: &SandboxView) -> cri::PodSandboxStatus {
    let r = &v.record;
    cri::PodSandboxStatus {
        id: v.id.clone(),
        metadata: Some(sandbox_metadata(r)),
        state: sandbox_state(v),
        created_at: r.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: v.ip().unwrap_or_default(),
            additional_ips: Vec::new(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: r.network.to_cri(),
                    pid: r.pid.to_cri(),
                    ipc: r.ipc.to_cri(),
                    ..Default::default()
                }),
            }),
        }),
        labels: hash_map(&r.labels),
        annotations: hash_map(&r.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// `PodSandboxStatus`'s verbose `info`: what containerd shows that peapod has.
fn sandbox_info(engine: &Engine, v: &SandboxView) -> serde_json::Value {
    serde_json::json!({
        "pid": v.infra_pid().unwrap_or(0),
        "podUID": v.uid,
        "podName": v.pod_name,
        "infraName": v.infra.as_ref().map(|c| c.config.name.clone()),
        "netNamespacePath": v.infra.as_ref().and_then(|c| c.config.netns.clone()),
        "hostname": v.infra.as_ref().map(|c| c.config.hostname.clone()),
        "logDirectory": v.record.log_directory,
        "cgroupParent": v.record.cgroup_parent,
        "portMappings": v.record.port_mappings,
        "stopped": v.record.stopped,
        "podDir": engine.pod_dir(&v.uid),
        "runtimeHandler": v.record.runtime_handler,
        "config": {
            "metadata": {
                "name": v.record.name,
                "uid": v.record.kube_uid,
                "namespace": v.record.namespace,
                "attempt": v.record.attempt,
            },
            "hostname": v.infra.as_ref().map(|c| c.config.hostname.clone()),
            "log_directory": v.record.log_directory,
            "labels": v.record.labels,
            "annotations": v.record.annotations,
            "linux": {
                "cgroup_parent": v.record.cgroup_parent,
                "sysctls": v.record.sysctls,
                "security_context": {"namespace_options": {
                    "network": v.record.network.to_cri(),
                    "pid": v.record.pid.to_cri(),
                    "ipc": v.record.ipc.to_cri(),
                }},
            },
        },
    })
}

/// `ContainerStatus`'s verbose `info`, in containerd's shape (`sandboxID`, `pid`,
/// `removing`, `snapshotKey`, `snapshotter`, `runtimeType`, `config` with the CRI field
/// names, `runtimeSpec`), plus the engine's name and cgroup path.
fn container_info(engine: &Engine, c: &Container, r: &CriContainer, pid: i32) -> serde_json::Value {
    let envs: Vec<serde_json::Value> = c
        .config
        .env
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            serde_json::json!({"key": k, "value": v})
        })
        .collect();
    let mounts: Vec<serde_json::Value> = r
        .mounts
        .iter()
        .map(|(container_path, host_path, readonly, propagation)| {
            serde_json::json!({
                "container_path": container_path,
                "host_path": host_path,
                "readonly": readonly,
                "propagation": propagation,
            })
        })
        .collect();
    serde_json::json!({
        "sandboxID": r.sandbox_id,
        "pid": pid,
        "removing": false,
        "snapshotKey": c.config.id,
        "snapshotter": "overlayfs",
        "runtimeType": c.config.runtime.display().to_string(),
        "name": c.config.name,
        "cgroupsPath": c.config.cgroups_path,
        "config": {
            "metadata": {"name": r.name, "attempt": r.attempt},
            "image": {"image": r.image, "user_specified_image": r.user_specified_image},
            "command": c.config.args,
            "working_dir": c.config.cwd,
            "envs": envs,
            "mounts": mounts,
            "labels": r.labels,
            "annotations": r.annotations,
            "log_path": r.log_path,
            "stdin": c.config.open_stdin,
            "stdin_once": r.stdin_once,
            "tty": c.config.tty,
        },
        "runtimeSpec": peapod_store::read_json::<serde_json::Value>(
            &engine.container_dir(&c.config.id).join("bundle/config.json"),
        ).ok().flatten(),
    })
}

fn container_state(c: &Container) -> i32 {
    (match c.state {
        State::Created => cri::ContainerState::ContainerCreated,
        State::Running { .. } => cri::ContainerState::ContainerRunning,
        State::Exited { .. } => cri::ContainerState::ContainerExited,
    }) as i32
}

fn container_metadata(r: &CriContainer) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: r.name.clone(),
        attempt: r.attempt,
    }
}

fn image_spec(r: &CriContainer) -> cri::ImageSpec {
    cri::ImageSpec {
        image: if r.user_specified_image.is_empty() {
            r.image.clone()
        } else {
            r.user_specified_image.clone()
        },
        user_specified_image: r.user_specified_image.clone(),
        ..Default::default()
    }
}

pub(super) fn container_status(c: &Container, r: &CriContainer) -> cri::ContainerStatus {
    let st = c.status.clone().unwrap_or_default();
    let (exit_code, reason) = match c.state {
        State::Exited { code, .. } => {
            let reason = if st.error.as_deref() == Some("OOMKilled") {
                "OOMKilled"
            } else if code == 0 {
                "Completed"
            } else {
                "Error"
            };
            (code, reason.to_string())
        }
        _ => (0, String::new()),
    };
    let message = match c.state {
        State::Exited { .. } => st.error.clone().filter(|e| e != "OOMKilled"),
        _ => None,
    };
    cri::ContainerStatus {
        id: c.config.id.clone(),
        metadata: Some(container_metadata(r)),
        state: container_state(c),
        created_at: nanos(c.config.created),
        started_at: st.started_at.map(nanos).unwrap_or(0),
        finished_at: st.finished_at.map(nanos).unwrap_or(0),
        exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        reason,
        message: message.unwrap_or_default(),
        labels: hash_map(&r.labels),
        annotations: hash_map(&r.annotations),
        mounts: r
            .mounts
            .iter()
            .map(
                |(container_path, host_path, readonly, propagation)| cri::Mount {
                    container_path: container_path.clone(),
                    host_path: host_path.clone(),
                    readonly: *readonly,
                    propagation: *propagation,
                    ..Default::default()
                },
            )
            .collect(),
        log_path: r.log_path.clone(),
        resources: r
            .resources
            .map(|(shares, quota, period, memory)| cri::ContainerResources {
                linux: Some(cri::LinuxContainerResources {
                    cpu_shares: shares,
                    cpu_quota: quota,
                    cpu_period: period,
                    memory_limit_in_bytes: memory,
                    ..Default::default()
                }),
                windows: None,
            }),
        image_id: c.config.image_id.clone(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            // The kubelet's own field: the CRI API's version string.
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let engine = self.engine.clone();
        let verbose = request.into_inner().verbose;
        let cidr = self.pod_cidr.lock().map(|c| c.clone()).unwrap_or_default();
        super::blocking(move || {
            let runtime = peapod_oci::runtime::Runtime::resolve(
                engine
                    .runtime_override
                    .as_deref()
                    .or(engine.config.runtime.as_deref()),
                &engine.paths.runtime_state(),
            );
            let runtime_ok = runtime.is_ok();
            let runtime_message = runtime
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let conditions = vec![
                condition(
                    "RuntimeReady",
                    runtime_ok,
                    "RuntimeNotFound",
                    runtime_message,
                ),
                // The built-in bridge network needs no plugin to be ready.
                condition("NetworkReady", true, "", String::new()),
            ];
            let mut info = std::collections::HashMap::new();
            if verbose {
                let config = serde_json::json!({
                    "runtime": runtime.as_ref().ok().map(|r| r.binary.display().to_string()),
                    "network": engine.config.network,
                    "podCIDR": cidr,
                });
                info.insert("config".to_string(), config.to_string());
            }
            Ok(Response::new(cri::StatusResponse {
                status: Some(cri::RuntimeStatus { conditions }),
                info,
                ..Default::default()
            }))
        })
        .await
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .filter(|c| !c.is_empty());
        if let Some(c) = &cidr {
            c.parse::<ipnet::IpNet>()
                .map_err(|e| Status::invalid_argument(format!("pod CIDR {c:?}: {e}")))?;
        }
        if let Ok(mut slot) = self.pod_cidr.lock() {
            *slot = cidr;
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let req = request.into_inner();
        super::blocking(move || {
            let config = req
                .config
                .ok_or_else(|| Status::invalid_argument("config is required"))?;
            let id = engine
                .create_sandbox_from(&config, &req.runtime_handler)
                .map_err(|e| status_of(&e))?;
            events.emit(&engine, &id, &id, Event::ContainerCreatedEvent);
            events.emit(&engine, &id, &id, Event::ContainerStartedEvent);
            Ok(Response::new(cri::RunPodSandboxResponse {
                pod_sandbox_id: id,
            }))
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let id = request.into_inner().pod_sandbox_id;
        super::blocking(move || {
            engine.stop_cri_sandbox(&id).map_err(|e| status_of(&e))?;
            if let Ok(Some(v)) = engine.cri_sandbox(&id) {
                events.emit(&engine, &v.id, &v.id, Event::ContainerStoppedEvent);
            }
            Ok(Response::new(cri::StopPodSandboxResponse {}))
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let id = request.into_inner().pod_sandbox_id;
        super::blocking(move || {
            let full = engine.cri_sandbox(&id).ok().flatten().map(|v| v.id);
            engine.remove_cri_sandbox(&id).map_err(|e| status_of(&e))?;
            if let Some(sid) = full {
                events.emit(&engine, &sid, &sid, Event::ContainerDeletedEvent);
            }
            Ok(Response::new(cri::RemovePodSandboxResponse {}))
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        super::blocking(move || {
            let view = engine
                .cri_sandbox(&req.pod_sandbox_id)
                .map_err(|e| status_of(&e))?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "an error occurred when try to find sandbox {:?}: not found",
                        req.pod_sandbox_id
                    ))
                })?;
            let mut info = HashMap::new();
            if req.verbose {
                info.insert("info".to_string(), sandbox_info(&engine, &view).to_string());
            }
            let containers = if req.verbose {
                engine
                    .cri_containers()
                    .map_err(|e| status_of(&e))?
                    .into_iter()
                    .filter(|(_, r)| r.sandbox_id == view.id)
                    .map(|(c, r)| container_status(&c, &r))
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Response::new(cri::PodSandboxStatusResponse {
                status: Some(sandbox_status(&view)),
                info,
                containers_statuses: containers,
                timestamp: nanos(chrono::Utc::now()),
            }))
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let engine = self.engine.clone();
        let filter = request.into_inner().filter.unwrap_or_default();
        super::blocking(move || {
            let items = engine
                .cri_sandboxes()
                .map_err(|e| status_of(&e))?
                .into_iter()
                .filter(|v| sandbox_selected(v, &filter.id, &filter.label_selector))
                .filter(|v| {
                    filter
                        .state
                        .as_ref()
                        .is_none_or(|s| s.state == sandbox_state(v))
                })
                .map(|v| cri::PodSandbox {
                    id: v.id.clone(),
                    metadata: Some(sandbox_metadata(&v.record)),
                    state: sandbox_state(&v),
                    created_at: v.record.created_at,
                    labels: hash_map(&v.record.labels),
                    annotations: hash_map(&v.record.annotations),
                    runtime_handler: v.record.runtime_handler.clone(),
                })
                .collect();
            Ok(Response::new(cri::ListPodSandboxResponse { items }))
        })
        .await
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let req = request.into_inner();
        super::blocking(move || {
            let config = req
                .config
                .ok_or_else(|| Status::invalid_argument("config is required"))?;
            let id = engine
                .create_in_sandbox(&req.pod_sandbox_id, &config)
                .map_err(|e| status_of(&e))?;
            if let Ok(Some((_, r))) = engine.cri_container(&id) {
                events.emit(&engine, &id, &r.sandbox_id, Event::ContainerCreatedEvent);
            }
            Ok(Response::new(cri::CreateContainerResponse {
                container_id: id,
            }))
        })
        .await
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let id = request.into_inner().container_id;
        super::blocking(move || {
            let (c, r) = find_container(&engine, &id)?;
            if !matches!(c.state, State::Created) {
                return Err(Status::failed_precondition(format!(
                    "container {} is in {} state, not created",
                    c.config.id,
                    c.state.docker_status()
                )));
            }
            engine.start(&c, false).map_err(|e| status_of(&e))?;
            events.emit(
                &engine,
                &c.config.id,
                &r.sandbox_id,
                Event::ContainerStartedEvent,
            );
            Ok(Response::new(cri::StartContainerResponse {}))
        })
        .await
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let req = request.into_inner();
        super::blocking(move || {
            // Stopping what is gone is done already (the kubelet retries stops).
            let Some((c, r)) = engine
                .cri_container(&req.container_id)
                .map_err(|e| status_of(&e))?
            else {
                return Ok(Response::new(cri::StopContainerResponse {}));
            };
            let timeout = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
            engine.stop(&c, timeout).map_err(|e| status_of(&e))?;
            events.emit(
                &engine,
                &c.config.id,
                &r.sandbox_id,
                Event::ContainerStoppedEvent,
            );
            Ok(Response::new(cri::StopContainerResponse {}))
        })
        .await
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let (engine, events) = (self.engine.clone(), self.events.clone());
        let id = request.into_inner().container_id;
        super::blocking(move || {
            let Some((c, r)) = engine.cri_container(&id).map_err(|e| status_of(&e))? else {
                return Ok(Response::new(cri::RemoveContainerResponse {}));
            };
            engine.remove(&c, true, true).map_err(|e| status_of(&e))?;
            events.emit(
                &engine,
                &c.config.id,
                &r.sandbox_id,
                Event::ContainerDeletedEvent,
            );
            Ok(Response::new(cri::RemoveContainerResponse {}))
        })
        .await
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let engine = self.engine.clone();
        let filter = request.into_inner().filter.unwrap_or_default();
        super::blocking(move || {
            let containers = engine
                .cri_containers()
                .map_err(|e| status_of(&e))?
                .into_iter()
                .filter(|(c, r)| {
                    container_selected(
                        c,
                        r,
                        &filter.id,
                        &filter.pod_sandbox_id,
                        &filter.label_selector,
                    )
                })
                .filter(|(c, _)| {
                    filter
                        .state
                        .as_ref()
                        .is_none_or(|s| s.state == container_state(c))
                })
                .map(|(c, r)| cri::Container {
                    id: c.config.id.clone(),
                    pod_sandbox_id: r.sandbox_id.clone(),
                    metadata: Some(container_metadata(&r)),
                    image: Some(image_spec(&r)),
                    image_ref: r.image_ref.clone(),
                    state: container_state(&c),
                    created_at: nanos(c.config.created),
                    labels: hash_map(&r.labels),
                    annotations: hash_map(&r.annotations),
                    image_id: c.config.image_id.clone(),
                })
                .collect();
            Ok(Response::new(cri::ListContainersResponse { containers }))
        })
        .await
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        super::blocking(move || {
            let (c, r) = find_container(&engine, &req.container_id)?;
            let mut info = HashMap::new();
            if req.verbose {
                let pid = match c.state {
                    State::Running { pid, .. } => pid,
                    _ => 0,
                };
                info.insert(
                    "info".to_string(),
                    container_info(&engine, &c, &r, pid).to_string(),
                );
            }
            Ok(Response::new(cri::ContainerStatusResponse {
                status: Some(container_status(&c, &r)),
                info,
            }))
        })
        .await
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        super::blocking(move || {
            let (c, _) = find_container(&engine, &req.container_id)?;
            let linux = req.linux.unwrap_or_default();
            engine
                .update_cri_resources(&c, &linux)
                .map_err(|e| status_of(&e))?;
            Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let engine = self.engine.clone();
        let id = request.into_inner().container_id;
        super::blocking(move || {
            let (c, _) = find_container(&engine, &id)?;
            if !matches!(c.state, State::Running { .. }) {
                return Err(Status::failed_precondition(format!(
                    "container {} is not running",
                    c.config.id
                )));
            }
            engine.reopen_log(&c).map_err(|e| status_of(&e))?;
            Ok(Response::new(cri::ReopenContainerLogResponse {}))
        })
        .await
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        super::blocking(move || {
            let (c, _) = find_container(&engine, &req.container_id)?;
            let timeout = u64::try_from(req.timeout)
                .ok()
                .filter(|t| *t > 0)
                .map(Duration::from_secs);
            match engine.exec_sync(&c, &req.cmd, timeout) {
                Ok(out) => Ok(Response::new(cri::ExecSyncResponse {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code,
                })),
                Err(e) if e.downcast_ref::<ExecTimeout>().is_some() => {
                    Err(Status::deadline_exceeded(format!("{e:#}")))
                }
                Err(e) => Err(status_of(&e)),
            }
        })
        .await
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        let pending = super::blocking(move || {
            check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
            if req.cmd.is_empty() {
                return Err(Status::invalid_argument("cmd must not be empty"));
            }
            let (c, _) = find_container(&engine, &req.container_id)?;
            running(&c)?;
            let cmd = engine
                .exec_command_for(&c, &req.cmd, req.tty)
                .map_err(|e| status_of(&e))?;
            let w = Wanted {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                tty: req.tty,
            };
            Ok(Pending::Exec(
                ExecSession::new(cmd, req.stdin, req.stdout, req.stderr, req.tty),
                w,
            ))
        })
        .await?;
        let url = self.streaming.url_for(pending)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        let pending = super::blocking(move || {
            check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
            let (c, _) = find_container(&engine, &req.container_id)?;
            running(&c)?;
            Ok(Pending::Attach(AttachSession {
                socket: crate::attach::socket_path(&engine.paths.run, &c.config.id),
                stdin: req.stdin && c.config.open_stdin,
                stderr: req.stderr,
                tty: req.tty && c.config.tty,
            }))
        })
        .await?;
        let url = self.streaming.url_for(pending)?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        let pending = super::blocking(move || {
            if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
                return Err(Status::invalid_argument(format!(
                    "port {bad} is out of range: expected 1-65535"
                )));
            }
            let v = engine
                .cri_sandbox(&req.pod_sandbox_id)
                .map_err(|e| status_of(&e))?
                .ok_or_else(|| {
                    Status::not_found(format!("sandbox {:?} not found", req.pod_sandbox_id))
                })?;
            let pid = v.infra_pid().filter(|_| v.ready()).ok_or_else(|| {
                Status::failed_precondition(format!("sandbox {} is not running", v.id))
            })?;
            let netns = if v.record.network == crate::engine_cri::NsMode::Node {
                None
            } else {
                Some(
                    v.infra
                        .as_ref()
                        .and_then(|i| i.config.netns.clone())
                        .unwrap_or_else(|| format!("/proc/{pid}/ns/net").into()),
                )
            };
            Ok(Pending::PortForward(PortForward {
                netns,
                ports: req.port.iter().map(|p| *p as u16).collect(),
            }))
        })
        .await?;
        let url = self.streaming.url_for(pending)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let (engine, rates) = (self.engine.clone(), self.rates.clone());
        let id = request.into_inner().container_id;
        super::blocking(move || {
            let (c, r) = find_container(&engine, &id)?;
            let stats = container_stats_of(&engine, &rates, &c, &r, nanos(chrono::Utc::now()));
            Ok(Response::new(cri::ContainerStatsResponse {
                stats: Some(stats),
            }))
        })
        .await
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let (engine, rates) = (self.engine.clone(), self.rates.clone());
        let filter = request.into_inner().filter.unwrap_or_default();
        super::blocking(move || {
            let now = nanos(chrono::Utc::now());
            let stats = engine
                .cri_containers()
                .map_err(|e| status_of(&e))?
                .into_iter()
                .filter(|(c, _)| matches!(c.state, State::Running { .. }))
                .filter(|(c, r)| {
                    container_selected(
                        c,
                        r,
                        &filter.id,
                        &filter.pod_sandbox_id,
                        &filter.label_selector,
                    )
                })
                .map(|(c, r)| container_stats_of(&engine, &rates, &c, &r, now))
                .collect();
            Ok(Response::new(cri::ListContainerStatsResponse { stats }))
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let (engine, rates) = (self.engine.clone(), self.rates.clone());
        let id = request.into_inner().pod_sandbox_id;
        super::blocking(move || {
            let v = engine
                .cri_sandbox(&id)
                .map_err(|e| status_of(&e))?
                .ok_or_else(|| Status::not_found(format!("sandbox {id:?} not found")))?;
            let containers = engine.cri_containers().map_err(|e| status_of(&e))?;
            let stats =
                sandbox_stats_of(&engine, &rates, &v, &containers, nanos(chrono::Utc::now()));
            Ok(Response::new(cri::PodSandboxStatsResponse {
                stats: Some(stats),
            }))
        })
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let (engine, rates) = (self.engine.clone(), self.rates.clone());
        let filter = request.into_inner().filter.unwrap_or_default();
        super::blocking(move || {
            let now = nanos(chrono::Utc::now());
            let containers = engine.cri_containers().map_err(|e| status_of(&e))?;
            let stats = engine
                .cri_sandboxes()
                .map_err(|e| status_of(&e))?
                .into_iter()
                .filter(|v| v.ready())
                .filter(|v| sandbox_selected(v, &filter.id, &filter.label_selector))
                .map(|v| sandbox_stats_of(&engine, &rates, &v, &containers, now))
                .collect();
            Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(not_yet("CheckpointContainer"))
    }

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let rx = self.events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    // A slow reader misses events rather than stalling the others.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(not_yet("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(not_yet("ListPodSandboxMetrics"))
    }
}
