//! Stream translation over recorded upstream streams (fixtures): fed through `SseParser` and
//! the state machines whole, split at every byte boundary, one byte at a time and at random
//! points; every run must produce the same bytes, equal to the expected fixture.
//! `UPDATE_GOLDEN=1` rewrites the expected files (review the diff by hand).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

use noviqi::sse::{SseEvent, SseParser};
use noviqi::translate::{
    AnthropicToOpenAiStream, AnthropicToResponsesStream, OpenAiToAnthropicStream, Usage,
};
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;

const MAX_LINE: usize = 64 * 1024;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    OpenAi,
    Anthropic,
    Responses,
}

/// Every state machine behind one face, so every fixture runs through the same driver.
enum Machine {
    OpenAi(AnthropicToOpenAiStream),
    Anthropic(OpenAiToAnthropicStream),
    Responses(AnthropicToResponsesStream),
}

impl Machine {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::OpenAi => {
                Machine::OpenAi(AnthropicToOpenAiStream::new("client-model", true).with_created(1))
            }
            Kind::Anthropic => Machine::Anthropic(OpenAiToAnthropicStream::new("client-model")),
            Kind::Responses => {
                Machine::Responses(AnthropicToResponsesStream::new("client-model").with_created(1))
            }
        }
    }
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        match self {
            Machine::OpenAi(m) => m.on_event(ev, out),
            Machine::Anthropic(m) => m.on_event(ev, out),
            Machine::Responses(m) => m.on_event(ev, out),
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Machine::OpenAi(m) => m.finish(out),
            Machine::Anthropic(m) => m.finish(out),
            Machine::Responses(m) => m.finish(out),
        }
    }
    fn finished(&self) -> bool {
        match self {
            Machine::OpenAi(m) => m.finished(),
            Machine::Anthropic(m) => m.finished(),
            Machine::Responses(m) => m.finished(),
        }
    }
    fn usage(&self) -> Usage {
        match self {
            Machine::OpenAi(m) => m.usage(),
            Machine::Anthropic(m) => m.usage(),
            Machine::Responses(m) => m.usage(),
        }
    }
}

/// Runs `input` cut at `cuts` (sorted offsets) through parser and machine.
fn run(input: &[u8], cuts: &[usize], kind: Kind) -> (Vec<u8>, bool, Usage) {
    let mut parser = SseParser::new(MAX_LINE);
    let mut machine = Machine::new(kind);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        parser.push(&input[start..cut], &mut events).unwrap();
        for ev in events.drain(..) {
            machine.on_event(&ev, &mut out);
        }
        start = cut;
    }
    if let Some(ev) = parser.finish() {
        machine.on_event(&ev, &mut out);
    }
    machine.finish(&mut out);
    (out, machine.finished(), machine.usage())
}

/// Parsed frames with JSON data decoded, for a readable comparison with the fixture.
fn frames(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    let mut p = SseParser::new(MAX_LINE);
    let mut evs = Vec::new();
    p.push(bytes, &mut evs).unwrap();
    evs.extend(p.finish());
    evs.into_iter()
        .map(|e| {
            let v = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data));
            (e.event, v)
        })
        .collect()
}

fn check(input_rel: &str, expected_rel: &str, kind: Kind) -> (Vec<u8>, bool, Usage) {
    let input = read(input_rel);
    let whole = run(&input, &[], kind);
    for i in 0..=input.len() {
        assert_eq!(run(&input, &[i], kind), whole, "{input_rel} split at {i}");
    }
    let bytewise: Vec<usize> = (1..input.len()).collect();
    assert_eq!(
        run(&input, &bytewise, kind),
        whole,
        "{input_rel} byte by byte"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path(expected_rel), &whole.0).unwrap();
    } else {
        let want = read(expected_rel);
        assert_eq!(
            frames(&whole.0),
            frames(&want),
            "{expected_rel} differs; actual:\n{}",
            String::from_utf8_lossy(&whole.0)
        );
    }
    whole
}

fn openai_chunks(bytes: &[u8]) -> Vec<Value> {
    frames(bytes).into_iter().map(|(_, v)| v).collect()
}

#[test]
fn anthropic_text_stream_to_openai() {
    let (out, finished, usage) = check(
        "anthropic/stream_text.sse",
        "openai/from_anthropic_stream_text.sse",
        Kind::OpenAi,
    );
    assert!(finished);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 125,
            completion_tokens: 15,
            cache_read_tokens: 100,
            ..Usage::default()
        }
    );
    let chunks = openai_chunks(&out);
    let text: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str())
        .collect();
    assert_eq!(text, "Hello! Ünïcødé ✓\nline two");
    assert_eq!(chunks.last().unwrap(), &Value::String("[DONE]".into()));
    let usage_chunk = &chunks[chunks.len() - 2];
    assert_eq!(usage_chunk["choices"], serde_json::json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], 140);
}

#[test]
fn anthropic_tool_stream_to_openai_reassembles_arguments() {
    let (out, finished, _) = check(
        "anthropic/stream_tool_use.sse",
        "openai/from_anthropic_stream_tool_use.sse",
        Kind::OpenAi,
    );
    assert!(finished);
    let mut args = [String::new(), String::new()];
    let mut finish = None;
    for c in openai_chunks(&out) {
        for call in c
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            args[i] += call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
        }
        if let Some(f) = c
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            finish = Some(f.to_owned());
        }
    }
    let first: Value = serde_json::from_str(&args[0]).unwrap();
    assert_eq!(first["location"], "San Francisco, CA");
    assert_eq!(args[1], "{}");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[test]
