//! `--max-concurrent-requests`: tower's `GlobalConcurrencyLimit` (one
//! semaphore per listener, shared by its workers) under tower's
//! `LoadShed`, so that a request beyond the limit fails at once instead of
//! queueing; this layer, above both, answers that failure 503 with
//! `Retry-After` and counts it. A permit is held until the response head
//! is back (tower's limit ends with the inner future); the request makes
//! no span, like the other refusals (`guard_layer`).

use super::guard_layer::refusal;
use super::response_body::ProxyBody;
use crate::metrics::DirectionMetrics;
use crate::vocab::RejectReason;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{BoxError, Layer, Service};

#[derive(Clone)]
pub struct OverloadLayer {
    metrics: Arc<DirectionMetrics>,
}

impl OverloadLayer {
    pub fn new(metrics: Arc<DirectionMetrics>) -> Self {
        OverloadLayer { metrics }
    }
}

impl<S> Layer<S> for OverloadLayer {
    type Service = Overload<S>;
    fn layer(&self, inner: S) -> Overload<S> {
        Overload { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Overload<S> {
    inner: S,
    metrics: Arc<DirectionMetrics>,
}

impl<S, B> Service<Request<B>> for Overload<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = OverloadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // `LoadShed` is always ready; an error here would be one below it.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> OverloadFuture<S::Future> {
        OverloadFuture { inner: self.inner.call(req), metrics: Some(self.metrics.clone()) }
    }
}

pin_project! {
    pub struct OverloadFuture<F> {
        #[pin]
        inner: F,
        metrics: Option<Arc<DirectionMetrics>>,
    }
}

impl<F> Future for OverloadFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, BoxError>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(resp) => Poll::Ready(Ok(resp)),
            Err(e) => {
                // Only the shedding fails: the span's layer below answers
                // every failure of its own.
                tracing::debug!(error = %e, "request refused: --max-concurrent-requests reached");
                if let Some(m) = this.metrics.take() {
                    m.refusals.request(RejectReason::Overloaded);
                }
                let mut resp = refusal(RejectReason::Overloaded);
                resp.headers_mut().remove(http::header::CONNECTION);
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
                Poll::Ready(Ok(resp))
            }
        }
    }
}
