//! An in-process fake upstream for integration tests: a tiny HTTP/1.1 server on 127.0.0.1:0,
//! independent of noviqi's own server code, that records every request it receives and answers
//! with whatever the test scripts: OpenAI- or Anthropic-shaped JSON, SSE with delays between
//! events, stalls, truncations and abrupt closes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream received JSON")
    }

    /// The whole request as text, for "the secret never appears" checks.
    pub fn raw_text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// What the fake answers.
pub enum Reply {
    /// A complete response with a body.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `text/event-stream`, chunked, each event written and flushed after its delay. With
    /// `finish: false` the connection is closed without the terminating chunk.
    Sse {
        events: Vec<(Duration, String)>,
        finish: bool,
    },
    /// Accept the request, then say nothing for this long and close.
    Stall(Duration),
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// SSE from `data:` payloads, `gap` before each.
    pub fn sse_data(payloads: &[String], gap: Duration) -> Reply {
        Reply::Sse {
            events: payloads
                .iter()
                .map(|p| (gap, format!("data: {p}\n\n")))
                .collect(),
            finish: true,
        }
    }
}

type Script = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct FakeUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    disconnects: Mutex<Receiver<()>>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts the fake; `script` decides each reply.
    pub fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (disconnect_tx, disconnect_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let accept = {
            let received = received.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = received.clone();
                    let script = script.clone();
                    let disconnect_tx = disconnect_tx.clone();
                    thread::spawn(move || serve(stream, &received, &*script, &disconnect_tx));
                }
            })
        };
        FakeUpstream {
            addr,
            received,
            disconnects: Mutex::new(disconnect_rx),
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — a provider `base_url` prefix.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the upstream received a request")
    }

    /// Waits until a streaming write fails because the peer (the gateway) went away.
    pub fn wait_disconnect(&self, timeout: Duration) -> bool {
        self.disconnects
            .lock()
            .unwrap()
            .recv_timeout(timeout)
            .is_ok()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    script: &Script,
    disconnects: &Sender<()>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        received.lock().unwrap().push(request.clone());
        match script(&request) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                out.extend_from_slice(&body);
                if writer.write_all(&out).is_err() {
                    return;
                }
            }
            Reply::Sse { events, finish } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for (delay, event) in events {
                    thread::sleep(delay);
                    let frame = format!("{:x}\r\n{event}\r\n", event.len());
                    if writer
                        .write_all(frame.as_bytes())
                        .and_then(|_| writer.flush())
                        .is_err()
                    {
                        let _ = disconnects.send(());
                        return;
                    }
                }
                if !finish {
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                    return;
                }
                // Keep writing heartbeats? No: finish the stream; a vanished peer shows up on
                // the final write or on the next read.
                if writer.write_all(b"0\r\n\r\n").is_err() {
                    let _ = disconnects.send(());
                    return;
                }
            }
            Reply::Stall(duration) => {
                thread::sleep(duration);
                return;
            }
            Reply::Close => return,
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        body
    } else if get("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        body
    } else {
        Vec::new()
    };
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// Fake providers that answer like the real ones (shapes as documented by OpenAI and
/// Anthropic), so official SDKs parse what comes through the gateway. Both echo the last user
/// text (`You said: …`); when the request offers tools and holds no tool result yet they call
/// the first tool with `{"city": "Paris"}`; after a tool result they answer
/// `The tool said: <result>`. Requests without the expected credential get the provider's 401.
pub mod providers {
    use super::{Received, Reply};
    use base64::Engine;
    use serde_json::{Value, json};
    use std::time::Duration;

    /// What the fake model decided to say.
    enum Turn {
        Text(String),
        Tool { name: String, args: Value },
    }

