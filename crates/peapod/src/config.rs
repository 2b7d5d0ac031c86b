//! `config.toml`: the engine's settings. Every field has a default, so a missing file is
//! a valid configuration; an unknown key is an error naming it.

use std::path::Path;

use anyhow::Context;
use peapod_sandbox::NetworkConfig;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// OCI runtime name or path (`--runtime` wins); none = the built-in runtime.
    pub runtime: Option<String>,
    /// The cgroup parent of every container: `/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    /// The built-in network.
    pub network: NetworkConfig,
    /// Registry settings for pulls.
    pub registries: RegistriesConfig,
    /// `[restart]`: the kubelet's crash-loop back-off.
    pub restart: RestartConfig,
}

/// `[restart]`: the back-off between restarts of a crashing container: immediate, then
/// `backoff_initial_seconds`, doubling up to `backoff_max_seconds`; it starts over once a
/// container has run for twice the maximum (ten minutes by default), as the kubelet does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartConfig {
    pub backoff_initial_seconds: f64,
    pub backoff_max_seconds: f64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            backoff_initial_seconds: 10.0,
            backoff_max_seconds: 300.0,
        }
    }
}

/// `[registries]`: mirrors and registries reached without verified TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistriesConfig {
    /// `host[:port]` reached over HTTPS without verification, then plain HTTP.
    pub insecure: Vec<String>,
    /// Mirrors by registry: `"docker.io" = ["https://mirror.example"]`.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            runtime: None,
            cgroup_parent: "peapod".into(),
            network: NetworkConfig::default(),
            registries: RegistriesConfig::default(),
            restart: RestartConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let cfg: Self = toml::from_str(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))?;
        if cfg.cgroup_parent.is_empty()
            || cfg.cgroup_parent.contains("..")
            || cfg.cgroup_parent.starts_with('/')
        {
            anyhow::bail!(
                "invalid configuration file {}: cgroup_parent {:?} must be a relative cgroup name without '..'",
                path.display(),
                cfg.cgroup_parent
            );
        }
        let r = &cfg.restart;
        for (key, v) in [
            ("backoff_initial_seconds", r.backoff_initial_seconds),
            ("backoff_max_seconds", r.backoff_max_seconds),
        ] {
            if !(v.is_finite() && (0.0..=86400.0).contains(&v)) {
                anyhow::bail!(
                    "invalid configuration file {}: restart.{key} = {v} must be a number of seconds between 0 and 86400",
                    path.display()
                );
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_default_and_unknown_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(Config::load(&p).unwrap(), Config::default());
        std::fs::write(
            &p,
            "runtime = \"runc\"\n[network]\nbridge = \"ppx\"\nsubnet = \"10.99.0.0/24\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.runtime.as_deref(), Some("runc"));
        assert_eq!(c.network.bridge, "ppx");
        std::fs::write(&p, "runtim = \"runc\"\n").unwrap();
        let err = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(err.contains("unknown field `runtim`"), "{err}");
    }
}
