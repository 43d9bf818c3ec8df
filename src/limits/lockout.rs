//! Brute-force lockout per client address: too many failed logins or bad keys lock it out.
//!
//! # Policy
//!
//! Addresses are grouped the way an attacker's supply is: one IPv4 address, or one IPv6 /64
//! (the smallest block a host usually gets); IPv4-mapped IPv6 counts as the IPv4 address.
//! A streak of failures starts at the first failure and lasts `lockout_window`; if it reaches
//! `lockout_max_failures` within that span the address is locked for `lockout_duration`, and
//! every request from it gets 429 with `Retry-After` until then (the gateway checks before
//! looking at credentials). Failures while locked do not extend the lock. A success clears the
//! address's record; so does the end of a lock (the next failure starts a new streak). A
//! streak older than the window starts over at the next failure. `lockout_max_failures = 0`
//! disables lockouts.
//!
//! The streak is a fixed span from its first failure, not a sliding window: a true sliding
//! window would keep up to `lockout_max_failures` timestamps per address, and that setting has
//! no small upper bound. The price is that up to `2 × (max − 1)` failures can fall into one
//! window's length when they straddle the end of a streak; over time the rate stays at most
//! `max − 1` per window.
//!
//! # Two tables: keys and logins
//!
//! [`Lockouts`] holds two [`Lockout`] tables with the same settings: presented-but-unknown API
//! keys, and failed admin logins. They are counted apart so that a success of one kind never
//! clears the other's streak (a holder of any key must not be able to reset the count of
//! password guesses), and checked together: an address locked by either is refused by both.
//! What counts as a failure and as a success is the callers' business (`src/auth.rs`,
//! `admin/`); this module only counts.
//!
//! An expensive check (the Argon2 password verification) uses [`Lockout::admit`]: the attempt
//! is counted as a failure *before* it is verified, in the same lock as the lockout check, and
//! a success then clears it. However many attempts arrive at once, at most
//! `lockout_max_failures` are admitted per streak; the one that reaches the limit locks the
//! address at once, so the next is refused while it is still being verified.
//!
//! # Bounded state
//!
//! Each table holds at most `max_entries` addresses ([`DEFAULT_MAX_ENTRIES`] = 100,000). When
//! a new address arrives at a full table, the least recently failed one is dropped, except
//! that a currently locked address at the front is moved to the back instead (at most
//! [`MAX_LOCKED_SKIPS`] per insertion, so a table full of locks still evicts): a flood of
//! distinct addresses cannot unlock an attacker who is locked, and cannot grow memory.
//!
//! The table is split into [`SHARDS`] shards (one when `max_entries` is under 1,024), each a
//! `Mutex` holding `max_entries / SHARDS` addresses, chosen by a per-process keyed hash, so
//! concurrent checks rarely contend and a client cannot pick its shard.
//!
//! Eviction order is a queue of `(address, sequence)` records beside the map; a record whose
//! sequence no longer matches the map is stale and skipped. The queue is compacted when it
//! exceeds `2 × shard size + 16` records, so insertions are amortised O(1).
//!
//! Memory: a map slot is 48 bytes (16-byte address key, 32-byte entry) plus a control byte,
//! a queue record 24 bytes. At 100,000 entries that is at most 131,072 slots (6.4 MB) plus a
//! queue of at most 262,144 records (6.3 MB): under 13 MB per table, 26 MB for both, and flat
//! whatever the traffic.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use parking_lot::Mutex;

use super::retry_after_secs;
use super::window::nanos;
use crate::config::model::SecuritySettings;

/// The default table size.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How many independently locked parts a large table is split into.
pub const SHARDS: usize = 16;

/// How many locked entries one insertion may move to the back before evicting anyway.
pub const MAX_LOCKED_SKIPS: usize = 8;

/// Whole seconds until a locked address may try again (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfterSecs(pub u64);

/// The unit a lockout applies to: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(u32),
    V6Net(u64),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrKey::V4(v4) => write!(f, "{}", Ipv4Addr::from(v4)),
            AddrKey::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(net) << 64)),
        }
    }
}

