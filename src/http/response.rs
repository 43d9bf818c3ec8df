//! Responses: what a handler returns ([`Response`], [`Body`]) and how the layer writes it —
//! head and small body in one write, streams as one chunk frame per piece, flushed at once.
//!
//! State owned here: a per-thread cache of the formatted `Date` value (refreshed once a
//! second); the output buffer itself belongs to the connection and is reused.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{SystemTime, UNIX_EPOCH};

use super::wire::Wire;

/// Bodies up to this size go out in the same write as the head.
const COALESCE_MAX: usize = 64 * 1024;

/// A stream producer: runs on the connection thread after the head is written. A panic in
/// it is caught and ends the response truncated, like an `Err`.
pub type StreamFn = Box<dyn FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send>;

/// A response body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Written as it is produced: chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0.
    /// If the closure returns `Err` or panics, the response is left visibly truncated (no last
    /// chunk) and the connection closed.
    Stream(StreamFn),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// What a handler answers. The layer adds `Date`, `Content-Length` or `Transfer-Encoding`,
/// `Connection` and (under TLS) `Strict-Transport-Security`; handler values for those are
/// ignored.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names and values; mostly static text, so kept as `Cow` to spare an allocation each.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    pub body: Body,
}

impl Response {
    /// A response with no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A fixed body with `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::bytes(status, "application/json", body)
    }

    /// A fixed body with the given content type.
    pub fn bytes(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        // Room for what a proxied answer adds (timing, rate limits) without regrowing.
        let mut headers = Vec::with_capacity(8);
        headers.push(("Content-Type".into(), content_type.into()));
        Response {
            status,
            headers,
            body: Body::Bytes(body.into()),
        }
    }

    /// A streamed body produced by `f` (see [`StreamWriter`]).
    pub fn stream(
        status: u16,
        f: impl FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send + 'static,
    ) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Stream(Box::new(f)),
        }
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Hands a streamed body to the client piece by piece.
pub struct StreamWriter<'a> {
    wire: &'a mut dyn Wire,
    buf: &'a mut Vec<u8>,
    chunked: bool,
    failed: bool,
    /// The body's end is written (see [`StreamWriter::finish`]).
    ended: bool,
}

impl StreamWriter<'_> {
    /// Writes `bytes` as one piece (one chunk frame, one write) and flushes it. An `Err`
    /// means the client is gone or stopped reading: stop producing.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_piece(bytes, false)
    }

    /// Writes `bytes` and the end of the body in one write: for a chunked response the
    /// client has the whole answer when this returns, while the producer may still have
    /// work to do (nothing more can be sent). Without chunking the end is the connection's
    /// close, after the producer returns.
    pub fn finish(&mut self, bytes: &[u8]) -> io::Result<()> {
        let r = self.write_piece(bytes, true);
        self.ended = true;
        r
    }

    /// One write: `bytes` as a chunk (when chunked and not empty), then the last-chunk
    /// marker when `last` and chunked.
    fn write_piece(&mut self, bytes: &[u8], last: bool) -> io::Result<()> {
        if self.failed || self.ended {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "client gone"));
        }
        let end: &[u8] = if last && self.chunked {
            b"0\r\n\r\n"
        } else {
            b""
        };
        if bytes.is_empty() && end.is_empty() {
            return Ok(());
        }
        let r = if self.chunked {
            self.buf.clear();
            if !bytes.is_empty() {
                let size = Hex::new(bytes.len() as u64, 1);
                self.buf.extend_from_slice(size.as_str().as_bytes());
                self.buf.extend_from_slice(b"\r\n");
                self.buf.extend_from_slice(bytes);
                self.buf.extend_from_slice(b"\r\n");
            }
            self.buf.extend_from_slice(end);
            self.wire.write_all(self.buf)
        } else {
            self.wire.write_all(bytes)
        };
        let r = r.and_then(|()| self.wire.flush());
        if r.is_err() {
            self.failed = true;
        }
        r
    }
}

/// How a response is to be framed for this request.
pub(crate) struct ResponseMode {
    pub is_head: bool,
    pub minor: u8,
    pub keep_alive: bool,
    pub tls: bool,
}

