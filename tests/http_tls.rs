//! HTTP layer: TLS termination with a generated certificate, HSTS, and key-file errors.
// Test code: a failed unwrap is a failed test (helpers are not `#[test]` fns for clippy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpStream;
use std::sync::Arc;

use noviqi::http::{ServerOptions, TlsError, tls_config};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::http::{Client, counting, opts, start};

fn write_cert(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, rcgen::Certificate) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert)
}

#[test]
fn serves_https_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file, cert) = write_cert(dir.path());
    let (_, h) = counting();
    let srv = start(
        ServerOptions {
            tls: Some(tls_config(&cert_file, &key_file).unwrap()),
            ..opts()
        },
        h,
    );

    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let tcp = TcpStream::connect(srv.addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut c = Client::new(StreamOwned::new(conn, tcp));
    for _ in 0..2 {
        c.send(b"GET /secure HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello, world!");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000")
        );
    }
    assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn a_bad_key_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, _, _) = write_cert(dir.path());
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "SECRET-NOT-A-KEY\n").unwrap();
    let err = tls_config(&cert_file, &bad).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }));
    let msg = err.to_string();
    assert!(msg.contains("bad.pem") && !msg.contains("SECRET"), "{msg}");

    // A certificate where the key should be: still a key error naming the file.
    let err = tls_config(&cert_file, &cert_file).unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");

    // A key that does not match the certificate.
    let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, other.signing_key.serialize_pem()).unwrap();
    assert!(matches!(
        tls_config(&cert_file, &wrong),
        Err(TlsError::Rejected(_))
    ));

    let missing = dir.path().join("missing.pem");
    let err = tls_config(&missing, &bad).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
