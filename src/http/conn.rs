//! One connection's life: read a head, check its framing, call the handler, write the
//! response, then keep the connection (serving pipelined bytes already buffered) or close it
//! so that no unread body byte is ever parsed as a request.
//!
//! State owned here: [`Buffers`], a worker thread's reusable input buffer, head copy and
//! output buffer (no allocation per request once warm).

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::body::BodyState;
use super::budget::{Budget, Reservation};
use super::head::{self, BodyFraming, Head, HeadError, HeadLimits, Refusal};
use super::request::Request;
use super::response::{self, Response};
use super::wire::{InBuf, Wire};
use super::{Handler, HttpError, ServerOptions};

/// Unread body bytes we are willing to discard to keep a connection alive.
const UNREAD_BODY_DRAIN_MAX: u64 = 256 * 1024;
/// How long we wait for them (at most `header_timeout`). A client that sends its body
/// slower than this after a refusal is closed instead: paced by the body timeouts, a few
/// such clients held every connection slot for minutes.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Before closing after a refusal: how long and how much we read so the peer sees our answer.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// A worker thread's buffers, reused for every connection it serves.
pub(crate) struct Buffers {
    inbuf: InBuf,
    head: Head,
    out: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            inbuf: InBuf::with_capacity(4 * 1024),
            head: Head::default(),
            // Grown on demand: a thread relaying a stream needs a few hundred bytes here.
            out: Vec::new(),
        }
    }
}

/// What a connection needs from the server around it.
pub(crate) struct ConnCtx<'a> {
    pub opts: &'a ServerOptions,
    pub handler: &'a dyn Handler,
    /// Set when the server shuts down.
    pub stop: &'a AtomicBool,
    /// The server's `max_buffered_bytes` budget.
    pub budget: &'a Arc<Budget>,
    /// Set by us while waiting for a new request, so shutdown may close us at once.
    pub idle: Option<&'a AtomicBool>,
}

impl ConnCtx<'_> {
    fn set_idle(&self, idle: bool) {
        if let Some(flag) = self.idle {
            flag.store(idle, Ordering::SeqCst);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Serves requests on `wire` until it closes, times out, errs or the server stops.
/// `deadline` bounds the arrival of the first request head (from accept).
pub(crate) fn serve(
    wire: &mut dyn Wire,
    peer: SocketAddr,
    is_tls: bool,
    bufs: &mut Buffers,
    ctx: &ConnCtx<'_>,
    deadline: Instant,
) {
    bufs.inbuf.clear();
    let opts = ctx.opts;
    let mut first = true;
    loop {
        if bufs.inbuf.is_empty() {
            ctx.set_idle(true);
            if ctx.stopping() {
                break;
            }
        }
        let first_byte = if first {
            deadline.saturating_duration_since(Instant::now())
        } else {
            opts.idle_timeout
        };
        let lim = HeadLimits {
            max_bytes: opts.max_head_bytes,
            max_headers: opts.max_headers,
            first_byte,
            header_timeout: opts.header_timeout,
            deadline: first.then_some(deadline),
        };
        first = false;
        let read = head::read_head(&mut bufs.inbuf, wire, &mut bufs.head, &lim);
        ctx.set_idle(false);
        let refusal = match read {
            Ok(()) => None,
            Err(HeadError::Idle | HeadError::Io) => break,
            Err(HeadError::Timeout) => Some(HttpError::Timeout),
            Err(HeadError::TooLarge | HeadError::TooManyHeaders) => {
                Some(HttpError::HeadersTooLarge)
            }
            Err(HeadError::Malformed) => Some(HttpError::BadRequest("malformed request head")),
        };
        if let Some(err) = refusal {
            refuse(wire, bufs, ctx, None, &err, is_tls);
            break;
        }
        if !exchange(wire, peer, is_tls, bufs, ctx) {
            break;
        }
    }
}

/// Serves one parsed request; true when the connection may carry another.
fn exchange(
    wire: &mut dyn Wire,
    peer: SocketAddr,
    is_tls: bool,
    bufs: &mut Buffers,
    ctx: &ConnCtx<'_>,
) -> bool {
    let opts = ctx.opts;
    let sem = match head::semantics(&bufs.head) {
        Ok(sem) => sem,
        Err(r) => {
            let err = match r {
                Refusal::BadRequest(why) => HttpError::BadRequest(why),
                Refusal::ExpectationFailed => HttpError::ExpectationFailed,
            };
            refuse_parsed(wire, bufs, ctx, &err, is_tls);
            return false;
        }
    };
    if matches!(sem.framing, BodyFraming::Length(n) if n > opts.max_body_bytes) {
        refuse_parsed(wire, bufs, ctx, &HttpError::PayloadTooLarge, is_tls);
        return false;
    }
    let mut body = BodyState::new(
        sem.framing,
        opts.max_body_bytes,
        opts.body_read_timeout,
        opts.body_total_timeout,
    );
    if !body.is_done() {
        let mut held = Reservation::new(Arc::clone(ctx.budget));
        if let BodyFraming::Length(n) = sem.framing
            && held.grow(n).is_err()
        {
            refuse_parsed(wire, bufs, ctx, &HttpError::Overloaded, is_tls);
            return false;
        }
        body.reservation = Some(held);
    }
    body.expect_pending = sem.expect_continue && !body.is_done();
    let is_head = bufs.head.method() == "HEAD";
    let minor = bufs.head.minor;
    let resp = {
        let mut req = Request {
            head: &bufs.head,
            peer,
            is_tls,
            body: &mut body,
            inbuf: &mut bufs.inbuf,
            wire: &mut *wire,
            budget: ctx.budget,
        };
        call_handler(ctx.handler, &mut req)
    };
    // The body and the handler's working memory are gone with the handler's frame.
    body.reservation = None;
    let framing = response::ResponseMode {
        is_head,
        minor,
        keep_alive: sem.keep_alive
            && !ctx.stopping()
            && !body.failed
            && !body.expect_pending
            && body
                .declared_left()
                .is_none_or(|left| left <= UNREAD_BODY_DRAIN_MAX),
        tls: is_tls,
    };
    if matches!(resp.body, response::Body::Stream(_)) {
        // A stream can hold this thread for minutes without reading from the client: its
        // input buffer is given back rather than held for every open stream.
        bufs.inbuf.release_if_empty();
    }
    let Ok(keep) = response::write_response(wire, &mut bufs.out, resp, &framing) else {
        return false;
    };
    let unread = !body.is_done();
    if keep && (!unread || drain_soon(&mut body, &mut bufs.inbuf, wire, opts)) {
        return true;
    }
    if unread || !bufs.inbuf.is_empty() {
        linger(wire);
    } else {
        wire.shutdown_write();
    }
    false
}

/// Discards the unread rest of a small body if it arrives soon, to keep the connection.
fn drain_soon(
    body: &mut BodyState,
    inbuf: &mut InBuf,
    wire: &mut dyn Wire,
    opts: &ServerOptions,
) -> bool {
    let until = Instant::now() + DRAIN_TIME.min(opts.header_timeout);
    body.drain(inbuf, wire, UNREAD_BODY_DRAIN_MAX, until)
}

fn call_handler(handler: &dyn Handler, req: &mut Request<'_>) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("handler panicked on {} {}", req.method(), req.path());
            error_response(handler, Some(req.path()), &HttpError::Internal)
                .with_header("Connection", "close")
        }
    }
}

