//! HTTP layer: keep-alive, pipelining, HTTP/1.0, HEAD, streaming, the pool and shutdown.
// Test code: a failed unwrap is a failed test (helpers are not `#[test]` fns for clippy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use noviqi::http::{Request, Response, ServerOptions};
use support::eventually;
use support::http::{Client, connect, counting, get, opts, start};

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    let mut c = Client::new(connect(srv.addr()));
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nPOST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody\
POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    for (path, len) in [("/1", "0"), ("/2", "4"), ("/3", "3"), ("/4", "0")] {
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-path"), Some(path));
        assert_eq!(r.header("x-body-len"), Some(len));
        assert_eq!(r.body, b"hello, world!");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn http10_closes_unless_keep_alive_and_is_never_chunked() {
    let srv = start(opts(), |req: &mut Request<'_>| {
        if req.path() == "/stream" {
            Response::stream(200, |w| {
                w.send(b"one ")?;
                w.send(b"two")
            })
        } else {
            Response::bytes(200, "text/plain", &b"hi"[..])
        }
    });
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
    assert!(c.closed());

    let mut c = Client::new(connect(srv.addr()));
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, b"one two");
}

#[test]
fn head_gets_the_length_and_no_body() {
    let (_, h) = counting();
    let srv = start(opts(), h);
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("13"));
    assert!(r.header("date").is_some());
    // If HEAD had a body, this would read it as a status line.
    let r = c.read_response(false).unwrap();
    assert_eq!(r.header("x-path"), Some("/after"));
}

#[test]
fn streamed_pieces_arrive_as_they_are_produced() {
    let srv = start(opts(), |_: &mut Request<'_>| {
        Response::stream(200, |w| {
            for i in 0..5 {
                if i > 0 {
                    thread::sleep(Duration::from_millis(100));
                }
                w.send(format!("data: {i}\n\n").as_bytes())?;
            }
            Ok(())
        })
        .with_header("Content-Type", "text/event-stream")
    });
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let mut times = Vec::new();
    while let Some(chunk) = c.read_chunk() {
        assert!(chunk.starts_with(b"data: "));
        times.push(Instant::now());
    }
    assert_eq!(times.len(), 5);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(80), "gap {gap:?}");
    }
}

#[test]
fn a_client_gone_mid_stream_fails_the_next_write_and_frees_the_thread() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = start(opts(), move |_: &mut Request<'_>| {
        let tx = tx.lock().unwrap().clone();
        Response::stream(200, move |w| {
            for _ in 0..200 {
                if let Err(e) = w.send(b"data: tick\n\n") {
                    tx.send(Instant::now()).unwrap();
                    return Err(e);
                }
                thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })
    });
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    c.read_head().unwrap();
    c.read_chunk().unwrap();
    let gone = Instant::now();
    drop(c);
    let failed_at = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("write never failed");
    assert!(failed_at - gone < Duration::from_secs(1));
}

#[test]
fn a_full_pool_gives_fast_503s_and_recovers() {
    let (_, h) = counting();
    let srv = start(
        ServerOptions {
            max_connections: 2,
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        h,
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::new(connect(srv.addr()));
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response(false).unwrap().status, 200);
        held.push(c);
    }
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = get(srv.addr(), "/").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.body.starts_with(b"{\"error\""));
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "503 took {:?}",
            t0.elapsed()
        );
    }
    drop(held);
    assert!(eventually(Duration::from_secs(3), || get(srv.addr(), "/")
        .is_some_and(|r| r.status == 200)));
}

#[test]
fn shutdown_closes_idle_connections_and_lets_in_flight_requests_finish() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let started = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&started);
    let srv = start(
        ServerOptions {
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        move |req: &mut Request<'_>| {
            if req.path() == "/slow" {
                s2.fetch_add(1, Ordering::SeqCst);
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(5));
            }
            Response::bytes(200, "text/plain", &b"done"[..])
        },
    );
    let addr = srv.addr();
    let mut idle = Client::new(connect(addr));
    idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.read_response(false).unwrap().status, 200);
    let mut busy = Client::new(connect(addr));
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(eventually(Duration::from_secs(2), || started
        .load(Ordering::SeqCst)
        == 1));

    let stopper = thread::spawn(move || srv.shutdown());
    let t0 = Instant::now();
    assert!(idle.closed());
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "idle connection not closed at once"
    );
    release_tx.send(()).unwrap();
    let r = busy.read_response(false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"done"[..]));
    assert_eq!(r.header("connection"), Some("close"));
    stopper.join().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn connection_threads_have_stack_for_deep_json() {
    let srv = start(opts(), |req: &mut Request<'_>| {
        let body = req.read_body(1 << 20).unwrap();
        let v: Result<serde_json::Value, _> = serde_json::from_slice(&body);
        Response::new(if v.is_ok() { 200 } else { 400 })
    });
    // 127 levels of arrays and objects: the deepest serde_json accepts (limit 128).
    let mut doc = String::new();
    for i in 0..127 {
        doc.push_str(if i % 2 == 0 { "[" } else { "{\"a\":" });
    }
    for i in (0..127).rev() {
        doc.push_str(if i % 2 == 0 { "]" } else { "}" });
    }
    let mut c = Client::new(connect(srv.addr()));
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let deeper = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{deeper}",
            deeper.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).unwrap().status, 400);
}

/// A declared body is read into one allocation of exactly its size: never grown by
/// reallocation (a copy of the whole body), not even by one byte at its end.
#[test]
fn a_declared_body_is_read_into_exactly_its_size() {
    let srv = start(opts(), |req: &mut Request<'_>| {
        let body = req.read_body(4 << 20).unwrap();
        let exact = body.capacity() == body.len() && body.iter().all(|&b| b == b'x');
        Response::new(if exact { 200 } else { 500 })
    });
    for len in [0usize, 1, 8191, 100_000, 2 << 20] {
        let mut c = Client::new(connect(srv.addr()));
        let mut request =
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").into_bytes();
        request.resize(request.len() + len, b'x');
        c.send(&request);
        assert_eq!(c.read_response(false).unwrap().status, 200, "{len} bytes");
    }
}
