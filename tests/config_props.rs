//! Property tests: the config loader and the `enc:v1` decoder take untrusted text and must
//! answer with a value or an error, never a panic.

// Test helpers outside #[test] functions may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use noviqi::config::{Secrets, load_str};
use noviqi::crypto::secret::{self, MasterKey};
use proptest::prelude::*;

/// Fragments that make the generated text look like a noviqi config, so the generator reaches
/// the lifting code and not only the TOML parser.
fn tomlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "[server]\n",
        "[security]\n",
        "[admin]\n",
        "[usage]\n",
        "[limits]\n",
        "[server.tls]\n",
        "[[providers]]\n",
        "[[models]]\n",
        "[[keys]]\n",
        "name = \"a\"\n",
        "name = \"\"\n",
        "name = \"A B\"\n",
        "kind = \"mock\"\n",
        "kind = \"openai\"\n",
        "kind = \"x\"\n",
        "targets = [\"a/b\"]\n",
        "targets = [\"/\"]\n",
        "targets = []\n",
        "listen = \"[::1]:0\"\n",
        "listen = \"nope\"\n",
        "trusted_proxies = [\"::/0\", \"1.2.3.4\", \"x\"]\n",
        "hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        "hash = \"sha256:\"\n",
        "api_key = \"enc:v1:AAAA\"\n",
        "api_key = \"sk\"\n",
        "api_key_env = \"NVQ_PROP_UNSET\"\n",
        "headers = { \"a\" = \"b\" }\n",
        "headers = { \"a b\" = \"\\n\" }\n",
        "expires_at = \"2027-01-01T00:00:00Z\"\n",
        "expires_at = \"9999-99-99\"\n",
        "requests_per_minute = 99999999999\n",
        "max_connections = -1\n",
        "timeout_secs = 0\n",
        "password_hash = \"$argon2id$\"\n",
        "cert_file = \"c\"\n",
        "path = \"\"\n",
        "models = [\"*\"]\n",
        "allowed_ips = [\"10.0.0.0/8\"]\n",
        "= =\n",
        "\"\n",
        "[\n",
        "x = 1\n",
        "é = \"ü\"\n",
        "\u{0}",
        "# comment\n",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = load_str(&text, Path::new("prop.toml"), Secrets::Skip);
    }

    #[test]
    fn loader_never_panics_on_tomlish_text(text in tomlish()) {
        if let Err(e) = load_str(&text, Path::new("prop.toml"), Secrets::Skip) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = load_str(&text, Path::new("/nonexistent/prop.toml"), Secrets::Decrypt);
    }

    #[test]
    fn decoder_never_panics(s in ".{0,200}", tail in "[A-Za-z0-9+/=]{0,120}") {
        let key = MasterKey::generate();
        let _ = secret::decrypt(&key, &s);
        let _ = secret::decrypt(&key, &format!("enc:v1:{tail}"));
        let _ = secret::check_syntax(&format!("enc:{s}"));
        let _ = MasterKey::from_base64(&s);
    }
}
