//! The manifest fixtures end to end through the pure pipeline a server runs on a request:
//! decode, default, validate.
//!
//! - `fixtures/pods/invalid/*`: each must be rejected (by decoding, or by validation after
//!   defaulting) with a message containing every `# expect: <substring>` of its header;
//! - `fixtures/pods/valid/*` and `examples/*.yaml`: each must decode, default and validate.

use std::fs;
use std::path::{Path, PathBuf};

use peapod_api::decode::decode_pods;
use peapod_api::defaults::apply_defaults;
use peapod_api::validate::validate_pod;
use peapod_api::Pod;

const EXPECT: &str = "# expect:";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// Decode, default and validate every pod of a manifest; the first error's message.
fn admit(text: &str) -> Result<Vec<Pod>, String> {
    let mut pods = decode_pods(text).map_err(|e| e.to_string())?;
    for pod in &mut pods {
        apply_defaults(pod);
        validate_pod(pod).map_err(|e| e.to_string())?;
    }
    Ok(pods)
}

/// The expected substrings of a fixture, and its text with the header lines blanked (so
/// that line numbers in messages stay those of the file, and JSON stays JSON).
fn split_fixture(text: &str) -> (Vec<String>, String) {
    let mut expects = Vec::new();
    let mut body = String::new();
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        match line.strip_prefix(EXPECT) {
            Some(expect) if in_header => {
                expects.push(expect.trim().to_owned());
                body.push('\n');
            }
            _ => {
                in_header = false;
                body.push_str(line);
            }
        }
    }
    (expects, body)
}

#[test]
fn invalid_manifests_are_rejected_with_the_expected_messages() {
    let files = files_in("fixtures/pods/invalid", &["yaml", "yml", "json"]);
    assert!(files.len() >= 25, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).expect("fixture is readable");
        let (expects, body) = split_fixture(&text);
        let name = path.file_name().unwrap().to_string_lossy();
        if expects.is_empty() {
            failures.push(format!("{name}: no `{EXPECT}` header line"));
            continue;
        }
        match admit(&body) {
            Ok(_) => failures.push(format!("{name}: was accepted")),
            Err(message) => {
                for expect in &expects {
                    if !message.contains(expect.as_str()) {
                        failures.push(format!(
                            "{name}: message lacks {expect:?}\n    got: {message}"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn valid_manifests_and_examples_are_admitted() {
    let mut files = files_in("fixtures/pods/valid", &["yaml", "yml", "json"]);
    let examples = files_in("examples", &["yaml"]);
    assert!(examples.len() >= 3, "the seed's three examples are missing");
    files.extend(examples);
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).expect("fixture is readable");
        match admit(&text) {
            Ok(pods) if pods.is_empty() => failures.push(format!("{}: no pods", path.display())),
            Ok(_) => {}
            Err(message) => failures.push(format!("{}: {message}", path.display())),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_seed_examples_decode_to_what_the_seed_describes() {
    let read = |name: &str| {
        let text = fs::read_to_string(repo_root().join("examples").join(name)).unwrap();
        admit(&text).unwrap().remove(0)
    };

    let pod = read("two-containers.yaml");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("two-containers"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["my-test-container1", "my-test-container2"]);
    for c in &spec.containers {
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        assert_eq!((c.stdin, c.tty), (Some(true), Some(true)));
    }

    let pod = read("two-containers-volume.yaml");
    let spec = pod.spec.as_ref().unwrap();
    let volume = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(volume.name, "shared-data");
    assert_eq!(volume.host_path.as_ref().unwrap().path, "/data");
    assert!(volume.empty_dir.is_none());
    for c in &spec.containers {
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.name.as_str(), mount.mount_path.as_str()),
            ("shared-data", "/data")
        );
    }

    let pod = read("init-container.yaml");
    let spec = pod.spec.as_ref().unwrap();
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "data-container");
    assert_eq!(
        init.command.as_deref(),
        Some(&["touch".to_owned(), "/data/test.txt".to_owned()][..])
    );
    assert_eq!(spec.containers[0].name, "app-container");
    assert!(spec.volumes.as_ref().unwrap()[0].empty_dir.is_some());
}

#[test]
fn valid_fixtures_decode_to_the_expected_pods() {
    let count = |name: &str| {
        let text = fs::read_to_string(repo_root().join("fixtures/pods/valid").join(name)).unwrap();
        admit(&text).unwrap().len()
    };
    assert_eq!(count("multi-document.yaml"), 3);
    assert_eq!(count("list.yaml"), 2);
    assert_eq!(count("pod.json"), 1);
}
