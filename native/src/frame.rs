//! The frame layer: a 4-byte big-endian length, then that many bytes of
//! payload (docs/native-protocol.md § 3 "Framing").
//!
//! Two ways to read frames, both bounded before any allocation:
//!
//! - [`check_header`]: for a shell that reads exactly 4 bytes, checks them,
//!   then reads exactly the announced length (`read_exact` style).
//! - [`FrameDecoder`]: for a shell that reads whatever arrived and feeds it
//!   in; it takes only the bytes of the current frame from the input.

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Largest payload a frame may carry: 16 KiB (§ 3). The 4-byte header is not
/// counted.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// Why a frame was refused. Every variant ends the connection (§ 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame over the cap; nothing was allocated.
    #[error("the peer announced a {len}-byte frame; frames are at most {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The "length" is the ASCII `HTTP` of an HTTP reply: the peer is a web
    /// server (say the host's console), not a punktfunk endpoint.
    #[error("the peer speaks HTTP, not the punktfunk protocol: this is a web port, not the native endpoint (port {} by default)", crate::DEFAULT_PORT)]
    Http,
    /// A zero length prefix: a frame always holds one JSON object.
    #[error("the peer sent an empty frame; every frame holds one JSON object")]
    Empty,
    /// The stream ended inside a frame.
    #[error("the connection ended in the middle of a frame ({have} of {want} bytes)")]
    Truncated {
        /// Bytes of the current frame (header included) received.
        have: usize,
        /// Bytes the current frame needs (header included, or just the
        /// header while it is incomplete).
        want: usize,
    },
    /// Something that cannot happen did (an invariant of this code broke).
    #[error("internal error: {0}; please report this")]
    Unreachable(&'static str),
    /// A previous error already ended this stream.
    #[error("the frame decoder already failed; the connection must be closed")]
    Poisoned,
}

/// Checks a length prefix and returns the payload length to read next.
///
/// Refuses 0 and anything over [`MAX_FRAME_LEN`], so the caller can allocate
/// exactly the returned length.
pub fn check_header(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if &header == b"HTTP" {
        return Err(FrameError::Http);
    }
    let len = u32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(0) => Err(FrameError::Empty),
        Ok(n) if n <= MAX_FRAME_LEN => Ok(n),
        _ => Err(FrameError::TooLarge { len: len.into() }),
    }
}

/// Prefixes `payload` with its length. Refuses payloads a peer would refuse.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge {
            len: payload.len() as u64,
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// An incremental, bounded frame decoder.
///
/// Feed it input with [`FrameDecoder::decode`]; it consumes only the bytes of
/// the frame in progress and leaves the rest in the slice, so its memory is
/// at most one header plus one capped payload.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Set once the header is complete and checked.
    payload: Option<Payload>,
    poisoned: bool,
}

#[derive(Debug)]
struct Payload {
    want: usize,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes from the front of `input` until one frame is complete
    /// (returned) or `input` is empty (`Ok(None)`: feed more).
    ///
    /// After an error the decoder is poisoned and the connection must close.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        if self.payload.is_none() {
            let take = (HEADER_LEN - self.header_len).min(input.len());
            let (head, rest) = input.split_at(take);
            self.header[self.header_len..self.header_len + take].copy_from_slice(head);
            self.header_len += take;
            *input = rest;
            if self.header_len < HEADER_LEN {
                return Ok(None);
            }
            match check_header(self.header) {
                Ok(want) => {
                    self.payload = Some(Payload {
                        want,
                        // Bounded by check_header: at most MAX_FRAME_LEN.
                        buf: Vec::with_capacity(want),
                    });
                }
                Err(e) => {
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        let Some(payload) = self.payload.as_mut() else {
            return Ok(None);
        };
        let take = (payload.want - payload.buf.len()).min(input.len());
        let (body, rest) = input.split_at(take);
        payload.buf.extend_from_slice(body);
        *input = rest;
        if payload.buf.len() < payload.want {
            return Ok(None);
        }
        self.header_len = 0;
        Ok(self.payload.take().map(|p| p.buf))
    }

    /// Call at end of stream: `Ok` at a frame boundary, `Truncated` inside a
    /// frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match &self.payload {
            Some(p) => Err(FrameError::Truncated {
                have: HEADER_LEN + p.buf.len(),
                want: HEADER_LEN + p.want,
            }),
            None if self.header_len > 0 => Err(FrameError::Truncated {
                have: self.header_len,
                want: HEADER_LEN,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_byte_by_byte() {
        let a = encode_frame(br#"{"type":"ping"}"#).unwrap();
        let b = encode_frame(br#"{"type":"pong"}"#).unwrap();
        let stream = [a.clone(), b.clone()].concat();
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &stream {
            let mut input: &[u8] = std::slice::from_ref(byte);
            if let Some(f) = dec.decode(&mut input).unwrap() {
                frames.push(f);
            }
            assert!(input.is_empty());
        }
        assert_eq!(frames, vec![a[4..].to_vec(), b[4..].to_vec()]);
        dec.finish().unwrap();
    }

    #[test]
    fn leaves_the_next_frame_in_the_input() {
        let a = encode_frame(b"{}").unwrap();
        let b = encode_frame(b"{\"x\":1}").unwrap();
        let stream = [a, b].concat();
        let mut input: &[u8] = &stream;
        let mut dec = FrameDecoder::new();
        assert_eq!(dec.decode(&mut input).unwrap().unwrap(), b"{}");
        assert_eq!(input.len(), 4 + 7);
        assert_eq!(dec.decode(&mut input).unwrap().unwrap(), b"{\"x\":1}");
        assert!(input.is_empty());
    }

    #[test]
    fn cap_is_enforced_from_the_header_alone() {
        assert_eq!(check_header(16384u32.to_be_bytes()), Ok(16384));
        assert_eq!(
            check_header(16385u32.to_be_bytes()),
            Err(FrameError::TooLarge { len: 16385 })
        );
        assert_eq!(check_header([0; 4]), Err(FrameError::Empty));
        // An HTTP reply ("HTTP/1.1 400 …") is named, not read as a length.
        assert_eq!(check_header(*b"HTTP"), Err(FrameError::Http));
        let mut dec = FrameDecoder::new();
        let mut input: &[u8] = &u32::MAX.to_be_bytes();
        assert!(matches!(
            dec.decode(&mut input),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(dec.decode(&mut &b"x"[..]), Err(FrameError::Poisoned));
        assert!(encode_frame(&vec![b' '; MAX_FRAME_LEN + 1]).is_err());
        assert!(encode_frame(&vec![b' '; MAX_FRAME_LEN]).is_ok());
        assert_eq!(encode_frame(b""), Err(FrameError::Empty));
    }

    #[test]
    fn truncation_is_reported() {
        let f = encode_frame(b"{\"type\":\"ping\"}").unwrap();
        let mut dec = FrameDecoder::new();
        let mut input = &f[..f.len() - 1];
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated {
                have: f.len() - 1,
                want: f.len()
            })
        );
        let mut dec = FrameDecoder::new();
        assert_eq!(dec.decode(&mut &f[..2]), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated { have: 2, want: 4 })
        );
    }
}
