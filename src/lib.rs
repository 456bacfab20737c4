//! `punktfunk`: the host trust service of a punktfunk game-streaming host,
//! as a library for its two binaries.
//!
//! - `punktfunk` (`src/main.rs`) parses the command line and calls
//!   [`cli::run`]: `serve` (every front door and the console), the
//!   console password, `devices …` over the control socket, the native
//!   reference client.
//! - `m3-host` (`src/bin/m3-host.rs`), the headless test host, runs the
//!   native door alone with what `serve` starts it with: [`startup`] (state
//!   dir, identity and registry, logging, the expiry ticker, the native
//!   endpoint's binding, signals) and [`lan`] (the pairing link's addresses).
//!
//! Protocol logic lives in the `punktfunk-*` crates; this crate is CLI,
//! config, state dir, web console, mDNS and wiring.

mod admin_cli;
pub mod cli;
mod config;
mod console;
mod control;
mod first_start;
mod host;
pub mod lan;
mod mdns;
mod native_cli;
mod net;
pub mod show;
pub mod startup;
mod streamer;
mod tls;
