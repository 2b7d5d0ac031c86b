//! Root test of the port proxy against a real pod: a loopback listener on the host
//! forwarded to a TCP server inside a test netns, reached through its pod IP.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::Fixture;
use peapod_sandbox::{netns, ports};

#[test]
fn loopback_port_reaches_a_server_in_the_pod() {
    let fx = Fixture::new();
    let pin = fx.netns("web");
    fx.track("pod-web", &pin);
    let ep = fx.network().attach("pod-web", &pin).unwrap();

    // The "container" listens on its pod IP, port 80, inside its netns.
    let server = netns::run_in(&pin, || TcpListener::bind((ep.ip, 80)).unwrap()).unwrap();
    let serving = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, peer) = server.accept().unwrap();
            let mut req = String::new();
            s.read_to_string(&mut req).unwrap();
            s.write_all(format!("pod got {req:?} from {}", peer.ip()).as_bytes())
                .unwrap();
        }
    });

    let host_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mapping = ports::parse(&format!("127.0.0.1:{host_port}:80")).unwrap();
    let proxy = ports::spawn(&[mapping], ep.ip).unwrap();
    for msg in ["one", "two"] {
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, host_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(msg.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        // The pod sees the proxy, which reaches it from the host through the gateway.
        assert_eq!(answer, format!("pod got {msg:?} from {}", ep.gateway));
    }
    serving.join().unwrap();
    drop(proxy);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, host_port)).is_err());
}
