//! Loading: TOML text → `raw` structs (serde, unknown fields refused) → the typed `model`.
//!
//! Every rule of PRODUCT.md's Config section is enforced here, once; every default lives here.
//! With `Secrets::Decrypt` the master key is loaded (env, else the key file) and provider
//! credentials are decrypted or read from their environment variables. Owns no state.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::error::{ConfigError, Problem, Seg};
use super::model::*;
use super::raw::{Number, RawConfig, RawKey, RawModel, RawPrice, RawProvider};
use crate::cost::price::{Price, RatesUsd};
use crate::cost::{Period, PriceRule, Usd};
use crate::crypto::apikey::KeyHash;
use crate::crypto::secret::{self, MasterKey, SecretString};
use crate::routing::{Policy, Strategy};

/// Largest `weights` entry (a ratio, so no real config comes near it).
const MAX_WEIGHT: u32 = 1_000_000;
/// Longest `cooldown_secs` (a day).
const MAX_COOLDOWN_SECS: u64 = 86_400;

/// Whether `load` decrypts provider credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Parse and validate everything (including `enc:v1` syntax) but leave `api_key` empty.
    Skip,
    /// Also load the master key and fill every provider's `api_key`.
    Decrypt,
}

/// Reads and loads the config at `path`.
pub fn load(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            "no such config file; create one with `noviqi init` or pass --config PATH".to_owned()
        } else {
            format!("cannot read the config file: {e}")
        };
        ConfigError::file(path, message)
    })?;
    load_str(&text, path, secrets)
}

/// Loads config `text` as if read from `path` (relative paths resolve against its folder).
pub fn load_str(text: &str, path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    let dir = config_dir(path);
    let mut providers = lift_providers(&raw.providers, &dir)
        .map_err(|p| ConfigError::from_problem(path, text, p))?;
    let security =
        lift_security(&raw, &dir).map_err(|p| ConfigError::from_problem(path, text, p))?;
    let mut cluster = super::cluster::lift_cluster(raw.cluster.as_ref())
        .map_err(|p| ConfigError::from_problem(path, text, p))?;
    if secrets == Secrets::Decrypt {
        let mut unlocker = Unlocker::new(&security.master_key_file);
        fill_credentials(&mut providers, &mut unlocker)
            .map_err(|p| ConfigError::from_problem(path, text, p))?;
        if let Some(cluster) = &mut cluster {
            super::cluster::fill_password(cluster, &mut unlocker)
                .map_err(|p| ConfigError::from_problem(path, text, p))?;
        }
    }
    let mut config = lift(raw, path, &dir, providers, security)
        .map_err(|p| ConfigError::from_problem(path, text, p))?;
    config.cluster = cluster;
    Ok(config)
}

/// The folder relative paths in the config resolve against.
pub fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

type Lifted<T> = Result<T, Problem>;

/// Keys in file order and their index by hash.
type KeyTable = (Vec<Arc<Key>>, HashMap<KeyHash, usize>);

/// Models in file order and their index by name.
type ModelTable = (Vec<ModelRoute>, HashMap<String, usize>);

fn lift(
    raw: RawConfig,
    path: &Path,
    dir: &Path,
    providers: Vec<ProviderSettings>,
    security: SecuritySettings,
) -> Lifted<Config> {
    let server = lift_server(&raw, dir)?;
    let admin = lift_admin(&raw, dir)?;
    let usage = lift_usage(&raw, dir)?;
    let limits = Limits {
        requests_per_minute: rpm(
            raw.limits.requests_per_minute,
            &[Seg::Key("limits"), Seg::Key("requests_per_minute")],
        )?,
        tokens_per_minute: raw.limits.tokens_per_minute.filter(|&n| n > 0),
    };
    let limits_at = |f| [Seg::Key("limits"), Seg::Key(f)];
    let default_period = lift_period(
        raw.limits.budget_period.as_deref(),
        Period::Month,
        &limits_at("budget_period"),
    )?;
    let budget = lift_budget(
        raw.limits.budget_usd,
        default_period,
        &limits_at("budget_usd"),
    )?;
    let prices = lift_prices(&raw.prices)?;
    let providers: Vec<Arc<ProviderSettings>> = providers.into_iter().map(Arc::new).collect();
    let (models, model_index) = lift_models(&raw, &providers, &prices)?;
    let defaults = KeyDefaults {
        limits,
        budget,
        period: default_period,
    };
    let (keys, key_index) = lift_keys(&raw.keys, defaults)?;
    Ok(Config {
        path: path.to_owned(),
        server,
        security,
        admin,
        usage,
        limits,
        budget,
        prices,
        providers,
        models,
        keys,
        cluster: None,
        key_index,
        model_index,
    })
}

