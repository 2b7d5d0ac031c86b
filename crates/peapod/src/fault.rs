//! Failpoints for crash tests: `PEAPOD_FAILPOINTS=step[=error|kill],…` makes a named step
//! fail with an injected error, or kill its process with SIGKILL exactly there (see
//! `peapod_sandbox::failpoint`, which parses the variable). Re-executed peapod processes
//! inherit the variable; containers do not.
//!
//! The steps, in the order a pod lives through them:
//!
//! | step | process | where |
//! |---|---|---|
//! | `pod-committed` | CLI (`apply`) | `pods/<uid>/pod.json` committed, no sandbox record yet |
//! | `sandbox-committed` | CLI | the sandbox (infra) record and `infra.id` committed, no netns |
//! | `netns-created` | CLI | the netns pinned, no network attachment |
//! | `network-ipam-committed` | CLI | the address saved in `ipam.json`, no veth |
//! | `network-attach-half` | CLI | the veth made, eth0 not yet configured |
//! | `sandbox-ready` | CLI | /etc files written, pod monitor not yet started |
//! | `infra-start` | infra | before setting up its namespaces (reports nothing) |
//! | `infra-ready` | infra | right after reporting `ok` |
//! | `delete-marked` | CLI (`delete`) | deletionTimestamp written, monitor not yet signalled |
//! | `delete-signalled` | CLI | SIGTERM sent to the pod monitor, not yet waited for |
//! | `teardown-containers-removed` | CLI | the pod's container records gone, pod dir not yet |
//! | `container-committed` | CLI (`run`/`create`), pod monitor | a container record committed, no resources |
//! | `container-teardown-half` | any remover | runtime state and rootfs gone, network not yet |
//! | `monitor-before-create` | container monitor | before `runtime create` |
//! | `monitor-started` | container monitor | the container started, before reporting `ok` |
//!
//! The pod monitor's steps (`pod-monitor-before-infra`, `pod-monitor-after-infra`) live in
//! `pod_monitor.rs`.

use anyhow::{anyhow, Result};

/// Runs step `name`'s failpoint: an error when it is set to fail; the process dies here
/// when it is set to `kill`.
pub fn point(name: &str) -> Result<()> {
    peapod_sandbox::failpoint::check(name)
        .map_err(|step| anyhow!("injected failure at failpoint {step}"))
}
