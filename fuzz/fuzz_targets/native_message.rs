//! The native message parser on arbitrary payloads; what it accepts must
//! encode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_native::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let _ = msg.to_frame();
    }
});
