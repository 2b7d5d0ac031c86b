//! The container monitor: one small single-threaded process per running container, detached
//! from the CLI (its own session). It is the subreaper of the container's processes, holds
//! their stdin and tty, writes their output to the CRI log, and records the start and the
//! exit durably in `status.json`. It holds `monitor.lock` for its whole life, so others
//! can tell whether it is alive without trusting pids.
//!
//! It never touches other containers, the image store or the network configuration
//! (except tearing down its own container for `--rm`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_oci::runtime::{ConsoleSocket, Runtime};
use peapod_store::Lock;

use crate::crilog::{LineSplitter, Stream};
use crate::engine::{proc_start_time, Engine};
use crate::record::{ContainerConfig, ContainerStatus};

/// Entry point of `peapod monitor ID`. Reports `ok` or `error: …` on stdout once the
/// container runs (or failed to), then keeps running until the container exits.
pub fn run(engine: &Engine, id: &str, attached: bool) -> Result<()> {
    // Our own session: no terminal signals, and the CLI's exit does not touch us.
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    // Blocked before any thread exists (the port proxy's), so SIGCHLD reaches the signalfd
    // and no other thread; children get an empty mask from std's spawn.
    let mask = peapod_infra::block_lifecycle_signals()?;
    let dir = engine.container_dir(id);
    let lock = Lock::try_exclusive(&dir.join("monitor.lock"))?
        .ok_or_else(|| anyhow!("another monitor is already running for container {id}"))?;
    // Who to send SIGHUP to reopen the log (CRI ReopenContainerLog).
    peapod_store::replace(
        &dir.join("monitor.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    // A foreground `run` attaches before the container starts, so no output is missed.
    let listener = if attached {
        let path = crate::attach::socket_path(&engine.paths.run, id);
        peapod_store::create_dir_all(path.parent().expect("socket has a parent"))?;
        let _ = fs::remove_file(&path);
        Some(UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?)
    } else {
        None
    };
    match start(engine, id, listener.as_ref()) {
        Ok(started) => {
            crate::fault::point("monitor-started")?;
            if listener.is_none() {
                println!("ok");
            }
            let _ = io::stdout().flush();
            // The CLI is gone or going: nothing more goes to the pipe.
            if let Ok(null) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(&null);
            }
            let result = supervise(engine, started, &mask);
            if listener.is_some() {
                let _ = fs::remove_file(crate::attach::socket_path(&engine.paths.run, id));
            }
            let config = peapod_store::read_json::<ContainerConfig>(&dir.join("container.json"))?;
            drop(lock);
            if let Some(config) = config {
                if config.auto_remove && !attached {
                    engine.teardown(&config, true)?;
                }
            }
            result
        }
        Err(e) => {
            println!("error: {e:#}");
            Err(e)
        }
    }
}

/// The container's output: a pty, or stdout/stderr pipes.
pub(crate) enum Output {
    Tty(OwnedFd),
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<OwnedFd>,
    },
}

struct Started {
    config: ContainerConfig,
    runtime: Runtime,
    pid: i32,
    status: ContainerStatus,
    output: Output,
    log: File,
    _proxy: Option<peapod_sandbox::ports::Proxy>,
    /// The attached foreground client, if any.
    client: Option<UnixStream>,
    /// A CRI container's attach socket (its clients come and go; CRI Attach).
    hub: Option<crate::attach::Hub>,
}

fn start(engine: &Engine, id: &str, attach: Option<&UnixListener>) -> Result<Started> {
    nix::sys::prctl::set_child_subreaper(true)
        .context("becoming the subreaper of the container")?;
    let dir = engine.container_dir(id);
    let config: ContainerConfig = peapod_store::read_json(&dir.join("container.json"))?
        .ok_or_else(|| anyhow!("container {id} has no record"))?;
    let runtime = Runtime {
        binary: config.runtime.clone(),
        state_root: engine.paths.runtime_state(),
    };
    crate::fault::point("monitor-before-create")?;
    let (pid, output, log, _) = create_in_runtime(engine, &config, &runtime, false)?;
    let proxy = match (&config.endpoint, config.ports.is_empty()) {
        (Some(ep), false) => {
            Some(peapod_sandbox::ports::spawn(&config.ports, ep.ip).context("publishing ports")?)
        }
        _ => None,
    };
    let client = match attach {
        Some(listener) => {
            println!("ok");
            let _ = io::stdout().flush();
            Some(
                accept_within(listener, Duration::from_secs(30))
                    .context("waiting for the client to attach")?,
            )
        }
        None => None,
    };
    // A CRI container keeps an attach socket for its whole life, bound before it starts.
    let hub = match attach {
        Some(_) => None,
        None => cri_stdin_once(engine, id).and_then(|stdin_once| {
            crate::attach::Hub::bind(
                crate::attach::socket_path(&engine.paths.run, id),
                stdin_once,
            )
            .ok()
        }),
    };
    if let Err(e) = runtime.start(id) {
        let _ = runtime.delete(id);
        return Err(e.into());
    }
    let status = ContainerStatus {
        pid,
        pid_start: proc_start_time(pid).unwrap_or_default(),
        started_at: Some(Utc::now()),
        ..Default::default()
    };
    peapod_store::replace_json(&dir.join("status.json"), &status)?;
    Ok(Started {
        config,
        runtime,
        pid,
        status,
        output,
        log,
        _proxy: proxy,
        client,
        hub,
    })
}

