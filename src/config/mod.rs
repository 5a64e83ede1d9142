//! Typed configuration: command-line flags, `SIDETRACE_*` variables (clap
//! reads them), then the standard `OTEL_*` variables, then defaults.
//!
//! `Config::from_args` is pure: the environment comes in as a lookup
//! function, so tests never touch the process environment.

pub mod export;

use crate::metrics::route::{RoutePattern, RouteTemplates};
use clap::{Args, Parser, Subcommand, ValueEnum};
use export::{ExportArgs, ExportConfig};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "sidetrace",
    version,
    about = "A transparent HTTP sidecar proxy that records a span for every request it carries"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the sidecar proxy.
    Run(Box<RunArgs>),
    /// Install the pod's redirect rules (nftables, table inet sidetrace) in this network namespace.
    InitNet(crate::k8s::init_net::InitNetArgs),
}

/// A listener address, or `off` to not listen at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Listen(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("expected IP:PORT (e.g. 127.0.0.1:15001) or 'off', got {s:?}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessLogFormat {
    Json,
    Text,
    Off,
}

pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as 500ms, 10s or 1m)"))
}

/// A comma-separated port list; empty means none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

fn port_list(s: &str) -> Result<PortList, String> {
    if s.trim().is_empty() {
        return Ok(PortList::default());
    }
    s.split(',')
        .map(|p| p.trim().parse::<u16>().map_err(|_| format!("{p:?} is not a port number (0-65535)")))
        .collect::<Result<Vec<u16>, String>>()
        .map(PortList)
}

fn route(s: &str) -> Result<RoutePattern, String> {
    RoutePattern::parse(s)
}

pub(crate) fn nonzero(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive whole number, got {s:?}")),
    }
}

const DEFAULT_OPAQUE_PORTS: &str = "25,587,3306,4222,5432,6379,11211,27017";
const DEFAULT_REDACTED_QUERY_KEYS: &str = "AWSAccessKeyId,Signature,sig,X-Goog-Signature,X-Amz-Signature,X-Amz-Credential,X-Amz-Security-Token,token,access_token,id_token,refresh_token,api_key,apikey,key,password,passwd,secret,client_secret,code,session";

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Inbound listener: traffic to the app. `off` disables it.
    #[arg(long, env = "SIDETRACE_INBOUND", default_value = "0.0.0.0:15006", value_name = "ADDR")]
    pub inbound: Listen,

    /// The app's address; inbound requests go here. A connection redirected by
    /// iptables keeps its original port on this address's IP.
    #[arg(long, env = "SIDETRACE_APP", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub app: SocketAddr,

    /// Outbound listener: traffic from the app, redirected transparently or sent
    /// as to an HTTP proxy (HTTP_PROXY=http://127.0.0.1:15001). `off` disables it.
    #[arg(long, env = "SIDETRACE_OUTBOUND", default_value = "127.0.0.1:15001", value_name = "ADDR")]
    pub outbound: Listen,

    /// Admin server: /live, /ready, /metrics, /api/traces, /api/stats. `off` disables it.
    #[arg(long, env = "SIDETRACE_ADMIN", default_value = "0.0.0.0:15020", value_name = "ADDR")]
    pub admin: Listen,

    /// service.name of the spans [default: OTEL_SERVICE_NAME, else derived from the host name]
    #[arg(long, env = "SIDETRACE_SERVICE_NAME", value_name = "NAME")]
    pub service_name: Option<String>,

    /// Access log to stdout, one line per request.
    #[arg(long, env = "SIDETRACE_ACCESS_LOG", value_enum, default_value = "json", value_name = "FORMAT")]
    pub access_log: AccessLogFormat,

    /// Ports of server-first protocols that skip protocol detection and pass as opaque TCP.
    #[arg(long, env = "SIDETRACE_OPAQUE_PORTS", default_value = DEFAULT_OPAQUE_PORTS, value_parser = port_list, value_name = "PORTS")]
    pub opaque_ports: PortList,

    /// How long to wait for a client's first bytes before treating the connection as opaque TCP.
    #[arg(long, env = "SIDETRACE_DETECT_TIMEOUT", default_value = "5s", value_parser = duration, value_name = "DURATION")]
    pub detect_timeout: Duration,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "SIDETRACE_DRAIN_TIMEOUT", default_value = "10s", value_parser = duration, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Upstream connect timeout; a timeout answers 504.
    #[arg(long, env = "SIDETRACE_CONNECT_TIMEOUT", default_value = "3s", value_parser = duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// How long the upstream may take to send response headers; a timeout answers 504. 0s disables it.
    #[arg(long, env = "SIDETRACE_RESPONSE_TIMEOUT", default_value = "30s", value_parser = duration, value_name = "DURATION")]
    pub response_timeout: Duration,

    /// How long a client's HTTP/1 keep-alive connection may wait for its next request before
    /// sidetrace closes it. 0s leaves it open until the client closes it.
    #[arg(long, env = "SIDETRACE_IDLE_TIMEOUT", default_value = "1h", value_parser = duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Route pattern for http.route, e.g. /users/{id}/orders/{order}; repeat the
    /// flag or separate with commas. Unmatched paths get numbers, UUIDs and long ids replaced by {id}.
    #[arg(long = "route", env = "SIDETRACE_ROUTES", value_delimiter = ',', value_parser = route, value_name = "PATTERN")]
    pub routes: Vec<RoutePattern>,

    /// Query keys whose values are replaced by REDACTED in url.query (case-insensitive, comma-separated).
    #[arg(long, env = "SIDETRACE_REDACT_QUERY_KEYS", value_delimiter = ',', default_value = DEFAULT_REDACTED_QUERY_KEYS, value_name = "KEYS")]
    pub redact_query_keys: Vec<String>,

    /// Spans kept in memory for /api/traces.
    #[arg(long, env = "SIDETRACE_TRACE_BUFFER", default_value = "10000", value_parser = nonzero, value_name = "SPANS")]
    pub trace_buffer: usize,

    /// Finished spans waiting for the exporter; when full, new spans are dropped and counted.
    #[arg(long, env = "SIDETRACE_QUEUE_SIZE", default_value = "20000", value_parser = nonzero, value_name = "SPANS")]
    pub queue_size: usize,

    /// Distinct http_route values per direction in metrics (likewise outbound server addresses and TLS
    /// server names); later ones are recorded as _other and counted.
    #[arg(long, env = "SIDETRACE_MAX_ROUTES", default_value = "200", value_parser = nonzero, value_name = "N")]
    pub max_routes: usize,

    /// sidetrace's own log filter (tracing-subscriber syntax), written to stderr.
    #[arg(long, env = "SIDETRACE_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,

    /// Worker threads, each serving its share of connections on its own
    /// (SO_REUSEPORT) listeners [default: the CPUs this process may use]
    #[arg(long, env = "SIDETRACE_WORKERS", value_parser = nonzero, value_name = "N")]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub export: ExportArgs,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration of one sidecar.
