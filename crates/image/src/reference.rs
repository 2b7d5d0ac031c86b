//! Image references: parsing and normalising names such as `busybox`,
//! `localhost:5000/app:1` or `quay.io/a/b@sha256:…` exactly as Docker's
//! `reference.ParseNormalizedNamed` does (grammar of `distribution/reference`).
//!
//! Pure string handling: it never looks at the store.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The registry that names without a domain belong to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The repository namespace of single-component Docker Hub names (`busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of a name given without tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of the name part (`registry/repository`).
const NAME_TOTAL_MAX: usize = 255;
/// Docker's limit on a tag's length.
const TAG_MAX: usize = 128;

/// A normalised image reference: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// Registry host, e.g. `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, e.g. `latest` (None when the reference is by digest only).
    pub tag: Option<String>,
    /// Digest `sha256:<hex>` when given.
    pub digest: Option<String>,
}

/// A string that is not a valid image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// Parses and normalises a reference as Docker does.
    ///
    /// - no domain: `docker.io`, and a single path component goes under `library/`;
    /// - the first path component is a domain when it contains `.` or `:`, is `localhost`,
    ///   or has an uppercase letter (then it is not a valid repository anyway);
    /// - `index.docker.io` is `docker.io`;
    /// - no tag and no digest: tag `latest`; with a digest alone, no tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace or control characters"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            validate_digest(d).map_err(|r| err(&r))?;
        }
        // The tag is after the last ':' that follows the last '/' (a ':' before a '/' is a port).
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|sl| colon > sl) => {
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| err(&r))?;
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        if name.len() > NAME_TOTAL_MAX {
            return Err(err(&format!(
                "repository name longer than {NAME_TOTAL_MAX} characters"
            )));
        }
        if digest.is_none() && tag.is_none() && is_hex64(name) {
            return Err(err(
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }

        let (registry, remainder) = split_domain(name);
        if let Some(r) = registry {
            validate_domain(r).map_err(|r| err(&r))?;
        }
        if remainder.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err(&format!(
                "repository name ({remainder}) must be lowercase"
            )));
        }
        validate_path(remainder).map_err(|r| err(&r))?;

        let registry = match registry {
            None | Some("index.docker.io") => DEFAULT_REGISTRY.to_owned(),
            Some(r) => r.to_owned(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{remainder}")
        } else {
            remainder.to_owned()
        };
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// The full form, e.g. `docker.io/library/busybox:latest`.
    pub fn full(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        self.push_tag_digest(&mut s);
        s
    }

    /// The REPOSITORY column of `image ls`: `busybox` for docker.io/library, else `registry/repository`
    /// (`docker.io/` is dropped as Docker does).
    pub fn familiar_repository(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The short form Docker prints (`Untagged: busybox:latest`): the familiar repository
    /// with the tag and digest.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        self.push_tag_digest(&mut s);
        s
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn push_tag_digest(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits `name` into its domain (if the first component is one) and the repository path.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]`, host being DNS labels separated by dots or a bracketed IPv6 address.
fn validate_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("invalid registry domain {domain:?}");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    Ok(())
}

/// `component ('/' component)*`, component = `[a-z0-9]+ (separator [a-z0-9]+)*`,
/// separator = `.` | `_` | `__` | `-`+.
fn validate_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("empty path component in repository name {path:?}"));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "repository path component {component:?} must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__" or one or more "-".
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(format!(
                    "invalid characters {sep:?} in repository path component {component:?}"
                ));
            }
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("empty tag".to_owned()),
        Some(c) if !word(c) => {
            return Err(format!(
                "tag {tag:?} must start with a letter, digit or '_'"
            ))
        }
        Some(_) => {}
    }
    if tag.len() > TAG_MAX {
        return Err(format!("tag longer than {TAG_MAX} characters"));
    }
    if !chars.all(|c| word(c) || c == '.' || c == '-') {
        return Err(format!("invalid characters in tag {tag:?}"));
    }
    Ok(())
}

/// A digest Docker can use: `sha256:` + 64, `sha384:` + 96 or `sha512:` + 128 lowercase hex digits.
fn validate_digest(digest: &str) -> Result<(), String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no algorithm"))?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "invalid {alg} digest {hex:?}: want {len} lowercase hex digits"
        ));
    }
    Ok(())
}

/// 64 lowercase hex digits: a sha256 id.
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// Only `0-9a-f`.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .full()
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            full("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("a/b/c"), "docker.io/a/b/c:latest");
    }

    #[test]
    fn registries_ports_and_digests() {
        assert_eq!(full("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(
            full("registry.example.com/team/app"),
            "registry.example.com/team/app:latest"
        );
        assert_eq!(full("[::1]:5000/x"), "[::1]:5000/x:latest");
        let r = Reference::parse(&format!("quay.io/a/b@{D}")).unwrap();
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.full(), format!("quay.io/a/b@{D}"));
        let r = Reference::parse(&format!("name:tag@{D}")).unwrap();
        assert_eq!(r.full(), format!("docker.io/library/name:tag@{D}"));
        assert_eq!(r.tag.as_deref(), Some("tag"));
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.familiar_repository(), "busybox");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            Reference::parse("foo/bar:2").unwrap().familiar(),
            "foo/bar:2"
        );
        assert_eq!(
            Reference::parse("docker.io/library/a/b")
                .unwrap()
                .familiar_repository(),
            "library/a/b"
        );
        let q = Reference::parse("quay.io/a/b:1").unwrap();
        assert_eq!(q.familiar_repository(), "quay.io/a/b");
        assert_eq!(q.familiar(), "quay.io/a/b:1");
        assert_eq!(q.name(), "quay.io/a/b");
        assert_eq!(q.to_string(), "quay.io/a/b:1");
    }

    #[test]
    fn invalid_references_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("Busybox", "must be lowercase"),
            ("foo/Bar", "must be lowercase"),
            ("busybox:", "empty tag"),
            ("busybox:-x", "must start"),
            ("busy box", "whitespace"),
            ("busy!box", "invalid characters"),
            ("busybox!", "must start and end"),
            ("-busybox", "must start and end"),
            ("foo//bar", "empty path component"),
            ("foo/bar/", "empty path component"),
            ("a..b", "invalid characters"),
            ("busybox@sha256:abc", "invalid sha256 digest"),
            (
                "busybox@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            ("busybox@", "no algorithm"),
            ("localhost:abc/x", "invalid registry domain"),
            ("my_host.com/x", "invalid registry domain"),
            (":tag", "empty repository"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "64-byte",
            ),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input).expect_err(input);
            assert_eq!(err.input, input);
            assert!(err.to_string().contains(want), "{input:?}: {err}");
        }
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = "a".repeat(256);
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn separators_follow_the_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2.c_d"] {
            Reference::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["a___b", "a.-b", "a_.b", "a/.b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
