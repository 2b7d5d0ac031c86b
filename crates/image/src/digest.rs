//! Content digests: sha256 while streaming, and the compression formats recognised by
//! their magic bytes. Owns no files.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A reader that hashes (sha256) and counts everything read through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream (e.g. a tar's trailing zero blocks) into the hash.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The lowercase hex sha256 of everything read, and how many bytes that was.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The lowercase hex sha256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// How a stream is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// No compression (a tar stream, or anything unrecognised: the tar reader judges it).
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`): recognised to be refused clearly.
    Xz,
    /// bzip2 (`BZh`): recognised to be refused clearly.
    Bzip2,
}

impl Compression {
    /// Sniffs the magic bytes at the start of a stream.
    pub(crate) fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else if head.starts_with(b"BZh") {
            Self::Bzip2
        } else {
            Self::None
        }
    }

    /// The name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Xz => "xz",
            Self::Bzip2 => "bzip2",
        }
    }
}

/// Wraps `reader` (positioned at the start of the stream whose first bytes are `head`) in the
/// matching decompressor. `Err(compression)` for the formats we recognise but do not read.
pub(crate) fn decompress<'a, R: io::BufRead + 'a>(
    reader: R,
    head: &[u8],
) -> Result<io::Result<Box<dyn Read + 'a>>, Compression> {
    match Compression::sniff(head) {
        Compression::None => Ok(Ok(Box::new(reader))),
        Compression::Gzip => Ok(Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))),
        Compression::Zstd => Ok(zstd::stream::read::Decoder::with_buffer(reader)
            .map(|d| Box::new(d) as Box<dyn Read + 'a>)),
        other => Err(other),
    }
}

/// Reads up to 8 bytes from the start of `reader` without consuming them.
pub(crate) fn peek_head<R: io::BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(8)].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Write};

    #[test]
    fn hashing_reader_hashes_and_counts() {
        let mut r = HashingReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let (hex, n) = r.finish();
        assert_eq!(n, 5);
        assert_eq!(
            hex,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(hex, sha256_hex(b"hello"));
    }

    #[test]
    fn sniffs_and_decompresses_gzip_zstd_and_plain() {
        let data = b"some tar bytes".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (bytes, want) in [
            (&data, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
        ] {
            assert_eq!(Compression::sniff(bytes), want);
            let mut r = BufReader::new(&bytes[..]);
            let head = peek_head(&mut r).unwrap();
            let mut out = Vec::new();
            decompress(r, &head)
                .unwrap()
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
        assert_eq!(Compression::sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1]),
            Compression::Xz
        );
    }
}