#[derive(Clone, Debug)]
pub struct Config {
    pub inbound: Option<SocketAddr>,
    pub app: SocketAddr,
    pub outbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub access_log: AccessLogFormat,
    pub opaque_ports: Vec<u16>,
    pub detect_timeout: Duration,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub routes: RouteTemplates,
    pub redact_query_keys: Vec<String>,
    pub trace_buffer: usize,
    pub queue_size: usize,
    pub max_routes: usize,
    pub workers: usize,
    pub resource: Resource,
    pub export: ExportConfig,
}

impl Config {
    /// The configuration as JSON for the start-up log and `/api/config`,
    /// with secrets left out: export header values and TLS material are
    /// never printed, only whether they are set.
    pub fn printable(&self) -> serde_json::Value {
        use serde_json::json;
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let x = &self.export;
        let otlp = x.otlp.as_ref().map(|o| {
            json!({
                "endpoint": o.url.to_string(),
                "protocol": format!("{:?}", o.protocol),
                "header_names": o.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
                "gzip": o.gzip,
                "timeout": d(o.timeout),
                "ca": o.tls.ca.is_some(),
                "client_certificate": o.tls.client_cert.is_some(),
            })
        });
        json!({
            "inbound": self.inbound.map(|a| a.to_string()),
            "app": self.app.to_string(),
            "outbound": self.outbound.map(|a| a.to_string()),
            "admin": self.admin.map(|a| a.to_string()),
            "access_log": format!("{:?}", self.access_log).to_lowercase(),
            "opaque_ports": self.opaque_ports,
            "detect_timeout": d(self.detect_timeout),
            "drain_timeout": d(self.drain_timeout),
            "connect_timeout": d(self.connect_timeout),
            "response_timeout": self.response_timeout.map(d),
            "idle_timeout": self.idle_timeout.map(d),
            "routes": self.routes.patterns(),
            "redact_query_keys": self.redact_query_keys,
            "trace_buffer": self.trace_buffer,
            "queue_size": self.queue_size,
            "max_routes": self.max_routes,
            "workers": self.workers,
            "resource": self.resource.attributes,
            "export": {
                "otlp": otlp,
                "zipkin": x.zipkin.as_ref().map(|u| u.to_string()),
                "batch_size": x.batch_size,
                "delay": d(x.delay),
                "concurrency": x.concurrency,
                "retry": {"initial": d(x.retry.initial), "max": d(x.retry.max), "max_elapsed": d(x.retry.max_elapsed)},
                "spool": x.spool.as_ref().map(|s| json!({"dir": s.dir.display().to_string(), "max_bytes": s.max_bytes})),
                "sampling": {
                    "parent_based": x.parent_based,
                    "ratio": x.sampling_ratio,
                    "rate_limit": x.sampling_rate_limit,
                    "keep_slower_than": x.keep_slower_than.map(d),
                },
            },
        })
    }
}

