//! An HTTP/1.1 server connection that serves one request at a time, so a
//! peer that pipelines requests and never reads the replies cannot make
//! the server pile them up.
//!
//! actix-http reads up to 128 KiB of pipelined requests ahead and answers
//! each into its write buffer whether or not the peer reads: 500 such
//! connections took a host to 3 GiB. [`OneAtATime`] sits between the
//! socket (or the TLS stream) and the server and hands the server the bytes
//! of one request only; the next request's bytes stay here (at most
//! [`READ_CHUNK`]) until the reply to the current one has been accepted
//! whole by the socket. So per connection the server holds at most one
//! request and one reply, and this holds at most [`READ_CHUNK`] more; the
//! rest waits in the kernel, which stops the peer with TCP flow control.
//!
//! It also closes a connection whose peer takes no reply bytes for the
//! door's keep-alive time (the server's own timers do not run while it is
//! writing), and one its door evicted ([`crate::Slot`]).
//!
//! Requests are framed as HTTP/1.1 frames them (RFC 9112 § 6.3): the head
//! ends at an empty line, then `Content-Length` bytes of body, or a
//! `chunked` body up to its last chunk and trailers. A request with another
//! transfer coding is refused (the connection is closed), as actix-http
//! would refuse it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::admission::Slot;

/// The most bytes read from the peer at once, and so the most held beyond
/// the request the server is working on.
pub const READ_CHUNK: usize = 8 * 1024;

/// A stream that gives the server one request at a time (module docs).
#[derive(Debug)]
pub struct OneAtATime<S> {
    inner: S,
    slot: Slot,
    /// Read from the peer and not yet given to the server.
    held: Vec<u8>,
    held_from: usize,
    framing: Framing,
    phase: Phase,
    /// The server wrote while the current request was still arriving: an
    /// early answer (say, to a body over its limit) or `100 Continue`.
    wrote_early: bool,
    /// Set while the peer takes no reply bytes.
    stall: Option<Pin<Box<Sleep>>>,
    stall_limit: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The current request is still arriving; its bytes go to the server.
    Request,
    /// The whole request is with the server, which has not answered yet.
    AwaitReply,
    /// The server is writing its reply.
    Replying,
}

impl<S> OneAtATime<S> {
    /// Wraps a connection admitted as `slot`; it is closed when its peer
    /// takes no reply bytes for `stall_limit`.
    pub fn new(inner: S, slot: Slot, stall_limit: Duration) -> Self {
        Self {
            inner,
            slot,
            held: Vec::new(),
            held_from: 0,
            framing: Framing::default(),
            phase: Phase::Request,
            wrote_early: false,
            stall: None,
            stall_limit,
        }
    }

