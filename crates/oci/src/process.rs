//! The container's process before it becomes a spec: Docker's merge of the image config with
//! `run`'s overrides, and `user[:group]` resolution against the rootfs' passwd/group files.
//!
//! Pure: the caller reads `/etc/passwd` and `/etc/group` out of the rootfs and passes their
//! contents; nothing here touches the filesystem.

use serde::{Deserialize, Serialize};

/// The `PATH` a container gets when neither the image nor the caller sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image-side process defaults (from the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProcess {
    /// Image `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Image `Cmd`.
    pub cmd: Vec<String>,
    /// Image `Env` (`K=V`).
    pub env: Vec<String>,
    /// Image `WorkingDir`.
    pub working_dir: Option<String>,
    /// Image `User`.
    pub user: Option<String>,
}

/// What `run` overrides, with Docker's meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOverrides {
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image name; non-empty replaces the image's Cmd.
    pub cmd: Vec<String>,
    /// `-e K=V` (a bare `K` takes the value from the caller's environment before reaching here).
    pub env: Vec<String>,
    /// `-w DIR`.
    pub working_dir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
}

/// The merged process, before user names are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedProcess {
    /// argv.
    pub args: Vec<String>,
    /// Environment, `PATH` defaulted, overrides winning by key.
    pub env: Vec<String>,
    /// Working directory, `/` by default.
    pub cwd: String,
    /// User spec (`uid[:gid]` or names), `0` by default.
    pub user: String,
}

/// Merging failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Neither the image nor the caller gave a command.
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// `-w` must be absolute.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
}

/// Docker's rules: `--entrypoint` replaces the image entrypoint and drops the image Cmd;
/// given args replace the Cmd; env merges by key.
///
/// In detail:
/// - argv is entrypoint + cmd. `--entrypoint X` gives entrypoint `[X]` and drops the image's
///   Cmd (only the run args follow it); `--entrypoint ""` gives an empty entrypoint, so the
///   run args (or nothing) are the whole argv. Non-empty run args replace the image's Cmd.
/// - env starts from `PATH=`[`DEFAULT_PATH`], then the image's env, then the overrides; a
///   later entry with the same key replaces the earlier one in place, a new key is appended.
///   An override without `=` removes the key (Docker's `ReplaceOrAppendEnvValues`).
///   `HOSTNAME` and `TERM` are not added here.
/// - cwd is `-w` (which must be absolute), else the image's `WorkingDir` (taken relative to
///   `/` when it is not absolute, as Docker does), else `/`.
/// - user is `-u`, else the image's `User`, else `0`.
pub fn merge_process(
    image: &ImageProcess,
    overrides: &ProcessOverrides,
) -> Result<MergedProcess, MergeError> {
    let (entrypoint, cmd): (Vec<String>, &[String]) = match overrides.entrypoint.as_deref() {
        Some("") => (Vec::new(), &overrides.cmd),
        Some(e) => (vec![e.to_owned()], &overrides.cmd),
        None if overrides.cmd.is_empty() => (image.entrypoint.clone(), &image.cmd),
        None => (image.entrypoint.clone(), &overrides.cmd),
    };
    let mut args = entrypoint;
    args.extend(cmd.iter().cloned());
    if args.is_empty() {
        return Err(MergeError::NoCommand);
    }

    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    replace_or_append_env(&mut env, &image.env);
    replace_or_append_env(&mut env, &overrides.env);

    let cwd = match non_empty(&overrides.working_dir) {
        Some(w) if w.starts_with('/') => w.to_owned(),
        Some(w) => return Err(MergeError::RelativeWorkdir(w.to_owned())),
        None => match non_empty(&image.working_dir) {
            Some(w) if w.starts_with('/') => w.to_owned(),
            Some(w) => format!("/{w}"),
            None => "/".to_owned(),
        },
    };

    let user = non_empty(&overrides.user)
        .or_else(|| non_empty(&image.user))
        .unwrap_or("0")
        .to_owned();

    Ok(MergedProcess {
        args,
        env,
        cwd,
        user,
    })
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Docker's `ReplaceOrAppendEnvValues`: same key replaces in place, new keys append, a bare
/// `K` (no `=`) removes `K`.
fn replace_or_append_env(env: &mut Vec<String>, overrides: &[String]) {
    for o in overrides {
        let key = env_key(o);
        let existing = env.iter().position(|e| env_key(e) == key);
        match (o.contains('='), existing) {
            (true, Some(i)) => env[i] = o.clone(),
            (true, None) => env.push(o.clone()),
            (false, Some(i)) => {
                env.remove(i);
            }
            (false, None) => {}
        }
    }
}

/// A resolved numeric user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// Resolving a user name failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not in the rootfs' /etc/passwd (or /etc/group).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    /// The group is not in the rootfs' /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
}

