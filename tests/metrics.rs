//! `GET /metrics` end to end: who may read it, that it is strict Prometheus text, and that its
//! counters move with traffic (requests, tokens, histograms, rate limits, lockouts, reloads,
//! streams).

// Test helpers outside #[test] functions (here and in tests/support) may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use noviqi::crypto::apikey;
use serde_json::json;
use support::eventually;
use support::gateway::{MOCK_PROVIDER, Reply, TestEnv, admin_table};

/// One parsed exposition: samples by `name{sorted labels}` and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&sample_id(name, labels)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn sample_id(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x",b="y"}` → pairs; strict about quoting and escapes.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or(format!("bad label in {s}"))?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {s}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("newline in label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s}")),
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name}"));
        }
        out.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("junk after label in {s}"));
        }
    }
    Ok(out)
}

/// A strict parser for the text format: HELP/TYPE at most once per family and before its
/// samples, known types, sample names belonging to a declared family (with the histogram
/// suffixes), valid names and labels, no duplicate series, numeric values, cumulative
/// histogram buckets ending in `+Inf` equal to `_count`.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut helped = HashMap::new();
    let mut seen_samples: HashMap<String, bool> = HashMap::new();
    if !text.ends_with('\n') {
        return Err("must end with a newline".into());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name.ok_or(format!("bad comment line {line:?}"))?;
            if !is_metric_name(name) {
                return Err(format!("bad name in {line:?}"));
            }
            if seen_samples.contains_key(name) {
                return Err(format!("{line:?} after samples of {name}"));
            }
            match kw {
                Some("HELP") => {
                    if helped.insert(name.to_owned(), ()).is_some() {
                        return Err(format!("second HELP for {name}"));
                    }
                }
                Some("TYPE") => {
                    let t = arg.ok_or("TYPE without type")?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(format!("unknown type {t}"));
                    }
                    if exp.types.insert(name.to_owned(), t.to_owned()).is_some() {
                        return Err(format!("second TYPE for {name}"));
                    }
                }
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        if line.is_empty() {
            return Err("empty line".into());
        }
        let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or(format!("bad braces: {line:?}"))?;
                (name, parse_labels(inner)?)
            }
            None => (series, Vec::new()),
        };
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (exp.types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        let kind = exp
            .types
            .get(family)
            .ok_or(format!("sample {name} before its TYPE"))?;
        if kind == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(format!("negative counter {line:?}"));
        }
        seen_samples.insert(family.to_owned(), true);
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if exp.samples.insert(sample_id(name, &pairs), value).is_some() {
            return Err(format!("duplicate series {line:?}"));
        }
    }
    for (family, kind) in &exp.types {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: Vec<(f64, f64)> = exp
            .samples
            .iter()
            .filter_map(|(id, v)| {
                let le = id.strip_prefix(&format!("{family}_bucket{{le=\""))?;
                let le = le.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("{family}: no +Inf bucket"));
        }
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{family}: buckets not cumulative"));
        }
        let count = exp.samples.get(&sample_id(&format!("{family}_count"), &[]));
        if count != Some(&buckets.last().unwrap().1) {
            return Err(format!("{family}: +Inf bucket differs from _count"));
        }
    }
    Ok(exp)
}

struct Setup {
    env: TestEnv,
    admin_key: String,
    limited_key: String,
}

fn setup() -> Setup {
    let mut env = TestEnv::new();
    let (admin_key, admin_hash) = apikey::generate();
    let (limited_key, limited_hash) = apikey::generate();
    let (admin_key, limited_key) = (admin_key.to_string(), limited_key.to_string());
    let rest = format!(
        "{}{MOCK_PROVIDER}[[keys]]\nname = \"ops\"\nhash = \"{admin_hash}\"\nprefix = \"{}\"\n\
         admin = true\n\n[[keys]]\nname = \"limited\"\nhash = \"{limited_hash}\"\nprefix = \"{}\"\n\
         requests_per_minute = 1\n\n",
        admin_table("pw", 3600),
        &admin_key[..12],
        &limited_key[..12],
    );
    env.start_full("", "lockout_max_failures = 50\n", "", &rest);
    Setup {
        env,
        admin_key,
        limited_key,
    }
}

fn scrape(s: &Setup) -> Exposition {
    let reply = s.env.get(
        "/metrics",
        &[("authorization", &format!("Bearer {}", s.admin_key))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&reply.body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{}", reply.body))
}

fn chat(env: &TestEnv, key: &str, model: &str, stream: bool) -> Reply {
    env.post_with(
        "/v1/chat/completions",
        &json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "one two three four"}]})
        .to_string(),
        &[("authorization", &format!("Bearer {key}"))],
    )
}

const CHAT: &str = "/v1/chat/completions";

#[test]
fn only_admins_may_read_metrics() {
    let s = setup();
    let env = &s.env;
    let none = env.get("/metrics", &[]);
    assert_eq!(none.status, 401);
    assert!(none.json()["error"]["message"].is_string());
    let plain = env.get(
        "/metrics",
        &[("authorization", &format!("Bearer {}", env.key))],
    );
    assert_eq!(plain.status, 403);
    assert_eq!(plain.json()["error"]["code"], "not_admin");
    let bogus = env.get("/metrics", &[("authorization", "Bearer nvq_bogus")]);
    assert_eq!(bogus.status, 401);
    let post = env.post_with(
        "/metrics",
        "",
        &[("authorization", &format!("Bearer {}", s.admin_key))],
    );
    assert_eq!(post.status, 405);
    let cookie = env.admin_login("pw").expect("login");
    assert_eq!(env.get("/metrics", &[("cookie", &cookie)]).status, 200);
    let exp = scrape(&s);
    assert_eq!(exp.types["noviqi_requests_total"], "counter");
    assert_eq!(exp.types["noviqi_upstream_latency_seconds"], "histogram");
    assert_eq!(exp.types["noviqi_active_streams"], "gauge");
}

