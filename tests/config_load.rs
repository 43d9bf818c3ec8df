//! Config loading: defaults, lifting, every validation rule with its field and location, and
//! credential decryption.

// Test helpers outside #[test] functions may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use noviqi::config::model::{Config, CredentialSource, Limits};
use noviqi::config::{ConfigError, Secrets, load_str};
use noviqi::crypto::apikey::KeyHash;
use noviqi::crypto::secret::{self, MasterKey};

fn load(text: &str) -> Result<Config, ConfigError> {
    load_str(text, Path::new("/etc/noviqi/noviqi.toml"), Secrets::Skip)
}

#[test]
fn empty_file_gives_every_default() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8420".parse().unwrap());
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.header_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(30));
    // Issue 13: long Claude Code sessions reach 32 MB; the default must not refuse them.
    assert_eq!(c.server.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(c.server.max_buffered_bytes, 1024 * 1024 * 1024);
    assert_eq!(c.server.max_connections_per_ip, Some(64));
    assert!(c.server.allowed_hosts.is_empty());
    assert_eq!(c.server.request_timeout, Duration::from_secs(600));
    assert!(c.server.trusted_proxies.is_empty() && c.server.tls.is_none());
    assert_eq!(
        c.security.master_key_file,
        Path::new("/etc/noviqi/noviqi.key")
    );
    assert_eq!(c.security.lockout_max_failures, 5);
    assert_eq!(c.security.lockout_window, Duration::from_secs(300));
    assert_eq!(c.security.lockout_duration, Duration::from_secs(900));
    assert!(c.admin.is_none());
    assert_eq!(
        c.usage.path.as_deref(),
        Some(Path::new("/etc/noviqi/noviqi-usage.jsonl"))
    );
    assert_eq!((c.usage.max_bytes, c.usage.keep), (104_857_600, 5));
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn providers_models_keys_are_lifted() {
    let c = load(
        r#"
        [limits]
        requests_per_minute = 10
        [[providers]]
        name = "oa"
        kind = "openai"
        base_url = "http://127.0.0.1:11434/v1/"
        headers = { "X-B" = "2", "X-A" = "1" }
        ca_file = "ca.pem"
        [[providers]]
        name = "an"
        kind = "anthropic"
        api_key_env = "ANTHROPIC_API_KEY"
        [[models]]
        name = "m"
        targets = ["oa/org/model", "an/claude"]
        [[keys]]
        name = "k"
        hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        expires_at = "2027-06-01T00:00:00Z"
        allowed_ips = ["192.168.1.0/24", "::1"]
        tokens_per_minute = 0
        [[keys]]
        name = "k2"
        hash = "sha256:ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        requests_per_minute = 0
        "#,
    )
    .unwrap();
    let oa = &c.providers[0];
    assert_eq!(oa.base_url, "http://127.0.0.1:11434/v1");
    assert_eq!(
        oa.headers,
        [("X-B".into(), "2".into()), ("X-A".into(), "1".into())]
    );
    assert_eq!(oa.ca_file.as_deref(), Some(Path::new("/etc/noviqi/ca.pem")));
    assert_eq!(c.providers[1].base_url, "https://api.anthropic.com");
    assert_eq!(
        c.providers[1].credential_source,
        CredentialSource::Env("ANTHROPIC_API_KEY".into())
    );
    assert!(
        c.providers[1].api_key.is_none(),
        "Skip leaves credentials empty"
    );
    let route = c.route("m").unwrap();
    assert_eq!(route.targets[0].upstream_model, "org/model");
    assert_eq!(route.targets[1].provider.name, "an");
    let k = c.key_by_hash(&KeyHash::of("abc")).unwrap();
    assert_eq!(k.models, ["*"]);
    assert_eq!(
        k.limits,
        Limits {
            requests_per_minute: Some(10),
            tokens_per_minute: None
        }
    );
    assert!(k.allows_ip("192.168.1.7".parse().unwrap()) && k.allows_ip("::1".parse().unwrap()));
    assert!(!k.allows_ip("10.0.0.1".parse().unwrap()));
    assert!(k.expires_at.is_some());
    assert_eq!(
        c.keys[1].limits.requests_per_minute, None,
        "explicit 0 = unlimited"
    );
}

#[track_caller]
fn refused(text: &str, field: &str, words: &str) -> ConfigError {
    let e = load(text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    assert!(e.message.contains(words), "{e}");
    assert!(e.location.is_some(), "{e}");
    e
}

#[test]
fn every_rule_is_enforced() {
    let p = "[[providers]]\nname = \"p\"\nkind = \"mock\"\n";
    refused(
        "[server]\nlisten = \"localhost\"\n",
        "server.listen",
        "address",
    );
    refused(
        "[server]\nheader_timeout_secs = 0\n",
        "server.header_timeout_secs",
        "at least 1",
    );
    refused(
        "[server.tls]\ncert_file = \"c\"\n",
        "server.tls.key_file",
        "both",
    );
    refused(
        "[admin]\npassword_hash = \"plain\"\n",
        "admin.password_hash",
        "Argon2id",
    );
    refused(
        "[[providers]]\nname = \"Bad\"\nkind = \"mock\"\n",
        "providers[0].name",
        "lowercase",
    );
    refused(
        "[[providers]]\nname = \"p\"\nkind = \"grpc\"\n",
        "providers[0].kind",
        "unknown provider kind",
    );
    refused(
        &format!("{p}api_key = \"enc:v1:AAAA\"\napi_key_env = \"X\"\n"),
        "providers[0].api_key_env",
        "not both",
    );
    refused(
        &format!("{p}api_key = \"enc:v2:AAAA\"\n"),
        "providers[0].api_key",
        "unsupported",
    );
    refused(
        &format!("{p}api_key = \"enc:v1:AAAA\"\n"),
        "providers[0].api_key",
        "too short",
    );
    refused(
        &format!("{p}headers = {{ \"X\" = \"a\\r\\nb\" }}\n"),
        "providers[0].headers",
        "control",
    );
    refused(
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"ftp://x\"\n",
        "providers[0].base_url",
        "http",
    );
    refused(
        &format!("{p}[[models]]\nname = \"\"\ntargets = [\"p/x\"]\n"),
        "models[0].name",
        "empty",
    );
    refused(
        &format!("{p}[[models]]\nname = \"m\"\ntargets = []\n"),
        "models[0].targets",
        "at least one",
    );
    refused(
        &format!("{p}[[models]]\nname = \"m\"\ntargets = [\"p\"]\n"),
        "models[0].targets[0]",
        "provider/upstream-model",
    );
    refused(
        &format!(
            "{p}[[models]]\nname = \"m\"\ntargets = [\"p/x\"]\n[[models]]\nname = \"m\"\ntargets = [\"p/y\"]\n"
        ),
        "models[1].name",
        "duplicate",
    );
    let h = "hash = \"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n";
    refused(
        &format!(
            "[[keys]]\nname = \"a\"\n{h}[[keys]]\nname = \"a\"\nhash = \"sha256:{}\"\n",
            "0".repeat(64)
        ),
        "keys[1].name",
        "duplicate",
    );
    refused(
        &format!("[[keys]]\nname = \"a\"\n{h}[[keys]]\nname = \"b\"\n{h}"),
        "keys[1].hash",
        "already used",
    );
    refused(
        &format!("[[keys]]\nname = \"a\"\n{h}expires_at = \"June\"\n"),
        "keys[0].expires_at",
        "RFC 3339",
    );
    refused(
        &format!("[[keys]]\nname = \"a\"\n{h}allowed_ips = [\"1.2.3.4\", \"nope\"]\n"),
        "keys[0].allowed_ips[1]",
        "CIDR",
    );
    refused(
        "[security]\nlockout_max_failures = 0\n",
        "security.lockout_max_failures",
        "at least 1",
    );
}

#[test]
fn parser_errors_carry_location_and_field() {
    let e = load("[usage]\nkeep = \"five\"\n").unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(2), "{e}");
    assert_eq!(e.field.as_deref(), Some("usage.keep"), "{e}");
    let e = load("[server\n").unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(1), "{e}");
    let s = e.to_string();
    assert!(s.starts_with("/etc/noviqi/noviqi.toml:1:"), "{s}");
    assert!(!s.contains('\n'), "one line: {s}");
}

