//! The bench's fake (`examples/bench_upstream.rs`, driven by `scripts/bench`): a cheap
//! upstream with tunable pacing that answers in the wire format of the path it is called on.
//!
//! Any `POST` to `…/messages` gets an Anthropic Messages answer, to `…/responses` an OpenAI
//! Responses answer, to anything else an OpenAI `chat.completion`; with `"stream": true` the
//! same answer as SSE, all of it at once. Chat streams are paced: `chunks` content events
//! (`tok 0 `, `tok 1 `, …) `delay` apart (the first at once), then at once the finish, a usage
//! chunk when `stream_options.include_usage` is set, and `data: [DONE]`. In the model name,
//! `s<N>x<D>` (e.g. `bench/s20x500`) sets N events D ms apart for that request, and `hold<D>`
//! (e.g. `claude-bench-hold3000`) holds the answer D ms after the whole request has arrived,
//! so that many big requests are in flight at once.
//! `GET /stats` answers `{"connections":C,"requests":R,"held_max":H}`: the client connections
//! accepted, the requests served, and the most requests held by `hold<D>` at one moment since
//! the previous `/stats` (reading it starts a new count), to check that a proxy reuses its
//! upstream connections and that all of a load was in flight at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::answer::{self, Answer, Usage, Wire, pieces, whole};
use super::{Counters, Received, Reply};

const USAGE: Usage = Usage {
    input: 9,
    cached: 0,
    output: 20,
    written: 0,
    written_1h: 0,
    cost: None,
};

pub struct Bench {
    /// Events per stream, unless the model name says otherwise.
    pub chunks: u32,
    /// Between two events, unless the model name says otherwise.
    pub delay: Duration,
    /// The fake's own counters, for `/stats`.
    pub counters: Arc<Counters>,
    /// Requests being held by `hold<D>` now, and the most at one moment.
    pub held: Arc<Held>,
}

/// Requests held by a `hold<D>` model at once.
#[derive(Default)]
pub struct Held {
    pub now: AtomicU64,
    pub max: AtomicU64,
}

/// The fields the fake reads; the rest of a multi-megabyte body is skipped, not built into a
/// tree, so the fake stays cheap next to the proxy being measured.
#[derive(Deserialize)]
struct Probe {
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

impl Bench {
    /// The script.
    pub fn answer(&self, r: &Received) -> Reply {
        if r.method == "GET" && r.route() == "/stats" {
            let now = self.counters.now();
            let stats = json!({"connections": now.connections, "requests": now.requests,
                "held_max": self.held.max.swap(0, Ordering::SeqCst)});
            return Reply::json(200, stats);
        }
        if r.method != "POST" {
            return Reply::json(404, json!({"error": {"message": "not found"}}));
        }
        let Ok(probe) = serde_json::from_slice::<Probe>(&r.body) else {
            return Reply::json(400, json!({"error": {"message": "bad json"}}));
        };
        if let Some(hold) = hold(&probe.model) {
            // Held on the connection's own thread, so the count is exact.
            let now = self.held.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.held.max.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(hold);
            self.held.now.fetch_sub(1, Ordering::SeqCst);
        }
        match Wire::of(r.route()) {
            Some(Wire::Messages) => {
                let answer = short(probe.model);
                if probe.stream {
                    Reply::sse(answer::messages_events(&answer), Duration::ZERO)
                } else {
                    Reply::json(200, answer::messages_json(&answer))
                }
            }
            Some(Wire::Responses) => {
                let answer = short(probe.model);
                if probe.stream {
                    Reply::sse(answer::responses_events(&answer), Duration::ZERO)
                } else {
                    Reply::json(200, answer::responses_json(&answer))
                }
            }
            _ if probe.stream => {
                let include_usage = probe.stream_options.is_some_and(|o| o.include_usage);
                self.chat_stream(probe.model, include_usage)
            }
            _ => Reply::json(
                200,
                answer::chat_json(&Answer {
                    text: whole("Hello from the bench upstream."),
                    ..short(probe.model)
                }),
            ),
        }
    }

    /// A chat stream paced by `chunks` and `delay`, or by the model's `s<N>x<D>`.
    fn chat_stream(&self, model: String, include_usage: bool) -> Reply {
        let (chunks, delay) = knobs(&model).unwrap_or((self.chunks, self.delay));
        let answer = Answer {
            text: (0..chunks).map(|i| format!("tok {i} ")).collect(),
            ..short(model)
        };
        // The role and the first piece at once, each later piece `delay` after the one
        // before, the tail at once.
        let paced = 2..=chunks as usize;
        let events = answer::chat_events(&answer, include_usage)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    if paced.contains(&i) {
                        delay
                    } else {
                        Duration::ZERO
                    },
                    e,
                )
            })
            .collect();
        Reply::Sse {
            events,
            finish: true,
        }
    }
}

/// A short text answer: a few pieces, the bench's usage.
fn short(model: String) -> Answer {
    Answer {
        model,
        text: pieces("Hello from the bench upstream."),
        calls: Vec::new(),
        usage: USAGE,
        split_args: false,
    }
}

/// `s<N>x<D>` anywhere in the model name: N events, D ms apart.
fn knobs(model: &str) -> Option<(u32, Duration)> {
    let at = model.rfind('s')?;
    let (n, d) = model[at + 1..].split_once('x')?;
    let d: String = d.chars().take_while(char::is_ascii_digit).collect();
    Some((n.parse().ok()?, Duration::from_millis(d.parse().ok()?)))
}

/// `hold<D>` anywhere in the model name: hold the answer D ms.
fn hold(model: &str) -> Option<Duration> {
    let at = model.find("hold")?;
    let d: String = model[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(Duration::from_millis(d.parse().ok()?))
}
