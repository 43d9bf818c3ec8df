//! Request bodies: `Content-Length` and chunked decoding with every limit enforced as bytes
//! arrive, `Expect: 100-continue` sent on first read, per-read and whole-body deadlines.
//!
//! State owned here: [`BodyState`], where one request's body stands (bytes left, chunk
//! decoder position, deadline, whether an error poisoned the connection, what it holds of the
//! buffered-body budget).

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use super::budget::Reservation;
use super::head::BodyFraming;
use super::wire::{InBuf, Wire, is_timeout};

/// Longest chunk-size line we accept, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes we read (and discard) after the last chunk.
const MAX_TRAILER_BYTES: usize = 8192;

/// Why a body could not be read. Each maps to the status a handler should answer.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (declared or as it arrived): 413.
    TooLarge,
    /// Bad chunked framing or a body shorter than its `Content-Length`: 400.
    Malformed(&'static str),
    /// The client stopped sending: 408.
    Timeout,
    /// Taking the body would pass `max_buffered_bytes` (server-wide): 503 with
    /// `Retry-After` (see [`super::HttpError::Overloaded`]).
    Overloaded,
    /// The transport failed (client gone).
    Io(io::Error),
}

impl BodyError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::Malformed(_) | BodyError::Io(_) => 400,
            BodyError::Timeout => 408,
            BodyError::Overloaded => 503,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body too large"),
            BodyError::Malformed(why) => write!(f, "malformed request body: {why}"),
            BodyError::Timeout => f.write_str("timed out reading the request body"),
            BodyError::Overloaded => f.write_str("server overloaded, try again"),
            BodyError::Io(e) => write!(f, "error reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for io::Error {
    fn from(e: BodyError) -> io::Error {
        match e {
            BodyError::Io(e) => e,
            BodyError::Timeout => io::Error::new(io::ErrorKind::TimedOut, e),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Length { left: u64 },
    ChunkSize,
    ChunkData { left: u64 },
    ChunkEnd,
    Trailers { seen: usize },
    Done,
}

/// Where one request's body stands.
pub(crate) struct BodyState {
    progress: Progress,
    /// Decoded bytes handed out so far.
    taken: u64,
    /// `max_body_bytes`, lowered by a handler's own limit.
    limit: u64,
    pub expect_pending: bool,
    per_read: Duration,
    total: Duration,
    deadline: Option<Instant>,
    /// An error happened: the rest of the stream cannot be trusted.
    pub failed: bool,
    /// What this request holds of `max_buffered_bytes`: its declared length, taken before
    /// the handler runs, or a chunked body's bytes as they arrive; dropped (given back) when
    /// the handler returns, so discarding the rest of a body takes none.
    pub reservation: Option<Reservation>,
}

impl BodyState {
    pub fn new(framing: BodyFraming, limit: u64, per_read: Duration, total: Duration) -> Self {
        let progress = match framing {
            BodyFraming::Length(0) => Progress::Done,
            BodyFraming::Length(n) => Progress::Length { left: n },
            BodyFraming::Chunked => Progress::ChunkSize,
        };
        BodyState {
            progress,
            taken: 0,
            limit,
            expect_pending: false,
            per_read,
            total,
            deadline: None,
            failed: false,
            reservation: None,
        }
    }

    /// True when every byte of the body has been read.
    pub fn is_done(&self) -> bool {
        self.progress == Progress::Done
    }

    /// The declared length still to come, for `Content-Length` bodies.
    pub fn declared_left(&self) -> Option<u64> {
        match self.progress {
            Progress::Length { left } => Some(left),
            Progress::Done => Some(0),
            _ => None,
        }
    }

    /// Lowers the limit; a declared length over it fails at once.
    pub fn restrict(&mut self, limit: u64) -> Result<(), BodyError> {
        self.limit = self.limit.min(limit);
        match self.declared_left() {
            Some(left) if self.taken.saturating_add(left) > self.limit => {
                self.failed = true;
                Err(BodyError::TooLarge)
            }
            _ => Ok(()),
        }
    }

    /// Reads decoded body bytes into `out`; 0 means the body is complete.
    pub fn read(
        &mut self,
        inbuf: &mut InBuf,
        wire: &mut dyn Wire,
        out: &mut [u8],
    ) -> Result<usize, BodyError> {
        if self.failed {
            return Err(BodyError::Malformed("body already failed"));
        }
        let r = self.read_inner(inbuf, wire, out);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_inner(
        &mut self,
        inbuf: &mut InBuf,
        wire: &mut dyn Wire,
        out: &mut [u8],
    ) -> Result<usize, BodyError> {
        if out.is_empty() || self.is_done() {
            return Ok(0);
        }
        if self.expect_pending {
            self.expect_pending = false;
            io::Write::write_all(wire, b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| io::Write::flush(wire))
                .map_err(BodyError::Io)?;
        }
        loop {
            match self.progress {
                Progress::Done => return Ok(0),
                Progress::Length { left } => {
                    let n = self.data(inbuf, wire, out, left)?;
                    self.progress = match left - n as u64 {
                        0 => Progress::Done,
                        left => Progress::Length { left },
                    };
                    return Ok(n);
                }
                Progress::ChunkData { left } => {
                    let n = self.data(inbuf, wire, out, left)?;
                    if let Some(held) = &mut self.reservation {
                        held.grow(n as u64).map_err(|_| BodyError::Overloaded)?;
                    }
                    self.progress = match left - n as u64 {
                        0 => Progress::ChunkEnd,
                        left => Progress::ChunkData { left },
                    };
                    return Ok(n);
                }
                Progress::ChunkSize => {
                    let len = self.line(inbuf, wire, MAX_CHUNK_LINE)?;
                    let size = parse_chunk_size(&inbuf.data()[..len])?;
                    inbuf.consume(len + 2);
                    if size == 0 {
                        self.progress = Progress::Trailers { seen: 0 };
                    } else if self.taken.saturating_add(size) > self.limit {
                        return Err(BodyError::TooLarge);
                    } else {
                        self.progress = Progress::ChunkData { left: size };
                    }
                }
                Progress::ChunkEnd => {
                    let len = self.line(inbuf, wire, 2)?;
                    if len != 0 {
                        return Err(BodyError::Malformed("chunk data longer than its size"));
                    }
                    inbuf.consume(2);
                    self.progress = Progress::ChunkSize;
                }
                Progress::Trailers { seen } => {
                    let budget = MAX_TRAILER_BYTES.saturating_sub(seen).max(2);
                    let len = self.line(inbuf, wire, budget)?;
                    inbuf.consume(len + 2);
                    let seen = seen + len + 2;
                    if len == 0 {
                        self.progress = Progress::Done;
                    } else if seen > MAX_TRAILER_BYTES {
                        return Err(BodyError::Malformed("trailers too long"));
                    } else {
                        self.progress = Progress::Trailers { seen };
                    }
                }
            }
        }
    }

    /// Copies up to `left` body bytes into `out`, from the buffer first, else from the wire.
    fn data(
        &mut self,
        inbuf: &mut InBuf,
        wire: &mut dyn Wire,
        out: &mut [u8],
        left: u64,
    ) -> Result<usize, BodyError> {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
        let n = if inbuf.is_empty() {
            self.arm(wire)?;
            match wire.read(&mut out[..want]) {
                Ok(0) => return Err(BodyError::Malformed("body ended early")),
                Ok(n) => n,
                Err(e) => return Err(io_to_body(e)),
            }
        } else {
            let n = want.min(inbuf.len());
            out[..n].copy_from_slice(&inbuf.data()[..n]);
            inbuf.consume(n);
            n
        };
        self.taken += n as u64;
        if self.taken > self.limit {
            return Err(BodyError::TooLarge);
        }
        Ok(n)
    }

    /// Buffers one CRLF-terminated line of at most `max` bytes (CRLF excluded) and returns
    /// its length; the line stays in `inbuf` for the caller to consume.
    fn line(
        &mut self,
        inbuf: &mut InBuf,
        wire: &mut dyn Wire,
        max: usize,
    ) -> Result<usize, BodyError> {
        let mut searched = 0;
        loop {
            let data = inbuf.data();
            if let Some(i) = data[searched..].iter().position(|&b| b == b'\n') {
                let i = searched + i;
                if i == 0 || data[i - 1] != b'\r' || data[..i - 1].contains(&b'\r') {
                    return Err(BodyError::Malformed("bad line ending in chunked body"));
                }
                return Ok(i - 1);
            }
            searched = data.len();
            if data.len() >= max + 2 {
                return Err(BodyError::Malformed("chunk line too long"));
            }
            self.arm(wire)?;
            match inbuf.fill(wire, max + 2) {
                Ok(0) => return Err(BodyError::Malformed("body ended early")),
                Ok(_) => {}
                Err(e) => return Err(io_to_body(e)),
            }
        }
    }

    /// Sets the socket timeout for the next read: per-read, capped by the whole-body deadline.
    fn arm(&mut self, wire: &mut dyn Wire) -> Result<(), BodyError> {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.total);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BodyError::Timeout);
        }
        wire.set_read_timeout(left.min(self.per_read))
            .map_err(BodyError::Io)
    }

    /// Reads and discards at most `max` more body bytes, waiting for them no later than
    /// `until`; true when the body is complete.
    pub fn drain(
        &mut self,
        inbuf: &mut InBuf,
        wire: &mut dyn Wire,
        max: u64,
        until: Instant,
    ) -> bool {
        self.deadline = Some(self.deadline.map_or(until, |d| d.min(until)));
        let mut scratch = [0u8; 1024];
        let mut drained = 0u64;
        while !self.is_done() && drained <= max && !self.failed {
            match self.read(inbuf, wire, &mut scratch) {
                Ok(0) => break,
                Ok(n) => drained += n as u64,
                Err(_) => return false,
            }
        }
        self.is_done()
    }
}

