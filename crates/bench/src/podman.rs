//! Podman under test, driven as a user would: `podman kube play FILE` (no `--replace`),
//! `podman exec POD-CONTAINER true`, `podman pod rm -f -t 0 POD…`. It gets private
//! storage (`--root`, `--runroot`, `--tmpdir` in the harness's work directory) so the
//! busybox image, the pods and their state never touch the user's; its network is Podman's
//! default one. Dropping it removes every pod and container and unmounts its storage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cmd::{self, Logs};
use crate::engine::{Engine, EnginePss};
use crate::host;

/// The busybox image's name in the manifests (`image: busybox`, normalised).
const IMAGE: &str = "docker.io/library/busybox:latest";

/// A Podman with private storage.
pub struct Podman {
    bin: PathBuf,
    dir: PathBuf,
    extra: Vec<String>,
    logs: Logs,
}

impl Podman {
    /// Podman `bin` with its storage in `dir` (created) and `extra` global options; loads
    /// `image` and tags it as the manifests name it.
    pub fn new(
        bin: &Path,
        dir: &Path,
        extra: &[String],
        image: &Path,
        logs: &Logs,
    ) -> Result<Self> {
        for sub in ["storage", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let this = Self {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            extra: extra.to_vec(),
            logs: logs.clone(),
        };
        let out = this.logs.capture(this.cmd(&["load", "-i"]).arg(image))?;
        // "Loaded image: NAME" or "Loaded image(s): NAME[,NAME…]" (name or id).
        let loaded = out
            .lines()
            .filter_map(|l| l.strip_prefix("Loaded image"))
            .filter_map(|l| l.split_once(": ").map(|(_, v)| v.trim().to_string()))
            .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .next();
        let exists = |p: &Self| {
            p.logs
                .capture(&mut p.cmd(&["image", "exists", IMAGE]))
                .is_ok()
        };
        if !exists(&this) {
            match loaded {
                Some(name) => {
                    this.logs.capture(&mut this.cmd(&["tag", &name, IMAGE]))?;
                }
                None => bail!("podman load printed no image name: {out}"),
            }
        }
        Ok(this)
    }

    /// `podman --root … --runroot … --tmpdir … EXTRA… ARGS…`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(&self.extra)
            .args(args);
        c
    }

    /// `podman --version`.
    pub fn version(&self) -> String {
        cmd::first_line(&self.bin, &["--version"]).unwrap_or_else(|| "unknown".into())
    }

    /// The OCI runtime Podman uses and its version's first line.
    pub fn runtime(&self) -> String {
        let q = |f: &str| {
            self.logs
                .capture(&mut self.cmd(&["info", "--format", f]))
                .ok()
                .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
                .unwrap_or_else(|| "unknown".into())
        };
        format!(
            "{} ({})",
            q("{{.Host.OCIRuntime.Path}}"),
            q("{{.Host.OCIRuntime.Version}}")
        )
    }

    fn ids(&self) -> Vec<String> {
        self.logs
            .capture(&mut self.cmd(&["ps", "-aq", "--no-trunc"]))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Engine for Podman {
    fn label(&self) -> &'static str {
        "podman"
    }

    fn apply(&self, manifest: &Path) -> Result<Duration> {
        let mut c = self.cmd(&["kube", "play"]);
        c.arg(manifest);
        self.logs.timed(&mut c)
    }

    fn apply_together(&self, manifests: &[PathBuf]) -> Result<Duration> {
        let mut cmds: Vec<Command> = manifests
            .iter()
            .map(|m| {
                let mut c = self.cmd(&["kube", "play"]);
                c.arg(m);
                c
            })
            .collect();
        self.logs.timed_together(&mut cmds)
    }

    fn exec_true(&self, pod: &str, container: &str) -> Result<Duration> {
        self.logs
            .timed(&mut self.cmd(&["exec", &format!("{pod}-{container}"), "true"]))
    }

    fn delete(&self, pods: &[String]) -> Result<Duration> {
        let mut c = self.cmd(&["pod", "rm", "-f", "-t", "0"]);
        c.args(pods);
        self.logs.timed(&mut c)
    }

    fn engine_pss(&self) -> Result<EnginePss> {
        let mut pss = EnginePss::default();
        let ids = self.ids();
        if ids.is_empty() {
            return Ok(pss);
        }
        let mut c = self.cmd(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.ConmonPid}} {{.State.Pid}} {{.IsInfra}}",
        ]);
        c.args(&ids);
        for line in self.logs.capture(&mut c)?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [conmon, pid, infra] = f[..] else {
                continue;
            };
            if let Ok(p) = conmon.parse::<i32>() {
                if p > 0 {
                    pss.add("conmon", host::pss_kib(p)?);
                }
            }
            if infra == "true" {
                if let Ok(p) = pid.parse::<i32>() {
                    if p > 0 {
                        pss.add("infra", host::pss_kib(p)?);
                    }
                }
            }
        }
        Ok(pss)
    }

    fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ids()
            .into_iter()
            .map(|i| format!("container {}", &i[..i.len().min(12)]))
            .collect();
        if let Ok(s) = self.logs.capture(&mut self.cmd(&["pod", "ps", "-q"])) {
            out.extend(s.split_whitespace().map(|p| format!("pod {p}")));
        }
        out
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        cmd::quiet(&mut self.cmd(&["pod", "rm", "-a", "-f", "-t", "0"]));
        cmd::quiet(&mut self.cmd(&["rm", "-a", "-f", "-t", "0"]));
        // conmon and friends name our storage directories on their command lines.
        let procs = host::processes();
        let dir = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let roots: Vec<i32> = procs
            .iter()
            .filter(|p| {
                p.pid != me
                    && p.argv
                        .iter()
                        .any(|a| a.starts_with(&format!("{dir}/")) || *a == dir)
            })
            .map(|p| p.pid)
            .collect();
        for pid in host::with_descendants(&procs, &roots) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let left = host::unmount_all_under(&self.dir);
        if !left.is_empty() {
            eprintln!(
                "peapod-bench: still mounted under {}: {left:?}",
                self.dir.display()
            );
        }
    }
}
