//! Fuzz targets of event streams: the SSE parser and the stream translators.

use serde_json::Value;

use super::{pieces, split_input};
use crate::sse::{SseEvent, SseParser, write_event};
use crate::translate::{self, StreamTranslator};

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
/// ... plus this much (frame overhead, ids, the model name, the usage frame). An event that
/// closes an output item, or the stream, may also repeat what came before it (the
/// Responses API's `*.done` events carry the item's whole text, its final response the whole
/// output): up to `OUT_PER_BYTE` times all the input read.
const OUT_PER_EVENT: usize = 2048;
/// Over a whole stream, output may be at most this many bytes per input byte (plus
/// `OUT_PER_EVENT` per event): each piece of text is written as a delta, repeated by its
/// item's `*.done` events and once more by the final response, but never once per event, so
/// nothing an upstream repeats (an id, the model name) multiplies the output.
const OUT_TOTAL_PER_BYTE: usize = 8;

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
    let mut seen = 0;
    let mut feed = |tr: &mut Box<dyn StreamTranslator>, ev: &SseEvent, out: &mut Vec<u8>| {
        let before = out.len();
        let ended = tr.finished() || tr.failed();
        tr.on_event(ev, out);
        let wrote = out.len() - before;
        assert!(!ended || wrote == 0, "wrote after the stream ended");
        let size = ev.data.len() + ev.event.as_ref().map_or(0, String::len);
        read += size;
        seen += 1;
        assert!(
            wrote <= OUT_PER_BYTE * (size + read) + OUT_PER_EVENT,
            "{wrote} bytes out for a {size}-byte event"
        );
        assert!(
            out.len() <= OUT_TOTAL_PER_BYTE * read + OUT_PER_EVENT * seen,
            "{} bytes out for {read} bytes in {seen} events",
            out.len()
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
    if !broken && let Some(ev) = parser.finish() {
        feed(&mut tr, &ev, &mut out);
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