fn io_to_body(e: io::Error) -> BodyError {
    if is_timeout(&e) {
        BodyError::Timeout
    } else {
        BodyError::Io(e)
    }
}

/// `chunk-size [ BWS ; ext ]`: 1 to 15 hex digits (no overflow), extensions ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(BodyError::Malformed("bad chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(BodyError::Malformed("bad chunk size"));
    }
    let size = line[..digits].iter().fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        (acc << 4) | u64::from(d)
    });
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};

    /// A wire over fixed bytes, handing them out in pieces of `step`.
    struct Bytes {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Bytes {
        fn new(data: &[u8], step: usize) -> Bytes {
            Bytes {
                data: data.to_vec(),
                at: 0,
                step: step.max(1),
            }
        }
    }

    impl Read for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    impl Write for Bytes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Wire for Bytes {
        fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
        fn shutdown_write(&mut self) {}
    }

    #[test]
    fn a_released_input_buffer_keeps_data_and_grows_again() {
        let mut wire = Bytes::new(b"abcdef", 3);
        let mut inbuf = InBuf::with_capacity(16);
        inbuf.fill(&mut wire, 64).unwrap();
        inbuf.release_if_empty();
        assert_eq!(inbuf.data(), b"abc", "unread bytes are never dropped");
        inbuf.consume(3);
        inbuf.release_if_empty();
        assert_eq!(inbuf.fill(&mut wire, 64).unwrap(), 3);
        assert_eq!(inbuf.data(), b"def");
        assert_eq!(inbuf.fill(&mut wire, 64).unwrap(), 0, "end of input");
        inbuf.consume(3);
        inbuf.release_if_empty();
        assert_eq!(inbuf.fill(&mut wire, 64).unwrap(), 0);
        assert_eq!(inbuf.held(), 0, "nothing arrived, nothing allocated");
    }

    #[test]
    fn a_released_buffer_reads_a_big_request_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Bytes::new(&data, 4000);
        let mut inbuf = InBuf::with_capacity(0);
        while inbuf.fill(&mut wire, 1 << 20).unwrap() > 0 {}
        assert_eq!(inbuf.data(), &data[..]);
        // A limit below the first read's size is kept.
        let mut wire = Bytes::new(&data, 4000);
        let mut inbuf = InBuf::with_capacity(0);
        assert_eq!(inbuf.fill(&mut wire, 10).unwrap(), 10);
        assert!(inbuf.fill(&mut wire, 10).is_err(), "limit reached");
    }

    /// Decodes `data` as a chunked body; returns the body (or error) and the unread rest.
    fn decode(data: &[u8], step: usize, limit: u64) -> (Result<Vec<u8>, BodyError>, Vec<u8>) {
        let mut wire = Bytes::new(data, step);
        let mut inbuf = InBuf::with_capacity(16);
        let mut st = BodyState::new(
            BodyFraming::Chunked,
            limit,
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        let mut body = Vec::new();
        let mut piece = [0u8; 7];
        let r = loop {
            match st.read(&mut inbuf, &mut wire, &mut piece) {
                Ok(0) => break Ok(body),
                Ok(n) => body.extend_from_slice(&piece[..n]),
                Err(e) => break Err(e),
            }
        };
        let mut rest = inbuf.data().to_vec();
        rest.extend_from_slice(&wire.data[wire.at..]);
        (r, rest)
    }

    #[test]
    fn decodes_chunks_and_keeps_what_follows() {
        let data = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        for step in [1, 3, 100] {
            let (body, rest) = decode(data, step, 100);
            assert_eq!(body.unwrap(), b"hello world");
            assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        }
    }

    #[test]
    fn refuses_bad_framing() {
        for bad in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b"5 x\r\n",
            b"5\r\nhel",
        ] {
            assert!(
                decode(bad, 4, 100).0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            decode(b"ffffffffffffffff\r\n", 4, 100).0,
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"65\r\n", 4, 100).0,
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn length_body_shorter_than_declared_is_an_error() {
        let mut wire = Bytes::new(b"abc", 10);
        let mut inbuf = InBuf::with_capacity(16);
        let mut st = BodyState::new(
            BodyFraming::Length(5),
            100,
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        let mut out = [0u8; 16];
        assert_eq!(st.read(&mut inbuf, &mut wire, &mut out).unwrap(), 3);
        assert!(st.read(&mut inbuf, &mut wire, &mut out).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_exceed_limit(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            step in 1usize..50,
            limit in 0u64..64,
        ) {
            let (r, rest) = decode(&data, step, limit);
            if let Ok(body) = r {
                prop_assert!(body.len() as u64 <= limit);
            }
            prop_assert!(rest.len() <= data.len());
        }

        #[test]
        fn valid_encodings_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
            step in 1usize..30,
        ) {
            let mut enc = Vec::new();
            for c in &chunks {
                enc.extend_from_slice(format!("{:X}\r\n", c.len()).as_bytes());
                enc.extend_from_slice(c);
                enc.extend_from_slice(b"\r\n");
            }
            enc.extend_from_slice(b"0\r\n\r\n");
            enc.extend_from_slice(&tail);
            let (r, rest) = decode(&enc, step, 10_000);
            prop_assert_eq!(r.unwrap(), chunks.concat());
            prop_assert_eq!(rest, tail);
        }
    }
}
