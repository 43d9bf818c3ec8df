//! What to send one target, and how its answer comes back: the upstream path and the body in
//! the target's wire format, chosen by (client endpoint, provider kind), and the
//! [`Translation`] that turns the answer, whole or streamed, into the client's format.
//!
//! [`plan`] is a pure function of (endpoint, provider kind, client body): routing and fallback
//! call it once per target tried, since targets of one model may speak different protocols.
//! Owns no state.

use std::borrow::Cow;

use serde_json::Value;

use super::json_out;
use super::rewrite::{self, Probe};
use super::stream::{StreamReader, StreamTranslator};
use super::usage::{anthropic_usage, body_usage, openai_usage};
use super::{
    AnthropicToOpenAiStream, AnthropicToResponsesStream, OpenAiToAnthropicStream, TranslateError,
    passthrough,
};
use crate::config::model::ProviderKind;
use crate::cost::Usage;
use crate::error::{ApiError, Dialect, Kind};

/// The client-facing endpoints that reach an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::CountTokens,
    ];

    pub fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/v1/chat/completions" => Endpoint::Chat,
            "/v1/completions" => Endpoint::Completions,
            "/v1/embeddings" => Endpoint::Embeddings,
            "/v1/responses" => Endpoint::Responses,
            "/v1/messages" => Endpoint::Messages,
            "/v1/messages/count_tokens" => Endpoint::CountTokens,
            _ => return None,
        })
    }

    /// The path as the usage log names it.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }
}

/// How the upstream's answer maps back to the client's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Same format both sides; usage read from an OpenAI-shaped body or stream.
    OpenAi,
    /// Same format both sides; usage read from an Anthropic-shaped body or stream.
    Anthropic,
    /// An OpenAI chat client served by an Anthropic upstream.
    ChatViaAnthropic,
    /// An Anthropic Messages client served by an OpenAI-compatible upstream.
    MessagesViaChat,
    /// An OpenAI Responses client served by an Anthropic upstream.
    ResponsesViaAnthropic,
}

#[derive(Debug)]
pub struct Plan<'a> {
    pub path: &'static str,
    /// The client's body itself when nothing in it changes.
    pub body: Cow<'a, [u8]>,
    pub translation: Translation,
    /// For streamed OpenAI passthrough: drop the usage-only chunk the gateway asked for.
    pub hide_usage_chunk: bool,
}

pub fn plan<'a>(
    endpoint: Endpoint,
    kind: ProviderKind,
    body: &'a [u8],
    probe: &Probe,
    upstream_model: &str,
) -> Result<Plan<'a>, ApiError> {
    let openai = matches!(kind, ProviderKind::OpenAi | ProviderKind::Mock);
    let passthrough = |path, translation, add_usage: bool| {
        Ok(Plan {
            path,
            body: rewrite::rewrite(body, probe, upstream_model, add_usage)?,
            translation,
            hide_usage_chunk: add_usage && !probe.include_usage,
        })
    };
    // The client's body parsed, translated by `f` (which owns the parsed value, so it can
    // drop it before a second step), and sent with the upstream's model name.
    let translated = |f: fn(Value) -> Result<Value, TranslateError>,
                      path: &'static str,
                      translation: Translation| {
        let mut out = f(parse(body)?).map_err(bad_translation)?;
        out["model"] = Value::String(upstream_model.to_owned());
        Ok(Plan {
            path,
            body: Cow::Owned(json_out::to_vec_sized(&out, body.len() + 1024)),
            translation,
            hide_usage_chunk: false,
        })
    };
    match (endpoint, openai) {
        (Endpoint::Chat, true) => {
            passthrough("/chat/completions", Translation::OpenAi, probe.stream)
        }
        (Endpoint::Completions, true) => {
            passthrough("/completions", Translation::OpenAi, probe.stream)
        }
        (Endpoint::Embeddings, true) => passthrough("/embeddings", Translation::OpenAi, false),
        (Endpoint::Responses, true) => passthrough("/responses", Translation::OpenAi, false),
        (Endpoint::Messages, false) => passthrough("/v1/messages", Translation::Anthropic, false),
        (Endpoint::CountTokens, false) => {
            passthrough("/v1/messages/count_tokens", Translation::Anthropic, false)
        }
        (Endpoint::Chat, false) => translated(
            |chat| super::chat_request_to_anthropic(&chat),
            "/v1/messages",
            Translation::ChatViaAnthropic,
        ),
        (Endpoint::Messages, true) => translated(
            |messages| super::anthropic_request_to_chat(&messages),
            "/chat/completions",
            Translation::MessagesViaChat,
        ),
        (Endpoint::CountTokens, true) => Err(ApiError::new(Kind::CountTokensUnsupported)),
        (Endpoint::Completions | Endpoint::Embeddings, false) => Err(ApiError::bad_request(
            format!("{} is not available for anthropic targets", endpoint.path()),
            Some("model"),
        )),
        (Endpoint::Responses, false) => translated(
            |responses| {
                // Two steps; the client's value is gone before the second, which halves the
                // peak (16.8× the body's size in working memory with both held, 8.9× now).
                let chat = super::responses_request_to_chat(&responses)?;
                drop(responses);
                super::chat_request_to_anthropic(&chat)
            },
            "/v1/messages",
            Translation::ResponsesViaAnthropic,
        ),
    }
}

