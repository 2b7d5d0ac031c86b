//! The ConfigMap and Secret fixtures through the pure pipeline a server runs on a request:
//! decode, default (Secrets: `stringData` merged, `type` defaulted), validate.
//!
//! - `fixtures/objects/invalid/*`: each must be rejected with a message containing every
//!   `# expect: <substring>` of its header;
//! - `fixtures/objects/valid/*`: each must be admitted, every kind in it.

use std::fs;
use std::path::{Path, PathBuf};

use peapod_api::decode::{decode_objects, Object};
use peapod_api::objects::{normalize_secret, validate_config_map, validate_secret};

const EXPECT: &str = "# expect:";

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/objects")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Decode, default and validate every object; the first error's message.
fn admit(text: &str) -> Result<Vec<Object>, String> {
    let mut objects = decode_objects(text).map_err(|e| e.to_string())?;
    for object in &mut objects {
        match object {
            Object::Pod(pod) => {
                peapod_api::defaults::apply_defaults(pod);
                peapod_api::validate::validate_pod(pod)
            }
            Object::ConfigMap(c) => validate_config_map(c),
            Object::Secret(s) => {
                normalize_secret(s);
                validate_secret(s)
            }
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(objects)
}

#[test]
fn invalid_objects_are_rejected_with_the_expected_messages() {
    let files = fixtures("invalid");
    assert!(files.len() >= 10, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .map_while(|l| l.strip_prefix(EXPECT))
            .map(str::trim)
            .collect();
        let name = path.file_name().unwrap().to_string_lossy();
        if expects.is_empty() {
            failures.push(format!("{name}: no `{EXPECT}` header line"));
            continue;
        }
        match admit(&text) {
            Ok(_) => failures.push(format!("{name}: was accepted")),
            Err(message) => {
                for expect in expects {
                    if !message.contains(expect) {
                        failures.push(format!("{name}: lacks {expect:?}\n    got: {message}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn valid_objects_are_admitted_in_file_order() {
    for path in fixtures("valid") {
        let text = fs::read_to_string(&path).unwrap();
        let objects = admit(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kinds: Vec<&str> = objects.iter().map(Object::kind).collect();
        assert_eq!(
            kinds,
            ["ConfigMap", "Secret", "Secret", "Pod"],
            "{}",
            path.display()
        );
        let Object::Secret(secret) = &objects[1] else {
            unreachable!()
        };
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["password"].0, b"hunter2");
        assert_eq!(data["token"].0, b"abc");
        assert!(secret.string_data.is_none());
    }
}
