//! Reading and parsing one request head with `httparse`, under the whole-head deadline and
//! the size and count limits, then deciding the body framing (the smuggling-relevant part).
//!
//! State owned here: [`Head`], a per-connection reusable copy of the current request head
//! with the positions of its parts, so a `Request` can borrow it while the input buffer is
//! used again for the body.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::wire::{InBuf, Wire, is_timeout, remaining};

/// Hard cap on `max_headers` (the header array lives on the stack).
pub(crate) const HEADER_CAP: usize = 256;

/// Why a head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer closed (or timed out) before sending any byte of a new request.
    Idle,
    /// Part of a head arrived but not all of it within the deadline.
    Timeout,
    /// More than `max_head_bytes` without the end of the head.
    TooLarge,
    /// More than `max_headers` header lines.
    TooManyHeaders,
    /// Not an HTTP/1.x request head.
    Malformed,
    /// The transport failed.
    Io,
}

/// Limits and timeouts for reading one head.
pub(crate) struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
    /// Waiting for the first byte of the request.
    pub first_byte: Duration,
    /// From the first byte to the end of the head.
    pub header_timeout: Duration,
    /// A fixed end for the whole head instead (a new connection's, counted from accept).
    pub deadline: Option<Instant>,
}

/// A parsed request head, copied out of the input buffer.
#[derive(Default)]
pub(crate) struct Head {
    bytes: Vec<u8>,
    method: Range<usize>,
    target: Range<usize>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Head {
    fn text(&self, r: &Range<usize>) -> &str {
        // Method and target were validated as ASCII tokens by httparse.
        std::str::from_utf8(&self.bytes[r.clone()]).unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.text(&self.method)
    }

    pub fn target(&self) -> &str {
        self.text(&self.target)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (self.text(n), &self.bytes[v.clone()]))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| self.bytes[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(&self.bytes[v.clone()]).ok())
    }

    /// Copies a parsed request out of `src`, recording positions relative to `src`.
    fn fill_from(&mut self, src: &[u8], req: &httparse::Request<'_, '_>) {
        self.bytes.clear();
        self.bytes.extend_from_slice(src);
        self.headers.clear();
        let base = src.as_ptr() as usize;
        let span = |s: &[u8]| {
            let at = (s.as_ptr() as usize).saturating_sub(base);
            at..at + s.len()
        };
        self.method = span(req.method.unwrap_or("").as_bytes());
        self.target = span(req.path.unwrap_or("").as_bytes());
        self.minor = req.version.unwrap_or(1);
        for h in req.headers.iter() {
            self.headers.push((span(h.name.as_bytes()), span(h.value)));
        }
    }
}

/// Reads until a whole head is buffered, parses it into `head` and consumes it from `inbuf`.
pub(crate) fn read_head(
    inbuf: &mut InBuf,
    wire: &mut dyn Wire,
    head: &mut Head,
    lim: &HeadLimits,
) -> Result<(), HeadError> {
    let mut deadline = None;
    let mut scanned = 0;
    loop {
        if !inbuf.is_empty() {
            let deadline = *deadline.get_or_insert_with(|| {
                lim.deadline
                    .unwrap_or_else(|| Instant::now() + lim.header_timeout)
            });
            if let Some(len) = try_parse(inbuf.data(), &mut scanned, head, lim)? {
                inbuf.consume(len);
                return Ok(());
            }
            if inbuf.len() >= lim.max_bytes {
                return Err(HeadError::TooLarge);
            }
            let left = remaining(deadline).map_err(|_| HeadError::Timeout)?;
            wire.set_read_timeout(left).map_err(|_| HeadError::Io)?;
        } else {
            wire.set_read_timeout(lim.first_byte)
                .map_err(|_| HeadError::Io)?;
        }
        match inbuf.fill(wire, lim.max_bytes) {
            Ok(0) if inbuf.is_empty() => return Err(HeadError::Idle),
            Ok(0) => return Err(HeadError::Malformed),
            Ok(_) => {}
            Err(e) if is_timeout(&e) && inbuf.is_empty() => return Err(HeadError::Idle),
            Err(e) if is_timeout(&e) => return Err(HeadError::Timeout),
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Io),
        }
    }
}

/// Parses `data` if it holds a whole head. `scanned` remembers how far the end-of-head search
/// got, so a trickled head is not re-parsed for every byte.
pub(crate) fn try_parse(
    data: &[u8],
    scanned: &mut usize,
    head: &mut Head,
    lim: &HeadLimits,
) -> Result<Option<usize>, HeadError> {
    let end = data.len().min(lim.max_bytes);
    let from = scanned.saturating_sub(3).min(end);
    let window = &data[from..end];
    *scanned = data.len();
    if !has_head_end(window) {
        return Ok(None);
    }
    let n = lim.max_headers.clamp(1, HEADER_CAP);
    // Room for most requests' headers on the stack. Every page of a thread's stack that a
    // frame spans becomes resident for the thread's life (stack probes touch them), so a
    // 256-slot array here cost 8 KiB per connection thread; a head with more headers than
    // this is parsed again with the slots on the heap.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(&data[..end], &mut storage[..n.min(STACK_HEADERS)]);
    match parsed {
        Err(httparse::Error::TooManyHeaders) if n > STACK_HEADERS => {
            let mut storage: Vec<httparse::Header<'_>> = vec![httparse::EMPTY_HEADER; n];
            let mut req = httparse::Request::new(&mut storage);
            let parsed = req.parse(&data[..end]);
            finish_parse(parsed, head, &data[..end], &req)
        }
        parsed => finish_parse(parsed, head, &data[..end], &req),
    }
}

