//! Usage records: one JSON line per request, appended durably.
//!
//! Owns the open usage log. Each record is written with a single `write` on an append-mode
//! file before the response's last byte goes out, so a crash of the process loses no line of a
//! completed response (the kernel has it); a background thread `fdatasync`s at least once a
//! second while there are unsynced lines, and `close` syncs once more. Past `max_bytes` the
//! file is rotated: `usage.jsonl` → `usage.jsonl.1` → … → `usage.jsonl.<keep>`, the oldest
//! dropped ([`shift_rotated`], which the audit log shares).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::config::model::UsageSettings;
use crate::cost::Usd;
use crate::cost::spend::{FileMark, Ledger};
use crate::outcome::Outcome;
use parking_lot::{Condvar, Mutex, RwLock};

/// The usage log writer; cheap to share (`Arc`) across connection threads.
pub struct UsageLog {
    inner: Arc<Shared>,
    flusher: Mutex<Option<thread::JoinHandle<()>>>,
}

struct Shared {
    /// Appends share it (one `write` on an append-mode file is one whole line, so they need
    /// no mutual exclusion); rotation and close take it alone.
    file: RwLock<File>,
    size: AtomicU64,
    /// Lines written since the last sync.
    dirty: AtomicBool,
    closed: AtomicBool,
    /// Wakes the sync thread early at close.
    wake: Condvar,
    wake_lock: Mutex<()>,
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// Spend per key, charged with each line and checkpointed before each rotation.
    spend: Arc<Ledger>,
}

impl UsageLog {
    /// Opens (creating, mode 0600) the log at `settings.path`; `Ok(None)` when usage logging is
    /// off.
    pub fn open(settings: &UsageSettings, spend: Arc<Ledger>) -> io::Result<Option<UsageLog>> {
        let Some(path) = &settings.path else {
            return Ok(None);
        };
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let inner = Arc::new(Shared {
            file: RwLock::new(file),
            size: AtomicU64::new(size),
            dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            path: path.clone(),
            max_bytes: settings.max_bytes,
            keep: settings.keep,
            spend,
        });
        let for_thread = inner.clone();
        let flusher = thread::Builder::new()
            .name("usage-fsync".into())
            .spawn(move || flush_loop(&for_thread))?;
        Ok(Some(UsageLog {
            inner,
            flusher: Mutex::new(Some(flusher)),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends one record as one line with one `write`. Errors are logged, not returned: a
    /// full disk must not fail the client's request.
    /// Writes one finished request's line (its [`Outcome`] serialised).
    pub fn append(&self, record: &Outcome) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut *line, record) {
                log::error!("usage record not serialisable: {e}");
                return;
            }
            line.push(b'\n');
            let charge = match (record.key_name(), record.cost) {
                (Some(key), Some(cost)) => Some((key, record.ended_unix_secs(), cost)),
                _ => None,
            };
            self.write_line(&line, charge);
            // One odd line must not pin its size in every connection thread for good.
            if line.capacity() > 64 * 1024 {
                *line = Vec::new();
            }
        });
    }

    /// Writes `line` and, once it is in the file, charges its cost to its key's spend: both
    /// under the shared lock, so a rotation's checkpoint sees the spend of exactly the lines
    /// written before it.
    fn write_line(&self, line: &[u8], charge: Option<(&str, i64, Usd)>) {
        let shared = &*self.inner;
        let file = shared.file.read();
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = (&*file).write_all(line) {
            log::error!("usage log {}: write failed: {e}", shared.path.display());
            return;
        }
        if let Some((key, at, cost)) = charge {
            shared.spend.charge(key, at, cost);
        }
        shared.dirty.store(true, Ordering::Release);
        let size = shared.size.fetch_add(line.len() as u64, Ordering::AcqRel) + line.len() as u64;
        drop(file);
        if size >= shared.max_bytes {
            let mut file = shared.file.write();
            // Another thread may have rotated while this one waited.
            if shared.size.load(Ordering::Acquire) >= shared.max_bytes
                && !shared.closed.load(Ordering::Acquire)
                && let Err(e) = shared.rotate(&mut file)
            {
                log::error!("usage log {}: rotation failed: {e}", shared.path.display());
            }
        }
    }

