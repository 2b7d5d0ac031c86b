//! The client side of the OCI distribution protocol over HTTP(S) for one repository: its
//! endpoints (mirrors first, then the registry), plain HTTP for loopback and insecure
//! registries, authentication (bearer tokens obtained as `WWW-Authenticate` says, basic),
//! manifest and blob requests, and the registry's error JSON turned into [`PullError`]s.
//!
//! It writes no files and knows nothing of the store: `pull` streams the blob bodies it
//! returns into the store's ingest area.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use ureq::http::{self, header, Response};
use ureq::Body;

use crate::archive::{MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use crate::auth::{self, Challenge, Credentials};
use crate::digest;
use crate::pull::{PullError, PullOptions};
use crate::reference::DEFAULT_REGISTRY;

/// Where Docker Hub's API lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Manifests and indexes larger than this are refused (they are held in memory).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// How much of an error body is read for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;
/// The manifest kinds we can pull, best first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A transport failure (connection refused, TLS, timeout, malformed HTTP). Opaque: the
/// HTTP client used is an implementation detail.
#[derive(Debug)]
pub struct HttpError(Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<ureq::Error> for HttpError {
    fn from(e: ureq::Error) -> Self {
        Self(Box::new(e))
    }
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        Self(Box::new(e))
    }
}

/// One base URL requests can go to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/prefix]`, without a trailing slash.
    pub(crate) base: String,
    /// The key credentials are looked up by (`docker.io`, a mirror's host).
    cred_key: String,
    /// Plain HTTP or unverified TLS allowed (loopback, insecure registries).
    insecure: bool,
    /// Loopback: never through a proxy.
    loopback: bool,
    /// A mirror rather than the registry itself.
    pub(crate) mirror: bool,
}

/// A manifest or index as fetched, verified against its digest.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    /// The media type (from `Content-Type`, else the document's `mediaType`, else guessed
    /// from its fields).
    pub(crate) media_type: String,
    /// The bytes, exactly as served (the digest is of these).
    pub(crate) data: Vec<u8>,
    /// `sha256:<hex>` of `data`.
    pub(crate) digest: String,
}

/// A blob response positioned at `offset`.
pub(crate) struct BlobBody {
    /// Where the body starts in the blob: the requested offset when the registry honoured
    /// the range, else 0.
    pub(crate) offset: u64,
    /// The body.
    pub(crate) reader: Box<dyn Read + Send>,
}

/// A client for one repository of one registry, shared by the download threads.
pub(crate) struct Client {
    verified: ureq::Agent,
    unverified: ureq::Agent,
    direct: ureq::Agent,
    credentials: Credentials,
    /// The registry as the reference names it (`docker.io`), for messages.
    pub(crate) registry: String,
    /// The repository path (`library/busybox`).
    repository: String,
    /// The reference as given, for messages.
    reference: String,
    pub(crate) endpoints: Vec<Endpoint>,
    /// The first endpoint worth trying: the one that last answered (those before it
    /// failed already).
    preferred: AtomicUsize,
    /// `Authorization` values that worked, by endpoint base.
    auth: Mutex<HashMap<String, String>>,
}

