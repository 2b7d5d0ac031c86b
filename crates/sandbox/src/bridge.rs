//! The built-in network: one Linux bridge whose address is the subnet's gateway, and per
//! owner a veth pair whose host side (`veth` + 8 hex digits of the owner's FNV-1a hash) is a
//! bridge port and whose peer is created directly inside the pod's netns as `eth0` (moving
//! an interface between namespaces afterwards costs 15–30 ms). Addresses come from
//! [`crate::ipam`]. The pod side is configured through a netlink socket opened inside the
//! pod's namespace by a short-lived thread.
//!
//! It never touches host sysctls or firewall rules (no forwarding or masquerading here).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use peapod_store::Lock;
use rtnetlink::packet_route::link::LinkFlags;

use crate::netlink::{err, is_bridge, Netlink, NlError, EEXIST, ENODEV};
use crate::{ipam, netns, Endpoint, NetworkConfig, NetworkError};

/// The name of eth0 inside the pod.
const POD_IFNAME: &str = "eth0";

/// The host side veth name of `owner`: `veth` + the 8 hex digits of FNV-1a-32(owner).
/// Stable, so detach needs no state to find it; collisions are caught at attach.
pub(crate) fn veth_name(owner: &str) -> String {
    let hash = owner.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("veth{hash:08x}")
}

/// `02:42:` + the four address bytes, as Docker does: unique per address, locally
/// administered, unicast.
pub(crate) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// Lower-case hex with colons.
pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Attaches `owner`'s netns at `netns_path` to the bridge; see [`crate::PodNetwork::attach`].
pub(crate) fn attach(
    state_dir: &Path,
    config: &NetworkConfig,
    owner: &str,
    netns_path: &Path,
) -> Result<Endpoint, NetworkError> {
    let subnet = config.subnet.trunc();
    let gateway = ipam::gateway(subnet)?;
    let netns = netns::open(netns_path)?;
    // The pod side's socket first: it proves `netns_path` is a network namespace before
    // anything is made.
    let pod_nl = netns::run_in_file(&netns, netns_path, Netlink::connect)?
        .map_err(|e| err("open netlink socket in the pod netns", e))?;
    let host_nl = Netlink::connect().map_err(|e| err("open netlink socket", e))?;
    let veth = veth_name(owner);

    let (bridge_index, ip, fresh, had_address) = {
        let _lock = Lock::exclusive(&ipam::lock_file(state_dir))?;
        let bridge_index = ensure_bridge(&host_nl, &config.bridge, gateway, subnet.prefix_len())?;
        let mut state = ipam::load(state_dir)?;
        if let Some(other) = state
            .allocations
            .values()
            .find(|o| *o != owner && veth_name(o) == veth)
        {
            return Err(NetworkError::VethNameTaken {
                veth,
                owner: owner.to_owned(),
                other: other.clone(),
            });
        }
        let had_address = state.owned_by(owner).is_some();
        let (ip, fresh) = state.allocate(owner, subnet)?;
        if fresh {
            ipam::save(state_dir, &state)?;
        }
        (bridge_index, ip, fresh, had_address)
    };
    let injected = |name: &str| crate::failpoint::check(name).map_err(NetworkError::Injected);
    let undo = |made_veth: bool| -> Result<(), NetworkError> {
        let veth_gone = if made_veth {
            host_nl.delete_link(&veth).map_err(NetworkError::from)
        } else {
            Ok(())
        };
        let ip_gone = if fresh {
            release(state_dir, owner)
        } else {
            Ok(())
        };
        veth_gone.and(ip_gone)
    };

    if let Err(e) = injected("network-ipam-committed") {
        return Err(e.with_rollback(undo(false)));
    }
    // Re-attaching replaces the interface the owner had (its peer, eth0, goes with it).
    let made = if had_address {
        host_nl.delete_link(&veth)
    } else {
        Ok(())
    }
    .and_then(|()| host_nl.add_veth_into(&veth, bridge_index, &netns, POD_IFNAME, mac_for(ip)));
    if let Err(e) = made {
        return Err(NetworkError::from(e).with_rollback(undo(false)));
    }
    if let Err(e) = injected("network-attach-half") {
        return Err(e.with_rollback(undo(true)));
    }
    if let Err(e) = configure_pod_side(&pod_nl, ip, subnet.prefix_len(), gateway) {
        return Err(NetworkError::from(e).with_rollback(undo(true)));
    }
    Ok(Endpoint {
        network: "bridge".into(),
        ip,
        prefix_len: subnet.prefix_len(),
        gateway,
        mac: format_mac(mac_for(ip)),
        host_veth: Some(veth),
    })
}

