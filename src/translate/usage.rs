//! Token usage as the usage log records it, read from every shape an upstream reports it in:
//! an OpenAI body or stream chunk (`usage`, or `response.usage` in the Responses API), an
//! Anthropic body or `message_start` / `message_delta` event. All usage extraction lives here;
//! translators and stream readers call it.
//!
//! Counters are believed only up to [`MAX_TOKEN_COUNT`], so sums never overflow, and anything
//! that is not a non-negative integer counts as 0. Owns no state.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Token counts of one exchange, as recorded in the usage log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

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

/// A token count as providers send it; anything but a non-negative integer counts as 0 (as
/// `Value::as_u64` reads it), capped at [`MAX_TOKEN_COUNT`].
#[derive(Default)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        Ok(Count(count(Value::deserialize(d)?.as_u64())))
    }
}

/// The counters of a `usage` object either format uses; any other field is skipped unread.
#[derive(Deserialize, Default)]
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

/// Usage of a whole non-streamed upstream body, read without building it as a `Value`: its
/// `usage` object, or the Responses API's `response.usage`. `Err` when the body is not JSON
/// (the caller passes the body on unchanged only once it is known to be JSON).
pub fn body_usage(body: &[u8], anthropic: bool) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct UsageOnly<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        response: Option<Nested<'a>>,
    }
    #[derive(Deserialize)]
    struct Nested<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    let probe: UsageOnly<'_> = serde_json::from_slice(body)?;
    Ok(probe
        .usage
        .or(probe.response.and_then(|r| r.usage))
        .and_then(|u| usage_from_json(u.get(), anthropic)))
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
}
