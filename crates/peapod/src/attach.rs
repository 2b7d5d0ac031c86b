//! The attach protocol between a container's monitor and a foreground `peapod run`: framed
//! messages over the monitor's unix socket (`run/attach/<short-id>.sock`). The monitor
//! sends output and, at the end, the exit code; the client sends stdin, stdin's end and
//! terminal resizes. A frame is a kind byte, a big-endian u32 length and the payload.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Client → monitor: bytes for the container's stdin.
pub const STDIN: u8 = 0;
/// Monitor → client: stdout (and a tty's output).
pub const STDOUT: u8 = 1;
/// Monitor → client: stderr.
pub const STDERR: u8 = 2;
/// Monitor → client: the container exited; payload is the exit code in decimal.
pub const EXIT: u8 = 3;
/// Client → monitor: stdin ended (close the container's stdin).
pub const CLOSE_STDIN: u8 = 4;
/// Client → monitor: the terminal's size, rows and columns as big-endian u16s.
pub const RESIZE: u8 = 5;

/// The attach socket of a container.
pub fn socket_path(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join("attach").join(format!("{}.sock", &id[..12]))
}

/// Encodes one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 5);
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Splits complete frames off the front of `buf`, leaving a partial one.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 5 {
            return out;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return out;
        }
        let kind = buf[0];
        let payload = buf[5..5 + len].to_vec();
        buf.drain(..5 + len);
        out.push((kind, payload));
    }
}

/// The client side: forwards stdin (when `interactive`) and the terminal size (when `tty`),
/// writes output to stdout/stderr, and returns the exit code the monitor sent (None when
/// the connection ended without one).
pub fn run_client(mut sock: UnixStream, interactive: bool, tty: bool) -> io::Result<Option<i32>> {
    use std::io::IsTerminal;
    let raw = tty && interactive && io::stdin().is_terminal();
    let _restore = if raw { RawMode::enter() } else { None };
    if tty {
        if let Ok(size) = peapod_sys::get_winsize(std::os::fd::AsFd::as_fd(&io::stdout())) {
            let mut p = size.rows.to_be_bytes().to_vec();
            p.extend_from_slice(&size.cols.to_be_bytes());
            sock.write_all(&frame(RESIZE, &p))?;
        }
    }
    if interactive {
        let mut writer = sock.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = writer.write_all(&frame(CLOSE_STDIN, &[]));
                        return;
                    }
                    Ok(n) => {
                        if writer.write_all(&frame(STDIN, &buf[..n])).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
        for (kind, payload) in take_frames(&mut pending) {
            match kind {
                STDOUT => {
                    stdout.write_all(&payload)?;
                    stdout.flush()?;
                }
                STDERR => {
                    stderr.write_all(&payload)?;
                    stderr.flush()?;
                }
                EXIT => return Ok(String::from_utf8_lossy(&payload).trim().parse().ok()),
                _ => {}
            }
        }
    }
}

