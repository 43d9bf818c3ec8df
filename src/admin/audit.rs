//! The audit log (`[admin] audit_path`): one JSON line per dashboard sign-in, failed sign-in,
//! lockout and sign-out, and per key change made over the admin API, so an admin can see who
//! did what to the gateway's keys and who tried the password.
//!
//! A line is `{"ts","actor","client_ip","action","target","ok"}`: `actor` is `session` (the
//! dashboard's password) or `key:NAME` (an `admin = true` key); `target` is the key name
//! acted on, or `admin` for sign-ins. Nothing else from the request goes in: never a key, a
//! hash or a password. Every free-text field is cut to [`MAX_FIELD`] bytes, so a line is
//! bounded.
//!
//! State owned here: one mutex that serialises writers. Lines are rare (a sign-in costs an
//! Argon2 verification, a key change a config rewrite), so each one opens the file (append,
//! mode 0600), writes itself with one `write`, is `fdatasync`ed before the response goes out,
//! and the file is rotated past [`MAX_BYTES`] exactly as the usage log is
//! ([`crate::usage::shift_rotated`]), keeping [`KEEP`] old files. Opening per line also means
//! a changed `audit_path` takes effect at the next line after a reload. A write that fails is
//! logged and does not fail the request.

use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::IpAddr;
use std::path::Path;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::usage::{open_append, rotated, shift_rotated};

/// The live file is rotated once it reaches this size.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept (`noviqi-audit.jsonl.1` … `.5`).
pub const KEEP: usize = 5;
/// Longest `actor` name or `target` written, in bytes (cut at a character boundary).
pub const MAX_FIELD: usize = 128;
/// How many of the newest lines the dashboard shows.
pub const SHOWN: usize = 100;
/// How much of a file's end is read to find its last lines (each line is well under 1 KiB).
const TAIL_BYTES: u64 = 128 * 1024;

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A dashboard sign-in (`ok`: the password was right).
    Login,
    /// A failed sign-in locked its address out (one line when the lock starts; refusals while
    /// locked are not written, so a flood cannot rotate the evidence away).
    Lockout,
    Logout,
    KeyCreate,
    /// A PATCH: limits, models, budget, expiry, `disabled` (re-enabling included).
    KeyUpdate,
    KeyRevoke,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Lockout => "lockout",
            Action::Logout => "logout",
            Action::KeyCreate => "key_create",
            Action::KeyUpdate => "key_update",
            Action::KeyRevoke => "key_revoke",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The dashboard's admin password (a session, or a sign-in attempt).
    Session,
    /// An `admin = true` key, by name.
    Key(&'a str),
}

/// One audit event.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub actor: Actor<'a>,
    pub client_ip: IpAddr,
    pub action: Action,
    /// The key name acted on; `admin` for sign-ins and sign-outs.
    pub target: &'a str,
    pub ok: bool,
}

/// The target of sign-in, lockout and sign-out lines.
pub const ADMIN_TARGET: &str = "admin";

/// `entry` as one JSON line (with its `\n`) stamped `ts`.
pub fn line(entry: &Entry<'_>, ts: &str) -> String {
    let actor = match entry.actor {
        Actor::Session => "session".to_owned(),
        Actor::Key(name) => format!("key:{}", cut(name)),
    };
    let mut text = json!({
        "ts": ts,
        "actor": actor,
        "client_ip": entry.client_ip.to_string(),
        "action": entry.action.name(),
        "target": cut(entry.target),
        "ok": entry.ok,
    })
    .to_string();
    text.push('\n');
    text
}

/// `s` cut to at most [`MAX_FIELD`] bytes at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The writer; one per gateway.
#[derive(Default)]
pub struct AuditLog {
    lock: Mutex<()>,
}

impl AuditLog {
    /// Appends `entry` to the log at `path` (nothing when `None`: audit logging is off).
    pub fn record(&self, path: Option<&Path>, entry: &Entry<'_>) {
        let Some(path) = path else {
            return;
        };
        let text = line(entry, &crate::clock::Stamp::now().rfc3339_millis());
        let _guard = self.lock.lock();
        if let Err(e) = append(path, text.as_bytes()) {
            log::error!("audit log {}: write failed: {e}", path.display());
        }
    }
}

