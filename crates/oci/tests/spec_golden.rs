//! Golden tests for `spec_for`: the whole OCI config for a few typical plans, as pretty JSON
//! in `tests/golden/*.json`. Run with `UPDATE_GOLDEN=1` to rewrite the files after an
//! intended change, then review the diff.
//!
//! The JSON is canonical: object keys sorted, and the capability sets (hash sets in
//! oci-spec) sorted. The seccomp rules are summarised by their count and its architectures
//! (the host's family) by a placeholder, so the files hold on any host: the profile itself
//! is the checked-in `src/seccomp_default.json` and has its own tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use peapod_oci::{
    spec_for, BindMount, ContainerPlan, MergedProcess, Namespace, Namespaces, NumericUser, Seccomp,
};
use serde_json::{Map, Value};

fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn golden_json(plan: &ContainerPlan) -> String {
    let mut v = serde_json::to_value(spec_for(plan)).unwrap();
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    {
        for set in caps.values_mut() {
            if let Value::Array(items) = set {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    if let Some(arches) = v.pointer_mut("/linux/seccomp/architectures") {
        let host = peapod_oci::seccomp::runtime_default();
        assert_eq!(arches, &serde_json::to_value(host.architectures()).unwrap());
        *arches = Value::String("<the host's architecture family>".into());
    }
    if let Some(rules) = v.pointer_mut("/linux/seccomp/syscalls") {
        let n = rules.as_array().map_or(0, Vec::len);
        *rules = Value::String(format!("<{n} rules from src/seccomp_default.json>"));
    }
    serde_json::to_string_pretty(&canonical(v)).unwrap() + "\n"
}

fn check(name: &str, plan: &ContainerPlan) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let got = golden_json(plan);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        got == want,
        "{name} differs from the golden file; rerun with UPDATE_GOLDEN=1 and review the diff.\n--- got ---\n{got}"
    );
}

fn process(args: &[&str]) -> MergedProcess {
    MergedProcess {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        user: "0".into(),
    }
}

fn all_new() -> Namespaces {
    Namespaces {
        network: Namespace::New,
        ipc: Namespace::New,
        uts: Namespace::New,
        pid: Namespace::New,
        cgroup: Namespace::New,
    }
}

#[test]
fn new_namespaces_with_tty() {
    let plan = ContainerPlan {
        rootfs: "/var/lib/peapod/containers/c1/rootfs".into(),
        process: process(&["sh"]),
        user: NumericUser { uid: 0, gid: 0 },
        terminal: true,
        hostname: Some("c1".into()),
        namespaces: all_new(),
        mounts: vec![BindMount {
            source: "/var/lib/peapod/containers/c1/hosts".into(),
            destination: "/etc/hosts".into(),
            readonly: false,
        }],
        cgroups_path: "/peapod/c1".into(),
        seccomp: Seccomp::RuntimeDefault,
        annotations: BTreeMap::from([
            (
                "io.kubernetes.cri.container-type".into(),
                "container".into(),
            ),
            ("org.peapod.name".into(), "test1".into()),
        ]),
        resources: Default::default(),
    };
    check("new_namespaces_tty.json", &plan);
}

#[test]
fn joined_network_with_readonly_bind() {
    let plan = ContainerPlan {
        rootfs: "/var/lib/peapod/containers/c2/rootfs".into(),
        process: MergedProcess {
            cwd: "/data".into(),
            user: "1000:1000".into(),
            ..process(&["sleep", "3600"])
        },
        user: NumericUser {
            uid: 1000,
            gid: 1000,
        },
        terminal: false,
        hostname: Some("ignored-without-own-uts".into()),
        namespaces: Namespaces {
            network: Namespace::Join("/proc/4242/ns/net".into()),
            ipc: Namespace::Join("/proc/4242/ns/ipc".into()),
            uts: Namespace::Join("/proc/4242/ns/uts".into()),
            pid: Namespace::New,
            cgroup: Namespace::New,
        },
        mounts: vec![
            BindMount {
                source: "/var/lib/peapod/volumes/shared-data".into(),
                destination: "/data".into(),
                readonly: false,
            },
            BindMount {
                source: "/srv/config".into(),
                destination: "/etc/app".into(),
                readonly: true,
            },
        ],
        cgroups_path: "/peapod/c2".into(),
        seccomp: Seccomp::RuntimeDefault,
        annotations: BTreeMap::new(),
        resources: Default::default(),
    };
    check("joined_net_ro_bind.json", &plan);
}

#[test]
fn host_network_unconfined() {
    let plan = ContainerPlan {
        rootfs: "/var/lib/peapod/containers/c3/rootfs".into(),
        process: process(&["ifconfig"]),
        user: NumericUser::default(),
        terminal: false,
        hostname: Some("c3".into()),
        namespaces: Namespaces {
            network: Namespace::Host,
            ..all_new()
        },
        mounts: vec![],
        cgroups_path: "/peapod/c3".into(),
        seccomp: Seccomp::Unconfined,
        annotations: BTreeMap::new(),
        resources: Default::default(),
    };
    check("host_network.json", &plan);
}
