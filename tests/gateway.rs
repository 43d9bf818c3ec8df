//! The gateway end to end: the real binary on 127.0.0.1:0 in front of the in-process fake
//! upstream (OpenAI shapes, SSE, faults).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, Write};
use std::time::Duration;

use serde_json::{Value, json};
use support::eventually;
use support::gateway::{RawStream, TestEnv, raw_post};
use support::upstream::{FakeUpstream, Received, Reply};

const UPSTREAM_SECRET: &str = "sk-upstream-secret-7f3a9c";
const PROMPT: &str = "the secret prompt text 4242";

fn chat_completion(model: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello from upstream"}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    })
}

/// An OpenAI upstream that answers chat with JSON or, for `stream: true`, five content events
/// `gap` apart plus a usage chunk when asked.
fn openai_upstream(gap: Duration) -> FakeUpstream {
    FakeUpstream::start(move |r: &Received| {
        let body = r.json();
        if body["stream"] == true {
            let mut events: Vec<String> = (0..5)
                .map(|i| {
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                           "model": body["model"], "choices": [{"index": 0,
                           "delta": {"content": format!("part{i} ")}, "finish_reason": null}]})
                    .to_string()
                })
                .collect();
            events.push(
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                       "model": body["model"], "choices": [{"index": 0, "delta": {},
                       "finish_reason": "stop"}]})
                .to_string(),
            );
            if body["stream_options"]["include_usage"] == true {
                events.push(
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                           "model": body["model"], "choices": [],
                           "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26}})
                    .to_string(),
                );
            }
            events.push("[DONE]".into());
            let mut reply = Reply::sse_data(&events, Duration::ZERO);
            if let Reply::Sse { events, .. } = &mut reply {
                for (i, (delay, _)) in events.iter_mut().enumerate() {
                    if i < 5 {
                        *delay = gap;
                    }
                }
            }
            reply
        } else {
            Reply::json(200, chat_completion(body["model"].as_str().unwrap_or("")))
        }
    })
}

fn provider(env: &TestEnv, name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key = \"{}\"\n{extra}\n",
        env.encrypt(UPSTREAM_SECRET)
    )
}

fn chat_body(model: &str, stream: bool) -> String {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "user", "content": PROMPT}]})
    .to_string()
}

fn start_one(upstream: &FakeUpstream, server_extra: &str, provider_extra: &str) -> TestEnv {
    let mut env = TestEnv::new();
    let rest = format!(
        "{}\n[[models]]\nname = \"fast\"\ntargets = [\"up/gpt-4o-mini\"]\n",
        provider(&env, "up", &upstream.url(), provider_extra)
    );
    env.start(server_extra, &rest);
    env
}

