//! Who is calling: the client address, the lockout check, and the gateway key.
//!
//! Order matters: a locked-out address is refused before its credentials are looked at (so a
//! correct key from a locked address fails too); a missing or unknown key counts as a failure
//! for the lockout; a known key resets the count. The key itself is only ever hashed (SHA-256)
//! and looked up by hash; it is never logged or forwarded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::Gateway;
use super::error::ApiError;
use crate::config::Config;
use crate::config::model::Key;
use crate::crypto::apikey::KeyHash;
use crate::http::Request;

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

impl Gateway {
    /// Authenticates the request's key for a client at `ip`.
    pub(super) fn authenticate(
        &self,
        config: &Config,
        req: &Request<'_>,
        ip: IpAddr,
    ) -> Result<Arc<Key>, ApiError> {
        let now = self.now();
        let security = &config.security;
        if let Err(wait) = self.lockout.check(ip, security, now) {
            return Err(ApiError::locked_out(wait.0));
        }
        let key = credential(req)
            .and_then(|presented| config.key_by_hash(&KeyHash::of(presented)).cloned());
        let Some(key) = key else {
            // The lockout table logs the one line when this locks the address.
            self.lockout.record_failure(ip, security, now);
            return Err(if credential(req).is_some() {
                ApiError::unknown_key()
            } else {
                ApiError::missing_key()
            });
        };
        self.lockout.record_success(ip);
        if key.disabled {
            return Err(ApiError::forbidden(
                "key_disabled",
                "this API key is disabled",
            ));
        }
        if key.is_expired(SystemTime::now()) {
            return Err(ApiError::forbidden(
                "key_expired",
                "this API key has expired",
            ));
        }
        if !key.allows_ip(ip) {
            return Err(ApiError::forbidden(
                "ip_not_allowed",
                "this API key may not be used from this address",
            ));
        }
        Ok(key)
    }
}
