//! Streams relayed in the format they came in: what the gateway must still know of them.
//!
//! A passed-through stream's events go to the client unchanged, but the gateway reads them on
//! the way: the usage they report (for the usage log), and whether the stream ended properly
//! (OpenAI's `data: [DONE]`, the Responses API's `response.completed` / `response.incomplete`,
//! Anthropic's `message_stop`) or with the upstream's own error event. A stream that stops
//! without either gets one final error event from [`StreamTranslator::finish`], so a truncated
//! answer never looks complete.
//!
//! For an OpenAI chat stream the gateway asks the upstream for the usage chunk itself
//! (`stream_options.include_usage`, see [`super::rewrite`]); when the client had not asked for
//! it, that chunk is read and not relayed. State owned: per stream, the usage seen and
//! whether it has ended.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::stream::StreamTranslator;
use super::usage::usage_from_json;
use crate::cost::Usage;
use crate::error::{ApiError, Dialect, Kind};
use crate::sse::{SseEvent, write_event};

/// An OpenAI chat, completions or Responses stream, passed through.
#[derive(Debug, Default)]
pub struct OpenAiPassthrough {
    hide_usage_chunk: bool,
    usage: Option<Usage>,
    done: bool,
    failed: bool,
}

impl OpenAiPassthrough {
    /// With `hide_usage_chunk`, the usage-only chunk the gateway asked for is not relayed.
    pub fn new(hide_usage_chunk: bool) -> OpenAiPassthrough {
        OpenAiPassthrough {
            hide_usage_chunk,
            ..OpenAiPassthrough::default()
        }
    }
}

/// The fields of an OpenAI stream chunk (or Responses event) the gateway reads.
#[derive(Deserialize)]
struct OpenAiChunk<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<ResponseUsage<'a>>,
}

#[derive(Deserialize)]
struct ResponseUsage<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

impl StreamTranslator for OpenAiPassthrough {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        if ev.data == "[DONE]" {
            self.done = true;
        } else if may_carry_usage_or_end(&ev.data) {
            match serde_json::from_str::<OpenAiChunk<'_>>(&ev.data) {
                Ok(chunk) => {
                    if chunk.error.is_some() {
                        self.failed = true;
                    }
                    let found = chunk
                        .usage
                        .or_else(|| chunk.response.and_then(|r| r.usage))
                        .and_then(|u| usage_from_json(u.get(), false));
                    if let Some(u) = found {
                        self.usage = Some(u);
                        // `choices` is `[]` in OpenAI's usage chunk; some compatible servers
                        // send `null` or leave it out.
                        let usage_only = chunk.choices.is_none_or(|c| c.is_empty());
                        if self.hide_usage_chunk && usage_only {
                            return;
                        }
                    }
                    match chunk.kind.as_deref() {
                        Some("response.completed" | "response.incomplete") => self.done = true,
                        // The Responses API's own error events end the stream.
                        Some("error" | "response.failed") => self.failed = true,
                        _ => {}
                    }
                }
                Err(_) => self.failed = true,
            }
        }
        write_event(out, ev.event.as_deref(), &ev.data);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && !self.failed {
            truncated(Dialect::OpenAi, out);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// An Anthropic Messages stream, passed through.
#[derive(Debug, Default)]
pub struct AnthropicPassthrough {
    usage: Usage,
    seen_usage: bool,
    done: bool,
    failed: bool,
}

/// The fields of an Anthropic stream event the gateway reads: `message.usage` in
/// `message_start`, `usage` in `message_delta`.
#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<ResponseUsage<'a>>,
}

