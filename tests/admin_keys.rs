//! Key management over the admin API on the real binary: create → the key works, PATCH →
//! enforced without a restart, revoke → 403, comments kept, the CLI racing the dashboard,
//! refused edits leaving the file byte-identical, CSRF refusals, the audit log, and no secret
//! in any log at `RUST_LOG=trace`.

// Test helpers outside #[test] functions (here and in tests/support) may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::time::Duration;

use noviqi::crypto::apikey::{self, KeyHash};
use serde_json::{Value, json};
use support::eventually;
use support::gateway::{MOCK_PROVIDER, Reply, TestEnv, admin_table, form_encode};

const PASSWORD: &str = "keys page password 42";
const COMMENT: &str = "# hand-written: this comment must survive every edit";

/// An `admin = true` key, besides the env's own `test` key.
struct AdminKey {
    key: String,
}

fn start(env: &mut TestEnv, security: &str) -> AdminKey {
    let (key, hash) = apikey::generate();
    let rest = format!(
        "{}{COMMENT}\n{MOCK_PROVIDER}[[keys]]\nname = \"ops\"\nhash = \"{hash}\"\nadmin = true # ops laptop\n\n",
        admin_table(PASSWORD, 3600)
    );
    env.start_full("", security, "", &rest);
    AdminKey {
        key: key.to_string(),
    }
}

/// A signed-in browser: its cookie and the CSRF token from the Keys page.
struct Session {
    cookie: String,
    csrf: String,
}

fn sign_in(env: &TestEnv) -> Session {
    let cookie = env.admin_login(PASSWORD).expect("login");
    let page = env.get("/admin/keys", &[("cookie", &cookie)]);
    assert_eq!(page.status, 200, "{}", page.body);
    let marker = "name=\"csrf-token\" content=\"";
    let start = page.body.find(marker).expect("csrf meta") + marker.len();
    let len = page.body[start..].find('"').unwrap();
    Session {
        csrf: page.body[start..start + len].to_owned(),
        cookie,
    }
}

/// A request as the Keys page's `fetch` sends it.
fn browser(env: &TestEnv, s: &Session, method: &str, path: &str, body: Option<Value>) -> Reply {
    send(
        env,
        method,
        path,
        body,
        &[
            ("cookie", &s.cookie),
            ("x-csrf-token", &s.csrf),
            ("sec-fetch-site", "same-origin"),
            ("origin", &format!("http://{}", env.addr())),
        ],
    )
}

fn with_key(env: &TestEnv, key: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    send(
        env,
        method,
        path,
        body,
        &[("authorization", &format!("Bearer {key}"))],
    )
}

fn send(
    env: &TestEnv,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let agent = env.agent();
    let url = env.url(path);
    let resp = match (method, body) {
        ("GET", _) => {
            let mut req = agent.get(&url);
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            req.call()
        }
        (method, body) => {
            let mut req = match method {
                "POST" => agent.post(&url),
                "PATCH" => agent.patch(&url),
                other => panic!("{other}"),
            };
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            req.header("content-type", "application/json")
                .send(body.map(|b| b.to_string()).unwrap_or_default())
        }
    };
    Reply::from(resp.unwrap())
}

fn chat(env: &TestEnv, key: &str) -> Reply {
    env.post_with(
        "/v1/chat/completions",
        &json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        &[("authorization", &format!("Bearer {key}"))],
    )
}

fn assert_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    v
}

fn config_bytes(env: &TestEnv) -> Vec<u8> {
    std::fs::read(env.config_path()).unwrap()
}

