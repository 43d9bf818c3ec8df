//! Admin sessions across the cluster: log in on one instance, use the dashboard on another,
//! and a logout anywhere ends the session everywhere.
//!
//! A session is one hash per session, `<prefix>{s:<hex of the id's SHA-256>}` with its CSRF
//! token and the SHA-256 of the password hash it was made under, expiring with the session.
//! The cookie's id itself is never stored (as in one instance). Reads are one round trip per
//! dashboard request, which are few.

use std::time::Duration;

use super::{Cluster, ClusterError};

/// A session as stored: (CSRF token, SHA-256 of the password hash it was made under).
pub type Stored = (String, [u8; 32]);

impl Cluster {
    /// Stores a session for `ttl`.
    pub fn store_session(
        &self,
        id_digest: &[u8; 32],
        csrf: &str,
        password_digest: &[u8; 32],
        ttl: Duration,
    ) -> Result<(), ClusterError> {
        let key = self.session_key(id_digest);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.with(|con, _| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg("csrf")
                .arg(csrf)
                .arg("pw")
                .arg(hex::encode(password_digest))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ms)
                .ignore()
                .query::<()>(con)
        })
    }

    /// The live session with this id digest, if any.
    pub fn load_session(&self, id_digest: &[u8; 32]) -> Result<Option<Stored>, ClusterError> {
        let key = self.session_key(id_digest);
        let (csrf, pw): (Option<String>, Option<String>) = self.with(|con, _| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg("csrf")
                .arg("pw")
                .query(con)
        })?;
        let (Some(csrf), Some(pw)) = (csrf, pw) else {
            return Ok(None);
        };
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(pw, &mut digest).is_err() {
            return Ok(None);
        }
        Ok(Some((csrf, digest)))
    }

    /// Ends the session with this id digest everywhere.
    pub fn drop_session(&self, id_digest: &[u8; 32]) -> Result<(), ClusterError> {
        let key = self.session_key(id_digest);
        self.with(|con, _| redis::cmd("DEL").arg(&key).query::<()>(con))
    }

    fn session_key(&self, id_digest: &[u8; 32]) -> String {
        format!("{}{{s:{}}}", self.prefix, hex::encode(id_digest))
    }
}