/// Headers parsed in a stack array before falling back to the heap.
const STACK_HEADERS: usize = 40;

fn finish_parse(
    parsed: httparse::Result<usize>,
    head: &mut Head,
    data: &[u8],
    req: &httparse::Request<'_, '_>,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) => {
            head.fill_from(&data[..len], req);
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// True when `w` contains an empty line ending a head (`\n\r\n` or `\n\n`).
fn has_head_end(w: &[u8]) -> bool {
    w.windows(2).enumerate().any(|(i, p)| {
        p[0] == b'\n' && (p[1] == b'\n' || (p[1] == b'\r' && w.get(i + 2) == Some(&b'\n')))
    })
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Length(u64),
    Chunked,
}

/// What the connection needs to know about a head beyond what the handler reads.
#[derive(Debug)]
pub(crate) struct Semantics {
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Why a head is refused before the handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest(&'static str),
    ExpectationFailed,
}

/// Decides framing, keep-alive and `Expect` for a parsed head (RFC 9112 §6, strictly).
pub(crate) fn semantics(head: &Head) -> Result<Semantics, Refusal> {
    let mut length = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut close = false;
    let mut keep = false;
    let mut expect_continue = false;
    let mut host = 0;
    for (name, value) in head.headers() {
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(Refusal::BadRequest("repeated Content-Length"));
            }
            length =
                Some(parse_length(value).ok_or(Refusal::BadRequest("invalid Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if te_seen || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::BadRequest("unsupported Transfer-Encoding"));
            }
            te_seen = true;
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::ExpectationFailed);
            }
            expect_continue = head.minor >= 1;
        } else if name.eq_ignore_ascii_case("host") {
            host += 1;
        }
    }
    if chunked && length.is_some() {
        return Err(Refusal::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if chunked && head.minor == 0 {
        return Err(Refusal::BadRequest("Transfer-Encoding in HTTP/1.0"));
    }
    if head.minor >= 1 && host != 1 {
        return Err(Refusal::BadRequest("exactly one Host header is required"));
    }
    let framing = if chunked {
        BodyFraming::Chunked
    } else {
        BodyFraming::Length(length.unwrap_or(0))
    };
    let keep_alive = if head.minor == 0 {
        keep && !close
    } else {
        !close
    };
    Ok(Semantics {
        framing,
        keep_alive,
        expect_continue,
    })
}

/// A Content-Length value: 1 to 19 ASCII digits, nothing else (no sign, no list).
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> HeadLimits {
        HeadLimits {
            max_bytes: 1024,
            max_headers: 8,
            first_byte: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            deadline: None,
        }
    }

    fn parse(text: &str) -> Result<Option<(usize, Head)>, HeadError> {
        let mut head = Head::default();
        let mut scanned = 0;
        try_parse(text.as_bytes(), &mut scanned, &mut head, &lim()).map(|o| o.map(|n| (n, head)))
    }

    #[test]
    fn parses_a_head_and_its_parts() {
        let (n, head) = parse("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 40);
        assert_eq!(head.method(), "GET");
        assert_eq!(head.target(), "/a?b=1");
        assert_eq!(head.header("x-a"), Some("1"));
        assert_eq!(head.minor, 1);
    }

    #[test]
    fn more_headers_than_the_stack_holds_up_to_the_limit() {
        let lim = HeadLimits {
            max_bytes: 64 * 1024,
            max_headers: 100,
            ..lim()
        };
        let text = |count: usize| {
            let mut t = String::from("GET / HTTP/1.1\r\n");
            for i in 0..count {
                t.push_str(&format!("X-H{i}: {i}\r\n"));
            }
            t + "\r\n"
        };
        for count in [STACK_HEADERS - 1, STACK_HEADERS, STACK_HEADERS + 1, 100] {
            let mut head = Head::default();
            let parsed = try_parse(text(count).as_bytes(), &mut 0, &mut head, &lim);
            assert!(matches!(parsed, Ok(Some(_))), "{count} headers");
            assert_eq!(
                head.header(&format!("x-h{}", count - 1)),
                Some(&*(count - 1).to_string())
            );
        }
        let parsed = try_parse(text(101).as_bytes(), &mut 0, &mut Head::default(), &lim);
        assert!(matches!(parsed, Err(HeadError::TooManyHeaders)));
    }

    #[test]
    fn content_length_forms() {
        assert_eq!(parse_length(b"5"), Some(5));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"5,5",
            b" 5",
            b"abc",
            b"",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn framing_refusals() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  5 ,5\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ];
        for c in cases {
            let (_, head) = parse(c).unwrap().unwrap();
            assert!(
                matches!(semantics(&head), Err(Refusal::BadRequest(_))),
                "{c}"
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |t: &str| semantics(&parse(t).unwrap().unwrap().1).unwrap().keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_overrun(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut head = Head::default();
            let mut scanned = 0;
            let l = lim();
            if let Ok(Some(n)) = try_parse(&data, &mut scanned, &mut head, &l) {
                prop_assert!(n <= data.len() && n <= l.max_bytes);
                prop_assert!(head.headers().count() <= l.max_headers);
                let _ = semantics(&head);
            }
        }

        #[test]
        fn split_points_do_not_change_the_result(cut in 0usize..60) {
            let text = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n";
            let cut = cut.min(text.len());
            let mut head = Head::default();
            let mut scanned = 0;
            let l = lim();
            let first = try_parse(&text[..cut], &mut scanned, &mut head, &l).unwrap();
            prop_assert!(first.is_none() || cut == text.len());
            let all = try_parse(text, &mut scanned, &mut head, &l).unwrap();
            prop_assert_eq!(all, Some(text.len()));
        }
    }
}
