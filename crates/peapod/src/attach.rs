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
