//! The words every stage shares: which way a request goes, why it failed
//! (`error.type`), and the closed tables of HTTP methods and protocol
//! versions that spans, metrics and logs name. This module imports nothing
//! of the crate; everything else may import it.

use http::{Method, Version};
use std::borrow::Cow;

/// Inbound traffic goes to the app (SERVER spans); outbound traffic leaves
/// the app for other services (CLIENT spans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// `error.type` values: a closed set, so they are safe as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    ConnectionRefused,
    ConnectError,
    ConnectTimeout,
    ResponseTimeout,
    UpstreamReset,
    UpstreamProtocol,
    NoDestination,
    LoopDetected,
    /// Inbound traffic sent to one of sidetrace's own ports.
    OwnPort,
    ClientAborted,
    RequestBody,
    /// The proxy failed in a way it has no name for (a bug).
    Internal,
    /// An HTTP status that counts as an error: `error.type` is the code.
    Status(u16),
    /// A gRPC status other than OK on a call that answered HTTP 200.
    Grpc(u32),
}

impl ErrorType {
    pub fn as_str(&self) -> Cow<'static, str> {
        use Cow::Borrowed;
        match self {
            ErrorType::ConnectionRefused => Borrowed("connection_refused"),
            ErrorType::ConnectError => Borrowed("connect_error"),
            ErrorType::ConnectTimeout => Borrowed("connect_timeout"),
            ErrorType::ResponseTimeout => Borrowed("timeout"),
            ErrorType::UpstreamReset => Borrowed("upstream_reset"),
            ErrorType::UpstreamProtocol => Borrowed("upstream_protocol_error"),
            ErrorType::NoDestination => Borrowed("no_destination"),
            ErrorType::LoopDetected => Borrowed("loop_detected"),
            ErrorType::OwnPort => Borrowed("own_port"),
            ErrorType::ClientAborted => Borrowed("client_aborted"),
            ErrorType::RequestBody => Borrowed("request_body_error"),
            ErrorType::Internal => Borrowed("internal_error"),
            ErrorType::Status(s) => Cow::Owned(s.to_string()),
            ErrorType::Grpc(_) => Borrowed("grpc_error"),
        }
    }
}

/// `http.request.method` values; anything else is `_OTHER`, which keeps
/// span names and metric labels bounded.
pub const METHODS: [&str; 10] =
    ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "_OTHER"];

/// The position of a method in `METHODS`.
pub fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

pub fn method_attr(m: &Method) -> &'static str {
    METHODS[method_index(m)]
}

/// `network.protocol.version` values.
pub const VERSIONS: [&str; 6] = ["0.9", "1.0", "1.1", "2", "3", "unknown"];

/// The position of a version in `VERSIONS`.
pub fn version_index(v: Version) -> usize {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_11 => 2,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 5,
    }
}

pub fn protocol_version(v: Version) -> &'static str {
    VERSIONS[version_index(v)]
}

/// `url.scheme` values.
pub const SCHEMES: [&str; 2] = ["http", "https"];

/// What protocol detection found on a connection (`listen::detect`), as
/// metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    Http1,
    Http2,
    Tls,
    Opaque,
}

/// How protocol detection ended; `Skipped` for ports that bypass it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectOutcome {
    Detected,
    Timeout,
    Eof,
    Skipped,
}
