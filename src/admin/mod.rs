//! The admin dashboard (`/admin`), its JSON API (`/admin/api/*`) and `GET /metrics`.
//!
//! State owned here: the session table, the usage analytics (with each key's last use), the
//! audit log writer ([`audit`]), and the one password
//! [`Verifier`] with its Argon2 memory (`m` KiB of the hash, 19 MiB by default), behind a lock:
//! one verification at a time (each costs tens of milliseconds of CPU and that memory), and a
//! login that finds it busy is refused at once with 503 and `Retry-After: 1` instead of
//! queueing, so neither threads nor memory pile up behind a flood. Everything else — the
//! config, the lockout tables, the metrics, key authentication — is the gateway's, handed in
//! per request as [`Deps`].
//!
//! Rules: the whole `/admin` tree is 404 while no admin password hash is configured. State
//! changes (`POST /admin/login`, `POST /admin/logout`, the key API's POST and PATCH) must come
//! from the same origin (`Sec-Fetch-Site: same-origin|none`; without that header, an `Origin`
//! naming another host is refused), and logout and the key API also need the session's CSRF
//! token (the key API: in `x-csrf-token`) unless they carry an `admin = true` key instead.
//! `Origin: null` alone proves nothing: Chromium sends it on same-origin form posts from a
//! `no-referrer` page. The key API itself is [`keys`]; it writes the config through
//! [`crate::config::edit::ConfigLock`] and reloads through [`Deps::reload`].
//!
//! Login and the lockout: an address locked by either lockout table is refused (429) before the
//! form is read. A login that gets the verifier is then counted as a failure in the login table
//! *before* its password is verified ([`admit`], which refuses a locked address in the
//! same step), and a correct password clears the login streak. So at most
//! `lockout_max_failures` passwords are ever verified per streak, whatever the concurrency; a
//! login refused as busy is not counted (its password was not tried). Only a login clears the
//! login streak: a valid API key does not, so a key holder cannot reset the count of guesses.
//! Every admin response carries the security headers of [`web::secure`].
//!
//! [`admit`]: crate::limits::lockout::Lockout::admit

pub mod analytics;
pub mod audit;
pub mod keys;
pub mod session;
mod web;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::auth::credential;
use crate::cluster::Cluster;
use crate::cluster::lockouts::{Failure, Streak};
use crate::config::Config;
use crate::config::model::{AdminSettings, Key, UsageSettings};
use crate::cost::spend::Ledger;
use crate::crypto::password::Verifier;
use crate::error::{ApiError, Dialect, Kind};
use crate::http::{Request, Response};
use crate::limits::lockout::{self, Lockouts};
use crate::metrics::Metrics;
use crate::routing::{State, TargetView, Targets};

use analytics::{Analytics, Range, Sample, SharedCell};
use audit::{Action, Actor, AuditLog};
use keys::Caller;
use session::Sessions;

/// Largest login or logout form accepted.
const MAX_FORM_BYTES: u64 = 4096;

/// What the admin handlers borrow from the gateway for one request.
pub struct Deps<'a> {
    pub config: &'a Config,
    pub lockout: &'a Lockouts,
    /// The lockout tables' clock.
    pub now: Duration,
    pub client_ip: IpAddr,
    /// The client spoke HTTPS (to us, or to a trusted proxy that says so): cookies are
    /// `Secure`.
    pub https: bool,
    pub metrics: &'a Metrics,
    /// Spend per key (for budgets in `/metrics` and the dashboard).
    pub spend: &'a Ledger,
    /// Every configured target's health and load.
    pub targets: &'a Targets,
    /// Shared state with the other instances, when clustered.
    pub cluster: Option<&'a Cluster>,
    /// The gateway's key authentication (lockout-aware).
    pub authenticate: &'a dyn Fn(&Request<'_>) -> Result<Arc<Key>, ApiError>,
    /// Reloads the running config from its file now (after the key API wrote it); the error
    /// is for the log.
    pub reload: &'a dyn Fn() -> Result<(), String>,
}

/// The dashboard's state.
pub struct Admin {
    sessions: Sessions,
    analytics: Analytics,
    verifier: Mutex<Verifier>,
    audit: AuditLog,
}

