//! The store: the stock service the consumer asks, written with plain
//! hyper and no tracing code, like the others.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until its task is dropped.
pub async fn run(listener: TcpListener) {
    super::consumer::accept(listener, handle).await
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(sku) = req.uri().path().strip_prefix("/stock/").and_then(|s| s.parse::<u64>().ok()) else {
        return Ok(reply(StatusCode::NOT_FOUND, r#"{"error":"no such item"}"#.into()));
    };
    // A lookup whose cost varies with the item, and a fixed few that time out.
    tokio::time::sleep(Duration::from_micros(500 + sku % 5 * 700)).await;
    if sku % 29 == 0 {
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"shard unavailable"}"#.into()));
    }
    Ok(reply(StatusCode::OK, format!(r#"{{"sku":{sku},"available":{}}}"#, sku * 13 % 90)))
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}
