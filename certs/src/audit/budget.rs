//! The budget for noise: token buckets, global and per address, that an
//! unsolicited entry must pass before it is queued.

use super::*;

/// Token buckets for unsolicited entries: global and per address.
pub(super) struct Budget {
    global: Bucket,
    per_address: HashMap<AddressKey, Bucket>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            global: Bucket::full(UNSOLICITED_BURST),
            per_address: HashMap::new(),
        }
    }
}

impl Budget {
    pub(super) fn admit(&mut self, key: Option<AddressKey>, now: Instant) -> bool {
        if let Some(key) = key {
            if self.per_address.len() >= TRACKED_ADDRESSES && !self.per_address.contains_key(&key) {
                self.per_address.retain(|_, b| {
                    b.level(
                        now,
                        UNSOLICITED_PER_ADDRESS_PER_S,
                        UNSOLICITED_PER_ADDRESS_BURST,
                    ) < UNSOLICITED_PER_ADDRESS_BURST
                });
                if self.per_address.len() >= TRACKED_ADDRESSES {
                    self.per_address.clear();
                }
            }
            let bucket = self
                .per_address
                .entry(key)
                .or_insert_with(|| Bucket::full(UNSOLICITED_PER_ADDRESS_BURST));
            if !bucket.take(
                now,
                UNSOLICITED_PER_ADDRESS_PER_S,
                UNSOLICITED_PER_ADDRESS_BURST,
            ) {
                return false;
            }
        }
        self.global.take(now, UNSOLICITED_PER_S, UNSOLICITED_BURST)
    }
}

pub(super) struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub(super) fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            at: None,
        }
    }

    pub(super) fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (self.tokens + elapsed.as_secs_f64() * rate).min(burst)
    }

    pub(super) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let level = self.level(now, rate, burst);
        self.at = Some(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            true
        } else {
            self.tokens = level;
            false
        }
    }
}
