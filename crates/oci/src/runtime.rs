//! The OCI runtime driver: runc's command line (create/start/state/kill/delete/exec), which
//! crun, youki and runsc share, plus the `--console-socket` receiver for ttys.
//!
//! Every command is `BINARY --root STATE_ROOT [--log-format json] <cmd> ...`: the runtime's
//! state lives under peapod's run dir, and its failures come back as errors carrying the
//! runtime's own message (`exec`, run by the caller with inherited stdio, is the exception). It never builds specs and never waits for container processes.

use std::ffi::OsStr;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde::Deserialize;

/// Where a runtime name is looked up after `$PATH` (runc lives in /usr/sbin on Debian,
/// which a non-login `$PATH` may lack).
const SYSTEM_DIRS: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The file, in the bundle, where `create` asks the runtime to log (containerd's name).
pub const CREATE_LOG: &str = "log.json";

/// The file name (argv[0]) under which the peapod binary acts as its own OCI runtime.
///
/// `--runtime peapod` (or `builtin`) resolves to a symlink of this name, in the state root's
/// `.bin/`, to the running peapod executable: a path that stays valid in every container
/// record and for every later peapod process, and that tells the binary, before anything
/// else runs, to be the runtime (`peapod_runtime::main`).
pub const BUILTIN_RUNTIME: &str = "peapod-runtime";

/// The names that select the built-in runtime.
const BUILTIN_NAMES: [&str; 2] = ["peapod", "builtin"];

/// A runtime binary plus its state directory (`--root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Absolute path of the binary.
    pub binary: PathBuf,
    /// The runtime's `--root` state dir (under peapod's run dir, so tests are isolated).
    pub state_root: PathBuf,
}

