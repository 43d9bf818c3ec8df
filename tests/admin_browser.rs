//! The dashboard in a real browser: headless Chromium driven by `tests/browser/admin.mjs`
//! (playwright-core) logs in through the form, checks charts and totals from the traffic this
//! test made, switches ranges, takes light, dark and phone screenshots, and logs out; driven
//! by `tests/browser/keys.mjs`, it creates a key on the Keys page, reads it once, uses it,
//! edits, revokes and re-enables it, and reads the audit table.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`), `node`, and
//! `npm install --prefix tests/browser` (`.ci/run` does all three). Set
//! `NOVIQI_SKIP_BROWSER=1` to skip; set `NOVIQI_BROWSER_OUT=<dir>` to keep the screenshots.

// Test helpers outside #[test] functions (here and in tests/support) may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::gateway::{MOCK_PROVIDER, TestEnv, admin_table};

const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "browser test password";

/// Whether the browser test can run; panics (fails) with the fix when it cannot, unless
/// `NOVIQI_SKIP_BROWSER=1`.
fn prerequisites(dir: &Path) -> bool {
    let skip = std::env::var("NOVIQI_SKIP_BROWSER").is_ok_and(|v| v == "1");
    let missing = if !Path::new(CHROMIUM).exists() {
        Some(format!(
            "{CHROMIUM} is missing: run `apt-get install -y chromium`"
        ))
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node is missing: install Node.js 18 or later".to_owned())
    } else if !dir.join("node_modules/playwright-core").exists() {
        Some("playwright-core is missing: run `npm install --prefix tests/browser`".to_owned())
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if skip => {
            println!("admin_browser: skipped (NOVIQI_SKIP_BROWSER=1): {why}");
            false
        }
        Some(why) => panic!("{why} (or set NOVIQI_SKIP_BROWSER=1 to skip this test)"),
    }
}

#[test]
fn dashboard_in_headless_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !prerequisites(&browser_dir) {
        return;
    }
    let mut env = TestEnv::new();
    // The mock priced (so cost shows), and a budget on the test key.
    let rest = format!(
        "{}[limits]\nbudget_usd = 5\nbudget_period = \"week\"\n\n\
         [[prices]]\nmatch = \"mock/*\"\ninput = 1000\noutput = 2000\n\n{MOCK_PROVIDER}",
        admin_table(PASSWORD, 3600)
    );
    env.start("", &rest);
    let body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "hello browser"}]})
            .to_string()
    };
    // Only successes at first (the script checks the error chart with none), then the script
    // sends one request for an unknown model itself.
    for _ in 0..6 {
        assert_eq!(env.post("/v1/chat/completions", &body("mock")).status, 200);
    }

    let max_latency = env
        .usage()
        .iter()
        .map(|l| l["latency_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    // Screenshots are kept as test artifacts (target/tmp/admin-screenshots by default).
    let out = match std::env::var_os("NOVIQI_BROWSER_OUT") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-screenshots"),
    };
    std::fs::create_dir_all(&out).unwrap();
    let output = Command::new("node")
        .arg(browser_dir.join("admin.mjs"))
        .env("NOVIQI_URL", format!("http://{}", env.addr()))
        .env("NOVIQI_PASSWORD", PASSWORD)
        .env("NOVIQI_EXPECT_REQUESTS", "7")
        .env("NOVIQI_KEY", &env.key)
        .env("NOVIQI_MAX_LATENCY_MS", max_latency.to_string())
        .env("NOVIQI_OUT", &out)
        .env("NOVIQI_CHROMIUM", CHROMIUM)
        .current_dir(&browser_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser script failed ({}):\n{stdout}\n{stderr}\ngateway log:\n{}",
        output.status,
        env.stderr()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["ok"], true);
    for shot in result["screenshots"].as_array().unwrap() {
        let path = shot.as_str().unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000, "{path}");
        println!("screenshot: {path}");
    }
    // The browser's logins went through the lockout-aware form; nothing secret was logged.
    env.assert_no_leaks(&[PASSWORD]);
}

#[test]
fn keys_page_in_headless_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !prerequisites(&browser_dir) {
        return;
    }
    let mut env = TestEnv::new();
    env.start(
        "",
        &format!("{}{MOCK_PROVIDER}", admin_table(PASSWORD, 3600)),
    );
    let out = match std::env::var_os("NOVIQI_BROWSER_OUT") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-screenshots"),
    };
    std::fs::create_dir_all(&out).unwrap();
    let output = Command::new("node")
        .arg(browser_dir.join("keys.mjs"))
        .env("NOVIQI_URL", format!("http://{}", env.addr()))
        .env("NOVIQI_PASSWORD", PASSWORD)
        .env("NOVIQI_OUT", &out)
        .env("NOVIQI_CHROMIUM", CHROMIUM)
        .current_dir(&browser_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser script failed ({}):\n{stdout}\n{stderr}\ngateway log:\n{}",
        output.status,
        env.stderr()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["ok"], true);
    for shot in result["screenshots"].as_array().unwrap() {
        let path = shot.as_str().unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000, "{path}");
        println!("screenshot: {path}");
    }
    // The key the page showed once is in the config only as its hash, and in no log.
    let key = result["key"].as_str().unwrap();
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(!config.contains(key));
    assert!(config.contains("name = \"browser-made\""), "{config}");
    let audit = std::fs::read_to_string(env.dir.path().join("noviqi-audit.jsonl")).unwrap();
    assert!(!audit.contains(key) && !audit.contains(PASSWORD));
    env.assert_no_leaks(&[key, PASSWORD]);
}
