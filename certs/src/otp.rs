//! One-time PINs for Moonlight-family clients, compatible with Apollo and
//! its client Artemis: the console creates a 4-digit PIN and a passphrase,
//! the user hands both to the client (typed, or in an `art://` link / QR
//! code), and the client proves it knows them in its first pairing request,
//! so nobody has to type the PIN the client shows into the console.
//!
//! What the client sends (Artemis `PairingManager.java`; Apollo
//! `nvhttp.cpp` checks the same): `otpauth` = hex of SHA-256 over the PIN's
//! four ASCII digits, then the `salt` parameter *as sent* (its hex text, not
//! its bytes), then the passphrase (UTF-8). The pairing then runs as usual
//! with that PIN as the key material, so GameStream's offline weakness stays
//! (a captured exchange reveals the PIN); the passphrase only decides which
//! request gets the PIN without a person at the console.
//!
//! Rules (kept by [`crate::gate::Gate`]): one one-time PIN at a time
//! (creating one replaces the previous), valid [`OTP_TTL`], used up by its
//! first match, by its expiry, or after [`crate::gate::MAX_OTP_TRIES`]
//! tries in all, at most one from each address, each counted before it is
//! checked. A wrong try does not use it up: an `otpauth` is right only with
//! the passphrase as well as the PIN, so a stranger cannot guess it within
//! a few tries, and burning the PIN with one random `otpauth` (which took a
//! stranger 7–14 ms after each PIN was made) no longer locks the owner out.

use std::fmt;
use std::time::{Duration, Instant};

use rand::{CryptoRng, Rng, RngCore};

use crate::grant::Access;
use crate::name::DisplayName;
use crate::secret::Pin;

/// How long a one-time PIN stays valid (Apollo: 3 minutes).
pub const OTP_TTL: Duration = Duration::from_secs(180);
/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
/// Longest passphrase accepted.
pub const MAX_PASSPHRASE_CHARS: usize = 64;
/// Length of a generated passphrase (62 symbols each: ~71 bits).
const GENERATED_PASSPHRASE_CHARS: usize = 12;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why a one-time PIN could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpError {
    /// No one-time PIN is active (none was made, it expired, or it was used).
    #[error("OTP auth not available.")]
    NotAvailable,
    /// The client's `otpauth` did not match the active PIN and passphrase.
    #[error("the one-time PIN or passphrase did not match; check both and try again from another device, or create a new one-time PIN")]
    Mismatch,
    /// This address already had its one try at the active one-time PIN.
    #[error(
        "this address already tried the one-time PIN; create a new one-time PIN in the console"
    )]
    AlreadyTried,
    /// The passphrase is not acceptable.
    #[error("a passphrase has {MIN_PASSPHRASE_CHARS} to {MAX_PASSPHRASE_CHARS} characters: letters, digits, spaces and punctuation, but no control or invisible characters")]
    BadPassphrase,
}

/// A passphrase: any printable text of [`MIN_PASSPHRASE_CHARS`] to
/// [`MAX_PASSPHRASE_CHARS`] characters (Apollo takes any text of 4 or
/// more; the longer minimum keeps a guess from a stranger hopeless). Not
/// allowed: control characters and characters that print as nothing (the
/// name rule's, `crate::name`), which a person could neither read off the
/// screen nor type. The `art://` link percent-encodes it. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(zeroize::Zeroizing<String>);

/// Its text: the one place it leaves [`zeroize::Zeroizing`] (a reply to
/// the console user who created it).
impl serde::Serialize for Passphrase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Passphrase {
    /// Checks a passphrase the user chose.
    pub fn parse(raw: &str) -> Result<Self, OtpError> {
        let n = raw.chars().count();
        if !(MIN_PASSPHRASE_CHARS..=MAX_PASSPHRASE_CHARS).contains(&n)
            || raw
                .chars()
                .any(|c| c.is_control() || crate::name::is_invisible_format(c))
        {
            return Err(OtpError::BadPassphrase);
        }
        Ok(Self(zeroize::Zeroizing::new(raw.to_owned())))
    }

    /// Draws a random passphrase.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let s: String = (0..GENERATED_PASSPHRASE_CHARS)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect();
        Self(zeroize::Zeroizing::new(s))
    }

    /// The passphrase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(****)")
    }
}

/// The `otpauth` a client sends for `pin`, the `salt` text it sent and
/// `passphrase`: SHA-256 over the three, concatenated.
pub fn otpauth(pin: &Pin, salt_as_sent: &str, passphrase: &Passphrase) -> [u8; 32] {
    let mut h = openssl::sha::Sha256::new();
    h.update(pin.as_bytes());
    h.update(salt_as_sent.as_bytes());
    h.update(passphrase.as_str().as_bytes());
    h.finish()
}

/// The active one-time PIN.
#[derive(Debug, Clone)]
pub struct OneTimePin {
    pin: Pin,
    passphrase: Passphrase,
    name: Option<DisplayName>,
    expires: Instant,
    access: Option<Access>,
}

