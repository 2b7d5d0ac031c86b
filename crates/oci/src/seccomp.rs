//! The RuntimeDefault seccomp profile: Docker's / containerd's default profile
//! (moby `profiles/seccomp/default.json`), flattened into the OCI form a runtime reads.
//!
//! moby's file is a template: rules carry `includes`/`excludes` on capabilities, arches and
//! kernel versions, resolved when a container is created. `seccomp_default.json` is that
//! template already resolved for the 14 default capabilities (so `chroot` is allowed,
//! `clone` only without namespace flags, `clone3` fails with ENOSYS so libc falls back to
//! `clone`, and nothing gated on CAP_SYS_ADMIN, CAP_SYS_PTRACE, ... is allowed) and for the
//! x86_64 (with x86, x32) and aarch64 (with arm) families; a spec gets only the host's
//! family, as Docker's `archMap` does (each extra architecture costs the runtime about 10 ms
//! of filter compilation per container, measured with runc 1.1 here). Arch-specific names
//! that the host's libseccomp does not know are skipped by the runtime. `io_uring_*` is left out, as
//! moby and containerd do since 2023. Sockets of family `AF_VSOCK` are refused.
//!
//! This module owns only the profile data; whether a container gets it is `spec_for`'s call.

use std::sync::LazyLock;

use oci_spec::runtime::{Arch, LinuxSeccomp};

/// The profile as shipped, in the OCI runtime spec's `linux.seccomp` JSON form.
const RUNTIME_DEFAULT_JSON: &str = include_str!("seccomp_default.json");

static RUNTIME_DEFAULT: LazyLock<LinuxSeccomp> = LazyLock::new(|| {
    serde_json::from_str(RUNTIME_DEFAULT_JSON)
        .expect("seccomp_default.json is a valid LinuxSeccomp (checked by a unit test)")
});

/// The RuntimeDefault profile for the architecture peapod runs on: default action
/// `SCMP_ACT_ERRNO` (EPERM) with Docker's allow-list.
pub fn runtime_default() -> LinuxSeccomp {
    runtime_default_for(std::env::consts::ARCH)
}

/// The RuntimeDefault profile for a host architecture (`std::env::consts::ARCH` names):
/// its `architectures` are that family (x86_64: x86_64, x86, x32; aarch64: aarch64, arm),
/// or none — the runtime's native one only — for an architecture outside those families.
pub fn runtime_default_for(host_arch: &str) -> LinuxSeccomp {
    let mut profile = RUNTIME_DEFAULT.clone();
    profile.set_architectures(architectures(host_arch));
    profile
}

fn architectures(host_arch: &str) -> Option<Vec<Arch>> {
    match host_arch {
        "x86_64" => Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ]),
        "x86" => Some(vec![Arch::ScmpArchX86]),
        "aarch64" => Some(vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]),
        "arm" => Some(vec![Arch::ScmpArchArm]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

    fn allowed_unconditionally(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().as_ref().unwrap().iter().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    }

    fn mentioned(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|s| s.names().iter().any(|n| n == name))
    }

    #[test]
    fn profile_parses_and_denies_by_default() {
        let file: LinuxSeccomp = serde_json::from_str(RUNTIME_DEFAULT_JSON).unwrap();
        assert_eq!(file.architectures().as_ref().map(Vec::len), Some(5));
        let p = runtime_default();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(p.syscalls(), file.syscalls());
    }

    #[test]
    fn architectures_are_the_host_family() {
        let x86 = runtime_default_for("x86_64");
        assert_eq!(
            x86.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let arm = runtime_default_for("aarch64");
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert_eq!(runtime_default_for("riscv64").architectures(), &None);
        assert_eq!(
            runtime_default().architectures(),
            runtime_default_for(std::env::consts::ARCH).architectures()
        );
    }

    #[test]
    fn everyday_syscalls_are_allowed() {
        let p = runtime_default();
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "exit_group",
            "wait4",
            "mmap",
            "futex",
            "rt_sigaction",
            "getpid",
            "chroot",
            "setuid",
            "arch_prctl",
            "ptrace",
        ] {
            assert!(
                allowed_unconditionally(&p, name),
                "{name} should be allowed"
            );
        }
    }

    #[test]
    fn privileged_syscalls_are_denied() {
        let p = runtime_default();
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "reboot",
            "init_module",
            "kexec_load",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "open_by_handle_at",
            "io_uring_setup",
            "settimeofday",
            "swapon",
            "acct",
            "syslog",
            "userfaultfd",
        ] {
            assert!(
                !mentioned(&p, name),
                "{name} must fall to the default ERRNO action"
            );
        }
    }

    #[test]
    fn clone_is_allowed_only_without_namespace_flags_and_clone3_is_enosys() {
        let p = runtime_default();
        let rules = p.syscalls().as_ref().unwrap();
        let clone: Vec<_> = rules
            .iter()
            .filter(|s| s.names().iter().any(|n| n == "clone"))
            .collect();
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET must all be clear.
        assert_eq!(arg.value(), 0x7E02_0000);
        let clone3 = rules
            .iter()
            .find(|s| s.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn socket_refuses_vsock_and_personality_is_restricted() {
        let p = runtime_default();
        assert!(!allowed_unconditionally(&p, "socket"));
        assert!(!allowed_unconditionally(&p, "personality"));
        let rules = p.syscalls().as_ref().unwrap();
        let socket = rules
            .iter()
            .find(|s| s.names().iter().any(|n| n == "socket"))
            .unwrap();
        let arg = socket.args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 40, LinuxSeccompOperator::ScmpCmpNe)
        );
        let personas = rules
            .iter()
            .filter(|s| s.names().iter().any(|n| n == "personality"))
            .count();
        assert_eq!(personas, 5);
    }
}
