#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| noviqi::fuzzing::config_load(data));
