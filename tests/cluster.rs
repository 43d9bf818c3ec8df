//! Several `noviqi serve` instances sharing one `redis-server` (started by the test on a free
//! loopback port): limits and budgets exact across them, and what happens when Redis goes away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::eventually;
use support::gateway::{MOCK_PROVIDER, TestEnv};
use support::redis::RedisServer;

/// One instance in front of `redis`, using `key_of`'s gateway key when given (so several
/// instances share one key), with `extra` (tables such as `[limits]`) and `policy`.
fn instance(redis: &RedisServer, key_of: Option<&TestEnv>, policy: &str, extra: &str) -> TestEnv {
    instance_with(redis, key_of, policy, "", extra)
}

/// [`instance`] with extra `[security]` lines.
fn instance_with(
    redis: &RedisServer,
    key_of: Option<&TestEnv>,
    policy: &str,
    security: &str,
    extra: &str,
) -> TestEnv {
    let mut env = TestEnv::new();
    if let Some(other) = key_of {
        env.key = other.key.clone();
        env.key_hash = other.key_hash.clone();
    }
    // The `[[keys]]` entry comes last in the config, so the price table comes before it.
    let rest = format!(
        "{extra}\n[cluster]\nredis_url = \"{}\"\non_redis_error = \"{policy}\"\n\n\
         [[prices]]\nmatch = \"mock/*\"\ninput = 1000\noutput = 1000\n\n{MOCK_PROVIDER}",
        redis.url()
    );
    env.start_full("", security, "", &rest);
    env
}

/// Three instances sharing one key.
fn three(redis: &RedisServer, policy: &str, extra: &str) -> Vec<TestEnv> {
    let first = instance(redis, None, policy, extra);
    let second = instance(redis, Some(&first), policy, extra);
    let third = instance(redis, Some(&first), policy, extra);
    vec![first, second, third]
}

/// A chat request of three words (the mock answers 3 prompt and 3 completion tokens).
fn chat(env: &TestEnv) -> u16 {
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": "one two three"}]});
    env.post("/v1/chat/completions", &body.to_string()).status
}

/// An `admin = true` key (for `/metrics`): its `[[keys]]` entry and the key.
fn admin_key() -> (String, String) {
    let (key, hash) = noviqi::crypto::apikey::generate();
    let entry = format!(
        "[[keys]]\nname = \"ops\"\nhash = \"{hash}\"\nprefix = \"{}\"\nadmin = true\n\n",
        &key[..12]
    );
    (key.to_string(), entry)
}

