//! Property tests: whatever JSON a client or upstream sends, the translators return a value
//! or an error and never panic (they index into untrusted `serde_json::Value`s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

use noviqi::sse::SseEvent;
use noviqi::translate::{
    AnthropicToOpenAiStream, AnthropicToResponsesStream, OpenAiToAnthropicStream,
    anthropic_request_to_chat, anthropic_response_to_chat, anthropic_response_to_responses,
    chat_request_to_anthropic, chat_response_to_anthropic, responses_request_to_anthropic,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// JSON built from the field names and values the translators look at.
fn arb_json() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("type"),
        Just("role"),
        Just("content"),
        Just("messages"),
        Just("text"),
        Just("tool_calls"),
        Just("function"),
        Just("arguments"),
        Just("name"),
        Just("id"),
        Just("index"),
        Just("delta"),
        Just("choices"),
        Just("usage"),
        Just("input"),
        Just("image_url"),
        Just("url"),
        Just("source"),
        Just("tools"),
        Just("tool_choice"),
        Just("stop"),
        Just("n"),
        Just("max_tokens"),
        Just("finish_reason"),
        Just("stop_reason"),
        Just("content_block"),
        Just("partial_json"),
        Just("message"),
        Just("error"),
        Just("tool_call_id"),
        Just("tool_use_id"),
        Just("system"),
        Just("call_id"),
        Just("output"),
        Just("stream_options"),
        Just("file"),
        Just("file_data"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("tool"),
            Just("system"),
            Just("text"),
            Just("image_url"),
            Just("tool_use"),
            Just("tool_result"),
            Just("function"),
            Just("data:image/png;base64,AA"),
            Just("https://x"),
            Just("{}"),
            Just("{bad"),
            Just("message_start"),
            Just("content_block_start"),
            Just("content_block_delta"),
            Just("input_json_delta"),
            Just("text_delta"),
            Just("message_delta"),
            Just("message_stop"),
            Just("function_call"),
            Just("function_call_output"),
            Just("base64"),
            Just("auto"),
            Just("required"),
            Just("any"),
            Just("stop"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_and_response_translators_never_panic(v in arb_json()) {
        let _ = chat_request_to_anthropic(&v);
        let _ = anthropic_request_to_chat(&v);
        let _ = responses_request_to_anthropic(&v);
        let _ = anthropic_response_to_chat(&v, "m", 0);
        let _ = chat_response_to_anthropic(&v, "m");
        let _ = anthropic_response_to_responses(&v, "m", 0);
    }

    #[test]
    fn stream_machines_never_panic(events in proptest::collection::vec(arb_json(), 0..12)) {
        let mut a = AnthropicToOpenAiStream::new("m", true);
        let mut o = OpenAiToAnthropicStream::new("m");
        let mut r = AnthropicToResponsesStream::new("m");
        let mut out = Vec::new();
        for v in &events {
            let ev = SseEvent { event: None, data: v.to_string() };
            a.on_event(&ev, &mut out);
            o.on_event(&ev, &mut out);
            r.on_event(&ev, &mut out);
        }
        a.finish(&mut out);
        o.finish(&mut out);
        r.finish(&mut out);
        // Whatever happened, each machine either ended properly or said it did not.
        let text = String::from_utf8(out).unwrap();
        prop_assert!(a.finished() || text.contains("\"error\""));
    }
}
