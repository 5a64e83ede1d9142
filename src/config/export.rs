//! Export and sampling configuration: where spans go (OTLP over HTTP or
//! gRPC, Zipkin), how they are batched, retried and spooled, and which are
//! kept. Flags and `SIDETRACE_*` variables first, then the standard
//! `OTEL_EXPORTER_OTLP_*`, `OTEL_EXPORTER_ZIPKIN_ENDPOINT` and
//! `OTEL_TRACES_SAMPLER*` variables with the meaning the OpenTelemetry
//! specification gives them.

use super::{ConfigError, duration, nonzero};
use clap::{Args, ValueEnum};
use http::{HeaderName, HeaderValue, Uri};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "http/json")]
    HttpJson,
    #[value(name = "grpc")]
    Grpc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    None,
}

fn header_pair(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", k.trim()))?;
    let value = HeaderValue::from_str(v.trim())
        .map_err(|_| format!("the value of {:?} is not a valid header value", k.trim()))?;
    Ok((name, value))
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, got {s:?}")),
    }
}

/// Bytes, with an optional KiB/MiB/GiB (or K/M/G) suffix.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("expected a size such as 268435456 or 256MiB, got {s:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
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

    /// Give up on a batch after retrying this long; it is dropped and counted.
    #[arg(long, env = "SIDETRACE_RETRY_MAX_ELAPSED", default_value = "5m", value_parser = duration, value_name = "DURATION")]
    pub retry_max_elapsed: Duration,

    /// Directory where batches wait on disk when the memory queue is full and on
    /// shutdown; they are sent in order when the collector is back, also after a restart.
    #[arg(long, env = "SIDETRACE_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Most bytes the spool may hold; past it, new batches are dropped and counted.
    #[arg(long, env = "SIDETRACE_SPOOL_MAX_BYTES", default_value = "256MiB", value_parser = byte_size, value_name = "BYTES")]
    pub spool_max_bytes: u64,

    /// Share of new traces recorded (0 to 1); a sampled or unsampled parent is followed
    /// [default: OTEL_TRACES_SAMPLER_ARG with OTEL_TRACES_SAMPLER, else 1]
    #[arg(long, env = "SIDETRACE_SAMPLING_RATIO", value_parser = ratio, value_name = "RATIO")]
    pub sampling_ratio: Option<f64>,

    /// New traces recorded per second at most; 0 for no cap.
    #[arg(long, env = "SIDETRACE_SAMPLING_RATE_LIMIT", default_value = "0", value_name = "N")]
    pub sampling_rate_limit: u32,

    /// Keep spans the sampler skipped when they took longer than this (errors are
    /// always kept), marked sidetrace.sampling.tail=true. 0s keeps only errors.
    #[arg(long, env = "SIDETRACE_KEEP_SLOWER_THAN", default_value = "1s", value_parser = duration, value_name = "DURATION")]
    pub keep_slower_than: Duration,
}

/// The validated export configuration.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub otlp: Option<OtlpConfig>,
    pub zipkin: Option<Uri>,
    pub batch_size: usize,
    pub delay: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub spool: Option<SpoolConfig>,
    pub parent_based: bool,
    pub sampling_ratio: f64,
    pub sampling_rate_limit: u32,
    pub keep_slower_than: Option<Duration>,
}

