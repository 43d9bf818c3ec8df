//! Fuzz targets of upstream answers: the HTTP response over our transport, and the body's
//! translation.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::config::{self, Config, Secrets};
use crate::sse::SseParser;
use crate::translate;
use crate::upstream::remote::Remote;
use crate::upstream::{Method, Provider as _, UpstreamRequest};

// ---------------------------------------------------------------------------------------------
// Upstream answers: the HTTP response over our transport, and the body's translation

/// `upstream_body`: a non-streamed upstream body as the gateway reads it: usage (both
/// formats, raw and as a value, which must agree; and from the whole body by the scanner,
/// which accepts only what serde_json accepts and finds the same usage) and each response
/// translator.
pub fn upstream_body(data: &[u8]) {
    let scanned = translate::usage::body_usage(data, false);
    let reference = body_usage_with_serde(data);
    match (&scanned, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "body_usage read another usage than serde_json"),
        (Ok(_), Err(_)) => panic!("body_usage accepted a body serde_json refuses"),
        // Refused by serde_json too, nested past the scanner's depth, or a `response` that is
        // not an object (serde_json's struct refuses it; the scanner just finds no usage).
        (Err(_), _) => {}
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(usage) = v.get("usage") {
        let text = usage.to_string();
        assert_eq!(
            translate::usage_from_json(&text, false),
            translate::openai_usage_object(usage)
        );
        assert_eq!(
            translate::usage_from_json(&text, true),
            translate::anthropic_usage_object(usage)
        );
    }
    let _ = translate::openai_usage(&v);
    let _ = translate::anthropic_usage(&v);
    let checks = [
        translate::anthropic_response_to_chat(&v, "fuzz-model", 1),
        translate::anthropic_response_to_responses(&v, "fuzz-model", 1),
        translate::chat_response_to_anthropic(&v, "fuzz-model"),
    ];
    for out in checks.into_iter().flatten() {
        assert!(out.is_object(), "a translated answer that is not an object");
    }
}

/// A loopback "upstream" that answers every connection with the current fuzz input.
struct FakeUpstream {
    config: Config,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn fake_upstream() -> Option<&'static FakeUpstream> {
    static UPSTREAM: OnceLock<Option<FakeUpstream>> = OnceLock::new();
    UPSTREAM.get_or_init(start_fake_upstream).as_ref()
}

fn start_fake_upstream() -> Option<FakeUpstream> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    let addr = listener.local_addr().ok()?;
    let answer = Arc::new(Mutex::new(Vec::new()));
    let current = answer.clone();
    std::thread::Builder::new()
        .name("fuzz-upstream".into())
        .spawn(move || {
            // One connection at a time, on this thread: inputs run one after another, and a
            // thread per connection outliving its input looked like a leak to LeakSanitizer.
            for conn in listener.incoming().flatten() {
                let bytes = current.lock().clone();
                answer_once(conn, &bytes);
            }
        })
        .ok()?;
    let text = format!(
        "[server]\nrequest_timeout_secs = 5\n[[providers]]\nname = \"up\"\nkind = \"openai\"\n\
         base_url = \"http://{addr}\"\ntimeout_secs = 5\n"
    );
    let config = config::load_str(&text, Path::new("/fuzz/noviqi.toml"), Secrets::Skip).ok()?;
    Some(FakeUpstream { config, answer })
}

/// Reads the request head, writes `bytes`, ends our side and waits for the client to close
/// (so our close is not a reset that could destroy the answer in flight).
fn answer_once(mut conn: TcpStream, bytes: &[u8]) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let _ = conn.write_all(bytes);
    let _ = conn.shutdown(Shutdown::Write);
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// Most of an upstream body [`upstream_response`] reads (a gzip bomb stops here).
const UPSTREAM_BODY_MAX: u64 = 8 << 20;

/// `body_usage` as serde_json reads it (the implementation it replaced): the body as a struct
/// of raw values, `usage` or `response.usage`.
fn body_usage_with_serde(body: &[u8]) -> Result<Option<translate::Usage>, serde_json::Error> {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct UsageOnly<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        response: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Nested<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    let probe: UsageOnly<'_> = serde_json::from_slice(body)?;
    // Only an object `response` counts (a derived struct would also read an array).
    let nested = probe
        .response
        .filter(|r| r.get().starts_with('{'))
        .and_then(|r| serde_json::from_str::<Nested<'_>>(r.get()).ok())
        .and_then(|n| n.usage);
    Ok(probe
        .usage
        .or(nested)
        .and_then(|u| translate::usage_from_json(u.get(), false)))
}

/// `upstream_response`: the input is what an upstream sends back; it goes through a real
/// `Remote` (ureq over our TCP transport and its buffers) and the body is read as the
/// gateway reads it (whole and bounded, or as SSE). Properties: only the relayed headers come
/// through, the status is a valid code. Needs no proxy in the environment (`scripts/fuzz`
/// unsets them).
pub fn upstream_response(data: &[u8]) {
    let Some(upstream) = fake_upstream() else {
        return;
    };
    let Some(provider) = upstream.config.providers.first() else {
        return;
    };
    *upstream.answer.lock() = data.to_vec();
    // A fresh provider (and connection pool) per input, so no input depends on the last.
    let Ok(client) = Remote::new(provider.clone(), &upstream.config.server) else {
        return;
    };
    let request = UpstreamRequest {
        method: Method::Get,
        path: "/chat/completions",
        headers: &[],
        body: &[],
    };
    let response = match client.send(&request) {
        Ok(response) => response,
        Err(e) => {
            let _ = (e.status(), e.code(), e.to_string());
            return;
        }
    };
    assert!((100..=999).contains(&response.status));
    for (name, _) in &response.headers {
        assert!(
            name == "content-type" || name == "retry-after",
            "relayed {name}"
        );
    }
    let stream = response.is_event_stream();
    let mut body = Vec::new();
    let read = response
        .body
        .take(UPSTREAM_BODY_MAX + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return;
    }
    if stream {
        let mut parser = SseParser::with_limits(4 << 20, 8 << 20);
        let mut events = Vec::new();
        let _ = parser.push(&body, &mut events);
        events.extend(parser.finish());
    } else {
        upstream_body(&body);
    }
}

/// `retry_after`: an upstream's `Retry-After` value (seconds or an HTTP date). Properties: no
/// panic, and no wait longer than the cap, whatever the text.
pub fn retry_after(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(wait) = crate::routing::retry_after(text) {
        assert!(
            wait <= crate::routing::MAX_RETRY_AFTER,
            "{wait:?} for {text:?}"
        );
    }
}
