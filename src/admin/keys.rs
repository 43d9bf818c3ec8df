//! Key management over the admin API: `GET /admin/api/keys`, `POST /admin/api/keys`,
//! `PATCH /admin/api/keys/NAME`, `POST /admin/api/keys/NAME/revoke`, and `GET
//! /admin/api/audit` (the newest audit lines).
//!
//! The config file is the key store, so a write here is exactly what `noviqi keys add` does:
//! the body is read and validated first (bounded, every field checked, the field at fault named
//! in the 400), then, holding the config's lock ([`ConfigLock`]), the file is re-read, edited
//! with `toml_edit` (comments and order kept), validated by the normal loader and replaced
//! atomically; the running config is reloaded before the lock is let go, so the next request
//! sees the change and two writers never interleave. A new key appears once, in the 201 body,
//! and nowhere else: not in a log line, the audit log or an error.
//!
//! Owns no state: the audit writer and the last-used times are the dashboard's ([`Admin`]).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::audit::{self, Action, Actor, Entry};
use super::{Admin, Deps, error, unix_now};
use crate::config::Config;
use crate::config::edit::{self, Change, ConfigLock, KeyEdit, NewKey, UpdateError};
use crate::config::model::{AdminSettings, Key};
use crate::cost::{Period, Usd};
use crate::crypto::apikey;
use crate::error::{ApiError, Kind};
use crate::http::{BodyError, Request, Response};

/// Largest key-API body accepted.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;
/// Longest key name the API creates.
pub const MAX_NAME_LEN: usize = 64;
/// Most globs in one key's `models`.
pub const MAX_MODELS: usize = 64;
/// Longest glob in `models`, in bytes.
pub const MAX_GLOB_BYTES: usize = 256;
/// How long a write waits for another writer's config lock before answering 503.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest budget accepted, in USD (spend is counted in pico-dollars in a `u64`, which ends
/// a little past $18M).
pub const MAX_BUDGET_USD: f64 = 1e7;

const CREATE_FIELDS: [&str; 7] = [
    "name",
    "models",
    "rpm",
    "tpm",
    "budget_usd",
    "budget_period",
    "expires_at",
];
const PATCH_FIELDS: [&str; 7] = [
    "models",
    "rpm",
    "tpm",
    "budget_usd",
    "budget_period",
    "expires_at",
    "disabled",
];

/// Who is calling a key endpoint.
pub(super) enum Caller {
    Session,
    Key(Arc<Key>),
}

impl Caller {
    fn actor(&self) -> Actor<'_> {
        match self {
            Caller::Session => Actor::Session,
            Caller::Key(key) => Actor::Key(&key.name),
        }
    }
}

/// A validated `POST /admin/api/keys` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: String,
    pub edit: KeyEdit,
}

impl CreateRequest {
    /// The `[[keys]]` table to append for this request, with the new key's hash and prefix.
    pub fn into_new_key(self, hash: apikey::KeyHash, prefix: String) -> NewKey {
        NewKey {
            name: self.name,
            hash,
            prefix,
            models: match self.edit.models {
                Change::Set(globs) => globs,
                Change::Keep | Change::Clear => Vec::new(),
            },
            requests_per_minute: set(self.edit.requests_per_minute),
            tokens_per_minute: set(self.edit.tokens_per_minute),
            expires_at: set(self.edit.expires_at),
            budget_usd: set(self.edit.budget_usd),
            budget_period: set(self.edit.budget_period),
        }
    }
}

/// Parses and checks a create body: `name` (required, `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_NAME_LEN`]) and the optional settings; `null` means absent.
pub fn parse_create(body: &[u8]) -> Result<CreateRequest, ApiError> {
    let object = parse_object(body, &CREATE_FIELDS)?;
    let name = match object.get("name") {
        Some(Value::String(name)) => name.clone(),
        None | Some(Value::Null) => return Err(invalid("name", "`name` is required")),
        Some(_) => return Err(invalid("name", "`name` must be a string")),
    };
    if !valid_name(&name) {
        return Err(invalid(
            "name",
            "`name` must be 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
        ));
    }
    let edit = settings(&object, false)?;
    Ok(CreateRequest { name, edit })
}

