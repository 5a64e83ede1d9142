//! TLS to the collector with rustls: the system roots or `--otlp-ca`, and a
//! client certificate for mTLS. Built while the configuration is read, so
//! that bad certificates or keys stop start-up with a clear line instead of
//! failing every export later.

use super::error::Error;
use super::ser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use std::sync::Arc;

/// PEM contents, read and checked at start-up; gRPC (tonic) takes them as
/// PEM, HTTP as the rustls client built from them.
#[derive(Clone, Default, Serialize)]
pub struct TlsFiles {
    #[serde(rename = "ca", serialize_with = "ser::is_some")]
    pub ca: Option<Vec<u8>>,
    #[serde(rename = "client_certificate", serialize_with = "ser::is_some")]
    pub client_cert: Option<Vec<u8>>,
    #[serde(skip)]
    pub client_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("client_key", &self.client_key.is_some())
            .finish()
    }
}

pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, Error> {
    let tls = |what: &'static str| move |e: &dyn std::fmt::Display| Error::Tls { what, reason: e.to_string() };
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| tls("--otlp-ca")(&e))?;
                roots.add(cert).map_err(|e| tls("--otlp-ca")(&e))?;
            }
            if roots.is_empty() {
                return Err(tls("--otlp-ca")(&"no certificate in the file"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("TLS")(&e))?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls("--otlp-client-cert")(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls("--otlp-client-key")(&e))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| tls("--otlp-client-cert/--otlp-client-key")(&e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
