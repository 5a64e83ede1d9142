//! The consumer: a small order service written with plain hyper.
//!
//! It has no tracing code at all: it never reads `traceparent`, never
//! records a span, never links to sidetrace. That is the point of the demo:
//! the SERVER spans, their timings and their link to the caller all come
//! from the sidecar in front of it, as they would for a service nobody is
//! allowed to change.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until its task is dropped.
pub async fn run(listener: TcpListener) {
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            // Out of file descriptors and the like: back off rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let conn = auto::Builder::new(TokioExecutor::new());
            let _ = conn.serve_connection(TokioIo::new(sock), service_fn(handle)).await;
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

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"only GET"}"#.into()));
    }
    let Some(resource) = Resource::parse(req.uri().path()) else {
        return Ok(reply(StatusCode::NOT_FOUND, r#"{"error":"no such resource"}"#.into()));
    };
    tokio::time::sleep(resource.work()).await;
    if resource.fails() {
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"database unavailable"}"#.into()));
    }
    Ok(reply(StatusCode::OK, resource.json()))
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}
