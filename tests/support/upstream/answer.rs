//! What the fake model says, written out in each provider's wire format: OpenAI chat
//! completions, the OpenAI Responses API and Anthropic Messages, whole (JSON) or streamed (SSE
//! event blocks). The shapes follow the providers' documentation — ids, usage details, event
//! order — so the official SDKs parse them. Every script of the fake answers through here; the
//! scripts decide what to say, how many tokens it cost and how a stream is cut.

use serde_json::{Value, json};

const CHAT_ID: &str = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
const CREATED: u64 = 1741569952;
const MESSAGE_ID: &str = "msg_013Zva2CMHLNnXjNJJKqJ2EF";
const RESPONSE_ID: &str = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
const ITEM_ID: &str = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b";

/// The API a request path names, under any prefix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wire {
    /// `…/chat/completions`
    Chat,
    /// `…/responses`
    Responses,
    /// `…/messages`
    Messages,
    /// `…/messages/count_tokens`
    CountTokens,
}

impl Wire {
    pub fn of(path: &str) -> Option<Wire> {
        if path.ends_with("/messages/count_tokens") {
            Some(Wire::CountTokens)
        } else if path.ends_with("/messages") {
            Some(Wire::Messages)
        } else if path.ends_with("/chat/completions") {
            Some(Wire::Chat)
        } else if path.ends_with("/responses") {
            Some(Wire::Responses)
        } else {
            None
        }
    }

    pub fn is_anthropic(self) -> bool {
        matches!(self, Wire::Messages | Wire::CountTokens)
    }

    pub fn name(self) -> &'static str {
        match self {
            Wire::Chat => "chat",
            Wire::Responses => "responses",
            Wire::Messages => "messages",
            Wire::CountTokens => "count_tokens",
        }
    }
}

/// A tool call the model makes.
pub struct Call {
    /// `call_…` (OpenAI) or `toolu_…` (Anthropic).
    pub id: String,
    pub name: String,
    pub args: Value,
}

/// Tokens an answer reports. `cached` (and `written`) are part of `input` for OpenAI
/// (`cached_tokens`) and on top of it for Anthropic (`cache_read_input_tokens`,
/// `cache_creation_input_tokens`), as each provider counts; OpenAI reports no writes.
/// `written_1h` is the part of `written` for Anthropic's 1-hour cache; `cost` is an
/// OpenRouter-style `usage.cost`.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub input: u64,
    pub cached: u64,
    pub written: u64,
    pub written_1h: u64,
    pub output: u64,
    pub cost: Option<f64>,
}

/// Anthropic's usage counters of an answer (the output count is the caller's).
fn anthropic_usage(u: Usage, output: u64) -> Value {
    let mut usage = json!({"input_tokens": u.input, "output_tokens": output,
        "cache_creation_input_tokens": u.written, "cache_read_input_tokens": u.cached});
    if u.written > 0 {
        usage["cache_creation"] = json!({
            "ephemeral_5m_input_tokens": u.written - u.written_1h,
            "ephemeral_1h_input_tokens": u.written_1h});
    }
    usage
}

pub struct Answer {
    pub model: String,
    /// The text, in the pieces a stream sends it in (joined: the whole text); empty for none.
    pub text: Vec<String>,
    /// Calls after the text.
    pub calls: Vec<Call>,
    pub usage: Usage,
    /// Stream each call's arguments in two halves after an empty piece, as the providers do,
    /// rather than whole in one event.
    pub split_args: bool,
}

/// Text cut into pieces that keep their spaces (joined, they give it back): `"a b"` →
/// `["a ", "b"]`.
pub fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

/// Text as one piece (none when empty).
pub fn whole(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![text.to_owned()]
    }
}

