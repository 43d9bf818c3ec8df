//! Reading and rewriting a client's JSON body without re-serialising it.
//!
//! Clients send large bodies (long contexts, base64 images, 80 KB Claude Code turns). The
//! gateway needs three fields (`model`, `stream`, `stream_options`) and must replace `model`
//! with the upstream's name; it finds the exact byte span of the `model` value while skipping
//! everything else, and splices the new value in. Owns no state.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{self, ScanErrorKind, Strings};
use crate::error::ApiError;

/// What the gateway reads from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub model: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// Whether the client sent `stream_options` at all (`null` included).
    pub has_stream_options: bool,
    /// Byte span of the `model` value (quotes included) in the body.
    model_span: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct RawProbe<'a> {
    /// `Some("null")` for an explicit null: no model, but a span the splice must replace.
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    /// `Some("null")` for an explicit null (a plain `Option` would say `None`).
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Reads the fields the gateway routes on. A body that is not one JSON object is a 400. The
/// JSON structure is checked whole (so no second `model` hides further on); the contents of
/// strings it skips are left to whoever reads them ([`Strings::Bounds`]).
pub fn probe(body: &[u8]) -> Result<Probe, ApiError> {
    probe_with(body, Strings::Bounds)
}

/// [`probe`], checking skipped strings as `strings` says.
#[doc(hidden)]
pub fn probe_with(body: &[u8], strings: Strings) -> Result<Probe, ApiError> {
    let [model, stream, stream_options] =
        scan::members(body, ["model", "stream", "stream_options"], strings).map_err(|e| match e
            .kind
        {
            ScanErrorKind::NotAnObject => {
                ApiError::bad_request("request body must be a JSON object", None)
            }
            kind => ApiError::bad_request(
                format!("malformed JSON body: {}", where_(body, kind, e.at)),
                None,
            ),
        })?;
    // The values read are text (the scanner checks UTF-8 only of what it returns, here).
    let text = |span: &Option<Range<usize>>| -> Result<Option<&str>, ApiError> {
        span.clone()
            .map(|r| std::str::from_utf8(&body[r]))
            .transpose()
            .map_err(|_| ApiError::bad_request("malformed JSON body: invalid UTF-8", None))
    };
    let (model_text, stream_text, options_text) =
        (text(&model)?, text(&stream)?, text(&stream_options)?);
    let model_name = match model_text {
        // `"model": null` is no model (a 400 for the gateway), but its bytes are where a
        // splice puts one: adding a second `model` key would leave the null in force.
        Some("null") | None => None,
        Some(value) => Some(
            serde_json::from_str::<String>(value)
                .map_err(|_| ApiError::bad_request("`model` must be a string", Some("model")))?,
        ),
    };
    let include_usage = match options_text.filter(|v| *v != "null") {
        None => false,
        Some(text) => stream_options_include_usage(text)?,
    };
    Ok(Probe {
        model: model_name,
        stream: stream_text == Some("true"),
        include_usage,
        // `null` too: the value must be replaced, not a second `stream_options` added.
        has_stream_options: options_text.is_some(),
        model_span: model,
    })
}

/// `stream_options.include_usage` of a present, non-null `stream_options` value.
fn stream_options_include_usage(text: &str) -> Result<bool, ApiError> {
    // Anything but an object is the client's error, never ours to index into.
    // (A derived struct also accepts a JSON array, hence the first-byte check.)
    Some(text)
        .filter(|text| text.starts_with('{'))
        .and_then(|text| serde_json::from_str::<StreamOptions>(text).ok())
        .map(|o| o.include_usage.unwrap_or(false))
        .ok_or_else(|| {
            ApiError::bad_request(
                "`stream_options` must be an object like {\"include_usage\": true}",
                Some("stream_options"),
            )
        })
}

/// "syntax error at line 3 column 7" for a scan error at byte `at` (1-based, in bytes).
fn where_(body: &[u8], kind: ScanErrorKind, at: usize) -> String {
    let what = match kind {
        ScanErrorKind::Eof => "unexpected end of input",
        ScanErrorKind::TooDeep => "nested too deep",
        ScanErrorKind::Duplicate => "duplicate field",
        ScanErrorKind::BadString => "invalid string",
        ScanErrorKind::Syntax | ScanErrorKind::NotAnObject => "syntax error",
    };
    let before = &body[..at.min(body.len())];
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    let column = 1 + before.len()
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |n| n + 1);
    format!("{what} at line {line} column {column}")
}

