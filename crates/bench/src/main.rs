//! `peapod-bench`: measures the real `peapod` binary as a user drives it — a pod's startup
//! (`apply --wait`), teardown (`delete --grace-period 0`), an `exec true` round trip, N pods
//! one after another and at once, and the engine's memory per pod — next to the same
//! workloads through `podman kube play` when Podman is installed (alternated run by run, so
//! ratios hold on a noisy machine) and the floor, `unshare` + `chroot` into the busybox
//! rootfs. It prints a table of medians with min–max (or JSON with `--json`).
//!
//! Everything runs in a private work directory: a peapod root with its own bridge, subnet
//! and cgroup parent, Podman with private storage; Drop guards remove it all, also after a
//! failure or Ctrl-C. Needs root, `unshare`, `ip`, `tar`, and busybox-static for the image.
//!
//! ```sh
//! cargo build --release -p peapod -p peapod-bench && target/release/peapod-bench
//! ```

mod cmd;
mod engine;
mod host;
mod peapod;
mod podman;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cmd::Logs;
use crate::engine::Engine;
use crate::report::{Report, Row, Unit};
use crate::stats::Samples;

/// The seed's two-container pod.
const TWO_CONTAINERS: &str = include_str!("../../../examples/two-containers.yaml");
/// Its name and the container `exec` runs in.
const TWO_CONTAINERS_POD: &str = "two-containers";
const EXEC_CONTAINER: &str = "my-test-container1";
/// The seed's pod with an init container.
const INIT_CONTAINER: &str = include_str!("../../../examples/init-container.yaml");
const INIT_CONTAINER_POD: &str = "init-container-test";
/// The script that builds the busybox test image.
const IMAGE_SCRIPT: &str = include_str!("../../../scripts/build-busybox-image.sh");
/// The repository, for the git revision.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Benchmarks peapod's pod startup, teardown, exec and density, side by side with Podman.
#[derive(Debug, Parser)]
#[command(name = "peapod-bench", version, about)]
struct Args {
    /// The peapod binary [default: `peapod` next to this binary].
    #[arg(long)]
    peapod: Option<PathBuf>,
    /// Measured iterations of each single-pod workload (one warm-up run is added and
    /// discarded).
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Iterations of the N-pods workloads (and of the memory measurement).
    #[arg(long, default_value_t = 3)]
    density_runs: usize,
    /// N = 5 and 10 instead of 20 and 100.
    #[arg(long)]
    quick: bool,
    /// One run of each workload, N = 2, no warm-up: checks the harness works (for CI).
    #[arg(long)]
    smoke: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// peapod's OCI runtime (`runtime =` in its config.toml) [default: peapod's own choice].
    #[arg(long)]
    runtime: Option<String>,
    /// The Podman binary.
    #[arg(long, default_value = "podman")]
    podman: String,
    /// Do not run Podman even when it is installed.
    #[arg(long)]
    no_podman: bool,
    /// An extra global option for every podman command (repeatable), e.g.
    /// `--podman-arg=--cgroup-manager=cgroupfs`.
    #[arg(long, allow_hyphen_values = true)]
    podman_arg: Vec<String>,
    /// The busybox image archive [default: built with scripts/build-busybox-image.sh].
    #[arg(long)]
    image: Option<PathBuf>,
}

/// How long the N pods rest before their engine memory is measured.
const MEMORY_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = cmd::handle_signals() {
        eprintln!("peapod-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peapod-bench: {e:#}");
            if cmd::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The harness's private directory, removed on drop (unless something is still mounted
/// in it, which is then reported and left alone).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for n in 0..100 {
            let p = base.join(format!("peapod-bench.{}.{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
            }
        }
        bail!("cannot make a work directory in {}", base.display())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let left = host::unmount_all_under(&self.0);
        if left.is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!(
                "peapod-bench: left {} in place, still mounted: {left:?}",
                self.0.display()
            );
        }
    }
}

/// What to run, from the options.
struct Plan {
    runs: usize,
    warmup: usize,
    density_runs: usize,
    /// Pod counts of the N-pods workloads; memory is measured at the first.
    ns: Vec<usize>,
}

impl Plan {
    fn from(args: &Args) -> Self {
        if args.smoke {
            return Self {
                runs: 1,
                warmup: 0,
                density_runs: 1,
                ns: vec![2],
            };
        }
        Self {
            runs: args.runs.max(1),
            warmup: 1,
            density_runs: args.density_runs.max(1),
            ns: if args.quick {
                vec![5, 10]
            } else {
                vec![20, 100]
            },
        }
    }
}

