//! Routing through the real binary against fake upstreams on port 0: each strategy's choice
//! of first target, and cooldowns that keep a failing target out (counted at the fake).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use noviqi::crypto::apikey;
use serde_json::json;
use support::eventually;
use support::gateway::{TestEnv, raw_post};
use support::upstream::{FakeUpstream, Received, Reply};

/// A fake OpenAI upstream: `slow` in the prompt gets a stream that holds its last event for
/// 5 s (time for a test to send requests past it); anything else a chat completion.
fn upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| {
        let body = r.json();
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        if prompt.contains("slow") {
            let chunk = |text: &str| {
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [{"index": 0, "delta": {"content": text},
                       "finish_reason": null}]})
                .to_string()
            };
            return Reply::Sse {
                events: vec![
                    (Duration::ZERO, format!("data: {}\n\n", chunk("first"))),
                    (
                        Duration::from_secs(5),
                        format!("data: {}\n\n", chunk("last")),
                    ),
                    (Duration::ZERO, "data: [DONE]\n\n".to_owned()),
                ],
                finish: true,
            };
        }
        Reply::json(
            200,
            json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "ok"}}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        )
    })
}

fn provider(name: &str, url: &str) -> String {
    format!("[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{url}\"\n")
}

/// An admin key (for `/metrics`) as a `[[keys]]` entry, and the key itself.
fn admin_key() -> (String, String) {
    let (key, hash) = apikey::generate();
    let entry = format!(
        "[[keys]]\nname = \"ops\"\nhash = \"{hash}\"\nprefix = \"{}\"\nadmin = true\n",
        &key.to_string()[..12]
    );
    (key.to_string(), entry)
}

fn chat(prompt: &str, stream: bool) -> String {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
        .to_string()
}

/// The provider that answered request `reply` (from its usage line).
fn answered_by(env: &TestEnv, request_id: &str) -> String {
    env.usage_for(request_id)["provider"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn send(env: &TestEnv) -> String {
    let reply = env.post("/v1/chat/completions", &chat("hi", false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    answered_by(env, reply.request_id())
}

fn metric(env: &TestEnv, key: &str, series: &str) -> Option<f64> {
    let reply = env.get("/metrics", &[("authorization", &format!("Bearer {key}"))]);
    assert_eq!(reply.status, 200);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn round_robin_alternates_exactly() {
    let (a, b) = (upstream(), upstream());
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"a/x\", \"b/x\"]\nstrategy = \"round_robin\"\n",
            provider("a", &a.url()),
            provider("b", &b.url())
        ),
    );
    let order: Vec<String> = (0..10).map(|_| send(&env)).collect();
    assert_eq!(order, ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]);
    assert_eq!((a.received().len(), b.received().len()), (5, 5));
}

#[test]
fn weighted_three_to_one_over_400_requests() {
    let (a, b) = (upstream(), upstream());
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"a/x\", \"b/x\"]\nstrategy = \"weighted\"\nweights = [3, 1]\n",
            provider("a", &a.url()),
            provider("b", &b.url())
        ),
    );
    for _ in 0..400 {
        let reply = env.post("/v1/chat/completions", &chat("hi", false));
        assert_eq!(reply.status, 200);
    }
    let (to_a, to_b) = (a.received().len(), b.received().len());
    assert!((285..=315).contains(&to_a), "a got {to_a}");
    assert!((95..=105).contains(&to_b), "b got {to_b}");
    assert_eq!(to_a + to_b, 400);
}

/// Opens a streamed request and reads until its first event is in.
fn open_slow_stream(env: &TestEnv) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(env.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(raw_post("/v1/chat/completions", &env.key, &chat("slow", true)).as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("first") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
    }
    reader
}

