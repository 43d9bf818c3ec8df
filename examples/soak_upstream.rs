//! A fake LLM upstream for `scripts/soak`: OpenAI chat completions, the OpenAI Responses API
//! and Anthropic Messages (JSON and SSE) on plain std sockets, with upstream faults chosen by a
//! marker in the request body, so a soak can drive every failure path of the gateway's
//! upstream side. Raw sockets rather than noviqi's own HTTP layer: a fault such as "close the
//! connection without answering" or "a body shorter than its Content-Length" needs control
//! below a well-behaved server.
//!
//! Usage: `soak_upstream [ADDR] [--openai-key K] [--anthropic-key K] [--stall-ms MS]`
//! (default 127.0.0.1:0). Prints `listening on ADDR` on stderr and serves until killed.
//!
//! Endpoints (any prefix): `…/chat/completions`, `…/responses` (OpenAI), `…/v1/messages`,
//! `…/v1/messages/count_tokens` (Anthropic), `GET /stats`.
//!
//! Faults: the first `SOAK-FAULT:<name>` in the body, optionally `SOAK-FAULT:<name>@openai`
//! or `@anthropic` to apply it only when the request arrives in that wire format (so a
//! fallback model's first target fails and its second answers). The marker survives the
//! gateway's translation because it is in the prompt text.
//! - `500`, `429` (with `retry-after: 1`): an error in the format's shape;
//! - `close`: the request is read, the connection closed with no answer;
//! - `truncate`: non-streamed, a body cut at half its Content-Length; streamed, two events
//!   and then the connection closed before the end (no terminating chunk);
//! - `garbage`: a 200 whose JSON body is not JSON (non-streamed only);
//! - `slow`: 1.2 s before the answer, and 150 ms between stream events;
//! - `stall`: `--stall-ms` (default 4000) before the answer's head;
//! - `stall-mid`: a stream's head and first event, then `--stall-ms` of silence, then the rest;
//! - `long`: a stream of 40 events 25 ms apart.
//!
//! Otherwise: an answer of 6 words (a stream: one event per word, 10 ms apart), with usage
//! (prompt = body bytes / 4 + 1, completion = words).
//!
//! `GET /stats` answers `{"requests","open","leaks","bad_auth","refused"}`: requests served,
//! connections open now, requests whose headers carried a gateway key (`nvq_`, which must
//! never leave the gateway), requests without the expected provider credential (when one was
//! given), and connections refused because `MAX_CONNS` were open.
//! State owned: those counters only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// Connections served at once; more are closed at once.
const MAX_CONNS: u64 = 512;
/// A connection with no new request is closed after this (longer than ureq's idle age, so
/// the gateway's pool normally lets go first).
const IDLE: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
const WORDS: usize = 6;

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    open: AtomicU64,
    leaks: AtomicU64,
    bad_auth: AtomicU64,
    refused: AtomicU64,
}

struct Fake {
    openai_key: Option<String>,
    anthropic_key: Option<String>,
    stall: Duration,
    stats: Stats,
}

/// One parsed request.
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Chat,
    Responses,
    Messages,
    CountTokens,
}

impl Wire {
    fn of(path: &str) -> Option<Wire> {
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

    fn is_anthropic(self) -> bool {
        matches!(self, Wire::Messages | Wire::CountTokens)
    }
}

/// Whether the connection may carry another request.
type Keep = bool;

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut openai_key = None;
    let mut anthropic_key = None;
    let mut stall_ms = 4000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--openai-key" => openai_key = args.next(),
            "--anthropic-key" => anthropic_key = args.next(),
            "--stall-ms" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => stall_ms = v,
                None => return usage(),
            },
            a if !a.starts_with('-') => addr = a.to_owned(),
            _ => return usage(),
        }
    }
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage();
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("listening on {a}"),
        Err(e) => {
            eprintln!("no local address: {e}");
            return ExitCode::FAILURE;
        }
    }
    let fake = Arc::new(Fake {
        openai_key,
        anthropic_key,
        stall: Duration::from_millis(stall_ms),
        stats: Stats::default(),
    });
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // EMFILE and friends: back off a little rather than spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if fake.stats.open.load(Ordering::SeqCst) >= MAX_CONNS {
            fake.stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        fake.stats.open.fetch_add(1, Ordering::SeqCst);
        let fake = fake.clone();
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                fake.serve(stream);
                fake.stats.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            eprintln!("cannot spawn a connection thread");
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: soak_upstream [ADDR] [--openai-key K] [--anthropic-key K] [--stall-ms MS]");
    ExitCode::FAILURE
}

