//! The soak's fake (`examples/soak_upstream.rs`, driven by `scripts/soak`): OpenAI chat
//! completions, the Responses API and Anthropic Messages on any path prefix, with upstream
//! faults chosen by a marker in the request body, so a soak can drive every failure path of
//! the gateway's upstream side.
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
//! - `stall`: the stall (default 4 s) before the answer's head;
//! - `stall-mid`: a stream's head and first event, then the stall, then the rest;
//! - `long`: a stream of 40 words 25 ms apart.
//!
//! Otherwise: an answer of 6 words (a stream: one event per word, 10 ms apart), with usage
//! (prompt = body bytes / 4 + 1, completion = words).
//!
//! `GET /stats` answers `{"requests","open","leaks","bad_auth","refused"}`: requests served,
//! connections open now, requests whose headers carried a gateway key (`nvq_`, which must
//! never leave the gateway), requests without the expected provider credential (when one was
//! given), and connections refused because the fake's `max_connections` were open.
//! State owned: the leak and credential counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::answer::{self, Answer, Usage, Wire};
use super::{Counters, Received, Reply, paced};

const WORDS: usize = 6;

pub struct Soak {
    /// The credentials the gateway must send, when given.
    pub openai_key: Option<String>,
    pub anthropic_key: Option<String>,
    /// How long `stall` and `stall-mid` stay silent.
    pub stall: Duration,
    /// The fake's own counters, for `/stats`.
    pub counters: Arc<Counters>,
    leaks: AtomicU64,
    bad_auth: AtomicU64,
}

impl Soak {
    pub fn new(
        openai_key: Option<String>,
        anthropic_key: Option<String>,
        stall: Duration,
        counters: Arc<Counters>,
    ) -> Soak {
        Soak {
            openai_key,
            anthropic_key,
            stall,
            counters,
            leaks: AtomicU64::new(0),
            bad_auth: AtomicU64::new(0),
        }
    }

    /// The script.
    pub fn answer(&self, r: &Received) -> Reply {
        if r.method == "GET" && r.route() == "/stats" {
            let now = self.counters.now();
            return Reply::json(
                200,
                json!({"requests": now.requests, "open": now.open,
                    "leaks": self.leaks.load(Ordering::Relaxed),
                    "bad_auth": self.bad_auth.load(Ordering::Relaxed),
                    "refused": now.refused}),
            );
        }
        let Some(wire) = Wire::of(r.route()).filter(|_| r.method == "POST") else {
            let body = json!({"error": {"message": "soak upstream: no such endpoint"}});
            return Reply::json(404, body);
        };
        self.check_headers(r, wire);
        let fault = fault(&r.body, wire);
        let reply = match fault.as_deref() {
            Some("500") => return Reply::json(500, error_body(wire, "server")),
            Some("429") => {
                return Reply::json(429, error_body(wire, "rate")).with_header("retry-after", "1");
            }
            Some("close") => return Reply::Close,
            _ => answer(wire, r, fault.as_deref(), self.stall),
        };
        match fault.as_deref() {
            Some("slow") => reply.after(Duration::from_millis(1200)),
            Some("stall") => reply.after(self.stall),
            _ => reply,
        }
    }

    fn check_headers(&self, r: &Received, wire: Wire) {
        if r.headers.iter().any(|(_, v)| v.contains("nvq_")) {
            self.leaks.fetch_add(1, Ordering::Relaxed);
        }
        let ok = if wire.is_anthropic() {
            self.anthropic_key
                .as_deref()
                .is_none_or(|k| r.header("x-api-key") == Some(k))
        } else {
            self.openai_key
                .as_deref()
                .is_none_or(|k| r.header("authorization") == Some(&format!("Bearer {k}")))
        };
        if !ok {
            self.bad_auth.fetch_add(1, Ordering::Relaxed);
        }
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
    let rate = kind == "rate";
    if wire.is_anthropic() {
        let t = if rate {
            "rate_limit_error"
        } else {
            "api_error"
        };
        json!({"type": "error", "error": {"type": t, "message": message}})
    } else {
        let t = if rate {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        json!({"error": {"message": message, "type": t, "param": null, "code": null}})
    }
}

/// The answer (whole or streamed) with the body-shaping faults applied.
fn answer(wire: Wire, r: &Received, fault: Option<&str>, stall: Duration) -> Reply {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let prompt = r.body.len() as u64 / 4 + 1;
    if wire == Wire::CountTokens {
        return Reply::json(200, json!({ "input_tokens": prompt }));
    }
    let (words, gap) = match fault {
        Some("long") => (40, Duration::from_millis(25)),
        Some("slow") => (WORDS, Duration::from_millis(150)),
        _ => (WORDS, Duration::from_millis(10)),
    };
    let answer = Answer {
        model: body["model"].as_str().unwrap_or("soak").to_owned(),
        text: (0..words).map(|i| format!("w{i} ")).collect(),
        calls: Vec::new(),
        usage: Usage {
            input: prompt,
            cached: 0,
            output: words as u64,
            written: 0,
            written_1h: 0,
            cost: None,
        },
        split_args: false,
    };
    if body["stream"] != true {
        let whole = match wire {
            Wire::Chat => answer::chat_json(&answer),
            Wire::Messages | Wire::CountTokens => answer::messages_json(&answer),
            Wire::Responses => answer::responses_json(&answer),
        };
        return match fault {
            Some("truncate") => Reply::json(200, whole).truncated(),
            Some("garbage") => Reply::Full {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{\"id\": \"not json".to_vec(),
            },
            _ => Reply::json(200, whole),
        };
    }
    let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
    let events = match wire {
        Wire::Chat => answer::chat_events(&answer, include_usage),
        Wire::Messages | Wire::CountTokens => answer::messages_events(&answer),
        Wire::Responses => answer::responses_events(&answer),
    };
    let mut events = paced(events, gap);
    let mut finish = true;
    match fault {
        Some("truncate") => {
            events.truncate(2);
            finish = false;
        }
        Some("stall-mid") => events[1].0 += stall,
        _ => {}
    }
    Reply::Sse { events, finish }
}
