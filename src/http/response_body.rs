//! The response on its way back to the client (`ProxyBody`): frames
//! stream through untouched, the recorder learns the size, the trailers'
//! `grpc-status`, and how the stream ended; an upstream HTTP/1 connection
//! goes back to its pool when the body has ended.

use super::conn::ConnMeta;
use super::pool::Release;
use crate::record::InFlight;
use crate::vocab::ErrorType;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pub struct ProxyBody {
    kind: Kind,
    /// An HTTP/1 client connection, told when hyper is done with the body.
    conn: Option<Arc<ConnMeta>>,
}

enum Kind {
    Upstream { inner: Incoming, rec: InFlight, release: Option<Release> },
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, rec: InFlight, release: Option<Release>) -> Self {
        ProxyBody { kind: Kind::Upstream { inner, rec, release }, conn: None }
    }

    pub fn local(text: Bytes) -> Self {
        ProxyBody { kind: Kind::Local((!text.is_empty()).then_some(text)), conn: None }
    }

    pub fn empty() -> Self {
        ProxyBody { kind: Kind::Local(None), conn: None }
    }

    pub fn notify_on_drop(mut self, conn: Arc<ConnMeta>) -> Self {
        self.conn = Some(conn);
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.kind {
            Kind::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, rec, release } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            rec.response_bytes += d.len() as u64;
                        } else if let Some(t) = f.trailers_ref()
                            && let Some(code) = grpc_status(t)
                        {
                            rec.set_grpc_status(code);
                        }
                    }
                    // Passing the error on makes hyper abort the client's
                    // stream (RST_STREAM, or a closed HTTP/1 connection)
                    // instead of ending it as if it were complete.
                    Some(Err(_)) => rec.finish(Some(ErrorType::UpstreamReset)),
                    None => {
                        if let Some(r) = release.take() {
                            r.finish();
                        }
                        rec.finish(None)
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(b) => b.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper may never poll a body it knows is empty (204, HEAD, a
        // zero Content-Length): that is a normal end, not an abort.
        if let Kind::Upstream { inner, rec, release } = &mut self.kind
            && inner.is_end_stream()
        {
            if let Some(r) = release.take() {
                r.finish();
            }
            rec.finish(None);
        }
        if let Some(conn) = &self.conn {
            conn.keepalive.response_done();
        }
    }
}

pub fn grpc_status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}
