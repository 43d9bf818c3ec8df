//! Streaming answers: upstream SSE events relayed to the client as they arrive, passed through
//! or translated, one write (and flush) per upstream read, never buffered.
//!
//! Owns, for one stream: the SSE parser, the per-format relay state (usage seen so far, whether
//! the stream ended properly), and the request's usage draft. Rules it keeps:
//! - the usage line is written before the stream's final event, so a completed response always
//!   has its line;
//! - a stream that breaks off (upstream EOF early, an unreadable event, an idle timeout) gets a
//!   final error event in the client's format, never an invented `[DONE]`/`message_stop`;
//! - a client that goes away drops the upstream body at once (closing that connection).

use std::borrow::Cow;
use std::io::{self, Read};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Gateway;
use super::plan::{Plan, Translation};
use super::proxy::Draft;
use crate::error::{ApiError, Dialect, Kind};
use crate::http::{Response, StreamWriter};
use crate::sse::{SseEvent, SseParser, write_event};
use crate::translate::{self, Usage};
use crate::translate::{
    AnthropicToOpenAiStream, AnthropicToResponsesStream, OpenAiToAnthropicStream, StreamTranslator,
};
use crate::upstream::UpstreamResponse;

/// Longest SSE line accepted from an upstream (a single event of a big tool call fits).
const MAX_LINE: usize = 4 * 1024 * 1024;
/// Largest single SSE event accepted from an upstream.
const MAX_EVENT: usize = 8 * 1024 * 1024;
/// Most read from an upstream stream after its last event, to reuse its connection.
const DRAIN_MAX: usize = 64 * 1024;
/// One upstream read (SSE events are a few hundred bytes; this is per open stream, and a
/// bigger burst is simply read in more pieces from the connection's own buffer).
const READ_BUF: usize = 1024;

/// Per-format state of one relayed stream.
pub enum Relay {
    /// OpenAI chat/completions/responses, passed through.
    OpenAi {
        hide_usage_chunk: bool,
        usage: Option<Usage>,
        done: bool,
        failed: bool,
    },
    /// Anthropic Messages, passed through.
    Anthropic {
        usage: Usage,
        seen_usage: bool,
        done: bool,
        failed: bool,
    },
    /// One of the format translators (chat ⇄ messages, responses → messages).
    Translated(Box<dyn StreamTranslator>),
}

impl Relay {
    pub fn new(plan: &Plan, model: &str, include_usage: bool) -> Relay {
        match plan.translation {
            Translation::OpenAi => Relay::OpenAi {
                hide_usage_chunk: plan.hide_usage_chunk,
                usage: None,
                done: false,
                failed: false,
            },
            Translation::Anthropic => Relay::Anthropic {
                usage: Usage::default(),
                seen_usage: false,
                done: false,
                failed: false,
            },
            Translation::ChatViaAnthropic => {
                Relay::Translated(Box::new(AnthropicToOpenAiStream::new(model, include_usage)))
            }
            Translation::MessagesViaChat => {
                Relay::Translated(Box::new(OpenAiToAnthropicStream::new(model)))
            }
            Translation::ResponsesViaAnthropic => {
                Relay::Translated(Box::new(AnthropicToResponsesStream::new(model)))
            }
        }
    }

    /// Handles one upstream event, appending what the client should get to `out`.
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        match self {
            Relay::OpenAi {
                hide_usage_chunk,
                usage,
                done,
                failed,
            } => {
                if *done || *failed {
                    return;
                }
                if ev.data == "[DONE]" {
                    *done = true;
                } else if ev.data.contains("\"usage\"") || ev.data.contains("\"error\"") {
                    match serde_json::from_str::<OpenAiProbe>(&ev.data) {
                        Ok(probe) => {
                            if probe.error.is_some() {
                                *failed = true;
                            }
                            let found = probe
                                .usage
                                .or_else(|| probe.response.and_then(|r| r.usage))
                                .and_then(|u| translate::usage_from_json(u.get(), false));
                            if let Some(u) = found {
                                *usage = Some(u);
                                // `choices` is `[]` in OpenAI's usage chunk; some compatible
                                // servers send `null` or leave it out.
                                let usage_only = probe.choices.is_none_or(|c| c.is_empty());
                                if *hide_usage_chunk && usage_only {
                                    return;
                                }
                            }
                            match probe.kind.as_deref() {
                                Some("response.completed" | "response.incomplete") => *done = true,
                                // The Responses API's own error events end the stream.
                                Some("error" | "response.failed") => *failed = true,
                                _ => {}
                            }
                        }
                        Err(_) => *failed = true,
                    }
                }
                write_event(out, ev.event.as_deref(), &ev.data);
            }
            Relay::Anthropic {
                usage,
                seen_usage,
                done,
                failed,
            } => {
                if *done || *failed {
                    return;
                }
                match ev.event.as_deref() {
                    Some("message_start") | Some("message_delta") => {
                        if let Some(u) = serde_json::from_str::<Value>(&ev.data)
                            .ok()
                            .and_then(|v| translate::anthropic_usage(&v))
                        {
                            usage.prompt_tokens = usage.prompt_tokens.max(u.prompt_tokens);
                            usage.completion_tokens =
                                usage.completion_tokens.max(u.completion_tokens);
                            *seen_usage = true;
                        }
                    }
                    Some("message_stop") => *done = true,
                    Some("error") => *failed = true,
                    _ => {}
                }
                write_event(out, ev.event.as_deref(), &ev.data);
            }
            Relay::Translated(s) => s.on_event(ev, out),
        }
    }

    /// Whether the stream ended properly.
    fn finished(&self) -> bool {
        match self {
            Relay::OpenAi { done, .. } | Relay::Anthropic { done, .. } => *done,
            Relay::Translated(s) => s.finished(),
        }
    }

    /// Whether the upstream reported an error inside the stream (relayed to the client).
    fn failed(&self) -> bool {
        match self {
            Relay::OpenAi { failed, .. } | Relay::Anthropic { failed, .. } => *failed,
            Relay::Translated(s) => s.failed(),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Relay::OpenAi { usage, .. } => *usage,
            Relay::Anthropic {
                usage, seen_usage, ..
            } => seen_usage.then_some(*usage),
            Relay::Translated(s) => Some(s.usage()),
        }
    }

    /// The upstream ended (EOF) without a proper end: tell the client.
    fn truncated(&mut self, dialect: Dialect, out: &mut Vec<u8>) {
        match self {
            Relay::Translated(s) => s.finish(out),
            _ => out.extend_from_slice(&ApiError::new(Kind::UpstreamTruncated).sse_event(dialect)),
        }
    }
}

