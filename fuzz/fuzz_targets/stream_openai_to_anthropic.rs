#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| noviqi::fuzzing::stream_openai_to_anthropic(data));