impl OneTimePin {
    /// A new one-time PIN, valid [`OTP_TTL`] from `now`.
    pub fn new(
        passphrase: Passphrase,
        name: Option<DisplayName>,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        Self {
            pin: Pin::random(rng),
            passphrase,
            name,
            expires: now + OTP_TTL,
            access: None,
        }
    }

    /// The same, the device it pairs given `access` (a guest invite)
    /// instead of the host's default.
    /// An invite lasts [`crate::grant::INVITE_TTL`] from when it was made.
    pub fn with_access(self, access: Option<Access>) -> Self {
        let expires = match access {
            Some(_) => self.expires - OTP_TTL + crate::grant::INVITE_TTL,
            None => self.expires,
        };
        Self {
            access,
            expires,
            ..self
        }
    }

    /// What the device it pairs may do, if not the host's default.
    pub fn access(&self) -> Option<Access> {
        self.access
    }

    /// The PIN.
    pub fn pin(&self) -> &Pin {
        &self.pin
    }

    /// The passphrase.
    pub fn passphrase(&self) -> &Passphrase {
        &self.passphrase
    }

    /// The name the device will be stored under.
    pub fn name(&self) -> Option<&DisplayName> {
        self.name.as_ref()
    }

    /// When it stops being valid.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Checks a client's `otpauth` (constant time): the grant on a match.
    /// Whether the PIN is then used up is the gate's rule.
    pub fn redeem(
        &self,
        otpauth_sent: &[u8; 32],
        salt_as_sent: &str,
    ) -> Result<OtpGrant, OtpError> {
        let expected = otpauth(&self.pin, salt_as_sent, &self.passphrase);
        if crate::identity::ct_eq(&expected, otpauth_sent) {
            Ok(OtpGrant {
                pin: self.pin.clone(),
                name: self.name.clone(),
                access: self.access,
            })
        } else {
            Err(OtpError::Mismatch)
        }
    }
}

/// A matched one-time PIN: pair with `pin`, store the device as `name`.
#[derive(Debug)]
pub struct OtpGrant {
    /// The PIN the client derives its key from.
    pub pin: Pin,
    /// The name given when the PIN was made.
    pub name: Option<DisplayName>,
    /// What the device may do, if not the host's default.
    pub access: Option<Access>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn otpauth_is_sha256_of_pin_salt_text_and_passphrase() {
        // Computed independently: printf '%s' 1234 00112233445566778899AABBCCDDEEFF \
        //   Passphrase1 | sha256sum
        let pin: Pin = "1234".parse().unwrap();
        let pass = Passphrase::parse("Passphrase1").unwrap();
        let got = otpauth(&pin, "00112233445566778899AABBCCDDEEFF", &pass);
        assert_eq!(
            hex::encode_upper(got),
            "0B860FBAC648E3E16EB5855CDB8AF4B0ADCCABDE49EE559A3C76B36583EB2E4F"
        );
        // The salt is hashed as sent: another case is another hash.
        assert_ne!(
            got,
            otpauth(&pin, "00112233445566778899aabbccddeeff", &pass)
        );
    }

    #[test]
    fn passphrases_are_8_to_64_printable_characters() {
        for good in [
            "abcdEFG1",
            "bars-otp-pass",
            "has space & = ; % + #",
            "ümlautsss",
            &"x".repeat(64),
            &"ü".repeat(64),
        ] {
            assert!(Passphrase::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "short1",
            "1234567",
            "tab\there1",
            "new\nline12",
            "zero\u{200B}width",
            "bidi\u{202E}override",
            &"x".repeat(65),
        ] {
            assert_eq!(
                Passphrase::parse(bad),
                Err(OtpError::BadPassphrase),
                "{bad}"
            );
        }
        let mut rng = StdRng::seed_from_u64(5);
        let p = Passphrase::generate(&mut rng);
        assert_eq!(p.as_str().len(), GENERATED_PASSPHRASE_CHARS);
        assert!(Passphrase::parse(p.as_str()).is_ok());
        assert_eq!(format!("{p:?}"), "Passphrase(****)");
    }

    #[test]
    fn redeem_matches_only_the_right_pin_and_passphrase() {
        let mut rng = StdRng::seed_from_u64(6);
        let now = Instant::now();
        let pass = Passphrase::parse("CorrectHorse9").unwrap();
        let otp = OneTimePin::new(pass.clone(), DisplayName::sanitize("Deck"), now, &mut rng);
        let salt = "A1B2C3D4E5F60718293A4B5C6D7E8F90";
        let right = otpauth(otp.pin(), salt, &pass);
        let grant = otp.redeem(&right, salt).unwrap();
        assert_eq!(&grant.pin, otp.pin());
        assert_eq!(grant.name.unwrap(), "Deck");
        let wrong = otpauth(otp.pin(), salt, &Passphrase::parse("WrongHorse9").unwrap());
        assert_eq!(otp.redeem(&wrong, salt).unwrap_err(), OtpError::Mismatch);
        assert_eq!(
            otp.redeem(&right, "other salt").unwrap_err(),
            OtpError::Mismatch
        );
    }
}