/// Parses and checks a PATCH body: any of the settings and `disabled`; `null` removes a setting
/// (the key falls back to `[limits]`; `models: null` means every model again).
pub fn parse_patch(body: &[u8]) -> Result<KeyEdit, ApiError> {
    let object = parse_object(body, &PATCH_FIELDS)?;
    let mut edit = settings(&object, true)?;
    edit.disabled = match object.get("disabled") {
        None => Change::Keep,
        Some(Value::Null) => Change::Clear,
        Some(Value::Bool(b)) => Change::Set(*b),
        Some(_) => return Err(invalid("disabled", "`disabled` must be true or false")),
    };
    Ok(edit)
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=MAX_NAME_LEN).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

fn invalid(field: &str, message: &'static str) -> ApiError {
    ApiError::bad_request(message, Some(field))
}

/// The body as a JSON object whose every field is in `allowed`.
fn parse_object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("the body is not valid JSON", None))?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object",
            None,
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::bad_request(
            format!(
                "unknown field `{shown}`; the fields are {}",
                allowed.join(", ")
            ),
            Some(&shown),
        ));
    }
    Ok(object)
}

/// The settings shared by create and PATCH. `null` is `Clear` when `null_clears`, else `Keep`.
fn settings(object: &Map<String, Value>, null_clears: bool) -> Result<KeyEdit, ApiError> {
    let field = |name: &str| match object.get(name) {
        None => None,
        Some(Value::Null) if !null_clears => None,
        Some(v) => Some(v),
    };
    Ok(KeyEdit {
        models: lift(field("models"), "models", models)?,
        requests_per_minute: lift(field("rpm"), "rpm", |v| {
            whole(v, u64::from(u32::MAX))
                .ok_or("`rpm` must be a whole number from 0 to 4294967295 (0 = unlimited)")
        })?,
        tokens_per_minute: lift(field("tpm"), "tpm", |v| {
            whole(v, i64::MAX.unsigned_abs())
                .ok_or("`tpm` must be a whole number of at least 0 (0 = unlimited)")
        })?,
        budget_usd: lift(field("budget_usd"), "budget_usd", usd)?,
        budget_period: lift(field("budget_period"), "budget_period", period)?,
        expires_at: lift(field("expires_at"), "expires_at", expiry)?,
        disabled: Change::Keep,
    })
}

/// `None` → keep, `null` → clear, else `check`ed into `Set`.
fn lift<T>(
    value: Option<&Value>,
    name: &str,
    check: impl Fn(&Value) -> Result<T, &'static str>,
) -> Result<Change<T>, ApiError> {
    match value {
        None => Ok(Change::Keep),
        Some(Value::Null) => Ok(Change::Clear),
        Some(v) => check(v).map(Change::Set).map_err(|m| invalid(name, m)),
    }
}

fn whole(v: &Value, max: u64) -> Option<u64> {
    v.as_u64().filter(|&n| n <= max)
}

fn models(v: &Value) -> Result<Vec<String>, &'static str> {
    const WHY: &str = "`models` must be a list of 1 to 64 model-name globs like \"gpt-4o*\" (each non-empty, at most 256 bytes, no control characters)";
    let list = v.as_array().ok_or(WHY)?;
    if list.is_empty() || list.len() > MAX_MODELS {
        return Err(WHY);
    }
    list.iter()
        .map(|g| match g.as_str() {
            Some(g)
                if !g.trim().is_empty()
                    && g.len() <= MAX_GLOB_BYTES
                    && !g.chars().any(char::is_control) =>
            {
                Ok(g.to_owned())
            }
            _ => Err(WHY),
        })
        .collect()
}