/// The probe as serde_json reads it: the reference [`probe`] must agree with (the fuzz
/// target `rewrite` compares them on every input). Not used on the request path.
#[doc(hidden)]
pub fn probe_with_serde(body: &[u8]) -> Result<Probe, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::bad_request(
            "request body must be a JSON object",
            None,
        ));
    }
    let raw: RawProbe<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("malformed JSON body: {}", describe(&e)), None)
    })?;
    let (model, model_span) = match raw.model {
        Some(value) if value.get() == "null" => (None, span_of(body, value.get())),
        Some(value) => {
            let model: String = serde_json::from_str(value.get())
                .map_err(|_| ApiError::bad_request("`model` must be a string", Some("model")))?;
            (Some(model), span_of(body, value.get()))
        }
        None => (None, None),
    };
    let stream_options = raw.stream_options.filter(|v| v.get() != "null");
    let include_usage = match stream_options {
        None => false,
        Some(v) => stream_options_include_usage(v.get())?,
    };
    Ok(Probe {
        model,
        stream: raw.stream.is_some_and(|v| v.get() == "true"),
        include_usage,
        has_stream_options: raw.stream_options.is_some(),
        model_span,
    })
}

/// Where in `body` the slice `inner` (borrowed from it) lies.
fn span_of(body: &[u8], inner: &str) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= body.len()).then_some(start..end)
}

