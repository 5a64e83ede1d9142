//! The client's request body on its way upstream: frames pass untouched,
//! their bytes are counted for the span, and an HTTP/1 client connection
//! learns when the body has been read to its end (`http::idle`). A request
//! with no body and a method that may be repeated can be copied
//! (`replayable`), to go again when a kept connection fails it.

use super::conn::ConnMeta;
use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

pub struct ForwardBody {
    /// `None` for the empty body of a request's copy (`replayable`).
    inner: Option<Incoming>,
    counter: Option<Arc<AtomicU64>>,
    /// An HTTP/1 client connection, told when the body has been read to
    /// its end.
    conn: Option<Arc<ConnMeta>>,
}

impl ForwardBody {
    /// `counter` is `None` for a body that was already complete (GET,
    /// HEAD, ...): counting costs an allocation. `conn` is the HTTP/1
    /// client connection to tell.
    pub fn new(inner: Incoming, counter: Option<Arc<AtomicU64>>, conn: Option<Arc<ConnMeta>>) -> Self {
        let conn = conn.filter(|_| !inner.is_end_stream());
        ForwardBody { inner: Some(inner), counter, conn }
    }
}

/// A copy of `req` to send again on a new connection when the app closes
/// a kept connection without answering it (`error::closed_unanswered`):
/// only for an idempotent method (RFC 9110 section 9.2.2) and no body, so
/// the copy is the whole request and sending it twice is allowed. Other
/// requests are not copied; their clients get the 502.
/// A kept connection idle for less than this is not one an app's
/// keep-alive timer closes (their timers run for seconds: gunicorn 2 s,
/// Node and Apache 5 s, nginx 75 s), so a request sent on it is not copied:
/// the copy clones the header map, and under load every connection is
/// busier than this.
pub const REPLAY_AFTER_IDLE: std::time::Duration = std::time::Duration::from_millis(250);

pub fn replayable(req: &Request<ForwardBody>) -> Option<Request<ForwardBody>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(ForwardBody { inner: None, counter: None, conn: None });
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let me = self.get_mut();
        let Some(inner) = &mut me.inner else { return Poll::Ready(None) };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(c)) = (&frame, &me.counter)
            && let Some(d) = f.data_ref()
        {
            c.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        if (frame.is_none() || inner.is_end_stream())
            && let Some(conn) = me.conn.take()
        {
            conn.keepalive.request_body_done();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
