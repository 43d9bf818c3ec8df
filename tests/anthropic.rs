//! Anthropic through the running gateway: native `/v1/messages` pass-through, OpenAI-format
//! clients on Claude targets, Anthropic-format clients on OpenAI-kind targets, count_tokens.
//! The fake upstreams replay the recorded fixtures in `tests/fixtures/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::gateway::TestEnv;
use support::upstream::{FakeUpstream, Received, Reply};

const CLAUDE_SECRET: &str = "sk-ant-upstream-secret-91x";
const OPENAI_SECRET: &str = "sk-openai-upstream-secret-22y";

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

/// A recorded SSE stream replayed event by event.
fn replay(path: &str) -> Reply {
    let text = fixture(path).replace("\r\n", "\n");
    Reply::Sse {
        events: text
            .split_inclusive("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| (Duration::ZERO, e.to_owned()))
            .collect(),
        finish: true,
    }
}

fn anthropic_upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| match r.path.as_str() {
        "/v1/messages/count_tokens" => Reply::json(200, json!({"input_tokens": 42})),
        "/v1/messages" if r.json()["stream"] == true => replay("anthropic/stream_tool_use.sse"),
        "/v1/messages" => Reply::json(200, json_fixture("anthropic/message_tool_use.json")),
        _ => Reply::json(
            404,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "no"}}),
        ),
    })
}

fn openai_upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| {
        if r.json()["stream"] == true {
            replay("openai/stream_tool_calls.sse")
        } else {
            Reply::json(200, json_fixture("openai/chat_completion_tool_calls.json"))
        }
    })
}

struct Setup {
    env: TestEnv,
    claude: FakeUpstream,
    openai: FakeUpstream,
}

fn setup() -> Setup {
    let claude = anthropic_upstream();
    let openai = openai_upstream();
    let mut env = TestEnv::new();
    let rest = format!(
        "[[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\n\
         [[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\n\
         [[models]]\nname = \"claude\"\ntargets = [\"anthropic/claude-sonnet-4-5\"]\n\n\
         [[models]]\nname = \"gpt\"\ntargets = [\"openai/gpt-4o\"]\n",
        claude.url(),
        env.encrypt(CLAUDE_SECRET),
        openai.url(),
        env.encrypt(OPENAI_SECRET),
    );
    env.start("", &rest);
    Setup {
        env,
        claude,
        openai,
    }
}

fn messages_request(model: &str, stream: bool) -> String {
    let mut request = json_fixture("anthropic/messages_request_full.json");
    request["model"] = json!(model);
    request["stream"] = json!(stream);
    request.to_string()
}

fn chat_request(model: &str, stream: bool) -> String {
    let mut request = json_fixture("openai/chat_request_full.json");
    request["model"] = json!(model);
    request["stream"] = json!(stream);
    request.as_object_mut().unwrap().remove("n");
    if !stream {
        request.as_object_mut().unwrap().remove("stream_options");
    }
    request.to_string()
}

/// Parses an SSE body into (event name, data JSON or text) pairs.
fn events(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

fn anthropic_headers(env: &TestEnv) -> Vec<(&'static str, String)> {
    vec![
        ("x-api-key", env.key.clone()),
        ("anthropic-version", "2023-06-01".into()),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14".into(),
        ),
    ]
}

fn post(
    env: &TestEnv,
    path: &str,
    body: &str,
    headers: &[(&'static str, String)],
) -> support::gateway::Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    env.post_with(path, body, &headers)
}

fn assert_upstream_saw_credential_only(seen: &Received, env: &TestEnv) {
    assert_eq!(seen.header("x-api-key"), Some(CLAUDE_SECRET));
    assert!(
        !seen.raw_text().contains(&env.key),
        "gateway key forwarded upstream"
    );
}

#[test]
fn native_messages_non_streamed() {
    let s = setup();
    let reply = post(
        &s.env,
        "/v1/messages?beta=true",
        &messages_request("claude", false),
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json_fixture("anthropic/message_tool_use.json")
    );
    let seen = s.claude.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_upstream_saw_credential_only(&seen, &s.env);
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14")
    );
    let body = seen.json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    // Fields the gateway does not know pass through untouched.
    assert_eq!(
        body["thinking"],
        json_fixture("anthropic/messages_request_full.json")["thinking"]
    );
    let line = s.env.usage_for(reply.request_id());
    assert_eq!(line["endpoint"], "/v1/messages");
    assert_eq!(line["prompt_tokens"], 472);
    assert_eq!(line["completion_tokens"], 89);
    s.env.assert_no_leaks(&[CLAUDE_SECRET, OPENAI_SECRET]);
}

