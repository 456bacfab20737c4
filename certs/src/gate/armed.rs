//! The armed PIN: arming, one guess per arming, the link's secret, and
//! the native exchange the console shows.

use super::*;

impl Gate {
    /// Arms pairing with a fresh PIN, replacing any armed one.
    #[cfg(test)]
    pub(crate) fn arm(&mut self, now: Instant, rng: &mut (impl RngCore + CryptoRng)) -> Armed {
        let ttl = self.config.pin_ttl;
        self.arm_for(None, ttl, now, rng)
    }

    /// Arms pairing for `ttl`, the device it pairs given `access` (a guest
    /// invite) instead of the host's default.
    pub(crate) fn arm_for(
        &mut self,
        access: Option<Access>,
        ttl: Duration,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Armed {
        self.expire(now);
        let armed = Armed {
            pin: Pin::random(rng),
            pin_taken: false,
            link: LinkSecret::random(rng),
            expires: now + ttl,
            access,
        };
        self.arming += 1;
        self.armed = Some(armed.clone());
        self.last_attempt = None;
        self.events.push_back(TrustEvent::Armed);
        armed
    }

    /// Disarms pairing.
    pub(crate) fn disarm(&mut self) {
        if self.armed.take().is_some() {
            self.events.push_back(TrustEvent::Disarmed);
        }
    }

    /// The current arming (the link's, even once its PIN is spent), if any.
    pub(crate) fn armed(&mut self, now: Instant) -> Option<&Armed> {
        self.expire(now);
        self.arming()
    }

    /// [`Gate::armed`] as of the last expiry.
    pub fn arming(&self) -> Option<&Armed> {
        self.armed.as_ref()
    }

    /// Whether the typed PIN is armed and not taken yet.
    pub(crate) fn pin_armed(&mut self, now: Instant) -> bool {
        self.armed(now).is_some_and(|a| !a.pin_taken)
    }

    /// Takes the armed PIN for one exchange run by `by`. After this the PIN
    /// is spent, whatever the exchange's outcome: one guess per arming.
    /// The arming's link still pairs.
    pub(crate) fn take_pin(
        &mut self,
        by: Claimant,
        now: Instant,
    ) -> Result<TakenSecret, GateError> {
        self.expire(now);
        self.refuse_blocked(by.address)?;
        let armed = self
            .armed
            .as_mut()
            .filter(|a| !a.pin_taken)
            .ok_or(GateError::NotArmed)?;
        armed.pin_taken = true;
        let (pin, access) = (armed.pin.clone(), armed.access);
        self.last_attempt = Some(LastPinUse {
            by,
            result: PinUse::InProgress,
        });
        self.events.push_back(TrustEvent::PinTaken);
        Ok(TakenSecret {
            secret: Secret::Pin(pin),
            arming: self.arming,
            by: None,
            access,
        })
    }

    /// Hands the arming's link secret to one exchange. Any number may run;
    /// a wrong guess leaves the link (and the PIN) as they are, since 128
    /// bits cannot be guessed online. The first success ends the arming.
    pub(crate) fn use_link(
        &mut self,
        by: Claimant,
        now: Instant,
    ) -> Result<TakenSecret, GateError> {
        self.expire(now);
        self.refuse_blocked(by.address)?;
        let armed = self.armed.as_ref().ok_or(GateError::NotArmed)?;
        Ok(TakenSecret {
            secret: Secret::Link(armed.link.clone()),
            arming: self.arming,
            by: Some(by),
            access: armed.access,
        })
    }

    /// Reports how the exchange that took the PIN (or the link's secret)
    /// ended. `Some(fp)` if the device was paired, `None` if it failed for
    /// any reason. A success ends the arming: its PIN and its link are
    /// both used.
    pub(crate) fn report(&mut self, ticket: TakenSecret, paired: Option<Fingerprint>) {
        // A report for an older arming must not overwrite what the console
        // shows for the current one.
        if ticket.arming == self.arming {
            if paired.is_some() && self.armed.take().is_some() {
                self.events.push_back(TrustEvent::Disarmed);
            }
            match (ticket.by, paired) {
                (Some(by), Some(fingerprint)) => {
                    self.last_attempt = Some(LastPinUse {
                        by,
                        result: PinUse::Paired { fingerprint },
                    })
                }
                // A wrong guess at the link says nothing about the PIN.
                (Some(_), None) => {}
                (None, paired) => {
                    if let Some(last) = &mut self.last_attempt {
                        last.result = match paired {
                            Some(fingerprint) => PinUse::Paired { fingerprint },
                            None => PinUse::Failed,
                        };
                    }
                }
            }
        }
        self.events.push_back(TrustEvent::PinAttemptFinished {
            paired: paired.is_some(),
        });
    }

    /// How the last use of the armed PIN went, and who made it, since the
    /// last arming.
    pub fn last_attempt(&self) -> Option<&LastPinUse> {
        self.last_attempt.as_ref()
    }

    /// A native pairing exchange started (the client was told `pairing`).
    pub(crate) fn begin_exchange(&mut self, by: Claimant, now: Instant) {
        self.exchange = Some(Exchange { by, since: now });
        self.events.push_back(TrustEvent::ExchangeChanged);
    }

    /// The exchange begun by `fingerprint` ended, whichever way.
    pub(crate) fn end_exchange(&mut self, fingerprint: &Fingerprint) {
        if self
            .exchange
            .as_ref()
            .is_some_and(|e| &e.by.fingerprint == fingerprint)
        {
            self.exchange = None;
            self.events.push_back(TrustEvent::ExchangeChanged);
        }
    }

    /// The native pairing exchange in progress, if any.
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }
}
