//! A validating JSON scanner that finds the values of chosen top-level members without
//! building anything: the body probe's engine (`rewrite::probe`).
//!
//! Why not serde_json: deserialising a probe struct from an 80 KB Claude Code turn spent five
//! instructions a byte, half of everything the gateway did for that request and forty times
//! the cost of copying the body. Strings are nearly all of a client body (prompts, tool
//! results, file contents, base64 images). The probe scans with [`Strings::Bounds`]: the
//! structure is checked whole and exactly (every bracket, comma, colon, number and literal,
//! so a second `model` cannot hide in a body), but a string is only searched for its closing
//! quote (`memchr`, vector instructions, restarted only at a quote), its contents left to the
//! upstream that reads them. [`Strings::Strict`] also checks escapes and control characters.
//!
//! Strict, it accepts exactly the documents `serde_json::from_slice` accepts when it
//! deserialises a struct of borrowed raw values (the previous probe), and Bounds differs from
//! Strict only on string contents; `fuzz/fuzz_targets/rewrite.rs` checks both on every input.
//! One deliberate difference: serde_json skips containers nested to any depth, this refuses
//! more than [`MAX_DEPTH`] (no client nests a request 1024 deep, and the open containers then
//! fit in a fixed 128-byte bitset). Neither mode checks UTF-8 inside strings it skips (nor
//! does serde_json); top-level keys and the values it returns are checked. Owns no state.

use std::ops::Range;

/// Containers nested at most this deep, the top-level object included.
pub const MAX_DEPTH: usize = 1024;

/// Why a body is not acceptable JSON, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub kind: ScanErrorKind,
    /// Byte offset where the scanner stopped.
    pub at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// The input ended inside a value.
    Eof,
    /// A byte that does not belong where it is.
    Syntax,
    /// A control character or an invalid escape inside a string ([`Strings::Strict`] only).
    BadString,
    /// Containers nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A wanted member appears twice (which value counts would be up to the reader).
    Duplicate,
    /// The top-level value is not an object.
    NotAnObject,
}

impl ScanError {
    fn new(kind: ScanErrorKind, at: usize) -> ScanError {
        ScanError { kind, at }
    }
}

/// How much of a skipped string's contents is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strings {
    /// Only where it ends: the next `"` not escaped (an even run of backslashes before it),
    /// found with `memchr`. Escapes and control characters inside are left to the reader of
    /// the body (the upstream refuses a malformed one with its own 400).
    Bounds,
    /// Every escape valid and no control character, as serde_json checks: the reference the
    /// fuzz target holds [`Strings::Bounds`] to, and what a caller that needs it can ask for.
    Strict,
}

/// The byte spans of the values of the top-level members named `wanted` (unescaped names
/// compared), `None` for a member that is absent. `body` must be one JSON object.
pub fn members<const N: usize>(
    body: &[u8],
    wanted: [&str; N],
    strings: Strings,
) -> Result<[Option<Range<usize>>; N], ScanError> {
    let mut spans: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    let mut i = ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err(ScanError::new(ScanErrorKind::NotAnObject, i));
    }
    i = ws(body, i + 1);
    if body.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, value_at) = member_key(body, i, strings)?;
            let end = skip_value(body, value_at, 1, strings)?;
            if let Some(slot) = wanted_slot(body, key, &wanted)? {
                if spans[slot].is_some() {
                    return Err(ScanError::new(ScanErrorKind::Duplicate, value_at));
                }
                spans[slot] = Some(value_at..end);
            }
            i = ws(body, end);
            match body.get(i) {
                Some(b',') => i = ws(body, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                Some(_) => return Err(ScanError::new(ScanErrorKind::Syntax, i)),
                None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
            }
        }
    }
    i = ws(body, i);
    if i != body.len() {
        return Err(ScanError::new(ScanErrorKind::Syntax, i));
    }
    Ok(spans)
}

