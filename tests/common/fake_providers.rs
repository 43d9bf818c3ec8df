//! Fake providers that answer like the real ones (shapes as documented by OpenAI and
//! Anthropic), so official SDKs parse what comes through the gateway. Both echo the last user
//! text (`You said: …`); when the request offers tools and holds no tool result yet they say
//! `Let me check.` and call the first tool with `{"city": "Paris"}` (and a second one, if
//! offered, with `{"city": "Rome"}`); after tool results they answer
//! `The tool said: <result>; <result>`. Requests without the expected credential get the provider's 401.
//! A streamed request whose text contains [`BREAK_STREAM`] breaks off mid-answer the way each
//! provider does: OpenAI-compatible servers drop the connection, Anthropic sends an `error`
//! event (`overloaded_error`).

use super::{Received, Reply};
use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;

/// Prompt text that makes a streamed answer fail midway.
pub const BREAK_STREAM: &str = "BREAK_STREAM";

/// What the fake model decided to say.
enum Turn {
    Text(String),
    /// A short text, then one call per offered tool (at most two), as models do.
    Tools {
        preface: String,
        calls: Vec<Call>,
    },
}

struct Call {
    /// Position among the calls (0, 1): suffix of the call id.
    n: usize,
    name: String,
    args: Value,
}

impl Call {
    fn openai_id(&self) -> String {
        format!("call_abc12{}", self.n)
    }
    fn anthropic_id(&self) -> String {
        format!("toolu_01A09q90qw90lq917835lq{}", self.n)
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a content value in either format (string, or blocks with `text`).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().or(p["content"].as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// `tool_results`: the results that end the conversation (empty: none).
fn decide(messages: &[Value], tools: Option<&Vec<Value>>, tool_results: Vec<String>) -> Turn {
    if !tool_results.is_empty() {
        return Turn::Text(format!("The tool said: {}", tool_results.join("; ")));
    }
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let calls = tools
            .iter()
            .take(2)
            .zip(["Paris", "Rome"])
            .enumerate()
            .map(|(n, (tool, city))| Call {
                n,
                name: tool["function"]["name"]
                    .as_str()
                    .or(tool["name"].as_str())
                    .unwrap_or("tool")
                    .to_owned(),
                args: json!({ "city": city }),
            })
            .collect();
        return Turn::Tools {
            preface: "Let me check.".to_owned(),
            calls,
        };
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    Turn::Text(format!("You said: {last_user}"))
}

/// Splits text into pieces that keep their spaces, so joining them restores it.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn sse(events: Vec<String>) -> Reply {
    Reply::Sse {
        events: events.into_iter().map(|e| (Duration::ZERO, e)).collect(),
        finish: true,
    }
}

// ---------------------------------------------------------------- OpenAI

fn openai_error(status: u16, message: &str, kind: &str, code: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

/// An OpenAI-compatible API (`/chat/completions`, `/embeddings`, `/models`) expecting
/// `Authorization: Bearer <secret>`.
pub fn openai(secret: &'static str) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |r: &Received| {
        if r.header("authorization") != Some(format!("Bearer {secret}").as_str()) {
            return openai_error(
                401,
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
            );
        }
        let path = r.path.split('?').next().unwrap_or("");
        match (r.method.as_str(), path) {
            ("POST", "/chat/completions") => match openai_chat_invalid(&r.json()) {
                Some(why) => openai_error(400, &why, "invalid_request_error", "invalid_value"),
                None => openai_chat(&r.json()),
            },
            ("POST", "/embeddings") => openai_embeddings(&r.json()),
            ("POST", "/responses") => openai_responses(&r.json()),
            ("GET", "/models") => Reply::json(
                200,
                json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model",
                       "created": 1686935002, "owned_by": "openai"}]}),
            ),
            _ => openai_error(
                404,
                "Unknown request URL",
                "invalid_request_error",
                "unknown_url",
            ),
        }
    }
}

