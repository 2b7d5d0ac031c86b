//! What CRI stats are made of, read the way containerd reads them: CPU time from
//! `cpuacct.usage` (cgroup v1) or `cpu.stat` `usage_usec` (v2); memory usage and the
//! working set (usage minus inactive file pages, what the kubelet evicts on) from
//! `memory.usage_in_bytes`/`memory.current` and `memory.stat`; a sandbox's network
//! counters from `/proc/<infra pid>/net/dev`; the writable layer from the container's
//! overlay upper directory. The parsers are pure and tested with fixture text.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use peapod_cri::v1 as cri;
use peapod_oci::cgroups::{self, CgroupLayout};

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`: "key value" lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// Total CPU time in ns: v1 `cpuacct.usage` is ns already; v2 `cpu.stat` counts µs.
pub fn cpu_ns(layout: CgroupLayout, text: &str) -> Option<u64> {
    match layout {
        CgroupLayout::V1 => text.trim().parse().ok(),
        CgroupLayout::V2 => keyed(text, "usage_usec").map(|us| us.saturating_mul(1000)),
    }
}

/// Memory figures of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The limit, when there is one.
    pub limit: Option<u64>,
}

/// Memory from the usage (`memory.usage_in_bytes` or `memory.current`), `memory.stat` and
/// the limit file (`memory.limit_in_bytes` or `memory.max`). v1 counts the hierarchy in
/// `total_*` keys; v2 keys count it already.
pub fn memory(layout: CgroupLayout, usage: &str, stat: &str, limit: &str) -> Option<Memory> {
    let usage: u64 = usage.trim().parse().ok()?;
    let key = |k: &str| match layout {
        CgroupLayout::V1 => keyed(stat, &format!("total_{k}")),
        CgroupLayout::V2 => keyed(stat, k),
    };
    let inactive = key("inactive_file").unwrap_or(0);
    let limit = limit
        .trim()
        .parse::<u64>()
        .ok()
        // v1 says "no limit" with a huge page-rounded number.
        .filter(|l| *l < (1u64 << 62));
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive),
        rss: match layout {
            CgroupLayout::V1 => key("rss"),
            CgroupLayout::V2 => key("anon"),
        },
        page_faults: key("pgfault"),
        major_page_faults: key("pgmajfault"),
        limit,
    })
}

/// One interface's counters in `/proc/<pid>/net/dev`: (rx bytes, rx errors, tx bytes,
/// tx errors).
pub fn net_dev(text: &str, iface: &str) -> Option<(u64, u64, u64, u64)> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (f.len() >= 11).then(|| (f[0], f[2], f[8], f[10]))
    })
}

/// A cgroup's directory for a controller file (v1: under the controller's hierarchy).
fn cgroup_file(
    mount: &Path,
    layout: CgroupLayout,
    controller: &str,
    path: &str,
    file: &str,
) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match layout {
        CgroupLayout::V1 => mount.join(controller).join(rel).join(file),
        CgroupLayout::V2 => mount.join(rel).join(file),
    }
}

/// A cgroup's CPU time and memory, read now.
pub fn read_cgroup(cgroups_path: &str) -> (Option<u64>, Option<Memory>, Option<u64>) {
    let mount = Path::new("/sys/fs/cgroup");
    let layout = cgroups::detect(mount);
    let read = |controller: &str, file: &str| {
        fs::read_to_string(cgroup_file(mount, layout, controller, cgroups_path, file))
            .unwrap_or_default()
    };
    let cpu = match layout {
        CgroupLayout::V1 => cpu_ns(layout, &read("cpuacct", "cpuacct.usage")),
        CgroupLayout::V2 => cpu_ns(layout, &read("", "cpu.stat")),
    };
    let mem = match layout {
        CgroupLayout::V1 => memory(
            layout,
            &read("memory", "memory.usage_in_bytes"),
            &read("memory", "memory.stat"),
            &read("memory", "memory.limit_in_bytes"),
        ),
        CgroupLayout::V2 => memory(
            layout,
            &read("", "memory.current"),
            &read("", "memory.stat"),
            &read("", "memory.max"),
        ),
    };
    let pids = read("pids", "pids.current").trim().parse().ok();
    (cpu, mem, pids)
}

/// Disk use of a directory tree (allocated blocks, each inode once) and its inode count;
/// never follows symlinks or leaves the filesystem.
pub fn dir_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(root) else {
        return (0, 0);
    };
    let dev = top.dev();
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if seen.insert(md.ino()) {
                bytes += md.blocks() * 512;
                inodes += 1;
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn u64v(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// The previous CPU sample of each cgroup, for `usage_nano_cores` (the rate since).
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// CPU usage of `key` at `now` (ns since the epoch) with its rate since the last call.
    pub fn usage(&self, key: &str, now: i64, total_ns: Option<u64>) -> cri::CpuUsage {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = total_ns.and_then(|total| {
            let prev = last.insert(key.to_string(), (now, total));
            let (t0, u0) = prev?;
            let dt = u64::try_from(now - t0).ok().filter(|d| *d > 0)?;
            Some(((total.saturating_sub(u0)) as u128 * 1_000_000_000 / dt as u128) as u64)
        });
        cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: total_ns.and_then(u64v),
            usage_nano_cores: rate.and_then(u64v),
        }
    }
}

/// CRI memory usage from [`Memory`].
pub fn memory_usage(now: i64, m: Option<Memory>) -> Option<cri::MemoryUsage> {
    let m = m?;
    Some(cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: u64v(m.working_set),
        available_bytes: m.limit.and_then(|l| u64v(l.saturating_sub(m.working_set))),
        usage_bytes: u64v(m.usage),
        rss_bytes: m.rss.and_then(u64v),
        page_faults: m.page_faults.and_then(u64v),
        major_page_faults: m.major_page_faults.and_then(u64v),
    })
}

/// A sandbox's network usage: eth0 of `/proc/<pid>/net/dev` (the pod's namespace).
pub fn network_usage(now: i64, infra_pid: i32) -> Option<cri::NetworkUsage> {
    let text = fs::read_to_string(format!("/proc/{infra_pid}/net/dev")).ok()?;
    let (rx, rx_err, tx, tx_err) = net_dev(&text, "eth0")?;
    let eth0 = cri::NetworkInterfaceUsage {
        name: "eth0".into(),
        rx_bytes: u64v(rx),
        rx_errors: u64v(rx_err),
        tx_bytes: u64v(tx),
        tx_errors: u64v(tx_err),
    };
    Some(cri::NetworkUsage {
        timestamp: now,
        default_interface: Some(eth0.clone()),
        interfaces: vec![eth0],
    })
}

/// The writable layer's use: the container's overlay upper directory.
pub fn writable_layer(now: i64, upper: &Path) -> cri::FilesystemUsage {
    let (bytes, inodes) = dir_usage(upper);
    cri::FilesystemUsage {
        timestamp: now,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: upper.display().to_string(),
        }),
        used_bytes: u64v(bytes),
        inodes_used: u64v(inodes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_STAT: &str = "cache 8192\nrss 4096\ninactive_file 1000\ntotal_cache 81920\ntotal_rss 40960\ntotal_inactive_file 20000\ntotal_pgfault 77\ntotal_pgmajfault 3\n";
    const V2_STAT: &str = "anon 409600\nfile 819200\nkernel_stack 16384\ninactive_anon 0\nactive_anon 409600\ninactive_file 300000\nactive_file 519200\npgfault 1234\npgmajfault 5\n";
    const V2_CPU: &str = "usage_usec 2500123\nuser_usec 2000000\nsystem_usec 500123\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";

    #[test]
    fn cpu_time_is_nanoseconds_in_both_layouts() {
        assert_eq!(cpu_ns(CgroupLayout::V1, "123456789\n"), Some(123_456_789));
        assert_eq!(cpu_ns(CgroupLayout::V2, V2_CPU), Some(2_500_123_000));
        assert_eq!(cpu_ns(CgroupLayout::V2, ""), None);
        assert_eq!(cpu_ns(CgroupLayout::V1, "garbage"), None);
    }

    #[test]
    fn the_working_set_leaves_out_inactive_file_pages() {
        let v1 = memory(
            CgroupLayout::V1,
            "1000000\n",
            V1_STAT,
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(
            v1,
            Memory {
                usage: 1_000_000,
                working_set: 980_000,
                rss: Some(40960),
                page_faults: Some(77),
                major_page_faults: Some(3),
                limit: None,
            }
        );
        let v2 = memory(CgroupLayout::V2, "2000000\n", V2_STAT, "4194304\n").unwrap();
        assert_eq!(v2.working_set, 1_700_000);
        assert_eq!(v2.rss, Some(409_600));
        assert_eq!(
            (v2.page_faults, v2.major_page_faults),
            (Some(1234), Some(5))
        );
        assert_eq!(v2.limit, Some(4_194_304));
        let unlimited = memory(CgroupLayout::V2, "10\n", V2_STAT, "max\n").unwrap();
        assert_eq!((unlimited.working_set, unlimited.limit), (0, None));
        assert!(memory(CgroupLayout::V2, "", V2_STAT, "max").is_none());
    }

    #[test]
    fn net_dev_counters_of_one_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  eth0:    5310      41    1    0    0     0          0         0     1846      17    2    0    0     0       0          0\n";
        assert_eq!(net_dev(text, "eth0"), Some((5310, 1, 1846, 2)));
        assert_eq!(net_dev(text, "lo"), Some((140, 0, 140, 0)));
        assert_eq!(net_dev(text, "eth1"), None);
    }

    #[test]
    fn cpu_rates_need_two_samples() {
        let r = CpuRates::default();
        let first = r.usage("c", 1_000_000_000, Some(500));
        assert_eq!(first.usage_core_nano_seconds, u64v(500));
        assert_eq!(first.usage_nano_cores, None);
        // Half a core for two seconds.
        let second = r.usage("c", 3_000_000_000, Some(500 + 1_000_000_000));
        assert_eq!(second.usage_nano_cores, u64v(500_000_000));
    }

    #[test]
    fn dir_usage_counts_files_once() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        let (bytes, inodes) = dir_usage(d.path());
        assert_eq!(inodes, 2, "a (linked twice) and sub");
        assert!(bytes >= 10_000, "{bytes}");
    }
}
