//! The files a container sees at /etc/hosts, /etc/resolv.conf and /etc/hostname. Pure:
//! callers read the host's files and write the results.

use std::net::{IpAddr, Ipv4Addr};

/// The nameservers used when the host has none a container can reach (Docker's fallback).
const FALLBACK_NAMESERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// /etc/hosts: localhost lines, then `ip hostname` when there is an IP.
pub fn hosts(hostname: &str, ip: Option<Ipv4Addr>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

/// /etc/resolv.conf from the host's, without loopback nameservers (Docker falls back to
/// 8.8.8.8 and 8.8.4.4 when none is left).
///
/// A loopback nameserver (127.0.0.0/8, ::1, such as systemd-resolved's 127.0.0.53) would
/// be the container's own loopback, where nothing listens. Every other line (`search`,
/// `options`, comments, other nameservers) is kept as it is.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut nameservers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or_default();
            // A zone (`fe80::1%eth0`) is not part of the address.
            let is_loopback = addr
                .split('%')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a.is_loopback());
            if is_loopback {
                continue;
            }
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        for ns in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// /etc/hostname: the name and a newline.
pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_then_the_pod() {
        let h = hosts("web", Some(Ipv4Addr::new(10, 42, 0, 2)));
        assert!(
            h.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
            "{h}"
        );
        assert!(
            h.ends_with("ff02::2\tip6-allrouters\n10.42.0.2\tweb\n"),
            "{h}"
        );
        let none = hosts("web", None);
        assert!(!none.contains("web"), "{none}");
        assert!(none.ends_with("ff02::2\tip6-allrouters\n"));
    }

    #[test]
    fn resolv_drops_loopback_keeps_the_rest() {
        let host = "# from the host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n\
                    nameserver fd00::53\nsearch example.com corp\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host),
            "# from the host\nnameserver 10.0.0.2\nnameserver fd00::53\nsearch example.com corp\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn resolv_falls_back_to_public_dns() {
        let host = "nameserver 127.0.0.53\nnameserver 127.1.2.3\noptions edns0\nsearch lan\n";
        assert_eq!(
            resolv_conf(host),
            "options edns0\nsearch lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn resolv_keeps_link_local_with_zone_and_tabs() {
        let host = "nameserver\tfe80::1%eth0\n";
        assert_eq!(resolv_conf(host), "nameserver\tfe80::1%eth0\n");
    }

    #[test]
    fn hostname_file() {
        assert_eq!(hostname("web"), "web\n");
    }
}
