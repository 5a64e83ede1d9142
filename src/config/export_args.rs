//! The export and sampling flags of `sidetrace run`, each with its
//! `SIDETRACE_*` variable. The standard `OTEL_*` variables are read after
//! these, in `config::export`.

use super::parse::{byte_size, duration, header_pair, nonzero, ratio, sampling_rule};
use crate::trace::sampling::SamplingRule;
use clap::{Args, ValueEnum};
use http::{HeaderName, HeaderValue};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "http/json")]
    #[serde(rename = "http/json")]
    HttpJson,
    #[value(name = "grpc")]
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogsExporter {
    Otlp,
    None,
}

/// When batches go to the disk spool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolMode {
    /// When the memory queue is full, a batch exhausted its retries, or at
    /// shutdown.
    #[default]
    Overflow,
    /// Every batch, before it is sent; removed once the backend took it.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    None,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// OTLP endpoint, e.g. http://collector:4318 (/v1/traces is appended to a bare
    /// host for HTTP) [default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT]
    #[arg(long, env = "SIDETRACE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP encoding and transport [default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf]
    #[arg(long, env = "SIDETRACE_OTLP_PROTOCOL", value_enum, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// Header sent with every OTLP export, e.g. authorization=Bearer x; repeatable
    /// [also: OTEL_EXPORTER_OTLP_HEADERS]
    #[arg(long = "otlp-header", env = "SIDETRACE_OTLP_HEADERS", value_delimiter = ',', value_parser = header_pair, value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<(HeaderName, HeaderValue)>,

    /// Compression of OTLP exports [default: OTEL_EXPORTER_OTLP_COMPRESSION, else none]
    #[arg(long, env = "SIDETRACE_OTLP_COMPRESSION", value_enum, value_name = "gzip|none")]
    pub otlp_compression: Option<Compression>,

    /// Time limit of one export request [default: OTEL_EXPORTER_OTLP_TIMEOUT (ms), else 10s]
    #[arg(long, env = "SIDETRACE_OTLP_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub otlp_timeout: Option<Duration>,

    /// PEM file of the CA that signs the collector's certificate, instead of the
    /// system roots [also: OTEL_EXPORTER_OTLP_CERTIFICATE]
    #[arg(long, env = "SIDETRACE_OTLP_CA", value_name = "FILE")]
    pub otlp_ca: Option<PathBuf>,

    /// PEM client certificate for mTLS to the collector [also: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE]
    #[arg(long, env = "SIDETRACE_OTLP_CLIENT_CERT", value_name = "FILE")]
    pub otlp_client_cert: Option<PathBuf>,

    /// PEM private key of --otlp-client-cert [also: OTEL_EXPORTER_OTLP_CLIENT_KEY]
    #[arg(long, env = "SIDETRACE_OTLP_CLIENT_KEY", value_name = "FILE")]
    pub otlp_client_key: Option<PathBuf>,

    /// Send the access log, one record per request with its trace and span ids, as OTLP log
    /// records (batched, retried and spooled like spans; protocol, headers, TLS and timeout as for
    /// spans) [default: OTEL_LOGS_EXPORTER, else none]
    #[arg(long, env = "SIDETRACE_LOGS_EXPORTER", value_enum, value_name = "otlp|none")]
    pub logs_exporter: Option<LogsExporter>,

    /// OTLP endpoint for the access log's records; /v1/logs is appended to a bare host for HTTP
    /// (implies --logs-exporter otlp) [default: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, else beside the
    /// traces' endpoint]
    #[arg(long, env = "SIDETRACE_OTLP_LOGS_ENDPOINT", value_name = "URL")]
    pub otlp_logs_endpoint: Option<String>,

    /// Zipkin v2 endpoint, e.g. http://zipkin:9411/api/v2/spans [also: OTEL_EXPORTER_ZIPKIN_ENDPOINT]
    #[arg(long, env = "SIDETRACE_ZIPKIN_ENDPOINT", value_name = "URL")]
    pub zipkin_endpoint: Option<String>,

    /// Spans per export batch.
    #[arg(long, env = "SIDETRACE_EXPORT_BATCH_SIZE", default_value = "512", value_parser = nonzero, value_name = "SPANS")]
    pub export_batch_size: usize,

    /// Longest wait before a partial batch is sent.
    #[arg(long, env = "SIDETRACE_EXPORT_DELAY", default_value = "1s", value_parser = duration, value_name = "DURATION")]
    pub export_delay: Duration,

    /// Export requests in flight at once, per exporter.
    #[arg(long, env = "SIDETRACE_EXPORT_CONCURRENCY", default_value = "2", value_parser = nonzero, value_name = "N")]
    pub export_concurrency: usize,

    /// First retry delay after a retryable failure; doubles (with jitter) each time.
    #[arg(long, env = "SIDETRACE_RETRY_INITIAL", default_value = "1s", value_parser = duration, value_name = "DURATION")]
    pub retry_initial: Duration,

    /// Longest delay between retries.
    #[arg(long, env = "SIDETRACE_RETRY_MAX", default_value = "30s", value_parser = duration, value_name = "DURATION")]
    pub retry_max: Duration,

    /// Give up on a batch after retrying this long; it then waits in the spool and is
    /// tried again later (with --spool-dir), else it is dropped and counted.
    #[arg(long, env = "SIDETRACE_RETRY_MAX_ELAPSED", default_value = "5m", value_parser = duration, value_name = "DURATION")]
    pub retry_max_elapsed: Duration,

    /// Directory where batches wait on disk when the memory queue is full, after their
    /// retries ran out, and on shutdown; they are sent in order when the collector is back,
    /// also after a restart.
    #[arg(long, env = "SIDETRACE_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// overflow: the spool takes what memory cannot hold. always: every batch is written to
    /// the spool (and synced) before it is sent, so a kill -9 loses at most the spans not yet
    /// in a finished batch (under --export-batch-size, none older than --export-delay) and
    /// the batch being written; a batch in flight may be sent twice. Needs --spool-dir.
    #[arg(long, env = "SIDETRACE_SPOOL_MODE", value_enum, default_value = "overflow", value_name = "overflow|always")]
    pub spool_mode: SpoolMode,

    /// Most bytes the spool may hold; past it, new batches are dropped and counted.
    #[arg(long, env = "SIDETRACE_SPOOL_MAX_BYTES", default_value = "256MiB", value_parser = byte_size, value_name = "BYTES")]
    pub spool_max_bytes: u64,

    /// Share of new traces recorded (0 to 1); a sampled or unsampled parent is followed
    /// [default: OTEL_TRACES_SAMPLER_ARG with OTEL_TRACES_SAMPLER, else 1]
    #[arg(long, env = "SIDETRACE_SAMPLING_RATIO", value_parser = ratio, value_name = "RATIO")]
    pub sampling_ratio: Option<f64>,

    /// Ratio of new traces by route, PATTERN=RATIO (route patterns as for --route), e.g.
    /// /health=0; repeat or comma-separate; the first match wins, other routes take --sampling-ratio.
    #[arg(long = "sampling-rule", env = "SIDETRACE_SAMPLING_RULES", value_delimiter = ',', value_parser = sampling_rule, value_name = "PATTERN=RATIO")]
    pub sampling_rules: Vec<SamplingRule>,

    /// New traces recorded per second at most; 0 for no cap.
    #[arg(long, env = "SIDETRACE_SAMPLING_RATE_LIMIT", default_value = "0", value_name = "N")]
    pub sampling_rate_limit: u32,

    /// Keep spans the sampler skipped when they took longer than this (errors are
    /// always kept), marked sidetrace.sampling.tail=true. 0s keeps only errors.
    #[arg(long, env = "SIDETRACE_KEEP_SLOWER_THAN", default_value = "1s", value_parser = duration, value_name = "DURATION")]
    pub keep_slower_than: Duration,
}
