//! The developer tools' fake: what `scripts/compat` runs real clients (Claude Code, Codex CLI,
//! aider, llm) against through `examples/fake_upstream.rs`, and what `tests/clients.rs` replays
//! their recorded requests against. It speaks OpenAI chat completions, the Responses API and
//! Anthropic Messages (JSON and SSE) on any path prefix, plus `…/messages/count_tokens` and
//! `GET …/models`.
//!
//! The same rules in every wire format, so translated requests get the same answers as native
//! ones:
//! - the last input is a tool result: text `round trip ok: <marker>`, where the marker is the
//!   first `COMPAT-MARKER-…` word of the tool output (`no marker` if none);
//! - the last user text contains `compat-tool` and an absolute `….txt` path, and a tool named
//!   `Read` (Claude Code), `shell` or `exec_command` (Codex) is offered: a call of that tool
//!   reading the file;
//! - anything else: text `compat-ok: hello from the fake upstream`.

use std::time::Duration;

use serde_json::{Value, json};

use super::answer::{self, Answer, Call, Usage, Wire, pieces, whole, words};
use super::{Received, Reply};

pub const TEXT: &str = "compat-ok: hello from the fake upstream";

/// How the answers are counted and cut.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// For real clients: input tokens = body bytes / 4 + 1, output = words + 1 (a call:
    /// argument bytes / 4 + 1); text streamed word by word, arguments in halves.
    Live,
    /// For tests that compare event sequences and usage lines exactly: fixed counts per
    /// format — Anthropic 1200 input + 300 cache-read and 17 output, chat 900 and 12,
    /// Responses 700 and 9 — and each text or argument list in one event.
    Pinned,
}

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

/// The script.
pub fn compat(mode: Mode) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |r: &Received| answer(mode, r)
}

fn answer(mode: Mode, r: &Received) -> Reply {
    if r.method == "GET" && r.route().ends_with("/models") {
        let data = json!({"object": "list", "data": [{"id": "fake", "object": "model"}]});
        return Reply::json(200, data);
    }
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let input = r.body.len() as u64 / 4 + 1;
    let Some(wire) = Wire::of(r.route()) else {
        let error = json!({"error": {"message": "fake upstream: no such endpoint"}});
        return Reply::json(404, error);
    };
    let view = match wire {
        Wire::CountTokens => return Reply::json(200, json!({ "input_tokens": input })),
        Wire::Messages => anthropic_view(&body),
        Wire::Chat => chat_view(&body),
        Wire::Responses => responses_view(&body),
    };
    let turn = decide(&view);
    let usage = match (mode, wire) {
        (Mode::Live, _) => Usage {
            input,
            output: turn.tokens(),
            ..Usage::default()
        },
        (Mode::Pinned, Wire::Messages) => Usage {
            input: 1200,
            cached: 300,
            output: 17,
            written: 0,
            written_1h: 0,
            cost: None,
        },
        (Mode::Pinned, Wire::Chat) => Usage {
            input: 900,
            cached: 0,
            output: 12,
            written: 0,
            written_1h: 0,
            cost: None,
        },
        (Mode::Pinned, _) => Usage {
            input: 700,
            cached: 0,
            output: 9,
            written: 0,
            written_1h: 0,
            cost: None,
        },
    };
    let (text, calls) = match turn {
        Turn::Text(t) if mode == Mode::Live => (pieces(&t), Vec::new()),
        Turn::Text(t) => (whole(&t), Vec::new()),
        Turn::Call { name, args } => {
            let id = if wire.is_anthropic() {
                "toolu_fake_1"
            } else {
                "call_fake_1"
            };
            let call = Call {
                id: id.into(),
                name,
                args,
            };
            (Vec::new(), vec![call])
        }
    };
    let answer = Answer {
        model: body["model"].as_str().unwrap_or("fake").to_owned(),
        text,
        calls,
        usage,
        split_args: mode == Mode::Live,
    };
    let stream = body["stream"] == true;
    let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
    let events = match (wire, stream) {
        (Wire::Chat, false) => return Reply::json(200, answer::chat_json(&answer)),
        (Wire::Responses, false) => return Reply::json(200, answer::responses_json(&answer)),
        (_, false) => return Reply::json(200, answer::messages_json(&answer)),
        (Wire::Chat, true) => answer::chat_events(&answer, include_usage),
        (Wire::Responses, true) => answer::responses_events(&answer),
        (_, true) => answer::messages_events(&answer),
    };
    Reply::sse(events, Duration::ZERO)
}

impl Turn {
    /// Output tokens in [`Mode::Live`].
    fn tokens(&self) -> u64 {
        match self {
            Turn::Text(t) => words(t) + 1,
            Turn::Call { args, .. } => args.to_string().len() as u64 / 4 + 1,
        }
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
        let call = |name: &str, args: Value| Turn::Call {
            name: name.into(),
            args,
        };
        if has("Read") {
            return call("Read", json!({ "file_path": path }));
        }
        if has("shell") {
            return call("shell", json!({"command": ["cat", path]}));
        }
        if has("exec_command") {
            return call("exec_command", json!({ "cmd": format!("cat {path}") }));
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
