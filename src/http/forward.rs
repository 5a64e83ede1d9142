//! The forwarding service, innermost on the request path:
//!
//! - **rewrite**: hop-by-hop headers out (RFC 9110 section 7.6.1), the
//!   proxy's span in as the next hop's parent (`trace::context::inject`),
//!   an HTTP/1 absolute-form target to origin-form;
//! - **forward**: inbound HTTP/1 on the client connection's own upstream
//!   connection (`dedicated`), everything else through the worker's pool
//!   (`pool`); a `CONNECT` through the outbound proxy becomes a raw tunnel.
//!
//! It answers with the upstream's response head (`Forwarded`), or with the
//! `ProxyError` that says why there is none.

use super::conn::ConnMeta;
use super::dedicated::Dedicated;
use super::error::ProxyError;
use super::exchange::{Exchange, Forwarded};
use super::headers::{strip_hop_by_hop, to_origin_form, wants_upgrade};
use super::request_body::ForwardBody;
use super::shared::{SERVICE_HEADER, Shared};
use crate::trace::{context, tracestate};
use crate::vocab::Direction;
use http::{Method, Request, StatusCode, Version};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::Service;

#[derive(Clone)]
pub struct Forward {
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
    /// Inbound HTTP/1: the client connection's own upstream connection.
    dedicated: Option<Arc<Dedicated>>,
}

impl Forward {
    pub fn new(shared: Arc<Shared>, conn: Arc<ConnMeta>, dedicated: Option<Arc<Dedicated>>) -> Self {
        Forward { shared, conn, dedicated }
    }
}

impl Service<Exchange> for Forward {
    type Response = Forwarded;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Forwarded, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: Exchange) -> Self::Future {
        Box::pin(forward(self.clone(), x))
    }
}

async fn forward(f: Forward, x: Exchange) -> Result<Forwarded, ProxyError> {
    let Exchange { mut req, dest, context, request_bytes } = x;
    let shared = &f.shared;
    if req.method() == Method::CONNECT && shared.direction == Direction::Outbound {
        let sock = shared.dialer.connect(&dest).await?;
        return Ok(Forwarded::Connected { client: hyper::upgrade::on(&mut req), sock });
    }
    let h2 = req.version() == Version::HTTP_2;
    let connect = req.method() == Method::CONNECT;
    let upgrade = !h2 && (wants_upgrade(req.headers()) || connect);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    context::inject(&mut parts.headers, &context);
    if !h2 {
        to_origin_form(&mut parts.uri, &mut parts.headers);
    }
    let keepalive = (!h2).then(|| f.conn.clone());
    let req = Request::from_parts(parts, ForwardBody::new(body, request_bytes, keepalive));

    let upstream_started = Instant::now();
    let (mut resp, release) = match (&f.dedicated, upgrade) {
        (Some(d), false) => (d.send(&shared.dialer, &dest, req).await?, None),
        (Some(d), true) => (d.send_upgrade(&shared.dialer, &dest, req).await?, None),
        (None, _) => shared.pool.send(&dest, h2, req, upgrade).await?,
    };
    let upstream_wait = upstream_started.elapsed();
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success());
    if let (Some(client), true) = (client_upgrade, switched) {
        let upstream = hyper::upgrade::on(&mut resp);
        let (head, _) = resp.into_parts();
        return Ok(Forwarded::Upgraded { head, client, upstream, upstream_wait });
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    // Inbound, a request that came through another sidetrace learns whose
    // service answered; its sidecar strips the header before its app sees it.
    if shared.direction == Direction::Inbound
        && let (Some(a), Some(ts)) = (&shared.announce, &context.tracestate)
        && tracestate::own_entry(ts.as_bytes()).is_some()
    {
        resp.headers_mut().insert(SERVICE_HEADER.clone(), a.service.clone());
    }
    Ok(Forwarded::Response { resp, release, upstream_wait })
}
