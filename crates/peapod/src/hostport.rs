//! Host ports of pods: which `spec.containers[].ports[]` with a `hostPort` (or which CRI
//! `port_mappings`) a pod publishes, checked against what peapod can publish. The result
//! goes into the pod's infra record (`ports`), where `ps` and `inspect` show it and the pod
//! monitor finds it; the monitor publishes it with `peapod_sandbox::ports` (a userland
//! proxy, as for `run -p`) for as long as the sandbox lives. This module binds nothing.
//!
//! As the kubelet and the CNI portmap plugin: a port without `hostPort` (or with 0) is not
//! published, `hostIP` defaults to 0.0.0.0, and a host-network pod publishes nothing (its
//! ports are the host's already). Stricter than Kubernetes, and said so: SCTP cannot be
//! proxied, and host addresses are IPv4 only.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use peapod_api::validate::{Cause, CauseKind, Invalid};
use peapod_sandbox::ports::{PortMapping, Protocol};

use crate::engine::Engine;
use crate::engine_cri::{CriSandbox, NsMode, CRI_RECORD};

/// Why SCTP is refused, in the message.
const SCTP_DETAIL: &str =
    "peapod publishes host ports over TCP and UDP only (SCTP cannot be proxied); supported values: \"TCP\", \"UDP\"";
/// Why an IPv6 host address is refused, in the message.
const IPV6_DETAIL: &str = "peapod publishes host ports on IPv4 addresses only";

/// The host ports a pod publishes, or why it cannot: every problem, with the field's path,
/// as the API server reports an invalid Pod. Also refuses what the API server refuses: the
/// same hostPort, protocol and hostIP twice.
pub fn pod_host_ports(pod: &Pod) -> Result<Vec<PortMapping>, Invalid> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let host_network = spec.host_network.unwrap_or(false);
    let mut causes = Vec::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = p.host_port.filter(|&hp| hp != 0) else {
                continue;
            };
            let path = format!("spec.containers[{i}].ports[{j}]");
            let protocol = p.protocol.as_deref().filter(|s| !s.is_empty());
            let host_ip = p.host_ip.as_deref().filter(|s| !s.is_empty());
            // `ValidatePodSpec`'s AccumulateUniqueHostPorts key.
            let key = format!(
                "{}/{}/{host_port}",
                protocol.unwrap_or("TCP"),
                host_ip.unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                causes.push(Cause::duplicate(format!("{path}.hostPort"), key));
            }
            if host_network {
                continue;
            }
            let mut ok = true;
            let host_port = match u16::try_from(host_port) {
                Ok(n) if n > 0 => n,
                _ => {
                    ok = false;
                    causes.push(Cause::invalid(
                        format!("{path}.hostPort"),
                        host_port,
                        "must be between 1 and 65535, inclusive",
                    ));
                    0
                }
            };
            let container_port = match u16::try_from(p.container_port) {
                Ok(n) if n > 0 => n,
                _ => {
                    ok = false;
                    causes.push(Cause::invalid(
                        format!("{path}.containerPort"),
                        p.container_port,
                        "must be between 1 and 65535, inclusive",
                    ));
                    0
                }
            };
            let protocol = match protocol {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(other) => {
                    ok = false;
                    let detail = if other == "SCTP" {
                        SCTP_DETAIL.to_owned()
                    } else {
                        "supported values: \"TCP\", \"UDP\"".to_owned()
                    };
                    causes.push(Cause {
                        field: format!("{path}.protocol"),
                        kind: CauseKind::NotSupported,
                        value: Some(format!("{other:?}")),
                        detail,
                    });
                    Protocol::Tcp
                }
            };
            let host_ip = match host_ip.map(str::parse::<IpAddr>) {
                None => Ipv4Addr::UNSPECIFIED,
                Some(Ok(IpAddr::V4(ip))) => ip,
                Some(Ok(IpAddr::V6(_))) => {
                    ok = false;
                    causes.push(Cause::invalid(
                        format!("{path}.hostIP"),
                        host_ip.unwrap_or_default(),
                        IPV6_DETAIL,
                    ));
                    Ipv4Addr::UNSPECIFIED
                }
                Some(Err(_)) => {
                    ok = false;
                    causes.push(Cause::invalid(
                        format!("{path}.hostIP"),
                        host_ip.unwrap_or_default(),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    ));
                    Ipv4Addr::UNSPECIFIED
                }
            };
            if ok {
                out.push(PortMapping {
                    host_ip,
                    host_port,
                    container_port,
                    protocol,
                });
            }
        }
    }
    if causes.is_empty() {
        Ok(out)
    } else {
        Err(Invalid {
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            causes,
        })
    }
}

