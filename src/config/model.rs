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

pub use super::cluster::{ClusterSettings, OnRedisError};
use crate::cost::{Answerer, Period, PriceRule, Pricing, Usd};
use crate::crypto::apikey::KeyHash;
use crate::crypto::secret::SecretString;
use crate::glob::glob_match;
use crate::routing::{Policy, Strategy};

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
    /// The default spend cap for keys that set none.
    pub budget: Option<Budget>,
    /// `[[prices]]`, in file order (the first match wins).
    pub prices: Vec<PriceRule>,
    /// In file order; names are unique.
    pub providers: Vec<Arc<ProviderSettings>>,
    /// In file order; names are unique.
    pub models: Vec<ModelRoute>,
    /// In file order; names and hashes are unique.
    pub keys: Vec<Arc<Key>>,
    /// `[cluster]`: shared state in Redis; `None` = this instance alone.
    pub cluster: Option<ClusterSettings>,
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
    /// The audit log (logins, logouts, key changes); `None` when `audit_path = ""`. Resolved
    /// against the config's folder.
    pub audit_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    /// `None` when `path = ""` (usage log off). Resolved against the config's folder.
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: usize,
}

/// A spend cap: at most `limit` per calendar `period` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: Usd,
    pub period: Period,
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

impl ProviderSettings {
    /// A `mock` provider with this name, for unit tests of what records requests.
    #[cfg(test)]
    pub(crate) fn mock(name: &str) -> ProviderSettings {
        ProviderSettings {
            name: name.to_owned(),
            kind: ProviderKind::Mock,
            base_url: "mock://".to_owned(),
            credential_source: CredentialSource::None,
            api_key: None,
            timeout: Duration::from_secs(600),
            headers: Vec::new(),
            ca_file: None,
        }
    }
}

/// A `[[models]]` entry: the name clients send, its targets and how it picks among them.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: String,
    /// Never empty; no target twice.
    pub targets: Vec<Target>,
    /// `Weighted` has one positive weight per target.
    pub strategy: Strategy,
    /// When a failing target is skipped, and for how long.
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// `provider/upstream_model`: the target's name in metrics, logs and the dashboard.
    pub name: Arc<str>,
    pub provider: Arc<ProviderSettings>,
    pub upstream_model: String,
    /// How its answers are priced, resolved from `[[prices]]` and the built-in table.
    pub pricing: Pricing,
}

impl Target {
    pub fn new(
        provider: Arc<ProviderSettings>,
        upstream_model: String,
        prices: &[PriceRule],
    ) -> Target {
        let pricing = Pricing::resolve(
            prices,
            Answerer {
                provider: &provider.name,
                upstream_model: &upstream_model,
                mock: provider.kind == ProviderKind::Mock,
            },
        );
        Target {
            name: format!("{}/{upstream_model}", provider.name).into(),
            provider,
            upstream_model,
            pricing,
        }
    }
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
    /// The effective spend cap: the key's own, else `[limits]`; `None` = no cap.
    pub budget: Option<Budget>,
}

impl Config {
    /// The key whose stored hash is `hash`, if any.
    pub fn key_by_hash(&self, hash: &KeyHash) -> Option<&Arc<Key>> {
        self.key_index.get(hash).and_then(|&i| self.keys.get(i))
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<ProviderSettings>> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The position in `models` of the entry named `model`.
    pub fn model_position(&self, model: &str) -> Option<usize> {
        self.model_index.get(model).copied()
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
            targets: vec![Target::new(
                provider,
                upstream_model.to_owned(),
                &self.prices,
            )],
            strategy: Strategy::Fallback,
            policy: Policy::default(),
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
            budget: None,
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
