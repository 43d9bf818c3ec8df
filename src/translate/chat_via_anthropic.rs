//! An OpenAI chat client served by an Anthropic upstream, both directions: the chat request
//! goes out as a Messages request ([`chat_request_to_anthropic`]), the Messages response comes
//! back as a `chat.completion` ([`anthropic_response_to_chat`]) and a Messages stream as
//! `chat.completion.chunk` frames ([`AnthropicToOpenAiStream`]). Pure functions and one stream
//! state machine; `docs/translation.md` has the user-facing summary.
//!
//! # OpenAI chat request → Anthropic Messages
//!
//! | OpenAI field | Anthropic | Note |
//! |---|---|---|
//! | `messages[].role = system / developer` | top-level `system` | joined with a blank line, wherever they appear |
//! | `user` / `assistant` messages | `messages` | consecutive same-role turns merged into one |
//! | content part `text` | `text` block | empty text dropped (Anthropic refuses it) |
//! | content part `image_url` `data:` URL | `image`, `source.type = base64` | non-base64 data URL → 400 |
//! | content part `image_url` http(s) URL | `image`, `source.type = url` | |
//! | content part `file` with `file_data` | `document`, base64 source | `file_id` → 400 |
//! | content parts `input_audio`, others | — | **refused** (400) |
//! | assistant `tool_calls` | `tool_use` blocks | `arguments` parsed; not a JSON object → 400 |
//! | `tool` messages | user `tool_result` blocks | consecutive ones share one user turn |
//! | role `function`, `functions`, `function_call` (legacy) | — | **refused** (400): use `tools` |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens` | default [`DEFAULT_MAX_TOKENS`] |
//! | `temperature` | `temperature` | clamped to Anthropic's 0..=1 |
//! | `top_p`, `top_k` | same | |
//! | `stop` (string or array) | `stop_sequences` | |
//! | `tools` (type `function`) | `tools` `{name, description, input_schema}` | other tool types → 400 |
//! | `tool_choice` auto / none / required / named | `{type: auto / none / any / tool}` | |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use` | |
//! | `stream` | `stream` | `stream_options.include_usage` read by the body probe ([`super::rewrite::probe`]) |
//! | `user` | `metadata.user_id` | |
//! | `n` > 1 | — | **refused** (400) |
//! | `frequency_penalty`, `presence_penalty`, `logit_bias`, `logprobs`, `top_logprobs`, `seed`, `response_format`, `service_tier`, `store`, `metadata`, `modalities`, `audio`, `prediction`, `reasoning_effort`, `verbosity`, `web_search_options`, `stream_options`, anything else | — | dropped |
//!
//! # Anthropic response → OpenAI `chat.completion`
//!
//! `text` blocks joined into `message.content`; `tool_use` → `tool_calls` (arguments =
//! serialized `input`); `thinking` blocks dropped. `stop_reason`: `end_turn`, `stop_sequence`,
//! `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`;
//! `tool_use` → `tool_calls`; `refusal` → `content_filter`. Usage: `prompt_tokens` =
//! `input_tokens` + cache creation + cache read tokens, `completion_tokens` = `output_tokens`.

use super::{
    BadUpstream, DEFAULT_MAX_TOKENS, TRUNCATED, TranslateError, UNREADABLE, Usage, anthropic_usage,
    plain_text, str_field,
};
use crate::sse::{SseEvent, write_data};
use serde_json::{Map, Value, json};

