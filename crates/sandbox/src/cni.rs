//! CNI 1.0: when the CNI directory holds a `*.conflist` (the first by name), its plugins
//! are run instead of the built-in bridge, as containerd and CRI-O do: `ADD` through the
//! list in order, each plugin's result passed to the next as `prevResult`; `DEL` in reverse
//! with the cached `ADD` result. The cache, `<state_dir>/cni/<owner>.json`, also keeps the
//! conflist used, so `DEL` runs the same plugins even if the file changed; it is written
//! before `ADD` runs, so a crash mid-`ADD` still leaves enough for `DEL`.
//!
//! Plugins are found in the configured plugin directories (`/opt/cni/bin` then
//! `/usr/lib/cni` by default), given to them as `CNI_PATH`; each run is bounded by
//! [`PLUGIN_TIMEOUT`], so a stuck plugin cannot wedge a teardown.

use std::fs;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipnet::Ipv4Net;
use peapod_store::IoError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Endpoint, NetworkError};

/// How long one plugin may run before it is killed.
pub(crate) const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The interface name asked of the plugins.
const IFNAME: &str = "eth0";

/// The first `*.conflist` in `dir` by name; `None` when there is none or no `dir`.
pub(crate) fn find_conflist(dir: &Path) -> Result<Option<PathBuf>, NetworkError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("list CNI configuration directory", dir, e).into()),
    };
    let mut lists = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| IoError::new("list CNI configuration directory", dir, e))?
            .path();
        if path.extension().is_some_and(|x| x == "conflist") && path.is_file() {
            lists.push(path);
        }
    }
    lists.sort();
    Ok(lists.into_iter().next())
}

/// What is kept between `ADD` and `DEL`.
#[derive(Debug, Serialize, Deserialize)]
struct CniCache {
    /// The conflist file it came from.
    conflist_path: PathBuf,
    /// The conflist as it was at `ADD`.
    conflist: Value,
    /// The netns given at `ADD`.
    netns: PathBuf,
    /// The final `ADD` result; `None` while `ADD` runs.
    result: Option<Value>,
}

fn cache_file(state_dir: &Path, owner: &str) -> PathBuf {
    state_dir.join("cni").join(format!("{owner}.json"))
}

/// A parsed network configuration list.
#[derive(Debug)]
struct NetConfList {
    name: String,
    cni_version: String,
    plugins: Vec<Map<String, Value>>,
}

