//! Fuzz targets of the HTTP server side: request heads, chunked bodies, whole connections.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::{ByteWire, split_input};
use crate::http::body::BodyState;
use crate::http::conn::{self, Buffers, ConnCtx};
use crate::http::head::{self, BodyFraming, Head, HeadLimits};
use crate::http::wire::InBuf;
use crate::http::{Request, Response, ServerOptions};

// ---------------------------------------------------------------------------------------------
// HTTP server side: request heads, chunked bodies, whole connections

fn head_limits() -> HeadLimits {
    HeadLimits {
        max_bytes: 32 * 1024,
        max_headers: 100,
        first_byte: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        deadline: None,
    }
}

/// `http_head`: a request head (plus whatever follows) through `try_parse` and `semantics`.
/// Properties: parsing it in two steps (as a trickled head is) gives what parsing it at once
/// gives; the framing decided agrees with the headers it was decided from.
pub fn http_head(data: &[u8]) {
    let lim = head_limits();
    let mut whole = Head::default();
    let once = head::try_parse(data, &mut 0, &mut whole, &lim);
    let mut stepped = Head::default();
    let mut scanned = 0;
    let twice = match head::try_parse(&data[..data.len() / 2], &mut scanned, &mut stepped, &lim) {
        Ok(None) => head::try_parse(data, &mut scanned, &mut stepped, &lim),
        first => first,
    };
    let outcome = |r: &Result<Option<usize>, head::HeadError>| format!("{r:?}");
    let Ok(Some(len)) = once else {
        // Refused or incomplete at once: stepped, it is the same, or (a refusal) still
        // incomplete. Leading empty lines end the search window early for the whole head,
        // so its error can be seen sooner; a stepped parse sees it once the head ends.
        let later = matches!((&once, &twice), (Err(_), Ok(None)));
        assert!(
            later || outcome(&once) == outcome(&twice),
            "a two-step parse disagrees: {once:?} vs {twice:?}"
        );
        return;
    };
    assert_eq!(
        outcome(&once),
        outcome(&twice),
        "a two-step parse disagrees"
    );
    assert!(len <= data.len() && len <= lim.max_bytes);
    assert!(whole.headers().count() <= lim.max_headers);
    assert_eq!(stepped.method(), whole.method());
    assert_eq!(stepped.target(), whole.target());
    assert!(stepped.headers().eq(whole.headers()));
    let Ok(sem) = head::semantics(&whole) else {
        return;
    };
    let count = |name: &str| {
        whole
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    match sem.framing {
        BodyFraming::Chunked => {
            assert_eq!(whole.minor, 1, "chunked framing on HTTP/1.0");
            assert_eq!(count("content-length"), 0);
            assert_eq!(count("transfer-encoding"), 1);
        }
        BodyFraming::Length(n) => {
            assert_eq!(count("transfer-encoding"), 0);
            let declared = whole.header("content-length").map(str::parse::<u64>);
            assert!(count("content-length") <= 1);
            match declared {
                None => assert_eq!(n, 0),
                Some(d) => assert_eq!(d.ok(), Some(n)),
            }
        }
    }
}

/// The most a chunked body may decode to in [`http_chunked`].
const CHUNKED_LIMIT: u64 = 1024;

fn decode_chunked(payload: &[u8], lens: &[usize]) -> (Result<Vec<u8>, String>, Vec<u8>) {
    let mut wire = ByteWire::new(payload, lens);
    let mut inbuf = InBuf::with_capacity(16);
    let mut state = BodyState::new(
        BodyFraming::Chunked,
        CHUNKED_LIMIT,
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let mut body = Vec::new();
    let mut piece = [0u8; 61];
    let result = loop {
        match state.read(&mut inbuf, &mut wire, &mut piece) {
            Ok(0) => break Ok(body),
            Ok(n) => body.extend_from_slice(&piece[..n]),
            Err(e) => break Err(e.to_string()),
        }
    };
    let mut rest = inbuf.data().to_vec();
    rest.extend_from_slice(wire.rest());
    (result, rest)
}

/// `http_chunked`: a chunked request body, read in the pieces the input's prefix chooses.
/// Properties: the decoded body never exceeds the limit, nothing past the body is consumed
/// beyond what was buffered, and the split does not change the decoded body or what follows.
pub fn http_chunked(data: &[u8]) {
    let (lens, payload) = split_input(data);
    let (split, split_rest) = decode_chunked(payload, &lens);
    let (whole, whole_rest) = decode_chunked(payload, &[]);
    if let Ok(body) = &split {
        assert!(body.len() as u64 <= CHUNKED_LIMIT);
    }
    assert!(split_rest.len() <= payload.len());
    match (&split, &whole) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the split changed the body");
            assert_eq!(
                split_rest, whole_rest,
                "the split changed what follows the body"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("split and whole runs disagree: {split:?} vs {whole:?}"),
    }
}

/// The handler of [`http_conn`]: reads the body of a POST, streams for `/stream`, else
/// answers without reading (so unread bodies are drained or the connection closed).
fn conn_handler(req: &mut Request<'_>) -> Response {
    if req.method() == "POST" {
        return match req.read_body(4096) {
            Ok(body) => Response::bytes(200, "application/octet-stream", body),
            Err(e) => Response::new(e.status()),
        };
    }
    if req.path() == "/stream" {
        return Response::stream(200, |w: &mut crate::http::StreamWriter<'_>| {
            w.send(b"data: 1\n\n")?;
            w.finish(b"data: [DONE]\n\n")
        });
    }
    Response::json(200, "{}")
}

/// `http_conn`: one client connection's bytes, read in the pieces the prefix chooses, through
/// the connection loop (heads, framing, bodies, pipelining, refusals, responses). Property:
/// what the server writes is a sequence of HTTP/1.1 responses.
pub fn http_conn(data: &[u8]) {
    let (lens, payload) = split_input(data);
    let mut wire = ByteWire::new(payload, &lens);
    let opts = ServerOptions {
        max_head_bytes: 4096,
        max_headers: 16,
        max_body_bytes: 8192,
        ..ServerOptions::default()
    };
    let stop = AtomicBool::new(false);
    let budget = std::sync::Arc::new(crate::http::budget::Budget::new(opts.max_buffered_bytes));
    let ctx = ConnCtx {
        opts: &opts,
        handler: &conn_handler,
        stop: &stop,
        budget: &budget,
        idle: None,
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let deadline = Instant::now() + Duration::from_secs(5);
    conn::serve(&mut wire, peer, false, &mut Buffers::new(), &ctx, deadline);
    if !wire.written.is_empty() {
        assert!(wire.written.starts_with(b"HTTP/1.1 "), "not a response");
    }
}
