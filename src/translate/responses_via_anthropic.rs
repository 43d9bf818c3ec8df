//! An OpenAI Responses API client (`/v1/responses`, Codex CLI) served by an Anthropic
//! upstream, both directions: the request is lifted into a chat request and then translated
//! like chat ([`responses_request_to_anthropic`]); the Messages response comes back as a
//! Responses `response` object ([`anthropic_response_to_responses`]), and a Messages stream as
//! Responses events ([`AnthropicToResponsesStream`]).
//!
//! | Responses field | Mapped to | Note |
//! |---|---|---|
//! | `instructions` | Anthropic `system` | before any system/developer input items |
//! | `input` string | one user message | |
//! | message items (`user`, `assistant`, `system`, `developer`) | chat messages | parts `input_text`, `output_text`, `input_image`, `input_file`, `refusal` |
//! | `function_call` items | assistant `tool_use` | `arguments` must be a JSON object, else 400 |
//! | `function_call_output` items | user `tool_result` | |
//! | `reasoning` items | — | dropped |
//! | other items (`item_reference`, built-in tool calls, …) | — | **400** |
//! | `tools` of type `function` | Anthropic tools | |
//! | other offered `tools` (`web_search`, `namespace`, `custom`, `file_search`, MCP, …) | — | dropped: the upstream cannot run them (Codex CLI always offers some); calls of them in `input` → **400** |
//! | `tool_choice`, `parallel_tool_calls`, `temperature`, `top_p`, `stream`, `user` | as for chat | |
//! | `max_output_tokens` | `max_tokens` | default [`super::DEFAULT_MAX_TOKENS`] |
//! | `previous_response_id`, `conversation` | — | **400**: the gateway keeps no conversation state |
//! | `store`, `reasoning`, `text`, `include`, `metadata`, `truncation`, `prompt_cache_key`, `service_tier`, `background`, anything else | — | dropped |
//!
//! Streaming: one output batch per upstream event. State owned: the response id, the output
//! items finished so far and the one being streamed (the protocol's `*.done` events and the
//! final `response.completed` repeat the full text, so the output is kept until the end, as the
//! upstream's own answer is), token counts, and whether the stream ended properly. A stream
//! that ends without `message_stop` gets an `error` event, never `response.completed`.

use super::chat_via_anthropic::chat_request_to_anthropic;
use super::{BadUpstream, TranslateError, Usage, anthropic_usage, str_field};
use crate::sse::{SseEvent, write_event};
use serde_json::{Map, Value, json};

/// Responses API request → Anthropic Messages request.
pub fn responses_request_to_anthropic(req: &Value) -> Result<Value, TranslateError> {
    chat_request_to_anthropic(&responses_request_to_chat(req)?)
}

/// Responses API request → the equivalent chat completion request (intermediate step,
/// also usable towards chat-only upstreams).
pub fn responses_request_to_chat(req: &Value) -> Result<Value, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::new("request body must be a JSON object", "body"))?;
    for stateful in ["previous_response_id", "conversation"] {
        if req.get(stateful).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::new(
                "stored conversation state is not supported for this model; send the full input",
                stateful,
            ));
        }
    }
    let mut messages = Vec::new();
    if let Some(text) = req.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": text}));
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                messages.extend(item_to_message(item, &format!("input[{i}]"))?);
            }
        }
        _ => {
            return Err(TranslateError::new(
                "'input' must be a string or an array of items",
                "input",
            ));
        }
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        req.get("model").cloned().unwrap_or(Value::Null),
    );
    out.insert("messages".into(), Value::Array(messages));
    if let Some(v) = req.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), v.clone());
    }
    for key in [
        "temperature",
        "top_p",
        "stream",
        "parallel_tool_calls",
        "user",
    ] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools = tools_to_chat(tools);
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    match req.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("tool_choice".into(), json!(s));
        }
        Some(c) => {
            let name = str_field(c, "name").filter(|_| str_field(c, "type") == Some("function"));
            let name = name.ok_or_else(|| {
                TranslateError::new("only function tool_choice is supported", "tool_choice")
            })?;
            let choice = json!({"type": "function", "function": {"name": name}});
            out.insert("tool_choice".into(), choice);
        }
    }
    Ok(Value::Object(out))
}

