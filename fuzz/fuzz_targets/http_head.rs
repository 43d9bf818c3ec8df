#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| noviqi::fuzzing::http_head(data));