impl Client {
    pub(crate) fn new(
        registry: &str,
        repository: &str,
        reference: &str,
        opts: &PullOptions,
    ) -> Self {
        let agent = |verify: bool, proxy: bool| -> ureq::Agent {
            let mut b = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(concat!("peapod/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(120)))
                .timeout_per_read(Some(Duration::from_secs(120)))
                .max_redirects(10)
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .disable_verification(!verify)
                        .build(),
                );
            if !proxy {
                b = b.proxy(None);
            }
            b.build().into()
        };
        let mut endpoints = Vec::new();
        // Mirror keys may be spelled as credential keys are (`index.docker.io`, a URL).
        let key = auth::registry_key(registry);
        let mirrors = opts
            .mirrors
            .iter()
            .filter(|(k, _)| auth::registry_key(k) == key)
            .flat_map(|(_, v)| v);
        for m in mirrors {
            endpoints.extend(endpoints_for(m, opts, true));
        }
        let upstream = if registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API
        } else {
            registry
        };
        endpoints.extend(endpoints_for(upstream, opts, false));
        for e in endpoints.iter_mut().filter(|e| !e.mirror) {
            e.cred_key = auth::registry_key(registry);
        }
        Self {
            verified: agent(true, true),
            unverified: agent(false, true),
            direct: agent(false, false),
            credentials: opts.credentials.clone(),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
            endpoints,
            preferred: AtomicUsize::new(0),
            auth: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoints worth trying, in order, with their positions.
    pub(crate) fn candidates(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        let from = self.preferred.load(Ordering::Relaxed);
        self.endpoints.iter().enumerate().skip(from)
    }

    /// Notes that the endpoint at `i` answered.
    pub(crate) fn answered(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
    }

    fn agent(&self, ep: &Endpoint) -> &ureq::Agent {
        if ep.loopback {
            &self.direct
        } else if ep.insecure {
            &self.unverified
        } else {
            &self.verified
        }
    }

    fn transport(&self, url: &str, e: impl Into<HttpError>) -> PullError {
        PullError::Transport {
            registry: self.registry.clone(),
            url: url.to_owned(),
            source: e.into(),
        }
    }

    /// GETs `path` (under `/v2/`) from `ep`, authenticating when the registry asks to.
    fn get(
        &self,
        ep: &Endpoint,
        path: &str,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Response<Body>, PullError> {
        let url = format!("{}/v2/{}", ep.base, path);
        let send = |authorization: Option<&str>| -> Result<Response<Body>, PullError> {
            let mut req = self.agent(ep).get(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            req.call().map_err(|e| self.transport(&url, e))
        };
        let cached = self.auth.lock().expect("auth cache").get(&ep.base).cloned();
        let resp = send(cached.as_deref())?;
        if resp.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        let authorization = self.authenticate(ep, &challenges, resp)?;
        let resp = send(Some(&authorization))?;
        if resp.status() == http::StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(ep, resp));
        }
        self.auth
            .lock()
            .expect("auth cache")
            .insert(ep.base.clone(), authorization);
        Ok(resp)
    }

    /// The `Authorization` value to answer `challenges` with: a bearer token from the
    /// realm (anonymous, or with the endpoint's credentials), or basic credentials.
    fn authenticate(
        &self,
        ep: &Endpoint,
        challenges: &[Challenge],
        first: Response<Body>,
    ) -> Result<String, PullError> {
        let cred = self.credentials.get(&ep.cred_key);
        for c in challenges {
            match c {
                Challenge::Bearer { realm, service, .. } => {
                    return self.bearer_token(ep, realm, service.as_deref());
                }
                Challenge::Basic => {
                    if let Some(cred) = cred {
                        return Ok(cred.basic_header());
                    }
                }
            }
        }
        Err(self.unauthorized(ep, first))
    }

    /// Gets a pull token from a bearer `realm` (the Docker token protocol, GET form).
    fn bearer_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, PullError> {
        #[derive(Deserialize)]
        struct TokenJson {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let scope = format!("repository:{}:pull", self.repository);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let realm_ep = Endpoint {
            base: realm.to_owned(),
            cred_key: ep.cred_key.clone(),
            insecure: ep.insecure || is_loopback_url(realm),
            loopback: is_loopback_url(realm),
            mirror: ep.mirror,
        };
        let allowed =
            realm.starts_with("https://") || (realm.starts_with("http://") && realm_ep.insecure);
        if !allowed {
            return Err(PullError::Registry {
                registry: self.registry.clone(),
                url: realm.to_owned(),
                status: 401,
                code: "UNAUTHORIZED".to_owned(),
                message: "the token realm must be an https URL (or http on loopback or an insecure registry)".to_owned(),
            });
        }
        let mut req = self.agent(&realm_ep).get(realm);
        for (k, v) in &query {
            req = req.query(*k, *v);
        }
        if let Some(cred) = self.credentials.get(&ep.cred_key) {
            req = req.header(header::AUTHORIZATION, cred.basic_header());
        }
        let mut resp = req.call().map_err(|e| self.transport(realm, e))?;
        let status = resp.status();
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Err(self.unauthorized(ep, resp));
        }
        if !status.is_success() {
            return Err(self.registry_error(realm, resp));
        }
        let data = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport(realm, e))?;
        let body: TokenJson = serde_json::from_slice(&data).map_err(|e| PullError::Registry {
            registry: self.registry.clone(),
            url: realm.to_owned(),
            status: status.as_u16(),
            code: String::new(),
            message: format!("invalid token response: {e}"),
        })?;
        match body.token.or(body.access_token).filter(|t| !t.is_empty()) {
            Some(t) => Ok(format!("Bearer {t}")),
            None => Err(PullError::Registry {
                registry: self.registry.clone(),
                url: realm.to_owned(),
                status: status.as_u16(),
                code: String::new(),
                message: "token response has no token".to_owned(),
            }),
        }
    }

    fn unauthorized(&self, ep: &Endpoint, resp: Response<Body>) -> PullError {
        let (_, message) = error_of(resp);
        let hint = if self.credentials.get(&ep.cred_key).is_some() {
            "check the credentials for it"
        } else {
            "the repository may not exist, or may need `peapod login`"
        };
        PullError::Unauthorized {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            message: format!("{message} ({hint})"),
        }
    }

    fn registry_error(&self, url: &str, resp: Response<Body>) -> PullError {
        let status = resp.status().as_u16();
        let (code, message) = error_of(resp);
        PullError::Registry {
            registry: self.registry.clone(),
            url: url.to_owned(),
            status,
            code,
            message,
        }
    }

    /// Fetches a manifest or index by tag or digest and verifies it against the digest (the
    /// reference's, else the `Docker-Content-Digest` header's when it is sha256).
    pub(crate) fn manifest(
        &self,
        ep: &Endpoint,
        tag_or_digest: &str,
    ) -> Result<Fetched, PullError> {
        let path = format!("{}/manifests/{tag_or_digest}", self.repository);
        let url = format!("{}/v2/{path}", ep.base);
        let mut resp = self.get(ep, &path, &[(header::ACCEPT, MANIFEST_ACCEPT.to_owned())])?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND {
            let (_, message) = error_of(resp);
            return Err(PullError::NotFound {
                reference: self.reference.clone(),
                message,
            });
        }
        if status == http::StatusCode::FORBIDDEN {
            return Err(self.unauthorized(ep, resp));
        }
        if !status.is_success() {
            let err = self.registry_error(&url, resp);
            return Err(match err {
                PullError::Registry { code, message, .. }
                    if code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN" =>
                {
                    PullError::NotFound {
                        reference: self.reference.clone(),
                        message,
                    }
                }
                other => other,
            });
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let data = match resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
        {
            Ok(d) => d,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(PullError::InvalidManifest {
                    reference: self.reference.clone(),
                    digest: tag_or_digest.to_owned(),
                    reason: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
                })
            }
            Err(e) => return Err(self.transport(&url, e)),
        };
        let digest = format!("sha256:{}", digest::sha256_hex(&data));
        let expected = if tag_or_digest.contains(':') {
            Some(tag_or_digest.to_owned())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != digest {
                return Err(PullError::DigestMismatch {
                    reference: self.reference.clone(),
                    what: "manifest".to_owned(),
                    expected,
                    actual: digest,
                });
            }
        }
        let media_type = match content_type.as_deref() {
            Some(mt @ (MT_OCI_INDEX | MT_OCI_MANIFEST | MT_DOCKER_LIST | MT_DOCKER_MANIFEST)) => {
                mt.to_owned()
            }
            other => sniff_media_type(&data).unwrap_or_else(|| other.unwrap_or("").to_owned()),
        };
        Ok(Fetched {
            media_type,
            data,
            digest,
        })
    }

    /// Requests a blob from `offset` on (a range request when `offset > 0`; a registry that
    /// ignores the range sends it all, and the body's offset says so).
    pub(crate) fn blob(
        &self,
        ep: &Endpoint,
        digest: &str,
        offset: u64,
    ) -> Result<BlobBody, PullError> {
        let path = format!("{}/blobs/{digest}", self.repository);
        let url = format!("{}/v2/{path}", ep.base);
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push((header::RANGE, format!("bytes={offset}-")));
        }
        let resp = self.get(ep, &path, &headers)?;
        let status = resp.status();
        if status == http::StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            return self.blob(ep, digest, 0);
        }
        if status == http::StatusCode::FORBIDDEN {
            return Err(self.unauthorized(ep, resp));
        }
        if !status.is_success() {
            return Err(self.registry_error(&url, resp));
        }
        let start = if status == http::StatusCode::PARTIAL_CONTENT {
            let range_start = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if range_start != Some(offset) {
                // Not the part we asked for: start again from the beginning.
                return self.blob(ep, digest, 0);
            }
            offset
        } else {
            0
        };
        Ok(BlobBody {
            offset: start,
            reader: Box::new(resp.into_body().into_reader()),
        })
    }
}