fn audit_lines(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.dir.path().join("noviqi-audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn create_use_limit_revoke_from_a_session() {
    let mut env = TestEnv::new();
    start(&mut env, "");
    let s = sign_in(&env);
    let created = browser(
        &env,
        &s,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "dash", "models": ["mock*"], "rpm": 100})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let v = created.json();
    assert_eq!(v["name"], "dash");
    let key = v["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("nvq_") && key.len() == 47, "{key}");
    assert_eq!(v["prefix"], &key[..12]);
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    // It works at once: the running config was reloaded, not left to the file watcher.
    assert_eq!(chat(&env, &key).status, 200);
    // Listed, never with a hash; the key itself is not shown again.
    let list = browser(&env, &s, "GET", "/admin/api/keys", None);
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("sha256:") && !list.body.contains(&key));
    let dash = list.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dash")
        .cloned()
        .unwrap();
    assert_eq!(dash["state"], "active");
    assert_eq!(dash["prefix"], &key[..12]);
    assert_eq!(dash["models"], json!(["mock*"]));
    assert_eq!(dash["limits"]["requests_per_minute"], 100);
    assert_eq!(dash["spend"]["usd"], 0.0);
    let last_used = || {
        let list = browser(&env, &s, "GET", "/admin/api/keys", None).json();
        list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "dash" && k["last_used"].is_string())
    };
    assert!(eventually(Duration::from_secs(5), last_used));

    // PATCH rpm → enforced without a restart: one more request, then 429.
    let patched = browser(
        &env,
        &s,
        "PATCH",
        "/admin/api/keys/dash",
        Some(json!({"rpm": 2})),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["limits"]["requests_per_minute"], 2);
    assert_eq!(chat(&env, &key).status, 200);
    assert_eq!(chat(&env, &key).status, 429);

    // Revoke → 403; re-enabled without the per-key limit → works again.
    let revoked = browser(&env, &s, "POST", "/admin/api/keys/dash/revoke", None);
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["state"], "disabled");
    assert_error(&chat(&env, &key), 403, "key_disabled");
    let enabled = browser(
        &env,
        &s,
        "PATCH",
        "/admin/api/keys/dash",
        Some(json!({"disabled": false, "rpm": null})),
    );
    assert_eq!(enabled.json()["state"], "active", "{}", enabled.body);
    assert_eq!(chat(&env, &key).status, 200);

    // The file: comments and the other keys' layout kept, mode kept.
    let text = String::from_utf8(config_bytes(&env)).unwrap();
    assert!(text.contains(COMMENT), "{text}");
    assert!(text.contains("admin = true # ops laptop"), "{text}");
    assert!(
        text.find("name = \"ops\"").unwrap() < text.find("name = \"dash\"").unwrap(),
        "{text}"
    );
    assert!(text.contains(&KeyHash::of(&key).to_string()));

    // The audit log: the sign-in and each change, by the session, nothing secret.
    let audit = audit_lines(&env);
    let actions: Vec<_> = audit
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("login", "admin"),
            ("key_create", "dash"),
            ("key_update", "dash"),
            ("key_revoke", "dash"),
            ("key_update", "dash"),
        ]
    );
    for line in &audit {
        assert_eq!(line["actor"], "session");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["ok"], true);
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
    let shown = browser(&env, &s, "GET", "/admin/api/audit", None).json();
    assert_eq!(shown["entries"][0]["action"], "key_update");
    assert_eq!(shown["entries"].as_array().unwrap().len(), 5);
    env.assert_no_leaks(&[&key, PASSWORD]);
}

