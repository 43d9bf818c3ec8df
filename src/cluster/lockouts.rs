//! Lockouts across the cluster: failure streaks and locks per address live in Redis, so a lock
//! earned through one instance holds on all of them.
//!
//! Counting a failure is one [`super::scripts::FAIL`] call (failures are the rare path). The
//! check on every request stays local — no round trip — against the instance's own lockout
//! tables, into which the prober copies the cluster's locks every [`POLL`] (the locks index,
//! read by [`super::scripts::LIVE`]); the instance that sets a lock copies it at once. So a
//! lock set elsewhere is honoured within half a second. A success clears the shared streak
//! only when this instance had seen failures from the address (the streak is a sliding window,
//! so failures seen elsewhere age out on their own).

use std::time::Duration;

use super::{Cluster, ClusterError};
use crate::config::model::SecuritySettings;
use crate::limits::lockout::AddrKey;

/// How often an instance copies the cluster's locks (and cooldowns).
pub const POLL: Duration = Duration::from_millis(500);

/// Which streak a failure counts in (kept apart as in one instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streak {
    Keys,
    Logins,
}

/// What counting one failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Locked already (nothing counted): this long left.
    AlreadyLocked(Duration),
    /// Counted; `Some` with the lock's length when this failure locked the address.
    Counted(Option<Duration>),
}

impl Cluster {
    /// Counts one failure from `addr` in `streak`.
    pub fn count_failure(
        &self,
        addr: AddrKey,
        streak: Streak,
        settings: &SecuritySettings,
    ) -> Result<Failure, ClusterError> {
        let tag = addr_tag(addr);
        let failures = self.tagged(&tag, streak_name(streak));
        let lock = self.tagged(&tag, "lock");
        let window = u64::try_from(settings.lockout_window.as_micros()).unwrap_or(u64::MAX);
        let lock_ms = u64::try_from(settings.lockout_duration.as_millis()).unwrap_or(u64::MAX);
        let member = self.member();
        let (state, ms): (u8, u64) = self.with(|con, scripts| {
            scripts
                .fail
                .key(&failures)
                .key(&lock)
                .arg(settings.lockout_max_failures)
                .arg(window)
                .arg(lock_ms.max(1))
                .arg(&member)
                .invoke(con)
        })?;
        Ok(match state {
            1 => Failure::AlreadyLocked(Duration::from_millis(ms)),
            2 => {
                // The index lets the other instances learn of the lock; the lock key itself
                // stays the truth, so a lost index write only delays them.
                let index = self.locks_key();
                let _ = self.with(|con, _| {
                    redis::pipe()
                        .cmd("ZADD")
                        .arg(&index)
                        .arg(ms)
                        .arg(&tag)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&index)
                        .arg(lock_ms.max(1))
                        .ignore()
                        .query::<()>(con)
                });
                Failure::Counted(Some(settings.lockout_duration))
            }
            _ => Failure::Counted(None),
        })
    }

    /// Ends `addr`'s streak of `streak` failures (a success), and its lock with `unlock`.
    pub fn clear_streak(
        &self,
        addr: AddrKey,
        streak: Streak,
        unlock: bool,
    ) -> Result<(), ClusterError> {
        let tag = addr_tag(addr);
        let key = self.tagged(&tag, streak_name(streak));
        let lock = self.tagged(&tag, "lock");
        let index = self.locks_key();
        self.with(|con, _| {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(&key).ignore();
            if unlock {
                pipe.cmd("DEL").arg(&lock).ignore();
                pipe.cmd("ZREM").arg(&index).arg(&tag).ignore();
            }
            pipe.query::<()>(con)
        })
    }

    /// The addresses locked now, with how long each lock has left.
    pub fn locked(&self) -> Result<Vec<(AddrKey, Duration)>, ClusterError> {
        let live = self.live(&self.locks_key())?;
        Ok(live
            .into_iter()
            .filter_map(|(tag, left)| Some((parse_tag(&tag)?, left)))
            .collect())
    }

    /// `<prefix>{<tag>}:<what>`.
    fn tagged(&self, tag: &str, what: &str) -> String {
        format!("{}{{{tag}}}:{what}", self.prefix)
    }

    fn locks_key(&self) -> String {
        format!("{}locks", self.prefix)
    }
}

fn streak_name(streak: Streak) -> &'static str {
    match streak {
        Streak::Keys => "kf",
        Streak::Logins => "lf",
    }
}

/// `ip4:<hex>` or `ip6:<hex of the /64>`.
fn addr_tag(addr: AddrKey) -> String {
    match addr {
        AddrKey::V4(v4) => format!("ip4:{v4:08x}"),
        AddrKey::V6Net(net) => format!("ip6:{net:016x}"),
    }
}

fn parse_tag(tag: &str) -> Option<AddrKey> {
    if let Some(hex) = tag.strip_prefix("ip4:") {
        return u32::from_str_radix(hex, 16).ok().map(AddrKey::V4);
    }
    let hex = tag.strip_prefix("ip6:")?;
    u64::from_str_radix(hex, 16).ok().map(AddrKey::V6Net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_tags_round_trip() {
        for addr in [
            AddrKey::V4(0),
            AddrKey::V4(0x7f00_0001),
            AddrKey::V6Net(u64::MAX),
            AddrKey::V6Net(0x2001_0db8_0000_0001),
        ] {
            assert_eq!(parse_tag(&addr_tag(addr)), Some(addr));
        }
        assert_eq!(parse_tag("ip4:zz"), None);
        assert_eq!(parse_tag("other"), None);
    }
}