/// OpenAI chat completion request → Anthropic Messages request. `model` is copied as given:
/// the caller replaces it with the upstream model name.
pub fn chat_request_to_anthropic(req: &Value) -> Result<Value, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::new("request body must be a JSON object", "body"))?;
    refuse_unsupported(req)?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("'messages' must be an array", "messages"))?;

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = str_field(m, "role")
            .ok_or_else(|| TranslateError::new("message has no 'role'", param.clone()))?;
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = plain_text(m.get("content").unwrap_or(&Value::Null), "\n");
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            "user" => ("user", content_blocks(m.get("content"), &param)?),
            "assistant" => ("assistant", assistant_blocks(m, &param)?),
            "tool" => ("user", vec![tool_result_block(m, &param)?]),
            "function" => {
                return Err(TranslateError::new(
                    "legacy 'function' messages are not supported; use 'tool' messages",
                    format!("{param}.role"),
                ));
            }
            _ => {
                return Err(TranslateError::new(
                    "unknown message role",
                    format!("{param}.role"),
                ));
            }
        };
        if blocks.is_empty() {
            continue; // Anthropic refuses empty turns; an empty message says nothing.
        }
        match turns.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    let mut out = Map::new();
    out.insert(
        "model".into(),
        req.get("model").cloned().unwrap_or(Value::Null),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    let msgs = turns
        .into_iter()
        .map(|(role, mut content)| {
            // Anthropic wants a turn's tool results before anything else in it.
            content.sort_by_key(|b| str_field(b, "type") != Some("tool_result"));
            json!({"role": role, "content": content})
        })
        .collect();
    out.insert("messages".into(), Value::Array(msgs));
    out.insert("max_tokens".into(), max_tokens(req)?.into());
    copy_sampling(req, &mut out)?;
    if let Some(tools) = req.get("tools").filter(|t| !t.is_null()) {
        out.insert("tools".into(), tools_to_anthropic(tools)?);
    }
    if let Some(choice) = tool_choice(req)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(s) = req.get("stream").and_then(Value::as_bool) {
        out.insert("stream".into(), Value::Bool(s));
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    Ok(Value::Object(out))
}

fn refuse_unsupported(req: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = req.get("n").filter(|n| !n.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(TranslateError::new(
            "only n = 1 is supported for this model",
            "n",
        ));
    }
    for legacy in ["functions", "function_call"] {
        if req.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::new(
                "legacy function calling is not supported; use 'tools' and 'tool_choice'",
                legacy,
            ));
        }
    }
    Ok(())
}

fn max_tokens(req: &Map<String, Value>) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                    TranslateError::new("must be a positive integer", key.to_string())
                });
            }
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

fn copy_sampling(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    if let Some(t) = req.get("temperature").filter(|v| !v.is_null()) {
        let t = t
            .as_f64()
            .ok_or_else(|| TranslateError::new("must be a number", "temperature"))?;
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    for key in ["top_p", "top_k"] {
        if let Some(v) = req.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            if !a.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(a.clone()));
            }
        }
        Some(_) => {
            return Err(TranslateError::new(
                "must be a string or an array of strings",
                "stop",
            ));
        }
    }
    Ok(())
}

/// OpenAI `content` (string or parts) → Anthropic blocks, empty text dropped.
fn content_blocks(content: Option<&Value>, param: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{param}.content[{j}]");
                if let Some(b) = part_to_block(part, &p)? {
                    blocks.push(b);
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(TranslateError::new(
            "content must be a string or an array of parts",
            format!("{param}.content"),
        )),
    }
}

/// A text block, or nothing for empty / whitespace-only text (Anthropic refuses those).
fn text_block(s: &str) -> Option<Value> {
    (!s.trim().is_empty()).then(|| json!({"type": "text", "text": s}))
}

fn part_to_block(part: &Value, param: &str) -> Result<Option<Value>, TranslateError> {
    match str_field(part, "type") {
        Some("text") => Ok(str_field(part, "text").and_then(text_block)),
        Some("refusal") => Ok(str_field(part, "refusal").and_then(text_block)),
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|u| u.as_str().or_else(|| str_field(u, "url")))
                .ok_or_else(|| TranslateError::new("image_url has no url", param.to_string()))?;
            Ok(Some(
                json!({"type": "image", "source": url_source(url, param)?}),
            ))
        }
        Some("file") => {
            let data = part
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::new(
                        "only inline files ('file_data' data URLs) are supported for this model",
                        param.to_string(),
                    )
                })?;
            Ok(Some(
                json!({"type": "document", "source": url_source(data, param)?}),
            ))
        }
        other => {
            // Echo the type only when it looks like a type name, never arbitrary client text.
            let shown = other
                .filter(|t| {
                    t.len() <= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .unwrap_or("(unknown)");
            Err(TranslateError::new(
                format!("content part type '{shown}' is not supported for this model"),
                format!("{param}.type"),
            ))
        }
    }
}