impl Admin {
    /// A dashboard whose analytics start from the usage log at `usage` (rotated files too).
    pub fn new(usage: &UsageSettings) -> Admin {
        let admin = Admin {
            sessions: Sessions::default(),
            analytics: Analytics::default(),
            verifier: Mutex::new(Verifier::default()),
            audit: AuditLog::default(),
        };
        let started = Instant::now();
        let lines = admin.analytics.read_back(usage, unix_now());
        if lines > 0 {
            log::info!(
                "usage analytics: read back {lines} lines in {}ms",
                started.elapsed().as_millis()
            );
        }
        admin
    }

    /// Counts one finished request in the analytics (one short lock).
    pub fn record(&self, outcome: &crate::outcome::Outcome) {
        let sample = Sample::of(outcome);
        self.analytics.record(&sample, unix_now().max(sample.ts));
    }

    /// Shares the dashboard's sessions through the cluster from now on.
    pub fn share_sessions(&self, cluster: Arc<Cluster>) {
        self.sessions.share(cluster);
    }

    /// This instance's analytics buckets of the tier `width` from `from` on, serialised for
    /// the other instances of a cluster.
    pub fn export_buckets(&self, width: i64, from: i64) -> Vec<(i64, String)> {
        self.analytics
            .export(width, from)
            .into_iter()
            .filter_map(|(start, cells)| Some((start, serde_json::to_string(&cells).ok()?)))
            .collect()
    }

    /// Counts one attempt at a configured target for the dashboard's targets table.
    pub fn record_attempt(&self, target: &Arc<str>, failed: bool, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.analytics
            .record_attempt(target, failed, ms, unix_now());
    }

    /// Answers any request under `/admin`.
    pub fn handle(&self, deps: &Deps<'_>, req: &mut Request<'_>) -> Response {
        let Some(settings) = &deps.config.admin else {
            return web::secure(web::text(404, "not found\n"));
        };
        let response = self.route(deps, settings, req);
        web::secure(response)
    }

    fn route(&self, deps: &Deps<'_>, settings: &AdminSettings, req: &mut Request<'_>) -> Response {
        let method = req.method();
        let get = method == "GET" || method == "HEAD";
        let path = req.path();
        match path {
            "/admin" | "/admin/" if get => match self.session(settings, req) {
                Some((_, csrf)) => web::dashboard(&csrf),
                None => web::login_page(200, None),
            },
            "/admin/login" if method == "POST" => self.login(deps, settings, req),
            "/admin/logout" if method == "POST" => self.logout(deps, settings, req),
            "/admin/keys" if get => match self.session(settings, req) {
                Some((_, csrf)) => web::keys_page(&csrf),
                None => web::redirect("/admin"),
            },
            "/admin/assets/app.js" if get => web::asset_js(),
            "/admin/assets/app.css" if get => web::asset_css(),
            "/admin/assets/keys.js" if get => web::asset_keys_js(),
            "/admin/assets/keys.css" if get => web::asset_keys_css(),
            "/admin/login" if get => web::redirect("/admin"),
            "/admin/api/usage" if get => match self.authorize(deps, settings, req) {
                Ok(()) => self.usage_api(deps, req.query()),
                Err(e) => error(&e),
            },
            "/admin/api/keys" if get => match self.authorize(deps, settings, req) {
                Ok(()) => self.keys_list(deps),
                Err(e) => error(&e),
            },
            "/admin/api/audit" if get => match self.authorize(deps, settings, req) {
                Ok(()) => self.audit_api(settings),
                Err(e) => error(&e),
            },
            "/admin/api/keys" if method == "POST" => {
                match self.authorize_write(deps, settings, req) {
                    Ok(caller) => self.keys_create(deps, settings, &caller, req),
                    Err(e) => error(&e),
                }
            }
            "/admin"
            | "/admin/"
            | "/admin/keys"
            | "/admin/assets/app.js"
            | "/admin/assets/app.css"
            | "/admin/assets/keys.js"
            | "/admin/assets/keys.css"
            | "/admin/api/usage"
            | "/admin/api/audit" => error(&api_error(Kind::MethodNotAllowed, "use GET"))
                .with_header("allow", "GET, HEAD"),
            "/admin/api/keys" => error(&api_error(Kind::MethodNotAllowed, "use GET or POST"))
                .with_header("allow", "GET, HEAD, POST"),
            "/admin/login" | "/admin/logout" => {
                error(&api_error(Kind::MethodNotAllowed, "use POST")).with_header("allow", "POST")
            }
            _ if path.starts_with("/admin/api/keys/") => self.key_route(deps, settings, req),
            _ if path.starts_with("/admin/api/") => {
                error(&api_error(Kind::NotFound, "no such admin endpoint"))
            }
            _ => web::text(404, "not found\n"),
        }
    }

