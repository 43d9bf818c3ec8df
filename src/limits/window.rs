//! Exact sliding 60-second windows: one for requests, one for tokens.
//!
//! # Requests: a sliding log
//!
//! Let `T = 60 s` and `t₁ ≤ t₂ ≤ … ≤ tₙ` the times of the admitted requests still remembered.
//! A request at time `now` is admitted iff
//!
//! ```text
//!     |{ i : now − T < tᵢ ≤ now }| < L          (L = requests_per_minute)
//! ```
//!
//! so in every half-open span `(s − T, s]` at most `L` requests are admitted — a true sliding
//! window, not fixed buckets that reset on the minute. Times that left the window are dropped
//! from the front first, so the log never holds more than `L` stamps (a stamp is pushed only
//! when fewer than `L` remain). When the log is full, the next slot frees when the oldest stamp
//! leaves: `retry_after = t₁ + T − now` (exact, to the nanosecond); the window is back to its
//! initial state (all `L` slots free) at `tₙ + T`.
//!
//! Memory per key: 8 bytes per stamp (a `u64` of nanoseconds), at most `L` stamps, allocated
//! only as requests arrive: `8 × L` bytes (480 bytes at 60 rpm). `L` is capped at
//! [`MAX_REQUESTS_PER_WINDOW`] (1,000,000 ≈ 16,667 requests a second, far beyond one gateway):
//! a larger configured limit is enforced as that cap, so one key costs at most 8 MB.
//!
//! # Tokens: a bucketed sum
//!
//! Token counts arrive when a response completes, so they are summed into aligned one-second
//! buckets `b = ⌊now / 1 s⌋`, each remembering the newest time `tᵇ` it was added to. Bucket `b`
//! counts while `tᵇ + T > now`: tokens recorded at time `t` count for at least 60 s and at most
//! 61 s (the rounding is always strict, never lenient), and a wait for a bucket to leave,
//! `tᵇ + T − now`, is never more than `T` — so a `Retry-After` for this window never exceeds
//! 60. A request is refused while
//!
//! ```text
//!     S = Σ tokens of live buckets ≥ M          (M = tokens_per_minute)
//! ```
//!
//! and may retry when enough of the oldest buckets have expired for `S < M`. A running sum
//! keeps the check O(1) amortised. At most 61 buckets of 24 bytes are live: under 1.5 KB per key
//! whatever `M` is.
//!
//! # Clock
//!
//! `now` is a `Duration` since an arbitrary epoch (the gateway uses a process-start `Instant`;
//! tests pass plain values). Callers read the clock before taking the key's lock, so two
//! threads may arrive slightly out of order: a stamp is never recorded earlier than the newest
//! one already in the log, which keeps the log sorted and errs on the strict side by at most
//! that skew.

use std::collections::VecDeque;
use std::time::Duration;

/// The window length.
pub const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_NANOS: u64 = 60_000_000_000;

/// The largest request limit tracked exactly; larger limits are enforced as this one.
pub const MAX_REQUESTS_PER_WINDOW: u32 = 1_000_000;

/// Width of a token bucket.
pub const TOKEN_BUCKET: Duration = Duration::from_secs(1);
const BUCKET_NANOS: u64 = 1_000_000_000;

/// Live token buckets never exceed this (a 60 s window plus one partial bucket).
pub const MAX_TOKEN_BUCKETS: usize = 61;

/// Where a window stands after a check, for the `x-ratelimit-*` headers and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// The configured limit.
    pub limit: u64,
    /// What is left now (after recording this request, when it was admitted).
    pub remaining: u64,
    /// Time until the window is back to its initial state (everything counted has left it).
    pub reset: Duration,
    /// When the window is full: time until it admits again. `None` when it has room.
    pub retry_after: Option<Duration>,
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The request log of one key: admission stamps, oldest first.
#[derive(Debug, Default)]
pub struct RequestWindow {
    stamps: VecDeque<u64>,
}

impl RequestWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether one more request fits under `limit` at `now` (records nothing).
    pub fn admits(&mut self, limit: u32, now: Duration) -> bool {
        let limit = effective(limit);
        self.expire(nanos(now));
        // A limit lowered by a reload leaves spare capacity behind; give it back.
        if self.stamps.capacity() > 2 * limit + 64 && self.stamps.len() <= limit {
            self.stamps.shrink_to(limit);
        }
        self.stamps.len() < limit
    }

    /// Records an admitted request at `now` (call only after `admits` said yes).
    pub fn record(&mut self, now: Duration) {
        let now = nanos(now);
        let stamp = self.stamps.back().map_or(now, |&last| last.max(now));
        self.stamps.push_back(stamp);
        // Belt and braces: the log can never outgrow the hard cap.
        while self.stamps.len() > effective(MAX_REQUESTS_PER_WINDOW) {
            self.stamps.pop_front();
        }
    }

    /// Number of requests counted in the window ending at `now`.
    pub fn count(&mut self, now: Duration) -> usize {
        self.expire(nanos(now));
        self.stamps.len()
    }

    /// Remaining slots, reset and retry time at `now` under `limit`.
    pub fn status(&mut self, limit: u32, now: Duration) -> WindowStatus {
        let now = nanos(now);
        self.expire(now);
        let cap = effective(limit);
        let len = self.stamps.len();
        let until = |stamp: u64| Duration::from_nanos((stamp + WINDOW_NANOS).saturating_sub(now));
        let retry_after = if len >= cap {
            // The window admits again once `len - cap + 1` stamps have left it.
            self.stamps.get(len - cap).map(|&t| until(t))
        } else {
            None
        };
        WindowStatus {
            limit: u64::from(limit),
            remaining: (cap - len.min(cap)) as u64,
            reset: self.stamps.back().map_or(Duration::ZERO, |&t| until(t)),
            retry_after,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&t) = self.stamps.front() {
            if now.saturating_sub(t) >= WINDOW_NANOS {
                self.stamps.pop_front();
            } else {
                break;
            }
        }
    }
}

