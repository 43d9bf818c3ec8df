//! The brute-force lockout through the running gateway (issue 13): what counts as a failure,
//! what clears a streak, and that parallel logins cannot verify more guesses than the limit.
//!
//! Each test runs its own gateway with a small `[security]` table, so the numbers below are
//! the whole story.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Barrier;
use std::thread;

use noviqi::crypto::apikey;
use support::gateway::{MOCK_PROVIDER, TestEnv, admin_table, form_encode};

const PASSWORD: &str = "correct horse battery staple";

/// Three failures lock the address for ten minutes.
const SMALL: &str = "lockout_max_failures = 3\nlockout_window_secs = 300\nlockout_secs = 600\n";

/// A gateway with the dashboard on, `security` in `[security]`, and a key `name` per extra
/// key table; returns the extra keys in the order given.
fn start(env: &mut TestEnv, security: &str, extra_keys: &[&str]) -> Vec<String> {
    let mut rest = format!("{}{MOCK_PROVIDER}", admin_table(PASSWORD, 3600));
    let mut keys = Vec::new();
    for (i, lines) in extra_keys.iter().enumerate() {
        let (key, hash) = apikey::generate();
        rest.push_str(&format!(
            "[[keys]]\nname = \"extra{i}\"\nhash = \"{hash}\"\nprefix = \"{}\"\n{lines}\n\n",
            &key[..12]
        ));
        keys.push(key.to_string());
    }
    env.start_full("", security, "", &rest);
    keys
}

fn models(env: &TestEnv, key: Option<&str>) -> u16 {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    env.get("/v1/models", &headers).status
}

fn login(env: &TestEnv, password: &str) -> u16 {
    env.post_form(
        "/admin/login",
        &format!("password={}", form_encode(password)),
        &[("sec-fetch-site", "same-origin")],
    )
    .status
}

#[test]
fn a_valid_key_does_not_clear_failed_logins() {
    let mut env = TestEnv::new();
    start(&mut env, SMALL, &[]);
    let key = env.key.clone();
    assert_eq!(login(&env, "guess 1"), 401);
    assert_eq!(login(&env, "guess 2"), 401);
    // Before the fix one API call reset the count, so a key holder could guess forever.
    assert_eq!(models(&env, Some(&key)), 200);
    assert_eq!(login(&env, "guess 3"), 401);
    assert_eq!(
        login(&env, PASSWORD),
        429,
        "the third failed login must lock the address"
    );
    env.assert_no_leaks(&[PASSWORD]);
}

#[test]
fn key_failures_and_login_failures_are_counted_apart() {
    let mut env = TestEnv::new();
    start(&mut env, SMALL, &[]);
    let key = env.key.clone();
    assert_eq!(models(&env, Some("nvq_wrong1")), 401);
    assert_eq!(models(&env, Some("nvq_wrong2")), 401);
    assert_eq!(login(&env, "guess 1"), 401);
    assert_eq!(login(&env, "guess 2"), 401);
    // Two of each: neither streak is at three, and a login clears only the login streak.
    assert_eq!(login(&env, PASSWORD), 303);
    assert_eq!(models(&env, Some("nvq_wrong3")), 401);
    assert_eq!(models(&env, Some(&key)), 429);
    // A lock is a lock of the address: no login either.
    assert_eq!(login(&env, PASSWORD), 429);
}

#[test]
fn a_known_key_that_fails_its_checks_neither_counts_nor_clears() {
    let mut env = TestEnv::new();
    let keys = start(
        &mut env,
        SMALL,
        &[
            "disabled = true",
            "expires_at = \"2020-01-01T00:00:00Z\"",
            "allowed_ips = [\"192.0.2.0/24\"]",
        ],
    );
    let valid = env.key.clone();
    assert_eq!(models(&env, Some("nvq_wrong1")), 401);
    assert_eq!(models(&env, Some("nvq_wrong2")), 401);
    // Each is known, so no guess; and each is refused, so no proof of a good key either.
    for key in &keys {
        for _ in 0..3 {
            assert_eq!(models(&env, Some(key)), 403);
        }
    }
    assert_eq!(models(&env, Some("nvq_wrong3")), 401);
    assert_eq!(
        models(&env, Some(&valid)),
        429,
        "a refused key must not have cleared the streak"
    );
    let mut secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    secrets.push(&valid);
    env.assert_no_leaks(&secrets);
}

#[test]
fn requests_without_a_key_are_not_failures() {
    let mut env = TestEnv::new();
    start(&mut env, SMALL, &[]);
    let key = env.key.clone();
    // What five `<img src=…/v1/models>` on any web page would send: no key at all.
    for _ in 0..10 {
        assert_eq!(models(&env, None), 401);
    }
    let empty = env.get("/v1/models", &[("authorization", "Bearer ")]);
    assert_eq!(empty.status, 401);
    assert_eq!(models(&env, Some(&key)), 200);
    assert_eq!(login(&env, PASSWORD), 303);
}

#[test]
fn parallel_wrong_logins_verify_no_more_guesses_than_the_limit() {
    const PARALLEL: usize = 40;
    let mut env = TestEnv::new();
    start(
        &mut env,
        "lockout_max_failures = 5\nlockout_window_secs = 300\nlockout_secs = 600\n",
        &[],
    );
    let start = Barrier::new(PARALLEL);
    let statuses: Vec<(u16, Option<String>, bool)> = thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let (env, start) = (&env, &start);
                s.spawn(move || {
                    start.wait();
                    let reply = env.post_form(
                        "/admin/login",
                        &format!("password=guess{i}"),
                        &[("sec-fetch-site", "same-origin")],
                    );
                    let login_page = reply.body.contains("action=\"/admin/login\"");
                    (
                        reply.status,
                        reply.header("retry-after").map(str::to_owned),
                        login_page,
                    )
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let verified = statuses.iter().filter(|(s, _, _)| *s == 401).count();
    assert!(
        verified <= 5,
        "{verified} wrong passwords verified at once: {statuses:?}"
    );
    for (status, retry_after, login_page) in &statuses {
        match status {
            401 => {}
            429 => assert!(retry_after.is_some(), "{statuses:?}"),
            503 => {
                assert_eq!(retry_after.as_deref(), Some("1"), "{statuses:?}");
                assert!(
                    *login_page,
                    "a busy refusal is the login page: {statuses:?}"
                );
            }
            other => panic!("unexpected status {other}: {statuses:?}"),
        }
    }
    // One after another now: however the burst went, five guesses in all, then the lock.
    let mut total = verified;
    for _ in 0..10 {
        match login(&env, "one more guess") {
            401 => total += 1,
            429 => break,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(total, 5, "{statuses:?}");
    assert_eq!(login(&env, PASSWORD), 429);
    // One Argon2 buffer (19 MiB for the default hash) whatever the concurrency; before the fix
    // every verifying thread kept its own, and this burst peaked near 190 MB.
    let pid = env.child.as_ref().unwrap().id();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB");
    }
}
