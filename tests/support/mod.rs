//! What the integration tests share, included by every test file as `mod support;`:
//! - [`upstream`]: the one fake LLM upstream (OpenAI and Anthropic shapes, SSE, faults,
//!   recording what it received), also run by the example servers behind `scripts/`;
//! - [`gateway`]: the real `noviqi serve` on 127.0.0.1:0 with a temp config, and a client;
//! - [`http`]: noviqi's HTTP layer with a closure handler, and a raw HTTP/1.1 client;
//! - [`redis`]: a `redis-server` of the test's own on a free port;
//! - [`eventually`]: the one way a test waits for something to happen.
//!
//! Each test file uses part of it, hence the `dead_code` allowance.

#![allow(dead_code)]
// Support code fails loudly: a broken fixture should stop the test, not hide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod gateway;
pub mod http;
pub mod redis;
pub mod upstream;

use std::time::{Duration, Instant};

/// Polls `f` until it returns true or `within` passes (then one last try): a bounded wait
/// for something another process or thread does, never a sleep standing in for it.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
