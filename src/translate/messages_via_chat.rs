//! An Anthropic Messages client (`/v1/messages`, e.g. Claude Code) served by an OpenAI-kind
//! upstream, both directions: the Messages request goes out as a chat request
//! ([`anthropic_request_to_chat`]), the `chat.completion` comes back as a Messages response
//! ([`chat_response_to_anthropic`]) and a chat stream as Messages events
//! ([`OpenAiToAnthropicStream`]). Pure functions and one stream state machine.
//!
//! # Anthropic Messages request → OpenAI chat request
//!
//! | Anthropic field | OpenAI | Note |
//! |---|---|---|
//! | `system` (string or text blocks) | first `system` message | `cache_control` dropped |
//! | `messages[].role = system` (Claude Code) | `system` message in place | |
//! | `text` / `image` (base64 or url) / `document` (base64 PDF or text) blocks | content parts | |
//! | `tool_use` blocks | assistant `tool_calls` | `input` serialized to `arguments` |
//! | `tool_result` blocks | `tool` messages before the rest of the turn | text joined; images moved to a following user message |
//! | `thinking`, `redacted_thinking` blocks | — | dropped |
//! | other block types | — | **refused** (400) |
//! | `tools` (custom) | function tools | server tools (`web_search_…`, `bash_…`, …) → 400 |
//! | `tool_choice` auto / any / tool / none | `auto` / `required` / named / `none` | `disable_parallel_tool_use` → `parallel_tool_calls: false` |
//! | `max_tokens`, `temperature`, `top_p` | same | |
//! | `stop_sequences` | `stop` | |
//! | `stream: true` | `stream`, `stream_options: {include_usage: true}` | |
//! | `top_k`, `thinking`, `context_management`, `output_config`, `metadata`, `service_tier`, `container`, `mcp_servers`, anything else | — | dropped |
//!
//! # OpenAI `chat.completion` → Anthropic response
//!
//! `content` → one `text` block, `tool_calls` → `tool_use` blocks (arguments that are not a
//! JSON object become `{}`); `finish_reason` stop → `end_turn`, length → `max_tokens`,
//! tool_calls / function_call → `tool_use`, content_filter → `refusal`; usage mapped back
//! (`prompt_tokens_details.cached_tokens` → `cache_read_input_tokens`).

use super::{
    BadUpstream, TRUNCATED, TranslateError, UNREADABLE, Usage, openai_usage, plain_text, str_field,
};
use crate::sse::{SseEvent, write_event};
use serde_json::{Map, Value, json};