fn positive_secs(value: Option<u64>, default: u64, path: &[Seg]) -> Lifted<Duration> {
    match value.unwrap_or(default) {
        0 => Err(Problem::new(path, "must be at least 1 (seconds)")),
        n => Ok(Duration::from_secs(n)),
    }
}

fn rpm(value: Option<u64>, path: &[Seg]) -> Lifted<Option<u32>> {
    match value {
        None | Some(0) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| Problem::new(path, format!("{n} is too large (at most {})", u32::MAX))),
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn lift_nets(list: &[String], path: &[Seg]) -> Lifted<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            parse_net(text.trim()).ok_or_else(|| {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                Problem::new(
                    &p,
                    format!("`{text}` is not an IP address or CIDR (like 10.0.0.0/8 or ::1)"),
                )
            })
        })
        .collect()
}

/// `[admin] audit_path` when unset: beside the config.
pub const DEFAULT_AUDIT_FILE: &str = "noviqi-audit.jsonl";
/// `[server] max_body_bytes` when unset: long Claude Code sessions with images reach 32 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// The master key file beside the config when `security.master_key_file` is not set.
pub const DEFAULT_MASTER_KEY_FILE: &str = "noviqi.key";
/// `[server] max_buffered_bytes` when unset.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 1024 * 1024 * 1024;

/// `allowed_hosts` entries: a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional `:port`; kept lowercase, without a trailing dot.
fn lift_hosts(list: &[String], path: &[Seg]) -> Lifted<Vec<String>> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
            let ok = !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
                });
            if ok {
                Ok(host)
            } else {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                Err(Problem::new(
                    &p,
                    format!("`{text}` is not a host name (like localhost or ai.example.net)"),
                ))
            }
        })
        .collect()
}

fn lift_server(raw: &RawConfig, dir: &Path) -> Lifted<ServerSettings> {
    let s = &raw.server;
    let key = |k| [Seg::Key("server"), Seg::Key(k)];
    let listen_text = s.listen.as_deref().unwrap_or("127.0.0.1:8420");
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        Problem::new(
            &key("listen"),
            format!("`{listen_text}` is not an address and port like 127.0.0.1:8420 or [::1]:8420"),
        )
    })?;
    let max_connections = match s.max_connections.unwrap_or(1024) {
        0 => return Err(Problem::new(&key("max_connections"), "must be at least 1")),
        n => {
            usize::try_from(n).map_err(|_| Problem::new(&key("max_connections"), "is too large"))?
        }
    };
    let max_body_bytes = match s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES) {
        0 => return Err(Problem::new(&key("max_body_bytes"), "must be at least 1")),
        n => n,
    };
    let max_buffered_bytes = s.max_buffered_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BYTES);
    if max_buffered_bytes < max_body_bytes {
        return Err(Problem::new(
            &key("max_buffered_bytes"),
            format!(
                "must be at least max_body_bytes ({max_body_bytes}), or no body of the largest \
                 allowed size could ever be served"
            ),
        ));
    }
    let max_connections_per_ip = match s.max_connections_per_ip.unwrap_or(64) {
        0 => None,
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let allowed_hosts = lift_hosts(&s.allowed_hosts, &key("allowed_hosts"))?;
    let tls = match &s.tls {
        None => None,
        Some(tls) => {
            let tls_key = |k| [Seg::Key("server"), Seg::Key("tls"), Seg::Key(k)];
            let need = |v: &Option<String>, k| match v.as_deref() {
                Some(f) if !f.is_empty() => Ok(resolve(dir, f)),
                _ => Err(Problem::new(
                    &tls_key(k),
                    format!(
                        "[server.tls] needs both cert_file and key_file; set {k} or remove [server.tls]"
                    ),
                )),
            };
            Some(TlsFiles {
                cert_file: need(&tls.cert_file, "cert_file")?,
                key_file: need(&tls.key_file, "key_file")?,
            })
        }
    };
    Ok(ServerSettings {
        listen,
        max_connections,
        header_timeout: positive_secs(s.header_timeout_secs, 10, &key("header_timeout_secs"))?,
        idle_timeout: positive_secs(s.idle_timeout_secs, 30, &key("idle_timeout_secs"))?,
        max_body_bytes,
        max_buffered_bytes,
        max_connections_per_ip,
        request_timeout: positive_secs(s.request_timeout_secs, 600, &key("request_timeout_secs"))?,
        trusted_proxies: lift_nets(&s.trusted_proxies, &key("trusted_proxies"))?,
        allowed_hosts,
        tls,
    })
}

