//! One-time PINs (Apollo's): made in the console, proved by a Moonlight
//! client's `otpauth`, tried at most once per address.

use super::*;

impl Gate {
    /// Makes a one-time PIN, replacing any active one.
    pub(crate) fn create_otp(
        &mut self,
        passphrase: Passphrase,
        name: Option<DisplayName>,
        access: Option<Access>,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> OneTimePin {
        self.expire(now);
        let otp = OneTimePin::new(passphrase, name, now, rng).with_access(access);
        self.otp = Some(otp.clone());
        self.otp_tries.clear();
        self.last_otp = None;
        self.events.push_back(TrustEvent::OtpChanged);
        otp
    }

    /// Cancels the active one-time PIN; whether there was one.
    pub(crate) fn cancel_otp(&mut self) -> bool {
        let had = self.otp.take().is_some();
        self.otp_tries.clear();
        if had {
            self.events.push_back(TrustEvent::OtpChanged);
        }
        had
    }

    /// The active one-time PIN, if any.
    #[cfg(test)]
    pub(crate) fn otp(&mut self, now: Instant) -> Option<&OneTimePin> {
        self.expire(now);
        self.active_otp()
    }

    /// The active one-time PIN, if any, as of the last expiry.
    pub fn active_otp(&self) -> Option<&OneTimePin> {
        self.otp.as_ref()
    }

    /// The active one-time PIN's wrong tries so far, oldest first.
    pub fn otp_tries(&self) -> &[OtpTry] {
        &self.otp_tries
    }

    /// A Moonlight request that carries `otpauth` (the proof of a one-time
    /// PIN, over the `salt` text it sent): one transaction. A request the
    /// waiting list would refuse is refused before the one-time PIN is
    /// touched (a full list must not cost the client a try); then the try
    /// is counted and checked ([`MAX_OTP_TRIES`]), and the request is
    /// recorded with a PIN already entered, so no one has to type it: on a
    /// match the one-time PIN (and the name it was made for), on a mismatch
    /// a random one, so the pairing fails at the client's check as on
    /// Apollo. A second try from the same address is refused
    /// ([`OtpError::AlreadyTried`]) and records nothing.
    pub(crate) fn add_otp_request(
        &mut self,
        mut request: PendingRequest,
        otpauth: &[u8; 32],
        salt_as_sent: &str,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<PendingId, OtpRequestError> {
        let fingerprint = Fingerprint::of_der(&request.cert_der);
        self.admissible(&fingerprint, request.address.ip(), now)?;
        let address = request.address.ip().to_canonical();
        let (pin, check, access) = match self.redeem_otp(otpauth, salt_as_sent, address, now) {
            Ok(grant) => {
                if let Some(name) = grant.name {
                    request.name = name;
                }
                (grant.pin, OtpCheck::Matched, grant.access)
            }
            Err(OtpError::Mismatch) => (Pin::random(rng), OtpCheck::Mismatched, None),
            Err(e) => return Err(e.into()),
        };
        let id = self.add_request(request, Some(check), now)?;
        if let Some(last) = &mut self.last_otp {
            last.request = Some(id);
        }
        self.enter_pin(id, pin, None, access, now)?;
        Ok(id)
    }

    /// One try at the one-time PIN from `address`: counted before the
    /// check (at most one per address, [`MAX_OTP_TRIES`] in all), then
    /// `otpauth` is checked. A match uses the PIN up; so does the last
    /// allowed try, right or wrong. Each counted try is recorded for the
    /// console.
    pub(super) fn redeem_otp(
        &mut self,
        otpauth: &[u8; 32],
        salt_as_sent: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<OtpGrant, OtpError> {
        self.expire(now);
        let otp = self.otp.as_ref().ok_or(OtpError::NotAvailable)?;
        let key = AddressKey::of(address);
        if self
            .otp_tries
            .iter()
            .any(|t| AddressKey::of(t.address) == key)
        {
            return Err(OtpError::AlreadyTried);
        }
        self.otp_tries.push(OtpTry { address, at: now });
        let tries = self.otp_tries.len();
        let result = otp.redeem(otpauth, salt_as_sent);
        self.events.push_back(TrustEvent::OtpChanged);
        self.last_otp = Some(LastOtp {
            address,
            matched: result.is_ok(),
            request: None,
        });
        let used_up = result.is_ok() || tries >= MAX_OTP_TRIES;
        let detail = match (&result, used_up) {
            (Ok(_), _) => format!("try {tries} of {MAX_OTP_TRIES} matched; used up"),
            (Err(_), true) => format!("try {tries} of {MAX_OTP_TRIES} was wrong; used up"),
            (Err(_), false) => format!(
                "try {tries} of {MAX_OTP_TRIES} was wrong; {} left",
                MAX_OTP_TRIES - tries
            ),
        };
        self.audit.push_back(
            Entry::new(Event::OtpUsed, Door::Gamestream)
                .address(address)
                .outcome(if result.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                })
                .detail(detail),
        );
        if used_up {
            self.otp = None;
            self.otp_tries.clear();
        }
        result
    }

    /// The last use of a one-time PIN since one was made.
    pub fn last_otp(&self) -> Option<&LastOtp> {
        self.last_otp.as_ref()
    }
}
