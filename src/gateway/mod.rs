//! The gateway: `noviqi serve`. Wires the config, the HTTP layer, the handlers, the limiter and
//! the usage log together, and keeps the config current.
//!
//! State owned here: the current [`Runtime`] (config + upstream clients) behind a lock that is
//! held only to clone an `Arc` (a request finishes on the runtime it started with, a reload
//! swaps in a new one), the rate limiter and lockout tables (which survive reloads, keyed by
//! key hash and address), the usage log, the dashboard's sessions and analytics, the metrics,
//! and the request-id counter.

mod admit;
mod finish;
mod handler;
mod proxy;
mod relay;
mod reload;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::admin::Admin;
use crate::cluster::Cluster;
use crate::config::{self, Config, Secrets};
use crate::cost::spend::Ledger;
use crate::http::{self, Server, ServerOptions};
use crate::limits::RateLimiter;
use crate::limits::lockout::Lockouts;
use crate::metrics::Metrics;
use crate::routing::{RouteTable, Targets};
use crate::upstream::{SetupError, Upstreams};
use crate::usage::UsageLog;

/// One loaded config, the upstream clients built for it and its routes' state.
pub struct Runtime {
    pub config: Config,
    pub upstreams: Upstreams,
    /// Bound to the gateway's [`Targets`] when the runtime is installed
    /// ([`Gateway::new`], [`Gateway::replace_runtime`]); empty until then.
    routes: RouteTable,
}

