//! Accepting gRPC clients that send the socket path as `:authority`.
//!
//! grpc-python, grpc-java and grpcurl name a `unix:` target's socket path
//! (raw or percent-encoded) as the HTTP/2 `:authority`. That is not a valid
//! authority, and the HTTP/2 server under tonic (h2) resets every such
//! stream with PROTOCOL_ERROR before any handler runs; h2 has no setting to
//! relax it (hyperium/h2#487 is the open request). For a Unix socket the
//! authority carries nothing (the socket is the peer), so each connection is
//! read through [`Normalized`], which looks at the first request's header
//! block:
//!
//! - a valid (or no) authority, as kirc-tui and tonic send: from then on the
//!   connection is passed through untouched, byte for byte, at no cost;
//! - an invalid one: for the whole connection, every header block the client
//!   sends is decoded (HPACK, with the client's dynamic table) and encoded
//!   again with `:authority: localhost` (with a dynamic table of our own,
//!   which the server's decoder mirrors from the start).
//!
//! Only the client's direction is read; what the server writes goes out
//! unchanged. Everything but header blocks is forwarded as it came.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Fragments we write fit the smallest frame size HTTP/2 allows.
const FRAGMENT: usize = 16_384;
/// A header block larger than this ends the connection.
const MAX_BLOCK: usize = 256 * 1024;
/// What replaces an invalid authority.
const LOCAL_AUTHORITY: &[u8] = b"localhost";

enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Forwarding frames until the first header block decides.
    Deciding,
    /// Untouched from here on.
    Passthrough,
    /// Every header block re-encoded.
    Rewriting(Box<Rewriter>),
}

struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

/// A client connection whose header blocks carry a valid `:authority`.
pub struct Normalized {
    inner: UnixStream,
    mode: Mode,
    /// Read from the client, not yet handled.
    input: Vec<u8>,
    /// Handled, not yet read by the server.
    output: Vec<u8>,
    output_at: usize,
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalized").finish_non_exhaustive()
    }
}

impl Normalized {
    pub fn new(inner: UnixStream) -> Self {
        Normalized {
            inner,
            mode: Mode::Preface,
            input: Vec::new(),
            output: Vec::new(),
            output_at: 0,
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.output_at == self.output.len() {
            self.output.clear();
            self.output_at = 0;
        }
        self.output.extend_from_slice(bytes);
    }

    /// Handles what `input` holds completely; false when more is needed.
    fn advance(&mut self) -> io::Result<bool> {
        match &self.mode {
            Mode::Preface => {
                if self.input.len() < PREFACE.len() {
                    return Ok(false);
                }
                let preface: Vec<u8> = self.input.drain(..PREFACE.len()).collect();
                self.mode = if preface == PREFACE {
                    Mode::Deciding
                } else {
                    // Not HTTP/2 with prior knowledge: the server says so.
                    Mode::Passthrough
                };
                self.emit(&preface);
                Ok(true)
            }
            Mode::Passthrough => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let input = std::mem::take(&mut self.input);
                self.emit(&input);
                Ok(true)
            }
            Mode::Deciding | Mode::Rewriting(_) => self.advance_frames(),
        }
    }

    fn advance_frames(&mut self) -> io::Result<bool> {
        let Some(header) = frame_header(&self.input) else {
            return Ok(false);
        };
        if header.kind != HEADERS {
            if self.input.len() < FRAME_HEADER + header.length {
                return Ok(false);
            }
            let frame: Vec<u8> = self.input.drain(..FRAME_HEADER + header.length).collect();
            self.emit(&frame);
            return Ok(true);
        }
        let Some(block) = header_block(&self.input)? else {
            return Ok(false);
        };
        let raw: Vec<u8> = self.input.drain(..block.consumed).collect();
        let rewriter = match &mut self.mode {
            Mode::Rewriting(rewriter) => rewriter,
            _ => {
                let mut decoder = loona_hpack::Decoder::new();
                let fields = decode(&mut decoder, &block.fragment)?;
                if fields
                    .iter()
                    .all(|(name, value)| name != b":authority" || valid_authority(value))
                {
                    self.mode = Mode::Passthrough;
                    self.emit(&raw);
                    return Ok(true);
                }
                tracing::debug!(
                    "a client sent an invalid :authority (a socket path); rewriting its header blocks"
                );
                let mut rewriter = Box::new(Rewriter {
                    decoder,
                    encoder: loona_hpack::Encoder::new(),
                });
                let frames = rewriter.encode(&fields, &block);
                self.mode = Mode::Rewriting(rewriter);
                self.emit(&frames);
                return Ok(true);
            }
        };
        let fields = decode(&mut rewriter.decoder, &block.fragment)?;
        let frames = rewriter.encode(&fields, &block);
        self.emit(&frames);
        Ok(true)
    }
}

