//! Test fixtures: identities and vectors recorded by
//! `tests/data/make_vectors.py` from moonlight-python's client.

use punktfunk_certs::Identity;

use punktfunk_certs::Pin;

pub(crate) const HOST_CRT: &str = include_str!("../tests/data/host.crt");
pub(crate) const HOST_KEY: &str = include_str!("../tests/data/host.key");
pub(crate) const CLIENT_CRT: &str = include_str!("../tests/data/client.crt");
const VECTORS: &str = include_str!("../tests/data/vectors.json");

pub(crate) fn host_identity() -> Identity {
    Identity::from_pem(HOST_CRT.as_bytes(), HOST_KEY.as_bytes()).unwrap()
}

pub(crate) struct Vectors(pub(crate) serde_json::Value);

impl Vectors {
    pub(crate) fn load() -> Self {
        Self(serde_json::from_str(VECTORS).unwrap())
    }

    pub(crate) fn str(&self, name: &str) -> &str {
        self.0[name]
            .as_str()
            .unwrap_or_else(|| panic!("no vector {name}"))
    }

    pub(crate) fn bytes(&self, name: &str) -> Vec<u8> {
        hex::decode(self.str(name)).unwrap()
    }

    pub(crate) fn arr<const N: usize>(&self, name: &str) -> [u8; N] {
        self.bytes(name).try_into().unwrap()
    }

    pub(crate) fn pin(&self) -> Pin {
        self.str("pin").parse().unwrap()
    }
}

#[path = "../tests/support/replay.rs"]
mod replay;
pub(crate) use replay::Replay;
