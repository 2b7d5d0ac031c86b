//! Placeholder for the network probe executor (replaced by the full implementation):
//! the API the pod monitor calls.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCheck {
    Http {
        https: bool,
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Grpc {
        host: String,
        port: u16,
        service: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("port {0:?} is not a named port of the container")]
    UnknownPort(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub success: bool,
    pub message: String,
}

fn port(p: &IntOrString, c: &Container) -> Result<u16, ProbeError> {
    match p {
        IntOrString::Int(n) => Ok(*n as u16),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .map(|cp| cp.container_port as u16)
            .ok_or_else(|| ProbeError::UnknownPort(name.clone())),
    }
}

pub fn http_check(
    a: &HTTPGetAction,
    c: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    Ok(NetworkCheck::Http {
        https: a.scheme.as_deref() == Some("HTTPS"),
        host: a.host.clone().unwrap_or_else(|| pod_ip.to_string()),
        port: port(&a.port, c)?,
        path: a.path.clone().unwrap_or_else(|| "/".into()),
        headers: Vec::new(),
    })
}

pub fn tcp_check(
    a: &TCPSocketAction,
    c: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    Ok(NetworkCheck::Tcp {
        host: a.host.clone().unwrap_or_else(|| pod_ip.to_string()),
        port: port(&a.port, c)?,
    })
}

pub fn grpc_check(
    a: &GRPCAction,
    _c: &Container,
    pod_ip: &str,
) -> Result<NetworkCheck, ProbeError> {
    Ok(NetworkCheck::Grpc {
        host: pod_ip.to_string(),
        port: a.port as u16,
        service: a.service.clone(),
    })
}

pub fn run_check(netns: Option<&Path>, check: &NetworkCheck, timeout: Duration) -> ProbeOutcome {
    if let Some(ns) = netns {
        if let Ok(f) = std::fs::File::open(ns) {
            let _ = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET);
        }
    }
    let (host, port) = match check {
        NetworkCheck::Tcp { host, port }
        | NetworkCheck::Http { host, port, .. }
        | NetworkCheck::Grpc { host, port, .. } => (host, *port),
    };
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            return ProbeOutcome {
                success: false,
                message: format!("bad address {host}"),
            }
        }
    };
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => ProbeOutcome {
            success: true,
            message: String::new(),
        },
        Err(e) => ProbeOutcome {
            success: false,
            message: format!("dial tcp {addr}: connect: {e}"),
        },
    }
}

pub fn spawn_check(
    netns: Option<PathBuf>,
    check: NetworkCheck,
    timeout: Duration,
    done: impl FnOnce(ProbeOutcome) + Send + 'static,
) {
    std::thread::spawn(move || done(run_check(netns.as_deref(), &check, timeout)));
}
