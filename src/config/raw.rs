//! The config file as written: serde structs that mirror the TOML one to one, with
//! `deny_unknown_fields` everywhere and every field optional so defaults live in one place
//! (`load`). Nothing here is validated beyond TOML types; `load` lifts these into `model`.

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub security: RawSecurity,
    pub admin: Option<RawAdmin>,
    pub usage: RawUsage,
    pub limits: RawLimits,
    pub providers: Vec<RawProvider>,
    pub models: Vec<RawModel>,
    pub keys: Vec<RawKey>,
    pub prices: Vec<RawPrice>,
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis_url: String,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub key_prefix: Option<String>,
    pub on_redis_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_connections: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub max_buffered_bytes: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub trusted_proxies: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSecurity {
    pub master_key_file: Option<String>,
    pub lockout_max_failures: Option<u64>,
    pub lockout_window_secs: Option<u64>,
    pub lockout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub password_hash: Option<String>,
    pub session_ttl_secs: Option<u64>,
    pub audit_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsage {
    pub path: Option<String>,
    pub max_bytes: Option<u64>,
    pub keep: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub budget_usd: Option<Number>,
    pub budget_period: Option<String>,
}

/// One `[[prices]]` entry: USD per million tokens for the upstream models `match` names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    #[serde(rename = "match")]
    pub pattern: String,
    pub input: Number,
    pub output: Number,
    pub cache_read: Option<Number>,
    pub cache_write: Option<Number>,
    pub cache_write_1h: Option<Number>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub headers: OrderedStrings,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub targets: Vec<String>,
    pub strategy: Option<String>,
    pub weights: Option<Vec<i64>>,
    pub cooldown_failures: Option<u32>,
    pub cooldown_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    pub hash: String,
    pub prefix: Option<String>,
    pub models: Option<Vec<String>>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub disabled: bool,
    pub budget_usd: Option<Number>,
    pub budget_period: Option<String>,
}

/// A TOML number, integer or float (`budget_usd = 20` and `= 20.5` both read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A table of string values, kept in file order (serde maps would sort them).
#[derive(Debug, Default)]
pub struct OrderedStrings(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedStrings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedStrings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(OrderedStrings(out))
            }
        }
        d.deserialize_map(V)
    }
}
