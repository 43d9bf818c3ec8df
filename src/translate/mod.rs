//! Translation between the OpenAI and Anthropic wire formats, as pure functions.
//!
//! Why: a client speaking one format may be routed to an upstream speaking the other. The
//! gateway owns the sockets; this module only maps JSON values (and SSE events) to JSON
//! values, so every mapping is testable against fixture files without a network.
//! State owned: none, except the two stream state machines in [`stream`] (one per response).
//!
//! * [`openai_to_anthropic`]: OpenAI-format client → Anthropic upstream (request out,
//!   response back).
//! * [`anthropic_to_openai`]: Anthropic-format client (`/v1/messages`) → OpenAI-kind upstream.
//! * [`stream`]: the streaming counterparts, one output batch per upstream event.
//! * [`responses`] / [`responses_stream`]: OpenAI Responses API client → Anthropic upstream
//!   (its own mapping table is in [`responses`]).
//!
//! Client faults (a request that cannot be expressed upstream) are [`TranslateError`]s, which
//! the gateway renders as 400 naming `param`; an upstream body of the wrong shape is
//! [`BadUpstream`] (502). Neither ever quotes prompt text.
//!
//! # OpenAI chat request → Anthropic Messages
//!
//! | OpenAI field | Anthropic | Note |
//! |---|---|---|
//! | `messages[].role = system / developer` | top-level `system` | joined with a blank line, wherever they appear |
//! | `user` / `assistant` messages | `messages` | consecutive same-role turns merged into one |
//! | content part `text` | `text` block | empty text dropped (Anthropic refuses it) |
//! | content part `image_url` `data:` URL | `image`, `source.type = base64` | non-base64 data URL → 400 |
//! | content part `image_url` http(s) URL | `image`, `source.type = url` | |
//! | content part `file` with `file_data` | `document`, base64 source | `file_id` → 400 |
//! | content parts `input_audio`, others | — | **refused** (400) |
//! | assistant `tool_calls` | `tool_use` blocks | `arguments` parsed; not a JSON object → 400 |
//! | `tool` messages | user `tool_result` blocks | consecutive ones share one user turn |
//! | role `function`, `functions`, `function_call` (legacy) | — | **refused** (400): use `tools` |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens` | default [`DEFAULT_MAX_TOKENS`] |
//! | `temperature` | `temperature` | clamped to Anthropic's 0..=1 |
//! | `top_p`, `top_k` | same | |
//! | `stop` (string or array) | `stop_sequences` | |
//! | `tools` (type `function`) | `tools` `{name, description, input_schema}` | other tool types → 400 |
//! | `tool_choice` auto / none / required / named | `{type: auto / none / any / tool}` | |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use` | |
//! | `stream` | `stream` | `stream_options.include_usage` read by the gateway ([`wants_usage`]) |
//! | `user` | `metadata.user_id` | |
//! | `n` > 1 | — | **refused** (400) |
//! | `frequency_penalty`, `presence_penalty`, `logit_bias`, `logprobs`, `top_logprobs`, `seed`, `response_format`, `service_tier`, `store`, `metadata`, `modalities`, `audio`, `prediction`, `reasoning_effort`, `verbosity`, `web_search_options`, `stream_options`, anything else | — | dropped |
//!
//! # Anthropic response → OpenAI `chat.completion`
//!
//! `text` blocks joined into `message.content`; `tool_use` → `tool_calls` (arguments =
//! serialized `input`); `thinking` blocks dropped. `stop_reason`: `end_turn`, `stop_sequence`,
//! `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`;
//! `tool_use` → `tool_calls`; `refusal` → `content_filter`. Usage: `prompt_tokens` =
//! `input_tokens` + cache creation + cache read tokens, `completion_tokens` = `output_tokens`.
//!
//! # Anthropic Messages request → OpenAI chat request
//!
//! | Anthropic field | OpenAI | Note |
//! |---|---|---|
//! | `system` (string or text blocks) | first `system` message | `cache_control` dropped |
//! | `messages[].role = system` (Claude Code) | `system` message in place | |
//! | `text` / `image` (base64 or url) / `document` (base64 PDF or text) blocks | content parts | |
//! | `tool_use` blocks | assistant `tool_calls` | `input` serialized to `arguments` |
//! | `tool_result` blocks | `tool` messages before the rest of the turn | text joined; images moved to a following user message |
//! | `thinking`, `redacted_thinking` blocks | — | dropped |
//! | other block types | — | **refused** (400) |
//! | `tools` (custom) | function tools | server tools (`web_search_…`, `bash_…`, …) → 400 |
//! | `tool_choice` auto / any / tool / none | `auto` / `required` / named / `none` | `disable_parallel_tool_use` → `parallel_tool_calls: false` |
//! | `max_tokens`, `temperature`, `top_p` | same | |
//! | `stop_sequences` | `stop` | |
//! | `stream: true` | `stream`, `stream_options: {include_usage: true}` | |
//! | `top_k`, `thinking`, `context_management`, `output_config`, `metadata`, `service_tier`, `container`, `mcp_servers`, anything else | — | dropped |
//!
//! # OpenAI `chat.completion` → Anthropic response
//!
//! `content` → one `text` block, `tool_calls` → `tool_use` blocks (arguments that are not a
//! JSON object become `{}`); `finish_reason` stop → `end_turn`, length → `max_tokens`,
//! tool_calls / function_call → `tool_use`, content_filter → `refusal`; usage mapped back
//! (`prompt_tokens_details.cached_tokens` → `cache_read_input_tokens`).

