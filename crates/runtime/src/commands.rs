//! runc's commands on `libcontainer`: each loads the container's state from the state root,
//! checks its status as runc does, and acts.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupConfig, CgroupManager, FreezerState};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::{Capabilities, Capability, Process, Spec};
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::MsFlags;
use nix::sys::signal::Signal;

use crate::state::{self, StateDocument, Status};
use crate::workload::Workload;
use crate::{cgroups, console, seccomp, Error};

/// Where `create` stages bundles for libcontainer (see [`stage`]).
const STAGED_BUNDLES: &str = ".bundles";

/// `create`'s arguments.
pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
}

/// `create`: the container's init is set up and waits for `start`; stdio is inherited
/// unless a console socket is given (then the pty master is sent over it).
pub fn create(o: &CreateOptions<'_>) -> Result<(), Error> {
    match state::container_dir(o.root, o.id) {
        Ok(_) => return Err(Error::Exists(o.id.to_owned())),
        Err(Error::NotExist(_)) => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(o.root)
        .map_err(|e| Error::io("create directory", o.root, e))?;
    let bundle = absolute(o.bundle)?;
    let pid_file = o.pid_file.map(absolute).transpose()?;
    let context = format!("creating container {}", o.id);
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| Error::Spec {
        context: format!("reading {}", config.display()),
        source,
    })?;
    // The path libcontainer's saved config will hold.
    let cgroups_path = libcontainer::utils::get_cgroup_path(
        &spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()),
        o.id,
    );
    // With a cached seccomp filter, libcontainer is given the bundle's spec without the
    // profile (staged in the state root; it reads specs only from a bundle's config.json)
    // and the workload loads the filter where libcontainer would have loaded the profile.
    // The staged spec also carries the cgroup mount, the root propagation and the
    // noNewPrivileges libcontainer cannot take as they are. The mounts' propagation
    // options are applied once libcontainer has made the mounts.
    let propagation = mount_propagation(&spec);
    let (filter, staged) = stage(o.root, o.id, &bundle, spec, &cgroups_path)?;
    let workload = Workload {
        seccomp: filter,
        sys_admin_for_seccomp: false,
    };
    let lib_bundle = staged
        .as_ref()
        .map_or(bundle.as_path(), |s| s.dir.as_path());
    cgroups::join_extra_self(&cgroups_path).map_err(|e| {
        cgroups::leave_extra(&cgroups_path);
        Error::Cgroup {
            context: format!("joining the cgroups of container {}", o.id),
            message: e.to_string(),
        }
    })?;
    let built = ContainerBuilder::new(o.id.to_owned(), SyscallType::default())
        .with_executor(workload)
        .with_root_path(o.root)
        .and_then(|b| b.with_pid_file(pid_file))
        .map(|b| {
            b.with_console_socket(o.console_socket)
                .with_preserved_fds(o.preserve_fds)
        })
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_init(lib_bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        });
    drop(staged);
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            cgroups::leave_extra(&cgroups_path);
            return Err(Error::container(context)(e));
        }
    };
    if container.bundle() != &bundle {
        // The state names the real bundle, as it would have without staging.
        container.state.bundle = bundle;
        container.save().map_err(Error::container(context))?;
    }
    state::record_init_start(&container)?;
    if let Some(pid) = container.pid().filter(|_| !propagation.is_empty()) {
        if let Err(e) = apply_propagation(pid.as_raw(), &propagation) {
            // Nothing half-made: the init waiting for `start` goes with its state.
            if let Err(cleanup) = delete(o.root, o.id, true) {
                return Err(Error::Rollback {
                    error: Box::new(e),
                    cleanup: Box::new(cleanup),
                });
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A mount's propagation (its destination and runc's flags for one of its options).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Propagation {
    destination: PathBuf,
    flags: MsFlags,
}

/// The flags runc gives a mount option that is a propagation type, or None.
fn propagation_flags(option: &str) -> Option<MsFlags> {
    let (kind, recursive) = match option.strip_prefix('r') {
        Some(k @ ("private" | "slave" | "shared" | "unbindable")) => (k, true),
        _ => (option, false),
    };
    let flags = match kind {
        "private" => MsFlags::MS_PRIVATE,
        "slave" => MsFlags::MS_SLAVE,
        "shared" => MsFlags::MS_SHARED,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if recursive {
        flags | MsFlags::MS_REC
    } else {
        flags
    })
}

/// The propagation options of the spec's mounts, in the spec's order (runc applies each
/// after making its mount), which libcontainer 0.7 takes and ignores: [`create`] applies
/// them ([`apply_propagation`]).
fn mount_propagation(spec: &Spec) -> Vec<Propagation> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        for option in m.options().iter().flatten() {
            if let Some(flags) = propagation_flags(option) {
                out.push(Propagation {
                    destination: Path::new("/").join(m.destination()),
                    flags,
                });
            }
        }
    }
    out
}

