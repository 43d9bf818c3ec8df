//! Everything that knows a wire format: which translation serves a (client format, provider
//! kind) pair, the request, response and stream translators, the readers of passed-through
//! streams, and all usage extraction. Pure: no sockets, no clock but what is passed in, no
//! I/O; every mapping is testable against fixture files without a network. The gateway asks
//! for "the plan for this target" and feeds the answer's bytes through it.
//!
//! | File | Serves |
//! |---|---|
//! | [`plan`] | the client's endpoint and a target's kind → the upstream path, body and [`Translation`] |
//! | [`rewrite`] | the client's body read (`model`, `stream`, `stream_options`) and the model spliced in, without re-serialising |
//! | [`json_out`] | a translated request's JSON text: serde_json's, with a faster string escaper |
//! | [`scan`] | the validating JSON scanner under the probe: top-level members' spans, nothing built |
//! | [`chat_via_anthropic`] | an OpenAI chat client, Anthropic upstream: request, response, stream |
//! | [`messages_via_chat`] | an Anthropic Messages client, OpenAI-kind upstream: request, response, stream |
//! | [`responses_via_anthropic`] | an OpenAI Responses client, Anthropic upstream: request, response, stream |
//! | [`passthrough`] | streams relayed as they came: their usage, their end marker, their error events |
//! | [`stream`] | one stream's bytes → client frames ([`StreamReader`]); the [`StreamTranslator`] trait |
//! | [`usage`] | token counts from every usage shape either API sends |
//!
//! Client faults (a request that cannot be expressed upstream) are [`TranslateError`]s, which
//! the gateway renders as 400 naming `param`; an upstream body of the wrong shape is
//! [`BadUpstream`] (502). Neither ever quotes prompt text. State owned: only per-stream state,
//! in the stream readers.

pub mod chat_via_anthropic;
pub mod json_out;
pub mod messages_via_chat;
pub mod passthrough;
pub mod plan;
pub mod responses_via_anthropic;
pub mod rewrite;
pub mod scan;
pub mod stream;
pub mod usage;

pub use crate::cost::Usage;
pub use chat_via_anthropic::{
    AnthropicToOpenAiStream, anthropic_response_to_chat, chat_request_to_anthropic,
};
pub use messages_via_chat::{
    OpenAiToAnthropicStream, anthropic_request_to_chat, chat_response_to_anthropic,
};
pub use plan::{Endpoint, Plan, Translation};
pub use responses_via_anthropic::{
    AnthropicToResponsesStream, anthropic_response_to_responses, responses_request_to_anthropic,
    responses_request_to_chat,
};
pub use stream::{Step, StreamReader, StreamTranslator};
pub use usage::{
    MAX_TOKEN_COUNT, anthropic_usage, anthropic_usage_object, openai_usage, openai_usage_object,
    usage_from_json,
};

use serde_json::Value;
use std::fmt;

/// Error text of a translated stream the upstream ended before its end marker.
const TRUNCATED: &str = "upstream stream ended before the answer was complete";
/// Error text of a translated stream with an event that is not what its format promises.
const UNREADABLE: &str = "upstream sent an unreadable stream event";

/// `max_tokens` sent to Anthropic when an OpenAI client gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A request that cannot be translated: the client's fault, rendered as a 400 naming `param`.
/// `message` never contains prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    pub(crate) fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        TranslateError {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{} (param: {p})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TranslateError {}

/// An upstream answer lacking what its format promises: the upstream's fault (502).
/// The text names the missing part, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUpstream(pub &'static str);

impl fmt::Display for BadUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable upstream answer: {}", self.0)
    }
}

impl std::error::Error for BadUpstream {}

/// Longest upstream message id copied into a translated stream: it is repeated in every
/// chunk, so a huge one would multiply each small delta into a chunk of its size.
pub const MAX_UPSTREAM_ID_BYTES: usize = 256;

/// The upstream's id when it is short enough to repeat (else the translator keeps its own).
pub(crate) fn short_id(id: &str) -> Option<&str> {
    (id.len() <= MAX_UPSTREAM_ID_BYTES).then_some(id)
}

/// Text of an OpenAI `content` (string, or array of `text` parts) or an Anthropic
/// `content`/`system` (string or `text` blocks); other parts are skipped.
pub(crate) fn plain_text(content: &Value, sep: &str) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| matches!(p.get("type").and_then(Value::as_str), Some("text")))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            texts.join(sep)
        }
        _ => String::new(),
    }
}

/// The `content` blocks of an Anthropic Messages response.
pub(crate) fn anthropic_content(resp: &Value) -> Result<&Vec<Value>, BadUpstream> {
    resp.get("content")
        .and_then(Value::as_array)
        .ok_or(BadUpstream("Anthropic response has no content array"))
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}
