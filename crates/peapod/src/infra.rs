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
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Sets the namespaces up, reports `ok` (or `error: …`) on stdout, then waits for a signal.
pub fn run(netns: Option<&Path>, hostname: &str) -> Result<()> {
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
    match setup(netns, hostname) {
        Ok(()) => {
            println!("ok");
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            println!("error: {e:#}");
            return Err(e);
        }
    }
    loop {
        match mask.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => return Ok(()),
            Ok(_) => {
                while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
                    waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
                {}
            }
            Err(_) => {}
        }
    }
}

fn setup(netns: Option<&Path>, hostname: &str) -> Result<()> {
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
    Ok(())
}
