//! SPDY/3.1, the server side of what Kubernetes clients speak before WebSocket (kubectl
//! 1.27–1.29 exec and attach, the kubelet's streaming): frames, zlib header blocks primed
//! with the protocol's dictionary, and a session that accepts the client's streams
//! (`streamtype` error, stdin, stdout, stderr, resize), replies to each, relays data both
//! ways, answers pings and returns window credit. Only what a remotecommand server needs:
//! it never opens streams of its own.

use std::collections::HashMap;
use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
/// The last frame of a stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// Larger header blocks or data frames are refused (a client bug or an attack).
const MAX_FRAME: usize = 16 << 20;

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): these names and
/// values, each preceded by its length as a big-endian u32, then `TAIL` as is.
const WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The dictionary's bytes.
pub fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// One frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Control {
        kind: u16,
        flags: u8,
        data: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// Reads one frame.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SPDY frame too large",
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("SPDY version {version}, expected 3"),
            ));
        }
        Ok(Frame::Control {
            kind: u16::from_be_bytes([head[2], head[3]]),
            flags,
            data,
        })
    } else {
        Ok(Frame::Data {
            stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
            flags,
            data,
        })
    }
}

pub fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A DATA frame.
pub fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

fn window_update(stream: u32, delta: u32) -> Vec<u8> {
    let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
    control(WINDOW_UPDATE, 0, &p)
}

/// One direction's header compression: a zlib stream kept for the whole session.
pub struct HeaderCodec {
    deflate: Compress,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    pub fn new() -> Self {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        // Priming a fresh deflate stream only fails for a bad state, which this is not.
        let _ = deflate.set_dictionary(&dictionary);
        Self {
            deflate,
            inflate: Decompress::new(true),
            dictionary,
        }
    }

    /// A header block: the count, then each name and value with its length.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            block.extend_from_slice(&(n.len() as u32).to_be_bytes());
            block.extend_from_slice(n.as_bytes());
            block.extend_from_slice(&(v.len() as u32).to_be_bytes());
            block.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Decodes a header block; names are lower-cased as SPDY requires.
    pub fn decode(&mut self, mut input: &[u8]) -> io::Result<Vec<(String, String)>> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let mut block = Vec::with_capacity(input.len() * 4 + 64);
        while !input.is_empty() {
            block.reserve(1024);
            let before = self.inflate.total_in();
            match self
                .inflate
                .decompress_vec(input, &mut block, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| bad(format!("SPDY header dictionary: {e}")))?;
                }
                Err(e) => return Err(bad(format!("SPDY header block: {e}"))),
            }
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            if used == 0 && block.len() < block.capacity() && !input.is_empty() {
                return Err(bad("SPDY header block: no progress".into()));
            }
        }
        let mut cur = Cursor {
            buf: &block,
            pos: 0,
        };
        let count = cur.u32()?;
        let mut headers = Vec::new();
        for _ in 0..count.min(1024) {
            let n = cur.u32()? as usize;
            let name = String::from_utf8_lossy(cur.take(n)?).to_ascii_lowercase();
            let n = cur.u32()? as usize;
            let value = String::from_utf8_lossy(cur.take(n)?).into_owned();
            headers.push((name, value));
        }
        Ok(headers)
    }
}

/// Reads a decompressed header block.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let s = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "SPDY header block truncated")
            })?;
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What the session tells its user.
#[derive(Debug)]
pub enum Event {
    /// The client opened a stream of this `streamtype` (with all its headers, names
    /// lower-cased: port-forward streams carry `port` and `requestid`).
    Opened {
        stream: u32,
        kind: String,
        headers: Vec<(String, String)>,
    },
    /// Data on a stream.
    Data { stream: u32, data: Vec<u8> },
    /// The client finished (or reset) a stream.
    Closed { stream: u32 },
    /// The connection ended.
    Gone,
}

/// Writes frames for the session's user: data on a stream, optionally its last.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Writer {
    pub async fn send(&self, stream: u32, data: &[u8], fin: bool) -> bool {
        // Large writes go out in frames the client's default window (64 KiB) accepts.
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(16 * 1024).collect()
        };
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let flags = if fin && i == last { FLAG_FIN } else { 0 };
            if self.tx.send(data_frame(stream, flags, c)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends the session (GOAWAY), after what was queued before.
    pub async fn goaway(&self, last_stream: u32) {
        let mut p = last_stream.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        let _ = self.tx.send(control(GOAWAY, 0, &p)).await;
    }
}

