//! The official OpenAI and Anthropic Python SDKs, used unchanged, against the real gateway in
//! front of fake upstreams that answer in the providers' own shapes — both natively and
//! through translation. The checks live in `tests/sdk/*.py`; this file starts the gateway and
//! runs them with `python3`.
//!
//! Needs `pip install openai anthropic`; without them the tests fail saying so, unless
//! `NOVIQI_SKIP_SDK_TESTS=1`.

// Helpers outside #[test] fns (here and in tests/support) may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::gateway::TestEnv;
use support::upstream::{FakeUpstream, providers};

const OPENAI_SECRET: &str = "sk-openai-upstream-5e1d";
const ANTHROPIC_SECRET: &str = "sk-ant-upstream-9c2b";

/// Whether to run: true when both SDKs import; false (test skipped) only when the user opted
/// out with `NOVIQI_SKIP_SDK_TESTS=1`.
fn sdks_available() -> bool {
    let skip = std::env::var("NOVIQI_SKIP_SDK_TESTS").is_ok_and(|v| v == "1");
    let importable = Command::new("python3")
        .args(["-c", "import openai, anthropic"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        return true;
    }
    if skip {
        eprintln!("SDK tests skipped (NOVIQI_SKIP_SDK_TESTS=1)");
        return false;
    }
    panic!(
        "the official SDKs are not importable by python3: run `python3 -m pip install openai \
         anthropic` (pip install openai anthropic), or set NOVIQI_SKIP_SDK_TESTS=1 to skip"
    );
}

/// The gateway in front of one openai-kind and one anthropic-kind fake provider.
struct Setup {
    env: TestEnv,
    /// A key allowed one request per minute.
    limited_key: String,
    openai: FakeUpstream,
    anthropic: FakeUpstream,
}

fn setup() -> Setup {
    let openai = FakeUpstream::start(providers::openai(OPENAI_SECRET));
    let anthropic = FakeUpstream::start(providers::anthropic(ANTHROPIC_SECRET));
    let mut env = TestEnv::new();
    let (limited_key, limited_hash) = noviqi::crypto::apikey::generate();
    let limited_key = limited_key.to_string();
    let rest = format!(
        r#"[[providers]]
name = "oai"
kind = "openai"
base_url = "{openai_url}"
api_key = "{openai_key}"

[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{anthropic_url}"
api_key = "{anthropic_key}"

[[models]]
name = "gpt-fake"
targets = ["oai/gpt-4o-mini"]

[[models]]
name = "embed-fake"
targets = ["oai/text-embedding-3-small"]

[[models]]
name = "claude-fake"
targets = ["ant/claude-sonnet-4-5"]

[[keys]]
name = "limited"
hash = "{limited_hash}"
prefix = "{limited_prefix}"
requests_per_minute = 1
"#,
        openai_url = openai.url(),
        openai_key = env.encrypt(OPENAI_SECRET),
        anthropic_url = anthropic.url(),
        anthropic_key = env.encrypt(ANTHROPIC_SECRET),
        limited_prefix = &limited_key[..12],
    );
    env.start("", &rest);
    Setup {
        env,
        limited_key,
        openai,
        anthropic,
    }
}

/// What every upstream request must look like: no gateway key, no SDK telemetry headers.
fn assert_clean_upstream(setup: &Setup, upstream: &FakeUpstream) {
    let received = upstream.received();
    assert!(!received.is_empty(), "the upstream was never called");
    for r in &received {
        let raw = r.raw_text();
        assert!(
            !raw.contains(&setup.env.key),
            "gateway key forwarded:\n{raw}"
        );
        assert!(
            r.headers.iter().all(|(n, _)| !n.starts_with("x-stainless")),
            "SDK headers forwarded:\n{raw}"
        );
    }
}

/// Runs `tests/sdk/<script>` with `vars`, asserting it succeeds; the usage log must then hold
/// no secret.
fn run_script(setup: &Setup, script: &str, vars: &[(&str, String)]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&path);
    // Nothing from the developer's own setup may steer the SDKs elsewhere.
    for name in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("NOVIQI_KEY", &setup.env.key)
        .env("NOVIQI_LIMITED_KEY", &setup.limited_key);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- gateway\n{}",
        out.status,
        setup.env.stderr()
    );
    eprintln!("{script}:\n{stdout}");
    // Every completed chat/messages answer recorded its tokens, whatever the translation.
    for line in setup.env.usage() {
        let counted = ["/v1/chat/completions", "/v1/messages", "/v1/responses"]
            .contains(&line["endpoint"].as_str().unwrap_or(""));
        if counted && line["status"] == 200 && line["error"].is_null() {
            assert!(
                line["prompt_tokens"].as_u64() > Some(0)
                    && line["completion_tokens"].as_u64() > Some(0),
                "usage line without tokens: {line}"
            );
        }
    }
    setup.env.assert_no_leaks(&[
        OPENAI_SECRET,
        ANTHROPIC_SECRET,
        &setup.limited_key,
        "Say hello to noviqi",
    ]);
}

