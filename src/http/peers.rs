//! Open connections per client address, so one client cannot take every connection slot
//! (`max_connections_per_ip`).
//!
//! The address is the TCP peer's: an IPv4 address, or an IPv6 address's /64 (one subscriber
//! gets a whole /64 and can use as many of its addresses as it likes, so per address would
//! be no cap at all); IPv4-mapped IPv6 counts as the IPv4 address. Trusted proxies are not
//! counted: behind one, every connection is the proxy's, carrying many clients.
//!
//! State owned here: [`PeerCounts`], address → open connections, one entry per address with
//! at least one connection open (removed when its count reaches 0). Only admitted
//! connections are counted, so the table never has more than `max_connections` entries.
//! It lives inside the pool's lock, so admission and the slot count change together.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// The key a connection from `peer` is counted under, or `None` when it is not counted (no
/// cap, or a trusted proxy).
pub(crate) fn key(peer: IpAddr, cap: Option<usize>, trusted: &[IpNet]) -> Option<IpAddr> {
    cap?;
    let ip = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    if trusted.iter().any(|net| net.contains(&ip)) {
        return None;
    }
    Some(match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    })
}

/// Open connections per counted key.
#[derive(Default)]
pub(crate) struct PeerCounts {
    open: HashMap<IpAddr, usize>,
}

impl PeerCounts {
    /// Counts one more connection for `key` unless it has `cap` open already.
    pub fn admit(&mut self, key: IpAddr, cap: usize) -> bool {
        let n = self.open.entry(key).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                self.open.remove(&key);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// Counts a connection of `key` out; the entry goes when its count reaches 0.
    pub fn release(&mut self, key: IpAddr) {
        if let Entry::Occupied(mut e) = self.open.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_group_ipv6_by_64_and_skip_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            key(ip("192.0.2.1"), Some(2), &trusted),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            key(ip("2001:db8:1:2:aaaa::1"), Some(2), &trusted),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            key(ip("::ffff:192.0.2.1"), Some(2), &trusted),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(key(ip("10.1.2.3"), Some(2), &trusted), None);
        assert_eq!(key(ip("::ffff:10.1.2.3"), Some(2), &trusted), None);
        assert_eq!(key(ip("192.0.2.1"), None, &trusted), None);
    }

    #[test]
    fn counts_up_to_the_cap_and_forget_closed_addresses() {
        let mut c = PeerCounts::default();
        let a = ip("192.0.2.1");
        assert!(c.admit(a, 2) && c.admit(a, 2));
        assert!(!c.admit(a, 2));
        assert!(c.admit(ip("192.0.2.2"), 2));
        c.release(a);
        assert!(c.admit(a, 2));
        c.release(a);
        c.release(a);
        c.release(ip("192.0.2.2"));
        assert_eq!(c.len(), 0, "no entry outlives its last connection");
        assert!(!c.admit(a, 0));
        assert_eq!(c.len(), 0, "a refusal leaves no entry");
        c.release(a);
        assert_eq!(c.len(), 0);
    }
}