fn usd(v: &Value) -> Result<f64, &'static str> {
    v.as_f64()
        .filter(|&x| (0.0..=MAX_BUDGET_USD).contains(&x) && Usd::from_f64(x).is_some())
        .ok_or("`budget_usd` must be a number of US dollars from 0 to 10000000 (0 = no budget)")
}

fn period(v: &Value) -> Result<String, &'static str> {
    v.as_str()
        .and_then(Period::parse)
        .map(|p| p.name().to_owned())
        .ok_or("`budget_period` must be \"day\", \"week\" or \"month\"")
}

fn expiry(v: &Value) -> Result<String, &'static str> {
    v.as_str()
        .filter(|t| t.len() <= 64 && crate::config::load::parse_time(t).is_some())
        .map(str::to_owned)
        .ok_or("`expires_at` must be an RFC 3339 time like 2027-06-01T00:00:00Z")
}

/// `active`, `disabled` or `expired`.
pub fn state(key: &Key) -> &'static str {
    if key.disabled {
        "disabled"
    } else if key.is_expired(std::time::SystemTime::now()) {
        "expired"
    } else {
        "active"
    }
}

/// The path segment naming a key, `%XX`-decoded (`+` stays a plus: this is a path).
pub fn decode_name(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

impl Admin {
    /// `GET /admin/api/keys`: every key, never its hash.
    pub(super) fn keys_list(&self, deps: &Deps<'_>) -> Response {
        let now = unix_now();
        let keys: Vec<Value> = deps
            .config
            .keys
            .iter()
            .map(|key| self.key_json(deps, key, now))
            .collect();
        // Where the file cannot be written (a read-only mount), the page says so up front.
        let read_only = crate::config::edit::check_writable(&deps.config.path)
            .err()
            .filter(read_only)
            .map(|_| READ_ONLY);
        Response::json(
            200,
            json!({ "keys": keys, "read_only": read_only }).to_string(),
        )
    }

    /// One key as the list shows it: limits and budget in force (its own, else `[limits]`),
    /// spend in the budget's period (a key without a budget: this calendar month), last use.
    fn key_json(&self, deps: &Deps<'_>, key: &Key, now: i64) -> Value {
        let period = key.budget.map_or(Period::Month, |b| b.period);
        let expires_at = key.expires_at.map(|t| {
            let t = time::OffsetDateTime::from(t);
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        });
        let last_used = self.analytics.last_used(&key.name).and_then(|ts| {
            time::OffsetDateTime::from_unix_timestamp(ts)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        json!({
            "name": key.name,
            "prefix": key.prefix,
            "state": state(key),
            "admin": key.admin,
            "models": key.models,
            "limits": {
                "requests_per_minute": key.limits.requests_per_minute,
                "tokens_per_minute": key.limits.tokens_per_minute,
            },
            "budget": key.budget.map(|b| json!({
                "usd": b.limit.as_f64(),
                "period": b.period.name(),
            })),
            "spend": {
                "usd": deps.spend.spent(&key.name, period, now).as_f64(),
                "period": period.name(),
                "resets_at": period.resets_at(now),
            },
            "expires_at": expires_at,
            "last_used": last_used,
        })
    }

    /// `POST /admin/api/keys`: 201 `{"name","key","prefix"}`, the key shown this once.
    pub(super) fn keys_create(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        caller: &Caller,
        req: &mut Request<'_>,
    ) -> Response {
        let body = match read_body(req) {
            Ok(body) => body,
            Err(e) => return error(&e),
        };
        let create = match parse_create(&body) {
            Ok(create) => create,
            Err(e) => {
                let target = body_name(&body);
                self.audit_key(deps, settings, caller, Action::KeyCreate, &target, false);
                return error(&e);
            }
        };
        let (key, hash) = apikey::generate();
        let prefix = apikey::prefix(&key);
        let new_key = create.clone().into_new_key(hash, prefix.clone());
        let written = write(deps, |text| {
            if exists(text, &create.name)? {
                return Err(ApiError::new(Kind::Conflict)
                    .with_message(format!("a key named `{}` already exists", create.name))
                    .with_param("name"));
            }
            edit::add_key(text, &new_key).map_err(edit_failed)
        });
        self.audit_key(
            deps,
            settings,
            caller,
            Action::KeyCreate,
            &create.name,
            written.is_ok(),
        );
        match written {
            Ok(_) => Response::json(
                201,
                json!({ "name": create.name, "key": key.as_str(), "prefix": prefix }).to_string(),
            ),
            Err(e) => error(&e),
        }
    }

    /// `PATCH /admin/api/keys/NAME`: the key as the list shows it, after the change.
    pub(super) fn keys_patch(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        caller: &Caller,
        name: &str,
        req: &mut Request<'_>,
    ) -> Response {
        let change = read_body(req).and_then(|body| parse_patch(&body));
        let written = change.and_then(|change| {
            write(deps, |text| {
                if !exists(text, name)? {
                    return Err(unknown_key(name));
                }
                edit::update_key(text, name, &change).map_err(edit_failed)
            })
        });
        self.answer_change(deps, settings, caller, Action::KeyUpdate, name, written)
    }

    /// `POST /admin/api/keys/NAME/revoke`: sets `disabled = true`.
    pub(super) fn keys_revoke(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        caller: &Caller,
        name: &str,
    ) -> Response {
        let written = write(deps, |text| {
            if !exists(text, name)? {
                return Err(unknown_key(name));
            }
            edit::revoke_key(text, name).map_err(edit_failed)
        });
        self.answer_change(deps, settings, caller, Action::KeyRevoke, name, written)
    }

    fn answer_change(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        caller: &Caller,
        action: Action,
        name: &str,
        written: Result<Config, ApiError>,
    ) -> Response {
        self.audit_key(deps, settings, caller, action, name, written.is_ok());
        let config = match written {
            Ok(config) => config,
            Err(e) => return error(&e),
        };
        match config.keys.iter().find(|k| k.name == name) {
            Some(key) => Response::json(200, self.key_json(deps, key, unix_now()).to_string()),
            None => error(&unknown_key(name)),
        }
    }

    /// `GET /admin/api/audit`: the newest [`audit::SHOWN`] lines, newest first.
    pub(super) fn audit_api(&self, settings: &AdminSettings) -> Response {
        let Some(path) = &settings.audit_path else {
            return Response::json(200, json!({ "enabled": false, "entries": [] }).to_string());
        };
        match audit::tail(path, audit::SHOWN) {
            Ok(entries) => Response::json(
                200,
                json!({ "enabled": true, "entries": entries }).to_string(),
            ),
            Err(e) => {
                log::error!("audit log {}: cannot read it back: {e}", path.display());
                error(&ApiError::internal())
            }
        }
    }

    fn audit_key(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        caller: &Caller,
        action: Action,
        target: &str,
        ok: bool,
    ) {
        self.audit.record(
            settings.audit_path.as_deref(),
            &Entry {
                actor: caller.actor(),
                client_ip: deps.client_ip,
                action,
                target,
                ok,
            },
        );
    }
}

fn set<T>(change: Change<T>) -> Option<T> {
    match change {
        Change::Set(v) => Some(v),
        Change::Keep | Change::Clear => None,
    }
}

/// The `name` a refused create body asked for (for the audit line), if it had one.
fn body_name(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn read_body(req: &mut Request<'_>) -> Result<Vec<u8>, ApiError> {
    req.read_body(MAX_BODY_BYTES).map_err(|e| match e {
        BodyError::TooLarge => ApiError::too_large(MAX_BODY_BYTES),
        BodyError::Timeout => ApiError::new(Kind::RequestTimeout),
        BodyError::Overloaded => ApiError::new(Kind::Overloaded),
        other => ApiError::bad_request(other.to_string(), None),
    })
}

fn unknown_key(name: &str) -> ApiError {
    let shown: String = name.chars().take(MAX_NAME_LEN).collect();
    ApiError::new(Kind::NotFound).with_message(format!("no key named `{shown}`"))
}

fn exists(text: &str, name: &str) -> Result<bool, ApiError> {
    edit::key_exists(text, name).map_err(edit_failed)
}

/// An edit the config's own shape refused (it is not valid TOML, `keys` is not `[[keys]]`).
fn edit_failed(e: edit::EditError) -> ApiError {
    log::error!("key API: the config cannot be edited: {e}");
    ApiError::internal()
}

/// Under the config's lock: re-reads the file, applies `change`, validates and writes the
/// result, then reloads the running config; returns the config as written.
fn write(
    deps: &Deps<'_>,
    change: impl FnOnce(&str) -> Result<String, ApiError>,
) -> Result<Config, ApiError> {
    let path = &deps.config.path;
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        log::error!("key API: {what} {}: {e}", path.display());
        ApiError::internal()
    };
    let lock = ConfigLock::acquire_within(path, LOCK_WAIT).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            log::warn!(
                "key API: {} stayed locked for {LOCK_WAIT:?}",
                path.display()
            );
            ApiError::new(Kind::Busy).with_message("the config is being edited; try again")
        } else if read_only(&e) {
            not_writable(path, &e)
        } else {
            internal("cannot lock", &e)
        }
    })?;
    let text = lock.read().map_err(|e| internal("cannot read", &e))?;
    let new_text = change(&text)?;
    let config = lock.replace(&new_text).map_err(|e| match e {
        UpdateError::Invalid(e) => ApiError::bad_request(
            format!(
                "refused: the config would not load with this change ({}: {})",
                e.field.as_deref().unwrap_or("config"),
                e.message
            ),
            None,
        ),
        UpdateError::Write(e) if read_only(&e) => not_writable(path, &e),
        other => internal("cannot write", &other),
    })?;
    (deps.reload)().map_err(|e| internal("written, but the reload failed for", &e))?;
    drop(lock);
    Ok(config)
}