/// The gateway's two failure tables, with the same settings, counted apart and checked
/// together (see the module docs).
#[derive(Debug, Default)]
pub struct Lockouts {
    /// Presented API keys that match no key.
    pub keys: Lockout,
    /// Failed admin logins.
    pub logins: Lockout,
}

impl Lockouts {
    /// `Err` with the longer wait when either table has `ip` locked at `now`.
    pub fn check(
        &self,
        ip: IpAddr,
        settings: &SecuritySettings,
        now: Duration,
    ) -> Result<(), RetryAfterSecs> {
        match (
            self.keys.check(ip, settings, now),
            self.logins.check(ip, settings, now),
        ) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(wait), Ok(())) | (Ok(()), Err(wait)) => Err(wait),
        }
    }
}

/// An attempt let through by [`Lockout::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// This attempt reached the limit: the address is locked until a success clears it. When
    /// the attempt fails, the caller logs the lock with [`log_locked`].
    pub locked: bool,
}

/// The one log line of a new lock (the address, never a credential).
pub fn log_locked(ip: IpAddr, settings: &SecuritySettings, what: &str) {
    log::warn!(
        "lockout: {} locked for {}s after {} {what}",
        AddrKey::of(ip),
        settings.lockout_duration.as_secs(),
        settings.lockout_max_failures
    );
}

/// What counting one failure did.
enum Counted {
    /// The address was locked already; nothing was counted.
    AlreadyLocked(RetryAfterSecs),
    /// Counted; `locked` when this failure reached the limit.
    Streak { locked: bool },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Nanoseconds when the current streak began.
    streak_start: u64,
    /// Nanoseconds the lock ends; 0 when not locked.
    locked_until: u64,
    /// Matches the newest queue record of this address.
    seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<AddrKey, Entry>,
    order: VecDeque<(AddrKey, u64)>,
    next_seq: u64,
}

/// One failure table. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Lockout {
    shards: Vec<Mutex<Table>>,
    /// Addresses per shard.
    shard_max: usize,
    hasher: RandomState,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

