//! The developer tools people point at a gateway, replayed: request shapes recorded from
//! Claude Code, Codex CLI, aider and llm (`tests/fixtures/clients/`, made with
//! `scripts/compat --direct --record`) sent through the real gateway to fake upstreams of both
//! provider kinds, checking what the upstream receives, what the client gets back, and the
//! usage line. Also: `HEAD` and query strings as those clients send them, and token limits
//! counting `/v1/responses` and `/v1/messages` traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::gateway::TestEnv;
use support::upstream::answer::event;
use support::upstream::compat::{Mode, compat};
use support::upstream::{FakeUpstream, Received, Reply};

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
    fn send(&self, env: &TestEnv, model: &str) -> support::gateway::Reply {
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
        support::gateway::Reply::from(resp)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A gateway with models `claude` (anthropic kind) and `gpt` (openai kind), both on one fake.
fn setup(extra: &str) -> (TestEnv, FakeUpstream) {
    let fake = FakeUpstream::start(compat(Mode::Pinned));
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

fn assert_usage(
    env: &TestEnv,
    reply: &support::gateway::Reply,
    endpoint: &str,
    tokens: (u64, u64),
) {
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

#[test]
fn thinking_blocks_in_history_are_dropped_for_openai_targets() {
    let (env, fake) = setup("");
    let mut turn = recorded("claude_code_tool_result.json");
    let messages = turn.body["messages"].as_array_mut().unwrap();
    let assistant = messages
        .iter_mut()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    assistant["content"].as_array_mut().unwrap().insert(
        0,
        json!({"type": "thinking", "thinking": "private chain", "signature": "c2ln"}),
    );
    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = String::from_utf8(fake.last().body).unwrap();
    assert!(!seen.contains("private chain"), "thinking reached OpenAI");
    assert!(!seen.contains("c2ln"));
    // Native: kept as sent (Anthropic checks the signature).
    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        String::from_utf8(fake.last().body)
            .unwrap()
            .contains("c2ln")
    );
}

// ---- Codex CLI ------------------------------------------------------------------------------

/// Names of the events of a Responses stream, in order.
fn event_names(body: &str) -> Vec<String> {
    events(body).into_iter().filter_map(|(n, _)| n).collect()
}

const RESPONSES_SEQUENCE: [&str; 9] = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
];

#[test]
fn codex_responses_turn_passes_through_to_openai() {
    let (env, fake) = setup("");
    let turn = recorded("codex_responses_turn.json");
    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/responses");
    let mut expected = turn.body.clone();
    expected["model"] = json!("gpt-up");
    assert_eq!(seen.json(), expected);
    assert_eq!(event_names(&reply.body), RESPONSES_SEQUENCE);
    assert_usage(&env, &reply, "/v1/responses", (700, 9));

    // Not streamed: usage from the body.
    let mut once = recorded("codex_responses_turn.json");
    once.body["stream"] = json!(false);
    let reply = once.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["output"][0]["content"][0]["text"],
        "compat-ok: hello from the fake upstream"
    );
    let line = env.usage_for(reply.request_id());
    assert_eq!(
        (
            line["prompt_tokens"].as_u64(),
            line["completion_tokens"].as_u64()
        ),
        (Some(700), Some(9))
    );
    assert_eq!(line["stream"], false);
}

#[test]
fn codex_responses_turn_is_translated_for_anthropic_targets() {
    let (env, fake) = setup("");
    let turn = recorded("codex_responses_turn.json");
    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    let body = seen.json();
    assert_eq!(body["model"], "claude-up");
    assert_eq!(body["stream"], true);
    let system = body["system"].to_string();
    assert!(
        system.contains("Codex CLI"),
        "developer messages become system"
    );
    let offered: Vec<&str> = turn.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "function")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let sent: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        sent, offered,
        "function tools kept, web_search and namespace left out"
    );
    assert!(body["messages"].to_string().contains("Say hello."));

    let names = event_names(&reply.body);
    assert_eq!(names, RESPONSES_SEQUENCE, "{}", reply.body);
    let data = data_json(&events(&reply.body));
    let seqs: Vec<u64> = data
        .iter()
        .map(|d| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let done = data.last().unwrap();
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["model"], "claude");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "compat-ok: hello from the fake upstream"
    );
    assert_eq!(done["response"]["usage"]["input_tokens"], 1500);
    assert_usage(&env, &reply, "/v1/responses", (1500, 17));
    env.assert_no_leaks(&[SECRET]);
}

