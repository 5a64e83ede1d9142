//! HTTP/1 requests the proxy refuses to forward, just inside the
//! keep-alive bookkeeping on an HTTP/1 connection's stack: a request whose
//! bytes broke a framing rule (`http::framing`, which reads them before
//! hyper does), and an HTTP/1.1 request without exactly one `Host` (RFC
//! 9112 §3.2). Either is answered 400 with `Connection: close` and never
//! reaches the span's layer or the upstream; hyper then closes the
//! connection, so nothing the client sent after it is read as a request.
//!
//! What hyper refuses itself (bad method, target or header bytes, 431) is
//! answered by hyper and counted here when the connection ends
//! (`count_connection_end`). No refusal makes a span: nothing was
//! forwarded, and hyper's refusals could not make one; both are counted
//! in `sidetrace_rejected_requests_total` instead.

use super::conn::{ConnMeta, FramingVerdict};
use super::framing::Verdict;
use super::response_body::ProxyBody;
use super::shared::Shared;
use crate::vocab::RejectReason;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tower::{Layer, Service};

impl FramingVerdict {
    /// Requests handed to the guard so far.
    pub fn dispatched(&self) -> u32 {
        self.dispatched.load(Ordering::Acquire)
    }

    /// Keeps the scanner's verdict; `true` when its request was already
    /// handed on, so the guard can no longer refuse it.
    pub fn found(&self, v: Verdict) -> bool {
        let i = RejectReason::ALL.iter().position(|r| *r == v.reason).unwrap_or(0);
        self.reason.store(i as u8, Ordering::Release);
        self.bad.store(v.request + 1, Ordering::Release);
        v.request < self.dispatched()
    }

    /// The next request's number; its reason to refuse it, if any (taken,
    /// so that it is counted once).
    fn next(&self) -> Option<RejectReason> {
        let n = self.dispatched.fetch_add(1, Ordering::AcqRel);
        self.bad.compare_exchange(n + 1, 0, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| self.reason())
    }

    fn reason(&self) -> RejectReason {
        RejectReason::ALL[usize::from(self.reason.load(Ordering::Acquire)) % RejectReason::ALL.len()]
    }

    /// A verdict the guard never saw: the request was cut short upstream,
    /// or hyper refused it first.
    fn untaken(&self) -> Option<RejectReason> {
        (self.bad.swap(0, Ordering::AcqRel) != 0).then(|| self.reason())
    }
}

/// Counts what ended an HTTP/1 connection if it was a refusal: the
/// framing scanner's own verdict first (more precise than hyper's), else
/// hyper's parse error or header read timeout.
pub fn count_connection_end(shared: &Shared, conn: &ConnMeta, err: Option<&hyper::Error>) {
    let reason = conn.framing.untaken().or_else(|| {
        let e = err?;
        if e.is_parse_too_large() {
            Some(RejectReason::HeadersTooLarge)
        } else if e.is_parse() {
            Some(RejectReason::Malformed)
        } else if e.is_timeout() {
            Some(RejectReason::HeaderTimeout)
        } else {
            None
        }
    });
    if let Some(r) = reason {
        tracing::debug!(client = %conn.client, reason = r.as_str(), "HTTP/1 request refused");
        shared.metrics.refusals.request(r);
    }
}

/// The answer to a refused request.
pub fn refusal(reason: RejectReason) -> Response<ProxyBody> {
    let text = format!("sidetrace: request refused: {}\n", reason.as_str());
    let mut resp = Response::new(ProxyBody::local(Bytes::from(text)));
    *resp.status_mut() = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; HTTP/1.0
/// at most one.
fn host_ok<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => false,
        (None, _) => req.version() != Version::HTTP_11,
        (Some(_), None) => true,
    }
}

#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
}

impl GuardLayer {
    pub fn new(shared: Arc<Shared>, conn: Arc<ConnMeta>) -> Self {
        GuardLayer { shared, conn }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, shared: self.shared.clone(), conn: self.conn.clone() }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
}

impl<S, B> Service<Request<B>> for Guard<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>>,
{
    type Response = Response<ProxyBody>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> GuardFuture<S::Future> {
        let framing = self.conn.framing.next();
        let reason = framing.or_else(|| (!host_ok(&req)).then_some(RejectReason::Host));
        match reason {
            Some(r) => {
                tracing::debug!(client = %self.conn.client, reason = r.as_str(), "HTTP/1 request refused");
                self.shared.metrics.refusals.request(r);
                GuardFuture::Refused { resp: Some(refusal(r)) }
            }
            None => GuardFuture::Passed { inner: self.inner.call(req) },
        }
    }
}

pin_project! {
    #[project = GuardProj]
    pub enum GuardFuture<F> {
        Passed { #[pin] inner: F },
        Refused { resp: Option<Response<ProxyBody>> },
    }
}

impl<F, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, E>>,
{
    type Output = Result<Response<ProxyBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Passed { inner } => inner.poll(cx),
            GuardProj::Refused { resp } => Poll::Ready(Ok(resp.take().expect("polled after completion"))),
        }
    }
}
