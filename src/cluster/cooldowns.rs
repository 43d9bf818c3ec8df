//! Target cooldowns across the cluster: when a target starts cooling down on one instance, the
//! others skip it too.
//!
//! Each instance counts its own streak of failures (a streak is about consecutive answers it
//! saw); the cooldown it starts is shared through one index (zset: target → end time, on the
//! Redis clock), written by [`super::scripts::COOL`]. The prober copies the index into the
//! local routing table every [`super::lockouts::POLL`], and a trial request that succeeds
//! removes the target from it, so the others put it back in rotation at their next copy.
//! The index holds only configured target names, and expires with its longest cooldown.

use std::time::Duration;

use super::{Cluster, ClusterError};

/// Most entries read from an index at once (every half second, per instance: a flood of
/// locked addresses must not turn the poll into megabytes; past it, the locks that end
/// soonest are left out, and the instance that counted a lock holds it anyway).
pub(super) const MAX_LIVE: usize = 10_000;

impl Cluster {
    /// `target` starts a cooldown of `wait` for every instance.
    pub fn enter_cooldown(&self, target: &str, wait: Duration) -> Result<(), ClusterError> {
        let index = self.cooldowns_key();
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        self.with(|con, scripts| {
            scripts
                .cool
                .key(&index)
                .arg(target)
                .arg(ms)
                .invoke::<i64>(con)
        })
        .map(|_| ())
    }

    /// `target` is back in rotation (a trial succeeded).
    pub fn end_cooldown(&self, target: &str) -> Result<(), ClusterError> {
        let index = self.cooldowns_key();
        self.with(|con, _| redis::cmd("ZREM").arg(&index).arg(target).query::<()>(con))
    }

    /// The targets cooling down now, with how long each has left.
    pub fn cooling(&self) -> Result<Vec<(String, Duration)>, ClusterError> {
        self.live(&self.cooldowns_key())
    }

    /// The live entries of an index read by [`super::scripts::LIVE`].
    pub(super) fn live(&self, index: &str) -> Result<Vec<(String, Duration)>, ClusterError> {
        let reply: Vec<String> =
            self.with(|con, scripts| scripts.live.key(index).arg(MAX_LIVE).invoke(con))?;
        let Some((now, rest)) = reply.split_first() else {
            return Ok(Vec::new());
        };
        let now: u64 = now.parse().unwrap_or(0);
        Ok(rest
            .chunks_exact(2)
            .filter_map(|pair| {
                let until: u64 = pair[1].parse().ok()?;
                Some((
                    pair[0].clone(),
                    Duration::from_millis(until.saturating_sub(now)),
                ))
            })
            .collect())
    }

    fn cooldowns_key(&self) -> String {
        format!("{}cooldowns", self.prefix)
    }
}
