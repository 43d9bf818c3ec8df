//! Rewrites of the config file that keep its comments and layout (`toml_edit`), and the atomic
//! write that puts the result in place.
//!
//! Each edit is a pure function from the old text to the new text. Every writer (the CLI's
//! commands and the dashboard's key API alike) goes through [`ConfigLock`]: it takes an
//! exclusive advisory lock on `<config>.lock` beside the real file, re-reads the file under it,
//! applies its edit, validates the result with the normal loader and only then replaces the
//! file — so concurrent writers serialise and none overwrites another's edit, and an edit that
//! would not load leaves the file byte for byte as it was. `write_atomic` writes a temp file
//! beside the target with the target's permissions, fsyncs it, renames it over the target and
//! fsyncs the folder, so a crash leaves either the old file or the new one, never a mix.
//! Owns no state beyond the lock file's open handle while a [`ConfigLock`] lives.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value, value};

use crate::config::{Config, ConfigError, Secrets};
use crate::crypto::apikey::KeyHash;
use crate::crypto::secret::{self, MasterKey};

/// Why an edit could not be made. The message is a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError(pub String);

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EditError {}

fn err(message: impl Into<String>) -> EditError {
    EditError(message.into())
}

/// Why a locked read-edit-write of the config failed. In every case the file is unchanged.
#[derive(Debug)]
pub enum UpdateError {
    /// The config file is missing, or the lock file could not be opened or locked.
    Lock(std::io::Error),
    Read(std::io::Error),
    /// The edit itself was refused (an existing name, an unknown key, …).
    Edit(EditError),
    /// The edited text would not load.
    Invalid(ConfigError),
    Write(std::io::Error),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Lock(e) => write!(f, "cannot lock the config for writing: {e}"),
            UpdateError::Read(e) => write!(f, "cannot read the config file: {e}"),
            UpdateError::Edit(e) => e.fmt(f),
            UpdateError::Invalid(e) => {
                write!(f, "refusing to write the config, it would not load: {e}")
            }
            UpdateError::Write(e) => {
                write!(
                    f,
                    "cannot write the config (the old file is unchanged): {e}"
                )
            }
        }
    }
}

impl std::error::Error for UpdateError {}

/// The right to rewrite the config: an exclusive advisory lock (`flock`) on `<config>.lock`
/// beside the real file (symlinks followed), held until drop, released by the OS if the process
/// dies. The lock file stays empty and is never removed (removing it would let a waiter lock a
/// file nobody else sees).
pub struct ConfigLock {
    /// The config file itself, symlinks followed.
    path: PathBuf,
    _file: File,
}

impl ConfigLock {
    /// Waits for the lock of the config at `config`. A config that does not exist is an
    /// error (`NotFound`), so no stray lock file is made for a mistyped path.
    pub fn acquire(config: &Path) -> std::io::Result<ConfigLock> {
        let (path, file) = open_lock_file(config)?;
        file.lock()?;
        Ok(ConfigLock { path, _file: file })
    }