/// Resource attributes of every span: `service.name` first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub attributes: BTreeMap<String, String>,
}

impl Resource {
    pub fn service_name(&self) -> &str {
        self.attributes.get("service.name").map_or("unknown_service", String::as_str)
    }
}

impl Config {
    /// Builds the configuration from parsed flags and an environment lookup.
    pub fn from_args(args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let resource = resource(args, env)?;
        if args.inbound.0.is_some() && args.inbound.0 == args.outbound.0 {
            return Err(ConfigError("--inbound and --outbound must be different addresses".into()));
        }
        if args.inbound.0 == Some(args.app) {
            return Err(ConfigError("--inbound must differ from --app, or the proxy would forward to itself".into()));
        }
        Ok(Config {
            inbound: args.inbound.0,
            app: args.app,
            outbound: args.outbound.0,
            admin: args.admin.0,
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
            trace_buffer: args.trace_buffer,
            queue_size: args.queue_size,
            max_routes: args.max_routes,
            resource,
            // available_parallelism honours cgroup CPU quotas, as a pod's limit sets them.
            workers: args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            export: ExportConfig::from_args(&args.export, env)?,
        })
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
        c.app = app;
        c.resource.attributes.insert("service.name".into(), service_name.into());
        c
    }
}

impl RunArgs {
    /// Parses `run` flags alone, ignoring `SIDETRACE_*` variables of the process.
    pub fn parse_from_env_free<I, T>(argv: I) -> RunArgs
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: RunArgs,
        }
        let mut cmd = <Wrapper as clap::CommandFactory>::command();
        cmd = cmd.mut_args(|a| a.env(None::<&str>));
        let matches = cmd.get_matches_from(argv);
        let w = <Wrapper as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"));
        w.args
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage-style `k=v,k2=v2`, values
/// percent-decoded), then the Kubernetes downward-API variables, then
/// `OTEL_SERVICE_NAME`, then `--service-name`: later ones win.
fn resource(args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Resource, ConfigError> {
    let mut attrs = BTreeMap::new();
    if let Some(raw) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(ConfigError(format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value")));
            };
            let v = percent_encoding::percent_decode_str(v.trim()).decode_utf8().map_err(|_| {
                ConfigError(format!("OTEL_RESOURCE_ATTRIBUTES: value of {k:?} is not UTF-8 after percent-decoding"))
            })?;
            if k.trim().is_empty() {
                return Err(ConfigError("OTEL_RESOURCE_ATTRIBUTES: empty key".into()));
            }
            attrs.insert(k.trim().to_string(), v.into_owned());
        }
    }
    let host = env("HOSTNAME").filter(|h| !h.is_empty()).or_else(hostname);
    for (attr, vars) in [
        ("k8s.pod.name", ["SIDETRACE_POD_NAME", "POD_NAME"]),
        ("k8s.namespace.name", ["SIDETRACE_POD_NAMESPACE", "POD_NAMESPACE"]),
        ("k8s.node.name", ["SIDETRACE_NODE_NAME", "NODE_NAME"]),
    ] {
        if let Some(v) = vars.iter().find_map(|v| env(v).filter(|s| !s.is_empty())) {
            attrs.insert(attr.to_string(), v);
        }
    }
    if let Some(h) = &host {
        attrs.entry("host.name".into()).or_insert_with(|| h.clone());
    }
    if let Some(name) = env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()) {
        attrs.insert("service.name".into(), name);
    }
    if let Some(name) = &args.service_name {
        if name.is_empty() {
            return Err(ConfigError("--service-name must not be empty".into()));
        }
        attrs.insert("service.name".into(), name.clone());
    }
    if !attrs.contains_key("service.name") {
        let base = attrs.get("k8s.pod.name").cloned().or(host).unwrap_or_else(|| "unknown_service".into());
        attrs.insert("service.name".into(), service_from_pod_name(&base).to_string());
    }
    attrs.entry("service.instance.id".into()).or_insert_with(random_uuid);
    attrs.insert("telemetry.sdk.name".into(), "sidetrace".into());
    attrs.insert("telemetry.sdk.language".into(), "rust".into());
    attrs.insert("telemetry.sdk.version".into(), env!("CARGO_PKG_VERSION").into());
    Ok(Resource { attributes: attrs })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A Deployment's pod is named `{deployment}-{replicaset hash}-{5 chars}`;
/// the service is the deployment.
pub fn service_from_pod_name(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    let alnum = |s: &str| s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if parts.len() == 3
        && parts[0].len() == 5
        && alnum(parts[0])
        && (6..=10).contains(&parts[1].len())
        && alnum(parts[1])
    {
        return parts[2];
    }
    pod
}

fn random_uuid() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn bad_resource_attributes() {
        let args = RunArgs::parse_from_env_free(["run"]);
        let err = Config::from_args(&args, &env_of(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")])).unwrap_err();
        assert!(err.0.contains("OTEL_RESOURCE_ATTRIBUTES"));
    }
}