/// Parameters OpenAI's chat endpoint accepts; it refuses any other top-level field.
const OPENAI_CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "user",
    "metadata",
    "store",
    "seed",
    "response_format",
    "logprobs",
    "top_logprobs",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "prompt_cache_key",
    "safety_identifier",
];

/// What real OpenAI would refuse in a chat request (a subset of its checks).
fn openai_chat_invalid(body: &Value) -> Option<String> {
    let object = body.as_object()?;
    if let Some(field) = object
        .keys()
        .find(|k| !OPENAI_CHAT_FIELDS.contains(&k.as_str()))
    {
        return Some(format!("Unrecognized request argument supplied: {field}"));
    }
    if body["stream_options"].is_object() && body["stream"] != true {
        return Some(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    let messages = body["messages"].as_array()?;
    let mut call_ids = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str() {
            Some("system" | "developer" | "user") => {}
            Some("assistant") => {
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    call_ids.push(call["id"].as_str().unwrap_or("").to_owned());
                    if call["type"] != "function" || !call["function"]["arguments"].is_string() {
                        return Some(format!("Invalid 'messages[{i}].tool_calls'"));
                    }
                }
            }
            Some("tool") => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                if !call_ids.iter().any(|c| c == id) {
                    return Some(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. (messages[{i}])"
                    ));
                }
            }
            _ => return Some(format!("Invalid value for 'messages[{i}].role'")),
        }
    }
    None
}