    /// [`ConfigLock::acquire`], giving up after `within` with `ErrorKind::WouldBlock`: a
    /// request thread must not wait forever behind a writer that hangs (the CLI holds the lock
    /// for milliseconds; anything else holding it is outside noviqi).
    pub fn acquire_within(config: &Path, within: Duration) -> std::io::Result<ConfigLock> {
        let (path, file) = open_lock_file(config)?;
        let deadline = Instant::now() + within;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ConfigLock { path, _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "another writer holds the config lock",
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// The config file this lock guards (symlinks followed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config's text now.
    pub fn read(&self) -> std::io::Result<String> {
        std::fs::read_to_string(&self.path)
    }

    /// Validates `new_text` with the loader (as if it were the file, secrets not decrypted)
    /// and atomically replaces the config with it; refused text leaves the file unchanged.
    /// Returns the config the new text loads as (credentials left empty).
    pub fn replace(&self, new_text: &str) -> Result<Config, UpdateError> {
        let config = crate::config::load_str(new_text, &self.path, Secrets::Skip)
            .map_err(UpdateError::Invalid)?;
        write_atomic(&self.path, new_text.as_bytes(), 0o600).map_err(UpdateError::Write)?;
        Ok(config)
    }

    /// Under this lock: reads the config, applies `edit`, validates and writes the result.
    pub fn update(
        &self,
        edit: impl FnOnce(&str) -> Result<String, EditError>,
    ) -> Result<Config, UpdateError> {
        let text = self.read().map_err(UpdateError::Read)?;
        let new_text = edit(&text).map_err(UpdateError::Edit)?;
        self.replace(&new_text)
    }
}

/// Whether the config at `config` can be edited here: its lock file can be opened for writing
/// beside it (which fails on a read-only mount, such as a Kubernetes ConfigMap).
pub fn check_writable(config: &Path) -> std::io::Result<()> {
    open_lock_file(config).map(|_| ())
}

/// The real config file (links followed; `NotFound` if it does not exist) and its lock file,
/// opened (created empty, 0600, when missing) but not locked.
fn open_lock_file(config: &Path) -> std::io::Result<(PathBuf, File)> {
    let path = through_links(config);
    std::fs::metadata(&path)?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(with_suffix(&path, ".lock"))?;
    Ok((path, file))
}

/// Locks the config at `path`, re-reads it, applies `edit`, validates and writes the result,
/// and unlocks: what every CLI command that changes the config does.
pub fn update(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<Config, UpdateError> {
    ConfigLock::acquire(path)
        .map_err(UpdateError::Lock)?
        .update(edit)
}

/// A key to append as a `[[keys]]` table.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub hash: KeyHash,
    pub prefix: String,
    /// Empty means the default `["*"]`, written out so the user sees it.
    pub models: Vec<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// RFC 3339, already checked by the caller or by the re-validation.
    pub expires_at: Option<String>,
    /// USD per `budget_period`; checked by the caller or by the re-validation.
    pub budget_usd: Option<f64>,
    /// `day`, `week` or `month`.
    pub budget_period: Option<String>,
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|e| err(format!("the config is not valid TOML: {}", e.message())))
}

/// `[[name]]` tables, refusing a document where `name` is something else.
fn tables_mut<'a>(
    doc: &'a mut DocumentMut,
    name: &str,
) -> Result<&'a mut ArrayOfTables, EditError> {
    let item = doc
        .entry(name)
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    item.as_array_of_tables_mut().ok_or_else(|| {
        err(format!(
            "`{name}` in the config is not written as [[{name}]] tables; edit it by hand"
        ))
    })
}

fn find_named<'a>(tables: &'a mut ArrayOfTables, name: &str) -> Option<&'a mut Table> {
    tables
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

/// Appends a `[[keys]]` table; refuses a name that exists.
pub fn add_key(text: &str, key: &NewKey) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let keys = tables_mut(&mut doc, "keys")?;
    if find_named(keys, &key.name).is_some() {
        return Err(err(format!(
            "a key named `{}` already exists; pick another name or revoke it first",
            key.name
        )));
    }
    let mut table = Table::new();
    table["name"] = value(key.name.as_str());
    table["hash"] = value(key.hash.to_string());
    table["prefix"] = value(key.prefix.as_str());
    let models: toml_edit::Array = if key.models.is_empty() {
        ["*"].into_iter().collect()
    } else {
        key.models.iter().map(String::as_str).collect()
    };
    table["models"] = value(models);
    if let Some(n) = key.requests_per_minute {
        table["requests_per_minute"] = value(to_i64(n)?);
    }
    if let Some(n) = key.tokens_per_minute {
        table["tokens_per_minute"] = value(to_i64(n)?);
    }
    if let Some(t) = &key.expires_at {
        table["expires_at"] = value(t.as_str());
    }
    if let Some(usd) = key.budget_usd {
        table["budget_usd"] = value(usd);
    }
    if let Some(p) = &key.budget_period {
        table["budget_period"] = value(p.as_str());
    }
    if keys.is_empty() {
        // The first key goes at the very end, after any trailing comments (toml_edit would put
        // it before them, splitting a commented example from what follows it).
        let mut alone = DocumentMut::new();
        let mut tables = ArrayOfTables::new();
        tables.push(table);
        alone.insert("keys", Item::ArrayOfTables(tables));
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&alone.to_string());
        return Ok(out);
    }
    keys.push(table);
    Ok(doc.to_string())
}

