//! The webhook's certificate, reloaded when its files change.
//!
//! cert-manager renews the certificate into a Secret, and the kubelet
//! swaps the mounted files in place (an atomic symlink flip), so the
//! server must pick up the new pair without a restart. On a handshake, at
//! most once per check interval, the files' metadata (modification time,
//! size, inode) is compared with what was loaded; only a change makes it
//! read and parse them. A pair that does not load (half written, or a key
//! that does not match its certificate) leaves the previous one in use and
//! is tried again once the files change again.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What a change of the files is recognised by.
type Stamp = [(i64, i64, u64, u64); 2];

#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    checked: Mutex<(Instant, Option<Stamp>)>,
}

impl ReloadingCert {
    /// Loads the pair once; an error here stops start-up.
    pub fn load(cert: &Path, key: &Path, interval: Duration, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let stamp = stamp(cert, key).ok();
        let loaded = load_pair(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            interval,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            checked: Mutex::new((Instant::now(), stamp)),
        })
    }

    fn maybe_reload(&self) {
        let Ok(mut checked) = self.checked.try_lock() else { return };
        if checked.0.elapsed() < self.interval {
            return;
        }
        checked.0 = Instant::now();
        let Ok(now) = stamp(&self.cert, &self.key) else { return };
        if Some(now) == checked.1 {
            return;
        }
        checked.1 = Some(now);
        match load_pair(&self.cert, &self.key, &self.provider) {
            Ok(pair) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(pair);
                }
                tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate changed but does not load; keeping the previous one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        self.current.read().ok().map(|c| c.clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> std::io::Result<Stamp> {
    let one = |p: &Path| std::fs::metadata(p).map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.len()));
    Ok([one(cert)?, one(key)?])
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let read = |p: &Path, flag: &str| std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()));
    let (cert_pem, key_pem) = (read(cert, "--tls-cert")?, read(key, "--tls-key")?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| format!("--tls-cert/--tls-key: {e}"))
}
