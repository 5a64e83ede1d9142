//! The producer: a loop that calls the consumer over HTTP, written with
//! plain hyper.
//!
//! It has no tracing code at all: it sends no `traceparent` and records no
//! span. Like any app honouring `HTTP_PROXY`, it only knows that its
//! requests go through a proxy, so the CLIENT spans, and the context that
//! joins them to the consumer's SERVER spans, come from the sidecar alone.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the producer saw, to compare with what the sidecars recorded.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub server_errors: u64,
    /// No response at all: connection refused or reset.
    pub failed: u64,
}

impl Tally {
    pub fn answered(&self) -> u64 {
        self.ok + self.server_errors
    }
}

/// Calls `target` through the HTTP proxy at `proxy` once per `interval`
/// until `run_for` has passed, over one keep-alive connection that is
/// reopened only if it breaks.
pub async fn run(proxy: SocketAddr, target: SocketAddr, interval: Duration, run_for: Duration) -> Tally {
    run_to(proxy, &target.to_string(), interval, run_for).await
}

/// `run`, for a target named `authority` (`host:port`, the request's
/// target and `Host`), over connections to `proxy`: an HTTP proxy, or the
/// target's own address when the pod's redirect rules do the rest.
pub async fn run_to(proxy: SocketAddr, authority: &str, interval: Duration, run_for: Duration) -> Tally {
    let deadline = Instant::now() + run_for;
    let mut ticks = tokio::time::interval(interval);
    // A slow answer delays the next call instead of causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn = None;
    let mut tally = Tally::default();
    for n in 0u64.. {
        if ticks.tick().await >= deadline {
            break;
        }
        match call(&mut conn, proxy, authority, &path(n)).await {
            Ok(s) if s.is_server_error() => tally.server_errors += 1,
            Ok(_) => tally.ok += 1,
            Err(_) => {
                conn = None;
                tally.failed += 1;
            }
        }
    }
    tally
}

/// Three orders for each inventory check; the ids wander over a fixed
/// range so latencies and failures vary but repeat from run to run.
fn path(n: u64) -> String {
    let k = n * 7919 % 1000;
    if n % 4 == 3 { format!("/inventory/{}", 5000 + k % 100) } else { format!("/orders/{}", 1000 + k % 200) }
}

async fn call(
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    proxy: SocketAddr,
    target: &str,
    path: &str,
) -> Result<StatusCode, Error> {
    let sender = match conn {
        Some(s) if !s.is_closed() => s,
        slot => slot.insert(connect(proxy).await?),
    };
    sender.ready().await?;
    // Absolute-form, as RFC 9112 §3.2.2 asks of a request to a proxy.
    let req = Request::get(format!("http://{target}{path}")).header(HOST, target).body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    // Reading the body to its end frees the connection for the next call.
    resp.into_body().collect().await?;
    Ok(status)
}

async fn connect(proxy: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Error> {
    let stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    // Ends when the sender is dropped or the proxy closes the connection.
    tokio::spawn(conn);
    Ok(sender)
}
