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
