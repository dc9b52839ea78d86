//! The raw framing of each request on a connection, followed in step with hyper's parser.
//!
//! A request that states its body length two ways (`Content-Length` together with
//! `Transfer-Encoding`) is how requests are smuggled past one parser into another. hyper takes the
//! option RFC 9112 §6.1 allows: it frames such a body by `Transfer-Encoding`, drops the
//! `Content-Length` header and closes the connection after the answer. The request then reaches the
//! router looking unambiguous. possync takes the other option and refuses it (400
//! `ambiguous_framing`, then close), so [`FramingWatch`] reads the same bytes hyper reads, finds each
//! request head with the same parser (httparse), skips its body by the same rules, and notes which
//! requests (by their index on the connection) had both headers. [`Watched`] is the stream wrapper
//! that feeds it.
//!
//! When the bytes cannot be followed (a head hyper will refuse anyway, an absurd chunk line), the
//! watch stops; hyper's own rules still apply to what follows.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most headers hyper accepts in one head (its default).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size and extensions) followed before the watch gives up.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Where the watch is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before or inside a request head.
    Head,
    /// Inside a body of known length: this many bytes left.
    Fixed(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many data bytes left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data: this many bytes of it left.
    ChunkEnd(u8),
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// The bytes could not be followed; nothing more is noted.
    Lost,
}

/// What a connection's bytes said about its requests' framing so far.
#[derive(Debug)]
pub(crate) struct FramingWatch {
    at: At,
    /// Bytes of an unfinished head, chunk-size line or trailer section.
    pending: Vec<u8>,
    /// Heads completed so far (the index of the next one).
    heads: u64,
    /// Indexes of the heads that had both `Content-Length` and `Transfer-Encoding`.
    ambiguous: Vec<u64>,
    /// Longest head followed.
    max_head: usize,
}

impl FramingWatch {
    /// A watch for a new connection; heads longer than `max_head` bytes are not followed (hyper
    /// refuses them with its own limit).
    pub(crate) fn new(max_head: usize) -> FramingWatch {
        FramingWatch { at: At::Head, pending: Vec::new(), heads: 0, ambiguous: Vec::new(), max_head }
    }

    /// Whether the request with this index on the connection (0 = the first) stated its body length
    /// both by `Content-Length` and by `Transfer-Encoding`.
    pub(crate) fn was_ambiguous(&self, index: u64) -> bool {
        self.ambiguous.contains(&index)
    }

    /// Follows the next bytes read from the connection.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.at {
                At::Lost => return,
                At::Head => self.head(bytes),
                At::Fixed(left) => {
                    let n = (bytes.len() as u64).min(left);
                    self.at = if n == left { At::Head } else { At::Fixed(left - n) };
                    &bytes[n as usize..]
                }
                At::ChunkSize => self.chunk_size(bytes),
                At::ChunkData(left) => {
                    let n = (bytes.len() as u64).min(left);
                    self.at = if n == left { At::ChunkEnd(2) } else { At::ChunkData(left - n) };
                    &bytes[n as usize..]
                }
                At::ChunkEnd(left) => {
                    let n = bytes.len().min(usize::from(left));
                    self.at =
                        if n == usize::from(left) { At::ChunkSize } else { At::ChunkEnd(left - n as u8) };
                    &bytes[n..]
                }
                At::Trailers => self.trailers(bytes),
            };
        }
    }

    /// Takes up to one head; returns the bytes after it.
    fn head<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let before = self.pending.len();
        self.pending.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.pending) {
            Ok(httparse::Status::Complete(len)) => {
                let (mut lengths, mut encodings, mut chunked, mut length) = (0usize, 0usize, false, None);
                for h in request.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        lengths += 1;
                        length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        encodings += 1;
                        // As hyper: chunked when the last coding of the last header is chunked.
                        chunked = h
                            .value
                            .rsplit(|b| *b == b',')
                            .next()
                            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                    }
                }
                if lengths > 0 && encodings > 0 {
                    self.ambiguous.push(self.heads);
                }
                self.heads += 1;
                self.pending.clear();
                self.at = match (encodings > 0, chunked, length) {
                    (true, true, _) => At::ChunkSize,
                    (true, false, _) => At::Lost,
                    (false, _, Some(0)) => At::Head,
                    (false, _, Some(n)) => At::Fixed(n),
                    (false, _, None) if lengths > 0 => At::Lost,
                    (false, _, None) => At::Head,
                };
                &bytes[len - before..]
            }
            Ok(httparse::Status::Partial) if self.pending.len() <= self.max_head => &[],
            Ok(httparse::Status::Partial) | Err(_) => {
                self.lose();
                &[]
            }
        }
    }

    /// Takes up to one chunk-size line; returns the bytes after it.
    fn chunk_size<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let before = self.pending.len();
        self.pending.extend_from_slice(bytes);
        match httparse::parse_chunk_size(&self.pending) {
            Ok(httparse::Status::Complete((len, size))) => {
                self.pending.clear();
                self.at = if size == 0 { At::Trailers } else { At::ChunkData(size) };
                &bytes[len - before..]
            }
            Ok(httparse::Status::Partial) if self.pending.len() <= MAX_CHUNK_LINE => &[],
            Ok(httparse::Status::Partial) | Err(_) => {
                self.lose();
                &[]
            }
        }
    }

    /// Takes trailer lines up to and with the empty line that ends them; returns the bytes after.
    fn trailers<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let before = self.pending.len();
        self.pending.extend_from_slice(bytes);
        let end = if self.pending.starts_with(b"\r\n") {
            Some(2)
        } else {
            self.pending.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
        };
        match end {
            Some(end) => {
                self.pending.clear();
                self.at = At::Head;
                &bytes[end - before..]
            }
            None if self.pending.len() <= self.max_head => &[],
            None => {
                self.lose();
                &[]
            }
        }
    }

    fn lose(&mut self) {
        self.at = At::Lost;
        self.pending = Vec::new();
    }
}