#[test]
fn codex_tool_round_trip_on_both_kinds() {
    let (env, fake) = setup("");
    let turn = recorded("codex_responses_tool_output.json");
    let done_text = |body: &str| {
        let data = data_json(&events(body));
        let done = data
            .iter()
            .find(|d| d["type"] == "response.output_text.done")
            .unwrap();
        done["text"].as_str().unwrap().to_owned()
    };

    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut expected = turn.body.clone();
    expected["model"] = json!("gpt-up");
    assert_eq!(fake.last().json(), expected);
    assert_eq!(done_text(&reply.body), format!("round trip ok: {MARKER}"));

    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(event_names(&reply.body), RESPONSES_SEQUENCE);
    assert_eq!(done_text(&reply.body), format!("round trip ok: {MARKER}"));
    let body = fake.last().json();
    let messages = body["messages"].as_array().unwrap();
    let n = messages.len();
    let call = &messages[n - 2]["content"][0];
    assert_eq!(messages[n - 2]["role"], "assistant");
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["id"], "call_fake_1");
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["input"]["cmd"], "cat /tmp/compat/work/marker.txt");
    let result = &messages[n - 1]["content"][0];
    assert_eq!(messages[n - 1]["role"], "user");
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "call_fake_1");
    assert!(result["content"].to_string().contains(MARKER), "{result}");
    assert_usage(&env, &reply, "/v1/responses", (1500, 17));
}

#[test]
fn anthropic_tool_use_streams_back_to_codex_as_a_function_call() {
    let (env, _fake) = setup("");
    let mut turn = recorded("codex_responses_turn.json");
    let last = turn.body["input"]
        .as_array_mut()
        .unwrap()
        .last_mut()
        .unwrap();
    assert_eq!(last["content"][0]["text"], "Say hello.");
    last["content"][0]["text"] = json!("compat-tool: read the file /tmp/compat/work/marker.txt");
    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        event_names(&reply.body),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let data = data_json(&events(&reply.body));
    let item = &data.last().unwrap()["response"]["output"][0];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    assert_eq!(item["call_id"], "toolu_fake_1");
    let args: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"cmd": "cat /tmp/compat/work/marker.txt"}));
}

#[test]
fn responses_calls_of_tools_anthropic_cannot_run_are_refused_clearly() {
    let (env, _fake) = setup("");
    let mut turn = recorded("codex_responses_turn.json");
    turn.body["input"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "web_search_call", "id": "ws_1", "status": "completed"}));
    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["error"];
    assert!(
        error["param"].as_str().unwrap().starts_with("input["),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("not supported"),
        "{error}"
    );
}

// ---- aider and llm (OpenAI SDK streams) -----------------------------------------------------

#[test]
fn aider_stream_without_stream_options_hides_the_usage_chunk() {
    let (env, fake) = setup("");
    let turn = recorded("aider_chat_stream.json");
    assert!(turn.body.get("stream_options").is_none());

    let reply = turn.send(&env, "gpt");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = fake.last().json();
    assert_eq!(
        seen["stream_options"]["include_usage"], true,
        "usage asked upstream"
    );
    let data = data_json(&events(&reply.body));
    assert!(
        data.iter()
            .all(|d| !d["choices"].as_array().unwrap().is_empty()),
        "usage chunk reached a client that did not ask: {}",
        reply.body
    );
    assert!(reply.body.trim_end().ends_with("data: [DONE]"));
    assert_usage(&env, &reply, "/v1/chat/completions", (900, 12));

    let reply = turn.send(&env, "claude");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        !fake.last().json()["system"].is_null(),
        "aider's system message"
    );
    let data = data_json(&events(&reply.body));
    assert!(
        data.iter()
            .all(|d| !d["choices"].as_array().unwrap().is_empty())
    );
    let text: String = data
        .iter()
        .filter_map(|d| {
            d.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "compat-ok: hello from the fake upstream");
    assert!(reply.body.trim_end().ends_with("data: [DONE]"));
    assert_usage(&env, &reply, "/v1/chat/completions", (1500, 17));
}

#[test]
fn llm_stream_with_include_usage_gets_the_usage_chunk() {
    let (env, _fake) = setup("");
    let turn = recorded("llm_chat_stream_usage.json");
    assert_eq!(turn.body["stream_options"]["include_usage"], true);
    for (model, tokens) in [("gpt", (900, 12)), ("claude", (1500, 17))] {
        let reply = turn.send(&env, model);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let data = data_json(&events(&reply.body));
        let usage = data
            .iter()
            .find(|d| d["usage"].is_object())
            .unwrap_or_else(|| panic!("no usage chunk for {model}: {}", reply.body));
        assert_eq!(usage["usage"]["prompt_tokens"], tokens.0);
        assert_eq!(usage["usage"]["completion_tokens"], tokens.1);
        assert_usage(&env, &reply, "/v1/chat/completions", tokens);
    }
}

