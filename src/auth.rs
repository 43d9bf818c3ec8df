//! Who is calling: the client address, the lockout check, and the gateway key.
//!
//! Order matters: a locked-out address is refused before its credentials are looked at (so a
//! correct key from a locked address fails too, and so does a locked address's admin login).
//! Then, for the key-failure table of [`crate::limits::lockout::Lockouts`]:
//!
//! - no key at all is not a failure: any web page can make a browser send key-less requests
//!   (`<img src=…/v1/models>`), and those must not lock out the user's real key;
//! - a presented key whose hash matches no key is a failure: that is what a guess looks like;
//! - a known key that is disabled, expired or used from an address outside its `allowed_ips`
//!   neither counts nor clears: it is no guess (its holder has, or had, a real key), and no
//!   proof of a working key either, so a revoked key cannot reset a streak;
//! - only a key that passed every check clears the key streak, and never the admin-login
//!   streak (only a login clears that).
//!
//! The key itself is only ever hashed (SHA-256) and looked up by hash; it is never logged or
//! forwarded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cluster::Cluster;
use crate::cluster::lockouts::{Failure, Streak};
use crate::config::Config;
use crate::config::model::Key;
use crate::config::model::SecuritySettings;
use crate::crypto::apikey::KeyHash;
use crate::error::{ApiError, Kind};
use crate::http::Request;
use crate::limits::lockout::{AddrKey, Lockouts, log_locked};

/// The key presented by the request: `Authorization: Bearer <key>`, else `x-api-key`.
pub fn credential<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let bearer = req.header("authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    });
    bearer
        .or_else(|| req.header("x-api-key").map(str::trim))
        .filter(|key| !key.is_empty())
}

/// Authenticates the request's key for a client at `ip`; `now` is the lockout tables' clock.
/// With a cluster, failures are counted there (and its locks reach `lockout` through the
/// prober); the check itself stays local.
pub fn authenticate(
    config: &Config,
    lockout: &Lockouts,
    cluster: Option<&Cluster>,
    req: &Request<'_>,
    ip: IpAddr,
    now: Duration,
) -> Result<Arc<Key>, ApiError> {
    let security = &config.security;
    if let Err(wait) = lockout.check(ip, security, now) {
        return Err(ApiError::locked_out(wait.0));
    }
    let Some(presented) = credential(req) else {
        return Err(ApiError::new(Kind::MissingKey));
    };
    let Some(key) = config.key_by_hash(&KeyHash::of(presented)).cloned() else {
        count_key_failure(lockout, cluster, ip, security, now);
        return Err(ApiError::new(Kind::InvalidKey));
    };
    if key.disabled {
        return Err(ApiError::new(Kind::KeyDisabled));
    }
    if key.is_expired(SystemTime::now()) {
        return Err(ApiError::new(Kind::KeyExpired));
    }
    if !key.allows_ip(ip) {
        return Err(ApiError::new(Kind::IpNotAllowed));
    }
    let had_failures = lockout.keys.record_success(ip);
    if let (Some(cluster), true) = (cluster, had_failures) {
        let _ = cluster.clear_streak(AddrKey::of(ip), Streak::Keys, false);
    }
    Ok(key)
}

/// A presented key that matches none: counted in the cluster when there is one (falling back
/// to this instance's table when Redis is down), else here. The one log line of a new lock is
/// written by whichever counted it.
fn count_key_failure(
    lockout: &Lockouts,
    cluster: Option<&Cluster>,
    ip: IpAddr,
    security: &SecuritySettings,
    now: Duration,
) {
    if security.lockout_max_failures == 0 {
        return;
    }
    let Some(cluster) = cluster else {
        lockout.keys.record_failure(ip, security, now);
        return;
    };
    match cluster.count_failure(AddrKey::of(ip), Streak::Keys, security) {
        Ok(Failure::Counted(Some(length))) => {
            lockout.keys.lock(AddrKey::of(ip), now, now + length);
            log_locked(ip, security, "failed attempts");
        }
        Ok(Failure::AlreadyLocked(left)) => lockout.keys.lock(AddrKey::of(ip), now, now + left),
        Ok(Failure::Counted(None)) => {}
        Err(_) => {
            lockout.keys.record_failure(ip, security, now);
        }
    }
}
