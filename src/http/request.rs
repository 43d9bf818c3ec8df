//! What a handler sees of one request: the parsed head, the peer, TLS or not, and lazy
//! access to the body (nothing is read until the handler asks).
//!
//! State owned here: nothing of its own; a `Request` borrows the connection's head copy,
//! input buffer, transport and body state for the length of one handler call.

use std::net::SocketAddr;
use std::sync::Arc;

use super::HttpError;
use super::body::{BodyError, BodyState};
use super::budget::{Budget, Reservation};
use super::head::Head;
use super::wire::{InBuf, Wire};

/// One parsed request, valid for one handler call.
pub struct Request<'a> {
    pub(crate) head: &'a Head,
    pub(crate) peer: SocketAddr,
    pub(crate) is_tls: bool,
    pub(crate) body: &'a mut BodyState,
    pub(crate) inbuf: &'a mut InBuf,
    pub(crate) wire: &'a mut dyn Wire,
    pub(crate) budget: &'a Arc<Budget>,
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET` (case as sent).
    pub fn method(&self) -> &str {
        self.head.method()
    }

    /// The request target as sent: path plus query.
    pub fn target(&self) -> &str {
        self.head.target()
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    pub fn version(&self) -> Version {
        if self.head.minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// The first value of header `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Every header in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }

    /// The socket peer (the client, or the reverse proxy in front of us).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the request came over TLS terminated here.
    pub fn is_tls(&self) -> bool {
        self.is_tls
    }

    /// Reads the whole body, refusing one longer than `limit` (or `max_body_bytes`) without
    /// reading past the limit. After an error the connection is closed after the response.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        self.body.restrict(limit)?;
        // A declared length is allocated once, whole (it is within the limit and already
        // reserved against `max_buffered_bytes`; pages a slow client never fills are never
        // touched), so a big body is never copied to grow. It is zeroed only just ahead of
        // the reads, at most 256 KiB at a time; chunked bodies grow 16 KiB at a time.
        let declared = self.body.declared_left().unwrap_or(0);
        let mut out = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        let mut len = 0;
        loop {
            if out.len() - len < 8192 {
                let room = match self.body.declared_left() {
                    // Complete: growing by even a byte here would reallocate, copying the
                    // whole body into twice its size.
                    Some(0) => break,
                    Some(left) => usize::try_from(left.min(256 * 1024)).unwrap_or(0).max(1),
                    None => 16 * 1024,
                };
                out.resize(len + room, 0);
            }
            match self.body.read(self.inbuf, self.wire, &mut out[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => return Err(e),
            }
        }
        out.truncate(len);
        Ok(out)
    }

    /// Reserves `bytes` of working memory against the server's `max_buffered_bytes` (the
    /// budget request bodies are held in), held until this handler call returns. For work
    /// that holds several times a body's size, such as building a JSON value from it. On
    /// `Err` (`HttpError::Overloaded`) nothing more is held; answer it with 503 and
    /// `Retry-After` ([`HttpError::retry_after`]).
    pub fn reserve_extra(&mut self, bytes: u64) -> Result<(), HttpError> {
        let budget = self.budget;
        self.body
            .reservation
            .get_or_insert_with(|| Reservation::new(Arc::clone(budget)))
            .grow(bytes)
    }
}