#[test]
fn least_busy_sends_new_requests_to_the_idle_target() {
    let (a, b) = (upstream(), upstream());
    let (admin, admin_entry) = admin_key();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"a/x\", \"b/x\"]\nstrategy = \"least_busy\"\n{admin_entry}",
            provider("a", &a.url()),
            provider("b", &b.url())
        ),
    );
    // Two slow streams: the first takes a (a tie, broken in turn), the second the idle b.
    let first = open_slow_stream(&env);
    let second = open_slow_stream(&env);
    assert_eq!(a.received().len(), 1);
    assert_eq!(b.received().len(), 1);
    let inflight = |t: &str| {
        metric(
            &env,
            &admin,
            &format!("noviqi_target_inflight{{target=\"{t}\"}}"),
        )
    };
    assert_eq!((inflight("a/x"), inflight("b/x")), (Some(1.0), Some(1.0)));
    // A third holds a: everything else goes to b while it is busier.
    let third = open_slow_stream(&env);
    let busy = if a.received().len() == 2 { "a" } else { "b" };
    let idle = if busy == "a" { "b" } else { "a" };
    for _ in 0..6 {
        assert_eq!(send(&env), idle, "a new request went to the busier target");
    }
    // A stream counts until its last byte; read to their ends, the counts drop.
    for mut stream in [first, second, third] {
        let mut line = String::new();
        while !line.contains("[DONE]") {
            line.clear();
            assert!(
                stream.read_line(&mut line).unwrap() > 0,
                "stream ended early"
            );
        }
    }
    assert!(eventually(Duration::from_secs(10), || {
        inflight("a/x") == Some(0.0) && inflight("b/x") == Some(0.0)
    }));
}

fn refusing() -> FakeUpstream {
    FakeUpstream::refusing()
}

#[test]
fn a_refusing_target_is_called_once_per_cooldown_not_once_per_request() {
    let dead = refusing();
    let up = upstream();
    let (admin, admin_entry) = admin_key();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"dead/x\", \"up/x\"]\ncooldown_failures = 2\ncooldown_secs = 2\n{admin_entry}",
            provider("dead", &dead.url()),
            provider("up", &up.url())
        ),
    );
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(send(&env), "up");
    }
    assert_eq!(
        dead.connections(),
        2,
        "two failures trip it; then it is skipped"
    );
    assert_eq!(up.received().len(), 20);
    let up_metric = "noviqi_target_up{target=\"dead/x\"}";
    assert_eq!(metric(&env, &admin, up_metric), Some(0.0));
    assert_eq!(
        metric(
            &env,
            &admin,
            "noviqi_upstream_requests_total{target=\"up/x\",outcome=\"ok\"}"
        ),
        Some(20.0)
    );
    assert!(
        env.stderr()
            .contains("target dead/x: 2 consecutive failures")
    );
    // After the cooldown one trial goes out; it fails, and the target cools down again.
    assert!(eventually(Duration::from_secs(10), || {
        send(&env);
        dead.connections() == 3
    }));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the trial came before the cooldown ended"
    );
    for _ in 0..10 {
        assert_eq!(send(&env), "up");
    }
    assert_eq!(dead.connections(), 3, "a failed trial cools down again");
    assert!(env.stderr().contains("trial request failed"));
    assert!(!env.stderr().contains(&env.key), "no key in the log");
}

#[test]
fn a_429_with_retry_after_keeps_the_target_out_that_long() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limited = {
        let calls = calls.clone();
        FakeUpstream::start(move |_r: &Received| {
            calls.fetch_add(1, Ordering::SeqCst);
            Reply::json(429, json!({"error": {"message": "slow down"}}))
                .with_header("retry-after", "5")
        })
    };
    let up = upstream();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"limited/x\", \"up/x\"]\ncooldown_failures = 1\ncooldown_secs = 1\n",
            provider("limited", &limited.url()),
            provider("up", &up.url())
        ),
    );
    let first = Instant::now();
    assert_eq!(send(&env), "up", "the 429 falls back");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Polled every 100 ms: the target is out for Retry-After (5 s), not cooldown_secs (1 s).
    assert!(eventually(Duration::from_secs(15), || {
        send(&env);
        calls.load(Ordering::SeqCst) == 2
    }));
    let out_for = first.elapsed();
    assert!(
        out_for >= Duration::from_millis(4900),
        "called again after {out_for:?}"
    );
    assert!(env.stderr().contains("cooling down for 5s"));
}

