//! A standalone fake LLM upstream for `scripts/compat`: speaks OpenAI chat completions, the
//! OpenAI Responses API and Anthropic Messages (JSON and SSE), so real clients (Claude Code,
//! Codex CLI, aider, llm) can be run through the gateway with no network and no model.
//!
//! Usage: `fake_upstream [--listen ADDR] [--record DIR]`. Prints `listening on http://ADDR` on
//! stderr. With `--record`, every request is written to `DIR/NNNN-<endpoint>.json` as
//! `{"method", "target", "headers", "body"}` with credentials replaced by `<redacted>`.
//!
//! What it answers (same rules in every wire format, so translated requests get the same
//! answers as native ones):
//! - the last input is a tool result: text `round trip ok: <marker>`, where the marker is the
//!   first `COMPAT-MARKER-…` word of the tool output (`no marker` if none);
//! - the last user text contains `compat-tool` and an absolute `….txt` path, and a tool named
//!   `Read` (Claude Code), `shell` or `exec_command` (Codex) is offered: a call of that tool
//!   reading the file;
//! - anything else: text `compat-ok: hello from the fake upstream`.
//!
//! Token counts: input = body bytes / 4 + 1, output = words of the answer + 1.
//! State owned: the request counter and the record directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use noviqi::http::{Request, Response, Server, ServerOptions, StreamWriter};
use serde_json::{Value, json};

const TEXT: &str = "compat-ok: hello from the fake upstream";

/// What the fake decided to answer.
enum Turn {
    Text(String),
    Call { name: String, args: Value },
}

/// The parts of a request, in any of the three formats, that decide the answer.
#[derive(Default)]
struct View {
    tools: Vec<String>,
    user_text: String,
    tool_output: Option<String>,
}

struct Fake {
    record: Option<PathBuf>,
    seq: AtomicU64,
}

fn main() -> ExitCode {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut record = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen = a,
                Err(e) => {
                    eprintln!("bad --listen address: {e}");
                    return ExitCode::FAILURE;
                }
            },
            ("--record", Some(v)) => record = Some(PathBuf::from(v)),
            _ => {
                eprintln!("usage: fake_upstream [--listen ADDR] [--record DIR]");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &record {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let fake = Arc::new(Fake {
        record,
        seq: AtomicU64::new(1),
    });
    let handler = move |req: &mut Request<'_>| fake.handle(req);
    let options = ServerOptions {
        max_body_bytes: 64 * 1024 * 1024,
        ..ServerOptions::default()
    };
    let server = match Server::bind(listen, options, Arc::new(handler)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on http://{}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Fake {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let body = match req.read_body(64 * 1024 * 1024) {
            Ok(b) => b,
            Err(e) => return Response::json(400, json!({"error": e.to_string()}).to_string()),
        };
        let path = req.path().to_owned();
        let kind = endpoint(&path);
        self.record(req, kind, &body);
        if req.method() == "GET" && path.ends_with("/models") {
            let data = json!({"object": "list", "data": [{"id": "fake", "object": "model"}]});
            return Response::json(200, data.to_string());
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let model = parsed["model"].as_str().unwrap_or("fake").to_owned();
        let stream = parsed["stream"] == true;
        let input_tokens = body.len() as u64 / 4 + 1;
        match kind {
            "count_tokens" => {
                Response::json(200, json!({"input_tokens": input_tokens}).to_string())
            }
            "messages" => {
                let turn = decide(&anthropic_view(&parsed));
                anthropic(turn, &model, input_tokens, stream)
            }
            "chat" => {
                let turn = decide(&chat_view(&parsed));
                let usage = parsed.pointer("/stream_options/include_usage") == Some(&json!(true));
                chat(turn, &model, input_tokens, stream, usage)
            }
            "responses" => {
                let turn = decide(&responses_view(&parsed));
                responses(turn, &model, input_tokens, stream)
            }
            _ => Response::json(
                404,
                json!({"error": {"message": "fake upstream: no such endpoint"}}).to_string(),
            ),
        }
    }

    /// Writes the request to the record directory, credentials redacted.
    fn record(&self, req: &Request<'_>, kind: &str, body: &[u8]) {
        let Some(dir) = &self.record else { return };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut headers = serde_json::Map::new();
        for (name, value) in req.headers() {
            let name = name.to_ascii_lowercase();
            let value = match name.as_str() {
                "authorization" | "x-api-key" | "api-key" | "cookie" => "<redacted>".into(),
                _ => String::from_utf8_lossy(value).into_owned(),
            };
            headers.insert(name, Value::String(value));
        }
        let body = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let doc = json!({"method": req.method(), "target": req.target(),
            "headers": headers, "body": body});
        let file = dir.join(format!("{n:04}-{kind}.json"));
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(&file, text) {
            eprintln!("cannot record {}: {e}", file.display());
        }
    }
}

fn endpoint(path: &str) -> &'static str {
    if path.ends_with("/messages/count_tokens") {
        "count_tokens"
    } else if path.ends_with("/messages") {
        "messages"
    } else if path.ends_with("/chat/completions") {
        "chat"
    } else if path.ends_with("/responses") {
        "responses"
    } else {
        "other"
    }
}

