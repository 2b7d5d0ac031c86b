//! The results: rows of samples per engine, the table (Markdown, so it can be pasted into
//! docs/performance.md as is), the targets of issue 6 and the JSON document.

use serde_json::{json, Value};

use crate::host::Machine;
use crate::stats::{fmt_num, round3, Samples};

/// The unit of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Mebibytes.
    MiB,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
        }
    }
}

/// One workload's results.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable identifier (JSON).
    pub key: String,
    /// What the table says.
    pub label: String,
    /// Its unit.
    pub unit: Unit,
    /// peapod's samples.
    pub peapod: Samples,
    /// Podman's samples (empty without Podman).
    pub podman: Samples,
    /// How many floors (unshare + chroot /bin/true, one per container started one after
    /// another) the workload contains at least; `None`: no floor shown.
    pub floors: Option<f64>,
}

/// Everything measured plus what it ran on.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// peapod's git revision.
    pub revision: String,
    /// `peapod --version`.
    pub peapod_version: String,
    /// The OCI runtime peapod used and its version.
    pub runtime: String,
    /// `podman --version` and its runtime, when Podman ran.
    pub podman: Option<(String, String)>,
    /// Measured iterations per single-pod workload (warm-up excluded).
    pub runs: usize,
    /// Warm-up iterations discarded.
    pub warmup: usize,
    /// Iterations of the N-pod workloads.
    pub density_runs: usize,
    /// The rows, in table order.
    pub rows: Vec<Row>,
    /// The floor's samples (ms).
    pub floor: Samples,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
}

/// One of issue 6's targets.
struct Target {
    key: &'static str,
    limit: f64,
    what: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        key: "apply-two-containers",
        limit: 25.0,
        what: "two-container pod Running ≤ 25 ms median",
    },
    Target {
        key: "apply-init-container",
        limit: 35.0,
        what: "init-container pod Running ≤ 35 ms median",
    },
    Target {
        key: "delete-two-containers",
        limit: 50.0,
        what: "delete (two-container pod) ≤ 50 ms median",
    },
    Target {
        key: "delete-init-container",
        limit: 50.0,
        what: "delete (init-container pod) ≤ 50 ms median",
    },
    Target {
        key: "exec-true",
        limit: 10.0,
        what: "exec true ≤ 10 ms median",
    },
    Target {
        key: "sequential-100",
        limit: 3000.0,
        what: "100 pods one after another ≤ 3 s",
    },
    Target {
        key: "concurrent-100",
        limit: 3000.0,
        what: "100 pods concurrently ≤ 3 s",
    },
    Target {
        key: "pss-per-pod",
        limit: 0.5,
        what: "engine PSS ≤ 0.5 MiB per pod",
    },
];

impl Report {
    fn floor_ms(&self, row: &Row) -> Option<f64> {
        Some(row.floors? * self.floor.median()?)
    }

    fn ratio(row: &Row) -> Option<f64> {
        let p = row.peapod.median()?;
        let q = row.podman.median()?;
        (p > 0.0).then(|| q / p)
    }

    /// Targets that have a row: (description, median, met).
    fn targets(&self) -> Vec<(&'static str, f64, bool)> {
        TARGETS
            .iter()
            .filter_map(|t| {
                let row = self.rows.iter().find(|r| r.key == t.key)?;
                let m = row.peapod.median()?;
                Some((t.what, m, m <= t.limit))
            })
            .collect()
    }

    /// The human-readable report: header, Markdown table, targets, notes.
    pub fn text(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str(&format!(
            "machine: {} CPUs, {}, {} MiB RAM, Linux {} ({}), cgroups {}, load average {} at start\n",
            m.nproc, m.cpu, m.mem_mib, m.kernel, m.os, m.cgroups, m.load
        ));
        s.push_str(&format!(
            "peapod:  {} at git {}, OCI runtime {}\n",
            self.peapod_version, self.revision, self.runtime
        ));
        match &self.podman {
            Some((v, rt)) => s.push_str(&format!("podman:  {v}, OCI runtime {rt}\n")),
            None => s.push_str("podman:  not run (see notes)\n"),
        }
        s.push_str(&format!(
            "runs:    {} per single-pod workload ({} warm-up discarded), {} per N-pod workload\n\n",
            self.runs, self.warmup, self.density_runs
        ));

        let header = [
            "workload".to_string(),
            "peapod median (min–max)".to_string(),
            "podman median (min–max)".to_string(),
            "ratio".to_string(),
            "floor".to_string(),
        ];
        let mut lines: Vec<[String; 5]> = Vec::new();
        for r in &self.rows {
            lines.push([
                format!("{} [{}]", r.label, r.unit.as_str()),
                r.peapod.summary(),
                r.podman.summary(),
                Self::ratio(r).map_or("—".into(), |x| format!("{x:.1}×")),
                self.floor_ms(r).map_or("—".into(), fmt_num),
            ]);
        }
        lines.push([
            "floor: unshare + chroot /bin/true [ms]".into(),
            "—".into(),
            "—".into(),
            "—".into(),
            self.floor.summary(),
        ]);
        let mut width = [0usize; 5];
        for l in std::iter::once(&header).chain(lines.iter()) {
            for (w, c) in width.iter_mut().zip(l.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let fmt_line = |l: &[String; 5]| {
            let cells: Vec<String> = l
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        s.push_str(&fmt_line(&header));
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        s.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for l in &lines {
            s.push_str(&fmt_line(l));
        }

        s.push_str(
            "\nratio = podman median / peapod median (above 1: peapod is faster or smaller).\n",
        );
        s.push_str(
            "floor = the floor's median × the containers the workload starts one after another.\n",
        );
        let targets = self.targets();
        if !targets.is_empty() {
            s.push_str("\nissue 6 targets (peapod medians):\n");
            for (what, median, met) in targets {
                s.push_str(&format!(
                    "  {} {what}: {}\n",
                    if met { "met    " } else { "NOT met" },
                    fmt_num(median)
                ));
            }
        }
        if !self.notes.is_empty() {
            s.push_str("\nnotes:\n");
            for n in &self.notes {
                s.push_str(&format!("  - {n}\n"));
            }
        }
        s
    }

    /// The machine-readable report.
    pub fn json(&self) -> Value {
        let m = &self.machine;
        json!({
            "machine": {
                "nproc": m.nproc,
                "cpu": m.cpu,
                "mem_mib": m.mem_mib,
                "kernel": m.kernel,
                "os": m.os,
                "cgroups": m.cgroups,
                "load": m.load,
            },
            "peapod": {
                "version": self.peapod_version,
                "revision": self.revision,
                "runtime": self.runtime,
            },
            "podman": self.podman.as_ref().map(|(v, rt)| json!({"version": v, "runtime": rt})),
            "runs": self.runs,
            "warmup": self.warmup,
            "density_runs": self.density_runs,
            "floor_ms": self.floor.to_json(),
            "results": self.rows.iter().map(|r| json!({
                "workload": r.key,
                "label": r.label,
                "unit": r.unit.as_str(),
                "peapod": r.peapod.to_json(),
                "podman": r.podman.to_json(),
                "ratio": Self::ratio(r).map(round3),
                "floor": self.floor_ms(r).map(round3),
            })).collect::<Vec<_>>(),
            "targets": self.targets().iter().map(|(what, median, met)| json!({
                "target": what, "median": round3(*median), "met": met,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}
