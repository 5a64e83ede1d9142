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
    /// Still running when the drain timeout ran out at shutdown: cut.
    DrainTimeout,
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
            ErrorType::DrainTimeout => Borrowed("drain_timeout"),
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

/// Why the proxy refused a request without forwarding it
/// (`sidetrace_rejected_requests_total{reason}`): the message framing
/// checks of `http::framing`, hyper's own parser, and the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1).
    LengthAndChunked,
    /// A `Content-Length` that is not one decimal number, or two that differ.
    ContentLength,
    /// A `Transfer-Encoding` other than `chunked` alone, or on HTTP/1.0.
    TransferEncoding,
    /// A line ended by LF alone, or a CR not followed by LF.
    LineEnding,
    /// A header line continued on the next (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// A header line that is not `name: value`.
    HeaderSyntax,
    /// A bad chunk-size line or chunk extension, or a chunk not ended by CRLF.
    Chunk,
    /// No `Host` on HTTP/1.1, or more than one (RFC 9112 §3.2).
    Host,
    /// What hyper's parser refused: method, target, version, header bytes.
    Malformed,
    /// A header section over the size or count limit (431).
    HeadersTooLarge,
    /// The header section did not arrive within `--header-read-timeout`.
    HeaderTimeout,
    /// `--max-concurrent-requests` were already in flight (503).
    Overloaded,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::LengthAndChunked,
        RejectReason::ContentLength,
        RejectReason::TransferEncoding,
        RejectReason::LineEnding,
        RejectReason::ObsFold,
        RejectReason::HeaderSyntax,
        RejectReason::Chunk,
        RejectReason::Host,
        RejectReason::Malformed,
        RejectReason::HeadersTooLarge,
        RejectReason::HeaderTimeout,
        RejectReason::Overloaded,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::LengthAndChunked => "content_length_and_transfer_encoding",
            RejectReason::ContentLength => "content_length",
            RejectReason::TransferEncoding => "transfer_encoding",
            RejectReason::LineEnding => "line_ending",
            RejectReason::ObsFold => "obs_fold",
            RejectReason::HeaderSyntax => "header_syntax",
            RejectReason::Chunk => "chunk",
            RejectReason::Host => "host",
            RejectReason::Malformed => "malformed",
            RejectReason::HeadersTooLarge => "headers_too_large",
            RejectReason::HeaderTimeout => "header_timeout",
            RejectReason::Overloaded => "overloaded",
        }
    }

    /// The answer the client gets (a header timeout gets none: the
    /// connection closes).
    pub fn status(&self) -> u16 {
        match self {
            RejectReason::HeadersTooLarge => 431,
            RejectReason::HeaderTimeout => 408,
            RejectReason::Overloaded => 503,
            _ => 400,
        }
    }
}

/// The error codes of RFC 9113 §7, as labels, indexed by code: what an
/// HTTP/2 GOAWAY or RST_STREAM frame carries
/// (`sidetrace_http2_connection_errors_total{reason}`).
pub const H2_ERROR_CODES: [&str; 14] = [
    "no_error",
    "protocol_error",
    "internal_error",
    "flow_control_error",
    "settings_timeout",
    "stream_closed",
    "frame_size_error",
    "refused_stream",
    "cancel",
    "compression_error",
    "connect_error",
    "enhance_your_calm",
    "inadequate_security",
    "http_1_1_required",
];

/// The label of an HTTP/2 error code; a code RFC 9113 does not define is
/// `unknown`.
pub fn h2_error_code(code: u32) -> &'static str {
    H2_ERROR_CODES.get(code as usize).copied().unwrap_or("unknown")
}
