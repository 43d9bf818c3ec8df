//! A key's budget and rate windows for one request: in this process, or across the cluster.
//!
//! Alone, the budget is checked against the spend ledger first (a refused request takes
//! nothing from the key's windows), then the in-process windows count the request. With
//! `[cluster]`, both are one round trip to Redis (`cluster::Cluster::admit`); when Redis cannot
//! be reached, `on_redis_error = "local"` falls back to the in-process check and `"closed"`
//! refuses with 503. A key with no limits and no budget is admitted without a round trip.
//!
//! Owns nothing: the limiter, the ledger and the cluster client are the gateway's.

use super::Gateway;
use super::finish::Draft;
use crate::cluster::Spend;
use crate::config::model::{Key, OnRedisError};
use crate::error::{ApiError, Kind};
use crate::limits::Decision;

impl Gateway {
    /// Admits and counts one request of `key`, or refuses it; the draft gets the key's
    /// `x-ratelimit-*` headers and what is left of its budget.
    pub(super) fn admit(&self, key: &Key, draft: &mut Draft) -> Result<(), ApiError> {
        let limited = key.limits.requests_per_minute.is_some()
            || key.limits.tokens_per_minute.is_some()
            || key.budget.is_some();
        if let Some(cluster) = self.cluster.as_ref().filter(|_| limited) {
            let now = crate::clock::unix_secs() as i64;
            let spend = key.budget.map(|budget| Spend { budget, now });
            match cluster.admit(&key.hash, key.limits, spend) {
                Ok(decided) => {
                    if let (Some(spend), Some(spent)) = (spend, decided.spent) {
                        draft.budget_remaining = Some(spend.budget.limit.saturating_sub(spent));
                        if decided.over_budget {
                            return Err(ApiError::budget_exceeded(
                                spend.budget.period.secs_left(now),
                            ));
                        }
                    }
                    return rate_verdict(decided.rate, draft);
                }
                Err(e) => match cluster.policy() {
                    OnRedisError::Closed => {
                        log::debug!("cluster: refusing a request: {e}");
                        return Err(ApiError::new(Kind::ClusterUnavailable));
                    }
                    OnRedisError::Local => {}
                },
            }
        }
        self.admit_locally(key, draft)
    }

    /// The budget against this instance's ledger, then the in-process windows.
    fn admit_locally(&self, key: &Key, draft: &mut Draft) -> Result<(), ApiError> {
        if let Some(budget) = key.budget {
            let now = crate::clock::unix_secs() as i64;
            let spent = self.spend.spent(&key.name, budget.period, now);
            draft.budget_remaining = Some(budget.limit.saturating_sub(spent));
            if spent >= budget.limit {
                return Err(ApiError::budget_exceeded(budget.period.secs_left(now)));
            }
        }
        let decision = self
            .limiter
            .check_request(&key.hash, key.limits, self.now());
        rate_verdict(decision, draft)
    }
}

fn rate_verdict(decision: Decision, draft: &mut Draft) -> Result<(), ApiError> {
    draft.rate_headers = decision.headers.header_pairs();
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::rate_limited(
            decision.retry_after_secs.unwrap_or(1),
        ))
    }
}
