//! Rate limits, lockouts and the client address, through the running gateway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::eventually;
use support::gateway::TestEnv;

const MOCK: &str = "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n\
                    [[models]]\nname = \"mock\"\ntargets = [\"mock/echo\"]\n";

fn body() -> String {
    json!({"model": "mock", "messages": [{"role": "user", "content": "one two three four"}]})
        .to_string()
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn requests_per_minute_with_headers_and_retry_after() {
    let mut env = TestEnv::new();
    let (limited, hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{MOCK}\n[[keys]]\nname = \"limited\"\nhash = \"{hash}\"\nprefix = \"{}\"\nrequests_per_minute = 3\n",
        &limited[..12]
    );
    env.start("", &rest);
    let auth = bearer(&limited);
    let headers = [("authorization", auth.as_str())];
    for remaining in ["2", "1", "0"] {
        let reply = env.post_with("/v1/chat/completions", &body(), &headers);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(
            reply.header("x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        assert!(reply.header("x-ratelimit-reset-requests").is_some());
        assert!(reply.header("x-ratelimit-limit-tokens").is_none());
    }
    let reply = env.post_with("/v1/chat/completions", &body(), &headers);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some("0"));
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
    // Anthropic-shaped refusal on /v1/messages.
    let messages = json!({"model": "mock", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post_with("/v1/messages", &messages.to_string(), &headers);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
    // An unlimited key carries no rate-limit headers.
    let reply = env.post("/v1/chat/completions", &body());
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-ratelimit-limit-requests").is_none());
}

#[test]
fn tokens_per_minute_counts_completed_usage() {
    let mut env = TestEnv::new();
    let (limited, hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{MOCK}\n[[keys]]\nname = \"tokens\"\nhash = \"{hash}\"\nprefix = \"{}\"\ntokens_per_minute = 5\n",
        &limited[..12]
    );
    env.start("", &rest);
    let auth = bearer(&limited);
    let headers = [("authorization", auth.as_str())];
    let reply = env.post_with("/v1/chat/completions", &body(), &headers);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-ratelimit-limit-tokens"), Some("5"));
    // The mock counted 4 prompt + 4 completion tokens: the window is now over the limit.
    let reply = env.post_with("/v1/chat/completions", &body(), &headers);
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert!(reply.header("retry-after").is_some());
}

#[test]
fn lockout_after_bad_keys_refuses_even_the_right_key_until_it_ends() {
    let mut env = TestEnv::new();
    let text = env.config_text("", MOCK).replace(
        "[security]\n",
        "[security]\nlockout_max_failures = 3\nlockout_secs = 2\n",
    );
    env.write_config(&text);
    env.spawn();

    for _ in 0..3 {
        let reply = env.post_with(
            "/v1/chat/completions",
            &body(),
            &[("x-api-key", "nvq_wrong")],
        );
        assert_eq!(reply.status, 401);
    }
    let reply = env.post("/v1/chat/completions", &body());
    assert_eq!(reply.status, 429, "the right key passed a locked address");
    assert!(reply.header("retry-after").is_some());
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let reply = env.post_with(
        "/v1/chat/completions",
        &body(),
        &[
            ("authorization", &bearer(&env.key)),
            ("x-forwarded-for", "198.51.100.9"),
        ],
    );
    assert_eq!(reply.status, 429);
    assert_eq!(
        env.stderr().matches("locked for").count(),
        1,
        "{}",
        env.stderr()
    );
    assert!(eventually(Duration::from_secs(5), || env
        .post("/v1/chat/completions", &body())
        .status
        == 200));
    env.assert_no_leaks(&["nvq_wrong"]);
}

#[test]
fn trusted_proxy_forwarded_for_is_honoured_for_lockout_allowlists_and_usage() {
    let mut env = TestEnv::new();
    let (office, hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{MOCK}\n[[keys]]\nname = \"office\"\nhash = \"{hash}\"\nprefix = \"{}\"\nallowed_ips = [\"203.0.113.0/24\"]\n",
        &office[..12]
    );
    let text = env
        .config_text("trusted_proxies = [\"127.0.0.1\"]", &rest)
        .replace("[security]\n", "[security]\nlockout_max_failures = 2\n");
    env.write_config(&text);
    env.spawn();
    let from = |ip: &str, key: &str| {
        env.post_with(
            "/v1/chat/completions",
            &body(),
            &[("authorization", &bearer(key)), ("x-forwarded-for", ip)],
        )
    };
    // allowed_ips applies to the forwarded client, not the proxy.
    assert_eq!(from("203.0.113.5", &office).status, 200);
    assert_eq!(from("198.51.100.1", &office).status, 403);
    let reply = from("203.0.113.5", &office);
    assert_eq!(
        env.usage_for(reply.request_id())["client_ip"],
        "203.0.113.5"
    );
    // Locking one forwarded client leaves the others (and the proxy) alone.
    for _ in 0..2 {
        assert_eq!(from("192.0.2.66", "nvq_bad").status, 401);
    }
    assert_eq!(from("192.0.2.66", &env.key).status, 429);
    assert_eq!(from("192.0.2.67", &env.key).status, 200);
    assert_eq!(env.post("/v1/chat/completions", &body()).status, 200);
}

#[test]
fn limiter_state_survives_a_reload() {
    let mut env = TestEnv::new();
    let (limited, hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{MOCK}\n[[keys]]\nname = \"limited\"\nhash = \"{hash}\"\nprefix = \"{}\"\nrequests_per_minute = 2\n",
        &limited[..12]
    );
    env.start("", &rest);
    let auth = bearer(&limited);
    let headers = [("authorization", auth.as_str())];
    for _ in 0..2 {
        assert_eq!(
            env.post_with("/v1/chat/completions", &body(), &headers)
                .status,
            200
        );
    }
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("{text}\n# touched\n"));
    assert!(eventually(Duration::from_secs(10), || env
        .stderr()
        .contains("config reloaded")));
    assert_eq!(
        env.post_with("/v1/chat/completions", &body(), &headers)
            .status,
        429
    );
}
