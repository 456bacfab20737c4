//! The budget for noise: token buckets, global and per address, that an
//! unsolicited entry must pass before it is queued.

use super::*;
use crate::bucket::TokenBucket;

/// Token buckets for unsolicited entries: global and per address.
pub(super) struct Budget {
    global: TokenBucket,
    per_address: HashMap<AddressKey, TokenBucket>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            global: TokenBucket::new(UNSOLICITED_PER_S, UNSOLICITED_BURST),
            per_address: HashMap::new(),
        }
    }
}

impl Budget {
    pub(super) fn admit(&mut self, key: Option<AddressKey>, now: Instant) -> bool {
        if let Some(key) = key {
            if self.per_address.len() >= TRACKED_ADDRESSES && !self.per_address.contains_key(&key) {
                self.per_address.retain(|_, b| !b.is_full(now));
                if self.per_address.len() >= TRACKED_ADDRESSES {
                    self.per_address.clear();
                }
            }
            let bucket = self.per_address.entry(key).or_insert_with(|| {
                TokenBucket::new(UNSOLICITED_PER_ADDRESS_PER_S, UNSOLICITED_PER_ADDRESS_BURST)
            });
            if bucket.take(now).is_err() {
                return false;
            }
        }
        self.global.take(now).is_ok()
    }
}