#[test]
fn admin_keys_manage_keys_and_errors_have_the_api_shape() {
    let mut env = TestEnv::new();
    let ops = start(&mut env, "");
    let created = with_key(
        &env,
        &ops.key,
        "POST",
        "/admin/api/keys",
        Some(
            json!({"name": "ci", "budget_usd": 3, "budget_period": "week",
                    "expires_at": "2099-01-01T00:00:00Z", "tpm": 5000}),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let ci = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&env, &ci).status, 200);
    let list = with_key(&env, &ops.key, "GET", "/admin/api/keys", None).json();
    assert_eq!(
        list["read_only"],
        serde_json::Value::Null,
        "a writable config"
    );
    let entry = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci")
        .cloned()
        .unwrap();
    assert_eq!(entry["budget"], json!({"usd": 3.0, "period": "week"}));
    assert_eq!(entry["spend"]["period"], "week");
    assert_eq!(entry["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(entry["limits"]["tokens_per_minute"], 5000);

    // 409, 404, 400 naming the field, 413, 401, 403, 405 — all in the OpenAI shape.
    let dup = with_key(
        &env,
        &ops.key,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "ci"})),
    );
    assert_eq!(
        assert_error(&dup, 409, "conflict")["error"]["param"],
        "name"
    );
    for (method, path) in [
        ("PATCH", "/admin/api/keys/nobody"),
        ("POST", "/admin/api/keys/nobody/revoke"),
    ] {
        let r = with_key(&env, &ops.key, method, path, Some(json!({})));
        assert_error(&r, 404, "not_found");
    }
    let bad = with_key(
        &env,
        &ops.key,
        "PATCH",
        "/admin/api/keys/ci",
        Some(json!({"budget_period": "fortnight"})),
    );
    assert_eq!(
        assert_error(&bad, 400, "invalid_request")["error"]["param"],
        "budget_period"
    );
    let huge = json!({"name": "big", "models": ["x".repeat(20_000)]});
    let r = with_key(&env, &ops.key, "POST", "/admin/api/keys", Some(huge));
    assert_error(&r, 413, "request_too_large");
    let r = send(
        &env,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "x"})),
        &[],
    );
    assert_error(&r, 401, "missing_api_key");
    let r = with_key(
        &env,
        &env.key,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "x"})),
    );
    assert_error(&r, 403, "not_admin");
    let r = with_key(&env, &ops.key, "GET", "/admin/api/keys/ci", None);
    assert_error(&r, 405, "method_not_allowed");
    // The audit names the admin key; the refused attempts are there too, marked not ok.
    let audit = audit_lines(&env);
    assert!(audit.iter().all(|l| l["actor"] == "key:ops"), "{audit:?}");
    let created = &audit[0];
    assert_eq!(
        (created["action"].as_str(), created["ok"].as_bool()),
        (Some("key_create"), Some(true))
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "key_create" && l["ok"] == false)
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "key_update" && l["ok"] == false)
    );
    env.assert_no_leaks(&[&ci, &ops.key]);
}

#[test]
fn refused_edits_leave_the_file_byte_identical() {
    let mut env = TestEnv::new();
    let ops = start(&mut env, "");
    let before = config_bytes(&env);
    for body in [
        json!({"rpm": -1}),
        json!({"models": []}),
        json!({"hash": "x"}),
    ] {
        let r = with_key(&env, &ops.key, "PATCH", "/admin/api/keys/test", Some(body));
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(config_bytes(&env), before);
    }
    // A file someone broke by hand (the server kept its running config): an edit that passes
    // the API's checks is still refused by the loader, and the file stays as it was.
    let mut broken = before.clone();
    broken.extend_from_slice(b"\n[limits]\nbudget_period = \"fortnight\"\n");
    std::fs::write(env.config_path(), &broken).unwrap();
    let r = with_key(
        &env,
        &ops.key,
        "PATCH",
        "/admin/api/keys/test",
        Some(json!({"rpm": 5})),
    );
    let v = assert_error(&r, 400, "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget_period"),
        "{v}"
    );
    assert_eq!(config_bytes(&env), broken);
    assert!(
        !env.dir
            .path()
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().contains(".tmp.") })
    );
}

