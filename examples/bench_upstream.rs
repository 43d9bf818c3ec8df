//! A fast fake OpenAI upstream for `scripts/bench`: the tests' fake
//! (`tests/support/upstream/`) with its bench script — chat answers, streams of CHUNKS events
//! DELAY_MS apart (or as the model name's `s<N>x<D>` says), and `GET /stats` with the
//! connections accepted and requests served (see `tests/support/upstream/bench.rs`). A bench
//! tool only: examples are not installed by `cargo install`.
//!
//! Usage: `bench_upstream [ADDR] [--chunks N] [--delay-ms D]` (defaults 127.0.0.1:0, 20, 50).
//! Prints the bound address on stderr and serves until killed.

#[path = "../tests/support/upstream/mod.rs"]
mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use upstream::bench::Bench;
use upstream::{FakeUpstream, Options};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut chunks = 20;
    let mut delay_ms = 50;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next().and_then(|v| v.parse::<u64>().ok())
        };
        match arg.as_str() {
            "--chunks" => match value(&mut args) {
                Some(v) => chunks = v as u32,
                None => return usage(),
            },
            "--delay-ms" => match value(&mut args) {
                Some(v) => delay_ms = v,
                None => return usage(),
            },
            a if !a.starts_with('-') => addr = a.to_owned(),
            _ => return usage(),
        }
    }
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage();
    };
    let options = Options {
        addr,
        max_connections: 8192,
        stack_bytes: 256 * 1024,
        record: false,
        ..Options::default()
    };
    let bench = Bench {
        chunks,
        delay: Duration::from_millis(delay_ms),
        counters: Arc::clone(&options.counters),
    };
    let fake = match FakeUpstream::start_with(options, move |r| bench.answer(r)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {}", fake.addr());
    fake.serve_forever();
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: bench_upstream [ADDR] [--chunks N] [--delay-ms D]");
    ExitCode::FAILURE
}
