//! A gateway key's limits across the cluster: budget, request window and token window checked
//! in one [`super::scripts::ADMIT`] round trip; tokens and spend written afterwards by the writer.
//!
//! The answer is turned into the same [`Decision`] the in-process limiter gives, so clients see
//! the same `x-ratelimit-*` headers and `Retry-After` whichever instance answers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::packed::{self, Packed};
use super::{Cluster, ClusterError};
use crate::config::model::{Budget, Limits};
use crate::cost::Usd;
use crate::crypto::apikey::KeyHash;
use crate::limits::window::{MAX_REQUESTS_PER_WINDOW, WINDOW, WindowStatus};
use crate::limits::{Decision, RateHeaders};

/// Pico-dollars in the low half of a split sum.
const HALF: u64 = 1_000_000_000;

/// What the cluster decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDecision {
    /// The rate windows' verdict and headers (not counted when over budget).
    pub rate: Decision,
    /// The key's spend this period across the cluster, when it has a budget.
    pub spent: Option<Usd>,
    /// The budget is used up: refused, nothing counted.
    pub over_budget: bool,
}

/// A key's budget as the cluster sees it: the limit and where its spend is kept.
#[derive(Debug, Clone, Copy)]
pub struct Spend {
    pub budget: Budget,
    /// Unix seconds now (picks the period).
    pub now: i64,
}

/// The reply of [`super::scripts::ADMIT`]: allowed, over budget, now, requests, oldest,
/// newest, tokens, token retry, newest token, spend high, spend low.
type AdmitReply = [u64; 11];

impl Cluster {
    /// Checks `key`'s budget and windows and counts the request when it is admitted.
    pub fn admit(
        &self,
        key: &KeyHash,
        limits: Limits,
        spend: Option<Spend>,
    ) -> Result<ClusterDecision, ClusterError> {
        let rpm = limits
            .requests_per_minute
            .map_or(0, |l| l.min(MAX_REQUESTS_PER_WINDOW));
        let tpm = limits.tokens_per_minute.unwrap_or(0);
        let keys = KeyParts::new(self, key);
        let budget = spend.map(|s| keys.budget(s));
        let (limit_hi, limit_lo) = spend.map_or((None, None), |s| {
            let picos = s.budget.limit.picos();
            (Some(picos / HALF), Some(picos % HALF))
        });
        let mut digits = [
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        ];
        let [hi, lo, n] = &mut digits;
        let hi = limit_hi.map_or("", |v| hi.format(v)).as_bytes();
        let lo = limit_lo.map_or("", |v| lo.format(v)).as_bytes();
        let n = n
            .format(self.next.fetch_add(1, Ordering::Relaxed))
            .as_bytes();
        let reply = self.call(|out| {
            Packed::new(out, 12)
                .arg(&[b"EVALSHA"])
                .arg(&[self.scripts.admit.get_hash().as_bytes()])
                .num(4u8)
                .arg(&keys.key(b"r"))
                .arg(&keys.key(b"tt"))
                .arg(&keys.key(b"ts"))
                .arg(&keys.key(budget.as_deref().unwrap_or("b").as_bytes()))
                .num(rpm)
                .num(tpm)
                .arg(&[hi])
                .arg(&[lo])
                // This request's unique member (see `Cluster::member`).
                .arg(&[self.run.as_bytes(), b":", n]);
        })?;
        let Some(reply) = packed::numbers::<11>(&reply) else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(ClusterError("an admit reply of another shape".to_owned()));
        };
        Ok(decide(reply, rpm, tpm, spend.is_some()))
    }

    /// Records what a completed response of `key` leaves: `tokens` (0 = none) in its token
    /// window, and `mine`, this instance's whole spend for the period of `spend`. Sent without
    /// waiting for the reply (read by the connection's next user); a failure is counted and
    /// logged at debug level (the window then misses these tokens; the spend is written whole
    /// again with the next charge).
    pub fn settle(&self, key: &KeyHash, tokens: u64, spend: Option<(Spend, Usd)>) {
        let keys = KeyParts::new(self, key);
        let budget = spend.map(|(s, _)| keys.budget(s));
        let (picos, expire_at) = match spend {
            Some((s, mine)) => {
                let end = s.budget.period.days(s.now).end * 86_400;
                // A day past the period's end: a late write never keeps it for long.
                (Some(mine.picos()), end + 86_400)
            }
            None => (None, 0),
        };
        let mut digits = itoa::Buffer::new();
        let picos = picos.map_or("", |p| digits.format(p)).as_bytes();
        // Sent before the response's last byte, read later: Redis has it before the client can
        // send its next request anywhere.
        let sent = self.send_only(|out| {
            Packed::new(out, 10)
                .arg(&[b"EVALSHA"])
                .arg(&[self.scripts.settle.get_hash().as_bytes()])
                .num(3u8)
                .arg(&keys.key(b"tt"))
                .arg(&keys.key(b"ts"))
                .arg(&keys.key(budget.as_deref().unwrap_or("b").as_bytes()))
                .num(tokens)
                .arg(&[self.instance.as_bytes()])
                .arg(&[picos])
                .num(expire_at);
        });
        if let Err(e) = sent {
            log::debug!("cluster: a response's tokens and spend were not recorded: {e}");
        }
    }
}