/// Deletes `owner`'s veth (if it still exists) and releases its address. Nothing to do
/// when it holds no address: the veth is made after the address is taken and deleted
/// before it is released, so a veth never outlives its allocation.
pub(crate) fn detach(state_dir: &Path, owner: &str) -> Result<(), NetworkError> {
    if ipam::load(state_dir)?.owned_by(owner).is_none() {
        return Ok(());
    }
    let host_nl = Netlink::connect().map_err(|e| err("open netlink socket", e))?;
    host_nl.delete_link(&veth_name(owner))?;
    release(state_dir, owner)
}

/// Releases the addresses (and deletes the veths) of owners that no longer exist, then
/// deletes every `veth*` port of the bridge that no remaining allocation accounts for;
/// all under the network lock, so no attach or detach runs meanwhile.
pub(crate) fn collect_garbage(
    state_dir: &Path,
    config: &NetworkConfig,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, NetworkError> {
    if !ipam::state_file(state_dir).exists() {
        return Ok(Vec::new());
    }
    let _lock = Lock::exclusive(&ipam::lock_file(state_dir))?;
    let mut state = ipam::load(state_dir)?;
    let host_nl = Netlink::connect().map_err(|e| err("open netlink socket", e))?;
    let mut removed = Vec::new();
    let dead: Vec<(Ipv4Addr, String)> = state
        .allocations
        .iter()
        .filter(|(_, owner)| !exists(owner))
        .map(|(ip, owner)| (*ip, owner.clone()))
        .collect();
    for (ip, owner) in &dead {
        host_nl.delete_link(&veth_name(owner))?;
        state.release(owner);
        removed.push(format!("address {ip} of {owner}"));
    }
    if !dead.is_empty() {
        ipam::save(state_dir, &state)?;
    }
    if let Some(bridge) = host_nl.link(&config.bridge)? {
        let wanted: std::collections::BTreeSet<String> =
            state.allocations.values().map(|o| veth_name(o)).collect();
        for port in host_nl.ports_of(bridge.header.index)? {
            if port.starts_with("veth") && !wanted.contains(&port) {
                host_nl.delete_link(&port)?;
                removed.push(format!("veth {port}"));
            }
        }
    }
    Ok(removed)
}

/// Releases `owner`'s address under the network lock.
fn release(state_dir: &Path, owner: &str) -> Result<(), NetworkError> {
    let _lock = Lock::exclusive(&ipam::lock_file(state_dir))?;
    let mut state = ipam::load(state_dir)?;
    if state.release(owner) {
        ipam::save(state_dir, &state)?;
    }
    Ok(())
}

/// Makes sure bridge `name` exists, is up and has `gateway/prefix`; returns its index.
/// Callers hold the network lock; a bridge created meanwhile by someone else is accepted.
fn ensure_bridge(
    nl: &Netlink,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32, NetworkError> {
    let link = match nl.link(name)? {
        Some(link) => link,
        None => {
            match nl.add_bridge(name, mac_for(gateway)) {
                Err(e) if !e.is(EEXIST) => return Err(e.into()),
                _ => {}
            }
            nl.link(name)?.ok_or_else(|| {
                err(
                    format!("look up bridge {name}"),
                    io::Error::from_raw_os_error(ENODEV),
                )
            })?
        }
    };
    if !is_bridge(&link) {
        return Err(NetworkError::NotABridge {
            name: name.to_owned(),
        });
    }
    let index = link.header.index;
    match nl.add_address(index, gateway, prefix, &format!("bridge {name}")) {
        Err(e) if !e.is(EEXIST) => return Err(e.into()),
        _ => {}
    }
    if !link.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index, &format!("bridge {name}"))?;
    }
    Ok(index)
}

/// Inside the pod: eth0 up, its address (which brings the subnet's connected route), and
/// the default route via the gateway.
fn configure_pod_side(
    nl: &Netlink,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NlError> {
    let eth0 = nl.link(POD_IFNAME)?.ok_or_else(|| {
        err(
            "look up eth0 in the pod netns",
            io::Error::from_raw_os_error(ENODEV),
        )
    })?;
    nl.set_up(eth0.header.index, "eth0 in the pod netns")?;
    nl.add_address(eth0.header.index, ip, prefix, "eth0 in the pod netns")?;
    nl.add_default_route(gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = veth_name("k8s_POD_web_default_1_0");
        assert_eq!(a, veth_name("k8s_POD_web_default_1_0"));
        assert_eq!(a.len(), 12);
        assert!(a.len() <= 15, "IFNAMSIZ");
        assert_ne!(a, veth_name("k8s_POD_web_default_2_0"));
        // FNV-1a-32 of the empty string is its offset basis.
        assert_eq!(veth_name(""), "veth811c9dc5");
    }

    #[test]
    fn macs_follow_docker() {
        let ip: Ipv4Addr = "10.42.0.2".parse().unwrap();
        assert_eq!(format_mac(mac_for(ip)), "02:42:0a:2a:00:02");
    }
}
