//! Registry credentials and authentication challenges: reading Docker-style `config.json`
//! (and containers' `auth.json`, the same format), writing it for `peapod login`, and
//! parsing the `WWW-Authenticate` challenges registries answer with.
//!
//! It reads and writes only the credential files it is given; it never talks to a registry
//! (the token exchange is in `registry`). Credential helpers (`credsStore`, `credHelpers`)
//! and identity tokens are not supported: such entries are skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use peapod_store::IoError;
use serde::Deserialize;

use crate::reference::DEFAULT_REGISTRY;

/// The key Docker writes for Docker Hub in `config.json`.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for one registry. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The `Authorization: Basic …` header value.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Credentials by registry host (`docker.io`, `quay.io`, `localhost:5000`).
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    entries: BTreeMap<String, Credential>,
    /// Credential files that exist but could not be read or parsed (skipped), so a caller
    /// can warn about them.
    pub errors: Vec<CredentialsError>,
}

impl Credentials {
    /// No credentials: every registry is accessed anonymously.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credential for `registry` (any spelling [`registry_key`]
    /// accepts, e.g. `https://index.docker.io/v1/`).
    pub fn insert(&mut self, registry: &str, username: &str, password: &str) {
        self.entries.insert(
            registry_key(registry),
            Credential {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }

    /// The credential for a registry host, if any.
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.entries.get(&registry_key(registry))
    }

    /// Whether there is no credential at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The registries with a credential, normalised, sorted.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Adds `other`'s entries for registries that have none here (earlier sources win).
    pub fn merge(&mut self, other: Credentials) {
        for (k, v) in other.entries {
            self.entries.entry(k).or_insert(v);
        }
        self.errors.extend(other.errors);
    }

    /// Parses a Docker `config.json` (`{"auths": {…}}`), which is also the content of a
    /// Kubernetes `kubernetes.io/dockerconfigjson` Secret; the legacy `.dockercfg` form (the
    /// `auths` map alone) is accepted too. Entries without a usable user and password are
    /// skipped.
    pub fn from_docker_config(data: &[u8]) -> Result<Self, CredentialsError> {
        Self::parse_docker_config(data).map_err(|reason| CredentialsError::Malformed { reason })
    }

    fn parse_docker_config(data: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
        }
        #[derive(Deserialize)]
        struct ConfigJson {
            #[serde(default)]
            auths: Option<BTreeMap<String, Entry>>,
        }
        let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let auths: BTreeMap<String, Entry> = if value.get("auths").is_some() {
            serde_json::from_value::<ConfigJson>(value)
                .map_err(|e| e.to_string())?
                .auths
                .unwrap_or_default()
        } else {
            // Legacy `.dockercfg`, or a config.json without logins at all.
            let map = value
                .as_object()
                .ok_or_else(|| "not a JSON object".to_owned())?;
            map.iter()
                .filter(|(_, v)| v.is_object() && (v.get("auth").is_some()))
                .map(|(k, v)| {
                    serde_json::from_value::<Entry>(v.clone())
                        .map(|e| (k.clone(), e))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<_, _>>()?
        };
        let mut out = Self::new();
        for (registry, entry) in auths {
            let decoded = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| format!("auths[{registry:?}].auth: {e}"))?;
                    let s = String::from_utf8(bytes)
                        .map_err(|_| format!("auths[{registry:?}].auth: not UTF-8"))?;
                    let (u, p) = s.split_once(':').ok_or_else(|| {
                        format!("auths[{registry:?}].auth: no ':' in user:password")
                    })?;
                    Some((u.to_owned(), p.to_owned()))
                }
                None => match (entry.username, entry.password) {
                    (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
                    _ => None,
                },
            };
            if let Some((u, p)) = decoded {
                out.entries
                    .entry(registry_key(&registry))
                    .or_insert(Credential {
                        username: u,
                        password: p,
                    });
            }
        }
        Ok(out)
    }
}

/// A credential file that could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is not a valid Docker-style credential file.
    #[error("invalid credential file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Content given directly (a Secret's `.dockerconfigjson`) is not a valid Docker config.
    #[error("invalid Docker config JSON: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

// Credentials are cloned into each pull; their file errors go along (io::Error is not Clone).
impl Clone for CredentialsError {
    fn clone(&self) -> Self {
        match self {
            Self::Io(e) => Self::Io(IoError::new(
                e.op,
                &e.path,
                io::Error::new(e.source.kind(), e.source.to_string()),
            )),
            Self::Invalid { path, reason } => Self::Invalid {
                path: path.clone(),
                reason: reason.clone(),
            },
            Self::Malformed { reason } => Self::Malformed {
                reason: reason.clone(),
            },
        }
    }
}

