//! HTTP layer: one client (or one handler bug) must not take the server's shared resources —
//! connection slots, threads, buffered-body memory — from everyone else.
// Test code: a failed unwrap is a failed test (helpers are not `#[test]` fns for clippy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use noviqi::http::{Request, Response, ServerOptions};
use support::eventually;
use support::http::{Client, connect, counting, get, opts, start};

/// Answers 405 on `/refused` without reading the body, 200 `ok` elsewhere.
fn refusing(req: &mut Request<'_>) -> Response {
    if req.path() == "/refused" {
        Response::new(405)
    } else {
        Response::bytes(200, "text/plain", &b"ok"[..])
    }
}

/// Writes one byte to each stream every 50 ms until `stop` is set, a write fails or 20 s pass.
fn trickle(mut streams: Vec<TcpStream>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..400 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            streams.retain_mut(|s| s.write_all(b"x").is_ok());
            if streams.is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn refused_requests_with_trickled_bodies_do_not_hold_the_slots() {
    let srv = start(
        ServerOptions {
            max_connections: 3,
            // Long body timeouts, as in production: the drain must not be paced by them.
            body_read_timeout: Duration::from_secs(30),
            body_total_timeout: Duration::from_secs(300),
            ..opts()
        },
        refusing,
    );
    let mut writers = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::new(connect(srv.addr()));
        c.send(b"POST /refused HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
        assert_eq!(c.read_response(false).unwrap().status, 405);
        writers.push(c.stream.try_clone().unwrap());
        held.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = trickle(writers, Arc::clone(&stop));
    let served = eventually(Duration::from_secs(5), || {
        get(srv.addr(), "/").is_some_and(|r| r.status == 200)
    });
    stop.store(true, Ordering::SeqCst);
    trickler.join().unwrap();
    assert!(served, "trickling clients kept every connection slot");
}

#[test]
fn a_small_unread_body_keeps_the_connection_alive() {
    let srv = start(opts(), refusing);
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST /refused HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("connection"), None);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().body, b"ok");
}

#[test]
fn a_panicking_stream_is_truncated_and_frees_its_slot() {
    let srv = start(
        ServerOptions {
            max_connections: 1,
            ..opts()
        },
        |req: &mut Request<'_>| {
            if req.path() == "/panic" {
                Response::stream(200, |w| {
                    w.send(b"partial")?;
                    panic!("stream producer failed");
                })
            } else {
                Response::bytes(200, "text/plain", &b"ok"[..])
            }
        },
    );
    let mut c = Client::new(connect(srv.addr()));
    c.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    c.send(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(c.read_chunk().as_deref(), Some(&b"partial"[..]));
    let rest = c.rest_until_close().expect("connection left open");
    assert!(rest.is_empty(), "no last chunk after a panic: {rest:?}");
    // The one slot is free again: the next connection is served.
    assert!(eventually(Duration::from_secs(3), || {
        get(srv.addr(), "/").is_some_and(|r| r.status == 200)
    }));
}

/// Opens a keep-alive connection and has one request answered on it, so it is surely served.
fn served_connection(addr: std::net::SocketAddr) -> Client<TcpStream> {
    let mut c = Client::new(connect(addr));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().status, 200);
    c
}

#[test]
fn connections_per_address_are_capped() {
    let (_, h) = counting();
    let srv = start(
        ServerOptions {
            max_connections_per_ip: Some(2),
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        h,
    );
    let mut held = vec![served_connection(srv.addr()), served_connection(srv.addr())];
    let t0 = Instant::now();
    let r = get(srv.addr(), "/").unwrap();
    assert_eq!(r.status, 429);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.body.starts_with(b"{\"error\""));
    drop(held.pop());
    assert!(eventually(Duration::from_secs(3), || {
        get(srv.addr(), "/").is_some_and(|r| r.status == 200)
    }));
}

#[test]
fn trusted_proxies_are_not_capped() {
    let (_, h) = counting();
    let srv = start(
        ServerOptions {
            max_connections_per_ip: Some(2),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        h,
    );
    let _held: Vec<_> = (0..4).map(|_| served_connection(srv.addr())).collect();
    assert_eq!(get(srv.addr(), "/").unwrap().status, 200);
}

#[test]
fn a_second_big_body_gets_503_while_the_first_is_held() {
    let (got_tx, got_rx) = mpsc::channel::<usize>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let release_rx = Mutex::new(release_rx);
    let srv = start(
        ServerOptions {
            max_buffered_bytes: 100_000,
            ..opts()
        },
        move |req: &mut Request<'_>| match req.read_body(u64::MAX) {
            Ok(body) => {
                if req.path() == "/hold" {
                    got_tx.lock().unwrap().send(body.len()).unwrap();
                    let rx = release_rx.lock().unwrap();
                    rx.recv_timeout(Duration::from_secs(10)).unwrap();
                }
                Response::bytes(200, "text/plain", body.len().to_string())
            }
            Err(e) => Response::new(e.status()),
        },
    );
    let body = vec![b'x'; 60_000];
    let head =
        |path: &str| format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n");
    let mut first = Client::new(connect(srv.addr()));
    first.send(head("/hold").as_bytes());
    first.send(&body);
    assert_eq!(got_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 60_000);

    // A declared length is reserved up front: refused before its body is sent.
    let mut second = Client::new(connect(srv.addr()));
    second.send(head("/").as_bytes());
    let r = second.read_response(false).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.body.starts_with(b"{\"error\""));

    // A chunked body is reserved as it grows: the handler's read fails with a 503.
    let mut third = Client::new(connect(srv.addr()));
    third.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..6 {
        let mut chunk = format!("{:x}\r\n", 10_000).into_bytes();
        chunk.extend_from_slice(&body[..10_000]);
        chunk.extend_from_slice(b"\r\n");
        if third.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = third.stream.write_all(b"0\r\n\r\n");
    assert_eq!(third.read_response(false).unwrap().status, 503);

    release_tx.send(()).unwrap();
    assert_eq!(first.read_response(false).unwrap().body, b"60000");
    // The first body's bytes are given back: the same body is taken now.
    let mut fourth = Client::new(connect(srv.addr()));
    fourth.send(head("/").as_bytes());
    fourth.send(&body);
    assert_eq!(fourth.read_response(false).unwrap().body, b"60000");
}

#[test]
fn reserved_working_memory_counts_against_the_same_budget() {
    let (got_tx, got_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let release_rx = Mutex::new(release_rx);
    let srv = start(
        ServerOptions {
            max_buffered_bytes: 100_000,
            ..opts()
        },
        move |req: &mut Request<'_>| {
            if let Err(e) = req.reserve_extra(80_000) {
                return Response::new(e.status())
                    .with_header("retry-after", e.retry_after().unwrap().to_string());
            }
            if req.path() == "/hold" {
                got_tx.lock().unwrap().send(()).unwrap();
                let rx = release_rx.lock().unwrap();
                rx.recv_timeout(Duration::from_secs(10)).unwrap();
            }
            Response::new(204)
        },
    );
    let mut first = Client::new(connect(srv.addr()));
    first.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    got_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let r = get(srv.addr(), "/").unwrap();
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    // A body that no longer fits beside the reserved memory is refused by the layer.
    let mut c = Client::new(connect(srv.addr()));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 30000\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().status, 503);
    release_tx.send(()).unwrap();
    assert_eq!(first.read_response(false).unwrap().status, 204);
    assert_eq!(get(srv.addr(), "/").unwrap().status, 204);
}
