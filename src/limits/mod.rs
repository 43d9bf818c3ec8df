//! Sliding-window rate limits per key, and brute-force lockouts per client address.
//!
//! [`RateLimiter`] owns one pair of windows ([`window::RequestWindow`],
//! [`window::TokenWindow`]) per key hash, created on the first limited request of a key that
//! already passed authentication: unknown keys and unlimited keys never create state. Each
//! key's windows sit behind their own `Mutex`, found through a read-mostly `RwLock` map, so
//! keys never contend with each other and a check is one read lock plus one uncontended lock.
//!
//! State is keyed by [`KeyHash`], not by the `Config` value, so it survives config reloads; the
//! limits themselves are passed on every call, so a reload that changes them applies at once.
//! After a reload the gateway calls [`RateLimiter::retain_keys`] to drop revoked keys.
//!
//! Bounds: memory per key is documented in [`window`] (8 bytes × rpm for requests, under 1 KB
//! for tokens). The map holds at most `max_keys` keys ([`DEFAULT_MAX_KEYS`]); keys come from
//! the config, so this is reached only by a config with that many limited keys, and then the
//! least recently used key's state is dropped to make room (an O(n) scan, paid only then).
//!
//! [`lockout::Lockouts`] holds the per-address failure tables (bad keys and failed admin logins,
//! counted apart, checked together); see its module docs.

pub mod lockout;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::config::model::Limits;
use crate::crypto::apikey::KeyHash;
use window::{RequestWindow, TokenWindow, WindowStatus, nanos};

/// How many keys the limiter tracks before it drops the least recently used.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The outcome of [`RateLimiter::check_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was admitted (and counted).
    pub allowed: bool,
    /// On a refusal: whole seconds until the key may retry, rounded up, at least 1.
    pub retry_after_secs: Option<u64>,
    /// The `x-ratelimit-*` headers for this response (empty for an unlimited key).
    pub headers: RateHeaders,
}

impl Decision {
    /// The decision for windows that stand at `headers`: on a refusal, `Retry-After` is the
    /// longest wait of a full window, and `remaining-requests` reads 0 (nothing would be
    /// admitted now).
    pub fn new(allowed: bool, mut headers: RateHeaders) -> Decision {
        let retry_after_secs = if allowed {
            None
        } else {
            let wait = [headers.requests, headers.tokens]
                .iter()
                .flatten()
                .filter_map(|s| s.retry_after)
                .max()
                .unwrap_or(Duration::ZERO);
            if let Some(r) = headers.requests.as_mut() {
                r.remaining = 0;
            }
            Some(retry_after_secs(wait))
        };
        Decision {
            allowed,
            retry_after_secs,
            headers,
        }
    }
}

/// Where a key's windows stand, rendered as OpenAI's `x-ratelimit-*` headers.
///
/// A trio is present only for a limit the key has: a key limited by requests alone gets the
/// three `-requests` headers and no `-tokens` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<WindowStatus>,
    pub tokens: Option<WindowStatus>,
}

impl RateHeaders {
    /// True for an unlimited key: no header to send.
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// The header (name, value) pairs, requests trio first.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        const REQUESTS: [&str; 3] = [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ];
        const TOKENS: [&str; 3] = [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ];
        let mut out = Vec::with_capacity(6);
        let mut digits = itoa::Buffer::new();
        for (status, [limit, remaining, reset]) in
            [(&self.requests, REQUESTS), (&self.tokens, TOKENS)]
        {
            if let Some(s) = status {
                out.push((limit, digits.format(s.limit).to_owned()));
                out.push((remaining, digits.format(s.remaining).to_owned()));
                out.push((reset, format_reset(s.reset)));
            }
        }
        out
    }
}

/// Per-key sliding windows. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    keys: RwLock<HashMap<KeyHash, Arc<KeyState>>>,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct KeyState {
    /// Nanoseconds of the last check, for choosing whom to drop when the map is full.
    last_used: AtomicU64,
    windows: Mutex<KeyWindows>,
}