/// A gateway key's Redis keys, `<prefix>{k:<32 hex of its hash>}:<what>`, as the parts each
/// is written from (no string is built for them).
struct KeyParts<'a> {
    prefix: &'a [u8],
    hex: [u8; 32],
}

impl<'a> KeyParts<'a> {
    fn new(cluster: &'a Cluster, key: &KeyHash) -> KeyParts<'a> {
        let mut hex = [b'0'; 32];
        // 16 bytes are 32 hex digits, so the buffer is exactly the right size.
        let _ = hex::encode_to_slice(&key.0[..16], &mut hex);
        KeyParts {
            prefix: cluster.prefix.as_bytes(),
            hex,
        }
    }

    fn key<'b>(&'b self, what: &'b [u8]) -> [&'b [u8]; 5] {
        [self.prefix, b"{k:", &self.hex, b"}:", what]
    }

    /// `what` of the key's spend for the period `spend` falls in: `b:<period>:<first day>`.
    fn budget(&self, spend: Spend) -> String {
        let period = spend.budget.period;
        let mut what = String::with_capacity(24);
        what.push_str("b:");
        what.push_str(period.name());
        what.push(':');
        what.push_str(itoa::Buffer::new().format(period.days(spend.now).start));
        what
    }
}

/// The script's reply as the limiter's [`Decision`].
fn decide(reply: AdmitReply, rpm: u32, tpm: u64, budgeted: bool) -> ClusterDecision {
    let [
        allowed,
        over,
        now,
        count,
        oldest,
        newest,
        tsum,
        tretry,
        tnewest,
        hi,
        lo,
    ] = reply;
    let allowed = allowed == 1;
    let window = micros(WINDOW);
    // Time from `now` until `at + window` (0 when past).
    let until = |at: u64| Duration::from_micros((at + window).saturating_sub(now));
    let requests = (rpm > 0).then(|| WindowStatus {
        limit: u64::from(rpm),
        remaining: u64::from(rpm).saturating_sub(count),
        reset: if count > 0 {
            until(newest)
        } else {
            Duration::ZERO
        },
        retry_after: (count >= u64::from(rpm)).then(|| until(oldest)),
    });
    let tokens = (tpm > 0).then(|| WindowStatus {
        limit: tpm,
        remaining: tpm.saturating_sub(tsum),
        reset: if tsum > 0 {
            until(tnewest)
        } else {
            Duration::ZERO
        },
        retry_after: (tsum >= tpm && tretry > 0).then(|| until(tretry)),
    });
    ClusterDecision {
        rate: Decision::new(allowed, RateHeaders { requests, tokens }),
        spent: budgeted.then(|| Usd::from_picos(hi.saturating_mul(HALF).saturating_add(lo))),
        over_budget: over == 1,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
