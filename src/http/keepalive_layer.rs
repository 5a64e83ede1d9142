//! HTTP/1 connection bookkeeping, outermost on an HTTP/1 connection's
//! stack: the connection learns when a request starts and when its
//! response body is done with, so that it can idle without buffers
//! (`http::idle`); a protocol switch pins it as a tunnel for good.

use super::conn::ConnMeta;
use super::response_body::ProxyBody;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

#[derive(Clone)]
pub struct KeepAliveLayer {
    conn: Arc<ConnMeta>,
}

impl KeepAliveLayer {
    pub fn new(conn: Arc<ConnMeta>) -> Self {
        KeepAliveLayer { conn }
    }
}

impl<S> Layer<S> for KeepAliveLayer {
    type Service = KeepAlive<S>;
    fn layer(&self, inner: S) -> KeepAlive<S> {
        KeepAlive { inner, conn: self.conn.clone() }
    }
}

#[derive(Clone)]
pub struct KeepAlive<S> {
    inner: S,
    conn: Arc<ConnMeta>,
}

impl<S, B> Service<Request<B>> for KeepAlive<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>>,
    B: Body,
{
    type Response = Response<ProxyBody>;
    type Error = S::Error;
    type Future = KeepAliveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> KeepAliveFuture<S::Future> {
        self.conn.keepalive.request_started(req.body().is_end_stream());
        let connect = req.method() == Method::CONNECT;
        KeepAliveFuture { inner: self.inner.call(req), conn: Some(self.conn.clone()), connect }
    }
}

pin_project! {
    pub struct KeepAliveFuture<F> {
        #[pin]
        inner: F,
        conn: Option<Arc<ConnMeta>>,
        connect: bool,
    }
}

impl<F, E> Future for KeepAliveFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, E>>,
{
    type Output = Result<Response<ProxyBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let conn = this.conn.take().expect("polled after completion");
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS || (*this.connect && resp.status().is_success()) {
            conn.keepalive.pin();
        }
        Poll::Ready(Ok(resp.map(|b| b.notify_on_drop(conn))))
    }
}