#[test]
fn the_cli_racing_twenty_dashboard_creates_loses_none() {
    let mut env = TestEnv::new();
    let ops = start(&mut env, "");
    let env = &env;
    let ops = &ops.key;
    std::thread::scope(|s| {
        for i in 0..20 {
            s.spawn(move || {
                let name = format!("dash-{i}");
                let r = with_key(
                    env,
                    ops,
                    "POST",
                    "/admin/api/keys",
                    Some(json!({"name": name})),
                );
                assert_eq!(r.status, 201, "{name}: {}", r.body);
            });
        }
        for i in 0..3 {
            s.spawn(move || {
                let out = env.cli(&["keys", "add", &format!("cli-{i}")], "");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            });
        }
    });
    let text = String::from_utf8(config_bytes(env)).unwrap();
    let names: Vec<String> = (0..20)
        .map(|i| format!("dash-{i}"))
        .chain((0..3).map(|i| format!("cli-{i}")))
        .collect();
    for name in &names {
        assert!(
            text.contains(&format!("name = \"{name}\"")),
            "{name} lost:\n{text}"
        );
    }
    assert!(text.contains(COMMENT));
    // The running gateway ends up with all of them (the CLI's last write via the watcher).
    assert!(eventually(Duration::from_secs(10), || {
        let list = with_key(env, ops, "GET", "/admin/api/keys", None).json();
        let listed: Vec<&str> = list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        names.iter().all(|n| listed.contains(&n.as_str()))
    }));
}

#[test]
fn a_symlinked_config_is_edited_in_place_keeping_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut env = TestEnv::new();
    let (key, hash) = apikey::generate();
    let text = env.config_text(
        "",
        &format!(
            "{}{MOCK_PROVIDER}[[keys]]\nname = \"ops\"\nhash = \"{hash}\"\nadmin = true\n\n",
            admin_table(PASSWORD, 3600)
        ),
    );
    let real = env.dir.path().join("real.toml");
    std::fs::write(&real, text).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real.toml", env.config_path()).unwrap();
    env.spawn();
    let r = with_key(
        &env,
        &key,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "linked"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(chat(&env, r.json()["key"].as_str().unwrap()).status, 200);
    // The link is still a link; the real file was replaced, with its mode; the lock sits
    // beside the real file.
    let link = std::fs::symlink_metadata(env.config_path()).unwrap();
    assert!(link.file_type().is_symlink());
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("name = \"linked\"")
    );
    let mode = std::fs::metadata(&real).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(env.dir.path().join("real.toml.lock").exists());
}

#[test]
fn each_version_of_the_file_is_loaded_once() {
    let mut env = TestEnv::new();
    let ops = start(&mut env, "");
    let reloads = |env: &TestEnv| -> u64 {
        let text = with_key(env, &ops.key, "GET", "/metrics", None).body;
        text.lines()
            .find_map(|l| l.strip_prefix("noviqi_config_reloads_total{result=\"ok\"} "))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let r = with_key(
        &env,
        &ops.key,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "one"})),
    );
    assert_eq!(r.status, 201);
    assert_eq!(reloads(&env), 1, "the API's own reload");
    // Then a CLI edit, which only the watcher sees. Each version of the file is loaded once:
    // the API's by the API (a watcher poll that sees it finds it already loaded), the CLI's
    // by the watcher. (Whether a poll falls between the two writes is up to timing, so this
    // catches a double load only when one does.)
    let out = env.cli(&["keys", "add", "two"], "");
    assert!(out.status.success());
    assert!(eventually(Duration::from_secs(10), || {
        with_key(&env, &ops.key, "GET", "/admin/api/keys", None)
            .body
            .contains("\"two\"")
    }));
    assert_eq!(reloads(&env), 2);
    assert_eq!(env.stderr().matches("config reloaded").count(), 2);
}

