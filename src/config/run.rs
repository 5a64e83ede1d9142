//! The validated configuration of one sidecar, made by one pure
//! constructor: parsed flags (and `SIDETRACE_*` variables, which clap
//! reads) plus an environment lookup for the `OTEL_*` rules give a
//! `Config` or a `config::Error`. It prints as JSON (`/api/config`, the
//! start-up log) with every secret left out.

use super::args::{AccessLogFormat, RunArgs, StitchMode};
use super::error::Error;
use super::export::ExportConfig;
use super::parse::ApiListen;
use super::resource::{Resource, resource};
use super::ser;
use crate::trace::capture::{HeaderCapture, REQUEST_PREFIX, RESPONSE_PREFIX};
use crate::trace::route::RouteTemplates;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub inbound: Option<SocketAddr>,
    pub app: SocketAddr,
    pub outbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Where /api/* and /ui are served.
    pub api: ApiListen,
    pub access_log: AccessLogFormat,
    pub opaque_ports: Vec<u16>,
    #[serde(serialize_with = "ser::duration")]
    pub detect_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub drain_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser::opt_duration")]
    pub response_timeout: Option<Duration>,
    #[serde(serialize_with = "ser::opt_duration")]
    pub idle_timeout: Option<Duration>,
    pub routes: RouteTemplates,
    pub redact_query_keys: Vec<String>,
    pub capture_request_headers: HeaderCapture,
    pub capture_response_headers: HeaderCapture,
    pub trace_buffer: usize,
    pub queue_size: usize,
    pub max_routes: usize,
    pub workers: usize,
    /// sidetrace's own log filter, checked to be valid.
    pub log: String,
    pub trace_probes: bool,
    /// Per listener; `None` for no limit.
    pub max_connections: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    #[serde(serialize_with = "ser::opt_duration")]
    pub header_read_timeout: Option<Duration>,
    pub announce_service: bool,
    pub stitch: StitchMode,
    #[serde(serialize_with = "ser::duration")]
    pub stitch_max_age: Duration,
    pub stitch_max_children: u32,
    pub resource: Resource,
    pub export: ExportConfig,
}

impl Config {
    /// Builds the configuration from parsed flags and an environment lookup.
    pub fn from_args(args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let resource = resource(args.service_name.as_deref(), env)?;
        // Port 0 asks for any free port: two of them never collide.
        if args.inbound.0.is_some_and(|a| a.port() != 0) && args.inbound.0 == args.outbound.0 {
            return Err(Error::Conflict("--inbound and --outbound must be different addresses"));
        }
        if args.inbound.0 == Some(args.app) {
            return Err(Error::Conflict("--inbound must differ from --app, or the proxy would forward to itself"));
        }
        Ok(Config {
            inbound: args.inbound.0,
            app: args.app,
            outbound: args.outbound.0,
            admin: args.admin.0,
            api: args.api,
            access_log: args.access_log,
            opaque_ports: args.opaque_ports.0.clone(),
            detect_timeout: args.detect_timeout,
            drain_timeout: args.drain_timeout,
            connect_timeout: args.connect_timeout,
            response_timeout: (!args.response_timeout.is_zero()).then_some(args.response_timeout),
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            routes: RouteTemplates::new(args.routes.clone()),
            redact_query_keys: args
                .redact_query_keys
                .iter()
                .map(|k| k.trim().to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            capture_request_headers: HeaderCapture::new(REQUEST_PREFIX, &args.capture_request_headers)
                .map_err(|e| Error::invalid("--capture-request-headers", e))?,
            capture_response_headers: HeaderCapture::new(RESPONSE_PREFIX, &args.capture_response_headers)
                .map_err(|e| Error::invalid("--capture-response-headers", e))?,
            trace_buffer: args.trace_buffer,
            queue_size: args.queue_size,
            max_routes: args.max_routes,
            // available_parallelism honours cgroup CPU quotas, as a pod's limit sets them.
            workers: args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            log: args.log.clone(),
            trace_probes: args.trace_probes,
            max_connections: (args.limits.max_connections > 0).then_some(args.limits.max_connections),
            max_concurrent_requests: (args.limits.max_concurrent_requests > 0)
                .then_some(args.limits.max_concurrent_requests),
            header_read_timeout: (!args.limits.header_read_timeout.is_zero())
                .then_some(args.limits.header_read_timeout),
            announce_service: args.announce_service,
            stitch: args.stitch,
            stitch_max_age: args.stitch_max_age,
            stitch_max_children: u32::try_from(args.stitch_max_children).unwrap_or(u32::MAX),
            resource,
            export: ExportConfig::from_args(&args.export, env)?,
        })
    }

    /// The configuration as JSON for the start-up log and `/api/config`:
    /// export header values and TLS material are never printed, only
    /// whether they are set.
    pub fn printable(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A configuration for tests and the demo: every listener on an
    /// ephemeral loopback port, no access log.
    pub fn local(app: SocketAddr, service_name: &str) -> Config {
        Config::local_with(app, service_name, &[])
    }

    /// `local`, with more `run` flags.
    pub fn local_with(app: SocketAddr, service_name: &str, flags: &[&str]) -> Config {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut argv = vec!["run", "--access-log", "off"];
        argv.extend_from_slice(flags);
        let args = RunArgs::parse_from_env_free(argv);
        let mut c = Config::from_args(&args, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        c.inbound = Some(any);
        c.outbound = Some(any);
        c.admin = Some(any);
        c.api = ApiListen::Admin;
        c.app = app;
        c.resource.attributes.insert("service.name".into(), service_name.into());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resource::service_from_pod_name;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn service_name_precedence() {
        let args = RunArgs::parse_from_env_free(["run"]);
        let env = env_of(&[
            ("OTEL_SERVICE_NAME", "otel"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=res,deployment.environment=prod%20eu"),
        ]);
        let c = Config::from_args(&args, &env).unwrap();
        assert_eq!(c.resource.service_name(), "otel");
        assert_eq!(c.resource.attributes["deployment.environment"], "prod eu");
        let args = RunArgs::parse_from_env_free(["run", "--service-name", "flag"]);
        assert_eq!(Config::from_args(&args, &env).unwrap().resource.service_name(), "flag");
    }

    #[test]
    fn pod_names() {
        assert_eq!(service_from_pod_name("orders-7d9f8b6c5-x2kqz"), "orders");
        assert_eq!(service_from_pod_name("laptop"), "laptop");
        let args = RunArgs::parse_from_env_free(["run"]);
        let env = env_of(&[("POD_NAME", "cart-api-5c8d7f9b4-abcde"), ("POD_NAMESPACE", "shop")]);
        let c = Config::from_args(&args, &env).unwrap();
        assert_eq!(c.resource.service_name(), "cart-api");
        assert_eq!(c.resource.attributes["k8s.namespace.name"], "shop");
    }

    #[test]
    fn printable_config_has_no_secrets() {
        let args = RunArgs::parse_from_env_free([
            "run",
            "--otlp-endpoint",
            "http://c:4318",
            "--otlp-header",
            "authorization=Bearer hunter2",
        ]);
        let c = Config::from_args(&args, &|_| None).unwrap();
        let text = c.printable().to_string();
        assert!(text.contains("authorization") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("http://c:4318/v1/traces"));
        let v = c.printable();
        assert_eq!(v["export"]["otlp"]["header_names"][0], "authorization");
        assert_eq!(v["detect_timeout"], "5s");
        assert_eq!(v["access_log"], "json");
        assert_eq!(v["export"]["sampling"]["keep_slower_than"], "1s");
    }

    #[test]
    fn a_spool_dir_that_cannot_be_used_stops_start_up() {
        let file = std::env::temp_dir().join(format!("sidetrace-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let dir = file.join("spool");
        let args = RunArgs::parse_from_env_free(["run", "--spool-dir", dir.to_str().unwrap()]);
        let err = Config::from_args(&args, &|_| None).unwrap_err();
        assert!(matches!(err, Error::SpoolDir { .. }), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn spool_mode_always_needs_a_spool_dir() {
        let args = RunArgs::parse_from_env_free(["run", "--spool-mode", "always"]);
        let err = Config::from_args(&args, &|_| None).unwrap_err();
        assert!(matches!(err, Error::Conflict(m) if m.contains("--spool-dir")), "{err}");
        let dir = std::env::temp_dir().join(format!("sidetrace-spool-mode-{}", std::process::id()));
        let args =
            RunArgs::parse_from_env_free(["run", "--spool-mode", "always", "--spool-dir", dir.to_str().unwrap()]);
        let spool = Config::from_args(&args, &|_| None).unwrap().export.spool.unwrap();
        assert_eq!(spool.mode, crate::config::SpoolMode::Always);
        let args = RunArgs::parse_from_env_free(["run", "--spool-dir", dir.to_str().unwrap()]);
        let spool = Config::from_args(&args, &|_| None).unwrap().export.spool.unwrap();
        assert_eq!(spool.mode, crate::config::SpoolMode::Overflow, "overflow is the default");
    }

    #[test]
    fn bad_resource_attributes() {
        let args = RunArgs::parse_from_env_free(["run"]);
        let err = Config::from_args(&args, &env_of(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")])).unwrap_err();
        assert!(matches!(&err, Error::Invalid { what, .. } if what == "OTEL_RESOURCE_ATTRIBUTES"), "{err}");
    }
}
