//! `runtime.v1.RuntimeService`. Served so far: `Version`, `Status`, `RuntimeConfig` and
//! `UpdateRuntimeConfig`; every other RPC answers `Unimplemented` with its name, so a
//! kubelet or crictl gets a clear error rather than a wrong answer. Sandboxes and
//! containers come next (see the CRI issue's plan in docs/architecture.md).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use peapod_cri::v1 as cri;
use peapod_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::{CRI_VERSION, RUNTIME_NAME};
use crate::engine::Engine;

pub struct Runtime {
    engine: Arc<Engine>,
    /// The pod CIDR the kubelet last gave (`UpdateRuntimeConfig`).
    pod_cidr: std::sync::Mutex<Option<String>>,
}

impl Runtime {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            pod_cidr: std::sync::Mutex::new(None),
        }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("peapod does not implement CRI {rpc} yet"))
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
        _request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        Err(not_yet("RunPodSandbox"))
    }

    async fn stop_pod_sandbox(
        &self,
        _request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        Err(not_yet("StopPodSandbox"))
    }

    async fn remove_pod_sandbox(
        &self,
        _request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        Err(not_yet("RemovePodSandbox"))
    }

    async fn pod_sandbox_status(
        &self,
        _request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        Err(not_yet("PodSandboxStatus"))
    }

    async fn list_pod_sandbox(
        &self,
        _request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        Err(not_yet("ListPodSandbox"))
    }

    async fn create_container(
        &self,
        _request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        Err(not_yet("CreateContainer"))
    }

    async fn start_container(
        &self,
        _request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        Err(not_yet("StartContainer"))
    }

    async fn stop_container(
        &self,
        _request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        Err(not_yet("StopContainer"))
    }

    async fn remove_container(
        &self,
        _request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        Err(not_yet("RemoveContainer"))
    }

    async fn list_containers(
        &self,
        _request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        Err(not_yet("ListContainers"))
    }

    async fn container_status(
        &self,
        _request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        Err(not_yet("ContainerStatus"))
    }

    async fn update_container_resources(
        &self,
        _request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        Err(not_yet("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        _request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        Err(not_yet("ReopenContainerLog"))
    }

    async fn exec_sync(
        &self,
        _request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Err(not_yet("ExecSync"))
    }

    async fn exec(
        &self,
        _request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Err(not_yet("Exec"))
    }

    async fn attach(
        &self,
        _request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Err(not_yet("Attach"))
    }

    async fn port_forward(
        &self,
        _request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        Err(not_yet("PortForward"))
    }

    async fn container_stats(
        &self,
        _request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        Err(not_yet("ContainerStats"))
    }

    async fn list_container_stats(
        &self,
        _request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Err(not_yet("ListContainerStats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        Err(not_yet("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Err(not_yet("ListPodSandboxStats"))
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
        Err(not_yet("GetContainerEvents"))
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
