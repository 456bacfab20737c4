//! The native frame decoder fed arbitrary bytes in arbitrary chunks: never
//! panics, never yields a frame over the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_native::{FrameDecoder, Message, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new();
    for piece in rest.chunks(chunk) {
        let mut input = piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME_LEN);
                    let _ = Message::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