/// `manifest` with its (first) pod's `metadata.name` replaced.
fn renamed(manifest: &str, name: &str) -> String {
    let mut out = String::with_capacity(manifest.len() + name.len());
    let mut in_metadata = false;
    let mut done = false;
    for line in manifest.lines() {
        let indent = line.len() - line.trim_start().len();
        if !done && in_metadata && indent > 0 && line.trim_start().starts_with("name:") {
            out.push_str(&format!("{}name: {name}\n", &line[..indent]));
            done = true;
            continue;
        }
        if indent == 0 && !line.trim().is_empty() {
            in_metadata = line.trim_end() == "metadata:";
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// peapod's git revision (`-dirty` with uncommitted changes to tracked files).
fn git_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(REPO)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

fn progress(msg: &str) {
    eprintln!("peapod-bench: {msg}");
}

fn run(args: &Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root: it runs pods (namespaces, mounts, veths, cgroups)");
    }
    let plan = Plan::from(args);
    let peapod_bin = match &args.peapod {
        Some(p) => std::path::absolute(p)?,
        None => std::env::current_exe()?
            .parent()
            .context("no directory of the bench binary")?
            .join("peapod"),
    };
    if !peapod_bin.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p peapod) or pass --peapod PATH",
            peapod_bin.display()
        );
    }
    for tool in ["unshare", "ip", "tar"] {
        if cmd::which(tool).is_none() {
            bail!("{tool} not found on PATH");
        }
    }
    let mut notes = Vec::new();
    let mut noise = host::Noise::default();
    noise.check();
    let machine = host::Machine::read();

    // Declared first, dropped last: the engines' guards clean up before it goes.
    let work = WorkDir::new()?;
    let logs = Logs::new(&work.0.join("logs"))?;
    let image = match &args.image {
        Some(p) => std::path::absolute(p)?,
        None => {
            progress("building the busybox image (scripts/build-busybox-image.sh)");
            let script = work.0.join("build-busybox-image.sh");
            std::fs::write(&script, IMAGE_SCRIPT)?;
            let out = work.0.join("busybox.tar");
            logs.capture(Command::new("bash").arg(&script).arg(&out))?;
            out
        }
    };
    let rootfs = work.0.join("floor-rootfs");
    host::extract_rootfs(&logs, &image, &work.0.join("floor"), &rootfs)?;

    progress("setting up a private peapod root");
    let peapod = peapod::Peapod::new(
        &peapod_bin,
        &work.0.join("peapod"),
        args.runtime.as_deref(),
        &image,
        &logs,
    )?;
    notes.push(format!(
        "peapod root {} (bridge {}, subnet {}, cgroup parent {}), removed afterwards",
        work.0.join("peapod").display(),
        peapod.bridge,
        peapod.subnet,
        peapod.cgroup_parent
    ));

    let podman = if args.no_podman {
        notes.push("Podman not run (--no-podman): its column and the ratios are omitted".into());
        None
    } else if let Some(bin) = cmd::which(&args.podman) {
        progress("setting up Podman with private storage");
        let p = podman::Podman::new(
            &bin,
            &work.0.join("podman"),
            &args.podman_arg,
            &image,
            &logs,
        )?;
        notes.push(format!(
            "Podman with private storage in {}; pods deleted with `podman pod rm -f -t 0`; its engine memory is every conmon plus the infra container's process",
            work.0.join("podman").display()
        ));
        Some(p)
    } else {
        notes.push(format!(
            "Podman not found on PATH ({}): its column and the ratios are omitted",
            args.podman
        ));
        None
    };

    // Manifests.
    let mdir = work.0.join("manifests");
    std::fs::create_dir_all(&mdir)?;
    let two = mdir.join("two-containers.yaml");
    let init = mdir.join("init-container.yaml");
    std::fs::write(&two, TWO_CONTAINERS)?;
    std::fs::write(&init, INIT_CONTAINER)?;

    // Which runtime peapod really uses: ask a container of a first (unmeasured) pod.
    progress("probing: one pod up and down");
    peapod.apply(&two)?;
    let runtime_path = peapod.runtime_used();
    peapod.delete(&[TWO_CONTAINERS_POD.to_string()])?;
    let runtime = match runtime_path {
        Some(p) => {
            let v = cmd::first_line(&p, &["--version"]).unwrap_or_else(|| "unknown version".into());
            format!("{} ({v})", p.display())
        }
        None => "unknown".into(),
    };

    let mut engines: Vec<&dyn Engine> = vec![&peapod];
    if let Some(p) = &podman {
        engines.push(p);
    }

    let mut rows = vec![
        row(
            "apply-two-containers",
            "two-container pod: apply → all Running",
            Unit::Ms,
            Some(2.0),
        ),
        row("exec-true", "exec true round trip", Unit::Ms, Some(1.0)),
        row(
            "delete-two-containers",
            "two-container pod: delete, grace 0, all gone",
            Unit::Ms,
            None,
        ),
        row(
            "apply-init-container",
            "init-container pod: apply → all Running",
            Unit::Ms,
            Some(2.0),
        ),
        row(
            "delete-init-container",
            "init-container pod: delete, grace 0, all gone",
            Unit::Ms,
            None,
        ),
    ];
    let mut floor = Samples::default();

    // Single-pod workloads, the engines alternated (and their order swapped) run by run.
    let total = plan.warmup + plan.runs;
    for i in 0..total {
        let keep = i >= plan.warmup;
        progress(&format!(
            "single-pod workloads, run {}/{total}{}",
            i + 1,
            if keep { "" } else { " (warm-up)" }
        ));
        let order = ordered(&engines, i);
        for e in order {
            let t_apply = e.apply(&two)?;
            let t_exec = e.exec_true(TWO_CONTAINERS_POD, EXEC_CONTAINER)?;
            let t_del = e.delete(&[TWO_CONTAINERS_POD.to_string()])?;
            let t_apply_init = e.apply(&init)?;
            let t_del_init = e.delete(&[INIT_CONTAINER_POD.to_string()])?;
            if keep {
                let lbl = e.label();
                for (k, t) in [
                    ("apply-two-containers", t_apply),
                    ("exec-true", t_exec),
                    ("delete-two-containers", t_del),
                    ("apply-init-container", t_apply_init),
                    ("delete-init-container", t_del_init),
                ] {
                    samples(&mut rows, k, lbl).push_duration(t);
                }
            }
        }
        noise.check();
        let t_floor = logs.timed(&mut host::floor_command(&rootfs))?;
        if keep {
            floor.push_duration(t_floor);
        }
    }
    for e in &engines {
        let left = e.leftovers();
        if !left.is_empty() {
            notes.push(format!(
                "{} left after its deletes returned: {}",
                e.label(),
                left.join(", ")
            ));
        }
    }

    // N pods one after another and at once; the engine's memory with the first N running.
    let mem_n = plan.ns[0];
    for &n in &plan.ns {
        rows.push(row(
            &format!("sequential-{n}"),
            &format!("{n} pods one after another (total)"),
            Unit::Ms,
            Some(2.0 * n as f64),
        ));
        rows.push(row(
            &format!("concurrent-{n}"),
            &format!("{n} pods concurrently (total)"),
            Unit::Ms,
            None,
        ));
    }
    rows.push(row(
        "pss-per-pod",
        &format!("engine PSS per pod ({mem_n} pods)"),
        Unit::MiB,
        None,
    ));
    let mut pss_notes: Vec<(String, String)> = Vec::new();
    for d in 0..plan.density_runs {
        for &n in &plan.ns {
            progress(&format!("{n} pods, run {}/{}", d + 1, plan.density_runs));
            let seq: Vec<String> = (0..n).map(|k| format!("bench-s{n}-{k}")).collect();
            let conc: Vec<String> = (0..n).map(|k| format!("bench-c{n}-{k}")).collect();
            let seq_files = write_named(&mdir, &seq)?;
            let conc_files = write_named(&mdir, &conc)?;
            for e in ordered(&engines, d) {
                let start = Instant::now();
                for f in &seq_files {
                    e.apply(f)?;
                }
                let t_seq = start.elapsed();
                noise.check();
                samples(&mut rows, &format!("sequential-{n}"), e.label()).push_duration(t_seq);
                if n == mem_n {
                    // Memory at rest: pods live long, and a monitor gives back what its
                    // start used once idle (peapod after 1 s; Podman's conmons likewise).
                    std::thread::sleep(MEMORY_SETTLE);
                    let pss = e.engine_pss()?;
                    samples(&mut rows, "pss-per-pod", e.label())
                        .push(pss.total_kib as f64 / 1024.0 / n as f64);
                    pss_notes.push((e.label().to_string(), pss.describe(n)));
                }
                e.delete(&seq)?;
                let t_conc = e.apply_together(&conc_files)?;
                noise.check();
                samples(&mut rows, &format!("concurrent-{n}"), e.label()).push_duration(t_conc);
                e.delete(&conc)?;
            }
        }
    }
    for e in &engines {
        let left = e.leftovers();
        if !left.is_empty() {
            notes.push(format!(
                "{} left after the N-pod deletes: {}",
                e.label(),
                left.join(", ")
            ));
        }
        if let Some((_, d)) = pss_notes.iter().rev().find(|(l, _)| l == e.label()) {
            notes.push(format!(
                "{} engine memory (last run, {mem_n} pods, {} s after the last started): {d}; workload processes excluded",
                e.label(),
                MEMORY_SETTLE.as_secs()
            ));
        }
    }
    notes.push("N-pod workloads: pods named apart (metadata.name rewritten) from the two-container manifest; concurrent = N apply processes started together, timed until the last exits".into());

    noise.check();
    notes.extend(noise.note());
    let report = Report {
        machine,
        revision: git_revision(),
        peapod_version: peapod.version(),
        runtime,
        podman: podman.as_ref().map(|p| (p.version(), p.runtime())),
        runs: plan.runs,
        warmup: plan.warmup,
        density_runs: plan.density_runs,
        rows,
        floor,
        notes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

fn row(key: &str, label: &str, unit: Unit, floors: Option<f64>) -> Row {
    Row {
        key: key.into(),
        label: label.into(),
        unit,
        peapod: Samples::default(),
        podman: Samples::default(),
        floors,
    }
}

/// The samples of row `key` for the engine labelled `engine`.
fn samples<'a>(rows: &'a mut [Row], key: &str, engine: &str) -> &'a mut Samples {
    let r = rows
        .iter_mut()
        .find(|r| r.key == key)
        .expect("every measured workload has a row");
    if engine == "podman" {
        &mut r.podman
    } else {
        &mut r.peapod
    }
}