/// Sets each mount's propagation in the mount namespace of the created init `pid` (its
/// mounts made, its root pivoted, waiting for `start`): from a thread of this process that
/// leaves the process's shared filesystem context and joins that namespace, as runc sets
/// it in the init. The thread's root is then the container's, so destinations resolve in
/// the container as they did for its mounts.
fn apply_propagation(pid: i32, mounts: &[Propagation]) -> Result<(), Error> {
    let ns = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let ns_file = std::fs::File::open(&ns).map_err(|e| Error::io("open", &ns, e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                use nix::sched::CloneFlags;
                // setns(CLONE_NEWNS) refuses a thread sharing its root and cwd.
                nix::sched::unshare(CloneFlags::CLONE_FS)
                    .map_err(|e| Error::sys("unshare(CLONE_FS)", e))?;
                nix::sched::setns(&ns_file, CloneFlags::CLONE_NEWNS)
                    .map_err(|e| Error::sys("joining the container's mount namespace", e))?;
                for m in mounts {
                    nix::mount::mount(
                        None::<&str>,
                        &m.destination,
                        None::<&str>,
                        m.flags,
                        None::<&str>,
                    )
                    .map_err(|source| Error::Propagation {
                        destination: m.destination.clone(),
                        source,
                    })?;
                }
                Ok(())
            })
            .join()
            .expect("the propagation thread does not panic")
    })
}

/// A copy of a bundle's config.json for libcontainer, removed on drop.
struct StagedBundle {
    dir: PathBuf,
}

impl Drop for StagedBundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The spec libcontainer is given, when it differs from the bundle's: then the cached
/// filter for a spec whose profile the cache serves ([`seccomp::cacheable`]) and that has
/// no hooks (they would be handed the staged bundle's path), and a bundle (in
/// `<root>/.bundles/<id>`) whose config.json is the spec without that profile, with
/// [`cgroups::emulate_v1_mount`]'s mounts (`cgroups_path`: the container's cgroup), with a
/// root propagation libcontainer takes ([`rootfs_propagation`]), without a false
/// `noNewPrivileges` ([`no_new_privileges`]), and with an absolute root path. (None, None):
/// libcontainer applies the bundle as it is.
fn stage(
    root: &Path,
    id: &str,
    bundle: &Path,
    mut spec: Spec,
    cgroups_path: &Path,
) -> Result<(Option<seccomp::Filter>, Option<StagedBundle>), Error> {
    let filter = match seccomp::cacheable(&spec).filter(|_| spec.hooks().is_none()) {
        Some(profile) => Some(seccomp::prepare(root, profile)?),
        None => None,
    };
    let mounts_replaced = cgroups::emulate_v1_mount(&mut spec, cgroups_path);
    let propagation_replaced = rootfs_propagation(&mut spec);
    let nnp_replaced = no_new_privileges(&mut spec);
    if filter.is_none() && !mounts_replaced && !propagation_replaced && !nnp_replaced {
        return Ok((None, None));
    }
    if filter.is_some() {
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(None);
        }
    }
    if let Some(r) = spec.root_mut() {
        if r.path().is_relative() {
            let path = bundle.join(r.path());
            r.set_path(path);
        }
    }
    let dir = root.join(STAGED_BUNDLES).join(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io("create directory", &dir, e))?;
    let staged = StagedBundle { dir };
    let path = staged.dir.join("config.json");
    let json = serde_json::to_vec(&spec).expect("a spec serializes");
    std::fs::write(&path, json).map_err(|e| Error::io("write", &path, e))?;
    Ok((filter, Some(staged)))
}

