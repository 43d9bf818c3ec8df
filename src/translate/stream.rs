//! Streaming translation as two small state machines, one per translated response.
//!
//! Each takes one upstream SSE event (already parsed by [`crate::sse::SseParser`]) and writes
//! the complete client frames it yields; nothing is buffered beyond the current event, so
//! each client frame can be flushed as soon as its upstream event arrives.
//!
//! State owned: the message id, token counts, which content block / tool call is open and
//! whether the stream ended properly. A stream that ends without its proper end (no
//! `message_stop`, or `[DONE]` without a finish reason) is never made to look complete: the
//! client gets an error frame instead, and [`AnthropicToOpenAiStream::finished`] /
//! [`OpenAiToAnthropicStream::finished`] stay false.

use super::anthropic_to_openai::{anthropic_usage_value, message_id, stop_reason};
use super::openai_to_anthropic::{finish_reason, openai_usage_value};
use super::{Usage, anthropic_usage, openai_usage, str_field};
use crate::sse::{SseEvent, write_data, write_event};
use serde_json::{Value, json};

const TRUNCATED: &str = "upstream stream ended before the answer was complete";
const UNREADABLE: &str = "upstream sent an unreadable stream event";

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
    /// for the final usage chunk (`stream_options.include_usage`, see
    /// [`super::wants_usage`]). Chunks are stamped with the current time.
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
                    self.usage = u;
                }
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            "content_block_start" => self.on_block_start(&data, out),
            "content_block_delta" => self.on_block_delta(&data, out),
            "message_delta" => {
                if let Some(u) = data.get("usage").filter(|u| u.is_object()) {
                    let prompt = anthropic_usage(&json!({ "usage": u })).unwrap_or_default();
                    if prompt.prompt_tokens > 0 {
                        self.usage.prompt_tokens = prompt.prompt_tokens;
                    }
                    self.usage.completion_tokens = prompt.completion_tokens;
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