/// Resolves `user[:group]` (names or numbers) against the passwd/group files' contents
/// (empty strings when absent), as runc/Docker do. Pure.
///
/// Accepted forms: `uid`, `uid:gid`, `name`, `name:group`, `uid:group`, `name:gid`. Without a
/// group the gid is the passwd entry's; a numeric uid that is not in passwd gets gid 0. A
/// numeric uid or gid needs no entry; a name needs one. An empty user part means uid 0.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<NumericUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };

    let entry = if user_part.is_empty() {
        passwd_entries(passwd).find(|e| e.uid == 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        passwd_entries(passwd).find(|e| e.uid == uid)
    } else {
        passwd_entries(passwd).find(|e| e.name == user_part)
    };
    let (uid, default_gid) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid),
        (None, Ok(uid)) => (uid, 0),
        (None, Err(_)) if user_part.is_empty() => (0, 0),
        (None, Err(_)) => return Err(UserError::NoSuchUser(user_part.to_owned())),
    };

    let gid = match group_part {
        None | Some("") => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_owned()))?,
        },
    };
    Ok(NumericUser { uid, gid })
}

/// One `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line: `name:password:gid:members`.
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
}

/// The well-formed entries of a passwd file; comments and malformed lines are skipped.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    })
}

/// The well-formed entries of a group file.
fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?.parse().ok()?;
        Some(GroupEntry { name, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageProcess {
        ImageProcess {
            entrypoint: v(&["/docker-entrypoint.sh"]),
            cmd: v(&["nginx", "-g", "daemon off;"]),
            env: v(&["PATH=/opt/bin:/usr/bin", "NGINX_VERSION=1.25", "A=image"]),
            working_dir: Some("/srv".into()),
            user: Some("nginx".into()),
        }
    }

    #[test]
    fn argv_follows_docker_rules() {
        let with_cmd_only = ImageProcess {
            cmd: v(&["sh"]),
            ..Default::default()
        };
        let cases: Vec<(&str, ImageProcess, ProcessOverrides, Vec<String>)> = vec![
            (
                "image entrypoint + cmd",
                image(),
                ProcessOverrides::default(),
                v(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
            ),
            (
                "run args replace cmd, keep entrypoint",
                image(),
                ProcessOverrides {
                    cmd: v(&["nginx", "-t"]),
                    ..Default::default()
                },
                v(&["/docker-entrypoint.sh", "nginx", "-t"]),
            ),
            (
                "--entrypoint drops the image cmd",
                image(),
                ProcessOverrides {
                    entrypoint: Some("/bin/sh".into()),
                    ..Default::default()
                },
                v(&["/bin/sh"]),
            ),
            (
                "--entrypoint plus run args",
                image(),
                ProcessOverrides {
                    entrypoint: Some("/bin/sh".into()),
                    cmd: v(&["-c", "echo hi"]),
                    ..Default::default()
                },
                v(&["/bin/sh", "-c", "echo hi"]),
            ),
            (
                "--entrypoint \"\" clears: run args are the whole argv",
                image(),
                ProcessOverrides {
                    entrypoint: Some(String::new()),
                    cmd: v(&["ls", "-l"]),
                    ..Default::default()
                },
                v(&["ls", "-l"]),
            ),
            (
                "image cmd only",
                with_cmd_only.clone(),
                ProcessOverrides::default(),
                v(&["sh"]),
            ),
            (
                "run args replace an image cmd without entrypoint",
                with_cmd_only,
                ProcessOverrides {
                    cmd: v(&["echo", "x"]),
                    ..Default::default()
                },
                v(&["echo", "x"]),
            ),
        ];
        for (name, image, overrides, want) in cases {
            let got = merge_process(&image, &overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.args, want, "{name}");
        }
    }

    #[test]
    fn no_command_is_an_error() {
        let cases = [
            (ImageProcess::default(), ProcessOverrides::default()),
            (
                image(),
                ProcessOverrides {
                    entrypoint: Some(String::new()),
                    ..Default::default()
                },
            ),
        ];
        for (image, overrides) in cases {
            assert!(matches!(
                merge_process(&image, &overrides),
                Err(MergeError::NoCommand)
            ));
        }
    }

    #[test]
    fn env_merges_by_key_with_overrides_winning() {
        let sh = ImageProcess {
            cmd: v(&["sh"]),
            ..Default::default()
        };
        // (name, image env, -e overrides, merged env)
        type Case = (&'static str, Vec<String>, Vec<String>, Vec<String>);
        let cases: Vec<Case> = vec![
            (
                "PATH defaulted",
                vec![],
                vec![],
                v(&[&format!("PATH={DEFAULT_PATH}")]),
            ),
            (
                "image PATH replaces the default in place",
                v(&["A=1", "PATH=/x"]),
                vec![],
                v(&["PATH=/x", "A=1"]),
            ),
            (
                "override wins, new keys append",
                v(&["A=1", "B=2"]),
                v(&["B=3", "C=4"]),
                v(&[&format!("PATH={DEFAULT_PATH}"), "A=1", "B=3", "C=4"]),
            ),
            (
                "values may contain =",
                vec![],
                v(&["OPTS=a=b"]),
                v(&[&format!("PATH={DEFAULT_PATH}"), "OPTS=a=b"]),
            ),
            (
                "a bare key removes",
                v(&["A=1", "B=2"]),
                v(&["A"]),
                v(&[&format!("PATH={DEFAULT_PATH}"), "B=2"]),
            ),
            (
                "override PATH",
                v(&["PATH=/image"]),
                v(&["PATH=/mine"]),
                v(&["PATH=/mine"]),
            ),
        ];
        for (name, image_env, env, want) in cases {
            let image = ImageProcess {
                env: image_env,
                ..sh.clone()
            };
            let got = merge_process(
                &image,
                &ProcessOverrides {
                    env,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(got.env, want, "{name}");
            assert!(
                !got.env.iter().any(|e| e.starts_with("HOSTNAME=")),
                "{name}"
            );
        }
    }

    #[test]
    fn cwd_and_user() {
        let sh = |w: Option<&str>, u: Option<&str>| ImageProcess {
            cmd: v(&["sh"]),
            working_dir: w.map(Into::into),
            user: u.map(Into::into),
            ..Default::default()
        };
        let o = |w: Option<&str>, u: Option<&str>| ProcessOverrides {
            working_dir: w.map(Into::into),
            user: u.map(Into::into),
            ..Default::default()
        };
        let cases = [
            (sh(None, None), o(None, None), "/", "0"),
            (sh(Some(""), Some("")), o(Some(""), Some("")), "/", "0"),
            (
                sh(Some("/srv"), Some("nginx")),
                o(None, None),
                "/srv",
                "nginx",
            ),
            (sh(Some("app"), None), o(None, None), "/app", "0"),
            (
                sh(Some("/srv"), Some("nginx")),
                o(Some("/tmp"), Some("1000:1000")),
                "/tmp",
                "1000:1000",
            ),
        ];
        for (image, overrides, cwd, user) in cases {
            let got = merge_process(&image, &overrides).unwrap();
            assert_eq!(
                (got.cwd.as_str(), got.user.as_str()),
                (cwd, user),
                "{image:?} {overrides:?}"
            );
        }
        let err = merge_process(&sh(None, None), &o(Some("tmp"), None)).unwrap_err();
        assert!(
            matches!(err, MergeError::RelativeWorkdir(ref w) if w == "tmp"),
            "{err}"
        );
    }

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
# a comment
nginx:x:101:102:nginx user:/nonexistent:/bin/false
broken line
www-data:x:33:33:www-data:/var/www:/bin/false
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
tty:x:5:
nginx:x:102:
staff:x:50:nginx
";

    #[test]
    fn resolves_users_like_runc() {
        let cases = [
            ("0", 0, 0),
            ("", 0, 0),
            ("root", 0, 0),
            ("nginx", 101, 102),
            ("101", 101, 102),
            ("www-data", 33, 33),
            ("1000", 1000, 0),
            ("1000:1000", 1000, 1000),
            ("nginx:staff", 101, 50),
            ("nginx:7", 101, 7),
            ("1000:tty", 1000, 5),
            ("daemon:", 1, 1),
        ];
        for (spec, uid, gid) in cases {
            let got = resolve_user(spec, PASSWD, GROUP).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(got, NumericUser { uid, gid }, "{spec}");
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let cases = [
            ("nobody", PASSWD, GROUP, "unable to find user nobody"),
            ("nginx:wheel", PASSWD, GROUP, "unable to find group wheel"),
            ("1000:wheel", PASSWD, GROUP, "unable to find group wheel"),
            ("root", "", "", "unable to find user root"),
        ];
        for (spec, passwd, group, want) in cases {
            let err = resolve_user(spec, passwd, group).unwrap_err();
            assert!(err.to_string().starts_with(want), "{spec}: {err}");
        }
        assert_eq!(
            resolve_user("0", "", "").unwrap(),
            NumericUser { uid: 0, gid: 0 }
        );
        assert_eq!(
            resolve_user("5:5", "", "").unwrap(),
            NumericUser { uid: 5, gid: 5 }
        );
    }
}
