//! The Kubernetes Container Runtime Interface, v1: the message types and the tonic client
//! and server traits generated from the upstream `api.proto` (cri-api, package
//! `runtime.v1`). Types only: no engine, no I/O; the peapod binary implements the services.

#![allow(clippy::all, missing_docs)]
#![allow(unsafe_code)]

/// `runtime.v1`: `RuntimeService` and `ImageService` with their messages.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
