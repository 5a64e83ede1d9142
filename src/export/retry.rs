//! What an export attempt's answer means, per the OTLP specification's
//! failure rules, and how long to wait before the next attempt:
//! exponential backoff with jitter, or the server's `Retry-After` /
//! gRPC `RetryInfo` when it gave one.

use crate::config::export::RetryPolicy;
use std::time::Duration;

#[derive(Debug)]
pub enum Outcome {
    /// Accepted; `rejected` spans were refused (OTLP partial success).
    Ok { rejected: i64, message: String },
    /// Worth trying again, no sooner than `after` when the server said so.
    Retry { after: Option<Duration>, reason: Failure },
    /// Will never succeed as sent: drop the batch.
    Fail { reason: Failure },
}

/// Why an export attempt failed. The kind is a closed set; the texts ride
/// along for the log line only.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("HTTP {0}")]
    Http(u16),
    #[error("gRPC {code:?}: {message}")]
    Grpc { code: tonic::Code, message: String },
    #[error("no answer within the export timeout")]
    Timeout,
    #[error("connection error: {0}")]
    Connection(String),
}

/// OTLP/HTTP: 429, 502, 503 and 504 are retryable; any other failure
/// status is not.
pub fn classify_http(status: u16, retry_after: Option<&http::HeaderValue>) -> Option<Outcome> {
    match status {
        200..=299 => None,
        429 | 502 | 503 | 504 => {
            Some(Outcome::Retry { after: retry_after.and_then(parse_retry_after), reason: Failure::Http(status) })
        }
        _ => Some(Outcome::Fail { reason: Failure::Http(status) }),
    }
}

/// `Retry-After` is delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn parse_retry_after(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// OTLP/gRPC: the retryable codes of the specification; RESOURCE_EXHAUSTED
/// only when the server sent RetryInfo (it says when capacity returns).
pub fn classify_grpc(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    use tonic_types::StatusExt;
    let retry_info = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let reason = Failure::Grpc { code: status.code(), message: status.message().to_string() };
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retry { after: retry_info, reason },
        Code::ResourceExhausted if retry_info.is_some() => Outcome::Retry { after: retry_info, reason },
        _ => Outcome::Fail { reason },
    }
}

pub struct Backoff {
    policy: RetryPolicy,
    next: Duration,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, next: policy.initial }
    }

    /// The wait before the next attempt: the server's word if it gave one,
    /// else the current interval ±50% (as the OpenTelemetry Collector's
    /// exporter helper), which then doubles up to the maximum.
    pub fn delay(&mut self, server_said: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.policy.max);
        if let Some(d) = server_said {
            return d;
        }
        let jitter = 0.5 + fastrand::f64();
        base.mul_f64(jitter).min(self.policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_rules() {
        assert!(classify_http(200, None).is_none());
        let ra = http::HeaderValue::from_static("2");
        match classify_http(503, Some(&ra)) {
            Some(Outcome::Retry { after, .. }) => assert_eq!(after, Some(Duration::from_secs(2))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify_http(400, None), Some(Outcome::Fail { .. })));
        assert!(matches!(classify_http(429, None), Some(Outcome::Retry { after: None, .. })));
    }

    #[test]
    fn grpc_rules() {
        assert!(matches!(classify_grpc(&tonic::Status::unavailable("down")), Outcome::Retry { .. }));
        assert!(matches!(classify_grpc(&tonic::Status::resource_exhausted("full")), Outcome::Fail { .. }));
        assert!(matches!(classify_grpc(&tonic::Status::invalid_argument("bad")), Outcome::Fail { .. }));
        // RESOURCE_EXHAUSTED with RetryInfo: retry, after the server's delay.
        use tonic_types::{ErrorDetails, StatusExt};
        let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(3)));
        let status = tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "slow down", details);
        match classify_grpc(&status) {
            Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(3))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        };
        let mut b = Backoff::new(policy);
        let first = b.delay(None);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
        for _ in 0..10 {
            assert!(b.delay(None) <= Duration::from_secs(30));
        }
        assert_eq!(b.delay(Some(Duration::from_secs(2))), Duration::from_secs(2));
    }
}