/// Answers a parsed head with a layer error, naming its path to the handler.
fn refuse_parsed(
    wire: &mut dyn Wire,
    bufs: &mut Buffers,
    ctx: &ConnCtx<'_>,
    err: &HttpError,
    tls: bool,
) {
    let target = bufs.head.target();
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    refuse(wire, bufs, ctx, Some(&path), err, tls);
}

/// Writes a layer error in full, then closes so the client can still read it.
fn refuse(
    wire: &mut dyn Wire,
    bufs: &mut Buffers,
    ctx: &ConnCtx<'_>,
    path: Option<&str>,
    err: &HttpError,
    tls: bool,
) {
    let resp = error_response(ctx.handler, path, err);
    let framing = response::ResponseMode {
        is_head: false,
        minor: 1,
        keep_alive: false,
        tls,
    };
    if response::write_response(wire, &mut bufs.out, resp, &framing).is_ok() {
        linger(wire);
    }
    bufs.inbuf.clear();
}

/// The handler's rendering of a layer error (a bare status if that panics), with the
/// error's `Retry-After` when the rendering has none.
pub(crate) fn error_response(
    handler: &dyn Handler,
    path: Option<&str>,
    err: &HttpError,
) -> Response {
    let resp = match catch_unwind(AssertUnwindSafe(|| handler.error_response(path, err))) {
        Ok(resp) => resp,
        Err(_) => Response::new(err.status()),
    };
    match err.retry_after() {
        Some(secs) if resp.header("retry-after").is_none() => {
            resp.with_header("Retry-After", itoa::Buffer::new().format(secs).to_owned())
        }
        _ => resp,
    }
}

/// Shuts our sending side, then reads (bounded in time and bytes) until the peer closes, so
/// unread input does not turn our close into a reset that destroys the response in flight.
pub(crate) fn linger(wire: &mut dyn Wire) {
    wire.shutdown_write();
    let end = Instant::now() + LINGER_TIME;
    let mut scratch = [0u8; 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || wire.set_read_timeout(left).is_err() {
            break;
        }
        match wire.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
