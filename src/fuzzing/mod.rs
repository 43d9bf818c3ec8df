//! Entry points for the cargo-fuzz targets in `fuzz/`: one `pub fn` per target, taking the
//! fuzzer's bytes, so each target stays a one-line call and the internals it reaches keep
//! their crate-only visibility. Not an API: hidden from the docs, used by nothing else.
//!
//! Why here and not in `fuzz/`: the parsers of untrusted bytes (request heads, chunked bodies,
//! SSE, upstream answers, client JSON, the config file, `enc:v1` values, the admin key API's
//! bodies) are crate-internal,
//! and a property that needs an internal to check (a split run equals a whole run, a bound
//! holds) is written once, next to the code it checks.
//!
//! Conventions:
//! - Targets that feed a parser piece by piece read their split from the input's first bytes
//!   ([`split_input`]): byte 0 gives how many piece lengths follow (`& 7`; 0 = the payload in
//!   one piece), each following byte is a piece length minus one, and the pieces cycle
//!   through them. Their seeds start with `\0` (whole) or such a prefix.
//! - A property that fails is an `assert!`: under libFuzzer a panic is the crash report.
//!
//! State owned: for [`upstream_response`] only, a loopback listener thread that answers each
//! connection with the current input (started on first use, kept for the process).

// A failed property must crash the fuzzer, and a panic is how libFuzzer learns of it. Nothing
// here is on a request path: the gateway never calls this module.
#![allow(clippy::panic)]

mod admin;
mod bodies;
mod config;
mod http;
mod stream;
mod upstream;

pub use admin::admin_key_body;
pub use bodies::{
    plan, rewrite, translate_chat_request, translate_messages_request, translate_responses_request,
};
pub use config::{config_load, secret};
pub use http::{http_chunked, http_conn, http_head};
pub use stream::{
    sse, stream_anthropic_to_openai, stream_anthropic_to_responses, stream_openai_to_anthropic,
};
pub use upstream::{retry_after, upstream_body, upstream_response};

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::http::wire::Wire;

// ---------------------------------------------------------------------------------------------
// Input splitting and an in-memory transport

/// The piece lengths chosen by `data`'s first bytes, and the payload after them.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(first & 7).min(rest.len());
    let lens = rest[..n].iter().map(|&b| usize::from(b) + 1).collect();
    (lens, &rest[n..])
}

/// `payload` cut into pieces whose lengths cycle through `lens` (one piece when empty).
fn pieces<'a>(payload: &'a [u8], lens: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut turn = 0;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let len = match lens {
            [] => payload.len(),
            _ => lens[turn % lens.len()],
        };
        turn += 1;
        let end = payload.len().min(at + len);
        let piece = &payload[at..end];
        at = end;
        Some(piece)
    })
}

/// A transport over fixed bytes, each read returning at most the next piece length; what is
/// written to it is kept (up to a bound) so a target can look at the responses.
struct ByteWire<'a> {
    data: &'a [u8],
    at: usize,
    lens: &'a [usize],
    turn: usize,
    written: Vec<u8>,
}

/// Most response bytes a [`ByteWire`] keeps.
const WRITTEN_MAX: usize = 1 << 20;

impl<'a> ByteWire<'a> {
    fn new(data: &'a [u8], lens: &'a [usize]) -> Self {
        ByteWire {
            data,
            at: 0,
            lens,
            turn: 0,
            written: Vec::new(),
        }
    }

    /// The bytes not yet read.
    fn rest(&self) -> &[u8] {
        &self.data[self.at..]
    }
}

impl Read for ByteWire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = match self.lens {
            [] => usize::MAX,
            lens => lens[self.turn % lens.len()],
        };
        self.turn += 1;
        let n = buf.len().min(step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for ByteWire<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = WRITTEN_MAX.saturating_sub(self.written.len());
        self.written.extend_from_slice(&b[..b.len().min(room)]);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for ByteWire<'_> {
    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn shutdown_write(&mut self) {}
}
