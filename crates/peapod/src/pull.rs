//! `peapod pull`: images from registries with Docker's output — per-layer progress lines
//! redrawn in place on a terminal, plain lines otherwise, only the reference with `-q` —
//! and the pull options (mirrors, insecure registries, credentials) every pull shares.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use peapod_image::{PullEvent, PullOptions, Reference};

use crate::engine::Engine;

impl Engine {
    /// Pull options from config.toml and the Docker-style credential files.
    pub fn pull_options(&self) -> PullOptions {
        PullOptions {
            insecure_registries: self.config.registries.insecure.clone(),
            mirrors: self.config.registries.mirrors.clone(),
            credentials: peapod_image::load_credentials(&peapod_image::default_credential_paths()),
            ..Default::default()
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// `peapod pull [-q] IMAGE`.
pub fn pull(engine: &Engine, image: &str, quiet: bool, out: &mut impl Write) -> Result<i32> {
    let reference =
        Reference::parse(image).map_err(|e| crate::engine::user_error(e.to_string()))?;
    let store = engine.images()?;
    let tty = !quiet && std::io::stdout().is_terminal();
    if !quiet {
        let tag = reference
            .tag
            .clone()
            .or(reference.digest.clone())
            .unwrap_or_else(|| "latest".into());
        writeln!(out, "{tag}: Pulling from {}", reference.repository)?;
    }
    let mut order: Vec<String> = Vec::new();
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    let mut drawn = 0usize;
    let mut progress = |ev: PullEvent| {
        if quiet {
            return;
        }
        let (digest, text) = match &ev {
            PullEvent::Resolved { layers, .. } => {
                for l in layers {
                    order.push(l.digest.clone());
                    lines.insert(l.digest.clone(), "Pulling fs layer".into());
                }
                (None, String::new())
            }
            PullEvent::LayerExists { digest } => (Some(digest), "Already exists".into()),
            PullEvent::LayerWaiting { digest } => (Some(digest), "Waiting".into()),
            PullEvent::LayerDownloading {
                digest,
                offset,
                total,
            } => (Some(digest), format!("Downloading {offset}/{total}")),
            PullEvent::LayerProgress {
                digest,
                done,
                total,
            } => {
                let width = 50;
                let filled = (*done * width).checked_div(*total).unwrap_or(0) as usize;
                let bar = format!(
                    "[{}>{}]",
                    "=".repeat(filled.min(49)),
                    " ".repeat(49 - filled.min(49))
                );
                (
                    Some(digest),
                    format!(
                        "Downloading {bar} {}/{}",
                        crate::format::human_size(*done),
                        crate::format::human_size(*total)
                    ),
                )
            }
            PullEvent::LayerExtracting { digest } => (Some(digest), "Extracting".into()),
            PullEvent::LayerDone { digest } => (Some(digest), "Pull complete".into()),
        };
        let Some(digest) = digest else { return };
        let mut stdout = std::io::stdout().lock();
        if tty {
            lines.insert(digest.clone(), text);
            // Redraw the layer block in place, as Docker does.
            if drawn > 0 {
                let _ = write!(stdout, "\x1b[{drawn}A");
            }
            for d in &order {
                let _ = writeln!(
                    stdout,
                    "\x1b[2K{}: {}",
                    short(d),
                    lines.get(d).map_or("", String::as_str)
                );
            }
            drawn = order.len();
        } else if !matches!(
            ev,
            PullEvent::LayerProgress { .. } | PullEvent::LayerDownloading { .. }
        ) {
            let _ = writeln!(stdout, "{}: {text}", short(digest));
        }
        let _ = stdout.flush();
    };
    let pulled = store
        .pull(image, &engine.pull_options(), &mut progress)
        .map_err(|e| crate::engine::user_error(format!("Error response from daemon: {e}")))
        .with_context(|| format!("pulling {image}"))?;
    if quiet {
        writeln!(
            out,
            "{}",
            pulled.tagged.clone().unwrap_or(pulled.repo_digest.clone())
        )?;
        return Ok(0);
    }
    let digest = pulled
        .repo_digest
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_string();
    writeln!(out, "Digest: {digest}")?;
    let familiar = reference.familiar();
    if pulled.up_to_date {
        writeln!(out, "Status: Image is up to date for {familiar}")?;
    } else {
        writeln!(out, "Status: Downloaded newer image for {familiar}")?;
    }
    writeln!(out, "{}", pulled.tagged.unwrap_or(pulled.repo_digest))?;
    Ok(0)
}

/// Where `login` writes: `$REGISTRY_AUTH_FILE`, else Docker's `config.json`.
fn login_file() -> Result<std::path::PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("REGISTRY_AUTH_FILE") {
        return Ok(p.into());
    }
    if let Some(d) = var("DOCKER_CONFIG") {
        return Ok(std::path::Path::new(&d).join("config.json"));
    }
    let home = var("HOME").ok_or_else(|| {
        crate::engine::user_error("HOME is not set: cannot find ~/.docker/config.json")
    })?;
    Ok(std::path::Path::new(&home).join(".docker/config.json"))
}

/// `peapod login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`: stores the
/// credentials where Docker and Podman read them; every later pull (also by pods) uses
/// them. Unlike Docker, nothing is sent to the registry until then.
pub fn login(registry: &str, user: &str, password: &str, out: &mut impl Write) -> Result<i32> {
    if user.is_empty() || password.is_empty() {
        anyhow::bail!(crate::engine::user_error(
            "login needs a username (-u) and a password (-p or --password-stdin)"
        ));
    }
    let file = login_file()?;
    peapod_image::save_credentials(&file, registry, user, password).map_err(|e| {
        crate::engine::user_error(format!("saving credentials in {}: {e}", file.display()))
    })?;
    writeln!(out, "Login Succeeded")?;
    Ok(0)
}

/// `peapod logout [REGISTRY]`.
pub fn logout(registry: &str, out: &mut impl Write) -> Result<i32> {
    let file = login_file()?;
    let removed = peapod_image::remove_credentials(&file, registry)
        .map_err(|e| crate::engine::user_error(format!("editing {}: {e}", file.display())))?;
    if removed {
        writeln!(out, "Removing login credentials for {registry}")?;
        Ok(0)
    } else {
        eprintln!("Not logged in to {registry}.");
        Ok(0)
    }
}

/// `peapod image prune [-a]`: dangling (with `-a` every unused) images, then unreferenced
/// blobs and layers; never an image a container or pod uses.
pub fn prune(engine: &Engine, all: bool, out: &mut impl Write) -> Result<i32> {
    let in_use: Vec<String> = engine
        .list()?
        .into_iter()
        .map(|c| c.config.image_id)
        .collect();
    let report = engine.images()?.prune(&in_use, all)?;
    for u in &report.untagged {
        writeln!(out, "untagged: {u}")?;
    }
    for i in &report.images {
        writeln!(out, "deleted: {i}")?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        crate::format::human_size(report.reclaimed_bytes)
    )?;
    Ok(0)
}
