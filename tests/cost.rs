//! Cost and budgets through the running gateway: every endpoint, native and translated,
//! streamed and not, records the upstream's cache tokens and the cost they imply; a key over
//! its budget is refused in both error shapes, and stays refused across a restart and a
//! rotation of the usage log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::gateway::{Reply, TestEnv};
use support::upstream::{FakeUpstream, providers};

const OPENAI_SECRET: &str = "sk-openai-cost-secret-1";
const ANTHROPIC_SECRET: &str = "sk-ant-cost-secret-2";

/// USD per million tokens the config sets for each fake.
const OA: Prices = Prices {
    input: 1.0,
    output: 2.0,
    cache_read: 0.5,
    cache_write: 1.0,
    cache_write_1h: 1.0,
};
const AN: Prices = Prices {
    input: 3.0,
    output: 15.0,
    cache_read: 0.3,
    cache_write: 3.75,
    cache_write_1h: 6.0,
};

struct Prices {
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
    cache_write_1h: f64,
}

impl Prices {
    /// The contract's formula over a usage line's tokens (`write_1h` from the fake's marks).
    fn cost(&self, line: &Value, write_1h: u64) -> f64 {
        let n = |f: &str| line[f].as_u64().unwrap() as f64;
        let (prompt, read, write) = (
            n("prompt_tokens"),
            n("cache_read_tokens"),
            n("cache_write_tokens"),
        );
        let w1h = write_1h as f64;
        ((prompt - read - write) * self.input
            + read * self.cache_read
            + (write - w1h) * self.cache_write
            + w1h * self.cache_write_1h
            + n("completion_tokens") * self.output)
            / 1e6
    }
}

struct Setup {
    env: TestEnv,
    _openai: FakeUpstream,
    _anthropic: FakeUpstream,
}

fn rest(openai: &FakeUpstream, anthropic: &FakeUpstream, env: &TestEnv, limits: &str) -> String {
    format!(
        r#"[limits]
{limits}

[[prices]]
match = "oa/*"
input = {oi}
output = {oo}
cache_read = {ocr}

[[prices]]
match = "an/*"
input = {ai}
output = {ao}
cache_read = {acr}
cache_write = {acw}
cache_write_1h = {acw1}

[[providers]]
name = "oa"
kind = "openai"
base_url = "{openai_url}"
api_key = "{openai_key}"

[[providers]]
name = "an"
kind = "anthropic"
base_url = "{anthropic_url}"
api_key = "{anthropic_key}"

[[models]]
name = "gpt"
targets = ["oa/gpt-4o-mini"]

[[models]]
name = "claude"
targets = ["an/claude-sonnet-4-6"]

# No [[prices]] entry matches it: the cost the upstream reports counts.
[[providers]]
name = "router"
kind = "openai"
base_url = "{openai_url}"
api_key = "{openai_key}"

[[models]]
name = "metered"
targets = ["router/vendor/model-x"]
"#,
        oi = OA.input,
        oo = OA.output,
        ocr = OA.cache_read,
        ai = AN.input,
        ao = AN.output,
        acr = AN.cache_read,
        acw = AN.cache_write,
        acw1 = AN.cache_write_1h,
        openai_url = openai.url(),
        openai_key = env.encrypt(OPENAI_SECRET),
        anthropic_url = anthropic.url(),
        anthropic_key = env.encrypt(ANTHROPIC_SECRET),
    )
}

fn setup(limits: &str, usage_extra: &str) -> Setup {
    let openai = FakeUpstream::start(providers::openai(OPENAI_SECRET));
    let anthropic = FakeUpstream::start(providers::anthropic(ANTHROPIC_SECRET));
    let mut env = TestEnv::new();
    let rest = rest(&openai, &anthropic, &env, limits);
    env.start_full("", "", usage_extra, &rest);
    Setup {
        env,
        _openai: openai,
        _anthropic: anthropic,
    }
}

fn body(path: &str, model: &str, text: &str, stream: bool) -> String {
    match path {
        "/v1/chat/completions" => json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": text}]}),
        "/v1/messages" => json!({"model": model, "stream": stream, "max_tokens": 50,
            "messages": [{"role": "user", "content": text}]}),
        "/v1/responses" => json!({"model": model, "stream": stream, "input": text}),
        other => panic!("no body for {other}"),
    }
    .to_string()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(1.0)
}