/// Anthropic Messages request → OpenAI chat completion request. `model` is copied as given:
/// the caller replaces it with the upstream model name.
pub fn anthropic_request_to_chat(req: &Value) -> Result<Value, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::new("request body must be a JSON object", "body"))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("'messages' must be an array", "messages"))?;

    let mut out_msgs = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = req.get("system") {
        let text = plain_text(system, "\n\n");
        if !text.is_empty() {
            out_msgs.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let content = m.get("content").unwrap_or(&Value::Null);
        match str_field(m, "role") {
            Some("system") => {
                out_msgs.push(json!({"role": "system", "content": plain_text(content, "\n\n")}));
            }
            Some("user") => user_messages(content, &param, &mut out_msgs)?,
            Some("assistant") => out_msgs.push(assistant_message(content, &param)?),
            _ => {
                return Err(TranslateError::new(
                    "role must be 'user' or 'assistant'",
                    format!("{param}.role"),
                ));
            }
        }
    }

    let mut out = Map::new();
    out.insert(
        "model".into(),
        req.get("model").cloned().unwrap_or(Value::Null),
    );
    out.insert("messages".into(), Value::Array(out_msgs));
    for key in ["max_tokens", "temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = req.get("stop_sequences").and_then(Value::as_array)
        && !stops.is_empty()
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    let has_tools = match req.get("tools").and_then(Value::as_array) {
        Some(tools) if !tools.is_empty() => {
            out.insert("tools".into(), tools_to_openai(tools)?);
            true
        }
        _ => false,
    };
    if let Some(choice) = req.get("tool_choice").filter(|c| !c.is_null()) {
        let (c, parallel) = tool_choice_to_openai(choice)?;
        out.insert("tool_choice".into(), c);
        if has_tools && parallel == Some(false) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

/// One Anthropic user turn → `tool` messages (one per `tool_result`, first, as OpenAI
/// requires them right after the assistant's calls) then a user message with the rest.
fn user_messages(content: &Value, param: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(TranslateError::new(
                "content must be a string or an array of blocks",
                format!("{param}.content"),
            ));
        }
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let p = format!("{param}.content[{j}]");
        if str_field(b, "type") == Some("tool_result") {
            let id = str_field(b, "tool_use_id").ok_or_else(|| {
                TranslateError::new("tool_result has no tool_use_id", format!("{p}.tool_use_id"))
            })?;
            let (text, images) = tool_result_content(b.get("content"), &p)?;
            out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            parts.extend(images);
        } else if let Some(part) = block_to_part(b, &p)? {
            parts.push(part);
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// A `tool_result`'s content as text for the `tool` message, plus any images (which OpenAI
/// tool messages cannot hold) as parts for a following user message.
fn tool_result_content(
    content: Option<&Value>,
    param: &str,
) -> Result<(String, Vec<Value>), TranslateError> {
    let Some(Value::Array(blocks)) = content else {
        return Ok((
            content.map(|c| plain_text(c, "\n")).unwrap_or_default(),
            Vec::new(),
        ));
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for (k, b) in blocks.iter().enumerate() {
        match str_field(b, "type") {
            Some("text") => texts.push(str_field(b, "text").unwrap_or("")),
            Some("image" | "document") => {
                images.extend(block_to_part(b, &format!("{param}.content[{k}]"))?);
            }
            _ => {}
        }
    }
    Ok((texts.join("\n"), images))
}

/// A user-side content block → an OpenAI content part (`None` for dropped blocks).
fn block_to_part(b: &Value, param: &str) -> Result<Option<Value>, TranslateError> {
    match str_field(b, "type") {
        Some("text") => Ok(Some(
            json!({"type": "text", "text": str_field(b, "text").unwrap_or("")}),
        )),
        Some("image") => {
            let url = source_url(b.get("source"), param)?;
            Ok(Some(
                json!({"type": "image_url", "image_url": {"url": url}}),
            ))
        }
        Some("document") => {
            let src = b.get("source").unwrap_or(&Value::Null);
            if str_field(src, "type") == Some("text") {
                let text = str_field(src, "data").unwrap_or("");
                return Ok(Some(json!({"type": "text", "text": text})));
            }
            let url = source_url(Some(src), param)?;
            let mut file = json!({"file_data": url});
            if let Some(title) = str_field(b, "title") {
                file["filename"] = json!(title);
            }
            Ok(Some(json!({"type": "file", "file": file})))
        }
        Some("thinking" | "redacted_thinking") => Ok(None),
        _ => Err(unsupported_block(param)),
    }
}

fn unsupported_block(param: &str) -> TranslateError {
    TranslateError::new(
        "content block type is not supported for this model",
        format!("{param}.type"),
    )
}

/// Anthropic image/document source → URL (a `data:` URL for base64 sources).
fn source_url(source: Option<&Value>, param: &str) -> Result<String, TranslateError> {
    let src = source.unwrap_or(&Value::Null);
    match str_field(src, "type") {
        Some("base64") => {
            let media = str_field(src, "media_type").unwrap_or("application/octet-stream");
            let data = str_field(src, "data").unwrap_or("");
            Ok(format!("data:{media};base64,{data}"))
        }
        Some("url") => str_field(src, "url").map(str::to_owned).ok_or_else(|| {
            TranslateError::new("url source has no url", format!("{param}.source.url"))
        }),
        _ => Err(TranslateError::new(
            "only base64 and url sources are supported for this model",
            format!("{param}.source.type"),
        )),
    }
}

fn assistant_message(content: &Value, param: &str) -> Result<Value, TranslateError> {
    let blocks = match content {
        Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
        Value::Array(b) => b,
        _ => {
            return Err(TranslateError::new(
                "content must be a string or an array of blocks",
                format!("{param}.content"),
            ));
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
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
            Some("thinking" | "redacted_thinking") => {}
            _ => return Err(unsupported_block(&format!("{param}.content[{j}]"))),
        }
    }
    let mut msg = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            msg["content"] = Value::Null;
        }
        msg["tool_calls"] = Value::Array(calls);
    }
    Ok(msg)
}

fn tools_to_openai(tools: &[Value]) -> Result<Value, TranslateError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if !matches!(str_field(t, "type"), None | Some("custom")) {
            return Err(TranslateError::new(
                "server tools are not supported for this model",
                format!("tools[{i}].type"),
            ));
        }
        let name = str_field(t, "name")
            .ok_or_else(|| TranslateError::new("tool has no name", format!("tools[{i}].name")))?;
        let mut f = json!({
            "name": name,
            "parameters": t.get("input_schema").cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
        if let Some(d) = str_field(t, "description") {
            f["description"] = json!(d);
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

/// Anthropic `tool_choice` → OpenAI `tool_choice` and the `parallel_tool_calls` it implies.
fn tool_choice_to_openai(choice: &Value) -> Result<(Value, Option<bool>), TranslateError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let c = match str_field(choice, "type") {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = str_field(choice, "name").ok_or_else(|| {
                TranslateError::new("tool_choice of type tool needs a name", "tool_choice.name")
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(TranslateError::new(
                "unknown tool_choice type",
                "tool_choice.type",
            ));
        }
    };
    Ok((c, parallel))
}

/// OpenAI finish reason → Anthropic stop reason.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Parsed tool arguments for a `tool_use.input`; anything but a JSON object becomes `{}`
/// (the model produced malformed arguments; the client's tool then reports missing fields).
pub(crate) fn tool_input(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// Anthropic `usage` object from an OpenAI `usage` object.
pub(crate) fn anthropic_usage_value(usage: Option<&Value>) -> Value {
    let n = |p: &str| {
        usage
            .and_then(|u| u.pointer(p))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = n("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": n("/prompt_tokens").saturating_sub(cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": n("/completion_tokens"),
    })
}

/// OpenAI `chat.completion` → Anthropic Messages response; `model` is the name reported.
pub fn chat_response_to_anthropic(resp: &Value, model: &str) -> Result<Value, BadUpstream> {
    let choice = resp
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or(BadUpstream("chat completion has no choices"))?;
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = plain_text(msg.get("content").unwrap_or(&Value::Null), "");
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": str_field(call, "id").unwrap_or(""),
            "name": str_field(f, "name").unwrap_or(""),
            "input": tool_input(str_field(f, "arguments").unwrap_or("")),
        }));
    }
    let id = str_field(resp, "id").unwrap_or("");
    Ok(json!({
        "id": message_id(id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(str_field(choice, "finish_reason")),
        "stop_sequence": null,
        "usage": anthropic_usage_value(resp.get("usage")),
    }))
}

/// An Anthropic-looking message id for an upstream completion id.
pub(crate) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// Which Anthropic content block is open while translating an OpenAI stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u64),
    Tool(u64),
}

/// OpenAI-kind upstream chunks → Anthropic Messages stream events.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model: String,
    started: bool,
    next_block: u64,
    open: Open,
    /// (OpenAI tool call index, its call id, Anthropic content block index); the latest
    /// entry wins when an upstream reuses an index for a new call.
    tools: Vec<(u64, String, u64)>,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
}

impl OpenAiToAnthropicStream {
    /// `model` is the name reported to the client in `message_start`.
    pub fn new(model: &str) -> Self {
        OpenAiToAnthropicStream {
            model: model.to_owned(),
            started: false,
            next_block: 0,
            open: Open::None,
            tools: Vec::new(),
            stop_reason: None,
            usage: None,
            done: false,
            failed: false,
        }
    }

    /// Token counts from the upstream's usage chunk (zero until it arrives).
    pub fn usage(&self) -> Usage {
        self.usage
            .as_ref()
            .and_then(|u| openai_usage(&json!({ "usage": u })))
            .unwrap_or_default()
    }

    /// True once the message ended properly (finish reason seen, `message_stop` written).
    pub fn finished(&self) -> bool {
        self.done
    }

    /// True once the stream was ended with an error event; nothing more will be written.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Translates one upstream event, appending complete Anthropic SSE frames to `out`.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        if ev.data.trim() == "[DONE]" {
            return self.finish(out);
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
            return self.fail("api_error", UNREADABLE, out);
        };
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let msg = str_field(err, "message").unwrap_or("upstream error");
            return self.fail("api_error", msg, out);
        }
        if !self.started {
            self.start(str_field(&chunk, "id").unwrap_or(""), out);
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        let Some(choice) = choice else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = str_field(delta, "content").filter(|t| !t.is_empty()) {
            self.text(text, out);
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (pos, call) in calls.into_iter().flatten().enumerate() {
            self.tool_call(call, pos as u64, out);
        }
        if let Some(r) = str_field(choice, "finish_reason") {
            self.close_open(out);
            self.stop_reason = Some(stop_reason(Some(r)));
        }
    }

    /// End of the upstream stream (or `[DONE]`): ends the message if a finish reason was
    /// seen, else writes an `error` event rather than inventing `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        let Some(reason) = self.stop_reason else {
            return self.fail("api_error", TRUNCATED, out);
        };
        self.close_open(out);
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": null},
            "usage": anthropic_usage_value(self.usage.as_ref()),
        });
        event(out, "message_delta", &delta);
        event(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        self.started = true;
        let msg = json!({
            "type": "message_start",
            "message": {
                "id": message_id(id), "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        event(out, "message_start", &msg);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                self.close_open(out);
                let i = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Open::Text(i);
                i
            }
        };
        let delta = json!({"type": "text_delta", "text": text});
        block_delta(out, index, delta);
    }

    fn tool_call(&mut self, call: &Value, pos: u64, out: &mut Vec<u8>) {
        let oa_index = call.get("index").and_then(Value::as_u64).unwrap_or(pos);
        let new_id = str_field(call, "id").filter(|id| !id.is_empty());
        // Some upstreams give every parallel call index 0: a different id means a new call.
        let known = self
            .tools
            .iter()
            .rev()
            .find(|(o, _, _)| *o == oa_index)
            .filter(|(_, id, _)| new_id.is_none_or(|n| n == id))
            .map(|&(_, _, b)| b);
        let f = call.get("function").unwrap_or(&Value::Null);
        let block = match known {
            Some(b) => b,
            None => {
                self.close_open(out);
                let id = new_id.map_or_else(
                    || format!("call_{}_{oa_index}", self.next_block),
                    str::to_owned,
                );
                let name = str_field(f, "name").unwrap_or("");
                let b = self.open_block(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
                self.tools.push((oa_index, id, b));
                self.open = Open::Tool(b);
                b
            }
        };
        // A late delta for an already closed call (interleaving upstreams) still goes to its
        // own block index; Anthropic SDKs accumulate by index.
        if let Some(args) = str_field(f, "arguments").filter(|a| !a.is_empty()) {
            block_delta(
                out,
                block,
                json!({"type": "input_json_delta", "partial_json": args}),
            );
        }
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<u8>) -> u64 {
        let i = self.next_block;
        self.next_block += 1;
        let start = json!({"type": "content_block_start", "index": i, "content_block": block});
        event(out, "content_block_start", &start);
        i
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Open::Text(i) | Open::Tool(i) = self.open {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": i}),
            );
        }
        self.open = Open::None;
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        self.failed = true;
        let e = json!({"type": "error", "error": {"type": kind, "message": message}});
        event(out, "error", &e);
    }
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    write_event(out, Some(name), &data.to_string());
}