impl Lockout {
    /// A table of at most `max_entries` addresses (at least 1).
    pub fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let count = if max_entries >= 1024 { SHARDS } else { 1 };
        Self {
            shards: (0..count).map(|_| Mutex::new(Table::default())).collect(),
            shard_max: max_entries / count,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: AddrKey) -> &Mutex<Table> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        // `i < len` by construction; `len >= 1`, so `[0]` exists when the index would not.
        self.shards.get(i).unwrap_or(&self.shards[0])
    }

    /// `Err` with the wait when `ip` is locked at `now`.
    pub fn check(
        &self,
        ip: IpAddr,
        settings: &SecuritySettings,
        now: Duration,
    ) -> Result<(), RetryAfterSecs> {
        if settings.lockout_max_failures == 0 {
            return Ok(());
        }
        let now = nanos(now);
        let key = AddrKey::of(ip);
        let table = self.shard(key).lock();
        match table.map.get(&key) {
            Some(e) if e.locked_until > now => Err(RetryAfterSecs(retry_after_secs(
                Duration::from_nanos(e.locked_until - now),
            ))),
            _ => Ok(()),
        }
    }

    /// Counts a failure from `ip`; true when this failure locked it (and then logs one line).
    pub fn record_failure(&self, ip: IpAddr, settings: &SecuritySettings, now: Duration) -> bool {
        match self.count(ip, settings, now) {
            Counted::Streak { locked: true } => {
                log_locked(ip, settings, "failed attempts");
                true
            }
            Counted::Streak { locked: false } | Counted::AlreadyLocked(_) => false,
        }
    }

    /// Counts an attempt from `ip` as a failure *before* it is checked; `Err` with the wait,
    /// counting nothing, when `ip` is locked. Check and count are one step under one lock, so
    /// at most `lockout_max_failures` attempts are admitted per streak however many run at
    /// once. Call [`Lockout::record_success`] when the attempt turns out right; nothing when
    /// it turns out wrong (it is counted already).
    pub fn admit(
        &self,
        ip: IpAddr,
        settings: &SecuritySettings,
        now: Duration,
    ) -> Result<Admitted, RetryAfterSecs> {
        match self.count(ip, settings, now) {
            Counted::AlreadyLocked(wait) => Err(wait),
            Counted::Streak { locked } => Ok(Admitted { locked }),
        }
    }

    fn count(&self, ip: IpAddr, settings: &SecuritySettings, now: Duration) -> Counted {
        let max = settings.lockout_max_failures;
        if max == 0 {
            return Counted::Streak { locked: false };
        }
        let key = AddrKey::of(ip);
        let now = nanos(now);
        let mut table = self.shard(key).lock();
        let table = &mut *table;
        let seq = table.next_seq;
        table.next_seq += 1;

        let entry = match table.map.get_mut(&key) {
            Some(e) if e.locked_until > now => {
                let wait = Duration::from_nanos(e.locked_until - now);
                return Counted::AlreadyLocked(RetryAfterSecs(retry_after_secs(wait)));
            }
            Some(e) => {
                let stale = now.saturating_sub(e.streak_start) >= nanos(settings.lockout_window);
                if e.locked_until != 0 || stale {
                    *e = Entry {
                        failures: 0,
                        streak_start: now,
                        locked_until: 0,
                        seq,
                    };
                }
                e.seq = seq;
                e.failures = e.failures.saturating_add(1);
                *e
            }
            None => {
                table.make_room(self.shard_max, now);
                let e = Entry {
                    failures: 1,
                    streak_start: now,
                    locked_until: 0,
                    seq,
                };
                table.map.insert(key, e);
                e
            }
        };
        table.order.push_back((key, seq));
        table.compact(self.shard_max);

        if entry.failures < max {
            return Counted::Streak { locked: false };
        }
        let until = now.saturating_add(nanos(settings.lockout_duration)).max(1);
        if let Some(e) = table.map.get_mut(&key) {
            e.locked_until = until;
        }
        Counted::Streak { locked: true }
    }

    /// A success from `ip`: its record (streak and lock) is dropped. True when there was one.
    pub fn record_success(&self, ip: IpAddr) -> bool {
        let key = AddrKey::of(ip);
        let mut table = self.shard(key).lock();
        let had = table.map.remove(&key).is_some();
        if had {
            table.compact(self.shard_max);
        }
        had
    }

    /// Locks `key` until `until` (on the `now` clock) — a lock learned from the cluster. An
    /// existing longer lock stays.
    pub fn lock(&self, key: AddrKey, now: Duration, until: Duration) {
        let (now, until) = (nanos(now), nanos(until).max(1));
        let mut table = self.shard(key).lock();
        let table = &mut *table;
        let seq = table.next_seq;
        table.next_seq += 1;
        match table.map.get_mut(&key) {
            Some(e) => e.locked_until = e.locked_until.max(until),
            None => {
                table.make_room(self.shard_max, now);
                table.map.insert(
                    key,
                    Entry {
                        failures: 0,
                        streak_start: now,
                        locked_until: until,
                        seq,
                    },
                );
                table.order.push_back((key, seq));
                table.compact(self.shard_max);
            }
        }
    }

    /// Number of addresses tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|t| t.lock().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The documented maximum of `len()`.
    pub fn max_entries(&self) -> usize {
        self.shard_max * self.shards.len()
    }
}

impl Table {
    /// Evicts until there is room for one more address.
    fn make_room(&mut self, max_entries: usize, now: u64) {
        let mut skips = 0;
        while self.map.len() >= max_entries {
            let Some((key, seq)) = self.order.pop_front() else {
                // Unreachable while every map entry has a queue record; still stay bounded.
                let any = self.map.keys().next().copied();
                if let Some(k) = any {
                    self.map.remove(&k);
                }
                continue;
            };
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            if e.seq != seq {
                continue;
            }
            if e.locked_until > now && skips < MAX_LOCKED_SKIPS {
                skips += 1;
                e.seq = self.next_seq;
                self.order.push_back((key, self.next_seq));
                self.next_seq += 1;
                continue;
            }
            self.map.remove(&key);
        }
    }

