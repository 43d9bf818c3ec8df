//! Gateway API keys: `nvq_` + base64url(32 random bytes), stored only as `sha256:<hex>`.
//!
//! A key exists in the clear exactly once, when `generate` returns it to the CLI to print; the
//! config and every lookup use its `KeyHash`. This module owns no state.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What every gateway key starts with.
pub const KEY_PREFIX: &str = "nvq_";

/// How many leading characters of a key are kept in the config to recognise it.
pub const PREFIX_LEN: usize = 12;

/// SHA-256 of a whole key string; the only form a key is stored in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash(sha256:{})", hex::encode(self.0))
    }
}

/// Why a stored hash was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHashError;

impl std::fmt::Display for KeyHashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key hash must be `sha256:` followed by 64 lowercase hex digits")
    }
}

impl std::error::Error for KeyHashError {}

impl KeyHash {
    /// The hash of a presented key (the whole string, `nvq_` included).
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses the stored form `sha256:<64 lowercase hex>`.
    pub fn parse(stored: &str) -> Result<KeyHash, KeyHashError> {
        let hex_part = stored.strip_prefix("sha256:").ok_or(KeyHashError)?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(KeyHashError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| KeyHashError)?;
        Ok(KeyHash(out))
    }

    /// Constant-time equality, for comparing a presented key's hash with a stored one outside
    /// the hash-map lookup.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// A fresh key from the OS CSPRNG and its hash. The key is shown once and never stored.
pub fn generate() -> (Zeroizing<String>, KeyHash) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    super::fill_random(bytes.as_mut());
    let mut key = Zeroizing::new(String::with_capacity(KEY_PREFIX.len() + 43));
    key.push_str(KEY_PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut key);
    let hash = KeyHash::of(&key);
    (key, hash)
}

/// The first 12 characters of a key, kept in the config so a user can recognise it.
pub fn prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn key_format() {
        let (key, hash) = generate();
        assert!(key.starts_with("nvq_"));
        assert_eq!(key.len(), 4 + 43);
        let body = &key[4..];
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_eq!(hash, KeyHash::of(&key));
        assert_eq!(prefix(&key).len(), 12);
        assert!(key.starts_with(&prefix(&key)));
    }

    #[test]
    fn keys_are_unique() {
        let keys: HashSet<String> = (0..1000).map(|_| generate().0.to_string()).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn hash_form() {
        let h = KeyHash::of("nvq_test");
        let stored = h.to_string();
        assert!(stored.starts_with("sha256:"));
        assert_eq!(stored.len(), 7 + 64);
        assert_eq!(KeyHash::parse(&stored), Ok(h));
        assert!(h.ct_eq(&KeyHash::of("nvq_test")) && !h.ct_eq(&KeyHash::of("nvq_other")));
        // Known vector: sha256("abc").
        assert_eq!(
            KeyHash::of("abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adz",
            "sha256:zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert!(KeyHash::parse(bad).is_err(), "{bad}");
        }
    }
}
