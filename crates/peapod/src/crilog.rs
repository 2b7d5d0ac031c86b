//! Container logs in the CRI format: `<RFC3339Nano> <stdout|stderr> <P|F> <content>`, one
//! record per line; `P` marks a partial line continued by the next record.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};

/// A line longer than this is split into partial records.
const MAX_RECORD: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout (and a tty's output).
    Stdout,
    /// stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Splits a stream's bytes into records, keeping an unfinished line until it ends.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for one stream.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds bytes and writes every complete record.
    pub fn feed(
        &mut self,
        data: &[u8],
        now: DateTime<Utc>,
        out: &mut impl Write,
    ) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            write_record(out, now, self.stream, true, &line[..line.len() - 1])?;
        }
        while self.pending.len() >= MAX_RECORD {
            let part: Vec<u8> = self.pending.drain(..MAX_RECORD).collect();
            write_record(out, now, self.stream, false, &part)?;
        }
        Ok(())
    }

    /// At end of stream, writes what is left as a final record.
    pub fn finish(&mut self, now: DateTime<Utc>, out: &mut impl Write) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write_record(out, now, self.stream, true, &rest)?;
        }
        Ok(())
    }
}

fn write_record(
    out: &mut impl Write,
    now: DateTime<Utc>,
    stream: Stream,
    full: bool,
    content: &[u8],
) -> io::Result<()> {
    let mut rec = Vec::with_capacity(content.len() + 48);
    rec.extend_from_slice(now.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
    rec.push(b' ');
    rec.extend_from_slice(stream.as_str().as_bytes());
    rec.extend_from_slice(if full { b" F " } else { b" P " });
    rec.extend_from_slice(content);
    rec.push(b'\n');
    out.write_all(&rec)
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// When it was written.
    pub time: &'a str,
    /// Its stream.
    pub stream: Stream,
    /// Whether the line ends here.
    pub full: bool,
    /// The bytes.
    pub content: &'a [u8],
}

/// Parses one record line (without its newline); `None` for a malformed line.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        time,
        stream,
        full,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_and_round_trip() {
        let now = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stdout);
        s.feed(b"hello\nwor", now, &mut out).unwrap();
        s.feed(b"ld\n", now, &mut out).unwrap();
        s.feed(b"tail", now, &mut out).unwrap();
        s.finish(now, &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "2023-11-14T22:13:20.000000005Z stdout F hello\n\
             2023-11-14T22:13:20.000000005Z stdout F world\n\
             2023-11-14T22:13:20.000000005Z stdout F tail\n"
        );
        let recs: Vec<_> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap().content.to_vec())
            .collect();
        assert_eq!(
            recs,
            vec![b"hello".to_vec(), b"world".to_vec(), b"tail".to_vec()]
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let now = Utc::now();
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stderr);
        s.feed(&vec![b'x'; MAX_RECORD + 10], now, &mut out).unwrap();
        s.feed(b"\n", now, &mut out).unwrap();
        let lines: Vec<_> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].full && lines[1].full);
        assert_eq!(
            lines[0].content.len() + lines[1].content.len(),
            MAX_RECORD + 10
        );
        assert_eq!(lines[0].stream, Stream::Stderr);
    }

    #[test]
    fn malformed_records_are_rejected() {
        assert!(parse_record(b"garbage").is_none());
        assert!(parse_record(b"t stdin F x").is_none());
        assert!(parse_record(b"t stdout X x").is_none());
    }
}
