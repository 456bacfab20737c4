//! The one way a certificate is named in punktfunk: the SHA-256 of its DER.
//!
//! Modelled on Syncthing's `DeviceID`: 32 raw bytes internally, built only
//! from DER or from its exact canonical hex form, never carried as a string.

use std::fmt;
use std::str::FromStr;

use openssl::sha::sha256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// SHA-256 of a DER-encoded X.509 certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of a certificate given as DER bytes.
    pub fn of_der(der: &[u8]) -> Self {
        Self(sha256(der))
    }

    /// The raw 32 bytes (for transcripts and SPAKE2 identities).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps raw bytes, e.g. read from a test vector.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lowercase hex, 64 characters: the form used in APIs and files.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Uppercase hex in groups of four separated by spaces, for people to
    /// compare by eye (the way Syncthing shows device IDs in groups).
    pub fn grouped(&self) -> String {
        let hex = hex::encode_upper(self.0);
        let groups: Vec<&str> = hex
            .as_bytes()
            .chunks(4)
            // Hex output is ASCII, so every 4-byte chunk is valid UTF-8.
            .map(|c| std::str::from_utf8(c).unwrap_or("????"))
            .collect();
        groups.join(" ")
    }

    /// The first 8 bytes in lowercase hex, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

/// Why a string is not a fingerprint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseFingerprintError {
    /// Not exactly 64 characters.
    #[error("a fingerprint is 64 hexadecimal characters, this one has {0}")]
    Length(usize),
    /// A character outside 0-9, a-f, A-F.
    #[error("a fingerprint contains only the characters 0-9 and a-f")]
    NotHex,
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    /// Parses exactly 64 hex digits (either case); nothing else is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParseFingerprintError::Length(s.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseFingerprintError::NotHex)?;
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_forms() {
        let fp = Fingerprint::of_der(b"not really der");
        let hex = fp.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(hex.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(hex.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(fp.grouped().split(' ').count(), 16);
        assert_eq!(fp.grouped().replace(' ', "").to_lowercase(), hex);
        assert!(hex.starts_with(&fp.short()));
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(
            "abc".parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length(3))
        );
        let bad = "g".repeat(64);
        assert_eq!(
            bad.parse::<Fingerprint>(),
            Err(ParseFingerprintError::NotHex)
        );
        // 64 bytes but multi-byte characters: must not panic.
        let odd = "é".repeat(32);
        assert!(odd.parse::<Fingerprint>().is_err());
    }

    #[test]
    fn serde_uses_lowercase_hex() {
        let fp = Fingerprint::of_der(b"x");
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{}\"", fp.to_hex()));
        let back: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, fp);
        assert!(serde_json::from_str::<Fingerprint>("\"00\"").is_err());
    }
}