impl Rewriter {
    fn encode(&mut self, fields: &[(Vec<u8>, Vec<u8>)], block: &Block) -> Vec<u8> {
        let fields = fields.iter().map(|(name, value)| {
            if name == b":authority" && !valid_authority(value) {
                (name.as_slice(), LOCAL_AUTHORITY)
            } else {
                (name.as_slice(), value.as_slice())
            }
        });
        let encoded = self.encoder.encode(fields);
        frames(&encoded, block.stream, block.end_stream)
    }
}

fn decode(
    decoder: &mut loona_hpack::Decoder<'static>,
    fragment: &[u8],
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    decoder.decode(fragment).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a client's header block does not decode: {err:?}"),
        )
    })
}

fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

fn frame_header(bytes: &[u8]) -> Option<FrameHeader> {
    let header = bytes.get(..FRAME_HEADER)?;
    Some(FrameHeader {
        length: usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]),
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
    })
}

/// A complete header block: a HEADERS frame and its CONTINUATION frames.
struct Block {
    /// The block fragment, padding and priority removed.
    fragment: Vec<u8>,
    stream: u32,
    end_stream: bool,
    /// Bytes of input the frames took.
    consumed: usize,
}

/// The header block at the start of `input`, if all its frames are there.
fn header_block(input: &[u8]) -> io::Result<Option<Block>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(first) = frame_header(input) else {
        return Ok(None);
    };
    let Some(payload) = input.get(FRAME_HEADER..FRAME_HEADER + first.length) else {
        return Ok(None);
    };
    let mut body = payload;
    let mut padding = 0;
    if first.flags & PADDED != 0 {
        let (&length, rest) = body
            .split_first()
            .ok_or_else(|| invalid("empty padded frame"))?;
        padding = usize::from(length);
        body = rest;
    }
    if first.flags & PRIORITY != 0 {
        body = body.get(5..).ok_or_else(|| invalid("short priority"))?;
    }
    let fragment_end = body
        .len()
        .checked_sub(padding)
        .ok_or_else(|| invalid("padding longer than the frame"))?;
    let mut block = Block {
        fragment: body[..fragment_end].to_vec(),
        stream: first.stream,
        end_stream: first.flags & END_STREAM != 0,
        consumed: FRAME_HEADER + first.length,
    };
    let mut ended = first.flags & END_HEADERS != 0;
    while !ended {
        let Some(next) = frame_header(&input[block.consumed..]) else {
            return Ok(None);
        };
        if next.kind != CONTINUATION || next.stream != first.stream {
            return Err(invalid("a header block broken off"));
        }
        let start = block.consumed + FRAME_HEADER;
        let Some(payload) = input.get(start..start + next.length) else {
            return Ok(None);
        };
        block.fragment.extend_from_slice(payload);
        block.consumed = start + next.length;
        ended = next.flags & END_HEADERS != 0;
        if block.fragment.len() > MAX_BLOCK {
            return Err(invalid("a header block too large"));
        }
    }
    Ok(Some(block))
}

/// A header block as HEADERS and CONTINUATION frames.
fn frames(block: &[u8], stream: u32, end_stream: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + FRAME_HEADER * (1 + block.len() / FRAGMENT));
    let mut chunks = block.chunks(FRAGMENT).peekable();
    let mut kind = HEADERS;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        push_frame(&mut out, HEADERS, flags | END_HEADERS, stream, &[]);
        return out;
    }
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        push_frame(&mut out, kind, flags, stream, chunk);
        kind = CONTINUATION;
        flags = 0;
    }
    out
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    // A chunk is at most FRAGMENT bytes, so its length fits 24 bits.
    let length = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    out.extend_from_slice(&length[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

impl AsyncRead for Normalized {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output_at < this.output.len() {
                let pending = &this.output[this.output_at..];
                let taken = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..taken]);
                this.output_at += taken;
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Passthrough) && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.advance()? {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed; a frame it left unfinished goes to the
                // server as it is, which reports it.
                let rest = std::mem::take(&mut this.input);
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.emit(&rest);
                this.mode = Mode::Passthrough;
                continue;
            }
            this.input.extend_from_slice(read.filled());
        }
    }
}

