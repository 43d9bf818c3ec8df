//! `scripts/quickstart` as a test: `noviqi init` exactly as the script runs it, `serve` on that
//! config (only the listen port changed to 0), and the request the printed curl line makes —
//! the mock provider must echo "Hello, noviqi!". The request body is read from the script so
//! the two cannot drift apart. Also the script's second run: `keys add quickstart-…` on the
//! existing config gives a second working key.

// Helpers outside #[test] fns (here and in tests/support) may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use support::gateway::TestEnv;

/// The `BODY='…'` line of scripts/quickstart.
fn script_body() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart");
    let text = std::fs::read_to_string(script).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BODY='"))
        .expect("scripts/quickstart has a BODY='…' line");
    line.strip_suffix('\'').unwrap().to_owned()
}

fn stdout_key(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout.clone()).unwrap();
    let key = key.trim_end_matches('\n').to_owned();
    assert!(key.starts_with("nvq_") && !key.contains('\n'), "{key:?}");
    key
}

fn ask(env: &TestEnv, key: &str, body: &str) -> serde_json::Value {
    let reply = env.post_with(
        "/v1/chat/completions",
        body,
        &[("authorization", &format!("Bearer {key}"))],
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, env.stderr());
    reply.json()
}

#[test]
fn quickstart_init_serve_and_curl() {
    let body = script_body();
    assert!(body.contains("Hello, noviqi!"), "{body}");

    let mut env = TestEnv::new();
    // `init` creates the master key file itself (and refuses to overwrite one).
    std::fs::remove_file(env.dir.path().join("noviqi.key")).unwrap();
    let key = stdout_key(&env.cli(&["init"], ""));

    // The script's rerun path: a second key on the existing config.
    let second = stdout_key(&env.cli(&["keys", "add", "quickstart-20260101000000"], ""));
    assert_ne!(key, second);

    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(
        text.contains("listen = \"127.0.0.1:8420\""),
        "init's default listen address changed; update scripts/quickstart and docs"
    );
    env.write_config(&text.replacen("listen = \"127.0.0.1:8420\"", "listen = \"127.0.0.1:0\"", 1));
    env.spawn();

    for k in [&key, &second] {
        let answer = ask(&env, k, &body);
        assert_eq!(
            answer["choices"][0]["message"]["content"], "Hello, noviqi!",
            "{answer}"
        );
        assert_eq!(answer["object"], "chat.completion");
    }
    // The key printed by init is the one the config names `default`.
    let list = env.cli(&["keys", "list"], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("default") && list.contains("quickstart-20260101000000"),
        "{list}"
    );
    env.assert_no_leaks(&[&key, &second]);
}