/// `peapod attach`: connects to the running container's attach socket (kept by its pod's
/// monitor) and relays output, and stdin with `stdin`; returns the container's exit code
/// when it exits while attached, 0 when the stream ends otherwise.
pub fn attach(
    engine: &crate::engine::Engine,
    c: &crate::engine::Container,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<i32> {
    use crate::engine::user_error;
    if !matches!(c.state, crate::record::State::Running { .. }) {
        anyhow::bail!(user_error(format!(
            "You cannot attach to a stopped container, start it first: {}",
            c.config.name
        )));
    }
    if stdin && !c.config.open_stdin {
        anyhow::bail!(user_error(format!(
            "container {} was not created with stdin: true, cannot attach stdin",
            c.config.name
        )));
    }
    let path = socket_path(&engine.paths.run, &c.config.id);
    let sock = UnixStream::connect(&path).map_err(|e| {
        user_error(format!(
            "container {} cannot be attached to ({e}): only pod containers, CRI containers and foreground runs keep an attach socket; `peapod run -it` without -d attaches at start",
            c.config.name
        ))
    })?;
    let code = run_client(sock, stdin, tty && c.config.tty)?;
    Ok(code.unwrap_or(0))
}

/// Applies one client frame to a container's stdio: stdin bytes (to the pty or the stdin
/// pipe), stdin's end, a terminal resize.
pub(crate) fn apply_input(output: &mut crate::monitor::Output, kind: u8, payload: &[u8]) {
    use crate::monitor::Output;
    match (kind, output) {
        (STDIN, Output::Tty(master)) => {
            let _ = nix::unistd::write(&*master, payload);
        }
        (STDIN, Output::Pipes { stdin: Some(w), .. }) => {
            let _ = nix::unistd::write(&*w, payload);
        }
        (CLOSE_STDIN, Output::Pipes { stdin, .. }) => {
            *stdin = None;
        }
        (RESIZE, Output::Tty(master)) if payload.len() == 4 => {
            let rows = u16::from_be_bytes([payload[0], payload[1]]);
            let cols = u16::from_be_bytes([payload[2], payload[3]]);
            let _ = peapod_sys::set_winsize(
                std::os::fd::AsFd::as_fd(&*master),
                peapod_sys::WinSize { rows, cols },
            );
        }
        _ => {}
    }
}

/// A running container's attach point in a monitor: a listening socket and the clients
/// attached to it (`peapod attach`, `kubectl attach`). Output is copied to every client;
/// a client that cannot keep up is dropped rather than stalling the monitor.
pub(crate) struct Hub {
    path: PathBuf,
    /// `stdinOnce`: a client's end of stdin ends the container's stdin; otherwise it only
    /// ends that client's session and the next client can still write.
    stdin_once: bool,
    listener: std::os::unix::net::UnixListener,
    clients: Vec<(UnixStream, Vec<u8>)>,
}

impl Hub {
    /// Listens at `path` (replacing a stale socket).
    pub fn bind(path: PathBuf, stdin_once: bool) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            path,
            stdin_once,
            listener,
            clients: Vec::new(),
        })
    }

    /// The descriptors to poll: the listener first, then each client.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|(c, _)| c.as_fd()))
            .collect()
    }

    /// Accepts waiting clients.
    pub fn accept(&mut self) {
        while let Ok((c, _)) = self.listener.accept() {
            if c.set_nonblocking(true).is_ok() {
                self.clients.push((c, Vec::new()));
            }
        }
    }

    /// Copies output to every client.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        let f = frame(kind, data);
        self.clients.retain_mut(|(c, _)| write_all_or_drop(c, &f));
    }

    /// Reads what client `i` (an index into `fds()` minus the listener) sent and applies it.
    pub fn read_client(&mut self, i: usize, output: &mut crate::monitor::Output) {
        let Some((c, pending)) = self.clients.get_mut(i) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        match c.read(&mut buf) {
            Ok(0) => {
                self.clients.remove(i);
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                for (kind, payload) in take_frames(pending) {
                    if kind == CLOSE_STDIN && !self.stdin_once {
                        continue;
                    }
                    apply_input(output, kind, &payload);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                self.clients.remove(i);
            }
        }
    }

    /// The container exited: every client gets the code, then the socket goes away.
    pub fn exit(mut self, code: i32) {
        self.broadcast(EXIT, code.to_string().as_bytes());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes a whole frame to a non-blocking client, waiting briefly when its buffer is full;
/// false when the client is gone or too slow.
fn write_all_or_drop(c: &mut UnixStream, mut data: &[u8]) -> bool {
    let mut stalls = 0;
    while !data.is_empty() {
        match c.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && stalls < 50 => {
                stalls += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
    true
}

/// The caller's terminal in raw mode until dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let mut wire = frame(STDOUT, b"hello");
        wire.extend(frame(EXIT, b"3"));
        let mut partial = wire[..7].to_vec();
        assert!(take_frames(&mut partial).is_empty());
        let mut all = wire.clone();
        let frames = take_frames(&mut all);
        assert_eq!(
            frames,
            vec![(STDOUT, b"hello".to_vec()), (EXIT, b"3".to_vec())]
        );
        assert!(all.is_empty());
        let mut with_tail = wire;
        with_tail.extend_from_slice(&frame(STDERR, b"x")[..3]);
        assert_eq!(take_frames(&mut with_tail).len(), 2);
        assert_eq!(with_tail.len(), 3);
    }
}