/// Rewrites a recursive `linux.rootfsPropagation` (`rslave`, `rprivate`, `rshared`,
/// `runbindable`: runc takes every mount propagation flag there, and CRI runtimes write
/// `rslave`) to the name libcontainer 0.7 knows, and says so: libcontainer fails the
/// create with "failed to prepare rootfs" on any other. Its propagation of `/` is recursive
/// already (it adds `MS_REC`), so `rslave` and `rprivate` behave as in runc.
fn rootfs_propagation(spec: &mut Spec) -> bool {
    let Some(linux) = spec.linux_mut() else {
        return false;
    };
    let plain = match linux.rootfs_propagation().as_deref() {
        Some(p @ ("rslave" | "rprivate" | "rshared" | "runbindable")) => p[1..].to_owned(),
        _ => return false,
    };
    linux.set_rootfs_propagation(Some(plain));
    true
}

/// Drops `process.noNewPrivileges: false` (CRI writes it), which means what its absence
/// means, and says so: libcontainer 0.7 takes any value as `true` where it decides when to
/// load the seccomp profile, and loads it after dropping the capabilities — without
/// no_new_privs and CAP_SYS_ADMIN the kernel refuses it ("failed to load seccomp
/// context"), where runc loads it while still privileged.
fn no_new_privileges(spec: &mut Spec) -> bool {
    let Some(process) = spec.process_mut() else {
        return false;
    };
    if process.no_new_privileges() != Some(false) {
        return false;
    }
    process.set_no_new_privileges(None);
    true
}

/// `start`: runs the user process of a created container.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let mut container = state::load(root, id)?;
    let status = state::status(&container);
    if status != Status::Created {
        return Err(Error::Status {
            command: "start",
            id: id.to_owned(),
            status,
        });
    }
    container
        .start()
        .map_err(Error::container(format!("starting container {id}")))
}

/// `state`: the OCI state document.
pub fn state(root: &Path, id: &str) -> Result<StateDocument, Error> {
    state::document(&state::load(root, id)?)
}

/// `kill [--all] ID SIGNAL`: to the init while it lives; with `all`, to every process of
/// the container's cgroup (frozen meanwhile), also once the init has exited.
pub fn kill(root: &Path, id: &str, signal: Signal, all: bool) -> Result<(), Error> {
    let container = state::load(root, id)?;
    let status = state::status(&container);
    if all {
        return kill_all(&container, signal);
    }
    if status == Status::Stopped {
        return Err(Error::NotRunning);
    }
    let pid = container.pid().ok_or(Error::NotRunning)?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.as_raw()), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::sys("kill", e)),
    }
}

fn kill_all(container: &Container, signal: Signal) -> Result<(), Error> {
    let context = format!("signalling the processes of container {}", container.id());
    let cgroup_err = |message: String| Error::Cgroup {
        context: context.clone(),
        message,
    };
    let config = container
        .spec()
        .map_err(Error::container(context.clone()))?;
    let (freezer, witness) = crate::cgroups::freezer_dirs(&config.cgroup_path);
    let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: false,
        container_name: container.id().to_owned(),
    })
    .map_err(|e| cgroup_err(crate::chain(&e)))?;
    // Frozen, no process can fork a child we would miss; a failure to freeze only means
    // that (runc goes on too). libcgroups' freeze makes the freezer directory when it is
    // missing: a container whose cgroup is already gone (removed by a `delete` racing this
    // one) is not frozen, and one removed while frozen loses the directory freezing made
    // again — else an empty freezer cgroup would outlive the container and keep its pod's
    // cgroup from being removed.
    let frozen = freezer.is_dir() && manager.freeze(FreezerState::Frozen).is_ok();
    let result = manager
        .get_all_pids()
        .map_err(|e| cgroup_err(crate::chain(&e)))
        .and_then(|pids| {
            for pid in pids {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.as_raw()), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => return Err(Error::sys("kill", e)),
                }
            }
            Ok(())
        });
    if frozen {
        let _ = manager.freeze(FreezerState::Thawed);
        if witness.is_some_and(|w| !w.is_dir()) {
            let _ = std::fs::remove_dir(&freezer);
        }
    }
    // A cgroup that is already gone has no process left to signal.
    match result {
        Err(Error::Cgroup { .. }) if !cgroup_exists(&manager) => Ok(()),
        other => other,
    }
}

fn cgroup_exists(manager: &libcgroups::common::AnyCgroupManager) -> bool {
    manager.get_all_pids().is_ok()
}

