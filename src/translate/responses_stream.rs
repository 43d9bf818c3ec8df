//! Anthropic upstream stream → OpenAI Responses API stream events (`/v1/responses` with
//! `stream: true` routed to an `anthropic` target).
//!
//! One output batch per upstream event. State owned: the response id, the output items
//! finished so far and the one being streamed (the protocol's `*.done` events and the final
//! `response.completed` repeat the full text, so the output is kept until the end, as the
//! upstream's own answer is), token counts, and whether the stream ended properly. A stream
//! that ends without `message_stop` gets an `error` event, never `response.completed`.

use super::responses::{
    function_call_item, message_item, response_id, response_object, responses_usage_value,
    status_for,
};
use super::{Usage, anthropic_usage, str_field};
use crate::sse::{SseEvent, write_event};
use serde_json::{Value, json};

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
    cached: u64,
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
            cached: 0,
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
                resp["usage"] = responses_usage_value(self.usage, self.cached);
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
        if counts.prompt_tokens > 0 {
            self.usage.prompt_tokens = counts.prompt_tokens;
            self.cached = u
                .get("cache_read_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        self.usage.completion_tokens = self.usage.completion_tokens.max(counts.completion_tokens);
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
