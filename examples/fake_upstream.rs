//! A standalone fake LLM upstream for `scripts/compat`: the tests' fake
//! (`tests/support/upstream/`) with its developer-tools script, so real clients (Claude Code,
//! Codex CLI, aider, llm) can be run through the gateway with no network and no model. What
//! it answers is documented in `tests/support/upstream/compat.rs`.
//!
//! Usage: `fake_upstream [--listen ADDR] [--record DIR]`. Prints `listening on http://ADDR` on
//! stderr. With `--record`, every request is written to `DIR/NNNN-<endpoint>.json` as
//! `{"method", "target", "headers", "body"}` with credentials replaced by `<redacted>`.
//! State owned: the request counter and the record directory.

#[path = "../tests/support/upstream/mod.rs"]
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use upstream::answer::Wire;
use upstream::compat::{Mode, compat};
use upstream::{FakeUpstream, Options, Received};

fn main() -> ExitCode {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut record = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen = a,
                Err(e) => {
                    eprintln!("bad --listen address: {e}");
                    return ExitCode::FAILURE;
                }
            },
            ("--record", Some(v)) => record = Some(PathBuf::from(v)),
            _ => {
                eprintln!("usage: fake_upstream [--listen ADDR] [--record DIR]");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &record
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let answer = compat(Mode::Live);
    let seq = AtomicU64::new(1);
    let script = move |r: &Received| {
        if let Some(dir) = &record {
            write_record(dir, seq.fetch_add(1, Ordering::Relaxed), r);
        }
        answer(r)
    };
    let options = Options {
        addr: listen,
        record: false,
        ..Options::default()
    };
    let fake = match FakeUpstream::start_with(options, script) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on http://{}", fake.addr());
    fake.serve_forever();
    ExitCode::SUCCESS
}

/// Writes request `n` to the record directory, credentials redacted.
fn write_record(dir: &Path, n: u64, r: &Received) {
    let kind = Wire::of(r.route()).map_or("other", Wire::name);
    let mut headers = serde_json::Map::new();
    for (name, value) in &r.headers {
        let value = match name.as_str() {
            "authorization" | "x-api-key" | "api-key" | "cookie" => "<redacted>".into(),
            _ => value.clone(),
        };
        headers.insert(name.clone(), Value::String(value));
    }
    let body = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    let doc = json!({"method": r.method, "target": r.path, "headers": headers, "body": body});
    let file = dir.join(format!("{n:04}-{kind}.json"));
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    if let Err(e) = std::fs::write(&file, text) {
        eprintln!("cannot record {}: {e}", file.display());
    }
}