fn to_i64(n: u64) -> Result<i64, EditError> {
    i64::try_from(n).map_err(|_| err(format!("{n} is too large for TOML")))
}

/// A change to one setting of a key: leave it, remove it (back to the `[limits]` default),
/// or set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

/// The settings of a `[[keys]]` table the dashboard may change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyEdit {
    /// `Set` replaces the allowlist; `Clear` removes it (the default, every model).
    pub models: Change<Vec<String>>,
    pub requests_per_minute: Change<u64>,
    pub tokens_per_minute: Change<u64>,
    pub budget_usd: Change<f64>,
    pub budget_period: Change<String>,
    /// RFC 3339.
    pub expires_at: Change<String>,
    /// `Set(false)` re-enables a revoked key; `Clear` is the same as `Set(false)`.
    pub disabled: Change<bool>,
}

/// Whether a `[[keys]]` table named `name` exists.
pub fn key_exists(text: &str, name: &str) -> Result<bool, EditError> {
    let mut doc = parse(text)?;
    Ok(find_named(tables_mut(&mut doc, "keys")?, name).is_some())
}

/// Applies `change` to the key named `name`, keeping the comments around each value.
pub fn update_key(text: &str, name: &str, change: &KeyEdit) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let keys = tables_mut(&mut doc, "keys")?;
    let table = find_named(keys, name).ok_or_else(|| no_such_key(name))?;
    apply(table, "models", &change.models, |globs| {
        Value::Array(globs.iter().map(String::as_str).collect())
    });
    apply(
        table,
        "requests_per_minute",
        &change.requests_per_minute,
        |&n| Value::from(i64::try_from(n).unwrap_or(i64::MAX)),
    );
    apply(
        table,
        "tokens_per_minute",
        &change.tokens_per_minute,
        |&n| Value::from(i64::try_from(n).unwrap_or(i64::MAX)),
    );
    apply(table, "budget_usd", &change.budget_usd, |&usd| {
        Value::from(usd)
    });
    apply(table, "budget_period", &change.budget_period, |p| {
        Value::from(p.as_str())
    });
    apply(table, "expires_at", &change.expires_at, |t| {
        Value::from(t.as_str())
    });
    apply(table, "disabled", &change.disabled, |&b| Value::from(b));
    Ok(doc.to_string())
}

/// Sets or removes `field` of `table` as `change` says, keeping the value's comments.
fn apply<T>(table: &mut Table, field: &str, change: &Change<T>, to_value: impl Fn(&T) -> Value) {
    match change {
        Change::Keep => {}
        Change::Clear => {
            table.remove(field);
        }
        Change::Set(v) => match table.get_mut(field).and_then(Item::as_value_mut) {
            Some(old) => {
                let decor = old.decor().clone();
                *old = to_value(v);
                *old.decor_mut() = decor;
            }
            None => table[field] = Item::Value(to_value(v)),
        },
    }
}

fn no_such_key(name: &str) -> EditError {
    err(format!(
        "no key named `{name}`; `noviqi keys list` shows them"
    ))
}

/// Sets `disabled = true` on the key named `name`.
pub fn revoke_key(text: &str, name: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let keys = tables_mut(&mut doc, "keys")?;
    let table = find_named(keys, name).ok_or_else(|| no_such_key(name))?;
    apply(table, "disabled", &Change::Set(true), |&b| Value::from(b));
    Ok(doc.to_string())
}

/// Writes `api_key = enc` into the provider named `provider`; refuses one using api_key_env.
pub fn set_provider_api_key(text: &str, provider: &str, enc: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let providers = tables_mut(&mut doc, "providers")?;
    let table = find_named(providers, provider).ok_or_else(|| {
        err(format!(
            "no provider named `{provider}` in the config; add a [[providers]] entry first"
        ))
    })?;
    if table.contains_key("api_key_env") {
        return Err(err(format!(
            "provider `{provider}` reads its key from api_key_env; remove that line first if you want to store an encrypted key instead"
        )));
    }
    set_keep_decor(table, "api_key", enc);
    Ok(doc.to_string())
}