impl NetConfList {
    fn parse(path: &Path, v: &Value) -> Result<Self, NetworkError> {
        let bad = |reason: &str| NetworkError::CniConfig {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"name\" string"))?;
        let cni_version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"cniVersion\" string"))?;
        let list = v
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"plugins\" array"))?;
        if list.is_empty() {
            return Err(bad("\"plugins\" is empty"));
        }
        let mut plugins = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let obj = p
                .as_object()
                .ok_or_else(|| bad(&format!("plugins[{i}] is not an object")))?;
            match obj.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') => {}
                _ => return Err(bad(&format!("plugins[{i}] has no valid \"type\""))),
            }
            plugins.push(obj.clone());
        }
        Ok(Self {
            name: name.to_owned(),
            cni_version: cni_version.to_owned(),
            plugins,
        })
    }

    /// The stdin of one plugin: its own config with the list's name and version and the
    /// previous result injected, as the spec says.
    fn plugin_config(&self, plugin: &Map<String, Value>, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        match prev {
            Some(prev) => conf.insert("prevResult".into(), prev.clone()),
            None => conf.remove("prevResult"),
        };
        Value::Object(conf)
    }
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Runs `ADD` for `owner`; see [`crate::PodNetwork::attach`].
pub(crate) fn attach(
    state_dir: &Path,
    dirs: &[PathBuf],
    conflist_path: &Path,
    owner: &str,
    netns: &Path,
) -> Result<Endpoint, NetworkError> {
    // A stale attachment of this owner goes first, so the plugins never see ADD twice; it
    // is torn down in the netns it was made in.
    del_cached(state_dir, dirs, owner, None)?;
    let text = fs::read(conflist_path)
        .map_err(|e| IoError::new("read CNI configuration", conflist_path, e))?;
    let conflist: Value = serde_json::from_slice(&text).map_err(|e| NetworkError::CniConfig {
        path: conflist_path.to_owned(),
        reason: e.to_string(),
    })?;
    let list = NetConfList::parse(conflist_path, &conflist)?;
    let netns =
        std::path::absolute(netns).map_err(|e| IoError::new("resolve netns path", netns, e))?;
    // Fail before any plugin runs when the netns is not there.
    crate::netns::open(&netns)?;

    let cache_path = cache_file(state_dir, owner);
    peapod_store::create_dir_all(cache_path.parent().expect("cache file has a directory"))?;
    let mut cache = CniCache {
        conflist_path: conflist_path.to_owned(),
        conflist,
        netns: netns.clone(),
        result: None,
    };
    peapod_store::write_json(&cache_path, &cache)?;

    // Undoing runs DEL on the plugins whose ADD was tried (the first `tried`), the failing
    // one included: it may have made part of its work.
    let undo = |tried: usize, prev: Option<&Value>| -> Result<(), NetworkError> {
        del_all(dirs, &list, &list.plugins[..tried], owner, &netns, prev)?;
        remove_cache(&cache_path)
    };
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let conf = list.plugin_config(plugin, prev.as_ref());
        let out = match run_plugin(dirs, plugin_type(plugin), "ADD", owner, &netns, &conf) {
            Ok(out) => out,
            // A plugin that could not be found never ran.
            Err(e @ NetworkError::CniPluginNotFound { .. }) => {
                return Err(e.with_rollback(undo(i, prev.as_ref())))
            }
            Err(e) => return Err(e.with_rollback(undo(i + 1, prev.as_ref()))),
        };
        match serde_json::from_slice::<Value>(&out) {
            Ok(result) if result.is_object() => prev = Some(result),
            Ok(_) | Err(_) => {
                let e = NetworkError::CniResult {
                    plugin: plugin_type(plugin).to_owned(),
                    reason: format!("ADD printed no JSON object: {:?}", truncated(&out)),
                };
                return Err(e.with_rollback(undo(i + 1, prev.as_ref())));
            }
        }
    }
    let result = prev.expect("the list has at least one plugin");
    let last = plugin_type(list.plugins.last().expect("non-empty")).to_owned();
    let endpoint = match endpoint_from(&list.name, &last, &result) {
        Ok(ep) => ep,
        Err(e) => return Err(e.with_rollback(undo(list.plugins.len(), Some(&result)))),
    };
    cache.result = Some(result);
    if let Err(e) = peapod_store::write_json(&cache_path, &cache) {
        let undone = undo(list.plugins.len(), cache.result.as_ref());
        return Err(NetworkError::from(e).with_rollback(undone));
    }
    Ok(endpoint)
}

/// Runs `DEL` for `owner` if it has a cache, then drops the cache. Plugin failures are
/// ignored when the netns is gone (what lived in it is gone with it; every plugin still
/// ran, so the IPAM plugin released the address); otherwise the cache stays for a retry.
pub(crate) fn detach(
    state_dir: &Path,
    dirs: &[PathBuf],
    owner: &str,
    netns: &Path,
) -> Result<(), NetworkError> {
    del_cached(state_dir, dirs, owner, Some(netns))
}

/// `DEL` for every cached attachment whose owner no longer exists; what was removed.
pub(crate) fn collect_garbage(
    state_dir: &Path,
    dirs: &[PathBuf],
    exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, NetworkError> {
    let dir = state_dir.join("cni");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("list CNI cache directory", &dir, e).into()),
    };
    let mut removed = Vec::new();
    let mut first_error = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if owner.starts_with('.') || exists(owner) {
            continue;
        }
        match del_cached(state_dir, dirs, owner, None) {
            Ok(()) => removed.push(format!("CNI attachment of {owner}")),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(removed), Err)
}

/// [`detach`] with the netns given, or else the one recorded at `ADD`.
fn del_cached(
    state_dir: &Path,
    dirs: &[PathBuf],
    owner: &str,
    netns: Option<&Path>,
) -> Result<(), NetworkError> {
    let cache_path = cache_file(state_dir, owner);
    let Some(cache) = peapod_store::read_json::<CniCache>(&cache_path)? else {
        return Ok(());
    };
    let list = NetConfList::parse(&cache.conflist_path, &cache.conflist)?;
    let netns = netns
        .and_then(|p| std::path::absolute(p).ok())
        .unwrap_or_else(|| cache.netns.clone());
    match del_all(
        dirs,
        &list,
        &list.plugins,
        owner,
        &netns,
        cache.result.as_ref(),
    ) {
        Err(_) if !netns.exists() => {}
        other => other?,
    }
    remove_cache(&cache_path)
}

fn remove_cache(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("remove CNI cache", path, e).into()),
    }
}