/// Writes `resp`; returns whether the connection may be kept open afterwards.
pub(crate) fn write_response(
    wire: &mut dyn Wire,
    out: &mut Vec<u8>,
    resp: Response,
    f: &ResponseMode,
) -> io::Result<bool> {
    let no_body = matches!(resp.status, 100..=199 | 204 | 304);
    let streaming = matches!(resp.body, Body::Stream(_)) && !no_body;
    let chunked = streaming && f.minor >= 1;
    // A close-delimited (HTTP/1.0) stream ends the connection.
    let close_delimited = streaming && !chunked;
    let keep_alive = f.keep_alive
        && !close_delimited
        && !resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    out.clear();
    write_head(out, &resp, f, keep_alive, chunked);
    // The headers are written: a stream that stays open for minutes holds none of them.
    let Response { headers, body, .. } = resp;
    drop(headers);
    match body {
        Body::Bytes(b) if !f.is_head && !no_body => {
            if b.len() <= COALESCE_MAX {
                out.extend_from_slice(&b);
                wire.write_all(out)?;
            } else {
                wire.write_all(out)?;
                wire.write_all(&b)?;
            }
            wire.flush()?;
        }
        Body::Stream(produce) if !f.is_head && !no_body => {
            wire.write_all(out)?;
            wire.flush()?;
            let mut w = StreamWriter {
                wire,
                buf: out,
                chunked,
                failed: false,
                ended: false,
            };
            // A panicking producer is a truncated response: no last chunk, and the error
            // closes the connection. Unwinding further would skip the connection's cleanup.
            let r = match catch_unwind(AssertUnwindSafe(|| produce(&mut w))) {
                Ok(r) => r,
                Err(_) => {
                    log::error!("a response stream panicked; closing its connection");
                    return Err(io::Error::other("response stream panicked"));
                }
            };
            if w.failed || r.is_err() {
                return Err(r
                    .err()
                    .unwrap_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "client gone")));
            }
            if chunked && !w.ended {
                w.wire.write_all(b"0\r\n\r\n")?;
                w.wire.flush()?;
            }
        }
        _ => {
            wire.write_all(out)?;
            wire.flush()?;
        }
    }
    Ok(keep_alive)
}

/// A number's lowercase hex digits, at least `min_digits` of them (chunk sizes, request ids),
/// without `format!`.
pub(crate) struct Hex {
    digits: [u8; 16],
    start: usize,
}

impl Hex {
    pub fn new(n: u64, min_digits: usize) -> Hex {
        let mut digits = [b'0'; 16];
        let _ = hex::encode_to_slice(n.to_be_bytes(), &mut digits);
        let leading = digits.iter().take_while(|&&d| d == b'0').count();
        Hex {
            digits,
            start: leading.min(16 - min_digits.clamp(1, 16)),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

fn write_head(
    out: &mut Vec<u8>,
    resp: &Response,
    f: &ResponseMode,
    keep_alive: bool,
    chunked: bool,
) {
    // Written piece by piece: `write!` here was a tenth of the response's instructions.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(resp.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    with_date(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        if is_layer_header(name)
            || (f.tls && name.eq_ignore_ascii_case("strict-transport-security"))
        {
            continue;
        }
        if !valid_name(name) || !valid_value(value) {
            log::warn!("dropping response header {name:?} with an invalid name or value");
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if f.tls {
        out.extend_from_slice(b"Strict-Transport-Security: max-age=31536000\r\n");
    }
    match &resp.body {
        _ if matches!(resp.status, 100..=199 | 204 | 304) => {}
        Body::Empty => out.extend_from_slice(b"Content-Length: 0\r\n"),
        Body::Bytes(b) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Body::Stream(_) if chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Body::Stream(_) => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if f.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn is_layer_header(name: &str) -> bool {
    let layer: &[&str] = match name.len() {
        4 => &["date"],
        10 => &["connection", "keep-alive"],
        14 => &["content-length"],
        17 => &["transfer-encoding"],
        _ => return false,
    };
    layer.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// RFC 9110 `tchar`: the bytes a header name may contain.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| TCHAR[usize::from(b)])
}

fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Calls `f` with the current `Date` value, formatted at most once a second per thread.
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        f(cache.1.as_bytes());
    });
}

/// The standard reason phrase for `status` (empty when unknown, which is allowed).
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn hex_digits_have_a_minimum_width() {
        for (n, min) in [
            (0u64, 1),
            (0, 8),
            (0x1f, 1),
            (0x1f, 8),
            (u64::MAX, 1),
            (1 << 40, 8),
        ] {
            assert_eq!(Hex::new(n, min).as_str(), format!("{n:0min$x}"));
        }
    }

    #[test]
    fn header_names_are_tokens_and_layer_headers_are_ours() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(TCHAR[usize::from(b)], tchar, "byte {b}");
        }
        assert!(valid_name("x-ratelimit-reset-requests"));
        assert!(!valid_name("") && !valid_name("a b") && !valid_name("a:b"));
        for name in [
            "Content-Length",
            "transfer-encoding",
            "CONNECTION",
            "Date",
            "Keep-Alive",
        ] {
            assert!(is_layer_header(name), "{name}");
        }
        for name in ["content-type", "dates", "connections", "x-request-id"] {
            assert!(!is_layer_header(name), "{name}");
        }
    }