fn openai_vars(setup: &Setup, chat: &str, embed: Option<&str>) -> Vec<(&'static str, String)> {
    let kind = if chat == "claude-fake" {
        "anthropic"
    } else {
        "openai"
    };
    let mut vars = vec![
        ("NOVIQI_UPSTREAM_KIND", kind.to_owned()),
        ("NOVIQI_BASE_URL", setup.env.url("/v1")),
        ("NOVIQI_CHAT_MODEL", chat.to_owned()),
        (
            "NOVIQI_MODELS",
            "gpt-fake,embed-fake,claude-fake".to_owned(),
        ),
    ];
    if let Some(embed) = embed {
        vars.push(("NOVIQI_EMBED_MODEL", embed.to_owned()));
    }
    vars
}

fn anthropic_vars(setup: &Setup, model: &str, count_tokens: &str) -> Vec<(&'static str, String)> {
    let kind = if model == "claude-fake" {
        "anthropic"
    } else {
        "openai"
    };
    vec![
        ("NOVIQI_UPSTREAM_KIND", kind.to_owned()),
        ("NOVIQI_BASE_URL", setup.env.url("")),
        ("NOVIQI_MODEL", model.to_owned()),
        ("NOVIQI_COUNT_TOKENS", count_tokens.to_owned()),
    ]
}

#[test]
fn openai_sdk_against_openai_upstream() {
    if !sdks_available() {
        return;
    }
    let setup = setup();
    let mut vars = openai_vars(&setup, "gpt-fake", Some("embed-fake"));
    vars.push(("NOVIQI_RESPONSES", "1".to_owned()));
    run_script(&setup, "openai_sdk.py", &vars);
    // Responses API usage reaches the usage log (non-streamed and streamed).
    let lines: Vec<_> = setup
        .env
        .usage()
        .into_iter()
        .filter(|l| l["endpoint"] == "/v1/responses")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(line["status"], 200, "{line}");
        assert!(line["prompt_tokens"].as_u64() > Some(0), "{line}");
        assert!(line["completion_tokens"].as_u64() > Some(0), "{line}");
    }
    // The broken stream is recorded as an error, not a success.
    assert!(
        setup
            .env
            .usage()
            .iter()
            // A dropped chunked stream reads as an I/O error: unreadable, not just truncated.
            .any(|l| l["stream"] == true
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e == "upstream_truncated" || e == "upstream_unreadable")),
        "{:?}",
        setup.env.usage()
    );
    assert_clean_upstream(&setup, &setup.openai);
    assert!(setup.anthropic.received().is_empty());
}

#[test]
fn openai_sdk_against_anthropic_upstream() {
    if !sdks_available() {
        return;
    }
    let setup = setup();
    let vars = openai_vars(&setup, "claude-fake", None);
    run_script(&setup, "openai_sdk.py", &vars);
    assert_clean_upstream(&setup, &setup.anthropic);
    assert!(setup.openai.received().is_empty());
    for r in setup.anthropic.received() {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.json()["model"], "claude-sonnet-4-5");
    }
    // The image part arrived as an Anthropic base64 image block.
    assert!(setup.anthropic.received().iter().any(|r| {
        r.json()["messages"][0]["content"][0]
            == serde_json::json!({"type": "image", "source": {"type": "base64",
                "media_type": "image/png",
                "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="}})
    }));
}

