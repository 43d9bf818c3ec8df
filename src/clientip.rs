//! The real client address: the socket peer, or `X-Forwarded-For` from a trusted proxy; and
//! whether the client spoke HTTPS to that proxy (`X-Forwarded-Proto`).
//!
//! Lockouts, `allowed_ips` and the usage log all key on this address, so it must not be
//! something a client can choose. The rules:
//!
//! - The socket peer is the answer unless it is in `server.trusted_proxies`; then, and only
//!   then, `X-Forwarded-For` is read. Anyone else's header is ignored entirely.
//! - All `X-Forwarded-For` header values are joined in order and walked right to left. Each
//!   trusted proxy appends the address it saw, so the right-most entries were written by our
//!   own proxies; the first entry that is not a trusted proxy is the client. Entries further
//!   left were written by the client or by proxies we do not trust, and are never looked at.
//! - If every entry is a trusted proxy, the left-most one is the answer (a request from inside
//!   the trusted network).
//! - An entry that does not parse as an address stops the walk and the last trusted hop (the
//!   proxy that wrote it, or the peer) is the answer. Skipping it would mean believing what is
//!   to its left, which the proxy that wrote the garbage may have copied from the client.
//!   Attributing the request to our own proxy is the safe failure: it can only happen when a
//!   trusted proxy is misconfigured, never by a client's choice.
//! - Entries may carry a port (`192.0.2.1:1234`, `[2001:db8::1]:443`) or brackets; these are
//!   accepted. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are normalised to IPv4, for the
//!   peer as for entries.
//!
//! It owns no state; the trusted list comes from the current config on every call.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address a request is attributed to. `xff_values`: every `X-Forwarded-For` header value
/// of the request, in the order received.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff_values: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let mut current = normalise(peer);
    if !is_trusted(current, trusted) {
        return current;
    }
    let values: Vec<&str> = xff_values.collect();
    for value in values.iter().rev() {
        for entry in value.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                // `a, , b` or a trailing comma: nothing was claimed here.
                continue;
            }
            let Some(hop) = parse_entry(entry) else {
                return current;
            };
            current = hop;
            if !is_trusted(hop, trusted) {
                return hop;
            }
        }
    }
    current
}

/// Whether a trusted proxy says the client spoke HTTPS to it: the first entry of the request's
/// first `X-Forwarded-Proto` is `https` and the socket peer is in `trusted` (anyone else's
/// header is ignored, as for `X-Forwarded-For`). Then cookies get `Secure` and HSTS is sent,
/// as under noviqi's own TLS.
pub fn forwarded_https(peer: IpAddr, xfp: Option<&str>, trusted: &[IpNet]) -> bool {
    is_trusted(normalise(peer), trusted)
        && xfp
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// IPv4-mapped IPv6 becomes IPv4; everything else is unchanged.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, optionally bracketed or with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(normalise(ip));
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(normalise(sock.ip()));
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(normalise)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn run(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        client_ip(ip(peer), xff.iter().copied(), &nets(trusted))
    }

    #[test]
    fn forwarded_proto_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert!(forwarded_https(ip("127.0.0.1"), Some("https"), &trusted));
        assert!(forwarded_https(
            ip("::ffff:127.0.0.1"),
            Some("HTTPS, http"),
            &trusted
        ));
        assert!(!forwarded_https(
            ip("127.0.0.1"),
            Some("http, https"),
            &trusted
        ));
        assert!(!forwarded_https(ip("127.0.0.1"), None, &trusted));
        assert!(!forwarded_https(ip("192.0.2.1"), Some("https"), &trusted));
        assert!(!forwarded_https(ip("127.0.0.1"), Some("https"), &[]));
    }

    #[test]
    fn untrusted_peer_spoof_ignored() {
        assert_eq!(run("203.0.113.9", &["1.2.3.4"], &[]), ip("203.0.113.9"));
        assert_eq!(
            run("203.0.113.9", &["1.2.3.4"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxy_honoured() {
        let t = ["127.0.0.1/32", "::1/128"];
        assert_eq!(run("127.0.0.1", &["198.51.100.7"], &t), ip("198.51.100.7"));
        assert_eq!(run("::1", &["2001:db8::5"], &t), ip("2001:db8::5"));
        // No header: the proxy itself.
        assert_eq!(run("127.0.0.1", &[], &t), ip("127.0.0.1"));
    }

    #[test]
    fn client_supplied_prefix_is_not_believed() {
        // The client sent `X-Forwarded-For: 6.6.6.6`; nginx appended the real peer.
        let got = run("127.0.0.1", &["6.6.6.6, 198.51.100.7"], &["127.0.0.1/32"]);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn several_trusted_hops_and_header_lines() {
        let t = ["10.0.0.0/8", "127.0.0.1/32"];
        let got = run(
            "127.0.0.1",
            &["6.6.6.6, 198.51.100.7", "10.1.1.1, 10.2.2.2"],
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let got = run("127.0.0.1", &["10.3.3.3,10.1.1.1", "10.2.2.2"], &t);
        assert_eq!(got, ip("10.3.3.3"), "all trusted: the left-most");
    }

    #[test]
    fn garbage_stops_at_last_trusted_hop() {
        let t = ["10.0.0.0/8", "127.0.0.1/32"];
        assert_eq!(
            run("127.0.0.1", &["1.2.3.4, unknown, 10.0.0.2"], &t),
            ip("10.0.0.2")
        );
        assert_eq!(
            run("127.0.0.1", &["1.2.3.4, <script>"], &t),
            ip("127.0.0.1")
        );
        assert_eq!(
            run("127.0.0.1", &["1.2.3.4, 999.1.1.1"], &t),
            ip("127.0.0.1")
        );
        // Empty entries are skipped, not garbage.
        assert_eq!(run("127.0.0.1", &["1.2.3.4, ,", ""], &t), ip("1.2.3.4"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let t = ["127.0.0.1/32", "10.0.0.0/8"];
        assert_eq!(run("127.0.0.1", &["192.0.2.1:5555"], &t), ip("192.0.2.1"));
        assert_eq!(
            run("127.0.0.1", &["[2001:db8::1]:443"], &t),
            ip("2001:db8::1")
        );
        assert_eq!(run("127.0.0.1", &["[2001:db8::1]"], &t), ip("2001:db8::1"));
        assert_eq!(run("127.0.0.1", &["::ffff:192.0.2.3"], &t), ip("192.0.2.3"));
        // A v4-mapped peer is the trusted IPv4 proxy.
        assert_eq!(run("::ffff:127.0.0.1", &["192.0.2.4"], &t), ip("192.0.2.4"));
        assert_eq!(run("::ffff:192.0.2.5", &["6.6.6.6"], &t), ip("192.0.2.5"));
        // A mapped entry naming a trusted proxy counts as trusted.
        assert_eq!(
            run("127.0.0.1", &["192.0.2.6, ::ffff:10.0.0.1"], &t),
            ip("192.0.2.6")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_is_safe(peer in proptest::prelude::any::<std::net::Ipv4Addr>(),
                              values in proptest::collection::vec(".{0,40}", 0..4)) {
            let trusted = nets(&["10.0.0.0/8"]);
            let peer = IpAddr::V4(peer);
            let got = client_ip(peer, values.iter().map(String::as_str), &trusted);
            if !is_trusted(peer, &trusted) {
                proptest::prop_assert_eq!(got, peer);
            } else if got != peer {
                // Whatever was chosen was written in the header.
                let joined = values.join(",");
                let found = joined.split(',').filter_map(|e| parse_entry(e.trim())).any(|a| a == got);
                proptest::prop_assert!(found);
            }
        }
    }
}
