//! The fake LLM upstream of `scripts/soak`: the tests' fake (`tests/support/upstream/`) with
//! its soak script — OpenAI chat completions, the Responses API and Anthropic Messages, JSON
//! and SSE, with upstream faults chosen by a `SOAK-FAULT:<name>` marker in the request body
//! and `GET /stats` (both documented in `tests/support/upstream/soak.rs`).
//!
//! Usage: `soak_upstream [ADDR] [--openai-key K] [--anthropic-key K] [--stall-ms MS]`
//! (default 127.0.0.1:0, stall 4000 ms). Prints `listening on ADDR` on stderr and serves
//! until killed; at most 512 connections at once, more are closed at once (`refused`).

#[path = "../tests/support/upstream/mod.rs"]
mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use upstream::soak::Soak;
use upstream::{FakeUpstream, Options};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut openai_key = None;
    let mut anthropic_key = None;
    let mut stall_ms = 4000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--openai-key" => openai_key = args.next(),
            "--anthropic-key" => anthropic_key = args.next(),
            "--stall-ms" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => stall_ms = v,
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
        max_connections: 512,
        stack_bytes: 256 * 1024,
        record: false,
        ..Options::default()
    };
    let stall = Duration::from_millis(stall_ms);
    let soak = Soak::new(
        openai_key,
        anthropic_key,
        stall,
        Arc::clone(&options.counters),
    );
    let fake = match FakeUpstream::start_with(options, move |r| soak.answer(r)) {
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
    eprintln!("usage: soak_upstream [ADDR] [--openai-key K] [--anthropic-key K] [--stall-ms MS]");
    ExitCode::FAILURE
}