    /// `PATCH /admin/api/keys/NAME` and `POST /admin/api/keys/NAME/revoke`.
    fn key_route(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        req: &mut Request<'_>,
    ) -> Response {
        let rest = req
            .path()
            .strip_prefix("/admin/api/keys/")
            .unwrap_or_default();
        let (segment, revoke) = match rest.strip_suffix("/revoke") {
            Some(segment) => (segment, true),
            None => (rest, false),
        };
        let Some(name) = keys::decode_name(segment).filter(|_| !segment.contains('/')) else {
            return error(&api_error(Kind::NotFound, "no such admin endpoint"));
        };
        let wanted = if revoke { "POST" } else { "PATCH" };
        if req.method() != wanted {
            return error(
                &ApiError::new(Kind::MethodNotAllowed).with_message(format!("use {wanted}")),
            )
            .with_header("allow", wanted);
        }
        let caller = match self.authorize_write(deps, settings, req) {
            Ok(caller) => caller,
            Err(e) => return error(&e),
        };
        if revoke {
            self.keys_revoke(deps, settings, &caller, &name)
        } else {
            self.keys_patch(deps, settings, &caller, &name, req)
        }
    }

    /// `GET /metrics`: the exposition text to an admin session or an `admin = true` key.
    pub fn metrics(&self, deps: &Deps<'_>, req: &Request<'_>) -> Response {
        let method = req.method();
        if method != "GET" && method != "HEAD" {
            return error(&api_error(Kind::MethodNotAllowed, "use GET"))
                .with_header("allow", "GET, HEAD");
        }
        let settings = deps.config.admin.as_ref();
        let authorized = match settings {
            Some(s) => self.authorize(deps, s, req),
            None => authorize_key(deps, req),
        };
        match authorized {
            Ok(()) => Response::bytes(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                deps.metrics.render_all(
                    deps.config,
                    deps.spend,
                    &deps.targets.views(deps.now),
                    deps.cluster,
                    unix_now(),
                ),
            )
            .with_header("cache-control", "no-store"),
            Err(e) => error(&e),
        }
    }

    /// The live session named by the request's cookie: (id, CSRF token).
    fn session(&self, settings: &AdminSettings, req: &Request<'_>) -> Option<(String, String)> {
        let id = web::session_cookie(req)?;
        let csrf = self
            .sessions
            .get(id, &settings.password_hash, Instant::now())?;
        Some((id.to_owned(), csrf))
    }

    /// A session, or else an `admin = true` key in `Authorization`.
    fn authorize(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        req: &Request<'_>,
    ) -> Result<(), ApiError> {
        if self.session(settings, req).is_some() {
            return Ok(());
        }
        authorize_key(deps, req)
    }

    /// Who may change keys: any request must come from our own page or from no browser at all
    /// ([`web::same_origin`]); then a session with its CSRF token in `x-csrf-token`, or else
    /// an `admin = true` key.
    fn authorize_write(
        &self,
        deps: &Deps<'_>,
        settings: &AdminSettings,
        req: &Request<'_>,
    ) -> Result<Caller, ApiError> {
        if !web::same_origin(req) {
            return Err(ApiError::new(Kind::CrossSite));
        }
        if let Some((_, csrf)) = self.session(settings, req) {
            let token = req.header("x-csrf-token").map(str::trim);
            return if token.is_some_and(|t| session::tokens_match(t, &csrf)) {
                Ok(Caller::Session)
            } else {
                Err(ApiError::new(Kind::CrossSite)
                    .with_message("missing or wrong CSRF token (send it as x-csrf-token)"))
            };
        }
        let key = authenticate_admin_key(deps, req)?;
        Ok(Caller::Key(key))
    }

    /// One sign-in, lockout or sign-out line in the audit log.
    fn audit_login(&self, deps: &Deps<'_>, settings: &AdminSettings, action: Action, ok: bool) {
        self.audit.record(
            settings.audit_path.as_deref(),
            &audit::Entry {
                actor: Actor::Session,
                client_ip: deps.client_ip,
                action,
                target: audit::ADMIN_TARGET,
                ok,
            },
        );
    }

