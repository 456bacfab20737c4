//! The GameStream `/pair` query parser on arbitrary query strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_gamestream::PairQuery;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let _ = PairQuery::parse(pairs);
});