/// A connection's stream that shows every byte read to a [`FramingWatch`].
pub(crate) struct Watched<S> {
    inner: S,
    watch: Arc<Mutex<FramingWatch>>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; `watch` sees every byte read from it.
    pub(crate) fn new(inner: S, watch: Arc<Mutex<FramingWatch>>) -> Watched<S> {
        Watched { inner, watch }
    }

    /// The wrapped stream.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.watch.lock().feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A request with the given framing headers and body bytes (already framed).
    fn request(framing: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("POST /sync/push HTTP/1.1\r\nHost: x\r\n{framing}\r\n").into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn chunked(body: &[u8], pieces: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in body.chunks(body.len().div_ceil(pieces.max(1)).max(1)) {
            out.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        out
    }

    #[derive(Debug, Clone)]
    enum Kind {
        Fixed,
        Chunked,
        NoBody,
        Both,
    }

    fn conversation(kinds: &[(Kind, Vec<u8>, usize)]) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (i, (kind, body, pieces)) in kinds.iter().enumerate() {
            bytes.extend(match kind {
                Kind::Fixed => request(&format!("Content-Length: {}\r\n", body.len()), body),
                Kind::Chunked => request("Transfer-Encoding: chunked\r\n", &chunked(body, *pieces)),
                Kind::NoBody => request("", b""),
                Kind::Both => {
                    expected.push(i as u64);
                    let framing = if *pieces % 2 == 0 {
                        format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len())
                    } else {
                        format!("Transfer-Encoding: gzip, chunked\r\nContent-Length: {}\r\n", body.len())
                    };
                    request(&framing, &chunked(body, *pieces))
                }
            });
        }
        (bytes, expected)
    }

    proptest! {
        /// Whatever the requests' framing and however the bytes arrive, exactly the requests with
        /// both headers are noted, by their index.
        #[test]
        fn notes_exactly_the_requests_with_both_lengths(
            kinds in proptest::collection::vec(
                (prop_oneof![Just(Kind::Fixed), Just(Kind::Chunked), Just(Kind::NoBody), Just(Kind::Both)],
                 proptest::collection::vec(any::<u8>(), 0..300), 1usize..5),
                1..8),
            cuts in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let (bytes, expected) = conversation(&kinds);
            let mut watch = FramingWatch::new(16 * 1024);
            let mut rest: &[u8] = &bytes;
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap_or(&1)).min(rest.len());
                watch.feed(&rest[..n]);
                rest = &rest[n..];
            }
            prop_assert_eq!(watch.heads, kinds.len() as u64);
            prop_assert_eq!(watch.at, At::Head);
            for i in 0..kinds.len() as u64 {
                prop_assert_eq!(watch.was_ambiguous(i), expected.contains(&i), "request {}", i);
            }
        }
    }

    #[test]
    fn a_head_hyper_refuses_stops_the_watch() {
        let mut watch = FramingWatch::new(64);
        watch.feed(b"POST / HTTP/1.1\r\nX: ");
        watch.feed(&[b'a'; 100]);
        assert_eq!(watch.at, At::Lost);
        watch.feed(&request("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"));
        assert!(!watch.was_ambiguous(0));
    }
}
