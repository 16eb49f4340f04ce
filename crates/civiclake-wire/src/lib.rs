//! Analysts' tools connect directly: the PostgreSQL wire protocol ([`pg`]) and Arrow Flight
//! SQL ([`flight`]), with the same tokens, grants, read-only rules and limits as the HTTP
//! API — both run their SQL through the query engine's shared entry points
//! ([`civiclake_query::QueryEngine::sql_in`], [`civiclake_query::QueryEngine::plan_in`])
//! in a session of the caller's scope ([`civiclake_api::auth::scope_of`]).

mod error;
pub mod flight;
pub mod pg;

pub use flight::FlightServer;
pub use pg::{DATABASE, PgServer};

use std::path::Path;
use std::sync::Arc;

/// A TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1), with rustls's ring provider (the binary links two providers, so none is the
/// process default).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
