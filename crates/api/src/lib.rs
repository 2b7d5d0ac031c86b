//! The Kubernetes side of peapod, pure: Pod, ConfigMap and Secret manifests decoded strictly
//! into `k8s-openapi` types, defaulting and validation as the API server does them, the pod status rules
//! (phase, conditions, container statuses, QoS) and kubectl's printing of pods.
//!
//! It performs no I/O: no files, processes, clocks (time is passed in) or network.

pub use k8s_openapi;

pub mod decode;
pub mod defaults;
pub mod objects;
pub mod print;
pub mod status;
pub mod validate;

pub use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodSpec, PodStatus, Secret, Volume,
};
