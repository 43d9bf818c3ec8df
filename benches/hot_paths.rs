//! Cost of the per-request hot paths outside the HTTP layer: authenticating a key (hash and
//! lookup), probing and rewriting the `model` field of a small and an 80 KB body, and parsing
//! and translating a recorded Anthropic stream into OpenAI chunks. (The limiter's check is in
//! `benches/limits.rs`.) Timings are for humans; CI only builds this (`cargo bench --no-run`).

// A bench whose setup (config, fixture) is broken should stop loudly.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use noviqi::config::{self, Config, Secrets};
use noviqi::crypto::apikey::KeyHash;
use noviqi::sse::SseParser;
use noviqi::translate::AnthropicToOpenAiStream;
use noviqi::translate::rewrite::{probe, rewrite};

const KEY: &str = "nvq_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg";

/// A config with `keys` keys, the benchmarked one last.
fn config(keys: usize) -> Config {
    let mut text = String::from(
        "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [\"mock/m\"]\n",
    );
    for i in 0..keys {
        let key = if i + 1 == keys {
            KEY.to_owned()
        } else {
            format!("nvq_other{i:08}")
        };
        let hash = KeyHash::of(&key);
        text.push_str(&format!(
            "\n[[keys]]\nname = \"k{i}\"\nhash = \"sha256:{}\"\nmodels = [\"*\"]\n",
            hex(&hash.0)
        ));
    }
    match config::load::load_str(&text, Path::new("bench.toml"), Secrets::Skip) {
        Ok(c) => c,
        Err(e) => panic!("bench config does not load: {e}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn auth(c: &mut Criterion) {
    for keys in [1, 1000] {
        let config = config(keys);
        c.bench_function(&format!("auth/hash+lookup, {keys} keys"), |b| {
            b.iter(|| {
                let hash = KeyHash::of(black_box(KEY));
                black_box(config.key_by_hash(&hash).is_some())
            })
        });
    }
}

fn small_body() -> Vec<u8> {
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"temperature":0.2}"#.to_vec()
}

/// About 80 KB: a long coding-agent turn with escaped text, the model field at the end.
fn large_body() -> Vec<u8> {
    let turn = serde_json::json!({
        "role": "user",
        "content": "fn main() {\n    println!(\"hello, \\\"world\\\"\");\n}\n".repeat(20),
    });
    let messages: Vec<_> = std::iter::repeat_n(turn, 70).collect();
    let body = serde_json::json!({"messages": messages, "stream": true, "model": "claude-sonnet"});
    match serde_json::to_vec(&body) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn rewrite_model(c: &mut Criterion) {
    for (name, body) in [("small", small_body()), ("80 KB", large_body())] {
        c.bench_function(&format!("rewrite/probe {name} ({} B)", body.len()), |b| {
            b.iter(|| black_box(probe(black_box(&body)).is_ok()))
        });
        let Ok(p) = probe(&body) else {
            panic!("bench body does not probe")
        };
        c.bench_function(&format!("rewrite/rewrite {name} ({} B)", body.len()), |b| {
            b.iter(|| black_box(rewrite(black_box(&body), &p, "upstream-model-name", true).is_ok()))
        });
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn sse_translate(c: &mut Criterion) {
    for rel in ["anthropic/stream_text.sse", "anthropic/stream_tool_use.sse"] {
        let input = fixture(rel);
        c.bench_function(&format!("sse/parse {rel}"), |b| {
            b.iter_batched(
                || (SseParser::new(1 << 20), Vec::new()),
                |(mut parser, mut events)| {
                    let _ = parser.push(black_box(&input), &mut events);
                    black_box(events.len())
                },
                BatchSize::SmallInput,
            )
        });
        c.bench_function(&format!("sse/parse+translate to OpenAI {rel}"), |b| {
            b.iter_batched(
                || {
                    (
                        SseParser::new(1 << 20),
                        AnthropicToOpenAiStream::new("gpt-4o", false).with_created(1),
                        Vec::new(),
                        Vec::with_capacity(4096),
                    )
                },
                |(mut parser, mut stream, mut events, mut out)| {
                    let _ = parser.push(black_box(&input), &mut events);
                    for ev in &events {
                        stream.on_event(ev, &mut out);
                    }
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, auth, rewrite_model, sse_translate);
criterion_main!(benches);
