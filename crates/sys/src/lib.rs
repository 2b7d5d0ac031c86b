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

/// The size of one classic BPF instruction (`struct sock_filter`), as `seccomp_export_bpf`
/// writes them: `code` (u16), `jt`, `jf` (u8), `k` (u32), in native byte order.
pub const BPF_INSTRUCTION_SIZE: usize = 8;

/// `seccomp(2)`'s filter flags this wrapper passes through.
pub mod seccomp_flags {
    /// `SECCOMP_FILTER_FLAG_TSYNC`: every thread of the process gets the filter.
    pub const TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
    /// `SECCOMP_FILTER_FLAG_LOG`: log every action but `SECCOMP_RET_ALLOW`.
    pub const LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
    /// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: keep speculative store bypass mitigation off.
    pub const SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19).
    pub const WAIT_KILLABLE_RECV: u32 = 1 << 5;
}

/// Installs a classic BPF seccomp filter on the calling thread:
/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`, the call libseccomp's `seccomp_load`
/// makes with the program `seccomp_export_bpf` writes (`program`: whole instructions).
///
/// The kernel checks the program; without `CAP_SYS_ADMIN` the thread must have
/// no_new_privs set. With `TSYNC`, a thread that cannot be synchronised is `ESRCH`.
pub fn seccomp_set_mode_filter(program: &[u8], flags: u32) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    if program.is_empty() || !program.len().is_multiple_of(BPF_INSTRUCTION_SIZE) {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "a seccomp program of {} bytes is not whole BPF instructions",
                program.len()
            ),
        ));
    }
    let filter: Vec<libc::sock_filter> = program
        .chunks_exact(BPF_INSTRUCTION_SIZE)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let len = u16::try_from(filter.len()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "a seccomp program of {} instructions is too long",
                filter.len()
            ),
        )
    })?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialised `sock_filter`s in `filter`, which outlives
    // the call; the kernel only reads (and copies) the program, validating it before use.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        // With TSYNC, the id of a thread that could not be synchronised (libseccomp's ESRCH).
        rc if rc > 0 => Err(Error::from_raw_os_error(libc::ESRCH)),
        _ => Err(Error::last_os_error()),
    }
}

/// Gives the heap's free memory back to the kernel (glibc's `malloc_trim(0)`): a
/// long-lived, mostly idle process (a pod monitor) calls it when it goes idle, so what it
/// freed after its busy start does not stay resident. A no-op elsewhere than glibc.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists
    // under the allocator's locks; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives back the main thread's stack pages below the caller's frame (keeping a margin for
/// the calls it makes next): a long-lived process whose start-up ran deep (parsing, setup)
/// and whose steady state is shallow need not keep those pages resident. A no-op off the
/// main thread, whose stack is the only `[stack]` mapping.
pub fn release_unused_stack() {
    const MARGIN: usize = 4 * 1024;
    let here = 0u8;
    let sp = std::hint::black_box(&here) as *const u8 as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some((start, end)) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| {
        let (range, _) = l.split_once(' ')?;
        let (a, b) = range.split_once('-')?;
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    }) else {
        return;
    };
    if !(start..end).contains(&sp) {
        return;
    }
    let page = 4096;
    let limit = sp.saturating_sub(MARGIN) & !(page - 1);
    if limit <= start {
        return;
    }
    // SAFETY: [start, limit) is the main thread's stack below the current frame by more than
    // MARGIN bytes: no live frame, local or red zone is there (this thread's frames are all
    // above `sp`, and no other thread runs on this stack). MADV_DONTNEED on private
    // anonymous memory only makes those pages read back as zeroes when touched again, which
    // is what a fresh stack page is; the mapping itself (and its growth) is unchanged.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            limit - start,
            libc::MADV_DONTNEED,
        );
    }
}

/// Drops this process's mappings of its own executable's read-only pages (code and
/// constants) from its page tables: they stay in the page cache, shared, and fault back in
/// when next run. A long-lived, mostly idle process (a pod monitor) calls it when it goes
/// idle, so its resident set is what it really owns rather than every page its start-up
/// once ran. Only read-only mappings holding no private copies are touched (nothing but
/// file contents is dropped).
pub fn release_idle_text() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy().into_owned();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    // (start, end, read-only file mapping of the executable, private pages in it)
    let mut current: Option<(usize, usize, bool)> = None;
    let mut release = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                let ours = !perms.contains('w') && path == exe;
                current = Some((a, b, ours));
                continue;
            }
        }
        if first == "Anonymous:" {
            if let Some((a, b, true)) = current {
                if fields.next() == Some("0") {
                    release.push((a, b));
                }
            }
        }
    }
    for (start, end) in release {
        // SAFETY: [start, end) is a whole read-only, private mapping of our executable with
        // no anonymous (copied-on-write) pages: MADV_DONTNEED only drops page-table entries
        // of file pages, which read back identical from the file on the next access. No
        // Rust object is invalidated; the mapping stays in place.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}