    fn login(&self, deps: &Deps<'_>, settings: &AdminSettings, req: &mut Request<'_>) -> Response {
        if !web::same_origin(req) {
            return web::login_page(403, Some("Cross-site request refused."));
        }
        let security = &deps.config.security;
        let ip = deps.client_ip;
        if let Err(wait) = deps.lockout.check(ip, security, deps.now) {
            return locked_out(deps, wait.0);
        }
        let Ok(body) = req.read_body(MAX_FORM_BYTES).map(Zeroizing::new) else {
            return web::login_page(400, Some("Unreadable form."));
        };
        let password = Zeroizing::new(web::form_value(&body, "password").unwrap_or_default());
        let verified = {
            let Some(mut verifier) = self.verifier.try_lock() else {
                return web::login_page(503, Some("Busy. Try again."))
                    .with_header("retry-after", "1");
            };
            // Counted before it is verified; cleared below when right.
            let admitted = match admit_login(deps, ip) {
                Ok(admitted) => admitted,
                Err(wait) => return locked_out(deps, wait.0),
            };
            let ok = !password.is_empty() && verifier.verify(&password, &settings.password_hash);
            if !ok && admitted.locked {
                lockout::log_locked(ip, security, "failed admin logins");
            }
            (ok, admitted.locked)
        };
        let (verified, locked_by_this) = verified;
        self.audit_login(deps, settings, Action::Login, verified);
        if !verified && locked_by_this {
            self.audit_login(deps, settings, Action::Lockout, false);
        }
        if !verified {
            deps.metrics.admin_login_failed();
            log::warn!("admin login failed from {ip}");
            return web::login_page(401, Some("Wrong password."));
        }
        deps.lockout.logins.record_success(ip);
        if let Some(cluster) = deps.cluster {
            // The attempt that reached the limit locked the address before it was verified;
            // right after all, it takes the lock away again, as in one instance.
            let _ = cluster.clear_streak(lockout::AddrKey::of(ip), Streak::Logins, locked_by_this);
        }
        let session = self.sessions.create(
            &settings.password_hash,
            settings.session_ttl,
            Instant::now(),
        );
        log::info!("admin login from {ip}");
        web::redirect("/admin").with_header(
            "set-cookie",
            web::cookie(&session.id, settings.session_ttl, deps.https),
        )
    }

    fn logout(&self, deps: &Deps<'_>, settings: &AdminSettings, req: &mut Request<'_>) -> Response {
        if !web::same_origin(req) {
            return web::text(403, "cross-site request refused\n");
        }
        let Some((id, csrf)) = self.session(settings, req) else {
            return web::login_page(401, Some("Not signed in."))
                .with_header("set-cookie", web::clear_cookie(deps.https));
        };
        let presented = match req.header("x-csrf-token") {
            Some(token) => Some(token.to_owned()),
            None => req
                .read_body(MAX_FORM_BYTES)
                .ok()
                .and_then(|body| web::form_value(&body, "csrf")),
        };
        if !presented.is_some_and(|t| session::tokens_match(&t, &csrf)) {
            return web::text(403, "missing or wrong CSRF token\n");
        }
        self.sessions.remove(&id);
        self.audit_login(deps, settings, Action::Logout, true);
        web::redirect("/admin").with_header("set-cookie", web::clear_cookie(deps.https))
    }

    /// `GET /admin/api/usage?range=hour|day|week|month` (default `day`): the analytics
    /// report, and `budgets`: per key with a budget, its limit, spend and period end.
    fn usage_api(&self, deps: &Deps<'_>, query: Option<&str>) -> Response {
        let config = deps.config;
        let range = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("range="))
            .unwrap_or("day");
        let Some(range) = Range::parse(range) else {
            return error(&api_error(
                Kind::InvalidRequest,
                "range must be hour, day, week or month",
            ));
        };
        let prefix_of = |name: &str| {
            config
                .keys
                .iter()
                .find(|k| k.name == name)
                .map(|k| k.prefix.clone())
        };
        let now = unix_now();
        let others = deps.cluster.map(|cluster| {
            let (width, n) = range.shape();
            let last = now.div_euclid(width) * width;
            let starts: Vec<i64> = (0..n as i64).map(|i| last - i * width).collect();
            cluster.fetch_buckets(width, &starts).map(|buckets| {
                buckets
                    .into_iter()
                    .filter_map(|(start, json)| {
                        let cells: Vec<SharedCell> = serde_json::from_str(&json).ok()?;
                        Some((start, cells))
                    })
                    .collect::<Vec<_>>()
            })
        });
        let (others, scope) = match others {
            None => (Vec::new(), "instance"),
            Some(Ok(others)) => (others, "cluster"),
            Some(Err(e)) => {
                log::debug!("cluster: the dashboard shows this instance only: {e}");
                (Vec::new(), "instance")
            }
        };
        let mut report = self.analytics.report_with(range, now, &prefix_of, &others);
        report["scope"] = scope.into();
        let budgets: Vec<serde_json::Value> = config
            .keys
            .iter()
            .filter_map(|key| {
                let budget = key.budget?;
                let spent = deps.spend.spent(&key.name, budget.period, now);
                Some(serde_json::json!({
                    "key": key.name,
                    "budget_usd": budget.limit.as_f64(),
                    "spent_usd": spent.as_f64(),
                    "period": budget.period.name(),
                    "resets_at": budget.period.resets_at(now),
                }))
            })
            .collect();
        report["budgets"] = serde_json::Value::Array(budgets);
        report["targets"] = targets_json(&deps.targets.views(deps.now), deps.now, &report);
        if let Some(fields) = report.as_object_mut() {
            fields.remove("by_target");
        }
        Response::json(200, report.to_string())
    }
}