impl StreamTranslator for AnthropicPassthrough {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        match ev.event.as_deref() {
            Some("message_start") | Some("message_delta") => {
                let found = serde_json::from_str::<AnthropicEvent<'_>>(&ev.data)
                    .ok()
                    .and_then(|e| e.usage.or(e.message.and_then(|m| m.usage)))
                    .and_then(|u| usage_from_json(u.get(), true));
                if let Some(u) = found {
                    // Each event reports totals so far; the largest seen is the answer's.
                    self.usage.absorb(u);
                    self.seen_usage = true;
                }
            }
            Some("message_stop") => self.done = true,
            Some("error") => self.failed = true,
            _ => {}
        }
        write_event(out, ev.event.as_deref(), &ev.data);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && !self.failed {
            truncated(Dialect::Anthropic, out);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.seen_usage.then_some(self.usage)
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// The error event that ends a stream the upstream broke off, in the client's format.
fn truncated(dialect: Dialect, out: &mut Vec<u8>) {
    out.extend_from_slice(&ApiError::new(Kind::UpstreamTruncated).sse_event(dialect));
}

// Keeps `anthropic_usage_object` and this module's typed read in step (tests below).
/// Whether an OpenAI-shaped stream event needs parsing: it may carry usage, an error or the
/// Responses API's end. A chat chunk from a client that asked for usage says `"usage":null`
/// in every chunk; parsing each of them cost a sixth of a relayed event's instructions. Only
/// a chunk whose every `"usage"` is `null`, with no `"error"` and no `"type"` (which chat
/// chunks have only in tool calls, and every Responses event has), is passed unparsed.
fn may_carry_usage_or_end(data: &str) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Searchers built once: building one per chunk (`str::contains`) cost more than the parse
    // it saved, and so did a `memchr` per quote.
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
    static TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\""));
    static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
    let bytes = data.as_bytes();
    if ERROR.find(bytes).is_some() || TYPE.find(bytes).is_some() {
        return true;
    }
    let trim = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    USAGE.find_iter(bytes).any(|at| {
        let after = &bytes[at + b"\"usage\"".len()..];
        let after = &after[trim(after)..];
        match after.strip_prefix(b":") {
            Some(value) => !value[trim(value)..].starts_with(b"null"),
            None => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::usage::anthropic_usage_object;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn anthropic_usage_is_the_largest_reported() {
        let mut s = AnthropicPassthrough::default();
        let mut out = Vec::new();
        s.on_event(
            &ev(
                Some("message_start"),
                r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":2,"output_tokens":1}}}"#,
            ),
            &mut out,
        );
        s.on_event(
            &ev(
                Some("message_delta"),
                r#"{"type":"message_delta","usage":{"output_tokens":9}}"#,
            ),
            &mut out,
        );
        let expected = anthropic_usage_object(&serde_json::json!({
            "input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 9
        }));
        assert_eq!(s.usage(), expected);
        assert!(!s.finished());
        s.finish(&mut out);
        assert!(String::from_utf8_lossy(&out).contains("event: error"));
    }

    #[test]
    fn openai_usage_chunk_is_hidden_when_not_asked_for() {
        let mut s = OpenAiPassthrough::new(true);
        let mut out = Vec::new();
        s.on_event(
            &ev(
                None,
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            ),
            &mut out,
        );
        assert!(out.is_empty());
        s.on_event(&ev(None, "[DONE]"), &mut out);
        assert_eq!(out, b"data: [DONE]\n\n");
        assert_eq!(s.usage().map(|u| u.completion_tokens), Some(4));
        assert!(s.finished());
    }

    #[test]
    fn only_chunks_that_may_carry_usage_or_an_end_are_parsed() {
        for skip in [
            r#"{"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null}"#,
            r#"{"choices":[{"delta":{"content":"\"usage\": 1"}}],"usage" : null}"#,
            r#"{"choices":[]}"#,
        ] {
            assert!(!may_carry_usage_or_end(skip), "{skip}");
        }
        for parse in [
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"usage":null,"x":{"usage":{"total_tokens":3}}}"#,
            r#"{"error":{"message":"boom"}}"#,
            r#"{"type":"response.completed","response":{"usage":null}}"#,
            r#"{"usage":"#,
        ] {
            assert!(may_carry_usage_or_end(parse), "{parse}");
        }
    }
}
