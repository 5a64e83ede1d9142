//! Export and sampling configuration: where spans go (OTLP over HTTP or
//! gRPC, Zipkin), how they are batched, retried and spooled, and which are
//! kept. Flags and `SIDETRACE_*` variables first (`export_args`), then the
//! standard `OTEL_EXPORTER_OTLP_*`, `OTEL_EXPORTER_ZIPKIN_ENDPOINT` and
//! `OTEL_TRACES_SAMPLER*` variables with the meaning the OpenTelemetry
//! specification gives them. TLS material is loaded and checked here, and
//! the spool directory too, so that a sidecar that starts can export.

use super::error::Error;
use super::export_args::{Compression, ExportArgs, LogsExporter, OtlpProtocol, SpoolMode};
use super::parse::{header_pair, ratio};
use super::ser;
use super::tls::{self, TlsFiles};
use crate::trace::sampling::SamplingRule;
use clap::ValueEnum;
use http::{HeaderName, HeaderValue, Uri};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The validated export configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ExportConfig {
    pub otlp: Option<OtlpConfig>,
    /// The access log as OTLP log records, when asked for.
    pub otlp_logs: Option<OtlpConfig>,
    pub zipkin: Option<ZipkinConfig>,
    pub batch_size: usize,
    #[serde(serialize_with = "ser::duration")]
    pub delay: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub spool: Option<SpoolConfig>,
    pub sampling: SamplingConfig,
}

/// Header values and key material never reach a log line or `/api/config`:
/// `Debug` and `Serialize` show header names and whether files are set.
#[derive(Clone, Serialize)]
pub struct OtlpConfig {
    /// The full URL for HTTP (`.../v1/traces`); the base URL for gRPC.
    #[serde(rename = "endpoint", serialize_with = "ser::display")]
    pub url: Uri,
    pub protocol: OtlpProtocol,
    #[serde(rename = "header_names", serialize_with = "ser::header_names")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub gzip: bool,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub tls: TlsFiles,
    /// The TLS client the HTTP exporter uses, built (and so checked) here.
    #[serde(skip)]
    pub http_tls: Arc<rustls::ClientConfig>,
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

#[derive(Clone, Debug, Serialize)]
pub struct ZipkinConfig {
    #[serde(rename = "endpoint", serialize_with = "ser::display")]
    pub url: Uri,
    #[serde(skip)]
    pub tls: Arc<rustls::ClientConfig>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct RetryPolicy {
    #[serde(serialize_with = "ser::duration")]
    pub initial: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub max: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub max_elapsed: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub mode: SpoolMode,
}

#[derive(Clone, Debug, Serialize)]
pub struct SamplingConfig {
    pub parent_based: bool,
    pub ratio: f64,
    #[serde(serialize_with = "ser::displayed_list")]
    pub rules: Vec<SamplingRule>,
    pub rate_limit: u32,
    #[serde(serialize_with = "ser::opt_duration")]
    pub keep_slower_than: Option<Duration>,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl ExportConfig {
    pub fn from_args(a: &ExportArgs, env: Env) -> Result<ExportConfig, Error> {
        let (parent_based, env_ratio) = sampler_from_env(env)?;
        if a.retry_initial.is_zero() || a.retry_max < a.retry_initial {
            return Err(Error::Conflict("--retry-max must be at least --retry-initial, which must be above 0"));
        }
        let zipkin = match a.zipkin_endpoint.clone().or_else(|| nonempty(env, "OTEL_EXPORTER_ZIPKIN_ENDPOINT")) {
            Some(u) => Some(ZipkinConfig {
                url: parse_url(&u, "--zipkin-endpoint")?,
                tls: Arc::new(tls::client_config(&TlsFiles::default())?),
            }),
            None => None,
        };
        let spool = match &a.spool_dir {
            Some(dir) => {
                usable_dir(dir).map_err(|source| Error::SpoolDir { dir: dir.clone(), source })?;
                Some(SpoolConfig { dir: dir.clone(), max_bytes: a.spool_max_bytes, mode: a.spool_mode })
            }
            None if a.spool_mode == SpoolMode::Always => {
                return Err(Error::Conflict("--spool-mode always needs --spool-dir: the batches go to disk first"));
            }
            None => None,
        };
        Ok(ExportConfig {
            otlp: otlp(a, env, Signal::Traces)?,
            otlp_logs: otlp(a, env, Signal::Logs)?,
            zipkin,
            batch_size: a.export_batch_size,
            delay: a.export_delay,
            concurrency: a.export_concurrency,
            retry: RetryPolicy { initial: a.retry_initial, max: a.retry_max, max_elapsed: a.retry_max_elapsed },
            spool,
            sampling: SamplingConfig {
                parent_based,
                ratio: a.sampling_ratio.or(env_ratio).unwrap_or(1.0),
                rules: a.sampling_rules.clone(),
                rate_limit: a.sampling_rate_limit,
                keep_slower_than: (!a.keep_slower_than.is_zero()).then_some(a.keep_slower_than),
            },
        })
    }
}

/// A spool directory works if it is a writable directory, or can be made
/// inside the nearest existing directory above it (the spool makes it).
fn usable_dir(dir: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(Error::new(ErrorKind::NotADirectory, format!("{} is not a directory", at.display()))),
            Err(e) if e.kind() == ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(()), // relative to the working directory
            },
            Err(e) => return Err(e),
        }
    }
    let c = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(Error::last_os_error());
    }
    Ok(())
}

