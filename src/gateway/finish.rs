//! Finishing a proxied request: its [`Outcome`] handed once to the usage log, the limiter's
//! token window, the metrics, the dashboard and the access log; errors rendered for the
//! client with the key's rate-limit headers; the `Server-Timing` header.
//!
//! Owns nothing shared: a [`Draft`] is one request's record while it is open.

use std::time::Duration;

use super::Gateway;
use crate::cost::Usd;
use crate::error::ApiError;
use crate::http::Response;
use crate::outcome::Outcome;
use crate::routing::Attempt;

/// One request's record while it is being answered, with what only the answer needs.
pub(super) struct Draft {
    pub outcome: Outcome,
    /// The key's `x-ratelimit-*` headers, for whichever response ends the request.
    pub rate_headers: Vec<(&'static str, String)>,
    /// What is left of the key's budget before this request, when it has one.
    pub budget_remaining: Option<Usd>,
    /// Set once the request is recorded; a request is recorded exactly once.
    pub recorded: bool,
    /// The target answering, counted in flight until the draft drops (after a stream's last
    /// byte).
    pub attempt: Option<Attempt>,
}

impl Draft {
    pub fn new(outcome: Outcome) -> Draft {
        Draft {
            outcome,
            rate_headers: Vec::new(),
            budget_remaining: None,
            recorded: false,
            attempt: None,
        }
    }

    /// An empty shell left behind when the draft moves into a stream (already recorded, so
    /// it can never write a second usage line).
    pub fn detached(&self) -> Draft {
        let o = &self.outcome;
        let mut shell = Outcome::new(String::new(), o.client_ip, o.started, o.endpoint);
        shell.stream = o.stream;
        Draft {
            outcome: shell,
            rate_headers: Vec::new(),
            budget_remaining: None,
            recorded: true,
            attempt: None,
        }
    }
}

impl Draft {
    /// `response` with the key's headers: `x-ratelimit-*` when it has limits,
    /// `x-noviqi-budget-remaining-usd` when it has a budget.
    pub fn key_headers(&mut self, mut response: Response) -> Response {
        for (name, value) in self.rate_headers.drain(..) {
            response = response.with_header(name, value);
        }
        if let Some(remaining) = self.budget_remaining.take() {
            response = response.with_header("x-noviqi-budget-remaining-usd", remaining.to_string());
        }
        response
    }
}

impl Gateway {
    /// Records a refused or failed request and renders its error in the endpoint's shape,
    /// with the key's rate-limit headers when it has limits.
    pub(super) fn fail(&self, error: &ApiError, draft: &mut Draft) -> Response {
        draft.outcome.status = error.status();
        draft.outcome.error = Some(error.code());
        self.finish(draft);
        let response = error.response(draft.outcome.endpoint.dialect());
        draft.key_headers(response)
    }

