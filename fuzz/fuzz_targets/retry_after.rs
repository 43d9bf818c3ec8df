#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| noviqi::fuzzing::retry_after(data));
