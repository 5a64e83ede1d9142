//! The flags of `sidetrace collector`, each also read from a
//! `SIDETRACE_COLLECTOR_*` variable (README.md has the table).

use crate::config::parse::{byte_size, duration, log_filter, nonzero};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct CollectorArgs {
    /// OTLP/HTTP receiver (`/v1/traces`, `/v1/logs`; protobuf or JSON, gzip).
    #[arg(long, env = "SIDETRACE_COLLECTOR_OTLP_HTTP", default_value = "0.0.0.0:4318", value_name = "ADDR")]
    pub otlp_http: SocketAddr,

    /// OTLP/gRPC receiver (TraceService and LogsService).
    #[arg(long, env = "SIDETRACE_COLLECTOR_OTLP_GRPC", default_value = "0.0.0.0:4317", value_name = "ADDR")]
    pub otlp_grpc: SocketAddr,

    /// The query API (`/api/*`) and the UI (`/ui`).
    #[arg(long, env = "SIDETRACE_COLLECTOR_UI", default_value = "0.0.0.0:16686", value_name = "ADDR")]
    pub ui: SocketAddr,

    /// Where spans and logs are kept: a directory (created if missing), or `memory` for a
    /// store that lives as long as the process.
    #[arg(long, env = "SIDETRACE_COLLECTOR_STORAGE", default_value = "./sidetrace-data", value_name = "DIR|memory")]
    pub storage: String,

    /// Spans and logs older than this (by their start time) are removed.
    #[arg(long, env = "SIDETRACE_COLLECTOR_RETENTION", default_value = "72h", value_parser = duration, value_name = "DURATION")]
    pub retention: Duration,

    /// The store's size cap (e.g. 1GiB, 500MB): past it the oldest spans and logs are removed.
    #[arg(long, env = "SIDETRACE_COLLECTOR_MAX_BYTES", default_value = "1GiB", value_parser = byte_size, value_name = "BYTES")]
    pub max_bytes: u64,

    /// Also send everything received on to this OTLP/HTTP endpoint (an OpenTelemetry Collector,
    /// Tempo, Jaeger): its base URL, to which /v1/traces and /v1/logs are appended.
    #[arg(long, env = "SIDETRACE_COLLECTOR_FORWARD", value_name = "URL")]
    pub forward: Option<String>,

    /// A link from a trace to an external log system, for the UI: `{trace_id}`, `{service}`,
    /// `{start_ms}` and `{end_ms}` are filled in.
    #[arg(long, env = "SIDETRACE_COLLECTOR_LOG_LINK_TEMPLATE", value_name = "TEMPLATE")]
    pub log_link_template: Option<String>,

    /// A file holding a bearer token that `/api/*` then requires (`Authorization: Bearer
    /// TOKEN`); the UI asks for it once per browser tab. Without it, whoever reaches --ui reads
    /// every trace.
    #[arg(long, env = "SIDETRACE_COLLECTOR_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,

    /// The collector's own log filter (tracing-subscriber syntax), on stderr.
    #[arg(long, env = "SIDETRACE_LOG", default_value = "info", value_parser = log_filter, value_name = "FILTER")]
    pub log: String,

    /// How often retention and the size cap are enforced (tests shorten it).
    #[arg(long, hide = true, default_value = "10s", value_parser = duration)]
    pub enforce_interval: Duration,

    /// Export requests waiting for the writer; past it senders are told to retry later.
    #[arg(long, hide = true, default_value = "256", value_parser = nonzero)]
    pub write_queue: usize,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Dir(PathBuf),
    Memory,
}

impl CollectorArgs {
    pub fn storage(&self) -> Storage {
        match self.storage.as_str() {
            "memory" => Storage::Memory,
            dir => Storage::Dir(PathBuf::from(dir)),
        }
    }
}