/// A config noviqi may read but not replace: a read-only mount (a Kubernetes ConfigMap), or a
/// file or folder the gateway's user cannot write.
fn read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

/// Why keys cannot be changed here, for the 409 and the Keys page.
const READ_ONLY: &str = "the config file (or its folder) is read-only to noviqi, so keys \
     cannot be changed here; change them where the file comes from";

/// 409: the edit cannot be made here, and saying so helps more than a bare 500.
fn not_writable(path: &std::path::Path, e: &std::io::Error) -> ApiError {
    log::warn!("key API: {} cannot be written: {e}", path.display());
    ApiError::new(Kind::Conflict).with_message(READ_ONLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies() {
        let ok = parse_create(
            br#"{"name":"ci-bot.1","models":["gpt-*"],"rpm":60,"tpm":0,"budget_usd":2.5,
                 "budget_period":"week","expires_at":"2027-06-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(ok.name, "ci-bot.1");
        assert_eq!(ok.edit.models, Change::Set(vec!["gpt-*".to_owned()]));
        assert_eq!(ok.edit.requests_per_minute, Change::Set(60));
        assert_eq!(ok.edit.tokens_per_minute, Change::Set(0));
        assert_eq!(ok.edit.budget_usd, Change::Set(2.5));
        assert_eq!(ok.edit.budget_period, Change::Set("week".to_owned()));
        assert_eq!(ok.edit.disabled, Change::Keep);
        // null on create is "not given".
        let bare = parse_create(br#"{"name":"a","rpm":null}"#).unwrap();
        assert_eq!(bare.edit, KeyEdit::default());
    }

    #[test]
    fn refused_bodies_name_their_field() {
        for (body, param) in [
            (&br#"{}"#[..], "name"),
            (br#"{"name":""}"#, "name"),
            (br#"{"name":"has space"}"#, "name"),
            (br#"{"name":"-dash-first"}"#, "name"),
            (br#"{"name":7}"#, "name"),
            (br#"{"name":"a","rpm":-1}"#, "rpm"),
            (br#"{"name":"a","rpm":1.5}"#, "rpm"),
            (br#"{"name":"a","rpm":4294967296}"#, "rpm"),
            (br#"{"name":"a","tpm":"9"}"#, "tpm"),
            (br#"{"name":"a","models":[]}"#, "models"),
            (br#"{"name":"a","models":"*"}"#, "models"),
            (br#"{"name":"a","models":["ok","bad\n"]}"#, "models"),
            (br#"{"name":"a","budget_usd":-1}"#, "budget_usd"),
            (br#"{"name":"a","budget_usd":1e12}"#, "budget_usd"),
            (br#"{"name":"a","budget_usd":2e7}"#, "budget_usd"),
            (br#"{"name":"a","budget_period":"year"}"#, "budget_period"),
            (br#"{"name":"a","expires_at":"tomorrow"}"#, "expires_at"),
            (br#"{"name":"a","disabled":true}"#, "disabled"),
            (br#"{"name":"a","hash":"sha256:00"}"#, "hash"),
        ] {
            let e = parse_create(body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(e.param(), Some(param), "{}", String::from_utf8_lossy(body));
            assert!(e.message().contains(param), "{}", e.message());
        }
        let long = format!(r#"{{"name":"{}"}}"#, "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(
            parse_create(long.as_bytes()).unwrap_err().param(),
            Some("name")
        );
        for body in [&b"not json"[..], b"[1]", b"\"x\""] {
            let e = parse_create(body).unwrap_err();
            assert_eq!((e.status(), e.param()), (400, None));
        }
    }

    #[test]
    fn patch_bodies() {
        let p = parse_patch(br#"{"rpm":5,"tpm":null,"disabled":false,"models":null}"#).unwrap();
        assert_eq!(p.requests_per_minute, Change::Set(5));
        assert_eq!(p.tokens_per_minute, Change::Clear);
        assert_eq!(p.models, Change::Clear);
        assert_eq!(p.disabled, Change::Set(false));
        assert_eq!(p.budget_usd, Change::Keep);
        assert_eq!(parse_patch(b"{}").unwrap(), KeyEdit::default());
        for (body, param) in [
            (&br#"{"name":"b"}"#[..], "name"),
            (br#"{"disabled":"yes"}"#, "disabled"),
            (br#"{"rpm":-5}"#, "rpm"),
            (br#"{"admin":true}"#, "admin"),
        ] {
            assert_eq!(parse_patch(body).unwrap_err().param(), Some(param));
        }
    }

    #[test]
    fn a_read_only_config_is_a_conflict_not_an_internal_error() {
        use std::io::{Error, ErrorKind};
        for kind in [ErrorKind::ReadOnlyFilesystem, ErrorKind::PermissionDenied] {
            assert!(read_only(&Error::from(kind)));
        }
        assert!(!read_only(&Error::from(ErrorKind::NotFound)));
        let e = not_writable(std::path::Path::new("/etc/noviqi.toml"), &Error::other("x"));
        assert_eq!((e.status(), e.code()), (409, "conflict"));
        assert!(
            !e.message().contains("/etc"),
            "no server paths to the client"
        );
    }

    #[test]
    fn names_in_paths_are_percent_decoded() {
        assert_eq!(decode_name("laptop").as_deref(), Some("laptop"));
        assert_eq!(decode_name("my%20key").as_deref(), Some("my key"));
        assert_eq!(decode_name("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_name("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode_name("bad%zz"), None);
        assert_eq!(decode_name("bad%2"), None);
        assert_eq!(decode_name("%ff"), None);
        assert_eq!(decode_name(""), None);
    }
}