#[test]
fn cross_site_writes_are_refused_and_same_origin_ones_work() {
    let mut env = TestEnv::new();
    start(&mut env, "");
    let s = sign_in(&env);
    let before = config_bytes(&env);
    let body = || Some(json!({"name": "evil"}));
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "Sec-Fetch-Site: cross-site",
            vec![("sec-fetch-site", "cross-site"), ("x-csrf-token", &s.csrf)],
        ),
        (
            "Sec-Fetch-Site: same-site",
            vec![("sec-fetch-site", "same-site"), ("x-csrf-token", &s.csrf)],
        ),
        (
            "Origin of another site",
            vec![("origin", "http://evil.example"), ("x-csrf-token", &s.csrf)],
        ),
        ("no CSRF token", vec![("sec-fetch-site", "same-origin")]),
    ];
    for (what, mut headers) in cases {
        headers.push(("cookie", &s.cookie));
        let r = send(&env, "POST", "/admin/api/keys", body(), &headers);
        assert_error(&r, 403, "cross_site_request");
        let r = send(&env, "POST", "/admin/api/keys/test/revoke", None, &headers);
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert_eq!(config_bytes(&env), before, "{what}");
    }
    // A wrong token is refused too; the page's own request works.
    let wrong = Session {
        cookie: s.cookie.clone(),
        csrf: "A".repeat(43),
    };
    let r = browser(&env, &wrong, "POST", "/admin/api/keys", body());
    assert_error(&r, 403, "cross_site_request");
    let r = browser(&env, &s, "POST", "/admin/api/keys", body());
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn audit_records_failed_logins_the_lockout_and_logout() {
    let mut env = TestEnv::new();
    start(&mut env, "lockout_max_failures = 2\nlockout_secs = 600\n");
    let s = sign_in(&env);
    let logout = env.post_form(
        "/admin/logout",
        &format!("csrf={}", form_encode(&s.csrf)),
        &[("cookie", &s.cookie), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(logout.status, 303);
    for _ in 0..2 {
        assert_eq!(
            env.post_form("/admin/login", "password=wrong", &[]).status,
            401
        );
    }
    // Locked: refused without a line of its own.
    assert_eq!(
        env.post_form("/admin/login", "password=wrong", &[]).status,
        429
    );
    let got: Vec<_> = audit_lines(&env)
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_owned(),
                l["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    let want = [
        ("login", true),
        ("logout", true),
        ("login", false),
        ("login", false),
        ("lockout", false),
    ]
    .map(|(a, ok)| (a.to_owned(), ok));
    assert_eq!(got, want);
    let text = std::fs::read_to_string(env.dir.path().join("noviqi-audit.jsonl")).unwrap();
    assert!(!text.contains("wrong") && !text.contains(PASSWORD));
}

#[test]
fn nothing_secret_in_any_log_at_trace() {
    let mut env = TestEnv::new();
    env.rust_log = "trace";
    let ops = start(&mut env, "");
    let s = sign_in(&env);
    let made = browser(
        &env,
        &s,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "traced"})),
    );
    assert_eq!(made.status, 201);
    let key = made.json()["key"].as_str().unwrap().to_owned();
    let made = with_key(
        &env,
        &ops.key,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "traced2"})),
    );
    let key2 = made.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&env, &key).status, 200);
    assert_eq!(chat(&env, &key2).status, 200);
    let r = browser(&env, &s, "POST", "/admin/api/keys/traced/revoke", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        env.post_form("/admin/login", "password=nope-nope", &[])
            .status,
        401
    );
    let password_hash = {
        let text = String::from_utf8(config_bytes(&env)).unwrap();
        let start = text.find("$argon2id$").unwrap();
        let len = text[start..].find('"').unwrap();
        text[start..start + len].to_owned()
    };
    let hashes: Vec<String> = [&key, &key2, &ops.key, &env.key]
        .iter()
        .map(|k| KeyHash::of(k).to_string())
        .collect();
    let mut secrets: Vec<&str> = vec![&key, &key2, &ops.key, PASSWORD, "nope-nope", &password_hash];
    for h in &hashes {
        secrets.push(h);
        secrets.push(h.trim_start_matches("sha256:"));
    }
    assert!(env.stderr().contains("TRACE") || env.stderr().contains("DEBUG"));
    env.assert_no_leaks(&secrets);
    let audit = std::fs::read_to_string(env.dir.path().join("noviqi-audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 5, "{audit}");
    for secret in &secrets {
        assert!(!audit.contains(secret), "{secret} in the audit log");
    }
}
