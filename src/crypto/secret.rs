//! The master key and `enc:v1:` AES-256-GCM provider secrets.
//!
//! A provider credential is stored as `enc:v1:` + base64 (standard, padded) of
//! `12-byte nonce || ciphertext || 16-byte tag`, AES-256-GCM under the 32-byte master key with a
//! fresh random nonce per encryption (random 96-bit nonces: the collision risk stays below
//! 2^-32 for the first 2^32 encryptions under one key, far beyond a config file's lifetime).
//! The master key comes from `NOVIQI_MASTER_KEY` or the key file; it lives in `Zeroizing`
//! memory and its `Debug` is redacted. No error message here ever contains secret bytes.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The environment variable that overrides the master key file.
pub const MASTER_KEY_ENV: &str = "NOVIQI_MASTER_KEY";

/// What every encrypted value starts with.
pub const ENC_PREFIX: &str = "enc:v1:";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A secret string (a decrypted provider credential): `Debug`/`Display` print `*****`, the
/// bytes are zeroized on drop, and it is never serialized.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("*****")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("*****")
    }
}

/// The 32-byte AES-256-GCM key that protects provider credentials.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(*****)")
    }
}

/// Every way loading a master key or decrypting a secret can fail. Messages name files and
/// variables, never secret bytes.
#[derive(Debug)]
pub enum SecretError {
    /// The value does not start with `enc:` at all.
    NotEncrypted,
    /// `enc:<other>:` — a format this build does not understand.
    UnsupportedVersion(String),
    /// The part after `enc:v1:` is not standard base64.
    BadBase64,
    /// Shorter than a nonce and a tag: cut off somewhere.
    Truncated,
    /// Authentication failed: a different master key, or the value was altered.
    DecryptFailed,
    /// The decrypted bytes are not UTF-8.
    NotUtf8,
    /// The master key text is not base64 of exactly 32 bytes.
    InvalidMasterKey { source: String },
    /// The key file could not be read.
    KeyFileUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The key file is readable or writable by group or others.
    KeyFilePermissions { path: PathBuf, mode: u32 },
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::NotEncrypted => {
                write!(f, "the value is not an encrypted secret (it must start with `{ENC_PREFIX}`)")
            }
            SecretError::UnsupportedVersion(v) => write!(
                f,
                "unsupported secret format `enc:{v}:`; this noviqi understands only `{ENC_PREFIX}`"
            ),
            SecretError::BadBase64 => f.write_str(
                "the encrypted secret is not valid base64 after `enc:v1:`; re-create it with `noviqi secret set`",
            ),
            SecretError::Truncated => f.write_str(
                "the encrypted secret is too short to be valid (truncated?); re-create it with `noviqi secret set`",
            ),
            SecretError::DecryptFailed => f.write_str(
                "cannot decrypt the secret: it was encrypted under a different master key or has been altered",
            ),
            SecretError::NotUtf8 => f.write_str("the decrypted secret is not valid UTF-8"),
            SecretError::InvalidMasterKey { source } => write!(
                f,
                "the master key in {source} is not base64 of 32 bytes (create one with `openssl rand -base64 32`)"
            ),
            SecretError::KeyFileUnreadable { path, error } => {
                if error.kind() == std::io::ErrorKind::NotFound {
                    write!(
                        f,
                        "master key file {} does not exist; run `noviqi init` or set {MASTER_KEY_ENV}",
                        path.display()
                    )
                } else {
                    write!(f, "cannot read master key file {}: {error}", path.display())
                }
            }
            SecretError::KeyFilePermissions { path, mode } => write!(
                f,
                "master key file {} has mode {:o} and is accessible by group or others; run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl MasterKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        super::fill_random(bytes.as_mut());
        MasterKey(bytes)
    }

    /// Parses base64 (standard) of 32 bytes; surrounding whitespace (a trailing newline from
    /// `openssl rand -base64 32 > noviqi.key`) is ignored.
    pub fn from_base64(text: &str) -> Result<MasterKey, SecretError> {
        Self::parse(text, "the key text")
    }

    fn parse(text: &str, source: &str) -> Result<MasterKey, SecretError> {
        let invalid = || SecretError::InvalidMasterKey {
            source: source.to_owned(),
        };
        let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| invalid())?);
        let mut key = Zeroizing::new([0u8; 32]);
        if decoded.len() != key.len() {
            return Err(invalid());
        }
        key.copy_from_slice(&decoded);
        Ok(MasterKey(key))
    }

    /// The key as base64, for writing the key file. Zeroized when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    /// `NOVIQI_MASTER_KEY` if set, else the key file, which must not be accessible by group or
    /// others.
    pub fn load(key_file: &Path) -> Result<MasterKey, SecretError> {
        if let Some(text) = std::env::var_os(MASTER_KEY_ENV) {
            let text = Zeroizing::new(text.into_string().unwrap_or_default());
            return Self::parse(&text, MASTER_KEY_ENV);
        }
        Self::load_file(key_file)
    }

    /// The key file alone, ignoring the environment (used by `secret rotate`).
    pub fn load_file(key_file: &Path) -> Result<MasterKey, SecretError> {
        let unreadable = |error| SecretError::KeyFileUnreadable {
            path: key_file.to_owned(),
            error,
        };
        let meta = std::fs::metadata(key_file).map_err(unreadable)?;
        check_mode(key_file, &meta)?;
        let text = Zeroizing::new(std::fs::read_to_string(key_file).map_err(unreadable)?);
        Self::parse(&text, &key_file.display().to_string())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

/// Encrypts `plaintext` under `key` with a fresh random nonce: `enc:v1:<base64>`.
pub fn encrypt(key: &MasterKey, plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    super::fill_random(&mut nonce);
    // AES-GCM refuses only plaintexts over 2^36 bytes (aes_gcm::P_MAX); noviqi encrypts
    // credentials read with a 1 MiB cap, so this arm is unreachable in practice and returning
    // an empty ciphertext would be worse than stopping.
    #[allow(clippy::expect_used)]
    let sealed = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("plaintext under 64 GiB");
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    format!("{ENC_PREFIX}{}", STANDARD.encode(blob))
}

/// Checks the syntax of an `enc:v1:` value without a key: prefix, base64, minimum length.
pub fn check_syntax(value: &str) -> Result<(), SecretError> {
    split(value).map(|_| ())
}

fn split(value: &str) -> Result<Vec<u8>, SecretError> {
    let Some(body) = value.strip_prefix(ENC_PREFIX) else {
        return match value.strip_prefix("enc:") {
            Some(rest) => {
                let version: String = rest
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect();
                Err(SecretError::UnsupportedVersion(version))
            }
            None => Err(SecretError::NotEncrypted),
        };
    };
    let blob = STANDARD.decode(body).map_err(|_| SecretError::BadBase64)?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(SecretError::Truncated);
    }
    Ok(blob)
}