pub mod anthropic_to_openai;
pub mod openai_to_anthropic;
pub mod responses;
pub mod responses_stream;
pub mod stream;

pub use anthropic_to_openai::{anthropic_request_to_chat, chat_response_to_anthropic};
pub use openai_to_anthropic::{anthropic_response_to_chat, chat_request_to_anthropic};
pub use responses::{
    anthropic_response_to_responses, responses_request_to_anthropic, responses_request_to_chat,
};
pub use responses_stream::AnthropicToResponsesStream;
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};

use serde_json::Value;
use std::fmt;

/// What the gateway's stream relay needs of a streaming translator: feed it upstream events,
/// tell it the upstream ended, and ask how it went. Implemented by the three state machines.
pub trait StreamTranslator: Send {
    /// Translates one upstream event, appending complete client frames to `out`.
    fn on_event(&mut self, ev: &crate::sse::SseEvent, out: &mut Vec<u8>);
    /// The upstream ended (EOF); writes an error frame if the stream did not end properly.
    fn finish(&mut self, out: &mut Vec<u8>);
    fn usage(&self) -> Usage;
    /// The stream ended properly.
    fn finished(&self) -> bool;
    /// The stream was ended with an error frame.
    fn failed(&self) -> bool;
}

macro_rules! stream_translator {
    ($($ty:ty),*) => {$(
        impl StreamTranslator for $ty {
            fn on_event(&mut self, ev: &crate::sse::SseEvent, out: &mut Vec<u8>) {
                <$ty>::on_event(self, ev, out)
            }
            fn finish(&mut self, out: &mut Vec<u8>) {
                <$ty>::finish(self, out)
            }
            fn usage(&self) -> Usage {
                <$ty>::usage(self)
            }
            fn finished(&self) -> bool {
                <$ty>::finished(self)
            }
            fn failed(&self) -> bool {
                <$ty>::failed(self)
            }
        }
    )*};
}

stream_translator!(
    AnthropicToOpenAiStream,
    OpenAiToAnthropicStream,
    AnthropicToResponsesStream
);

/// `max_tokens` sent to Anthropic when an OpenAI client gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Token counts of one exchange, as recorded in the usage log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

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

/// Usage of an OpenAI body: a `chat.completion`, a stream chunk carrying `usage`, an
/// embeddings or completions response. `None` when it has no (non-null) `usage` object.
pub fn openai_usage(body: &Value) -> Option<Usage> {
    openai_usage_object(body.get("usage")?)
}

/// [`openai_usage`] of the `usage` object itself.
pub fn openai_usage_object(usage: &Value) -> Option<Usage> {
    let u = usage.as_object()?;
    let n = |k: &str| count(u.get(k).and_then(Value::as_u64));
    Some(Usage {
        prompt_tokens: n("prompt_tokens").max(n("input_tokens")),
        completion_tokens: n("completion_tokens").max(n("output_tokens")),
    })
}

/// Usage of an Anthropic body: a Messages response, a `message_start` event (`message.usage`)
/// or a `message_delta` event (`usage`). Prompt tokens include cache writes and reads.
pub fn anthropic_usage(body: &Value) -> Option<Usage> {
    anthropic_usage_object(
        body.get("usage")
            .or_else(|| body.get("message")?.get("usage"))?,
    )
}

/// [`anthropic_usage`] of the `usage` object itself.
pub fn anthropic_usage_object(usage: &Value) -> Option<Usage> {
    let u = usage.as_object()?;
    let n = |k: &str| count(u.get(k).and_then(Value::as_u64));
    Some(Usage {
        prompt_tokens: n("input_tokens")
            + n("cache_creation_input_tokens")
            + n("cache_read_input_tokens"),
        completion_tokens: n("output_tokens"),
    })
}

/// Largest token count believed from an upstream: sums of a few such counts can never
/// overflow (a hostile `u64::MAX` wrapped to a small count, or panicked a debug build).
pub const MAX_TOKEN_COUNT: u64 = u32::MAX as u64;

/// A counter as read: absent or not a non-negative integer is 0; capped at
/// [`MAX_TOKEN_COUNT`].
fn count(value: Option<u64>) -> u64 {
    value.unwrap_or(0).min(MAX_TOKEN_COUNT)
}

/// Longest upstream message id copied into a translated stream: it is repeated in every
/// chunk, so a huge one would multiply each small delta into a chunk of its size.
pub const MAX_UPSTREAM_ID_BYTES: usize = 256;

