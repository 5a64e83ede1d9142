//! What passes between the request path's layers: the `Exchange` a request
//! becomes once its span has started (going down), and what `Forwarded`
//! brings back up from the upstream.

use super::pool::Release;
use crate::trace::Upstream;
use crate::trace::context::SpanContext;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpStream;

/// A request on its way to the upstream, with where it goes, the context
/// to send on, and the counter of its body's bytes (when it has a body).
pub struct Exchange {
    pub req: Request<Incoming>,
    pub dest: Upstream,
    pub context: SpanContext,
    pub request_bytes: Option<Arc<AtomicU64>>,
}

/// What came back from the upstream.
pub enum Forwarded {
    /// The response head; its body streams after. `release` hands a pooled
    /// HTTP/1 connection back once the body has ended.
    Response { resp: Response<Incoming>, release: Option<Release>, upstream_wait: Duration },
    /// Both sides switched protocols (WebSocket and other `Upgrade`s): a
    /// tunnel from here on.
    Upgraded { head: http::response::Parts, client: OnUpgrade, upstream: OnUpgrade, upstream_wait: Duration },
    /// A `CONNECT` through the outbound proxy: the client gets 200 and a raw
    /// tunnel to the target.
    Connected { client: OnUpgrade, sock: TcpStream },
}
