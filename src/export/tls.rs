//! TLS to the collector with rustls: the system roots or `--otlp-ca`, and a
//! client certificate for mTLS. Errors surface at start-up, never later.

use crate::config::export::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("--otlp-ca: {e}"))?;
                roots.add(cert).map_err(|e| format!("--otlp-ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("--otlp-ca: no certificate in the file".into());
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
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--otlp-client-cert: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("--otlp-client-key: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("--otlp-client-cert/--otlp-client-key: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