/// `delete [--force]`: removes a stopped (or created) container's cgroup and state; with
/// `force`, kills a running one first. With `force`, an unknown id is success (runc's).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    let mut container = match state::load(root, id) {
        Ok(c) => c,
        Err(Error::NotExist(_)) if force => {
            // An aborted create can leave a directory without state: remove it.
            let dir = root.join(id);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", dir, e))?;
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let status = state::status(&container);
    match status {
        Status::Stopped => {}
        Status::Created => kill_all(&container, Signal::SIGKILL)?,
        Status::Creating | Status::Running | Status::Paused if force => {
            kill_all(&container, Signal::SIGKILL)?
        }
        _ => {
            return Err(Error::Status {
                command: "delete",
                id: id.to_owned(),
                status,
            })
        }
    }
    // libcontainer decides "stopped" by the pid alone: record it so it never signals a
    // reused pid, then let it remove the cgroup and the state directory.
    if container.pid().is_some() && status != Status::Stopped {
        let _ = wait_gone(&container);
    }
    container.set_status(ContainerStatus::Stopped);
    container.state.pid = None;
    container
        .save()
        .map_err(Error::container(format!("deleting container {id}")))?;
    let cgroups_path = container.spec().ok().map(|c| c.cgroup_path);
    container
        .delete(true)
        .map_err(Error::container(format!("deleting container {id}")))?;
    if let Some(path) = cgroups_path {
        cgroups::remove_extra(&path);
    }
    Ok(())
}

/// Waits (bounded, 1 s) until the init is gone after SIGKILL, so its cgroup can be removed.
fn wait_gone(container: &Container) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if state::status(container) == Status::Stopped {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

/// `exec`'s arguments.
pub struct ExecOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub args: Vec<String>,
    pub tty: bool,
    pub detach: bool,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
}

