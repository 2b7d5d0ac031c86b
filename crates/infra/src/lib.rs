//! The pod's infra process: peapod's own pause. It holds the pod's ipc and uts namespaces
//! (and sits in the pod's pinned network namespace) so containers can join them by path,
//! lives in a minimal mount namespace of its own (an empty tmpfs root: no process in a pod
//! sees the host's mounts), reaps zombies, and exits on SIGTERM/SIGINT.
//!
//! It touches nothing else: no files, no network configuration. It runs as its own small
//! binary, `peapod-infra` (one per pod stays resident, so its memory counts: this crate
//! keeps to `nix` and the failpoints), or as `peapod infra` where that binary is missing.
//!
//! Failpoints: `infra-start` (before setting up its namespaces; reports nothing) and
//! `infra-ready` (right after reporting `ok`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long the pid namespace's init may take to report (as the infra itself is given).
const PID1_REPORT_MS: u16 = 30_000;

/// Sets the namespaces up, reports `ok [PID]` (or `error: …`) on stdout, then waits for a
/// signal. With `share_pid` the pod gets a pid namespace whose init is a second infra
/// process (`pid1`: the program and arguments that run [`run_pid1`]), reported as PID, so
/// containers can join it.
pub fn run(netns: Option<&Path>, hostname: &str, share_pid: bool, pid1: &[&str]) -> Result<()> {
    let mask = block_lifecycle_signals()?;
    fault("infra-start")?;
    let pid1 = match setup(netns, hostname, share_pid.then_some(pid1)) {
        Ok(pid1) => {
            match pid1 {
                Some(p) => println!("ok {p}"),
                None => println!("ok"),
            }
            let _ = std::io::stdout().flush();
            fault("infra-ready")?;
            // It idles from here on: keep only what is its own resident.
            peapod_sys::release_idle_text();
            peapod_sys::release_free_heap();
            pid1
        }
        Err(e) => {
            println!("error: {e:#}");
            return Err(e);
        }
    };
    loop {
        match mask.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                if let Some(p) = pid1 {
                    // The pid namespace's init takes every process of the pod with it.
                    let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
                    let _ = waitpid(Pid::from_raw(p), None);
                }
                return Ok(());
            }
            Ok(_) => reap(),
            Err(_) => {}
        }
    }
}

/// The init of a pod's shared pid namespace: reports `ok`, reaps orphans, exits on
/// SIGTERM/SIGINT.
pub fn run_pid1() -> Result<()> {
    let mask = block_lifecycle_signals()?;
    println!("ok");
    let _ = std::io::stdout().flush();
    loop {
        match mask.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => return Ok(()),
            Ok(_) => reap(),
            Err(_) => {}
        }
    }
}

/// Blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP in the calling (only) thread so they can be
/// read from a signalfd or with `sigwait` (the infra's and every monitor's way with
/// signals); children get an empty mask from std's spawn.
pub fn block_lifecycle_signals() -> Result<SigSet> {
    let mut mask = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(sig);
    }
    mask.thread_block().context("blocking signals")?;
    Ok(mask)
}

fn fault(step: &str) -> Result<()> {
    peapod_sandbox::failpoint::check(step)
        .map_err(|step| anyhow!("injected failure at failpoint {step}"))
}

fn reap() {
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
    {}
}

fn setup(netns: Option<&Path>, hostname: &str, pid1: Option<&[&str]>) -> Result<Option<i32>> {
    if let Some(pin) = netns {
        let f = File::open(pin)
            .with_context(|| format!("opening the pod network namespace {}", pin.display()))?;
        setns(&f, CloneFlags::CLONE_NEWNET).context("joining the pod network namespace")?;
    }
    unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS)
        .context("creating the pod's ipc, uts and mount namespaces")?;
    nix::unistd::sethostname(hostname)
        .with_context(|| format!("setting the hostname {hostname:?}"))?;
    // A minimal mount namespace: nothing propagates back, and the root is an empty tmpfs.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")?;
    let pid1 = match pid1 {
        Some(argv) => Some(start_pid1(argv)?),
        None => None,
    };
    let new_root = Path::new("/tmp");
    mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0555"),
    )
    .context("mounting the infra's empty root")?;
    std::fs::create_dir(new_root.join("old")).ok();
    std::env::set_current_dir(new_root).context("entering the new root")?;
    nix::unistd::pivot_root(".", "old").context("pivot_root into the empty root")?;
    std::env::set_current_dir("/").context("chdir /")?;
    umount2("/old", MntFlags::MNT_DETACH).context("detaching the host's mounts")?;
    let _ = std::fs::remove_dir("/old");
    Ok(pid1)
}

/// Starts the init of a new pid namespace (`argv` runs [`run_pid1`]) and waits for its `ok`.
fn start_pid1(argv: &[&str]) -> Result<i32> {
    unshare(CloneFlags::CLONE_NEWPID).context("creating the pod's pid namespace")?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow!("no program for the pod's pid namespace init"))?;
    // Named as the pod's PID 1 shows in `ps` inside the pod, whatever binary runs it.
    let mut child = Command::new(program)
        .arg0("peapod-infra")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the pod's pid namespace init")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        // It reports at once or dies (end of file); a hung one is given up on.
        let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        if matches!(poll(&mut fds, PollTimeout::from(PID1_REPORT_MS)), Ok(n) if n > 0) {
            BufReader::new(out).read_line(&mut line).ok();
        }
    }
    if line.trim_end() != "ok" {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the pod's pid namespace init failed to start");
    }
    let pid = child.id() as i32;
    // Reaped by the signal loop.
    std::mem::forget(child);
    Ok(pid)
}
