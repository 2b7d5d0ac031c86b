//! peapod under test: the real binary on a private root (its own `config.toml` with a
//! private bridge, subnet and cgroup parent), the busybox image loaded. Dropping it deletes
//! every pod and container, then removes whatever is left: processes, mounts, the bridge,
//! the cgroup parent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd::{self, Logs};
use crate::engine::{Engine, EnginePss};
use crate::host;

/// A private peapod.
pub struct Peapod {
    bin: PathBuf,
    root: PathBuf,
    /// The bridge of its built-in network.
    pub bridge: String,
    /// Its subnet.
    pub subnet: String,
    /// Its cgroup parent (relative to each hierarchy).
    pub cgroup_parent: String,
    logs: Logs,
}

impl Peapod {
    /// Makes the root `root` (which must not exist), writes its config and loads `image`.
    pub fn new(
        bin: &Path,
        root: &Path,
        runtime: Option<&str>,
        image: &Path,
        logs: &Logs,
    ) -> Result<Self> {
        std::fs::create_dir_all(root.join("etc"))
            .with_context(|| format!("creating {}", root.display()))?;
        let this = Self {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            bridge: host::free_bridge_name("ppbench"),
            subnet: host::free_subnet()?,
            cgroup_parent: format!("peapod-bench-{}", std::process::id()),
            logs: logs.clone(),
        };
        let mut config = String::new();
        if let Some(rt) = runtime {
            config.push_str(&format!("runtime = {}\n", toml_str(rt)));
        }
        config.push_str(&format!(
            "cgroup_parent = {}\n[network]\nbridge = {}\nsubnet = {}\n",
            toml_str(&this.cgroup_parent),
            toml_str(&this.bridge),
            toml_str(&this.subnet)
        ));
        std::fs::write(root.join("etc/config.toml"), config)?;
        this.logs.capture(
            this.cmd(&["image", "load", "-i"])
                .arg(image)
                .stdout(std::process::Stdio::null()),
        )?;
        Ok(this)
    }

    /// `peapod --root ROOT ARGS…`, with the environment's PEAPOD_* unset.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c.env_remove("PEAPOD_ROOT").env_remove("PEAPOD_RUNTIME");
        c
    }

    /// `peapod --version`.
    pub fn version(&self) -> String {
        cmd::first_line(&self.bin, &["--version"]).unwrap_or_else(|| "unknown".into())
    }

    /// The OCI runtime binary the containers were created with (from `inspect`), once a
    /// container exists.
    pub fn runtime_used(&self) -> Option<PathBuf> {
        let ids = self
            .logs
            .capture(&mut self.cmd(&["ps", "-aq", "--no-trunc"]))
            .ok()?;
        let id = ids.lines().next()?.trim().to_string();
        let text = self.logs.capture(&mut self.cmd(&["inspect", &id])).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v[0]["HostConfig"]["Runtime"].as_str().map(PathBuf::from)
    }

    /// Our pod monitors: `peapod --root ROOT pod-monitor UID`.
    fn pod_monitors(&self, procs: &[host::Proc]) -> Vec<i32> {
        let root = self.root.to_string_lossy();
        procs
            .iter()
            .filter(|p| {
                p.argv.iter().any(|a| a == "pod-monitor")
                    && p.argv.windows(2).any(|w| w[0] == "--root" && w[1] == root)
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Every process that belongs to this root: whatever names the root on its command
    /// line, and all their descendants.
    fn our_processes(&self) -> Vec<i32> {
        let procs = host::processes();
        let me = std::process::id() as i32;
        let roots: Vec<i32> = procs
            .iter()
            .filter(|p| p.pid != me && p.argv.iter().any(|a| names_path(a, &self.root)))
            .map(|p| p.pid)
            .collect();
        host::with_descendants(&procs, &roots)
    }
}

/// Whether a command-line argument is `dir` or a path under it (possibly after `--opt=`).
fn names_path(arg: &str, dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    let arg = arg.split_once('=').map_or(arg, |(_, v)| v);
    arg == dir
        || arg
            .strip_prefix(dir.as_ref())
            .is_some_and(|r| r.starts_with('/'))
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Engine for Peapod {
    fn label(&self) -> &'static str {
        "peapod"
    }

    fn apply(&self, manifest: &Path) -> Result<Duration> {
        let mut c = self.cmd(&["apply", "--wait", "--timeout", "120", "-f"]);
        c.arg(manifest);
        self.logs.timed(&mut c)
    }

    fn apply_together(&self, manifests: &[PathBuf]) -> Result<Duration> {
        let mut cmds: Vec<Command> = manifests
            .iter()
            .map(|m| {
                let mut c = self.cmd(&["apply", "--wait", "--timeout", "300", "-f"]);
                c.arg(m);
                c
            })
            .collect();
        self.logs.timed_together(&mut cmds)
    }

    fn exec_true(&self, pod: &str, container: &str) -> Result<Duration> {
        self.logs
            .timed(&mut self.cmd(&["exec", pod, "-c", container, "--", "true"]))
    }

    fn delete(&self, pods: &[String]) -> Result<Duration> {
        let mut c = self.cmd(&["delete", "pod"]);
        c.args(pods).args(["--grace-period", "0"]);
        self.logs.timed(&mut c)
    }

    fn engine_pss(&self) -> Result<EnginePss> {
        let procs = host::processes();
        let monitors = self.pod_monitors(&procs);
        let peapod_id = host::file_id(&self.bin);
        // The small infra binary installed beside peapod, when there is one.
        let infra_id = self
            .bin
            .parent()
            .and_then(|d| host::file_id(&d.join("peapod-infra")));
        let mut pss = EnginePss::default();
        for pid in host::with_descendants(&procs, &monitors) {
            // Only peapod's own processes: the workload (busybox) is excluded.
            let exe = host::file_id(Path::new(&format!("/proc/{pid}/exe")));
            if exe.is_none() || (exe != peapod_id && exe != infra_id) {
                continue;
            }
            let Some(p) = procs.iter().find(|p| p.pid == pid) else {
                continue;
            };
            let kind = if monitors.contains(&pid) {
                "pod-monitor"
            } else if exe == infra_id || p.argv.get(1).is_some_and(|a| a == "infra") {
                "infra"
            } else {
                "other peapod"
            };
            pss.add(kind, host::pss_kib(pid)?);
        }
        Ok(pss)
    }

    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(s) = self
            .logs
            .capture(&mut self.cmd(&["get", "pods", "-A", "-o", "name"]))
        {
            out.extend(s.lines().filter(|l| !l.trim().is_empty()).map(String::from));
        }
        if let Ok(s) = self.logs.capture(&mut self.cmd(&["ps", "-aq"])) {
            out.extend(
                s.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("container {l}")),
            );
        }
        if let Ok(s) = self.logs.capture(Command::new("ip").args([
            "-o",
            "link",
            "show",
            "master",
            &self.bridge,
        ])) {
            out.extend(
                s.lines()
                    .filter_map(|l| l.split(':').nth(1))
                    .map(|n| format!("veth {}", n.trim())),
            );
        }
        out
    }
}

