//! The developer tools people point at a gateway, replayed: request shapes recorded from
//! Claude Code, Codex CLI, aider and llm (`tests/fixtures/clients/`, made with
//! `scripts/compat --direct --record`) sent through the real gateway to fake upstreams of both
//! provider kinds, checking what the upstream receives, what the client gets back, and the
//! usage line. Also: `HEAD` and query strings as those clients send them, and token limits
//! counting `/v1/responses` and `/v1/messages` traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fake_upstream::{FakeUpstream, Received, Reply};
use common::gateway::TestEnv;
use serde_json::{Value, json};

const SECRET: &str = "sk-upstream-secret-clients-7q";
const MARKER: &str = "COMPAT-MARKER-42";

/// A recorded client request: `{"method", "target", "headers", "body"}`.
struct Recorded {
    target: String,
    headers: Vec<(String, String)>,
    body: Value,
}

fn recorded(name: &str) -> Recorded {
    let path = format!(
        "{}/tests/fixtures/clients/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let headers = doc["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    Recorded {
        target: doc["target"].as_str().unwrap().to_owned(),
        headers,
        body: doc["body"].clone(),
    }
}

impl Recorded {
    /// Sends the request as the client did (its headers, its credential style, its query
    /// string) with the gateway key and `model`.
    fn send(&self, env: &TestEnv, model: &str) -> common::gateway::Reply {
        let mut body = self.body.clone();
        body["model"] = json!(model);
        let mut req = env.agent().post(env.url(&self.target));
        for (name, value) in &self.headers {
            let value = match name.as_str() {
                "authorization" => format!("Bearer {}", env.key),
                "x-api-key" => env.key.clone(),
                "accept-encoding" | "content-type" => continue,
                _ => value.clone(),
            };
            req = req.header(name.as_str(), value);
        }
        let resp = req
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        common::gateway::Reply::from(resp)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

// ---- the fake upstreams ---------------------------------------------------------------------

/// What the upstream answers, decided from the request as the compat fake does.
enum Turn {
    Text(&'static str),
    ReadCall,
}

fn decide(r: &Received) -> Turn {
    let body = String::from_utf8_lossy(&r.body);
    if body.contains("\"tool_result\"")
        || body.contains("\"role\":\"tool\"")
        || body.contains("\"function_call_output\"")
    {
        Turn::Text("round trip ok: COMPAT-MARKER-42")
    } else if body.contains("compat-tool: read the file") {
        Turn::ReadCall
    } else {
        Turn::Text("compat-ok: hello from the fake upstream")
    }
}

fn sse(events: Vec<String>) -> Reply {
    Reply::Sse {
        events: events.into_iter().map(|e| (Duration::ZERO, e)).collect(),
        finish: true,
    }
}

fn named(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Anthropic: 1200 input + 300 cache-read tokens, 17 output tokens.
fn anthropic_reply(r: &Received) -> Reply {
    let body = r.json();
    let turn = decide(r);
    let (block, delta, stop) = match turn {
        Turn::Text(t) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": t}),
            "end_turn",
        ),
        Turn::ReadCall => (
            json!({"type": "tool_use", "id": "toolu_fake_1", "name": "Read", "input": {}}),
            json!({"type": "input_json_delta",
                "partial_json": "{\"file_path\":\"/tmp/compat/work/marker.txt\"}"}),
            "tool_use",
        ),
    };
    let usage = json!({"input_tokens": 1200, "cache_read_input_tokens": 300, "output_tokens": 1});
    if body["stream"] != true {
        let content = match turn {
            Turn::Text(t) => json!([{"type": "text", "text": t}]),
            Turn::ReadCall => json!([{"type": "tool_use", "id": "toolu_fake_1", "name": "Read",
                "input": {"file_path": "/tmp/compat/work/marker.txt"}}]),
        };
        return Reply::json(
            200,
            json!({"id": "msg_fake_1", "type": "message", "role": "assistant",
            "model": body["model"], "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 1200, "cache_read_input_tokens": 300, "output_tokens": 17}}),
        );
    }
    sse(vec![
        named(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake_1",
                "type": "message", "role": "assistant", "model": body["model"], "content": [],
                "stop_reason": null, "usage": usage}}),
        ),
        named("ping", json!({"type": "ping"})),
        named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        named(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        named(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        named(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop},
                "usage": {"output_tokens": 17}}),
        ),
        named("message_stop", json!({"type": "message_stop"})),
    ])
}

/// OpenAI chat: 900 prompt, 12 completion tokens; the usage chunk only when asked for.
fn chat_reply(r: &Received) -> Reply {
    let body = r.json();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let finish = match decide(r) {
        Turn::Text(t) => {
            events.push(chunk(json!({"content": t}), Value::Null));
            "stop"
        }
        Turn::ReadCall => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                    "function": {"name": "Read",
                    "arguments": "{\"file_path\":\"/tmp/compat/work/marker.txt\"}"}}]}),
                Value::Null,
            ));
            "tool_calls"
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    if body.pointer("/stream_options/include_usage") == Some(&json!(true)) {
        let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": body["model"], "choices": [],
            "usage": {"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912}});
        events.push(format!("data: {usage}\n\n"));
    }
    events.push("data: [DONE]\n\n".into());
    sse(events)
}

