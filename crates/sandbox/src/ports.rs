//! Published ports (`-p [IP:]HOST:CTR[/proto]`), forwarded by a userland proxy as
//! docker-proxy does: a TCP listener per mapping whose connections are spliced to the pod
//! by two copy threads each, and a UDP socket per mapping that relays datagrams through one
//! upstream socket per client. It never touches the firewall.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long connecting to the pod may take before a client is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often blocking UDP receives look at the stop flag.
const UDP_POLL: Duration = Duration::from_millis(100);
/// A UDP client silent this long loses its upstream socket (docker-proxy uses 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
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
#[error(
    "invalid port mapping {input:?}: {reason} (expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])"
)]
pub struct PortError {
    /// The value.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

/// Parses `-p` as Docker does.
///
/// `8080:80`, `127.0.0.1:8080:80`, `8080:80/udp`. Both ports are required (no random host
/// port), in 1..=65535; the host IP is IPv4.
pub fn parse(s: &str) -> Result<PortMapping, PortError> {
    let fail = |reason: String| PortError {
        input: s.to_owned(),
        reason,
    };
    let (spec, protocol) = match s.rsplit_once('/') {
        None => (s, Protocol::Tcp),
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => return Err(fail(format!("unknown protocol {other:?}"))),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [ctr] if !ctr.is_empty() => return Err(fail("missing host port".into())),
        [host, ctr] => (Ipv4Addr::UNSPECIFIED, *host, *ctr),
        [ip, host, ctr] => {
            let ip = ip
                .parse()
                .map_err(|_| fail(format!("host IP {ip:?} is not an IPv4 address")))?;
            (ip, *host, *ctr)
        }
        [] | [_] => return Err(fail("empty".into())),
        _ => return Err(fail("too many ':'".into())),
    };
    let port = |what: &str, v: &str| -> Result<u16, PortError> {
        if v.is_empty() {
            return Err(fail(format!("missing {what} port")));
        }
        match v.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            Ok(n) => Err(fail(format!("{what} port {n} is out of range 1-65535"))),
            Err(_) => Err(fail(format!("{what} port {v:?} is not a number"))),
        }
    };
    Ok(PortMapping {
        host_ip,
        host_port: port("host", host_port)?,
        container_port: port("container", container_port)?,
        protocol,
    })
}