/// Every configured target with its state now and its attempts over the report's range.
fn targets_json(
    views: &[TargetView],
    now: Duration,
    report: &serde_json::Value,
) -> serde_json::Value {
    let rows = views
        .iter()
        .map(|v| {
            let (state, cooling_secs) = match v.state {
                State::Healthy => ("up", None),
                State::Cooling { until } => ("cooling", Some(until.saturating_sub(now).as_secs())),
                State::Trial => ("trial", None),
            };
            let totals = &report["by_target"][&*v.name];
            serde_json::json!({
                "name": &*v.name,
                "state": state,
                "cooling_secs": cooling_secs,
                "inflight": v.inflight,
                "requests": totals["requests"].as_u64().unwrap_or(0),
                "errors": totals["errors"].as_u64().unwrap_or(0),
                "p50_ms": totals["p50_ms"],
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// An `admin = true` key in `Authorization`/`x-api-key`; 401 without one, 403 for others.
fn authorize_key(deps: &Deps<'_>, req: &Request<'_>) -> Result<(), ApiError> {
    authenticate_admin_key(deps, req).map(drop)
}

/// [`authorize_key`], keeping the key (the audit log names it).
fn authenticate_admin_key(deps: &Deps<'_>, req: &Request<'_>) -> Result<Arc<Key>, ApiError> {
    if credential(req).is_none() {
        return Err(api_error(
            Kind::MissingKey,
            "sign in to /admin or send an admin key as `Authorization: Bearer <key>`",
        ));
    }
    let key = (deps.authenticate)(req)?;
    if key.admin {
        Ok(key)
    } else {
        Err(ApiError::new(Kind::NotAdmin))
    }
}

/// Counts a login attempt from `ip` before it is verified: in the cluster when there is one
/// (this instance's table when Redis is down), else here. `Err` when the address is locked.
fn admit_login(deps: &Deps<'_>, ip: IpAddr) -> Result<lockout::Admitted, lockout::RetryAfterSecs> {
    let security = &deps.config.security;
    let local = || deps.lockout.logins.admit(ip, security, deps.now);
    let Some(cluster) = deps.cluster.filter(|_| security.lockout_max_failures > 0) else {
        return local();
    };
    let addr = lockout::AddrKey::of(ip);
    match cluster.count_failure(addr, Streak::Logins, security) {
        Ok(Failure::AlreadyLocked(left)) => {
            deps.lockout.logins.lock(addr, deps.now, deps.now + left);
            Err(lockout::RetryAfterSecs(crate::limits::retry_after_secs(
                left,
            )))
        }
        Ok(Failure::Counted(Some(length))) => {
            deps.lockout.logins.lock(addr, deps.now, deps.now + length);
            Ok(lockout::Admitted { locked: true })
        }
        Ok(Failure::Counted(None)) => Ok(lockout::Admitted { locked: false }),
        Err(_) => local(),
    }
}

/// The login page's refusal of a locked address.
fn locked_out(deps: &Deps<'_>, retry_after: u64) -> Response {
    deps.metrics.admin_locked_out();
    web::login_page(429, Some("Too many failed attempts. Try again later."))
        .with_header("retry-after", retry_after.max(1).to_string())
}

fn api_error(kind: Kind, message: &'static str) -> ApiError {
    ApiError::new(kind).with_message(message)
}

/// An error in OpenAI's shape (the admin API and `/metrics` speak it).
fn error(e: &ApiError) -> Response {
    e.response(Dialect::OpenAi)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    i64::try_from(crate::clock::unix_secs()).unwrap_or(i64::MAX)
}
