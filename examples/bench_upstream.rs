//! A fast fake OpenAI upstream for `scripts/bench`, built on noviqi's own HTTP layer (a bench
//! tool only: examples are not installed by `cargo install`).
//!
//! `POST /v1/chat/completions` (any POST path): a small `chat.completion` JSON answer, or with
//! `"stream": true` an SSE stream of CHUNKS content events, DELAY_MS apart (the first at once),
//! then a usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`. A
//! model name containing `s<N>x<D>` (e.g. `bench/s20x500`) sets N events D ms apart for that
//! request. `GET /stats` answers `{"connections":C,"requests":R}`: the distinct client
//! connections accepted and the requests served, to check that a proxy reuses its upstream
//! connections.
//!
//! Usage: `bench_upstream [ADDR] [--chunks N] [--delay-ms D]` (defaults 127.0.0.1:0, 20, 50).
//! Prints the bound address on stderr and serves until killed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use noviqi::http::{Request, Response, Server, ServerOptions};
use parking_lot::Mutex;
use serde::Deserialize;

struct Upstream {
    chunks: u32,
    delay: Duration,
    peers: Mutex<HashSet<SocketAddr>>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

const USAGE: &str = r#"{"prompt_tokens":9,"completion_tokens":20,"total_tokens":29}"#;

impl Upstream {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        // Peers are distinct per open connection.
        self.peers.lock().insert(req.peer());
        self.requests.fetch_add(1, Ordering::Relaxed);
        if req.method() == "GET" && req.path() == "/stats" {
            let body = format!(
                r#"{{"connections":{},"requests":{}}}"#,
                self.peers.lock().len(),
                self.requests.load(Ordering::Relaxed)
            );
            return Response::json(200, body);
        }
        if req.method() != "POST" {
            return Response::json(404, r#"{"error":{"message":"not found"}}"#);
        }
        let Ok(bytes) = req.read_body(16 * 1024 * 1024) else {
            return Response::json(400, r#"{"error":{"message":"bad body"}}"#);
        };
        let Ok(body) = serde_json::from_slice::<Body>(&bytes) else {
            return Response::json(400, r#"{"error":{"message":"bad json"}}"#);
        };
        let model = serde_json::to_string(&body.model).unwrap_or_else(|_| "\"m\"".into());
        if !body.stream {
            let answer = format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello from the bench upstream."}},"finish_reason":"stop"}}],"usage":{USAGE}}}"#
            );
            return Response::json(200, answer);
        }
        let (chunks, delay) = knobs(&body.model).unwrap_or((self.chunks, self.delay));
        let usage = body.stream_options.is_some_and(|o| o.include_usage);
        Response::stream(200, move |w| {
            for i in 0..chunks {
                if i > 0 {
                    std::thread::sleep(delay);
                }
                let event = format!(
                    "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok {i} \"}},\"finish_reason\":null}}]}}\n\n"
                );
                w.send(event.as_bytes())?;
            }
            let mut tail = format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n"
            );
            if usage {
                tail.push_str(&format!(
                    "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[],\"usage\":{USAGE}}}\n\n"
                ));
            }
            tail.push_str("data: [DONE]\n\n");
            w.send(tail.as_bytes())
        })
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache")
    }
}

/// `s<N>x<D>` anywhere in the model name: N events, D ms apart.
fn knobs(model: &str) -> Option<(u32, Duration)> {
    let at = model.rfind('s')?;
    let (n, d) = model[at + 1..].split_once('x')?;
    let d: String = d.chars().take_while(char::is_ascii_digit).collect();
    Some((n.parse().ok()?, Duration::from_millis(d.parse().ok()?)))
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut chunks = 20;
    let mut delay_ms = 50;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next().and_then(|v| v.parse::<u64>().ok())
        };
        match arg.as_str() {
            "--chunks" => match value(&mut args) {
                Some(v) => chunks = v as u32,
                None => return usage(),
            },
            "--delay-ms" => match value(&mut args) {
                Some(v) => delay_ms = v,
                None => return usage(),
            },
            a if !a.starts_with('-') => addr = a.to_owned(),
            _ => return usage(),
        }
    }
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage();
    };
    let upstream = Arc::new(Upstream {
        chunks,
        delay: Duration::from_millis(delay_ms),
        peers: Mutex::new(HashSet::new()),
        requests: AtomicU64::new(0),
    });
    let options = ServerOptions {
        max_connections: 8192,
        thread_stack_bytes: 256 * 1024,
        ..ServerOptions::default()
    };
    let handler = move |req: &mut Request<'_>| upstream.handle(req);
    let server = match Server::bind(addr, options, Arc::new(handler)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: bench_upstream [ADDR] [--chunks N] [--delay-ms D]");
    ExitCode::FAILURE
}