/// `Debug` is written by hand below: header values and key material
/// must never reach a log line.
#[derive(Clone)]
pub struct OtlpConfig {
    /// The full URL for HTTP (`.../v1/traces`); the base URL for gRPC.
    pub url: Uri,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub tls: TlsFiles,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("header_names", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// PEM contents, read and checked at start-up.
#[derive(Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub client_cert: Option<Vec<u8>>,
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

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_elapsed: Duration,
}

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl ExportConfig {
    pub fn from_args(a: &ExportArgs, env: Env) -> Result<ExportConfig, ConfigError> {
        let (parent_based, env_ratio) = sampler_from_env(env)?;
        if a.retry_initial.is_zero() || a.retry_max < a.retry_initial {
            return Err(ConfigError("--retry-max must be at least --retry-initial, which must be above 0".into()));
        }
        let zipkin = match a.zipkin_endpoint.clone().or_else(|| nonempty(env, "OTEL_EXPORTER_ZIPKIN_ENDPOINT")) {
            Some(u) => Some(parse_url(&u, "--zipkin-endpoint")?),
            None => None,
        };
        Ok(ExportConfig {
            otlp: otlp(a, env)?,
            zipkin,
            batch_size: a.export_batch_size,
            delay: a.export_delay,
            concurrency: a.export_concurrency,
            retry: RetryPolicy { initial: a.retry_initial, max: a.retry_max, max_elapsed: a.retry_max_elapsed },
            spool: a.spool_dir.clone().map(|dir| SpoolConfig { dir, max_bytes: a.spool_max_bytes }),
            parent_based,
            sampling_ratio: a.sampling_ratio.or(env_ratio).unwrap_or(1.0),
            sampling_rate_limit: a.sampling_rate_limit,
            keep_slower_than: (!a.keep_slower_than.is_zero()).then_some(a.keep_slower_than),
        })
    }

    pub fn none() -> ExportConfig {
        ExportConfig {
            otlp: None,
            zipkin: None,
            batch_size: 512,
            delay: Duration::from_secs(1),
            concurrency: 2,
            retry: RetryPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                max_elapsed: Duration::from_secs(300),
            },
            spool: None,
            parent_based: true,
            sampling_ratio: 1.0,
            sampling_rate_limit: 0,
            keep_slower_than: Some(Duration::from_secs(1)),
        }
    }
}

