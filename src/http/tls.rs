//! TLS termination with rustls 0.23 on the ring provider (named explicitly, never the
//! process default): loading the PEM certificate chain and key, and the handshake under the
//! header deadline.
//!
//! State owned here: none; the `ServerConfig` is built once and shared by the caller.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::wire::{Socket, remaining};

/// Why a TLS configuration could not be built. Messages name the file, never key bytes.
#[derive(Debug)]
pub enum TlsError {
    /// The certificate file could not be read or holds no usable certificate.
    Certificate { file: PathBuf, reason: String },
    /// The key file could not be read or holds no PKCS#8, SEC1 or RSA private key.
    Key { file: PathBuf, reason: String },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    Rejected(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate { file, reason } => {
                write!(f, "TLS certificate file {}: {reason}", file.display())
            }
            TlsError::Key { file, reason } => {
                write!(f, "TLS key file {}: {reason}", file.display())
            }
            TlsError::Rejected(why) => write!(f, "TLS certificate and key rejected: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Describes a PEM error without echoing file content.
fn pem_reason(e: &pem::Error, what: &str) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it ({})", e.kind()),
        pem::Error::NoItemsFound => format!("no {what} found in it (expected PEM)"),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".to_owned(),
        _ => "not a valid PEM file".to_owned(),
    }
}

/// Builds a TLS 1.2+ server config with ALPN `http/1.1` from a PEM chain and a PEM key
/// (PKCS#8, SEC1 or RSA).
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Certificate {
        file: cert_file.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(pem_reason(&e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(cert_err(
            "no certificate found in it (expected PEM)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        file: key_file.to_owned(),
        reason: pem_reason(&e, "private key"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server-side TLS stream over TCP.
pub(crate) type TlsStream = StreamOwned<ServerConnection, TcpStream>;

impl Socket for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

/// Runs the TLS handshake on `tcp`, all of it before `deadline`.
pub(crate) fn handshake(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
    deadline: Instant,
) -> io::Result<TlsStream> {
    let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.sock.set_read_timeout(Some(remaining(deadline)?))?;
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}
