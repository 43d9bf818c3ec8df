//! Crash-safe master-key rotation (`noviqi secret rotate`): a new key, every `enc:v1` secret
//! in the config re-encrypted under it, and the new key file and config in place of the old
//! ones, the old key kept as `<key file>.old`.
//!
//! The steps are ordered so that a crash at any point leaves a config that some key file on
//! disk decrypts: the new key is written to `<key>.new` first, the old key copied to
//! `<key>.old`, then the config is replaced atomically, and only then `<key>.new` is renamed
//! over the key file. A later run that finds a `<key>.new` finishes that swap if the config
//! decrypts under it, and otherwise removes it as stale. A linked key file is rotated where
//! it really lives. Owns no state.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::edit::{self, EditError};
use super::load::{DEFAULT_MASTER_KEY_FILE, config_dir};
use super::{Secrets, load_str};
use crate::crypto::secret::MasterKey;

/// What a rotation did, for the CLI to report.
#[derive(Debug)]
pub enum Rotation {
    /// A new key is in `key_path` and `count` secrets are encrypted under it; the previous
    /// key is in `old_path`. `removed_stale` names a `.new` file of an earlier, unfinished
    /// rotation that the config did not use.
    Rotated {
        count: usize,
        key_path: PathBuf,
        old_path: PathBuf,
        removed_stale: Option<PathBuf>,
    },
    /// An interrupted rotation was finished instead: `key_path` now holds the key the config
    /// is encrypted with. Nothing new was rotated.
    FinishedInterrupted { key_path: PathBuf },
}

/// The master key file named by the config at `path` (read leniently: the config may not load
/// yet, e.g. while its plaintext key is being encrypted), resolved against the config's folder.
pub fn master_key_path(path: &Path) -> PathBuf {
    let named = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml_edit::DocumentMut>().ok())
        .and_then(|doc| {
            doc.get("security")
                .and_then(|s| s.get("master_key_file"))
                .and_then(|f| f.as_str())
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_MASTER_KEY_FILE.to_owned());
    let file = Path::new(&named);
    if file.is_absolute() {
        file.to_owned()
    } else {
        config_dir(path).join(file)
    }
}

/// Rotates the master key of the config at `path` (whose text is `text`).
pub fn rotate(path: &Path, text: &str) -> Result<Rotation, EditError> {
    let key_path = edit::through_links(&master_key_path(path));
    let new_path = edit::with_suffix(&key_path, ".new");
    let old_path = edit::with_suffix(&key_path, ".old");
    let current = MasterKey::load_file(&key_path).map_err(|e| EditError(e.to_string()))?;
    let mut removed_stale = None;
    if new_path.exists() {
        if recover(text, &key_path, &new_path, &current)? {
            return Ok(Rotation::FinishedInterrupted { key_path });
        }
        removed_stale = Some(new_path.clone());
    }
    let new_key = MasterKey::generate();
    let (new_text, count) = edit::reencrypt(text, &current, &new_key)
        .map_err(|e| EditError(format!("{}: {e}", path.display())))?;
    let mut new_text = Zeroizing::new(new_text);
    load_str(&new_text, path, Secrets::Skip).map_err(|e| {
        EditError(format!(
            "refusing to rotate, the config would not load: {e}"
        ))
    })?;
    let new_b64 = Zeroizing::new(format!("{}\n", new_key.to_base64().as_str()));
    edit::create_private(&new_path, new_b64.as_bytes(), 0o600).map_err(unchanged(&new_path))?;
    let old_b64 = Zeroizing::new(format!("{}\n", current.to_base64().as_str()));
    replace_private(&old_path, old_b64.as_bytes()).map_err(unchanged(&old_path))?;
    edit::write_atomic(path, new_text.as_bytes(), 0o600).map_err(unchanged(path))?;
    new_text.clear();
    swap(&new_path, &key_path)?;
    Ok(Rotation::Rotated {
        count,
        key_path,
        old_path,
        removed_stale,
    })
}

/// An I/O failure before the config was replaced: nothing changed.
fn unchanged(what: &Path) -> impl Fn(std::io::Error) -> EditError + '_ {
    move |e| {
        EditError(format!(
            "{}: {e} (the config and key are unchanged; run `noviqi secret rotate` again)",
            what.display()
        ))
    }
}

/// A `<key>.new` exists: a rotation was interrupted. If the config decrypts under it, finish
/// the swap (true); otherwise it is stale and is removed (false).
fn recover(
    text: &str,
    key_path: &Path,
    new_path: &Path,
    current: &MasterKey,
) -> Result<bool, EditError> {
    let pending = MasterKey::load_file(new_path).map_err(|e| EditError(e.to_string()))?;
    let under_new = edit::reencrypt(text, &pending, &pending).map(|(_, n)| n);
    let under_current = edit::reencrypt(text, current, current).is_ok();
    match under_new {
        Ok(n) if n > 0 && !under_current => {
            swap(new_path, key_path)?;
            Ok(true)
        }
        _ => {
            std::fs::remove_file(new_path)
                .map_err(|e| EditError(format!("{}: {e}", new_path.display())))?;
            Ok(false)
        }
    }
}

/// The last step: `<key>.new` over the key file.
fn swap(new_path: &Path, key_path: &Path) -> Result<(), EditError> {
    std::fs::rename(new_path, key_path)
        .and_then(|()| edit::sync_dir(&config_dir(key_path)))
        .map_err(|e| {
            EditError(format!(
                "cannot move {} over {}: {e}; the config is already encrypted under {}, so move it by hand",
                new_path.display(),
                key_path.display(),
                new_path.display()
            ))
        })
}

/// Atomically replaces `path` with a new 0600 file holding `contents`.
fn replace_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let path = &edit::through_links(path);
    let tmp = edit::with_suffix(path, &format!(".tmp.{}", std::process::id()));
    let result = edit::create_private(&tmp, contents, 0o600)
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| edit::sync_dir(&config_dir(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