fn lift_security(raw: &RawConfig, dir: &Path) -> Lifted<SecuritySettings> {
    let s = &raw.security;
    let key = |k| [Seg::Key("security"), Seg::Key(k)];
    let file = s
        .master_key_file
        .as_deref()
        .unwrap_or(DEFAULT_MASTER_KEY_FILE);
    if file.is_empty() {
        return Err(Problem::new(
            &key("master_key_file"),
            format!("must not be empty (the default is \"{DEFAULT_MASTER_KEY_FILE}\")"),
        ));
    }
    let failures = match s.lockout_max_failures.unwrap_or(5) {
        0 => {
            return Err(Problem::new(
                &key("lockout_max_failures"),
                "must be at least 1",
            ));
        }
        n => u32::try_from(n)
            .map_err(|_| Problem::new(&key("lockout_max_failures"), "is too large"))?,
    };
    Ok(SecuritySettings {
        master_key_file: resolve(dir, file),
        lockout_max_failures: failures,
        lockout_window: positive_secs(s.lockout_window_secs, 300, &key("lockout_window_secs"))?,
        lockout_duration: positive_secs(s.lockout_secs, 900, &key("lockout_secs"))?,
    })
}

fn lift_admin(raw: &RawConfig, dir: &Path) -> Lifted<Option<AdminSettings>> {
    let Some(admin) = &raw.admin else {
        return Ok(None);
    };
    let key = |k| [Seg::Key("admin"), Seg::Key(k)];
    let session_ttl = positive_secs(admin.session_ttl_secs, 43200, &key("session_ttl_secs"))?;
    let Some(hash) = &admin.password_hash else {
        return Ok(None);
    };
    if !crate::crypto::password::is_argon2id_phc(hash) {
        return Err(Problem::new(
            &key("password_hash"),
            "is not an Argon2id PHC string ($argon2id$…); set it with `noviqi admin passwd`",
        ));
    }
    let audit_path = match admin.audit_path.as_deref().unwrap_or(DEFAULT_AUDIT_FILE) {
        "" => None,
        p => Some(resolve(dir, p)),
    };
    Ok(Some(AdminSettings {
        password_hash: hash.clone(),
        session_ttl,
        audit_path,
    }))
}

fn lift_usage(raw: &RawConfig, dir: &Path) -> Lifted<UsageSettings> {
    let u = &raw.usage;
    let path = match u.path.as_deref().unwrap_or("noviqi-usage.jsonl") {
        "" => None,
        p => Some(resolve(dir, p)),
    };
    let keep = usize::try_from(u.keep.unwrap_or(5))
        .map_err(|_| Problem::new(&[Seg::Key("usage"), Seg::Key("keep")], "is too large"))?;
    Ok(UsageSettings {
        path,
        max_bytes: u.max_bytes.unwrap_or(104_857_600),
        keep,
    })
}

fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An HTTP token (RFC 9110 `tchar`), for header names.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, space and tab, obs-text; no CR, LF or other controls.
fn is_header_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn lift_providers(list: &[RawProvider], dir: &Path) -> Lifted<Vec<ProviderSettings>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let key = |k| [Seg::Key("providers"), Seg::Index(i), Seg::Key(k)];
        if !valid_provider_name(&p.name) {
            return Err(Problem::new(
                &key("name"),
                format!(
                    "`{}` is not a valid provider name; use lowercase letters, digits, `_` and `-`",
                    p.name
                ),
            ));
        }
        if let Some(first) = seen.insert(&p.name, i) {
            return Err(Problem::new(
                &key("name"),
                format!(
                    "duplicate provider name `{}` (already used by providers[{first}]); provider names must be unique",
                    p.name
                ),
            ));
        }
        out.push(lift_provider(p, i, dir)?);
    }
    Ok(out)
}

fn lift_provider(p: &RawProvider, i: usize, dir: &Path) -> Lifted<ProviderSettings> {
    let key = |k| [Seg::Key("providers"), Seg::Index(i), Seg::Key(k)];
    let (kind, default_url) = match p.kind.as_str() {
        "openai" => (ProviderKind::OpenAi, "https://api.openai.com/v1"),
        "anthropic" => (ProviderKind::Anthropic, "https://api.anthropic.com"),
        "mock" => (ProviderKind::Mock, "mock://"),
        other => {
            return Err(Problem::new(
                &key("kind"),
                format!(
                    "unknown provider kind `{other}`; use openai (any OpenAI-compatible API), anthropic or mock"
                ),
            ));
        }
    };
    let base_url = match p.base_url.as_deref() {
        None => default_url.to_owned(),
        Some(url) => {
            let ok = url.starts_with("http://")
                || url.starts_with("https://")
                || kind == ProviderKind::Mock;
            if !ok || url.chars().any(char::is_whitespace) {
                return Err(Problem::new(
                    &key("base_url"),
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
            let trimmed = url.trim_end_matches('/');
            if trimmed.ends_with(':') {
                url.to_owned()
            } else {
                trimmed.to_owned()
            }
        }
    };
    let credential_source = match (&p.api_key, &p.api_key_env) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                &key("api_key_env"),
                "set either api_key or api_key_env, not both",
            ));
        }
        (Some(value), None) => {
            if !value.starts_with("enc:") {
                return Err(Problem::new(
                    &key("api_key"),
                    format!(
                        "holds a plaintext secret; encrypt it with `noviqi secret set {}` (reads the key from stdin) or use api_key_env",
                        p.name
                    ),
                ));
            }
            secret::check_syntax(value)
                .map_err(|e| Problem::new(&key("api_key"), e.to_string()))?;
            CredentialSource::Encrypted(value.clone())
        }
        (None, Some(var)) => {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(Problem::new(
                    &key("api_key_env"),
                    "must name an environment variable, like OPENAI_API_KEY",
                ));
            }
            CredentialSource::Env(var.clone())
        }
        (None, None) => CredentialSource::None,
    };
    let mut headers = Vec::with_capacity(p.headers.0.len());
    for (name, value) in &p.headers.0 {
        if !is_token(name) {
            return Err(Problem::new(
                &key("headers"),
                format!("`{name}` is not a valid HTTP header name"),
            ));
        }
        if !is_header_value(value) {
            return Err(Problem::new(
                &key("headers"),
                format!("the value of header `{name}` contains a control character (CR, LF, …)"),
            ));
        }
        headers.push((name.clone(), value.clone()));
    }
    Ok(ProviderSettings {
        name: p.name.clone(),
        kind,
        base_url,
        credential_source,
        api_key: None,
        timeout: positive_secs(p.timeout_secs, 600, &key("timeout_secs"))?,
        headers,
        ca_file: p.ca_file.as_deref().map(|f| resolve(dir, f)),
    })
}