#[test]
fn native_messages_streamed() {
    let s = setup();
    let reply = post(
        &s.env,
        "/v1/messages",
        &messages_request("claude", true),
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let got = events(&reply.body);
    let want = events(&fixture("anthropic/stream_tool_use.sse"));
    assert_eq!(got, want, "the native stream was altered");
    assert_upstream_saw_credential_only(&s.claude.last(), &s.env);
    let line = s.env.usage_for(reply.request_id());
    assert_eq!(line["stream"], true);
    assert_eq!(line["prompt_tokens"], 472);
    assert_eq!(line["completion_tokens"], 89);
}

#[test]
fn openai_client_on_a_claude_target() {
    let s = setup();
    let reply = s
        .env
        .post("/v1/chat/completions", &chat_request("claude", false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["type"],
        "function"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 472);
    let seen = s.claude.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_upstream_saw_credential_only(&seen, &s.env);
    let upstream_body = seen.json();
    assert_eq!(upstream_body["model"], "claude-sonnet-4-5");
    assert!(upstream_body["max_tokens"].is_u64());
    assert!(upstream_body["tools"][0]["input_schema"].is_object());

    let reply = s
        .env
        .post("/v1/chat/completions", &chat_request("claude", true));
    assert_eq!(reply.status, 200);
    let chunks = events(&reply.body);
    assert_eq!(chunks.last().unwrap().1, "[DONE]");
    let tool_names: Vec<Value> = chunks
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/name")
                .cloned()
        })
        .collect();
    assert_eq!(
        tool_names,
        [json!("get_weather"), json!("get_time")],
        "{}",
        reply.body
    );
    let line = s.env.usage_for(reply.request_id());
    assert_eq!(line["prompt_tokens"], 472);
    assert_eq!(line["completion_tokens"], 89);
    assert!(line["error"].is_null());
}

#[test]
fn anthropic_client_on_an_openai_target() {
    let s = setup();
    let reply = post(
        &s.env,
        "/v1/messages",
        &messages_request("gpt", false),
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    let seen = s.openai.last();
    assert_eq!(seen.path, "/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_SECRET}").as_str())
    );
    assert!(!seen.raw_text().contains(&s.env.key));
    assert_eq!(seen.json()["model"], "gpt-4o");
    assert_eq!(s.env.usage_for(reply.request_id())["prompt_tokens"], 82);

    let reply = post(
        &s.env,
        "/v1/messages",
        &messages_request("gpt", true),
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 200);
    let evs = events(&reply.body);
    let names: Vec<&str> = evs.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_delta"));
    assert_eq!(
        s.openai.last().json()["stream_options"]["include_usage"],
        true
    );
    let line = s.env.usage_for(reply.request_id());
    assert_eq!(line["prompt_tokens"], 80);
    assert_eq!(line["completion_tokens"], 30);
}

#[test]
fn count_tokens_forwarded_to_anthropic_and_404_elsewhere() {
    let s = setup();
    let body =
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let reply = post(
        &s.env,
        "/v1/messages/count_tokens",
        &body,
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"input_tokens": 42}));
    assert_eq!(s.claude.last().path, "/v1/messages/count_tokens");

    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let reply = post(
        &s.env,
        "/v1/messages/count_tokens",
        &body,
        &anthropic_headers(&s.env),
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "not_found_error");
    assert!(
        s.openai.received().is_empty(),
        "a count was asked of an openai target"
    );
}

#[test]
fn anthropic_errors_use_the_anthropic_shape() {
    let s = setup();
    let body = messages_request("claude", false);
    let reply = s
        .env
        .post_with("/v1/messages", &body, &[("x-api-key", "nvq_nope")]);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    let reply = post(&s.env, "/v1/messages", "{", &anthropic_headers(&s.env));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
}