/// Forwards while alive; dropping it stops forwarding and closes the listeners.
///
/// Dropping also cuts the connections it is relaying, and returns once every listening
/// socket is closed, so the ports can be bound again at once.
#[derive(Debug)]
pub struct Proxy {
    stop: Arc<AtomicBool>,
    /// Clones of the TCP listeners, to wake their blocked `accept`.
    listeners: Vec<TcpListener>,
    /// The relayed TCP connections (both ends), to cut them.
    conns: Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.listeners {
            // Linux wakes a blocked accept() with EINVAL when the listener is shut down.
            let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        }
        for (a, b) in lock(&self.conns).values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds every listener now (so a busy port is an error here) and forwards connections
/// (datagrams) to `target` in background threads.
pub fn spawn(mappings: &[PortMapping], target: Ipv4Addr) -> std::io::Result<Proxy> {
    enum Bound {
        Tcp(TcpListener, SocketAddrV4),
        Udp(UdpSocket, SocketAddrV4),
    }
    let mut bound = Vec::with_capacity(mappings.len());
    for m in mappings {
        let addr = SocketAddrV4::new(m.host_ip, m.host_port);
        let named = |e: io::Error| {
            io::Error::new(e.kind(), format!("listen on {addr}/{}: {e}", m.protocol))
        };
        let upstream = SocketAddrV4::new(target, m.container_port);
        bound.push(match m.protocol {
            Protocol::Tcp => Bound::Tcp(TcpListener::bind(addr).map_err(named)?, upstream),
            Protocol::Udp => {
                let sock = UdpSocket::bind(addr).map_err(named)?;
                sock.set_read_timeout(Some(UDP_POLL)).map_err(named)?;
                Bound::Udp(sock, upstream)
            }
        });
    }
    let mut proxy = Proxy {
        stop: Arc::default(),
        listeners: Vec::new(),
        conns: Arc::default(),
        threads: Vec::new(),
    };
    for b in bound {
        let stop = proxy.stop.clone();
        let thread = match b {
            Bound::Tcp(listener, upstream) => {
                proxy.listeners.push(listener.try_clone()?);
                let conns = proxy.conns.clone();
                std::thread::Builder::new()
                    .name("peapod-proxy-tcp".into())
                    .spawn(move || accept_loop(listener, upstream, stop, conns))?
            }
            Bound::Udp(sock, upstream) => std::thread::Builder::new()
                .name("peapod-proxy-udp".into())
                .spawn(move || udp_loop(sock, upstream, stop))?,
        };
        proxy.threads.push(thread);
    }
    Ok(proxy)
}

type Conns = Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>;

fn accept_loop(listener: TcpListener, upstream: SocketAddrV4, stop: Arc<AtomicBool>, conns: Conns) {
    let next_id = AtomicU64::new(0);
    loop {
        match listener.accept() {
            Ok(_) if stop.load(Ordering::SeqCst) => break,
            Ok((client, _)) => {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let (stop, conns) = (stop.clone(), conns.clone());
                let _ = std::thread::Builder::new()
                    .name("peapod-proxy-conn".into())
                    .spawn(move || relay_tcp(id, client, upstream, &stop, &conns));
            }
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors or a connection reset before accept: back off briefly.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Splices one client to the pod until both directions end.
fn relay_tcp(id: u64, client: TcpStream, upstream: SocketAddrV4, stop: &AtomicBool, conns: &Conns) {
    let Ok(server) = TcpStream::connect_timeout(&SocketAddr::V4(upstream), CONNECT_TIMEOUT) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    lock(conns).insert(id, (c2, s2));
    // Registered after Drop looked: cut it here.
    if stop.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    let up = {
        let (client, server) = (client.try_clone(), server.try_clone());
        std::thread::Builder::new()
            .name("peapod-proxy-copy".into())
            .spawn(move || {
                if let (Ok(c), Ok(s)) = (client, server) {
                    copy_half(&c, &s);
                }
            })
    };
    copy_half(&server, &client);
    if let Ok(up) = up {
        let _ = up.join();
    }
    lock(conns).remove(&id);
}

/// Copies `from` to `to` until EOF or error, then half-closes `to` so the far side sees
/// EOF too (and `from` for reading, which ends the other direction on error).
fn copy_half(mut from: &TcpStream, mut to: &TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// One UDP client's upstream socket, connected to the pod.
struct UdpClient {
    upstream: UdpSocket,
    last_seen: Mutex<Instant>,
}

fn udp_loop(sock: UdpSocket, upstream: SocketAddrV4, stop: Arc<AtomicBool>) {
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpClient>>>> = Arc::default();
    let mut replies: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let existing = lock(&clients).get(&from).cloned();
        let client = match existing {
            Some(c) => c,
            None => {
                let Ok(c) = new_udp_client(upstream) else {
                    continue;
                };
                let c = Arc::new(c);
                let Ok(back) = sock.try_clone() else { continue };
                lock(&clients).insert(from, c.clone());
                let (c2, clients2, stop2) = (c.clone(), clients.clone(), stop.clone());
                replies.retain(|t| !t.is_finished());
                if let Ok(t) = std::thread::Builder::new()
                    .name("peapod-proxy-udp-reply".into())
                    .spawn(move || udp_replies(&c2, &back, from, &stop2, &clients2))
                {
                    replies.push(t);
                }
                c
            }
        };
        *lock(&client.last_seen) = Instant::now();
        let _ = client.upstream.send(&buf[..n]);
    }
    // The reply threads hold clones of the listening socket: the port is free once they end.
    for t in replies {
        let _ = t.join();
    }
}

fn new_udp_client(upstream: SocketAddrV4) -> io::Result<UdpClient> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect(upstream)?;
    s.set_read_timeout(Some(UDP_POLL))?;
    Ok(UdpClient {
        upstream: s,
        last_seen: Mutex::new(Instant::now()),
    })
}

/// Relays the pod's answers to `client` until stopped or idle.
fn udp_replies(
    c: &UdpClient,
    back: &UdpSocket,
    client: SocketAddr,
    stop: &AtomicBool,
    clients: &Mutex<HashMap<SocketAddr, Arc<UdpClient>>>,
) {
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::SeqCst) {
        match c.upstream.recv(&mut buf) {
            Ok(n) => {
                *lock(&c.last_seen) = Instant::now();
                let _ = back.send_to(&buf[..n], client);
            }
            Err(_) => {
                if lock(&c.last_seen).elapsed() > UDP_IDLE {
                    break;
                }
            }
        }
    }
    lock(clients).remove(&client);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn ok(s: &str) -> PortMapping {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_docker_forms() {
        assert_eq!(
            ok("8080:80"),
            PortMapping {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(
            ok("127.0.0.1:8080:80"),
            PortMapping {
                host_ip: Ipv4Addr::LOCALHOST,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(ok("8080:80/udp").protocol, Protocol::Udp);
        assert_eq!(ok("1:65535/tcp").container_port, 65535);
    }

    #[test]
    fn rejects_what_docker_rejects_or_we_do_not_support() {
        for (input, reason) in [
            ("80", "missing host port"),
            (":80", "missing host port"),
            ("8080:", "missing container port"),
            ("127.0.0.1::80", "missing host port"),
            ("", "empty"),
            ("http:80", "not a number"),
            ("8080:eighty", "not a number"),
            ("0:80", "out of range"),
            ("8080:65536", "out of range"),
            ("8080:99999999999", "not a number"),
            ("8080:80/sctp", "unknown protocol"),
            ("8080:80/", "unknown protocol"),
            ("localhost:8080:80", "not an IPv4"),
            ("1:2:3:4", "too many"),
            ("8000-8010:80", "not a number"),
        ] {
            let e = parse(input).expect_err(input);
            assert!(e.reason.contains(reason), "{input:?}: {}", e.reason);
            assert!(e.to_string().contains("expected [IP:]HOST_PORT"), "{e}");
        }
    }

    /// A free loopback port (bound and released; good enough for tests).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn tcp_is_forwarded_and_drop_frees_the_port() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let ctr = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            s.write_all(buf.to_uppercase().as_bytes()).unwrap();
        });
        let host = free_port();
        let m = PortMapping {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: host,
            container_port: ctr,
            protocol: Protocol::Tcp,
        };
        let proxy = spawn(std::slice::from_ref(&m), Ipv4Addr::LOCALHOST).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", host)).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "HELLO");
        echo.join().unwrap();

        let busy = spawn(std::slice::from_ref(&m), Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(
            busy.to_string().contains(&format!("127.0.0.1:{host}/tcp")),
            "{busy}"
        );
        drop(proxy);
        assert!(
            TcpStream::connect(("127.0.0.1", host)).is_err(),
            "nothing listens after drop"
        );
        drop(spawn(&[m], Ipv4Addr::LOCALHOST).expect("the port is free again"));
    }

    #[test]
    fn drop_cuts_open_connections() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let ctr = server.local_addr().unwrap().port();
        let host = free_port();
        let m = PortMapping {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: host,
            container_port: ctr,
            protocol: Protocol::Tcp,
        };
        let proxy = spawn(&[m], Ipv4Addr::LOCALHOST).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", host)).unwrap();
        let (_held, _) = server.accept().unwrap();
        drop(proxy);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            c.read(&mut buf).unwrap_or(0),
            0,
            "the client sees EOF or a reset"
        );
    }

    #[test]
    fn udp_is_relayed_per_client() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ctr = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let reply = format!("{}:{}", String::from_utf8_lossy(&buf[..n]), from.port());
                server.send_to(reply.as_bytes(), from).unwrap();
            }
        });
        let host = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let m = PortMapping {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: host,
            container_port: ctr,
            protocol: Protocol::Udp,
        };
        let proxy = spawn(&[m], Ipv4Addr::LOCALHOST).unwrap();
        let mut seen_from = Vec::new();
        for name in ["a", "b"] {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.send_to(name.as_bytes(), ("127.0.0.1", host)).unwrap();
            let mut buf = [0u8; 64];
            let n = c.recv(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (echoed, port) = text.split_once(':').unwrap();
            assert_eq!(echoed, name);
            seen_from.push(port.to_owned());
        }
        assert_ne!(
            seen_from[0], seen_from[1],
            "each client has its own upstream socket"
        );
        echo.join().unwrap();
        drop(proxy);
        UdpSocket::bind(("127.0.0.1", host)).expect("the UDP port is free after drop");
    }
}
