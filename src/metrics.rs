//! Prometheus metrics for `GET /metrics`, written by hand in the text exposition format
//! (version 0.0.4): no client crate, a handful of counters, two histograms and a gauge.
//!
//! State owned here: the counters since the process started. Everything updated per request
//! lives behind one mutex taken once per finished request ([`Metrics::observe`]); the active
//! streams gauge and the reload counters are atomics. Label cardinality is bounded: `model`
//! and `key` take only names from the config (anything else is `other`), `endpoint` is one of
//! the gateway's fixed paths, and `status` is a number from 100 to 599 (else 0).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::cost::Usd;
use crate::cost::spend::Ledger;
use crate::outcome::Outcome;
use crate::routing::{State, TargetView, Verdict};

/// Upper bounds (seconds) of the upstream latency histogram.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds (seconds) of the gateway overhead histogram.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Most distinct label sets kept per counter family; past it new ones fold into `other`.
const MAX_SERIES: usize = 4096;
/// The label value for names the config does not know.
pub const OTHER: &str = "other";
/// The label value for requests that never authenticated or named no model.
pub const NONE: &str = "none";

/// The process's metrics; shared by every connection thread.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    active_streams: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// One `noviqi_requests_total` series: endpoint, model, key, status.
type Series = (&'static str, Arc<str>, Arc<str>, u16);

#[derive(Default)]
struct Inner {
    /// Key and model names allowed as label values (from the config, updated on reload),
    /// shared with the series that use them so counting a request allocates nothing.
    keys: HashSet<Arc<str>>,
    models: HashSet<Arc<str>>,
    requests: BTreeMap<Series, u64>,
    /// Tokens and cost by (model, key).
    tokens: BTreeMap<(Arc<str>, Arc<str>), Tally>,
    rate_limited: u64,
    locked_out: u64,
    admin_login_failures: u64,
    upstream: Histogram,
    overhead: Histogram,
}

/// What one (model, key) series has used.
#[derive(Default)]
struct Tally {
    prompt: u64,
    completion: u64,
    cache_read: u64,
    cache_write: u64,
    cost: Usd,
}

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str, bounds: &[f64]) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// A guard counting one open stream in `noviqi_active_streams` until dropped.
pub struct StreamGuard<'a>(&'a Metrics);

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Takes the key and model names that may appear as label values from `config`.
    pub fn configure(&self, config: &Config) {
        let mut inner = self.inner.lock();
        inner.keys = config
            .keys
            .iter()
            .map(|k| Arc::from(k.name.as_str()))
            .collect();
        inner.models = config
            .models
            .iter()
            .map(|m| Arc::from(m.name.as_str()))
            .collect();
    }

    /// Counts one finished request (one short lock).
    /// Counts one finished proxied request.
    pub fn observe(&self, o: &Outcome) {
        let status = if (100..600).contains(&o.status) {
            o.status
        } else {
            0
        };
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let key = label(o.key_name(), &inner.keys);
        let model = label(o.model.as_deref(), &inner.models);
        let mut series = (o.endpoint.path(), model, key, status);
        if !inner.requests.contains_key(&series) && inner.requests.len() >= MAX_SERIES {
            series = (OTHER, other(), other(), 0);
        }
        *inner.requests.entry(series.clone()).or_default() += 1;
        if let Some(usage) = o.usage {
            let mut pair = (series.1, series.2);
            if !inner.tokens.contains_key(&pair) && inner.tokens.len() >= MAX_SERIES {
                pair = (other(), other());
            }
            let entry = inner.tokens.entry(pair).or_default();
            entry.prompt += usage.prompt_tokens;
            entry.completion += usage.completion_tokens;
            entry.cache_read += usage.cache_read_tokens;
            entry.cache_write += usage.cache_write_tokens;
            entry.cost += o.cost.unwrap_or_default();
        }
        match o.error {
            Some("rate_limited") => inner.rate_limited += 1,
            Some("locked_out") => inner.locked_out += 1,
            _ => {}
        }
        if let Some(timing) = o.timing {
            inner
                .upstream
                .observe(UPSTREAM_BUCKETS, timing.upstream.as_secs_f64());
            inner
                .overhead
                .observe(OVERHEAD_BUCKETS, timing.gateway.as_secs_f64());
        }
    }

    /// Counts an admin login refused because the address is locked out.
    pub fn admin_locked_out(&self) {
        self.inner.lock().locked_out += 1;
    }

    /// Counts a failed admin login (wrong password).
    pub fn admin_login_failed(&self) {
        self.inner.lock().admin_login_failures += 1;
    }

    /// Counts one open stream until the guard drops.
    pub fn stream_started(&self) -> StreamGuard<'_> {
        self.active_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self)
    }

    /// Counts a config reload, applied (`ok`) or refused.
    pub fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// [`Metrics::render`], `noviqi_budget_remaining_usd` for every key with a budget and the
    /// targets' gauges and counters.
    pub fn render_all(
        &self,
        config: &Config,
        spend: &Ledger,
        targets: &[TargetView],
        cluster: Option<&Cluster>,
        now: i64,
    ) -> String {
        let mut out = self.render();
        render_targets(&mut out, targets);
        if let Some(cluster) = cluster {
            header(
                &mut out,
                "noviqi_cluster_up",
                "1 while Redis answers, 0 while this instance cannot reach it.",
                "gauge",
            );
            let _ = writeln!(out, "noviqi_cluster_up {}", u8::from(cluster.is_up()));
            header(
                &mut out,
                "noviqi_cluster_errors_total",
                "Redis calls that failed or were not made because Redis was down.",
                "counter",
            );
            let _ = writeln!(out, "noviqi_cluster_errors_total {}", cluster.errors());
        }
        header(
            &mut out,
            "noviqi_budget_remaining_usd",
            "What is left of each key's budget in its current period, in USD.",
            "gauge",
        );
        for key in &config.keys {
            if let Some(budget) = key.budget {
                let left = budget
                    .limit
                    .saturating_sub(spend.spent(&key.name, budget.period, now));
                let _ = writeln!(
                    out,
                    "noviqi_budget_remaining_usd{{key=\"{}\"}} {left}",
                    escape(&key.name)
                );
            }
        }
        out
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let inner = self.inner.lock();
        header(
            &mut out,
            "noviqi_requests_total",
            "Proxied requests by endpoint, model, key and status.",
            "counter",
        );
        for ((endpoint, model, key, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "noviqi_requests_total{{endpoint=\"{}\",model=\"{}\",key=\"{}\",status=\"{status}\"}} {n}",
                escape(endpoint),
                escape(model),
                escape(key)
            );
        }
        header(
            &mut out,
            "noviqi_tokens_total",
            "Tokens reported by upstreams, by kind (prompt counts them all; cache_read and \
             cache_write are parts of it), model and key.",
            "counter",
        );
        for ((model, key), t) in &inner.tokens {
            let kinds = [
                ("prompt", t.prompt),
                ("completion", t.completion),
                ("cache_read", t.cache_read),
                ("cache_write", t.cache_write),
            ];
            for (kind, n) in kinds {
                let _ = writeln!(
                    out,
                    "noviqi_tokens_total{{kind=\"{kind}\",model=\"{}\",key=\"{}\"}} {n}",
                    escape(model),
                    escape(key)
                );
            }
        }
        header(
            &mut out,
            "noviqi_cost_usd_total",
            "What answered requests cost, in USD, by model and key (requests of unknown price \
             add nothing).",
            "counter",
        );
        for ((model, key), t) in &inner.tokens {
            let _ = writeln!(
                out,
                "noviqi_cost_usd_total{{model=\"{}\",key=\"{}\"}} {}",
                escape(model),
                escape(key),
                t.cost
            );
        }
        inner.upstream.write(
            &mut out,
            "noviqi_upstream_latency_seconds",
            "Upstream time per answered request: to the end of a whole answer, to the headers of a stream.",
            UPSTREAM_BUCKETS,
        );
        inner.overhead.write(
            &mut out,
            "noviqi_gateway_overhead_seconds",
            "The gateway's own time per answered request (all but the upstream's).",
            OVERHEAD_BUCKETS,
        );
        let simple = [
            (
                "noviqi_rate_limited_total",
                "Requests refused by a key's rate limit.",
                inner.rate_limited,
            ),
            (
                "noviqi_locked_out_total",
                "Requests and admin logins refused because the client address is locked out.",
                inner.locked_out,
            ),
            (
                "noviqi_admin_login_failures_total",
                "Admin logins with a wrong password.",
                inner.admin_login_failures,
            ),
        ];
        drop(inner);
        for (name, help, value) in simple {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "noviqi_config_reloads_total",
            "Config reloads by result (ok: swapped in; error: refused, old config kept).",
            "counter",
        );
        for (result, counter) in [("ok", &self.reloads_ok), ("error", &self.reloads_failed)] {
            let _ = writeln!(
                out,
                "noviqi_config_reloads_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "noviqi_active_streams",
            "Streamed responses being relayed now.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "noviqi_active_streams {}",
            self.active_streams.load(Ordering::Relaxed).max(0)
        );
        out
    }
}