fn fill_credentials(providers: &mut [ProviderSettings], unlocker: &mut Unlocker<'_>) -> Lifted<()> {
    for (i, p) in providers.iter_mut().enumerate() {
        let field = |k| [Seg::Key("providers"), Seg::Index(i), Seg::Key(k)];
        p.api_key = unlocker.credential(
            &p.credential_source,
            &field("api_key"),
            &field("api_key_env"),
            &format!(
                "export it before running noviqi, or store the key with `noviqi secret set {}`",
                p.name
            ),
        )?;
    }
    Ok(())
}

/// Turns credential sources into secrets: an `enc:v1` value decrypted with the master key
/// (loaded once, on first need), or an environment variable's value.
pub(super) struct Unlocker<'a> {
    master: Option<MasterKey>,
    key_file: &'a Path,
}

impl<'a> Unlocker<'a> {
    pub(super) fn new(key_file: &'a Path) -> Unlocker<'a> {
        Unlocker {
            master: None,
            key_file,
        }
    }

    /// The secret `source` names; errors point at `value_at` (the `enc:v1` field) or `env_at`
    /// (the variable's name), and an unset variable's error ends with `advice`.
    pub(super) fn credential(
        &mut self,
        source: &CredentialSource,
        value_at: &[Seg],
        env_at: &[Seg],
        advice: &str,
    ) -> Lifted<Option<SecretString>> {
        match source {
            CredentialSource::None => Ok(None),
            CredentialSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(SecretString::new(v))),
                _ => Err(Problem::new(
                    env_at,
                    format!("names the environment variable `{var}`, which is not set; {advice}"),
                )),
            },
            CredentialSource::Encrypted(value) => {
                let master = match &mut self.master {
                    Some(master) => master,
                    slot => slot.insert(MasterKey::load(self.key_file).map_err(|e| {
                        Problem::new(
                            &[Seg::Key("security"), Seg::Key("master_key_file")],
                            e.to_string(),
                        )
                    })?),
                };
                secret::decrypt(master, value).map(Some).map_err(|e| {
                    Problem::new(value_at, format!("{e}{}", rotate_hint(self.key_file)))
                })
            }
        }
    }
}

/// Advice when an interrupted `secret rotate` left a new key beside the old one.
fn rotate_hint(key_file: &Path) -> String {
    let mut new = key_file.as_os_str().to_owned();
    new.push(".new");
    if Path::new(&new).exists() {
        format!(
            "; {} exists, so a `noviqi secret rotate` was interrupted: move it over {} and run `noviqi check` again",
            Path::new(&new).display(),
            key_file.display()
        )
    } else {
        String::new()
    }
}

fn lift_models(
    raw: &RawConfig,
    providers: &[Arc<ProviderSettings>],
    prices: &[PriceRule],
) -> Lifted<ModelTable> {
    let mut index = HashMap::new();
    let mut models = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.iter().enumerate() {
        let key = |k| [Seg::Key("models"), Seg::Index(i), Seg::Key(k)];
        if m.name.trim().is_empty() {
            return Err(Problem::new(&key("name"), "must not be empty"));
        }
        if let Some(first) = index.insert(m.name.clone(), i) {
            return Err(Problem::new(
                &key("name"),
                format!(
                    "duplicate model name `{}` (already used by models[{first}]); model names must be unique",
                    m.name
                ),
            ));
        }
        if m.targets.is_empty() {
            return Err(Problem::new(
                &key("targets"),
                "must list at least one `provider/upstream-model`",
            ));
        }
        let mut targets = Vec::with_capacity(m.targets.len());
        for (j, t) in m.targets.iter().enumerate() {
            let at = [
                Seg::Key("models"),
                Seg::Index(i),
                Seg::Key("targets"),
                Seg::Index(j),
            ];
            let Some((prov, upstream)) = t
                .split_once('/')
                .filter(|(p, u)| !p.is_empty() && !u.is_empty())
            else {
                return Err(Problem::new(
                    &at,
                    format!("`{t}` is not `provider/upstream-model`"),
                ));
            };
            let Some(provider) = providers.iter().find(|p| p.name == prov) else {
                return Err(Problem::new(
                    &at,
                    format!(
                        "target `{t}` names provider `{prov}`, which is not defined; add a [[providers]] entry named `{prov}` or fix the name"
                    ),
                ));
            };
            if m.targets[..j].contains(t) {
                return Err(Problem::new(
                    &at,
                    format!("target `{t}` is listed twice; a request never tries a target twice"),
                ));
            }
            targets.push(Target::new(provider.clone(), upstream.to_owned(), prices));
        }
        models.push(ModelRoute {
            name: m.name.clone(),
            strategy: lift_strategy(m, &key)?,
            policy: lift_policy(m, &key)?,
            targets,
        });
    }
    Ok((models, index))
}

