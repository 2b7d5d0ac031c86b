//! Sandboxes: network namespaces pinned by bind mounts, the pod network (the built-in
//! netlink bridge with IPAM in the store, or the user's CNI conflist), the per-container
//! /etc files, and published ports.
//!
//! It does not know about images or OCI specs, and never starts container processes.
//! The calling process's own network namespace never changes: every step that must run
//! inside another namespace runs in a dedicated short-lived thread.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod bridge;
mod cni;
pub mod etc;
pub mod failpoint;
mod ipam;
mod netlink;
pub mod netns;
pub mod ports;

/// Network settings (from `[network]` in config.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Bridge name, `peapod0` by default.
    pub bridge: String,
    /// Pod subnet, `10.42.0.0/16` by default; the gateway is its first address.
    pub subnet: ipnet::Ipv4Net,
    /// Where CNI plugin executables are looked for, in order (CRI-O's `plugin_dirs`):
    /// `/opt/cni/bin` then `/usr/lib/cni` by default.
    pub cni_plugin_dirs: Vec<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: "peapod0".into(),
            subnet: "10.42.0.0/16".parse().expect("valid default subnet"),
            cni_plugin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        }
    }
}

/// A container's (later: pod's) attachment to the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// "bridge" for the built-in network, else the CNI network's name.
    pub network: String,
    /// eth0's address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// eth0's MAC, `02:42:…` lower-case hex with colons.
    pub mac: String,
    /// Host side veth name (built-in network).
    pub host_veth: Option<String>,
}

/// Network errors; each says which step failed on which object.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The subnet has no free address.
    #[error("no free IP address in {0}")]
    Exhausted(ipnet::Ipv4Net),
    /// A file of the IPAM store.
    #[error(transparent)]
    Io(#[from] peapod_store::IoError),
    /// The IPAM store is corrupt.
    #[error(transparent)]
    State(#[from] peapod_store::StateError),
    /// The owner cannot name an attachment: it must match `[A-Za-z0-9][A-Za-z0-9_.-]*`
    /// (the CNI container id rule) and be at most 128 characters, since it names files.
    #[error(
        "invalid network owner {0:?}: expected [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 characters"
    )]
    InvalidOwner(String),
    /// The subnet is too small for a gateway and one pod (a /31 or /32).
    #[error("subnet {0} has no room for a gateway and a pod")]
    SubnetTooSmall(ipnet::Ipv4Net),
    /// The configured bridge name is used by an interface that is not a bridge.
    #[error("interface {name} exists but is not a bridge")]
    NotABridge {
        /// The interface name.
        name: String,
    },
    /// Two owners map to the same host veth name (a 32-bit hash collision).
    #[error("host veth name {veth} of {owner:?} is already used by {other:?}")]
    VethNameTaken {
        /// The veth name.
        veth: String,
        /// The owner being attached.
        owner: String,
        /// The owner that already has it.
        other: String,
    },
    /// A netlink request (or opening the netlink socket) failed; `op` names the step and
    /// its object, e.g. `create veth vethab12cd34`.
    #[error("{op}: {source}")]
    Netlink {
        /// The step and the object it worked on.
        op: String,
        /// The kernel's answer (its errno when it sent one).
        #[source]
        source: io::Error,
    },
    /// Entering the pod's network namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// The CNI configuration list is unusable.
    #[error("CNI configuration {path}: {reason}")]
    CniConfig {
        /// The conflist.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No executable for a plugin type in the CNI search path.
    #[error("CNI plugin {plugin:?} not found in {search_path}")]
    CniPluginNotFound {
        /// The plugin's `type`.
        plugin: String,
        /// The directories searched, `:`-separated.
        search_path: String,
    },
    /// A CNI plugin failed: it exited non-zero (with the spec's error JSON on stdout),
    /// could not be run, or timed out.
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    CniPlugin {
        /// The plugin's `type`.
        plugin: String,
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The plugin's `msg`, `details`, error code and stderr, or why it could not run.
        message: String,
    },
    /// A CNI plugin succeeded but its result is not a usable CNI result.
    #[error("CNI plugin {plugin} returned an unusable result: {reason}")]
    CniResult {
        /// The plugin's `type` (the last one of the list).
        plugin: String,
        /// What is missing or malformed.
        reason: String,
    },
    /// A failpoint (`PEAPOD_FAILPOINTS`, for crash tests) made this step fail.
    #[error("injected failure at failpoint {0}")]
    Injected(String),
    /// An operation failed, and undoing what it had made failed too: both are reported,
    /// and the objects named by `rollback` may be left behind.
    #[error("{error}; undoing it failed too: {rollback}")]
    Rollback {
        /// The original failure.
        error: Box<NetworkError>,
        /// The failure of the undo.
        rollback: Box<NetworkError>,
    },
}

