//! Upstream transport details real deployments hit: an HTTPS upstream signed by a private CA
//! (homelab: `ca_file`), the same upstream without `ca_file` (untrusted → 502), and upstreams
//! that answer gzip-compressed (the client must get plain bytes with headers that match them).
//!
//! The HTTPS upstream is noviqi's own server layer (`noviqi::http::Server` with
//! `noviqi::http::tls_config`) run in-process with an `rcgen` certificate for 127.0.0.1.

// Helpers outside #[test] fns (here and in tests/support) may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use noviqi::http::{Request, Response, RunningServer, Server, ServerOptions, tls_config};
use serde_json::{Value, json};
use support::gateway::TestEnv;
use support::upstream::{FakeUpstream, Received, Reply};

const UPSTREAM_SECRET: &str = "sk-tls-upstream-31d7";

fn chat_completion() -> Value {
    json!({
        "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": "hello over tls"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    })
}

/// A private CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files
/// in `dir`: returns (ca.pem, cert.pem, key.pem).
fn homelab_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "noviqi test homelab CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let ca_file = dir.join("homelab-ca.pem");
    let cert_file = dir.join("upstream-cert.pem");
    let key_file = dir.join("upstream-key.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
    (ca_file, cert_file, key_file)
}

/// A self-signed certificate for 127.0.0.1/localhost, as `openssl req -x509` makes for a
/// homelab box (`ca_flag`: whether it says CA:TRUE, as openssl's default config does):
/// returns (cert.pem, key.pem); the cert doubles as the `ca_file`.
fn self_signed(dir: &Path, ca_flag: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    if ca_flag {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).unwrap();
    let cert_file = dir.join("self-signed.pem");
    let key_file = dir.join("self-signed-key.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// An HTTPS OpenAI-shaped upstream on 127.0.0.1:0; records the paths it was asked for.
fn https_upstream(cert: &Path, key: &Path) -> (RunningServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |req: &mut Request<'_>| {
        log.lock().unwrap().push(req.path().to_owned());
        let _ = req.read_body(1 << 20);
        if req.header("authorization") != Some(&format!("Bearer {UPSTREAM_SECRET}")) {
            return Response::json(401, r#"{"error":{"message":"bad key","type":"x"}}"#);
        }
        Response::json(200, chat_completion().to_string())
    };
    let options = ServerOptions {
        tls: Some(tls_config(cert, key).unwrap()),
        ..ServerOptions::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), options, Arc::new(handler))
        .unwrap()
        .spawn();
    (server, seen)
}

fn start_gateway(env: &mut TestEnv, base_url: &str, provider_extra: &str) {
    let rest = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\n\
         api_key = \"{}\"\n{provider_extra}\n\n[[models]]\nname = \"m\"\ntargets = [\"up/gpt-4o-mini\"]\n",
        env.encrypt(UPSTREAM_SECRET)
    );
    env.start("", &rest);
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn https_upstream_trusted_through_ca_file() {
    let mut env = TestEnv::new();
    let (ca, cert, key) = homelab_ca(env.dir.path());
    let (server, seen) = https_upstream(&cert, &key);
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    start_gateway(
        &mut env,
        &base,
        &format!("ca_file = {:?}", ca.display().to_string()),
    );

    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, env.stderr());
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "hello over tls"
    );
    assert_eq!(*seen.lock().unwrap(), ["/chat/completions"]);

    // `localhost` is in the certificate too; a relative ca_file is found beside the config.
    let ca_pem = std::fs::read(&ca).unwrap();
    drop(env);
    let mut env = TestEnv::new();
    std::fs::write(env.dir.path().join("ca.pem"), ca_pem).unwrap();
    let base = format!("https://localhost:{}", server.addr().port());
    start_gateway(&mut env, &base, "ca_file = \"ca.pem\"");
    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, env.stderr());
    env.assert_no_leaks(&[UPSTREAM_SECRET]);
    server.shutdown();
}

#[test]
fn https_upstream_with_self_signed_cert_as_ca_file() {
    let mut env = TestEnv::new();
    let (cert, key) = self_signed(env.dir.path(), false);
    let (server, _seen) = https_upstream(&cert, &key);
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    start_gateway(&mut env, &base, "ca_file = \"self-signed.pem\"");
    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, env.stderr());
    server.shutdown();
}