fn effective(limit: u32) -> usize {
    limit.min(MAX_REQUESTS_PER_WINDOW) as usize
}

/// One second's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// `⌊t / 1 s⌋`.
    index: u64,
    tokens: u64,
    /// The newest time (ns) tokens were added to it: it counts until this + 60 s.
    newest: u64,
}

impl Bucket {
    /// The instant the bucket stops counting.
    fn expiry(&self) -> u64 {
        self.newest.saturating_add(WINDOW_NANOS)
    }
}

/// The token sum of one key over one-second buckets, oldest first.
#[derive(Debug, Default)]
pub struct TokenWindow {
    /// Indices (and newest times) strictly increase.
    buckets: VecDeque<Bucket>,
    sum: u64,
}

impl TokenWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tokens` used by a response that completed at `now`.
    pub fn record(&mut self, tokens: u64, now: Duration) {
        let now = nanos(now);
        self.expire(now);
        if tokens == 0 {
            return;
        }
        let index = now / BUCKET_NANOS;
        match self.buckets.back_mut() {
            // `>=`: a late-arriving earlier stamp joins the newest bucket (strict side).
            Some(last) if last.index >= index => {
                last.tokens = last.tokens.saturating_add(tokens);
                last.newest = last.newest.max(now);
            }
            _ => self.buckets.push_back(Bucket {
                index,
                tokens,
                newest: now,
            }),
        }
        self.sum = self.sum.saturating_add(tokens);
        while self.buckets.len() > MAX_TOKEN_BUCKETS {
            self.pop_oldest();
        }
    }

    /// Whether the tokens counted at `now` are still below `limit`.
    pub fn admits(&mut self, limit: u64, now: Duration) -> bool {
        self.expire(nanos(now));
        self.sum < limit
    }

    /// Tokens counted in the window ending at `now`.
    pub fn sum(&mut self, now: Duration) -> u64 {
        self.expire(nanos(now));
        self.sum
    }

    /// Remaining tokens, reset and retry time at `now` under `limit`.
    pub fn status(&mut self, limit: u64, now: Duration) -> WindowStatus {
        let now = nanos(now);
        self.expire(now);
        let until = |b: &Bucket| Duration::from_nanos(b.expiry().saturating_sub(now));
        let retry_after = if self.sum >= limit {
            let mut left = self.sum;
            let mut at = None;
            for bucket in &self.buckets {
                left -= bucket.tokens.min(left);
                if left < limit {
                    at = Some(until(bucket));
                    break;
                }
            }
            at
        } else {
            None
        };
        WindowStatus {
            limit,
            remaining: limit.saturating_sub(self.sum),
            reset: self.buckets.back().map_or(Duration::ZERO, until),
            retry_after,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(bucket) = self.buckets.front() {
            if bucket.expiry() <= now {
                self.pop_oldest();
            } else {
                break;
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(bucket) = self.buckets.pop_front() {
            self.sum = self.sum.saturating_sub(bucket.tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn try_admit(w: &mut RequestWindow, limit: u32, now: Duration) -> bool {
        let ok = w.admits(limit, now);
        if ok {
            w.record(now);
        }
        ok
    }

    #[test]
    fn sliding_not_fixed() {
        let mut w = RequestWindow::new();
        for t in [50.0, 55.0, 59.0] {
            assert!(try_admit(&mut w, 3, s(t)), "at {t}");
        }
        // A fixed window would have reset at 60 s.
        assert!(!try_admit(&mut w, 3, s(62.0)));
        let st = w.status(3, s(62.0));
        assert_eq!(st.retry_after, Some(s(48.0)));
        assert_eq!(st.remaining, 0);
        assert_eq!(st.reset, s(57.0));
        // At exactly 110 s the 50 s request leaves: the window is (50, 110].
        assert!(try_admit(&mut w, 3, s(110.1)));
        assert!(!try_admit(&mut w, 3, s(110.2)));
        assert!(try_admit(&mut w, 3, s(115.0)));
    }

    #[test]
    fn boundary_is_half_open() {
        let mut w = RequestWindow::new();
        assert!(try_admit(&mut w, 1, s(10.0)));
        assert!(!try_admit(&mut w, 1, Duration::from_nanos(69_999_999_999)));
        assert!(try_admit(&mut w, 1, s(70.0)));
    }

    #[test]
    fn remaining_counts_down() {
        let mut w = RequestWindow::new();
        let mut seen = vec![];
        for i in 0..6 {
            let now = s(f64::from(i));
            let ok = try_admit(&mut w, 5, now);
            seen.push((ok, w.status(5, now).remaining));
        }
        let expect = [
            (true, 4),
            (true, 3),
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0),
        ];
        assert_eq!(seen, expect);
    }

    #[test]
    fn never_holds_more_than_limit() {
        let mut w = RequestWindow::new();
        for i in 0..10_000u64 {
            try_admit(&mut w, 7, Duration::from_millis(i * 3));
            assert!(w.stamps.len() <= 7);
        }
    }

    #[test]
    fn lowered_limit_counts_old_stamps() {
        let mut w = RequestWindow::new();
        for t in 0..10 {
            assert!(try_admit(&mut w, 10, s(f64::from(t))));
        }
        // Limit lowered to 4 by a reload: 10 in the window, the 7th oldest (t=6) must leave.
        assert!(!w.admits(4, s(20.0)));
        assert_eq!(w.status(4, s(20.0)).retry_after, Some(s(46.0)));
        assert!(w.admits(4, s(66.5)));
    }

    #[test]
    fn out_of_order_stamps_stay_sorted() {
        let mut w = RequestWindow::new();
        w.record(s(5.0));
        w.record(s(4.0));
        assert_eq!(w.stamps, [5_000_000_000, 5_000_000_000]);
        assert_eq!(w.count(s(64.9)), 2);
        assert_eq!(w.count(s(65.0)), 0);
    }

    #[test]
    fn huge_limit_is_capped() {
        let mut w = RequestWindow::new();
        assert!(w.admits(u32::MAX, s(0.0)));
        assert_eq!(w.status(u32::MAX, s(0.0)).limit, u64::from(u32::MAX));
    }

    #[test]
    fn tokens_window() {
        let mut w = TokenWindow::new();
        assert!(w.admits(1000, s(0.0)));
        w.record(600, s(10.2));
        assert!(w.admits(1000, s(11.0)));
        w.record(500, s(20.7));
        // 1100 >= 1000: refused until the 600 recorded at 10.2 s leave at 70.2 s.
        assert!(!w.admits(1000, s(21.0)));
        let st = w.status(1000, s(21.0));
        assert_eq!(st.remaining, 0);
        assert_eq!(st.retry_after, Some(ms(49_200)));
        assert_eq!(st.reset, ms(59_700)); // the 500 of 20.7 s leave at 80.7 s
        assert!(!w.admits(1000, ms(70_199)));
        assert!(w.admits(1000, ms(70_200)));
        assert_eq!(w.sum(s(71.0)), 500);
        assert_eq!(w.status(1000, s(71.0)).remaining, 500);
        assert_eq!(w.sum(ms(80_700)), 0);
        assert_eq!(w.status(1000, ms(80_700)).reset, Duration::ZERO);
    }

    #[test]
    fn tokens_at_exact_limit_refuse() {
        let mut w = TokenWindow::new();
        w.record(100, s(1.0));
        assert!(!w.admits(100, s(1.5)));
        assert!(w.admits(101, s(1.5)));
    }

    #[test]
    fn token_buckets_are_bounded() {
        let mut w = TokenWindow::new();
        for i in 0..100_000u64 {
            w.record(1, Duration::from_millis(i * 7));
            assert!(w.buckets.len() <= MAX_TOKEN_BUCKETS);
        }
        // 7 ms apart: 1000 / 7 per second, over at least 60 and at most 61 seconds.
        let sum = w.sum(Duration::from_millis(99_999 * 7));
        assert!((8571..=8715).contains(&sum), "{sum}");
    }

    #[test]
    fn token_retry_walks_oldest_first() {
        let mut w = TokenWindow::new();
        w.record(50, s(0.0));
        w.record(50, s(1.0));
        w.record(50, s(2.0));
        // 150 against 60: after buckets 0 and 1 leave (at 61 s) 50 < 60.
        assert_eq!(w.status(60, s(3.0)).retry_after, Some(s(58.0)));
        assert_eq!(w.status(150, s(3.0)).retry_after, Some(s(57.0)));
    }

    #[test]
    fn a_token_wait_never_exceeds_the_window() {
        // Issue 17: one-second buckets once counted until their end + 60 s, so tokens
        // recorded early in a second could ask for a 61 s wait.
        let mut w = TokenWindow::new();
        w.record(10, ms(5_001));
        w.record(10, ms(5_999));
        let st = w.status(20, ms(5_999));
        assert_eq!(st.retry_after, Some(s(60.0)));
        assert_eq!(
            crate::limits::retry_after_secs(st.retry_after.unwrap_or_default()),
            60
        );
        // Strict: the early tokens still count until 60 s after the bucket's newest.
        assert!(!w.admits(20, ms(65_998)));
        assert!(w.admits(20, ms(65_999)));
    }
}
