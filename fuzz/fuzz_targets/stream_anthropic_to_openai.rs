#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| noviqi::fuzzing::stream_anthropic_to_openai(data));