/// Why `noviqi serve` could not start (or keep running).
#[derive(Debug)]
pub enum StartError {
    Config(config::ConfigError),
    Upstream(SetupError),
    Tls(http::TlsError),
    UsageLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Signals(std::io::Error),
    Server(std::io::Error),
    Cluster(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Upstream(e) => e.fmt(f),
            StartError::Tls(e) => e.fmt(f),
            StartError::UsageLog { path, source } => {
                write!(f, "cannot open the usage log {}: {source}", path.display())
            }
            StartError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::Server(e) => write!(f, "server error: {e}"),
            StartError::Cluster(e) => write!(f, "cannot set up the cluster: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl Runtime {
    pub fn new(config: Config) -> Result<Runtime, SetupError> {
        let upstreams = Upstreams::new(&config)?;
        Ok(Runtime {
            config,
            upstreams,
            routes: RouteTable::default(),
        })
    }
}

/// Everything a request needs, shared by all connection threads.
pub struct Gateway {
    runtime: RwLock<Arc<Runtime>>,
    limiter: RateLimiter,
    lockout: Lockouts,
    usage: Option<UsageLog>,
    /// Spend per key and day (the usage log charges it; without a log, `finish` does).
    spend: Arc<Ledger>,
    admin: Admin,
    metrics: Metrics,
    /// Every configured target's health and load; survives reloads.
    targets: Targets,
    /// Shared state with the other instances (`[cluster]`); `None` = this instance alone.
    /// Built at start: a reload that changes `[cluster]` takes effect on restart.
    cluster: Option<Arc<Cluster>>,
    /// When this instance last published its dashboard buckets to the cluster.
    published: parking_lot::Mutex<Option<Instant>>,
    epoch: Instant,
    id_prefix: String,
    next_id: AtomicU64,
}

impl Gateway {
    pub fn new(mut runtime: Runtime) -> Result<Arc<Gateway>, StartError> {
        // Read the log back before it is opened for appending: the dashboard's aggregates
        // (every file) and the spend (the checkpoint and the active file), side by side.
        let usage_error = |source| StartError::UsageLog {
            path: runtime.config.usage.path.clone().unwrap_or_default(),
            source,
        };
        let settings = &runtime.config.usage;
        let (admin, spend) = std::thread::scope(|s| {
            let spend = s.spawn(|| match &settings.path {
                Some(path) => Ledger::restore(path, crate::clock::unix_secs() as i64),
                None => Ok(Ledger::default()),
            });
            let admin = Admin::new(settings);
            let spend = spend
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the spend reader panicked")));
            (admin, spend)
        });
        let spend = Arc::new(spend.map_err(usage_error)?);
        let metrics = Metrics::default();
        metrics.configure(&runtime.config);
        let usage = UsageLog::open(&runtime.config.usage, spend.clone()).map_err(usage_error)?;
        let mut prefix = [0u8; 4];
        rand::Rng::fill(&mut rand::rng(), &mut prefix[..]);
        let targets = Targets::default();
        runtime.routes = targets.bind(&runtime.config);
        let cluster = match &runtime.config.cluster {
            Some(settings) => Some(
                Cluster::new(
                    settings,
                    crate::cluster::instance_id(
                        runtime.config.server.listen,
                        settings_path(&runtime),
                    ),
                )
                .map_err(StartError::Cluster)?,
            ),
            None => None,
        };
        let gateway = Arc::new(Gateway {
            runtime: RwLock::new(Arc::new(runtime)),
            limiter: RateLimiter::new(),
            lockout: Lockouts::default(),
            usage,
            spend,
            admin,
            metrics,
            targets,
            cluster,
            published: parking_lot::Mutex::new(None),
            epoch: Instant::now(),
            id_prefix: hex::encode(prefix),
            next_id: AtomicU64::new(1),
        });
        if let Some(cluster) = &gateway.cluster {
            gateway.admin.share_sessions(cluster.clone());
            let weak = Arc::downgrade(&gateway);
            cluster.set_sync(Box::new(move |cluster| {
                if let Some(gateway) = weak.upgrade() {
                    gateway.sync_from(cluster);
                }
            }));
        }
        Ok(gateway)
    }

    /// Copies what the cluster shares and requests read locally: the locks set by any
    /// instance into this one's lockout table, and the targets' cooldowns into its routing
    /// table. Run by the cluster's prober.
    fn sync_from(&self, cluster: &Cluster) {
        match cluster.locked() {
            Ok(locks) => {
                let now = self.now();
                for (addr, left) in locks {
                    self.lockout.keys.lock(addr, now, now + left);
                }
            }
            Err(e) => log::debug!("cluster: cannot read the locks: {e}"),
        }
        match cluster.cooling() {
            Ok(cooling) => self.targets.apply_shared(&cooling, self.now()),
            Err(e) => log::debug!("cluster: cannot read the cooldowns: {e}"),
        }
        self.publish_aggregates(cluster);
    }

    /// Every [`crate::cluster::aggregates::PUBLISH_EVERY`]: this instance's newest dashboard
    /// buckets (all of them the first time, so its history shows in the cluster's dashboard).
    fn publish_aggregates(&self, cluster: &Cluster) {
        let mut last = self.published.lock();
        let first = last.is_none();
        if last.is_some_and(|at| at.elapsed() < crate::cluster::aggregates::PUBLISH_EVERY) {
            return;
        }
        let now = crate::admin::unix_now();
        let mut ok = true;
        for width in [60, 3600] {
            let from = if first {
                i64::MIN
            } else {
                (now.div_euclid(width) - 1) * width
            };
            let buckets = self.admin.export_buckets(width, from);
            // A few buckets per round trip: a long history must not hold one write past the
            // command timeout (which would mark Redis down for everything else).
            for chunk in buckets.chunks(8) {
                if let Err(e) = cluster.publish_buckets(width, chunk) {
                    log::debug!("cluster: dashboard buckets not published: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            *last = Some(Instant::now());
        }
    }

    /// The runtime requests start on now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.read().clone()
    }

    /// Swaps in a freshly loaded runtime; state of keys and targets that no longer exist is
    /// dropped.
    pub fn replace_runtime(&self, mut runtime: Runtime) {
        let live: std::collections::HashSet<_> =
            runtime.config.keys.iter().map(|k| k.hash).collect();
        self.metrics.configure(&runtime.config);
        runtime.routes = self.targets.bind(&runtime.config);
        *self.runtime.write() = Arc::new(runtime);
        self.limiter.retain_keys(|hash| live.contains(hash));
    }

    /// The clock the limiter and lockout tables run on.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The request's key, checked against this gateway's lockout tables.
    fn authenticate(
        &self,
        config: &Config,
        req: &crate::http::Request<'_>,
        ip: std::net::IpAddr,
    ) -> Result<Arc<crate::config::model::Key>, crate::error::ApiError> {
        crate::auth::authenticate(
            config,
            &self.lockout,
            self.cluster.as_deref(),
            req,
            ip,
            self.now(),
        )
    }

    fn new_request_id(&self) -> String {
        format_request_id(
            &self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// Flushes the usage log and the cluster's queued updates; called once at shutdown.
    pub fn close(&self) {
        if let Some(usage) = &self.usage {
            usage.close();
        }
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
    }
}

/// The usage log's path, which (with the host name) names this instance in the cluster.
fn settings_path(runtime: &Runtime) -> Option<&Path> {
    runtime.config.usage.path.as_deref()
}

/// The HTTP layer's options from the `[server]` table.
pub fn server_options(config: &Config) -> Result<ServerOptions, http::TlsError> {
    let s = &config.server;
    let tls = match &s.tls {
        Some(files) => Some(http::tls_config(&files.cert_file, &files.key_file)?),
        None => None,
    };
    Ok(ServerOptions {
        max_connections: s.max_connections,
        header_timeout: s.header_timeout,
        idle_timeout: s.idle_timeout,
        max_body_bytes: s.max_body_bytes,
        max_buffered_bytes: s.max_buffered_bytes,
        max_connections_per_ip: s.max_connections_per_ip,
        trusted_proxies: s.trusted_proxies.clone(),
        tls,
        ..ServerOptions::default()
    })
}

/// Runs `noviqi serve` on the config at `path` until SIGTERM/SIGINT.
pub fn run(path: &Path) -> Result<(), StartError> {
    let loaded = reload::stamp(path);
    let config = config::load(path, Secrets::Decrypt).map_err(StartError::Config)?;
    let listen = config.server.listen;
    let options = server_options(&config).map_err(StartError::Tls)?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let gateway = Gateway::new(Runtime::new(config).map_err(StartError::Upstream)?)?;
    let handler = Arc::new(handler::GatewayHandler(gateway.clone()));
    let server = Server::bind(listen, options, handler).map_err(|source| StartError::Listen {
        addr: listen,
        source,
    })?;
    let addr: SocketAddr = server.local_addr();
    // Signal handlers and the file watcher are in place before anyone is told we listen.
    let watcher = reload::Watcher::start(
        path.to_owned(),
        loaded,
        gateway.clone(),
        server.shutdown_handle(),
    )
    .map_err(StartError::Signals)?;
    log::info!("noviqi listening on {scheme}://{addr}");
    let result = server.run();
    watcher.stop();
    gateway.close();
    log::info!("noviqi stopped");
    result.map_err(StartError::Server)
}

/// `req_` + the process's random prefix + the counter in at least 8 hex digits, written by
/// hand: `format!` cost more than the rest of the request's bookkeeping around it.
fn format_request_id(prefix: &str, n: u64) -> String {
    let mut id = String::with_capacity(4 + prefix.len() + 16);
    id.push_str("req_");
    id.push_str(prefix);
    id.push_str(crate::http::Hex::new(n, 8).as_str());
    id
}

#[cfg(test)]
mod tests {
    use super::format_request_id;

    #[test]
    fn request_ids_are_the_prefix_and_at_least_eight_hex_digits() {
        for n in [0, 1, 0xabc, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            assert_eq!(format_request_id("0f1e2d", n), format!("req_0f1e2d{n:08x}"));
        }
    }
}
