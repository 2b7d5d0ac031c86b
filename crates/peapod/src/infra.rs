//! The pod's infra process (`peapod infra`): peapod's own pause. It holds the pod's ipc and
//! uts namespaces (and sits in the pod's pinned network namespace) so containers can join
//! them by path, lives in a minimal mount namespace of its own (an empty tmpfs root: no
//! process in a pod sees the host's mounts), reaps zombies, and exits on SIGTERM/SIGINT.
//!
//! It touches nothing else: no files, no network configuration.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Sets the namespaces up, reports `ok [PID]` (or `error: …`) on stdout, then waits for a
/// signal. With `share_pid` the pod gets a pid namespace whose init is a second infra
/// process (`peapod infra --pid1`), reported as PID, so containers can join it.
pub fn run(netns: Option<&Path>, hostname: &str, share_pid: bool) -> Result<()> {
    let mask = crate::monitor::block_lifecycle_signals()?;
    crate::fault::point("infra-start")?;
    let pid1 = match setup(netns, hostname, share_pid) {
        Ok(pid1) => {
            match pid1 {
                Some(p) => println!("ok {p}"),
                None => println!("ok"),
            }
            let _ = std::io::stdout().flush();
            crate::fault::point("infra-ready")?;
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

/// `peapod infra --pid1`: the init of a pod's shared pid namespace; reaps orphans.
pub fn run_pid1() -> Result<()> {
    let mask = crate::monitor::block_lifecycle_signals()?;
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

fn reap() {
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
    {}
}

fn setup(netns: Option<&Path>, hostname: &str, share_pid: bool) -> Result<Option<i32>> {
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
    let pid1 = if share_pid {
        unshare(CloneFlags::CLONE_NEWPID).context("creating the pod's pid namespace")?;
        let exe = crate::engine::self_exe();
        let mut child = std::process::Command::new(exe)
            .args(["infra", "--pid1", "--hostname", hostname])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting the pod's pid namespace init")?;
        let line = crate::engine::read_report(
            &mut child,
            "the pod's pid namespace init",
            std::time::Duration::from_secs(30),
        )?;
        if line != "ok" {
            anyhow::bail!("the pod's pid namespace init failed to start");
        }
        let pid = child.id() as i32;
        // Reaped by the signal loop.
        std::mem::forget(child);
        Some(pid)
    } else {
        None
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
