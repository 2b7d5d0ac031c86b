//! The container engine: turns `run`/`start`/`stop`/`rm` into images, rootfs mounts,
//! namespaces, network attachments, OCI bundles and monitor processes, and tears them down
//! again. The CLI and (later) the API server are fronts over this one engine.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use peapod_image::ImageStore;
use peapod_oci::cgroups::{self, CgroupLayout};
use peapod_oci::runtime::Runtime;
use peapod_oci::{
    BindMount, ContainerPlan, ImageProcess, Namespace, Namespaces, ProcessOverrides, Seccomp,
};
use peapod_sandbox::ports::PortMapping;
use peapod_sandbox::{netns, PodNetwork};
use peapod_store::{Lock, Paths};

use crate::config::Config;
use crate::record::{
    derive_state, ContainerConfig, ContainerStatus, MountRecord, NetworkMode, Observed, Phase,
    State,
};

/// A user-facing error with the exit code the CLI should use (Docker's: 125 for engine
/// errors, 126/127 when the command cannot be run).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What to print.
    pub message: String,
    /// Exit code.
    pub code: i32,
}

/// Fails with a Docker-style message and exit code 1.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    UserError {
        message: message.into(),
        code: 1,
    }
    .into()
}

/// What `run`/`create` take.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--name`.
    pub name: Option<String>,
    /// Image reference or id.
    pub image: String,
    /// Arguments after the image.
    pub cmd: Vec<String>,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `-e`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--network`.
    pub network: String,
    /// `-v`.
    pub volumes: Vec<String>,
    /// `--volumes-from`.
    pub volumes_from: Vec<String>,
    /// `-p`.
    pub publish: Vec<String>,
    /// `--runtime` for this container.
    pub runtime: Option<String>,
}

/// One container as stored, with its derived state.
#[derive(Debug, Clone)]
pub struct Container {
    /// What was asked and made.
    pub config: ContainerConfig,
    /// What the monitor recorded.
    pub status: Option<ContainerStatus>,
    /// The state derived now.
    pub state: State,
}

/// The engine over one set of paths.
#[derive(Debug)]
pub struct Engine {
    /// All directories.
    pub paths: Paths,
    /// The `--root` given, passed on to monitors.
    pub root: Option<PathBuf>,
    /// config.toml.
    pub config: Config,
    /// `--runtime` given on the command line.
    pub runtime_override: Option<String>,
    /// When set (`apply --wait`), the pod monitors this process starts keep reporting
    /// (`--report-changes`: a line on their stdout each time their pod's records change)
    /// and their pipes are kept here by pod uid, so that the wait needs no inotify watch
    /// (whose teardown at exit waits for an SRCU grace period: 7-17 ms).
    pub monitor_reports: Option<std::sync::Mutex<Vec<(String, std::process::ChildStdout)>>>,
}

impl Engine {
    /// Opens the engine with `root` (None: system paths) and loads config.toml.
    pub fn new(root: Option<PathBuf>, runtime_override: Option<String>) -> Result<Self> {
        let paths = match &root {
            Some(r) => Paths::under(r),
            None => Paths::system(),
        };
        let config = Config::load(&paths.config_file())?;
        Ok(Self {
            paths,
            root,
            config,
            runtime_override,
            monitor_reports: None,
        })
    }

    /// The image store.
    pub fn images(&self) -> Result<ImageStore> {
        ImageStore::open(&self.paths.images())
            .with_context(|| format!("opening the image store {}", self.paths.images().display()))
    }

    pub(crate) fn network(&self) -> PodNetwork {
        PodNetwork::new(
            &self.paths.network(),
            &self.paths.cni_conf_dir(),
            self.config.network.clone(),
        )
    }

    pub(crate) fn runtime_of(&self, cfg: &ContainerConfig) -> Runtime {
        Runtime {
            binary: cfg.runtime.clone(),
            state_root: self.paths.runtime_state(),
        }
    }

    /// The directory of one container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.paths.containers().join(id)
    }

    /// The log file of one container.
    pub fn log_path(&self, config: &ContainerConfig) -> PathBuf {
        config.log_path.clone().unwrap_or_else(|| {
            self.paths
                .log
                .join("containers")
                .join(format!("{}.log", config.id))
        })
    }

    /// The lock file by which this root's cgroup migration warmers take turns.
    pub fn warm_lock(&self) -> PathBuf {
        self.paths.run.join("cgroup-warm.lock")
    }

    pub(crate) fn global_lock(&self) -> Result<Lock> {
        Ok(Lock::exclusive(&self.paths.lib.join("containers.lock"))?)
    }

    /// Claims `name` for container `id` in the name index (`lib/names/<name>` holds the id),
    /// so creating a container never reads every record. Returns the id already holding the
    /// name, if a live container does; a claim left by a creation that never committed is
    /// taken over. Called under the global lock.
    fn claim_name(&self, name: &str, id: &str) -> Result<Option<String>> {
        let dir = self.paths.lib.join("names");
        peapod_store::create_dir_all(&dir)?;
        let path = dir.join(name);
        if let Ok(holder) = fs::read_to_string(&path) {
            let holder = holder.trim().to_string();
            if holder != id && self.container_dir(&holder).join("container.json").exists() {
                return Ok(Some(holder));
            }
        }
        peapod_store::atomic_write(&path, id.as_bytes())?;
        Ok(None)
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let dir = self.paths.containers();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            if id.starts_with('.') {
                continue;
            }
            if let Some(c) = self.load(id)? {
                out.push(c);
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.config.created));
        Ok(out)
    }

    /// Loads one container by full id, reconciling a status nobody can record any more.
    fn load(&self, id: &str) -> Result<Option<Container>> {
        let dir = self.container_dir(id);
        let Some(config) = peapod_store::read_json::<ContainerConfig>(&dir.join("container.json"))?
        else {
            return Ok(None);
        };
        let status_path = dir.join("status.json");
        let mut status = peapod_store::read_json::<ContainerStatus>(&status_path)?;
        let observed = Observed {
            process_alive: status
                .as_ref()
                .is_some_and(|s| s.pid > 0 && proc_start_time(s.pid) == Some(s.pid_start)),
            monitor_alive: Lock::is_held(&dir.join("monitor.lock"))?,
        };
        let now = Utc::now();
        let (state, reconcile) = derive_state(status.as_ref(), observed, now);
        if reconcile {
            if let Some(st) = status.as_mut() {
                st.exit_code = Some(255);
                st.finished_at = Some(now);
                st.error = Some("the container's monitor died; its exit status is unknown".into());
                peapod_store::replace_json(&status_path, st)?;
            }
        }
        Ok(Some(Container {
            config,
            status,
            state,
        }))
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn find(&self, name_or_id: &str) -> Result<Container> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| {
            c.config.id == name_or_id || c.config.name == name_or_id.trim_start_matches('/')
        }) {
            return Ok(c.clone());
        }
        let matches: Vec<_> = if name_or_id.is_empty() {
            Vec::new()
        } else {
            all.iter()
                .filter(|c| c.config.id.starts_with(name_or_id))
                .collect()
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(user_error(format!("No such container: {name_or_id}"))),
            _ => Err(user_error(format!(
                "multiple containers match the id prefix {name_or_id:?}; give more characters"
            ))),
        }
    }

    /// `create`: validates everything first, then makes the rootfs, volumes, netns, network
    /// attachment, /etc files and bundle. On failure everything made is removed again.
    pub fn create(&self, opts: &RunOptions) -> Result<ContainerConfig> {
        // Validate every input before anything is made.
        if let Some(name) = &opts.name {
            validate_name(name)?;
        }
        let volume_specs = opts
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<Vec<_>>>()?;
        let ports = opts
            .publish
            .iter()
            .map(|p| peapod_sandbox::ports::parse(p).map_err(|e| user_error(e.to_string())))
            .collect::<Result<Vec<PortMapping>>>()?;
        let network_mode = self.parse_network(&opts.network)?;
        if !ports.is_empty() && !matches!(network_mode, NetworkMode::Bridge) {
            bail!(user_error(format!(
                "conflicting options: port publishing and the {} network mode",
                network_mode.docker_name()
            )));
        }
        let mut volumes_from = Vec::new();
        for spec in &opts.volumes_from {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
                Some(_) => bail!(user_error(format!(
                    "invalid --volumes-from {spec:?}: expected CONTAINER[:ro|:rw]"
                ))),
                None => (spec.as_str(), None),
            };
            let source = self.find(name)?;
            volumes_from.push((source, mode));
        }
        let images = self.images()?;
        let image = images.resolve(&opts.image).map_err(|e| {
            user_error(format!(
                "Unable to find image '{}' locally: {e}",
                opts.image
            ))
        })?;
        let image_config = images.config(&image)?;
        let ic = image_config.config().clone().unwrap_or_default();
        let image_process = image_process(&ic);
        let mut env = Vec::new();
        for e in &opts.env {
            if e.contains('=') {
                env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                env.push(format!("{e}={v}"));
            }
        }
        let overrides = ProcessOverrides {
            entrypoint: opts.entrypoint.clone(),
            cmd: opts.cmd.clone(),
            env,
            working_dir: opts.workdir.clone(),
            user: opts.user.clone(),
        };
        let process = peapod_oci::merge_process(&image_process, &overrides)
            .map_err(|e| user_error(e.to_string()))?;
        let runtime_name = opts
            .runtime
            .clone()
            .or_else(|| self.runtime_override.clone())
            .or_else(|| self.config.runtime.clone());
        let runtime = Runtime::resolve(runtime_name.as_deref(), &self.paths.runtime_state())
            .map_err(|e| user_error(e.to_string()))?;

        let id = peapod_store::new_id();
        let mut mounts = Vec::new();
        for (source, mode) in &volumes_from {
            for m in &source.config.mounts {
                let mut m = m.clone();
                if let Some(mode) = mode {
                    m.rw = *mode == "rw";
                    m.mode = (*mode).to_string();
                }
                m.anonymous = false;
                mounts.push(m);
            }
        }
        for v in &volume_specs {
            mounts.retain(|m: &MountRecord| m.destination != v.destination);
            mounts.push(self.volume_mount(v));
        }
        if let Some(image_volumes) = ic.volumes() {
            for dest in image_volumes {
                if !mounts.iter().any(|m| &m.destination == dest) {
                    mounts.push(self.volume_mount(&VolumeSpec {
                        source: None,
                        destination: dest.clone(),
                        readonly: false,
                        mode: String::new(),
                    }));
                }
            }
        }
        let netns_pin = matches!(network_mode, NetworkMode::Bridge | NetworkMode::None)
            .then(|| self.paths.netns().join(&id));
        let hostname = match &network_mode {
            NetworkMode::Container(target) => self
                .load(target)?
                .map(|c| c.config.hostname)
                .unwrap_or_default(),
            NetworkMode::Host => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => opts
                .hostname
                .clone()
                .unwrap_or_else(|| id[..12].to_string()),
        };
        let config = ContainerConfig {
            id: id.clone(),
            name: String::new(),
            created: Utc::now(),
            image: opts.image.clone(),
            image_id: image.id.clone(),
            args: process.args.clone(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            user: process.user.clone(),
            tty: opts.tty,
            open_stdin: opts.interactive,
            auto_remove: opts.auto_remove,
            hostname,
            network_mode,
            netns: netns_pin,
            endpoint: None,
            mounts,
            ports,
            runtime: runtime.binary.clone(),
            cgroups_path: format!("/{}/{}", self.config.cgroup_parent, id),
            phase: Phase::Creating,
            labels: BTreeMap::new(),
            pod: None,
            log_path: None,
            resources: Default::default(),
        };
        self.commit_and_make(config, opts.name.as_deref(), &image, &images, &process)
    }

    /// Commits the record (write-ahead) and makes the container's resources; on failure
    /// removes whatever was made.
    pub fn commit_and_make(
        &self,
        mut config: ContainerConfig,
        requested_name: Option<&str>,
        image: &peapod_image::ImageRecord,
        images: &ImageStore,
        process: &peapod_oci::MergedProcess,
    ) -> Result<ContainerConfig> {
        let id = config.id.clone();
        let opts_name = requested_name.map(str::to_string);
        // Write-ahead: the record (with every resource it is about to make) is on disk
        // before the first resource exists, so `rm -f` can undo a creation killed halfway.
        {
            let _lock = self.global_lock()?;
            config.name = match &opts_name {
                Some(n) => {
                    if let Some(other) = self.claim_name(n, &id)? {
                        bail!(user_error(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n.clone()
                }
                None => loop {
                    let candidate = generate_name(&[]);
                    if self.claim_name(&candidate, &id)?.is_none() {
                        break candidate;
                    }
                },
            };
            let staging = self.paths.containers().join(format!(".{id}"));
            peapod_store::create_dir_all(&staging)?;
            peapod_store::write_json(&staging.join("container.json"), &config)?;
            fs::rename(&staging, self.container_dir(&id))
                .with_context(|| format!("committing {}", self.container_dir(&id).display()))?;
        }
        if let Err(e) = crate::fault::point("container-committed") {
            let _ = self.teardown(&config, true);
            return Err(e);
        }

        match self.make_resources(&mut config, image, images, process) {
            Ok(()) => Ok(config),
            Err(e) => {
                let cleanup = self.teardown(&config, true);
                match cleanup {
                    Ok(()) => Err(e),
                    Err(c) => Err(e.context(format!(
                        "and removing the half-made container failed too: {c:#}"
                    ))),
                }
            }
        }
    }

    fn make_resources(
        &self,
        config: &mut ContainerConfig,
        image: &peapod_image::ImageRecord,
        images: &ImageStore,
        process: &peapod_oci::MergedProcess,
    ) -> Result<()> {
        let dir = self.container_dir(&config.id);
        for m in &config.mounts {
            if !m.source.exists() {
                fs::create_dir_all(&m.source)
                    .with_context(|| format!("creating volume directory {}", m.source.display()))?;
            }
        }
        let rootfs = dir.join("rootfs");
        peapod_image::rootfs::mount(
            &images.layer_dirs(image),
            &dir.join("upper"),
            &dir.join("work"),
            &rootfs,
        )
        .with_context(|| format!("mounting the root filesystem at {}", rootfs.display()))?;
        self.ensure_network(config)?;
        self.write_etc_files(config)?;
        self.write_bundle(config, process)?;
        config.phase = Phase::Created;
        peapod_store::write_json(&dir.join("container.json"), config)?;
        Ok(())
    }

    /// Makes (or re-makes after a reboot) the container's netns and network attachment.
    fn ensure_network(&self, config: &mut ContainerConfig) -> Result<()> {
        let Some(pin) = config.netns.clone() else {
            return Ok(());
        };
        if pin.exists() && !netns::is_pinned(&pin) {
            // The pin file outlived its mount (a reboot): make the namespace again.
            netns::remove(&pin)
                .with_context(|| format!("removing the stale netns pin {}", pin.display()))?;
        }
        if !pin.exists() {
            netns::create(&pin)
                .with_context(|| format!("creating the network namespace {}", pin.display()))?;
        }
        if config.network_mode == NetworkMode::Bridge {
            let endpoint = self
                .network()
                .attach(&config.id, &pin)
                .context("attaching the container to the network")?;
            config.endpoint = Some(endpoint);
            peapod_store::write_json(
                &self.container_dir(&config.id).join("container.json"),
                config,
            )?;
        }
        Ok(())
    }

    fn write_etc_files(&self, config: &ContainerConfig) -> Result<()> {
        let dir = self.container_dir(&config.id);
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let hosts = match &config.network_mode {
            NetworkMode::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
            _ => {
                peapod_sandbox::etc::hosts(&config.hostname, config.endpoint.as_ref().map(|e| e.ip))
            }
        };
        if !matches!(config.network_mode, NetworkMode::Container(_)) {
            peapod_store::atomic_write(&dir.join("hosts"), hosts.as_bytes())?;
            peapod_store::atomic_write(
                &dir.join("resolv.conf"),
                peapod_sandbox::etc::resolv_conf(&host_resolv).as_bytes(),
            )?;
            peapod_store::atomic_write(
                &dir.join("hostname"),
                format!("{}\n", config.hostname).as_bytes(),
            )?;
        }
        Ok(())
    }

    /// The directory holding the /etc files this container mounts (the network owner's).
    fn etc_dir(&self, config: &ContainerConfig) -> PathBuf {
        match &config.network_mode {
            NetworkMode::Container(target) => self.container_dir(target),
            _ => self.container_dir(&config.id),
        }
    }

    fn write_bundle(
        &self,
        config: &ContainerConfig,
        process: &peapod_oci::MergedProcess,
    ) -> Result<()> {
        let dir = self.container_dir(&config.id);
        let rootfs = dir.join("rootfs");
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
        let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
        let user = peapod_oci::resolve_user(&process.user, &passwd, &group)
            .map_err(|e| user_error(e.to_string()))?;
        let network = match &config.network_mode {
            NetworkMode::Host => Namespace::Host,
            NetworkMode::Container(target) => {
                let owner = self
                    .load(target)?
                    .ok_or_else(|| user_error(format!("No such container: {target}")))?;
                match &owner.config.netns {
                    Some(pin) => Namespace::Join(pin.clone()),
                    None => Namespace::Host,
                }
            }
            NetworkMode::Bridge | NetworkMode::None => Namespace::Join(
                config
                    .netns
                    .clone()
                    .ok_or_else(|| anyhow!("container {} has no network namespace", config.id))?,
            ),
        };
        let layout = cgroups::detect(Path::new("/sys/fs/cgroup"));
        let join = |p: Option<&PathBuf>| p.map_or(Namespace::New, |p| Namespace::Join(p.clone()));
        let link = config.pod.as_ref();
        let namespaces = Namespaces {
            network,
            ipc: join(link.and_then(|l| l.ipc.as_ref())),
            uts: join(link.and_then(|l| l.uts.as_ref())),
            pid: join(link.and_then(|l| l.pid.as_ref())),
            // Docker's default cgroupns mode: host on v1, private on v2.
            cgroup: if layout == CgroupLayout::V2 {
                Namespace::New
            } else {
                Namespace::Host
            },
        };
        let etc = self.etc_dir(config);
        let mut mounts: Vec<BindMount> = config
            .mounts
            .iter()
            .map(|m| BindMount {
                source: m.source.clone(),
                destination: m.destination.clone(),
                readonly: !m.rw,
            })
            .collect();
        for f in ["hostname", "hosts", "resolv.conf"] {
            mounts.push(BindMount {
                source: etc.join(f),
                destination: format!("/etc/{f}"),
                readonly: false,
            });
        }
        let plan = ContainerPlan {
            rootfs,
            process: process.clone(),
            user,
            terminal: config.tty,
            hostname: Some(config.hostname.clone()),
            namespaces,
            mounts,
            cgroups_path: config.cgroups_path.clone(),
            seccomp: Seccomp::RuntimeDefault,
            annotations: BTreeMap::from([(
                "io.peapod.container.name".to_string(),
                config.name.clone(),
            )]),
            resources: config.resources,
        };
        let spec = peapod_oci::spec_for(&plan);
        peapod_oci::write_bundle(&dir.join("bundle"), &spec)?;
        Ok(())
    }

    fn parse_network(&self, s: &str) -> Result<NetworkMode> {
        Ok(match s {
            "" | "bridge" | "default" => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => match other.strip_prefix("container:") {
                Some(target) if !target.is_empty() => {
                    let c = self.find(target)?;
                    if !matches!(c.state, State::Running { .. }) {
                        bail!(user_error(format!(
                            "cannot join network namespace of a non running container: container {} is {}",
                            c.config.name,
                            c.state.docker_status()
                        )));
                    }
                    // Joining a container that itself joined another means joining the owner.
                    match c.config.network_mode {
                        NetworkMode::Container(owner) => NetworkMode::Container(owner),
                        NetworkMode::Host => NetworkMode::Host,
                        _ => NetworkMode::Container(c.config.id),
                    }
                }
                _ => bail!(user_error(format!(
                    "invalid --network {other:?}: expected bridge, none, host or container:NAME|ID"
                ))),
            },
        })
    }

    fn volume_mount(&self, v: &VolumeSpec) -> MountRecord {
        match &v.source {
            Some(VolumeSource::Host(p)) => MountRecord {
                kind: "bind".into(),
                name: None,
                source: p.clone(),
                destination: v.destination.clone(),
                rw: !v.readonly,
                mode: v.mode.clone(),
                anonymous: false,
            },
            Some(VolumeSource::Named(n)) => MountRecord {
                kind: "volume".into(),
                name: Some(n.clone()),
                source: self.paths.volumes().join(n).join("_data"),
                destination: v.destination.clone(),
                rw: !v.readonly,
                mode: v.mode.clone(),
                anonymous: false,
            },
            None => {
                let name = peapod_store::new_id();
                MountRecord {
                    kind: "volume".into(),
                    source: self.paths.volumes().join(&name).join("_data"),
                    name: Some(name),
                    destination: v.destination.clone(),
                    rw: !v.readonly,
                    mode: v.mode.clone(),
                    anonymous: true,
                }
            }
        }
    }

    /// Starts a created or exited container through a new monitor; returns once the
    /// container's process runs (or with the monitor's error).
    pub fn start(&self, c: &Container, attached: bool) -> Result<()> {
        if let State::Running { .. } = c.state {
            return Ok(());
        }
        if c.config.phase != Phase::Created {
            bail!(user_error(format!(
                "container {} was not fully created (its creation was interrupted); remove it with `peapod rm -f {}`",
                c.config.name, c.config.name
            )));
        }
        if let NetworkMode::Container(target) = &c.config.network_mode {
            match self.load(target)? {
                Some(t) if matches!(t.state, State::Running { .. }) => {}
                _ => bail!(user_error(format!(
                    "cannot join network namespace of container {target}: it is not running"
                ))),
            }
        }
        let mut config = c.config.clone();
        let dir = self.container_dir(&config.id);
        // After a reboot /run is empty and overlay mounts are gone: make them again.
        let images = self.images()?;
        let image = images.resolve(&config.image_id)?;
        peapod_image::rootfs::mount(
            &images.layer_dirs(&image),
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("rootfs"),
        )?;
        if config.netns.as_ref().is_some_and(|p| !netns::is_pinned(p)) {
            self.ensure_network(&mut config)?;
        }
        // State the runtime kept of an earlier run whose monitor died (a crash, a reboot
        // without a tmpfs /run): `create` would fail with "already exists".
        if self.paths.runtime_state().join(&config.id).exists() {
            self.runtime_of(&config).delete(&config.id)?;
        }
        let exe = crate::engine::self_exe();
        let mut cmd = Command::new(exe);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("monitor");
        if attached {
            cmd.arg("--attached");
        }
        cmd.arg(&config.id);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the container monitor")?;
        let line = read_report(&mut child, "the container monitor", MONITOR_REPORT_LIMIT)?;
        let line = line.as_str();
        if line == "ok" {
            return Ok(());
        }
        let _ = child.wait();
        let msg = line.strip_prefix("error: ").unwrap_or(if line.is_empty() {
            "the monitor exited before starting the container"
        } else {
            line
        });
        let code = if msg.contains("executable file not found")
            || msg.contains("no such file or directory")
        {
            127
        } else if msg.contains("permission denied") {
            126
        } else {
            125
        };
        Err(UserError {
            message: format!("failed to start container {}: {msg}", config.name),
            code,
        }
        .into())
    }

    /// `stop`: SIGTERM, up to `timeout`, then SIGKILL; returns once the process is gone.
    pub fn stop(&self, c: &Container, timeout: Duration) -> Result<()> {
        let State::Running { pid, .. } = c.state else {
            return Ok(());
        };
        let runtime = self.runtime_of(&c.config);
        let pid_start = c.status.as_ref().map(|s| s.pid_start).unwrap_or_default();
        let alive = || proc_start_time(pid) == Some(pid_start);
        runtime.kill(&c.config.id, libc::SIGTERM, false)?;
        if !wait_until(timeout, || !alive()) {
            runtime.kill(&c.config.id, libc::SIGKILL, true)?;
            if !wait_until(Duration::from_secs(10), || !alive()) {
                bail!(
                    "container {} did not die 10 s after SIGKILL (pid {pid})",
                    c.config.name
                );
            }
        }
        self.wait_monitor(&c.config.id, Duration::from_secs(10));
        Ok(())
    }

    /// Waits (bounded) for the monitor to record the exit and let go of its lock.
    fn wait_monitor(&self, id: &str, limit: Duration) -> bool {
        let lock = self.container_dir(id).join("monitor.lock");
        wait_until(limit, || !Lock::is_held(&lock).unwrap_or(false))
    }

    /// `rm`: refuses a running container unless `force` (then kills it), then removes
    /// every resource. Idempotent.
    pub fn remove(&self, c: &Container, force: bool, volumes: bool) -> Result<()> {
        if let State::Running { .. } = c.state {
            if !force {
                bail!(user_error(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.config.name
                )));
            }
        }
        // Kill whatever the runtime still knows of (also a process whose monitor died or a
        // creation interrupted between `create` and `start`).
        let runtime = self.runtime_of(&c.config);
        if c.config.pod.as_ref().is_some_and(|l| l.infra) {
            // The infra process is peapod's own, not the runtime's.
            if let Some(st) = &c.status {
                if st.pid > 0 && proc_start_time(st.pid) == Some(st.pid_start) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(st.pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        } else {
            runtime.kill(&c.config.id, libc::SIGKILL, true)?;
        }
        if let Some(st) = &c.status {
            let (pid, start) = (st.pid, st.pid_start);
            if pid > 0
                && !wait_until(Duration::from_secs(10), || {
                    proc_start_time(pid) != Some(start)
                })
            {
                bail!(
                    "container {} (pid {pid}) did not die after SIGKILL",
                    c.config.name
                );
            }
        }
        self.wait_monitor(&c.config.id, Duration::from_secs(10));
        self.teardown(&c.config, volumes)
    }

    /// Removes every resource of a container, each step idempotent and attempted even when
    /// an earlier one failed; the errors are reported together.
    /// The resource steps run without the global lock (each is idempotent, and each
    /// unmount or veth removal waits for an RCU grace period: a pod's containers are torn
    /// down together); the name index and the record go under it.
    pub fn teardown(&self, config: &ContainerConfig, volumes: bool) -> Result<()> {
        let dir = self.container_dir(&config.id);
        let mut errors: Vec<String> = Vec::new();
        let infra = config.pod.as_ref().is_some_and(|l| l.infra);
        if !infra {
            if let Err(e) = self.runtime_of(config).delete(&config.id) {
                errors.push(format!("deleting the runtime container: {e}"));
            }
        }
        if let Err(e) = peapod_image::rootfs::unmount(&dir.join("rootfs")) {
            errors.push(format!("unmounting the root filesystem: {e}"));
        }
        crate::fault::point("container-teardown-half")?;
        if let Some(pin) = &config.netns {
            if config.network_mode == NetworkMode::Bridge {
                if let Err(first) = self.network().detach(&config.id, pin) {
                    // A CNI plugin whose DEL keeps failing must not wedge the removal: with
                    // the namespace gone (and whatever lived in it), its failures are ignored.
                    let retried = netns::remove(pin)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| Ok(self.network().detach(&config.id, pin)?));
                    if let Err(e) = retried {
                        errors.push(format!(
                            "detaching from the network: {first}; after removing the namespace: {e:#}"
                        ));
                    }
                }
            }
            if let Err(e) = netns::remove(pin) {
                errors.push(format!(
                    "removing the network namespace {}: {e}",
                    pin.display()
                ));
            }
        }
        if volumes {
            for m in config.mounts.iter().filter(|m| m.anonymous) {
                if let Some(vol_dir) = m.source.parent() {
                    if let Err(e) = fs::remove_dir_all(vol_dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            errors.push(format!("removing volume {}: {e}", vol_dir.display()));
                        }
                    }
                }
            }
        }
        let _lock = self.global_lock()?;
        let name_file = self.paths.lib.join("names").join(&config.name);
        if fs::read_to_string(&name_file).is_ok_and(|holder| holder.trim() == config.id) {
            let _ = fs::remove_file(&name_file);
        }
        let log = self.log_path(config);
        if let Err(e) = fs::remove_file(&log) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", log.display()));
            }
        }
        finish_removal(&dir, errors, &format!("removing container {}", config.name))
    }

    /// `exec`: runs a process in the running container; returns its exit code.
    pub fn exec(
        &self,
        c: &Container,
        args: &[String],
        tty: bool,
        interactive: bool,
        env: &[String],
        workdir: Option<&str>,
    ) -> Result<i32> {
        if !matches!(c.state, State::Running { .. }) {
            bail!(UserError {
                message: format!("container {} is not running", c.config.id),
                code: 1
            });
        }
        if args.is_empty() {
            bail!(user_error(
                "exec needs a command: peapod exec CONTAINER COMMAND [ARG...]"
            ));
        }
        let mut full_env = c.config.env.clone();
        for e in env {
            let key = e.split('=').next().unwrap_or_default();
            full_env.retain(|x| x.split('=').next() != Some(key));
            full_env.push(e.clone());
        }
        let mut cmd = self.runtime_of(&c.config).exec_command(
            &c.config.id,
            args,
            tty,
            &full_env,
            workdir.or(Some(&c.config.cwd)),
        );
        if !interactive {
            cmd.stdin(Stdio::null());
        }
        let status = cmd
            .status()
            .with_context(|| format!("running {}", c.config.runtime.display()))?;
        Ok(exit_code(status))
    }

    /// Reads the container's status file again (after the monitor recorded an exit).
    pub fn reload(&self, id: &str) -> Result<Container> {
        self.load(id)?
            .ok_or_else(|| user_error(format!("No such container: {id}")))
    }
}

/// The running peapod binary, for re-executing itself as a monitor or infra process.
/// `/proc/self/exe` still works after the file was replaced on disk (an upgrade, a rebuild),
/// when the path `current_exe` reports ends in " (deleted)".
pub fn self_exe() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}

/// The pod's infra process: the small `peapod-infra` installed beside this binary (one
/// stays resident per pod, so it should map little), else this binary's `infra` command.
pub fn infra_command() -> Command {
    let small = std::env::current_exe()
        .ok()
        .map(|exe| peapod_oci::runtime::installed_path(&exe))
        .and_then(|exe| Some(exe.parent()?.join("peapod-infra")))
        .filter(|p| p.is_file());
    match small {
        Some(path) => Command::new(path),
        None => {
            let mut cmd = Command::new(self_exe());
            cmd.arg("infra");
            cmd
        }
    }
}

/// The process defaults an image config gives (Entrypoint, Cmd, Env, WorkingDir, User).
pub fn image_process(ic: &oci_spec::image::Config) -> ImageProcess {
    ImageProcess {
        entrypoint: ic.entrypoint().clone().unwrap_or_default(),
        cmd: ic.cmd().clone().unwrap_or_default(),
        env: ic.env().clone().unwrap_or_default(),
        working_dir: ic.working_dir().clone().filter(|w| !w.is_empty()),
        user: ic.user().clone().filter(|u| !u.is_empty()),
    }
}

/// Whether the kernel's OOM killer killed a process of the container's cgroup (read before
/// the runtime deletes the cgroup).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let mount = Path::new("/sys/fs/cgroup");
    let file = match cgroups::detect(mount) {
        CgroupLayout::V1 => mount
            .join("memory")
            .join(cgroups_path.trim_start_matches('/'))
            .join("memory.oom_control"),
        CgroupLayout::V2 => mount
            .join(cgroups_path.trim_start_matches('/'))
            .join("memory.events"),
    };
    fs::read_to_string(file)
        .map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .any(|n| n.trim().parse::<u64>().unwrap_or(0) > 0)
        })
        .unwrap_or(false)
}

/// The last step of a teardown: the record's directory goes only when every earlier step
/// worked (so a retry still finds what is left); all failures are reported together.
pub fn finish_removal(dir: &Path, mut errors: Vec<String>, what: &str) -> Result<()> {
    if errors.is_empty() {
        if let Err(e) = fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", dir.display()));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{what} left work undone: {}", errors.join("; ")))
    }
}

/// How long a container monitor may take to report (it runs `runtime create` and `start`).
pub const MONITOR_REPORT_LIMIT: Duration = Duration::from_secs(120);

/// Reads the one-line report (`ok…` or `error: …`) that a re-executed peapod process
/// (monitor, pod monitor, infra) writes on its stdout once ready, waiting at most `limit`.
/// A child that does not report in time is killed, so no caller waits without a bound.
/// An empty string means the child exited without reporting.
pub fn read_report(child: &mut std::process::Child, what: &str, limit: Duration) -> Result<String> {
    let mut stdout = child.stdout.take().expect("the child's stdout is piped");
    read_report_on(child, &mut stdout, what, limit)
}

/// `read_report` from a pipe taken from the child, for a caller that keeps reading it.
pub fn read_report_on(
    child: &mut std::process::Child,
    stdout: &mut std::process::ChildStdout,
    what: &str,
    limit: Duration,
) -> Result<String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let deadline = Instant::now() + limit;
    let mut line = Vec::new();
    let mut chunk = [0u8; 512];
    while !line.contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} did not report within {} s and was stopped",
                limit.as_secs()
            );
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).with_context(|| format!("waiting for {what}")),
        }
        let n = stdout
            .read(&mut chunk)
            .with_context(|| format!("reading {what}'s report"))?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&line)
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .to_string())
}

/// The exit code of a finished process as a shell reports it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Polls `done` every 10 ms until it holds or `limit` passed.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    // Short pauses first (most waits end within a few milliseconds: a process exiting on
    // SIGTERM, a monitor finishing), then at most POLL_MAX between checks.
    let mut pause = Duration::from_micros(250);
    loop {
        if done() {
            return true;
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return false;
        }
        std::thread::sleep(pause.min(limit - elapsed));
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// The longest pause between two checks of [`wait_until`].
const POLL_MAX: Duration = Duration::from_millis(5);

/// The host's first non-loopback IPv4 address (status.hostIP), if any.
pub fn host_ip() -> Option<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route's source address.
    sock.connect("10.255.255.255:9").ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

/// Kills a process and all its descendants (SIGKILL), children first found by `/proc`.
pub fn kill_tree(pid: i32) {
    let mut parents: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The fields after the command name's closing parenthesis: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if let Some(pp) = ppid {
                parents.entry(pp).or_default().push(p);
            }
        }
    }
    let mut order = vec![pid];
    let mut i = 0;
    while i < order.len() {
        if let Some(children) = parents.get(&order[i]) {
            order.extend(children.iter().copied());
        }
        i += 1;
    }
    for p in order.into_iter().rev() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether `dir` is a mount point (listed in this process's mountinfo).
pub fn is_mountpoint(dir: &std::path::Path) -> bool {
    let target = dir.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(4) == Some(&*target))
        })
        .unwrap_or(false)
}

/// The start time of `pid` (field 22 of /proc/PID/stat), None when there is no such process
/// (or it is a zombie, which is as good as gone).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Docker's container name rule.
fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!(user_error(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

fn generate_name(taken: &[String]) -> String {
    const LEFT: [&str; 16] = [
        "admiring", "brave", "busy", "clever", "eager", "focused", "gifted", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euclid", "fermi", "galois", "hopper", "knuth", "lovelace",
        "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak",
    ];
    loop {
        let id = peapod_store::new_id();
        let b = id.as_bytes();
        let name = format!(
            "{}_{}",
            LEFT[(b[0] % 16) as usize],
            RIGHT[(b[1] % 16) as usize]
        );
        let name = if taken.contains(&name) {
            format!("{name}_{}", &id[..4])
        } else {
            name
        };
        if !taken.contains(&name) {
            return name;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum VolumeSource {
    Host(PathBuf),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VolumeSpec {
    source: Option<VolumeSource>,
    destination: String,
    readonly: bool,
    mode: String,
}

/// Parses `-v [SRC:]DST[:ro|rw]` as Docker does.
fn parse_volume(spec: &str) -> Result<VolumeSpec> {
    let bad = |why: &str| {
        user_error(format!(
            "invalid volume specification: '{spec}': {why} (expected [SOURCE:]DESTINATION[:ro|rw])"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] => (Some(*s), *d, ""),
        [s, d, m] => (Some(*s), *d, *m),
        _ => return Err(bad("too many colons")),
    };
    if !dest.starts_with('/') {
        return Err(bad("the destination must be an absolute path"));
    }
    if dest == "/" {
        return Err(bad("the destination can't be '/'"));
    }
    let readonly = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => return Err(bad(&format!("unknown mode {other:?}"))),
    };
    let source = match source {
        None => None,
        Some("") => return Err(bad("the source is empty")),
        Some(s) if s.starts_with('/') => Some(VolumeSource::Host(PathBuf::from(s))),
        Some(s) => {
            let valid = s.len() >= 2
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(bad(&format!(
                    "{s:?} includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; a host path must be absolute"
                )));
            }
            Some(VolumeSource::Named(s.to_string()))
        }
    };
    Ok(VolumeSpec {
        source,
        destination: dest.to_string(),
        readonly,
        mode: mode.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs_parse_as_docker() {
        let v = parse_volume("/data").unwrap();
        assert_eq!(v.source, None);
        let v = parse_volume("/host:/ctr:ro").unwrap();
        assert_eq!(v.source, Some(VolumeSource::Host("/host".into())));
        assert!(v.readonly);
        let v = parse_volume("myvol:/ctr").unwrap();
        assert_eq!(v.source, Some(VolumeSource::Named("myvol".into())));
        for bad in [
            "relative",
            "/a:b",
            "/a:/b:xx",
            "/a:/b:ro:z",
            "bad name!:/x",
            ":/x",
            "/a:/",
        ] {
            let err = parse_volume(bad).unwrap_err().to_string();
            assert!(
                err.contains("invalid volume specification") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn names_follow_docker_rule() {
        validate_name("test1").unwrap();
        validate_name("a.b-c_d").unwrap();
        for bad in ["", "x", "-lead", "has space", "slash/x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let n = generate_name(&[]);
        assert!(n.contains('_'));
        validate_name(&n).unwrap();
    }

    #[test]
    fn reports_are_read_within_a_bound() {
        let spawn = |script: &str| {
            std::process::Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut ok = spawn("echo 'ok 42'; sleep 5");
        assert_eq!(
            read_report(&mut ok, "t", Duration::from_secs(5)).unwrap(),
            "ok 42"
        );
        let _ = ok.kill();
        let _ = ok.wait();
        let mut silent = spawn("true");
        assert_eq!(
            read_report(&mut silent, "t", Duration::from_secs(5)).unwrap(),
            ""
        );
        let _ = silent.wait();
        let mut stuck = spawn("sleep 30");
        let err =
            read_report(&mut stuck, "the stuck child", Duration::from_millis(200)).unwrap_err();
        assert!(
            err.to_string()
                .contains("the stuck child did not report within"),
            "{err}"
        );
        // It was stopped and reaped (a `sleep 30` would still be running otherwise).
        assert!(stuck.try_wait().unwrap().is_some());
    }

    #[test]
    fn proc_start_time_of_self_and_of_nothing() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert_eq!(proc_start_time(me), proc_start_time(me));
        assert!(proc_start_time(i32::MAX).is_none());
    }
}