/// Which of `wanted` the top-level key at `key` (its quotes included) names. Top-level keys
/// are checked as serde_json checks a struct's field names: valid UTF-8, escapes decoded.
fn wanted_slot(
    body: &[u8],
    key: Range<usize>,
    wanted: &[&str],
) -> Result<Option<usize>, ScanError> {
    let raw = &body[key.start + 1..key.end - 1];
    let invalid = || ScanError::new(ScanErrorKind::Syntax, key.start);
    let slot = if raw.contains(&b'\\') {
        let name: String = serde_json::from_slice(&body[key.clone()]).map_err(|_| invalid())?;
        wanted.iter().position(|w| *w == name)
    } else {
        let name = std::str::from_utf8(raw).map_err(|_| invalid())?;
        wanted.iter().position(|w| *w == name)
    };
    Ok(slot)
}

/// At `i`, an object member's `"key" :`; returns the key's span (quotes included) and where
/// its value starts.
fn member_key(b: &[u8], i: usize, strings: Strings) -> Result<(Range<usize>, usize), ScanError> {
    match b.get(i) {
        Some(b'"') => {}
        Some(_) => return Err(ScanError::new(ScanErrorKind::Syntax, i)),
        None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
    }
    let end = string_end(b, i + 1, strings)?;
    let colon = ws(b, end);
    match b.get(colon) {
        Some(b':') => Ok((i..end, ws(b, colon + 1))),
        Some(_) => Err(ScanError::new(ScanErrorKind::Syntax, colon)),
        None => Err(ScanError::new(ScanErrorKind::Eof, colon)),
    }
}

/// Skips the value starting at `i`, inside `depth` containers already; returns where it ends.
/// Iterative: the open containers are bits of a fixed bitset (1 = object), so no input can
/// grow the call stack or the heap.
fn skip_value(b: &[u8], mut i: usize, depth: usize, strings: Strings) -> Result<usize, ScanError> {
    let mut open = [0u64; MAX_DEPTH / 64];
    let mut n: usize = 0;
    let is_object = |open: &[u64; MAX_DEPTH / 64], level: usize| {
        open.get(level / 64)
            .is_some_and(|w| w >> (level % 64) & 1 == 1)
    };
    loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(&c @ (b'{' | b'[')) => {
                if depth + n + 1 > MAX_DEPTH {
                    return Err(ScanError::new(ScanErrorKind::TooDeep, i));
                }
                let close = if c == b'{' { b'}' } else { b']' };
                i = ws(b, i + 1);
                if b.get(i) == Some(&close) {
                    i += 1;
                } else {
                    if let Some(word) = open.get_mut(n / 64) {
                        let bit = 1u64 << (n % 64);
                        *word = if c == b'{' { *word | bit } else { *word & !bit };
                    }
                    n += 1;
                    if c == b'{' {
                        i = member_key(b, i, strings)?.1;
                    }
                    continue;
                }
            }
            Some(b'"') => i = string_end(b, i + 1, strings)?,
            Some(b'-' | b'0'..=b'9') => i = number_end(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(_) => return Err(ScanError::new(ScanErrorKind::Syntax, i)),
            None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
        }
        // A value ended at `i`: close containers until one continues.
        loop {
            if n == 0 {
                return Ok(i);
            }
            let in_object = is_object(&open, n - 1);
            i = ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    if in_object {
                        i = member_key(b, i, strings)?.1;
                    }
                    break;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                Some(_) => return Err(ScanError::new(ScanErrorKind::Syntax, i)),
                None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
            }
            i += 1;
            n -= 1;
        }
    }
}

/// `i` is just past a string's opening quote; returns the index just past its closing quote.
fn string_end(b: &[u8], i: usize, strings: Strings) -> Result<usize, ScanError> {
    match strings {
        Strings::Bounds => string_bounds(b, i),
        Strings::Strict => string_strict(b, i),
    }
}

