//! `peapod-infra`: the pod's infra process as a binary of its own, so the one process every
//! pod keeps resident maps a few hundred kilobytes rather than all of peapod (see
//! `peapod_infra`). Arguments: `[--netns PATH] --hostname NAME [--share-pid]`, or `--pid1`.

use std::path::PathBuf;

fn main() {
    let mut netns: Option<PathBuf> = None;
    let mut hostname: Option<String> = None;
    let mut share_pid = false;
    let mut pid1 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--netns" => netns = args.next().map(PathBuf::from),
            "--hostname" => hostname = args.next(),
            "--share-pid" => share_pid = true,
            "--pid1" => pid1 = true,
            other => fail(&format!("unexpected argument {other:?}")),
        }
    }
    let result = if pid1 {
        peapod_infra::run_pid1()
    } else {
        let Some(hostname) = hostname else {
            fail("--hostname NAME is required");
        };
        peapod_infra::run(
            netns.as_deref(),
            &hostname,
            share_pid,
            &["/proc/self/exe", "--pid1"],
        )
    };
    if let Err(e) = result {
        fail(&format!("{e:#}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("peapod-infra: {message}");
    std::process::exit(1)
}