/// Runs a session over `io`: events to the returned receiver, frames from the `Writer`.
/// Streams are accepted with an empty SYN_REPLY as they open.
pub fn session<T>(io: T) -> (Writer, mpsc::Receiver<Event>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let (ev_tx, ev_rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            let goaway = f.len() >= 4 && f[0] == 0x80 && u16::from_be_bytes([f[2], f[3]]) == GOAWAY;
            if wr.write_all(&f).await.is_err() {
                break;
            }
            if goaway {
                let _ = wr.flush().await;
                let _ = wr.shutdown().await;
                break;
            }
        }
    });
    let writer = Writer { tx: out_tx.clone() };
    tokio::spawn(async move {
        let mut codec = HeaderCodec::new();
        let mut kinds: HashMap<u32, String> = HashMap::new();
        loop {
            let frame = match read_frame(&mut rd).await {
                Ok(f) => f,
                Err(_) => {
                    let _ = ev_tx.send(Event::Gone).await;
                    return;
                }
            };
            match frame {
                Frame::Control { kind, flags, data } => match kind {
                    SYN_STREAM if data.len() >= 10 => {
                        let stream =
                            u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                        let headers = match codec.decode(&data[10..]) {
                            Ok(h) => h,
                            Err(_) => {
                                let _ = ev_tx.send(Event::Gone).await;
                                return;
                            }
                        };
                        let kind = headers
                            .iter()
                            .find(|(n, _)| n == "streamtype")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        let mut p = stream.to_be_bytes().to_vec();
                        p.extend(codec.encode(&[]));
                        let _ = out_tx.send(control(SYN_REPLY, 0, &p)).await;
                        kinds.insert(stream, kind.clone());
                        let _ = ev_tx
                            .send(Event::Opened {
                                stream,
                                kind,
                                headers,
                            })
                            .await;
                        if flags & FLAG_FIN != 0 {
                            let _ = ev_tx.send(Event::Closed { stream }).await;
                        }
                    }
                    RST_STREAM if data.len() >= 4 => {
                        let stream =
                            u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
                        let _ = ev_tx.send(Event::Closed { stream }).await;
                    }
                    PING => {
                        let _ = out_tx.send(control(PING, 0, &data)).await;
                    }
                    GOAWAY => {
                        let _ = ev_tx.send(Event::Gone).await;
                        return;
                    }
                    HEADERS if data.len() >= 4 => {
                        // Keeps the decompressor in step; nothing here needs the headers.
                        let _ = codec.decode(&data[4..]);
                    }
                    SETTINGS | WINDOW_UPDATE | SYN_REPLY => {}
                    _ => {}
                },
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    if !data.is_empty() {
                        // Credit back what was consumed, for the stream and the session.
                        let n = data.len() as u32;
                        let _ = out_tx.send(window_update(stream, n)).await;
                        let _ = out_tx.send(window_update(0, n)).await;
                        let _ = ev_tx.send(Event::Data { stream, data }).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = ev_tx.send(Event::Closed { stream }).await;
                    }
                }
            }
        }
    });
    (writer, ev_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specified_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
        // Its Adler-32 is the DICTID every SPDY/3 zlib stream carries.
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for &x in &d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_across_a_session() {
        let mut client = HeaderCodec::new();
        let mut server = HeaderCodec::new();
        for kind in ["error", "stdin", "stdout"] {
            let block = client.encode(&[("streamType", kind), ("version", "HTTP/1.1")]);
            let headers = server.decode(&block).unwrap();
            assert_eq!(
                headers,
                vec![
                    ("streamtype".to_string(), kind.to_string()),
                    ("version".to_string(), "HTTP/1.1".to_string())
                ]
            );
        }
        assert!(server.decode(b"\x78\x9c\xff\xff garbage").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_session_replies_relays_and_pongs() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (writer, mut events) = session(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut codec = HeaderCodec::new();
        let mut syn = 1u32.to_be_bytes().to_vec();
        syn.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        syn.extend(codec.encode(&[("streamtype", "stdin")]));
        cwr.write_all(&control(SYN_STREAM, 0, &syn)).await.unwrap();
        cwr.write_all(&data_frame(1, FLAG_FIN, b"hello"))
            .await
            .unwrap();
        cwr.write_all(&control(PING, 0, &7u32.to_be_bytes()))
            .await
            .unwrap();
        match events.recv().await.unwrap() {
            Event::Opened { stream, kind, .. } => assert_eq!((stream, kind.as_str()), (1, "stdin")),
            e => panic!("{e:?}"),
        }
        match events.recv().await.unwrap() {
            Event::Data { stream, data } => assert_eq!((stream, &data[..]), (1, &b"hello"[..])),
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            events.recv().await.unwrap(),
            Event::Closed { stream: 1 }
        ));
        // The reply, window credit for the stream and the session, then the pong.
        let mut seen = Vec::new();
        for _ in 0..4 {
            match read_frame(&mut crd).await.unwrap() {
                Frame::Control { kind, data, .. } => seen.push((kind, data.len())),
                f => panic!("{f:?}"),
            }
        }
        assert_eq!(seen[0].0, SYN_REPLY);
        assert_eq!(seen[1], (WINDOW_UPDATE, 8));
        assert_eq!(seen[3], (PING, 4));
        assert!(writer.send(2, b"out", true).await);
        match read_frame(&mut crd).await.unwrap() {
            Frame::Data {
                stream,
                flags,
                data,
            } => assert_eq!((stream, flags, &data[..]), (2, FLAG_FIN, &b"out"[..])),
            f => panic!("{f:?}"),
        }
    }
}
