//! Certificates for `scripts/bench`'s TLS workload when the `openssl` CLI is missing: a CA and
//! a leaf it signs for 127.0.0.1 (IP SAN) and localhost, ECDSA P-256, as `rcgen` makes them.
//! A bench tool only.
//!
//! Usage: `bench_certs DIR` writes DIR/ca.pem, DIR/leaf.pem and DIR/leaf.key (PKCS#8).

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: bench_certs DIR");
        return ExitCode::FAILURE;
    };
    match write(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "noviqi bench CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&leaf_key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("leaf.pem"), leaf.pem())?;
    std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem())?;
    Ok(())
}