/// A CRI `port_mappings` entry peapod cannot publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port_mappings[{index}].{field}: {message}")]
pub struct CriPortError {
    /// The entry's index.
    pub index: usize,
    /// The field: `protocol`, `host_ip`, `host_port`, `container_port`.
    pub field: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
}

/// The host ports of a CRI sandbox, from its `port_mappings` as kept in `cri.json`
/// (protocol, container port, host port, host IP). As containerd: entries without a host
/// port (the kubelet sends every container port) are skipped, and a host-network sandbox
/// publishes nothing.
pub fn cri_host_ports(
    mappings: &[(i32, i32, i32, String)],
    host_network: bool,
) -> Result<Vec<PortMapping>, CriPortError> {
    if host_network {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (index, (protocol, container_port, host_port, host_ip)) in mappings.iter().enumerate() {
        if *host_port <= 0 {
            continue;
        }
        let fail = |field, message: String| CriPortError {
            index,
            field,
            message,
        };
        let port = |field, v: i32| {
            u16::try_from(v)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| fail(field, format!("{v} is not a port number (1-65535)")))
        };
        let protocol = match peapod_cri::v1::Protocol::try_from(*protocol) {
            Ok(peapod_cri::v1::Protocol::Tcp) => Protocol::Tcp,
            Ok(peapod_cri::v1::Protocol::Udp) => Protocol::Udp,
            Ok(peapod_cri::v1::Protocol::Sctp) => {
                return Err(fail(
                    "protocol",
                    "SCTP host ports cannot be published (peapod proxies TCP and UDP only)".into(),
                ))
            }
            Err(_) => {
                return Err(fail(
                    "protocol",
                    format!("unknown protocol {protocol} (expected TCP or UDP)"),
                ))
            }
        };
        let host_ip = match host_ip.as_str() {
            "" => Ipv4Addr::UNSPECIFIED,
            ip => match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => v4,
                Ok(IpAddr::V6(_)) => return Err(fail("host_ip", format!("{ip:?}: {IPV6_DETAIL}"))),
                Err(_) => {
                    return Err(fail(
                        "host_ip",
                        format!(
                            "{ip:?} is not an IP address (expected IPv4, or empty for 0.0.0.0)"
                        ),
                    ))
                }
            },
        };
        out.push(PortMapping {
            host_ip,
            host_port: port("host_port", *host_port)?,
            container_port: port("container_port", *container_port)?,
            protocol,
        });
    }
    Ok(out)
}