#[test]
fn anthropic_sdk_against_anthropic_upstream() {
    if !sdks_available() {
        return;
    }
    let setup = setup();
    let vars = anthropic_vars(&setup, "claude-fake", "works");
    run_script(&setup, "anthropic_sdk.py", &vars);
    assert_clean_upstream(&setup, &setup.anthropic);
    let received = setup.anthropic.received();
    assert!(
        received.iter().any(|r| r.path == "/v1/messages"
            && r.header("anthropic-beta") == Some("interleaved-thinking-2025-05-14")),
        "anthropic-beta not passed through"
    );
    assert!(
        received
            .iter()
            // The SDK's own version (newer SDKs send newer dates), passed through.
            .all(|r| r.header("anthropic-version").is_some()),
        "{:?}",
        received
            .iter()
            .map(|r| r.headers.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        received
            .iter()
            .any(|r| r.path == "/v1/messages/count_tokens")
    );
}

#[test]
fn anthropic_sdk_against_openai_upstream() {
    if !sdks_available() {
        return;
    }
    let setup = setup();
    let vars = anthropic_vars(&setup, "gpt-fake", "404");
    run_script(&setup, "anthropic_sdk.py", &vars);
    assert_clean_upstream(&setup, &setup.openai);
    for r in setup.openai.received() {
        assert_eq!(r.path, "/chat/completions");
        let body = r.json();
        assert_eq!(body["model"], "gpt-4o-mini");
        if body["stream"] == true {
            // The gateway asks for usage so the final message can report it.
            assert_eq!(body["stream_options"]["include_usage"], true, "{body}");
        }
    }
}

/// Without the SDKs: `/v1/models` answers in each SDK's own list shape.
#[test]
fn models_list_in_the_shape_each_sdk_expects() {
    let setup = setup();
    let env = &setup.env;
    let bearer = format!("Bearer {}", env.key);
    let openai = env.get("/v1/models", &[("authorization", &bearer)]);
    assert_eq!(openai.status, 200, "{}", openai.body);
    let body = openai.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["object"], "model");
    assert!(body.get("has_more").is_none());

    let anthropic = env.get(
        "/v1/models",
        &[("x-api-key", &env.key), ("anthropic-version", "2023-06-01")],
    );
    assert_eq!(anthropic.status, 200, "{}", anthropic.body);
    let body = anthropic.json();
    let ids: Vec<_> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-fake", "embed-fake", "claude-fake"]);
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["data"][0]["display_name"], "gpt-fake");
    assert_eq!(body["data"][0]["created_at"], "1970-01-01T00:00:00Z");
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], "gpt-fake");
    assert_eq!(body["last_id"], "claude-fake");
}

/// Some OpenAI-compatible servers end a stream with a usage chunk whose `choices` is `null`
/// (or missing) instead of `[]`. When the gateway asked for usage itself, that chunk must
/// still be hidden from a client that did not ask: SDK users iterate `chunk.choices`.
#[test]
fn usage_chunk_with_null_choices_is_hidden_from_clients_that_did_not_ask() {
    use support::upstream::Reply;
    for choices in ["null", "missing"] {
        let upstream = FakeUpstream::start(move |_| {
            let mut usage = serde_json::json!({"id": "c", "object": "chat.completion.chunk",
                "created": 1, "model": "m",
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
            if choices == "null" {
                usage["choices"] = serde_json::Value::Null;
            }
            let events = [
                r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}"#.to_owned(),
                r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_owned(),
                usage.to_string(),
                "[DONE]".to_owned(),
            ];
            Reply::sse_data(&events, std::time::Duration::ZERO)
        });
        let mut env = TestEnv::new();
        let rest = format!(
            "[[providers]]\nname = \"vllm\"\nkind = \"openai\"\nbase_url = \"{}\"\n",
            upstream.url()
        );
        env.start("", &rest);
        let reply = env.post(
            "/v1/chat/completions",
            r#"{"model":"vllm/m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            !reply.body.contains("prompt_tokens"),
            "choices {choices}: usage chunk reached a client that did not ask:\n{}",
            reply.body
        );
        assert!(
            reply.body.trim_end().ends_with("data: [DONE]"),
            "{}",
            reply.body
        );
        let line = env.usage_for(reply.request_id());
        assert_eq!(line["prompt_tokens"], 5, "{line}");
        assert_eq!(line["completion_tokens"], 2, "{line}");
    }
}
