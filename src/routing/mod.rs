//! Routing that knows its upstreams: which of a model's targets a request tries first, and
//! which targets it skips because they keep failing.
//!
//! A target is one `provider/upstream_model` of a `[[models]]` entry. Each has a
//! [`TargetState`]: its [`Health`] (the cooldown state machine), the requests it has in flight
//! (a stream counts until its last byte) and its attempts by outcome. The state lives in the
//! gateway's [`Targets`] registry, keyed by the target's name, so it survives a config reload
//! for targets that still exist; a reload drops the others, so the registry never holds more
//! than the config names. Routes a client makes up (`provider/model` with no `[[models]]`
//! entry) have one target and no state: there is nothing to choose between.
//!
//! A request's order ([`RouteState::first`]): the strategy picks the first target among those
//! open now; the rest follow in config order, each only if it admits the request when its turn
//! comes (see `gateway/proxy.rs`). When every target is cooling down, the one whose cooldown
//! ends first is tried, forced. Fallback rules stay as they were: nothing has reached the
//! client, no target twice.
//!
//! The clock is the caller's: every call that needs time takes `now`, the gateway's monotonic
//! [`Duration`] since it started.

pub mod health;
mod strategy;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

pub use health::{Availability, Change, Health, Policy, State};
use strategy::Picker;
pub use strategy::Strategy;

use crate::config::Config;

/// How one attempt at a target ended, as the health check and the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 1xx–3xx answer.
    Ok,
    /// A 4xx other than 429: the request's fault, not the target's.
    ClientError,
    /// 429.
    RateLimited,
    /// 5xx.
    ServerError,
    /// No answer head within the provider's timeout.
    Timeout,
    /// Could not connect (refused, DNS, TLS handshake).
    Unreachable,
    /// An answer head that could not be read.
    Unreadable,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::Ok,
        Verdict::ClientError,
        Verdict::RateLimited,
        Verdict::ServerError,
        Verdict::Timeout,
        Verdict::Unreachable,
        Verdict::Unreadable,
    ];

    /// The verdict on an answer with this status.
    pub fn of_status(status: u16) -> Verdict {
        match status {
            429 => Verdict::RateLimited,
            500.. => Verdict::ServerError,
            400..=499 => Verdict::ClientError,
            _ => Verdict::Ok,
        }
    }

    /// Whether it counts toward a cooldown.
    pub fn is_failure(self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::ClientError)
    }

    /// The `outcome` label of `noviqi_upstream_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::ClientError => "client_error",
            Verdict::RateLimited => "rate_limited",
            Verdict::ServerError => "server_error",
            Verdict::Timeout => "timeout",
            Verdict::Unreachable => "unreachable",
            Verdict::Unreadable => "unreadable",
        }
    }
}

/// One target's shared state.
#[derive(Debug)]
pub struct TargetState {
    /// `provider/upstream_model`.
    name: Arc<str>,
    health: Mutex<Health>,
    inflight: AtomicUsize,
    attempts: [AtomicU64; Verdict::ALL.len()],
}

impl TargetState {
    fn new(name: Arc<str>) -> TargetState {
        TargetState {
            name,
            health: Mutex::new(Health::default()),
            inflight: AtomicUsize::new(0),
            attempts: Default::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    fn availability(&self, now: Duration) -> Availability {
        self.health.lock().availability(now)
    }
}

/// A target as the metrics and the dashboard show it.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub name: Arc<str>,
    pub state: State,
    pub inflight: usize,
    /// Attempts by outcome, in [`Verdict::ALL`] order.
    pub attempts: [u64; Verdict::ALL.len()],
}

/// Every configured target's state, by name; shared by all connection threads.
#[derive(Debug, Default)]
pub struct Targets {
    known: Mutex<HashMap<Arc<str>, Arc<TargetState>>>,
}

impl Targets {
    /// The routes of `config`, bound to this registry's states: a target that existed before
    /// keeps its state, new ones start healthy, and targets no longer configured are dropped.
    pub fn bind(&self, config: &Config) -> RouteTable {
        let mut known = self.known.lock();
        let mut kept: HashMap<Arc<str>, Arc<TargetState>> = HashMap::new();
        let routes = config
            .models
            .iter()
            .map(|model| {
                let targets = model
                    .targets
                    .iter()
                    .map(|t| {
                        kept.entry(t.name.clone())
                            .or_insert_with(|| match known.get(&t.name) {
                                Some(state) => state.clone(),
                                None => Arc::new(TargetState::new(t.name.clone())),
                            })
                            .clone()
                    })
                    .collect();
                RouteState {
                    targets,
                    picker: Picker::new(&model.strategy),
                    policy: model.policy,
                }
            })
            .collect();
        *known = kept;
        RouteTable { routes }
    }

    /// Applies the cluster's cooldowns at `now`: each listed target (with how long it has left)
    /// cools down here too; a cooldown copied earlier ends when the target is no longer listed.
    pub fn apply_shared(&self, cooling: &[(String, Duration)], now: Duration) {
        let known: Vec<Arc<TargetState>> = self.known.lock().values().cloned().collect();
        for target in known {
            let left = cooling
                .iter()
                .find(|(name, _)| **name == *target.name)
                .map(|(_, left)| *left);
            let mut health = target.health.lock();
            match left {
                Some(left) => health.cool_until(now + left),
                None => health.end_shared(),
            }
        }
    }