impl Drop for Peapod {
    fn drop(&mut self) {
        // Every pod first (a live pod monitor would restart its containers), with peapod.
        if let Ok(text) = self
            .logs
            .capture(&mut self.cmd(&["get", "pods", "-A", "-o", "json"]))
        {
            let list: Value = serde_json::from_str(&text).unwrap_or_default();
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let ns = item["metadata"]["namespace"].as_str().unwrap_or("default");
                cmd::quiet(&mut self.cmd(&[
                    "delete",
                    "pod",
                    name,
                    "-n",
                    ns,
                    "--grace-period",
                    "0",
                ]));
            }
        }
        if let Ok(ids) = self
            .logs
            .capture(&mut self.cmd(&["ps", "-aq", "--no-trunc"]))
        {
            for id in ids.lines().filter(|l| !l.trim().is_empty()) {
                cmd::quiet(&mut self.cmd(&["rm", "-f", "-v", id.trim()]));
            }
        }
        // Then whatever a failure left: processes naming our root (monitors, infra) and
        // their children, processes in our cgroups, mounts, the bridge, the cgroups.
        for pid in self.our_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for h in host::cgroup_hierarchies() {
            kill_cgroup_tree(&h.join(&self.cgroup_parent));
        }
        std::thread::sleep(Duration::from_millis(50));
        let left = host::unmount_all_under(&self.root);
        if !left.is_empty() {
            eprintln!(
                "peapod-bench: still mounted under {}: {left:?}",
                self.root.display()
            );
        }
        if host::link_exists(&self.bridge) {
            cmd::quiet(Command::new("ip").args(["link", "del", &self.bridge]));
        }
        host::remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// SIGKILL to every process of a cgroup and its descendants.
fn kill_cgroup_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            kill_cgroup_tree(&e.path());
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_arguments() {
        let d = Path::new("/tmp/w/peapod");
        assert!(names_path("/tmp/w/peapod", d));
        assert!(names_path("/tmp/w/peapod/run/netns/x", d));
        assert!(names_path("--root=/tmp/w/peapod", d));
        assert!(!names_path("/tmp/w/peapod2", d));
        assert!(!names_path("infra", d));
    }

    #[test]
    fn toml_strings() {
        assert_eq!(toml_str("runc"), "\"runc\"");
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
