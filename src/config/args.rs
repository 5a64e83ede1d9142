//! The flags of `sidetrace run`, each with its `SIDETRACE_*` variable:
//! what clap parses, before the `OTEL_*` rules and cross-checks of
//! `Config::from_args` make a `Config` of them.

use super::export_args::ExportArgs;
use super::limits_args::LimitArgs;
use super::parse::{ApiListen, Listen, PortList, duration, log_filter, nonzero, port_list, route};
use crate::trace::route::RoutePattern;
use clap::{Args, Parser, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    Json,
    Text,
    Off,
}

/// How outbound calls without trace context find their trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StitchMode {
    /// A call without context starts its own trace.
    Off,
    /// A call without context joins the one inbound request in flight, or
    /// links to several.
    SingleFlight,
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

    /// Admin server for the kubelet and Prometheus: /live, /ready, /metrics (and POST /shutdown
    /// from loopback). `off` disables it.
    #[arg(long, env = "SIDETRACE_ADMIN", default_value = "0.0.0.0:15020", value_name = "ADDR")]
    pub admin: Listen,

    /// Where the endpoints that show traffic are served: /api/traces, /api/stats, /api/config and
    /// the /ui. Loopback by default (reach it with kubectl port-forward); `admin` serves them on
    /// the admin listener, `off` nowhere.
    #[arg(long, env = "SIDETRACE_API", default_value = "127.0.0.1:15021", value_name = "ADDR|admin|off")]
    pub api: ApiListen,

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

    /// Request headers recorded on spans as `http.request.header.<name>` (comma-separated, at most
    /// 8; Authorization, Proxy-Authorization and Cookie are refused). None by default.
    #[arg(long, env = "SIDETRACE_CAPTURE_REQUEST_HEADERS", value_delimiter = ',', value_name = "NAMES")]
    pub capture_request_headers: Vec<String>,

    /// Response headers recorded on spans as `http.response.header.<name>` (comma-separated, at most
    /// 8; Set-Cookie is refused). None by default.
    #[arg(long, env = "SIDETRACE_CAPTURE_RESPONSE_HEADERS", value_delimiter = ',', value_name = "NAMES")]
    pub capture_response_headers: Vec<String>,

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

    /// Record the kubelet's probes (User-Agent: kube-probe/…) as spans, log lines and request metrics,
    /// like any request. By default they are forwarded but only counted, in sidetrace_probe_requests_total.
    #[arg(long, env = "SIDETRACE_TRACE_PROBES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub trace_probes: bool,

    /// Tell peers this service's name: outbound requests carry it as the `sidetrace` entry of
    /// tracestate, and inbound responses to another sidetrace carry it in a header its sidecar
    /// strips, so both sides' spans get peer.service. Turn it off for services whose calls leave the
    /// organisation.
    #[arg(long, env = "SIDETRACE_ANNOUNCE_SERVICE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub announce_service: bool,

    /// Join the app's outbound calls that carry no trace context to the inbound request being
    /// handled: `single-flight` makes a call the child of the one inbound request in flight and,
    /// with several, starts its own trace with links to them; `off` never stitches.
    #[arg(long, env = "SIDETRACE_STITCH", value_enum, default_value = "single-flight", value_name = "MODE")]
    pub stitch: StitchMode,

    /// An inbound request older than this adopts no more outbound calls (they get their own trace
    /// and a link to it).
    #[arg(long, env = "SIDETRACE_STITCH_MAX_AGE", default_value = "30s", value_parser = duration, value_name = "DURATION")]
    pub stitch_max_age: Duration,

    /// The most outbound calls one inbound request adopts; the calls past it get their own trace
    /// and a link to it.
    #[arg(long, env = "SIDETRACE_STITCH_MAX_CHILDREN", default_value = "100", value_parser = nonzero, value_name = "N")]
    pub stitch_max_children: usize,

    /// sidetrace's own log filter (tracing-subscriber syntax), written to stderr.
    #[arg(long, env = "SIDETRACE_LOG", default_value = "info", value_parser = log_filter, value_name = "FILTER")]
    pub log: String,

    /// Worker threads, each serving its share of connections on its own
    /// (SO_REUSEPORT) listeners [default: the CPUs this process may use]
    #[arg(long, env = "SIDETRACE_WORKERS", value_parser = nonzero, value_name = "N")]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub export: ExportArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
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
