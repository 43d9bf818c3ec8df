//! The fake upstream of `tests/clients.rs`: one server answering Anthropic Messages, OpenAI
//! chat and OpenAI Responses requests (JSON and SSE) the way `examples/fake_upstream.rs` does
//! for `scripts/compat`, with fixed token counts the tests check in the usage log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_upstream::{FakeUpstream, Received, Reply};

/// What the upstream answers, decided from the request as the compat fake does.
enum Turn {
    Text(&'static str),
    /// A call of the client's file-reading tool: (name, arguments).
    Call(&'static str, Value),
}

fn decide(r: &Received) -> Turn {
    let body = String::from_utf8_lossy(&r.body);
    if body.contains("\"tool_result\"")
        || body.contains("\"role\":\"tool\"")
        || body.contains("\"function_call_output\"")
    {
        Turn::Text("round trip ok: COMPAT-MARKER-42")
    } else if body.contains("compat-tool: read the file") {
        if body.contains("\"exec_command\"") {
            Turn::Call(
                "exec_command",
                json!({"cmd": "cat /tmp/compat/work/marker.txt"}),
            )
        } else {
            Turn::Call("Read", json!({"file_path": "/tmp/compat/work/marker.txt"}))
        }
    } else {
        Turn::Text("compat-ok: hello from the fake upstream")
    }
}

pub fn sse(events: Vec<String>) -> Reply {
    Reply::Sse {
        events: events.into_iter().map(|e| (Duration::ZERO, e)).collect(),
        finish: true,
    }
}

pub fn named(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Anthropic: 1200 input + 300 cache-read tokens, 17 output tokens.
fn anthropic_reply(r: &Received) -> Reply {
    let body = r.json();
    let turn = decide(r);
    let (block, delta, stop) = match &turn {
        Turn::Text(t) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": t}),
            "end_turn",
        ),
        Turn::Call(name, args) => (
            json!({"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": args.to_string()}),
            "tool_use",
        ),
    };
    let usage = json!({"input_tokens": 1200, "cache_read_input_tokens": 300, "output_tokens": 1});
    if body["stream"] != true {
        let content = match turn {
            Turn::Text(t) => json!([{"type": "text", "text": t}]),
            Turn::Call(name, args) => {
                json!([{"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": args}])
            }
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
        Turn::Call(name, args) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}}]}),
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

pub fn upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| match r.path.as_str() {
        "/v1/messages" => anthropic_reply(r),
        "/v1/chat/completions" => chat_reply(r),
        "/v1/responses" => responses_reply(r),
        _ => Reply::json(404, json!({"error": {"message": "no such path"}})),
    })
}