/// `strategy` (default `fallback`) and, for `weighted` only, `weights`.
fn lift_strategy(m: &RawModel, key: &dyn Fn(&'static str) -> [Seg; 3]) -> Lifted<Strategy> {
    let strategy = match m.strategy.as_deref() {
        None | Some("fallback") => Strategy::Fallback,
        Some("round_robin") => Strategy::RoundRobin,
        Some("least_busy") => Strategy::LeastBusy,
        Some("weighted") => {
            let Some(weights) = &m.weights else {
                return Err(Problem::new(
                    &key("weights"),
                    "strategy = \"weighted\" needs `weights`: one positive integer per target",
                ));
            };
            if weights.len() != m.targets.len() {
                return Err(Problem::new(
                    &key("weights"),
                    format!(
                        "has {} weights for {} targets; give one weight per target, in the same order",
                        weights.len(),
                        m.targets.len()
                    ),
                ));
            }
            let mut checked = Vec::with_capacity(weights.len());
            for &w in weights {
                match u32::try_from(w) {
                    Ok(w @ 1..=MAX_WEIGHT) => checked.push(w),
                    _ => {
                        return Err(Problem::new(
                            &key("weights"),
                            format!("weight {w} is not between 1 and {MAX_WEIGHT}"),
                        ));
                    }
                }
            }
            Strategy::Weighted(checked)
        }
        Some(other) => {
            return Err(Problem::new(
                &key("strategy"),
                format!("`{other}` is not a strategy; use {}", Strategy::NAMES),
            ));
        }
    };
    if m.weights.is_some() && !matches!(strategy, Strategy::Weighted(_)) {
        return Err(Problem::new(
            &key("weights"),
            "weights only apply with strategy = \"weighted\"",
        ));
    }
    Ok(strategy)
}

/// `cooldown_failures` (default 3; 0 = never) and `cooldown_secs` (default 30).
fn lift_policy(m: &RawModel, key: &dyn Fn(&'static str) -> [Seg; 3]) -> Lifted<Policy> {
    let default = Policy::default();
    let cooldown = match m.cooldown_secs {
        None => default.cooldown,
        Some(secs @ 1..=MAX_COOLDOWN_SECS) => Duration::from_secs(secs),
        Some(secs) => {
            return Err(Problem::new(
                &key("cooldown_secs"),
                format!("{secs} is not between 1 and {MAX_COOLDOWN_SECS}"),
            ));
        }
    };
    Ok(Policy {
        failures: m.cooldown_failures.unwrap_or(default.failures),
        cooldown,
    })
}

/// `budget_period`: `day`, `week` or `month`; absent = `default`.
fn lift_period(text: Option<&str>, default: Period, path: &[Seg]) -> Lifted<Period> {
    match text {
        None => Ok(default),
        Some(t) => Period::parse(t).ok_or_else(|| {
            Problem::new(
                path,
                format!("`{t}` is not a budget period; use day, week or month"),
            )
        }),
    }
}

/// `budget_usd`: a non-negative amount of USD; 0 = no cap.
fn lift_budget(usd: Option<Number>, period: Period, path: &[Seg]) -> Lifted<Option<Budget>> {
    let Some(Number(usd)) = usd else {
        return Ok(None);
    };
    let limit = Usd::from_f64(usd).ok_or_else(|| {
        Problem::new(
            path,
            format!("`{usd}` is not an amount of USD (0 or more; 0 = no cap)"),
        )
    })?;
    Ok((limit > Usd::ZERO).then_some(Budget { limit, period }))
}

fn lift_prices(list: &[RawPrice]) -> Lifted<Vec<PriceRule>> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let at = |f| [Seg::Key("prices"), Seg::Index(i), Seg::Key(f)];
            if p.pattern.is_empty() {
                return Err(Problem::new(
                    &at("match"),
                    "must not be empty; use a glob over provider/upstream_model like \"openai/gpt-4o*\"",
                ));
            }
            let usd = RatesUsd {
                input: p.input.0,
                output: p.output.0,
                cache_read: p.cache_read.map(|n| n.0),
                cache_write: p.cache_write.map(|n| n.0),
                cache_write_1h: p.cache_write_1h.map(|n| n.0),
            };
            let base = usd.to_rates().map_err(|field| {
                Problem::new(
                    &at(field),
                    "must be a price in USD per million tokens (0 or more)",
                )
            })?;
            Ok(PriceRule {
                pattern: p.pattern.clone(),
                price: Price { base, tier: None },
            })
        })
        .collect()
}

