//! What punktfunk's tests (the root package's end-to-end tests, the
//! `punktfunk-gamestream` integration tests) and the load generator
//! (`bench/loadgen`) share, so that each exists once:
//!
//! - [`moonlight`]: a Rust re-statement of the steps a Moonlight client
//!   takes to pair over GameStream (moonlight-qt `nvpairingmanager.cpp`,
//!   as ported byte for byte by moonlight-python), one phase at a time and
//!   sans-IO, so a caller can send the phases in order, skip, repeat or
//!   forge them, over whatever transport it drives.
//! - [`xml`]: a quick-xml parser for GameStream replies, so that every
//!   reply a test reads is proven well-formed XML with a `<root
//!   status_code>`, not searched for a substring.
//!
//! Test code only: never a dependency of a shipped binary. The real
//! Moonlight client in the tests stays moonlight-python
//! (`tests/moonlight/client.py`); this restatement is for the attacks,
//! limits and load figures that need to misbehave or go fast.

pub mod moonlight;
pub mod xml;