/// Each endpoint against each kind of target, streamed and not: the line's cache tokens are
/// the fake's, its prompt counts them, and `cost_usd` is the formula at the config's prices.
#[test]
fn every_path_records_cache_tokens_and_their_cost() {
    let s = setup("", "");
    let (read, write, write_1h) = (1000, 300, 100);
    let text = format!("please answer cache:{read}:{write}:{write_1h} now");
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
        for model in ["gpt", "claude"] {
            for stream in [false, true] {
                let what = format!("{path} via {model}, stream {stream}");
                let reply = s.env.post(path, &body(path, model, &text, stream));
                assert_eq!(reply.status, 200, "{what}: {}", reply.body);
                let line = s.env.usage_for(reply.request_id());
                let anthropic = model == "claude";
                let (prices, expect_write, expect_1h) = if anthropic {
                    (&AN, write, write_1h)
                } else {
                    // OpenAI reports cache reads only.
                    (&OA, 0, 0)
                };
                assert_eq!(line["cache_read_tokens"], read, "{what}: {line}");
                assert_eq!(line["cache_write_tokens"], expect_write, "{what}: {line}");
                let prompt = line["prompt_tokens"].as_u64().unwrap();
                assert!(prompt > read + expect_write, "{what}: {line}");
                assert!(line["completion_tokens"].as_u64().unwrap() > 0, "{what}");
                let cost = line["cost_usd"].as_f64().unwrap();
                let expected = prices.cost(&line, expect_1h);
                assert!(
                    close(cost, expected),
                    "{what}: {cost} != {expected}: {line}"
                );
            }
        }
    }
}

/// OpenRouter reports a cost itself: it is used when no `[[prices]]` entry matches, and an
/// unknown model with no reported cost has `cost_usd: null`, never 0.
#[test]
fn reported_cost_and_unknown_prices() {
    let openai = FakeUpstream::start(providers::openai(OPENAI_SECRET));
    let mut env = TestEnv::new();
    let rest = format!(
        r#"[[providers]]
name = "router"
kind = "openai"
base_url = "{url}"
api_key = "{key}"
"#,
        url = openai.url(),
        key = env.encrypt(OPENAI_SECRET),
    );
    env.start("", &rest);
    let reply = env.post(
        "/v1/chat/completions",
        &body(
            "/v1/chat/completions",
            "router/someone/model-x",
            "hi cost:0.0123",
            false,
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(env.usage_for(reply.request_id())["cost_usd"], json!(0.0123));
    let reply = env.post(
        "/v1/chat/completions",
        &body("/v1/chat/completions", "router/my-finetune", "hi", false),
    );
    assert_eq!(reply.status, 200);
    let line = env.usage_for(reply.request_id());
    assert!(line["cost_usd"].is_null(), "{line}");
    assert_eq!(line["cache_read_tokens"], 0);
}

fn remaining(reply: &Reply) -> f64 {
    reply
        .header("x-noviqi-budget-remaining-usd")
        .unwrap_or_else(|| panic!("no budget header: {:?}", reply.headers))
        .parse()
        .unwrap()
}

fn assert_refused(reply: &Reply, anthropic: bool) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.header("x-should-retry"), Some("false"));
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=31 * 86_400).contains(&retry), "{retry}");
    assert_eq!(remaining(reply), 0.0);
    let v = reply.json();
    if anthropic {
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
    } else {
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], "budget_exceeded");
    }
}

/// A $0.01 budget: requests pass while the spend is under it, then 429 in both shapes; a
/// restart (after the usage log rotated) still refuses.
#[test]
fn a_budget_refuses_once_spent_and_survives_restart_and_rotation() {
    // Each answer reports that it cost $0.003.
    let limits = "budget_usd = 0.01\nbudget_period = \"month\"";
    let mut s = setup(limits, "max_bytes = 600\nkeep = 1");
    let chat = |text: &str| body("/v1/chat/completions", "metered", text, false);
    let mut spent = 0.0;
    let mut passed = 0;
    loop {
        assert!(passed < 20, "never refused");
        let reply = s
            .env
            .post("/v1/chat/completions", &chat("one two three cost:0.003"));
        if reply.status == 429 {
            assert_refused(&reply, false);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(close(remaining(&reply), 0.01 - spent), "{spent}");
        let line = s.env.usage_for(reply.request_id());
        spent += line["cost_usd"].as_f64().unwrap();
        passed += 1;
    }
    assert!(close(spent, 0.012) && passed == 4, "{spent} after {passed}");
    let messages = body("/v1/messages", "metered", "hi", false);
    assert_refused(&s.env.post("/v1/messages", &messages), true);
    let streamed = body("/v1/chat/completions", "metered", "hi", true);
    assert_refused(&s.env.post("/v1/chat/completions", &streamed), false);
    // The log rotated (600-byte files) and the first lines are gone with it.
    let rotated = s.env.usage_path().with_extension("jsonl.1");
    assert!(rotated.exists());
    s.env.terminate();
    std::fs::remove_file(&rotated).unwrap();
    s.env.spawn();
    assert_refused(&s.env.post("/v1/chat/completions", &chat("hi")), false);
}
