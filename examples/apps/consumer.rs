//! The consumer: a small order service written with plain hyper.
//!
//! It has no tracing code at all: it never reads `traceparent`, never
//! records a span, never links to sidetrace. That is the point of the demo:
//! the SERVER spans, their timings and their link to the caller all come
//! from the sidecar in front of it, as they would for a service nobody is
//! allowed to change. With a store (`run_with_store`) it asks the store
//! about each item through its HTTP proxy, and copies no header from the
//! request it serves to the call it makes: its sidecar joins the two.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Where the consumer asks about stock: the store named `authority`
/// (`host:port`, the request's target and `Host`), over a connection to
/// `proxy`: its sidecar's outbound side, as `HTTP_PROXY` says, or the
/// store's own address when the pod's redirect rules do the rest.
#[derive(Clone)]
pub struct Store {
    pub proxy: SocketAddr,
    pub authority: std::sync::Arc<str>,
}

/// Serves until its task is dropped. (The demo gives the consumer a store;
/// tests/deploy_dashboard.rs runs it without one.)
#[allow(dead_code)]
pub async fn run(listener: TcpListener) {
    serve(listener, None).await
}

/// Serves, asking `store` about every item, until its task is dropped.
pub async fn run_with_store(listener: TcpListener, store: Store) {
    serve(listener, Some(store)).await
}

async fn serve(listener: TcpListener, store: Option<Store>) {
    accept(listener, move |req| handle(req, store.clone())).await
}

/// Serves each connection `listener` accepts with `handler`, over HTTP/1.1
/// and h2c, until its task is dropped (the store's loop too).
pub async fn accept<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            // Out of file descriptors and the like: back off rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let conn = auto::Builder::new(TokioExecutor::new());
            let _ = conn.serve_connection(TokioIo::new(sock), service_fn(handler)).await;
        });
    }
}

enum Resource {
    Order(u64),
    Stock(u64),
}

impl Resource {
    fn parse(path: &str) -> Option<Resource> {
        if let Some(id) = path.strip_prefix("/orders/") {
            return id.parse().ok().map(Resource::Order);
        }
        path.strip_prefix("/inventory/")?.parse().ok().map(Resource::Stock)
    }

    /// Simulated work that varies with the id, so the percentiles differ
    /// from the mean; inventory is the slower route.
    fn work(&self) -> Duration {
        match self {
            Resource::Order(id) => Duration::from_millis(1 + id % 8),
            Resource::Stock(sku) => Duration::from_millis(4 + sku % 7),
        }
    }

    /// A fixed few ids fail, so the error columns have something to show
    /// and every run shows the same ones.
    fn fails(&self) -> bool {
        match self {
            Resource::Order(id) => id % 17 == 0,
            Resource::Stock(sku) => sku % 13 == 0,
        }
    }

    /// The item the store is asked about.
    fn sku(&self) -> u64 {
        match self {
            Resource::Order(id) => 7000 + id % 100,
            Resource::Stock(sku) => *sku,
        }
    }

    fn json(&self) -> String {
        match self {
            Resource::Order(id) => {
                format!(
                    r#"{{"id":{id},"status":"shipped","items":{},"total_cents":{}}}"#,
                    1 + id % 4,
                    999 + id * 37 % 9000
                )
            }
            Resource::Stock(sku) => format!(r#"{{"sku":{sku},"in_stock":{}}}"#, sku * 7 % 120),
        }
    }
}

async fn handle(req: Request<Incoming>, store: Option<Store>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"only GET"}"#.into()));
    }
    let Some(resource) = Resource::parse(req.uri().path()) else {
        return Ok(reply(StatusCode::NOT_FOUND, r#"{"error":"no such resource"}"#.into()));
    };
    tokio::time::sleep(resource.work()).await;
    if let Some(store) = store {
        match ask(store, resource.sku()).await {
            Ok(s) if s.is_success() => {}
            Ok(s) => return Ok(reply(StatusCode::BAD_GATEWAY, format!(r#"{{"error":"the store answered {s}"}}"#))),
            Err(e) => return Ok(reply(StatusCode::BAD_GATEWAY, format!(r#"{{"error":"the store failed: {e}"}}"#))),
        }
    }
    if resource.fails() {
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"database unavailable"}"#.into()));
    }
    Ok(reply(StatusCode::OK, resource.json()))
}

/// One call to the store through the proxy, on a connection of its own:
/// a plain app that does not care to pool.
async fn ask(store: Store, sku: u64) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(store.proxy).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let target = &store.authority;
    let req = Request::get(format!("http://{target}/stock/{sku}"))
        .header(hyper::header::HOST, &**target)
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    http_body_util::BodyExt::collect(resp.into_body()).await?;
    Ok(status)
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}