/// OpenAI Responses: 700 input, 9 output tokens, in the API's own event sequence.
fn responses_reply(r: &Received) -> Reply {
    let body = r.json();
    let Turn::Text(text) = decide(r) else {
        panic!("no tool call scripted for /responses")
    };
    let usage = json!({"input_tokens": 700, "output_tokens": 9, "total_tokens": 709});
    let item = json!({"type": "message", "id": "msg_1", "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let response = |status: &str, usage: Value, output: Value| {
        json!({"id": "resp_1", "object": "response", "status": status, "model": body["model"],
            "output": output, "usage": usage})
    };
    if body["stream"] != true {
        return Reply::json(200, response("completed", usage, json!([item])));
    }
    let ids = json!({"item_id": "msg_1", "output_index": 0, "content_index": 0});
    let with = |mut v: Value, k: &str, x: Value| {
        v[k] = x;
        v
    };
    let events = [
        (
            "response.created",
            json!({"response": response("in_progress", Value::Null, json!([]))}),
        ),
        (
            "response.in_progress",
            json!({"response": response("in_progress", Value::Null, json!([]))}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": with(item.clone(), "content", json!([]))}),
        ),
        (
            "response.content_part.added",
            with(
                ids.clone(),
                "part",
                json!({"type": "output_text", "text": ""}),
            ),
        ),
        (
            "response.output_text.delta",
            with(ids.clone(), "delta", json!(text)),
        ),
        (
            "response.output_text.done",
            with(ids.clone(), "text", json!(text)),
        ),
        (
            "response.content_part.done",
            with(ids, "part", json!({"type": "output_text", "text": text})),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ),
        (
            "response.completed",
            json!({"response": response("completed", usage, json!([item]))}),
        ),
    ];
    sse(events
        .into_iter()
        .enumerate()
        .map(|(i, (name, data))| {
            let data = with(with(data, "type", json!(name)), "sequence_number", json!(i));
            named(name, data)
        })
        .collect())
}

fn upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| match r.path.as_str() {
        "/v1/messages" => anthropic_reply(r),
        "/v1/chat/completions" => chat_reply(r),
        "/v1/responses" => responses_reply(r),
        _ => Reply::json(404, json!({"error": {"message": "no such path"}})),
    })
}

/// A gateway with models `claude` (anthropic kind) and `gpt` (openai kind), both on one fake.
fn setup(extra: &str) -> (TestEnv, FakeUpstream) {
    let fake = upstream();
    let mut env = TestEnv::new();
    let rest = format!(
        "{extra}[[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{url}\"\n\
         api_key = \"{key}\"\n\n\
         [[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n\
         api_key = \"{key}\"\n\n\
         [[models]]\nname = \"claude\"\ntargets = [\"anthropic/claude-up\"]\n\n\
         [[models]]\nname = \"gpt\"\ntargets = [\"openai/gpt-up\"]\n",
        url = fake.url(),
        key = env.encrypt(SECRET),
    );
    env.start("", &rest);
    (env, fake)
}

/// Parses an SSE body into (event name, data) pairs.
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