fn decide(view: &View) -> Turn {
    if let Some(output) = &view.tool_output {
        let marker = output
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
            .find(|w| w.starts_with("COMPAT-MARKER-"))
            .unwrap_or("no marker");
        return Turn::Text(format!("round trip ok: {marker}"));
    }
    let path = view
        .user_text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| "\"'`,:;()".contains(c)))
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.starts_with('/') && w.ends_with(".txt"));
    if let (true, Some(path)) = (view.user_text.contains("compat-tool"), path) {
        let has = |n: &str| view.tools.iter().any(|t| t == n);
        if has("Read") {
            return Turn::Call {
                name: "Read".into(),
                args: json!({"file_path": path}),
            };
        }
        if has("shell") {
            return Turn::Call {
                name: "shell".into(),
                args: json!({"command": ["cat", path]}),
            };
        }
        if has("exec_command") {
            return Turn::Call {
                name: "exec_command".into(),
                args: json!({"cmd": format!("cat {path}")}),
            };
        }
    }
    Turn::Text(TEXT.into())
}

/// Text of an OpenAI/Anthropic content value (string, or parts with `text`).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                p["text"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| p.get("content").map(text_of))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn anthropic_view(req: &Value) -> View {
    let mut view = View {
        tools: names(&req["tools"], "/name"),
        ..View::default()
    };
    let Some(last) = last_turn(&req["messages"]) else {
        return view;
    };
    if let Some(blocks) = last["content"].as_array() {
        let results: Vec<String> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| text_of(&b["content"]))
            .collect();
        if !results.is_empty() {
            view.tool_output = Some(results.join("\n"));
        }
    }
    view.user_text = text_of(&last["content"]);
    view
}

fn chat_view(req: &Value) -> View {
    let mut view = View {
        tools: names(&req["tools"], "/function/name"),
        ..View::default()
    };
    let Some(last) = last_turn(&req["messages"]) else {
        return view;
    };
    if last["role"] == "tool" {
        view.tool_output = Some(text_of(&last["content"]));
    } else {
        view.user_text = text_of(&last["content"]);
    }
    view
}

fn responses_view(req: &Value) -> View {
    let mut view = View {
        tools: names(&req["tools"], "/name"),
        ..View::default()
    };
    match &req["input"] {
        Value::String(s) => view.user_text = s.clone(),
        Value::Array(items) => {
            if let Some(last) = items.last() {
                if last["type"] == "function_call_output" {
                    view.tool_output = Some(match &last["output"] {
                        Value::String(s) => s.clone(),
                        other => text_of(other),
                    });
                } else if let Some(user) = items.iter().rev().find(|i| i["role"] == "user") {
                    view.user_text = text_of(&user["content"]);
                }
            }
        }
        _ => {}
    }
    view
}

/// The last message that is not a system entry (Claude Code appends some mid-conversation).
fn last_turn(messages: &Value) -> Option<&Value> {
    messages
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] != "system")
}

fn names(tools: &Value, pointer: &str) -> Vec<String> {
    tools
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t.pointer(pointer)?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Output token count of a turn.
fn output_tokens(turn: &Turn) -> u64 {
    match turn {
        Turn::Text(t) => t.split_whitespace().count() as u64 + 1,
        Turn::Call { args, .. } => args.to_string().len() as u64 / 4 + 1,
    }
}

/// Splits text into a few stream deltas (word by word, spaces kept).
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        });
    }
    out
}

/// An SSE response written event by event, flushed after each.
fn sse(events: Vec<(Option<&'static str>, Value)>, done: bool) -> Response {
    Response::stream(200, move |w: &mut StreamWriter<'_>| {
        for (name, data) in events {
            let frame = match name {
                Some(n) => format!("event: {n}\ndata: {data}\n\n"),
                None => format!("data: {data}\n\n"),
            };
            w.send(frame.as_bytes())?;
        }
        if done {
            w.send(b"data: [DONE]\n\n")?;
        }
        Ok(())
    })
    .with_header("content-type", "text/event-stream")
    .with_header("cache-control", "no-cache")
}

