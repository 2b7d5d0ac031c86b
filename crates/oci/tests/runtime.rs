//! End-to-end tests of the runtime driver against a real OCI runtime (runc here; set
//! `PEAPOD_OCI_TEST_RUNTIME` to try another). They need root and fail loudly without it.
//!
//! Each test builds a busybox rootfs in its own temp dir, keeps the runtime's state there,
//! uses unique container ids and a unique parent cgroup, and cleans everything up in `Drop`
//! (delete --force, reap, rmdir the cgroups), also when an assertion fails.

use std::cell::RefCell;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Once};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_oci::cgroups::{self, CgroupLayout};
use peapod_oci::runtime::{ConsoleSocket, Runtime, RuntimeError};
use peapod_oci::{
    spec_for, write_bundle, ContainerPlan, MergedProcess, Namespace, Namespaces, NumericUser,
    Seccomp, DEFAULT_PATH,
};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
const TIMEOUT: Duration = Duration::from_secs(20);
/// CapEff of a root process with exactly Docker's 14 default capabilities.
const DEFAULT_CAP_MASK: u64 = 0xa80425fb;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "crates/oci/tests/runtime.rs runs real containers and needs root: run it as root \
         (e.g. `sudo -E cargo test -p peapod-oci --test runtime`)"
    );
}

/// Containers' init processes are reparented to this process when `runtime create` exits,
/// so it must be a subreaper to wait for them.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER"));
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// One test's world: rootfs, bundles, runtime state, parent cgroup; torn down on drop.
struct Harness {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    runtime: Runtime,
    cgroup_parent: String,
    /// (id, init pid once known) of every container created, for cleanup.
    containers: RefCell<Vec<(String, Option<i32>)>>,
}

impl Harness {
    fn new() -> Self {
        require_root();
        become_subreaper();
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static at /bin/busybox");
        for tool in ["sh", "true", "echo", "cat", "sleep", "ifconfig", "tty"] {
            symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        // Not the default: that is the built-in runtime, a link to the peapod binary.
        let name = std::env::var("PEAPOD_OCI_TEST_RUNTIME").unwrap_or_else(|_| "runc".into());
        let runtime = Runtime::resolve(Some(&name), &dir.path().join("state")).expect("runtime");
        Self {
            dir,
            rootfs,
            runtime,
            cgroup_parent: format!("/{}", unique("peapod-oci-test")),
            containers: RefCell::new(Vec::new()),
        }
    }

    fn plan(&self, id: &str, argv: &[&str]) -> ContainerPlan {
        ContainerPlan {
            rootfs: self.rootfs.clone(),
            process: MergedProcess {
                args: args(argv),
                env: vec![format!("PATH={DEFAULT_PATH}")],
                cwd: "/".into(),
                user: "0".into(),
            },
            user: NumericUser::default(),
            terminal: false,
            hostname: Some(id.to_owned()),
            namespaces: Namespaces {
                network: Namespace::New,
                ipc: Namespace::New,
                uts: Namespace::New,
                pid: Namespace::New,
                cgroup: Namespace::New,
            },
            mounts: vec![],
            cgroups_path: format!("{}/{id}", self.cgroup_parent),
            seccomp: Seccomp::RuntimeDefault,
            annotations: Default::default(),
            resources: Default::default(),
        }
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("bundles").join(id)
    }

    /// Writes the bundle and runs `create`; returns the init pid.
    fn create(
        &self,
        id: &str,
        plan: &ContainerPlan,
        console: Option<&Path>,
        stdio: [Stdio; 3],
    ) -> Result<i32, RuntimeError> {
        let bundle = self.bundle(id);
        write_bundle(&bundle, &spec_for(plan)).expect("write bundle");
        let pid_file = bundle.join("init.pid");
        self.containers.borrow_mut().push((id.to_owned(), None));
        self.runtime
            .create_then(false, id, &bundle, &pid_file, console, stdio)?;
        let pid: i32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.containers.borrow_mut().last_mut().unwrap().1 = Some(pid);
        Ok(pid)
    }

    /// create + start a long-running container with null stdio; returns its pid once the
    /// container process has exec'd (so seccomp and the final capabilities are in place).
    fn run_sleeper(&self, plan: &ContainerPlan) -> i32 {
        let id = plan.hostname.clone().unwrap();
        let pid = self.create(&id, plan, None, null_stdio()).expect("create");
        self.runtime.start(&id).expect("start");
        wait_for_exec(pid);
        pid
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for (id, pid) in self.containers.borrow().iter() {
            if let Err(e) = self.runtime.delete(id) {
                eprintln!("cleanup: delete {id}: {e}");
            }
            if let Some(pid) = pid {
                // Reap the init (reparented to us); it is dead after delete --force.
                let _ = waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
            }
        }
        let mount = Path::new(CGROUP_MOUNT);
        let mut parents = cgroups::dirs(mount, cgroups::detect(mount), &self.cgroup_parent);
        parents.push(
            mount
                .join("unified")
                .join(self.cgroup_parent.trim_start_matches('/')),
        );
        for dir in parents {
            rmdir_tree(&dir);
        }
    }
}

/// Removes a cgroup directory and any sub-cgroups left in it (cgroupfs directories go with
/// rmdir, their control files with them).
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("cleanup: rmdir {}: {e}", dir.display()),
    }
}