#[test]
fn counters_move_with_traffic() {
    let s = setup();
    let env = &s.env;
    let before = scrape(&s);
    let ok = [
        ("endpoint", CHAT),
        ("model", "mock"),
        ("key", "test"),
        ("status", "200"),
    ];
    assert_eq!(before.get("noviqi_requests_total", &ok), None);

    for _ in 0..3 {
        assert_eq!(chat(env, &env.key, "mock", false).status, 200);
    }
    let streamed = chat(env, &env.key, "mock", true);
    assert_eq!(streamed.status, 200);
    assert!(streamed.body.contains("[DONE]"));
    assert_eq!(chat(env, &env.key, "invented-model", false).status, 404);
    assert_eq!(chat(env, "nvq_not_a_key", "mock", false).status, 401);
    assert_eq!(chat(env, &s.limited_key, "mock", false).status, 200);
    assert_eq!(chat(env, &s.limited_key, "mock", false).status, 429);

    let after = scrape(&s);
    assert_eq!(after.value("noviqi_requests_total", &ok), 4.0);
    let unknown_model = [
        ("endpoint", CHAT),
        ("model", "other"),
        ("key", "test"),
        ("status", "404"),
    ];
    assert_eq!(after.value("noviqi_requests_total", &unknown_model), 1.0);
    let no_key = [
        ("endpoint", CHAT),
        ("model", "none"),
        ("key", "none"),
        ("status", "401"),
    ];
    assert_eq!(after.value("noviqi_requests_total", &no_key), 1.0);
    assert!(!after.samples.keys().any(|k| k.contains("invented")));
    assert_eq!(after.value("noviqi_rate_limited_total", &[]), 1.0);
    let prompt = [("kind", "prompt"), ("model", "mock"), ("key", "test")];
    assert_eq!(
        after.value("noviqi_tokens_total", &prompt),
        4.0 * 4.0,
        "4 words, 4 requests"
    );
    let completion = [("kind", "completion"), ("model", "mock"), ("key", "test")];
    assert!(after.value("noviqi_tokens_total", &completion) > 0.0);
    // Answered requests (5 with the limited key's first) land in both histograms.
    let answered = after.value("noviqi_upstream_latency_seconds_count", &[])
        - before.value("noviqi_upstream_latency_seconds_count", &[]);
    assert_eq!(answered, 5.0);
    assert_eq!(
        after.value("noviqi_gateway_overhead_seconds_count", &[]),
        5.0
    );
    assert_eq!(after.value("noviqi_active_streams", &[]), 0.0);
    env.assert_no_leaks(&[&s.admin_key, &s.limited_key]);
}

#[test]
fn lockouts_and_reloads_are_counted() {
    let mut env = TestEnv::new();
    let (admin_key, admin_hash) = apikey::generate();
    let admin_key = admin_key.to_string();
    let keys = format!(
        "{}{MOCK_PROVIDER}[[keys]]\nname = \"ops\"\nhash = \"{admin_hash}\"\nprefix = \"{}\"\nadmin = true\n\n",
        admin_table("pw", 3600),
        &admin_key[..12]
    );
    env.start_full("", "lockout_max_failures = 2\n", "", &keys);
    let s = Setup {
        env,
        admin_key,
        limited_key: String::new(),
    };
    let env = &s.env;
    assert_eq!(
        scrape(&s).value("noviqi_config_reloads_total", &[("result", "ok")]),
        0.0
    );

    // Reloads: a good edit and a broken one.
    let text = env.config_text_full("", "lockout_max_failures = 2\n", "", &keys);
    env.write_config(&format!("{text}\n# edited\n"));
    assert!(eventually(Duration::from_secs(10), || {
        scrape(&s).value("noviqi_config_reloads_total", &[("result", "ok")]) >= 1.0
    }));
    env.write_config("this is not toml [");
    assert!(eventually(Duration::from_secs(10), || {
        scrape(&s).value("noviqi_config_reloads_total", &[("result", "error")]) >= 1.0
    }));
    env.write_config(&text);

    // Lockouts: failed admin logins are counted apart from bad keys but a lock from either refuses
    // both; refusals are counted. From the locked address even the admin key is refused, so read
    // through a session made first.
    let cookie = env.admin_login("pw").expect("login");
    assert_eq!(
        env.post_form("/admin/login", "password=bad", &[]).status,
        401
    );
    assert_eq!(
        env.post_form("/admin/login", "password=bad", &[]).status,
        401
    );
    assert_eq!(
        env.post_form("/admin/login", "password=pw", &[]).status,
        429
    );
    let by_key = env.get(
        "/metrics",
        &[("authorization", &format!("Bearer {}", s.admin_key))],
    );
    assert_eq!(by_key.status, 429);
    let reply = env.get("/metrics", &[("cookie", &cookie)]);
    assert_eq!(reply.status, 200);
    let exp = parse(&reply.body).unwrap();
    assert_eq!(exp.value("noviqi_admin_login_failures_total", &[]), 2.0);
    assert_eq!(exp.value("noviqi_locked_out_total", &[]), 1.0);
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    assert!(parse(good).is_ok());
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total{k=\"v} 1\n",
        "# TYPE a_total counter\na_total{k=\"v\",} 1\n",
        "# TYPE a_total counter\na_total x\n",
        "# TYPE a_total counter\na_total 1\na_total 2\n",
        "# TYPE a_total counter\na_total 1\n# HELP a_total late\n",
        "# TYPE a_total counter\n# TYPE a_total gauge\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
        "# TYPE a_total counter\na_total 1",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}