#[test]
fn non_streamed_round_trip() {
    let upstream = openai_upstream(Duration::ZERO);
    let env = start_one(&upstream, "", "");
    let reply = env.post("/v1/chat/completions", &chat_body("fast", false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "hello from upstream"
    );
    let timing = reply.header("server-timing").expect("server-timing");
    assert!(
        timing.contains("gateway;dur=") && timing.contains("upstream;dur="),
        "{timing}"
    );

    let seen = upstream.last();
    assert_eq!(seen.path, "/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert_eq!(seen.json()["model"], "gpt-4o-mini");
    assert_eq!(seen.json()["messages"][0]["content"], PROMPT);
    assert!(
        !seen.raw_text().contains(&env.key),
        "gateway key forwarded upstream"
    );

    let line = env.usage_for(reply.request_id());
    assert_eq!(line["status"], 200);
    assert_eq!(line["stream"], false);
    assert_eq!(line["key"], "test");
    assert_eq!(line["model"], "fast");
    assert_eq!(line["provider"], "up");
    assert_eq!(line["upstream_model"], "gpt-4o-mini");
    assert_eq!(line["endpoint"], "/v1/chat/completions");
    assert_eq!(line["prompt_tokens"], 11);
    assert_eq!(line["completion_tokens"], 7);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["error"].is_null());
    assert!(line["ttfb_ms"].as_u64().unwrap() <= line["latency_ms"].as_u64().unwrap());
    env.assert_no_leaks(&[UPSTREAM_SECRET, PROMPT]);
}

#[test]
fn streamed_events_arrive_as_sent_and_usage_chunk_is_hidden() {
    let upstream = openai_upstream(Duration::from_millis(100));
    let env = start_one(&upstream, "", "");
    let mut client = RawStream::open(
        env.addr(),
        &raw_post("/v1/chat/completions", &env.key, &chat_body("fast", true)),
    );
    // Five content events 100 ms apart, the finish chunk, then [DONE] (the usage chunk is
    // hidden from this client).
    let (times, text) = client.arrivals("data: ", 7);
    for pair in times[..5].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(80),
            "events bunched: gap {gap:?}\n{text}"
        );
    }
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(text.contains("text/event-stream"));
    assert!(text.to_ascii_lowercase().contains("x-accel-buffering: no"));
    assert!(
        text.to_ascii_lowercase()
            .contains("cache-control: no-cache")
    );
    assert!(
        !text.contains("\"usage\":{"),
        "usage chunk leaked to a client that did not ask:\n{text}"
    );
    assert!(upstream.last().json()["stream_options"]["include_usage"] == true);

    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    let line = env.usage_for(&id);
    assert_eq!(line["stream"], true);
    assert_eq!(line["prompt_tokens"], 21);
    assert_eq!(line["completion_tokens"], 5);
    assert!(line["error"].is_null());
    assert!(line["ttfb_ms"].as_u64().unwrap() <= line["latency_ms"].as_u64().unwrap());
}

#[test]
fn upstream_connections_are_reused_after_streamed_and_whole_answers() {
    // The fake ends each stream's chunked body in a write of its own after [DONE], as a
    // real server may: the gateway must still read it and pool the connection.
    let upstream = openai_upstream(Duration::from_millis(5));
    let env = start_one(&upstream, "", "");
    let conn = std::net::TcpStream::connect(env.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    for stream in [true, true, false, true, false] {
        let request = raw_post("/v1/chat/completions", &env.key, &chat_body("fast", stream));
        writer.write_all(request.as_bytes()).unwrap();
        let (status, body) = read_keep_alive_response(&mut reader);
        assert_eq!(status, 200, "{body}");
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        }
    }
    assert_eq!(upstream.received().len(), 5);
    assert_eq!(
        upstream.connections(),
        1,
        "one keep-alive client, one upstream connection"
    );
}

/// One response from a keep-alive connection: status and body (Content-Length or chunked).
fn read_keep_alive_response(reader: &mut impl BufRead) -> (u16, String) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        chunked |= header == "transfer-encoding: chunked";
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length.unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    }
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn streamed_usage_chunk_reaches_clients_that_ask() {
    let upstream = openai_upstream(Duration::ZERO);
    let env = start_one(&upstream, "", "");
    let body = json!({"model": "fast", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let reply = env.post("/v1/chat/completions", &body.to_string());
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("\"usage\":{"), "{}", reply.body);
    assert!(reply.body.trim_end().ends_with("data: [DONE]"));
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["completion_tokens"], 5);
}

#[test]
fn client_disconnect_mid_stream_closes_upstream() {
    let upstream = openai_upstream(Duration::from_millis(300));
    let env = start_one(&upstream, "", "");
    let mut client = RawStream::open(
        env.addr(),
        &raw_post("/v1/chat/completions", &env.key, &chat_body("fast", true)),
    );
    client.arrivals("part0", 1);
    drop(client);
    assert!(
        upstream.wait_disconnect(Duration::from_secs(1) + Duration::from_millis(400)),
        "the upstream kept streaming to a gateway whose client left"
    );
    let reply = env.post("/v1/chat/completions", &chat_body("fast", false));
    assert_eq!(reply.status, 200);
    assert!(eventually(Duration::from_secs(5), || env
        .usage()
        .iter()
        .any(|l| l["error"] == "client_closed")));
}