/// A `data:` URL becomes a base64 source; an http(s) URL a url source.
fn url_source(url: &str, param: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let media_type = meta.strip_suffix(";base64").filter(|_| !data.is_empty());
        let media_type = media_type.ok_or_else(|| {
            TranslateError::new("data URLs must be base64 encoded", param.to_string())
        })?;
        Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "url", "url": url}))
    } else {
        Err(TranslateError::new(
            "URL must be a data: or http(s) URL",
            param.to_string(),
        ))
    }
}

fn assistant_blocks(m: &Value, param: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = content_blocks(m.get("content"), param)?;
    if blocks.is_empty()
        && let Some(r) = str_field(m, "refusal")
    {
        blocks.extend(text_block(r));
    }
    let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) else {
        return Ok(blocks);
    };
    let calls = calls.as_array().ok_or_else(|| {
        TranslateError::new("tool_calls must be an array", format!("{param}.tool_calls"))
    })?;
    for (k, call) in calls.iter().enumerate() {
        let p = format!("{param}.tool_calls[{k}]");
        let id = str_field(call, "id")
            .ok_or_else(|| TranslateError::new("tool call has no id", p.clone()))?;
        let f = call.get("function").unwrap_or(&Value::Null);
        let name = str_field(f, "name")
            .ok_or_else(|| TranslateError::new("tool call has no function name", p.clone()))?;
        let args = str_field(f, "arguments").unwrap_or("");
        let input = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(args)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    TranslateError::new(
                        "function arguments must be a JSON object",
                        format!("{p}.function.arguments"),
                    )
                })?
        };
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

fn tool_result_block(m: &Value, param: &str) -> Result<Value, TranslateError> {
    let id = str_field(m, "tool_call_id").ok_or_else(|| {
        TranslateError::new(
            "tool message has no tool_call_id",
            format!("{param}.tool_call_id"),
        )
    })?;
    let content = match m.get("content") {
        Some(Value::Array(_)) => Value::Array(content_blocks(m.get("content"), param)?),
        Some(c) => Value::String(plain_text(c, "\n")),
        None => Value::String(String::new()),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn tools_to_anthropic(tools: &Value) -> Result<Value, TranslateError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| TranslateError::new("tools must be an array", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        if str_field(t, "type") != Some("function") {
            return Err(TranslateError::new(
                "only 'function' tools are supported for this model",
                format!("{p}.type"),
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = str_field(f, "name").ok_or_else(|| {
            TranslateError::new("function has no name", format!("{p}.function.name"))
        })?;
        let schema = f
            .get("parameters")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut tool = json!({"name": name, "input_schema": schema});
        if let Some(d) = str_field(f, "description") {
            tool["description"] = json!(d);
        }
        out.push(tool);
    }
    Ok(Value::Array(out))
}

fn tool_choice(req: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => return Err(TranslateError::new("unknown tool_choice", "tool_choice")),
        }),
        Some(v) => {
            let name = v.pointer("/function/name").and_then(Value::as_str);
            let name = name.ok_or_else(|| {
                TranslateError::new("tool_choice must name a function", "tool_choice")
            })?;
            Some(json!({"type": "tool", "name": name}))
        }
    };
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    Ok(choice)
}

/// Anthropic stop reason → OpenAI finish reason.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    }
}

