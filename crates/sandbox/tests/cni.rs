//! Root tests of the CNI path with Debian's `bridge` and `host-local` plugins from
//! /usr/lib/cni: a conflist of the test's own (bridge name and subnet unique to it,
//! host-local's dataDir in the temp dir, no gateway on the bridge so the plugin never
//! touches host sysctls, no masquerading so it never touches the firewall).

mod common;

use std::path::{Path, PathBuf};

use common::{addrs_in, host_link_exists, ip_json_in, Fixture};
use peapod_sandbox::{netns, NetworkError};

/// Writes the test conflist; returns host-local's data directory for this network.
fn write_conflist(fx: &Fixture, plugins: serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(fx.cni_dir()).unwrap();
    let list = serde_json::json!({ "cniVersion": "1.0.0", "name": "ppt-cni", "plugins": plugins });
    std::fs::write(
        fx.cni_dir().join("10-test.conflist"),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    // A later name is never picked.
    std::fs::write(fx.cni_dir().join("99-other.conflist"), b"not even json").unwrap();
    fx.dir.path().join("ipam").join("ppt-cni")
}

fn bridge_plugin(fx: &Fixture) -> serde_json::Value {
    serde_json::json!({
        "type": "bridge",
        "bridge": fx.bridge,
        "isGateway": false,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": fx.config.subnet.to_string() }]],
            "dataDir": fx.dir.path().join("ipam"),
        }
    })
}

/// The addresses host-local has handed out (its files named after them).
fn host_local_ips(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect()
}

#[test]
fn cni_bridge_and_host_local_add_and_del() {
    let fx = Fixture::new();
    let data_dir = write_conflist(&fx, serde_json::json!([bridge_plugin(&fx)]));
    let net = fx.network();
    let pin = fx.netns("a");
    fx.track("pod-cni", &pin);

    let t = std::time::Instant::now();
    let ep = net.attach("pod-cni", &pin).unwrap();
    eprintln!("CNI attach: {:?}", t.elapsed());
    assert_eq!(ep.network, "ppt-cni");
    assert!(fx.config.subnet.contains(&ep.ip), "{ep:?}");
    assert_eq!(ep.prefix_len, 24);
    assert_eq!(ep.gateway, fx.ip(1), "host-local's default gateway");
    assert_eq!(ep.host_veth, None);
    assert_eq!(addrs_in(&pin, "eth0"), [format!("{}/24", ep.ip)]);
    let link = ip_json_in(&pin, &["link", "show", "dev", "eth0"]).unwrap();
    assert_eq!(link[0]["address"], ep.mac.as_str());
    assert!(
        host_link_exists(&fx.bridge),
        "the plugin made the test's bridge"
    );
    assert_eq!(host_local_ips(&data_dir), [ep.ip.to_string()]);
    assert!(
        fx.state_dir().join("cni").join("pod-cni.json").exists(),
        "ADD result cached"
    );
    assert!(
        net.allocations().unwrap().is_empty(),
        "the built-in IPAM is not used"
    );

    net.detach("pod-cni", &pin).unwrap();
    assert!(
        ip_json_in(&pin, &["link", "show", "dev", "eth0"]).is_none(),
        "eth0 deleted by DEL"
    );
    assert!(
        host_local_ips(&data_dir).is_empty(),
        "address released by DEL"
    );
    assert!(!fx.state_dir().join("cni").join("pod-cni.json").exists());
    net.detach("pod-cni", &pin).unwrap();
}

#[test]
fn cni_del_after_the_netns_is_gone_still_releases_the_address() {
    let fx = Fixture::new();
    let data_dir = write_conflist(&fx, serde_json::json!([bridge_plugin(&fx)]));
    let net = fx.network();
    let pin = fx.netns("a");
    fx.track("pod-gone", &pin);
    net.attach("pod-gone", &pin).unwrap();
    assert_eq!(host_local_ips(&data_dir).len(), 1);
    netns::remove(&pin).unwrap();
    net.detach("pod-gone", &pin).unwrap();
    assert!(host_local_ips(&data_dir).is_empty());
    assert!(!fx.state_dir().join("cni").join("pod-gone.json").exists());
}

#[test]
fn cni_failures_are_surfaced_and_undone() {
    let fx = Fixture::new();
    let pin = fx.netns("a");
    fx.track("pod-bad", &pin);

    // A missing plugin: nothing ran, nothing is cached.
    let data_dir = write_conflist(
        &fx,
        serde_json::json!([bridge_plugin(&fx), { "type": "no-such-plugin" }]),
    );
    let err = fx.network().attach("pod-bad", &pin).unwrap_err();
    assert!(
        matches!(err, NetworkError::CniPluginNotFound { ref plugin, .. } if plugin == "no-such-plugin"),
        "{err}"
    );
    assert!(
        host_local_ips(&data_dir).is_empty(),
        "the bridge plugin's ADD was undone by DEL"
    );
    assert!(ip_json_in(&pin, &["link", "show", "dev", "eth0"]).is_none());
    assert!(!fx.state_dir().join("cni").join("pod-bad.json").exists());

    // A plugin that fails: its error JSON reaches the caller. Its DEL fails the same way,
    // and both are reported.
    let mut bad = bridge_plugin(&fx);
    bad["ipam"]["ranges"] = serde_json::json!([[{ "subnet": "not-a-subnet" }]]);
    write_conflist(&fx, serde_json::json!([bad]));
    let net = fx.network();
    let err = net.attach("pod-bad", &pin).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("CNI plugin bridge ADD failed: invalid CIDR address: not-a-subnet"),
        "{text}"
    );
    assert!(
        text.contains("undoing it failed too: CNI plugin bridge DEL failed"),
        "{text}"
    );
    let NetworkError::Rollback { error, .. } = err else {
        panic!("{text}")
    };
    assert!(matches!(
        *error,
        NetworkError::CniPlugin { command: "ADD", .. }
    ));
    // The cache stays for the caller's teardown; once the netns is gone, detach clears it.
    assert!(fx.state_dir().join("cni").join("pod-bad.json").exists());
    assert!(
        net.detach("pod-bad", &pin).is_err(),
        "DEL still fails while the netns exists"
    );
    netns::remove(&pin).unwrap();
    net.detach("pod-bad", &pin).unwrap();
    assert!(!fx.state_dir().join("cni").join("pod-bad.json").exists());
}

#[test]
fn cni_reattach_replaces_the_stale_attachment() {
    let fx = Fixture::new();
    let data_dir = write_conflist(&fx, serde_json::json!([bridge_plugin(&fx)]));
    let net = fx.network();
    let (old, new) = (fx.netns("old"), fx.netns("new"));
    fx.track("pod-re", &new);
    net.attach("pod-re", &old).unwrap();
    // No detach in between (a crash): the old attachment is torn down in its own netns.
    let ep = net.attach("pod-re", &new).unwrap();
    assert!(ip_json_in(&old, &["link", "show", "dev", "eth0"]).is_none());
    assert_eq!(addrs_in(&new, "eth0"), [format!("{}/24", ep.ip)]);
    assert_eq!(host_local_ips(&data_dir), [ep.ip.to_string()]);
}