#[test]
fn auth_and_routing_errors_have_the_contract_shape() {
    let upstream = openai_upstream(Duration::ZERO);
    let mut env = TestEnv::new();
    let (disabled, disabled_hash) = noviqi::crypto::apikey::generate();
    let (narrow, narrow_hash) = noviqi::crypto::apikey::generate();
    let (expired, expired_hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{}\n[[models]]\nname = \"fast\"\ntargets = [\"up/gpt-4o-mini\"]\n\n\
         [[keys]]\nname = \"off\"\nhash = \"{disabled_hash}\"\nprefix = \"{}\"\ndisabled = true\n\n\
         [[keys]]\nname = \"narrow\"\nhash = \"{narrow_hash}\"\nprefix = \"{}\"\nmodels = [\"gpt-*\"]\n\n\
         [[keys]]\nname = \"old\"\nhash = \"{expired_hash}\"\nprefix = \"{}\"\nexpires_at = \"2020-01-01T00:00:00Z\"\n",
        provider(&env, "up", &upstream.url(), ""),
        &disabled[..12],
        &narrow[..12],
        &expired[..12],
    );
    env.start("max_body_bytes = 2048", &rest);
    let check = |reply: &support::gateway::Reply, status: u16| {
        assert_eq!(reply.status, status, "{}", reply.body);
        let v = reply.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(v["error"]["type"].is_string(), "{v}");
        assert!(
            v["error"].get("param").is_some() && v["error"].get("code").is_some(),
            "{v}"
        );
        env.assert_healthy();
    };
    let body = chat_body("fast", false);
    check(&env.post_with("/v1/chat/completions", &body, &[]), 401);
    check(
        &env.post_with(
            "/v1/chat/completions",
            &body,
            &[("authorization", "Bearer nvq_wrong")],
        ),
        401,
    );
    let bearer = |k: &str| format!("Bearer {k}");
    check(
        &env.post_with(
            "/v1/chat/completions",
            &body,
            &[("authorization", &bearer(&disabled))],
        ),
        403,
    );
    check(
        &env.post_with("/v1/chat/completions", &body, &[("x-api-key", &expired)]),
        403,
    );
    check(
        &env.post_with(
            "/v1/chat/completions",
            &body,
            &[("authorization", &bearer(&narrow))],
        ),
        403,
    );
    check(
        &env.post("/v1/chat/completions", &chat_body("nope", false)),
        404,
    );
    check(&env.post("/v1/nothing-here", "{}"), 404);
    check(&env.get("/v1/chat/completions", &[]), 405);
    check(&env.post("/v1/chat/completions", "{not json"), 400);
    check(&env.post("/v1/chat/completions", r#"{"messages":[]}"#), 400);
    let big = json!({"model": "fast", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    check(&env.post("/v1/chat/completions", &big.to_string()), 413);
    // The `provider/model` form reaches the provider directly.
    let reply = env.post("/v1/chat/completions", &chat_body("up/some-model", false));
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().json()["model"], "some-model");
    env.assert_no_leaks(&[UPSTREAM_SECRET, PROMPT, &disabled, &narrow, &expired]);
}

#[test]
fn models_lists_what_the_key_may_use() {
    let upstream = openai_upstream(Duration::ZERO);
    let mut env = TestEnv::new();
    let (narrow, narrow_hash) = noviqi::crypto::apikey::generate();
    let rest = format!(
        "{}\n[[models]]\nname = \"gpt-fast\"\ntargets = [\"up/a\"]\n\n\
         [[models]]\nname = \"claude-ish\"\ntargets = [\"up/b\"]\n\n\
         [[keys]]\nname = \"narrow\"\nhash = \"{narrow_hash}\"\nprefix = \"{}\"\nmodels = [\"gpt-*\"]\n",
        provider(&env, "up", &upstream.url(), ""),
        &narrow[..12],
    );
    env.start("", &rest);
    let ids = |key: &str| -> Vec<String> {
        let reply = env.get("/v1/models", &[("authorization", &format!("Bearer {key}"))]);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["object"], "list");
        reply.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&env.key), ["gpt-fast", "claude-ish"]);
    assert_eq!(ids(&narrow), ["gpt-fast"]);
    assert_eq!(env.get("/v1/models", &[]).status, 401);
}

#[test]
fn upstream_errors_pass_through_and_faults_map_to_502_504() {
    let upstream = FakeUpstream::start(|r: &Received| match r.json()["model"].as_str() {
        Some("limited") => Reply::json(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .with_header("retry-after", "7"),
        Some("broken") => Reply::json(500, json!({"error": {"message": "boom"}})),
        Some("stall") => Reply::stall(Duration::from_secs(4)),
        Some("close") => Reply::Close,
        _ => Reply::json(200, chat_completion("x")),
    });
    let mut env = TestEnv::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let rest = format!(
        "{}\n{}",
        provider(&env, "up", &upstream.url(), "timeout_secs = 1"),
        provider(&env, "dead", &dead_url, "")
    );
    env.start("", &rest);

    let reply = env.post("/v1/chat/completions", &chat_body("up/limited", false));
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(reply.json()["error"]["message"], "slow down");
    env.assert_healthy();

    let reply = env.post("/v1/chat/completions", &chat_body("up/broken", false));
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["message"], "boom");
    env.assert_healthy();

    let reply = env.post("/v1/chat/completions", &chat_body("dead/x", false));
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "upstream_unreachable");
    env.assert_healthy();

    let reply = env.post("/v1/chat/completions", &chat_body("up/stall", false));
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "upstream_timeout");
    env.assert_healthy();

    let reply = env.post("/v1/chat/completions", &chat_body("up/close", false));
    assert_eq!(reply.status, 502, "{}", reply.body);
    env.assert_healthy();

    let usage = env.usage();
    assert!(
        usage
            .iter()
            .any(|l| l["status"] == 504 && l["error"] == "upstream_timeout")
    );
    assert!(
        usage
            .iter()
            .any(|l| l["status"] == 429 && l["error"].is_string())
    );
    env.assert_no_leaks(&[UPSTREAM_SECRET, PROMPT]);
}