/// Decrypts an `enc:v1:` value. Tampering, a wrong key, truncation, bad base64 and unknown
/// versions are all errors, never panics.
pub fn decrypt(key: &MasterKey, value: &str) -> Result<SecretString, SecretError> {
    let blob = split(value)?;
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let plain = key
        .cipher()
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| SecretError::DecryptFailed)?;
    let text = String::from_utf8(plain).map_err(|e| {
        // Zeroize the bytes we are about to drop.
        drop(Zeroizing::new(e.into_bytes()));
        SecretError::NotUtf8
    })?;
    Ok(SecretString::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn round_trip() {
        let key = MasterKey::generate();
        for plain in ["", "sk-test", "ünïcödé 🔑", &"x".repeat(10_000)] {
            let enc = encrypt(&key, plain.as_bytes());
            assert!(enc.starts_with("enc:v1:"));
            assert!(!enc.contains(plain) || plain.is_empty());
            assert_eq!(decrypt(&key, &enc).unwrap().expose(), plain);
            check_syntax(&enc).unwrap();
        }
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let key = MasterKey::generate();
        assert_ne!(encrypt(&key, b"same"), encrypt(&key, b"same"));
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let key = MasterKey::generate();
        let enc = encrypt(&key, b"sk-secret");
        let mut blob = STANDARD.decode(&enc[ENC_PREFIX.len()..]).unwrap();
        for i in 0..blob.len() {
            blob[i] ^= 0x01;
            let bad = format!("{ENC_PREFIX}{}", STANDARD.encode(&blob));
            assert!(matches!(
                decrypt(&key, &bad),
                Err(SecretError::DecryptFailed)
            ));
            blob[i] ^= 0x01;
        }
    }

    #[test]
    fn wrong_master_key_is_refused() {
        let enc = encrypt(&MasterKey::generate(), b"sk-secret");
        let err = decrypt(&MasterKey::generate(), &enc).unwrap_err();
        assert!(matches!(err, SecretError::DecryptFailed));
        assert!(err.to_string().contains("different master key"));
    }

    #[test]
    fn malformed_values_are_clear_errors() {
        let key = MasterKey::generate();
        let enc = encrypt(&key, b"sk-secret");
        let truncated = &enc[..ENC_PREFIX.len() + 20];
        type IsExpected = fn(&SecretError) -> bool;
        let cases: &[(&str, IsExpected)] = &[
            (truncated, |e| matches!(e, SecretError::Truncated)),
            ("enc:v1:", |e| matches!(e, SecretError::Truncated)),
            ("enc:v1:!!!not base64!!!", |e| {
                matches!(e, SecretError::BadBase64)
            }),
            (
                "enc:v2:AAAA",
                |e| matches!(e, SecretError::UnsupportedVersion(v) if v == "v2"),
            ),
            ("sk-plaintext", |e| matches!(e, SecretError::NotEncrypted)),
            ("", |e| matches!(e, SecretError::NotEncrypted)),
        ];
        for (value, is_expected) in cases {
            let err = decrypt(&key, value).unwrap_err();
            assert!(is_expected(&err), "{value}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
        // A value cut at the end of the ciphertext fails authentication, not a panic.
        let cut = &enc[..enc.len() - 4];
        assert!(decrypt(&key, cut).is_err());
    }

    #[test]
    fn no_nonce_repeats_in_100k_encryptions() {
        let key = MasterKey::generate();
        let mut nonces = HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let enc = encrypt(&key, b"");
            let blob = STANDARD.decode(&enc[ENC_PREFIX.len()..]).unwrap();
            let nonce: [u8; 12] = blob[..12].try_into().unwrap();
            assert!(nonces.insert(nonce), "nonce repeated");
        }
    }

    #[test]
    fn master_key_parsing() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        let again = MasterKey::from_base64(&format!("{}\n", text.as_str())).unwrap();
        let enc = encrypt(&key, b"x");
        assert_eq!(decrypt(&again, &enc).unwrap().expose(), "x");
        assert!(MasterKey::from_base64(&format!("{}\r\n", text.as_str())).is_ok());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64 at all").is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(*****)");
        let err = MasterKey::from_base64("bad").unwrap_err().to_string();
        assert!(!err.contains("bad\""));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("noviqi.key");
        std::fs::write(
            &path,
            format!("{}\n", MasterKey::generate().to_base64().as_str()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        MasterKey::load_file(&path).unwrap();
        let missing = MasterKey::load_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("noviqi init"));
    }

    #[test]
    fn secret_string_redacts() {
        let s = SecretString::new("sk-live".into());
        assert_eq!(format!("{s:?} {s}"), "***** *****");
    }
}