fn null_stdio() -> [Stdio; 3] {
    [Stdio::null(), Stdio::null(), Stdio::null()]
}

/// Reads `fd` to its end (EOF, or EIO on a pty master whose slave side closed), giving up
/// after [`TIMEOUT`] so a broken container cannot hang the test run.
fn read_all(fd: OwnedFd) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = fs::File::from(fd);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break, // EIO: the pty slave is closed
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
    });
    rx.recv_timeout(TIMEOUT)
        .expect("container output did not end in time")
}

/// Waits for a reparented container init to exit; its exit code.
fn wait_exit(pid: i32) -> i32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::Exited(_, code) => return code,
            WaitStatus::Signaled(_, sig, _) => panic!("container init killed by {sig}"),
            _ if Instant::now() > deadline => panic!("container init {pid} did not exit"),
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Waits until `pid` runs busybox (the runtime's init has exec'd the container process).
fn wait_for_exec(pid: i32) {
    let deadline = Instant::now() + TIMEOUT;
    let exe = format!("/proc/{pid}/exe");
    while !fs::read_link(&exe).is_ok_and(|p| p.to_string_lossy().ends_with("busybox")) {
        assert!(
            Instant::now() < deadline,
            "{pid} never exec'd the container process"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ns_inode(pid: i32, ns: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/{ns}")).unwrap().ino()
}

fn status_field(pid: i32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn piped_stdio_exit_code_state_and_cgroup_cleanup() {
    let h = Harness::new();
    let id = unique("oci-test");
    let plan = h.plan(&id, &["sh", "-c", "echo hi; exit 3"]);
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let pid = h
        .create(
            &id,
            &plan,
            None,
            [Stdio::null(), Stdio::from(out_w), Stdio::inherit()],
        )
        .expect("create");
    assert_eq!(h.runtime.state(&id).unwrap().unwrap().status, "created");

    let mount = Path::new(CGROUP_MOUNT);
    let layout = cgroups::detect(mount);
    let dirs = cgroups::dirs(mount, layout, &plan.cgroups_path);
    assert!(!dirs.is_empty());
    let missing: Vec<_> = dirs.iter().filter(|d| !d.exists()).collect();
    assert!(missing.is_empty(), "the runtime did not create {missing:?}");
    // On a hybrid host the runtime also makes a cgroup in the controller-less cgroup2 mount.
    let hybrid =
        (layout == CgroupLayout::V1 && mount.join("unified/cgroup.procs").exists()).then(|| {
            mount
                .join("unified")
                .join(plan.cgroups_path.trim_start_matches('/'))
        });

    h.runtime.start(&id).expect("start");
    assert_eq!(read_all(out_r), "hi\n");
    assert_eq!(wait_exit(pid), 3);
    let state = h
        .runtime
        .state(&id)
        .unwrap()
        .expect("still known after exit");
    assert_eq!(state.status, "stopped");

    h.runtime.delete(&id).expect("delete");
    assert_eq!(h.runtime.state(&id).unwrap(), None);
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after delete: {left:?}");
    if let Some(unified) = hybrid {
        assert!(!unified.exists(), "{} left after delete", unified.display());
    }
}

#[test]
fn tty_through_console_socket() {
    let h = Harness::new();
    let id = unique("oci-test");
    let mut plan = h.plan(&id, &["sh", "-c", "tty; echo ok"]);
    plan.terminal = true;
    let socket = ConsoleSocket::bind(&h.dir.path().join("console.sock")).unwrap();
    let pid = h
        .create(&id, &plan, Some(socket.path()), null_stdio())
        .expect("create");
    let master = socket.receive_pty().expect("pty master");
    h.runtime.start(&id).expect("start");
    let out = read_all(master);
    assert!(out.contains("/dev/pts/0"), "tty output: {out:?}");
    assert!(out.contains("ok"), "tty output: {out:?}");
    assert_eq!(wait_exit(pid), 0);
}

#[test]
fn joined_network_namespace_is_shared_others_are_not() {
    let h = Harness::new();
    let first = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    let pid1 = h.run_sleeper(&first);
    let mut second = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    second.namespaces.network = Namespace::Join(format!("/proc/{pid1}/ns/net").into());
    let pid2 = h.run_sleeper(&second);

    assert_eq!(ns_inode(pid1, "net"), ns_inode(pid2, "net"));
    let me = std::process::id() as i32;
    assert_ne!(ns_inode(pid1, "net"), ns_inode(me, "net"));
    for ns in ["mnt", "pid", "uts", "ipc"] {
        assert_ne!(ns_inode(pid1, ns), ns_inode(pid2, ns), "{ns} must differ");
        assert_ne!(
            ns_inode(pid2, ns),
            ns_inode(me, ns),
            "{ns} must not be the host's"
        );
    }
}

#[test]
fn default_capabilities_no_new_privs_and_seccomp() {
    let h = Harness::new();
    let plan = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    let pid = h.run_sleeper(&plan);
    let cap_eff = u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap();
    assert_eq!(cap_eff, DEFAULT_CAP_MASK, "CapEff {cap_eff:016x}");
    assert_eq!(cap_eff.count_ones(), 14);
    let cap_bnd = u64::from_str_radix(&status_field(pid, "CapBnd"), 16).unwrap();
    assert_eq!(cap_bnd, DEFAULT_CAP_MASK, "CapBnd {cap_bnd:016x}");
    assert_eq!(status_field(pid, "CapInh"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");

    let mut open = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    open.seccomp = Seccomp::Unconfined;
    let pid = h.run_sleeper(&open);
    assert_eq!(status_field(pid, "Seccomp"), "0");
}

#[test]
fn exec_returns_the_process_exit_status() {
    let h = Harness::new();
    let plan = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    h.run_sleeper(&plan);
    let id = plan.hostname.as_deref().unwrap();
    let status = h
        .runtime
        .exec_command(id, &args(&["sh", "-c", "exit 7"]), false, &[], None)
        .stdin(Stdio::null())
        .status()
        .expect("run exec");
    assert_eq!(status.code(), Some(7));

    let out = h
        .runtime
        .exec_command(
            id,
            &args(&["sh", "-c", "echo $A; pwd"]),
            false,
            &args(&["A=1"]),
            Some("/proc"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n/proc\n");
}

#[test]
fn kill_and_delete_are_idempotent() {
    let h = Harness::new();
    let missing = unique("oci-test-missing");
    assert_eq!(h.runtime.state(&missing).unwrap(), None);
    h.runtime
        .kill(&missing, 9, false)
        .expect("kill of a missing container");
    h.runtime
        .kill(&missing, 9, true)
        .expect("kill --all of a missing container");
    h.runtime
        .delete(&missing)
        .expect("delete of a missing container");

    let plan = h.plan(&unique("oci-test"), &["sleep", "1000"]);
    let pid = h.run_sleeper(&plan);
    let id = plan.hostname.as_deref().unwrap();
    assert_eq!(h.runtime.state(id).unwrap().unwrap().pid, pid);
    h.runtime.kill(id, libc_sigkill(), false).expect("kill");
    let deadline = Instant::now() + TIMEOUT;
    while matches!(
        waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    ) {
        assert!(Instant::now() < deadline, "SIGKILL did not kill {pid}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.runtime.state(id).unwrap().unwrap().status, "stopped");
    h.runtime
        .kill(id, libc_sigkill(), false)
        .expect("kill of a stopped container");
    h.runtime.delete(id).expect("delete");
    h.runtime.delete(id).expect("second delete");
    h.runtime
        .kill(id, libc_sigkill(), true)
        .expect("kill after delete");
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

#[test]
fn create_failure_carries_the_runtime_message() {
    let h = Harness::new();
    let id = unique("oci-test");
    let plan = h.plan(&id, &["/no/such/binary"]);
    // runc checks the binary at create time; other runtimes may only fail at start.
    let err = h
        .create(&id, &plan, None, null_stdio())
        .and_then(|_| h.runtime.start(&id))
        .expect_err("running a missing binary");
    let msg = err.to_string();
    assert!(msg.contains("/no/such/binary"), "{msg}");
    assert!(
        !msg.contains("\"level\""),
        "raw JSON log in the message: {msg}"
    );

    let mut bad = h.plan(&unique("oci-test"), &["true"]);
    bad.rootfs = h.dir.path().join("no-rootfs");
    let bad_id = bad.hostname.clone().unwrap();
    let err = h
        .create(&bad_id, &bad, None, null_stdio())
        .expect_err("create without rootfs");
    match &err {
        RuntimeError::Failed {
            command, stderr, ..
        } => {
            assert_eq!(command, &format!("create {bad_id}"));
            assert!(!stderr.is_empty() && !stderr.starts_with('{'), "{stderr}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn missing_runtime_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["no-such-runtime-xyz", "/nonexistent/runc"] {
        match Runtime::resolve(Some(name), dir.path()) {
            Err(RuntimeError::NotFound(n)) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Prints the mean create+start+exit time of `true`, the number DESIGN.md compares
/// runtimes by (`cargo test -p peapod-oci --test runtime timing -- --nocapture`).
#[test]
fn timing_create_start_true() {
    let h = Harness::new();
    const N: u32 = 10;
    let mut total = Duration::ZERO;
    for _ in 0..N {
        let id = unique("oci-test");
        let plan = h.plan(&id, &["true"]);
        let bundle = h.bundle(&id);
        write_bundle(&bundle, &spec_for(&plan)).unwrap();
        h.containers.borrow_mut().push((id.clone(), None));
        let pid_file = bundle.join("init.pid");
        let t = Instant::now();
        h.runtime
            .create_then(false, &id, &bundle, &pid_file, None, null_stdio())
            .expect("create");
        h.runtime.start(&id).expect("start");
        let pid: i32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        h.containers.borrow_mut().last_mut().unwrap().1 = Some(pid);
        assert_eq!(wait_exit(pid), 0);
        total += t.elapsed();
        h.runtime.delete(&id).expect("delete");
    }
    eprintln!(
        "{}: create+start+exit of `true`: {:.1} ms per container (mean of {N})",
        h.runtime.binary.display(),
        total.as_secs_f64() * 1000.0 / f64::from(N)
    );
}