/// OpenAI `usage` object from Anthropic usage counts.
pub(crate) fn openai_usage_value(u: super::Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// Anthropic Messages response → OpenAI `chat.completion`. `model` is the name reported to
/// the client, `created` the Unix time to stamp.
pub fn anthropic_response_to_chat(
    resp: &Value,
    model: &str,
    created: u64,
) -> Result<Value, BadUpstream> {
    let blocks = super::anthropic_content(resp)?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match str_field(b, "type") {
            Some("text") => text.push_str(str_field(b, "text").unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": str_field(b, "id").unwrap_or(""),
                "type": "function",
                "function": {
                    "name": str_field(b, "name").unwrap_or(""),
                    "arguments": b.get("input").map_or_else(|| "{}".into(), Value::to_string),
                },
            })),
            _ => {} // thinking, redacted_thinking, server tool blocks: no OpenAI equivalent
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = super::anthropic_usage(resp).unwrap_or_default();
    Ok(json!({
        "id": str_field(resp, "id").unwrap_or(""),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(str_field(resp, "stop_reason")),
        }],
        "usage": openai_usage_value(usage),
    }))
}

/// Anthropic upstream events → OpenAI `chat.completion.chunk` frames.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model: String,
    include_usage: bool,
    created: u64,
    id: String,
    usage: Usage,
    /// (Anthropic content block index, OpenAI tool call index) for each `tool_use` block.
    tools: Vec<(u64, usize)>,
    done: bool,
    failed: bool,
}

impl AnthropicToOpenAiStream {
    /// `model` is the name reported to the client; `include_usage` whether the client asked
    /// for the final usage chunk (`stream_options.include_usage`, read by
    /// [`super::rewrite::probe`]). Chunks are stamped with the current time.
    pub fn new(model: &str, include_usage: bool) -> Self {
        let created = crate::clock::unix_secs();
        AnthropicToOpenAiStream {
            model: model.to_owned(),
            include_usage,
            created,
            id: String::new(),
            usage: Usage::default(),
            tools: Vec::new(),
            done: false,
            failed: false,
        }
    }

    /// Stamps chunks with `created` instead of the current time (tests, replay).
    pub fn with_created(mut self, created: u64) -> Self {
        self.created = created;
        self
    }

    /// Token counts seen so far (input from `message_start`, output from `message_delta`).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// True once `message_stop` arrived (and `[DONE]` was written).
    pub fn finished(&self) -> bool {
        self.done
    }

