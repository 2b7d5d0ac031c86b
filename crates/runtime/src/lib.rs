//! peapod's built-in OCI runtime: the peapod binary re-executed as `peapod-runtime` (its
//! argv[0]), speaking the subset of runc's command line that `peapod_oci::runtime` drives —
//! `create`, `start`, `state`, `kill`, `delete`, `exec`, `update` and the global `--root`, `--log`,
//! `--log-format` — with runc's semantics and exit codes, on youki's `libcontainer`.
//!
//! It owns one short-lived process per command and nothing else: no daemon, and no
//! threads but one `create` starts once libcontainer is done, to set the mounts'
//! propagation in the container.
//! `libcontainer` changes the working directory process-wide and forks with raw `clone3`,
//! so [`main`] must be entered before anything in the process could have started a thread
//! (the binary dispatches here first thing in `main`). It never builds specs (the bundle's
//! `config.json` is read as it is) and never writes peapod's own records.

mod cgroups;
mod commands;
mod console;
pub mod seccomp;
mod state;
mod update;
mod workload;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use state::Status;

/// The file name (argv[0]) under which the peapod binary acts as this runtime.
pub const ARGV0: &str = peapod_oci::runtime::BUILTIN_RUNTIME;

/// The state root when `--root` is not given.
const DEFAULT_ROOT: &str = "/run/peapod/runtime";