/// The endpoints for a registry host or mirror URL: `https://` unless the host is loopback
/// (plain HTTP) or insecure (HTTPS without verification, then plain HTTP), or the URL says.
fn endpoints_for(spec: &str, opts: &PullOptions, mirror: bool) -> Vec<Endpoint> {
    let spec = spec.trim().trim_end_matches('/');
    let (scheme, rest) = match spec.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, spec),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let loopback = is_loopback_host(host);
    let insecure = loopback
        || opts
            .insecure_registries
            .iter()
            .any(|r| auth::registry_key(r) == auth::registry_key(host));
    let ep = |scheme: &str| Endpoint {
        base: format!("{scheme}://{rest}"),
        cred_key: auth::registry_key(host),
        insecure,
        loopback,
        mirror,
    };
    match scheme.as_deref() {
        Some(s) => vec![ep(s)],
        None if loopback => vec![ep("http")],
        None if insecure => vec![ep("https"), ep("http")],
        None => vec![ep("https")],
    }
}

/// Whether `host[:port]` is `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    is_loopback_host(rest.split(['/', '?']).next().unwrap_or(rest))
}

/// The registry's error (`errors[0].code` and `.message`) from an error response, else the
/// HTTP status and the start of the body.
fn error_of(mut resp: Response<Body>) -> (String, String) {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ERROR_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    parse_error(status, &body)
}

