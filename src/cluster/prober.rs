//! Reconnecting and syncing: while Redis is marked down, one thread tries it with backoff (1 s
//! doubling to 10 s) so that requests never wait on a connect; the first success marks it up
//! again. While it is up, the same thread runs the gateway's sync hook (copying the cluster's
//! locks into the local tables) every half second.
//!
//! State owned here: the thread and its stop flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Cluster;

#[derive(Default)]
pub(super) struct Prober {
    stop: AtomicBool,
    wake: Condvar,
    lock: Mutex<()>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Prober {
    /// Ends the thread (at once: it only ever waits on this).
    pub(super) fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn start(cluster: &Arc<Cluster>) {
    let weak = Arc::downgrade(cluster);
    let spawned = std::thread::Builder::new()
        .name("noviqi-cluster".into())
        .stack_size(256 * 1024)
        .spawn(move || run(&weak));
    match spawned {
        Ok(thread) => *cluster.prober.thread.lock() = Some(thread),
        Err(e) => log::error!("cluster: cannot start the reconnect thread: {e}"),
    }
}

fn run(cluster: &Weak<Cluster>) {
    let mut backoff = Duration::from_secs(1);
    let mut next = Instant::now();
    loop {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        if c.prober.stop.load(Ordering::Relaxed) {
            return;
        }
        if c.is_up() {
            backoff = Duration::from_secs(1);
            next = Instant::now() + backoff;
            c.run_sync();
        } else if Instant::now() >= next {
            backoff = if c.probe() {
                Duration::from_secs(1)
            } else {
                (backoff * 2).min(Duration::from_secs(10))
            };
            next = Instant::now() + backoff;
        }
        let mut guard = c.prober.lock.lock();
        if !c.prober.stop.load(Ordering::Relaxed) {
            c.prober.wake.wait_for(&mut guard, super::lockouts::POLL);
        }
    }
}
