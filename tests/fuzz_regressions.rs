//! Fuzzing's findings kept as tests: every seed under `fuzz/seeds/` (fixture-derived inputs
//! and the crashing inputs of fixed bugs) replayed through its target's entry point in
//! `noviqi::fuzzing`, so `cargo test` checks the fuzz properties without a nightly toolchain,
//! plus one named test per bug the fuzzers found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

use std::path::Path;

use noviqi::fuzzing;
use noviqi::translate::rewrite::{probe, rewrite};
use serde_json::{Value, json};

/// A fuzz target's entry point.
type Target = fn(&[u8]);

/// Every fuzz target and its entry point; a seed folder without an entry here fails the test.
const TARGETS: &[(&str, Target)] = &[
    ("admin_key_body", fuzzing::admin_key_body),
    ("config_load", fuzzing::config_load),
    ("http_chunked", fuzzing::http_chunked),
    ("http_conn", fuzzing::http_conn),
    ("http_head", fuzzing::http_head),
    ("plan", fuzzing::plan),
    ("retry_after", fuzzing::retry_after),
    ("rewrite", fuzzing::rewrite),
    ("secret", fuzzing::secret),
    ("sse", fuzzing::sse),
    (
        "stream_anthropic_to_openai",
        fuzzing::stream_anthropic_to_openai,
    ),
    (
        "stream_anthropic_to_responses",
        fuzzing::stream_anthropic_to_responses,
    ),
    (
        "stream_openai_to_anthropic",
        fuzzing::stream_openai_to_anthropic,
    ),
    ("translate_chat_request", fuzzing::translate_chat_request),
    (
        "translate_messages_request",
        fuzzing::translate_messages_request,
    ),
    (
        "translate_responses_request",
        fuzzing::translate_responses_request,
    ),
    ("upstream_body", fuzzing::upstream_body),
    ("upstream_response", fuzzing::upstream_response),
];

#[test]
fn every_seed_passes_its_target() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&seeds).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some((_, target)) = TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!("fuzz/seeds/{name} has no entry in TARGETS");
        };
        for seed in std::fs::read_dir(&dir).unwrap() {
            let seed = seed.unwrap().path();
            target(&std::fs::read(&seed).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len(), "only {replayed} seeds");
}

/// Found by `rewrite`: a streaming body whose `stream_options` is not an object (here a
/// number) made the re-serialising splice index a number by key, which panics. Issue 13 asks
/// for a 400 naming the field.
#[test]
fn stream_options_that_is_not_an_object_is_a_400() {
    for options in ["9", "\"x\"", "[1]", "true"] {
        let body = format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#);
        let e = probe(body.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400, "{options}");
        assert_eq!(e.param(), Some("stream_options"));
    }
}

/// Found by `rewrite`: `"stream_options": null` reads as absent, so the splice puts a second
/// `stream_options` in front and the client's `null` (the last one, which parsers keep) wins:
/// the upstream is never asked for usage and the stream's tokens go unrecorded.
#[test]
fn null_stream_options_still_asks_for_usage() {
    let body = br#"{"model":"m","stream":true,"stream_options":null}"#;
    let p = probe(body).unwrap();
    let out: Value = serde_json::from_slice(&rewrite(body, &p, "u", true).unwrap()).unwrap();
    assert_eq!(out["stream_options"]["include_usage"], true);
}

/// Found by `rewrite`: `"model": null` read as no model at all, so the splice added a second
/// `model` key before it, and the null (the last one) stayed in force.
#[test]
fn a_null_model_is_replaced_by_the_splice() {
    let body = br#"{"model":null}"#;
    let p = probe(body).unwrap();
    assert_eq!(p.model, None);
    let out: Value = serde_json::from_slice(&rewrite(body, &p, "u", false).unwrap()).unwrap();
    assert_eq!(out, json!({"model": "u"}));
}

/// Found by `stream_anthropic_to_openai`'s output bound: the upstream's message id is
/// repeated in every chunk, so a huge id turns each small delta into a huge chunk.
#[test]
fn a_huge_upstream_message_id_is_not_repeated_in_every_chunk() {
    use noviqi::sse::SseEvent;
    use noviqi::translate::AnthropicToOpenAiStream;
    let event = |data: String| SseEvent { event: None, data };
    let mut tr = AnthropicToOpenAiStream::new("m", false).with_created(1);
    let mut out = Vec::new();
    let start = json!({"type": "message_start", "message": {"id": "x".repeat(100_000)}});
    tr.on_event(&event(start.to_string()), &mut out);
    out.clear();
    let delta =
        json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}});
    tr.on_event(&event(delta.to_string()), &mut out);
    assert!(
        out.len() < 4096,
        "{} bytes for a one-letter delta",
        out.len()
    );
}

/// Found by `upstream_body`: usage counters near `u64::MAX` overflow when added (a panic in
/// debug builds, a wrapped, tiny count in release builds).
#[test]
fn huge_usage_counters_do_not_overflow() {
    let raw = r#"{"input_tokens":18446744073709551615,"cache_read_input_tokens":1}"#;
    let u = noviqi::translate::usage_from_json(raw, true).unwrap();
    assert!(
        u.prompt_tokens > 1_000_000,
        "wrapped to {}",
        u.prompt_tokens
    );
    let u = noviqi::translate::anthropic_usage_object(&serde_json::from_str(raw).unwrap()).unwrap();
    assert!(
        u.prompt_tokens > 1_000_000,
        "wrapped to {}",
        u.prompt_tokens
    );
}
