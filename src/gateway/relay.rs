//! Streaming answers: the upstream's SSE bytes relayed to the client as they arrive, one write
//! (and flush) per upstream read, never buffered. What the bytes mean — pass-through or
//! translation, usage, whether the stream ended properly — is the plan's
//! [`StreamReader`]'s business; this module only moves them, under the upstream's read
//! timeout, and records the request.
//!
//! Owns, for one stream: the reader and the request's draft. Rules it keeps:
//! - the usage line is written before the stream's final bytes, so a completed response
//!   always has its line;
//! - a stream that breaks off (upstream EOF early, an unreadable event, a read error or
//!   timeout) gets a final error event in the client's format, never an invented end;
//! - a client that goes away drops the upstream body at once (closing that connection).

use std::borrow::Cow;
use std::io::{self, Read};
use std::sync::Arc;

use super::Gateway;
use super::finish::Draft;
use crate::error::{ApiError, Dialect, Kind};
use crate::http::{Response, StreamWriter};
use crate::translate::{Step, StreamReader};
use crate::upstream::UpstreamResponse;

/// Most read from an upstream stream after its last event, to reuse its connection.
const UPSTREAM_DRAIN_MAX: usize = 64 * 1024;
/// One upstream read (SSE events are a few hundred bytes; this is per open stream, and a
/// bigger burst is simply read in more pieces from the connection's own buffer).
const READ_BUF: usize = 1024;

/// The streamed response: relays `upstream` to the client through `reader`.
pub(super) fn stream(
    gateway: Arc<Gateway>,
    upstream: UpstreamResponse,
    reader: StreamReader,
    mut draft: Draft,
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
) -> Response {
    draft.outcome.status = 200;
    let mut open = OpenStream {
        gateway,
        reader,
        draft,
    };
    let mut response = Response::stream(200, move |writer: &mut StreamWriter<'_>| {
        let OpenStream {
            gateway,
            reader,
            draft,
        } = &mut open;
        let _active = gateway.metrics.stream_started();
        pump(upstream.body, reader, draft, writer, gateway)
    });
    response.headers = headers;
    response
}

/// A stream's state from the moment its response is built. The HTTP layer may drop the
/// stream without running it (the client went away before the head could be written), or
/// it may end early; either way the request is recorded exactly once, when this drops.
struct OpenStream {
    gateway: Arc<Gateway>,
    reader: StreamReader,
    draft: Draft,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if !self.draft.recorded {
            let outcome = &mut self.draft.outcome;
            outcome.error = outcome.error.or(Some("client_closed"));
            outcome.usage = self.reader.usage();
            self.gateway.finish(&mut self.draft);
        }
    }
}

/// Moves bytes until the stream ends; `Err` only when the client is gone.
fn pump(
    mut body: Box<dyn Read + Send>,
    reader: &mut StreamReader,
    draft: &mut Draft,
    writer: &mut StreamWriter<'_>,
    gateway: &Gateway,
) -> io::Result<()> {
    let dialect: Dialect = draft.outcome.endpoint.dialect();
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::new();
    loop {
        let failure = match body.read(&mut buf) {
            Ok(0) => reader.end(&mut out),
            Ok(n) => match reader.push(&buf[..n], &mut out) {
                Step::More => {
                    send(writer, &mut out, draft, false)?;
                    continue;
                }
                Step::Over(failure) => failure,
            },
            Err(e) => {
                let error = if e.kind() == io::ErrorKind::TimedOut {
                    ApiError::upstream(Kind::UpstreamTimeout, "the upstream stopped sending")
                } else {
                    ApiError::upstream(Kind::UpstreamUnreadable, "the upstream stream broke off")
                };
                out.extend_from_slice(&error.sse_event(dialect));
                Some(error.kind())
            }
        };
        // The stream ends here: record usage before its last bytes leave.
        draft.outcome.error = failure
            .map(Kind::code)
            .or(reader.failed().then_some("upstream_error"));
        draft.outcome.usage = reader.usage();
        gateway.finish(draft);
        send(writer, &mut out, draft, true)?;
        if failure.is_none() {
            // The client has its whole answer. Read the upstream body to its end (the
            // chunked terminator after the stream's end marker, normally already buffered)
            // so the connection goes back to the pool instead of being closed: otherwise
            // every stream costs a new upstream connection, a TLS handshake for https
            // providers. Bounded: an upstream that keeps sending is cut off.
            drain(&mut *body, &mut buf);
        }
        return Ok(());
    }
}

/// Reads and drops at most [`UPSTREAM_DRAIN_MAX`] bytes, through `buf` (`io::copy` would put 8 KiB
/// more on every stream thread's stack).
fn drain(body: &mut dyn Read, buf: &mut [u8]) {
    let mut left = UPSTREAM_DRAIN_MAX;
    while left > 0 {
        let want = buf.len().min(left);
        match body.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Writes `out` to the client (and with `last`, the end of the body), stamping the time to
/// first byte on the first bytes sent.
fn send(
    writer: &mut StreamWriter<'_>,
    out: &mut Vec<u8>,
    draft: &mut Draft,
    last: bool,
) -> io::Result<()> {
    if out.is_empty() && !last {
        return Ok(());
    }
    if draft.outcome.ttfb.is_none() && !out.is_empty() {
        draft.outcome.ttfb = Some(draft.outcome.started.elapsed());
    }
    let result = if last {
        writer.finish(out)
    } else {
        writer.send(out)
    };
    out.clear();
    if result.is_err() && !draft.recorded {
        draft.outcome.error = Some("client_closed");
    }
    result
}
