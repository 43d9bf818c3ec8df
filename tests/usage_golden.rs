//! Usage objects as the providers document them (`tests/fixtures/usage/`, one file per shape,
//! each naming its source and the counts it must give): whole answers and stream events of
//! OpenAI chat and Responses, Anthropic Messages, OpenRouter's reported cost and DeepSeek's
//! cache hits, read by the gateway's one usage reader.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use noviqi::cost::Usd;
use noviqi::translate::Usage;
use noviqi::translate::usage::{anthropic_usage, body_usage};
use serde_json::Value;

fn expected(v: &Value) -> Usage {
    let n = |f: &str| v[f].as_u64().unwrap();
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        cache_read_tokens: n("cache_read_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        cache_write_1h_tokens: n("cache_write_1h_tokens"),
        reported_cost: v["cost"].as_f64().map(|c| Usd::from_f64(c).unwrap()),
    }
}

#[test]
fn every_documented_usage_shape_reads_as_expected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/usage");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let body = &fixture["body"];
        let got = match fixture["format"].as_str().unwrap() {
            "anthropic" => anthropic_usage(body),
            "openai" => body_usage(body.to_string().as_bytes(), false).unwrap(),
            other => panic!("{}: unknown format {other}", path.display()),
        };
        assert_eq!(
            got,
            Some(expected(&fixture["expect"])),
            "{}",
            path.display()
        );
        assert!(fixture["source"].as_str().is_some_and(|s| s.len() > 20));
        read += 1;
    }
    assert!(read >= 9, "{read} fixtures");
}