impl AsyncWrite for Normalized {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Normalized {
    type ConnectInfo = <UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's first request: the preface, a SETTINGS frame, and a header
    /// block with `authority`, split over a HEADERS and a CONTINUATION frame.
    fn client_bytes(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        let block = encoder.encode([
            (b":method".as_slice(), b"POST".as_slice()),
            (b":scheme", b"http"),
            (b":path", b"/kirc.v1.Daemon/GetStatus"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        let mut bytes = PREFACE.to_vec();
        push_frame(&mut bytes, 0x4, 0, 0, &[]);
        let (head, tail) = block.split_at(block.len() / 2);
        push_frame(&mut bytes, HEADERS, 0, 1, head);
        push_frame(&mut bytes, CONTINUATION, END_HEADERS, 1, tail);
        push_frame(&mut bytes, 0x0, END_STREAM, 1, b"\0\0\0\0\0");
        bytes
    }

    /// Runs `bytes` through `Normalized`, read in pieces of `piece` bytes.
    async fn normalize(bytes: Vec<u8>, piece: usize) -> Vec<u8> {
        let (client, server) = UnixStream::pair().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = client;
            for chunk in bytes.chunks(piece) {
                tokio::io::AsyncWriteExt::write_all(&mut client, chunk)
                    .await
                    .unwrap();
            }
        });
        let mut normalized = Normalized::new(server);
        let mut out = Vec::new();
        let reading = tokio::io::AsyncReadExt::read_to_end(&mut normalized, &mut out);
        // The writer ends (and closes) after its last chunk.
        let (read, written) = tokio::join!(reading, writer);
        read.unwrap();
        written.unwrap();
        out
    }

    /// The header blocks of `bytes` (after the preface), decoded.
    fn blocks(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &bytes[PREFACE.len()..];
        let mut blocks = Vec::new();
        while let Some(header) = frame_header(rest) {
            if header.kind == HEADERS {
                let block = header_block(rest).unwrap().unwrap();
                blocks.push(decoder.decode(&block.fragment).unwrap());
                rest = &rest[block.consumed..];
            } else {
                rest = &rest[FRAME_HEADER + header.length..];
            }
        }
        blocks
    }

    #[tokio::test]
    async fn a_valid_authority_passes_untouched() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut bytes = client_bytes(&mut encoder, b"localhost");
        bytes.extend(client_bytes(&mut encoder, b"localhost")[PREFACE.len()..].iter());
        for piece in [1, 7, 4096] {
            assert_eq!(
                normalize(bytes.clone(), piece).await,
                bytes,
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn a_socket_path_becomes_localhost_in_every_block() {
        for authority in [
            b"/run/user/1000/kirc/kircd.sock".as_slice(),
            b"%2Frun%2Fkircd.sock",
        ] {
            let mut encoder = loona_hpack::Encoder::new();
            let mut bytes = client_bytes(&mut encoder, authority);
            // A second request on the connection, indexing the first's
            // entries in the client's dynamic table.
            bytes.extend(client_bytes(&mut encoder, authority)[PREFACE.len()..].iter());
            for piece in [1, 5, 8192] {
                let out = normalize(bytes.clone(), piece).await;
                let blocks = blocks(&out);
                assert_eq!(blocks.len(), 2);
                for fields in blocks {
                    let authority = fields
                        .iter()
                        .find(|(name, _)| name == b":authority")
                        .map(|(_, value)| value.clone());
                    assert_eq!(authority.as_deref(), Some(LOCAL_AUTHORITY));
                    let path = fields.iter().find(|(name, _)| name == b":path").unwrap();
                    assert_eq!(path.1, b"/kirc.v1.Daemon/GetStatus");
                }
            }
        }
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let block = vec![0x82; FRAGMENT * 2 + 10];
        let out = frames(&block, 3, true);
        let first = frame_header(&out).unwrap();
        assert_eq!(
            (first.kind, first.flags, first.length),
            (HEADERS, END_STREAM, FRAGMENT)
        );
        let parsed = header_block(&out).unwrap().unwrap();
        assert_eq!(parsed.fragment, block);
        assert!(parsed.end_stream);
        assert_eq!(parsed.consumed, out.len());
    }
}