impl Fake {
    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IDLE));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        let mut input = BufReader::new(stream);
        while let Ok(Some(req)) = read_request(&mut input) {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if !matches!(self.handle(&req, &mut out), Ok(true)) {
                break;
            }
        }
        let _ = out.shutdown(Shutdown::Both);
    }

    fn check_headers(&self, req: &Req, wire: Wire) {
        if req.headers.iter().any(|(_, v)| v.contains("nvq_")) {
            self.stats.leaks.fetch_add(1, Ordering::Relaxed);
        }
        let ok = if wire.is_anthropic() {
            self.anthropic_key
                .as_deref()
                .is_none_or(|k| req.header("x-api-key") == Some(k))
        } else {
            self.openai_key
                .as_deref()
                .is_none_or(|k| req.header("authorization") == Some(&format!("Bearer {k}")))
        };
        if !ok {
            self.stats.bad_auth.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn handle(&self, req: &Req, out: &mut TcpStream) -> io::Result<Keep> {
        if req.method == "GET" && req.path == "/stats" {
            let s = &self.stats;
            let body = json!({
                "requests": s.requests.load(Ordering::Relaxed),
                "open": s.open.load(Ordering::SeqCst),
                "leaks": s.leaks.load(Ordering::Relaxed),
                "bad_auth": s.bad_auth.load(Ordering::Relaxed),
                "refused": s.refused.load(Ordering::Relaxed),
            });
            return write_json(out, 200, &body, &[]);
        }
        let Some(wire) = Wire::of(&req.path).filter(|_| req.method == "POST") else {
            let body = json!({"error": {"message": "soak upstream: no such endpoint"}});
            return write_json(out, 404, &body, &[]);
        };
        self.check_headers(req, wire);
        let parsed: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let model = parsed["model"].as_str().unwrap_or("soak").to_owned();
        let stream = parsed["stream"] == true;
        let include_usage = parsed.pointer("/stream_options/include_usage") == Some(&json!(true));
        let prompt = req.body.len() as u64 / 4 + 1;
        let fault = fault(&req.body, wire);
        match fault.as_deref() {
            Some("500") => return write_json(out, 500, &error_body(wire, "server"), &[]),
            Some("429") => {
                let extra = [("retry-after", "1")];
                return write_json(out, 429, &error_body(wire, "rate"), &extra);
            }
            Some("close") => return Ok(false),
            Some("slow") => thread::sleep(Duration::from_millis(1200)),
            Some("stall") => thread::sleep(self.stall),
            _ => {}
        }
        if wire == Wire::CountTokens {
            return write_json(out, 200, &json!({"input_tokens": prompt}), &[]);
        }
        let (words, gap) = match fault.as_deref() {
            Some("long") => (40, Duration::from_millis(25)),
            Some("slow") => (WORDS, Duration::from_millis(150)),
            _ => (WORDS, Duration::from_millis(10)),
        };
        let completion = words as u64;
        if !stream {
            let body = whole(wire, &model, words, prompt, completion);
            return match fault.as_deref() {
                Some("truncate") => {
                    let text = body.to_string();
                    let head = head(200, "application/json", Some(text.len()), &[]);
                    out.write_all(head.as_bytes())?;
                    out.write_all(&text.as_bytes()[..text.len() / 2])?;
                    out.flush()?;
                    Ok(false)
                }
                Some("garbage") => {
                    let text = "{\"id\": \"not json";
                    let head = head(200, "application/json", Some(text.len()), &[]);
                    out.write_all(head.as_bytes())?;
                    out.write_all(text.as_bytes())?;
                    Ok(true)
                }
                _ => write_json(out, 200, &body, &[]),
            };
        }
        let events = events(wire, &model, words, prompt, completion, include_usage);
        out.write_all(
            head(
                200,
                "text/event-stream",
                None,
                &[("cache-control", "no-cache")],
            )
            .as_bytes(),
        )?;
        out.flush()?;
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                thread::sleep(gap);
            }
            if fault.as_deref() == Some("truncate") && i == 2 {
                return Ok(false);
            }
            if fault.as_deref() == Some("stall-mid") && i == 1 {
                thread::sleep(self.stall);
            }
            write_chunk(out, event.as_bytes())?;
        }
        out.write_all(b"0\r\n\r\n")?;
        out.flush()?;
        Ok(true)
    }
}

