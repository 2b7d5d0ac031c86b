//! Sandboxes: network namespaces pinned by bind mounts, the pod network (the built-in
//! netlink bridge with IPAM in the store, or the user's CNI conflist), the per-container
//! /etc files, and published ports.
//!
//! It does not know about images or OCI specs, and never starts container processes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Network settings (from `[network]` in config.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Bridge name, `peapod0` by default.
    pub bridge: String,
    /// Pod subnet, `10.42.0.0/16` by default; the gateway is its first address.
    pub subnet: ipnet::Ipv4Net,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { bridge: "peapod0".into(), subnet: "10.42.0.0/16".parse().expect("valid default subnet") }
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
        Self { state_dir: state_dir.to_owned(), cni_conf_dir: cni_conf_dir.to_owned(), config }
    }

    /// Ensures the bridge, allocates an IP for `owner`, creates the veth pair with its peer
    /// made directly inside `netns` as eth0, addresses and routes. On failure, undoes what it
    /// made.
    pub fn attach(&self, owner: &str, netns: &Path) -> Result<Endpoint, NetworkError> {
        todo!("{owner} {netns:?} {:?} {:?} {:?}", self.state_dir, self.cni_conf_dir, self.config)
    }

    /// Undoes `attach`: veth deleted, CNI DEL, IP released. Idempotent; safe when the netns
    /// is already gone.
    pub fn detach(&self, owner: &str, netns: &Path) -> Result<(), NetworkError> {
        todo!("{owner} {netns:?}")
    }

    /// Current IPAM allocations (ip -> owner).
    pub fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, NetworkError> {
        todo!()
    }
}

/// Network namespaces pinned by a bind mount on a file, as `ip netns` does.
pub mod netns {
    use std::path::Path;

    /// Netns errors.
    #[derive(Debug, thiserror::Error)]
    pub enum NetnsError {
        /// A step failed.
        #[error(transparent)]
        Io(#[from] peapod_store::IoError),
    }

    /// Creates a new network namespace with `lo` up, pinned at `pin`.
    pub fn create(pin: &Path) -> Result<(), NetnsError> {
        todo!("{pin:?}")
    }

    /// Unmounts and removes the pin; missing is success.
    pub fn remove(pin: &Path) -> Result<(), NetnsError> {
        todo!("{pin:?}")
    }
}

/// The files a container sees at /etc/hosts, /etc/resolv.conf and /etc/hostname. Pure.
pub mod etc {
    use std::net::Ipv4Addr;

    /// /etc/hosts: localhost lines, then `ip hostname` when there is an IP.
    pub fn hosts(hostname: &str, ip: Option<Ipv4Addr>) -> String {
        todo!("{hostname} {ip:?}")
    }

    /// /etc/resolv.conf from the host's, without loopback nameservers (Docker falls back to
    /// 8.8.8.8 and 8.8.4.4 when none is left).
    pub fn resolv_conf(host: &str) -> String {
        todo!("{host}")
    }
}

/// Published ports (`-p [IP:]HOST:CTR[/proto]`), forwarded by a userland proxy.
pub mod ports {
    use std::net::Ipv4Addr;

    use serde::{Deserialize, Serialize};

    /// tcp or udp.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Protocol {
        /// TCP.
        Tcp,
        /// UDP.
        Udp,
    }

    /// One published port.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PortMapping {
        /// Host address to listen on (0.0.0.0 by default).
        pub host_ip: Ipv4Addr,
        /// Host port.
        pub host_port: u16,
        /// Container port.
        pub container_port: u16,
        /// Protocol.
        pub protocol: Protocol,
    }

    /// A malformed `-p` value.
    #[derive(Debug, thiserror::Error)]
    #[error("invalid port mapping {input:?}: {reason} (expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])")]
    pub struct PortError {
        /// The value.
        pub input: String,
        /// What is wrong.
        pub reason: String,
    }

    /// Parses `-p` as Docker does.
    pub fn parse(s: &str) -> Result<PortMapping, PortError> {
        todo!("{s}")
    }

    /// Forwards while alive; dropping it stops forwarding and closes the listeners.
    #[derive(Debug)]
    pub struct Proxy {}

    /// Binds every listener now (so a busy port is an error here) and forwards connections
    /// (datagrams) to `target` in background threads.
    pub fn spawn(mappings: &[PortMapping], target: Ipv4Addr) -> std::io::Result<Proxy> {
        todo!("{mappings:?} {target}")
    }
}
