//! Fuzz targets of the config file and `enc:v1` secrets.

use std::path::Path;

use crate::config::{self, Secrets};
use crate::crypto::secret::{self, MasterKey, SecretError};

// ---------------------------------------------------------------------------------------------
// The config file and enc:v1 secrets

/// `config_load`: a config file's text through `load_str` without decryption. Properties: an
/// error renders (with its snippet of the file); a loaded config routes each of its models.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::load_str(text, Path::new("/fuzz/noviqi.toml"), Secrets::Skip) {
        Ok(config) => {
            for model in &config.models {
                let route = config.route(&model.name);
                assert!(
                    route.is_some_and(|r| !r.targets.is_empty()),
                    "{} does not route",
                    model.name
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The fixed master key of the `secret` target (base64 of 32 bytes; its seeds use it).
pub const FUZZ_MASTER_KEY: &str = "bm92aXFpLWZ1enotZml4ZWQtbWFzdGVyLWtleS0zMiE=";

/// `secret`: the input as an `enc:v1` value decrypted under a fixed key, and as master-key
/// text. Properties: `check_syntax` accepts exactly what `decrypt` gets past the syntax of;
/// encrypting the input and decrypting it gives it back.
pub fn secret(data: &[u8]) {
    let Ok(key) = MasterKey::from_base64(FUZZ_MASTER_KEY) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let syntax = secret::check_syntax(text);
        let decrypted = secret::decrypt(&key, text);
        let syntax_error = matches!(
            decrypted,
            Err(SecretError::NotEncrypted
                | SecretError::UnsupportedVersion(_)
                | SecretError::BadBase64
                | SecretError::Truncated)
        );
        assert_eq!(
            syntax.is_ok(),
            !syntax_error,
            "check_syntax and decrypt disagree"
        );
        if let Err(e) = &decrypted {
            let _ = e.to_string();
        }
        if let Ok(parsed) = MasterKey::from_base64(text) {
            let again = MasterKey::from_base64(&parsed.to_base64());
            assert!(again.is_ok_and(|k| k.to_base64() == parsed.to_base64()));
        }
    }
    let sealed = secret::encrypt(&key, data);
    match (secret::decrypt(&key, &sealed), std::str::from_utf8(data)) {
        (Ok(plain), Ok(text)) => assert_eq!(plain.expose(), text, "round trip"),
        (Err(SecretError::NotUtf8), Err(_)) => {}
        (got, _) => panic!("round trip failed: {:?}", got.map(|_| ())),
    }
}
