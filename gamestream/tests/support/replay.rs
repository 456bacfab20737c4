//! An RNG that replays fixed bytes (the host randomness recorded with the
//! moonlight-python vectors), shared by the unit tests, the integration
//! tests and the bench through `#[path]`. Test-only: it panics when asked
//! for more than it holds, which fails the test that asked.

use rand::{CryptoRng, RngCore};

/// Replays fixed bytes as the host's randomness.
pub(crate) struct Replay(pub(crate) Vec<u8>);

impl RngCore for Replay {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("the pairing core only fills byte buffers")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("the pairing core only fills byte buffers")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "replay RNG exhausted");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Replay {}