#[test]
fn stalled_stream_ends_with_an_error_event() {
    let upstream = FakeUpstream::start(|_r: &Received| Reply::Sse {
        events: vec![
            (
                Duration::ZERO,
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".into(),
            ),
            (Duration::from_secs(3), "data: [DONE]\n\n".into()),
        ],
        finish: true,
    });
    let env = start_one(&upstream, "", "timeout_secs = 1");
    let reply = env.post("/v1/chat/completions", &chat_body("fast", true));
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("upstream_timeout"), "{}", reply.body);
    assert!(!reply.body.contains("[DONE]"), "{}", reply.body);
    assert_eq!(
        env.usage_for(reply.request_id())["error"],
        "upstream_timeout"
    );
    env.assert_healthy();
}

#[test]
fn truncated_stream_never_looks_complete() {
    let upstream = FakeUpstream::start(|_r: &Received| Reply::Sse {
        events: vec![(
            Duration::ZERO,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".into(),
        )],
        finish: false,
    });
    let env = start_one(&upstream, "", "");
    let reply = env.post("/v1/chat/completions", &chat_body("fast", true));
    assert!(!reply.body.contains("[DONE]"), "{}", reply.body);
    assert!(reply.body.contains("\"error\""), "{}", reply.body);
}

#[test]
fn fallback_answers_from_the_next_target() {
    let upstream = openai_upstream(Duration::ZERO);
    let mut env = TestEnv::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let rest = format!(
        "{}\n{}\n[[models]]\nname = \"fast\"\ntargets = [\"dead/m1\", \"up/m2\"]\n",
        provider(&env, "dead", &dead_url, ""),
        provider(&env, "up", &upstream.url(), "")
    );
    env.start("", &rest);
    let reply = env.post("/v1/chat/completions", &chat_body("fast", false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        upstream.received().len(),
        1,
        "healthy target called more than once"
    );
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["provider"], "up");
    assert_eq!(line["upstream_model"], "m2");
}

