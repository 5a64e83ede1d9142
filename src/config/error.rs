//! Every way a configuration can be wrong, found before anything starts:
//! a value that does not parse, options that contradict each other, a file
//! that cannot be read, TLS material that does not load, a spool directory
//! that cannot be used. Each message names the flag or variable at fault;
//! the command prints it on one line and exits with code 2.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `what` is the flag or environment variable; `reason` says what was
    /// expected.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// Two options that cannot hold together.
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what}: {} is not a PEM file", path.display())]
    NotPem { what: &'static str, path: PathBuf },
    /// Certificates or keys that rustls will not take.
    #[error("{what}: {reason}")]
    Tls { what: &'static str, reason: String },
    #[error("--spool-dir: cannot use {}: {source}", dir.display())]
    SpoolDir { dir: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
}