fn anthropic_error_event_ends_stream_without_done() {
    let (out, finished, _) = check(
        "anthropic/stream_error.sse",
        "openai/from_anthropic_stream_error.sse",
        Kind::OpenAi,
    );
    assert!(!finished);
    let chunks = openai_chunks(&out);
    assert_eq!(chunks.last().unwrap()["error"]["type"], "overloaded_error");
    assert!(!chunks.contains(&Value::String("[DONE]".into())));
}

#[test]
fn anthropic_truncated_stream_never_looks_complete() {
    let input = read("anthropic/stream_text.sse");
    let cut = input.len() - 40; // inside the message_stop event
    let (out, finished, _) = run(&input[..cut], &[], Kind::OpenAi);
    assert!(!finished);
    let chunks = openai_chunks(&out);
    assert!(!chunks.contains(&Value::String("[DONE]".into())));
    assert!(chunks.last().unwrap().get("error").is_some());
}

#[test]
fn openai_text_stream_to_anthropic() {
    let (out, finished, usage) = check(
        "openai/stream_text.sse",
        "anthropic/from_openai_stream_text.sse",
        Kind::Anthropic,
    );
    assert!(finished);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 9,
            completion_tokens: 12,
            ..Usage::default()
        }
    );
    let names: Vec<String> = frames(&out).into_iter().map(|(n, _)| n.unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn openai_tool_stream_to_anthropic() {
    let (out, finished, usage) = check(
        "openai/stream_tool_calls.sse",
        "anthropic/from_openai_stream_tool_calls.sse",
        Kind::Anthropic,
    );
    assert!(finished);
    assert_eq!(usage.prompt_tokens, 80);
    let mut json_parts = std::collections::BTreeMap::<u64, String>::new();
    for (_, v) in frames(&out) {
        if v["type"] == "content_block_delta" && v["delta"]["type"] == "input_json_delta" {
            *json_parts.entry(v["index"].as_u64().unwrap()).or_default() +=
                v["delta"]["partial_json"].as_str().unwrap();
        }
    }
    let first: Value = serde_json::from_str(&json_parts[&0]).unwrap();
    assert_eq!(first["location"], "Paris");
    assert_eq!(json_parts[&1], "{}");
}

#[test]
fn openai_done_without_finish_becomes_error_event() {
    let (out, finished, _) = check(
        "openai/stream_done_without_finish.sse",
        "anthropic/from_openai_stream_done_without_finish.sse",
        Kind::Anthropic,
    );
    assert!(!finished);
    let names: Vec<String> = frames(&out).into_iter().map(|(n, _)| n.unwrap()).collect();
    assert_eq!(names.last().map(String::as_str), Some("error"));
    assert!(!names.iter().any(|n| n == "message_stop"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_splits_match_whole_run(
        fixture in 0usize..6,
        mut cuts in proptest::collection::vec(0usize..4000, 0..40),
    ) {
        let (rel, kind) = [
            ("anthropic/stream_text.sse", Kind::OpenAi),
            ("anthropic/stream_tool_use.sse", Kind::OpenAi),
            ("anthropic/stream_error.sse", Kind::OpenAi),
            ("openai/stream_text.sse", Kind::Anthropic),
            ("openai/stream_tool_calls.sse", Kind::Anthropic),
            ("anthropic/stream_tool_use.sse", Kind::Responses),
        ][fixture];
        let input = read(rel);
        for c in cuts.iter_mut() {
            *c %= input.len() + 1;
        }
        cuts.sort_unstable();
        prop_assert_eq!(run(&input, &cuts, kind), run(&input, &[], kind));
    }
}

#[test]
fn anthropic_stream_to_responses_events() {
    let (out, finished, usage) = check(
        "anthropic/stream_tool_use.sse",
        "openai/responses_from_anthropic_stream_tool_use.sse",
        Kind::Responses,
    );
    assert!(finished);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 472,
            completion_tokens: 89,
            ..Usage::default()
        }
    );
    let frames = frames(&out);
    for (i, (name, v)) in frames.iter().enumerate() {
        assert_eq!(name.as_deref(), v["type"].as_str());
        assert_eq!(v["sequence_number"], i as u64);
    }
    let (last_name, last) = frames.last().unwrap();
    assert_eq!(last_name.as_deref(), Some("response.completed"));
    let output = last["response"]["output"].as_array().unwrap();
    assert_eq!(output.len(), 3);
    assert_eq!(output[0]["content"][0]["text"], "Okay, let me check.");
    let args: Value = serde_json::from_str(output[1]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "San Francisco, CA");
    assert_eq!(last["response"]["usage"]["total_tokens"], 561);
}

#[test]
fn anthropic_error_stream_to_responses_error_event() {
    let (out, finished, _) = check(
        "anthropic/stream_error.sse",
        "openai/responses_from_anthropic_stream_error.sse",
        Kind::Responses,
    );
    assert!(!finished);
    let frames = frames(&out);
    assert_eq!(frames.last().unwrap().0.as_deref(), Some("error"));
    assert!(
        !frames
            .iter()
            .any(|(n, _)| n.as_deref() == Some("response.completed"))
    );
}