/// One input item → zero or one chat message.
fn item_to_message(item: &Value, param: &str) -> Result<Option<Value>, TranslateError> {
    let kind = str_field(item, "type").unwrap_or("message");
    match kind {
        "message" => {
            let role = str_field(item, "role").unwrap_or("user");
            let content = match item.get("content") {
                Some(Value::String(s)) => json!(s),
                Some(Value::Array(parts)) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        out.push(part_to_chat(p, &format!("{param}.content[{j}]"))?);
                    }
                    Value::Array(out)
                }
                _ => {
                    return Err(TranslateError::new(
                        "content must be a string or an array of parts",
                        format!("{param}.content"),
                    ));
                }
            };
            Ok(Some(json!({"role": role, "content": content})))
        }
        "function_call" => {
            let call_id = str_field(item, "call_id").ok_or_else(|| {
                TranslateError::new("function_call has no call_id", format!("{param}.call_id"))
            })?;
            let args = str_field(item, "arguments").unwrap_or("");
            let parsed = serde_json::from_str::<Value>(args).ok();
            if !args.trim().is_empty() && !parsed.as_ref().is_some_and(Value::is_object) {
                return Err(TranslateError::new(
                    "function arguments must be a JSON object",
                    format!("{param}.arguments"),
                ));
            }
            let call = json!({"id": call_id, "type": "function", "function": {
                "name": str_field(item, "name").unwrap_or(""), "arguments": args}});
            Ok(Some(
                json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            ))
        }
        "function_call_output" => {
            let call_id = str_field(item, "call_id").ok_or_else(|| {
                TranslateError::new(
                    "function_call_output has no call_id",
                    format!("{param}.call_id"),
                )
            })?;
            let output = match item.get("output") {
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| str_field(p, "text"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            Ok(Some(
                json!({"role": "tool", "tool_call_id": call_id, "content": output}),
            ))
        }
        "reasoning" => Ok(None),
        _ => Err(TranslateError::new(
            "input item type is not supported for this model",
            format!("{param}.type"),
        )),
    }
}

fn part_to_chat(p: &Value, param: &str) -> Result<Value, TranslateError> {
    match str_field(p, "type") {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": str_field(p, "text").unwrap_or("")}))
        }
        Some("refusal") => {
            Ok(json!({"type": "text", "text": str_field(p, "refusal").unwrap_or("")}))
        }
        Some("input_image") => {
            let url = str_field(p, "image_url").ok_or_else(|| {
                TranslateError::new(
                    "only images given by image_url are supported for this model",
                    format!("{param}.image_url"),
                )
            })?;
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        Some("input_file") => {
            let data = str_field(p, "file_data").ok_or_else(|| {
                TranslateError::new(
                    "only inline files (file_data) are supported for this model",
                    format!("{param}.file_data"),
                )
            })?;
            Ok(json!({"type": "file", "file": {"file_data": data}}))
        }
        _ => Err(TranslateError::new(
            "content part type is not supported for this model",
            format!("{param}.type"),
        )),
    }
}