/// The upstream's id when it is short enough to repeat (else the translator keeps its own).
pub(crate) fn short_id(id: &str) -> Option<&str> {
    (id.len() <= MAX_UPSTREAM_ID_BYTES).then_some(id)
}

/// A token count as providers send it; anything but a non-negative integer counts as 0 (as
/// `Value::as_u64` reads it), capped at [`MAX_TOKEN_COUNT`].
#[derive(Default)]
struct Count(u64);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        Ok(Count(count(Value::deserialize(d)?.as_u64())))
    }
}

/// The counters of a `usage` object either format uses; any other field is skipped unread.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct UsageCounts {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
}

/// [`openai_usage_object`] (or, with `anthropic`, [`anthropic_usage_object`]) of a `usage`
/// object's JSON text, read without building it as a `Value` (a map and a string per
/// field, on every non-streamed answer). `None` unless it is an object.
pub fn usage_from_json(raw: &str, anthropic: bool) -> Option<Usage> {
    if !raw.trim_start().starts_with('{') {
        return None;
    }
    let u: UsageCounts = serde_json::from_str(raw).ok()?;
    Some(if anthropic {
        Usage {
            prompt_tokens: u.input_tokens.0
                + u.cache_creation_input_tokens.0
                + u.cache_read_input_tokens.0,
            completion_tokens: u.output_tokens.0,
        }
    } else {
        Usage {
            prompt_tokens: u.prompt_tokens.0.max(u.input_tokens.0),
            completion_tokens: u.completion_tokens.0.max(u.output_tokens.0),
        }
    })
}

/// Whether an OpenAI chat request asked for the final usage chunk
/// (`stream_options.include_usage: true`).
pub fn wants_usage(req: &Value) -> bool {
    req.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Asks an OpenAI-format streaming request for the final usage chunk (so usage can be
/// recorded) and returns whether the client had asked for it itself; when it had not, the
/// gateway hides that chunk ([`is_usage_only_chunk`]). Non-streaming requests are untouched.
pub fn request_stream_usage(req: &mut Value) -> bool {
    let asked = wants_usage(req);
    let streaming = req.get("stream").and_then(Value::as_bool) == Some(true);
    if streaming && !asked {
        if let Some(obj) = req.as_object_mut() {
            let opts = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !opts.is_object() {
                *opts = Value::Object(serde_json::Map::new());
            }
            opts["include_usage"] = Value::Bool(true);
        }
    }
    asked
}

/// True for the extra OpenAI stream chunk that only carries usage (`choices: []` and a
/// `usage` object): the one to hide from a client that did not ask for it.
pub fn is_usage_only_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_from_json_reads_as_the_value_helpers_do() {
        let cases = [
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                   "prompt_tokens_details": {"cached_tokens": 1}}),
            json!({"input_tokens": 5, "output_tokens": 6, "cache_creation_input_tokens": 2,
                   "cache_read_input_tokens": 1, "server_tool_use": {"web_search_requests": 0}}),
            json!({"input_tokens": 5, "prompt_tokens": 9, "output_tokens": 2}),
            json!({"prompt_tokens": -1, "completion_tokens": 1.5, "input_tokens": null,
                   "output_tokens": "7"}),
            json!({}),
            json!([1, 2]),
            json!(null),
            json!(12),
            json!("usage"),
        ];
        for case in cases {
            let raw = case.to_string();
            assert_eq!(
                usage_from_json(&raw, false),
                openai_usage_object(&case),
                "{raw}"
            );
            assert_eq!(
                usage_from_json(&raw, true),
                anthropic_usage_object(&case),
                "{raw}"
            );
        }
    }

    #[test]
    fn usage_helpers_read_all_shapes() {
        let o = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        assert_eq!(
            openai_usage(&o),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert_eq!(openai_usage(&json!({"usage": null})), None);
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 5,
            "cache_read_input_tokens": 2, "output_tokens": 1}}});
        assert_eq!(
            anthropic_usage(&start),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 1
            })
        );
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 9}});
        assert_eq!(
            anthropic_usage(&delta).map(|u| u.completion_tokens),
            Some(9)
        );
    }

    #[test]
    fn stream_usage_is_requested_and_hidden_when_not_asked() {
        let mut r = json!({"stream": true, "stream_options": null});
        assert!(!request_stream_usage(&mut r));
        assert_eq!(r["stream_options"]["include_usage"], true);
        let mut r = json!({"stream": true, "stream_options": {"include_usage": true}});
        assert!(request_stream_usage(&mut r));
        let mut r = json!({"stream": false});
        assert!(!request_stream_usage(&mut r));
        assert!(r.get("stream_options").is_none());
        assert!(is_usage_only_chunk(
            &json!({"choices": [], "usage": {"prompt_tokens": 1}})
        ));
        assert!(!is_usage_only_chunk(
            &json!({"choices": [{"index": 0}], "usage": null})
        ));
    }

    #[test]
    fn wants_usage_reads_stream_options() {
        assert!(wants_usage(
            &json!({"stream_options": {"include_usage": true}})
        ));
        assert!(!wants_usage(&json!({"stream": true})));
    }
}
