//! Several instances as one gateway: the state that must be exact across replicas lives in
//! Redis (or Valkey), changed only by the atomic scripts in [`scripts`], on the server's clock.
//!
//! State owned here: a bounded pool of Redis connections (every command under a timeout),
//! whether Redis is up, the error count, and the reconnect thread ([`prober`]). When Redis
//! cannot be reached the caller applies `on_redis_error`: `local` enforces with this
//! instance's own tables, `closed` refuses proxied requests. Requests never wait for a
//! reconnect: while Redis is down, calls fail at once and the prober tries it with backoff;
//! one line is logged when it goes down and one when it is back.
//!
//! Keys: `<prefix>{k:<32 hex of the key's hash>}:…` for a gateway key's windows and budget (one
//! hash tag, so a script touching several of them works on Redis Cluster too).

pub mod aggregates;
pub mod cooldowns;
mod limits;
pub mod lockouts;
mod packed;
mod prober;
pub mod scripts;
pub mod sessions;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::{Connection, IntoConnectionInfo};

pub use limits::{ClusterDecision, Spend};

use crate::config::model::{ClusterSettings, OnRedisError};

/// Connecting, and every command, gives up after this long.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 128;
/// Replies a pooled connection may owe before a `send_only` reads them first.
const MAX_OWED: usize = 16;

/// Why a call to Redis failed (never holds the password or the URL's credentials).
#[derive(Debug)]
pub struct ClusterError(String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        // The kind and the server's message: no connection info, so no credentials.
        let detail = e.detail().unwrap_or("");
        ClusterError(format!("{:?} {detail}", e.kind()).trim().to_owned())
    }
}

/// An idle connection, how many replies to commands sent on it are still unread, and the
/// buffer its `admit` and `settle` commands are packed into ([`packed`]).
struct Pooled {
    con: Connection,
    owed: usize,
    out: Vec<u8>,
}

impl Pooled {
    fn new(con: Connection) -> Pooled {
        Pooled {
            con,
            owed: 0,
            out: Vec::new(),
        }
    }
}

/// The scripts, ready to run by SHA-1.
struct Scripts {
    admit: redis::Script,
    settle: redis::Script,
    fail: redis::Script,
    live: redis::Script,
    cool: redis::Script,
}

/// The shared state's client.
pub struct Cluster {
    client: redis::Client,
    prefix: String,
    policy: OnRedisError,
    /// Identifies this instance's share of shared sums (its spend): stable across restarts of
    /// the same instance (its host name and usage log).
    instance: String,
    idle: Mutex<Vec<Pooled>>,
    up: AtomicBool,
    errors: AtomicU64,
    scripts: Scripts,
    prober: prober::Prober,
    /// Unique window members: this process's random name and a counter (the instance id
    /// survives restarts, and a restarted counter must not reuse a member still in a window).
    run: String,
    next: AtomicU64,
    /// Run by the prober every [`lockouts::POLL`] while Redis is up: copies shared state that
    /// requests read locally (locks) into the gateway's tables.
    sync: Mutex<Option<SyncHook>>,
}

/// See [`Cluster::set_sync`].
pub type SyncHook = Box<dyn Fn(&Cluster) + Send + Sync>;

