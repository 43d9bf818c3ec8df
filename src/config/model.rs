//! The typed, validated configuration: what the rest of noviqi reads.
//!
//! A `Config` can only be built by `config::load` from a file that passed every rule in
//! PRODUCT.md's Config section, so nothing downstream re-checks it. It owns no I/O and no
//! mutable state; the server holds it behind an `Arc` and swaps the whole value on reload, so
//! in-flight requests finish on the config they started with.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::crypto::apikey::KeyHash;
use crate::crypto::secret::SecretString;

/// Longest model name a client may send (longer is a 400): names are stored in the usage log
/// and the dashboard's tables, and no real model name comes close.
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// The whole configuration, valid by construction.
#[derive(Debug)]
pub struct Config {
    /// The file this was loaded from (edits and reloads go back to it).
    pub path: PathBuf,
    pub server: ServerSettings,
    pub security: SecuritySettings,
    /// `None` when `[admin]` is absent or has no `password_hash`: the dashboard is disabled.
    pub admin: Option<AdminSettings>,
    pub usage: UsageSettings,
    /// Defaults for keys that set none.
    pub limits: Limits,
    /// In file order; names are unique.
    pub providers: Vec<Arc<ProviderSettings>>,
    /// In file order; names are unique.
    pub models: Vec<ModelRoute>,
    /// In file order; names and hashes are unique.
    pub keys: Vec<Arc<Key>>,
    /// Index into `keys` by hash, for the per-request lookup.
    pub(crate) key_index: HashMap<KeyHash, usize>,
    /// Index into `models` by name.
    pub(crate) model_index: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: u64,
    /// All request bodies (and translation's working copies) held at once; past it, 503.
    pub max_buffered_bytes: u64,
    /// Open connections per client address; `None` = no per-address cap. Trusted proxies are
    /// exempt.
    pub max_connections_per_ip: Option<usize>,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// Lowercase host names (or `host:port`) a request's `Host` must name; empty = any.
    pub allowed_hosts: Vec<String>,
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS termination; paths are already resolved against the config's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Resolved against the config's folder.
    pub master_key_file: PathBuf,
    pub lockout_max_failures: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Argon2id PHC string, syntax checked at load.
    pub password_hash: String,
    pub session_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    /// `None` when `path = ""` (usage log off). Resolved against the config's folder.
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: usize,
}

/// Per-minute limits; `None` means unlimited (the file's `0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (OpenAI, OpenRouter, Groq, Ollama, vLLM, llama.cpp, …).
    OpenAi,
    Anthropic,
    /// Built in: no network, echoes the prompt.
    Mock,
}

/// Where a provider's credential comes from, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Neither `api_key` nor `api_key_env` (Ollama, the mock).
    None,
    /// `api_key = "enc:v1:…"`, syntax checked at load.
    Encrypted(String),
    /// `api_key_env = "NAME"`.
    Env(String),
}

#[derive(Debug)]
pub struct ProviderSettings {
    /// `[a-z0-9_-]+`, unique.
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash. Defaults per kind (OpenAI `https://api.openai.com/v1`,
    /// Anthropic `https://api.anthropic.com`, mock `mock://`).
    pub base_url: String,
    pub credential_source: CredentialSource,
    /// The decrypted credential; filled only when loaded with `Secrets::Decrypt`.
    pub api_key: Option<SecretString>,
    pub timeout: Duration,
    /// Extra static headers, in file order.
    pub headers: Vec<(String, String)>,
    /// Extra trusted root (PEM), resolved against the config's folder.
    pub ca_file: Option<PathBuf>,
}

/// A `[[models]]` entry: the name clients send and the targets tried in order.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: String,
    /// Never empty.
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<ProviderSettings>,
    pub upstream_model: String,
}

#[derive(Debug)]
pub struct Key {
    /// Unique; shown in logs and analytics.
    pub name: String,
    pub hash: KeyHash,
    /// First 12 characters of the key, for recognising it.
    pub prefix: String,
    /// Glob allowlist of model names (`*` any run, `?` one character).
    pub models: Vec<String>,
    /// The effective limits: the key's own, else `[limits]`.
    pub limits: Limits,
    pub expires_at: Option<SystemTime>,
    /// Empty means any address.
    pub allowed_ips: Vec<IpNet>,
    pub admin: bool,
    pub disabled: bool,
}

impl Config {
    /// The key whose stored hash is `hash`, if any.
    pub fn key_by_hash(&self, hash: &KeyHash) -> Option<&Arc<Key>> {
        self.key_index.get(hash).and_then(|&i| self.keys.get(i))
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<ProviderSettings>> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The targets for a client's model name: a `[[models]]` entry of that exact name, else the
    /// `provider/model` form (split at the first `/`). `None` when neither applies.
    pub fn route(&self, model: &str) -> Option<Cow<'_, ModelRoute>> {
        if let Some(&i) = self.model_index.get(model) {
            return self.models.get(i).map(Cow::Borrowed);
        }
        let (provider, upstream_model) = model.split_once('/')?;
        if upstream_model.is_empty() {
            return None;
        }
        let provider = self.provider(provider)?.clone();
        Some(Cow::Owned(ModelRoute {
            name: model.to_owned(),
            targets: vec![Target {
                provider,
                upstream_model: upstream_model.to_owned(),
            }],
        }))
    }
}

impl Key {
    /// A key with this name and nothing else set, for unit tests of what records requests.
    #[cfg(test)]
    pub(crate) fn named(name: &str) -> Key {
        Key {
            name: name.to_owned(),
            hash: crate::crypto::apikey::KeyHash::of(name),
            prefix: String::new(),
            models: vec!["*".to_owned()],
            limits: Limits::default(),
            expires_at: None,
            allowed_ips: Vec::new(),
            admin: false,
            disabled: false,
        }
    }

    /// Whether the key's allowlist admits `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|pattern| glob_match(pattern, model))
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether a request from `ip` may use this key.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allowed_ips.is_empty() || self.allowed_ips.iter().any(|net| net.contains(&ip))
    }
}

/// Glob match with `*` (any run, including empty) and `?` (one character); everything else is
/// literal. Iterative with one backtrack point, so it is linear-ish and cannot blow the stack;
/// it walks both strings by character without copying them (it runs on every request).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let char_at = |s: &str, at: usize| s[at..].chars().next();
    // Byte offsets into `pattern` and `text`, always on character boundaries.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(t) = char_at(text, ti) {
        match char_at(pattern, pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(p) if p == '?' || p == t => {
                pi += p.len_utf8();
                ti += t.len_utf8();
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + char_at(text, st).map_or(1, char::len_utf8);
                    pi = sp + 1;
                    ti = next;
                    star = Some((sp, next));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].chars().all(|c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "gpt-4o"));
        assert!(glob_match("gpt-*", "gpt-4o"));
        assert!(!glob_match("gpt-*", "claude"));
        assert!(glob_match("claude-*-4?", "claude-sonnet-45"));
        assert!(!glob_match("claude-*-4?", "claude-sonnet-4"));
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("é?*ü", "éxyzü"));
        assert!(glob_match("?", "ü"));
        assert!(!glob_match("??", "ü"));
        assert!(glob_match("*ab", "aaab"));
    }

    /// The matcher as first written, over copied `char` vectors: the reference.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_the_reference(
            pattern in "[a-cé*?]{0,8}",
            text in "[a-cé]{0,10}",
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }
    }
}
