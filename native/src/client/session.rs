//! An open trusted session: pings, and an end the caller hears about.

use super::*;

/// An open trusted session.
pub struct Session {
    pub(super) tls: Tls,
    pub(super) host_name: DisplayName,
    pub(super) status: Status,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.tls.addr)
            .field("host_name", &self.host_name)
            .field("host_fingerprint", &self.tls.host_fp)
            .finish()
    }
}

impl Session {
    /// The host's certificate fingerprint.
    pub fn host_fingerprint(&self) -> Fingerprint {
        self.tls.host_fp
    }

    /// The host's display name.
    pub fn host_name(&self) -> &DisplayName {
        &self.host_name
    }

    /// How the session was opened: [`Status::Trusted`] (paired, approved,
    /// or just paired with the PIN) or [`Status::Open`] (admitted now by an
    /// open host).
    pub fn status(&self) -> Status {
        self.status
    }

    /// Keeps the session open for `duration`, pinging every 30 s (§ 4.7).
    /// Ends early with the host's error (e.g. `revoked`) or when the host
    /// closes.
    pub async fn hold(mut self, duration: std::time::Duration) -> Result<(), ClientError> {
        let end = Instant::now() + duration;
        let mut next_ping = Instant::now() + timeouts::PING_INTERVAL;
        let mut idle = Instant::now() + timeouts::SESSION_IDLE;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => break,
                _ = tokio::time::sleep_until(next_ping) => {
                    self.tls.send(&Message::Ping).await?;
                    next_ping = Instant::now() + timeouts::PING_INTERVAL;
                }
                msg = self.tls.reader.next(idle) => {
                    match msg.map_err(|e| read_error(&self.tls.addr, e, "pong"))? {
                        Message::Pong => idle = Instant::now() + timeouts::SESSION_IDLE,
                        Message::Error(e) => return Err(ClientError::Host(e)),
                        other => return Err(ClientError::BadMessage(format!("unexpected `{}` in a session", other.type_name()))),
                    }
                }
            }
        }
        self.close().await;
        Ok(())
    }

    /// Ends the session (TLS close_notify).
    pub async fn close(mut self) {
        frame_io::close(&mut self.tls.writer).await;
    }
}