    /// True once the stream was ended with an error frame (an upstream `error` event or an
    /// unreadable event); nothing more will be written.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Translates one upstream event, appending complete `data: …\n\n` frames to `out`.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
            return self.fail("api_error", UNREADABLE, out);
        };
        let kind = str_field(&data, "type")
            .or(ev.event.as_deref())
            .unwrap_or("");
        match kind {
            "message_start" => {
                let id = data.pointer("/message/id").and_then(Value::as_str);
                if let Some(id) = id.and_then(super::short_id) {
                    self.id = id.to_owned();
                }
                if let Some(u) = anthropic_usage(&data) {
                    self.usage.absorb(u);
                }
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            "content_block_start" => self.on_block_start(&data, out),
            "content_block_delta" => self.on_block_delta(&data, out),
            "message_delta" => {
                if let Some(u) = anthropic_usage(&data) {
                    self.usage.absorb(u);
                }
                if let Some(r) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.chunk(json!({}), Some(finish_reason(Some(r))), out);
                }
            }
            "message_stop" => {
                if self.include_usage {
                    let frame = json!({
                        "id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.model,
                        "choices": [], "usage": openai_usage_value(self.usage),
                    });
                    write_data(out, &frame.to_string());
                }
                write_data(out, "[DONE]");
                self.done = true;
            }
            "error" => {
                let kind = data.pointer("/error/type").and_then(Value::as_str);
                let msg = data.pointer("/error/message").and_then(Value::as_str);
                self.fail(
                    kind.unwrap_or("api_error"),
                    msg.unwrap_or("upstream error"),
                    out,
                );
            }
            _ => {} // ping, content_block_stop, future event types
        }
    }

    /// End of the upstream stream: if it did not end properly, writes an error frame.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && !self.failed {
            self.fail("api_error", TRUNCATED, out);
        }
    }

    fn on_block_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_field(block, "type") {
            Some("text") => {
                let text = str_field(block, "text").unwrap_or("");
                if !text.is_empty() {
                    self.chunk(json!({ "content": text }), None, out);
                }
            }
            Some("tool_use") => {
                let n = self.tools.len();
                self.tools.push((index, n));
                let call = json!({
                    "index": n,
                    "id": str_field(block, "id").unwrap_or(""),
                    "type": "function",
                    "function": {"name": str_field(block, "name").unwrap_or(""), "arguments": ""},
                });
                self.chunk(json!({ "tool_calls": [call] }), None, out);
            }
            _ => {} // thinking and server-tool blocks have no chat-completions equivalent
        }
    }

    fn on_block_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_field(delta, "type") {
            Some("text_delta") => {
                let text = str_field(delta, "text").unwrap_or("");
                self.chunk(json!({ "content": text }), None, out);
            }
            Some("input_json_delta") => {
                let Some(&(_, n)) = self.tools.iter().find(|(b, _)| *b == index) else {
                    return;
                };
                let part = str_field(delta, "partial_json").unwrap_or("");
                if !part.is_empty() {
                    let call = json!({"index": n, "function": {"arguments": part}});
                    self.chunk(json!({ "tool_calls": [call] }), None, out);
                }
            }
            _ => {} // thinking_delta, signature_delta, citations_delta
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let mut frame = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            frame["usage"] = Value::Null;
        }
        write_data(out, &frame.to_string());
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        self.failed = true;
        let frame =
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
        write_data(out, &frame.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_param(req: Value) -> Option<String> {
        chat_request_to_anthropic(&req).unwrap_err().param
    }

    #[test]
    fn refuses_n_and_bad_arguments() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let mut r = base.clone();
        r["n"] = json!(2);
        assert_eq!(err_param(r), Some("n".into()));
        let r = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]});
        assert_eq!(
            err_param(r),
            Some("messages[0].tool_calls[0].function.arguments".into())
        );
        let mut r = base;
        r["n"] = json!(1);
        assert!(chat_request_to_anthropic(&r).is_ok());
    }

    #[test]
    fn error_messages_do_not_quote_prompts() {
        let r = json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "SECRET"}}]}]});
        let e = chat_request_to_anthropic(&r).unwrap_err();
        assert!(!e.message.contains("SECRET"));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    #[test]
    fn defaults_and_clamps() {
        let r = json!({"model": "m", "temperature": 1.7, "stop": "END",
            "parallel_tool_calls": false, "frequency_penalty": 1,
            "messages": [{"role": "user", "content": "hi"}]});
        let out = chat_request_to_anthropic(&r).unwrap();
        assert_eq!(out["max_tokens"], json!(DEFAULT_MAX_TOKENS));
        assert_eq!(out["temperature"], json!(1.0));
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert!(out.get("frequency_penalty").is_none());
    }

    #[test]
    fn tool_results_lead_their_turn() {
        let r = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "and also"},
            {"role": "tool", "tool_call_id": "c1", "content": "done"}]});
        let out = chat_request_to_anthropic(&r).unwrap();
        let user = &out["messages"][1]["content"];
        assert_eq!(user[0]["type"], "tool_result");
        assert_eq!(user[1]["text"], "and also");
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("refusal")), "content_filter");
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn anthropic_truncated_stream_gets_error_not_done() {
        let mut s = AnthropicToOpenAiStream::new("m", false).with_created(1);
        let mut out = Vec::new();
        s.on_event(
            &ev(r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3,"output_tokens":1}}}"#),
            &mut out,
        );
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("[DONE]"));
        assert!(text.contains("\"error\""));
        assert!(!s.finished());
        assert_eq!(s.usage().prompt_tokens, 3);
    }
}
