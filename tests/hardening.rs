//! Issue 13's defects that live in the gateway (not the HTTP layer or the lockout), each
//! reproduced against the real binary: the panic on a non-object `stream_options`, unbounded
//! model names, credentials in `RUST_LOG=trace` output, an upstream's interim status relayed
//! as the final answer, `X-Forwarded-Proto` from a trusted proxy, and `allowed_hosts`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::eventually;
use support::gateway::{MOCK_PROVIDER, RawStream, TestEnv, admin_table, raw_post};
use support::upstream::{FakeUpstream, Received, Reply};

const UPSTREAM_SECRET: &str = "sk-upstream-secret-trace-5d1e";
const PROMPT: &str = "the secret prompt text 9191";

fn chat(model: &str, extra: serde_json::Value) -> String {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": PROMPT}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

/// Item 4: `stream_options` that is not an object was a panic (500, connection closed, no
/// usage line). Now a 400 naming the field, recorded like any refusal.
#[test]
fn stream_options_that_is_not_an_object_is_a_400() {
    let mut env = TestEnv::new();
    env.start("", MOCK_PROVIDER);
    for options in [json!("x"), json!(5), json!([]), json!(true)] {
        let body = chat("mock", json!({"stream": true, "stream_options": options}));
        let reply = env.post("/v1/chat/completions", &body);
        assert_eq!(reply.status, 400, "{options}: {}", reply.body);
        assert_eq!(reply.json()["error"]["param"], "stream_options");
        let line = env.usage_for(reply.request_id());
        assert_eq!(line["status"], 400);
    }
    // stream_options: null is the same as leaving it out.
    let body = chat("mock", json!({"stream": true, "stream_options": null}));
    let reply = env.post("/v1/chat/completions", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("[DONE]"));
    env.assert_healthy();
    assert!(!env.stderr().contains("panicked"), "{}", env.stderr());
}

/// Item 5: client-chosen model names were stored whole (a 4 MB `mock/…` name grew RSS by
/// 7 MB per request and filled the usage log). Longer than 256 bytes is a 400, and the name
/// is not written to the usage log.
#[test]
fn a_model_name_over_256_bytes_is_a_400_and_not_recorded() {
    let mut env = TestEnv::new();
    env.start("", MOCK_PROVIDER);
    let long = format!("mock/{}", "m".repeat(300));
    let reply = env.post("/v1/chat/completions", &chat(&long, json!({})));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"]["param"], "model");
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["status"], 400);
    assert!(line["model"].is_null(), "{line}");
    let usage = std::fs::read_to_string(env.usage_path()).unwrap();
    assert!(!usage.contains(&"m".repeat(300)));
    // Exactly 256 bytes still routes.
    let ok = format!("mock/{}", "m".repeat(251));
    assert_eq!(ok.len(), 256);
    let reply = env.post("/v1/chat/completions", &chat(&ok, json!({})));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Item 5: the dashboard keeps configured names and names an upstream answered; made-up
/// `provider/model` names that failed are one "(other)" row, so a key holder cannot fill the
/// analytics tables with names.
#[test]
fn made_up_model_names_do_not_reach_the_dashboard() {
    let upstream = FakeUpstream::start(|r: &Received| {
        if r.json()["model"] == "real" {
            Reply::json(
                200,
                json!({"id": "c", "object": "chat.completion", "created": 1,
                "model": "real", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
            )
        } else {
            Reply::json(
                404,
                json!({"error": {"message": "no such model", "type": "invalid_request_error"}}),
            )
        }
    });
    let mut env = TestEnv::new();
    let rest = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n{MOCK_PROVIDER}",
        upstream.url()
    );
    let admin = admin_table("pw-hardening-1", 3600);
    let text = env.config_text("", &format!("{admin}{rest}"));
    env.write_config(&format!("{text}admin = true\n"));
    env.spawn();
    for i in 0..5 {
        let reply = env.post(
            "/v1/chat/completions",
            &chat(&format!("up/made-up-{i}"), json!({})),
        );
        assert_eq!(reply.status, 404);
    }
    assert_eq!(
        env.post("/v1/chat/completions", &chat("up/real", json!({})))
            .status,
        200
    );
    assert_eq!(
        env.post("/v1/chat/completions", &chat("mock", json!({})))
            .status,
        200
    );
    let auth = format!("Bearer {}", env.key);
    let report = env.get("/admin/api/usage?range=hour", &[("authorization", &auth)]);
    assert_eq!(report.status, 200, "{}", report.body);
    assert!(!report.body.contains("made-up"), "{}", report.body);
    assert!(
        report.body.contains("up/real") && report.body.contains("\"mock\""),
        "{}",
        report.body
    );
    assert!(report.body.contains("(other)"), "{}", report.body);
}

/// Item 8: `RUST_LOG=trace` printed ureq's request dump, upstream credential included.
#[test]
fn trace_logging_prints_no_credential() {
    let upstream = FakeUpstream::start(|_: &Received| {
        Reply::json(
            200,
            json!({"id": "c", "object": "chat.completion", "created": 1,
            "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        )
    });
    let anthropic = FakeUpstream::start(|_: &Received| {
        Reply::json(
            200,
            json!({"id": "msg_1", "type": "message", "role": "assistant",
            "model": "c", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
        )
    });
    let mut env = TestEnv::new();
    env.rust_log = "trace";
    let rest = format!(
        "[[providers]]\nname = \"oa\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\n\
         [[providers]]\nname = \"an\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\n",
        upstream.url(),
        env.encrypt(UPSTREAM_SECRET),
        anthropic.url(),
        env.encrypt(UPSTREAM_SECRET),
    );
    env.start("", &rest);
    assert_eq!(
        env.post("/v1/chat/completions", &chat("oa/m", json!({})))
            .status,
        200
    );
    assert_eq!(
        env.post("/v1/chat/completions", &chat("an/c", json!({})))
            .status,
        200
    );
    assert_eq!(
        upstream.last().header("authorization"),
        Some(&*format!("Bearer {UPSTREAM_SECRET}"))
    );
    assert_eq!(anthropic.last().header("x-api-key"), Some(UPSTREAM_SECRET));
    let stderr = env.stderr();
    assert!(stderr.contains("DEBUG"), "debug logging is on:\n{stderr}");
    env.assert_no_leaks(&[UPSTREAM_SECRET, PROMPT]);
    // ureq-proto dumps bytes 16 to a row, so a secret is split across lines: look for any
    // piece of it, and for the dump itself.
    let secret = UPSTREAM_SECRET.as_bytes();
    for piece in secret.windows(8) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(
            !stderr.contains(piece),
            "{piece:?} of the credential in stderr:\n{stderr}"
        );
    }
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("TRACE") && l.contains("ureq")),
        "ureq trace output in stderr:\n{stderr}"
    );
}

/// An upstream that answers every request with `status_line` and then `tail` bytes.
fn raw_upstream(status_line: &'static str, tail: &'static str) -> FakeUpstream {
    FakeUpstream::start(move |_: &Received| {
        Reply::Raw(format!("{status_line}\r\n{tail}").into_bytes())
    })
}

/// Item 9: an upstream's `101` was relayed as the final response, leaving the client's
/// connection in a state where its next bytes were parsed as a new request.
#[test]
fn an_upstream_interim_status_is_a_502_never_relayed() {
    let up = raw_upstream(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    let mut env = TestEnv::new();
    let rest = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\n",
        up.url()
    );
    env.start("", &rest);
    let reply = env.post("/v1/chat/completions", &chat("up/m", json!({})));
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "upstream_unreadable");
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["status"], 502);
    assert_eq!(line["error"], "upstream_unreadable");
    env.assert_healthy();
}

/// Also in issue 13: behind a TLS-terminating proxy (trusted, `X-Forwarded-Proto: https`)
/// cookies lacked `Secure` and no HSTS was sent. An untrusted peer's header changes nothing.
#[test]
fn forwarded_https_from_a_trusted_proxy_gives_secure_cookies_and_hsts() {
    let password = "pw-forwarded-7";
    let mut env = TestEnv::new();
    let admin = admin_table(password, 3600);
    env.start(
        "trusted_proxies = [\"127.0.0.1\"]\n",
        &format!("{admin}{MOCK_PROVIDER}"),
    );
    let form = format!("password={password}");
    let https = [
        ("sec-fetch-site", "same-origin"),
        ("x-forwarded-proto", "https"),
    ];
    let reply = env.post_form("/admin/login", &form, &https);
    assert_eq!(reply.status, 303, "{}", reply.body);
    let cookie = reply.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let health = env.get("/healthz", &[("x-forwarded-proto", "https")]);
    assert_eq!(
        health.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    let plain = env.post_form("/admin/login", &form, &[("sec-fetch-site", "same-origin")]);
    assert_eq!(plain.status, 303);
    assert!(!plain.header("set-cookie").unwrap().contains("Secure"));
    assert!(plain.header("strict-transport-security").is_none());

    // Without trusted_proxies the same header is a client's claim, and ignored.
    let mut untrusted = TestEnv::new();
    untrusted.start(
        "",
        &format!("{}{MOCK_PROVIDER}", admin_table(password, 3600)),
    );
    let reply = untrusted.post_form("/admin/login", &form, &https);
    assert_eq!(reply.status, 303);
    assert!(!reply.header("set-cookie").unwrap().contains("Secure"));
    assert!(reply.header("strict-transport-security").is_none());
}

/// `allowed_hosts`: a page on another name (DNS rebinding) gets 403; `/healthz` is exempt.
#[test]
fn allowed_hosts_refuses_other_names() {
    let mut env = TestEnv::new();
    env.start(
        "allowed_hosts = [\"localhost\", \"127.0.0.1\"]\n",
        MOCK_PROVIDER,
    );
    let auth = format!("Bearer {}", env.key);
    let ok = env.post("/v1/chat/completions", &chat("mock", json!({})));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rebound = env.get(
        "/v1/models",
        &[("authorization", &auth), ("host", "attacker.example:8420")],
    );
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert_eq!(rebound.json()["error"]["code"], "host_not_allowed");
    let messages = env.post_with(
        "/v1/messages",
        &chat("mock", json!({"max_tokens": 5})),
        &[("x-api-key", &env.key), ("host", "attacker.example")],
    );
    assert_eq!(messages.status, 403);
    assert_eq!(messages.json()["type"], "error");
    let local = env.get(
        "/v1/models",
        &[("authorization", &auth), ("host", "localhost:8420")],
    );
    assert_eq!(local.status, 200);
    let health = env.get("/healthz", &[("host", "attacker.example")]);
    assert_eq!(health.status, 200);
}

/// Item 7: translation built a whole-body `Value` several times the body's size, counted
/// nowhere (six 16 MiB bodies at once took 1.7 GB). Its working memory now counts against
/// `max_buffered_bytes`: a body whose translation would pass the bound gets 503 with
/// `Retry-After` in the endpoint's shape; the same body passed through fits.
#[test]
fn translation_working_memory_counts_against_max_buffered_bytes() {
    let mut env = TestEnv::new();
    env.start(
        "max_body_bytes = 1048576\nmax_buffered_bytes = 4194304\n",
        MOCK_PROVIDER,
    );
    let text = "y".repeat(600 * 1024);
    let messages = json!({"model": "mock", "max_tokens": 5,
        "messages": [{"role": "user", "content": text}]})
    .to_string();
    // /v1/messages to the mock (an OpenAI-shaped target) is translated: 10 × 600 KiB > 4 MiB.
    let reply = env.post_with("/v1/messages", &messages, &[("x-api-key", &env.key)]);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(
        env.usage_for(reply.request_id())["error"],
        "server_overloaded"
    );
    // The same size passed through (chat to the mock) needs one copy and fits.
    let chat = json!({"model": "mock", "messages": [{"role": "user", "content": text}]});
    let reply = env.post("/v1/chat/completions", &chat.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    // And a translated body that fits is served: the budget was given back.
    let small = json!({"model": "mock", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post_with(
        "/v1/messages",
        &small.to_string(),
        &[("x-api-key", &env.key)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Found by the soak: a client that went away while a slow upstream was still thinking left
/// no usage line. The stream's response was built, the HTTP layer failed to write its head
/// and dropped it unrun, and with it the only record of the request.
#[test]
fn a_client_gone_before_the_upstream_answers_still_gets_a_usage_line() {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let up = FakeUpstream::start(move |_: &Received| {
        let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(20));
        Reply::sse_data(&["{\"choices\":[]}".to_string()], Duration::ZERO)
    });
    let mut env = TestEnv::new();
    let rest = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n",
        up.url()
    );
    let addr = env.start("", &rest);
    let body = chat("up/m", json!({"stream": true}));
    // A pipelined health check first: its answer sits unread in the client's socket, so
    // closing it sends a reset (as a killed client does), not a polite FIN.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n{}",
        raw_post("/v1/chat/completions", &env.key, &body)
    );
    let client = RawStream::open(addr, &request);
    assert!(eventually(Duration::from_secs(10), || up.received().len() == 1));
    drop(client);
    release.send(()).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || env.usage().len() == 1),
        "no usage line; stderr:\n{}",
        env.stderr()
    );
    let line = &env.usage()[0];
    assert_eq!(line["provider"], "up");
    assert_eq!(line["error"], "client_closed", "{line}");
    env.assert_healthy();
}