impl Cluster {
    /// A client for `settings` (no connection is made yet); `instance` names this instance's
    /// share of shared sums.
    pub fn new(settings: &ClusterSettings, instance: String) -> Result<Arc<Cluster>, String> {
        let mut info = settings
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("cluster.redis_url: {}", ClusterError::from(e)))?;
        if let Some(password) = &settings.password {
            let redis = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(redis);
        }
        // Small commands, each waited for or sent before a response's last byte: Nagle's
        // algorithm would hold one back until the reply to the one before it came in.
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)
            .map_err(|e| format!("cluster.redis_url: {}", ClusterError::from(e)))?;
        let cluster = Arc::new(Cluster {
            client,
            prefix: settings.key_prefix.clone(),
            policy: settings.on_redis_error,
            instance,
            idle: Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            scripts: Scripts {
                admit: redis::Script::new(scripts::ADMIT),
                settle: redis::Script::new(scripts::SETTLE),
                fail: redis::Script::new(scripts::FAIL),
                live: redis::Script::new(scripts::LIVE),
                cool: redis::Script::new(scripts::COOL),
            },
            prober: prober::Prober::default(),
            run: {
                let mut bytes = [0u8; 6];
                rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
                hex::encode(bytes)
            },
            next: AtomicU64::new(0),
            sync: Mutex::new(None),
        });
        prober::start(&cluster);
        Ok(cluster)
    }

    pub fn policy(&self) -> OnRedisError {
        self.policy
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Calls that failed since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Installs what the prober runs every [`lockouts::POLL`] while Redis is up.
    pub fn set_sync(&self, hook: SyncHook) {
        *self.sync.lock() = Some(hook);
    }

    fn run_sync(&self) {
        if let Some(hook) = self.sync.lock().as_ref() {
            hook(self);
        }
    }

    /// Reads every reply still owed on the idle connections: after this, every write sent so
    /// far has been applied by Redis (and any that failed is counted).
    pub fn settle_writes(&self) {
        let pooled: Vec<Pooled> = std::mem::take(&mut *self.idle.lock());
        for mut p in pooled {
            while p.owed > 0 {
                match p.con.recv_response() {
                    Ok(redis::Value::ServerError(_)) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        p.owed -= 1;
                    }
                    Ok(_) => p.owed -= 1,
                    Err(e) => {
                        let _ = self.failed(e.into());
                        break;
                    }
                }
            }
            if p.owed == 0 {
                self.checkin(p);
            }
        }
    }

    /// Reads the owed replies and stops the reconnect thread.
    pub fn close(&self) {
        self.settle_writes();
        self.prober.close();
    }

    /// Runs `f` on a pooled connection. While Redis is marked down this fails at once (the
    /// writer thread probes and marks it up again).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection, &Scripts) -> redis::RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let mut pooled = self.checkout()?;
        match f(&mut pooled.con, &self.scripts) {
            Ok(value) => {
                self.checkin(pooled);
                Ok(value)
            }
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// Sends the command `pack` writes (see [`packed`]) and returns its reply. Replies still
    /// owed on the connection are read after the command is sent, so a settle's reply that
    /// has not come in yet costs no wait of its own: one wait covers both. A script the server
    /// no longer has (`SCRIPT FLUSH`) is loaded again on this connection and the command sent
    /// once more.
    fn call(&self, pack: impl FnOnce(&mut Vec<u8>)) -> Result<redis::Value, ClusterError> {
        let mut pooled = self.pop()?;
        pack(&mut pooled.out);
        let mut reply = self.exchange(&mut pooled);
        if let Ok(redis::Value::ServerError(e)) = &reply
            && e.kind() == Some(redis::ServerErrorKind::NoScript)
        {
            reply = self
                .load_scripts(&mut pooled.con)
                .and_then(|()| self.exchange(&mut pooled));
        }
        match reply {
            Ok(redis::Value::ServerError(e)) => Err(self.failed(redis::RedisError::from(e).into())),
            Ok(value) => {
                self.checkin(pooled);
                Ok(value)
            }
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// Sends `pooled.out`, reads the replies owed before it (counting any that is an error),
    /// then its own.
    fn exchange(&self, pooled: &mut Pooled) -> redis::RedisResult<redis::Value> {
        pooled.con.send_packed_command(&pooled.out)?;
        while pooled.owed > 0 {
            let owed = pooled.con.recv_response()?;
            pooled.owed -= 1;
            if let redis::Value::ServerError(e) = owed {
                self.errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("cluster: a write was refused: {:?}", e.kind());
            }
        }
        pooled.con.recv_response()
    }

    /// Sends the command `pack` writes without waiting for its reply, which the connection's
    /// next user reads: for writes whose result nobody waits on (a response's settle), this
    /// takes the round trip off the request's path. Replies are still read, in order, so an
    /// error is seen and counted; a connection owing [`MAX_OWED`] reads them before sending.
    fn send_only(&self, pack: impl FnOnce(&mut Vec<u8>)) -> Result<(), ClusterError> {
        let mut pooled = self.pop()?;
        if pooled.owed >= MAX_OWED {
            pooled = self.settled(pooled)?;
        }
        pack(&mut pooled.out);
        match pooled.con.send_packed_command(&pooled.out) {
            Ok(()) => {
                pooled.owed += 1;
                self.checkin(pooled);
                Ok(())
            }
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// A pooled connection (or a new one), replies owed or not.
    fn pop(&self) -> Result<Pooled, ClusterError> {
        if !self.is_up() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(ClusterError("Redis is unreachable".to_owned()));
        }
        let pooled = self.idle.lock().pop();
        match pooled {
            Some(pooled) => Ok(pooled),
            None => self.checkout_fresh(),
        }
    }

    /// A pooled connection (or a new one) with no replies owed.
    fn checkout(&self) -> Result<Pooled, ClusterError> {
        let pooled = self.pop()?;
        self.settled(pooled)
    }

    /// `pooled` once the replies it owes are read.
    fn settled(&self, mut pooled: Pooled) -> Result<Pooled, ClusterError> {
        while pooled.owed > 0 {
            match pooled.con.recv_response() {
                Ok(redis::Value::ServerError(e)) => {
                    // The command failed (e.g. NOSCRIPT after a SCRIPT FLUSH): count it, and
                    // start over on a new connection, which loads the scripts again.
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("cluster: a write was refused: {:?}", e.kind());
                    return self.checkout_fresh();
                }
                Ok(_) => pooled.owed -= 1,
                Err(e) => return Err(self.failed(e.into())),
            }
        }
        Ok(pooled)
    }

    fn checkout_fresh(&self) -> Result<Pooled, ClusterError> {
        match self.connect() {
            Ok(con) => Ok(Pooled::new(con)),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn checkin(&self, pooled: Pooled) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(pooled);
        }
    }

    /// A new connection with its timeouts set and the scripts loaded (so pipelined `EVALSHA`s
    /// find them; a server restart breaks the connection, and the next one loads them again).
    fn connect(&self) -> Result<Connection, ClusterError> {
        let mut con = self.client.get_connection_with_timeout(TIMEOUT)?;
        con.set_read_timeout(Some(TIMEOUT))?;
        con.set_write_timeout(Some(TIMEOUT))?;
        self.load_scripts(&mut con)?;
        Ok(con)
    }

    fn load_scripts(&self, con: &mut Connection) -> redis::RedisResult<()> {
        let Scripts {
            admit,
            settle,
            fail,
            live,
            cool,
        } = &self.scripts;
        for script in [admit, settle, fail, live, cool] {
            script.prepare_invoke().load(con)?;
        }
        Ok(())
    }

    /// Counts a failure; the first after a success marks Redis down and logs one line.
    fn failed(&self, e: ClusterError) -> ClusterError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            self.idle.lock().clear();
            let policy = match self.policy {
                OnRedisError::Local => "enforcing limits with this instance's own state",
                OnRedisError::Closed => "refusing proxied requests (on_redis_error = \"closed\")",
            };
            log::warn!("cluster: Redis is unreachable ({e}); {policy} until it is back");
        }
        e
    }

    /// Whether Redis answers a PING now; marks it up (and logs one line) when it does again.
    fn probe(&self) -> bool {
        let ok = self
            .connect()
            .and_then(|mut con| {
                redis::cmd("PING").query::<String>(&mut con)?;
                Ok(con)
            })
            .map(|con| self.checkin(Pooled::new(con)))
            .is_ok();
        if ok && !self.up.swap(true, Ordering::Relaxed) {
            log::info!("cluster: Redis is reachable again; shared state is back in use");
        }
        ok
    }

    /// A unique member for a window (the same run, counter scheme as the admit's, whose
    /// member is written in place in `limits.rs`).
    fn member(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.run)
    }
}

/// A stable name for this instance's share of shared sums: a hash of the host name, the
/// listen address and the usage log's path (the same after a restart, different for two
/// instances on one host).
pub fn instance_id(listen: std::net::SocketAddr, usage_path: Option<&std::path::Path>) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut hasher = sha2::Sha256::new();
    hasher.update(host.trim().as_bytes());
    hasher.update([0]);
    hasher.update(listen.to_string().as_bytes());
    hasher.update([0]);
    if let Some(path) = usage_path {
        let path = std::fs::canonicalize(path.parent().unwrap_or(path))
            .map(|dir| dir.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|_| path.to_owned());
        hasher.update(path.as_os_str().as_encoded_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}
