//! Golden tests for the pure request/response translations: a provider-shaped fixture goes
//! in, the translation must equal the expected fixture. Run with `UPDATE_GOLDEN=1` to rewrite
//! the expected files after an intended change (then review the diff by hand).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

use noviqi::translate::{
    BadUpstream, anthropic_request_to_chat, anthropic_response_to_chat,
    anthropic_response_to_responses, chat_request_to_anthropic, chat_response_to_anthropic,
    responses_request_to_anthropic,
};
use serde_json::{Value, json};
use std::path::PathBuf;

const CREATED: u64 = 1_700_000_000;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn golden(expected_rel: &str, actual: &Value) {
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path(expected_rel), &pretty).unwrap();
        return;
    }
    let expected = load(expected_rel);
    if &expected != actual {
        let want = serde_json::to_string_pretty(&expected).unwrap();
        panic!("{expected_rel} differs\n--- expected\n{want}\n--- actual\n{pretty}");
    }
}

#[test]
fn openai_request_full_to_anthropic() {
    let out = chat_request_to_anthropic(&load("openai/chat_request_full.json")).unwrap();
    golden("anthropic/from_openai_chat_request_full.json", &out);
}

#[test]
fn openai_request_minimal_to_anthropic() {
    let out = chat_request_to_anthropic(&load("openai/chat_request_minimal.json")).unwrap();
    golden("anthropic/from_openai_chat_request_minimal.json", &out);
}

#[test]
fn anthropic_responses_to_openai_each_stop_reason() {
    let cases = [
        ("message_text_end_turn", "stop"),
        ("message_tool_use", "tool_calls"),
        ("message_max_tokens", "length"),
        ("message_stop_sequence", "stop"),
        ("message_refusal", "content_filter"),
    ];
    for (name, finish) in cases {
        let input = load(&format!("anthropic/{name}.json"));
        let out = anthropic_response_to_chat(&input, "claude-sonnet-4-5", CREATED).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{name}");
        golden(&format!("openai/from_anthropic_{name}.json"), &out);
    }
}

#[test]
fn anthropic_request_full_to_openai() {
    let out = anthropic_request_to_chat(&load("anthropic/messages_request_full.json")).unwrap();
    golden("openai/from_anthropic_messages_request_full.json", &out);
}

#[test]
fn openai_responses_to_anthropic_each_finish_reason() {
    let cases = [
        ("chat_completion_stop", "end_turn"),
        ("chat_completion_tool_calls", "tool_use"),
        ("chat_completion_length", "max_tokens"),
        ("chat_completion_content_filter", "refusal"),
    ];
    for (name, stop) in cases {
        let input = load(&format!("openai/{name}.json"));
        let out = chat_response_to_anthropic(&input, "gpt-4o").unwrap();
        assert_eq!(out["stop_reason"], stop, "{name}");
        golden(&format!("anthropic/from_openai_{name}.json"), &out);
    }
}

#[test]
fn round_trip_keeps_tool_calls() {
    // OpenAI request → Anthropic → OpenAI keeps the tool-call history intact.
    let original = load("openai/chat_request_full.json");
    let anthropic = chat_request_to_anthropic(&original).unwrap();
    let back = anthropic_request_to_chat(&anthropic).unwrap();
    let calls: Vec<&Value> = back["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris, France"}));
    let tools: Vec<&Value> = back["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tools.len(), 2);
}

#[test]
fn malformed_upstream_bodies_are_upstream_faults() {
    let e = anthropic_response_to_chat(&json!({"type": "message"}), "m", CREATED).unwrap_err();
    assert_eq!(e, BadUpstream("Anthropic response has no content array"));
    assert!(chat_response_to_anthropic(&json!({"choices": []}), "m").is_err());
}

#[test]
fn client_faults_name_the_param() {
    let cases = [
        (json!({"messages": "hi"}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 3}),
            "n",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "functions": []}),
            "functions",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "data:image/png,notbase64"}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "custom", "custom": {"name": "t"}}]}),
            "tools[0].type",
        ),
    ];
    for (req, param) in cases {
        let e = chat_request_to_anthropic(&req).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{req}");
    }
}

#[test]
fn responses_request_to_anthropic_golden() {
    let out = responses_request_to_anthropic(&load("openai/responses_request_codex.json")).unwrap();
    golden("anthropic/from_openai_responses_request_codex.json", &out);
}

#[test]
fn anthropic_response_to_responses_golden() {
    for name in ["message_tool_use", "message_max_tokens"] {
        let input = load(&format!("anthropic/{name}.json"));
        let out = anthropic_response_to_responses(&input, "claude-sonnet-4-5", CREATED).unwrap();
        golden(
            &format!("openai/responses_from_anthropic_{name}.json"),
            &out,
        );
    }
}
