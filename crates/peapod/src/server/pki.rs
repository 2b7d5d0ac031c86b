//! The server's credentials under `<etc>/pki/`: a CA and a serving certificate for
//! `127.0.0.1`/`localhost` (made with rcgen on first start), and a random bearer token in
//! `<etc>/token` (0600). `peapod kubeconfig` prints a kubeconfig that trusts the CA and
//! carries the token.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The loaded credentials.
pub struct Pki {
    /// Directory of the PEM files.
    pub dir: PathBuf,
    /// The bearer token.
    pub token: String,
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Makes the CA, serving certificate and token if missing; returns them. With `listen`,
/// the serving certificate is remade when it was made for another address.
pub fn ensure(etc: &Path, listen: Option<IpAddr>) -> Result<Pki> {
    let dir = etc.join("pki");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_crt = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    if !ca_crt.exists() || !ca_key.exists() {
        let params = ca_params()?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_private(&ca_key, key.serialize_pem().as_bytes())?;
        write_private(&ca_crt, cert.pem().as_bytes())?;
        let _ = fs::remove_file(dir.join("server.crt"));
    }
    let srv_crt = dir.join("server.crt");
    let srv_key = dir.join("server.key");
    let ips_file = dir.join("server.ips");
    let have_ips = fs::read_to_string(&ips_file).unwrap_or_default();
    let listen = listen.unwrap_or_else(|| {
        have_ips
            .trim()
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    });
    let wanted_ip = listen.to_string();
    if !srv_crt.exists() || !srv_key.exists() || have_ips.trim() != wanted_ip {
        let ca_key_pair = KeyPair::from_pem(&fs::read_to_string(&ca_key)?)?;
        // Only the issuer's name and key matter for signing: the same parameters give them.
        let ca = ca_params()?.self_signed(&ca_key_pair)?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, "peapod");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        if !listen.is_unspecified() && !listen.is_loopback() {
            params.subject_alt_names.push(SanType::IpAddress(listen));
        }
        if let Ok(h) = nix::unistd::gethostname() {
            if let Ok(dns) = h.to_string_lossy().into_owned().try_into() {
                params.subject_alt_names.push(SanType::DnsName(dns));
            }
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key_pair)?;
        write_private(&srv_key, key.serialize_pem().as_bytes())?;
        write_private(&srv_crt, cert.pem().as_bytes())?;
        write_private(&ips_file, wanted_ip.as_bytes())?;
    }
    let token_path = etc.join("token");
    let token = match fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let mut buf = [0u8; 32];
            getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
            let t = hex(&buf);
            write_private(&token_path, format!("{t}\n").as_bytes())?;
            t
        }
    };
    Ok(Pki { dir, token })
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "peapod-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    Ok(params)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Pki {
    /// The rustls configuration of the HTTPS endpoint (HTTP/1.1 only).
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.join("server.crt"))
                .context("reading server.crt")?
                .collect::<Result<_, _>>()
                .context("parsing server.crt")?;
        let key = PrivateKeyDer::from_pem_file(self.dir.join("server.key"))
            .context("reading server.key")?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// `peapod kubeconfig`: a kubeconfig for the server (making the credentials if needed).
pub fn kubeconfig(etc: &Path, server: &str) -> Result<String> {
    let pki = ensure(etc, None)?;
    let ca = fs::read(pki.dir.join("ca.crt")).context("reading the CA")?;
    let ca64 = base64::engine::general_purpose::STANDARD.encode(ca);
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: peapod
  cluster:
    server: {server}
    certificate-authority-data: {ca64}
contexts:
- name: peapod
  context:
    cluster: peapod
    user: peapod
    namespace: default
current-context: peapod
users:
- name: peapod
  user:
    token: {}
",
        pki.token
    ))
}