    /// Syncs what was written and stops the background thread. Later appends are dropped.
    pub fn close(&self) {
        {
            let file = self.inner.file.write();
            if let Err(e) = file.sync_data() {
                log::error!("usage log {}: sync failed: {e}", self.inner.path.display());
            }
            self.inner.dirty.store(false, Ordering::Release);
            self.inner.closed.store(true, Ordering::Release);
        }
        {
            let _guard = self.inner.wake_lock.lock();
            self.inner.wake.notify_all();
        }
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for UsageLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn rotate(&self, file: &mut File) -> io::Result<()> {
        file.sync_data()?;
        // The spend of every line so far, before any of them can be dropped. Without it
        // the file stays where it is (and grows) rather than lose spend.
        let mark = FileMark::of(file)?;
        self.spend
            .checkpoint(&self.path, mark, crate::clock::unix_secs() as i64)?;
        shift_rotated(&self.path, self.keep)?;
        *file = open_append(&self.path)?;
        self.size.store(0, Ordering::Release);
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }
}

/// Moves `path` aside as `path.1`, shifting older files up (`.1` → `.2` …) and dropping what
/// would go past `.keep` (with `keep = 0`, `path` is removed). The caller opens a fresh `path`
/// next. Shared by every append-only log (the usage log, the audit log).
pub fn shift_rotated(path: &Path, keep: usize) -> io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for i in (1..keep).rev() {
        let from = rotated(path, i);
        if from.exists() {
            std::fs::rename(&from, rotated(path, i + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

/// `usage.jsonl.N`: the Nth most recent rotated file.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens `path` for appending, creating it with mode 0600 (logs name keys and addresses).
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn flush_loop(shared: &Shared) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    loop {
        {
            let mut guard = shared.wake_lock.lock();
            if !shared.closed.load(Ordering::Acquire) {
                shared.wake.wait_for(&mut guard, Duration::from_secs(1));
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if shared.dirty.swap(false, Ordering::AcqRel) {
            // Sync a duplicate handle outside the lock so appends never wait on the disk.
            let file = shared.file.read().try_clone();
            if let Err(e) = file.and_then(|f| f.sync_data())
                && !WARNED.swap(true, Ordering::Relaxed)
            {
                log::error!("usage log {}: sync failed: {e}", shared.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn record(id: &str) -> Outcome {
        let mut outcome = Outcome::new(
            id.to_owned(),
            IpAddr::from([127, 0, 0, 1]),
            std::time::Instant::now(),
            crate::translate::Endpoint::Chat,
        );
        outcome.model = Some("m".into());
        outcome.provider = Some(std::sync::Arc::new(
            crate::config::model::ProviderSettings::mock("p"),
        ));
        outcome.upstream_model = Some("u".into());
        outcome.status = 200;
        outcome.usage = Some(crate::translate::Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            ..Default::default()
        });
        outcome.end();
        outcome
    }

    #[test]
    fn appends_lines_and_rotates_keeping_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let settings = UsageSettings {
            path: Some(path.clone()),
            max_bytes: 1000,
            keep: 2,
        };
        let log = UsageLog::open(&settings, Arc::default()).unwrap().unwrap();
        for i in 0..40 {
            log.append(&record(&format!("req-{i}")));
        }
        log.close();
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let mut ids = Vec::new();
        for p in [rotated(&path, 2), rotated(&path, 1), path.clone()] {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["status"], 200);
                assert!(v["error"].is_null());
                ids.push(v["request_id"].as_str().unwrap().to_owned());
            }
            assert!(std::fs::metadata(&p).unwrap().len() <= 1000 + 400);
        }
        // The newest lines survive, in order, with none duplicated.
        assert_eq!(ids.last().unwrap(), "req-39");
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn off_when_path_is_empty() {
        let settings = UsageSettings {
            path: None,
            max_bytes: 1,
            keep: 1,
        };
        assert!(UsageLog::open(&settings, Arc::default()).unwrap().is_none());
    }
}
