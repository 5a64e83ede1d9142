//! Upstream connections, pooled: idle HTTP/1 connections are reused
//! (keep-alive) and one HTTP/2 connection per destination is shared by all
//! requests (multiplexing).
//!
//! The pool is our own rather than hyper-util's client because the proxy
//! must choose where to connect independently of the request's authority:
//! an inbound request keeps its `Host`/`:authority` but goes to the app.
//! The locks guard only a push or a pop, never an await.

use super::error::{ProxyError, closed_unanswered};
use super::request_body::{ForwardBody, REPLAY_AFTER_IDLE, replayable};
use crate::dial::Dialer;
use crate::trace::Upstream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Idle HTTP/1 connections kept per destination (per worker). Enough for
/// the concurrency a sidecar's app sees; past it the oldest is closed.
const MAX_IDLE_PER_DEST: usize = 512;

/// An HTTP/1 connection lent to one request: `finish` hands it back when
/// the response body has ended; dropping it (an aborted body) closes it.
pub struct Release {
    pool: Arc<Pool>,
    dest: Upstream,
    sender: http1::SendRequest<ForwardBody>,
}

impl Release {
    /// Usually the connection is ready again as soon as the body's end has
    /// been read, and goes straight back; otherwise a task waits for it.
    pub fn finish(self) {
        let Release { pool, dest, mut sender } = self;
        if sender.is_ready() {
            pool.put_idle(dest, sender);
            return;
        }
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put_idle(dest, sender);
            }
        });
    }
}

/// An idle connection, with the time it came back.
type Idle = (http1::SendRequest<ForwardBody>, Instant);

pub struct Pool {
    dialer: Arc<Dialer>,
    h1_idle: Mutex<HashMap<Upstream, VecDeque<Idle>>>,
    h2: Mutex<HashMap<Upstream, Arc<H2Slot>>>,
}

/// One shared HTTP/2 connection per destination. `connecting` makes
/// concurrent first requests wait for one handshake instead of each
/// opening a connection of its own.
#[derive(Default)]
struct H2Slot {
    conn: Mutex<Option<http2::SendRequest<ForwardBody>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Slot {
    fn live(&self) -> Option<http2::SendRequest<ForwardBody>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn set(&self, s: http2::SendRequest<ForwardBody>) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
}

impl Pool {
    pub fn new(dialer: Arc<Dialer>) -> Arc<Pool> {
        Arc::new(Pool { dialer, h1_idle: Mutex::default(), h2: Mutex::default() })
    }

    /// Sends a request and waits for the response head. An HTTP/1
    /// connection comes back with a `Release` that returns it to the pool
    /// once the response body has been read (an upgrade keeps it for good).
    pub async fn send(
        self: &Arc<Self>,
        dest: &Upstream,
        h2: bool,
        req: Request<ForwardBody>,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Option<Release>), ProxyError> {
        if h2 { self.send_h2(dest, req).await.map(|r| (r, None)) } else { self.send_h1(dest, req, upgrade).await }
    }

    async fn send_h1(
        self: &Arc<Self>,
        dest: &Upstream,
        mut req: Request<ForwardBody>,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Option<Release>), ProxyError> {
        loop {
            let (mut sender, quiet) = match self.checkout_h1(dest) {
                Some((s, since)) => (s, Some(since.elapsed() >= REPLAY_AFTER_IDLE)),
                None => (self.connect_h1(dest).await?, None),
            };
            let reused = quiet.is_some();
            let copy = if quiet == Some(true) { replayable(&req) } else { None };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let release = (!upgrade).then(|| Release { pool: self.clone(), dest: dest.clone(), sender });
                    return Ok((resp, release));
                }
                Err(mut e) => match (e.take_message(), copy) {
                    // An idle connection the app closed just as we picked it:
                    // the request was never written, so it is safe to resend.
                    (Some(r), _) if reused => req = r,
                    // Written, and the app closed without answering: a
                    // request that may go twice goes again (the connection
                    // is dropped; the next is another idle one or new).
                    (None, Some(copy)) if closed_unanswered(e.error()) => req = copy,
                    _ => return Err(ProxyError::from_hyper(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection (the warmest), skipping any
    /// the upstream has closed.
    fn checkout_h1(&self, dest: &Upstream) -> Option<Idle> {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(dest)?;
        while let Some((s, since)) = list.pop_back() {
            if s.is_ready() {
                return Some((s, since));
            }
        }
        None
    }

    fn put_idle(&self, dest: Upstream, sender: http1::SendRequest<ForwardBody>) {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(dest).or_default();
        if list.len() >= MAX_IDLE_PER_DEST {
            list.pop_front();
        }
        list.push_back((sender, Instant::now()));
    }

    async fn connect_h1(&self, dest: &Upstream) -> Result<http1::SendRequest<ForwardBody>, ProxyError> {
        let io = TokioIo::new(self.dialer.connect(dest).await?);
        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(ProxyError::from_hyper)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream HTTP/1 connection ended");
            }
        });
        Ok(sender)
    }

    async fn send_h2(&self, dest: &Upstream, req: Request<ForwardBody>) -> Result<Response<Incoming>, ProxyError> {
        let slot = self.h2.lock().unwrap_or_else(|p| p.into_inner()).entry(dest.clone()).or_default().clone();
        let mut sender = match slot.live() {
            Some(s) => s,
            None => self.h2_connection(&slot, dest).await?,
        };
        if sender.ready().await.is_err() {
            sender = self.h2_connection(&slot, dest).await?;
        }
        sender.send_request(req).await.map_err(ProxyError::from_hyper)
    }

    async fn h2_connection(
        &self,
        slot: &H2Slot,
        dest: &Upstream,
    ) -> Result<http2::SendRequest<ForwardBody>, ProxyError> {
        let _one_handshake = slot.connecting.lock().await;
        if let Some(s) = slot.live() {
            return Ok(s);
        }
        let s = self.connect_h2(dest).await?;
        slot.set(s.clone());
        Ok(s)
    }

    async fn connect_h2(&self, dest: &Upstream) -> Result<http2::SendRequest<ForwardBody>, ProxyError> {
        let io = TokioIo::new(self.dialer.connect(dest).await?);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(ProxyError::from_hyper)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }
}
