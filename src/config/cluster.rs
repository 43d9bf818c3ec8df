//! `[cluster]`: where the shared state lives when several instances act as one gateway.
//!
//! Lifted like the rest of the config (every rule here, once); the Redis password follows the
//! provider credentials' rules: `enc:v1` in the file or a variable named by `password_env`,
//! never a plaintext value — a password inside `redis_url` is refused for the same reason.
//! Owns no state.

use super::error::{Problem, Seg};
use super::load::Unlocker;
use super::model::CredentialSource;
use super::raw::RawCluster;
use crate::crypto::secret::{self, SecretString};

/// Longest `key_prefix`.
const MAX_PREFIX: usize = 64;

/// What an instance does with a request while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Enforce limits, lockouts and budgets with this instance's own state; log and count it.
    Local,
    /// Refuse proxied requests with 503 until Redis is back.
    Closed,
}

#[derive(Debug)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` (TLS), without a password; a username may be in it.
    pub redis_url: String,
    pub credential_source: CredentialSource,
    /// The decrypted password; filled only when loaded with `Secrets::Decrypt`.
    pub password: Option<SecretString>,
    /// Put before every Redis key (default `noviqi:`).
    pub key_prefix: String,
    pub on_redis_error: OnRedisError,
}

impl PartialEq for ClusterSettings {
    /// Settings equal as written (the decrypted password is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.redis_url == other.redis_url
            && self.credential_source == other.credential_source
            && self.key_prefix == other.key_prefix
            && self.on_redis_error == other.on_redis_error
    }
}

pub(super) fn lift_cluster(raw: Option<&RawCluster>) -> Result<Option<ClusterSettings>, Problem> {
    let Some(c) = raw else {
        return Ok(None);
    };
    let at = |k| [Seg::Key("cluster"), Seg::Key(k)];
    let url = c.redis_url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Problem::new(
            &at("redis_url"),
            "must start with redis:// or rediss:// (TLS)",
        ));
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(Problem::new(
            &at("redis_url"),
            format!("`{scheme}://` is not supported; use redis:// or rediss:// (TLS)"),
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(Problem::new(
            &at("redis_url"),
            "holds a password in plain text; put it in `password` (encrypted with `noviqi secret encrypt`) or name a variable in `password_env`, and keep only the user name in the URL",
        ));
    }
    if authority.is_empty() || authority.ends_with('@') {
        return Err(Problem::new(&at("redis_url"), "names no host"));
    }
    let credential_source = match (&c.password, &c.password_env) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                &at("password_env"),
                "set `password` or `password_env`, not both",
            ));
        }
        (Some(value), None) => {
            secret::check_syntax(value).map_err(|e| {
                Problem::new(
                    &at("password"),
                    format!("{e}; encrypt it with `noviqi secret encrypt`"),
                )
            })?;
            CredentialSource::Encrypted(value.clone())
        }
        (None, Some(var)) if var.is_empty() => {
            return Err(Problem::new(&at("password_env"), "must not be empty"));
        }
        (None, Some(var)) => CredentialSource::Env(var.clone()),
        (None, None) => CredentialSource::None,
    };
    let key_prefix = c.key_prefix.clone().unwrap_or_else(|| "noviqi:".to_owned());
    if key_prefix.len() > MAX_PREFIX
        || key_prefix
            .chars()
            .any(|ch| ch.is_control() || ch.is_whitespace() || ch == '{' || ch == '}')
    {
        return Err(Problem::new(
            &at("key_prefix"),
            format!(
                "must be at most {MAX_PREFIX} characters with no spaces, control characters or braces (braces mark Redis Cluster hash tags)"
            ),
        ));
    }
    let on_redis_error = match c.on_redis_error.as_deref() {
        None | Some("local") => OnRedisError::Local,
        Some("closed") => OnRedisError::Closed,
        Some(other) => {
            return Err(Problem::new(
                &at("on_redis_error"),
                format!("`{other}` is not a policy; use local or closed"),
            ));
        }
    };
    Ok(Some(ClusterSettings {
        redis_url: url.to_owned(),
        credential_source,
        password: None,
        key_prefix,
        on_redis_error,
    }))
}

/// Decrypts (or reads from the environment) the Redis password.
pub(super) fn fill_password(
    cluster: &mut ClusterSettings,
    unlocker: &mut Unlocker<'_>,
) -> Result<(), Problem> {
    let at = |k| [Seg::Key("cluster"), Seg::Key(k)];
    cluster.password = unlocker.credential(
        &cluster.credential_source,
        &at("password"),
        &at("password_env"),
        "export it before running noviqi",
    )?;
    Ok(())
}