/// A serde_json error without the input echoed back (it may hold prompt text).
fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// The body with `model` set to `upstream_model` and, when `add_include_usage`, with
/// `stream_options.include_usage = true` (so the upstream reports a stream's tokens). The
/// body itself, uncopied, when it already says exactly that (a model named as upstream names
/// it: a 2 MB body then costs no copy).
pub fn rewrite<'a>(
    body: &'a [u8],
    probe: &Probe,
    upstream_model: &str,
    add_include_usage: bool,
) -> Result<Cow<'a, [u8]>, ApiError> {
    if add_include_usage && probe.has_stream_options && !probe.include_usage {
        // Rare: the client sent stream_options without include_usage. Edit it as a value.
        // `probe` saw one JSON object whose `stream_options` is an object; a body it accepted
        // can still be refused here (serde_json's depth limit applies to a `Value` only), and
        // that is the client's 400, not our 500.
        let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("malformed JSON body: {}", describe(&e)), None)
        })?;
        let Some(object) = value.as_object_mut() else {
            return Err(ApiError::bad_request(
                "request body must be a JSON object",
                None,
            ));
        };
        object.insert(
            "model".to_owned(),
            serde_json::Value::String(upstream_model.to_owned()),
        );
        let options = object
            .entry("stream_options")
            .or_insert(serde_json::Value::Null);
        if options.is_null() {
            *options = serde_json::Value::Object(serde_json::Map::new());
        }
        let Some(options) = options.as_object_mut() else {
            return Err(ApiError::bad_request(
                "`stream_options` must be an object",
                Some("stream_options"),
            ));
        };
        options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
        return serde_json::to_vec(&value)
            .map(Cow::Owned)
            .map_err(|_| ApiError::internal());
    }
    let model = serde_json::to_string(upstream_model).map_err(|_| ApiError::internal())?;
    let inject = add_include_usage && !probe.has_stream_options;
    if let Some(span) = &probe.model_span
        && !inject
        && body.get(span.clone()) == Some(model.as_bytes())
    {
        return Ok(Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len() + model.len() + 48);
    let open = body
        .iter()
        .position(|&b| b == b'{')
        .ok_or_else(ApiError::internal)?;
    out.extend_from_slice(&body[..=open]);
    if inject {
        out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
    }
    match &probe.model_span {
        Some(span) => {
            out.extend_from_slice(&body[open + 1..span.start]);
            out.extend_from_slice(model.as_bytes());
            out.extend_from_slice(&body[span.end..]);
        }
        None => {
            out.extend_from_slice(br#""model":"#);
            out.extend_from_slice(model.as_bytes());
            let rest = &body[open + 1..];
            let empty = rest
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'}');
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn rewrites_model_in_place() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}], "model" : "fast" ,"stream":true}"#;
        let p = probe(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("fast"));
        assert!(p.stream);
        let out = rewrite(body, &p, "gpt-4o-mini", false).unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains(r#""model" : "gpt-4o-mini" ,"#), "{text}");
        assert_eq!(parse(&out)["messages"][0]["content"], "hi \"model\"");
    }

    #[test]
    fn injects_include_usage() {
        let body = br#"{"model":"m","stream":true,"messages":[]}"#;
        let p = probe(body).unwrap();
        let out = parse(&rewrite(body, &p, "u", true).unwrap());
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["model"], "u");

        let body = br#"{"model":"m","stream":true,"stream_options":{}}"#;
        let p = probe(body).unwrap();
        assert!(p.has_stream_options && !p.include_usage);
        let out = parse(&rewrite(body, &p, "u", true).unwrap());
        assert_eq!(out["stream_options"]["include_usage"], true);

        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let p = probe(body).unwrap();
        assert!(p.include_usage);
        let out = rewrite(body, &p, "u", true).unwrap();
        assert_eq!(parse(&out)["stream_options"]["include_usage"], true);
    }

    #[test]
    fn escapes_and_unicode_survive() {
        let body = "{\"model\":\"caf\\u00e9\",\"x\":\"ü\"}".as_bytes();
        let p = probe(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("café"));
        let out = parse(&rewrite(body, &p, "a\"b", false).unwrap());
        assert_eq!(out, json!({"model": "a\"b", "x": "ü"}));
    }

    #[test]
    fn refusals() {
        assert_eq!(probe(b"[1]").unwrap_err().status(), 400);
        assert_eq!(probe(b"{\"model\":").unwrap_err().status(), 400);
        assert_eq!(probe(b"{\"model\":3}").unwrap_err().param(), Some("model"));
        assert_eq!(
            probe(b"{\"model\":\"a\",\"model\":\"b\"}")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(probe(b"{}").unwrap().model, None);
        let msg = probe(b"{\"secret prompt\" 1}")
            .unwrap_err()
            .message()
            .to_owned();
        assert!(!msg.contains("secret"), "{msg}");
    }

    /// Issue 13, item 4: `stream_options` that is not an object panicked (500, no usage line).
    #[test]
    fn stream_options_not_an_object_is_a_400() {
        for options in [r#""x""#, "5", "[]", "true", r#"[{"include_usage":true}]"#] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#);
            let e = probe(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{options}");
            assert_eq!(e.param(), Some("stream_options"));
        }
        let body = br#"{"model":"m","stream":true,"stream_options":null}"#;
        let p = probe(body).unwrap();
        assert!(p.has_stream_options && !p.include_usage);
        let out = parse(&rewrite(body, &p, "u", true).unwrap());
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    /// A body deeper than serde_json's `Value` limit passes the probe; editing it is a 400.
    #[test]
    fn deep_body_with_stream_options_is_a_400() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body = format!(r#"{{"model":"m","stream":true,"stream_options":{{}},"x":{deep}}}"#);
        match probe(body.as_bytes()) {
            Err(e) => assert_eq!(e.status(), 400),
            Ok(p) => assert_eq!(
                rewrite(body.as_bytes(), &p, "u", true)
                    .unwrap_err()
                    .status(),
                400
            ),
        }
    }

    #[test]
    fn missing_model_is_added() {
        for body in [&b"{}"[..], b"{ }", b"{\"a\":1}"] {
            let p = probe(body).unwrap();
            let out = parse(&rewrite(body, &p, "m", false).unwrap());
            assert_eq!(out["model"], "m");
        }
    }

    proptest::proptest! {
        #[test]
        fn probe_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = probe(&bytes);
        }

        #[test]
        fn rewrite_keeps_everything_else(model in "\\PC{0,20}", other in "\\PC{0,40}", upstream in "\\PC{0,20}") {
            let body = serde_json::to_vec(&json!({"other": other, "model": model, "n": [1, 2]})).unwrap();
            let p = probe(&body).unwrap();
            let out = parse(&rewrite(&body, &p, &upstream, false).unwrap());
            proptest::prop_assert_eq!(out, json!({"other": other, "model": upstream, "n": [1, 2]}));
        }
    }

    /// A body that already names the upstream's model goes out as it came, uncopied.
    #[test]
    fn an_unchanged_body_is_not_copied() {
        let body = br#"{"model": "gpt-4o-mini", "messages": []}"#;
        let p = probe(body).unwrap();
        assert!(matches!(
            rewrite(body, &p, "gpt-4o-mini", false).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            rewrite(body, &p, "other", false).unwrap(),
            Cow::Owned(_)
        ));
        assert!(
            matches!(
                rewrite(body, &p, "gpt-4o-mini", true).unwrap(),
                Cow::Owned(_)
            ),
            "include_usage must be added"
        );
    }
}