/// The credential files to read, most specific first, as Podman and Docker look for them:
/// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`).
pub fn default_credential_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        out.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(d) = var("DOCKER_CONFIG") {
        out.push(Path::new(&d).join("config.json"));
    } else if let Some(h) = var("HOME") {
        out.push(Path::new(&h).join(".docker/config.json"));
    }
    out
}

/// Reads credentials from Docker-style files; for a registry named in several files the
/// first file wins. Missing files are skipped; unreadable or invalid ones are skipped and
/// reported in [`Credentials::errors`].
pub fn load_credentials(paths: &[PathBuf]) -> Credentials {
    let mut out = Credentials::new();
    for path in paths {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.errors.push(IoError::new("read", path, e).into());
                continue;
            }
        };
        match Credentials::parse_docker_config(&data) {
            Ok(c) => out.merge(c),
            Err(reason) => out.errors.push(CredentialsError::Invalid {
                path: path.clone(),
                reason,
            }),
        }
    }
    out
}

/// Stores `username`/`password` for `registry` in a Docker-style `config.json` at `path`
/// (`auths.<registry>.auth`, base64 of `user:password`; Docker Hub under Docker's key
/// `https://index.docker.io/v1/`), keeping everything else the file holds. The file is
/// replaced atomically and has mode 0600; missing parent directories are created 0700.
pub fn save_credentials(
    path: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), CredentialsError> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    edit_config(path, |auths| {
        let key = registry_key(registry);
        auths.retain(|k, _| registry_key(k) != key);
        let file_key = if key == DEFAULT_REGISTRY {
            DOCKER_HUB_AUTH_KEY.to_owned()
        } else {
            key
        };
        auths.insert(file_key, serde_json::json!({ "auth": auth }));
        true
    })
    .map(drop)
}

/// Removes `registry`'s credentials from the file at `path` (`peapod logout`). Returns
/// whether there were any; the file is left untouched when there were none.
pub fn remove_credentials(path: &Path, registry: &str) -> Result<bool, CredentialsError> {
    if !path.exists() {
        return Ok(false);
    }
    edit_config(path, |auths| {
        let key = registry_key(registry);
        let before = auths.len();
        auths.retain(|k, _| registry_key(k) != key);
        auths.len() != before
    })
}

/// Reads the JSON object at `path` (an empty one when missing), lets `edit` change its
/// `auths` map, and writes it back when `edit` returns true.
fn edit_config(
    path: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> bool,
) -> Result<bool, CredentialsError> {
    let invalid = |reason: String| CredentialsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let mut root = match fs::read(path) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => serde_json::Map::new(),
        Ok(d) => match serde_json::from_slice::<serde_json::Value>(&d) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => return Err(invalid("not a JSON object".to_owned())),
            Err(e) => return Err(invalid(e.to_string())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(IoError::new("read", path, e).into()),
    };
    let auths = root
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let serde_json::Value::Object(auths) = auths else {
        return Err(invalid("\"auths\" is not an object".to_owned()));
    };
    if !edit(auths) {
        return Ok(false);
    }
    let mut data = serde_json::to_vec_pretty(&root).expect("JSON values serialise");
    data.push(b'\n');
    write_private(path, &data)?;
    Ok(true)
}

/// Replaces `path` atomically with `data`, mode 0600 from the start (the temporary file
/// is never readable by others).
fn write_private(path: &Path, data: &[u8]) -> Result<(), IoError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| IoError::new("create directory", &dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", &peapod_store::new_id()[..12]));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| IoError::new("create", &tmp, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| IoError::new("write", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| IoError::new("rename", path, e))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    peapod_store::sync_dir(&dir)
}

