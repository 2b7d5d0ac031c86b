//! The container's seccomp filter, compiled once per profile: the BPF program libseccomp
//! generates for a profile is kept in the state root as `.seccomp/<digest>.bpf` and
//! loaded with `seccomp(SECCOMP_SET_MODE_FILTER)` by every later create and exec with the
//! same profile, instead of compiling the profile's few hundred rules again each time
//! (about 14 ms for Docker's default profile).
//!
//! The program is built exactly as `libcontainer::seccomp::initialize_seccomp` builds it
//! (same actions, architectures, attributes and rule order), and loaded with the flags
//! libseccomp's `seccomp_load` would pass. The digest covers the profile, libseccomp's
//! version and API level and the native architecture, so a cached program is only reused
//! where libseccomp would have generated the same one; the state root lives in `/run`,
//! which a reboot (a new kernel) empties.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, Spec,
};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use peapod_sys::seccomp_flags;
use sha2::{Digest, Sha256};

use crate::Error;

/// The cache's directory in the state root (a name no container id starting with a letter
/// or digit can take; ids starting with '.' are refused).
pub const CACHE_DIR: &str = ".seccomp";

/// A compiled filter ready to be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The BPF program, as `seccomp_export_bpf` writes it.
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` from the profile's `flags`.
    pub flags: u32,
}

impl Filter {
    /// Installs the filter on the calling process, which must have no_new_privileges (as
    /// libcontainer's late seccomp step requires; the filter is never loaded privileged).
    pub fn load(&self) -> Result<(), String> {
        if !nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
            return Err(
                "the container's seccomp profile is only applied with process.noNewPrivileges"
                    .into(),
            );
        }
        peapod_sys::seccomp_set_mode_filter(&self.program, self.flags)
            .map_err(|e| format!("loading the seccomp filter: {e}"))
    }

    /// Installs the filter on a process without no_new_privileges that holds
    /// CAP_SYS_ADMIN only for this (in its effective and permitted sets, not in its
    /// bounding set), and drops it once the filter is loaded: the effect of runc loading a
    /// profile before it drops the process's capabilities.
    pub fn load_then_drop_sys_admin(&self) -> Result<(), String> {
        use caps::{CapSet, Capability};
        peapod_sys::seccomp_set_mode_filter(&self.program, self.flags)
            .map_err(|e| format!("loading the seccomp filter: {e}"))?;
        for set in [CapSet::Effective, CapSet::Permitted] {
            caps::drop(None, set, Capability::CAP_SYS_ADMIN).map_err(|e| {
                format!("dropping CAP_SYS_ADMIN after loading the seccomp filter: {e}")
            })?;
        }
        Ok(())
    }
}

/// The profile a process of this spec can get from a cached filter, or None where
/// libcontainer must apply it itself: no profile, a profile with notify actions (whose
/// listener fd libcontainer passes on), or a process without `noNewPrivileges: true`
/// (whose filter libcontainer loads while still privileged).
pub fn cacheable(spec: &Spec) -> Option<&LinuxSeccomp> {
    let profile = spec.linux().as_ref()?.seccomp().as_ref()?;
    let nnp = spec.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true);
    (nnp && !libcontainer::seccomp::is_notify(profile)).then_some(profile)
}

/// The filter for `profile`: the cached program when there is one, else compiled now and
/// stored (written to a temporary file, synced and renamed, so a reader never sees part of
/// a program).
pub fn prepare(state_root: &Path, profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let flags = flags(profile);
    let path = cache_path(state_root, profile)?;
    match std::fs::read(&path) {
        Ok(program) if whole_instructions(&program) => return Ok(Filter { program, flags }),
        // A file that is not a program (never written by us) is replaced.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", path, e)),
    }
    let program = store(&path, &compile(profile)?)?;
    Ok(Filter { program, flags })
}

/// Where the program for `profile` is cached.
pub fn cache_path(state_root: &Path, profile: &LinuxSeccomp) -> Result<PathBuf, Error> {
    Ok(state_root
        .join(CACHE_DIR)
        .join(format!("{}.bpf", digest(profile)?)))
}

fn whole_instructions(program: &[u8]) -> bool {
    !program.is_empty()
        && program
            .len()
            .is_multiple_of(peapod_sys::BPF_INSTRUCTION_SIZE)
}

/// sha256 over what the generated program depends on.
fn digest(profile: &LinuxSeccomp) -> Result<String, Error> {
    let version = ScmpVersion::current().map_err(Error::seccomp("reading libseccomp's version"))?;
    let mut h = Sha256::new();
    h.update(b"peapod seccomp bpf 1\n");
    h.update(
        format!(
            "libseccomp {}.{}.{} api {} arch {:?}\n",
            version.major,
            version.minor,
            version.micro,
            libseccomp::get_api(),
            ScmpArch::native()
        )
        .as_bytes(),
    );
    h.update(serde_json::to_vec(profile).expect("a seccomp profile serializes"));
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `program` to `path` atomically; returns it.
fn store(path: &Path, program: &[u8]) -> Result<Vec<u8>, Error> {
    let dir = path.parent().expect("a cache path has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let tmp = dir.join(format!(".tmp.{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(program)?;
            f.sync_all()
        })
        .map_err(|e| Error::io("write", &tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| program.to_vec())
}

/// `seccomp(2)` flags for the profile's `flags`, as `seccomp_load` sets them from the
/// filter attributes `initialize_seccomp` sets.
fn flags(profile: &LinuxSeccomp) -> u32 {
    profile.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => seccomp_flags::LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => seccomp_flags::TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => seccomp_flags::SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                seccomp_flags::WAIT_KILLABLE_RECV
            }
        }
    })
}

/// The BPF program libcontainer's `initialize_seccomp` would load for `profile` (its
/// steps, in its order), exported instead of loaded.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, Error> {
    let default_action = translate_action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default_action)
        .map_err(Error::seccomp("creating the seccomp filter"))?;
    for flag in profile.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
        }
        .map_err(Error::seccomp("setting a seccomp filter flag"))?;
    }
    for &arch in profile.architectures().iter().flatten() {
        ctx.add_arch(translate_arch(arch))
            .map_err(Error::seccomp("adding a seccomp architecture"))?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(Error::seccomp("setting SCMP_FLTATR_CTL_NNP"))?;
    for syscall in profile.syscalls().iter().flatten() {
        let action = translate_action(syscall.action(), syscall.errno_ret())?;
        // A rule with the default action is redundant, and libseccomp refuses it.
        if action == default_action {
            continue;
        }
        for name in syscall.names() {
            // A name libseccomp does not know is a syscall this kernel lacks: skipped.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext, cmps: &[ScmpArgCompare]| {
                ctx.add_rule_conditional(action, sc, cmps)
                    .map(|_| ())
                    .map_err(Error::seccomp(format!(
                        "adding the seccomp rule for {name}"
                    )))
            };
            match syscall.args() {
                Some(args) => {
                    let comparators: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                translate_op(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    let duplicate_index = args.iter().any(|a| !seen.insert(a.index()));
                    // Several comparisons of one argument: one rule each (runc's way).
                    if duplicate_index {
                        for c in &comparators {
                            add(&mut ctx, std::slice::from_ref(c))?;
                        }
                    } else {
                        add(&mut ctx, &comparators)?;
                    }
                }
                None => {
                    ctx.add_rule(action, sc)
                        .map(|_| ())
                        .map_err(Error::seccomp(format!(
                            "adding the seccomp rule for {name}"
                        )))?;
                }
            }
        }
    }
    let mut file = tempfile_in_memory()?;
    ctx.export_bpf(&file)
        .map_err(Error::seccomp("exporting the seccomp program"))?;
    let mut program = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut program))
        .map_err(|e| Error::io("read", "the exported seccomp program", e))?;
    Ok(program)
}

/// An anonymous in-memory file for `seccomp_export_bpf`, which writes to a descriptor.
fn tempfile_in_memory() -> Result<std::fs::File, Error> {
    nix::sys::memfd::memfd_create(c"peapod-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|e| Error::sys("memfd_create", e))
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn translate_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, Error> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc_eperm());
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.try_into().map_err(|_| Error::SeccompProfile {
                message: format!("SCMP_ACT_TRACE's errnoRet {errno} does not fit 16 bits"),
            })?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
    })
}

fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

fn translate_op(op: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::MetadataExt;

    use libcontainer::oci_spec::runtime::{
        LinuxBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder, ProcessBuilder, SpecBuilder,
    };

    use super::*;

    /// Docker's profile as peapod's specs carry it (peapod-oci's oci-spec is another
    /// version than libcontainer's: the JSON is the interface).
    pub fn docker() -> LinuxSeccomp {
        let json = serde_json::to_value(peapod_oci::seccomp::runtime_default()).unwrap();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn cached_program_is_the_compiled_one_and_is_reused() {
        let root = tempfile::tempdir().unwrap();
        let profile = docker();
        let fresh = compile(&profile).unwrap();
        assert!(whole_instructions(&fresh), "{} bytes", fresh.len());
        // Deterministic: what a later process would compile is what is cached.
        assert_eq!(compile(&profile).unwrap(), fresh);

        let path = cache_path(root.path(), &profile).unwrap();
        assert!(!path.exists());
        let first = prepare(root.path(), &profile).unwrap();
        assert_eq!(first.program, fresh);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            fresh,
            "the file is the program"
        );
        let inode = std::fs::metadata(&path).unwrap().ino();

        // The second time the file is read, not written again.
        let second = prepare(root.path(), &profile).unwrap();
        assert_eq!(second, first);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_file_that_is_no_program_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let profile = docker();
        let path = cache_path(root.path(), &profile).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"1234567").unwrap();
        let filter = prepare(root.path(), &profile).unwrap();
        assert_eq!(filter.program, compile(&profile).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), filter.program);
    }

    #[test]
    fn each_profile_has_its_own_program() {
        let root = Path::new("/r");
        let docker = docker();
        let deny_getcwd = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .architectures(vec![Arch::ScmpArchNative])
            .flags(vec![LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow])
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["getcwd".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc_eperm() as u32)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let a = cache_path(root, &docker).unwrap();
        let b = cache_path(root, &deny_getcwd).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap(), Path::new("/r/.seccomp"));
        assert_eq!(a.extension().unwrap(), "bpf");
        assert_ne!(compile(&docker).unwrap(), compile(&deny_getcwd).unwrap());
        assert_eq!(flags(&docker), 0);
        assert_eq!(flags(&deny_getcwd), seccomp_flags::SPEC_ALLOW);
    }

    #[test]
    fn only_no_new_privileges_without_notify_is_cached() {
        let spec = |nnp: Option<bool>, action: LinuxSeccompAction| {
            let mut process = ProcessBuilder::default().build().unwrap();
            process.set_no_new_privileges(nnp);
            let profile = LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActAllow)
                .syscalls(vec![LinuxSyscallBuilder::default()
                    .names(vec!["mkdir".to_string()])
                    .action(action)
                    .build()
                    .unwrap()])
                .build()
                .unwrap();
            SpecBuilder::default()
                .process(process)
                .linux(LinuxBuilder::default().seccomp(profile).build().unwrap())
                .build()
                .unwrap()
        };
        let errno = LinuxSeccompAction::ScmpActErrno;
        assert!(cacheable(&spec(Some(true), errno)).is_some());
        assert!(cacheable(&spec(None, errno)).is_none());
        assert!(cacheable(&spec(Some(false), errno)).is_none());
        assert!(cacheable(&spec(Some(true), LinuxSeccompAction::ScmpActNotify)).is_none());
        let mut none = spec(Some(true), errno);
        none.linux_mut().as_mut().unwrap().set_seccomp(None);
        assert!(cacheable(&none).is_none());
    }
}
