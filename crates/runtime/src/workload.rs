//! The container process's last step: find the program as runc does (Go's `LookPath` over
//! the process's own `PATH`; a name with a `/` is taken as it is) and exec it, failing with
//! runc's messages (`exec: "x": executable file not found in $PATH`), which peapod maps to
//! exit codes 127 and 126 as Docker does.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use crate::seccomp::Filter;

/// Runs `process.args` of the spec, confined by a ready seccomp filter when given one.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// The container's seccomp filter, loaded in [`Executor::validate`]: the step right
    /// after the one where libcontainer loads a profile itself (with no_new_privileges, as
    /// close to the exec as the start handshake allows). For a create, the spec
    /// libcontainer sees then has no profile (see `commands::create`); for an `exec`,
    /// libcontainer builds the process's spec without the container's profile, where runc
    /// applies it to every process of the container.
    pub seccomp: Option<Filter>,
    /// The process was given CAP_SYS_ADMIN to load the filter without no_new_privileges
    /// (an `exec` whose process has it neither); it is dropped once the filter is loaded
    /// ([`Filter::load_then_drop_sys_admin`]).
    pub sys_admin_for_seccomp: bool,
}

/// Why a program cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupError {
    /// No such file (on `PATH`, or at the given path).
    NotFound(String),
    /// A directory, or a file without an execute bit.
    PermissionDenied(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(name) if name.contains('/') => {
                write!(f, "exec: {name:?}: stat {name}: no such file or directory")
            }
            Self::NotFound(name) => write!(f, "exec: {name:?}: executable file not found in $PATH"),
            Self::PermissionDenied(name) => write!(f, "exec: {name:?}: permission denied"),
        }
    }
}

/// Finds `name` like Go's `exec.LookPath` with the given `PATH` value.
pub fn look_path(name: &str, path_var: Option<&str>) -> Result<PathBuf, LookupError> {
    if name.is_empty() {
        return Err(LookupError::NotFound(name.to_owned()));
    }
    if name.contains('/') {
        let p = Path::new(name);
        return match executable(p) {
            Some(true) => Ok(p.to_owned()),
            Some(false) => Err(LookupError::PermissionDenied(name.to_owned())),
            None => Err(LookupError::NotFound(name.to_owned())),
        };
    }
    let mut denied = false;
    for dir in path_var.unwrap_or_default().split(':') {
        // An empty element means the current directory, as in every shell.
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => denied = true,
            None => {}
        }
    }
    if denied {
        Err(LookupError::PermissionDenied(name.to_owned()))
    } else {
        Err(LookupError::NotFound(name.to_owned()))
    }
}

/// Some(true): a file with an execute bit; Some(false): exists but is not that; None: absent.
fn executable(p: &Path) -> Option<bool> {
    let m = std::fs::metadata(p).ok()?;
    Some(m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn args(spec: &Spec) -> Option<&Vec<String>> {
    spec.process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .filter(|a| !a.is_empty())
}

fn path_var(spec: &Spec) -> Option<String> {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .and_then(|env| {
            env.iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
        })
}

impl Executor for Workload {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        if let Some(filter) = &self.seccomp {
            if self.sys_admin_for_seccomp {
                filter.load_then_drop_sys_admin()
            } else {
                filter.load()
            }
            .map_err(ExecutorValidationError::ArgValidationError)?;
        }
        let args = args(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("process.args must not be empty".into())
        })?;
        look_path(&args[0], path_var(spec).as_deref())
            .map(|_| ())
            .map_err(|e| ExecutorValidationError::ArgValidationError(e.to_string()))
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = args(spec).ok_or(ExecutorError::InvalidArg)?;
        let program = look_path(&args[0], path_var(spec).as_deref())
            .map_err(|e| ExecutorError::Other(e.to_string()))?;
        let program = CString::new(program.into_os_string().into_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        // The environment was set up by libcontainer (`setup_envs`) from process.env.
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        Err(ExecutorError::Other(format!("exec: {:?}: {err}", args[0])))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn lookup_like_runc() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        fs::write(&tool, "").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        let data = bin.join("data");
        fs::write(&data, "").unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
        let path = format!("/nonexistent:{}", bin.display());

        assert_eq!(look_path("tool", Some(&path)).unwrap(), tool);
        assert_eq!(look_path(tool.to_str().unwrap(), None).unwrap(), tool);
        assert_eq!(
            look_path("nope", Some(&path)).unwrap_err().to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("tool", None).unwrap_err(),
            LookupError::NotFound("tool".into())
        );
        assert_eq!(
            look_path("data", Some(&path)).unwrap_err().to_string(),
            "exec: \"data\": permission denied"
        );
        assert_eq!(
            look_path(bin.to_str().unwrap(), None).unwrap_err(),
            LookupError::PermissionDenied(bin.display().to_string())
        );
        assert!(look_path("/no/such", None)
            .unwrap_err()
            .to_string()
            .contains("no such file or directory"));
    }
}
