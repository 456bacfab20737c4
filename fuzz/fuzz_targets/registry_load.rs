//! The registry loader on arbitrary file contents: an error or a registry,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = punktfunk_certs::registry::parse(std::path::Path::new("trust.json"), data);
});
