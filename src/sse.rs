//! Incremental Server-Sent Events parser and writer.
//!
//! Every streamed answer the gateway relays passes through here, so the parser accepts bytes
//! cut at arbitrary read boundaries (a line, or a UTF-8 character, may straddle two reads),
//! follows the WHATWG "event stream" rules (`\r\n`, `\n` and bare `\r` line ends, one optional
//! space after the colon, multi-line `data:` joined with `\n`, a leading BOM ignored) and keeps
//! memory bounded: a line longer than `max_line` or an event larger than `max_event` is an
//! error, never growth.
//!
//! State owned: the bytes of the current unfinished line (at most `max_line`), the fields of
//! the event being assembled (at most `max_event`), and the last `id:` seen.
//!
//! Comment lines (`:` first, e.g. `: ping` keep-alives from OpenRouter) are **skipped**: they
//! carry nothing a client or a translator needs; the gateway writes its own keep-alives.
//! Events with no `data:` line are not dispatched (as the standard says); an `event:` field
//! with an empty value means the default type and is reported as `None`.

use std::borrow::Cow;
use std::fmt;

/// One dispatched event: its `event:` name (if any) and its `data:` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Why a stream was rejected. After an error the parser stays failed: the stream cannot be
/// resynchronised safely, so every later `push` returns the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// A single line exceeded the configured `max_line` bytes.
    LineTooLong { limit: usize },
    /// One event's data (plus name) exceeded the configured `max_event` bytes.
    EventTooLarge { limit: usize },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::LineTooLong { limit } => {
                write!(f, "event-stream line longer than {limit} bytes")
            }
            SseError::EventTooLarge { limit } => {
                write!(f, "event-stream event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// How many maximal lines one event may hold when only `max_line` is given.
pub const DEFAULT_EVENT_LINES: usize = 4;

/// Incremental parser; feed it with [`SseParser::push`] as bytes arrive.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    max_event: usize,
    /// Bytes of the current line not yet terminated (never more than `max_line`).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    /// No line completed yet: a leading UTF-8 BOM is still to be stripped.
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    failed: Option<SseError>,
}

impl SseParser {
    /// A parser refusing lines over `max_line` bytes and events over
    /// `max_line * DEFAULT_EVENT_LINES` bytes.
    pub fn new(max_line: usize) -> Self {
        Self::with_limits(max_line, max_line.saturating_mul(DEFAULT_EVENT_LINES))
    }

    /// A parser with explicit line and event bounds (bytes).
    pub fn with_limits(max_line: usize, max_event: usize) -> Self {
        SseParser {
            max_line,
            max_event,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            last_id: None,
            failed: None,
        }
    }

    /// Feeds `bytes`; appends every event completed by them to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (head, tail) = (&bytes[..pos], &bytes[pos..]);
            // Consume the terminator: `\r\n` as one, or `\r` whose `\n` may come next push.
            let skip = match tail {
                [b'\r', b'\n', ..] => 2,
                [b'\r'] => {
                    self.after_cr = true;
                    1
                }
                _ => 1,
            };
            let result = if self.line.is_empty() {
                self.check_line_len(head.len())
                    .and_then(|()| self.process_line(head, out))
            } else {
                self.append_partial(head).and_then(|()| {
                    let line = std::mem::take(&mut self.line);
                    let r = self.process_line(&line, out);
                    self.line = line;
                    self.line.clear();
                    r
                })
            };
            if let Err(e) = result {
                return Err(self.fail(e));
            }
            bytes = &tail[skip..];
        }
        if let Err(e) = self.append_partial(bytes) {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// End of input: a last line without terminator is processed, and an event still being
    /// assembled is returned. (The standard discards such an event; callers that must not
    /// trust a truncated stream can ignore it, the translators treat it like any other.)
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed.is_some() {
            return None;
        }
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if self.process_line(&line, &mut out).is_err() {
                return None;
            }
        }
        self.dispatch(&mut out);
        out.pop()
    }

    /// The value of the last `id:` field seen, if any.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Bytes held for an unfinished line; never more than the line bound.
    pub fn buffered_len(&self) -> usize {
        self.line.len()
    }

    /// Bytes held for the event being assembled; never more than the event bound.
    pub fn pending_event_len(&self) -> usize {
        self.data.len() + self.event.as_ref().map_or(0, String::len)
    }

    fn fail(&mut self, e: SseError) -> SseError {
        self.failed = Some(e);
        self.line = Vec::new();
        self.data = String::new();
        self.event = None;
        e
    }

    fn check_line_len(&self, len: usize) -> Result<(), SseError> {
        if len > self.max_line {
            Err(SseError::LineTooLong {
                limit: self.max_line,
            })
        } else {
            Ok(())
        }
    }

    fn append_partial(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.check_line_len(self.line.len() + bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.at_start {
            self.at_start = false;
            if let Some(rest) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = rest;
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                // Lossy decoding may grow invalid bytes threefold: bound the decoded text.
                let value = text(value);
                let extra = value.len() + usize::from(self.has_data);
                if self.pending_event_len() + extra > self.max_event {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => {
                let value = text(value);
                if self.data.len() + value.len() > self.max_event {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event,
                    });
                }
                self.event = (!value.is_empty()).then(|| value.into_owned());
            }
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {} // `retry` and unknown fields: ignored, as the standard says
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.has_data {
            self.has_data = false;
            out.push(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}

/// A field's value as text: borrowed when it is UTF-8 (std's check runs a word at a time),
/// else decoded lossily (which goes byte by byte).
fn text(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value),
    }
}

/// Appends one SSE frame: `event: NAME\n` (if any), one `data:` line per line of `data`
/// (split at `\r\n`, `\n` or `\r`, so data can never end the frame early), then a blank line.
/// Line breaks in `event` are removed so a relayed name cannot inject fields.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend(name.bytes().filter(|&b| b != b'\n' && b != b'\r'));
        out.push(b'\n');
    }
    let mut rest = data.as_bytes();
    loop {
        let end = memchr::memchr2(b'\n', b'\r', rest);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.push(b'\n');
        match end {
            None => break,
            Some(i) => {
                let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
    out.push(b'\n');
}

/// Appends a `data: ...` frame with no event name (the OpenAI style).
pub fn write_data(out: &mut Vec<u8>, data: &str) {
    write_event(out, None, data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        p.push(input, &mut out).unwrap();
        out.extend(p.finish());
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn parses_named_events_and_line_ends() {
        let got = parse_all(b"event: a\ndata: 1\n\nevent:b\r\ndata:2\r\n\r\ndata: 3\r\r");
        assert_eq!(
            got,
            vec![ev(Some("a"), "1"), ev(Some("b"), "2"), ev(None, "3")]
        );
    }

    #[test]
    fn joins_multiline_data_and_skips_comments() {
        let got = parse_all(b": ping\ndata: a\ndata:  b\n: c\ndata\n\n");
        assert_eq!(got, vec![ev(None, "a\n b\n")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let got = parse_all(b"event: x\n\ndata: y\n\n");
        assert_eq!(got, vec![ev(None, "y")]);
    }

    #[test]
    fn strips_bom_and_tracks_id() {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        p.push(b"\xEF\xBB", &mut out).unwrap();
        p.push(b"\xBFid: 7\ndata: x\n\n", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "x")]);
        assert_eq!(p.last_event_id(), Some("7"));
    }

    #[test]
    fn cr_then_lf_across_pushes_is_one_line_end() {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        p.push(b"data: x\r", &mut out).unwrap();
        p.push(b"", &mut out).unwrap(); // regression: an empty read used to forget the `\r`
        p.push(b"\n\r", &mut out).unwrap();
        p.push(b"\n", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "x")]);
    }

    #[test]
    fn finish_returns_unterminated_event() {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        p.push(b"data: [DONE]", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(p.finish(), Some(ev(None, "[DONE]")));
    }

    #[test]
    fn long_line_is_an_error_and_sticks() {
        let mut p = SseParser::new(8);
        let mut out = Vec::new();
        p.push(b"data: 12", &mut out).unwrap();
        let e = p.push(b"3", &mut out).unwrap_err();
        assert_eq!(e, SseError::LineTooLong { limit: 8 });
        assert_eq!(p.push(b"\n\n", &mut out), Err(e));
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn big_event_is_an_error() {
        let mut p = SseParser::with_limits(16, 10);
        let mut out = Vec::new();
        let e = p.push(b"data: 123456\ndata: 7890\n", &mut out).unwrap_err();
        assert_eq!(e, SseError::EventTooLarge { limit: 10 });
    }

    #[test]
    fn writer_round_trips() {
        let mut buf = Vec::new();
        write_event(&mut buf, Some("x\ny"), "a\nb\r\nc\rd");
        write_data(&mut buf, "");
        assert_eq!(
            buf,
            b"event: xy\ndata: a\ndata: b\ndata: c\ndata: d\n\ndata: \n\n".to_vec()
        );
        assert_eq!(
            parse_all(&buf),
            vec![ev(Some("xy"), "a\nb\nc\nd"), ev(None, "")]
        );
    }
}
