//! Running the measured commands: each one timed from spawn to exit (its output goes to
//! files, never to pipes, so a daemon that keeps an inherited pipe open cannot stretch the
//! time), in its own process group (a Ctrl-C at the terminal reaches only the harness, which
//! then stops between two commands and cleans up), and Ctrl-C / SIGTERM turned into an error
//! that unwinds through the Drop guards.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Blocks SIGINT, SIGTERM and SIGHUP in this (still single-threaded) process and starts a
/// thread that waits for them: the first sets the flag [`check`] reports, so the harness
/// stops after the command in flight and its Drop guards clean up; a second one exits at
/// once. Children get an empty signal mask again (std resets it before exec).
pub fn handle_signals() -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().context("blocking signals")?;
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("peapod-bench: {sig} again, exiting without cleaning up");
                std::process::exit(130);
            }
            eprintln!("peapod-bench: {sig}: stopping after the current command, cleaning up (again to exit at once)");
        }
    });
    Ok(())
}

/// Fails once a signal asked the harness to stop.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Whether a signal asked the harness to stop (cleanup uses it to skip nothing but waits).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Where the commands' stdout/stderr go while they run.
#[derive(Debug, Clone)]
pub struct Logs {
    dir: PathBuf,
}

impl Logs {
    /// Logs kept in `dir` (created).
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self) -> Result<(PathBuf, File)> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("cmd-{n}.log"));
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok((path, f))
    }

    /// Prepares `cmd` to run with stdin from /dev/null, stdout and stderr to a fresh log
    /// file, in its own process group; returns the log's path.
    fn prepare(&self, cmd: &mut Command) -> Result<PathBuf> {
        let (path, f) = self.file()?;
        let f2 = f.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .process_group(0);
        Ok(path)
    }

    /// Runs `cmd` and returns how long it took, from spawn to exit; fails (with its output)
    /// when it exits non-zero.
    pub fn timed(&self, cmd: &mut Command) -> Result<Duration> {
        let log = self.prepare(cmd)?;
        let start = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("running {}", show(cmd)))?;
        let took = start.elapsed();
        finish(cmd, status, &log)?;
        check()?;
        Ok(took)
    }

    /// Starts every command at once and returns the wall time until the last one exited;
    /// fails if any of them failed.
    pub fn timed_together(&self, cmds: &mut [Command]) -> Result<Duration> {
        let mut logs = Vec::with_capacity(cmds.len());
        for c in cmds.iter_mut() {
            logs.push(self.prepare(c)?);
        }
        let start = Instant::now();
        let mut children: Vec<Child> = Vec::with_capacity(cmds.len());
        let mut spawn_error = None;
        for c in cmds.iter_mut() {
            match c.spawn() {
                Ok(ch) => children.push(ch),
                Err(e) => {
                    spawn_error =
                        Some(anyhow::Error::new(e).context(format!("running {}", show(c))));
                    break;
                }
            }
        }
        let mut statuses = Vec::with_capacity(children.len());
        for ch in &mut children {
            statuses.push(ch.wait());
        }
        let took = start.elapsed();
        if let Some(e) = spawn_error {
            return Err(e);
        }
        for ((c, st), log) in cmds.iter().zip(statuses).zip(&logs) {
            finish(c, st?, log)?;
        }
        check()?;
        Ok(took)
    }

    /// Runs `cmd` untimed and returns its stdout; fails (with stderr) when it exits non-zero.
    pub fn capture(&self, cmd: &mut Command) -> Result<String> {
        let out = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .with_context(|| format!("running {}", show(cmd)))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}{}",
                show(cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn finish(cmd: &Command, status: std::process::ExitStatus, log: &Path) -> Result<()> {
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        bail!("{} failed ({status}):\n{}", show(cmd), text.trim_end());
    }
    let _ = std::fs::remove_file(log);
    Ok(())
}

/// A command line for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a cleanup command quietly, ignoring its outcome (Drop guards).
pub fn quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status();
}

/// First line of `PROGRAM ARGS` output, or `None` when it cannot run.
pub fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// `name` looked up on `$PATH` (a name with a `/` is taken as a path).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
