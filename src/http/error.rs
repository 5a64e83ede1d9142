//! Why the proxy answered instead of the upstream. Each variant knows the
//! status the client gets and the `error.type` the span records: the
//! client's fault is 400, the upstream's 502, 503 or 504, the proxy's own
//! 500.

use crate::dial::DialError;
use crate::vocab::ErrorType;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no destination: an outbound request needs an absolute URI (HTTP proxy mode) or a redirected connection")]
    NoDestination,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("upstream refused the connection")]
    ConnectionRefused,
    #[error("the destination is this proxy's own listener: the request would loop")]
    LoopDetected,
    #[error("the destination is one of this proxy's own ports, which it never forwards to")]
    OwnPort,
    #[error("could not connect to the upstream: {0}")]
    ConnectFailed(std::io::Error),
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    #[error("the upstream did not answer in time")]
    ResponseTimeout,
    #[error("the upstream closed the connection: {0}")]
    UpstreamReset(hyper::Error),
    #[error("the upstream sent an invalid response: {0}")]
    UpstreamProtocol(hyper::Error),
    #[error("the client's request body failed: {0}")]
    RequestBody(hyper::Error),
    /// A layer of the request path failed in a way this enum does not
    /// name: a bug, answered 500.
    #[error("internal error: {0}")]
    Internal(tower::BoxError),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoDestination | ProxyError::BadRequest(_) | ProxyError::RequestBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::ConnectionRefused
            | ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamReset(_)
            | ProxyError::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::LoopDetected => StatusCode::LOOP_DETECTED,
            ProxyError::OwnPort => StatusCode::FORBIDDEN,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> ErrorType {
        match self {
            ProxyError::NoDestination => ErrorType::NoDestination,
            ProxyError::BadRequest(_) => ErrorType::Status(400),
            ProxyError::ConnectionRefused => ErrorType::ConnectionRefused,
            ProxyError::ConnectFailed(_) => ErrorType::ConnectError,
            ProxyError::LoopDetected => ErrorType::LoopDetected,
            ProxyError::OwnPort => ErrorType::OwnPort,
            ProxyError::ConnectTimeout => ErrorType::ConnectTimeout,
            ProxyError::ResponseTimeout => ErrorType::ResponseTimeout,
            ProxyError::UpstreamReset(_) => ErrorType::UpstreamReset,
            ProxyError::UpstreamProtocol(_) => ErrorType::UpstreamProtocol,
            ProxyError::RequestBody(_) => ErrorType::RequestBody,
            ProxyError::Internal(_) => ErrorType::Internal,
        }
    }

    /// The error of a layer below the span's layer: ours, or tower's.
    pub fn from_layer(e: tower::BoxError) -> Self {
        if e.is::<tower::timeout::error::Elapsed>() {
            return ProxyError::ResponseTimeout;
        }
        match e.downcast::<ProxyError>() {
            Ok(p) => *p,
            Err(other) => ProxyError::Internal(other),
        }
    }

    pub fn from_hyper(e: hyper::Error) -> Self {
        use std::error::Error;
        if e.is_parse() || e.is_parse_status() {
            return ProxyError::UpstreamProtocol(e);
        }
        // A failing request body surfaces as a user body error.
        if e.is_user()
            || e.source().is_some_and(|s| s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_body_write_aborted()))
        {
            return ProxyError::RequestBody(e);
        }
        ProxyError::UpstreamReset(e)
    }
}

/// Whether the app closed (or reset) the connection a request went out on
/// before any answer to it: what an app does when its keep-alive timer
/// fires just as the proxy sends on the kept connection. hyper's
/// `IncompleteMessage`, or the reset of a socket that still held the
/// request unread.
pub fn closed_unanswered(e: &hyper::Error) -> bool {
    use std::error::Error;
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    e.is_incomplete_message()
        || e.source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe))
}

impl From<DialError> for ProxyError {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Refused => ProxyError::ConnectionRefused,
            DialError::Timeout => ProxyError::ConnectTimeout,
            DialError::Loop => ProxyError::LoopDetected,
            DialError::OwnPort => ProxyError::OwnPort,
            DialError::Failed(e) => ProxyError::ConnectFailed(e),
        }
    }
}