/// `exec`: a new process in a running container, with the init's user, capabilities,
/// no_new_privileges and environment (plus `--env`, later values winning), as runc does.
/// Returns the process's exit code (128+N for signal N), or 0 with `detach`.
pub fn exec(o: &ExecOptions<'_>) -> Result<i32, Error> {
    let container = state::load(o.root, o.id)?;
    let status = state::status(&container);
    if status != Status::Running {
        return Err(Error::Status {
            command: "exec in",
            id: o.id.to_owned(),
            status,
        });
    }
    let config = container.bundle().join("config.json");
    let spec = Spec::load(&config).map_err(|source| Error::Spec {
        context: format!("reading {}", config.display()),
        source,
    })?;
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    for e in &o.env {
        let Some((key, _)) = e.split_once('=') else {
            return Err(Error::BadEnv(e.clone()));
        };
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(e.clone());
    }
    process
        .set_args(Some(o.args.clone()))
        .set_env(Some(env))
        .set_terminal(Some(o.tty))
        .set_console_size(None);
    if let Some(cwd) = &o.cwd {
        process.set_cwd(PathBuf::from(cwd));
    }
    let seccomp = exec_seccomp(o.root, &spec)?;
    let sys_admin_for_seccomp = seccomp.is_some() && sys_admin_until_loaded(&mut process);
    let process_file = container
        .root
        .join(format!("exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&process).expect("a process serializes");
    std::fs::write(&process_file, json).map_err(|e| Error::io("write", &process_file, e))?;

    // A foreground tty needs our own console socket: libcontainer only supports one when
    // detached, so it is told so and this process does the waiting.
    let own_console = if o.tty && !o.detach {
        Some(console::Listener::bind(&container.root)?)
    } else {
        None
    };
    let console_socket = own_console
        .as_ref()
        .map(|l| l.path().to_owned())
        .or_else(|| o.console_socket.map(Path::to_owned));
    let workload = Workload {
        seccomp,
        sys_admin_for_seccomp,
    };
    let pid_file = o.pid_file.map(absolute).transpose()?;
    let built = ContainerBuilder::new(o.id.to_owned(), SyscallType::default())
        .with_executor(workload)
        .with_root_path(o.root)
        .and_then(|b| b.with_pid_file(pid_file))
        .map(|b| b.with_console_socket(console_socket.as_deref()))
        .and_then(|b| {
            b.as_tenant()
                .with_detach(o.detach || own_console.is_some())
                .with_process(Some(&process_file))
                .build()
        });
    let _ = std::fs::remove_file(&process_file);
    let pid = built.map_err(Error::container(format!("exec in container {}", o.id)))?;
    if o.detach {
        return Ok(0);
    }
    let pty = match &own_console {
        Some(listener) => Some(listener.receive()?),
        None => None,
    };
    drop(own_console);
    console::wait_forwarding(nix::unistd::Pid::from_raw(pid.as_raw()), pty)
}

/// The filter of an exec'd process: the container's profile from the cache (libcontainer
/// gives an exec'd process none). A profile with notify actions, whose listener only
/// libcontainer could pass on, is refused rather than left unapplied.
fn exec_seccomp(root: &Path, spec: &Spec) -> Result<Option<seccomp::Filter>, Error> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    if libcontainer::seccomp::is_notify(profile) {
        return Err(Error::SeccompProfile {
            message: "an exec'd process cannot get a profile with notify actions".into(),
        });
    }
    seccomp::prepare(root, profile).map(Some)
}

/// Gives a process without `noNewPrivileges: true` whose capabilities lack CAP_SYS_ADMIN
/// that capability in its effective and permitted sets (not its bounding set, so an
/// `execve` could not keep it), and says so: the kernel loads a seccomp filter only with
/// no_new_privs or CAP_SYS_ADMIN, and libcontainer drops the capabilities before the
/// workload loads the filter. The workload drops it again once the filter is loaded.
fn sys_admin_until_loaded(process: &mut Process) -> bool {
    if process.no_new_privileges() == Some(true) {
        return false;
    }
    let Some(caps) = process.capabilities().clone() else {
        // All of the runtime's, CAP_SYS_ADMIN included.
        return false;
    };
    // A set not given is left as the runtime's, which holds it.
    let lacks = |set: &Option<Capabilities>| {
        set.as_ref()
            .is_some_and(|s| !s.contains(&Capability::SysAdmin))
    };
    if !lacks(caps.effective()) && !lacks(caps.permitted()) {
        return false;
    }
    let with = |set: &Option<Capabilities>| {
        set.clone().map(|mut s| {
            s.insert(Capability::SysAdmin);
            s
        })
    };
    let (effective, permitted) = (with(caps.effective()), with(caps.permitted()));
    let mut caps = caps;
    caps.set_effective(effective).set_permitted(permitted);
    process.set_capabilities(Some(caps));
    true
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::io("resolve", p, e))
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{
        HookBuilder, HooksBuilder, LinuxBuilder, MountBuilder, ProcessBuilder, RootBuilder,
        SpecBuilder,
    };

    use super::*;

    fn bundle_with(dir: &Path, hooks: bool) -> Spec {
        let mut process = ProcessBuilder::default().build().unwrap();
        process.set_no_new_privileges(Some(true));
        let mut spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .process(process)
            .linux(
                LinuxBuilder::default()
                    .seccomp(seccomp::tests::docker())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        // Without the cgroup mount, which a cgroup v1 host's create rewrites as well.
        let mounts = spec.mounts().clone().unwrap_or_default();
        spec.set_mounts(Some(
            mounts
                .into_iter()
                .filter(|m| m.typ().as_deref() != Some("cgroup"))
                .collect(),
        ));
        if hooks {
            let hook = HookBuilder::default().path("/bin/true").build().unwrap();
            spec.set_hooks(Some(
                HooksBuilder::default()
                    .prestart(vec![hook])
                    .build()
                    .unwrap(),
            ));
        }
        spec.save(dir.join("config.json")).unwrap();
        spec
    }

    #[test]
    fn the_staged_bundle_is_the_spec_without_its_profile() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        let spec = bundle_with(bundle.path(), false);
        let (filter, staged) = stage(
            root.path(),
            "c1",
            bundle.path(),
            spec.clone(),
            Path::new("/c1"),
        )
        .unwrap();
        let filter = filter.expect("a profile the cache serves");
        let staged = staged.expect("a staged bundle");
        assert_eq!(staged.dir, root.path().join(".bundles/c1"));
        let profile = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(filter.program, seccomp::compile(profile).unwrap());

        let mut expected = spec.clone();
        expected.linux_mut().as_mut().unwrap().set_seccomp(None);
        expected
            .root_mut()
            .as_mut()
            .unwrap()
            .set_path(bundle.path().join("rootfs"));
        let got = Spec::load(staged.dir.join("config.json")).unwrap();
        assert_eq!(got, expected);

        let dir = staged.dir.clone();
        drop(staged);
        assert!(!dir.exists(), "the staged bundle is removed");
    }

    #[test]
    fn a_recursive_root_propagation_is_staged_under_its_plain_name() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        let mut spec = bundle_with(bundle.path(), true);
        spec.linux_mut()
            .as_mut()
            .unwrap()
            .set_rootfs_propagation(Some("rslave".into()));
        let (filter, staged) =
            stage(root.path(), "c1", bundle.path(), spec, Path::new("/c1")).unwrap();
        assert!(filter.is_none());
        let staged = staged.expect("a staged bundle");
        let got = Spec::load(staged.dir.join("config.json")).unwrap();
        let linux = got.linux().as_ref().unwrap();
        assert_eq!(linux.rootfs_propagation().as_deref(), Some("slave"));

        for (given, plain) in [
            (Some("rprivate"), Some("private")),
            (Some("rshared"), Some("shared")),
            (Some("runbindable"), Some("unbindable")),
            (Some("slave"), Some("slave")),
            (Some("shared"), Some("shared")),
            (None, None),
        ] {
            let mut spec = SpecBuilder::default().build().unwrap();
            spec.linux_mut()
                .as_mut()
                .unwrap()
                .set_rootfs_propagation(given.map(String::from));
            assert_eq!(rootfs_propagation(&mut spec), given != plain, "{given:?}");
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(linux.rootfs_propagation().as_deref(), plain, "{given:?}");
        }
    }

    #[test]
    fn mount_propagation_options_are_read_in_the_specs_order() {
        let mount = |destination: &str, options: &[&str]| {
            MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source("/host")
                .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };
        let mut spec = SpecBuilder::default().build().unwrap();
        spec.set_mounts(Some(vec![
            mount("/a", &["rbind", "rprivate", "ro"]),
            mount("/b", &["bind", "slave"]),
            mount("c", &["rbind", "rshared", "unbindable"]),
            mount("/d", &["rbind", "rw"]),
            mount("/e", &["rslave", "runbindable", "private", "shared"]),
        ]));
        let p = |d: &str, flags: MsFlags| Propagation {
            destination: d.into(),
            flags,
        };
        use MsFlags as F;
        assert_eq!(
            mount_propagation(&spec),
            vec![
                p("/a", F::MS_PRIVATE | F::MS_REC),
                p("/b", F::MS_SLAVE),
                p("/c", F::MS_SHARED | F::MS_REC),
                p("/c", F::MS_UNBINDABLE),
                p("/e", F::MS_SLAVE | F::MS_REC),
                p("/e", F::MS_UNBINDABLE | F::MS_REC),
                p("/e", F::MS_PRIVATE),
                p("/e", F::MS_SHARED),
            ]
        );
        // The default spec's mounts carry none.
        assert!(mount_propagation(&SpecBuilder::default().build().unwrap()).is_empty());
    }

    #[test]
    fn an_exec_without_no_new_privileges_holds_sys_admin_only_to_load_its_filter() {
        use libcontainer::oci_spec::runtime::LinuxCapabilitiesBuilder;
        let chown: Capabilities = [Capability::Chown].into();
        let with_admin: Capabilities = [Capability::Chown, Capability::SysAdmin].into();
        let process = |nnp: Option<bool>| {
            let mut p = ProcessBuilder::default()
                .capabilities(
                    LinuxCapabilitiesBuilder::default()
                        .bounding(chown.clone())
                        .effective(chown.clone())
                        .permitted(chown.clone())
                        .inheritable(chown.clone())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            p.set_no_new_privileges(nnp);
            p
        };
        for nnp in [None, Some(false)] {
            let mut p = process(nnp);
            assert!(sys_admin_until_loaded(&mut p));
            let caps = p.capabilities().as_ref().unwrap();
            assert_eq!(caps.effective().as_ref(), Some(&with_admin));
            assert_eq!(caps.permitted().as_ref(), Some(&with_admin));
            assert_eq!(
                caps.bounding().as_ref(),
                Some(&chown),
                "execve cannot keep it"
            );
            assert_eq!(caps.inheritable().as_ref(), Some(&chown));
        }
        let mut p = process(Some(true));
        assert!(!sys_admin_until_loaded(&mut p));
        assert_eq!(p, process(Some(true)));
        let mut p = process(None);
        p.set_capabilities(None);
        assert!(!sys_admin_until_loaded(&mut p), "all the runtime's");
    }

    #[test]
    fn specs_with_hooks_are_not_staged() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        let spec = bundle_with(bundle.path(), true);
        let (filter, staged) =
            stage(root.path(), "c1", bundle.path(), spec, Path::new("/c1")).unwrap();
        assert!(filter.is_none() && staged.is_none());
        assert!(!root.path().join(".bundles").exists());
    }
}