fn block_delta(out: &mut Vec<u8>, index: u64, delta: Value) {
    let d = json!({"type": "content_block_delta", "index": index, "delta": delta});
    event(out, "content_block_delta", &d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_come_first_and_images_follow() {
        let r = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "ok"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}
        ]}]});
        let out = anthropic_request_to_chat(&r).unwrap();
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(
            msgs[0],
            json!({"role": "tool", "tool_call_id": "t1", "content": "ok"})
        );
        assert_eq!(msgs[1]["content"][0]["text"], "see");
        assert_eq!(
            msgs[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA=="
        );
    }

    #[test]
    fn unknown_blocks_and_server_tools_are_refused() {
        let r = json!({"messages": [{"role": "user", "content": [{"type": "mystery"}]}]});
        let e = anthropic_request_to_chat(&r).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        let r = json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
        let e = anthropic_request_to_chat(&r).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    }

    #[test]
    fn stop_reasons_map_back() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
    }

    #[test]
    fn malformed_arguments_become_empty_input() {
        assert_eq!(tool_input("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(tool_input("[1]"), json!({}));
        assert_eq!(tool_input("{oops"), json!({}));
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn openai_done_without_finish_is_an_error_event() {
        let mut s = OpenAiToAnthropicStream::new("m");
        let mut out = Vec::new();
        s.on_event(
            &ev(r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#),
            &mut out,
        );
        s.on_event(&ev("[DONE]"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("event: error"));
        assert!(!text.contains("message_stop"));
        assert!(!s.finished());
    }

    #[test]
    fn reused_index_with_new_id_is_a_new_tool_call() {
        let mut s = OpenAiToAnthropicStream::new("m");
        let mut out = Vec::new();
        for (id, args) in [("a", "{\"x\":1}"), ("b", "{\"y\":2}")] {
            let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": id, "type": "function",
                 "function": {"name": "f", "arguments": args}}]}}]});
            s.on_event(&ev(&chunk.to_string()), &mut out);
        }
        s.on_event(
            &ev(r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#),
            &mut out,
        );
        s.on_event(&ev("[DONE]"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("event: content_block_start").count(), 2);
        assert!(text.contains(r#""id":"b""#));
        assert!(s.finished());
    }

    #[test]
    fn garbage_event_fails_the_stream() {
        let mut s = OpenAiToAnthropicStream::new("m");
        let mut out = Vec::new();
        s.on_event(&ev("{not json"), &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("event: error\n")
        );
    }
}
