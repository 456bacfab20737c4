//! Framed messages over an async byte stream, bounded and timed
//! (docs/native-protocol.md § 3 and § 8). Shared by the host endpoint and
//! the reference client.

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::frame::{FrameDecoder, FrameError};
use crate::message::{Message, MessageError};
use crate::timeouts;

/// Bytes read from the stream at a time. A chunk holds at most this many
/// frames' worth of bytes, so the queue of decoded frames stays small.
const CHUNK: usize = 4096;

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer closed the connection at a frame boundary.
    #[error("the peer closed the connection")]
    Eof,
    /// The deadline passed (§ 8).
    #[error("the peer did not send in time")]
    Timeout,
    /// A frame was refused (§ 3).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame did not hold a valid message (§ 4).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The transport failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

#[cfg(feature = "host")]
impl From<ReadError> for crate::connection::ReadFailure {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Eof => Self::Closed,
            ReadError::Io(_) => Self::Broken,
            ReadError::Timeout => Self::TooSlow,
            ReadError::Message(MessageError::UnsupportedVersion { got }) => {
                Self::UnsupportedVersion(got)
            }
            e @ (ReadError::Frame(_) | ReadError::Message(_)) => Self::Malformed(e.to_string()),
        }
    }
}

/// Reads messages from `R`, one frame at a time, never allocating more than
/// one capped frame plus one chunk.
pub(crate) struct FrameReader<R> {
    rd: R,
    decoder: FrameDecoder,
    frames: VecDeque<Vec<u8>>,
    /// When the first byte of the frame in progress arrived.
    frame_started: Option<Instant>,
    chunk: Box<[u8; CHUNK]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(rd: R) -> Self {
        Self {
            rd,
            decoder: FrameDecoder::new(),
            frames: VecDeque::new(),
            frame_started: None,
            chunk: Box::new([0; CHUNK]),
        }
    }

    /// The next message. `deadline` bounds the wait for a frame to start;
    /// once its first byte is in, the frame must also be complete within
    /// [`timeouts::FRAME_BODY`].
    ///
    /// Cancel-safe: the only await is a single `read`, and all state lives
    /// in `self`, so it can sit in a `select!` next to other events.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Result<Message, ReadError> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(Message::decode(&frame)?);
            }
            let deadline = match self.frame_started {
                Some(started) => deadline.min(started + timeouts::FRAME_BODY),
                None => deadline,
            };
            let n = match tokio::time::timeout_at(deadline, self.rd.read(&mut self.chunk[..])).await
            {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Err(e)) => return Err(ReadError::Io(e)),
                Ok(Ok(0)) => {
                    self.decoder.finish()?;
                    return Err(ReadError::Eof);
                }
                Ok(Ok(n)) => n,
            };
            let now = Instant::now();
            let mut input = &self.chunk[..n];
            while !input.is_empty() {
                if self.frame_started.is_none() {
                    self.frame_started = Some(now);
                }
                if let Some(frame) = self.decoder.decode(&mut input)? {
                    self.frames.push_back(frame);
                    self.frame_started = None;
                }
            }
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The peer did not take the bytes in time.
    #[error("the peer did not read in time")]
    Timeout,
    /// The message does not fit in a frame: a bug, never peer input.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

/// Writes one message as one frame, within [`timeouts::FRAME_BODY`].
pub(crate) async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    msg: &Message,
) -> Result<(), WriteError> {
    let frame = msg.to_frame()?;
    tokio::time::timeout(timeouts::FRAME_BODY, async {
        wr.write_all(&frame).await?;
        wr.flush().await
    })
    .await
    .map_err(|_| WriteError::Timeout)??;
    Ok(())
}

/// Ends the stream (TLS close_notify), best effort and bounded.
pub(crate) async fn close<W: AsyncWrite + Unpin>(wr: &mut W) {
    let _ = tokio::time::timeout(timeouts::FRAME_BODY, wr.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;

    #[tokio::test]
    async fn reads_frames_split_and_joined() {
        let a = Message::Ping.to_frame().unwrap();
        let b = Message::Pong.to_frame().unwrap();
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        tx.write_all(&[a.clone(), b].concat()).await.unwrap();
        assert_eq!(reader.next(deadline).await.unwrap(), Message::Ping);
        assert_eq!(reader.next(deadline).await.unwrap(), Message::Pong);
        tx.write_all(&a[..3]).await.unwrap();
        tx.write_all(&a[3..]).await.unwrap();
        assert_eq!(reader.next(deadline).await.unwrap(), Message::Ping);
        drop(tx);
        assert!(matches!(reader.next(deadline).await, Err(ReadError::Eof)));
    }

    #[tokio::test]
    async fn oversize_and_truncated_frames_are_refused() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        tx.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            reader.next(deadline).await,
            Err(ReadError::Frame(FrameError::TooLarge { .. }))
        ));

        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        let f = encode_frame(b"{\"type\":\"ping\"}").unwrap();
        tx.write_all(&f[..f.len() - 1]).await.unwrap();
        drop(tx);
        assert!(matches!(
            reader.next(deadline).await,
            Err(ReadError::Frame(FrameError::Truncated { .. }))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_slow_frames_time_out() {
        let (_tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        assert!(matches!(
            reader.next(deadline).await,
            Err(ReadError::Timeout)
        ));

        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(rx);
        tx.write_all(&[0, 0, 0, 9]).await.unwrap();
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let started = Instant::now();
        assert!(matches!(reader.next(far).await, Err(ReadError::Timeout)));
        assert!(started.elapsed() <= timeouts::FRAME_BODY + std::time::Duration::from_secs(1));
    }
}