impl NetworkError {
    /// Combines a failure with the result of undoing it.
    pub(crate) fn with_rollback(self, undo: Result<(), NetworkError>) -> Self {
        match undo {
            Ok(()) => self,
            Err(rollback) => Self::Rollback {
                error: Box::new(self),
                rollback: Box::new(rollback),
            },
        }
    }
}

/// The pod network: built-in bridge or CNI.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    state_dir: PathBuf,
    cni_conf_dir: PathBuf,
    config: NetworkConfig,
}

impl PodNetwork {
    /// `state_dir` holds IPAM state; a `*.conflist` in `cni_conf_dir` selects CNI instead of
    /// the built-in bridge.
    pub fn new(state_dir: &Path, cni_conf_dir: &Path, config: NetworkConfig) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            cni_conf_dir: cni_conf_dir.to_owned(),
            config,
        }
    }

    /// Ensures the bridge, allocates an IP for `owner`, creates the veth pair with its peer
    /// made directly inside `netns` as eth0, addresses and routes. On failure, undoes what it
    /// made.
    ///
    /// With a `*.conflist` in the CNI directory (the first by name), its plugins are run
    /// instead (CNI 1.0 `ADD`) and the result is cached in `<state_dir>/cni/<owner>.json`
    /// for `DEL`. Attaching an owner that is already attached replaces its interface and
    /// keeps its address (built-in network).
    pub fn attach(&self, owner: &str, netns: &Path) -> Result<Endpoint, NetworkError> {
        validate_owner(owner)?;
        match cni::find_conflist(&self.cni_conf_dir)? {
            Some(conflist) => cni::attach(
                &self.state_dir,
                &self.config.cni_plugin_dirs,
                &conflist,
                owner,
                netns,
            ),
            None => bridge::attach(&self.state_dir, &self.config, owner, netns),
        }
    }

    /// Undoes `attach`: veth deleted, CNI DEL, IP released. Idempotent; safe when the netns
    /// is already gone.
    ///
    /// Both kinds of attachment are looked for (a CNI cache file, a built-in allocation), so
    /// adding or removing a conflist between attach and detach leaks nothing. When both
    /// steps fail, the CNI error is returned.
    pub fn detach(&self, owner: &str, netns: &Path) -> Result<(), NetworkError> {
        validate_owner(owner)?;
        let cni = cni::detach(&self.state_dir, &self.config.cni_plugin_dirs, owner, netns);
        let builtin = bridge::detach(&self.state_dir, owner);
        cni.and(builtin)
    }

    /// Current IPAM allocations (ip -> owner).
    ///
    /// These are the built-in network's; a CNI network's IPAM plugin keeps its own.
    pub fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, NetworkError> {
        Ok(ipam::load(&self.state_dir)?.allocations)
    }

    /// Removes the attachments of owners that no longer exist (`exists(owner)` is false):
    /// built-in allocations with their veth, CNI attachments (`DEL` with the cached
    /// result; a plugin failure is ignored once the namespace is gone), and any veth on the
    /// bridge that no allocation accounts for. Returns what was removed, one line each.
    ///
    /// Safe beside concurrent attaches: an owner's record exists before its address is
    /// allocated, and an allocation exists before its veth.
    pub fn collect_garbage(
        &self,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, NetworkError> {
        let mut removed = bridge::collect_garbage(&self.state_dir, &self.config, exists)?;
        removed.extend(cni::collect_garbage(
            &self.state_dir,
            &self.config.cni_plugin_dirs,
            exists,
        )?);
        Ok(removed)
    }
}

/// Owners name files and CNI container ids, so they follow the CNI container id rule.
fn validate_owner(owner: &str) -> Result<(), NetworkError> {
    let mut bytes = owner.bytes();
    let ok = owner.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidOwner(owner.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_cni_container_id_rule() {
        for good in ["a", "k8s_POD_web_default_0b1c_0", "0123abcdef", "pod-1.x"] {
            validate_owner(good).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "../x", "a b", &"x".repeat(129)] {
            assert!(
                matches!(validate_owner(bad), Err(NetworkError::InvalidOwner(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rollback_reports_both_errors() {
        let err = NetworkError::Exhausted("10.0.0.0/30".parse().unwrap()).with_rollback(Err(
            NetworkError::Netlink {
                op: "delete veth vethx".into(),
                source: io::Error::other("boom"),
            },
        ));
        let text = err.to_string();
        assert!(text.contains("no free IP address in 10.0.0.0/30"), "{text}");
        assert!(text.contains("delete veth vethx: boom"), "{text}");
    }
}