    #[derive(Default)]
    struct Sink(Vec<u8>);
    impl Read for Sink {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Wire for Sink {
        fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        fn shutdown_write(&mut self) {}
    }

    fn render(resp: Response, is_head: bool, minor: u8, tls: bool) -> (io::Result<bool>, String) {
        let mut sink = Sink::default();
        let mut out = Vec::new();
        let f = ResponseMode {
            is_head,
            minor,
            keep_alive: true,
            tls,
        };
        let r = write_response(&mut sink, &mut out, resp, &f);
        (r, String::from_utf8_lossy(&sink.0).into_owned())
    }

    #[test]
    fn fixed_body_head_and_layer_headers() {
        let resp = Response::json(200, "{}")
            .with_header("Content-Length", "999")
            .with_header("X-Bad", "a\r\nInjected: 1");
        let (r, text) = render(resp, false, 1, true);
        assert!(r.unwrap());
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(text.contains("Content-Length: 2\r\n") && !text.contains("999"));
        assert!(!text.contains("Injected"));
        assert!(text.contains("Strict-Transport-Security: max-age=31536000\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn head_gets_length_without_body() {
        let (_, text) = render(Response::bytes(200, "text/plain", "hello"), true, 1, false);
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn stream_error_leaves_no_last_chunk() {
        let resp = Response::stream(200, |w| {
            w.send(b"abc")?;
            Err(io::Error::other("upstream broke"))
        });
        let (r, text) = render(resp, false, 1, false);
        assert!(r.is_err());
        assert!(text.ends_with("\r\n\r\n3\r\nabc\r\n"), "{text:?}");
    }

    #[test]
    fn stream_panic_is_an_error_with_no_last_chunk() {
        let resp = Response::stream(200, |w| {
            w.send(b"abc")?;
            panic!("producer bug");
        });
        let (r, text) = render(resp, false, 1, false);
        assert!(r.is_err());
        assert!(text.ends_with("\r\n\r\n3\r\nabc\r\n"), "{text:?}");
    }

    #[test]
    fn stream_ends_with_last_chunk_or_close_for_http10() {
        let (r, text) = render(Response::stream(200, |w| w.send(b"ab")), false, 1, false);
        assert!(r.unwrap());
        assert!(text.contains("Transfer-Encoding: chunked\r\n"));
        assert!(text.ends_with("2\r\nab\r\n0\r\n\r\n"));
        let (r, text) = render(Response::stream(200, |w| w.send(b"ab")), false, 0, false);
        assert!(!r.unwrap());
        assert!(!text.contains("chunked") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nab"));
    }

    #[test]
    fn finish_ends_the_body_once_in_the_same_write() {
        let resp = Response::stream(200, |w| {
            w.send(b"ab")?;
            w.finish(b"cd")?;
            assert!(w.send(b"late").is_err(), "nothing after the end");
            Ok(())
        });
        let (r, text) = render(resp, false, 1, false);
        assert!(r.unwrap());
        assert!(
            text.ends_with("2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"),
            "{text:?}"
        );
        let (_, text) = render(Response::stream(200, |w| w.finish(b"")), false, 1, false);
        assert!(text.ends_with("\r\n\r\n0\r\n\r\n") && !text.contains("0\r\n\r\n0\r\n"));
        let (r, text) = render(Response::stream(200, |w| w.finish(b"ab")), false, 0, false);
        assert!(!r.unwrap());
        assert!(text.ends_with("\r\n\r\nab"), "{text:?}");
    }

    #[test]
    fn no_content_has_no_framing() {
        let (_, text) = render(Response::new(204), false, 1, false);
        assert!(!text.contains("Content-Length") && !text.contains("Transfer-Encoding"));
    }
}