    /// Drops stale queue records once they outnumber live ones.
    fn compact(&mut self, max_entries: usize) {
        if self.order.len() > 2 * max_entries + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings(max: u32) -> SecuritySettings {
        SecuritySettings {
            master_key_file: PathBuf::new(),
            lockout_max_failures: max,
            lockout_window: Duration::from_secs(300),
            lockout_duration: Duration::from_secs(900),
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn locks_after_max_consecutive_failures() {
        let (lo, st) = (Lockout::new(10), settings(3));
        let a = ip("192.0.2.7");
        assert!(!lo.record_failure(a, &st, s(0)));
        assert!(!lo.record_failure(a, &st, s(10)));
        assert_eq!(lo.check(a, &st, s(10)), Ok(()));
        assert!(lo.record_failure(a, &st, s(20)));
        assert_eq!(lo.check(a, &st, s(20)), Err(RetryAfterSecs(900)));
        assert_eq!(
            lo.check(a, &st, Duration::from_millis(919_500)),
            Err(RetryAfterSecs(1))
        );
        // Failures while locked do not extend it.
        assert!(!lo.record_failure(a, &st, s(500)));
        assert_eq!(lo.check(a, &st, s(920)), Ok(()));
        // After the lock a fresh streak starts.
        assert!(!lo.record_failure(a, &st, s(921)));
        assert_eq!(lo.check(a, &st, s(921)), Ok(()));
        assert_eq!(lo.check(ip("192.0.2.8"), &st, s(20)), Ok(()));
    }

    #[test]
    fn success_resets_and_window_expires() {
        let (lo, st) = (Lockout::new(10), settings(3));
        let a = ip("198.51.100.1");
        lo.record_failure(a, &st, s(0));
        lo.record_failure(a, &st, s(1));
        lo.record_success(a);
        assert!(!lo.record_failure(a, &st, s(2)));
        assert!(!lo.record_failure(a, &st, s(3)));
        // The streak began at 2 s; at 302 s it is over and this failure starts a new one.
        assert!(!lo.record_failure(a, &st, s(302)));
        assert!(!lo.record_failure(a, &st, s(303)));
        assert!(lo.record_failure(a, &st, s(304)));
        assert!(lo.check(a, &st, s(305)).is_err());
    }

    #[test]
    fn admit_counts_first_and_a_success_clears_even_the_lock() {
        let (lo, st) = (Lockout::new(10), settings(3));
        let a = ip("192.0.2.44");
        assert_eq!(lo.admit(a, &st, s(0)), Ok(Admitted { locked: false }));
        assert_eq!(lo.admit(a, &st, s(1)), Ok(Admitted { locked: false }));
        // The third is still let through, and locks the address while it is being checked.
        assert_eq!(lo.admit(a, &st, s(2)), Ok(Admitted { locked: true }));
        assert_eq!(lo.check(a, &st, s(2)), Err(RetryAfterSecs(900)));
        assert_eq!(lo.admit(a, &st, s(3)), Err(RetryAfterSecs(899)));
        // It was right after all.
        lo.record_success(a);
        assert_eq!(lo.check(a, &st, s(3)), Ok(()));
        assert_eq!(lo.admit(a, &st, s(4)), Ok(Admitted { locked: false }));
        assert_eq!(
            lo.admit(ip("192.0.2.45"), &settings(0), s(4)),
            Ok(Admitted { locked: false })
        );
    }

    #[test]
    fn parallel_admissions_stop_at_the_limit() {
        let (lo, st) = (Lockout::new(10), settings(5));
        let a = ip("198.51.100.77");
        let start = std::sync::Barrier::new(32);
        let admitted = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..32)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        lo.admit(a, &st, s(1)).is_ok()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .filter(|&ok| ok)
                .count()
        });
        assert_eq!(admitted, 5);
    }