    /// Every configured target, sorted by name.
    pub fn views(&self, now: Duration) -> Vec<TargetView> {
        let known: Vec<Arc<TargetState>> = self.known.lock().values().cloned().collect();
        let mut views: Vec<TargetView> = known
            .iter()
            .map(|t| {
                let mut state = t.health.lock().state();
                if let State::Cooling { until } = state
                    && until <= now
                {
                    // Its cooldown is over; the next request is its trial.
                    state = State::Healthy;
                }
                TargetView {
                    name: t.name.clone(),
                    state,
                    inflight: t.inflight(),
                    attempts: std::array::from_fn(|i| t.attempts[i].load(Ordering::Relaxed)),
                }
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }
}

/// The routes of one loaded config, in `config.models` order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<RouteState>,
}

impl RouteTable {
    /// The state of `config.models[index]`.
    pub fn get(&self, index: usize) -> Option<&RouteState> {
        self.routes.get(index)
    }
}

/// One `[[models]]` entry's targets (in config order) and how it picks among them.
#[derive(Debug)]
pub struct RouteState {
    targets: Vec<Arc<TargetState>>,
    picker: Picker,
    policy: Policy,
}

/// The target a request tries first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct First {
    pub index: usize,
    /// Every target is cooling down: this one (whose cooldown ends first) is sent anyway.
    pub force: bool,
}

impl RouteState {
    /// The target to try first at `now`.
    pub fn first(&self, now: Duration) -> First {
        if let [only] = self.targets.as_slice() {
            // Nothing to choose: open or not, it is the one that ends its cooldown first.
            let force = only.availability(now) != Availability::Open;
            return First { index: 0, force };
        }
        let open: Vec<bool> = self
            .targets
            .iter()
            .map(|t| t.availability(now) == Availability::Open)
            .collect();
        match self.picker.pick(&open, |i| self.targets[i].inflight()) {
            Some(index) => First {
                index,
                force: false,
            },
            None => First {
                index: self.ends_first(now),
                force: true,
            },
        }
    }

    /// The cooling target whose cooldown ends first (the first such in config order on a tie).
    fn ends_first(&self, now: Duration) -> usize {
        self.targets
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| match t.availability(now) {
                Availability::Open => Duration::ZERO,
                Availability::Closed { until } => until,
            })
            .map_or(0, |(i, _)| i)
    }

    /// Whether target `index` would take a request at `now`.
    pub fn is_open(&self, index: usize, now: Duration) -> bool {
        self.targets
            .get(index)
            .is_some_and(|t| t.availability(now) == Availability::Open)
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Takes target `index` for one request, or `None` when it is cooling down (and not
    /// `force`d) or its trial request is already out.
    pub fn start(&self, index: usize, now: Duration, force: bool) -> Option<Attempt> {
        let target = self.targets.get(index)?;
        let trial = {
            let mut health = target.health.lock();
            let was_healthy = health.state() == State::Healthy;
            if !health.admit(now, force) {
                return None;
            }
            !was_healthy
        };
        target.inflight.fetch_add(1, Ordering::Relaxed);
        Some(Attempt {
            target: target.clone(),
            policy: self.policy,
            trial,
            reported: false,
        })
    }
}

/// One request at one target: counted in flight until dropped (a stream drops it after its
/// last byte). Its verdict is reported once, when the answer's head is in (or the call failed).
#[derive(Debug)]
pub struct Attempt {
    target: Arc<TargetState>,
    policy: Policy,
    trial: bool,
    reported: bool,
}

impl Attempt {
    /// The target's name (the same `Arc` for as long as the target stays configured).
    pub fn target(&self) -> &Arc<str> {
        &self.target.name
    }

    /// Records how the attempt went at `now`; `retry_after` is a 429's own wait. Logs a line
    /// when the target enters or leaves a cooldown, and returns that change (the cluster
    /// shares it).
    pub fn report(
        &mut self,
        verdict: Verdict,
        now: Duration,
        retry_after: Option<Duration>,
    ) -> Change {
        if self.reported {
            return Change::None;
        }
        self.reported = true;
        if let Some(count) = self.target.attempts.get(verdict as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let change = {
            let mut health = self.target.health.lock();
            if verdict.is_failure() {
                health.failure(now, self.policy, retry_after)
            } else {
                health.success()
            }
        };
        match change {
            Change::None => {}
            Change::Cooling(wait) if self.trial => log::warn!(
                "target {}: trial request failed ({}); cooling down again for {}s",
                self.target.name,
                verdict.label(),
                wait.as_secs()
            ),
            Change::Cooling(wait) => log::warn!(
                "target {}: {} consecutive failures (last: {}); cooling down for {}s",
                self.target.name,
                self.policy.failures,
                verdict.label(),
                wait.as_secs()
            ),
            Change::Recovered => log::info!(
                "target {}: a trial request succeeded; back in rotation",
                self.target.name
            ),
        }
        change
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Ordering::Relaxed);
        if !self.reported && self.trial {
            self.target.health.lock().abandon();
        }
    }
}

/// Longest wait a 429's `Retry-After` can impose on a target (an hour).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` value, in seconds or as an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests;
