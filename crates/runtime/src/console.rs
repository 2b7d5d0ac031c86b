//! A foreground `exec`: wait for the process while forwarding the signals this runtime
//! receives to it, and for `-t`, relay between this runtime's stdio and the pty whose
//! master the container sent (runc's behaviour: the caller's terminal goes raw, its window
//! size follows on SIGWINCH).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_oci::runtime::ConsoleSocket;

use crate::Error;

/// A console socket this runtime listens on, in the container's state directory (bound by
/// a relative name after a chdir there: state paths can exceed a socket address's 108
/// bytes). Removed on drop.
pub struct Listener {
    socket: ConsoleSocket,
    path: PathBuf,
}

impl Listener {
    pub fn bind(dir: &Path) -> Result<Self, Error> {
        let name = format!("exec-console-{}.sock", std::process::id());
        let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
        std::env::set_current_dir(dir).map_err(|e| Error::io("chdir", dir, e))?;
        let bound = ConsoleSocket::bind(Path::new(&name));
        let _ = std::env::set_current_dir(&cwd);
        let socket = bound.map_err(|e| Error::io("bind", dir.join(&name), e))?;
        Ok(Self {
            socket,
            path: dir.join(name),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container sent (it is waiting in the socket once `build` returned).
    pub fn receive(&self) -> Result<OwnedFd, Error> {
        self.socket
            .receive_pty()
            .map_err(|e| Error::io("receive the pty master from", &self.path, e))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Signals that are the process's business, not ours: all but those the kernel keeps.
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP] {
        set.remove(s);
    }
    set
}

/// Waits for `pid` (our child) to exit and returns its code, 128+N when killed by signal N.
///
/// Every signal this runtime gets meanwhile is forwarded to the process (SIGCHLD and, with a
/// pty, SIGWINCH excepted); with a pty, stdin goes to it and its output to stdout.
pub fn wait_forwarding(pid: Pid, pty: Option<OwnedFd>) -> Result<i32, Error> {
    let mask = forwarded();
    mask.thread_block()
        .map_err(|e| Error::sys("sigprocmask", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::sys("signalfd", e))?;
    let result = match pty {
        Some(master) => relay(pid, &sfd, &master),
        None => loop {
            if let Some(code) = reap(pid)? {
                break Ok(code);
            }
            let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => break Err(Error::sys("poll", e)),
            }
            drain_signals(&sfd, pid, None);
        },
    };
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
    result
}

/// The exit code once `pid` has exited (reaped), or None while it runs.
fn reap(pid: Pid) -> Result<Option<i32>, Error> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(128 + sig as i32)),
        Ok(_) => Ok(None),
        Err(Errno::EINTR) => Ok(None),
        Err(e) => Err(Error::sys("waitpid", e)),
    }
}

/// Reads the pending signals and forwards them; with a pty, SIGWINCH resizes it instead.
fn drain_signals(sfd: &SignalFd, pid: Pid, pty: Option<BorrowedFd<'_>>) {
    while let Ok(Some(info)) = sfd.read_signal() {
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match (sig, pty) {
            (Signal::SIGCHLD, _) => {}
            (Signal::SIGWINCH, Some(master)) => copy_winsize(master),
            _ => {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
    }
}

fn copy_winsize(master: BorrowedFd<'_>) {
    if let Ok(size) = peapod_sys::get_winsize(io::stdin().as_fd()) {
        let _ = peapod_sys::set_winsize(master, size);
    }
}

/// The caller's terminal in raw mode until dropped (when stdin is a terminal).
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

fn relay(pid: Pid, sfd: &SignalFd, master: &OwnedFd) -> Result<i32, Error> {
    let _raw = RawMode::enter();
    copy_winsize(master.as_fd());
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    let mut exit = None;
    loop {
        if exit.is_none() {
            exit = reap(pid)?;
        }
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open && exit.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the process exited, drain what the pty still holds, without blocking.
        let timeout = if exit.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        drop(fds);
        if sig_ready {
            drain_signals(sfd, pid, Some(master.as_fd()));
        }
        if master_ready {
            match nix::unistd::read(master.as_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    // Every holder of the pty's slave is gone.
                    if let Some(code) = exit {
                        return Ok(code);
                    }
                    return wait_blocking(pid);
                }
                Ok(n) => write_all(stdout.as_fd(), &buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(Error::sys("read the pty", e)),
            }
        } else if let Some(code) = exit {
            return Ok(code);
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO | Errno::EBADF) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n]),
                Err(_) => {}
            }
        }
    }
}

fn wait_blocking(pid: Pid) -> Result<i32, Error> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("waitpid", e)),
        }
    }
}

/// Writes everything, giving up silently when the reader is gone (as a copy loop does).
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}
