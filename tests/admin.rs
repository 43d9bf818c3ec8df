//! The admin dashboard end to end on the real binary: login, lockout, sessions (expiry,
//! logout), CSRF refusals, security headers, the usage API, and analytics read back from the
//! usage log (rotated files included) after a restart.

// Test helpers outside #[test] functions (here and in tests/support) may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::time::Duration;

use noviqi::crypto::apikey;
use serde_json::{Value, json};
use support::eventually;
use support::gateway::{MOCK_PROVIDER, Reply, TestEnv, admin_table};

const PASSWORD: &str = "correct horse battery staple";

fn start(env: &mut TestEnv, ttl_secs: u64, security: &str, usage: &str, extra: &str) {
    let rest = format!("{}{MOCK_PROVIDER}{extra}", admin_table(PASSWORD, ttl_secs));
    env.start_full("", security, usage, &rest);
}

fn chat(env: &TestEnv, model: &str) -> Reply {
    env.post(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "one two three"}]})
            .to_string(),
    )
}

fn usage_api(env: &TestEnv, range: &str, cookie: &str) -> Reply {
    env.get(
        &format!("/admin/api/usage?range={range}"),
        &[("cookie", cookie)],
    )
}

/// The CSRF token in the dashboard's logout form.
fn csrf_token(env: &TestEnv, cookie: &str) -> String {
    let page = env.get("/admin", &[("cookie", cookie)]);
    assert_eq!(page.status, 200);
    let marker = "name=\"csrf\" value=\"";
    let start = page.body.find(marker).expect("csrf field") + marker.len();
    let len = page.body[start..].find('"').unwrap();
    page.body[start..start + len].to_owned()
}

fn assert_security_headers(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
}

fn assert_openai_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let v = reply.json();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
}

#[test]
fn disabled_without_a_password_hash() {
    let mut env = TestEnv::new();
    env.start("", MOCK_PROVIDER);
    assert_eq!(env.get("/admin", &[]).status, 404);
    assert_eq!(env.get("/admin/api/usage", &[]).status, 404);
    let login = env.post_form("/admin/login", "password=x", &[]);
    assert_eq!(login.status, 404);
}

#[test]
fn login_page_assets_and_security_headers() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "", "");
    let page = env.get("/admin", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/admin/login\"")
    );
    assert!(page.body.contains("name=\"password\""));
    assert_security_headers(&page, "login page");
    let js = env.get("/admin/assets/app.js", &[]);
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_security_headers(&js, "app.js");
    let css = env.get("/admin/assets/app.css", &[]);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_security_headers(&css, "app.css");
    let api = env.get("/admin/api/usage", &[]);
    assert_openai_error(&api, 401);
    assert_security_headers(&api, "api refusal");
    assert_openai_error(&env.get("/admin/api/nothing", &[]), 404);
    assert_eq!(env.get("/admin/nothing", &[]).status, 404);
}

#[test]
fn login_success_and_failure() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "", "");
    let wrong = env.post_form("/admin/login", "password=nope", &[]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("Wrong password"));
    assert_security_headers(&wrong, "failed login");
    let empty = env.post_form("/admin/login", "", &[]);
    assert_eq!(empty.status, 401);

    let ok = env.post_form(
        "/admin/login",
        &format!("password={}", support::gateway::form_encode(PASSWORD)),
        &[],
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/admin"));
    assert_security_headers(&ok, "login redirect");
    let cookie = ok.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure without TLS: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let id = pair.strip_prefix("noviqi_admin=").unwrap();
    assert_eq!(id.len(), 43, "256 bits, base64url");

    let dashboard = env.get("/admin", &[("cookie", pair)]);
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("/admin/assets/app.js"));
    assert!(!dashboard.body.contains("{{CSRF}}"));
    assert_security_headers(&dashboard, "dashboard");
    let api = usage_api(&env, "day", pair);
    assert_eq!(api.status, 200, "{}", api.body);
    assert_security_headers(&api, "api");
    // A made-up or tampered cookie is no session.
    let forged = format!("noviqi_admin={}", "A".repeat(43));
    assert_openai_error(&usage_api(&env, "day", &forged), 401);
    assert!(!env.stderr().contains(PASSWORD));
    assert!(
        !env.stderr().contains(id),
        "session ids stay out of the log"
    );
}

#[test]
fn lockout_after_failures_and_a_correct_password_then_fails() {
    let mut env = TestEnv::new();
    start(
        &mut env,
        3600,
        "lockout_max_failures = 3\nlockout_secs = 600\n",
        "",
        "",
    );
    for _ in 0..3 {
        assert_eq!(
            env.post_form("/admin/login", "password=wrong", &[]).status,
            401
        );
    }
    let locked = env.post_form(
        "/admin/login",
        &format!("password={}", support::gateway::form_encode(PASSWORD)),
        &[],
    );
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.header("set-cookie").is_none());
    let wait: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 500 && wait <= 600, "{wait}");
    assert!(env.admin_login(PASSWORD).is_none());
    // Counted apart from bad API keys, but a locked address is locked for the API too.
    let api = env.get(
        "/v1/models",
        &[("authorization", &format!("Bearer {}", env.key))],
    );
    assert_eq!(api.status, 429);
    assert_eq!(api.json()["error"]["code"], "locked_out");
}