// ---- HEAD, query strings, token limits -------------------------------------------------------

#[test]
fn head_is_answered_without_a_body_on_any_path() {
    let (env, _fake) = setup("");
    for path in [
        "/",
        "/v1/messages",
        "/v1/responses",
        "/healthz",
        "/no/such/path?x=1",
        "/v1/models",
        "/admin",
        "/metrics",
    ] {
        let mut stream = std::net::TcpStream::connect(env.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "HEAD {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        // Endpoints that need a credential may refuse; none may send a body.
        let needs_key = ["/v1/models", "/admin", "/metrics"].contains(&path);
        assert!(
            raw.starts_with("HTTP/1.1 200") || needs_key,
            "{path}: {raw}"
        );
        let (_, body) = raw.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "", "{path}: HEAD answered with a body");
    }
}

#[test]
fn query_strings_are_ignored_by_routing() {
    let (env, fake) = setup("");
    let auth = format!("Bearer {}", env.key);
    let reply = env.get("/v1/models?limit=5", &[("authorization", &auth)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(env.get("/healthz?probe=1", &[]).status, 200);
    let body =
        json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post("/v1/chat/completions?api-version=2024", &body.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fake.last().path, "/v1/chat/completions");
    let body = json!({"model": "claude", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post("/v1/messages?beta=true", &body.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fake.last().path, "/v1/messages");
    let reply = env.post(
        "/v1/responses?x=1",
        &json!({"model": "gpt", "input": "hi", "stream": true}).to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fake.last().path, "/v1/responses");
}

#[test]
fn token_limits_count_responses_and_messages_traffic() {
    // Each answer costs 709 (responses) or 1517 (messages) tokens; the limit is 500.
    let cases = [
        ("codex_responses_turn.json", "gpt"),
        ("codex_responses_turn.json", "claude"),
        ("claude_code_turn.json", "claude"),
        ("claude_code_turn.json", "gpt"),
    ];
    for (fixture, model) in cases {
        let (env, _fake) = setup("[limits]\ntokens_per_minute = 500\n\n");
        let turn = recorded(fixture);
        let reply = turn.send(&env, model);
        assert_eq!(reply.status, 200, "{fixture} {model}: {}", reply.body);
        assert_eq!(reply.header("x-ratelimit-limit-tokens"), Some("500"));
        let reply = turn.send(&env, model);
        assert_eq!(reply.status, 429, "{fixture} {model}: tokens not counted");
        assert_eq!(reply.header("x-ratelimit-remaining-tokens"), Some("0"));
    }
}

#[test]
fn responses_stream_errors_are_relayed_once_and_recorded_as_errors() {
    let fake = FakeUpstream::start(|r: &Received| {
        let created = event(
            "response.created",
            &json!({"type": "response.created", "sequence_number": 0,
                "response": {"id": "resp_1", "status": "in_progress"}}),
        );
        let end = if String::from_utf8_lossy(&r.body).contains("fail-as-response") {
            event(
                "response.failed",
                &json!({"type": "response.failed", "sequence_number": 1,
                    "response": {"id": "resp_1", "status": "failed",
                    "error": {"code": "server_error", "message": "boom"}}}),
            )
        } else {
            event(
                "error",
                &json!({"type": "error", "sequence_number": 1, "code": "server_error",
                    "message": "boom", "param": null}),
            )
        };
        Reply::sse(vec![created, end], Duration::ZERO)
    });
    let mut env = TestEnv::new();
    let rest = format!(
        "[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\n\
         [[models]]\nname = \"gpt\"\ntargets = [\"openai/gpt-up\"]\n",
        fake.url()
    );
    env.start("", &rest);
    for (input, last) in [("x", "error"), ("fail-as-response", "response.failed")] {
        let body = json!({"model": "gpt", "input": input, "stream": true});
        let reply = env.post("/v1/responses", &body.to_string());
        assert_eq!(reply.status, 200, "{}", reply.body);
        let names = event_names(&reply.body);
        assert_eq!(names, ["response.created", last], "{}", reply.body);
        assert_eq!(events(&reply.body).len(), 2, "{}", reply.body);
        let line = env.usage_for(reply.request_id());
        assert_eq!(line["error"], "upstream_error", "{line}");
    }
}