/// The engines in run `i`'s order: as given on even runs, reversed on odd ones.
fn ordered<'a>(engines: &[&'a dyn Engine], i: usize) -> Vec<&'a dyn Engine> {
    let mut v = engines.to_vec();
    if i % 2 == 1 {
        v.reverse();
    }
    v
}

/// Writes one two-container manifest per name; returns their paths.
fn write_named(dir: &Path, names: &[String]) -> Result<Vec<PathBuf>> {
    names
        .iter()
        .map(|n| {
            let p = dir.join(format!("{n}.yaml"));
            std::fs::write(&p, renamed(TWO_CONTAINERS, n))?;
            Ok(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_the_pod() {
        let out = renamed(TWO_CONTAINERS, "bench-s20-3");
        assert!(out.contains("metadata:\n  name: bench-s20-3\n"));
        assert!(out.contains("- name: my-test-container1"));
        assert!(!out.contains("name: two-containers\n"));
        let init = renamed(INIT_CONTAINER, "x");
        assert!(init.contains("metadata:\n  name: x\n"));
        assert!(init.contains("name: data-container"));
    }

    #[test]
    fn order_alternates() {
        struct E(&'static str);
        impl Engine for E {
            fn label(&self) -> &'static str {
                self.0
            }
            fn apply(&self, _: &Path) -> Result<std::time::Duration> {
                unimplemented!()
            }
            fn apply_together(&self, _: &[PathBuf]) -> Result<std::time::Duration> {
                unimplemented!()
            }
            fn exec_true(&self, _: &str, _: &str) -> Result<std::time::Duration> {
                unimplemented!()
            }
            fn delete(&self, _: &[String]) -> Result<std::time::Duration> {
                unimplemented!()
            }
            fn engine_pss(&self) -> Result<engine::EnginePss> {
                unimplemented!()
            }
            fn leftovers(&self) -> Vec<String> {
                vec![]
            }
        }
        let (a, b) = (E("peapod"), E("podman"));
        let engines: Vec<&dyn Engine> = vec![&a, &b];
        let l = |i| {
            ordered(&engines, i)
                .iter()
                .map(|e| e.label())
                .collect::<Vec<_>>()
        };
        assert_eq!(l(0), ["peapod", "podman"]);
        assert_eq!(l(1), ["podman", "peapod"]);
    }
}
