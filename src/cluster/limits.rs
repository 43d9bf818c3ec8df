//! A gateway key's limits across the cluster: budget, request window and token window checked
//! in one [`super::scripts::ADMIT`] round trip; tokens and spend written afterwards by the writer.
//!
//! The answer is turned into the same [`Decision`] the in-process limiter gives, so clients see
//! the same `x-ratelimit-*` headers and `Retry-After` whichever instance answers.

use std::time::Duration;

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

/// The reply of [`super::scripts::ADMIT`].
type AdmitReply = (u8, u8, u64, u64, u64, u64, u64, u64, u64, u64, u64);

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
        let (budget_key, limit_hi, limit_lo) = match spend {
            Some(s) => {
                let picos = s.budget.limit.picos();
                (
                    self.budget_key(key, s),
                    (picos / HALF).to_string(),
                    (picos % HALF).to_string(),
                )
            }
            None => (self.key_of(key, "b"), String::new(), String::new()),
        };
        let member = self.member();
        let base = self.key_base(key);
        let reply: String = self.with(|con, scripts| {
            scripts
                .admit
                .key(format!("{base}r"))
                .key(format!("{base}tt"))
                .key(format!("{base}ts"))
                .key(&budget_key)
                .arg(rpm)
                .arg(tpm)
                .arg(&limit_hi)
                .arg(&limit_lo)
                .arg(&member)
                .invoke(con)
        })?;
        let mut numbers = reply
            .split_ascii_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(0));
        let mut next = || numbers.next().unwrap_or(0);
        let reply: AdmitReply = (
            next() as u8,
            next() as u8,
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
        );
        Ok(decide(reply, rpm, tpm, spend.is_some()))
    }

    /// Records what a completed response of `key` leaves: `tokens` (0 = none) in its token
    /// window, and `mine`, this instance's whole spend for the period of `spend`. Sent without
    /// waiting for the reply (read by the connection's next user); a failure is counted and
    /// logged at debug level (the window then misses these tokens; the spend is written whole
    /// again with the next charge).
    pub fn settle(&self, key: &KeyHash, tokens: u64, spend: Option<(Spend, Usd)>) {
        let (budget_key, picos, expire_at) = match spend {
            Some((s, mine)) => {
                let end = s.budget.period.days(s.now).end * 86_400;
                // A day past the period's end: a late write never keeps it for long.
                (
                    self.budget_key(key, s),
                    mine.picos().to_string(),
                    end + 86_400,
                )
            }
            None => (self.key_of(key, "b"), String::new(), 0),
        };
        let base = self.key_base(key);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.settle.get_hash())
            .arg(3)
            .arg(format!("{base}tt"))
            .arg(format!("{base}ts"))
            .arg(&budget_key)
            .arg(tokens)
            .arg(&self.instance)
            .arg(&picos)
            .arg(expire_at);
        // Sent before the response's last byte, read later: Redis has it before the client can
        // send its next request anywhere.
        if let Err(e) = self.send_only(&cmd) {
            log::debug!("cluster: a response's tokens and spend were not recorded: {e}");
        }
    }

    fn budget_key(&self, key: &KeyHash, spend: Spend) -> String {
        let period = spend.budget.period;
        let first = period.days(spend.now).start;
        self.key_of(key, &format!("b:{}:{first}", period.name()))
    }
}

/// The script's reply as the limiter's [`Decision`].
fn decide(reply: AdmitReply, rpm: u32, tpm: u64, budgeted: bool) -> ClusterDecision {
    let (allowed, over, now, count, oldest, newest, tsum, tretry, tnewest, hi, lo) = reply;
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