#[test]
fn fallback_on_5xx_and_429() {
    let failing = FakeUpstream::start(|_r: &Received| {
        Reply::json(503, json!({"error": {"message": "down"}}))
    });
    let upstream = openai_upstream(Duration::ZERO);
    let mut env = TestEnv::new();
    let rest = format!(
        "{}\n{}\n[[models]]\nname = \"fast\"\ntargets = [\"bad/m1\", \"up/m2\"]\n",
        provider(&env, "bad", &failing.url(), ""),
        provider(&env, "up", &upstream.url(), "")
    );
    env.start("", &rest);
    let reply = env.post("/v1/chat/completions", &chat_body("fast", false));
    assert_eq!(reply.status, 200);
    assert_eq!(failing.received().len(), 1);
    assert_eq!(upstream.received().len(), 1);
}

#[test]
fn reload_picks_up_new_and_revoked_keys_and_refuses_broken_configs() {
    let upstream = openai_upstream(Duration::ZERO);
    let env = start_one(&upstream, "", "");
    let reloads = || env.stderr().matches("config reloaded").count();
    let before = reloads();
    let added = env.cli(&["keys", "add", "newcomer"], "");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let new_key = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    let body = chat_body("fast", false);
    let with = |key: &str| {
        env.post_with(
            "/v1/chat/completions",
            &body,
            &[("authorization", &format!("Bearer {key}"))],
        )
        .status
    };
    // Wait for the reload itself: polling with a key the gateway does not know yet would
    // (rightly) lock this address out.
    assert!(
        eventually(Duration::from_secs(10), || reloads() > before),
        "no reload"
    );
    assert_eq!(
        with(&new_key),
        200,
        "added key refused; stderr:\n{}",
        env.stderr()
    );

    let before = reloads();
    let revoked = env.cli(&["keys", "revoke", "newcomer"], "");
    assert!(revoked.status.success());
    assert!(
        eventually(Duration::from_secs(10), || reloads() > before),
        "no reload"
    );
    assert_eq!(with(&new_key), 403, "revoked key still works");

    let good = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(env.config_path(), format!("{good}\n[[bogus]]\n")).unwrap();
    assert!(eventually(Duration::from_secs(10), || env
        .stderr()
        .contains("reload refused")));
    assert_eq!(env.stderr().matches("reload refused").count(), 1);
    assert_eq!(with(&env.key), 200, "old config stopped serving");
    env.assert_no_leaks(&[UPSTREAM_SECRET, &new_key]);
}

#[test]
fn mock_provider_echoes() {
    let mut env = TestEnv::new();
    env.start(
        "",
        "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"mock\"\ntargets = [\"mock/echo\"]\n",
    );
    let reply = env.post("/v1/chat/completions", &chat_body("mock", false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["choices"][0]["message"]["content"], PROMPT);
    let reply = env.post("/v1/chat/completions", &chat_body("mock", true));
    assert!(reply.body.contains("data: [DONE]"));
    let reply = env.post("/v1/embeddings", r#"{"model":"mock","input":"hello"}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = env.post("/v1/completions", r#"{"model":"mock","prompt":"say this"}"#);
    assert_eq!(reply.json()["choices"][0]["text"], "say this");
}

#[test]
fn sigterm_finishes_in_flight_and_exits_zero() {
    let upstream = openai_upstream(Duration::from_millis(200));
    let mut env = start_one(&upstream, "", "");
    let mut client = RawStream::open(
        env.addr(),
        &raw_post("/v1/chat/completions", &env.key, &chat_body("fast", true)),
    );
    client.arrivals("part0", 1);
    let status = {
        let pid = env.child.as_ref().unwrap().id();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let (_, rest) = client.arrivals("[DONE]", 1);
        assert!(rest.contains("[DONE]"));
        env.terminate()
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(
        env.usage()
            .iter()
            .any(|l| l["stream"] == true && l["error"].is_null())
    );
}
