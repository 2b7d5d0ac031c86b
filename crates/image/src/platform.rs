//! Platforms (`linux/arm64/v8`): the host's, parsing `--platform` strings, and picking the
//! manifest an image index offers for a platform. Pure: no files, no network.

use std::fmt;

use serde::Deserialize;

/// The platform an image is picked for, in OCI terms (Go's GOOS/GOARCH and the variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH, e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// The CPU variant, e.g. `v8` for arm64, `v7` for arm; None when the architecture has
    /// none that matters (amd64).
    pub variant: Option<String>,
}

/// A platform string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {input:?}: {reason} (want os/arch[/variant], e.g. linux/arm64/v8)")]
pub struct PlatformError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An index entry's `platform` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl Platform {
    /// The host's platform: `linux`, its architecture, and the variant it can surely run
    /// (`v8` on arm64, `v7` on 32-bit arm, none elsewhere).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/arch[/variant]` as `docker pull --platform` does, normalising the usual
    /// aliases (`x86_64` is `amd64`, `aarch64` is `arm64`, arm64 without variant is `v8`).
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let err = |reason: &str| PlatformError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(err("expected two or three non-empty parts"));
        }
        let ok = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        if !parts.iter().all(|p| ok(p)) {
            return Err(err("unexpected characters"));
        }
        let os = parts[0].to_ascii_lowercase();
        let mut variant = parts.get(2).map(|v| v.to_ascii_lowercase());
        let architecture = match parts[1].to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            "armhf" => {
                variant.get_or_insert_with(|| "v7".to_owned());
                "arm".to_owned()
            }
            "armel" => {
                variant.get_or_insert_with(|| "v6".to_owned());
                "arm".to_owned()
            }
            "i386" | "i686" => "386".to_owned(),
            other => other.to_owned(),
        };
        if architecture == "arm64" && variant.is_none() {
            variant = Some("v8".to_owned());
        }
        Ok(Self {
            os,
            architecture,
            variant,
        })
    }

    /// How well an index entry's platform fits: None when it cannot run here, else a rank
    /// (lower is better): the same variant, then no variant, then an older compatible one.
    pub(crate) fn rank(&self, p: &PlatformJson) -> Option<u32> {
        if p.os != self.os || p.architecture != self.architecture {
            return None;
        }
        let theirs = p.variant.as_deref().filter(|v| !v.is_empty());
        let ours = self.variant.as_deref();
        if theirs == ours {
            return Some(0);
        }
        let Some(theirs) = theirs else {
            return Some(1);
        };
        match self.architecture.as_str() {
            // Variants that need CPU features the baseline lacks (v3, v4) are not picked.
            "amd64" => match theirs {
                "v1" => Some(2),
                "v2" => Some(3),
                _ => None,
            },
            "arm64" => (theirs == "v8" && ours.is_none()).then_some(2),
            // A v7 CPU runs v6 and v5 code: prefer the newest that fits.
            "arm" => {
                let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
                let have = ours.and_then(level).unwrap_or(7);
                let want = level(theirs)?;
                (want <= have).then(|| 2 + (have - want))
            }
            _ => None,
        }
    }

    /// The index entry (by position) to pull for this platform: the best rank, the first
    /// one among equals. `platform_of` gives an entry's platform, None when it has none
    /// (such an entry is taken only when no entry names a fitting platform).
    pub(crate) fn select<T>(
        &self,
        entries: &[T],
        platform_of: impl Fn(&T) -> Option<&PlatformJson>,
    ) -> Option<usize> {
        let ranked = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| platform_of(e).and_then(|p| self.rank(p)).map(|r| (r, i)))
            .min();
        ranked
            .map(|(_, i)| i)
            .or_else(|| entries.iter().position(|e| platform_of(e).is_none()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `os/arch[/variant]` of an index entry, for messages.
pub(crate) fn describe(p: &PlatformJson) -> String {
    match p.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, v: Option<&str>) -> PlatformJson {
        PlatformJson {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        }
    }

    #[test]
    fn amd64_host_takes_baseline_variants_only() {
        let host = Platform::parse("linux/amd64").unwrap();
        assert_eq!(host.rank(&p("linux", "amd64", None)), Some(0));
        assert!(host.rank(&p("linux", "amd64", Some("v2"))).is_some());
        assert_eq!(host.rank(&p("linux", "amd64", Some("v3"))), None);
        assert_eq!(host.rank(&p("linux", "arm64", None)), None);
        assert_eq!(host.rank(&p("windows", "amd64", None)), None);
        assert_eq!(host.rank(&p("unknown", "unknown", None)), None);
    }

    #[test]
    fn arm_prefers_its_own_variant_then_older_ones() {
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        let entries = [
            p("linux", "arm", Some("v5")),
            p("linux", "arm", Some("v6")),
            p("linux", "arm", Some("v8")),
            p("linux", "arm64", Some("v8")),
        ];
        assert_eq!(v7.select(&entries, |e| Some(e)), Some(1));
        let entries = [p("linux", "arm", Some("v6")), p("linux", "arm", Some("v7"))];
        assert_eq!(v7.select(&entries, |e| Some(e)), Some(1));
        let v6 = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(v6.rank(&p("linux", "arm", Some("v7"))), None);
    }

    #[test]
    fn arm64_and_entries_without_platform() {
        let host = Platform::parse("linux/aarch64").unwrap();
        assert_eq!(host.to_string(), "linux/arm64/v8");
        let entries = [
            Some(p("linux", "amd64", None)),
            None,
            Some(p("linux", "arm64", None)),
        ];
        assert_eq!(host.select(&entries, |e| e.as_ref()), Some(2));
        let entries = [Some(p("linux", "amd64", None)), None];
        assert_eq!(host.select(&entries, |e| e.as_ref()), Some(1));
        let entries = [Some(p("linux", "amd64", None))];
        assert_eq!(host.select(&entries, |e| e.as_ref()), None);
    }

    #[test]
    fn parses_and_refuses_platform_strings() {
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap(),
            Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None
            }
        );
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