fn nonempty(env: Env, key: &str) -> Option<String> {
    env(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`: returns whether
/// the sampler follows parents, and the root ratio it sets.
fn sampler_from_env(env: Env) -> Result<(bool, Option<f64>), ConfigError> {
    let arg = || -> Result<Option<f64>, ConfigError> {
        match nonempty(env, "OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(None),
            Some(v) => ratio(&v).map(Some).map_err(|e| ConfigError(format!("OTEL_TRACES_SAMPLER_ARG: {e}"))),
        }
    };
    match nonempty(env, "OTEL_TRACES_SAMPLER").as_deref() {
        None => Ok((true, None)),
        Some("always_on") => Ok((false, Some(1.0))),
        Some("always_off") => Ok((false, Some(0.0))),
        Some("traceidratio") => Ok((false, Some(arg()?.unwrap_or(1.0)))),
        Some("parentbased_always_on") => Ok((true, Some(1.0))),
        Some("parentbased_always_off") => Ok((true, Some(0.0))),
        Some("parentbased_traceidratio") => Ok((true, Some(arg()?.unwrap_or(1.0)))),
        Some(other) => Err(ConfigError(format!(
            "OTEL_TRACES_SAMPLER: {other:?} is not supported (use always_on, always_off, traceidratio or their parentbased_ forms)"
        ))),
    }
}

fn parse_url(s: &str, what: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = s.parse().map_err(|_| ConfigError(format!("{what}: {s:?} is not a valid URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(uri),
        _ => Err(ConfigError(format!("{what}: {s:?} must be an http:// or https:// URL with a host"))),
    }
}

fn otlp(a: &ExportArgs, env: Env) -> Result<Option<OtlpConfig>, ConfigError> {
    let protocol = match a.otlp_protocol {
        Some(p) => p,
        None => match nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            None => OtlpProtocol::HttpProtobuf,
            Some(p) => OtlpProtocol::from_str(&p, false).map_err(|_| {
                ConfigError(format!("OTEL_EXPORTER_OTLP_PROTOCOL: {p:?} is not grpc, http/protobuf or http/json"))
            })?,
        },
    };
    let http = protocol != OtlpProtocol::Grpc;
    // The signal-specific variable is used as given; the generic one gets
    // the signal's path appended (OTLP exporter specification).
    let (raw, what, append) = if let Some(u) = &a.otlp_endpoint {
        (u.clone(), "--otlp-endpoint", None)
    } else if let Some(u) = nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        (u, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Some(false))
    } else if let Some(u) = nonempty(env, "OTEL_EXPORTER_OTLP_ENDPOINT") {
        (u, "OTEL_EXPORTER_OTLP_ENDPOINT", Some(true))
    } else if a.otlp_protocol.is_some()
        || nonempty(env, "OTEL_TRACES_EXPORTER").is_some_and(|e| e.split(',').any(|x| x.trim() == "otlp"))
    {
        let default = if http { "http://localhost:4318" } else { "http://localhost:4317" };
        (default.to_string(), "the default OTLP endpoint", Some(true))
    } else {
        return Ok(None);
    };
    let base = parse_url(&raw, what)?;
    let url = if !http {
        base
    } else {
        // The flag appends /v1/traces only to a bare host, so both forms work.
        let append = append.unwrap_or(matches!(base.path(), "" | "/"));
        if append {
            let joined = format!("{}/v1/traces", raw.trim_end_matches('/'));
            parse_url(&joined, what)?
        } else {
            base
        }
    };
    let mut headers = Vec::new();
    for (var, _) in [("OTEL_EXPORTER_OTLP_HEADERS", ()), ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ())] {
        if let Some(raw) = nonempty(env, var) {
            for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let decoded = match pair.split_once('=') {
                    Some((k, v)) => format!("{k}={}", percent_encoding::percent_decode_str(v).decode_utf8_lossy()),
                    None => pair.to_string(),
                };
                headers.push(header_pair(&decoded).map_err(|e| ConfigError(format!("{var}: {e}")))?);
            }
        }
    }
    headers.extend(a.otlp_headers.iter().cloned());
    let gzip = match a.otlp_compression {
        Some(c) => c == Compression::Gzip,
        None => match nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
            .or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_COMPRESSION"))
            .as_deref()
        {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(ConfigError(format!("OTEL_EXPORTER_OTLP_COMPRESSION: {other:?} is not gzip or none")));
            }
        },
    };
    let timeout = match a.otlp_timeout {
        Some(t) => t,
        None => match nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            None => Duration::from_secs(10),
            Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                ConfigError(format!("OTEL_EXPORTER_OTLP_TIMEOUT: {ms:?} is not a number of milliseconds"))
            })?),
        },
    };
    let read = |flag: &Option<PathBuf>, var: &str, what: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        let path = flag.clone().or_else(|| nonempty(env, var).map(PathBuf::from));
        match path {
            None => Ok(None),
            Some(p) => {
                let bytes =
                    std::fs::read(&p).map_err(|e| ConfigError(format!("{what}: cannot read {}: {e}", p.display())))?;
                if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                    return Err(ConfigError(format!("{what}: {} is not a PEM file", p.display())));
                }
                Ok(Some(bytes))
            }
        }
    };
    let tls = TlsFiles {
        ca: read(&a.otlp_ca, "OTEL_EXPORTER_OTLP_CERTIFICATE", "--otlp-ca")?,
        client_cert: read(&a.otlp_client_cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "--otlp-client-cert")?,
        client_key: read(&a.otlp_client_key, "OTEL_EXPORTER_OTLP_CLIENT_KEY", "--otlp-client-key")?,
    };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(ConfigError("--otlp-client-cert and --otlp-client-key go together".into()));
    }
    Ok(Some(OtlpConfig { url, protocol, headers, gzip, timeout, tls }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunArgs;

    fn export(
        argv: &[&'static str],
        pairs: &'static [(&'static str, &'static str)],
    ) -> Result<ExportConfig, ConfigError> {
        let mut all = vec!["run"];
        all.extend_from_slice(argv);
        let args = RunArgs::parse_from_env_free(all);
        ExportConfig::from_args(&args.export, &move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn endpoint_rules() {
        let c = export(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(c.otlp.unwrap().url, "http://c:4318/v1/traces");
        let c = export(&[], &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")]).unwrap();
        assert_eq!(c.otlp.unwrap().url, "http://c:4318/custom");
        let c = export(&["--otlp-endpoint", "http://c:4318"], &[]).unwrap();
        assert_eq!(c.otlp.unwrap().url, "http://c:4318/v1/traces");
        let c = export(&["--otlp-protocol", "grpc"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        assert_eq!(c.otlp.unwrap().url, "http://c:4317/");
        assert!(export(&[], &[]).unwrap().otlp.is_none());
        assert!(export(&["--otlp-endpoint", "c:4318"], &[]).is_err());
    }

    #[test]
    fn headers_timeout_compression_sampler() {
        let c = export(
            &["--otlp-endpoint", "http://c:4318", "--otlp-header", "x-tenant=a"],
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        )
        .unwrap();
        let o = c.otlp.unwrap();
        assert_eq!(o.headers[0].1, "Bearer t0k");
        assert_eq!(o.headers[1].0, "x-tenant");
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert!(o.gzip);
        assert!(c.parent_based);
        assert_eq!(c.sampling_ratio, 0.25);
        assert!(export(&[], &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).is_err());
        assert!(export(&["--otlp-endpoint", "http://c", "--otlp-ca", "/nonexistent.pem"], &[]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(byte_size("1024"), Ok(1024));
        assert!(byte_size("12 parsecs").is_err());
    }
}
