//! Usage records: one JSON line per request, appended durably.
//!
//! Owns the open usage log. Each record is written with a single `write` on an append-mode
//! file before the response's last byte goes out, so a crash of the process loses no line of a
//! completed response (the kernel has it); a background thread `fdatasync`s at least once a
//! second while there are unsynced lines, and `close` syncs once more. Past `max_bytes` the
//! file is rotated: `usage.jsonl` → `usage.jsonl.1` → … → `usage.jsonl.<keep>`, the oldest
//! dropped.

use std::fs::{File, OpenOptions};
use std::cell::RefCell;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::config::model::UsageSettings;

/// One request's usage line. Field names are the contract (PRODUCT.md, "Usage log line").
/// Borrowed: the gateway writes it from the request's own state without copying.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UsageRecord<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub ts: &'a str,
    pub request_id: &'a str,
    /// The key's name; `None` when the request never authenticated.
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub upstream_model: Option<&'a str>,
    pub endpoint: &'a str,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// `None` on success; a short code otherwise.
    pub error: Option<&'a str>,
    /// A bare address, written as text.
    pub client_ip: IpAddr,
}

/// The current time as the usage log writes it.
pub fn timestamp_now() -> String {
    crate::clock::Stamp::now().rfc3339_millis()
}

/// The usage log writer; cheap to share (`Arc`) across connection threads.
pub struct UsageLog {
    inner: Arc<Shared>,
    flusher: Mutex<Option<thread::JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
}

struct State {
    file: File,
    size: u64,
    dirty: bool,
    closed: bool,
}

impl UsageLog {
    /// Opens (creating, mode 0600) the log at `settings.path`; `Ok(None)` when usage logging is
    /// off.
    pub fn open(settings: &UsageSettings) -> io::Result<Option<UsageLog>> {
        let Some(path) = &settings.path else {
            return Ok(None);
        };
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let inner = Arc::new(Shared {
            state: Mutex::new(State {
                file,
                size,
                dirty: false,
                closed: false,
            }),
            wake: Condvar::new(),
            path: path.clone(),
            max_bytes: settings.max_bytes,
            keep: settings.keep,
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
    pub fn append(&self, record: &UsageRecord<'_>) {
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
            self.write_line(&line);
        });
    }

    fn write_line(&self, line: &[u8]) {
        let mut state = self.inner.state.lock();
        if state.closed {
            return;
        }
        if let Err(e) = state.file.write_all(line) {
            log::error!("usage log {}: write failed: {e}", self.inner.path.display());
            return;
        }
        state.size += line.len() as u64;
        state.dirty = true;
        if state.size >= self.inner.max_bytes {
            if let Err(e) = self.inner.rotate(&mut state) {
                log::error!(
                    "usage log {}: rotation failed: {e}",
                    self.inner.path.display()
                );
            }
        }
    }

    /// Syncs what was written and stops the background thread. Later appends are dropped.
    pub fn close(&self) {
        {
            let mut state = self.inner.state.lock();
            if let Err(e) = state.file.sync_data() {
                log::error!("usage log {}: sync failed: {e}", self.inner.path.display());
            }
            state.dirty = false;
            state.closed = true;
        }
        self.inner.wake.notify_all();
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
    fn rotate(&self, state: &mut State) -> io::Result<()> {
        state.file.sync_data()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..self.keep).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        state.file = open_append(&self.path)?;
        state.size = 0;
        state.dirty = false;
        Ok(())
    }
}

/// `usage.jsonl.N`: the Nth most recent rotated file.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn flush_loop(shared: &Shared) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let mut state = shared.state.lock();
    while !state.closed {
        shared.wake.wait_for(&mut state, Duration::from_secs(1));
        if state.dirty && !state.closed {
            // Sync a duplicate handle outside the lock so appends never wait on the disk.
            let file = state.file.try_clone();
            state.dirty = false;
            drop(state);
            if let Err(e) = file.and_then(|f| f.sync_data()) {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    log::error!("usage log {}: sync failed: {e}", shared.path.display());
                }
            }
            state = shared.state.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(ts: &'a str, id: &'a str) -> UsageRecord<'a> {
        UsageRecord {
            ts,
            request_id: id,
            key: Some("laptop"),
            model: Some("m"),
            provider: Some("p"),
            upstream_model: Some("u"),
            endpoint: "/v1/chat/completions",
            stream: false,
            status: 200,
            latency_ms: 3,
            ttfb_ms: 2,
            prompt_tokens: Some(1),
            completion_tokens: Some(2),
            error: None,
            client_ip: IpAddr::from([127, 0, 0, 1]),
        }
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
        let log = UsageLog::open(&settings).unwrap().unwrap();
        for i in 0..40 {
            log.append(&record(&timestamp_now(), &format!("req-{i}")));
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
        assert!(UsageLog::open(&settings).unwrap().is_none());
    }

    #[test]
    fn timestamp_is_rfc3339_millis() {
        let parsed = time::OffsetDateTime::parse(
            &timestamp_now(),
            &time::format_description::well_known::Rfc3339,
        );
        assert!(parsed.is_ok());
    }
}
