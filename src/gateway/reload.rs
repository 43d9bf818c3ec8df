//! Keeping the config current and stopping cleanly: a thread that reloads the config when the
//! file changes (checked once a second) or on SIGHUP, and turns SIGTERM/SIGINT into a graceful
//! shutdown of the server.
//!
//! A new config is swapped in only if it loads, validates and decrypts; otherwise one error
//! line is logged and the old config keeps serving. `[server]` and `[usage]` settings are read
//! at start only (a change is logged as needing a restart).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::{Gateway, Runtime};
use crate::config::{self, Secrets};
use crate::http::ShutdownHandle;

/// How often the config file's metadata is compared.
const POLL: Duration = Duration::from_secs(1);

enum Event {
    Reload,
    Stop,
}

pub struct Watcher {
    events: Sender<Event>,
    signals: Handle,
    threads: Vec<JoinHandle<()>>,
}

/// What identifies one version of the file: a rename (`keys add`) changes the inode.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The file's stamp now. Taken before the config is first loaded, so an edit made while the
/// server starts is seen as a change rather than missed.
pub fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

impl Watcher {
    /// `loaded` is the stamp taken before the running config was read.
    pub fn start(
        path: PathBuf,
        loaded: Option<FileStamp>,
        gateway: Arc<Gateway>,
        shutdown: ShutdownHandle,
    ) -> std::io::Result<Watcher> {
        let (events, inbox) = mpsc::channel();
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
        let handle = signals.handle();
        let to_reloader = events.clone();
        let signal_thread = thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        let _ = to_reloader.send(Event::Reload);
                    } else {
                        log::info!("shutting down: finishing in-flight requests");
                        shutdown.shutdown();
                    }
                }
            })?;
        let reload_thread =
            thread::Builder::new()
                .name("config-reload".into())
                .spawn(move || {
                    let mut last = loaded;
                    loop {
                        match inbox.recv_timeout(POLL) {
                            Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                            Ok(Event::Reload) => {
                                // SIGHUP: load the file even if it looks unchanged.
                                last = stamp(&path);
                                let _ = reload_when(&path, &gateway, false);
                            }
                            Err(RecvTimeoutError::Timeout) => {
                                let now = stamp(&path);
                                if now.is_some() && now != last {
                                    last = now;
                                    let _ = reload(&path, &gateway);
                                }
                            }
                        }
                    }
                })?;
        Ok(Watcher {
            events,
            signals: handle,
            threads: vec![signal_thread, reload_thread],
        })
    }

    pub fn stop(self) {
        let _ = self.events.send(Event::Stop);
        self.signals.close();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Loads the file and swaps it in, or logs why not (and returns it, for the admin key API,
/// which reloads at once after writing the file).
///
/// Nothing when the running config was already loaded, by a reload, from the file as it is
/// now: the key API reloads at once after writing, and the watcher's next poll then sees the
/// same file (and the other way round), so each version of the file is loaded once.
pub(super) fn reload(path: &std::path::Path, gateway: &Gateway) -> Result<(), String> {
    reload_when(path, gateway, true)
}

/// The stamp of the file the running config was last loaded from by a reload, behind the lock
/// that makes reloads one at a time, each reading the file inside its turn: otherwise the
/// watcher could read the file just before the key API rewrites it and swap that older config
/// in after the API's own reload (a revoked key working again until the next poll).
static LOADED: parking_lot::Mutex<Option<FileStamp>> = parking_lot::Mutex::new(None);

fn reload_when(
    path: &std::path::Path,
    gateway: &Gateway,
    only_if_changed: bool,
) -> Result<(), String> {
    let mut loaded_stamp = LOADED.lock();
    let now = stamp(path);
    if only_if_changed && now.is_some() && *loaded_stamp == now {
        return Ok(());
    }
    let loaded = config::load(path, Secrets::Decrypt)
        .map_err(|e| e.to_string())
        .and_then(|config| Runtime::new(config).map_err(|e| e.to_string()));
    match loaded {
        Ok(runtime) => {
            let old = gateway.runtime();
            if old.config.server != runtime.config.server
                || old.config.usage != runtime.config.usage
            {
                log::warn!("config reloaded; [server] and [usage] changes take effect on restart");
            } else {
                log::info!("config reloaded from {}", path.display());
            }
            gateway.replace_runtime(runtime);
            gateway.metrics.reload(true);
            *loaded_stamp = now;
            Ok(())
        }
        Err(e) => {
            gateway.metrics.reload(false);
            log::error!("config reload refused, keeping the running config: {e}");
            Err(e)
        }
    }
}