/// A CRI container's `stdin_once` (None for other containers).
fn cri_stdin_once(engine: &Engine, id: &str) -> Option<bool> {
    let path = engine.container_dir(id).join(crate::engine_cri::CRI_RECORD);
    peapod_store::read_json::<crate::engine_cri::CriContainer>(&path)
        .ok()
        .flatten()
        .map(|r| r.stdin_once)
}

/// Accepts one connection, giving up after `limit`.
fn accept_within(listener: &UnixListener, limit: Duration) -> Result<UnixStream> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(n) if n > 0 => Ok(listener.accept()?.0),
        Ok(_) => Err(anyhow!("no client attached within {} s", limit.as_secs())),
        Err(e) => Err(e).context("polling the attach socket"),
    }
}

/// `runtime create` of a container whose bundle exists: stdio wired to a pty (received
/// over the console socket) or to pipes, the log opened. Returns the init pid, and whether
/// the process was started too: with `start` and a runtime that can (the built-in one's
/// `run --detach`), create and start are one runtime process.
pub(crate) fn create_in_runtime(
    engine: &Engine,
    config: &ContainerConfig,
    runtime: &Runtime,
    start: bool,
) -> Result<(i32, Output, File, bool)> {
    let started = start && runtime.is_builtin();
    let create = |id: &str, bundle: &_, pid_file: &_, console: Option<&_>, stdio| {
        runtime.create_then(started, id, bundle, pid_file, console, stdio)
    };
    let id = config.id.as_str();
    let dir = engine.container_dir(id);
    let pid_file = dir.join("pid");
    // A previous run of this container may still be known to the runtime (a fresh
    // container has no pid file: no runtime call needed).
    if pid_file.exists() {
        runtime.delete(id)?;
    }
    let log_path = engine.log_path(config);
    peapod_store::create_dir_all(log_path.parent().expect("log path has a parent"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log {}", log_path.display()))?;
    let bundle = dir.join("bundle");
    let _ = fs::remove_file(&pid_file);
    let output = if config.tty {
        let sock_dir = engine.paths.run.join("console");
        peapod_store::create_dir_all(&sock_dir)?;
        let console = ConsoleSocket::bind(&sock_dir.join(format!("{}.sock", &id[..12])))
            .context("binding the console socket")?;
        let created = create(
            id,
            &bundle,
            &pid_file,
            Some(console.path()),
            [Stdio::null(), Stdio::null(), Stdio::null()],
        );
        let master = created.map_err(anyhow::Error::from).and_then(|()| {
            console
                .receive_pty()
                .context("receiving the container's terminal")
        });
        let _ = fs::remove_file(console.path());
        Output::Tty(master?)
    } else {
        let (out_r, out_w) = nix::unistd::pipe().context("creating the stdout pipe")?;
        let (err_r, err_w) = nix::unistd::pipe().context("creating the stderr pipe")?;
        let (stdin, keep) = if config.open_stdin {
            let (in_r, in_w) = nix::unistd::pipe().context("creating the stdin pipe")?;
            (Stdio::from(in_r), Some(in_w))
        } else {
            (Stdio::null(), None)
        };
        create(
            id,
            &bundle,
            &pid_file,
            None,
            [stdin, Stdio::from(out_w), Stdio::from(err_w)],
        )?;
        Output::Pipes {
            stdout: out_r,
            stderr: err_r,
            stdin: keep,
        }
    };
    let pid: i32 = fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("parsing {}", pid_file.display()))?;
    Ok((pid, output, log, started))
}

/// The readable ends of a container's output, each with its log framing.
pub(crate) fn output_streams(output: &Output) -> Result<Vec<(OwnedFd, LineSplitter)>> {
    Ok(match output {
        Output::Tty(master) => vec![(master.try_clone()?, LineSplitter::new(Stream::Stdout))],
        Output::Pipes { stdout, stderr, .. } => vec![
            (stdout.try_clone()?, LineSplitter::new(Stream::Stdout)),
            (stderr.try_clone()?, LineSplitter::new(Stream::Stderr)),
        ],
    })
}

/// Copies output to the log until the container's init exits, then records the exit.
fn supervise(engine: &Engine, mut s: Started, mask: &SigSet) -> Result<()> {
    use crate::attach;
    let sigfd = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("creating the signalfd")?;
    let mut streams = output_streams(&s.output)?;
    // The attach frame kind of each stream, kept in step with `streams`.
    let mut kinds: Vec<u8> = match s.output {
        Output::Tty(_) => vec![attach::STDOUT],
        Output::Pipes { .. } => vec![attach::STDOUT, attach::STDERR],
    };
    let mut client_buf: Vec<u8> = Vec::new();
    let mut exit: Option<i32> = reap(s.pid);
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if exit.is_some()
            && (streams.is_empty() || drain_deadline.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        let timeout = match drain_deadline {
            Some(_) => PollTimeout::from(50u16),
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = Vec::with_capacity(streams.len() + 2);
        fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
        for (fd, _) in &streams {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        let client_at = fds.len();
        if let Some(c) = &s.client {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let hub_at = fds.len();
        if let Some(h) = &s.hub {
            for fd in h.fds() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("polling the container's output"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[0] {
            let mut reopen = false;
            while let Ok(Some(info)) = sigfd.read_signal() {
                reopen |= info.ssi_signo == libc::SIGHUP as u32;
            }
            if reopen {
                // The log was rotated (renamed away): write to a new file at its path.
                let path = engine.log_path(&s.config);
                if let Ok(log) = OpenOptions::new().create(true).append(true).open(&path) {
                    s.log = log;
                }
            }
            if let Some(code) = reap(s.pid) {
                exit = Some(code);
            }
        }
        let mut closed = Vec::new();
        for (i, (fd, splitter)) in streams.iter_mut().enumerate() {
            if !ready[i + 1] {
                continue;
            }
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => closed.push(i),
                Ok(n) => {
                    let _ = splitter.feed(&buf[..n], Utc::now(), &mut s.log);
                    if let Some(c) = s.client.as_mut() {
                        if c.write_all(&attach::frame(kinds[i], &buf[..n])).is_err() {
                            s.client = None;
                        }
                    }
                    if let Some(h) = s.hub.as_mut() {
                        h.broadcast(kinds[i], &buf[..n]);
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            let (_, mut splitter) = streams.remove(i);
            kinds.remove(i);
            let _ = splitter.finish(Utc::now(), &mut s.log);
        }
        // The client, when polled, is the entry before the hub's.
        if hub_at > client_at && ready[client_at] {
            handle_client_input(&mut s, &mut client_buf, &mut buf);
        }
        if let Some(h) = s.hub.as_mut() {
            // Clients first (their indices shift once new ones are accepted).
            for i in (1..ready.len().saturating_sub(hub_at)).rev() {
                if ready[hub_at + i] {
                    h.read_client(i - 1, &mut s.output);
                }
            }
            if ready.get(hub_at).copied().unwrap_or(false) {
                h.accept();
            }
        }
        if exit.is_some() && drain_deadline.is_none() {
            // Output still buffered in the pipes or the pty is read for a bounded time.
            drain_deadline = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    for (_, mut splitter) in streams {
        let _ = splitter.finish(Utc::now(), &mut s.log);
    }
    let _ = s.log.sync_data();
    let code = exit.unwrap_or(255);
    // A CRI container's status says when the kernel's OOM killer ended it (read before the
    // runtime deletes the cgroup).
    if s.config.pod.is_some() && crate::engine::oom_killed(&s.config.cgroups_path) {
        s.status.error = Some("OOMKilled".into());
    }
    s.status.exit_code = Some(code);
    s.status.finished_at = Some(Utc::now());
    peapod_store::replace_json(
        &engine.container_dir(&s.config.id).join("status.json"),
        &s.status,
    )?;
    if let Some(c) = s.client.as_mut() {
        let _ = c.write_all(&attach::frame(attach::EXIT, code.to_string().as_bytes()));
    }
    if let Some(h) = s.hub.take() {
        h.exit(code);
    }
    // Releases the runtime's state and the container's cgroup right away.
    s.runtime.delete(&s.config.id)?;
    Ok(())
}

/// Reads what the attached client sent: stdin bytes, stdin's end, terminal resizes. A
/// client that went away leaves the container running (as `docker run` detached).
fn handle_client_input(s: &mut Started, pending: &mut Vec<u8>, buf: &mut [u8]) {
    use crate::attach;
    let Some(c) = s.client.as_mut() else { return };
    let n = match c.read(buf) {
        Ok(0) | Err(_) => {
            s.client = None;
            return;
        }
        Ok(n) => n,
    };
    pending.extend_from_slice(&buf[..n]);
    for (kind, payload) in attach::take_frames(pending) {
        attach::apply_input(&mut s.output, kind, &payload);
    }
}

/// Closes every descriptor above stderr that the monitor inherited (a caller's pipes, a
/// build jobserver): the monitor outlives its caller and must not keep those open.
pub(crate) fn close_inherited_fds() {
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // The directory's own descriptor is among them; closing it fails harmlessly.
        let _ = nix::unistd::close(fd);
    }
}

/// Reaps every exited child: (pid, exit code as a shell reports it).
pub(crate) fn reap_children() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => out.push((p.as_raw(), code)),
            Ok(WaitStatus::Signaled(p, sig, _)) => out.push((p.as_raw(), 128 + sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return out,
            Ok(_) => {}
        }
    }
}

/// Reaps every exited child; returns the container init's exit code once it is among them.
pub(crate) fn reap(pid: i32) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                found = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}