#[derive(Debug, Default)]
struct KeyWindows {
    requests: RequestWindow,
    tokens: TokenWindow,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A limiter tracking at most `max_keys` keys (at least 1).
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            keys: RwLock::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Admits and counts a request of `key` under `limits`, or refuses it.
    ///
    /// Call only for a key that exists (after authentication). Admission is atomic per key:
    /// however many threads race, at most `requests_per_minute` are admitted in any 60 s. A
    /// request is refused while the key's tokens of the last 60 s reach `tokens_per_minute`;
    /// on any refusal `remaining-requests` reads 0, since nothing would be admitted now.
    pub fn check_request(&self, key: &KeyHash, limits: Limits, now: Duration) -> Decision {
        if limits.requests_per_minute.is_none() && limits.tokens_per_minute.is_none() {
            return Decision {
                allowed: true,
                retry_after_secs: None,
                headers: RateHeaders::default(),
            };
        }
        let state = self.state(key, now);
        let mut w = state.windows.lock();
        let requests_ok = limits
            .requests_per_minute
            .is_none_or(|l| w.requests.admits(l, now));
        let tokens_ok = limits
            .tokens_per_minute
            .is_none_or(|l| w.tokens.admits(l, now));
        let allowed = requests_ok && tokens_ok;
        if allowed && limits.requests_per_minute.is_some() {
            w.requests.record(now);
        }
        let requests = limits
            .requests_per_minute
            .map(|l| w.requests.status(l, now));
        let tokens = limits.tokens_per_minute.map(|l| w.tokens.status(l, now));
        drop(w);
        Decision::new(allowed, RateHeaders { requests, tokens })
    }

    /// Counts `tokens` used by a completed response of `key`. A key without state (never
    /// checked, or unlimited) is ignored, so this never creates state.
    pub fn record_tokens(&self, key: &KeyHash, tokens: u64, now: Duration) {
        if tokens == 0 {
            return;
        }
        let state = self.keys.read().get(key).cloned();
        if let Some(state) = state {
            state.windows.lock().tokens.record(tokens, now);
        }
    }

    /// Drops the state of every key for which `live` is false (call after a reload with
    /// "is this hash a key in the new config").
    pub fn retain_keys(&self, live: impl Fn(&KeyHash) -> bool) {
        self.keys.write().retain(|k, _| live(k));
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self, key: &KeyHash, now: Duration) -> Arc<KeyState> {
        let stamp = nanos(now);
        if let Some(state) = self.keys.read().get(key) {
            state.last_used.fetch_max(stamp, Ordering::Relaxed);
            return Arc::clone(state);
        }
        let mut keys = self.keys.write();
        if !keys.contains_key(key) && keys.len() >= self.max_keys {
            let oldest = keys
                .iter()
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                keys.remove(&oldest);
            }
        }
        let state = keys.entry(*key).or_default();
        state.last_used.fetch_max(stamp, Ordering::Relaxed);
        Arc::clone(state)
    }
}

