//! Fake providers that answer like the real ones (shapes as documented by OpenAI and
//! Anthropic), so official SDKs parse what comes through the gateway. Both echo the last user
//! text (`You said: …`); when the request offers tools and holds no tool result yet they say
//! `Let me check.` and call the first tool with `{"city": "Paris"}` (and a second one, if
//! offered, with `{"city": "Rome"}`); after tool results they answer
//! `The tool said: <result>; <result>`. Requests without the expected credential get the provider's 401.
//! A streamed request whose text contains [`BREAK_STREAM`] breaks off mid-answer the way each
//! provider does: OpenAI-compatible servers drop the connection, Anthropic sends an `error`
//! event (`overloaded_error`).

use super::answer::{self, Answer, Call, Usage, pieces, whole, words};
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
        /// (name, arguments)
        calls: Vec<(String, Value)>,
    },
}

impl Turn {
    /// The answer in a provider's terms; `id(n)` names call `n`.
    fn answer(&self, model: &str, usage: Usage, id: impl Fn(usize) -> String) -> Answer {
        let (text, calls) = match self {
            Turn::Text(t) => (pieces(t), Vec::new()),
            Turn::Tools { preface, calls } => (
                whole(preface),
                calls
                    .iter()
                    .enumerate()
                    .map(|(n, (name, args))| Call {
                        id: id(n),
                        name: name.clone(),
                        args: args.clone(),
                    })
                    .collect(),
            ),
        };
        Answer {
            model: model.to_owned(),
            text,
            calls,
            usage,
            split_args: true,
        }
    }

    /// Output tokens: the words said, or 9 for a tool turn.
    fn tokens(&self) -> u64 {
        match self {
            Turn::Text(t) => words(t),
            Turn::Tools { .. } => 9,
        }
    }
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
            .map(|(tool, city)| {
                let name = tool["function"]["name"]
                    .as_str()
                    .or(tool["name"].as_str())
                    .unwrap_or("tool");
                (name.to_owned(), json!({ "city": city }))
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
        match (r.method.as_str(), r.route()) {
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
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
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
    let marks = Marks::of(&body.to_string());
    let usage = marks.openai(Usage {
        input: messages
            .iter()
            .map(|m| words(&text_of(&m["content"])))
            .sum(),
        output: turn.tokens(),
        ..Usage::default()
    });
    let model = body["model"].as_str().unwrap_or("");
    let answer = turn.answer(model, usage, |n| format!("call_abc12{n}"));
    if body["stream"] != true {
        return Reply::json(200, answer::chat_json(&answer));
    }
    let include_usage = body["stream_options"]["include_usage"] == true;
    let mut events = answer::chat_events(&answer, include_usage);
    let breaks = messages
        .iter()
        .any(|m| text_of(&m["content"]).contains(BREAK_STREAM));
    if breaks {
        // Two content chunks, then the connection drops: no finish_reason, no [DONE].
        events.truncate(3);
        return Reply::Sse {
            events: events.into_iter().map(|e| (Duration::ZERO, e)).collect(),
            finish: false,
        };
    }
    Reply::sse(events, Duration::ZERO)
}

/// The Responses API (`POST /responses`), text only: what Codex and `client.responses` use.
fn openai_responses(body: &Value) -> Reply {
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
    let usage = Marks::of(&body.to_string()).openai(Usage {
        input: words(&prompt),
        output: words(&text),
        ..Usage::default()
    });
    let model = body["model"].as_str().unwrap_or("");
    let answer = Turn::Text(text).answer(model, usage, |_| String::new());
    if body["stream"] != true {
        return Reply::json(200, answer::responses_json(&answer));
    }
    Reply::sse(answer::responses_events(&answer), Duration::ZERO)
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
        match (r.method.as_str(), r.route()) {
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

/// Usage a test asks for in its prompt text: `cache:READ:WRITE:WRITE1H` (tokens read from
/// and written to the prompt cache, the last number the 1-hour part of the writes) and
/// `cost:USD` (an OpenRouter-style `usage.cost`).
#[derive(Default)]
struct Marks {
    read: u64,
    written: u64,
    written_1h: u64,
    cost: Option<f64>,
}

impl Marks {
    fn of(text: &str) -> Marks {
        let mut marks = Marks::default();
        let word = |start: &str| {
            text.split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
                .find_map(|w| w.strip_prefix(start).map(str::to_owned))
        };
        if let Some(spec) = word("cache:") {
            let n: Vec<u64> = spec.split(':').map(|n| n.parse().unwrap_or(0)).collect();
            marks.read = n.first().copied().unwrap_or(0);
            marks.written = n.get(1).copied().unwrap_or(0);
            marks.written_1h = n.get(2).copied().unwrap_or(0).min(marks.written);
        }
        marks.cost = word("cost:").and_then(|c| c.parse().ok());
        marks
    }

    /// OpenAI counts cached tokens inside `prompt_tokens` and reports no writes.
    fn openai(self, mut u: Usage) -> Usage {
        u.input += self.read;
        u.cached = self.read;
        u.cost = self.cost;
        u
    }

    /// Anthropic counts cache reads and writes on top of `input_tokens`.
    fn anthropic(self, mut u: Usage) -> Usage {
        u.cached = self.read;
        u.written = self.written;
        u.written_1h = self.written_1h;
        u
    }
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
    if body["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
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
    let usage = Marks::of(&body.to_string()).anthropic(Usage {
        input: anthropic_prompt_tokens(body),
        output: turn.tokens(),
        ..Usage::default()
    });
    let model = body["model"].as_str().unwrap_or("");
    let answer = turn.answer(model, usage, |n| format!("toolu_01A09q90qw90lq917835lq{n}"));
    if body["stream"] != true {
        return Reply::json(200, answer::messages_json(&answer));
    }
    let mut events = answer::messages_events(&answer);
    let breaks = messages
        .iter()
        .any(|m| text_of(&m["content"]).contains(BREAK_STREAM));
    if breaks {
        // The start, the first text piece, then Anthropic's overload error.
        events.truncate(4);
        let error = json!({"type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"}});
        events.push(format!("event: error\ndata: {error}\n\n"));
    }
    Reply::sse(events, Duration::ZERO)
}