/// The registry host a credential key names: `https://index.docker.io/v1/`,
/// `index.docker.io` and `registry-1.docker.io` are `docker.io`; a scheme and a path are
/// dropped (`https://quay.io/v2/` is `quay.io`); hosts are lowercased.
pub fn registry_key(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DEFAULT_REGISTRY.to_owned()
        }
        _ => host,
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Basic realm="…"`: send the user and password with every request.
    Basic,
}

/// Parses a `WWW-Authenticate` header value (RFC 7235: one or more challenges, each a
/// scheme and comma-separated `key=value` or `key="quoted"` parameters). Challenges of
/// other schemes, and Bearer challenges without a realm, are left out.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut current: Option<(String, BTreeMap<String, String>)> = None;
    let mut rest = header.trim();
    let finish = |c: Option<(String, BTreeMap<String, String>)>, out: &mut Vec<Challenge>| {
        let Some((scheme, mut params)) = c else {
            return;
        };
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic),
            _ => {}
        }
    };
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let tok_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..tok_end];
        let after = rest[tok_end..].trim_start_matches([' ', '\t']);
        if let Some(value_part) = after.strip_prefix('=') {
            // A parameter of the current challenge.
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(q) = value_part.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                (v, &q[end.min(q.len())..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_owned(), &value_part[end..])
            };
            if let Some((_, params)) = current.as_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else {
            // A new challenge's scheme.
            finish(current.take(), &mut out);
            current = Some((token.to_owned(), BTreeMap::new()));
            rest = after;
        }
    }
    finish(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="basic-realm""#),
            vec![Challenge::Basic]
        );
        // Several challenges, unquoted values, odd spacing, escapes; unknown schemes skipped.
        let h = r#"Negotiate, Bearer realm=http://127.0.0.1:9/t , scope="repository:a/b:pull,push", error="x\"y", Basic realm=r"#;
        assert_eq!(
            parse_challenges(h),
            vec![
                Challenge::Bearer {
                    realm: "http://127.0.0.1:9/t".into(),
                    service: None,
                    scope: Some("repository:a/b:pull,push".into()),
                },
                Challenge::Basic
            ]
        );
        assert_eq!(parse_challenges("Bearer service=\"x\""), vec![]);
        assert_eq!(parse_challenges(""), vec![]);
    }

    #[test]
    fn registry_keys_normalise() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_key("http://LocalHost:5000/v2/"), "localhost:5000");
        assert_eq!(registry_key("quay.io"), "quay.io");
    }

    #[test]
    fn reads_auth_and_username_password_entries() {
        let json = br#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "localhost:5000": {"username": "u2", "password": "p2"},
                "token.only": {"identitytoken": "xyz"},
                "empty": {}
            },
            "credsStore": "desktop"
        }"#;
        let c = Credentials::from_docker_config(json).unwrap();
        let hub = c.get("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.get("localhost:5000").unwrap().username, "u2");
        assert!(c.get("token.only").is_none());
        assert_eq!(
            c.registries().collect::<Vec<_>>(),
            ["docker.io", "localhost:5000"]
        );
        assert!(!format!("{hub:?}").contains("pa:ss"));
        // Legacy .dockercfg.
        let legacy = br#"{"quay.io": {"auth": "YTpi", "email": "x@y"}}"#;
        let c = Credentials::from_docker_config(legacy).unwrap();
        assert_eq!(c.get("quay.io").unwrap().password, "b");
        assert!(Credentials::from_docker_config(br#"{"auths": {"x": {"auth": "%%"}}}"#).is_err());
    }

    #[test]
    fn save_load_and_remove_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            br#"{"auths": {"http://localhost:5000": {"auth": "b2xkOm9sZA=="}}, "psFormat": "x"}"#,
        )
        .unwrap();
        save_credentials(&path, "localhost:5000", "me", "secret").unwrap();
        save_credentials(&path, "docker.io", "hub", "pw").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let raw: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["psFormat"], "x", "other settings are kept");
        assert!(
            raw["auths"].get("http://localhost:5000").is_none(),
            "old spelling replaced"
        );
        assert!(raw["auths"].get(DOCKER_HUB_AUTH_KEY).is_some());

        let missing = dir.path().join("missing.json");
        let bad = dir.path().join("bad.json");
        fs::write(&bad, b"{nope").unwrap();
        let c = load_credentials(&[missing, bad, path.clone()]);
        assert_eq!(c.get("localhost:5000").unwrap().password, "secret");
        assert_eq!(c.get("index.docker.io").unwrap().username, "hub");
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);

        assert!(remove_credentials(&path, "localhost:5000").unwrap());
        assert!(!remove_credentials(&path, "localhost:5000").unwrap());
        assert!(load_credentials(std::slice::from_ref(&path))
            .get("localhost:5000")
            .is_none());

        // A new file in a new directory.
        let fresh = dir.path().join("new/dir/auth.json");
        save_credentials(&fresh, "quay.io", "a", "b").unwrap();
        let dmode = fs::metadata(fresh.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(
            load_credentials(&[fresh]).get("quay.io").unwrap().password,
            "b"
        );
    }
}