    /// Ends the request's record and hands it to everything that keeps an account: the key's
    /// token window, the metrics, the dashboard, the access log and the usage log.
    pub(super) fn finish(&self, draft: &mut Draft) {
        if draft.recorded {
            return;
        }
        draft.recorded = true;
        let outcome = &mut draft.outcome;
        outcome.end();
        outcome.cost = match (outcome.pricing, &outcome.usage) {
            (Some(pricing), Some(usage)) => pricing.cost(usage).map(|(usd, _)| usd),
            _ => None,
        };
        if let (Some(key), Some(usage)) = (&outcome.key, outcome.usage) {
            let tokens = usage.prompt_tokens + usage.completion_tokens;
            if tokens > 0 {
                self.limiter.record_tokens(&key.hash, tokens, self.now());
            }
        }
        self.metrics.observe(outcome);
        self.admin.record(outcome);
        if log::log_enabled!(log::Level::Info) {
            log::info!("{}", access_line(outcome));
        }
        match (&self.usage, outcome.key_name(), outcome.cost) {
            (Some(log), _, _) => log.append(outcome),
            (None, Some(key), Some(cost)) => {
                self.spend.charge(key, outcome.ended_unix_secs(), cost);
            }
            (None, _, _) => {}
        }
        if let (Some(cluster), Some(key)) = (&self.cluster, &outcome.key) {
            let tokens = match (key.limits.tokens_per_minute, outcome.usage) {
                (Some(_), Some(u)) => u.prompt_tokens + u.completion_tokens,
                _ => 0,
            };
            // This instance's whole spend for the period, from its ledger (which the usage
            // log keeps exact): writing it again is harmless, so a lost write heals itself.
            let spend = key.budget.filter(|_| outcome.cost.is_some()).map(|budget| {
                let now = outcome.ended_unix_secs();
                let mine = self.spend.spent(&key.name, budget.period, now);
                (crate::cluster::Spend { budget, now }, mine)
            });
            if tokens > 0 || spend.is_some() {
                cluster.settle(&key.hash, tokens, spend);
            }
        }
    }
}

/// `Server-Timing`: the gateway's own time and the upstream's, in milliseconds.
pub(super) fn server_timing(gateway: Duration, upstream: Duration) -> String {
    // Milliseconds with three decimals, from integers (float formatting, then `format!`,
    // cost more than the rest of the header).
    let mut out = String::with_capacity(48);
    let mut digits = itoa::Buffer::new();
    for (name, d) in [("gateway;dur=", gateway), (", upstream;dur=", upstream)] {
        let us = d.as_micros();
        out.push_str(name);
        out.push_str(digits.format(us / 1000));
        out.push('.');
        // 1000 + the remainder has four ASCII digits; the last three are zero-padded.
        out.push_str(&digits.format(us % 1000 + 1000)[1..]);
    }
    out
}

/// The access log line, `POST <path> <status> key=<name> model=<model> <µs>us rid=<id>`
/// and ` error=<code>` after a failed request; built by hand (through `format_args!` it
/// cost more than the usage line).
fn access_line(outcome: &Outcome) -> String {
    let mut line = String::with_capacity(128);
    let mut digits = itoa::Buffer::new();
    line.push_str("POST ");
    line.push_str(outcome.endpoint.path());
    line.push(' ');
    line.push_str(digits.format(outcome.status));
    line.push_str(" key=");
    line.push_str(outcome.key_name().unwrap_or("-"));
    line.push_str(" model=");
    push_sanitized(&mut line, outcome.model.as_deref());
    line.push(' ');
    line.push_str(digits.format(outcome.latency().as_micros()));
    line.push_str("us rid=");
    line.push_str(&outcome.request_id);
    if let Some(error) = outcome.error {
        line.push_str(" error=");
        line.push_str(error);
    }
    line
}

/// A client-chosen model name as the access log shows it: at most 100 printable ASCII
/// characters, anything else as `?`; `-` when there is none.
fn push_sanitized(line: &mut String, model: Option<&str>) {
    let Some(model) = model else {
        line.push('-');
        return;
    };
    if model.len() <= 100 && model.bytes().all(|b| b.is_ascii_graphic()) {
        line.push_str(model);
        return;
    }
    line.extend(
        model
            .chars()
            .take(100)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' }),
    );
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::config::model::Key;
    use crate::outcome::Ended;
    use crate::translate::Endpoint;

    #[test]
    fn server_timing_in_milliseconds_with_three_decimals() {
        assert_eq!(
            server_timing(Duration::from_micros(1_234), Duration::from_millis(5)),
            "gateway;dur=1.234, upstream;dur=5.000"
        );
        assert_eq!(
            server_timing(Duration::from_nanos(999), Duration::from_micros(12_345_678)),
            "gateway;dur=0.000, upstream;dur=12345.678"
        );
    }

    #[test]
    fn model_names_in_the_access_log_are_printable_and_short() {
        let sanitized = |model| {
            let mut line = String::new();
            push_sanitized(&mut line, model);
            line
        };
        assert_eq!(sanitized(None), "-");
        assert_eq!(sanitized(Some("gpt-4o-mini")), "gpt-4o-mini");
        assert_eq!(sanitized(Some("a b\nc")), "a?b?c");
        let long = "x".repeat(300);
        assert_eq!(sanitized(Some(&long)).len(), 100);
        assert_eq!(sanitized(Some("é")), "?");
    }

    #[test]
    fn access_lines_name_the_request_and_its_error() {
        let mut outcome = Outcome::new(
            "req_1".into(),
            IpAddr::from([127, 0, 0, 1]),
            Instant::now(),
            Endpoint::Chat,
        );
        let ended = |latency| Ended {
            at: crate::clock::Stamp::now(),
            latency,
        };
        outcome.status = 200;
        outcome.model = Some("gpt-4o".into());
        outcome.key = Some(Arc::new(Key::named("laptop")));
        outcome.ended = Some(ended(Duration::from_micros(1234)));
        assert_eq!(
            access_line(&outcome),
            "POST /v1/chat/completions 200 key=laptop model=gpt-4o 1234us rid=req_1"
        );
        outcome.status = 502;
        outcome.error = Some("upstream_error");
        outcome.model = None;
        outcome.key = None;
        outcome.ended = Some(ended(Duration::ZERO));
        assert_eq!(
            access_line(&outcome),
            "POST /v1/chat/completions 502 key=- model=- 0us rid=req_1 error=upstream_error"
        );
    }
}
