//! Cost of one rate-limit check and one lockout check.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use noviqi::config::model::{Limits, SecuritySettings};
use noviqi::crypto::apikey::KeyHash;
use noviqi::limits::RateLimiter;
use noviqi::limits::lockout::Lockout;

fn key(n: u32) -> KeyHash {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_le_bytes());
    KeyHash(k)
}

const LIMITS: Limits = Limits {
    requests_per_minute: Some(600),
    tokens_per_minute: Some(1_000_000),
};

fn check_request(c: &mut Criterion) {
    let one = RateLimiter::new();
    let mut t = 0u64;
    c.bench_function("check_request/1 key", |b| {
        b.iter(|| {
            // 1 ms apart: 60,000 a minute against 600, so most are refusals at steady state.
            t += 1_000_000;
            black_box(one.check_request(&key(0), LIMITS, Duration::from_nanos(t)))
        })
    });

    let many = RateLimiter::new();
    for n in 0..10_000 {
        many.check_request(&key(n), LIMITS, Duration::ZERO);
    }
    let (mut t, mut n) = (0u64, 0u32);
    c.bench_function("check_request/10000 keys", |b| {
        b.iter(|| {
            t += 1_000;
            n = (n + 7919) % 10_000;
            black_box(many.check_request(&key(n), LIMITS, Duration::from_nanos(t)))
        })
    });

    let mut t = 0u64;
    c.bench_function("record_tokens/1 key", |b| {
        b.iter(|| {
            t += 1_000_000;
            one.record_tokens(&key(0), 42, Duration::from_nanos(t))
        })
    });
}

fn lockout(c: &mut Criterion) {
    let settings = SecuritySettings {
        master_key_file: PathBuf::new(),
        lockout_max_failures: 5,
        lockout_window: Duration::from_secs(300),
        lockout_duration: Duration::from_secs(900),
    };
    let table = Lockout::new(100_000);
    for i in 0..100_000u32 {
        table.record_failure(IpAddr::V4(Ipv4Addr::from(i)), &settings, Duration::ZERO);
    }
    let mut i = 0u32;
    c.bench_function("lockout check/100000 entries", |b| {
        b.iter(|| {
            i = (i + 7919) % 200_000; // half present, half absent
            black_box(table.check(IpAddr::V4(Ipv4Addr::from(i)), &settings, Duration::ZERO))
        })
    });
    let mut i = 1_000_000u32;
    c.bench_function("lockout record_failure/new address, full table", |b| {
        b.iter(|| {
            i += 1;
            table.record_failure(IpAddr::V4(Ipv4Addr::from(i)), &settings, Duration::ZERO)
        })
    });
}

criterion_group!(benches, check_request, lockout);
criterion_main!(benches);