/// `Retry-After` seconds for a wait: rounded up, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Formats a duration the way OpenAI's `x-ratelimit-reset-*` headers do (Go's
/// `time.Duration` syntax): `0s`, `12ms`, `1s`, `59.1s`, `6m0s`, `1h0m0s`. Rounded up to the
/// millisecond so a client waiting that long never retries early.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    let mut out = String::with_capacity(16);
    let mut digits = itoa::Buffer::new();
    if ms < 1000 {
        out.push_str(digits.format(ms));
        out.push_str(if ms == 0 { "s" } else { "ms" });
        return out;
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        out.push_str(digits.format(h));
        out.push('h');
    }
    if h > 0 || m > 0 {
        out.push_str(digits.format(m));
        out.push('m');
    }
    out.push_str(digits.format(s));
    if frac > 0 {
        // Three digits, trailing zeros dropped: 100 -> ".1", 120 -> ".12", 7 -> ".007".
        out.push('.');
        out.push_str(digits.format(frac + 1000)[1..].trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn key(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    fn rpm(n: u32) -> Limits {
        Limits {
            requests_per_minute: Some(n),
            tokens_per_minute: None,
        }
    }

    fn header<'a>(pairs: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn issue_example() {
        let rl = RateLimiter::new();
        for t in [50.0, 55.0, 59.0] {
            assert!(rl.check_request(&key(1), rpm(3), s(t)).allowed);
        }
        let d = rl.check_request(&key(1), rpm(3), s(62.0));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, Some(48));
        let pairs = d.headers.header_pairs();
        assert_eq!(header(&pairs, "x-ratelimit-remaining-requests"), Some("0"));
        assert_eq!(header(&pairs, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(header(&pairs, "x-ratelimit-reset-requests"), Some("57s"));
        assert_eq!(header(&pairs, "x-ratelimit-limit-tokens"), None);
        assert!(rl.check_request(&key(1), rpm(3), s(110.1)).allowed);
    }

    #[test]
    fn remaining_four_to_zero() {
        let rl = RateLimiter::new();
        let seen: Vec<String> = (0..6)
            .map(|i| {
                let d = rl.check_request(&key(1), rpm(5), s(f64::from(i) * 0.1));
                let pairs = d.headers.header_pairs();
                header(&pairs, "x-ratelimit-remaining-requests")
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(seen, ["4", "3", "2", "1", "0", "0"]);
    }

    #[test]
    fn retry_after_rounds_up_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(s(1.0)), 1);
        assert_eq!(retry_after_secs(s(1.001)), 2);
        assert_eq!(retry_after_secs(s(47.2)), 48);
        let rl = RateLimiter::new();
        assert!(rl.check_request(&key(1), rpm(1), s(0.0)).allowed);
        let d = rl.check_request(&key(1), rpm(1), Duration::from_nanos(59_999_999_999));
        assert_eq!(d.retry_after_secs, Some(1));
    }

    #[test]
    fn reset_format_matches_openai() {
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(format_reset(Duration::from_micros(11_200)), "12ms");
        assert_eq!(format_reset(s(1.0)), "1s");
        assert_eq!(format_reset(s(59.1)), "59.1s");
        assert_eq!(format_reset(Duration::from_millis(59_120)), "59.12s");
        assert_eq!(format_reset(s(360.0)), "6m0s");
        assert_eq!(format_reset(s(61.5)), "1m1.5s");
        assert_eq!(format_reset(s(3600.0)), "1h0m0s");
        assert_eq!(format_reset(Duration::from_millis(1_007)), "1.007s");
        assert_eq!(format_reset(Duration::from_millis(3_723_450)), "1h2m3.45s");
        assert_eq!(format_reset(Duration::from_millis(999)), "999ms");
    }

    #[test]
    fn tokens_refuse_and_headers() {
        let rl = RateLimiter::new();
        let lim = Limits {
            requests_per_minute: Some(100),
            tokens_per_minute: Some(1000),
        };
        let d = rl.check_request(&key(2), lim, s(0.5));
        assert!(d.allowed);
        let pairs = d.headers.header_pairs();
        assert_eq!(pairs.len(), 6);
        assert_eq!(header(&pairs, "x-ratelimit-remaining-tokens"), Some("1000"));
        assert_eq!(header(&pairs, "x-ratelimit-reset-tokens"), Some("0s"));
        assert_eq!(header(&pairs, "x-ratelimit-reset-requests"), Some("1m0s"));
        rl.record_tokens(&key(2), 400, s(1.2));
        let d = rl.check_request(&key(2), lim, s(2.0));
        let pairs = d.headers.header_pairs();
        assert_eq!(header(&pairs, "x-ratelimit-remaining-tokens"), Some("600"));
        assert_eq!(header(&pairs, "x-ratelimit-reset-tokens"), Some("59.2s"));
        rl.record_tokens(&key(2), 700, s(3.0));
        let d = rl.check_request(&key(2), lim, s(4.0));
        assert!(!d.allowed);
        // The 400 of 1.2 s stop counting at 61.2 s; 700 < 1000 after that.
        assert_eq!(d.retry_after_secs, Some(58));
        let pairs = d.headers.header_pairs();
        assert_eq!(header(&pairs, "x-ratelimit-remaining-tokens"), Some("0"));
        assert_eq!(header(&pairs, "x-ratelimit-remaining-requests"), Some("0"));
        assert!(rl.check_request(&key(2), lim, s(62.0)).allowed);
        // Window (2.5, 62.5]: 62.0 and this one; the refused 4.0 s request was not counted.
        let d = rl.check_request(&key(2), rpm(100), s(62.5));
        let pairs = d.headers.header_pairs();
        assert_eq!(header(&pairs, "x-ratelimit-remaining-requests"), Some("98"));
    }

    #[test]
    fn unlimited_and_unknown_keys_make_no_state() {
        let rl = RateLimiter::new();
        let d = rl.check_request(&key(3), Limits::default(), s(0.0));
        assert!(d.allowed && d.headers.is_empty() && d.headers.header_pairs().is_empty());
        rl.record_tokens(&key(4), 10, s(0.0));
        assert!(rl.is_empty());
    }

    #[test]
    fn retain_keys_drops_revoked_state() {
        let rl = RateLimiter::new();
        assert!(rl.check_request(&key(1), rpm(1), s(0.0)).allowed);
        assert!(rl.check_request(&key(2), rpm(1), s(0.0)).allowed);
        rl.retain_keys(|k| *k == key(1));
        assert_eq!(rl.len(), 1);
        // Survivor keeps its window; the dropped key starts afresh.
        assert!(!rl.check_request(&key(1), rpm(1), s(1.0)).allowed);
        assert!(rl.check_request(&key(2), rpm(1), s(1.0)).allowed);
    }

    #[test]
    fn map_is_bounded_lru() {
        let rl = RateLimiter::with_max_keys(3);
        for n in 0..3u8 {
            rl.check_request(&key(n), rpm(1), s(f64::from(n)));
        }
        rl.check_request(&key(0), rpm(1), s(10.0)); // touch 0: 1 is now the oldest
        rl.check_request(&key(9), rpm(1), s(11.0));
        assert_eq!(rl.len(), 3);
        let keys = rl.keys.read();
        assert!(keys.contains_key(&key(0)) && !keys.contains_key(&key(1)));
    }
}