/// [`string_end`] by [`Strings::Bounds`]: a quote preceded by an even run of backslashes
/// (none included) ends the string; any other is escaped. A vector search per quote, not per
/// byte: client strings hold an escaped newline every line but few quotes.
fn string_bounds(b: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut i = start;
    loop {
        let rest = b.get(i..).unwrap_or_default();
        let Some(k) = memchr::memchr(b'"', rest) else {
            return Err(ScanError::new(ScanErrorKind::Eof, b.len()));
        };
        let quote = i + k;
        let backslashes = b[start..quote]
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Ok(quote + 1);
        }
        i = quote + 1;
    }
}

/// [`string_end`] by [`Strings::Strict`].
fn string_strict(b: &[u8], mut i: usize) -> Result<usize, ScanError> {
    loop {
        let rest = b.get(i..).unwrap_or_default();
        i += first_special(rest).unwrap_or(rest.len());
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => {}
            Some(_) => return Err(ScanError::new(ScanErrorKind::BadString, i)),
            None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
        }
        // A backslash: one valid escape.
        i += 1;
        match b.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
            Some(b'u') => {
                // Four hex digits; a non-hex byte among them is a bad string even when the
                // input ends before the fourth.
                let hex = b.get(i + 1..).unwrap_or_default();
                let hex = &hex[..hex.len().min(4)];
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(ScanError::new(ScanErrorKind::BadString, i));
                }
                if hex.len() < 4 {
                    return Err(ScanError::new(ScanErrorKind::Eof, b.len()));
                }
                i += 5;
            }
            Some(_) => return Err(ScanError::new(ScanErrorKind::BadString, i)),
            None => return Err(ScanError::new(ScanErrorKind::Eof, i)),
        }
    }
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte of `s` that is special inside a JSON string: a control character
/// (below 0x20), `"` or `\`. Eight bytes a step (SWAR), no call set-up: strings in client
/// bodies are either short or broken every line by an escaped newline, so a vector search
/// (`memchr`) restarted per run cost more than it saved.
pub(crate) fn first_special(s: &[u8]) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Per byte, the high bit is set where the byte is < 0x20, == '"' or == '\\' (each a
        // "has a zero/less-than byte" test; every special byte has its high bit clear, hence
        // `& !w`). A match can set false bits only above itself (a borrow moves up), so the
        // lowest set bit is always the first match.
        let quote = w ^ (LOW * u64::from(b'"'));
        let backslash = w ^ (LOW * u64::from(b'\\'));
        let hits = (w.wrapping_sub(LOW * 0x20)
            | quote.wrapping_sub(LOW) & !quote
            | backslash.wrapping_sub(LOW) & !backslash)
            & !w
            & HIGH;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| at + i)
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` from `i`; returns its end.
fn number_end(b: &[u8], mut i: usize) -> Result<usize, ScanError> {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let need_digit = |i: usize| match b.get(i) {
        Some(c) if c.is_ascii_digit() => Ok(()),
        Some(_) => Err(ScanError::new(ScanErrorKind::Syntax, i)),
        None => Err(ScanError::new(ScanErrorKind::Eof, i)),
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    need_digit(i)?;
    if b[i] == b'0' {
        i += 1;
        if digit(i) {
            return Err(ScanError::new(ScanErrorKind::Syntax, i));
        }
    } else {
        while digit(i) {
            i += 1;
        }
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        need_digit(i)?;
        while digit(i) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        need_digit(i)?;
        while digit(i) {
            i += 1;
        }
    }
    Ok(i)
}

/// `word` (true, false, null) at `i`; returns its end.
fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, ScanError> {
    for (k, &want) in word.iter().enumerate() {
        match b.get(i + k) {
            Some(&c) if c == want => {}
            Some(_) => return Err(ScanError::new(ScanErrorKind::Syntax, i + k)),
            None => return Err(ScanError::new(ScanErrorKind::Eof, i + k)),
        }
    }
    Ok(i + word.len())
}

/// Past the whitespace at `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both modes' verdict, which must agree but for string contents.
    fn spans(body: &str) -> Result<[Option<Range<usize>>; 2], ScanErrorKind> {
        let strict = members(body.as_bytes(), ["model", "stream"], Strings::Strict);
        let bounds = members(body.as_bytes(), ["model", "stream"], Strings::Bounds);
        match &strict {
            Ok(spans) => assert_eq!(bounds.as_ref().ok(), Some(spans), "{body:?}"),
            Err(e) if e.kind != ScanErrorKind::BadString => assert!(bounds.is_err(), "{body:?}"),
            Err(_) => {}
        }
        strict.map_err(|e| e.kind)
    }

    fn text(body: &str, span: &Option<Range<usize>>) -> Option<String> {
        span.clone().map(|r| body[r].to_owned())
    }

    #[test]
    fn finds_top_level_members_only() {
        let body = r#" { "messages": [{"model": "inner", "x": {"stream": 1}}], "model" : "gpt-4o",
            "tools": [], "stream":true , "n": -0.5e+3 } "#;
        let [model, stream] = spans(body).unwrap();
        assert_eq!(text(body, &model).as_deref(), Some(r#""gpt-4o""#));
        assert_eq!(text(body, &stream).as_deref(), Some("true"));
        let [model, stream] = spans(r#"{"a":{}}"#).unwrap();
        assert!(model.is_none() && stream.is_none());
        assert!(spans("{}").is_ok());
    }

    #[test]
    fn escaped_keys_are_decoded_and_duplicates_refused() {
        let body = r#"{"mod\u0065l": {"a": "b\"}"}}"#;
        assert_eq!(
            text(body, &spans(body).unwrap()[0]).as_deref(),
            Some(r#"{"a": "b\"}"}"#)
        );
        assert_eq!(
            spans(r#"{"model":"a","model":"b"}"#),
            Err(ScanErrorKind::Duplicate)
        );
        assert_eq!(
            spans(r#"{"model":"a","mod\u0065l":"b"}"#),
            Err(ScanErrorKind::Duplicate)
        );
        assert!(spans(r#"{"x":1,"x":2}"#).is_ok(), "other keys may repeat");
    }

    #[test]
    fn refuses_what_json_refuses() {
        for bad in [
            "",
            "[]",
            "\"s\"",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1,}",
            "{\"a\":[1,]}",
            "{\"a\":01}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\x01\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12G4\"}",
            "{\"a\":\"open}",
            "{\"a\":1} x",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":[}",
            "{\"a\":{]}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":\"\\",
        ] {
            assert!(spans(bad).is_err(), "accepted {bad:?}");
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(bad);
            assert!(
                serde.is_err() || !bad.trim_start().starts_with('{'),
                "{bad:?}"
            );
        }
        assert_eq!(spans(" [1] ").unwrap_err(), ScanErrorKind::NotAnObject);
    }

    #[test]
    fn bounds_mode_finds_string_ends_by_backslash_parity() {
        let members = |body: &str| {
            members(body.as_bytes(), ["model"], Strings::Bounds)
                .map(|[m]| m.map(|r| body[r].to_owned()))
        };
        let body = r#"{"a":"x\\","model":"m\"q\\\"\\"}"#;
        assert_eq!(members(body).unwrap().as_deref(), Some(r#""m\"q\\\"\\""#));
        // Contents are not checked in this mode; structure is.
        assert!(members("{\"a\":\"\x01\\q\",\"model\":1}").is_ok());
        assert!(
            members(r#"{"a":"\"}"#).is_err(),
            "the quote is escaped: unterminated"
        );
    }

    #[test]
    fn depth_is_limited() {
        let nested = |depth: usize| {
            format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert!(spans(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(spans(&nested(MAX_DEPTH + 1)), Err(ScanErrorKind::TooDeep));
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(spans(&objects).is_ok());
        assert!(spans(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))).is_err());
        let mixed = r#"{"a":[{"b":[1,{}]},[]],"model":"m"}"#;
        assert!(spans(mixed).unwrap()[0].is_some());
    }
}
