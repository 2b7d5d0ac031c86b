//! Root tests of netns pins and the built-in bridge network: real namespaces, a real bridge
//! and veths, and TCP packets between the test's own pods and from the host. Every test has
//! its own bridge and 10.243.n.0/24 subnet; the fixture cleans up in `Drop`.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{addrs_in, host_link_exists, ip_json, ip_json_in, require_root, Fixture};
use peapod_sandbox::{netns, NetworkError};

/// The inode of this process's own netns.
fn own_netns_inode() -> u64 {
    netns::inode(Path::new("/proc/self/ns/net")).unwrap()
}

#[test]
fn netns_create_and_remove() {
    require_root();
    let fx = Fixture::new();
    let host = own_netns_inode();
    let pin = fx.pin_dir().join("a");
    netns::create(&pin).unwrap();
    assert_eq!(own_netns_inode(), host, "the caller's netns never changes");
    let ino = netns::inode(&pin).unwrap();
    assert_ne!(ino, host, "a new namespace");
    assert!(matches!(
        netns::create(&pin),
        Err(netns::NetnsError::Exists(_))
    ));

    // lo is up inside, and nothing else is there.
    let links = ip_json_in(&pin, &["link", "show"]).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lo"]);
    let flags = links[0]["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"), "{flags:?}");
    // run_in really runs inside it.
    let inside = netns::run_in(&pin, || {
        netns::inode(Path::new("/proc/thread-self/ns/net")).unwrap()
    })
    .unwrap();
    assert_eq!(inside, ino);

    // A second namespace is a different one.
    let pin_b = fx.pin_dir().join("b");
    netns::create(&pin_b).unwrap();
    assert_ne!(netns::inode(&pin_b).unwrap(), ino);

    netns::remove(&pin).unwrap();
    assert!(!pin.exists(), "the pin is gone");
    netns::remove(&pin).unwrap();
    netns::remove(&pin_b).unwrap();
    assert_eq!(own_netns_inode(), host);
}

/// Listens on `ip:port` inside `pin`, accepts one connection, answers `reply` after reading
/// what the client sent (until EOF), and returns that.
fn serve_once(
    pin: &Path,
    ip: Ipv4Addr,
    reply: &'static str,
) -> (u16, std::thread::JoinHandle<String>) {
    let listener = netns::run_in(pin, || TcpListener::bind((ip, 0)).unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        s.write_all(reply.as_bytes()).unwrap();
        got
    });
    (port, t)
}

/// Connects to `to`, sends `msg`, half-closes and returns the answer.
fn talk(to: SocketAddr, msg: &str) -> String {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    got
}

