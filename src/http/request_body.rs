//! The client's request body on its way upstream: frames pass untouched,
//! their bytes are counted for the span, and an HTTP/1 client connection
//! learns when the body has been read to its end (`http::idle`).

use super::conn::ConnMeta;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

pub struct ForwardBody {
    inner: Incoming,
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
        ForwardBody { inner, counter, conn }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(c)) = (&frame, &self.counter)
            && let Some(d) = f.data_ref()
        {
            c.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        if (frame.is_none() || self.inner.is_end_stream())
            && let Some(conn) = self.conn.take()
        {
            conn.keepalive.request_body_done();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
