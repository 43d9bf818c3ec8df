//! Entry points for the cargo-fuzz targets in `fuzz/`: one `pub fn` per target, taking the
//! fuzzer's bytes, so each target stays a one-line call and the internals it reaches keep
//! their crate-only visibility. Not an API: hidden from the docs, used by nothing else.
//!
//! Why here and not in `fuzz/`: the parsers of untrusted bytes (request heads, chunked bodies,
//! SSE, upstream answers, client JSON, the config file, `enc:v1` values) are crate-internal,
//! and a property that needs an internal to check (a split run equals a whole run, a bound
//! holds) is written once, next to the code it checks.
//!
//! Conventions:
//! - Targets that feed a parser piece by piece read their split from the input's first bytes
//!   ([`split_input`]): byte 0 gives how many piece lengths follow (`& 7`; 0 = the payload in
//!   one piece), each following byte is a piece length minus one, and the pieces cycle
//!   through them. Their seeds start with `\0` (whole) or such a prefix.
//! - A property that fails is an `assert!`: under libFuzzer a panic is the crash report.
//!
//! State owned: for [`upstream_response`] only, a loopback listener thread that answers each
//! connection with the current input (started on first use, kept for the process).

// A failed property must crash the fuzzer, and a panic is how libFuzzer learns of it. Nothing
// here is on a request path: the gateway never calls this module.
#![allow(clippy::panic)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use crate::config::{self, Config, Secrets};
use crate::crypto::secret::{self, MasterKey, SecretError};
use crate::http::body::BodyState;
use crate::http::conn::{self, Buffers, ConnCtx};
use crate::http::head::{self, Framing, Head, HeadLimits};
use crate::http::wire::{InBuf, Wire};
use crate::http::{Request, Response, ServerOptions};
use crate::sse::{SseEvent, SseParser, write_event};
use crate::translate::plan::{self, Endpoint};
use crate::translate::rewrite;
use crate::translate::{self, StreamTranslator};
use crate::upstream::http::HttpProvider;
use crate::upstream::{Method, Provider as _, UpstreamRequest};

// ---------------------------------------------------------------------------------------------
// Input splitting and an in-memory transport

/// The piece lengths chosen by `data`'s first bytes, and the payload after them.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(first & 7).min(rest.len());
    let lens = rest[..n].iter().map(|&b| usize::from(b) + 1).collect();
    (lens, &rest[n..])
}

/// `payload` cut into pieces whose lengths cycle through `lens` (one piece when empty).
fn pieces<'a>(payload: &'a [u8], lens: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut turn = 0;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let len = match lens {
            [] => payload.len(),
            _ => lens[turn % lens.len()],
        };
        turn += 1;
        let end = payload.len().min(at + len);
        let piece = &payload[at..end];
        at = end;
        Some(piece)
    })
}

/// A transport over fixed bytes, each read returning at most the next piece length; what is
/// written to it is kept (up to a bound) so a target can look at the responses.
struct ByteWire<'a> {
    data: &'a [u8],
    at: usize,
    lens: &'a [usize],
    turn: usize,
    written: Vec<u8>,
}

/// Most response bytes a [`ByteWire`] keeps.
const WRITTEN_MAX: usize = 1 << 20;

impl<'a> ByteWire<'a> {
    fn new(data: &'a [u8], lens: &'a [usize]) -> Self {
        ByteWire {
            data,
            at: 0,
            lens,
            turn: 0,
            written: Vec::new(),
        }
    }

    /// The bytes not yet read.
    fn rest(&self) -> &[u8] {
        &self.data[self.at..]
    }
}

impl Read for ByteWire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = match self.lens {
            [] => usize::MAX,
            lens => lens[self.turn % lens.len()],
        };
        self.turn += 1;
        let n = buf.len().min(step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for ByteWire<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = WRITTEN_MAX.saturating_sub(self.written.len());
        self.written.extend_from_slice(&b[..b.len().min(room)]);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for ByteWire<'_> {
    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn shutdown_write(&mut self) {}
}

// ---------------------------------------------------------------------------------------------
// HTTP server side: request heads, chunked bodies, whole connections

fn head_limits() -> HeadLimits {
    HeadLimits {
        max_bytes: 32 * 1024,
        max_headers: 100,
        first_byte: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        deadline: None,
    }
}