impl Plan<'_> {
    /// Whether the client gets another format than the upstream's.
    pub fn changes_format(&self) -> bool {
        !matches!(
            self.translation,
            Translation::OpenAi | Translation::Anthropic
        )
    }

    /// The reader of this plan's streamed answer. `model` is the name the client asked for;
    /// `include_usage` whether an OpenAI client asked for the usage chunk itself.
    pub fn stream_reader(&self, model: &str, include_usage: bool) -> StreamReader {
        let translator: Box<dyn StreamTranslator> = match self.translation {
            Translation::OpenAi => {
                Box::new(passthrough::OpenAiPassthrough::new(self.hide_usage_chunk))
            }
            Translation::Anthropic => Box::new(passthrough::AnthropicPassthrough::default()),
            Translation::ChatViaAnthropic => {
                Box::new(AnthropicToOpenAiStream::new(model, include_usage))
            }
            Translation::MessagesViaChat => Box::new(OpenAiToAnthropicStream::new(model)),
            Translation::ResponsesViaAnthropic => Box::new(AnthropicToResponsesStream::new(model)),
        };
        StreamReader::new(translator)
    }

    /// The client's body and the usage, from a successful non-streamed upstream body. A body
    /// in the client's own format is only checked to be JSON and passed on as it came.
    /// `created` stamps a translated answer (Unix seconds).
    pub fn response_body(
        &self,
        bytes: Vec<u8>,
        model: &str,
        created: u64,
    ) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
        let unreadable = || {
            ApiError::upstream(
                Kind::UpstreamUnreadable,
                "the upstream answer is not valid JSON",
            )
        };
        let parse = |bytes: &[u8]| -> Result<Value, ApiError> {
            serde_json::from_slice(bytes).map_err(|_| unreadable())
        };
        let bad =
            |e: super::BadUpstream| ApiError::upstream(Kind::UpstreamUnreadable, e.to_string());
        match self.translation {
            Translation::OpenAi | Translation::Anthropic => {
                let anthropic = self.translation == Translation::Anthropic;
                let usage = body_usage(&bytes, anthropic).map_err(|_| unreadable())?;
                Ok((bytes, usage))
            }
            Translation::ChatViaAnthropic => {
                let upstream = parse(&bytes)?;
                let usage = anthropic_usage(&upstream);
                let out =
                    super::anthropic_response_to_chat(&upstream, model, created).map_err(bad)?;
                Ok((out.to_string().into_bytes(), usage))
            }
            Translation::ResponsesViaAnthropic => {
                let upstream = parse(&bytes)?;
                let usage = anthropic_usage(&upstream);
                let out = super::anthropic_response_to_responses(&upstream, model, created)
                    .map_err(bad)?;
                Ok((out.to_string().into_bytes(), usage))
            }
            Translation::MessagesViaChat => {
                let upstream = parse(&bytes)?;
                let usage = openai_usage(&upstream);
                let out = super::chat_response_to_anthropic(&upstream, model).map_err(bad)?;
                Ok((out.to_string().into_bytes(), usage))
            }
        }
    }
}

/// Working memory a request to a target of `kind` needs beyond the client's body, as a
/// multiple of the body's size: a spliced copy (1×), or for a translation the parsed value,
/// the translated value and the new body (measured at 8.8–8.9× on 16 MiB sessions of small
/// content blocks, the worst shape: `scripts/bench` notes). Counted against
/// `max_buffered_bytes`.
pub fn working_memory_factor(endpoint: Endpoint, kind: ProviderKind) -> u64 {
    let openai = matches!(kind, ProviderKind::OpenAi | ProviderKind::Mock);
    match (endpoint, openai) {
        (Endpoint::Chat | Endpoint::Responses, false) | (Endpoint::Messages, true) => 10,
        _ => 1,
    }
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("malformed JSON body", None))
}

fn bad_translation(e: TranslateError) -> ApiError {
    ApiError::bad_request(e.message, e.param.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory estimate knows exactly which (endpoint, kind) pairs `plan` translates.
    #[test]
    fn working_memory_factor_follows_the_plan() {
        let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"input":"hi"}"#;
        let probe = rewrite::probe(body).unwrap();
        for endpoint in Endpoint::ALL {
            for kind in [
                ProviderKind::OpenAi,
                ProviderKind::Anthropic,
                ProviderKind::Mock,
            ] {
                let translated = plan(endpoint, kind, body, &probe, "u").is_ok_and(|p| {
                    matches!(
                        p.translation,
                        Translation::ChatViaAnthropic
                            | Translation::MessagesViaChat
                            | Translation::ResponsesViaAnthropic
                    )
                });
                let factor = working_memory_factor(endpoint, kind);
                assert_eq!(factor > 1, translated, "{endpoint:?} via {kind:?}");
            }
        }
    }
}