#[derive(Deserialize)]
struct OpenAiProbe<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<ResponseProbe<'a>>,
}

#[derive(Deserialize)]
struct ResponseProbe<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// The streamed response: relays `upstream` to the client through `relay`.
pub(super) fn stream(
    gateway: Arc<Gateway>,
    upstream: UpstreamResponse,
    relay: Relay,
    mut draft: Draft,
    dialect: Dialect,
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
) -> Response {
    draft.status = 200;
    let mut open = OpenStream {
        gateway,
        relay,
        draft,
    };
    let mut response = Response::stream(200, move |writer: &mut StreamWriter<'_>| {
        let OpenStream {
            gateway,
            relay,
            draft,
        } = &mut open;
        let _active = gateway.metrics.stream_started();
        pump(upstream.body, relay, draft, dialect, writer, gateway)
    });
    response.headers = headers;
    response
}

/// A stream's state from the moment its response is built. The HTTP layer may drop the
/// stream without running it (the client went away before the head could be written), or
/// it may end early; either way the request is recorded exactly once, when this drops.
struct OpenStream {
    gateway: Arc<Gateway>,
    relay: Relay,
    draft: Draft,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if !self.draft.recorded {
            self.draft.error = self.draft.error.or(Some("client_closed"));
            self.draft.usage = self.relay.usage();
            self.gateway.finish(&mut self.draft);
        }
    }
}

/// Moves events until the stream ends; `Err` only when the client is gone.
fn pump(
    mut body: Box<dyn Read + Send>,
    relay: &mut Relay,
    draft: &mut Draft,
    dialect: Dialect,
    writer: &mut StreamWriter<'_>,
    gateway: &Gateway,
) -> io::Result<()> {
    let mut parser = SseParser::with_limits(MAX_LINE, MAX_EVENT);
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Vec::new();
    let mut out = Vec::new();
    loop {
        let failure = match body.read(&mut buf) {
            Ok(0) => {
                if let Some(ev) = parser.finish() {
                    relay.on_event(&ev, &mut out);
                }
                if relay.finished() || relay.failed() {
                    None
                } else {
                    relay.truncated(dialect, &mut out);
                    Some("upstream_truncated")
                }
            }
            Ok(n) => match parser.push(&buf[..n], &mut events) {
                Ok(()) => {
                    for ev in events.drain(..) {
                        relay.on_event(&ev, &mut out);
                    }
                    if !relay.finished() && !relay.failed() {
                        send(writer, &mut out, draft, false)?;
                        continue;
                    }
                    None
                }
                Err(_) => {
                    relay.truncated(dialect, &mut out);
                    Some("upstream_unreadable")
                }
            },
            Err(e) => {
                let error = if e.kind() == io::ErrorKind::TimedOut {
                    ApiError::upstream(Kind::UpstreamTimeout, "the upstream stopped sending")
                } else {
                    ApiError::upstream(Kind::UpstreamUnreadable, "the upstream stream broke off")
                };
                out.extend_from_slice(&error.sse_event(dialect));
                Some(error.code())
            }
        };
        // The stream ends here: record usage before its last bytes leave.
        draft.error = failure.or(relay.failed().then_some("upstream_error"));
        draft.usage = relay.usage();
        gateway.finish(draft);
        send(writer, &mut out, draft, true)?;
        if failure.is_none() {
            // The client has its whole answer. Read the upstream body to its end (the
            // chunked terminator after `[DONE]` or `message_stop`, normally already
            // buffered) so the connection goes back to the pool instead of being closed:
            // otherwise every stream costs a new upstream connection, a TLS handshake for
            // https providers. Bounded: an upstream that keeps sending is cut off.
            drain(&mut *body, &mut buf);
        }
        return Ok(());
    }
}

/// Reads and drops at most [`DRAIN_MAX`] bytes, through `buf` (`io::copy` would put 8 KiB
/// more on every stream thread's stack).
fn drain(body: &mut dyn Read, buf: &mut [u8]) {
    let mut left = DRAIN_MAX;
    while left > 0 {
        let want = buf.len().min(left);
        match body.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Writes `out` to the client (and with `last`, the end of the body), stamping the time to
/// first byte on the first bytes sent.
fn send(
    writer: &mut StreamWriter<'_>,
    out: &mut Vec<u8>,
    draft: &mut Draft,
    last: bool,
) -> io::Result<()> {
    if out.is_empty() && !last {
        return Ok(());
    }
    if draft.ttfb.is_none() && !out.is_empty() {
        draft.ttfb = Some(draft.started.elapsed());
    }
    let result = if last {
        writer.finish(out)
    } else {
        writer.send(out)
    };
    out.clear();
    if result.is_err() && !draft.recorded {
        draft.error = Some("client_closed");
    }
    result
}