/// Known limitation, pinned: webpki refuses a certificate marked CA:TRUE as the server's own
/// (`CaUsedAsEndEntity`), and `openssl req -x509` marks self-signed certificates that way by
/// default. ureq 3 offers no custom verifier, so such an upstream gets 502; the log names the
/// reason. Workaround: a cert with `-addext basicConstraints=critical,CA:FALSE`, or a small CA
/// (mkcert, step-ca, Caddy's internal CA) whose root goes in `ca_file`.
#[test]
fn self_signed_ca_true_cert_is_refused_with_the_reason_logged() {
    let mut env = TestEnv::new();
    let (cert, key) = self_signed(env.dir.path(), true);
    let (server, seen) = https_upstream(&cert, &key);
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    start_gateway(&mut env, &base, "ca_file = \"self-signed.pem\"");
    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(seen.lock().unwrap().is_empty());
    assert!(
        support::eventually(std::time::Duration::from_secs(5), || env
            .stderr()
            .contains("CaUsedAsEndEntity")),
        "{}",
        env.stderr()
    );
    server.shutdown();
}

#[test]
fn https_upstream_untrusted_without_ca_file() {
    let mut env = TestEnv::new();
    let (_ca, cert, key) = homelab_ca(env.dir.path());
    let (server, seen) = https_upstream(&cert, &key);
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    start_gateway(&mut env, &base, "");

    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 502, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "request reached an untrusted server"
    );
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["status"], 502);
    assert_eq!(line["error"], "upstream_unreachable");
    env.assert_no_leaks(&[UPSTREAM_SECRET]);
    server.shutdown();
}

#[test]
fn ca_file_that_is_not_pem_fails_at_start() {
    let env = TestEnv::new();
    std::fs::write(env.dir.path().join("bad.pem"), "not a certificate\n").unwrap();
    let rest = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"https://127.0.0.1:9\"\n\
         api_key = \"{}\"\nca_file = \"bad.pem\"\n",
        env.encrypt(UPSTREAM_SECRET)
    );
    let text = env.config_text("", &rest);
    env.write_config(&text);
    let serve = std::process::Command::new(support::gateway::BIN)
        .args(["serve", "--config"])
        .arg(env.config_path())
        .env_remove("NOVIQI_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!serve.status.success(), "serve started with a bad ca_file");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("bad.pem"), "{stderr}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An upstream that compresses every answer, as many reverse proxies in front of vLLM or
/// Ollama do.
fn gzip_upstream() -> FakeUpstream {
    FakeUpstream::start(|r: &Received| {
        let body = r.json();
        let (status, content_type, plain) = if body["model"] == "broken" {
            (
                400,
                "application/json",
                json!({"error": {"message": "bad model", "type": "invalid_request_error",
                       "param": "model", "code": null}})
                .to_string(),
            )
        } else if body["stream"] == true {
            let chunk = |content: &str, finish: Value| {
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o-mini", "choices": [{"index": 0,
                       "delta": {"content": content}, "finish_reason": finish}]})
            };
            let mut text = String::new();
            for (c, f) in [
                ("hello ", Value::Null),
                ("gzip", Value::Null),
                ("", json!("stop")),
            ] {
                text.push_str(&format!("data: {}\n\n", chunk(c, f)));
            }
            text.push_str("data: [DONE]\n\n");
            (200, "text/event-stream", text)
        } else {
            let mut value = chat_completion();
            value["choices"][0]["message"]["content"] = json!("hello gzip");
            (200, "application/json", value.to_string())
        };
        Reply::Full {
            status,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("content-encoding".into(), "gzip".into()),
                ("vary".into(), "accept-encoding".into()),
            ],
            body: gzip(plain.as_bytes()),
        }
    })
}

fn assert_plain(reply: &support::gateway::Reply) {
    assert!(
        reply.header("content-encoding").is_none(),
        "content-encoding relayed for a decoded body: {:?}",
        reply.headers
    );
    if let Some(len) = reply.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            reply.body.len(),
            "content-length does not match the body"
        );
    }
}

#[test]
fn gzip_upstream_answers_reach_the_client_plain() {
    let upstream = gzip_upstream();
    let mut env = TestEnv::new();
    start_gateway(&mut env, &upstream.url(), "");

    let reply = env.post("/v1/chat/completions", CHAT);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_plain(&reply);
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "hello gzip"
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let line = env.usage_for(reply.request_id());
    assert_eq!(line["prompt_tokens"], 3);
    // The gateway asked for compression itself (ureq decodes it).
    assert!(
        upstream
            .last()
            .header("accept-encoding")
            .is_some_and(|v| v.contains("gzip"))
    );

    let reply = env.post(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_plain(&reply);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    );
    let text: String = reply
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "hello gzip");
    assert!(
        reply.body.trim_end().ends_with("data: [DONE]"),
        "{}",
        reply.body
    );

    // An upstream error passed through with its status is decoded too.
    let reply = env.post(
        "/v1/chat/completions",
        r#"{"model":"up/broken","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_plain(&reply);
    assert_eq!(reply.json()["error"]["message"], "bad model");
}