/// The fault asked for by the body's first `SOAK-FAULT:` marker, if it applies to `wire`.
fn fault(body: &[u8], wire: Wire) -> Option<String> {
    const MARK: &[u8] = b"SOAK-FAULT:";
    let at = body.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let word: String = body[at..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'@')
        .map(|&b| char::from(b))
        .collect();
    let (name, only) = match word.split_once('@') {
        Some((n, o)) => (n.to_owned(), Some(o.to_owned())),
        None => (word, None),
    };
    match only.as_deref() {
        Some("openai") if wire.is_anthropic() => None,
        Some("anthropic") if !wire.is_anthropic() => None,
        _ => Some(name),
    }
}

fn error_body(wire: Wire, kind: &str) -> Value {
    let message = format!("soak upstream: injected {kind} fault");
    if wire.is_anthropic() {
        let t = if kind == "rate" {
            "rate_limit_error"
        } else {
            "api_error"
        };
        json!({"type": "error", "error": {"type": t, "message": message}})
    } else {
        let t = if kind == "rate" {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        json!({"error": {"message": message, "type": t, "param": null, "code": null}})
    }
}

fn text(words: usize) -> String {
    (0..words)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A non-streamed answer in `wire`'s format.
fn whole(wire: Wire, model: &str, words: usize, prompt: u64, completion: u64) -> Value {
    let text = text(words);
    match wire {
        Wire::Chat => json!({"id": "chatcmpl-soak", "object": "chat.completion", "created": 1,
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}}),
        Wire::Messages | Wire::CountTokens => json!({"id": "msg_soak", "type": "message",
            "role": "assistant", "model": model, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": completion}}),
        Wire::Responses => responses_body(model, "completed", &text, prompt, completion),
    }
}

fn responses_body(model: &str, status: &str, text: &str, prompt: u64, completion: u64) -> Value {
    let (output, usage) = if status == "completed" {
        (
            json!([{"type": "message", "id": "msg_soak", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}]),
            json!({"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion}),
        )
    } else {
        (json!([]), Value::Null)
    };
    json!({"id": "resp_soak", "object": "response", "created_at": 1, "status": status,
        "error": null, "incomplete_details": null, "model": model, "output": output,
        "usage": usage})
}

/// A stream's SSE events in `wire`'s format, each a complete `event:`/`data:` block.
fn events(
    wire: Wire,
    model: &str,
    words: usize,
    prompt: u64,
    completion: u64,
    include_usage: bool,
) -> Vec<String> {
    let data = |v: Value| format!("data: {v}\n\n");
    let named = |n: &str, v: Value| format!("event: {n}\ndata: {v}\n\n");
    let mut ev = Vec::new();
    match wire {
        Wire::Chat => {
            let chunk = |delta: Value, finish: Value| {
                json!({"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            ev.push(data(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )));
            for i in 0..words {
                ev.push(data(chunk(
                    json!({"content": format!("w{i} ")}),
                    Value::Null,
                )));
            }
            ev.push(data(chunk(json!({}), json!("stop"))));
            if include_usage {
                ev.push(data(
                    json!({"id": "chatcmpl-soak", "object": "chat.completion.chunk",
                    "created": 1, "model": model, "choices": [],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                    "total_tokens": prompt + completion}}),
                ));
            }
            ev.push("data: [DONE]\n\n".to_owned());
        }
        Wire::Messages | Wire::CountTokens => {
            ev.push(named(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_soak",
                    "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
            ));
            ev.push(named(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ));
            for i in 0..words {
                ev.push(named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": format!("w{i} ")}}),
                ));
            }
            ev.push(named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            ev.push(named(
                "message_delta",
                json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": completion}}),
            ));
            ev.push(named("message_stop", json!({"type": "message_stop"})));
        }
        Wire::Responses => {
            let mut seq = 0u64;
            let mut push = |name: &str, mut v: Value| {
                v["type"] = json!(name);
                v["sequence_number"] = json!(seq);
                seq += 1;
                ev.push(named(name, v));
            };
            let progress = responses_body(model, "in_progress", "", 0, 0);
            push("response.created", json!({"response": progress}));
            for i in 0..words {
                push(
                    "response.output_text.delta",
                    json!({"item_id": "msg_soak", "output_index": 0, "content_index": 0,
                        "delta": format!("w{i} ")}),
                );
            }
            let done = responses_body(model, "completed", &text(words), prompt, completion);
            push("response.completed", json!({"response": done}));
        }
    }
    ev
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn head(status: u16, content_type: &str, length: Option<usize>, extra: &[(&str, &str)]) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\n",
        reason(status)
    );
    match length {
        Some(n) => h.push_str(&format!("content-length: {n}\r\n")),
        None => h.push_str("transfer-encoding: chunked\r\n"),
    }
    for (name, value) in extra {
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn write_json(
    out: &mut TcpStream,
    status: u16,
    body: &Value,
    extra: &[(&str, &str)],
) -> io::Result<Keep> {
    let text = body.to_string();
    let mut bytes = head(status, "application/json", Some(text.len()), extra).into_bytes();
    bytes.extend_from_slice(text.as_bytes());
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(true)
}

fn write_chunk(out: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n");
    out.write_all(&bytes)?;
    out.flush()
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Reads one line (`\n`-terminated), counting it against `budget`.
fn line(input: &mut BufReader<TcpStream>, budget: &mut usize) -> io::Result<String> {
    let mut raw = Vec::new();
    let n = input
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', &mut raw)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
    }
    *budget = budget.saturating_sub(n);
    if !raw.ends_with(b"\n") {
        return Err(bad("head too long"));
    }
    Ok(String::from_utf8_lossy(&raw).trim_end().to_owned())
}

/// The next request on the connection; `None` at a clean end (EOF or idle timeout before a
/// request starts).
fn read_request(input: &mut BufReader<TcpStream>) -> io::Result<Option<Req>> {
    let mut budget = MAX_HEAD;
    let first = match line(input, &mut budget) {
        Ok(l) => l,
        Err(_) => return Ok(None),
    };
    let mut parts = first.split_whitespace();
    let method = parts.next().ok_or_else(|| bad("no method"))?.to_owned();
    let target = parts.next().ok_or_else(|| bad("no target"))?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let mut headers = Vec::new();
    loop {
        let l = line(input, &mut budget)?;
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Req {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut budget = 1024;
            let size = line(input, &mut budget)?;
            let size = size.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !line(input, &mut budget)?.is_empty() {}
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            input.read_exact(&mut req.body[start..])?;
            let mut crlf = [0u8; 2];
            input.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().map_err(|_| bad("content-length"))?;
        if n > MAX_BODY {
            return Err(bad("body too large"));
        }
        req.body.resize(n, 0);
        input.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}