#[test]
fn attach_two_pods_that_talk_over_the_bridge() {
    let fx = Fixture::new();
    let net = fx.network();
    let (pin_a, pin_b) = (fx.netns("a"), fx.netns("b"));
    fx.track("pod-a", &pin_a);
    fx.track("pod-b", &pin_b);

    let t = Instant::now();
    let a = net.attach("pod-a", &pin_a).unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    let b = net.attach("pod-b", &pin_b).unwrap();
    let second = t.elapsed();
    eprintln!("attach: first (creates the bridge) {first:?}, second {second:?}");

    assert_eq!(
        (a.ip, b.ip),
        (fx.ip(2), fx.ip(3)),
        "lowest free addresses after the gateway"
    );
    for (ep, pin) in [(&a, &pin_a), (&b, &pin_b)] {
        assert_eq!(ep.network, "bridge");
        assert_eq!(ep.prefix_len, 24);
        assert_eq!(ep.gateway, fx.ip(1));
        let [_, _, c, d] = ep.ip.octets();
        assert_eq!(ep.mac, format!("02:42:0a:f3:{c:02x}:{d:02x}"));
        // eth0 inside has the address and the MAC.
        assert_eq!(addrs_in(pin, "eth0"), [format!("{}/24", ep.ip)]);
        let link = ip_json_in(pin, &["link", "show", "dev", "eth0"]).unwrap();
        assert_eq!(link[0]["address"], ep.mac.as_str());
        assert!(link[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"));
        // The default route goes via the gateway.
        let routes = ip_json_in(pin, &["-4", "route", "show", "default"]).unwrap();
        assert_eq!(routes[0]["gateway"], fx.ip(1).to_string(), "{routes}");
        assert_eq!(routes[0]["dev"], "eth0");
        // The host side is a port of the test's bridge.
        let veth = ep.host_veth.as_deref().unwrap();
        let host_link = ip_json(&["link", "show", "dev", veth]).unwrap();
        assert_eq!(host_link[0]["master"], fx.bridge.as_str(), "{host_link}");
    }
    assert_ne!(a.host_veth, b.host_veth);
    // The bridge carries the gateway address.
    let br = ip_json(&["-4", "addr", "show", "dev", &fx.bridge]).unwrap();
    assert_eq!(br[0]["addr_info"][0]["local"], fx.ip(1).to_string());

    // Real packets across the bridge: from inside A to a listener inside B.
    let (port, server) = serve_once(&pin_b, b.ip, "hello from b");
    let answer = netns::run_in(&pin_a, || {
        talk(SocketAddr::from((b.ip, port)), "hello from a")
    })
    .unwrap();
    assert_eq!(answer, "hello from b");
    assert_eq!(server.join().unwrap(), "hello from a");

    // And from the host to a pod address.
    let (port, server) = serve_once(&pin_a, a.ip, "hello host");
    assert_eq!(
        talk(SocketAddr::from((a.ip, port)), "hello a"),
        "hello host"
    );
    assert_eq!(server.join().unwrap(), "hello a");

    assert_eq!(
        net.allocations().unwrap().into_iter().collect::<Vec<_>>(),
        [(a.ip, "pod-a".to_owned()), (b.ip, "pod-b".to_owned())]
    );
}

#[test]
fn detach_releases_the_address_and_the_veth_and_is_idempotent() {
    let fx = Fixture::new();
    let net = fx.network();
    let pin = fx.netns("a");
    fx.track("pod-a", &pin);
    let ep = net.attach("pod-a", &pin).unwrap();
    let veth = ep.host_veth.clone().unwrap();
    assert!(host_link_exists(&veth));

    net.detach("pod-a", &pin).unwrap();
    assert!(!host_link_exists(&veth), "veth deleted");
    assert!(addrs_in(&pin, "eth0").is_empty(), "eth0 went with its peer");
    assert!(net.allocations().unwrap().is_empty(), "address released");
    net.detach("pod-a", &pin).unwrap();

    // The address is free again, and detaching after the netns is gone works too.
    let again = net.attach("pod-a", &pin).unwrap();
    assert_eq!(again.ip, ep.ip);
    netns::remove(&pin).unwrap();
    net.detach("pod-a", &pin).unwrap();
    assert!(!host_link_exists(&veth));
    assert!(net.allocations().unwrap().is_empty());
    // Never attached: nothing to do.
    net.detach("never-attached", &pin).unwrap();
}

#[test]
fn ipam_persists_across_instances_and_reattach_keeps_the_address() {
    let fx = Fixture::new();
    let (pin_a, pin_b) = (fx.netns("a"), fx.netns("b"));
    fx.track("pod-a", &pin_a);
    fx.track("pod-b", &pin_b);
    let a = fx.network().attach("pod-a", &pin_a).unwrap();

    let later = fx.network();
    assert_eq!(
        later.allocations().unwrap().get(&a.ip).map(String::as_str),
        Some("pod-a")
    );
    let b = later.attach("pod-b", &pin_b).unwrap();
    assert_eq!(b.ip, fx.ip(3));

    // Attaching the same owner again (e.g. after a crash) replaces its interface and
    // keeps its address.
    let a2 = fx.network().attach("pod-a", &pin_a).unwrap();
    assert_eq!(a2, a);
    assert_eq!(addrs_in(&pin_a, "eth0"), [format!("{}/24", a.ip)]);
    assert_eq!(fx.network().allocations().unwrap().len(), 2);
}

#[test]
fn a_slash_30_is_exhausted_after_one_pod() {
    let fx = Fixture::with_prefix(30);
    let net = fx.network();
    let (pin_a, pin_b) = (fx.netns("a"), fx.netns("b"));
    fx.track("pod-a", &pin_a);
    fx.track("pod-b", &pin_b);
    let a = net.attach("pod-a", &pin_a).unwrap();
    assert_eq!(a.ip, fx.ip(2));
    let err = net.attach("pod-b", &pin_b).unwrap_err();
    assert!(matches!(err, NetworkError::Exhausted(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("no free IP address in 10.243.{}.0/30", fx.octet)
    );
    assert_eq!(net.allocations().unwrap().len(), 1);
    assert!(addrs_in(&pin_b, "eth0").is_empty());
}

#[test]
fn failed_attaches_leave_no_address_and_no_veth() {
    let fx = Fixture::new();
    let net = fx.network();

    // No such netns: nothing is made.
    let missing = fx.dir.path().join("no-such-netns");
    let err = net.attach("pod-x", &missing).unwrap_err();
    assert!(err.to_string().contains("no-such-netns"), "{err}");
    // Not a netns at all.
    let plain = fx.dir.path().join("plain-file");
    std::fs::write(&plain, b"").unwrap();
    let err = net.attach("pod-x", &plain).unwrap_err();
    assert!(err.to_string().contains("enter netns"), "{err}");
    assert!(net.allocations().unwrap().is_empty());

    // A failure after the veth exists: the pod already has a default route, so adding
    // ours fails; the veth and the address are undone.
    let pin = fx.netns("busy");
    fx.track("pod-y", &pin);
    let status = std::process::Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["ip", "route", "add", "default", "dev", "lo"])
        .status()
        .unwrap();
    assert!(status.success());
    let err = net.attach("pod-y", &pin).unwrap_err();
    assert!(err.to_string().contains("add default route"), "{err}");
    assert!(net.allocations().unwrap().is_empty(), "address released");
    let veth = peapod_sandbox_veth("pod-y");
    assert!(!host_link_exists(&veth), "veth {veth} undone");
    assert!(
        ip_json_in(&pin, &["link", "show", "dev", "eth0"]).is_none(),
        "eth0 undone"
    );

    // An owner that cannot name files is refused before anything happens.
    assert!(matches!(
        net.attach("../x", &pin),
        Err(NetworkError::InvalidOwner(_))
    ));
}

/// The host veth name the built-in network derives for `owner`, found by attaching a probe
/// would be circular; recompute it the documented way (FNV-1a-32).
fn peapod_sandbox_veth(owner: &str) -> String {
    let hash = owner.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("veth{hash:08x}")
}

#[test]
fn concurrent_attaches_share_one_bridge_and_get_distinct_addresses() {
    let fx = Fixture::new();
    let pins: Vec<_> = (0..6).map(|i| fx.netns(&format!("p{i}"))).collect();
    for (i, pin) in pins.iter().enumerate() {
        fx.track(&format!("pod-{i}"), pin);
    }
    // Separate PodNetwork instances each take the file lock anew, as processes do.
    let eps: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = pins
            .iter()
            .enumerate()
            .map(|(i, pin)| {
                let net = fx.network();
                s.spawn(move || net.attach(&format!("pod-{i}"), pin).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<_> = eps.iter().map(|e| e.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips, (2..8).map(|h| fx.ip(h)).collect::<Vec<_>>());
    let bridges = ip_json(&["link", "show", "type", "bridge"]).unwrap();
    let ours = bridges
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] == fx.bridge.as_str())
        .count();
    assert_eq!(ours, 1);
    assert_eq!(fx.network().allocations().unwrap().len(), 6);
}

#[test]
fn a_non_bridge_interface_with_the_bridge_name_is_refused() {
    let fx = Fixture::new();
    // A veth pair (this kernel has no dummy driver); its peer goes with it at cleanup.
    let peer = format!("{}p", fx.bridge);
    let status = std::process::Command::new("ip")
        .args([
            "link", "add", &fx.bridge, "type", "veth", "peer", "name", &peer,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let pin = fx.netns("a");
    fx.track("pod-a", &pin);
    let err = fx.network().attach("pod-a", &pin).unwrap_err();
    assert!(matches!(err, NetworkError::NotABridge { .. }), "{err}");
    assert!(fx.network().allocations().unwrap().is_empty());
}