fn data_json(events: &[(Option<String>, String)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect()
}

/// Text of an Anthropic SSE answer (text deltas joined).
fn anthropic_text(body: &str) -> String {
    data_json(&events(body))
        .iter()
        .filter_map(|d| d.pointer("/delta/text").and_then(Value::as_str))
        .collect()
}

fn assert_usage(env: &TestEnv, reply: &common::gateway::Reply, endpoint: &str, tokens: (u64, u64)) {
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["endpoint"], endpoint, "{line}");
    assert_eq!(line["stream"], true, "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["prompt_tokens"], tokens.0, "{line}");
    assert_eq!(line["completion_tokens"], tokens.1, "{line}");
    assert_eq!(line["error"], Value::Null, "{line}");
}

/// Whether `key` appears in a JSON value, at any depth.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|v| has_key(v, key)),
        Value::Array(a) => a.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

// ---- Claude Code ----------------------------------------------------------------------------

#[test]
fn claude_code_turn_passes_through_to_anthropic_with_every_field_and_beta() {
    let (env, fake) = setup("");
    let turn = recorded("claude_code_turn.json");
    assert!(turn.target.ends_with("?beta=true"));
    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(SECRET));
    for h in ["anthropic-beta", "anthropic-version"] {
        assert_eq!(seen.header(h), turn.header(h), "{h}");
    }
    let mut expected = turn.body.clone();
    expected["model"] = json!("claude-up");
    assert_eq!(
        seen.json(),
        expected,
        "the body must reach Anthropic untouched but for model"
    );

    let evs = events(&reply.body);
    assert_eq!(evs.last().unwrap().0.as_deref(), Some("message_stop"));
    let tool = data_json(&evs)
        .into_iter()
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(tool["content_block"]["name"], "Read");
    assert_usage(&env, &reply, "/v1/messages", (1500, 17));
    env.assert_no_leaks(&[SECRET]);
}

#[test]
fn claude_code_turn_is_translated_for_openai_targets() {
    let (env, fake) = setup("");
    let turn = recorded("claude_code_turn.json");
    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let body = seen.json();
    assert_eq!(body["model"], "gpt-up");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert!(
        !has_key(&body, "cache_control"),
        "cache_control reached OpenAI"
    );
    for dropped in [
        "thinking",
        "context_management",
        "output_config",
        "metadata",
    ] {
        assert!(body.get(dropped).is_none(), "{dropped} reached OpenAI");
    }
    let messages = body["messages"].as_array().unwrap();
    // The system blocks become the first message; the mid-conversation system entry stays
    // a system message in place.
    assert_eq!(messages[0]["role"], "system");
    let first = messages[0]["content"].to_string();
    assert!(first.contains("Claude agent"), "{first}");
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "system"]);
    let user = messages[1]["content"].to_string();
    assert!(user.contains("compat-tool: read the file"), "{user}");
    let tools = body["tools"].as_array().unwrap();
    assert_eq!(tools.len(), turn.body["tools"].as_array().unwrap().len());
    assert!(tools.iter().all(|t| t["type"] == "function"));
    assert!(tools.iter().any(|t| t["function"]["name"] == "Read"));

    // The client gets Anthropic events: a Read tool_use it can run.
    let evs = events(&reply.body);
    assert_eq!(evs.first().unwrap().0.as_deref(), Some("message_start"));
    assert_eq!(evs.last().unwrap().0.as_deref(), Some("message_stop"));
    assert!(!reply.body.contains("[DONE]"));
    let data = data_json(&evs);
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "Read");
    let args: String = data
        .iter()
        .filter_map(|d| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"file_path": "/tmp/compat/work/marker.txt"})
    );
    let stop = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(stop["delta"]["stop_reason"], "tool_use");
    assert_usage(&env, &reply, "/v1/messages", (900, 12));
    env.assert_no_leaks(&[SECRET]);
}

#[test]
fn claude_code_tool_round_trip_on_both_kinds() {
    let (env, fake) = setup("");
    let turn = recorded("claude_code_tool_result.json");

    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        anthropic_text(&reply.body),
        format!("round trip ok: {MARKER}")
    );
    let mut expected = turn.body.clone();
    expected["model"] = json!("claude-up");
    assert_eq!(fake.last().json(), expected);
    assert_usage(&env, &reply, "/v1/messages", (1500, 17));

    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        anthropic_text(&reply.body),
        format!("round trip ok: {MARKER}")
    );
    let body = fake.last().json();
    let messages = body["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the tool_use turn");
    assert_eq!(call["tool_calls"][0]["id"], "toolu_fake_1");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "Read");
    let args: Value = serde_json::from_str(
        call["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args["file_path"], "/tmp/compat/work/marker.txt");
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "toolu_fake_1");
    assert!(result["content"].to_string().contains(MARKER), "{result}");
    assert!(!has_key(&body, "cache_control"));
    assert_usage(&env, &reply, "/v1/messages", (900, 12));
}