/// The code and message of an error body: the distribution spec's `{"errors": [{"code",
/// "message"}]}`, or an OAuth2 token server's `error` / `error_description`; else the HTTP
/// status and the start of the body.
fn parse_error(status: http::StatusCode, body: &str) -> (String, String) {
    #[derive(Deserialize)]
    struct ErrorsJson {
        #[serde(default)]
        errors: Vec<ErrorJson>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        details: Option<String>,
    }
    #[derive(Deserialize)]
    struct ErrorJson {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<ErrorsJson>(body) {
        if let Some(first) = e.errors.into_iter().next() {
            let message = if first.message.is_empty() {
                first.code.to_ascii_lowercase().replace('_', " ")
            } else {
                first.message
            };
            return (first.code, message);
        }
        if let Some(m) = e.error_description.or(e.details).or(e.error) {
            return (String::new(), m);
        }
    }
    let text: String = body.trim().chars().take(200).collect();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() {
        format!("HTTP {} {reason}", status.as_u16())
    } else {
        format!("HTTP {} {reason}: {text}", status.as_u16())
    };
    (String::new(), message)
}

/// The media type a manifest document declares, or that its fields imply.
fn sniff_media_type(data: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let h: Head = serde_json::from_slice(data).ok()?;
    if let Some(mt) = h.media_type {
        return Some(mt);
    }
    if h.schema_version == Some(1) {
        return Some("application/vnd.docker.distribution.manifest.v1+json".to_owned());
    }
    if h.manifests.is_some() {
        Some(MT_OCI_INDEX.to_owned())
    } else if h.config.is_some() {
        Some(MT_OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "quay.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert!(is_loopback_url("http://127.0.0.1:9/token?x=1"));
    }

    #[test]
    fn endpoints_mirrors_first_with_schemes() {
        let mut opts = PullOptions::default();
        opts.mirrors.insert(
            "docker.io".into(),
            vec!["https://mirror.example/".into(), "127.0.0.1:5001".into()],
        );
        opts.insecure_registries.push("registry.lan:5000".into());
        let c = Client::new("docker.io", "library/busybox", "busybox", &opts);
        let bases: Vec<&str> = c.endpoints.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "https://mirror.example",
                "http://127.0.0.1:5001",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(c.endpoints[2].cred_key, "docker.io");
        assert_eq!(c.endpoints[1].cred_key, "127.0.0.1:5001");
        let c = Client::new("registry.lan:5000", "a/b", "registry.lan:5000/a/b", &opts);
        let bases: Vec<&str> = c.endpoints.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            ["https://registry.lan:5000", "http://registry.lan:5000"]
        );
        assert!(c.endpoints.iter().all(|e| e.insecure && !e.loopback));
    }

    #[test]
    fn registry_errors_are_parsed() {
        let not_found = http::StatusCode::NOT_FOUND;
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            parse_error(not_found, body),
            ("MANIFEST_UNKNOWN".into(), "manifest unknown".into())
        );
        assert_eq!(
            parse_error(not_found, r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#),
            ("NAME_UNKNOWN".into(), "name unknown".into())
        );
        assert_eq!(
            parse_error(
                http::StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_grant","error_description":"bad password"}"#
            )
            .1,
            "bad password"
        );
        assert_eq!(
            parse_error(http::StatusCode::BAD_GATEWAY, "<html>oops</html>").1,
            "HTTP 502 Bad Gateway: <html>oops</html>"
        );
        assert_eq!(parse_error(not_found, "").1, "HTTP 404 Not Found");
    }

    #[test]
    fn sniffs_media_types() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            MT_OCI_INDEX
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            MT_OCI_MANIFEST
        );
        assert_eq!(sniff_media_type(br#"{"mediaType":"x/y"}"#).unwrap(), "x/y");
        assert!(sniff_media_type(b"nope").is_none());
    }
}