/// The offered function tools as chat tools. Hosted and other non-function tools (Codex
/// CLI offers `web_search` and a `namespace` of agent tools on every turn) are left out: an
/// Anthropic upstream cannot run them, and refusing them would make such clients unusable.
fn tools_to_chat(tools: &[Value]) -> Vec<Value> {
    tools
        .iter()
        .filter(|t| str_field(t, "type") == Some("function"))
        .map(|t| {
            let mut f = json!({"name": str_field(t, "name").unwrap_or("")});
            for key in ["description", "parameters"] {
                if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                    f[key] = v.clone();
                }
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

/// Responses `usage` object for token counts.
pub(crate) fn responses_usage_value(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// `status` and `incomplete_details` for an Anthropic stop reason.
pub(crate) fn status_for(stop_reason: Option<&str>) -> (&'static str, Value) {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => {
            ("incomplete", json!({"reason": "max_output_tokens"}))
        }
        Some("refusal") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Response id for an Anthropic message id (`msg_X` → `resp_X`).
pub(crate) fn response_id(message_id: &str) -> String {
    format!(
        "resp_{}",
        message_id.strip_prefix("msg_").unwrap_or(message_id)
    )
}

/// A Responses `response` object shell; `output`, `usage`, `status` filled by the caller.
pub(crate) fn response_object(id: &str, model: &str, created: u64) -> Value {
    json!({
        "id": id, "object": "response", "created_at": created, "status": "in_progress",
        "error": null, "incomplete_details": null, "instructions": null,
        "model": model, "output": [], "parallel_tool_calls": true,
        "temperature": null, "top_p": null, "tool_choice": "auto", "tools": [],
        "metadata": {}, "usage": null,
    })
}

/// A completed `message` output item holding `text`.
pub(crate) fn message_item(id: &str, text: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

/// A completed `function_call` output item.
pub(crate) fn function_call_item(call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
        "name": name, "arguments": arguments, "status": "completed",
    })
}

/// Anthropic Messages response → Responses API `response` object.
pub fn anthropic_response_to_responses(
    resp: &Value,
    model: &str,
    created: u64,
) -> Result<Value, BadUpstream> {
    let blocks = super::anthropic_content(resp)?;
    let msg_id = str_field(resp, "id").unwrap_or("");
    let mut output = Vec::new();
    for b in blocks {
        match str_field(b, "type") {
            Some("text") => {
                let text = str_field(b, "text").unwrap_or("");
                let item_id = format!("{msg_id}_{}", output.len()); // as the stream names it
                output.push(message_item(&item_id, text));
            }
            Some("tool_use") => {
                let args = b.get("input").map_or_else(|| "{}".into(), Value::to_string);
                let id = str_field(b, "id").unwrap_or("");
                output.push(function_call_item(
                    id,
                    str_field(b, "name").unwrap_or(""),
                    &args,
                ));
            }
            _ => {}
        }
    }
    let (status, incomplete) = status_for(str_field(resp, "stop_reason"));
    let usage = anthropic_usage(resp).unwrap_or_default();
    let mut out = response_object(&response_id(msg_id), model, created);
    out["status"] = json!(status);
    out["incomplete_details"] = incomplete;
    out["output"] = Value::Array(output);
    out["usage"] = responses_usage_value(usage);
    Ok(out)
}

/// The output item being streamed.
#[derive(Debug)]
enum Item {
    Text {
        id: String,
        text: String,
    },
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Anthropic upstream events → Responses API events (`event: response.…` frames).
#[derive(Debug)]
pub struct AnthropicToResponsesStream {
    model: String,
    created: u64,
    msg_id: String,
    seq: u64,
    output: Vec<Value>,
    current: Option<(u64, Item)>,
    usage: Usage,
    stop_reason: Option<String>,
    done: bool,
    failed: bool,
}

impl AnthropicToResponsesStream {
    /// `model` is the name reported to the client; events are stamped with the current time.
    pub fn new(model: &str) -> Self {
        let created = crate::clock::unix_secs();
        AnthropicToResponsesStream {
            model: model.to_owned(),
            created,
            msg_id: String::new(),
            seq: 0,
            output: Vec::new(),
            current: None,
            usage: Usage::default(),
            stop_reason: None,
            done: false,
            failed: false,
        }
    }

    /// Stamps the response with `created` instead of the current time (tests, replay).
    pub fn with_created(mut self, created: u64) -> Self {
        self.created = created;
        self
    }

    /// Token counts seen so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// True once `message_stop` arrived and `response.completed` (or `.incomplete`) was sent.
    pub fn finished(&self) -> bool {
        self.done
    }

    /// True once the stream was ended with an error event; nothing more will be written.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Translates one upstream event, appending complete SSE frames to `out`.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
            return self.fail("upstream sent an unreadable stream event", out);
        };
        match str_field(&data, "type")
            .or(ev.event.as_deref())
            .unwrap_or("")
        {
            "message_start" => {
                let id = data.pointer("/message/id").and_then(Value::as_str);
                if let Some(id) = id.and_then(super::short_id) {
                    self.msg_id = id.to_owned();
                }
                self.record_usage(data.pointer("/message/usage"));
                let resp = self.response("in_progress", Value::Null);
                self.emit(out, "response.created", json!({ "response": resp }));
                let resp = self.response("in_progress", Value::Null);
                self.emit(out, "response.in_progress", json!({ "response": resp }));
            }
            "content_block_start" => self.on_block_start(&data, out),
            "content_block_delta" => self.on_block_delta(&data, out),
            "content_block_stop" => self.close_item(out),
            "message_delta" => {
                self.record_usage(data.get("usage"));
                if let Some(r) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_owned());
                }
            }
            "message_stop" => {
                self.close_item(out);
                let (status, incomplete) = status_for(self.stop_reason.as_deref());
                let mut resp = self.response(status, incomplete);
                resp["usage"] = responses_usage_value(self.usage);
                let name = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                self.emit(out, name, json!({ "response": resp }));
                self.done = true;
            }
            "error" => {
                let msg = data.pointer("/error/message").and_then(Value::as_str);
                self.fail(msg.unwrap_or("upstream error"), out);
            }
            _ => {} // ping and future event types
        }
    }

    /// End of the upstream stream: if it did not end properly, writes an `error` event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && !self.failed {
            self.fail("upstream stream ended before the answer was complete", out);
        }
    }

    fn record_usage(&mut self, usage: Option<&Value>) {
        let Some(u) = usage.filter(|u| u.is_object()) else {
            return;
        };
        let counts = anthropic_usage(&json!({ "usage": u })).unwrap_or_default();
        self.usage.absorb(counts);
    }

    fn on_block_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        self.close_item(out);
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let index = self.output.len() as u64;
        let item = match str_field(block, "type") {
            Some("text") => {
                let id = format!("{}_{index}", self.msg_id);
                let added = json!({"type": "message", "id": id, "status": "in_progress",
                    "role": "assistant", "content": []});
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "part": part}),
                );
                Item::Text {
                    id,
                    text: String::new(),
                }
            }
            Some("tool_use") => {
                let call_id = str_field(block, "id").unwrap_or("").to_owned();
                let name = str_field(block, "name").unwrap_or("").to_owned();
                let mut added = function_call_item(&call_id, &name, "");
                added["status"] = json!("in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                Item::Call {
                    call_id,
                    name,
                    arguments: String::new(),
                }
            }
            _ => return, // thinking and server-tool blocks are not surfaced
        };
        self.current = Some((index, item));
    }

    fn on_block_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let Some((index, item)) = self.current.as_mut() else {
            return;
        };
        let index = *index;
        let frame = match (item, str_field(delta, "type")) {
            (Item::Text { id, text }, Some("text_delta")) => {
                let d = str_field(delta, "text").unwrap_or("");
                text.push_str(d);
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": d, "logprobs": []})
            }
            (
                Item::Call {
                    call_id, arguments, ..
                },
                Some("input_json_delta"),
            ) => {
                let d = str_field(delta, "partial_json").unwrap_or("");
                if d.is_empty() {
                    return;
                }
                arguments.push_str(d);
                json!({"item_id": format!("fc_{call_id}"), "output_index": index, "delta": d})
            }
            _ => return,
        };
        let name = if frame.get("content_index").is_some() {
            "response.output_text.delta"
        } else {
            "response.function_call_arguments.delta"
        };
        self.emit(out, name, frame);
    }

    fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some((index, item)) = self.current.take() else {
            return;
        };
        let done = match item {
            Item::Text { id, text } => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "part": part}),
                );
                message_item(&id, &text)
            }
            Item::Call {
                call_id,
                name,
                arguments,
            } => {
                let args = if arguments.is_empty() {
                    "{}".to_owned()
                } else {
                    arguments
                };
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({
                    "item_id": format!("fc_{call_id}"), "output_index": index, "arguments": args}),
                );
                function_call_item(&call_id, &name, &args)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.output.push(done);
    }

    fn response(&self, status: &str, incomplete: Value) -> Value {
        let mut r = response_object(&response_id(&self.msg_id), &self.model, self.created);
        r["status"] = json!(status);
        r["incomplete_details"] = incomplete;
        r["output"] = Value::Array(self.output.clone());
        r
    }

    fn emit(&mut self, out: &mut Vec<u8>, name: &str, mut body: Value) {
        body["type"] = json!(name);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        write_event(out, Some(name), &body.to_string());
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.failed = true;
        let body = json!({"code": "upstream_error", "message": message, "param": null});
        self.emit(out, "error", body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_input_and_instructions() {
        let r = json!({"model": "m", "instructions": "Be terse.", "input": "Hi",
            "max_output_tokens": 50, "store": false, "reasoning": {"effort": "low"}});
        let out = responses_request_to_anthropic(&r).unwrap();
        assert_eq!(out["system"], "Be terse.");
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["messages"][0]["content"][0]["text"], "Hi");
        assert!(out.get("reasoning").is_none());
    }

    #[test]
    fn stateful_requests_are_refused() {
        let r = json!({"input": "x", "previous_response_id": "resp_1"});
        let e = responses_request_to_anthropic(&r).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
        let r = json!({"input": [{"type": "item_reference", "id": "x"}]});
        let e = responses_request_to_anthropic(&r).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
    }

    #[test]
    fn non_function_tools_are_left_out() {
        let r = json!({"input": "x", "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "web_search", "external_web_access": false},
            {"type": "namespace", "name": "multi_agent_v1", "tools": []}]});
        let out = responses_request_to_anthropic(&r).unwrap();
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["tools"][0]["name"], "exec_command");
        let r = json!({"input": "x", "tools": [{"type": "web_search"}]});
        assert!(
            responses_request_to_anthropic(&r)
                .unwrap()
                .get("tools")
                .is_none()
        );
    }

    #[test]
    fn max_tokens_is_incomplete() {
        let r = json!({"id": "msg_1", "content": [{"type": "text", "text": "a"}],
            "stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 2}});
        let out = anthropic_response_to_responses(&r, "m", 5).unwrap();
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(out["id"], "resp_1");
        assert_eq!(out["usage"]["total_tokens"], 3);
    }
}