#[test]
fn an_address_locked_by_bad_api_keys_cannot_log_in() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "lockout_max_failures = 2\n", "", "");
    for _ in 0..2 {
        let r = env.get("/v1/models", &[("authorization", "Bearer nvq_wrong")]);
        assert_eq!(r.status, 401);
    }
    assert!(env.admin_login(PASSWORD).is_none());
}

#[test]
fn session_expires() {
    let mut env = TestEnv::new();
    start(&mut env, 1, "", "", "");
    let cookie = env.admin_login(PASSWORD).expect("login");
    let first = usage_api(&env, "hour", &cookie);
    assert!(first.status == 200 || first.status == 401, "{}", first.body);
    assert!(
        eventually(Duration::from_secs(10), || usage_api(&env, "hour", &cookie)
            .status
            == 401),
        "the session outlived its ttl"
    );
    let page = env.get("/admin", &[("cookie", &cookie)]);
    assert!(
        page.body.contains("action=\"/admin/login\""),
        "login page again"
    );
}

#[test]
fn logout_ends_the_session_server_side() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "", "");
    let cookie = env.admin_login(PASSWORD).expect("login");
    let csrf = csrf_token(&env, &cookie);
    assert_eq!(csrf.len(), 43);

    // Refused: no token, a wrong token, a foreign site, no session.
    let no_token = env.post_form("/admin/logout", "", &[("cookie", &cookie)]);
    assert_eq!(no_token.status, 403);
    let wrong = env.post_form("/admin/logout", "csrf=AAAA", &[("cookie", &cookie)]);
    assert_eq!(wrong.status, 403);
    let form = format!("csrf={csrf}");
    let cross = env.post_form(
        "/admin/logout",
        &form,
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    );
    assert_eq!(cross.status, 403);
    let foreign = env.post_form(
        "/admin/logout",
        &form,
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    );
    assert_eq!(foreign.status, 403);
    let anonymous = env.post_form("/admin/logout", &form, &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        usage_api(&env, "day", &cookie).status,
        200,
        "still signed in"
    );

    // Chromium's same-origin form post from a no-referrer page: Origin null.
    let out = env.post_form(
        "/admin/logout",
        &form,
        &[
            ("cookie", &cookie),
            ("sec-fetch-site", "same-origin"),
            ("origin", "null"),
        ],
    );
    assert_eq!(out.status, 303, "{}", out.body);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie, sent again, is dead on the server.
    assert_openai_error(&usage_api(&env, "day", &cookie), 401);
}

#[test]
fn cross_site_login_is_refused() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "", "");
    let body = format!("password={}", support::gateway::form_encode(PASSWORD));
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example")],
    ] {
        let r = env.post_form("/admin/login", &body, &headers);
        assert_eq!(r.status, 403, "{headers:?}");
        assert!(r.header("set-cookie").is_none());
    }
    let chromium = env.post_form(
        "/admin/login",
        &body,
        &[("sec-fetch-site", "same-origin"), ("origin", "null")],
    );
    assert_eq!(chromium.status, 303);
    let same_host = format!("http://{}", env.addr());
    let r = env.post_form("/admin/login", &body, &[("origin", &same_host)]);
    assert_eq!(r.status, 303);
}