fn metric(env: &TestEnv, admin: &str, name: &str) -> Option<f64> {
    let reply = env.get("/metrics", &[("authorization", &format!("Bearer {admin}"))]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_request_limit_is_exact_across_three_instances() {
    let redis = RedisServer::start();
    let envs = Arc::new(three(
        &redis,
        "local",
        "[limits]\nrequests_per_minute = 30\n",
    ));
    let threads: Vec<_> = (0..30)
        .map(|t| {
            let envs = envs.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| chat(&envs[(t + i) % 3]))
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((admitted, limited), (30, 270), "{statuses:?}");
    // Each instance alone would have admitted 30 of its own 100.
    for env in envs.iter() {
        assert_eq!(chat(env), 429);
    }
}

#[test]
fn a_token_limit_is_shared_across_instances() {
    let redis = RedisServer::start();
    let envs = three(&redis, "local", "[limits]\ntokens_per_minute = 20\n");
    // 6 tokens per request: 0, 6, 12 and 18 are under 20, so four are admitted, one per
    // instance in turn, and then every instance refuses.
    for i in 0..4 {
        assert_eq!(chat(&envs[i % 3]), 200, "request {i}");
    }
    for env in &envs {
        let reply = env.post(
            "/v1/chat/completions",
            &json!({"model": "mock", "messages": [{"role": "user", "content": "x"}]}).to_string(),
        );
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert_eq!(reply.header("x-ratelimit-remaining-tokens"), Some("0"));
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
}

#[test]
fn a_budget_spent_through_two_instances_is_refused_on_the_third() {
    let redis = RedisServer::start();
    // $1000 per million tokens both ways: 6 tokens cost $0.006; the budget is two requests.
    let envs = three(&redis, "local", "[limits]\nbudget_usd = 0.012\n");
    assert_eq!(chat(&envs[0]), 200);
    assert_eq!(chat(&envs[1]), 200);
    let reply = envs[2].post(
        "/v1/chat/completions",
        &json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(reply.body.contains("budget_exceeded"), "{}", reply.body);
    assert_eq!(reply.header("x-noviqi-budget-remaining-usd"), Some("0"));
    // Each instance alone has spent only its own share.
    assert_eq!(chat(&envs[0]), 429);
}

#[test]
fn with_redis_gone_local_keeps_serving_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let (admin, entry) = admin_key();
    let env = instance(
        &redis,
        None,
        "local",
        &format!("[limits]\nrequests_per_minute = 1000\n\n{entry}"),
    );
    assert_eq!(chat(&env), 200);
    assert_eq!(metric(&env, &admin, "noviqi_cluster_up"), Some(1.0));
    redis.kill();
    for _ in 0..5 {
        assert_eq!(chat(&env), 200, "local policy keeps serving");
    }
    assert_eq!(metric(&env, &admin, "noviqi_cluster_up"), Some(0.0));
    assert!(metric(&env, &admin, "noviqi_cluster_errors_total").unwrap() >= 1.0);
    assert_eq!(
        env.stderr().matches("Redis is unreachable").count(),
        1,
        "one line, not one per request"
    );
    redis.restart();
    assert!(eventually(Duration::from_secs(15), || metric(
        &env,
        &admin,
        "noviqi_cluster_up"
    ) == Some(1.0)));
    assert!(env.stderr().contains("Redis is reachable again"));
    assert_eq!(chat(&env), 200);
    // Shared again: the admission above is in the fresh Redis's window.
    assert_eq!(
        redis.command(&["DBSIZE"]).as_deref().map(|r| r != ":0"),
        Some(true)
    );
}

#[test]
fn with_redis_gone_closed_refuses_proxied_requests_but_stays_healthy() {
    let mut redis = RedisServer::start();
    let env = instance(
        &redis,
        None,
        "closed",
        "[limits]\nrequests_per_minute = 1000\n",
    );
    assert_eq!(chat(&env), 200);
    redis.kill();
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post("/v1/chat/completions", &body.to_string());
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("cluster_unavailable"), "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(env.get("/healthz", &[]).status, 200);
    redis.restart();
    assert!(eventually(Duration::from_secs(15), || chat(&env) == 200));
}

#[test]
fn the_redis_password_never_reaches_a_log() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.command(&["CONFIG", "SET", "requirepass", "s3cret-redis-pw"]),
        Some("+OK".to_owned())
    );
    let mut env = TestEnv::new();
    env.rust_log = "trace";
    let password = env.encrypt("s3cret-redis-pw");
    let (admin, entry) = admin_key();
    let rest = format!(
        "[limits]\nrequests_per_minute = 5\n\n{entry}[cluster]\nredis_url = \"{}\"\npassword = \"{password}\"\n\n{MOCK_PROVIDER}",
        redis.url()
    );
    env.start("", &rest);
    assert_eq!(chat(&env), 200);
    assert_eq!(metric(&env, &admin, "noviqi_cluster_up"), Some(1.0));
    assert!(!env.stderr().contains("s3cret-redis-pw"));
}

#[test]
fn a_lockout_earned_through_one_instance_holds_on_the_others() {
    let redis = RedisServer::start();
    let security = "lockout_max_failures = 3\nlockout_window_secs = 60\nlockout_secs = 120\n";
    let a = instance_with(&redis, None, "local", security, "");
    let b = instance_with(&redis, Some(&a), "local", security, "");
    let c = instance_with(&redis, Some(&a), "local", security, "");
    assert_eq!(chat(&b), 200);
    // One wrong key at each instance: one streak, so the third locks the address.
    let bad = [("authorization", "Bearer nvq_wrong")];
    for env in [&a, &b, &c] {
        assert_eq!(env.get("/v1/models", &bad).status, 401);
    }
    // The right key is refused everywhere: at once where it locked, within the poll elsewhere.
    assert_eq!(chat(&c), 429);
    for env in [&a, &b] {
        assert!(eventually(Duration::from_secs(5), || chat(env) == 429));
        let reply = env.get(
            "/v1/models",
            &[("authorization", &format!("Bearer {}", env.key))],
        );
        assert_eq!(reply.status, 429);
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((100..=120).contains(&retry), "{retry}");
    }
    assert_eq!(c.stderr().matches("locked for 120s").count(), 1);
}

#[test]
fn a_cooldown_entered_on_one_instance_is_honoured_by_the_others() {
    use support::upstream::FakeUpstream;
    let redis = RedisServer::start();
    let dead = FakeUpstream::refusing();
    let (admin, entry) = admin_key();
    let extra = format!(
        "[[providers]]\nname = \"dead\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
         [[models]]\nname = \"m\"\ntargets = [\"dead/x\", \"mock/echo\"]\n\
         cooldown_failures = 1\ncooldown_secs = 600\n\n{entry}",
        dead.url()
    );
    let a = instance(&redis, None, "local", &extra);
    let b = instance(&redis, Some(&a), "local", &extra);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    assert_eq!(a.post("/v1/chat/completions", &body).status, 200);
    assert_eq!(dead.connections(), 1);
    let up = "noviqi_target_up{target=\"dead/x\"}";
    assert!(eventually(Duration::from_secs(5), || metric(
        &b, &admin, up
    ) == Some(0.0)));
    for _ in 0..5 {
        assert_eq!(b.post("/v1/chat/completions", &body).status, 200);
    }
    assert_eq!(dead.connections(), 1, "b skipped the target a cooled down");
}

#[test]
fn an_admin_session_works_on_every_instance_and_a_logout_ends_it_everywhere() {
    let redis = RedisServer::start();
    // One config for both, as a cluster has: the same password hash.
    let admin = support::gateway::admin_table("correct horse", 3600);
    let a = instance(&redis, None, "local", &admin);
    let b = instance(&redis, Some(&a), "local", &admin);
    let cookie = a.admin_login("correct horse").expect("login on a");
    let usage = |env: &TestEnv| {
        env.get("/admin/api/usage?range=hour", &[("cookie", &cookie)])
            .status
    };
    assert_eq!(usage(&b), 200, "the session made on a works on b");
    // Log out on b with the CSRF token of b's page.
    let page = b.get("/admin", &[("cookie", &cookie)]);
    let marker = "name=\"csrf\" value=\"";
    let start = page.body.find(marker).expect("csrf field") + marker.len();
    let csrf = &page.body[start..start + 43];
    let out = b.post_form(
        "/admin/logout",
        &format!("csrf={csrf}"),
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(usage(&a), 401, "logged out on b, so out on a");
    assert_eq!(usage(&b), 401);
}

/// Kubernetes mounts a ConfigMap as `noviqi.toml -> ..data/noviqi.toml` with
/// `..data -> ..<timestamp>/`, and rolls out a new version by swapping `..data` atomically.
#[test]
fn a_configmap_style_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let mut env = TestEnv::new();
    let dir = env.dir.path().to_owned();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("noviqi.toml"), text).unwrap();
    };
    let first = env.config_text("", MOCK_PROVIDER);
    version("..2026_12_05_01", &first);
    symlink("..2026_12_05_01", dir.join("..data")).unwrap();
    symlink("..data/noviqi.toml", env.config_path()).unwrap();
    env.spawn();
    assert_eq!(chat(&env), 200);
    // The new version adds a key; it is swapped in the way the kubelet does it.
    let (key, hash) = noviqi::crypto::apikey::generate();
    let second = format!(
        "{first}\n[[keys]]\nname = \"rolled-out\"\nhash = \"{hash}\"\nprefix = \"{}\"\n",
        &key[..12]
    );
    version("..2026_12_05_02", &second);
    symlink("..2026_12_05_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    // Waiting on the log, not on the new key: unknown keys would lock the address out.
    assert!(
        eventually(Duration::from_secs(10), || env
            .stderr()
            .contains("config reloaded")),
        "{}",
        env.stderr()
    );
    let models = env.get(
        "/v1/models",
        &[("authorization", &format!("Bearer {}", *key))],
    );
    assert_eq!(models.status, 200);
}

/// docs/cluster.md's ACL user: every feature works with only those commands.
#[test]
fn the_documented_acl_user_is_enough() {
    use support::upstream::FakeUpstream;
    let redis = RedisServer::start();
    // The command list exactly as docs/cluster.md gives it.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cluster.md")).unwrap();
    let from = docs
        .find("ACL SETUSER")
        .expect("the ACL in docs/cluster.md");
    let end = from + docs[from..].find("```").unwrap();
    let acl: Vec<&str> = docs[from..end]
        .split_whitespace()
        .filter(|word| *word != "\\")
        .map(|word| {
            if word == ">CHANGE-ME" {
                ">acl-pw-1"
            } else {
                word
            }
        })
        .collect();
    assert_eq!(redis.command(&acl), Some("+OK".to_owned()));
    let dead = FakeUpstream::refusing();
    let (admin, entry) = admin_key();
    let admin_table = support::gateway::admin_table("pw", 3600);
    let start = |key_of: Option<&TestEnv>| {
        let mut env = TestEnv::new();
        if let Some(other) = key_of {
            env.key = other.key.clone();
            env.key_hash = other.key_hash.clone();
        }
        let password = env.encrypt("acl-pw-1");
        let rest = format!(
            "[limits]\nrequests_per_minute = 100\ntokens_per_minute = 10000\nbudget_usd = 10\n\n\
             {admin_table}{entry}[cluster]\nredis_url = \"redis://noviqi@127.0.0.1:{}/0\"\npassword = \"{password}\"\n\n\
             [[prices]]\nmatch = \"mock/*\"\ninput = 1\noutput = 1\n\n{MOCK_PROVIDER}\
             [[providers]]\nname = \"dead\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[models]]\nname = \"m\"\ntargets = [\"dead/x\", \"mock/echo\"]\ncooldown_failures = 1\n\n",
            redis.port,
            dead.url()
        );
        env.start_full("", "lockout_max_failures = 2\n", "", &rest);
        env
    };
    let env = start(None);
    let other = start(Some(&env));
    // Limits, budget, tokens, spend.
    assert_eq!(chat(&env), 200);
    // A target cooldown, seen by the other instance through the cooldowns index.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    assert_eq!(env.post("/v1/chat/completions", &body).status, 200);
    let up = "noviqi_target_up{target=\"dead/x\"}";
    assert!(eventually(Duration::from_secs(5), || metric(
        &other, &admin, up
    ) == Some(0.0)));
    // A session, and a logout.
    let cookie = env.admin_login("pw").expect("login");
    assert_eq!(
        other.get("/admin/api/usage", &[("cookie", &cookie)]).status,
        200
    );
    for env in [&env, &other] {
        assert_eq!(
            metric(env, &admin, "noviqi_cluster_errors_total"),
            Some(0.0)
        );
        assert_eq!(metric(env, &admin, "noviqi_cluster_up"), Some(1.0));
    }
    // A lock, seen by the other instance through the locks index (a refused command would
    // have sent both back to their own tables, and the other would never see it).
    let bad = [("authorization", "Bearer nvq_wrong")];
    assert_eq!(env.get("/v1/models", &bad).status, 401);
    assert_eq!(env.get("/v1/models", &bad).status, 401);
    assert!(eventually(Duration::from_secs(5), || chat(&other) == 429));
}

#[test]
fn the_dashboard_on_any_instance_shows_the_whole_cluster() {
    let redis = RedisServer::start();
    let (admin, entry) = admin_key();
    let extra = format!("{}{entry}", support::gateway::admin_table("pw", 3600));
    let a = instance(&redis, None, "local", &extra);
    let b = instance(&redis, Some(&a), "local", &extra);
    for _ in 0..3 {
        assert_eq!(chat(&a), 200);
    }
    for _ in 0..2 {
        assert_eq!(chat(&b), 200);
    }
    let report = |env: &TestEnv, range: &str| {
        let reply = env.get(
            &format!("/admin/api/usage?range={range}"),
            &[("authorization", &format!("Bearer {admin}"))],
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    for range in ["hour", "day"] {
        assert!(
            eventually(Duration::from_secs(10), || {
                let (ra, rb) = (report(&a, range), report(&b, range));
                ra["totals"]["requests"] == 5 && rb["totals"]["requests"] == 5
            }),
            "{range}: {}",
            report(&a, range)
        );
    }
    let r = report(&b, "hour");
    assert_eq!(r["scope"], "cluster");
    assert_eq!(r["by_key"][0]["name"], "test");
    assert_eq!(r["by_key"][0]["totals"]["requests"], 5);
}

#[test]
fn a_hung_redis_costs_one_timeout_not_a_hang() {
    let redis = RedisServer::start();
    let (admin, entry) = admin_key();
    let env = instance(
        &redis,
        None,
        "local",
        &format!("[limits]\nrequests_per_minute = 1000\n\n{entry}"),
    );
    assert_eq!(chat(&env), 200);
    redis.freeze();
    // The first request waits for the command timeout, then is served locally; the ones after
    // it do not wait at all (Redis is marked down until the prober reaches it again).
    for _ in 0..5 {
        assert_eq!(chat(&env), 200);
    }
    assert_eq!(metric(&env, &admin, "noviqi_cluster_up"), Some(0.0));
    redis.resume();
    assert!(eventually(Duration::from_secs(15), || metric(
        &env,
        &admin,
        "noviqi_cluster_up"
    ) == Some(1.0)));
    assert_eq!(chat(&env), 200);
}
