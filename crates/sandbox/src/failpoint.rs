//! Failpoints: named steps where a test can make a peapod process fail or die, so crash
//! recovery is tested at exactly the step it is about. `PEAPOD_FAILPOINTS=a,b=kill` makes
//! step `a` return an injected error and step `b` kill its process with SIGKILL (as
//! `kill -9` would). Unset, every step costs one environment lookup. The variable is
//! inherited by the processes peapod re-executes (monitors, infra), so a test can reach
//! any of them; container processes never see it (their environment is the OCI spec's).
//!
//! The steps are listed in the binary's `fault` module; this crate's own are
//! `network-ipam-committed` and `network-attach-half`.

/// The environment variable naming the active failpoints.
pub const ENV: &str = "PEAPOD_FAILPOINTS";

/// What an active failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The step fails with an injected error.
    Error,
    /// The process kills itself with SIGKILL at the step.
    Kill,
}

/// The action `spec` (the variable's value) sets for step `name`, if any.
pub fn action_in(spec: &str, name: &str) -> Option<Action> {
    spec.split(',').map(str::trim).find_map(|entry| {
        let (n, what) = entry.split_once('=').unwrap_or((entry, "error"));
        let action = match what {
            "kill" => Action::Kill,
            _ => Action::Error,
        };
        (n == name).then_some(action)
    })
}

/// The action set for step `name` in this process's environment.
pub fn action(name: &str) -> Option<Action> {
    let spec = std::env::var(ENV).ok()?;
    action_in(&spec, name)
}

/// Runs step `name`'s failpoint: `Err(name)` when it is set to fail; never returns when it
/// is set to kill.
pub fn check(name: &str) -> Result<(), String> {
    match action(name) {
        None => Ok(()),
        Some(Action::Error) => Err(name.to_owned()),
        Some(Action::Kill) => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; if raising it failed, die anyway.
            std::process::abort()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_steps_and_actions() {
        let spec = "a, b=kill,c=error,dd";
        assert_eq!(action_in(spec, "a"), Some(Action::Error));
        assert_eq!(action_in(spec, "b"), Some(Action::Kill));
        assert_eq!(action_in(spec, "c"), Some(Action::Error));
        assert_eq!(action_in(spec, "d"), None);
        assert_eq!(action_in("", "a"), None);
    }

    #[test]
    fn an_unset_failpoint_passes() {
        assert_eq!(check("peapod-test-never-set"), Ok(()));
    }
}