/// Words in a text: the fakes' token count.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A JSON text cut in two at a character boundary near its middle.
fn halves(s: &str) -> [&str; 2] {
    let mid = (s.len() / 2..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    [&s[..mid], &s[mid..]]
}

impl Answer {
    /// The whole text.
    pub fn text(&self) -> String {
        self.text.concat()
    }

    /// Argument pieces as streamed after a call's start (the empty one opens the split form).
    fn arg_pieces(&self, call: &Call) -> Vec<String> {
        let args = call.args.to_string();
        if self.split_args {
            let [a, b] = halves(&args);
            vec![String::new(), a.to_owned(), b.to_owned()]
        } else {
            vec![args]
        }
    }
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// One SSE event block: `event: NAME` and its data.
pub fn event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

// ---------------------------------------------------------------- OpenAI chat completions

fn chat_finish(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn chat_usage(u: Usage) -> Value {
    let mut usage = json!({"prompt_tokens": u.input, "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    if let Some(cost) = u.cost {
        usage["cost"] = json!(cost);
    }
    usage
}

/// A `chat.completion`.
pub fn chat_json(a: &Answer) -> Value {
    let text = a.text();
    let content = if text.is_empty() && !a.calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    let mut message =
        json!({"role": "assistant", "content": content, "refusal": null, "annotations": []});
    if !a.calls.is_empty() {
        let calls: Vec<Value> = a
            .calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.args.to_string()}})
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    json!({"id": CHAT_ID, "object": "chat.completion", "created": CREATED, "model": a.model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": chat_finish(a)}],
        "usage": chat_usage(a.usage), "service_tier": "default",
        "system_fingerprint": "fp_fake"})
}

/// A chat stream: the role, the text pieces, each call (its start, then its arguments), the
/// finish, with `include_usage` a usage chunk without choices (and `"usage": null` on every
/// other chunk, as OpenAI sends), then `[DONE]`.
pub fn chat_events(a: &Answer, include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({"id": CHAT_ID, "object": "chat.completion.chunk",
            "created": CREATED, "model": a.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null,
                         "finish_reason": finish}]});
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        data(&chunk)
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    for piece in &a.text {
        events.push(chunk(json!({ "content": piece }), Value::Null));
    }
    for (n, c) in a.calls.iter().enumerate() {
        let mut pieces = a.arg_pieces(c).into_iter();
        let first = pieces.next().unwrap_or_default();
        events.push(chunk(
            json!({"tool_calls": [{"index": n, "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": first}}]}),
            Value::Null,
        ));
        for piece in pieces {
            events.push(chunk(
                json!({"tool_calls": [{"index": n, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(chat_finish(a))));
    if include_usage {
        events.push(data(
            &json!({"id": CHAT_ID, "object": "chat.completion.chunk",
            "created": CREATED, "model": a.model, "system_fingerprint": "fp_fake",
            "choices": [], "usage": chat_usage(a.usage)}),
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

// ---------------------------------------------------------------- Anthropic Messages

fn stop_reason(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

/// A Messages answer.
pub fn messages_json(a: &Answer) -> Value {
    let text = a.text();
    let mut blocks = Vec::new();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for c in &a.calls {
        blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.args}));
    }
    let mut usage = anthropic_usage(a.usage, a.usage.output);
    usage["service_tier"] = json!("standard");
    json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": a.model,
        "content": blocks, "stop_reason": stop_reason(a), "stop_sequence": null,
        "usage": usage})
}

/// A Messages stream: `message_start`, a text block, a `tool_use` block per call (a `ping`
/// after the first block's start), `message_delta` with the stop reason and output tokens,
/// `message_stop`.
pub fn messages_events(a: &Answer) -> Vec<String> {
    let mut events = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": MESSAGE_ID, "type": "message",
            "role": "assistant", "model": a.model, "content": [], "stop_reason": null,
            "stop_sequence": null,
            "usage": anthropic_usage(a.usage, 1)}}),
    )];
    let mut blocks: Vec<(Value, Vec<Value>)> = Vec::new();
    if !a.text.is_empty() {
        let deltas = a
            .text
            .iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        blocks.push((json!({"type": "text", "text": ""}), deltas));
    }
    for c in &a.calls {
        let deltas = a
            .arg_pieces(c)
            .into_iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        let start = json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}});
        blocks.push((start, deltas));
    }
    for (index, (start, deltas)) in blocks.into_iter().enumerate() {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(event("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(a), "stop_sequence": null},
            "usage": {"output_tokens": a.usage.output}}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

// ---------------------------------------------------------------- OpenAI Responses

fn responses_usage(u: Usage) -> Value {
    json!({"input_tokens": u.input, "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input + u.output})
}

fn response(a: &Answer, status: &str, output: Value, usage: Value) -> Value {
    json!({"id": RESPONSE_ID, "object": "response", "created_at": 1741476542,
        "status": status, "error": null, "incomplete_details": null, "instructions": null,
        "max_output_tokens": null, "model": a.model, "output": output,
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": null,
        "metadata": {}})
}

fn message_item(status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{"type": "output_text", "text": t, "annotations": []}]),
        None => json!([]),
    };
    json!({"type": "message", "id": ITEM_ID, "status": status, "role": "assistant",
        "content": content})
}

fn call_item_id(c: &Call) -> String {
    format!("fc_{}", c.id.trim_start_matches("call_"))
}

fn call_item(c: &Call, status: &str, args: &str) -> Value {
    json!({"type": "function_call", "id": call_item_id(c), "call_id": c.id, "name": c.name,
        "arguments": args, "status": status})
}

/// The finished output items: the message (when there is text), then a call per call.
fn output(a: &Answer) -> Value {
    let text = a.text();
    let mut items = Vec::new();
    if !text.is_empty() {
        items.push(message_item("completed", Some(&text)));
    }
    for c in &a.calls {
        items.push(call_item(c, "completed", &c.args.to_string()));
    }
    json!(items)
}

/// A `response`.
pub fn responses_json(a: &Answer) -> Value {
    response(a, "completed", output(a), responses_usage(a.usage))
}

/// A Responses stream in the API's own event sequence, each event with its `sequence_number`.
pub fn responses_events(a: &Answer) -> Vec<String> {
    let mut steps: Vec<(&str, Value)> = Vec::new();
    let pending = response(a, "in_progress", json!([]), Value::Null);
    steps.push(("response.created", json!({ "response": pending })));
    steps.push(("response.in_progress", json!({ "response": pending })));
    let text = a.text();
    let mut index = 0;
    if !text.is_empty() {
        let ids = |mut v: Value| {
            v["item_id"] = json!(ITEM_ID);
            v["output_index"] = json!(index);
            v["content_index"] = json!(0);
            v
        };
        let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
        steps.push((
            "response.output_item.added",
            json!({"output_index": index, "item": message_item("in_progress", None)}),
        ));
        steps.push((
            "response.content_part.added",
            ids(json!({ "part": part("") })),
        ));
        for piece in &a.text {
            steps.push(("response.output_text.delta", ids(json!({ "delta": piece }))));
        }
        steps.push(("response.output_text.done", ids(json!({ "text": text }))));
        steps.push((
            "response.content_part.done",
            ids(json!({ "part": part(&text) })),
        ));
        steps.push((
            "response.output_item.done",
            json!({"output_index": index,
                "item": message_item("completed", Some(&text))}),
        ));
        index += 1;
    }
    for c in &a.calls {
        let args = c.args.to_string();
        let item_id = call_item_id(c);
        steps.push((
            "response.output_item.added",
            json!({"output_index": index, "item": call_item(c, "in_progress", "")}),
        ));
        for piece in a.arg_pieces(c).into_iter().filter(|p| !p.is_empty()) {
            steps.push((
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": index, "delta": piece}),
            ));
        }
        steps.push((
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": index, "arguments": args}),
        ));
        steps.push((
            "response.output_item.done",
            json!({"output_index": index, "item": call_item(c, "completed", &args)}),
        ));
        index += 1;
    }
    let done = response(a, "completed", output(a), responses_usage(a.usage));
    steps.push(("response.completed", json!({ "response": done })));
    steps
        .into_iter()
        .enumerate()
        .map(|(seq, (name, mut v))| {
            v["type"] = json!(name);
            v["sequence_number"] = json!(seq);
            event(name, &v)
        })
        .collect()
}
