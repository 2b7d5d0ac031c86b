//! Samples and their summary: median, minimum, maximum.

use std::time::Duration;

use serde_json::{json, Value};

/// The samples of one workload on one engine, in the workload's unit (ms or MiB).
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Adds a duration, in milliseconds.
    pub fn push_duration(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    /// Adds a value.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (mean of the two middle samples for an even count).
    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    /// The smallest sample.
    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    /// The largest sample.
    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// `median (min–max)`, or `—` without samples.
    pub fn summary(&self) -> String {
        match (self.median(), self.min(), self.max()) {
            (Some(m), _, _) if self.0.len() == 1 => fmt_num(m),
            (Some(m), Some(lo), Some(hi)) => {
                format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi))
            }
            _ => "—".into(),
        }
    }

    /// `{median, min, max, samples}` or null.
    pub fn to_json(&self) -> Value {
        if self.0.is_empty() {
            return Value::Null;
        }
        json!({
            "median": round3(self.median().unwrap_or_default()),
            "min": round3(self.min().unwrap_or_default()),
            "max": round3(self.max().unwrap_or_default()),
            "samples": self.0.iter().map(|v| round3(*v)).collect::<Vec<_>>(),
        })
    }
}

/// Three decimals, for JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A number with precision that suits its size: 2 decimals under 10, 1 under 1000, none above.
pub fn fmt_num(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.2}")
    } else if v.abs() < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(Samples(vec![3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(Samples(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Samples(vec![]).median(), None);
    }

    #[test]
    fn summary_formats() {
        assert_eq!(
            Samples(vec![12.34, 10.0, 150.0]).summary(),
            "12.3 (10.0–150.0)"
        );
        assert_eq!(Samples(vec![2.5]).summary(), "2.50");
        assert_eq!(Samples(vec![]).summary(), "—");
        assert_eq!(fmt_num(2831.4), "2831");
    }
}
