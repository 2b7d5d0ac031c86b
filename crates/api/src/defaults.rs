//! Defaulting of Pods as the API server does it before validation (`SetDefaults_Pod`,
//! `SetDefaults_PodSpec`, `SetDefaults_Container` and friends in `k8s.io/kubernetes
//! pkg/apis/core/v1/defaults.go`, plus the namespace from the request and the priority set
//! by the `Priority` admission plugin).
//!
//! It only fills what is unset (an empty string counts as unset, as in Go): a value the user
//! gave is never changed, so defaulting is idempotent. It does not touch `status`, and it adds
//! no service-account token volume: peapod has no service accounts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSecurityContext, PodSpec, Probe, ResourceRequirements, Volume,
};
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};

/// The namespace of a Pod that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// `spec.terminationGracePeriodSeconds` when unset.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// `spec.schedulerName` when unset.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// A container's `terminationMessagePath` when unset.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Mode of files projected from ConfigMaps, Secrets and the downward API (0644).
const DEFAULT_VOLUME_FILE_MODE: i32 = 0o644;

/// Fill every unset field of `pod` that the API server defaults.
///
/// - `metadata.namespace`: `default`;
/// - `spec`: `restartPolicy: Always`, `terminationGracePeriodSeconds: 30`,
///   `dnsPolicy: ClusterFirst`, `schedulerName: default-scheduler`, `securityContext: {}`,
///   `enableServiceLinks: true`, `priority: 0`, `preemptionPolicy: PreemptLowerPriority`;
///   with `hostNetwork`, each port's `hostPort` defaults to its `containerPort`;
/// - each init and app container: `imagePullPolicy` from the image's tag (`Always` for
///   `:latest` or no tag, `IfNotPresent` otherwise, including digest references),
///   `terminationMessagePath: /dev/termination-log`, `terminationMessagePolicy: File`,
///   `resources: {}`, requests copied from limits where unset, ports' `protocol: TCP`,
///   probes' timeouts, period and thresholds (1 s, 10 s, 1, 3), `httpGet` path `/` and
///   scheme `HTTP`, `fieldRef.apiVersion: v1` in the environment;
/// - volumes: no source at all gives `emptyDir: {}`; `hostPath.type` defaults to `""`;
///   ConfigMap, Secret, downward API and projected volumes get `defaultMode: 0644`.
pub fn apply_defaults(pod: &mut Pod) {
    if is_unset(pod.metadata.namespace.as_deref()) {
        pod.metadata.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    if let Some(spec) = pod.spec.as_mut() {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut PodSpec) {
    set_str(&mut spec.restart_policy, "Always");
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    }
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set_str(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    // The Priority admission plugin, for a pod without a priority class.
    spec.priority.get_or_insert(0);
    set_str(&mut spec.preemption_policy, "PreemptLowerPriority");

    let host_network = spec.host_network == Some(true);
    let init = spec.init_containers.iter_mut().flatten();
    for container in spec.containers.iter_mut().chain(init) {
        default_container(container, host_network);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
}

fn default_container(container: &mut Container, host_network: bool) {
    if is_unset(container.image_pull_policy.as_deref()) {
        let policy = pull_policy_for_image(container.image.as_deref().unwrap_or_default());
        container.image_pull_policy = Some(policy.to_owned());
    }
    set_str(
        &mut container.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_str(&mut container.termination_message_policy, "File");

    let resources = container
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    if let Some(limits) = &resources.limits {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, quantity) in limits {
            requests
                .entry(name.clone())
                .or_insert_with(|| quantity.clone());
        }
    }

    for port in container.ports.iter_mut().flatten() {
        set_str(&mut port.protocol, "TCP");
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    for var in container.env.iter_mut().flatten() {
        default_env_var(var);
    }
}

/// The pull policy the API server gives a container whose `imagePullPolicy` is unset:
/// `Always` when the reference's tag is `latest` or absent (and no digest pins it),
/// `IfNotPresent` otherwise.
pub fn pull_policy_for_image(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // The tag is after a colon in the last path component (a colon before a slash is a
    // registry port).
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some("latest"), _) | (None, false) => "Always",
        _ => "IfNotPresent",
    }
}

fn default_probe(probe: &mut Probe) {
    set_positive(&mut probe.timeout_seconds, 1);
    set_positive(&mut probe.period_seconds, 10);
    set_positive(&mut probe.success_threshold, 1);
    set_positive(&mut probe.failure_threshold, 3);
    if let Some(http) = probe.http_get.as_mut() {
        set_str(&mut http.path, "/");
        set_str(&mut http.scheme, "HTTP");
    }
}

fn default_env_var(var: &mut EnvVar) {
    if let Some(field_ref) = var.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
        set_str(&mut field_ref.api_version, "v1");
    }
}

fn default_volume(volume: &mut Volume) {
    if crate::validate::volume_sources(volume).is_empty() {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(host_path) = volume.host_path.as_mut() {
        host_path.type_.get_or_insert_with(String::new);
    }
    if let Some(source) = volume.config_map.as_mut() {
        source.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(source) = volume.secret.as_mut() {
        source.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(source) = volume.downward_api.as_mut() {
        source.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(source) = volume.projected.as_mut() {
        source.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
}

/// Go's zero value: unset and empty are the same.
fn is_unset(value: Option<&str>) -> bool {
    value.is_none_or(str::is_empty)
}

fn set_str(slot: &mut Option<String>, default: &str) {
    if is_unset(slot.as_deref()) {
        *slot = Some(default.to_owned());
    }
}

/// Probe numbers default when unset or zero, as in Go.
fn set_positive(slot: &mut Option<i32>, default: i32) {
    if slot.unwrap_or(0) == 0 {
        *slot = Some(default);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod_with(containers: Vec<Container>) -> Pod {
        Pod {
            metadata: Default::default(),
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn container(image: &str) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        let table = [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("docker.io/library/busybox", "Always"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:v1", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
            ("busybox:1.36@sha256:abcd", "IfNotPresent"),
        ];
        for (image, want) in table {
            assert_eq!(pull_policy_for_image(image), want, "{image}");
        }
    }

    #[test]
    fn pod_level_defaults() {
        let mut pod = pod_with(vec![container("busybox")]);
        apply_defaults(&mut pod);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.security_context, Some(PodSecurityContext::default()));
        assert_eq!(spec.enable_service_links, Some(true));
        assert_eq!(spec.priority, Some(0));
        assert!(
            spec.volumes.is_none(),
            "no service-account volume is invented"
        );
        assert!(pod.status.is_none());
    }

    #[test]
    fn container_level_defaults_for_init_and_app_containers() {
        let mut pod = pod_with(vec![Container {
            ports: Some(vec![ContainerPort {
                container_port: 80,
                ..Default::default()
            }]),
            ..container("nginx:1.25")
        }]);
        pod.spec.as_mut().unwrap().init_containers = Some(vec![container("busybox")]);
        apply_defaults(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        let app = &spec.containers[0];
        assert_eq!(app.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            app.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(app.termination_message_policy.as_deref(), Some("File"));
        let port = &app.ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(port.host_port, None);
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(init.termination_message_policy.as_deref(), Some("File"));
    }

    #[test]
    fn given_values_are_kept_and_defaulting_is_idempotent() {
        let mut pod = pod_with(vec![Container {
            image_pull_policy: Some("Never".into()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..container("busybox")
        }]);
        pod.metadata.namespace = Some("team".into());
        {
            let spec = pod.spec.as_mut().unwrap();
            spec.restart_policy = Some("Never".into());
            spec.termination_grace_period_seconds = Some(0);
            spec.dns_policy = Some(String::new());
        }
        apply_defaults(&mut pod);
        let once = pod.clone();
        apply_defaults(&mut pod);
        assert_eq!(pod, once);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn volumes() {
        let mut pod = pod_with(vec![container("busybox")]);
        pod.spec.as_mut().unwrap().volumes = Some(vec![
            Volume {
                name: "none".into(),
                ..Default::default()
            },
            Volume {
                name: "host".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/data".into(),
                    type_: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "mem".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: None,
                }),
                ..Default::default()
            },
        ]);
        apply_defaults(&mut pod);
        let volumes = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
        assert_eq!(volumes[0].empty_dir, Some(EmptyDirVolumeSource::default()));
        assert_eq!(volumes[1].empty_dir, None);
        assert_eq!(
            volumes[1].host_path.as_ref().unwrap().type_.as_deref(),
            Some("")
        );
        assert_eq!(
            volumes[2].empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
    }

    #[test]
    fn host_network_ports_requests_probes_and_env() {
        let mut pod = pod_with(vec![Container {
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                ..Default::default()
            }]),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("1".into())),
                    ("memory".to_owned(), Quantity("1Gi".into())),
                ])),
                requests: Some(BTreeMap::from([(
                    "cpu".to_owned(),
                    Quantity("500m".into()),
                )])),
                claims: None,
            }),
            liveness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::Int(8080),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            env: Some(vec![EnvVar {
                name: "POD".into(),
                value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: "metadata.name".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..container("busybox")
        }]);
        pod.spec.as_mut().unwrap().host_network = Some(true);
        apply_defaults(&mut pod);
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.ports.as_ref().unwrap()[0].host_port, Some(8080));
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"], Quantity("500m".into()));
        assert_eq!(requests["memory"], Quantity("1Gi".into()));
        let probe = c.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                probe.timeout_seconds,
                probe.period_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let http = probe.http_get.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.scheme.as_deref(), Some("HTTP"));
        let field_ref = c.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(field_ref.api_version.as_deref(), Some("v1"));
    }
}
