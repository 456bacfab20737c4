//! Waiting requests (knocks and Moonlight PIN requests), their ends, and
//! the address blocks that keep some of them out.

use super::*;

impl Gate {
    /// Whether a request with this certificate from `ip` would be recorded
    /// now: `Ok(Some(id))` if it would replace request `id` (same
    /// certificate, same address), `Ok(None)` if it would be added, the
    /// refusal otherwise. Changes nothing but expiry.
    pub(super) fn admissible(
        &mut self,
        fingerprint: &Fingerprint,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Option<PendingId>, GateError> {
        self.expire(now);
        self.refuse_blocked(ip)?;
        let from = AddressKey::of(ip);
        let previous = self
            .pending
            .iter()
            .find(|(_, p)| &p.fingerprint == fingerprint)
            .map(|(id, p)| (*id, AddressKey::of(p.request.address.ip()), p.storing));
        match previous {
            Some((_, _, true)) => Err(GateError::Storing),
            Some((_, waiting_from, _)) if waiting_from != from => Err(GateError::WaitingElsewhere),
            Some((id, _, _)) => Ok(Some(id)),
            None if self.pending.len() >= self.config.max_pending => Err(GateError::TooManyPending),
            None => {
                let same_address = self
                    .pending
                    .values()
                    .filter(|p| AddressKey::of(p.request.address.ip()) == from)
                    .count();
                if same_address >= self.config.max_pending_per_address {
                    Err(GateError::TooManyFromAddress(from))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Records a request; a request from the same certificate and address
    /// replaces the previous one. Refused when the same certificate waits
    /// from another address, or when [`GateConfig::max_pending`] requests
    /// (or [`GateConfig::max_pending_per_address`] from this address) wait.
    pub(crate) fn add_pending(
        &mut self,
        request: PendingRequest,
        now: Instant,
    ) -> Result<PendingId, GateError> {
        self.add_request(request, None, now)
    }

    /// [`Gate::add_pending`], for a request that came with a one-time PIN
    /// (`otp`) or not.
    pub(super) fn add_request(
        &mut self,
        request: PendingRequest,
        otp: Option<OtpCheck>,
        now: Instant,
    ) -> Result<PendingId, GateError> {
        let fingerprint = Fingerprint::of_der(&request.cert_der);
        if let Some(old) = self.admissible(&fingerprint, request.address.ip(), now)? {
            self.finish(old, RequestEnd::Replaced);
        }
        let id = PendingId(self.next_id);
        self.next_id += 1;
        let waiting = Entry::new(Event::RequestWaiting, Door::of(request.kind))
            .device(DeviceRef::new(fingerprint, &request.name, None))
            .address(request.address.ip());
        self.audit.push_back(match (request.needs, otp) {
            (Needs::Approval, _) => waiting.detail("waits for approval in the console"),
            (Needs::Pin, None) => waiting.detail("waits for the PIN Moonlight shows"),
            (Needs::Pin, Some(_)) => waiting
                .via(Via::Otp)
                .detail("pairs with the one-time PIN; nothing to type in the console"),
        });
        self.pending.insert(
            id,
            Pending {
                request,
                fingerprint,
                created: now,
                expires: now + self.config.pending_ttl,
                pin: PinState::Waiting,
                storing: false,
                otp,
            },
        );
        self.events.push_back(TrustEvent::PendingAdded { id });
        Ok(id)
    }

    /// All waiting requests, oldest first.
    #[cfg(test)]
    pub(crate) fn pending(&mut self, now: Instant) -> impl Iterator<Item = (PendingId, &Pending)> {
        self.expire(now);
        self.waiting()
    }

    /// All waiting requests, oldest first, as of the last expiry.
    pub fn waiting(&self) -> impl Iterator<Item = (PendingId, &Pending)> {
        self.pending.iter().map(|(id, p)| (*id, p))
    }

    /// One waiting request, as of the last expiry.
    pub fn request(&self, id: PendingId) -> Option<&Pending> {
        self.pending.get(&id)
    }

    /// One waiting request.
    pub(crate) fn get_pending(&mut self, id: PendingId, now: Instant) -> Option<&Pending> {
        self.expire(now);
        self.pending.get(&id)
    }

    /// Ends a request with `outcome` and returns it; the outcome is kept for
    /// [`Gate::outcome`].
    pub(crate) fn finish(&mut self, id: PendingId, outcome: RequestEnd) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        if self.outcomes.len() >= OUTCOMES_KEPT {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((id, outcome));
        self.events
            .push_back(TrustEvent::PendingRemoved { id, outcome });
        let undecided = match outcome {
            RequestEnd::Expired => Some(Event::RequestExpired),
            RequestEnd::Abandoned => Some(Event::RequestAbandoned),
            RequestEnd::Replaced => Some(Event::RequestReplaced),
            // Decisions: recorded by whoever decided.
            RequestEnd::Approved
            | RequestEnd::Denied
            | RequestEnd::Paired
            | RequestEnd::PinRejected
            | RequestEnd::MoonlightQtBug => None,
        };
        if let Some(event) = undecided {
            self.audit.push_back(pending.audit_entry(event));
        }
        Some(pending)
    }

    /// Request `id` ends at `until` unless it ends otherwise first: its
    /// door's deadline for the next step, on the same clock as every other
    /// deadline here. `false` if it no longer waits (or is being stored).
    pub(crate) fn keep_until(&mut self, id: PendingId, until: Instant) -> bool {
        match self.pending.get_mut(&id) {
            Some(p) if !p.storing => {
                p.expires = until;
                self.events.push_back(TrustEvent::PendingChanged { id });
                true
            }
            _ => false,
        }
    }

    /// How a recently finished request ended.
    pub fn outcome(&self, id: PendingId) -> Option<RequestEnd> {
        self.outcomes
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, o)| *o)
    }

    /// Marks request `id`, which must need `needs`, as having its device
    /// written to the registry, and returns it. Until
    /// [`Gate::end_storing`], it cannot be denied, replaced or expired, so
    /// the write can run without the gate locked (`Trust::admit_request`).
    pub(crate) fn begin_storing(
        &mut self,
        id: PendingId,
        needs: Needs,
        now: Instant,
    ) -> Result<&Pending, GateError> {
        self.expire(now);
        let pending = self.pending.get_mut(&id).ok_or(GateError::UnknownRequest)?;
        if pending.request.needs != needs {
            return Err(GateError::WrongNeed(pending.request.needs));
        }
        if pending.storing {
            return Err(GateError::Storing);
        }
        pending.storing = true;
        Ok(pending)
    }

    /// The write [`Gate::begin_storing`] announced is over: the request
    /// ends with `outcome`, or, if the device could not be stored
    /// (`None`), waits again as before.
    pub(crate) fn end_storing(&mut self, id: PendingId, outcome: Option<RequestEnd>) {
        match outcome {
            Some(outcome) => {
                self.finish(id, outcome);
            }
            None => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.storing = false;
                }
            }
        }
    }

    /// Denies every waiting request (a flood, dismissed in one click);
    /// returns them.
    pub(crate) fn deny_all(&mut self, now: Instant) -> Vec<Pending> {
        self.expire(now);
        let ids: Vec<PendingId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.storing)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.finish(id, RequestEnd::Denied))
            .collect()
    }

    /// Denies every waiting request from `ip` (one flooding address,
    /// dismissed in one click); returns them.
    pub(crate) fn deny_from(&mut self, ip: IpAddr, now: Instant) -> Vec<Pending> {
        self.expire(now);
        let from = AddressKey::of(ip);
        let ids: Vec<PendingId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.storing && AddressKey::of(p.request.address.ip()) == from)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.finish(id, RequestEnd::Denied))
            .collect()
    }

    /// Blocks `ip` for [`BLOCK_TTL`] from `now` (again: the hour starts
    /// over): its waiting requests are denied (returned), and every new one
    /// is refused with [`GateError::Blocked`] until then. Refused with
    /// [`GateError::TooManyBlocks`] when [`MAX_BLOCKS`] other addresses are
    /// blocked.
    pub(crate) fn block(
        &mut self,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(Block, Vec<Pending>), GateError> {
        self.expire(now);
        let address = AddressKey::of(ip);
        if !self.blocks.contains_key(&address) && self.blocks.len() >= MAX_BLOCKS {
            return Err(GateError::TooManyBlocks);
        }
        let until = now + BLOCK_TTL;
        self.blocks.insert(address, until);
        self.events.push_back(TrustEvent::BlocksChanged);
        let denied = self.deny_from(ip, now);
        Ok((Block { address, until }, denied))
    }

    /// Lifts the block of `ip`; whether there was one.
    pub(crate) fn unblock(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.expire(now);
        let lifted = self.blocks.remove(&AddressKey::of(ip)).is_some();
        if lifted {
            self.events.push_back(TrustEvent::BlocksChanged);
        }
        lifted
    }

    /// The blocked addresses, in address order.
    #[cfg(test)]
    pub(crate) fn blocks(&mut self, now: Instant) -> impl Iterator<Item = Block> + '_ {
        self.expire(now);
        self.blocked()
    }

    /// The blocked addresses, in address order, as of the last expiry.
    pub fn blocked(&self) -> impl Iterator<Item = Block> + '_ {
        self.blocks.iter().map(|(address, until)| Block {
            address: *address,
            until: *until,
        })
    }

    /// [`GateError::Blocked`] if `ip` is blocked (expiry already run).
    pub(super) fn refuse_blocked(&self, ip: IpAddr) -> Result<(), GateError> {
        let address = AddressKey::of(ip);
        if self.blocks.contains_key(&address) {
            Err(GateError::Blocked(address))
        } else {
            Ok(())
        }
    }

    /// Denies a request: it is dismissed, not blocklisted.
    pub(crate) fn deny(&mut self, id: PendingId, now: Instant) -> Result<Pending, GateError> {
        self.expire(now);
        if self.pending.get(&id).is_some_and(|p| p.storing) {
            return Err(GateError::Storing);
        }
        self.finish(id, RequestEnd::Denied)
            .ok_or(GateError::UnknownRequest)
    }

    /// The console typed the PIN a Moonlight client shows. One entry per
    /// request: a wrong PIN fails the pairing, and the client starts over.
    pub(crate) fn enter_pin(
        &mut self,
        id: PendingId,
        pin: Pin,
        label: Option<Label>,
        access: Option<Access>,
        now: Instant,
    ) -> Result<(), GateError> {
        self.expire(now);
        let pending = self.pending.get_mut(&id).ok_or(GateError::UnknownRequest)?;
        if pending.request.needs != Needs::Pin {
            return Err(GateError::WrongNeed(pending.request.needs));
        }
        if pending.pin != PinState::Waiting {
            return Err(GateError::PinAlreadyEntered);
        }
        pending.pin = PinState::Entered { pin, label, access };
        pending.expires = pending.expires.max(now + PIN_ENTRY_GRACE);
        self.events.push_back(TrustEvent::PinEntered { id });
        Ok(())
    }

    /// The front door collects the entered PIN (once).
    pub(crate) fn claim_pin(
        &mut self,
        id: PendingId,
        now: Instant,
    ) -> Option<(Pin, Option<Label>, Option<Access>)> {
        self.expire(now);
        let pending = self.pending.get_mut(&id)?;
        match std::mem::replace(&mut pending.pin, PinState::Pairing) {
            PinState::Entered { pin, label, access } => Some((pin, label, access)),
            other => {
                pending.pin = other;
                None
            }
        }
    }
}