/// `DEL` through `plugins` (of `list`) in reverse order; all run even after a failure
/// (teardown is best effort), and the first failure is returned.
fn del_all(
    dirs: &[PathBuf],
    list: &NetConfList,
    plugins: &[Map<String, Value>],
    owner: &str,
    netns: &Path,
    prev: Option<&Value>,
) -> Result<(), NetworkError> {
    let mut first = None;
    for plugin in plugins.iter().rev() {
        let conf = list.plugin_config(plugin, prev);
        if let Err(e) = run_plugin(dirs, plugin_type(plugin), "DEL", owner, netns, &conf) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The plugin directories as a `CNI_PATH` value.
fn search_path(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":")
}

/// The executable of plugin `ty` in the plugin directories.
fn find_plugin(dirs: &[PathBuf], ty: &str) -> Result<PathBuf, NetworkError> {
    dirs.iter()
        .map(|dir| dir.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| NetworkError::CniPluginNotFound {
            plugin: ty.to_owned(),
            search_path: search_path(dirs),
        })
}

/// Runs one plugin; its stdout on success, else an error carrying the spec's error JSON
/// (`msg`, `details`, `code`) and stderr.
fn run_plugin(
    dirs: &[PathBuf],
    ty: &str,
    command: &'static str,
    owner: &str,
    netns: &Path,
    conf: &Value,
) -> Result<Vec<u8>, NetworkError> {
    let fail = |message: String| NetworkError::CniPlugin {
        plugin: ty.to_owned(),
        command,
        message,
    };
    let exe = find_plugin(dirs, ty)?;
    let mut child = Command::new(&exe)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", owner)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", IFNAME)
        .env("CNI_PATH", search_path(dirs))
        .env_remove("CNI_ARGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", exe.display())))?;
    let input = serde_json::to_vec(conf).expect("JSON values serialise");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Separate threads so a plugin that ignores stdin or fills stderr cannot block us.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (done_tx, done_rx) = mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = done_tx.send(());
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    // stdout closes when the plugin exits (or hands it to a daemon, which plugins don't).
    if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(PLUGIN_TIMEOUT) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!(
            "no answer within {}s; killed",
            PLUGIN_TIMEOUT.as_secs()
        )));
    }
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(fail(failure_message(&status.to_string(), &out, &err)))
    }
}

/// A readable account of a plugin failure: the error JSON's `msg: details (code N)` when
/// there is one, the exit status, and stderr.
fn failure_message(status: &str, stdout: &[u8], stderr: &[u8]) -> String {
    let mut parts = Vec::new();
    match serde_json::from_slice::<Value>(stdout) {
        Ok(v) if v.get("msg").is_some() || v.get("code").is_some() => {
            let mut s = v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("(no msg)")
                .to_owned();
            if let Some(details) = v
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                s.push_str(": ");
                s.push_str(details);
            }
            if let Some(code) = v.get("code").and_then(Value::as_u64) {
                s.push_str(&format!(" (code {code})"));
            }
            parts.push(s);
        }
        _ if !stdout.trim_ascii().is_empty() => {
            parts.push(format!("stdout: {}", truncated(stdout)))
        }
        _ => {}
    }
    parts.push(status.to_owned());
    if !stderr.trim_ascii().is_empty() {
        parts.push(format!("stderr: {}", truncated(stderr)));
    }
    parts.join("; ")
}

/// At most 2 KiB of a plugin's output, trimmed, as text.
fn truncated(bytes: &[u8]) -> String {
    let t = bytes.trim_ascii();
    let mut s = String::from_utf8_lossy(&t[..t.len().min(2048)]).into_owned();
    if t.len() > 2048 {
        s.push('…');
    }
    s
}