#[test]
fn admin_keys_read_the_api_and_others_do_not() {
    let mut env = TestEnv::new();
    let (admin_key, admin_hash) = apikey::generate();
    let admin_key = admin_key.to_string();
    let extra = format!(
        "[[keys]]\nname = \"ops\"\nhash = \"{admin_hash}\"\nprefix = \"{}\"\nadmin = true\n\n",
        &admin_key[..12]
    );
    start(&mut env, 3600, "", "", &extra);
    let bearer = |k: &str| format!("Bearer {k}");
    let ok = env.get(
        "/admin/api/usage?range=week",
        &[("authorization", &bearer(&admin_key))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["range"], "week");
    assert_eq!(ok.json()["t"].as_array().unwrap().len(), 168);
    let plain = env.get("/admin/api/usage", &[("authorization", &bearer(&env.key))]);
    assert_openai_error(&plain, 403);
    let unknown = env.get("/admin/api/usage", &[("authorization", "Bearer nvq_nope")]);
    assert_openai_error(&unknown, 401);
    let bad_range = env.get(
        "/admin/api/usage?range=year",
        &[("authorization", &bearer(&admin_key))],
    );
    assert_openai_error(&bad_range, 400);
    env.assert_no_leaks(&[&admin_key, PASSWORD]);
}

/// Totals of every range, as the API reports them.
fn all_totals(env: &TestEnv, cookie: &str) -> Vec<Value> {
    ["hour", "day", "week", "month"]
        .iter()
        .map(|r| {
            let reply = usage_api(env, r, cookie);
            assert_eq!(reply.status, 200, "{}", reply.body);
            let mut v = reply.json();
            // Per-bucket series shift when a minute or hour ends between two reads: compare
            // each group's totals (which hold every bucket of the range).
            for group in ["by_key", "by_model", "by_status"] {
                for g in v[group].as_array_mut().into_iter().flatten() {
                    g.as_object_mut().map(|o| o.remove("series"));
                }
            }
            json!({"totals": v["totals"], "by_key": v["by_key"], "by_model": v["by_model"],
                   "by_status": v["by_status"]})
        })
        .collect()
}

#[test]
fn usage_api_counts_traffic_and_survives_a_restart() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "", "");
    for _ in 0..4 {
        assert_eq!(chat(&env, "mock").status, 200);
    }
    assert_eq!(chat(&env, "no-such-model").status, 404);
    let cookie = env.admin_login(PASSWORD).expect("login");
    let day = usage_api(&env, "day", &cookie).json();
    let totals = &day["totals"];
    assert_eq!(totals["requests"], 5, "{day}");
    assert_eq!(totals["errors"], 1);
    assert_eq!(
        totals["prompt_tokens"], 12,
        "mock counts words: 3 per request"
    );
    assert_eq!(totals["completion_tokens"], 12);
    assert!(
        totals["p50_ms"].is_u64() && totals["p95_ms"].is_u64(),
        "{totals}"
    );
    assert_eq!(day["by_key"][0]["name"], "test");
    assert_eq!(day["by_key"][0]["prefix"], &env.key[..12]);
    assert_eq!(day["by_model"][0]["name"], "mock");
    assert_eq!(
        day["by_model"][1]["name"], "(other)",
        "made-up model names fold"
    );
    let series: u64 = day["series"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(series, 5);
    assert!(!day.to_string().contains(&env.key), "never the key itself");
    let before = all_totals(&env, &cookie);

    assert!(env.terminate().is_some_and(|s| s.success()));
    env.spawn();
    let cookie = env.admin_login(PASSWORD).expect("login after restart");
    assert_eq!(all_totals(&env, &cookie), before);
}

#[test]
fn rotation_and_read_back_past_max_bytes() {
    let mut env = TestEnv::new();
    start(&mut env, 3600, "", "max_bytes = 700\nkeep = 50\n", "");
    const N: usize = 14;
    for _ in 0..N {
        assert_eq!(chat(&env, "mock").status, 200);
    }
    let rotated = |n: usize| {
        let mut p = env.usage_path().into_os_string();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    assert!(
        rotated(1).exists() && rotated(2).exists(),
        "the log rotated"
    );
    let mut lines = 0;
    for n in 1..=50 {
        if let Ok(text) = std::fs::read_to_string(rotated(n)) {
            assert!(text.len() < 700 + 600, "rotated near max_bytes");
            lines += text.lines().count();
        }
    }
    lines += env.usage().len();
    assert_eq!(lines, N, "no line lost to rotation");
    let cookie = env.admin_login(PASSWORD).expect("login");
    let before = all_totals(&env, &cookie);
    assert_eq!(before[1]["totals"]["requests"], N as u64);

    assert!(env.terminate().is_some_and(|s| s.success()));
    env.spawn();
    let cookie = env.admin_login(PASSWORD).expect("login after restart");
    assert_eq!(all_totals(&env, &cookie), before);
}

#[test]
fn cookies_are_secure_under_tls() {
    let mut env = TestEnv::new();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(env.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        env.dir.path().join("key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    let tls = "\n[server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    let rest = format!("{}{MOCK_PROVIDER}", admin_table(PASSWORD, 3600));
    env.start_full(tls, "", "", &rest);
    // The certificate is not what is under test here, only the cookie's attributes.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .new_agent();
    let url = |path: &str| format!("https://{}{path}", env.addr());
    let body = format!("password={}", support::gateway::form_encode(PASSWORD));
    let reply = Reply::from(
        agent
            .post(url("/admin/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .send(&body)
            .unwrap(),
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let cookie = reply.header("set-cookie").unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(reply.header("strict-transport-security").is_some());
    let pair = cookie.split(';').next().unwrap();
    let logout_page = Reply::from(
        agent
            .get(url("/admin"))
            .header("cookie", pair)
            .call()
            .unwrap(),
    );
    assert_eq!(logout_page.status, 200);
    let plain = Reply::from(
        agent
            .post(url("/admin/logout"))
            .header("cookie", pair)
            .header("content-type", "application/x-www-form-urlencoded")
            .send("csrf=wrong")
            .unwrap(),
    );
    assert_eq!(plain.status, 403);
}
