//! HTTP layer: limits, timeouts and framing refusals over real loopback sockets.
// Test code: a failed unwrap is a failed test (helpers are not `#[test]` fns for clippy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use noviqi::http::{Request, Response, ServerOptions};
use support::http::{Client, connect, counting, opts, start};

#[test]
fn slowloris_head_is_cut_off_at_the_header_deadline() {
    let (calls, h) = counting();
    let srv = start(
        ServerOptions {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        h,
    );
    let stream = connect(srv.addr());
    let mut writer = stream.try_clone().unwrap();
    let t0 = Instant::now();
    let trickle = thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    let mut c = Client::new(stream);
    let resp = c.read_response(false);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    if let Some(resp) = resp {
        assert_eq!(resp.status, 408);
    }
    assert!(c.closed());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    drop(c);
    trickle.join().unwrap();
}

#[test]
fn a_64k_header_gets_431() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    let mut c = Client::new(connect(srv.addr()));
    let big = "a".repeat(64 * 1024);
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(c.read_response(false).unwrap().status, 431);
    assert!(c.closed());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_thousand_headers_get_431() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    let mut c = Client::new(connect(srv.addr()));
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..1000 {
        req.push_str(&format!("X-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    assert_eq!(c.read_response(false).unwrap().status, 431);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn idle_keep_alive_is_closed_after_the_idle_timeout() {
    let (_, h) = counting();
    let srv = start(
        ServerOptions {
            idle_timeout: Duration::from_secs(1),
            ..opts()
        },
        h,
    );
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let t0 = Instant::now();
    assert!(c.closed());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn unparsable_content_length_is_refused_and_the_smuggled_request_never_served() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    for cl in ["abc", "+5", "-1", " 5 ,5", "5, 5", "0x5"] {
        let mut c = Client::new(connect(srv.addr()));
        c.send(
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {cl}\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response(false).unwrap().status, 400, "{cl}");
        assert!(c.read_response(false).is_none(), "{cl}: a second response");
    }
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).unwrap().status, 400);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    for te in ["chunked", "gzip", "chunked, chunked"] {
        let mut c = Client::new(connect(srv.addr()));
        c.send(
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let resp = c.read_response(false).unwrap();
        assert_eq!(resp.status, 400, "{te}");
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(c.read_response(false).is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_truncated_body_is_an_error_not_a_short_body() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let srv = start(opts(), move |req: &mut Request<'_>| {
        let r = req.read_body(1 << 20);
        let status = r.as_ref().map_or_else(|e| e.status(), |_| 200);
        tx.lock()
            .unwrap()
            .send(r.map(|b| b.len()).map_err(|e| e.to_string()))
            .unwrap();
        Response::new(status)
    });
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(got.is_err(), "handler got a body: {got:?}");
    if let Some(resp) = c.read_response(false) {
        assert_ne!(resp.status, 200);
    }
}

#[test]
fn an_oversized_body_gets_413_before_it_is_sent() {
    let (calls, h) = counting();
    let srv = start(
        ServerOptions {
            max_body_bytes: 1 << 20,
            ..opts()
        },
        h,
    );
    let mut c = Client::new(connect(srv.addr()));
    let t0 = Instant::now();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 104857600\r\n\r\n");
    c.send(&[b'x'; 65536]);
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 413);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Chunked: no declared length, so the limit applies as the bytes arrive.
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..20 {
        c.send(format!("{:x}\r\n", 65536).as_bytes());
        c.send(&[b'x'; 65536]);
        c.send(b"\r\n");
    }
    assert_eq!(c.read_response(false).unwrap().status, 413);
}

#[test]
fn expect_continue_sends_100_only_when_the_body_is_read() {
    let (calls, h) = counting();
    let srv = start(opts(), h);
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = c.read_head().unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-body-len"), Some("5"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn expect_continue_with_a_too_large_length_gets_413_without_100() {
    let (calls, h) = counting();
    let srv = start(
        ServerOptions {
            max_body_bytes: 1000,
            ..opts()
        },
        h,
    );
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().status, 413);
    assert!(c.closed());
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A handler that answers without reading: no 100, and the connection is closed.
    let srv = start(opts(), |_: &mut Request<'_>| Response::new(401));
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("connection"), Some("close"));
}

#[test]
fn a_body_the_handler_does_not_read_is_never_parsed_as_a_request() {
    let (calls, _) = counting();
    let c2 = std::sync::Arc::clone(&calls);
    let srv = start(opts(), move |_: &mut Request<'_>| {
        c2.fetch_add(1, Ordering::SeqCst);
        Response::new(204)
    });
    let mut c = Client::new(connect(srv.addr()));
    let inner = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).unwrap().status, 204);
    c.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().status, 204);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_stalled_body_times_out() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let srv = start(
        ServerOptions {
            body_read_timeout: Duration::from_millis(500),
            ..opts()
        },
        move |req: &mut Request<'_>| {
            let t0 = Instant::now();
            let r = req.read_body(1 << 20);
            let status = r.as_ref().map_or_else(|e| e.status(), |_| 200);
            tx.lock().unwrap().send((status, t0.elapsed())).unwrap();
            Response::new(status)
        },
    );
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let (status, took) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("connection"), Some("close"));
}