/// The endpoint described by a CNI result: the first IPv4 `ips` entry, its gateway
/// (0.0.0.0 when the result names none), and the MAC of the interface it is on (else of
/// the container's eth0).
fn endpoint_from(network: &str, plugin: &str, result: &Value) -> Result<Endpoint, NetworkError> {
    let bad = |reason: String| NetworkError::CniResult {
        plugin: plugin.to_owned(),
        reason,
    };
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"ips\"".into()))?;
    let (entry, address) = ips
        .iter()
        .find_map(|e| Some((e, e.get("address")?.as_str()?.parse::<Ipv4Net>().ok()?)))
        .ok_or_else(|| {
            bad(format!(
                "no IPv4 address in \"ips\": {}",
                Value::Array(ips.clone())
            ))
        })?;
    let gateway = entry
        .get("gateway")
        .and_then(Value::as_str)
        .and_then(|g| g.parse::<Ipv4Addr>().ok())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let by_index = entry
        .get("interface")
        .and_then(Value::as_u64)
        .and_then(|i| interfaces?.get(usize::try_from(i).ok()?));
    let by_name = || {
        interfaces?.iter().find(|i| {
            i.get("name").and_then(Value::as_str) == Some(IFNAME)
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
    };
    let mac = by_index
        .or_else(by_name)
        .and_then(|i| i.get("mac")?.as_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    Ok(Endpoint {
        network: network.to_owned(),
        ip: address.addr(),
        prefix_len: address.prefix_len(),
        gateway,
        mac,
        host_veth: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn list() -> NetConfList {
        let v = json!({
            "cniVersion": "1.0.0",
            "name": "testnet",
            "plugins": [{"type": "bridge", "bridge": "cni9"}, {"type": "portmap", "prevResult": {"stale": true}}]
        });
        NetConfList::parse(Path::new("x.conflist"), &v).unwrap()
    }

    #[test]
    fn plugin_config_gets_name_version_and_prev_result() {
        let l = list();
        let first = l.plugin_config(&l.plugins[0], None);
        assert_eq!(
            first,
            json!({"type": "bridge", "bridge": "cni9", "name": "testnet", "cniVersion": "1.0.0"})
        );
        let prev = json!({"ips": []});
        let second = l.plugin_config(&l.plugins[1], Some(&prev));
        assert_eq!(second["prevResult"], prev);
        let second = l.plugin_config(&l.plugins[1], None);
        assert!(second.get("prevResult").is_none());
    }

    #[test]
    fn bad_conflists_say_what_is_wrong() {
        for (v, want) in [
            (
                json!({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}),
                "name",
            ),
            (
                json!({"name": "n", "cniVersion": "1.0.0", "plugins": []}),
                "empty",
            ),
            (
                json!({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "../x"}]}),
                "plugins[0]",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "x"}]}),
                "cniVersion",
            ),
        ] {
            let e = NetConfList::parse(Path::new("a.conflist"), &v)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("a.conflist"), "{e}");
        }
    }

    #[test]
    fn endpoint_from_a_bridge_result() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni9", "mac": "AA:BB:CC:00:00:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
                {"name": "eth0", "mac": "AA:BB:CC:00:00:03", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}
            ]
        });
        let ep = endpoint_from("testnet", "bridge", &r).unwrap();
        assert_eq!(ep.network, "testnet");
        assert_eq!(ep.ip, "10.88.0.5".parse::<Ipv4Addr>().unwrap());
        assert_eq!(ep.prefix_len, 16);
        assert_eq!(ep.gateway, "10.88.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(ep.mac, "aa:bb:cc:00:00:03");
        assert_eq!(ep.host_veth, None);
    }

    #[test]
    fn endpoint_without_interface_index_or_gateway() {
        let r = json!({
            "interfaces": [{"name": "eth0", "mac": "aa:00:00:00:00:09", "sandbox": "/p"}],
            "ips": [{"address": "10.1.0.9/24"}]
        });
        let ep = endpoint_from("n", "p", &r).unwrap();
        assert_eq!(
            (ep.gateway, ep.mac.as_str()),
            (Ipv4Addr::UNSPECIFIED, "aa:00:00:00:00:09")
        );
        assert!(endpoint_from("n", "p", &json!({"ips": []})).is_err());
    }

    #[test]
    fn failures_surface_msg_details_code_and_stderr() {
        let m = failure_message(
            "exit status: 1",
            br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to set bridge addr","details":"could not add IP"}"#,
            b"panic: oops\n",
        );
        assert_eq!(m, "failed to set bridge addr: could not add IP (code 11); exit status: 1; stderr: panic: oops");
        assert_eq!(
            failure_message("exit status: 2", b"", b""),
            "exit status: 2"
        );
        assert_eq!(
            failure_message("exit status: 2", b"garbage", b""),
            "stdout: garbage; exit status: 2"
        );
    }

    #[test]
    fn conflists_are_picked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_conflist(&dir.path().join("missing")).unwrap(), None);
        assert_eq!(find_conflist(dir.path()).unwrap(), None);
        fs::write(dir.path().join("20-b.conflist"), "{}").unwrap();
        fs::write(dir.path().join("10-a.conflist"), "{}").unwrap();
        fs::write(dir.path().join("05-c.conf"), "{}").unwrap();
        assert_eq!(
            find_conflist(dir.path()).unwrap(),
            Some(dir.path().join("10-a.conflist"))
        );
    }
}