    /// A handle that says what this connection is doing to its door
    /// (a handler that holds its request for a person marks it waiting).
    pub fn user(&self) -> crate::SlotUse {
        self.slot.user()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn check_evicted(&self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.slot.poll_evicted(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for another connection",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Runs the stall timer while a write waits; an error once the peer
    /// has taken nothing for the limit.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let limit = self.stall_limit;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took no reply bytes for {} s", limit.as_secs()),
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn held(&self) -> &[u8] {
        &self.held[self.held_from..]
    }
}

impl<S: AsyncRead + Unpin> OneAtATime<S> {
    /// Reads at most [`READ_CHUNK`] from the peer into `held`, which must
    /// be empty. `Ok(false)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        self.held.clear();
        self.held_from = 0;
        self.held.extend_from_slice(buf.filled());
        Poll::Ready(Ok(!buf.filled().is_empty()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for OneAtATime<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_evicted(cx)?;
        // The socket is watched (holding at most one chunk) even while the
        // server works on a request, so that a peer that goes away is
        // seen: a held request's handler ends then.
        if this.held().is_empty() && !ready!(this.poll_fill(cx))? {
            return Poll::Ready(Ok(()));
        }
        if this.phase != Phase::Request {
            // Nothing more for the server until it has answered.
            return Poll::Pending;
        }
        let room = buf.remaining().min(this.held().len());
        let mine = this
            .framing
            .feed(&this.held[this.held_from..this.held_from + room])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        buf.put_slice(&this.held[this.held_from..this.held_from + mine]);
        this.held_from += mine;
        if this.framing.is_complete() {
            if this.wrote_early {
                // Answered before its end arrived: waiting for another
                // answer could wait for ever. (If that was `100 Continue`,
                // the next request comes one reply early: still one at a
                // time inside the server.)
                this.phase = Phase::Replying;
            } else {
                this.phase = Phase::AwaitReply;
                this.slot.set_busy(true);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneAtATime<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_evicted(cx)?;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.stall = None;
                    if this.phase == Phase::Request {
                        this.wrote_early = true;
                    }
                    if this.phase == Phase::AwaitReply {
                        // Answered: a peer that does not read this reply
                        // holds nothing worth keeping it for.
                        this.phase = Phase::Replying;
                        this.slot.set_busy(false);
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.poll_stall(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_evicted(cx)?;
        // actix-http flushes only once its write buffer is empty: the whole
        // reply is in the stream now, so the next request may come.
        if this.phase == Phase::Replying {
            this.phase = Phase::Request;
            this.framing = Framing::default();
            this.wrote_early = false;
            cx.waker().wake_by_ref();
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.poll_stall(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a request's end cannot be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A transfer coding other than `chunked`.
    #[error("only the chunked transfer coding is accepted")]
    TransferEncoding,
    /// `Content-Length` is not a number.
    #[error("malformed Content-Length")]
    BadLength,
    /// A chunk size line that is not hexadecimal.
    #[error("malformed chunk size")]
    BadChunk,
}

/// Where the current request ends: the end of its head (an empty line),
/// plus `Content-Length` bytes of body or a chunked body. Reads lines a
/// byte at a time and keeps only the start of the current one, so it holds
/// no request bytes.
#[derive(Debug)]
struct Framing {
    state: Scan,
    /// The start of the current line (enough for the two headers read).
    line: [u8; LINE_PREFIX],
    line_len: usize,
    seen_request_line: bool,
    content_length: u64,
    /// `Transfer-Encoding` seen: whether it is exactly `chunked`.
    transfer_encoding: Option<bool>,
}

const LINE_PREFIX: usize = 64;

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: Scan::Head,
            line: [0; LINE_PREFIX],
            line_len: 0,
            seen_request_line: false,
            content_length: 0,
            transfer_encoding: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    #[default]
    Head,
    Body(u64),
    /// A chunk size line.
    ChunkSize,
    /// Chunk data, then its line end.
    ChunkData(u64),
    ChunkEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    Complete,
}

impl Framing {
    fn is_complete(&self) -> bool {
        self.state == Scan::Complete
    }

    /// Takes bytes of the connection; how many of them belong to the
    /// current request (all of them unless it ends among them).
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        let mut used = 0;
        while used < bytes.len() {
            match self.state {
                Scan::Complete => break,
                Scan::Body(left) => {
                    let take = left.min((bytes.len() - used) as u64);
                    used += take as usize;
                    self.state = if take == left {
                        Scan::Complete
                    } else {
                        Scan::Body(left - take)
                    };
                }
                Scan::ChunkData(left) => {
                    let take = left.min((bytes.len() - used) as u64);
                    used += take as usize;
                    self.state = if take == left {
                        Scan::ChunkEnd
                    } else {
                        Scan::ChunkData(left - take)
                    };
                }
                Scan::Head | Scan::ChunkSize | Scan::ChunkEnd | Scan::Trailers => {
                    let b = bytes[used];
                    used += 1;
                    if b == b'\n' {
                        self.end_of_line()?;
                    } else {
                        if self.line_len < LINE_PREFIX {
                            self.line[self.line_len] = b;
                        }
                        self.line_len += 1;
                    }
                }
            }
        }
        Ok(used)
    }

    fn end_of_line(&mut self) -> Result<(), FramingError> {
        let mut len = self.line_len;
        self.line_len = 0;
        if len > 0 && len <= LINE_PREFIX && self.line[len - 1] == b'\r' {
            len -= 1;
        }
        match self.state {
            Scan::Head => self.end_of_head_line(len),
            Scan::ChunkSize => {
                // Hex digits, then maybe `;extensions`.
                let line = &self.line[..len.min(LINE_PREFIX)];
                let digits = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .filter(|d| !d.is_empty() && d.len() <= 15)
                    .and_then(|d| u64::from_str_radix(d, 16).ok())
                    .ok_or(FramingError::BadChunk)?;
                self.state = match size {
                    0 => Scan::Trailers,
                    n => Scan::ChunkData(n),
                };
                Ok(())
            }
            Scan::ChunkEnd => {
                self.state = Scan::ChunkSize;
                Ok(())
            }
            Scan::Trailers => {
                if len == 0 {
                    self.state = Scan::Complete;
                }
                Ok(())
            }
            Scan::Body(_) | Scan::ChunkData(_) | Scan::Complete => Ok(()),
        }
    }

    fn end_of_head_line(&mut self, len: usize) -> Result<(), FramingError> {
        if len == 0 {
            // Empty lines before the request line are ignored (RFC 9112
            // § 2.2); after it, one ends the head.
            if self.seen_request_line {
                self.state = match (self.transfer_encoding, self.content_length) {
                    (Some(true), _) => Scan::ChunkSize,
                    (Some(false), _) => return Err(FramingError::TransferEncoding),
                    (None, 0) => Scan::Complete,
                    (None, n) => Scan::Body(n),
                };
            }
            return Ok(());
        }
        if !self.seen_request_line {
            self.seen_request_line = true;
            return Ok(());
        }
        let line = &self.line[..len.min(LINE_PREFIX)];
        if let Some(value) = header_value(line, b"content-length") {
            if len > LINE_PREFIX {
                return Err(FramingError::BadLength);
            }
            let value = std::str::from_utf8(value).map_err(|_| FramingError::BadLength)?;
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FramingError::BadLength);
            }
            self.content_length = value.parse().map_err(|_| FramingError::BadLength)?;
        } else if let Some(value) = header_value(line, b"transfer-encoding") {
            let chunked = len <= LINE_PREFIX && value.eq_ignore_ascii_case(b"chunked");
            // Two Transfer-Encoding headers: whatever they say, not plain
            // `chunked`.
            self.transfer_encoding = Some(chunked && self.transfer_encoding.is_none());
        }
        Ok(())
    }
}

/// The trimmed value of `line` if it is the header `name` (any case).
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.get(name.len()..)?;
    if !line[..name.len()].eq_ignore_ascii_case(name) {
        return None;
    }
    let value = rest.strip_prefix(b":")?;
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    Some(&value[start..end.max(start)])
}

#[cfg(test)]
mod tests;
