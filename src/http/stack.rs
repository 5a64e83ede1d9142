//! The request path, as one stack of tower layers in the order a request
//! meets them. Every cross-cutting step is a layer here, so limits, load
//! shedding and timeouts from tower slot in at the place they belong:
//!
//! 1. `KeepAliveLayer` (HTTP/1 only): the connection learns when requests
//!    start and end, to idle without buffers;
//! 2. `GuardLayer` (HTTP/1 only): a request whose bytes broke a framing
//!    rule (`framing`), or without its one `Host`, is answered 400 here
//!    and goes no further;
//! 3. `OverloadLayer` over tower's `LoadShed` and `GlobalConcurrencyLimit`
//!    (`--max-concurrent-requests`, one semaphore per listener): beyond
//!    the limit, 503 with `Retry-After` at once;
//! 4. `RecordLayer`: context, destination, the span, and the response
//!    (or the error) going back;
//! 5. tower's `TimeoutLayer` (`--response-timeout`): the upstream's
//!    response head in time, or 504;
//! 6. `Forward`: rewrite the request and send it upstream.
//!
//! The stack is generic all the way down (no boxed service where layers
//! join): only `Forward`'s own future is boxed, once per request.

use super::conn::ConnMeta;
use super::dedicated::Dedicated;
use super::forward::Forward;
use super::guard_layer::GuardLayer;
use super::keepalive_layer::KeepAliveLayer;
use super::overload_layer::OverloadLayer;
use super::record_layer::RecordLayer;
use super::response_body::ProxyBody;
use super::shared::Shared;
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Service, ServiceBuilder};

/// The stack of one client connection. `dedicated` is its own upstream
/// connection, for inbound HTTP/1.
pub fn stack(
    shared: &Arc<Shared>,
    conn: &Arc<ConnMeta>,
    http1: bool,
    dedicated: Option<Arc<Dedicated>>,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    ServiceBuilder::new()
        .option_layer(http1.then(|| KeepAliveLayer::new(conn.clone())))
        .option_layer(http1.then(|| GuardLayer::new(shared.clone(), conn.clone())))
        .layer(OverloadLayer::new(shared.metrics.clone()))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(shared.limits.requests.clone()))
        .layer(RecordLayer::new(shared.clone(), conn.clone()))
        .option_layer(shared.response_timeout.map(TimeoutLayer::new))
        // tower's layers box their errors; so do ours below them, alike.
        .map_err(BoxError::from)
        .service(Forward::new(shared.clone(), conn.clone(), dedicated))
}
