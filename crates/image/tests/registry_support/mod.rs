//! Helpers of the pull tests: Debian's `docker-registry` started on a free loopback port
//! with its own config and storage (killed on drop), images pushed with `skopeo`, a token
//! server for the bearer flow (JWTs signed with `openssl`), a throttling TCP proxy, and
//! raw registry requests. Everything listens on and talks to 127.0.0.1 only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::{fs, thread};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Panics (never skips) when a tool the tests need is missing.
pub fn require_tools() {
    for tool in ["docker-registry", "skopeo", "htpasswd", "openssl"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} not found: run scripts/install-deps.sh (apt-get install docker-registry skopeo apache2-utils openssl)"
        );
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// How the registry authenticates.
pub enum Auth {
    None,
    /// htpasswd basic auth with this user and password.
    Basic(&'static str, &'static str),
    /// Bearer tokens from this server.
    Token(Arc<TokenServer>),
}

/// A `docker-registry` process with a private config and storage; killed when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(auth: Auth) -> Self {
        require_tools();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Basic(user, pass) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                fs::write(&file, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: peapod-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.port,
                TokenServer::SERVICE,
                TokenServer::ISSUER,
                t.cert_pem.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: peapod-test-secret\n{auth_yaml}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self { child, port, dir };
        wait_for_port(port, "docker-registry");
        reg
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI archive as `NAME:TAG` of this registry; `format` is skopeo's
    /// `--format` (`oci`, `v2s2`).
    pub fn push(&self, archive: &Path, name_tag: &str, format: &str, creds: Option<&str>) {
        let dest = format!("docker://{}/{name_tag}", self.addr());
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        cmd.args(["--format", format]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci-archive:{}", archive.display()))
            .arg(&dest);
        let out = cmd.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {dest} failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// The path of a blob's data in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// GETs a manifest (any kind) without auth: its bytes and digest.
    pub fn manifest(&self, name: &str, reference: &str) -> (Vec<u8>, String) {
        let url = format!("http://{}/v2/{name}/manifests/{reference}", self.addr());
        let mut resp = agent()
            .get(&url)
            .header(
                "Accept",
                format!("{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"),
            )
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {url}");
        let data = resp.body_mut().read_to_vec().unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        (data, digest)
    }

    /// PUTs a manifest or index under `reference`.
    pub fn put_manifest(&self, name: &str, reference: &str, media_type: &str, data: &[u8]) {
        let url = format!("http://{}/v2/{name}/manifests/{reference}", self.addr());
        let mut resp = agent()
            .put(&url)
            .header("Content-Type", media_type)
            .send(data)
            .unwrap();
        let status = resp.status();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "PUT {url}: {body}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// The OCI archive `scripts/build-busybox-image.sh` builds, made once per test process
/// (under Cargo's per-target temp dir, replaced atomically, so nothing leaks into /tmp).
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(dir).unwrap();
        let tmp = dir.join(format!("pull-busybox-{}.tar", std::process::id()));
        let out = dir.join("pull-busybox.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
        let run = Command::new("bash")
            .arg(&script)
            .arg(&tmp)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "build-busybox-image.sh failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// A token server for the registry's `token` auth: it grants what the scope asks to
/// `user:pass` callers, and pull access to `public/*` repositories to anonymous ones.
/// JWTs are RS256-signed by `openssl` with a self-signed certificate (sent as `x5c`).
pub struct TokenServer {
    pub port: u16,
    dir: tempfile::TempDir,
    pub cert_pem: PathBuf,
    key_pem: PathBuf,
    cert_der_b64: String,
    user: &'static str,
    pass: &'static str,
    /// Every request: (scope, service, authenticated user or "").
    pub requests: Mutex<Vec<(String, String, String)>>,
    stop: AtomicBool,
}

impl TokenServer {
    pub const SERVICE: &'static str = "peapod-test-registry";
    pub const ISSUER: &'static str = "peapod-test-issuer";

    pub fn start(user: &'static str, pass: &'static str) -> Arc<Self> {
        require_tools();
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = dir.path().join("cert.pem");
        let key_pem = dir.path().join("key.pem");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=peapod-test-token-issuer", "-keyout"])
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .output()
            .unwrap();
        assert!(der.status.success());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Arc::new(Self {
            port,
            cert_pem,
            key_pem,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(der.stdout),
            dir,
            user,
            pass,
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&server);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = Arc::clone(&s);
                    thread::spawn(move || s.serve(conn));
                }
            }
        });
        server
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }

    fn serve(&self, mut conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_owned());
                }
            }
        }
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut scopes = Vec::new();
        let mut service = String::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "scope" => scopes.push(v),
                "service" => service = v,
                _ => {}
            }
        }
        let user = match authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
        {
            None => Some(String::new()),
            Some(b64) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .unwrap_or_default();
                (decoded == format!("{}:{}", self.user, self.pass)).then(|| self.user.to_owned())
            }
        };
        self.requests.lock().unwrap().push((
            scopes.join(" "),
            service.clone(),
            user.clone()
                .unwrap_or_else(|| "<bad credentials>".to_owned()),
        ));
        let Some(user) = user else {
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad user or password"}]}"#;
            respond(&mut conn, "401 Unauthorized", body);
            return;
        };
        let mut access = Vec::new();
        for scope in &scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| !user.is_empty() || (*a == "pull" && name.starts_with("public/")))
                .collect();
            access.push(json!({"type": kind, "name": name, "actions": actions}));
        }
        let token = self.sign(&user, &access);
        respond(
            &mut conn,
            "200 OK",
            &json!({"token": token, "expires_in": 300}).to_string(),
        );
    }

    fn sign(&self, user: &str, access: &[Value]) -> String {
        let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]});
        let claims = json!({
            "iss": Self::ISSUER, "sub": user, "aud": Self::SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", rand_suffix()), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst failed");
        format!("{signing_input}.{}", b64(&out.stdout))
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    hex::encode(b)
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP proxy on loopback to `upstream`, limiting what flows back to the client to
/// `rate` bytes per second (0: unlimited; changeable while it runs).
pub struct ThrottlingProxy {
    pub port: u16,
    pub rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ThrottlingProxy {
    pub fn start(upstream: u16, rate: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (Arc::clone(&rate), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pipe(c2, s2, None));
                let r = Arc::clone(&r);
                thread::spawn(move || pipe(server, client, Some(r)));
            }
        });
        Self { port, rate, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, rate: Option<Arc<AtomicU64>>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(r) = &rate {
            let r = r.load(Ordering::Relaxed);
            if r > 0 {
                thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