#[test]
fn decrypt_fills_credentials_from_the_key_file() {
    use std::os::unix::fs::PermissionsExt as _;
    if std::env::var_os(secret::MASTER_KEY_ENV).is_some() {
        return; // the environment would override the key file under test
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noviqi.toml");
    let key = MasterKey::generate();
    let enc = secret::encrypt(&key, b"sk-live");
    let text = format!(
        "[security]\nmaster_key_file = \"k/mk\"\n[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key = \"{enc}\"\n"
    );
    // Without the key file: a clear error at security.master_key_file.
    let e = load_str(&text, &path, Secrets::Decrypt).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("security.master_key_file"), "{e}");
    assert!(e.message.contains("does not exist"), "{e}");
    // Skip does not need it.
    assert!(
        load_str(&text, &path, Secrets::Skip).unwrap().providers[0]
            .api_key
            .is_none()
    );
    std::fs::create_dir(dir.path().join("k")).unwrap();
    let key_path = dir.path().join("k/mk");
    std::fs::write(&key_path, key.to_base64().as_str()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = load_str(&text, &path, Secrets::Decrypt).unwrap();
    assert_eq!(c.providers[0].api_key.as_ref().unwrap().expose(), "sk-live");
    assert!(!format!("{c:?}").contains("sk-live"), "Debug must redact");
    // Another key: the error names the field and never the secret.
    std::fs::write(&key_path, MasterKey::generate().to_base64().as_str()).unwrap();
    let e = load_str(&text, &path, Secrets::Decrypt).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("providers[0].api_key"), "{e}");
    assert!(
        e.location.is_some() && !e.to_string().contains("sk-live"),
        "{e}"
    );
}

