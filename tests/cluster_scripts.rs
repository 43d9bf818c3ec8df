//! The cluster's Lua scripts against a real `redis-server`: the window's edge on the server's
//! clock, exact money sums across instances, and a TTL on every key written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use noviqi::cluster::{Cluster, Spend};
use noviqi::config::model::{Budget, Limits};
use noviqi::config::{Secrets, load_str};
use noviqi::cost::{Period, Usd};
use noviqi::crypto::apikey::KeyHash;
use support::eventually;
use support::redis::RedisServer;

fn cluster(redis: &RedisServer, instance: &str) -> Arc<Cluster> {
    let text = format!("[cluster]\nredis_url = \"{}\"\n", redis.url());
    let config = load_str(&text, Path::new("/tmp/noviqi.toml"), Secrets::Decrypt).unwrap();
    Cluster::new(config.cluster.as_ref().unwrap(), instance.to_owned()).unwrap()
}

/// The Redis key of `hash`'s `what` (documented in `src/cluster/mod.rs`).
fn key(hash: &KeyHash, what: &str) -> String {
    format!("noviqi:{{k:{}}}:{what}", hex::encode(&hash.0[..16]))
}

/// The server's clock in microseconds.
fn server_micros(redis: &RedisServer) -> u64 {
    let t = redis.query(&["TIME"]);
    t[0].parse::<u64>().unwrap() * 1_000_000 + t[1].parse::<u64>().unwrap()
}

fn rpm(n: u32) -> Limits {
    Limits {
        requests_per_minute: Some(n),
        tokens_per_minute: None,
    }
}

#[test]
fn the_request_window_slides_on_the_servers_clock() {
    let redis = RedisServer::start();
    let c = cluster(&redis, "a");
    let hash = KeyHash::of("edge");
    let log = key(&hash, "r");
    let now = server_micros(&redis);
    // One admission 60.5 s ago (out of the window), one 59.7 s ago (in it).
    for (age, member) in [(60_500_000, "old"), (59_700_000, "recent")] {
        let score = (now - age).to_string();
        redis.query(&["ZADD", &log, &score, member]);
    }
    let d = c.admit(&hash, rpm(2), None).unwrap();
    assert!(d.rate.allowed, "the 60.5 s old one no longer counts");
    let requests = d.rate.headers.requests.unwrap();
    assert_eq!(requests.remaining, 0);
    let refused = c.admit(&hash, rpm(2), None).unwrap();
    assert!(!refused.rate.allowed);
    let wait = refused.rate.headers.requests.unwrap().retry_after.unwrap();
    assert!(
        wait <= Duration::from_millis(300),
        "the 59.7 s one leaves first: {wait:?}"
    );
    assert_eq!(refused.rate.retry_after_secs, Some(1));
    assert_eq!(
        redis.query(&["ZCARD", &log]),
        ["2"],
        "a refusal is not counted"
    );
    // Once it has left, one more is admitted.
    assert!(eventually(Duration::from_secs(5), || c
        .admit(&hash, rpm(2), None)
        .unwrap()
        .rate
        .allowed));
    let ttl: i64 = redis.query(&["PTTL", &log])[0].parse().unwrap();
    assert!((59_000..=61_000).contains(&ttl), "{ttl}");
}

#[test]
fn spend_sums_exactly_across_instances_and_every_key_expires() {
    let redis = RedisServer::start();
    let (a, b) = (cluster(&redis, "a"), cluster(&redis, "b"));
    let hash = KeyHash::of("money");
    let now = noviqi::clock::unix_secs() as i64;
    let budget = Budget {
        limit: Usd::from_picos(3_999_999_999),
        period: Period::Month,
    };
    let spend = Spend { budget, now };
    // Each just under 2 × 10⁹ pico-dollars: the sum crosses the halves' boundary.
    a.settle(&hash, 7, Some((spend, Usd::from_picos(1_999_999_999))));
    b.settle(&hash, 5, Some((spend, Usd::from_picos(1_999_999_999))));
    // Settles are sent without waiting; make sure Redis has applied them.
    a.settle_writes();
    b.settle_writes();
    let d = a
        .admit(
            &hash,
            Limits {
                requests_per_minute: None,
                tokens_per_minute: Some(1000),
            },
            Some(spend),
        )
        .unwrap();
    assert_eq!(d.spent, Some(Usd::from_picos(3_999_999_998)));
    assert!(!d.over_budget);
    assert_eq!(d.rate.headers.tokens.unwrap().remaining, 1000 - 12);
    // Writing a share again replaces it (no double count); one pico more reaches the limit.
    a.settle(&hash, 0, Some((spend, Usd::from_picos(2_000_000_000))));
    a.settle_writes();
    let d = b.admit(&hash, rpm(100), Some(spend)).unwrap();
    assert_eq!(d.spent, Some(Usd::from_picos(3_999_999_999)));
    assert!(d.over_budget && !d.rate.allowed);
    assert_eq!(
        redis.query(&["EXISTS", &key(&hash, "r")]),
        ["0"],
        "a request refused by the budget is not counted"
    );
    let budget_key = key(&hash, &format!("b:month:{}", Period::Month.days(now).start));
    let ttl: i64 = redis.query(&["TTL", &budget_key])[0].parse().unwrap();
    assert!(ttl > 0, "the month's spend expires: {ttl}");
    for what in ["tt", "ts"] {
        let ttl: i64 = redis.query(&["PTTL", &key(&hash, what)])[0]
            .parse()
            .unwrap();
        assert!((0..=62_000).contains(&ttl) && ttl > 0, "{what}: {ttl}");
    }
    // Nothing without a TTL.
    let keys = redis.query(&["KEYS", "*"]);
    for k in &keys {
        let ttl: i64 = redis.query(&["TTL", k])[0].parse().unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }
}

#[test]
fn a_script_flush_costs_one_counted_write_and_the_scripts_are_loaded_again() {
    let redis = RedisServer::start();
    let c = cluster(&redis, "a");
    let hash = KeyHash::of("flush");
    let limits = Limits {
        requests_per_minute: Some(10),
        tokens_per_minute: Some(100),
    };
    assert!(c.admit(&hash, limits, None).unwrap().rate.allowed);
    redis.query(&["SCRIPT", "FLUSH"]);
    // Refused where nobody waits (NOSCRIPT): whoever reads that reply counts it.
    c.settle(&hash, 5, None);
    let d = c.admit(&hash, limits, None).unwrap();
    assert!(d.rate.allowed, "the admit loads the scripts again");
    assert_eq!(d.rate.headers.requests.unwrap().remaining, 8);
    assert_eq!(
        d.rate.headers.tokens.unwrap().remaining,
        100,
        "that settle was lost"
    );
    assert_eq!(c.errors(), 1);
    assert!(c.is_up());
    c.settle(&hash, 5, None);
    c.settle_writes();
    let d = c.admit(&hash, limits, None).unwrap();
    assert_eq!(d.rate.headers.tokens.unwrap().remaining, 95);
    assert_eq!(c.errors(), 1);
}
