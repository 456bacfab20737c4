//! The transport every door of the host shares: which connections it keeps
//! ([`admission`]: per source address and per port, evicting the oldest
//! connection that is not yet useful when full) and, for the HTTP doors, a
//! stream that serves one request at a time ([`http1`]) so that unread
//! replies cannot pile up. With the `actix` feature, [`actix`] plugs both
//! into actix-http listeners.
//!
//! docs/limits.md states the numbers; `tests/floods.rs` holds the real
//! host to them.

#[cfg(feature = "actix")]
pub mod actix;
pub mod admission;
pub mod http1;

pub use admission::{Admission, Limits, Refused, Slot, SlotUse, Use};
pub use http1::OneAtATime;