impl Engine {
    /// The host ports the sandbox of pod `uid` publishes: a CRI sandbox's from its
    /// `cri.json`, any other pod's from its spec.
    pub(crate) fn sandbox_host_ports(&self, pod: &Pod, uid: &str) -> Result<Vec<PortMapping>> {
        let cri: Option<CriSandbox> = peapod_store::read_json(&self.pod_dir(uid).join(CRI_RECORD))?;
        Ok(match cri {
            Some(r) => cri_host_ports(&r.port_mappings, r.network == NsMode::Node)?,
            None => pod_host_ports(pod)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(
        host_ip: Ipv4Addr,
        host_port: u16,
        container_port: u16,
        protocol: Protocol,
    ) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
    }

    fn pod(host_network: bool, ports: &[serde_json::Value]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "hostNetwork": host_network,
                "containers": [
                    {"name": "a", "image": "busybox", "ports": ports},
                    {"name": "b", "image": "busybox"},
                ],
            },
        }))
        .unwrap()
    }

    fn messages(e: Invalid) -> Vec<String> {
        e.causes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn host_ports_become_mappings_with_the_kubelets_defaults() {
        use serde_json::json;
        let got = pod_host_ports(&pod(
            false,
            &[
                json!({"containerPort": 80}),
                json!({"containerPort": 80, "hostPort": 0}),
                json!({"containerPort": 80, "hostPort": 8080}),
                json!({"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"}),
                json!({"containerPort": 443, "hostPort": 8443, "protocol": "TCP", "hostIP": ""}),
            ],
        ))
        .unwrap();
        assert_eq!(
            got,
            vec![
                mapping(Ipv4Addr::UNSPECIFIED, 8080, 80, Protocol::Tcp),
                mapping(Ipv4Addr::LOCALHOST, 5353, 53, Protocol::Udp),
                mapping(Ipv4Addr::UNSPECIFIED, 8443, 443, Protocol::Tcp),
            ]
        );
        let no_spec = Pod::default();
        assert_eq!(pod_host_ports(&no_spec).unwrap(), Vec::new());
    }

    #[test]
    fn a_host_network_pod_publishes_nothing() {
        let got = pod_host_ports(&pod(
            true,
            &[serde_json::json!({"containerPort": 8080, "hostPort": 8080, "protocol": "SCTP"})],
        ))
        .unwrap();
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn what_cannot_be_published_is_refused_naming_the_field() {
        use serde_json::json;
        let e = pod_host_ports(&pod(
            false,
            &[
                json!({"containerPort": 80, "hostPort": 8080, "protocol": "SCTP"}),
                json!({"containerPort": 80, "hostPort": 8081, "hostIP": "::1"}),
                json!({"containerPort": 80, "hostPort": 8082, "hostIP": "example"}),
                json!({"containerPort": 80, "hostPort": 70000}),
                json!({"containerPort": 80, "hostPort": 9000, "protocol": "TCP", "hostIP": "127.0.0.1"}),
                json!({"containerPort": 81, "hostPort": 9000, "hostIP": "127.0.0.1"}),
                json!({"containerPort": 81, "hostPort": 9000, "protocol": "UDP", "hostIP": "127.0.0.1"}),
            ],
        ))
        .unwrap_err();
        assert_eq!(e.name, "web");
        assert_eq!(
            messages(e.clone()),
            vec![
                format!("spec.containers[0].ports[0].protocol: Unsupported value: \"SCTP\": {SCTP_DETAIL}"),
                format!("spec.containers[0].ports[1].hostIP: Invalid value: \"::1\": {IPV6_DETAIL}"),
                "spec.containers[0].ports[2].hostIP: Invalid value: \"example\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string(),
                "spec.containers[0].ports[3].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive".to_string(),
                "spec.containers[0].ports[5].hostPort: Duplicate value: \"TCP/127.0.0.1/9000\"".to_string(),
            ]
        );
        assert!(
            e.to_string().starts_with("The Pod \"web\" is invalid: ["),
            "{e}"
        );
    }

    #[test]
    fn cri_mappings_skip_unpublished_ports_and_refuse_what_cannot_be_proxied() {
        let tcp = peapod_cri::v1::Protocol::Tcp as i32;
        let udp = peapod_cri::v1::Protocol::Udp as i32;
        let sctp = peapod_cri::v1::Protocol::Sctp as i32;
        let got = cri_host_ports(
            &[
                (tcp, 80, 0, String::new()),
                (tcp, 80, 8080, String::new()),
                (udp, 53, 5353, "127.0.0.1".into()),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                mapping(Ipv4Addr::UNSPECIFIED, 8080, 80, Protocol::Tcp),
                mapping(Ipv4Addr::LOCALHOST, 5353, 53, Protocol::Udp),
            ]
        );
        assert!(cri_host_ports(&[(sctp, 80, 8080, String::new())], true)
            .unwrap()
            .is_empty());
        for (mapping, want) in [
            (
                (sctp, 80, 8080, String::new()),
                "port_mappings[1].protocol: SCTP",
            ),
            (
                (7, 80, 8080, String::new()),
                "port_mappings[1].protocol: unknown protocol 7",
            ),
            (
                (tcp, 80, 8080, "::1".into()),
                "port_mappings[1].host_ip: \"::1\": peapod publishes",
            ),
            (
                (tcp, 80, 8080, "nope".into()),
                "port_mappings[1].host_ip: \"nope\" is not an IP",
            ),
            (
                (tcp, 80, 70000, String::new()),
                "port_mappings[1].host_port: 70000 is not a port",
            ),
            (
                (tcp, 0, 8080, String::new()),
                "port_mappings[1].container_port: 0 is not a port",
            ),
        ] {
            let e = cri_host_ports(&[(tcp, 1, 0, String::new()), mapping], false).unwrap_err();
            assert!(e.to_string().starts_with(want), "{e} (want {want})");
        }
    }
}