/// Errors running the runtime; each carries the command and the runtime's stderr.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--runtime` named something not on PATH and not an executable file.
    #[error("OCI runtime {0:?} not found: give a name on PATH (runc, crun, youki), peapod for the built-in runtime, or an executable path")]
    NotFound(String),
    /// The runtime ran and failed.
    #[error("{runtime} {command} failed: {stderr}")]
    Failed {
        /// The runtime binary.
        runtime: String,
        /// The subcommand.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// The runtime could not be started.
    #[error("running {0}: {1}")]
    Spawn(String, #[source] std::io::Error),
    /// The runtime's state directory could not be created.
    #[error("runtime state directory: {0}")]
    StateRoot(#[source] peapod_store::IoError),
    /// `state` succeeded but did not print the JSON state document.
    #[error("{runtime} state {id} printed unexpected output: {source}")]
    BadState {
        /// The runtime binary.
        runtime: String,
        /// The container.
        id: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// `runc state` output, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// created, running, paused, stopped.
    pub status: String,
    /// Init pid (0 when stopped).
    pub pid: i32,
}

/// The state document (`runc state`), as the runtime spec defines it.
#[derive(Deserialize)]
struct StateDocument {
    status: String,
    #[serde(default)]
    pid: i32,
}

impl Runtime {
    /// Resolves `name_or_path`; None (no runtime configured) is the built-in runtime.
    ///
    /// `peapod` or `builtin` (or None) is this peapod binary as its own runtime
    /// ([`BUILTIN_RUNTIME`]); call that only from the peapod binary, whose executable the
    /// link points at. It is the default because it is the faster one (docs/performance.md:
    /// one process per command, no Go runtime start-up, a seccomp filter compiled once).
    /// Any other name (runc, crun, youki) is looked up on `$PATH`, then in the standard
    /// system directories; anything with a `/` must be an executable file.
    pub fn resolve(name_or_path: Option<&str>, state_root: &Path) -> Result<Self, RuntimeError> {
        let Some(name_or_path) = name_or_path.filter(|n| !BUILTIN_NAMES.contains(n)) else {
            let binary = builtin_link(state_root);
            link_builtin(&binary)?;
            return Ok(Self {
                binary,
                state_root: state_root.to_owned(),
            });
        };
        let path_var = std::env::var_os("PATH");
        let binary = resolve_binary(name_or_path, path_var.as_deref())?;
        Ok(Self {
            binary,
            state_root: state_root.to_owned(),
        })
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`; the container's stdio is
    /// the given stdio when there is no console socket.
    ///
    /// The runtime logs to `B/`[`CREATE_LOG`] (its stderr is the container's), and a failure
    /// carries the error messages found there.
    ///
    /// With `start` (the built-in runtime only), `run --detach` instead: create then start
    /// in one runtime process, as runc's `run -d` (another runtime's create and start stay
    /// two commands, as the driver has always run them). A container that cannot start is
    /// not left created.
    pub fn create_then(
        &self,
        start: bool,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: [std::process::Stdio; 3],
    ) -> Result<(), RuntimeError> {
        let verb = if start { "run" } else { "create" };
        let log = bundle.join(CREATE_LOG);
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command_logging_to(Some(&log))?;
        cmd.arg(verb);
        if verb == "run" {
            cmd.arg("--detach");
        }
        cmd.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id);
        let [stdin, stdout, stderr] = stdio;
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        let status = cmd.status().map_err(|e| self.spawn_error(verb, e))?;
        // `cmd` holds our copies of the caller's stdio: close them, so that only the
        // container holds its ends of the caller's pipes and the caller sees EOF when it exits.
        drop(cmd);
        if status.success() {
            return Ok(());
        }
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let mut message = runtime_messages(&logged);
        if message.is_empty() {
            message = format!(
                "exited with {status} and logged nothing to {}",
                log.display()
            );
        }
        Err(self.failed(&format!("{verb} {id}"), message))
    }

    /// `start ID`.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let out = self.run(&["start", id])?;
        self.check(&format!("start {id}"), &out)
    }

    /// `state ID`; `Ok(None)` when the runtime does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<RuntimeState>, RuntimeError> {
        if self.has_no_state(id) {
            return Ok(None);
        }
        let out = self.run(&["state", id])?;
        if !out.status.success() {
            if self.is_unknown(id, &out) {
                return Ok(None);
            }
            return Err(self.failed(&format!("state {id}"), output_message(&out)));
        }
        let doc: StateDocument =
            serde_json::from_slice(&out.stdout).map_err(|source| RuntimeError::BadState {
                runtime: self.name(),
                id: id.to_owned(),
                source,
            })?;
        Ok(Some(RuntimeState {
            status: doc.status,
            pid: doc.pid,
        }))
    }

    /// `kill [--all] ID SIGNAL`; a container that is gone is success.
    ///
    /// "Gone" means unknown to the runtime or already stopped.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        if self.has_no_state(id) {
            return Ok(());
        }
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        let out = self.run(&args)?;
        if out.status.success() || self.is_unknown(id, &out) {
            return Ok(());
        }
        match self.state(id)? {
            None => Ok(()),
            Some(s) if s.status == "stopped" => Ok(()),
            Some(_) => Err(self.failed(&format!("kill {id} {signal}"), output_message(&out))),
        }
    }

    /// `delete --force ID`; idempotent.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        if self.has_no_state(id) {
            return Ok(());
        }
        let out = self.run(&["delete", "--force", id])?;
        if out.status.success() || self.is_unknown(id, &out) {
            return Ok(());
        }
        Err(self.failed(&format!("delete --force {id}"), output_message(&out)))
    }

    /// `update --resources - ID`: new cgroup limits for a container, given as the OCI
    /// `LinuxResources` JSON on stdin (runc's and crun's interface).
    pub fn update(&self, id: &str, resources: &serde_json::Value) -> Result<(), RuntimeError> {
        use std::io::Write;
        let mut cmd = self.command_logging_to(None)?;
        cmd.args(["update", "--resources", "-", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error("update", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            let json = serde_json::to_vec(resources).unwrap_or_default();
            stdin
                .write_all(&json)
                .map_err(|e| self.spawn_error("update", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.spawn_error("update", e))?;
        self.check(&format!("update {id}"), &out)
    }

    /// A ready-to-run `exec` command (`runc exec [-t] [--env K=V] [--cwd D] ID ARGS...`),
    /// stdio inherited; its exit status is the process's.
    ///
    /// The runtime's own errors go to the inherited stderr in its default text format, for
    /// the user to read.
    pub fn exec_command(
        &self,
        id: &str,
        args: &[String],
        tty: bool,
        env: &[String],
        cwd: Option<&str>,
    ) -> std::process::Command {
        let mut cmd = self.base_command();
        cmd.arg("exec");
        if tty {
            cmd.arg("-t");
        }
        for e in env {
            cmd.arg("--env").arg(e);
        }
        if let Some(cwd) = cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        cmd.arg(id).args(args);
        cmd
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Whether this is the built-in runtime (a link named [`BUILTIN_RUNTIME`]).
    pub fn is_builtin(&self) -> bool {
        self.binary.file_name() == Some(OsStr::new(BUILTIN_RUNTIME))
    }

    /// `BINARY --root STATE_ROOT`.
    fn base_command(&self) -> Command {
        // The built-in runtime's link lives in the run dir, which a reboot empties while
        // records still name it: the peapod process at hand makes it again.
        if self.is_builtin() && std::fs::symlink_metadata(&self.binary).is_err() {
            let _ = link_builtin(&self.binary);
        }
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_root);
        cmd
    }

    /// The base command with JSON logs (to `log`, else stderr), after making sure the state
    /// root exists (0700, as runc makes it: it holds every container's config).
    fn command_logging_to(&self, log: Option<&Path>) -> Result<Command, RuntimeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_root)
            .map_err(|e| {
                RuntimeError::StateRoot(peapod_store::IoError::new(
                    "create directory",
                    &self.state_root,
                    e,
                ))
            })?;
        let mut cmd = self.base_command();
        cmd.arg("--log-format").arg("json");
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        Ok(cmd)
    }

    /// Runs a subcommand to completion with stdin closed and its output captured.
    fn run(&self, args: &[&str]) -> Result<Output, RuntimeError> {
        let mut cmd = self.command_logging_to(None)?;
        cmd.args(args).stdin(Stdio::null());
        cmd.output().map_err(|e| self.spawn_error(args[0], e))
    }

    fn check(&self, command: &str, out: &Output) -> Result<(), RuntimeError> {
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failed(command, output_message(out)))
        }
    }

    /// Whether a failed command failed because the runtime has no such container: its
    /// state directory is absent, or it says so.
    fn is_unknown(&self, id: &str, out: &Output) -> bool {
        self.has_no_state(id)
            || output_message(out)
                .to_lowercase()
                .contains("does not exist")
    }

    /// Whether the runtime keeps no state for `id` (no `<state root>/<id>` directory, as
    /// runc, crun, youki and the built-in runtime keep): it knows no such container, so
    /// `kill`, `delete` and `state` need not run it (a pod's teardown asks for every one of
    /// its containers, most already deleted by their monitor).
    fn has_no_state(&self, id: &str) -> bool {
        !id.is_empty()
            && !id.contains('/')
            && id != "."
            && id != ".."
            && !self.state_root.join(id).exists()
    }

    fn failed(&self, command: &str, stderr: String) -> RuntimeError {
        RuntimeError::Failed {
            runtime: self.name(),
            command: command.to_owned(),
            stderr,
        }
    }

    fn spawn_error(&self, command: &str, e: io::Error) -> RuntimeError {
        RuntimeError::Spawn(format!("{} {command}", self.name()), e)
    }
}

/// Where the built-in runtime's link lives for a state root.
fn builtin_link(state_root: &Path) -> PathBuf {
    state_root.join(".bin").join(BUILTIN_RUNTIME)
}

/// Points `link` at the running executable (replacing a link to another one atomically).
/// The path a running executable was started from, also after it was replaced on disk
/// (an upgrade, a rebuild): Linux then names it `<path> (deleted)`, and the new file at
/// `<path>` is the one later commands run.
pub fn installed_path(exe: &Path) -> PathBuf {
    exe.to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map_or_else(|| exe.to_path_buf(), PathBuf::from)
}

fn link_builtin(link: &Path) -> Result<(), RuntimeError> {
    let exe = std::env::current_exe()
        .map(|p| installed_path(&p))
        .and_then(std::fs::canonicalize)
        .map_err(|e| RuntimeError::Spawn("locating the peapod executable".into(), e))?;
    if std::fs::read_link(link).is_ok_and(|target| target == exe) {
        return Ok(());
    }
    let dir = link.parent().unwrap_or(Path::new("/"));
    let io_err =
        |op, path: &Path, e| RuntimeError::StateRoot(peapod_store::IoError::new(op, path, e));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create directory", dir, e))?;
    let tmp = dir.join(format!(".{BUILTIN_RUNTIME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp).map_err(|e| io_err("create symlink", &tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| io_err("rename", link, e))
}

/// The lookup behind [`Runtime::resolve`] for a named runtime, with `$PATH` injected.
fn resolve_binary(name_or_path: &str, path_var: Option<&OsStr>) -> Result<PathBuf, RuntimeError> {
    match name_or_path {
        p if p.contains('/') => {
            let path = std::path::absolute(p).map_err(|_| RuntimeError::NotFound(p.to_owned()))?;
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(RuntimeError::NotFound(p.to_owned()))
            }
        }
        "" => Err(RuntimeError::NotFound(String::new())),
        name => find_on_path(name, path_var).ok_or_else(|| RuntimeError::NotFound(name.to_owned())),
    }
}

fn find_on_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let dirs = path_var.into_iter().flat_map(std::env::split_paths);
    dirs.chain(std::env::split_paths(SYSTEM_DIRS))
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The messages of a runtime's JSON log lines (`{"level":"error","msg":"..."}`): the
/// error-level ones if any, else all; lines that are not JSON are kept as they are.
fn runtime_messages(log: &str) -> String {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        level: String,
        msg: String,
    }
    let mut errors = Vec::new();
    let mut others = Vec::new();
    for line in log.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<Line>(line) {
            Ok(l) if matches!(l.level.as_str(), "error" | "fatal" | "panic") => errors.push(l.msg),
            Ok(l) => others.push(l.msg),
            Err(_) => others.push(line.to_owned()),
        }
    }
    if errors.is_empty() { others } else { errors }.join("; ")
}

fn output_message(out: &Output) -> String {
    let msg = runtime_messages(&String::from_utf8_lossy(&out.stderr));
    if msg.is_empty() {
        format!("exited with {} and printed nothing", out.status)
    } else {
        msg
    }
}

/// A listening unix socket for `--console-socket`: the runtime sends the pty master over it.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds at `path` (removing a stale socket).
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        Ok(Self {
            path: path.to_owned(),
            listener,
        })
    }

    /// The socket path to pass to the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection and receives the pty master it carries (SCM_RIGHTS).
    ///
    /// Blocks until the runtime connects: call it after `create` succeeded (the runtime
    /// connects and sends during `create`; the descriptor waits in the socket).
    pub fn receive_pty(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        let (stream, _) = self.listener.accept()?;
        // runc sends the pty's name as the payload; we only need the descriptor.
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received.into_iter().map(peapod_sys::owned_fd_from_received));
            }
        }
        // Any extra descriptors close when `fds` drops.
        fds.into_iter().next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: the runtime sent no file descriptor",
                    self.path.display()
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_replaced_executable_is_named_by_its_path() {
        assert_eq!(
            installed_path(Path::new("/usr/bin/peapod (deleted)")),
            PathBuf::from("/usr/bin/peapod")
        );
        assert_eq!(
            installed_path(Path::new("/usr/bin/peapod")),
            PathBuf::from("/usr/bin/peapod")
        );
    }

    use std::fs;

    use super::*;

    fn executable(path: &Path) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_container_without_state_is_not_asked_about() {
        let dir = tempfile::tempdir().unwrap();
        // A runtime that cannot even start: any command it were asked would fail.
        let runtime = Runtime {
            binary: dir.path().join("no-such-runtime"),
            state_root: dir.path().join("state"),
        };
        runtime.delete("gone").unwrap();
        runtime.kill("gone", 9, true).unwrap();
        assert!(runtime.state("gone").unwrap().is_none());
        // One it has state of is asked (and here the runtime cannot start).
        fs::create_dir_all(dir.path().join("state/here")).unwrap();
        assert!(runtime.delete("here").is_err());
    }

    #[test]
    fn names_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        executable(&bin.join("youki"));
        fs::write(bin.join("plain"), "").unwrap();
        executable(&bin.join("runc"));
        let path = Some(bin.as_os_str());
        assert_eq!(resolve_binary("youki", path).unwrap(), bin.join("youki"));
        assert_eq!(resolve_binary("runc", path).unwrap(), bin.join("runc"));
        let youki = bin.join("youki");
        assert_eq!(
            resolve_binary(youki.to_str().unwrap(), path).unwrap(),
            youki
        );
        for missing in ["no-such-runtime-xyz", "plain", "", "/nonexistent/runc"] {
            assert!(
                matches!(resolve_binary(missing, path), Err(RuntimeError::NotFound(ref n)) if n == missing),
                "{missing}"
            );
        }
        let plain = bin.join("plain");
        assert!(matches!(
            resolve_binary(plain.to_str().unwrap(), path),
            Err(RuntimeError::NotFound(_))
        ));
        assert!(matches!(
            resolve_binary(bin.to_str().unwrap(), path),
            Err(RuntimeError::NotFound(_))
        ));
    }

    #[test]
    fn builtin_is_a_link_to_this_executable_made_again_when_gone() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let exe = fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        // The default (no runtime configured) is the built-in runtime.
        for name in [None, Some("peapod"), Some("builtin")] {
            let rt = Runtime::resolve(name, &state).unwrap();
            assert_eq!(rt.binary, state.join(".bin").join(BUILTIN_RUNTIME));
            assert!(rt.is_builtin());
            assert_eq!(fs::read_link(&rt.binary).unwrap(), exe);
            assert_eq!(rt.state_root, state);
        }
        let rt = Runtime::resolve(Some("peapod"), &state).unwrap();
        // A reboot empties the run dir; the next command makes the link again.
        fs::remove_dir_all(&state).unwrap();
        let cmd = rt.exec_command("c1", &["true".into()], false, &[], None);
        assert_eq!(cmd.get_program(), rt.binary.as_os_str());
        assert_eq!(fs::read_link(&rt.binary).unwrap(), exe);
        let other = Runtime {
            binary: "/usr/sbin/runc".into(),
            state_root: state,
        };
        assert!(!other.is_builtin());
    }

    #[test]
    fn log_messages_are_extracted() {
        let log = r#"{"level":"warning","msg":"deprecated","time":"2024-01-01T00:00:00Z"}
{"level":"error","msg":"runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2024-01-01T00:00:00Z"}
"#;
        assert_eq!(
            runtime_messages(log),
            "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            runtime_messages("{\"level\":\"info\",\"msg\":\"a\"}\nplain text\n"),
            "a; plain text"
        );
        assert_eq!(runtime_messages(""), "");
    }

    #[test]
    fn exec_command_line() {
        let rt = Runtime {
            binary: "/usr/sbin/runc".into(),
            state_root: "/run/peapod/runc".into(),
        };
        let cmd = rt.exec_command(
            "c1",
            &["sh".into(), "-c".into(), "exit 7".into()],
            true,
            &["A=1".into(), "B=2".into()],
            Some("/tmp"),
        );
        assert_eq!(cmd.get_program(), "/usr/sbin/runc");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--root",
                "/run/peapod/runc",
                "exec",
                "-t",
                "--env",
                "A=1",
                "--env",
                "B=2",
                "--cwd",
                "/tmp",
                "c1",
                "sh",
                "-c",
                "exit 7"
            ]
        );
        let plain = rt.exec_command("c1", &["true".into()], false, &[], None);
        let args: Vec<_> = plain.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["--root", "/run/peapod/runc", "exec", "c1", "true"]);
    }
}
