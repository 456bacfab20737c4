//! The pairing-link parser (docs/native-protocol.md § 12) on arbitrary
//! text: it must not panic, and what it accepts must be written back as a
//! link that parses to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_native::PairingLink;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(link) = PairingLink::parse(text) {
        assert_eq!(PairingLink::parse(&link.to_uri()), Ok(link));
    }
});
