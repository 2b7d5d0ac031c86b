//! The `peapod` binary: the docker-style CLI over the engine, and the hidden `monitor`
//! entry point the engine re-executes once per running container.

mod attach;
mod config;
mod cri;
mod crilog;
mod engine;
mod engine_cri;
mod fault;
mod format;
mod hostport;
mod inspect;
mod kube;
mod monitor;
mod objects;
mod plan;
mod pod;
mod pod_monitor;
mod probe;
mod pull;
mod record;
mod recover;
mod server;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};

use crate::engine::{Engine, RunOptions, UserError};
use crate::record::State;

/// Run containers and Kubernetes pods on one machine.
#[derive(Debug, Parser)]
#[command(name = "peapod", version, about)]
struct Cli {
    /// Keep all state under this directory instead of /var/lib/peapod, /run/peapod,
    /// /etc/peapod and /var/log/peapod.
    #[arg(long, global = true, env = "PEAPOD_ROOT")]
    root: Option<PathBuf>,
    /// OCI runtime to use: peapod (the built-in one, the default), a name on PATH (runc,
    /// crun, youki) or a path.
    #[arg(long, global = true, env = "PEAPOD_RUNTIME")]
    runtime: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create and start a container.
    Run(RunArgs),
    /// Create a container without starting it, or pods from manifests (`-f`).
    Create(RunArgs),
    /// Create or update pods from manifests (files, directories, or - for stdin).
    Apply {
        /// Manifest files or directories, or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Return once every container of every applied pod runs (non-zero if a pod fails).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Display pods.
    Get {
        /// Resource type: pods (pod, po).
        resource: String,
        /// Pod names.
        names: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format: wide, yaml, json, name.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Show details of a pod.
    Describe {
        /// Resource type: pod.
        resource: String,
        /// Pod names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Delete pods by name or by manifest.
    Delete {
        /// Resource type and names: `pod NAME...`.
        args: Vec<String>,
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Seconds to give the containers to stop.
        #[arg(long = "grace-period")]
        grace_period: Option<i64>,
        /// Immediate shutdown (grace period 1).
        #[arg(long)]
        now: bool,
        /// With --grace-period=0: kill at once.
        #[arg(long)]
        force: bool,
        /// Ignore pods that do not exist.
        #[arg(long)]
        ignore_not_found: bool,
        /// Every resource of the given type in the namespace.
        #[arg(long)]
        all: bool,
    },
    /// Start stopped containers.
    Start {
        /// Containers (name or id).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Containers (name or id).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Also remove the container's anonymous volumes.
        #[arg(short, long)]
        volumes: bool,
        /// Containers (name or id).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Show all containers (default shows just running).
        #[arg(short, long)]
        all: bool,
        /// Only display container ids.
        #[arg(short, long)]
        quiet: bool,
        /// Don't truncate output.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Low-level information on containers (a JSON array).
    Inspect {
        /// Containers (name or id) or images.
        #[arg(required = true)]
        objects: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a pseudo-TTY.
        #[arg(short, long)]
        tty: bool,
        /// Set environment variables.
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(short, long)]
        workdir: Option<String>,
        /// The container of a pod.
        #[arg(short = 'c', long = "container")]
        pod_container: Option<String>,
        /// Namespace of the pod.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Container (name or id) or pod.
        container: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Attach to a running container's output (and its stdin with -i), as `kubectl attach`.
    Attach {
        /// Pass stdin to the container.
        #[arg(short = 'i', long = "stdin")]
        stdin: bool,
        /// Stdin is a TTY (raw mode, resizes forwarded).
        #[arg(short, long)]
        tty: bool,
        /// The container of a pod.
        #[arg(short = 'c', long = "container")]
        pod_container: Option<String>,
        /// Namespace of the pod.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Container (name or id) or pod.
        container: String,
    },
    /// Fetch the logs of a container.
    Logs {
        /// Follow log output.
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end ("all" for every line).
        #[arg(long, default_value = "all")]
        tail: String,
        /// Show timestamps.
        #[arg(short, long)]
        timestamps: bool,
        /// The container of a pod.
        #[arg(short = 'c', long = "container")]
        pod_container: Option<String>,
        /// The previous instance of the pod's container.
        #[arg(short = 'p', long)]
        previous: bool,
        /// Namespace of the pod.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Container (name or id) or pod.
        container: String,
    },
    /// Pull an image from a registry.
    Pull {
        /// Print only the image reference.
        #[arg(short, long)]
        quiet: bool,
        /// Image reference (`busybox`, `registry:5000/x:1`, `name@sha256:…`).
        image: String,
    },
    /// Store credentials for a registry (checked by the next pull).
    Login {
        /// Username.
        #[arg(short, long)]
        username: Option<String>,
        /// Password.
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Registry (default docker.io).
        #[arg(default_value = "docker.io")]
        registry: String,
    },
    /// Remove the credentials for a registry.
    Logout {
        /// Registry (default docker.io).
        #[arg(default_value = "docker.io")]
        registry: String,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// List images (same as `image ls`).
    Images,
    /// Load images from an archive (same as `image load`).
    Load(LoadArgs),
    /// Serve the Kubernetes API (HTTPS with a token, and a root-only unix socket) for kubectl.
    Serve {
        /// Address of the HTTPS endpoint.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        /// The unix socket (default: <run>/api.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The CRI v1 gRPC socket (default: <run>/cri.sock).
        #[arg(long)]
        cri_socket: Option<PathBuf>,
        /// Address of the CRI streaming server (exec/attach/port-forward URLs); port 0 picks one.
        #[arg(long, default_value = "127.0.0.1:0")]
        cri_streaming: std::net::SocketAddr,
    },
    /// Print a kubeconfig for `peapod serve` (its CA and token).
    Kubeconfig {
        /// The server URL.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
    },
    /// Internal: the per-pod monitor.
    #[command(hide = true, name = "pod-monitor")]
    PodMonitor {
        /// Pod uid.
        uid: String,
        /// Keep stdout after the start report: a line each time the pod's records change.
        #[arg(long)]
        report_changes: bool,
    },
    /// Internal: a pod's infra process.
    #[command(hide = true)]
    Infra {
        /// The pod's pinned network namespace.
        #[arg(long)]
        netns: Option<PathBuf>,
        /// The pod's hostname.
        #[arg(long)]
        hostname: String,
        /// Give the pod a shared pid namespace (shareProcessNamespace).
        #[arg(long)]
        share_pid: bool,
        /// Run as the init of the pod's pid namespace.
        #[arg(long)]
        pid1: bool,
    },
    /// Internal: the per-container monitor.
    #[command(hide = true)]
    Monitor {
        /// The CLI stays attached and removes the container itself.
        #[arg(long)]
        attached: bool,
        /// Container id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCmd {
    /// Load images from an OCI or `docker save` archive.
    Load(LoadArgs),
    /// Remove unused images and unreferenced layers.
    Prune {
        /// Every image no container uses, not only untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (peapod never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// Pull an image from a registry.
    Pull {
        /// Print only the image reference.
        #[arg(short, long)]
        quiet: bool,
        /// Image reference.
        image: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images.
    #[command(alias = "remove")]
    Rm {
        /// Remove even if a container uses it.
        #[arg(short, long)]
        force: bool,
        /// Images (reference or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Display detailed information on images.
    Inspect {
        /// Images (reference or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Archive file (OCI layout or `docker save`; plain, gzip or zstd).
    #[arg(short, long)]
    input: PathBuf,
    /// Print only the loaded image references.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Assign a name.
    #[arg(long)]
    name: Option<String>,
    /// Network: bridge (default), none, host or container:NAME|ID.
    #[arg(long = "network", alias = "net", default_value = "bridge")]
    network: String,
    /// Mount the volumes of another container.
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Bind mount or volume: [SOURCE:]DEST[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|udp].
    #[arg(short, long = "publish")]
    publish: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Overwrite the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short, long)]
    user: Option<String>,
    /// Container host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Pod manifests (create only).
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// Image.
    image: Option<String>,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            name: self.name.clone(),
            image: self.image.clone().unwrap_or_default(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            network: self.network.clone(),
            volumes: self.volumes.clone(),
            volumes_from: self.volumes_from.clone(),
            publish: self.publish.clone(),
            runtime: None,
        }
    }
}

fn main() -> ExitCode {
    // Run as the built-in OCI runtime before anything could start a thread (libcontainer
    // must own a single-threaded process).
    let mut args = std::env::args_os();
    if let Some(argv0) = args.next() {
        if std::path::Path::new(&argv0).file_name()
            == Some(std::ffi::OsStr::new(peapod_runtime::ARGV0))
        {
            let code = peapod_runtime::main(std::iter::once(argv0).chain(args).collect());
            return ExitCode::from(code.clamp(0, 255) as u8);
        }
    }
    let cli = Cli::parse();
    // A pod monitor lives as long as its pod: it runs from here rather than from
    // `dispatch`, whose frame (every command's locals, ~40 KiB) would stay resident on its
    // stack all that time.
    if let Cmd::PodMonitor {
        uid,
        report_changes,
    } = &cli.command
    {
        return match run_pod_monitor(cli.root.clone(), cli.runtime.clone(), uid, *report_changes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(125),
        };
    }
    let is_monitor = matches!(
        cli.command,
        Cmd::Monitor { .. } | Cmd::PodMonitor { .. } | Cmd::Infra { .. }
    );
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            if !is_monitor {
                eprintln!("Error: {e:#}");
            }
            let code = e.downcast_ref::<UserError>().map_or(125, |u| u.code);
            ExitCode::from(code.clamp(1, 255) as u8)
        }
    }
}

#[inline(never)]
fn run_pod_monitor(
    root: Option<std::path::PathBuf>,
    runtime: Option<String>,
    uid: &str,
    report_changes: bool,
) -> Result<()> {
    let engine = Engine::new(root, runtime)?;
    pod_monitor::run(&engine, uid, report_changes)
}

/// Whether a command reads or changes pods or containers, so recovery runs before it
/// (not for the processes peapod re-executes, image commands or `serve`, which runs it
/// itself).
fn touches_pods_or_containers(cmd: &Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Serve { .. }
            | Cmd::Kubeconfig { .. }
            | Cmd::Monitor { .. }
            | Cmd::PodMonitor { .. }
            | Cmd::Infra { .. }
            | Cmd::Pull { .. }
            | Cmd::Login { .. }
            | Cmd::Logout { .. }
            | Cmd::Image(_)
            | Cmd::Images
            | Cmd::Load(_)
    )
}

fn dispatch(cli: Cli) -> Result<i32> {
    let mut engine = Engine::new(cli.root.clone(), cli.runtime.clone())?;
    // Commands that start containers or processes in them: the kernel's wait before the
    // first cgroup migration passes while this command does its own work.
    let _warm = matches!(cli.command, Cmd::Apply { .. } | Cmd::Exec { .. }).then(|| {
        peapod_oci::cgroups::MigrationWarmer::start(
            Duration::from_secs(1),
            Some(&engine.warm_lock()),
        )
    });
    if let Cmd::Apply { wait: true, .. } = &cli.command {
        engine.monitor_reports = Some(Default::default());
    }
    if touches_pods_or_containers(&cli.command) {
        recover::before_command(&engine);
    }
    let mut out = io::stdout().lock();
    match cli.command {
        Cmd::Serve {
            listen,
            socket,
            cri_socket,
            cri_streaming,
        } => {
            drop(out);
            // Recovery at start-up and then every 10 s, beside the server.
            let recovering = Engine::new(cli.root.clone(), cli.runtime.clone())?;
            std::thread::spawn(move || loop {
                recover::before_command(&recovering);
                std::thread::sleep(Duration::from_secs(10));
            });
            server::serve(
                engine,
                server::ServeOptions {
                    listen,
                    socket,
                    cri_socket,
                    cri_streaming,
                },
            )?;
            Ok(0)
        }
        Cmd::Kubeconfig { server } => {
            write!(out, "{}", server::kubeconfig(&engine.paths.etc, &server)?)?;
            Ok(0)
        }
        Cmd::Monitor { id, attached } => {
            drop(out);
            monitor::run(&engine, &id, attached)?;
            Ok(0)
        }
        Cmd::PodMonitor {
            uid,
            report_changes,
        } => {
            drop(out);
            pod_monitor::run(&engine, &uid, report_changes)?;
            Ok(0)
        }
        Cmd::Infra {
            netns,
            hostname,
            share_pid,
            pid1,
        } => {
            drop(out);
            if pid1 {
                peapod_infra::run_pid1()?;
            } else {
                let exe = engine::self_exe();
                let exe = exe.to_string_lossy();
                let pid1 = [exe.as_ref(), "infra", "--pid1", "--hostname", &hostname];
                peapod_infra::run(netns.as_deref(), &hostname, share_pid, &pid1)?;
            }
            Ok(0)
        }
        Cmd::Apply {
            files,
            wait,
            timeout,
        } => {
            let code = kube::apply(&engine, &files, false, &mut out)?;
            if code != 0 || !wait {
                return Ok(code);
            }
            kube::wait_running(&engine, &files, Duration::from_secs(timeout))
        }
        Cmd::Create(args) if !args.files.is_empty() => {
            kube::apply(&engine, &args.files, true, &mut out)
        }
        Cmd::Get {
            resource,
            names,
            namespace,
            all_namespaces,
            output,
        } => kube::get(
            &engine,
            &resource,
            &names,
            &namespace,
            all_namespaces,
            output.as_deref(),
            &mut out,
        ),
        Cmd::Describe {
            resource,
            names,
            namespace,
        } => kube::describe(&engine, &resource, &names, &namespace, &mut out),
        Cmd::Delete {
            args,
            files,
            namespace,
            grace_period,
            now,
            force,
            ignore_not_found,
            all,
        } => {
            let grace = if now {
                Some(1)
            } else if force && grace_period.is_none() {
                Some(0)
            } else {
                grace_period
            };
            kube::delete(
                &engine,
                &kube::DeleteTargets {
                    args: &args,
                    files: &files,
                    all,
                },
                &namespace,
                grace,
                ignore_not_found,
                &mut out,
            )
        }
        Cmd::Create(args) => {
            require_image(&args)?;
            let c = engine.create(&args.options())?;
            writeln!(out, "{}", c.id)?;
            Ok(0)
        }
        Cmd::Run(args) => run(&engine, &args, &mut out),
        Cmd::Start { containers } => {
            let mut failed = 0;
            for name in containers {
                match engine.find(&name).and_then(|c| engine.start(&c, false)) {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Cmd::Stop { time, containers } => {
            let mut failed = 0;
            for name in containers {
                match engine
                    .find(&name)
                    .and_then(|c| engine.stop(&c, Duration::from_secs(time)))
                {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Cmd::Rm {
            force,
            volumes,
            containers,
        } => {
            let mut failed = 0;
            for name in containers {
                match engine
                    .find(&name)
                    .and_then(|c| engine.remove(&c, force, volumes))
                {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Cmd::Ps {
            all,
            quiet,
            no_trunc,
        } => {
            ps(&engine, all, quiet, no_trunc, &mut out)?;
            Ok(0)
        }
        Cmd::Inspect { objects } => {
            let mut docs = Vec::new();
            let mut missing = Vec::new();
            for o in &objects {
                match engine.find(o) {
                    Ok(c) => docs.push(inspect::container(&engine, &c)),
                    Err(_) => match engine.images().and_then(|s| Ok(s.resolve(o)?)) {
                        Ok(img) => docs.push(inspect::image(&engine, &img)?),
                        Err(_) => missing.push(o.clone()),
                    },
                }
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
            for m in &missing {
                eprintln!("Error: No such object: {m}");
            }
            Ok(if missing.is_empty() { 0 } else { 1 })
        }
        Cmd::Exec {
            interactive,
            tty,
            env,
            workdir,
            pod_container,
            namespace,
            container,
            command,
        } => {
            let c = kube::container_or_pod_container(
                &engine,
                &namespace,
                &container,
                pod_container.as_deref(),
                false,
            )?;
            drop(out);
            engine.exec(&c, &command, tty, interactive, &env, workdir.as_deref())
        }
        Cmd::Attach {
            stdin,
            tty,
            pod_container,
            namespace,
            container,
        } => {
            let c = kube::container_or_pod_container(
                &engine,
                &namespace,
                &container,
                pod_container.as_deref(),
                false,
            )?;
            drop(out);
            attach::attach(&engine, &c, stdin, tty)
        }
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            pod_container,
            previous,
            namespace,
            container,
        } => {
            let c = kube::container_or_pod_container(
                &engine,
                &namespace,
                &container,
                pod_container.as_deref(),
                previous,
            )?;
            let tail = match tail.as_str() {
                "all" => None,
                n => Some(n.parse::<usize>().map_err(|_| {
                    engine::user_error(format!(
                        "invalid --tail {n:?}: expected a number or \"all\""
                    ))
                })?),
            };
            drop(out);
            logs(&engine, &c.config.id, follow, tail, timestamps)?;
            Ok(0)
        }
        Cmd::Pull { quiet, image } | Cmd::Image(ImageCmd::Pull { quiet, image }) => {
            pull::pull(&engine, &image, quiet, &mut out)
        }
        Cmd::Image(ImageCmd::Load(args)) | Cmd::Load(args) => load(&engine, &args, &mut out),
        Cmd::Image(ImageCmd::Prune { all, force: _ }) => pull::prune(&engine, all, &mut out),
        Cmd::Login {
            username,
            password,
            password_stdin,
            registry,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_to_string(&mut p)
                    .context("reading the password from stdin")?;
                p.trim_end_matches(['\n', '\r']).to_string()
            } else {
                password.unwrap_or_default()
            };
            pull::login(
                &registry,
                &username.unwrap_or_default(),
                &password,
                &mut out,
            )
        }
        Cmd::Logout { registry } => pull::logout(&registry, &mut out),
        Cmd::Image(ImageCmd::Ls) | Cmd::Images => {
            images(&engine, &mut out)?;
            Ok(0)
        }
        Cmd::Image(ImageCmd::Rm { force, images }) => {
            let store = engine.images()?;
            let in_use: Vec<String> = engine
                .list()?
                .into_iter()
                .map(|c| c.config.image_id)
                .collect();
            let mut failed = 0;
            for i in images {
                match store.remove(&i, &in_use, force) {
                    Ok(lines) => {
                        for l in lines {
                            writeln!(out, "{l}")?;
                        }
                    }
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Cmd::Image(ImageCmd::Inspect { images }) => {
            let store = engine.images()?;
            let mut docs = Vec::new();
            let mut missing = Vec::new();
            for i in &images {
                match store.resolve(i) {
                    Ok(img) => docs.push(inspect::image(&engine, &img)?),
                    Err(e) => missing.push(e.to_string()),
                }
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
            for m in &missing {
                eprintln!("Error: {m}");
            }
            Ok(if missing.is_empty() { 0 } else { 1 })
        }
    }
}

fn require_image(args: &RunArgs) -> Result<()> {
    if args.image.is_none() {
        anyhow::bail!(engine::user_error(
            "\"peapod run\" requires at least 1 argument: IMAGE [COMMAND] [ARG...]"
        ));
    }
    Ok(())
}

fn run(engine: &Engine, args: &RunArgs, out: &mut impl Write) -> Result<i32> {
    require_image(args)?;
    let config = engine.create(&args.options())?;
    let c = engine.reload(&config.id)?;
    if let Err(e) = engine.start(&c, !args.detach) {
        if args.rm {
            let _ = engine.teardown(&config, true);
        }
        return Err(e);
    }
    if args.detach {
        writeln!(out, "{}", config.id)?;
        return Ok(0);
    }
    // Foreground: attached to the monitor before the container starts (stdin with -i, the
    // terminal with -t), until the container exits; then its exit code is ours.
    let socket = attach::socket_path(&engine.paths.run, &config.id);
    let stream = std::os::unix::net::UnixStream::connect(&socket)
        .with_context(|| format!("attaching to container {}", config.name))?;
    let sent = attach::run_client(stream, args.interactive, args.tty)
        .with_context(|| format!("attached to container {}", config.name))?;
    // The monitor has recorded the exit once it lets go of its lock.
    engine::wait_until(Duration::from_secs(10), || {
        !peapod_store::Lock::is_held(&engine.container_dir(&config.id).join("monitor.lock"))
            .unwrap_or(false)
    });
    let done = engine.reload(&config.id)?;
    let code = match (sent, &done.state) {
        (_, State::Exited { code, .. }) => *code,
        (Some(code), _) => code,
        _ => 125,
    };
    if args.rm {
        engine.remove(&done, true, true)?;
    }
    Ok(code)
}
fn ps(engine: &Engine, all: bool, quiet: bool, no_trunc: bool, out: &mut impl Write) -> Result<()> {
    let now = Utc::now();
    let containers: Vec<_> = engine
        .list()?
        .into_iter()
        .filter(|c| all || matches!(c.state, State::Running { .. }))
        .collect();
    if quiet {
        for c in containers {
            writeln!(
                out,
                "{}",
                if no_trunc {
                    &c.config.id[..]
                } else {
                    &c.config.id[..12]
                }
            )?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let ports = c
                .config
                .ports
                .iter()
                .map(|p| {
                    let proto = p.protocol;
                    format!(
                        "{}:{}->{}/{proto}",
                        p.host_ip, p.host_port, p.container_port
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                if no_trunc {
                    c.config.id.clone()
                } else {
                    c.config.id[..12].to_string()
                },
                c.config.image.clone(),
                if no_trunc {
                    format!("\"{}\"", c.config.args.join(" "))
                } else {
                    format::command_column(&c.config.args)
                },
                format::ago(c.config.created, now),
                c.state.ps_status(now),
                ports,
                c.config.name.clone(),
            ]
        })
        .collect();
    format::table(
        out,
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    )?;
    Ok(())
}

fn load(engine: &Engine, args: &LoadArgs, out: &mut impl Write) -> Result<i32> {
    let store = engine.images()?;
    let loaded = store
        .load(&args.input)
        .with_context(|| format!("loading {}", args.input.display()))?;
    for img in loaded {
        if img.references.is_empty() {
            writeln!(out, "Loaded image ID: {}", img.id)?;
        }
        for r in img.references {
            let shown = peapod_image::Reference::parse(&r)
                .map(|p| {
                    format!(
                        "{}:{}",
                        p.familiar_repository(),
                        p.tag.unwrap_or_else(|| "latest".into())
                    )
                })
                .unwrap_or(r);
            writeln!(out, "Loaded image: {shown}")?;
        }
    }
    let _ = args.quiet;
    Ok(0)
}

fn images(engine: &Engine, out: &mut impl Write) -> Result<()> {
    let store = engine.images()?;
    let now = Utc::now();
    let mut rows = Vec::new();
    for img in store.list()? {
        let id = img.id.trim_start_matches("sha256:");
        let created = img
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|c| format::ago(c.with_timezone(&Utc), now))
            .unwrap_or_else(|| "N/A".into());
        let size = format::human_size(img.size);
        let refs: Vec<(String, String)> = img
            .repo_tags
            .iter()
            .filter_map(|r| peapod_image::Reference::parse(r).ok())
            .map(|r| {
                (
                    r.familiar_repository(),
                    r.tag.unwrap_or_else(|| "<none>".into()),
                )
            })
            .collect();
        if refs.is_empty() {
            rows.push(vec![
                "<none>".into(),
                "<none>".into(),
                id[..12].to_string(),
                created.clone(),
                size.clone(),
            ]);
        }
        for (repo, tag) in refs {
            rows.push(vec![
                repo,
                tag,
                id[..12].to_string(),
                created.clone(),
                size.clone(),
            ]);
        }
    }
    format::table(
        out,
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        &rows,
    )?;
    Ok(())
}

/// Prints a container's log; with `follow`, keeps printing until the container stopped.
pub(crate) fn logs(
    engine: &Engine,
    id: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<()> {
    let path = engine.log_path(&engine.reload(id)?.config);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let mut pending: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        if file.is_none() {
            file = std::fs::File::open(&path).ok();
        }
        let mut chunk = Vec::new();
        if let Some(f) = file.as_mut() {
            f.read_to_end(&mut chunk)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        pending.extend_from_slice(&chunk);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let lines: Vec<Vec<u8>> = pending
            .drain(..complete)
            .collect::<Vec<u8>>()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let skip = match (first, tail) {
            (true, Some(n)) => lines.len().saturating_sub(n),
            _ => 0,
        };
        first = false;
        for line in &lines[skip..] {
            let Some(rec) = crilog::parse_record(line) else {
                continue;
            };
            let w: &mut dyn Write = match rec.stream {
                crilog::Stream::Stdout => &mut stdout,
                crilog::Stream::Stderr => &mut stderr,
            };
            if timestamps {
                write!(w, "{} ", rec.time)?;
            }
            w.write_all(rec.content)?;
            if rec.full {
                w.write_all(b"\n")?;
            }
        }
        stdout.flush()?;
        if !follow {
            return Ok(());
        }
        let c = engine.reload(id)?;
        let monitor_done =
            !peapod_store::Lock::is_held(&engine.container_dir(id).join("monitor.lock"))?;
        if !matches!(c.state, State::Running { .. }) && monitor_done {
            // One last read picks up what the monitor wrote before it finished.
            let mut rest = Vec::new();
            if let Some(f) = file.as_mut() {
                f.read_to_end(&mut rest)?;
                if rest.is_empty() {
                    return Ok(());
                }
                f.seek(SeekFrom::Current(-(rest.len() as i64)))?;
                continue;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing flags (e.g. docker's `logs -n` vs kubectl's `-n NAMESPACE`).
        super::Cli::command().debug_assert();
    }
}