#[test]
fn server_hardening_fields_are_lifted_and_checked() {
    let c = load(
        r#"
        [server]
        max_connections_per_ip = 0
        allowed_hosts = ["LocalHost.", "ai.example.net:8443", "[::1]"]
        "#,
    )
    .unwrap();
    assert_eq!(c.server.max_connections_per_ip, None);
    assert_eq!(
        c.server.allowed_hosts,
        ["localhost", "ai.example.net:8443", "[::1]"]
    );
    let e = load("[server]\nmax_body_bytes = 100\nmax_buffered_bytes = 99\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(":3:") && text.contains("max_buffered_bytes"),
        "{text}"
    );
    let e = load("[server]\nallowed_hosts = [\"evil host/\"]\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("allowed_hosts") && text.contains("evil host/"),
        "{text}"
    );
}

#[test]
fn routing_fields_are_lifted_with_their_defaults() {
    use noviqi::routing::{Policy, Strategy};
    let c = load(
        r#"
        [[providers]]
        name = "p"
        kind = "mock"
        [[models]]
        name = "plain"
        targets = ["p/a", "p/b"]
        [[models]]
        name = "w"
        targets = ["p/a", "p/b"]
        strategy = "weighted"
        weights = [3, 1]
        cooldown_failures = 0
        cooldown_secs = 5
        [[models]]
        name = "rr"
        targets = ["p/a"]
        strategy = "round_robin"
        [[models]]
        name = "lb"
        targets = ["p/a"]
        strategy = "least_busy"
        "#,
    )
    .unwrap();
    assert_eq!(c.models[0].strategy, Strategy::Fallback);
    assert_eq!(c.models[0].policy, Policy::default());
    assert_eq!(
        (Policy::default().failures, Policy::default().cooldown),
        (3, Duration::from_secs(30))
    );
    assert_eq!(c.models[1].strategy, Strategy::Weighted(vec![3, 1]));
    assert_eq!(
        c.models[1].policy,
        Policy {
            failures: 0,
            cooldown: Duration::from_secs(5)
        }
    );
    assert_eq!(c.models[2].strategy, Strategy::RoundRobin);
    assert_eq!(c.models[3].strategy, Strategy::LeastBusy);
    assert_eq!(&*c.models[0].targets[1].name, "p/b");
}

#[test]
fn routing_rules_are_enforced() {
    let m = "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[[models]]\nname = \"m\"\ntargets = [\"p/a\", \"p/b\"]\n";
    let e = refused(
        &format!("{m}strategy = \"random\"\n"),
        "models[0].strategy",
        "round_robin",
    );
    assert_eq!(e.location.unwrap().0, 7, "the line of `strategy`");
    refused(
        &format!("{m}strategy = \"weighted\"\n"),
        "models[0].weights",
        "one positive integer per target",
    );
    let e = refused(
        &format!("{m}strategy = \"weighted\"\nweights = [1]\n"),
        "models[0].weights",
        "1 weights for 2 targets",
    );
    assert_eq!(e.location.unwrap().0, 8, "the line of `weights`");
    refused(
        &format!("{m}strategy = \"weighted\"\nweights = [1, 0]\n"),
        "models[0].weights",
        "weight 0",
    );
    refused(
        &format!("{m}strategy = \"weighted\"\nweights = [1, -2]\n"),
        "models[0].weights",
        "weight -2",
    );
    refused(
        &format!("{m}weights = [1, 1]\n"),
        "models[0].weights",
        "only apply with strategy",
    );
    refused(
        &format!("{m}cooldown_secs = 0\n"),
        "models[0].cooldown_secs",
        "between 1",
    );
    refused(
        "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[[models]]\nname = \"m\"\ntargets = [\"p/a\", \"p/a\"]\n",
        "models[0].targets[1]",
        "listed twice",
    );
}
