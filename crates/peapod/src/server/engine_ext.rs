//! Small additions to the engine that only the server needs.

use std::process::Command;

use anyhow::{bail, Result};
use peapod_oci::runtime::Runtime;

use crate::engine::{Container, Engine};
use crate::record::State;

impl Engine {
    /// The runtime's `exec` of `args` in the running container `c` (the container's env and
    /// working directory), not yet spawned: the caller wires its stdio.
    pub fn exec_command_for(&self, c: &Container, args: &[String], tty: bool) -> Result<Command> {
        if !matches!(c.state, State::Running { .. }) {
            bail!(crate::engine::user_error(format!(
                "container {} is not running",
                c.config
                    .pod
                    .as_ref()
                    .map_or(c.config.name.as_str(), |l| l.container_name.as_str())
            )));
        }
        if args.is_empty() {
            bail!(crate::engine::user_error(
                "you must specify at least one command for the container"
            ));
        }
        let runtime = Runtime {
            binary: c.config.runtime.clone(),
            state_root: self.paths.runtime_state(),
        };
        Ok(runtime.exec_command(&c.config.id, args, tty, &c.config.env, Some(&c.config.cwd)))
    }

    /// Whether a container's log may still grow: it runs, or its monitor is still writing.
    pub fn log_may_grow(&self, id: &str) -> bool {
        let running = self
            .reload(id)
            .map(|c| matches!(c.state, State::Running { .. }))
            .unwrap_or(false);
        running
            || peapod_store::Lock::is_held(&self.container_dir(id).join("monitor.lock"))
                .unwrap_or(false)
    }
}
