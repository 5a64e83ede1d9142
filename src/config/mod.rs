//! Typed configuration: command-line flags, `SIDETRACE_*` variables (clap
//! reads them), then the standard `OTEL_*` variables, then defaults.
//!
//! `Config::from_args` is pure in the sense that matters for tests: the
//! environment comes in as a lookup function, so tests never touch the
//! process environment. Every check that can be made before start-up is
//! made there (values, conflicts, TLS material, the spool directory), and
//! every failure is a `config::Error`.

mod args;
mod error;
pub mod export;
mod export_args;
mod limits_args;
pub mod parse;
mod resource;
mod run;
mod ser;
mod tls;

pub use args::{AccessLogFormat, RunArgs, StitchMode};
pub use error::Error;
pub use export_args::{Compression, ExportArgs, LogsExporter, OtlpProtocol, SpoolMode};
pub use limits_args::LimitArgs;
pub use parse::ApiListen;
pub use resource::{Resource, service_from_pod_name};
pub use run::Config;
pub use tls::{TlsFiles, client_config};
