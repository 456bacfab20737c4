//! An open trusted session: pings, the device's grant as the host tells it,
//! and an end the caller hears about.

use super::*;

/// An open trusted session.
pub struct Session {
    tls: Tls,
    host_name: DisplayName,
    status: Status,
    grant: Option<Grant>,
    /// When the next `ping` is due (§ 4.7).
    next_ping: Instant,
    /// When a host that stays silent counts as gone.
    idle: Instant,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.tls.addr)
            .field("host_name", &self.host_name)
            .field("host_fingerprint", &self.tls.host_fp)
            .field("grant", &self.grant)
            .finish()
    }
}

impl Session {
    pub(super) fn new(
        tls: Tls,
        host_name: DisplayName,
        status: Status,
        grant: Option<Grant>,
    ) -> Self {
        let now = Instant::now();
        Self {
            tls,
            host_name,
            status,
            grant,
            next_ping: now + timeouts::PING_INTERVAL,
            idle: now + timeouts::SESSION_IDLE,
        }
    }

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

    /// What this device may do on the host, as last told (§ 4.9); `None`
    /// from a host older than grants.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// Keeps the session open until `until`, pinging every 30 s (§ 4.7):
    /// `Some(grant)` as soon as the host says the grant changed (it is
    /// [`Session::grant`] from then on), `None` at `until`. An error (the
    /// host's, e.g. `revoked`, `disabled` or `expired`, or a closed
    /// connection) ends the session.
    pub async fn next_change(&mut self, until: Instant) -> Result<Option<Grant>, ClientError> {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(None),
                _ = tokio::time::sleep_until(self.next_ping) => {
                    self.tls.send(&Message::Ping).await?;
                    self.next_ping = Instant::now() + timeouts::PING_INTERVAL;
                }
                msg = self.tls.reader.next(self.idle) => {
                    match msg.map_err(|e| read_error(&self.tls.addr, e, "pong"))? {
                        Message::Pong => self.idle = Instant::now() + timeouts::SESSION_IDLE,
                        Message::Grant(grant) => {
                            self.grant = Some(grant.clone());
                            return Ok(Some(grant));
                        }
                        Message::Error(e) => return Err(ClientError::Host(e)),
                        other => return Err(ClientError::BadMessage(format!("unexpected `{}` in a session", other.type_name()))),
                    }
                }
            }
        }
    }

    /// Keeps the session open for `duration` (following grant changes,
    /// see [`Session::next_change`]). Ends early with the host's error
    /// (e.g. `revoked`) or when the host closes.
    pub async fn hold(mut self, duration: std::time::Duration) -> Result<(), ClientError> {
        let end = Instant::now() + duration;
        while self.next_change(end).await?.is_some() {}
        self.close().await;
        Ok(())
    }

    /// Ends the session (TLS close_notify).
    pub async fn close(mut self) {
        frame_io::close(&mut self.tls.writer).await;
    }
}
