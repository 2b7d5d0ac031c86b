//! `update --resources FILE|- ID`: new cgroup limits for a created or running container, as
//! runc does it — the given OCI `LinuxResources` fields are laid over the container's
//! current ones (what the last update left, else the bundle's spec), the whole set is
//! applied to its cgroups through `libcgroups` (v1 or v2), and recorded in the state
//! directory for the next update. Device rules are never rewritten (runc's update leaves
//! them as `create` set them).

use std::io::Read;
use std::path::Path;

use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt};
use libcontainer::oci_spec::runtime::{LinuxResources, Spec};
use serde_json::Value;

use crate::state::{self, Status};
use crate::Error;

/// The file, in the container's state directory, holding its resources after an update.
const RESOURCES: &str = "peapod-resources.json";

/// Reads the update from `source` (`-` is stdin), applies it and records the result.
pub fn update(root: &Path, id: &str, source: &Path) -> Result<(), Error> {
    let container = state::load(root, id)?;
    let status = state::status(&container);
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(Error::Status {
            command: "update",
            id: id.to_owned(),
            status,
        });
    }
    let text = read_source(source)?;
    let change: Value = serde_json::from_str(&text).map_err(bad_resources)?;
    if !change.is_object() {
        return Err(Error::BadResources(
            "expected a JSON object (the OCI LinuxResources)".into(),
        ));
    }

    let recorded = container.root.join(RESOURCES);
    let current = match std::fs::read(&recorded) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(bad_resources)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            spec_resources(&container.bundle().join("config.json"))?
        }
        Err(e) => return Err(Error::io("read", recorded, e)),
    };
    let merged = merge(current, &change);
    let resources = without_devices(serde_json::from_value(merged.clone()).map_err(bad_resources)?);

    let context = format!("updating the cgroups of container {id}");
    let config = container
        .spec()
        .map_err(Error::container(context.clone()))?;
    let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: false,
        container_name: id.to_owned(),
    })
    .map_err(|e| Error::Cgroup {
        context: context.clone(),
        message: crate::chain(&e),
    })?;
    manager
        .apply(&controller_opt(&resources))
        .map_err(|e| Error::Cgroup {
            context,
            message: crate::chain(&e),
        })?;

    let tmp = recorded.with_extension("tmp");
    let json = serde_json::to_vec(&merged).expect("JSON serializes");
    std::fs::write(&tmp, json).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &recorded).map_err(|e| Error::io("rename", &recorded, e))
}

fn bad_resources(e: serde_json::Error) -> Error {
    Error::BadResources(e.to_string())
}

fn read_source(source: &Path) -> Result<String, Error> {
    let mut text = String::new();
    if source == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("read", "stdin", e))?;
    } else {
        text = std::fs::read_to_string(source).map_err(|e| Error::io("read", source, e))?;
    }
    Ok(text)
}

/// `linux.resources` of the spec at `config` (an empty object when it has none).
fn spec_resources(config: &Path) -> Result<Value, Error> {
    let spec = Spec::load(config).map_err(|source| Error::Spec {
        context: format!("reading {}", config.display()),
        source,
    })?;
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    Ok(resources.map_or_else(
        || Value::Object(Default::default()),
        |r| serde_json::to_value(r).expect("resources serialize"),
    ))
}

/// `change` laid over `current`, object members recursively (runc sets each given field
/// and keeps the others); a null in `change` means "not given", any other value — arrays
/// included — replaces.
fn merge(mut current: Value, change: &Value) -> Value {
    match (current.as_object_mut(), change.as_object()) {
        (Some(have), Some(new)) => {
            for (k, v) in new {
                if v.is_null() {
                    continue;
                }
                let old = have.remove(k).unwrap_or(Value::Null);
                have.insert(k.clone(), merge(old, v));
            }
            current
        }
        _ => change.clone(),
    }
}

/// What the cgroup managers apply: the resources without device rules.
fn controller_opt(resources: &LinuxResources) -> ControllerOpt<'_> {
    ControllerOpt {
        resources,
        disable_oom_killer: resources
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    }
}

/// The resources an update applies: device rules dropped (rewriting them would deny every
/// device for a moment, and update does not change them).
fn without_devices(mut resources: LinuxResources) -> LinuxResources {
    resources.set_devices(None);
    resources
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_fields_replace_and_the_others_stay() {
        let current = json!({
            "memory": {"limit": 33554432, "swap": 67108864},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "devices": [{"allow": false, "access": "rwm"}],
        });
        let change = json!({
            "memory": {"limit": 67108864},
            "cpu": {"quota": 20000, "period": null},
            "pids": {"limit": 42},
        });
        assert_eq!(
            merge(current, &change),
            json!({
                "memory": {"limit": 67108864, "swap": 67108864},
                "cpu": {"shares": 512, "quota": 20000, "period": 100000},
                "devices": [{"allow": false, "access": "rwm"}],
                "pids": {"limit": 42},
            })
        );
    }

    #[test]
    fn arrays_are_replaced_not_merged() {
        let current = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]});
        let change = json!({"hugepageLimits": []});
        assert_eq!(merge(current, &change), json!({"hugepageLimits": []}));
    }

    #[test]
    fn devices_are_left_alone() {
        let r: LinuxResources = serde_json::from_value(json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 1048576},
        }))
        .unwrap();
        let r = without_devices(r);
        assert!(r.devices().is_none());
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1048576));
    }
}
