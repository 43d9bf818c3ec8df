//! Many threads racing on one key never get more than the limit admitted.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use noviqi::config::model::Limits;
use noviqi::crypto::apikey::KeyHash;
use noviqi::limits::RateLimiter;

const THREADS: usize = 8;
const ATTEMPTS_PER_THREAD: usize = 2_000;

#[test]
fn eight_threads_get_exactly_the_limit() {
    let limiter = Arc::new(RateLimiter::new());
    let key = KeyHash([7; 32]);
    let limits = Limits {
        requests_per_minute: Some(100),
        tokens_per_minute: None,
    };
    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, barrier) = (Arc::clone(&limiter), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut admitted = 0usize;
                for _ in 0..ATTEMPTS_PER_THREAD {
                    if limiter.check_request(&key, limits, start.elapsed()).allowed {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    // The test is meaningful only if every attempt fell inside one 60 s window.
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert_eq!(admitted, 100);
    let d = limiter.check_request(&key, limits, start.elapsed());
    assert!(!d.allowed);
    assert!(d.retry_after_secs.is_some_and(|s| (1..=60).contains(&s)));
}

#[test]
fn threads_on_distinct_keys_do_not_interfere() {
    let limiter = Arc::new(RateLimiter::new());
    let limits = Limits {
        requests_per_minute: Some(10),
        tokens_per_minute: Some(1_000_000),
    };
    let handles: Vec<_> = (0..THREADS as u8)
        .map(|n| {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || {
                let key = KeyHash([n; 32]);
                (0..50)
                    .filter(|&i| {
                        let now = Duration::from_millis(i);
                        limiter.record_tokens(&key, 5, now);
                        limiter.check_request(&key, limits, now).allowed
                    })
                    .count()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 10);
    }
    assert_eq!(limiter.len(), THREADS);
}
