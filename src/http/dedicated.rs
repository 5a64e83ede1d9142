//! The app-side connection of one inbound HTTP/1 client connection.
//!
//! A transparent proxy presents the app with the connections its clients
//! make: one upstream connection per client connection, alive while the
//! client's is and closed with it. A shared pool would instead keep idle
//! connections to the app that no client holds, and an app that serves
//! one connection at a time (Python's `http.server`, many dev servers)
//! would sit on one of them while the others wait in its accept backlog.
//!
//! The upstream connection is driven by the client connection's own task
//! (`serve` polls `poll_drive` beside hyper's server connection), so a
//! request and its response never cross tasks. When the client connection
//! idles and gives hyper's buffers back (`idle`), this one does too: its
//! socket is taken back from hyper (`park`) and waits beside the client's.

use super::error::{ProxyError, closed_unanswered};
use super::request_body::{ForwardBody, REPLAY_AFTER_IDLE, replayable};
use crate::dial::Dialer;
use crate::trace::Upstream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::net::TcpStream;

type Conn = http1::Connection<TokioIo<TcpStream>, ForwardBody>;

/// Locked only for a take or a put, never across an await; only the client
/// connection's task touches it, so it is never contended.
#[derive(Default)]
pub struct Dedicated {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    sender: Option<http1::SendRequest<ForwardBody>>,
    /// When the last request went out on `sender`'s connection.
    last_sent: Option<Instant>,
    conn: Option<Conn>,
    /// The socket while the client connection idles, without hyper's state.
    parked: Option<TcpStream>,
    /// The client connection's task, woken when a connection is installed.
    waker: Option<Waker>,
}

/// What a request can go out on.
enum Ready {
    Sender(http1::SendRequest<ForwardBody>),
    Parked(TcpStream),
    Nothing,
}

impl Dedicated {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the next request can go out on, and when the last one went.
    fn ready(&self) -> (Ready, Option<Instant>) {
        let mut slot = self.lock();
        let ready = match slot.sender.take() {
            Some(s) if !s.is_closed() => Ready::Sender(s),
            _ => slot.parked.take().map_or(Ready::Nothing, Ready::Parked),
        };
        (ready, slot.last_sent)
    }

    /// Sends a request on the client's own upstream connection, made (or
    /// woken from its parked socket) first if need be, and waits for the
    /// response head.
    pub async fn send(
        &self,
        dialer: &Dialer,
        dest: &Upstream,
        mut req: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        loop {
            // A parked socket idled long enough to have been parked.
            let (ready, last_sent) = self.ready();
            let (mut sender, reused, parked) = match ready {
                Ready::Sender(s) => (s, true, false),
                Ready::Parked(sock) => (self.install(sock).await?, true, true),
                Ready::Nothing => (self.install(dialer.connect(dest).await?).await?, false, false),
            };
            if reused && sender.ready().await.is_err() {
                continue; // the app closed it while it waited
            }
            let now = Instant::now();
            let quiet = parked || last_sent.is_none_or(|t| now.duration_since(t) >= REPLAY_AFTER_IDLE);
            let copy = if reused && quiet { replayable(&req) } else { None };
            let response = sender.try_send_request(req);
            {
                let mut slot = self.lock();
                slot.sender = Some(sender);
                slot.last_sent = Some(now);
            }
            match response.await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match (e.take_message(), copy) {
                    // A kept connection the app closed just as the request
                    // came: it was never written, so it is safe to resend.
                    (Some(r), _) if reused => req = r,
                    // Written, and the app closed without answering: a
                    // request that may go twice goes again, on a new
                    // connection (this one is closed).
                    (None, Some(copy)) if closed_unanswered(e.error()) => req = copy,
                    _ => return Err(ProxyError::from_hyper(e.into_error())),
                },
            }
        }
    }

    /// A request that asks to switch protocols takes the connection for
    /// good: it leaves this slot and runs on its own task, where hyper can
    /// hand its socket over to the tunnel once the app agrees.
    pub async fn send_upgrade(
        &self,
        dialer: &Dialer,
        dest: &Upstream,
        req: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (sender, conn) = {
            let mut slot = self.lock();
            let live = slot.sender.take().filter(|s| !s.is_closed()).zip(slot.conn.take());
            (live, slot.parked.take())
        };
        let (mut sender, conn) = match sender {
            Some(live) => live,
            None => {
                let sock = match conn {
                    Some(parked) => parked,
                    None => dialer.connect(dest).await?,
                };
                http1::Builder::new().handshake(TokioIo::new(sock)).await.map_err(ProxyError::from_hyper)?
            }
        };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream HTTP/1 connection ended");
            }
        });
        sender.send_request(req).await.map_err(ProxyError::from_hyper)
    }

    async fn install(&self, sock: TcpStream) -> Result<http1::SendRequest<ForwardBody>, ProxyError> {
        let (sender, conn) =
            http1::Builder::new().handshake(TokioIo::new(sock)).await.map_err(ProxyError::from_hyper)?;
        let mut slot = self.lock();
        slot.conn = Some(conn);
        if let Some(w) = &slot.waker {
            w.wake_by_ref();
        }
        Ok(sender)
    }

    /// Drives the upstream connection; polled by the client connection's
    /// task beside hyper's server connection. Never completes: a connection
    /// that ends is dropped, and the next request makes a new one.
    pub fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.lock();
        if let Some(conn) = &mut slot.conn
            && let Poll::Ready(r) = conn.poll_without_shutdown(cx)
        {
            if let Err(e) = r {
                tracing::debug!(error = %e, "upstream HTTP/1 connection ended");
            }
            slot.conn = None;
            slot.sender = None;
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The client connection went idle: give hyper's state back and keep
    /// the bare socket. With no request in flight and its sender dropped,
    /// hyper's connection finishes at its next poll; if it does not, or
    /// holds bytes the app sent unasked, the connection is closed instead.
    pub fn park(&self) {
        let mut slot = self.lock();
        slot.sender = None;
        let Some(mut conn) = slot.conn.take() else { return };
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(())) = conn.poll_without_shutdown(&mut cx) {
            let parts = conn.into_parts();
            if parts.read_buf.is_empty() {
                slot.parked = Some(parts.io.into_inner());
            }
        }
    }

    /// The parked socket, for the idle wait to watch; `put_back` returns it.
    pub fn take_parked(&self) -> Option<TcpStream> {
        self.lock().parked.take()
    }

    pub fn put_back(&self, sock: TcpStream) {
        self.lock().parked = Some(sock);
    }
}