fn nonempty(env: Env, key: &str) -> Option<String> {
    env(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`: returns whether
/// the sampler follows parents, and the root ratio it sets.
fn sampler_from_env(env: Env) -> Result<(bool, Option<f64>), Error> {
    let arg = || -> Result<Option<f64>, Error> {
        match nonempty(env, "OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(None),
            Some(v) => ratio(&v).map(Some).map_err(|e| Error::invalid("OTEL_TRACES_SAMPLER_ARG", e)),
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
        Some(other) => Err(Error::invalid(
            "OTEL_TRACES_SAMPLER",
            format!("{other:?} is not supported (use always_on, always_off, traceidratio or their parentbased_ forms)"),
        )),
    }
}

fn parse_url(s: &str, what: &str) -> Result<Uri, Error> {
    let uri: Uri = s.parse().map_err(|_| Error::invalid(what, format!("{s:?} is not a valid URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(uri),
        _ => Err(Error::invalid(what, format!("{s:?} must be an http:// or https:// URL with a host"))),
    }
}

/// What an OTLP exporter sends: each has its own variables and path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Logs,
}

impl Signal {
    /// `OTEL_EXPORTER_OTLP_{TRACES,LOGS}_{what}`.
    fn var(self, what: &str) -> String {
        let signal = if self == Signal::Traces { "TRACES" } else { "LOGS" };
        format!("OTEL_EXPORTER_OTLP_{signal}_{what}")
    }

    fn path(self) -> &'static str {
        if self == Signal::Traces { "/v1/traces" } else { "/v1/logs" }
    }
}

/// Whether the access log goes out as OTLP log records: `--logs-exporter`
/// or `OTEL_LOGS_EXPORTER` say `otlp`, or a logs endpoint is given (and
/// neither says `none`).
fn logs_enabled(a: &ExportArgs, env: Env) -> Result<bool, Error> {
    if a.otlp_logs_endpoint.is_some() {
        return Ok(true);
    }
    match a.logs_exporter {
        Some(e) => Ok(e == LogsExporter::Otlp),
        None => match nonempty(env, "OTEL_LOGS_EXPORTER") {
            None => Ok(nonempty(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT").is_some()),
            Some(v) => {
                let names: Vec<&str> = v.split(',').map(str::trim).collect();
                if let Some(bad) = names.iter().find(|n| !matches!(**n, "otlp" | "none" | "console")) {
                    return Err(Error::invalid("OTEL_LOGS_EXPORTER", format!("{bad:?} is not otlp or none")));
                }
                Ok(names.contains(&"otlp"))
            }
        },
    }
}

fn otlp(a: &ExportArgs, env: Env, signal: Signal) -> Result<Option<OtlpConfig>, Error> {
    if signal == Signal::Logs && !logs_enabled(a, env)? {
        return Ok(None);
    }
    let protocol = match a.otlp_protocol {
        Some(p) => p,
        None => match nonempty(env, &signal.var("PROTOCOL")).or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_PROTOCOL")) {
            None => OtlpProtocol::HttpProtobuf,
            Some(p) => OtlpProtocol::from_str(&p, false).map_err(|_| {
                Error::invalid("OTEL_EXPORTER_OTLP_PROTOCOL", format!("{p:?} is not grpc, http/protobuf or http/json"))
            })?,
        },
    };
    let http = protocol != OtlpProtocol::Grpc;
    // The signal-specific variable is used as given; the generic one gets
    // the signal's path appended (OTLP exporter specification).
    let signal_var = signal.var("ENDPOINT");
    let logs_flag = a.otlp_logs_endpoint.as_ref().filter(|_| signal == Signal::Logs);
    let (raw, what, append) = if let Some(u) = logs_flag {
        (u.clone(), "--otlp-logs-endpoint", None)
    } else if let Some(u) = nonempty(env, &signal_var).filter(|_| signal == Signal::Logs) {
        (u, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", Some(false))
    } else if let Some(u) = &a.otlp_endpoint {
        // Logs go beside the traces: a traces path given in full is swapped for the logs one.
        let u = match signal {
            Signal::Logs => u.trim_end_matches('/').trim_end_matches(Signal::Traces.path()).to_string(),
            Signal::Traces => u.clone(),
        };
        (u, "--otlp-endpoint", None)
    } else if let Some(u) = nonempty(env, &signal_var) {
        (u, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Some(false))
    } else if let Some(u) = nonempty(env, "OTEL_EXPORTER_OTLP_ENDPOINT") {
        (u, "OTEL_EXPORTER_OTLP_ENDPOINT", Some(true))
    } else if signal == Signal::Logs
        || a.otlp_protocol.is_some()
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
            let joined = format!("{}{}", raw.trim_end_matches('/'), signal.path());
            parse_url(&joined, what)?
        } else {
            base
        }
    };
    let mut headers = Vec::new();
    for var in ["OTEL_EXPORTER_OTLP_HEADERS".to_string(), signal.var("HEADERS")] {
        let var = var.as_str();
        if let Some(raw) = nonempty(env, var) {
            for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let decoded = match pair.split_once('=') {
                    Some((k, v)) => format!("{k}={}", percent_encoding::percent_decode_str(v).decode_utf8_lossy()),
                    None => pair.to_string(),
                };
                headers.push(header_pair(&decoded).map_err(|e| Error::invalid(var, e))?);
            }
        }
    }
    headers.extend(a.otlp_headers.iter().cloned());
    let gzip = match a.otlp_compression {
        Some(c) => c == Compression::Gzip,
        None => match nonempty(env, &signal.var("COMPRESSION"))
            .or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_COMPRESSION"))
            .as_deref()
        {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Error::invalid("OTEL_EXPORTER_OTLP_COMPRESSION", format!("{other:?} is not gzip or none")));
            }
        },
    };
    let timeout = match a.otlp_timeout {
        Some(t) => t,
        None => match nonempty(env, &signal.var("TIMEOUT")).or_else(|| nonempty(env, "OTEL_EXPORTER_OTLP_TIMEOUT")) {
            None => Duration::from_secs(10),
            Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                Error::invalid("OTEL_EXPORTER_OTLP_TIMEOUT", format!("{ms:?} is not a number of milliseconds"))
            })?),
        },
    };
    let read = |flag: &Option<PathBuf>, var: &str, what: &'static str| -> Result<Option<Vec<u8>>, Error> {
        let path = flag.clone().or_else(|| nonempty(env, var).map(PathBuf::from));
        match path {
            None => Ok(None),
            Some(path) => {
                let bytes = std::fs::read(&path).map_err(|source| Error::Read { what, path: path.clone(), source })?;
                if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                    return Err(Error::NotPem { what, path });
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
        return Err(Error::Conflict("--otlp-client-cert and --otlp-client-key go together"));
    }
    if !http {
        grpc_metadata(&headers)?;
    }
    let http_tls = Arc::new(tls::client_config(&tls)?);
    Ok(Some(OtlpConfig { url, protocol, headers, gzip, timeout, tls, http_tls }))
}

/// gRPC carries headers as ASCII metadata: names ending in `-bin` are
/// binary metadata and values must be visible ASCII.
fn grpc_metadata(headers: &[(HeaderName, HeaderValue)]) -> Result<(), Error> {
    for (k, v) in headers {
        if k.as_str().ends_with("-bin") {
            return Err(Error::invalid(
                "--otlp-header",
                format!("{k}: gRPC reserves names ending in -bin for binary metadata"),
            ));
        }
        if !v.as_bytes().iter().all(|c| (0x20..0x7f).contains(c)) {
            return Err(Error::invalid("--otlp-header", format!("{k}: a gRPC metadata value must be printable ASCII")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunArgs;

    fn export(argv: &[&'static str], pairs: &'static [(&'static str, &'static str)]) -> Result<ExportConfig, Error> {
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
        assert!(c.sampling.parent_based);
        assert_eq!(c.sampling.ratio, 0.25);
        assert!(export(&[], &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).is_err());
        assert!(export(&["--otlp-endpoint", "http://c", "--otlp-ca", "/nonexistent.pem"], &[]).is_err());
    }

    #[test]
    fn the_access_log_goes_out_only_when_asked_and_beside_the_traces() {
        let logs = |argv, env| export(argv, env).unwrap().otlp_logs.map(|o| (o.url.to_string(), o.protocol));
        assert_eq!(logs(&["--otlp-endpoint", "http://c:4318"], &[]), None, "off unless asked");
        assert_eq!(
            logs(&["--otlp-endpoint", "http://c:4318", "--logs-exporter", "otlp"], &[]),
            Some(("http://c:4318/v1/logs".into(), OtlpProtocol::HttpProtobuf))
        );
        assert_eq!(
            logs(&["--otlp-endpoint", "http://c:4318/v1/traces", "--logs-exporter", "otlp"], &[]),
            Some(("http://c:4318/v1/logs".into(), OtlpProtocol::HttpProtobuf)),
            "a traces path given in full becomes the logs path"
        );
        assert_eq!(
            logs(&[], &[("OTEL_LOGS_EXPORTER", "otlp"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
            Some(("http://c:4318/v1/logs".into(), OtlpProtocol::HttpProtobuf))
        );
        assert_eq!(
            logs(&[], &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9/custom")]),
            Some(("http://l:9/custom".into(), OtlpProtocol::HttpProtobuf)),
            "the signal's own variable is used as given"
        );
        assert_eq!(
            logs(&[], &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9"), ("OTEL_LOGS_EXPORTER", "none")]),
            None
        );
        assert_eq!(
            logs(&["--otlp-logs-endpoint", "http://l:4317", "--otlp-protocol", "grpc"], &[]),
            Some(("http://l:4317/".into(), OtlpProtocol::Grpc))
        );
        assert_eq!(
            logs(&["--logs-exporter", "otlp"], &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json")]),
            Some(("http://localhost:4318/v1/logs".into(), OtlpProtocol::HttpJson))
        );
        assert!(export(&[], &[("OTEL_LOGS_EXPORTER", "kafka")]).is_err());
    }
}
