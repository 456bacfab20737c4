//! The secrets pairing runs on: the 4-digit [`Pin`] a person types, the
//! pairing link's [`LinkSecret`], and [`Secret`], either of them as SPAKE2's
//! password. Zeroed on drop; `Debug` never shows them.

use std::fmt;
use std::str::FromStr;

use rand::{CryptoRng, Rng, RngCore};

/// A 4-digit PIN: the gate's armed PIN, a Moonlight PIN typed into the
/// console, the native SPAKE2 password. Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(zeroize::Zeroizing<String>);

impl Pin {
    /// Draws a uniformly random PIN.
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let n: u16 = rng.gen_range(0..10_000);
        Self(zeroize::Zeroizing::new(format!("{n:04}")))
    }

    /// The four ASCII digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The four ASCII digit bytes (the SPAKE2 password, the GameStream salt suffix).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Not a PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a PIN is exactly 4 digits")]
pub struct BadPin;

impl FromStr for Pin {
    type Err = BadPin;

    /// Exactly four ASCII digits.
    fn from_str(s: &str) -> Result<Self, BadPin> {
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
            return Err(BadPin);
        }
        Ok(Self(zeroize::Zeroizing::new(s.to_owned())))
    }
}

/// Its four digits: the one place a PIN leaves [`zeroize::Zeroizing`] (a
/// reply to the console user who armed or created it).
impl serde::Serialize for Pin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of a [`LinkSecret`]: 128 bits, far past any online guessing.
pub const LINK_SECRET_LEN: usize = 16;

/// The one-time secret a pairing link (QR code) carries instead of the
/// typed PIN, the SPAKE2 password of a link pairing (docs/native-protocol.md
/// § 12). Drawn with every arming; a wrong guess does not use it up (it
/// cannot be guessed online), only a success or the arming's expiry.
/// Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(zeroize::Zeroizing<[u8; LINK_SECRET_LEN]>);

impl LinkSecret {
    /// Draws a uniformly random secret.
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut b = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN]);
        rng.fill_bytes(b.as_mut());
        Self(b)
    }

    /// A secret from its bytes (test vectors, a parsed link).
    pub fn from_bytes(bytes: [u8; LINK_SECRET_LEN]) -> Self {
        Self(zeroize::Zeroizing::new(bytes))
    }

    /// The raw bytes (the SPAKE2 password).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// The 32 lowercase hex digits a link carries.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    /// 32 hex digits of either case.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut b = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN]);
        if s.len() != 2 * LINK_SECRET_LEN {
            return None;
        }
        hex::decode_to_slice(s, b.as_mut()).ok()?;
        Some(Self(b))
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(****)")
    }
}

/// What an exchange runs SPAKE2 with, taken from the gate.
#[derive(Debug, Clone)]
pub enum Secret {
    /// The typed PIN: moved out, one exchange per arming.
    Pin(Pin),
    /// The link's secret: a copy, any number of exchanges.
    Link(LinkSecret),
}

impl Secret {
    /// The SPAKE2 password (§ 6.1 of the protocol document).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Secret::Pin(p) => p.as_bytes(),
            Secret::Link(l) => l.as_bytes(),
        }
    }
}
