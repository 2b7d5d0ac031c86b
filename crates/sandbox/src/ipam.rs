//! IP address management of the built-in network: which pod owns which address, in
//! `<state_dir>/ipam.json`, replaced atomically. Callers hold `<state_dir>/network.lock`
//! across load, change and save. The allocation rules are pure and unit-tested.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::NetworkError;

/// The IPAM state file.
pub(crate) fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ipam.json")
}

/// The lock serialising bridge creation and IPAM across processes.
pub(crate) fn lock_file(state_dir: &Path) -> PathBuf {
    state_dir.join("network.lock")
}

/// What `ipam.json` holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IpamState {
    /// Address -> owner.
    #[serde(default)]
    pub(crate) allocations: BTreeMap<Ipv4Addr, String>,
}

/// Reads the state; a missing file is an empty state.
pub(crate) fn load(state_dir: &Path) -> Result<IpamState, peapod_store::StateError> {
    Ok(peapod_store::read_json(&state_file(state_dir))?.unwrap_or_default())
}

/// Replaces the state file atomically.
pub(crate) fn save(state_dir: &Path, state: &IpamState) -> Result<(), peapod_store::IoError> {
    peapod_store::create_dir_all(state_dir)?;
    peapod_store::write_json(&state_file(state_dir), state)
}

/// The subnet's gateway, its first host address; an error when no pod would fit beside it.
pub(crate) fn gateway(subnet: Ipv4Net) -> Result<Ipv4Addr, NetworkError> {
    let subnet = subnet.trunc();
    if subnet.prefix_len() > 30 {
        return Err(NetworkError::SubnetTooSmall(subnet));
    }
    Ok(Ipv4Addr::from(u32::from(subnet.network()) + 1))
}

impl IpamState {
    /// The address `owner` holds, if any.
    pub(crate) fn owned_by(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations
            .iter()
            .find(|(_, o)| *o == owner)
            .map(|(ip, _)| *ip)
    }

    /// Gives `owner` an address in `subnet`: the one it already holds there, else the lowest
    /// free one after the gateway (never the network, gateway or broadcast address).
    /// Returns the address and whether it is new.
    pub(crate) fn allocate(
        &mut self,
        owner: &str,
        subnet: Ipv4Net,
    ) -> Result<(Ipv4Addr, bool), NetworkError> {
        let subnet = subnet.trunc();
        let gateway = gateway(subnet)?;
        if let Some(ip) = self.owned_by(owner) {
            if subnet.contains(&ip) && ip != gateway && ip != subnet.broadcast() {
                return Ok((ip, false));
            }
            // Held in a subnet no longer configured: it could not be routed.
            self.release(owner);
        }
        let first = u32::from(gateway) + 1;
        let last = u32::from(subnet.broadcast()) - 1;
        let ip = (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| !self.allocations.contains_key(ip))
            .ok_or(NetworkError::Exhausted(subnet))?;
        self.allocations.insert(ip, owner.to_owned());
        Ok((ip, true))
    }

    /// Frees every address `owner` holds; whether there was one.
    pub(crate) fn release(&mut self, owner: &str) -> bool {
        let before = self.allocations.len();
        self.allocations.retain(|_, o| o != owner);
        self.allocations.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_free_after_the_gateway() {
        let mut st = IpamState::default();
        let subnet = net("10.42.0.0/16");
        assert_eq!(
            st.allocate("a", subnet).unwrap(),
            ("10.42.0.2".parse().unwrap(), true)
        );
        assert_eq!(
            st.allocate("b", subnet).unwrap(),
            ("10.42.0.3".parse().unwrap(), true)
        );
        assert!(st.release("a"));
        assert_eq!(
            st.allocate("c", subnet).unwrap(),
            ("10.42.0.2".parse().unwrap(), true)
        );
        assert_eq!(
            st.allocate("b", subnet).unwrap(),
            ("10.42.0.3".parse().unwrap(), false)
        );
        assert!(!st.release("nobody"));
    }

    #[test]
    fn host_bits_of_the_configured_subnet_are_ignored() {
        let mut st = IpamState::default();
        assert_eq!(
            gateway(net("10.1.2.77/24")).unwrap(),
            "10.1.2.1".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            st.allocate("a", net("10.1.2.77/24")).unwrap().0,
            "10.1.2.2".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn a_slash_30_holds_one_pod_and_never_the_broadcast() {
        let mut st = IpamState::default();
        let subnet = net("10.9.0.4/30");
        assert_eq!(
            st.allocate("a", subnet).unwrap().0,
            "10.9.0.6".parse::<Ipv4Addr>().unwrap()
        );
        assert!(matches!(st.allocate("b", subnet), Err(NetworkError::Exhausted(n)) if n == subnet));
        assert_eq!(st.allocations.len(), 1);
    }

    #[test]
    fn tiny_subnets_are_rejected() {
        for s in ["10.0.0.0/31", "10.0.0.1/32"] {
            assert!(matches!(
                IpamState::default().allocate("a", net(s)),
                Err(NetworkError::SubnetTooSmall(_))
            ));
        }
    }

    #[test]
    fn an_address_outside_a_new_subnet_is_replaced() {
        let mut st = IpamState::default();
        st.allocate("a", net("10.1.0.0/24")).unwrap();
        let (ip, fresh) = st.allocate("a", net("10.2.0.0/24")).unwrap();
        assert_eq!((ip, fresh), ("10.2.0.2".parse().unwrap(), true));
        assert_eq!(st.allocations.len(), 1);
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("net");
        assert_eq!(load(&state_dir).unwrap(), IpamState::default());
        let mut st = IpamState::default();
        st.allocate("a", net("10.5.0.0/24")).unwrap();
        save(&state_dir, &st).unwrap();
        assert_eq!(load(&state_dir).unwrap(), st);
        let text = std::fs::read_to_string(state_file(&state_dir)).unwrap();
        assert!(text.contains("\"10.5.0.2\": \"a\""), "{text}");
    }
}