    #[test]
    fn the_two_tables_count_apart_and_lock_together() {
        let (lo, st) = (Lockouts::default(), settings(2));
        let a = ip("203.0.113.70");
        lo.keys.record_failure(a, &st, s(0));
        assert!(lo.logins.admit(a, &st, s(1)).is_ok());
        // One of each: neither streak is at two; a success of one kind leaves the other.
        assert_eq!(lo.check(a, &st, s(1)), Ok(()));
        lo.keys.record_success(a);
        assert!(lo.logins.admit(a, &st, s(2)).is_ok_and(|x| x.locked));
        assert_eq!(lo.check(a, &st, s(2)), Err(RetryAfterSecs(900)));
        lo.keys.record_failure(a, &st, s(100));
        assert!(lo.keys.record_failure(a, &st, s(200)));
        // Both locked: the longer wait.
        assert_eq!(lo.check(a, &st, s(200)), Err(RetryAfterSecs(900)));
        lo.keys.record_success(a);
        assert_eq!(lo.check(a, &st, s(200)), Err(RetryAfterSecs(702)));
        lo.logins.record_success(a);
        assert_eq!(lo.check(a, &st, s(200)), Ok(()));
    }

    #[test]
    fn zero_disables() {
        let (lo, st) = (Lockout::new(10), settings(0));
        for t in 0..10 {
            assert!(!lo.record_failure(ip("192.0.2.1"), &st, s(t)));
        }
        assert_eq!(lo.check(ip("192.0.2.1"), &st, s(10)), Ok(()));
        assert!(lo.is_empty());
    }

    #[test]
    fn ipv6_grouped_by_64_and_mapped_v4() {
        let (lo, st) = (Lockout::new(10), settings(2));
        lo.record_failure(ip("2001:db8:1:2::1"), &st, s(0));
        assert!(lo.record_failure(ip("2001:db8:1:2:ffff::9"), &st, s(1)));
        assert!(lo.check(ip("2001:db8:1:2:abcd::1"), &st, s(2)).is_err());
        assert_eq!(lo.check(ip("2001:db8:1:3::1"), &st, s(2)), Ok(()));
        lo.record_failure(ip("::ffff:192.0.2.9"), &st, s(0));
        assert!(lo.record_failure(ip("192.0.2.9"), &st, s(1)));
        assert!(lo.check(ip("::ffff:192.0.2.9"), &st, s(2)).is_err());
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn million_addresses_stay_bounded_and_lock_holds() {
        let lo = Lockout::new(DEFAULT_MAX_ENTRIES);
        let st = settings(3);
        let locked = ip("203.0.113.5");
        for t in 0..3 {
            lo.record_failure(locked, &st, s(t));
        }
        for i in 0..1_000_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            lo.record_failure(a, &st, Duration::from_micros(3_000_000 + u64::from(i)));
            if i % 4096 == 0 {
                for t in &lo.shards {
                    let t = t.lock();
                    assert!(t.map.len() <= lo.shard_max);
                    assert!(t.order.len() <= 2 * lo.shard_max + 16);
                }
            }
        }
        assert!(lo.len() <= lo.max_entries());
        assert_eq!(lo.len(), DEFAULT_MAX_ENTRIES);
        assert!(lo.check(locked, &st, s(10)).is_err());
        // The earliest flood addresses were evicted.
        let first = AddrKey::V4(0x0a00_0000);
        assert!(!lo.shard(first).lock().map.contains_key(&first));
    }

    #[test]
    fn all_locked_table_still_evicts() {
        let lo = Lockout::new(4);
        let st = settings(1);
        for i in 0..100u32 {
            assert!(lo.record_failure(IpAddr::V4(Ipv4Addr::from(i)), &st, s(1)));
            assert!(lo.len() <= 4);
        }
        assert!(lo.check(IpAddr::V4(Ipv4Addr::from(99)), &st, s(2)).is_err());
    }
}
