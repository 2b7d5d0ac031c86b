//! Docker's human formats: "Up 3 seconds", "Exited (0) 37 seconds ago", "4.26MB",
//! and tab-aligned tables. Pure.

use std::io::Write;

use chrono::{DateTime, Utc};

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

/// "N … ago".
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", human_duration(now - then))
}

/// Docker's `units.HumanSize` (decimal units, 3 significant digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    let s = format!("{size:.4}");
    // %.4g: four significant digits, trailing zeros trimmed.
    let digits_before = s.split('.').next().map_or(1, str::len);
    let prec = 4usize.saturating_sub(digits_before);
    let s = format!("{size:.prec$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// Writes rows aligned as Go's tabwriter with Docker's padding of three spaces.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(3);
    writeln!(tw, "{}", header.join("\t"))?;
    for r in rows {
        writeln!(tw, "{}", r.join("\t"))?;
    }
    tw.flush()?;
    let buf = tw
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Trailing padding of the last column is dropped, as Docker's output has none.
    for line in String::from_utf8_lossy(&buf).lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Docker's COMMAND column: the quoted command line, truncated to 20 characters with `…`.
pub fn command_column(args: &[String]) -> String {
    let full = args.join(" ");
    let short: String = if full.chars().count() > 20 {
        let mut s: String = full.chars().take(19).collect();
        s.push('…');
        s
    } else {
        full
    };
    format!("\"{short}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_prints_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(37)), "37 seconds");
        assert_eq!(human_duration(d(61)), "About a minute");
        assert_eq!(human_duration(d(60 * 5)), "5 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(3600 * 5)), "5 hours");
        assert_eq!(human_duration(d(3600 * 24 * 3)), "3 days");
    }

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(2_000), "2kB");
    }

    #[test]
    fn table_aligns_columns_with_three_spaces() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["A", "LONGER"],
            &[vec!["xxxx".into(), "y".into()]],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A      LONGER\nxxxx   y\n");
    }

    #[test]
    fn command_column_truncates_like_docker() {
        assert_eq!(command_column(&["sh".into()]), "\"sh\"");
        let long: Vec<String> = vec!["touch".into(), "/data/test.txt-and-more".into()];
        assert_eq!(command_column(&long), "\"touch /data/test.tx…\"");
    }
}