/// `http_head`: a request head (plus whatever follows) through `try_parse` and `semantics`.
/// Properties: parsing it in two steps (as a trickled head is) gives what parsing it at once
/// gives; the framing decided agrees with the headers it was decided from.
pub fn http_head(data: &[u8]) {
    let lim = head_limits();
    let mut whole = Head::default();
    let once = head::try_parse(data, &mut 0, &mut whole, &lim);
    let mut stepped = Head::default();
    let mut scanned = 0;
    let twice = match head::try_parse(&data[..data.len() / 2], &mut scanned, &mut stepped, &lim) {
        Ok(None) => head::try_parse(data, &mut scanned, &mut stepped, &lim),
        first => first,
    };
    let outcome = |r: &Result<Option<usize>, head::HeadError>| format!("{r:?}");
    let Ok(Some(len)) = once else {
        // Refused or incomplete at once: stepped, it is the same, or (a refusal) still
        // incomplete. Leading empty lines end the search window early for the whole head,
        // so its error can be seen sooner; a stepped parse sees it once the head ends.
        let later = matches!((&once, &twice), (Err(_), Ok(None)));
        assert!(
            later || outcome(&once) == outcome(&twice),
            "a two-step parse disagrees: {once:?} vs {twice:?}"
        );
        return;
    };
    assert_eq!(
        outcome(&once),
        outcome(&twice),
        "a two-step parse disagrees"
    );
    assert!(len <= data.len() && len <= lim.max_bytes);
    assert!(whole.headers().count() <= lim.max_headers);
    assert_eq!(stepped.method(), whole.method());
    assert_eq!(stepped.target(), whole.target());
    assert!(stepped.headers().eq(whole.headers()));
    let Ok(sem) = head::semantics(&whole) else {
        return;
    };
    let count = |name: &str| {
        whole
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    match sem.framing {
        Framing::Chunked => {
            assert_eq!(whole.minor, 1, "chunked framing on HTTP/1.0");
            assert_eq!(count("content-length"), 0);
            assert_eq!(count("transfer-encoding"), 1);
        }
        Framing::Length(n) => {
            assert_eq!(count("transfer-encoding"), 0);
            let declared = whole.header("content-length").map(str::parse::<u64>);
            assert!(count("content-length") <= 1);
            match declared {
                None => assert_eq!(n, 0),
                Some(d) => assert_eq!(d.ok(), Some(n)),
            }
        }
    }
}

/// The most a chunked body may decode to in [`http_chunked`].
const CHUNKED_LIMIT: u64 = 1024;

fn decode_chunked(payload: &[u8], lens: &[usize]) -> (Result<Vec<u8>, String>, Vec<u8>) {
    let mut wire = ByteWire::new(payload, lens);
    let mut inbuf = InBuf::with_capacity(16);
    let mut state = BodyState::new(
        Framing::Chunked,
        CHUNKED_LIMIT,
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let mut body = Vec::new();
    let mut piece = [0u8; 61];
    let result = loop {
        match state.read(&mut inbuf, &mut wire, &mut piece) {
            Ok(0) => break Ok(body),
            Ok(n) => body.extend_from_slice(&piece[..n]),
            Err(e) => break Err(e.to_string()),
        }
    };
    let mut rest = inbuf.data().to_vec();
    rest.extend_from_slice(wire.rest());
    (result, rest)
}

/// `http_chunked`: a chunked request body, read in the pieces the input's prefix chooses.
/// Properties: the decoded body never exceeds the limit, nothing past the body is consumed
/// beyond what was buffered, and the split does not change the decoded body or what follows.
pub fn http_chunked(data: &[u8]) {
    let (lens, payload) = split_input(data);
    let (split, split_rest) = decode_chunked(payload, &lens);
    let (whole, whole_rest) = decode_chunked(payload, &[]);
    if let Ok(body) = &split {
        assert!(body.len() as u64 <= CHUNKED_LIMIT);
    }
    assert!(split_rest.len() <= payload.len());
    match (&split, &whole) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the split changed the body");
            assert_eq!(
                split_rest, whole_rest,
                "the split changed what follows the body"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("split and whole runs disagree: {split:?} vs {whole:?}"),
    }
}

/// The handler of [`http_conn`]: reads the body of a POST, streams for `/stream`, else
/// answers without reading (so unread bodies are drained or the connection closed).
fn conn_handler(req: &mut Request<'_>) -> Response {
    if req.method() == "POST" {
        return match req.read_body(4096) {
            Ok(body) => Response::bytes(200, "application/octet-stream", body),
            Err(e) => Response::new(e.status()),
        };
    }
    if req.path() == "/stream" {
        return Response::stream(200, |w: &mut crate::http::StreamWriter<'_>| {
            w.send(b"data: 1\n\n")?;
            w.finish(b"data: [DONE]\n\n")
        });
    }
    Response::json(200, "{}")
}

/// `http_conn`: one client connection's bytes, read in the pieces the prefix chooses, through
/// the connection loop (heads, framing, bodies, pipelining, refusals, responses). Property:
/// what the server writes is a sequence of HTTP/1.1 responses.
pub fn http_conn(data: &[u8]) {
    let (lens, payload) = split_input(data);
    let mut wire = ByteWire::new(payload, &lens);
    let opts = ServerOptions {
        max_head_bytes: 4096,
        max_headers: 16,
        max_body_bytes: 8192,
        ..ServerOptions::default()
    };
    let stop = AtomicBool::new(false);
    let budget = std::sync::Arc::new(crate::http::budget::Budget::new(opts.max_buffered_bytes));
    let ctx = ConnCtx {
        opts: &opts,
        handler: &conn_handler,
        stop: &stop,
        budget: &budget,
        idle: None,
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let deadline = Instant::now() + Duration::from_secs(5);
    conn::serve(&mut wire, peer, false, &mut Buffers::new(), &ctx, deadline);
    if !wire.written.is_empty() {
        assert!(wire.written.starts_with(b"HTTP/1.1 "), "not a response");
    }
}

// ---------------------------------------------------------------------------------------------
// Event streams and the stream translators

/// Line and event bounds of the SSE targets (small, so the limits are reached).
const SSE_LINE: usize = 512;
const SSE_EVENT: usize = 2048;

/// Parses `payload` fed in `lens` pieces: the events, the error if any, and the final event.
fn parse_sse(payload: &[u8], lens: &[usize]) -> (Vec<SseEvent>, Option<String>) {
    let mut parser = SseParser::with_limits(SSE_LINE, SSE_EVENT);
    let mut events = Vec::new();
    for piece in pieces(payload, lens) {
        let result = parser.push(piece, &mut events);
        assert!(
            parser.buffered_len() <= SSE_LINE,
            "line buffer over its bound"
        );
        assert!(
            parser.pending_event_len() <= SSE_EVENT,
            "event over its bound"
        );
        if let Err(e) = result {
            return (events, Some(e.to_string()));
        }
    }
    events.extend(parser.finish());
    (events, None)
}

/// `sse`: an upstream event stream, pushed in the pieces the prefix chooses. Properties: the
/// buffers stay within their bounds, the split changes neither the events nor the error, and
/// every event written back with `write_event` parses to itself.
pub fn sse(data: &[u8]) {
    let (lens, payload) = split_input(data);
    let split = parse_sse(payload, &lens);
    let whole = parse_sse(payload, &[]);
    assert_eq!(split, whole, "the split changed the events");
    for ev in &split.0 {
        let mut frame = Vec::new();
        write_event(&mut frame, ev.event.as_deref(), &ev.data);
        let mut parser = SseParser::with_limits(usize::MAX, usize::MAX);
        let mut again = Vec::new();
        let pushed = parser.push(&frame, &mut again);
        assert!(pushed.is_ok());
        assert_eq!(
            again.as_slice(),
            std::slice::from_ref(ev),
            "write_event round trip"
        );
    }
}

/// Which completion marker a client format has: the frame a translator may write only once
/// the upstream stream ended properly.
#[derive(Clone, Copy)]
enum ClientFormat {
    /// `data: [DONE]`.
    OpenAi,
    /// `event: message_stop`.
    Anthropic,
    /// `event: response.completed` / `response.incomplete`.
    Responses,
}

/// Output a translator may write for one event: this many bytes per input byte ...
const OUT_PER_BYTE: usize = 4;
/// ... plus this much (frame overhead, ids, the model name, the usage frame). The event that
/// ends the stream may also repeat everything so far (the Responses API's final response
/// carries the whole output): up to `OUT_PER_BYTE` times all the input read.
const OUT_PER_EVENT: usize = 2048;

/// Runs a translator over `payload` fed in `lens` pieces as the relay does (events from each
/// read, `finish` at EOF or on an unreadable stream); returns the client bytes.
fn run_translator(
    make: &dyn Fn() -> Box<dyn StreamTranslator>,
    payload: &[u8],
    lens: &[usize],
) -> (Vec<u8>, bool, bool) {
    let mut tr = make();
    let mut parser = SseParser::with_limits(SSE_LINE * 8, SSE_EVENT * 8);
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut read = 0;
    let mut feed = |tr: &mut Box<dyn StreamTranslator>, ev: &SseEvent, out: &mut Vec<u8>| {
        let before = out.len();
        let ended = tr.finished() || tr.failed();
        tr.on_event(ev, out);
        let wrote = out.len() - before;
        assert!(!ended || wrote == 0, "wrote after the stream ended");
        let size = ev.data.len() + ev.event.as_ref().map_or(0, String::len);
        read += size;
        let ends = tr.finished() || tr.failed();
        let carried = if ends { OUT_PER_BYTE * read } else { 0 };
        assert!(
            wrote <= OUT_PER_BYTE * size + OUT_PER_EVENT + carried,
            "{wrote} bytes out for a {size}-byte event"
        );
    };
    let mut broken = false;
    for piece in pieces(payload, lens) {
        if parser.push(piece, &mut events).is_err() {
            broken = true;
        }
        for ev in events.drain(..) {
            feed(&mut tr, &ev, &mut out);
        }
        if broken {
            break;
        }
    }
    if !broken {
        if let Some(ev) = parser.finish() {
            feed(&mut tr, &ev, &mut out);
        }
    }
    let before = out.len();
    if !tr.finished() && !tr.failed() {
        tr.finish(&mut out);
    }
    assert!(
        out.len() - before <= OUT_PER_EVENT * 2,
        "finish wrote too much"
    );
    let _ = tr.usage();
    (out, tr.finished(), tr.failed())
}

/// Checks a translator's client bytes: every frame parses, carries JSON (or `[DONE]`), and the
/// completion marker appears only when the translator says the stream finished.
fn check_client_stream(out: &[u8], format: ClientFormat, finished: bool) {
    let mut parser = SseParser::with_limits(usize::MAX, usize::MAX);
    let mut frames = Vec::new();
    assert!(parser.push(out, &mut frames).is_ok());
    assert!(parser.finish().is_none(), "a frame was left unterminated");
    let mut complete = false;
    for ev in &frames {
        let marker = match format {
            ClientFormat::OpenAi => ev.data == "[DONE]",
            ClientFormat::Anthropic => ev.event.as_deref() == Some("message_stop"),
            ClientFormat::Responses => matches!(
                ev.event.as_deref(),
                Some("response.completed" | "response.incomplete")
            ),
        };
        assert!(!complete, "a frame after the completion marker");
        complete |= marker;
        if ev.data != "[DONE]" {
            assert!(
                serde_json::from_str::<Value>(&ev.data).is_ok(),
                "a frame that is not JSON"
            );
        }
    }
    assert_eq!(
        complete, finished,
        "completion marker and finished() disagree"
    );
}

fn stream_target(data: &[u8], make: &dyn Fn() -> Box<dyn StreamTranslator>, format: ClientFormat) {
    let (lens, payload) = split_input(data);
    let (split, finished, failed) = run_translator(make, payload, &lens);
    assert!(!(finished && failed), "both finished and failed");
    check_client_stream(&split, format, finished);
    let (whole, ..) = run_translator(make, payload, &[]);
    assert!(split == whole, "the split changed the client's bytes");
}

/// `stream_anthropic_to_openai`: Anthropic upstream events → OpenAI chat chunks.
pub fn stream_anthropic_to_openai(data: &[u8]) {
    let make = || -> Box<dyn StreamTranslator> {
        Box::new(translate::AnthropicToOpenAiStream::new("fuzz-model", true).with_created(1))
    };
    stream_target(data, &make, ClientFormat::OpenAi);
}

/// `stream_openai_to_anthropic`: OpenAI upstream chunks → Anthropic Messages events.
pub fn stream_openai_to_anthropic(data: &[u8]) {
    let make = || -> Box<dyn StreamTranslator> {
        Box::new(translate::OpenAiToAnthropicStream::new("fuzz-model"))
    };
    stream_target(data, &make, ClientFormat::Anthropic);
}

/// `stream_anthropic_to_responses`: Anthropic upstream events → Responses API events.
pub fn stream_anthropic_to_responses(data: &[u8]) {
    let make = || -> Box<dyn StreamTranslator> {
        Box::new(translate::AnthropicToResponsesStream::new("fuzz-model").with_created(1))
    };
    stream_target(data, &make, ClientFormat::Responses);
}

// ---------------------------------------------------------------------------------------------
// Client bodies: the probe, the model splice and the request translators

/// Upstream model names spliced in: plain, needing escapes, empty.
const MODELS: [&str; 3] = ["gpt-4o-mini", "a\"b\\c\u{1F600}\n\u{7f}", ""];

/// `rewrite`: a client body through `probe`, then the model splice (with and without the
/// injected `stream_options.include_usage`). Properties: when the body is a JSON object the
/// spliced body is JSON that equals the original with the new model (and, when asked,
/// `include_usage: true`), and it grows by no more than the new name and the injection.
pub fn rewrite(data: &[u8]) {
    let Ok(probe) = rewrite::probe(data) else {
        return;
    };
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(data).ok();
    for model in MODELS {
        for add_usage in [false, true] {
            let Ok(out) = rewrite::rewrite(data, &probe, model, add_usage) else {
                continue;
            };
            let name_len = serde_json::to_string(model).map_or(0, |s| s.len());
            let reserialised = add_usage && probe.has_stream_options && !probe.include_usage;
            if !reserialised {
                // The in-place splice (the re-serialising path may reformat the body).
                assert!(
                    out.len() <= data.len() + name_len + 64,
                    "splice grew too much"
                );
            }
            let Some(original) = &parsed else { continue };
            let spliced: serde_json::Map<String, Value> = match serde_json::from_slice(&out) {
                Ok(v) => v,
                Err(e) => panic!("spliced body is not a JSON object: {e}"),
            };
            let mut expected = original.clone();
            expected.insert("model".into(), Value::String(model.to_owned()));
            if add_usage && !probe.include_usage {
                // Whatever the client sent as `stream_options`, the upstream must now see
                // `include_usage: true` (so the stream's tokens are reported).
                let opts = expected
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if !opts.is_object() {
                    *opts = Value::Object(serde_json::Map::new());
                }
                if let Some(opts) = opts.as_object_mut() {
                    opts.insert("include_usage".into(), Value::Bool(true));
                }
            }
            if reserialised {
                // That path parses and prints the body again; serde_json's float parsing is
                // not exact in the last place, so compare with `expected` printed and parsed.
                let printed = serde_json::to_vec(&expected).unwrap_or_default();
                expected = serde_json::from_slice(&printed).unwrap_or_default();
            }
            assert_eq!(spliced, expected, "the splice changed more than the model");
        }
    }
}

/// The client endpoints and provider kinds [`plan::plan`] is asked about.
const ENDPOINTS: [Endpoint; 6] = [
    Endpoint::Chat,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Responses,
    Endpoint::Messages,
    Endpoint::CountTokens,
];

/// Runs one request translator on `data` (when it is JSON) and checks it gives an object.
fn request_translator(data: &[u8], f: fn(&Value) -> Result<Value, translate::TranslateError>) {
    let Ok(req) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(out) = f(&req) {
        assert!(
            out.is_object(),
            "a translated request that is not an object"
        );
        assert!(serde_json::to_vec(&out).is_ok());
    }
}

/// `plan`: a client body planned for every endpoint towards OpenAI and Anthropic upstreams,
/// as the gateway does per target (probe, then splice or translate).
pub fn plan(data: &[u8]) {
    let Ok(probe) = rewrite::probe(data) else {
        return;
    };
    // The probe skips unchecked what it does not read (invalid UTF-8 in a string there is the
    // upstream's to refuse), so only a body that is JSON must stay JSON.
    let json = serde_json::from_slice::<Value>(data).is_ok();
    for endpoint in ENDPOINTS {
        for kind in [
            config::model::ProviderKind::OpenAi,
            config::model::ProviderKind::Anthropic,
        ] {
            let planned = plan::plan(endpoint, kind, data, &probe, "up-model");
            if let (Ok(p), true) = (planned, json) {
                let v = serde_json::from_slice::<Value>(&p.body);
                assert!(
                    v.is_ok_and(|v| v["model"] == "up-model"),
                    "planned body lost its model"
                );
            }
        }
    }
}

/// `translate_chat_request`: an OpenAI chat request → Anthropic Messages.
pub fn translate_chat_request(data: &[u8]) {
    request_translator(data, translate::chat_request_to_anthropic);
}

/// `translate_messages_request`: an Anthropic Messages request → OpenAI chat.
pub fn translate_messages_request(data: &[u8]) {
    request_translator(data, translate::anthropic_request_to_chat);
}

/// `translate_responses_request`: an OpenAI Responses request → chat, and → Anthropic.
pub fn translate_responses_request(data: &[u8]) {
    request_translator(data, translate::responses_request_to_chat);
    request_translator(data, translate::responses_request_to_anthropic);
}

// ---------------------------------------------------------------------------------------------
// Upstream answers: the HTTP response over our transport, and the body's translation

/// `upstream_body`: a non-streamed upstream body as the gateway reads it: usage (both
/// formats, raw and as a value, which must agree) and each response translator.
pub fn upstream_body(data: &[u8]) {
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

/// `upstream_response`: the input is what an upstream sends back; it goes through a real
/// `HttpProvider` (ureq over our TCP transport and its buffers) and the body is read as the
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
    let Ok(client) = HttpProvider::new(provider.clone(), &upstream.config.server) else {
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

// ---------------------------------------------------------------------------------------------
// The config file and enc:v1 secrets

/// `config_load`: a config file's text through `load_str` without decryption. Properties: an
/// error renders (with its snippet of the file); a loaded config routes each of its models.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::load_str(text, Path::new("/fuzz/noviqi.toml"), Secrets::Skip) {
        Ok(config) => {
            for model in &config.models {
                let route = config.route(&model.name);
                assert!(
                    route.is_some_and(|r| !r.targets.is_empty()),
                    "{} does not route",
                    model.name
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The fixed master key of the `secret` target (base64 of 32 bytes; its seeds use it).
pub const FUZZ_MASTER_KEY: &str = "bm92aXFpLWZ1enotZml4ZWQtbWFzdGVyLWtleS0zMiE=";

/// `secret`: the input as an `enc:v1` value decrypted under a fixed key, and as master-key
/// text. Properties: `check_syntax` accepts exactly what `decrypt` gets past the syntax of;
/// encrypting the input and decrypting it gives it back.
pub fn secret(data: &[u8]) {
    let Ok(key) = MasterKey::from_base64(FUZZ_MASTER_KEY) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let syntax = secret::check_syntax(text);
        let decrypted = secret::decrypt(&key, text);
        let syntax_error = matches!(
            decrypted,
            Err(SecretError::NotEncrypted
                | SecretError::UnsupportedVersion(_)
                | SecretError::BadBase64
                | SecretError::Truncated)
        );
        assert_eq!(
            syntax.is_ok(),
            !syntax_error,
            "check_syntax and decrypt disagree"
        );
        if let Err(e) = &decrypted {
            let _ = e.to_string();
        }
        if let Ok(parsed) = MasterKey::from_base64(text) {
            let again = MasterKey::from_base64(&parsed.to_base64());
            assert!(again.is_ok_and(|k| k.to_base64() == parsed.to_base64()));
        }
    }
    let sealed = secret::encrypt(&key, data);
    match (secret::decrypt(&key, &sealed), std::str::from_utf8(data)) {
        (Ok(plain), Ok(text)) => assert_eq!(plain.expose(), text, "round trip"),
        (Err(SecretError::NotUtf8), Err(_)) => {}
        (got, _) => panic!("round trip failed: {:?}", got.map(|_| ())),
    }
}