/// Replaces a string value, keeping the comment after it when there is one.
fn set_keep_decor(table: &mut Table, key: &str, new: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(new);
            *old.decor_mut() = decor;
        }
        None => table[key] = value(new),
    }
}

/// Writes `[admin] password_hash = phc`, creating `[admin]` when absent.
pub fn set_admin_password_hash(text: &str, phc: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let admin = doc
        .entry("admin")
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| err("`admin` in the config is not a [admin] table; edit it by hand"))?;
    set_keep_decor(admin, "password_hash", phc);
    Ok(doc.to_string())
}

/// Re-encrypts every `providers[].api_key = "enc:v1:…"` and `cluster.password` from `old` to
/// `new`. Fails, changing nothing, if any value does not decrypt under `old`.
pub fn reencrypt(
    text: &str,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<(String, usize), EditError> {
    let mut doc = parse(text)?;
    let mut count = 0;
    if let Some(cluster) = doc.get_mut("cluster").and_then(Item::as_table_mut)
        && let Some(current) = cluster.get("password").and_then(Item::as_str)
    {
        let plain = secret::decrypt(old, current)
            .map_err(|e| err(format!("cluster.password: {e}; nothing was changed")))?;
        let fresh = secret::encrypt(new, plain.expose().as_bytes());
        set_keep_decor(cluster, "password", &fresh);
        count += 1;
    }
    let Some(providers) = doc
        .get_mut("providers")
        .and_then(Item::as_array_of_tables_mut)
    else {
        return Ok((doc.to_string(), count));
    };
    for (i, table) in providers.iter_mut().enumerate() {
        let Some(current) = table.get("api_key").and_then(Item::as_str) else {
            continue;
        };
        let plain = secret::decrypt(old, current)
            .map_err(|e| err(format!("providers[{i}].api_key: {e}; nothing was changed")))?;
        let fresh = secret::encrypt(new, plain.expose().as_bytes());
        set_keep_decor(table, "api_key", &fresh);
        count += 1;
    }
    Ok((doc.to_string(), count))
}

/// `path` + `suffix` (`noviqi.key` → `noviqi.key.old`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Replaces `path` with `contents` atomically: temp file beside it (same permissions as the
/// old file, else `mode_if_new`), fsync, rename, fsync the folder. On error the old file is
/// intact and the temp file removed.
pub fn write_atomic(path: &Path, contents: &[u8], mode_if_new: u32) -> std::io::Result<()> {
    let path = &through_links(path);
    let dir = crate::config::load::config_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = write_new(&tmp, path, contents, mode_if_new).and_then(|()| {
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The file a path names once symlinks are followed, so a replacement lands on the real file
/// (renaming over a link would swap the link for a file and leave the real one stale). A path
/// that does not exist yet is its own answer.
pub fn through_links(path: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link && let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    path.to_owned()
}

/// Creates `tmp` (never following or reusing an existing file) with the permissions of `like`.
fn write_new(tmp: &Path, like: &Path, contents: &[u8], mode_if_new: u32) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mode = std::fs::metadata(like).map_or(mode_if_new, |m| m.permissions().mode() & 0o7777);
        options.mode(0o600);
        let mut file = options.open(tmp)?;
        // `mode` at creation is filtered by the umask; set the exact permissions explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = (like, mode_if_new);
        let mut file = options.open(tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    }
}

/// Creates a new file with exactly `mode` from the start (never wider, even briefly).
pub fn create_private(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    let result = file.write_all(contents).and_then(|()| file.sync_all());
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// fsyncs a folder so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            hash: KeyHash::of(name),
            prefix: "nvq_abcdefgh".into(),
            models: Vec::new(),
            requests_per_minute: Some(5),
            tokens_per_minute: None,
            expires_at: None,
            budget_usd: None,
            budget_period: None,
        }
    }

    #[test]
    fn add_key_to_empty_and_existing() {
        let one = add_key("", &new_key("a")).unwrap();
        assert!(one.starts_with("[[keys]]\nname = \"a\""), "{one}");
        let two = add_key(&one, &new_key("b")).unwrap();
        assert!(two.find("\"a\"").unwrap() < two.find("\"b\"").unwrap());
        assert!(
            add_key(&two, &new_key("a"))
                .unwrap_err()
                .0
                .contains("already exists")
        );
        assert!(add_key("keys = 3\n", &new_key("a")).is_err());
        assert!(add_key("[[keys]\n", &new_key("a")).is_err());
    }

    #[test]
    fn other_edits() {
        assert!(revoke_key("", "x").unwrap_err().0.contains("no key named"));
        assert!(set_admin_password_hash("admin = 1\n", "h").is_err());
        let t = set_admin_password_hash("[admin] # the dashboard\n", "h").unwrap();
        assert!(
            t.contains("# the dashboard") && t.contains("password_hash = \"h\""),
            "{t}"
        );
        let p = "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key = \"old\" # keep\n";
        let t = set_provider_api_key(p, "p", "enc:v1:new").unwrap();
        assert!(t.contains("api_key = \"enc:v1:new\" # keep"), "{t}");
    }

    #[test]
    fn failed_atomic_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "old").unwrap();
        // Occupy the temp file's name so creating it fails.
        let tmp = dir
            .path()
            .join(format!(".c.toml.tmp.{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        assert!(write_atomic(&path, b"new", 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        std::fs::remove_dir(&tmp).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn locked_updates_serialise_and_a_refused_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let original = "# keep me\n[server]\nlisten = \"127.0.0.1:0\"\n";
        std::fs::write(&path, original).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..5 {
                        let key = new_key(&format!("k{t}-{i}"));
                        update(path, |text| add_key(text, &key)).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# keep me\n"), "{text}");
        for t in 0..4 {
            for i in 0..5 {
                assert!(
                    text.contains(&format!("name = \"k{t}-{i}\"")),
                    "k{t}-{i} lost"
                );
            }
        }
        // Valid TOML that would not load (a key with an empty name): refused, file untouched.
        let before = std::fs::read(&path).unwrap();
        let refused = update(&path, |text| Ok(format!("{text}\n[[keys]]\nname = \"\"\n")));
        assert!(
            matches!(refused, Err(UpdateError::Invalid(_))),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let missing = update(&dir.path().join("nope.toml"), |t| Ok(t.to_owned()));
        assert!(
            matches!(missing, Err(UpdateError::Lock(e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(!dir.path().join("nope.toml.lock").exists());
    }

    #[test]
    fn update_key_sets_clears_and_keeps_comments() {
        let text = "# top\n[[keys]]\nname = \"a\"\nhash = \"h\"\nrequests_per_minute = 5 # tight\ntokens_per_minute = 9\n\n[[keys]]\nname = \"b\"\nhash = \"h2\"\n";
        let change = KeyEdit {
            requests_per_minute: Change::Set(60),
            tokens_per_minute: Change::Clear,
            models: Change::Set(vec!["gpt-*".into()]),
            budget_usd: Change::Set(2.5),
            disabled: Change::Set(false),
            ..KeyEdit::default()
        };
        let out = update_key(text, "a", &change).unwrap();
        assert!(out.starts_with("# top\n"), "{out}");
        assert!(out.contains("requests_per_minute = 60 # tight"), "{out}");
        assert!(!out.contains("tokens_per_minute"), "{out}");
        assert!(out.contains("models = [\"gpt-*\"]") && out.contains("budget_usd = 2.5"));
        assert!(out.contains("disabled = false"));
        // The other key is untouched and stays after it.
        assert!(out.find("name = \"a\"").unwrap() < out.find("name = \"b\"").unwrap());
        assert!(out.ends_with("name = \"b\"\nhash = \"h2\"\n"), "{out}");
        assert!(
            update_key(text, "zz", &change)
                .unwrap_err()
                .0
                .contains("no key named")
        );
        assert!(key_exists(text, "b").unwrap() && !key_exists(text, "c").unwrap());
        let revoked = revoke_key(text, "b").unwrap();
        assert!(revoked.contains("disabled = true"), "{revoked}");
    }

    #[test]
    fn a_bounded_wait_gives_up_while_another_writer_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        let held = ConfigLock::acquire(&path).unwrap();
        let refused = ConfigLock::acquire_within(&path, Duration::from_millis(50));
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::WouldBlock)
        );
        drop(held);
        assert!(ConfigLock::acquire_within(&path, Duration::from_millis(50)).is_ok());
    }
}