fn openai_chat(body: &Value) -> Reply {
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let breaks = body["stream"] == true
        && messages
            .iter()
            .any(|m| text_of(&m["content"]).contains(BREAK_STREAM));
    let tool_results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .map(|m| text_of(&m["content"]))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let turn = decide(&messages, body["tools"].as_array(), tool_results);
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&text_of(&m["content"])))
        .sum();
    let id = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
    let created = 1741569952;
    let (completion_tokens, finish) = match &turn {
        Turn::Text(t) => (words(t), "stop"),
        Turn::Tools { .. } => (9, "tool_calls"),
    };
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    if body["stream"] != true {
        let message = match &turn {
            Turn::Text(t) => json!({"role": "assistant", "content": t, "refusal": null,
                                    "annotations": []}),
            Turn::Tools { preface, calls } => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.openai_id(), "type": "function",
                        "function": {"name": c.name, "arguments": c.args.to_string()}})
                    })
                    .collect();
                json!({"role": "assistant", "content": preface, "refusal": null,
                       "annotations": [], "tool_calls": calls})
            }
        };
        return Reply::json(
            200,
            json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": message, "logprobs": null,
                                "finish_reason": finish}],
                   "usage": usage, "service_tier": "default",
                   "system_fingerprint": "fp_fake"}),
        );
    }
    let include_usage = body["stream_options"]["include_usage"] == true;
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created,
               "model": model, "system_fingerprint": "fp_fake",
               "choices": [{"index": 0, "delta": delta, "logprobs": null,
                            "finish_reason": finish}]});
        if include_usage {
            // As OpenAI does: with include_usage every chunk carries `"usage": null`.
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    match &turn {
        Turn::Text(t) => {
            for piece in pieces(t) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
        }
        Turn::Tools { preface, calls } => {
            events.push(chunk(json!({ "content": preface }), Value::Null));
            for c in calls {
                events.push(chunk(
                    json!({"tool_calls": [{"index": c.n, "id": c.openai_id(), "type": "function",
                            "function": {"name": c.name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let args = c.args.to_string();
                let (a, b) = args.split_at(args.len() / 2);
                for part in [a, b] {
                    events.push(chunk(
                        json!({"tool_calls": [{"index": c.n, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        // Real OpenAI: every chunk has `usage: null`, then one chunk with no choices.
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": "fp_fake", "choices": [],
                   "usage": usage})
            .to_string(),
        );
    }
    events.push("[DONE]".into());
    if breaks {
        // Two content chunks, then the connection drops: no finish_reason, no [DONE].
        events.truncate(3);
        return Reply::Sse {
            events: events
                .into_iter()
                .map(|e| (Duration::ZERO, format!("data: {e}\n\n")))
                .collect(),
            finish: false,
        };
    }
    sse(events
        .into_iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect())
}

/// The Responses API (`POST /responses`), text only: what Codex and `client.responses` use.
fn openai_responses(body: &Value) -> Reply {
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let prompt = match &body["input"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|i| i["role"] == "user")
            .map(|i| match &i["content"] {
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                other => text_of(other),
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let text = format!("You said: {prompt}");
    let usage = json!({"input_tokens": words(&prompt), "output_tokens": words(&text),
        "total_tokens": words(&prompt) + words(&text),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0}});
    let id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    let item_id = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b";
    let message = |status: &str, text: &str| {
        json!({"type": "message", "id": item_id, "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": 1741476542, "status": status,
               "error": null, "incomplete_details": null, "instructions": null,
               "max_output_tokens": null, "model": model, "output": output,
               "parallel_tool_calls": true, "previous_response_id": null,
               "reasoning": {"effort": null, "summary": null}, "store": true,
               "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
               "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": usage,
               "user": null, "metadata": {}})
    };
    if body["stream"] != true {
        return Reply::json(
            200,
            response("completed", json!([message("completed", &text)]), usage),
        );
    }
    let mut seq = 0;
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(format!("event: {kind}\ndata: {data}\n\n"));
    };
    push(
        "response.created",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.in_progress",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    let empty = message("in_progress", "");
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": empty}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for piece in pieces(&text) {
        push(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0,
            "content_index": 0, "delta": piece}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0,
        "content_index": 0, "text": text}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0,
        "item": message("completed", &text)}),
    );
    push(
        "response.completed",
        json!({"response":
        response("completed", json!([message("completed", &text)]), usage)}),
    );
    sse(events)
}

fn openai_embeddings(body: &Value) -> Reply {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => {
            return openai_error(
                400,
                "'input' is required",
                "invalid_request_error",
                "invalid_value",
            );
        }
    };
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let vector = [0.25f32, -0.5, words(text) as f32];
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
    Reply::json(
        200,
        json!({"object": "list", "data": data, "model": body["model"],
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

// ------------------------------------------------------------- Anthropic

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message},
               "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
    )
}

/// The Anthropic API (`/v1/messages`, `/v1/messages/count_tokens`) expecting
/// `x-api-key: <secret>` and an `anthropic-version` header.
pub fn anthropic(secret: &'static str) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |r: &Received| {
        if r.header("x-api-key") != Some(secret) {
            return anthropic_error(401, "authentication_error", "invalid x-api-key");
        }
        if r.header("anthropic-version").is_none() {
            return anthropic_error(
                400,
                "invalid_request_error",
                "anthropic-version: header is required",
            );
        }
        let path = r.path.split('?').next().unwrap_or("");
        match (r.method.as_str(), path) {
            ("POST", "/v1/messages") => match anthropic_invalid(&r.json(), ANTHROPIC_FIELDS) {
                Some(why) => anthropic_error(400, "invalid_request_error", &why),
                None => anthropic_messages(&r.json()),
            },
            ("POST", "/v1/messages/count_tokens") => {
                match anthropic_invalid(&r.json(), ANTHROPIC_COUNT_FIELDS) {
                    Some(why) => anthropic_error(400, "invalid_request_error", &why),
                    None => Reply::json(
                        200,
                        json!({"input_tokens": anthropic_prompt_tokens(&r.json())}),
                    ),
                }
            }
            _ => anthropic_error(404, "not_found_error", "Not found"),
        }
    }
}

/// Top-level fields of a Messages request; Anthropic refuses others ("Extra inputs are not
/// permitted").
const ANTHROPIC_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];
const ANTHROPIC_COUNT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
    "context_management",
];

/// What real Anthropic would refuse (a subset of its checks).
fn anthropic_invalid(body: &Value, fields: &[&str]) -> Option<String> {
    let object = body.as_object()?;
    if let Some(field) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Some(format!("{field}: Extra inputs are not permitted"));
    }
    let messages = body["messages"].as_array()?;
    let mut tool_ids = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m["role"].as_str(), Some("user" | "assistant")) {
            return Some(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let blocks = match &m["content"] {
            Value::String(s) if s.is_empty() => {
                return Some(format!(
                    "messages.{i}: text content blocks must be non-empty"
                ));
            }
            Value::Array(blocks) => blocks.clone(),
            _ => continue,
        };
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") if b["text"].as_str().is_some_and(|t| !t.is_empty()) => {}
                Some("tool_use") if b["input"].is_object() => {
                    tool_ids.push(b["id"].as_str().unwrap_or("").to_owned());
                }
                Some("tool_result")
                    if tool_ids
                        .iter()
                        .any(|t| Some(t.as_str()) == b["tool_use_id"].as_str()) => {}
                Some("image" | "document" | "thinking" | "redacted_thinking") => {}
                _ => return Some(format!("messages.{i}.content.{j}: invalid content block")),
            }
        }
    }
    None
}

fn anthropic_prompt_tokens(body: &Value) -> u64 {
    let system = words(&text_of(&body["system"]));
    let messages: u64 = body["messages"]
        .as_array()
        .map(|ms| ms.iter().map(|m| words(&text_of(&m["content"]))).sum())
        .unwrap_or(0);
    system + messages + 3
}

fn anthropic_messages(body: &Value) -> Reply {
    let Some(max_tokens) = body["max_tokens"].as_u64() else {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    };
    let _ = max_tokens;
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let tool_results: Vec<String> = messages
        .last()
        .and_then(|m| m["content"].as_array())
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| text_of(&b["content"]))
        .collect();
    let turn = decide(&messages, body["tools"].as_array(), tool_results);
    let input_tokens = anthropic_prompt_tokens(body);
    let id = "msg_013Zva2CMHLNnXjNJJKqJ2EF";
    let (output_tokens, stop_reason) = match &turn {
        Turn::Text(t) => (words(t), "end_turn"),
        Turn::Tools { .. } => (9, "tool_use"),
    };
    if body["stream"] != true {
        let blocks = match &turn {
            Turn::Text(t) => vec![json!({"type": "text", "text": t})],
            Turn::Tools { preface, calls } => {
                std::iter::once(json!({"type": "text", "text": preface}))
                    .chain(calls.iter().map(|c| {
                        json!({"type": "tool_use",
                    "id": c.anthropic_id(), "name": c.name, "input": c.args})
                    }))
                    .collect()
            }
        };
        return Reply::json(
            200,
            json!({"id": id, "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop_reason, "stop_sequence": null,
                   "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                             "service_tier": "standard"}}),
        );
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": id,
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )];
    let text = match &turn {
        Turn::Text(t) => t,
        Turn::Tools { preface, .. } => preface,
    };
    events.push(event(
        "content_block_start",
        json!({"type": "content_block_start",
        "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(event("ping", json!({"type": "ping"})));
    for piece in pieces(text) {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta",
            "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    if let Turn::Tools { calls, .. } = &turn {
        for c in calls {
            let index = c.n + 1;
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start",
                "index": index, "content_block": {"type": "tool_use",
                "id": c.anthropic_id(), "name": c.name, "input": {}}}),
            ));
            let args = c.args.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for part in ["", a, b] {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }
    let breaks = body["messages"].as_array().is_some_and(|ms| {
        ms.iter()
            .any(|m| text_of(&m["content"]).contains(BREAK_STREAM))
    });
    if breaks {
        events.truncate(4);
        events.push(event(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
        return sse(events);
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse(events)
}