    fn words(s: &str) -> u64 {
        s.split_whitespace().count() as u64
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

    fn decide(messages: &[Value], tools: Option<&Vec<Value>>, tool_result: Option<String>) -> Turn {
        if let Some(result) = tool_result {
            return Turn::Text(format!("The tool said: {result}"));
        }
        if let Some(tool) = tools.and_then(|t| t.first()) {
            let name = tool["function"]["name"]
                .as_str()
                .or(tool["name"].as_str())
                .unwrap_or("tool")
                .to_owned();
            return Turn::Tool {
                name,
                args: json!({"city": "Paris"}),
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

    /// Splits text into pieces that keep their spaces, so joining them restores it.
    fn pieces(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in text.chars() {
            cur.push(c);
            if c == ' ' {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn sse(events: Vec<String>) -> Reply {
        Reply::Sse {
            events: events.into_iter().map(|e| (Duration::ZERO, e)).collect(),
            finish: true,
        }
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
            let path = r.path.split('?').next().unwrap_or("");
            match (r.method.as_str(), path) {
                ("POST", "/chat/completions") => match openai_chat_invalid(&r.json()) {
                    Some(why) => openai_error(400, &why, "invalid_request_error", "invalid_value"),
                    None => openai_chat(&r.json()),
                },
                ("POST", "/embeddings") => openai_embeddings(&r.json()),
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
                        if call["type"] != "function" || !call["function"]["arguments"].is_string()
                        {
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
        let model = body["model"].as_str().unwrap_or("").to_owned();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let tool_result = messages
            .last()
            .filter(|m| m["role"] == "tool")
            .map(|m| text_of(&m["content"]));
        let turn = decide(&messages, body["tools"].as_array(), tool_result);
        let prompt_tokens: u64 = messages
            .iter()
            .map(|m| words(&text_of(&m["content"])))
            .sum();
        let id = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
        let created = 1741569952;
        let (completion_tokens, finish) = match &turn {
            Turn::Text(t) => (words(t), "stop"),
            Turn::Tool { .. } => (9, "tool_calls"),
        };
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
        if body["stream"] != true {
            let message = match &turn {
                Turn::Text(t) => json!({"role": "assistant", "content": t, "refusal": null,
                                        "annotations": []}),
                Turn::Tool { name, args } => json!({"role": "assistant", "content": null,
                    "refusal": null, "annotations": [],
                    "tool_calls": [{"id": "call_abc123", "type": "function",
                        "function": {"name": name, "arguments": args.to_string()}}]}),
            };
            return Reply::json(
                200,
                json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                       "choices": [{"index": 0, "message": message, "logprobs": null,
                                    "finish_reason": finish}],
                       "usage": usage, "service_tier": "default",
                       "system_fingerprint": "fp_fake"}),
            );
        }
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": "fp_fake",
                   "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                "finish_reason": finish}]})
            .to_string()
        };
        let include_usage = body["stream_options"]["include_usage"] == true;
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        )];
        match &turn {
            Turn::Text(t) => {
                for piece in pieces(t) {
                    events.push(chunk(json!({"content": piece}), Value::Null));
                }
            }
            Turn::Tool { name, args } => {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_abc123", "type": "function",
                            "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let args = args.to_string();
                let (a, b) = args.split_at(args.len() / 2);
                for part in [a, b] {
                    events.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
        }
        events.push(chunk(json!({}), json!(finish)));
        if include_usage {
            // Real OpenAI: every chunk has `usage: null`, then one chunk with no choices.
            events.push(
                json!({"id": id, "object": "chat.completion.chunk", "created": created,
                       "model": model, "system_fingerprint": "fp_fake", "choices": [],
                       "usage": usage})
                .to_string(),
            );
        }
        events.push("[DONE]".into());
        sse(events
            .into_iter()
            .map(|e| format!("data: {e}\n\n"))
            .collect())
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
            let path = r.path.split('?').next().unwrap_or("");
            match (r.method.as_str(), path) {
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

    fn anthropic_prompt_tokens(body: &Value) -> u64 {
        let system = words(&text_of(&body["system"]));
        let messages: u64 = body["messages"]
            .as_array()
            .map(|ms| ms.iter().map(|m| words(&text_of(&m["content"]))).sum())
            .unwrap_or(0);
        system + messages + 3
    }

    fn anthropic_messages(body: &Value) -> Reply {
        let Some(max_tokens) = body["max_tokens"].as_u64() else {
            return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
        };
        let _ = max_tokens;
        let model = body["model"].as_str().unwrap_or("").to_owned();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let tool_result = messages.last().and_then(|m| {
            m["content"]
                .as_array()?
                .iter()
                .find(|b| b["type"] == "tool_result")
                .map(|b| text_of(&b["content"]))
        });
        let turn = decide(&messages, body["tools"].as_array(), tool_result);
        let input_tokens = anthropic_prompt_tokens(body);
        let id = "msg_013Zva2CMHLNnXjNJJKqJ2EF";
        let (output_tokens, stop_reason) = match &turn {
            Turn::Text(t) => (words(t), "end_turn"),
            Turn::Tool { .. } => (9, "tool_use"),
        };
        if body["stream"] != true {
            let block = match &turn {
                Turn::Text(t) => json!({"type": "text", "text": t}),
                Turn::Tool { name, args } => json!({"type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9", "name": name, "input": args}),
            };
            return Reply::json(
                200,
                json!({"id": id, "type": "message", "role": "assistant", "model": model,
                       "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
                       "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "service_tier": "standard"}}),
            );
        }
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![event(
            "message_start",
            json!({"type": "message_start", "message": {"id": id,
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        )];
        match &turn {
            Turn::Text(t) => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start",
                    "index": 0, "content_block": {"type": "text", "text": ""}}),
                ));
                events.push(event("ping", json!({"type": "ping"})));
                for piece in pieces(t) {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
            }
            Turn::Tool { name, args } => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start",
                    "index": 0, "content_block": {"type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9", "name": name, "input": {}}}),
                ));
                events.push(event("ping", json!({"type": "ping"})));
                let args = args.to_string();
                let (a, b) = args.split_at(args.len() / 2);
                for part in ["", a, b] {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}),
                    ));
                }
            }
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        sse(events)
    }
}