fn append(path: &Path, text: &[u8]) -> io::Result<()> {
    let mut file = open_append(path)?;
    file.write_all(text)?;
    file.sync_data()?;
    if file.metadata()?.len() >= MAX_BYTES {
        drop(file);
        shift_rotated(path, KEEP)?;
    }
    Ok(())
}

/// The newest `n` lines of the log at `path` (the live file, then `.1` if it has too few),
/// newest first. Lines that do not parse are skipped; a missing file has none.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<Value>> {
    let mut newest_first = Vec::with_capacity(n);
    for file in [path.to_owned(), rotated(path, 1)] {
        let lines = match last_lines(&file) {
            Ok(lines) => lines,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for text in lines.iter().rev() {
            if newest_first.len() == n {
                return Ok(newest_first);
            }
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                newest_first.push(value);
            }
        }
    }
    Ok(newest_first)
}

/// The whole lines in the last [`TAIL_BYTES`] of `path`, oldest first.
fn last_lines(path: &Path) -> io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut by where the read started.
        lines.remove(0);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(action: Action, target: &'a str, actor: Actor<'a>) -> Entry<'a> {
        Entry {
            actor,
            client_ip: IpAddr::from([192, 0, 2, 7]),
            action,
            target,
            ok: true,
        }
    }

    #[test]
    fn a_line_has_exactly_the_contract_fields() {
        let text = line(
            &entry(Action::KeyCreate, "laptop", Actor::Key("ops")),
            "2026-01-02T03:04:05.678Z",
        );
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = ["ts", "actor", "client_ip", "action", "target", "ok"];
        expected.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(fields, expected);
        assert_eq!(v["ts"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["actor"], "key:ops");
        assert_eq!(v["client_ip"], "192.0.2.7");
        assert_eq!(v["action"], "key_create");
        assert_eq!(v["target"], "laptop");
        assert_eq!(v["ok"], true);
        let v: Value = serde_json::from_str(&line(
            &entry(Action::Login, ADMIN_TARGET, Actor::Session),
            "t",
        ))
        .unwrap();
        assert_eq!(
            (v["actor"].as_str(), v["action"].as_str()),
            (Some("session"), Some("login"))
        );
    }

    #[test]
    fn fields_are_bounded_and_escaped() {
        let long = "é".repeat(500);
        let hostile = "a\"b\n}{";
        let text = line(&entry(Action::KeyUpdate, &long, Actor::Key(hostile)), "t");
        assert!(text.len() < 2 * MAX_FIELD + 200, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["target"].as_str().unwrap().len(), MAX_FIELD);
        assert_eq!(v["actor"], format!("key:{hostile}"));
    }

    #[test]
    fn rotates_and_tails_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::default();
        log.record(None, &entry(Action::Logout, ADMIN_TARGET, Actor::Session));
        assert!(tail(&path, 10).unwrap().is_empty());
        for i in 0..150 {
            let name = format!("k{i}");
            log.record(
                Some(&path),
                &entry(Action::KeyCreate, &name, Actor::Session),
            );
        }
        let newest = tail(&path, SHOWN).unwrap();
        assert_eq!(newest.len(), SHOWN);
        assert_eq!(newest[0]["target"], "k149");
        assert_eq!(newest[99]["target"], "k50");
        // Rotation: past MAX_BYTES the live file moves to .1 and the tail spans both.
        let mut filler = vec![b'x'; MAX_BYTES as usize - 1];
        filler.push(b'\n');
        std::fs::write(&path, filler).unwrap();
        log.record(
            Some(&path),
            &entry(Action::KeyRevoke, "last", Actor::Session),
        );
        assert!(rotated(&path, 1).exists());
        assert!(!path.exists() || std::fs::metadata(&path).unwrap().len() == 0);
        log.record(
            Some(&path),
            &entry(Action::KeyRevoke, "fresh", Actor::Session),
        );
        let newest = tail(&path, 2).unwrap();
        assert_eq!(newest[0]["target"], "fresh");
        assert_eq!(newest[1]["target"], "last");
    }
}