#[test]
fn a_lone_target_is_tried_even_while_cooling() {
    let dead = refusing();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}[[models]]\nname = \"m\"\ntargets = [\"dead/x\"]\ncooldown_failures = 1\ncooldown_secs = 600\n",
            provider("dead", &dead.url())
        ),
    );
    for n in 1..=3 {
        let reply = env.post("/v1/chat/completions", &chat("hi", false));
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert_eq!(dead.connections(), n, "the only target is never skipped");
    }
}

#[test]
fn cooldowns_survive_a_reload_for_targets_that_remain() {
    let dead = refusing();
    let up = upstream();
    let mut env = TestEnv::new();
    let models = |extra: &str| {
        format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"dead/x\", \"up/x\"]\ncooldown_failures = 1\ncooldown_secs = 600\n{extra}",
            provider("dead", &dead.url()),
            provider("up", &up.url())
        )
    };
    env.start("", &models(""));
    assert_eq!(send(&env), "up");
    assert_eq!(dead.connections(), 1);
    let reloads = || env.stderr().matches("config reloaded").count();
    let text = env.config_text(
        "",
        &models("[[models]]\nname = \"other\"\ntargets = [\"up/y\"]\n"),
    );
    env.write_config(&text);
    assert!(eventually(Duration::from_secs(10), || reloads() >= 1));
    for _ in 0..5 {
        assert_eq!(send(&env), "up");
    }
    assert_eq!(dead.connections(), 1, "still cooling after the reload");
}

#[test]
fn the_dashboard_shows_each_target_with_its_state_and_attempts() {
    let dead = refusing();
    let up = upstream();
    let (admin, admin_entry) = admin_key();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}{}[[models]]\nname = \"m\"\ntargets = [\"dead/x\", \"up/x\"]\ncooldown_failures = 1\ncooldown_secs = 600\n{admin_entry}",
            support::gateway::admin_table("correct horse", 3600),
            provider("dead", &dead.url()),
            provider("up", &up.url())
        ),
    );
    for _ in 0..3 {
        assert_eq!(send(&env), "up");
    }
    let reply = env.get(
        "/admin/api/usage?range=hour",
        &[("authorization", &format!("Bearer {admin}"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.json();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{report}");
    let (dead_row, up_row) = (&targets[0], &targets[1]);
    assert_eq!(dead_row["name"], "dead/x");
    assert_eq!(dead_row["state"], "cooling");
    assert!(dead_row["cooling_secs"].as_u64().unwrap() > 500);
    assert_eq!(
        (dead_row["requests"].as_u64(), dead_row["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(up_row["name"], "up/x");
    assert_eq!(up_row["state"], "up");
    assert_eq!(
        (up_row["requests"].as_u64(), up_row["errors"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(up_row["p50_ms"].is_u64());
    assert_eq!(up_row["inflight"], 0);
    assert!(report.get("by_target").is_none());
}

#[test]
fn a_failing_answer_is_the_clients_when_every_later_target_is_cooling() {
    let failing = FakeUpstream::start(|_r: &Received| {
        Reply::json(503, json!({"error": {"message": "busy"}}))
    });
    let dead = refusing();
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!(
            "{}{}[[models]]\nname = \"m\"\ntargets = [\"failing/x\", \"dead/x\"]\ncooldown_failures = 1\ncooldown_secs = 600\n",
            provider("failing", &failing.url()),
            provider("dead", &dead.url())
        ),
    );
    // Both fail; the last target's failure is the client's.
    let reply = env.post("/v1/chat/completions", &chat("hi", false));
    assert_eq!(reply.status, 502, "{}", reply.body);
    // Both are cooling now: failing/x is forced as the one ending first, dead/x is skipped,
    // and failing/x's own answer reaches the client.
    let reply = env.post("/v1/chat/completions", &chat("hi", false));
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("busy"), "{}", reply.body);
    assert_eq!(dead.connections(), 1);
    assert_eq!(failing.received().len(), 2);
}