/// `noviqi_target_up`, `noviqi_target_inflight` and `noviqi_upstream_requests_total`, one
/// series per configured target (the config bounds them).
fn render_targets(out: &mut String, targets: &[TargetView]) {
    header(
        out,
        "noviqi_target_up",
        "1 when the target takes requests, 0 while it cools down after consecutive failures.",
        "gauge",
    );
    for t in targets {
        let up = u8::from(t.state == State::Healthy);
        let _ = writeln!(
            out,
            "noviqi_target_up{{target=\"{}\"}} {up}",
            escape(&t.name)
        );
    }
    header(
        out,
        "noviqi_target_inflight",
        "Requests in flight at the target (a stream until its last byte).",
        "gauge",
    );
    for t in targets {
        let _ = writeln!(
            out,
            "noviqi_target_inflight{{target=\"{}\"}} {}",
            escape(&t.name),
            t.inflight
        );
    }
    header(
        out,
        "noviqi_upstream_requests_total",
        "Attempts at each target by outcome (ok, client_error, rate_limited, server_error, \
         timeout, unreachable, unreadable); fallback attempts included.",
        "counter",
    );
    for t in targets {
        for (verdict, n) in Verdict::ALL.iter().zip(t.attempts) {
            let _ = writeln!(
                out,
                "noviqi_upstream_requests_total{{target=\"{}\",outcome=\"{}\"}} {n}",
                escape(&t.name),
                verdict.label()
            );
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `name` when the config knows it, else `other`; `none` when absent.
fn label(name: Option<&str>, known: &HashSet<Arc<str>>) -> Arc<str> {
    match name.map(|n| known.get(n)) {
        None => none(),
        Some(Some(n)) => Arc::clone(n),
        Some(None) => other(),
    }
}

/// The shared `other` label value.
fn other() -> Arc<str> {
    static VALUE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(OTHER));
    Arc::clone(&VALUE)
}

/// The shared `none` label value.
fn none() -> Arc<str> {
    static VALUE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(NONE));
    Arc::clone(&VALUE)
}

/// A label value escaped as the text format requires (`\`, `"`, newline).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn obs(model: &str, key: Option<&str>, status: u16) -> Outcome {
        let mut o = Outcome::new(
            "req_1".into(),
            std::net::IpAddr::from([127, 0, 0, 1]),
            std::time::Instant::now(),
            crate::translate::Endpoint::Chat,
        );
        o.key = key.map(|name| std::sync::Arc::new(crate::config::model::Key::named(name)));
        o.model = Some(model.into());
        o.status = status;
        o.error = (status == 429).then_some("rate_limited");
        o.timing = Some(crate::outcome::Timing {
            upstream: Duration::from_millis(120),
            gateway: Duration::from_micros(300),
        });
        o.usage = Some(crate::translate::Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            ..Default::default()
        });
        o
    }

    #[test]
    fn unknown_names_fold_into_other_and_counts_add_up() {
        let m = Metrics::default();
        {
            let mut inner = m.inner.lock();
            inner.models.insert("gpt".into());
            inner.keys.insert("laptop".into());
        }
        m.observe(&obs("gpt", Some("laptop"), 200));
        m.observe(&obs("gpt", Some("laptop"), 200));
        m.observe(&obs("made-up\"model", None, 429));
        let text = m.render();
        assert!(text.contains(
            "noviqi_requests_total{endpoint=\"/v1/chat/completions\",model=\"gpt\",key=\"laptop\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "noviqi_requests_total{endpoint=\"/v1/chat/completions\",model=\"other\",key=\"none\",status=\"429\"} 1"
        ));
        assert!(!text.contains("made-up"));
        assert!(text.contains("noviqi_rate_limited_total 1"));
        assert!(text.contains("noviqi_upstream_latency_seconds_bucket{le=\"0.25\"} 3"));
        assert!(text.contains("noviqi_upstream_latency_seconds_count 3"));
        assert!(
            text.contains("noviqi_tokens_total{kind=\"prompt\",model=\"gpt\",key=\"laptop\"} 6")
        );
    }

    #[test]
    fn stream_gauge_follows_guards() {
        let m = Metrics::default();
        let a = m.stream_started();
        let b = m.stream_started();
        assert!(m.render().contains("noviqi_active_streams 2"));
        drop(a);
        drop(b);
        assert!(m.render().contains("noviqi_active_streams 0"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
