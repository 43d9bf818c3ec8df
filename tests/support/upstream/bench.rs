//! The bench's fake (`examples/bench_upstream.rs`, driven by `scripts/bench`): a cheap OpenAI
//! chat upstream with tunable pacing.
//!
//! Any `POST`: a small `chat.completion`, or with `"stream": true` a stream of `chunks` content
//! events (`tok 0 `, `tok 1 `, …) `delay` apart (the first at once), then at once the finish, a
//! usage chunk when `stream_options.include_usage` is set, and `data: [DONE]`. A model name
//! containing `s<N>x<D>` (e.g. `bench/s20x500`) sets N events D ms apart for that request.
//! `GET /stats` answers `{"connections":C,"requests":R}`: the client connections accepted and
//! the requests served, to check that a proxy reuses its upstream connections.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::answer::{self, Answer, Usage, whole};
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
}

impl Bench {
    /// The script.
    pub fn answer(&self, r: &Received) -> Reply {
        if r.method == "GET" && r.route() == "/stats" {
            let now = self.counters.now();
            let stats = json!({"connections": now.connections, "requests": now.requests});
            return Reply::json(200, stats);
        }
        if r.method != "POST" {
            return Reply::json(404, json!({"error": {"message": "not found"}}));
        }
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            return Reply::json(400, json!({"error": {"message": "bad json"}}));
        };
        let model = body["model"].as_str().unwrap_or("").to_owned();
        if body["stream"] != true {
            let answer = Answer {
                model,
                text: whole("Hello from the bench upstream."),
                calls: Vec::new(),
                usage: USAGE,
                split_args: false,
            };
            return Reply::json(200, answer::chat_json(&answer));
        }
        let (chunks, delay) = knobs(&model).unwrap_or((self.chunks, self.delay));
        let answer = Answer {
            model,
            text: (0..chunks).map(|i| format!("tok {i} ")).collect(),
            calls: Vec::new(),
            usage: USAGE,
            split_args: false,
        };
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
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

/// `s<N>x<D>` anywhere in the model name: N events, D ms apart.
fn knobs(model: &str) -> Option<(u32, Duration)> {
    let at = model.rfind('s')?;
    let (n, d) = model[at + 1..].split_once('x')?;
    let d: String = d.chars().take_while(char::is_ascii_digit).collect();
    Some((n.parse().ok()?, Duration::from_millis(d.parse().ok()?)))
}
