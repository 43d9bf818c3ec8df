//! Admin sessions: random 256-bit ids handed out as a cookie, kept server-side with their
//! expiry and CSRF token.
//!
//! State owned here: the session table, keyed by the SHA-256 of the id (so a lookup's timing
//! says nothing useful about stored ids, and the table never holds a usable cookie). Each
//! session also remembers a fingerprint of the password hash it was created under: changing
//! the admin password (and reloading) ends every session. The table is bounded: only a correct
//! password creates a session, expired ones are swept on every create, and past
//! [`MAX_SESSIONS`] the one closest to expiry is dropped.
//!
//! In a cluster ([`Sessions::share`]) sessions also live in Redis, which is then the truth: a
//! session made on another instance is found there, and one ended anywhere is gone here too.
//! While Redis is down, this instance's own table answers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cluster::Cluster;

/// Most live sessions at once.
pub const MAX_SESSIONS: usize = 64;

struct Session {
    expires: Instant,
    csrf: String,
    password: [u8; 32],
}

/// A new session's cookie value and CSRF token.
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
    shared: OnceLock<Arc<Cluster>>,
}

impl Sessions {
    /// Keeps sessions in `cluster` too, from now on.
    pub fn share(&self, cluster: Arc<Cluster>) {
        let _ = self.shared.set(cluster);
    }

    /// Creates a session valid for `ttl` from `now`, under the password hash `password_hash`.
    pub fn create(&self, password_hash: &str, ttl: Duration, now: Instant) -> NewSession {
        let id = random_token();
        let csrf = random_token();
        let mut table = self.table.lock();
        table.retain(|_, s| s.expires > now);
        while table.len() >= MAX_SESSIONS {
            let oldest = table.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        let password = digest(password_hash);
        table.insert(
            digest(&id),
            Session {
                expires: now + ttl,
                csrf: csrf.clone(),
                password,
            },
        );
        drop(table);
        if let Some(cluster) = self.shared.get()
            && let Err(e) = cluster.store_session(&digest(&id), &csrf, &password, ttl)
        {
            log::debug!("cluster: a new admin session is known to this instance only: {e}");
        }
        NewSession { id, csrf }
    }

    /// The CSRF token of the live session `id`, if there is one; an expired session, or one
    /// made under another password hash, is removed.
    pub fn get(&self, id: &str, password_hash: &str, now: Instant) -> Option<String> {
        let key = digest(id);
        if let Some(cluster) = self.shared.get() {
            match cluster.load_session(&key) {
                Ok(Some((csrf, password))) => {
                    let password_ok: bool = password.ct_eq(&digest(password_hash)).into();
                    return password_ok.then_some(csrf);
                }
                Ok(None) => {
                    self.table.lock().remove(&key);
                    return None;
                }
                // Redis is down: this instance's own table answers.
                Err(_) => {}
            }
        }
        let mut table = self.table.lock();
        let session = table.get(&key)?;
        let password_ok: bool = session.password.ct_eq(&digest(password_hash)).into();
        if session.expires <= now || !password_ok {
            table.remove(&key);
            return None;
        }
        Some(session.csrf.clone())
    }

    /// Ends session `id` (everywhere, in a cluster).
    pub fn remove(&self, id: &str) {
        let key = digest(id);
        self.table.lock().remove(&key);
        if let Some(cluster) = self.shared.get()
            && let Err(e) = cluster.drop_session(&key)
        {
            log::warn!(
                "cluster: a logout could not reach Redis; other instances keep the session until it expires: {e}"
            );
        }
    }

    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 32 bytes from the OS CSPRNG, base64url without padding (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn create_get_expire_remove() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let s = sessions.create("$argon2id$a", TTL, t0);
        assert_eq!(s.id.len(), 43);
        assert_ne!(s.id, s.csrf);
        assert_eq!(
            sessions.get(&s.id, "$argon2id$a", t0).as_deref(),
            Some(&*s.csrf)
        );
        assert!(sessions.get("nope", "$argon2id$a", t0).is_none());
        assert!(sessions.get(&s.id, "$argon2id$a", t0 + TTL).is_none());
        assert!(
            sessions.is_empty(),
            "an expired session is removed when seen"
        );
        let s = sessions.create("$argon2id$a", TTL, t0);
        sessions.remove(&s.id);
        assert!(sessions.get(&s.id, "$argon2id$a", t0).is_none());
    }

    #[test]
    fn a_new_password_ends_old_sessions() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let s = sessions.create("$argon2id$old", TTL, t0);
        assert!(sessions.get(&s.id, "$argon2id$new", t0).is_none());
        assert!(sessions.get(&s.id, "$argon2id$old", t0).is_none());
    }

    #[test]
    fn table_is_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let first = sessions.create("h", TTL, t0);
        for i in 0..MAX_SESSIONS + 10 {
            sessions.create("h", TTL, t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(&first.id, "h", t0).is_none());
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
    }
}