/// What a key gets from `[limits]` when it sets nothing itself.
struct KeyDefaults {
    limits: Limits,
    budget: Option<Budget>,
    period: Period,
}

fn lift_keys(list: &[RawKey], defaults: KeyDefaults) -> Lifted<KeyTable> {
    let mut names: HashSet<&str> = HashSet::new();
    let mut index = HashMap::new();
    let mut keys = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let key = |f| [Seg::Key("keys"), Seg::Index(i), Seg::Key(f)];
        if k.name.trim().is_empty() {
            return Err(Problem::new(&key("name"), "must not be empty"));
        }
        if !names.insert(&k.name) {
            return Err(Problem::new(
                &key("name"),
                format!("duplicate key name `{}`; key names must be unique", k.name),
            ));
        }
        let hash =
            KeyHash::parse(&k.hash).map_err(|e| Problem::new(&key("hash"), e.to_string()))?;
        if let Some(first) = index.insert(hash, i) {
            return Err(Problem::new(
                &key("hash"),
                format!("the same hash is already used by keys[{first}]; every key needs its own"),
            ));
        }
        let expires_at = match &k.expires_at {
            None => None,
            Some(t) => Some(parse_time(t).ok_or_else(|| {
                Problem::new(
                    &key("expires_at"),
                    format!("`{t}` is not an RFC 3339 time like 2027-06-01T00:00:00Z"),
                )
            })?),
        };
        let limits = Limits {
            requests_per_minute: match k.requests_per_minute {
                None => defaults.limits.requests_per_minute,
                some => rpm(some, &key("requests_per_minute"))?,
            },
            tokens_per_minute: match k.tokens_per_minute {
                None => defaults.limits.tokens_per_minute,
                Some(n) => Some(n).filter(|&n| n > 0),
            },
        };
        let period = lift_period(
            k.budget_period.as_deref(),
            defaults.period,
            &key("budget_period"),
        )?;
        let budget = match k.budget_usd {
            None => defaults.budget.map(|b| Budget { period, ..b }),
            some => lift_budget(some, period, &key("budget_usd"))?,
        };
        keys.push(Arc::new(Key {
            name: k.name.clone(),
            hash,
            prefix: k.prefix.clone().unwrap_or_default(),
            models: k.models.clone().unwrap_or_else(|| vec!["*".to_owned()]),
            limits,
            expires_at,
            allowed_ips: lift_nets(&k.allowed_ips, &key("allowed_ips"))?,
            admin: k.admin,
            disabled: k.disabled,
            budget,
        }));
    }
    Ok((keys, index))
}

/// An RFC 3339 timestamp as a `SystemTime`.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}
