//! The one low-level module: every `unsafe` block of peapod lives here, each with a
//! `// SAFETY:` comment. It wraps the few syscalls that `nix` does not expose safely.
//!
//! Nothing here knows about containers, images or pods.

/// Takes ownership of a file descriptor that the kernel installed in this process when it
/// delivered an `SCM_RIGHTS` control message (e.g. the pty master a runtime sends over
/// `--console-socket`), so it is closed exactly once, when the `OwnedFd` drops.
///
/// Call it once per received descriptor, straight after `recvmsg`.
pub fn owned_fd_from_received(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: `fd` was just created in our descriptor table by `recvmsg` for this
    // SCM_RIGHTS message; no other owner exists in this process, so handing sole ownership
    // to an `OwnedFd` cannot cause a double close or a use of a closed descriptor.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Reads the window size of the terminal `fd` refers to (`TIOCGWINSZ`).
pub fn get_winsize(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<WinSize> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live,
    // properly aligned local; the descriptor is borrowed, so it stays open during the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of the terminal `fd` refers to (`TIOCSWINSZ`): the foreground
/// process group of its session gets SIGWINCH.
pub fn set_winsize(fd: std::os::fd::BorrowedFd<'_>, size: WinSize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ only reads one `winsize` through the pointer, which points at a
    // live local; the descriptor is borrowed, so it stays open during the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives every signal its default disposition and unblocks all: what a process that is
/// about to become a container's (or an exec'd process's) parent must pass on, since
/// ignored dispositions and the blocked mask survive `execve` (Rust ignores SIGPIPE at
/// start-up; a monitor blocks the signals it reads from a signalfd).
pub fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code, so no async-signal-safety rule can be
        // broken; it only replaces dispositions of this process.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
