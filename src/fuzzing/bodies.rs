//! Fuzz targets of client bodies: the probe, the model splice, the plan and the request
//! translators.

use serde_json::Value;

use crate::config;
use crate::translate;
use crate::translate::plan::{self, Endpoint};
use crate::translate::scan::{self, ScanErrorKind, Strings};
use crate::translate::{json_out, rewrite};

// ---------------------------------------------------------------------------------------------
// Client bodies: the probe, the model splice and the request translators

/// Upstream model names spliced in: plain, needing escapes, empty.
const MODELS: [&str; 3] = ["gpt-4o-mini", "a\"b\\c\u{1F600}\n\u{7f}", ""];

/// `rewrite`: a client body through `probe`, then the model splice (with and without the
/// injected `stream_options.include_usage`). Properties: the probe (our JSON scanner) reads
/// exactly what serde_json reads — the same verdict and the same fields — except that it
/// refuses nesting past `scan::MAX_DEPTH`; when the body is a JSON object the spliced body is
/// JSON that equals the original with the new model (and, when asked, `include_usage: true`),
/// and it grows by no more than the new name and the injection.
pub fn rewrite(data: &[u8]) {
    let kind = scan::members(data, ["model", "stream", "stream_options"], Strings::Strict)
        .err()
        .map(|e| e.kind);
    let strict = rewrite::probe_with(data, Strings::Strict);
    match (&strict, rewrite::probe_with_serde(data)) {
        (Ok(a), Ok(b)) => assert_eq!(*a, b, "the scanner and serde_json read different fields"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(_)) => panic!("the strict scanner accepted a body serde_json refuses"),
        (Err(_), Ok(_)) => assert_eq!(
            kind,
            Some(ScanErrorKind::TooDeep),
            "the strict scanner refused a body serde_json accepts"
        ),
    }
    let ours = rewrite::probe(data);
    match (&ours, &strict) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the probe and the strict scan read different fields"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(_)) => assert_eq!(
            kind,
            Some(ScanErrorKind::BadString),
            "the probe accepted a body that is malformed outside its strings"
        ),
        (Err(_), Ok(_)) => panic!("the probe refused a body the strict scan accepts"),
    }
    let Ok(probe) = ours else {
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

/// Runs one request translator on `data` (when it is JSON) and checks it gives an object,
/// written by `json_out` exactly as serde_json writes it.
fn request_translator(data: &[u8], f: fn(&Value) -> Result<Value, translate::TranslateError>) {
    let Ok(req) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert_eq!(
        Ok(json_out::to_vec(&req)),
        serde_json::to_vec(&req).map_err(|_| ()),
        "json_out wrote the request differently"
    );
    if let Ok(out) = f(&req) {
        assert!(
            out.is_object(),
            "a translated request that is not an object"
        );
        assert_eq!(
            Ok(json_out::to_vec(&out)),
            serde_json::to_vec(&out).map_err(|_| ()),
            "json_out wrote the translation differently"
        );
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
    for endpoint in Endpoint::ALL {
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