/// Errors of the runtime's commands; the message is what runc users are used to reading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state root has no directory for the id.
    #[error("container {0} does not exist")]
    NotExist(String),
    /// `create` of an id whose state directory exists.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// The container is not in a status that allows the command.
    #[error("cannot {command} container {id}: container is {status}")]
    Status {
        /// The command refused.
        command: &'static str,
        /// The container.
        id: String,
        /// Its status now.
        status: Status,
    },
    /// `kill` of a container whose init has exited.
    #[error("container not running")]
    NotRunning,
    /// A signal that is neither a number nor a signal name.
    #[error("unknown signal {0:?}")]
    BadSignal(String),
    /// An invalid container id.
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.', not first '.'"
    )]
    BadId(String),
    /// `update --resources` is not an OCI `LinuxResources` JSON object.
    #[error("invalid --resources: {0}")]
    BadResources(String),
    /// A `--env` value without `=`.
    #[error("invalid --env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    /// A command line the runtime does not take.
    #[error("{0}")]
    Usage(String),
    /// `libcontainer` failed; `context` says at what.
    #[error("{context}: {}", chain(source))]
    Container {
        /// What was being done.
        context: String,
        /// The library's error.
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
    /// The cgroup of the container could not be read or signalled.
    #[error("{context}: {message}")]
    Cgroup {
        /// What was being done.
        context: String,
        /// The cgroup library's error chain.
        message: String,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// The call.
        op: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// A mount's propagation option could not be applied.
    #[error("setting the propagation of mount {}: {source}", destination.display())]
    Propagation {
        /// The mount's destination in the container.
        destination: PathBuf,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// An operation failed, and so did undoing what it had made.
    #[error("{error} (and removing the container failed: {cleanup})")]
    Rollback {
        /// The operation's error.
        error: Box<Error>,
        /// The clean-up's error.
        cleanup: Box<Error>,
    },
    /// libseccomp failed compiling the container's seccomp profile.
    #[error("{context}: {source}")]
    Seccomp {
        /// What was being done.
        context: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// The seccomp profile has a value libseccomp cannot take.
    #[error("invalid seccomp profile: {message}")]
    SeccompProfile {
        /// What is wrong.
        message: String,
    },
    /// The bundle's config.json could not be read or the process file written.
    #[error("{context}: {source}")]
    Spec {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: libcontainer::oci_spec::OciSpecError,
    },
}

impl Error {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    fn sys(op: &'static str, source: nix::Error) -> Self {
        Self::Sys { op, source }
    }

    fn seccomp(context: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> Self {
        let context = context.into();
        move |source| Self::Seccomp { context, source }
    }

    fn container(
        context: impl Into<String>,
    ) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Self {
        let context = context.into();
        move |source| Self::Container { context, source }
    }
}

/// An error and its sources joined with ": ", skipping sources whose text the previous one
/// already contains (thiserror's `transparent` repeats them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Debug, Parser)]
#[command(
    name = "peapod-runtime",
    version,
    about = "peapod's built-in OCI runtime (runc's command line)"
)]
struct Cli {
    /// The state directory.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Where to write error messages (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// The format of error messages.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Accepted for runc compatibility; has no effect.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `create` and `run` take.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Where to write the init process's pid.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (needs `process.terminal`).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Passes N descriptors after stdio to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// The container id.
    id: String,
}

impl CreateArgs {
    fn options<'a>(&'a self, root: &'a std::path::Path) -> commands::CreateOptions<'a> {
        commands::CreateOptions {
            root,
            id: &self.id,
            bundle: &self.bundle,
            pid_file: self.pid_file.as_deref(),
            console_socket: self.console_socket.as_deref(),
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a container from a bundle; its process waits for `start`.
    Create(#[command(flatten)] CreateArgs),
    /// `create` then `start` in one process (`--detach` only, as runc's `run -d`): the
    /// runtime returns once the container's process runs.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Returns once the process runs (the only mode: the runtime is not a supervisor).
        #[arg(short, long)]
        detach: bool,
    },
    /// Runs the user process of a created container.
    Start {
        /// The container id.
        id: String,
    },
    /// Prints the container's state (JSON).
    State {
        /// The container id.
        id: String,
    },
    /// Sends a signal to the container's init (or, with --all, to all its processes).
    Kill {
        /// Signal every process of the container's cgroup.
        #[arg(short, long)]
        all: bool,
        /// The container id.
        id: String,
        /// A signal number or name (default SIGTERM).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Deletes a stopped (or, with --force, any) container.
    Delete {
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// Runs a new process inside a running container.
    Exec {
        /// Allocate a pty for the process.
        #[arg(short, long)]
        tty: bool,
        /// Do not wait for the process.
        #[arg(short, long)]
        detach: bool,
        /// Sets an environment variable (KEY=VALUE); repeatable.
        #[arg(short, long)]
        env: Vec<String>,
        /// The working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// Where to write the process's pid.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// With --tty and --detach, a unix socket that receives the pty master.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// The container id.
        id: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Sets new cgroup limits of a created or running container.
    Update {
        /// A file with the OCI LinuxResources JSON, or `-` for stdin.
        #[arg(short, long)]
        resources: PathBuf,
        /// The container id.
        id: String,
    },
}

/// Runs one runtime command with `args` (argv, including argv[0]) and returns the process's
/// exit code: 0, 1 on error (runc's), or for a foreground `exec` the process's status.
///
/// Must run in a single-threaded process (see the crate documentation).
pub fn main(args: Vec<OsString>) -> i32 {
    // The container's processes inherit these through execve: give them runc's clean slate.
    peapod_sys::reset_signals();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let log = Log {
        path: cli.log.clone(),
        format: cli.log_format,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&e.to_string());
            1
        }
    }
}

fn run(cli: Cli) -> Result<i32, Error> {
    let root = cli.root;
    match cli.command {
        Command::Create(args) => commands::create(&args.options(&root)).map(|()| 0),
        Command::Run { create, detach } => {
            if !detach {
                return Err(Error::Usage(
                    "run needs --detach: the built-in runtime does not stay to supervise the container".into(),
                ));
            }
            commands::create(&create.options(&root))?;
            if let Err(e) = commands::start(&root, &create.id) {
                // As runc: a container that could not start does not stay created.
                let _ = commands::delete(&root, &create.id, true);
                return Err(e);
            }
            Ok(0)
        }
        Command::Start { id } => commands::start(&root, &id).map(|()| 0),
        Command::State { id } => {
            let doc = commands::state(&root, &id)?;
            let mut out = std::io::stdout().lock();
            let text = serde_json::to_string_pretty(&doc).expect("a state document serializes");
            let _ = writeln!(out, "{text}");
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let signal = parse_signal(&signal)?;
            commands::kill(&root, &id, signal, all).map(|()| 0)
        }
        Command::Delete { force, id } => commands::delete(&root, &id, force).map(|()| 0),
        Command::Exec {
            tty,
            detach,
            env,
            cwd,
            pid_file,
            console_socket,
            id,
            command,
        } => commands::exec(&commands::ExecOptions {
            root: &root,
            id: &id,
            args: command,
            tty,
            detach,
            env,
            cwd,
            pid_file: pid_file.as_deref(),
            console_socket: console_socket.as_deref(),
        }),
        Command::Update { resources, id } => update::update(&root, &id, &resources).map(|()| 0),
    }
}

/// A signal number, or a name with or without the `SIG` prefix (runc accepts both).
fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, Error> {
    use std::str::FromStr;
    let bad = || Error::BadSignal(s.to_owned());
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

/// Where and how error messages go: runc's logrus text or JSON lines, to `--log` or stderr.
struct Log {
    path: Option<PathBuf>,
    format: LogFormat,
}

impl Log {
    fn error(&self, msg: &str) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level=error msg={msg:?}"),
        };
        let written = self.path.as_ref().is_some_and(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| writeln!(f, "{line}"))
                .is_ok()
        });
        if !written {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use std::path::Path;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        for bad in ["", "0x9", "SIGNOPE", "999", "-1"] {
            assert!(
                matches!(parse_signal(bad), Err(Error::BadSignal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn runc_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "peapod-runtime",
            "--root",
            "/r",
            "--log-format",
            "json",
            "--log",
            "/b/log.json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/pid",
            "--console-socket",
            "/s.sock",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.root, PathBuf::from("/r"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(matches!(cli.command, Command::Create(ref a) if a.id == "c1"));

        let cli = Cli::try_parse_from([
            "peapod-runtime",
            "--root",
            "/r",
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
            "exit 7",
        ])
        .unwrap();
        match cli.command {
            Command::Exec {
                tty,
                env,
                cwd,
                id,
                command,
                ..
            } => {
                assert!(tty);
                assert_eq!(env, ["A=1", "B=2"]);
                assert_eq!(cwd.as_deref(), Some("/tmp"));
                assert_eq!(id, "c1");
                assert_eq!(command, ["sh", "-c", "exit 7"]);
            }
            other => panic!("{other:?}"),
        }

        let cli =
            Cli::try_parse_from(["peapod-runtime", "--root", "/r", "kill", "--all", "c1", "9"])
                .unwrap();
        assert!(
            matches!(cli.command, Command::Kill { all: true, ref id, ref signal } if id == "c1" && signal == "9")
        );

        // peapod_oci's Runtime::update.
        let cli = Cli::try_parse_from([
            "peapod-runtime",
            "--root",
            "/r",
            "update",
            "--resources",
            "-",
            "c1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Update { ref resources, ref id } if resources == Path::new("-") && id == "c1")
        );
        let cli = Cli::try_parse_from(["peapod-runtime", "delete", "--force", "c1"]).unwrap();
        assert_eq!(cli.root, PathBuf::from(DEFAULT_ROOT));
        assert!(matches!(cli.command, Command::Delete { force: true, .. }));
        assert!(Cli::try_parse_from(["peapod-runtime", "exec", "c1"]).is_err());
        // runc's `run -d`: create and start in one process.
        let cli = Cli::try_parse_from([
            "peapod-runtime",
            "run",
            "-d",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Run { detach: true, ref create } if create.bundle == Path::new("/b") && create.id == "c1"
        ));
        // Without --detach the runtime would have to supervise: refused, before anything.
        let cli =
            Cli::try_parse_from(["peapod-runtime", "--root", "/nonexistent", "run", "c1"]).unwrap();
        let err = run(cli).unwrap_err();
        assert!(err.to_string().contains("run needs --detach"), "{err}");
    }

    #[test]
    fn error_chains_skip_repeats() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::io("open", "/x", inner);
        assert_eq!(chain(&e), "open /x: no such file");
    }
}
