//! `inspect` documents shaped like Docker's, plus the namespace inodes of a running
//! container (a peapod extension: `Namespaces`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::engine::{Container, Engine};
use crate::record::{NetworkMode, State};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || ZERO_TIME.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Nanos, true),
    )
}

/// The namespace inodes of `pid` (`/proc/PID/ns/*`).
fn namespaces(pid: i32) -> Value {
    let mut m = serde_json::Map::new();
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")) {
            m.insert(
                ns.to_string(),
                json!(std::os::unix::fs::MetadataExt::ino(&meta)),
            );
        }
    }
    Value::Object(m)
}

/// A container's document.
pub fn container(engine: &Engine, c: &Container) -> Value {
    let cfg = &c.config;
    let st = c.status.clone().unwrap_or_default();
    let (running, pid, exit_code) = match &c.state {
        State::Running { pid, .. } => (true, *pid, 0),
        State::Exited { code, .. } => (false, 0, *code),
        State::Created => (false, 0, 0),
    };
    let dir = engine.container_dir(&cfg.id);
    let etc_owner = match &cfg.network_mode {
        NetworkMode::Container(owner) => engine.container_dir(owner),
        _ => dir.clone(),
    };
    let binds: Vec<String> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind == "bind")
        .map(|m| {
            let mut s = format!("{}:{}", m.source.display(), m.destination);
            if !m.mode.is_empty() {
                s.push(':');
                s.push_str(&m.mode);
            }
            s
        })
        .collect();
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            let mut v = json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": m.mode,
                "RW": m.rw,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            });
            if let Some(name) = &m.name {
                v["Name"] = json!(name);
                v["Driver"] = json!("local");
            }
            v
        })
        .collect();
    let ep = cfg.endpoint.as_ref();
    let ports: serde_json::Map<String, Value> = cfg
        .ports
        .iter()
        .map(|p| {
            let proto = p.protocol;
            (
                format!("{}/{proto}", p.container_port),
                json!([{"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}]),
            )
        })
        .collect();
    let networks = match (&cfg.network_mode, ep) {
        (NetworkMode::Bridge, Some(e)) => json!({ e.network.clone(): {
            "IPAddress": e.ip.to_string(), "IPPrefixLen": e.prefix_len, "Gateway": e.gateway.to_string(),
            "MacAddress": e.mac, "NetworkID": e.network,
        }}),
        (NetworkMode::None, _) => json!({"none": {}}),
        (NetworkMode::Host, _) => json!({"host": {}}),
        _ => json!({}),
    };
    json!({
        "Id": cfg.id,
        "Created": time(Some(cfg.created)),
        "Path": cfg.args.first().cloned().unwrap_or_default(),
        "Args": cfg.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": c.state.docker_status(),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": pid,
            "ExitCode": exit_code,
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": time(st.started_at),
            "FinishedAt": time(st.finished_at),
        },
        "Image": cfg.image_id,
        "ResolvConfPath": etc_owner.join("resolv.conf"),
        "HostnamePath": etc_owner.join("hostname"),
        "HostsPath": etc_owner.join("hosts"),
        "LogPath": engine.log_path(cfg),
        "Name": format!("/{}", cfg.name),
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": cfg.network_mode.docker_name(),
            "PortBindings": ports.clone(),
            "AutoRemove": cfg.auto_remove,
            "Runtime": cfg.runtime,
            "CgroupParent": cfg.cgroups_path.rsplit_once('/').map(|(p, _)| p).unwrap_or_default(),
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "UpperDir": dir.join("upper"), "WorkDir": dir.join("work"), "MergedDir": dir.join("rootfs") },
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.args,
            "Image": cfg.image,
            "WorkingDir": cfg.cwd,
            "Labels": cfg.labels,
        },
        "NetworkSettings": {
            "SandboxKey": cfg.netns.clone().map(|p| p.display().to_string()).unwrap_or_default(),
            "Ports": ports,
            "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": ep.map_or(0, |e| e.prefix_len),
            "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
            "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
            "Networks": networks,
        },
        "Namespaces": if running { namespaces(pid) } else { json!({}) },
    })
}

/// An image's document.
pub fn image(engine: &Engine, img: &peapod_image::ImageRecord) -> anyhow::Result<Value> {
    let store = engine.images()?;
    let config = store.config(img)?;
    Ok(json!({
        "Id": img.id,
        "RepoTags": img.repo_tags.iter().filter_map(|r| peapod_image::Reference::parse(r).ok()).map(|r| format!("{}:{}", r.familiar_repository(), r.tag.unwrap_or_default())).collect::<Vec<_>>(),
        "RepoDigests": [],
        "Created": img.created,
        "Size": img.size,
        "Architecture": config.architecture().to_string(),
        "Os": config.os().to_string(),
        "Config": config.config(),
        "RootFS": { "Type": "layers", "Layers": img.diff_ids },
        "Metadata": { "ManifestDigest": img.manifest_digest },
    }))
}