fn anthropic(turn: Turn, model: &str, input: u64, stream: bool) -> Response {
    let output = output_tokens(&turn);
    let (block, stop) = match &turn {
        Turn::Text(t) => (json!({"type": "text", "text": t}), "end_turn"),
        Turn::Call { name, args } => (
            json!({"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": args}),
            "tool_use",
        ),
    };
    if !stream {
        let body = json!({"id": "msg_fake_1", "type": "message", "role": "assistant",
            "model": model, "content": [block], "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output}});
        return Response::json(200, body.to_string());
    }
    let mut ev = vec![
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_fake_1", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
        ),
        (Some("ping"), json!({"type": "ping"})),
    ];
    let (start, deltas) = match &turn {
        Turn::Text(t) => (
            json!({"type": "text", "text": ""}),
            pieces(t)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect::<Vec<_>>(),
        ),
        Turn::Call { name, args } => (
            json!({"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}),
            split_json(&args.to_string())
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect(),
        ),
    };
    ev.push((
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 0, "content_block": start}),
    ));
    for d in deltas {
        ev.push((
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": d}),
        ));
    }
    ev.push((
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    ev.push((
        Some("message_delta"),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": output}}),
    ));
    ev.push((Some("message_stop"), json!({"type": "message_stop"})));
    sse(ev, false)
}

/// A JSON text cut into two halves (as upstreams stream tool arguments).
fn split_json(s: &str) -> Vec<String> {
    let mid = s.len() / 2;
    let mid = (mid..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    vec![s[..mid].to_owned(), s[mid..].to_owned()]
}

fn chat(turn: Turn, model: &str, input: u64, stream: bool, include_usage: bool) -> Response {
    let output = output_tokens(&turn);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output,
        "total_tokens": input + output});
    let (message, finish) = match &turn {
        Turn::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Turn::Call { name, args } => (
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_fake_1",
                "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}),
            "tool_calls",
        ),
    };
    let base = |choices: Value| {
        json!({"id": "chatcmpl-fake-1", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": choices})
    };
    if !stream {
        let mut body = base(json!([{"index": 0, "message": message, "finish_reason": finish}]));
        body["object"] = json!("chat.completion");
        body["usage"] = usage;
        return Response::json(200, body.to_string());
    }
    let delta = |d: Value, f: Value| base(json!([{"index": 0, "delta": d, "finish_reason": f}]));
    let mut ev = vec![(
        None,
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
    )];
    match &turn {
        Turn::Text(t) => {
            for p in pieces(t) {
                ev.push((None, delta(json!({"content": p}), Value::Null)));
            }
        }
        Turn::Call { name, args } => {
            ev.push((
                None,
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ),
            ));
            for p in split_json(&args.to_string()) {
                let d = json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]});
                ev.push((None, delta(d, Value::Null)));
            }
        }
    }
    ev.push((None, delta(json!({}), json!(finish))));
    if include_usage {
        let mut last = base(json!([]));
        last["usage"] = usage;
        ev.push((None, last));
    }
    sse(ev, true)
}

fn responses(turn: Turn, model: &str, input: u64, stream: bool) -> Response {
    let output = output_tokens(&turn);
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output});
    let item = match &turn {
        Turn::Text(t) => json!({"type": "message", "id": "msg_fake_1", "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]}),
        Turn::Call { name, args } => json!({"type": "function_call", "id": "fc_fake_1",
            "call_id": "call_fake_1", "name": name, "arguments": args.to_string(),
            "status": "completed"}),
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_fake_1", "object": "response", "created_at": 1, "status": status,
            "error": null, "incomplete_details": null, "model": model, "output": output,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
    };
    if !stream {
        let body = response("completed", json!([item]), usage);
        return Response::json(200, body.to_string());
    }
    let mut ev: Vec<(&'static str, Value)> = vec![
        (
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        (
            "response.in_progress",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
    ];
    match &turn {
        Turn::Text(t) => {
            let ids = json!({"item_id": "msg_fake_1", "output_index": 0, "content_index": 0});
            let mut added = item.clone();
            added["status"] = json!("in_progress");
            added["content"] = json!([]);
            ev.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            let mut part = ids.clone();
            part["part"] = json!({"type": "output_text", "text": "", "annotations": []});
            ev.push(("response.content_part.added", part));
            for p in pieces(t) {
                let mut d = ids.clone();
                d["delta"] = json!(p);
                ev.push(("response.output_text.delta", d));
            }
            let mut done = ids.clone();
            done["text"] = json!(t);
            ev.push(("response.output_text.done", done));
            let mut part = ids;
            part["part"] = json!({"type": "output_text", "text": t, "annotations": []});
            ev.push(("response.content_part.done", part));
        }
        Turn::Call { args, .. } => {
            let mut added = item.clone();
            added["status"] = json!("in_progress");
            added["arguments"] = json!("");
            ev.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            for p in split_json(&args.to_string()) {
                ev.push((
                    "response.function_call_arguments.delta",
                    json!({"item_id": "fc_fake_1", "output_index": 0, "delta": p}),
                ));
            }
            ev.push((
                "response.function_call_arguments.done",
                json!({"item_id": "fc_fake_1", "output_index": 0,
                    "arguments": args.to_string()}),
            ));
        }
    }
    ev.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": item.clone()}),
    ));
    ev.push((
        "response.completed",
        json!({"response": response("completed", json!([item]), usage)}),
    ));
    let events = ev
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(i);
            (Some(name), data)
        })
        .collect();
    sse(events, false)
}
