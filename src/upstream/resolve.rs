//! A name resolver for the upstream agents that remembers its answers for a short while.
//!
//! ureq resolves the upstream's host before every request, even when a pooled connection will
//! carry it, and because a timeout is configured its default resolver does each lookup on a
//! freshly spawned thread: one thread (2 MiB stack, clone + exit) per proxied request, which
//! profiled as the largest single cost of a small request. Here a lookup runs through ureq's
//! default resolver (with its timeout) only when no answer younger than [`TTL`] is held; new
//! connections still see a change of address within [`TTL`]. Failures are not remembered.
//!
//! State owned here: the recent answers, keyed by scheme and authority (a provider's agent
//! talks to one host, so the table holds one or two entries).

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is used for new connections.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// Most hosts remembered (a proxy or a redirect could add some); the oldest goes first.
const MAX_ENTRIES: usize = 8;

struct Entry {
    scheme: String,
    authority: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

#[derive(Default)]
pub(crate) struct CachingResolver {
    inner: DefaultResolver,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingResolver")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return self.inner.resolve(uri, config, timeout);
        };
        let authority = authority.as_str();
        let now = Instant::now();
        {
            let entries = self.entries.lock();
            let hit = entries
                .iter()
                .find(|e| e.scheme == scheme && e.authority == authority);
            if let Some(e) = hit.filter(|e| now.duration_since(e.at) < TTL) {
                return Ok(e.addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut entries = self.entries.lock();
        entries.retain(|e| !(e.scheme == scheme && e.authority == authority));
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(Entry {
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            at: now,
            addrs: addrs.clone(),
        });
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachingResolver, url: &str) -> Vec<std::net::SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let config = Config::default();
        let timeout = NextTimeout {
            after: Duration::from_secs(5).into(),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout)
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn answers_are_kept_per_host() {
        let r = CachingResolver::default();
        let a = resolve(&r, "http://127.0.0.1:8080/v1/chat/completions");
        assert_eq!(a, vec!["127.0.0.1:8080".parse().unwrap()]);
        let b = resolve(&r, "http://127.0.0.1:9090/v1");
        assert_eq!(b, vec!["127.0.0.1:9090".parse().unwrap()]);
        assert_eq!(r.entries.lock().len(), 2);
        // A second lookup is served from the table.
        r.entries.lock()[0].addrs.truncate(0);
        assert!(resolve(&r, "http://127.0.0.1:8080/other").is_empty());
        // An expired answer is looked up again.
        r.entries.lock()[0].at = Instant::now() - TTL;
        assert_eq!(
            resolve(&r, "http://127.0.0.1:8080/"),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
    }
}
