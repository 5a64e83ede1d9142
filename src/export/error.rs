//! Starting the export pipeline.

/// What can still fail when the exporters start, once the configuration
/// has been checked: the disk, or TLS material tonic reads its own way.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--spool-dir: cannot use {}: {source}", dir.display())]
    Spool { dir: std::path::PathBuf, source: std::io::Error },
    #[error("--otlp-endpoint: TLS for gRPC: {0}")]
    GrpcTls(tonic::transport::Error),
    #[error("--otlp-header {0}: not valid gRPC metadata")]
    GrpcMetadata(String),
}
