//! Idle HTTP/1 keep-alive connections hold no buffers.
//!
//! hyper keeps an 8 KiB header write buffer and an 8–16 KiB read buffer
//! for as long as an HTTP/1 connection lives, so 10000 idle keep-alive
//! clients would cost ~20 KiB each. Instead, once a response is out and
//! the client has nothing more in flight, hyper is shown a clean end of
//! input between two requests (which it answers by finishing, writing
//! nothing), the socket is taken back, and a fresh hyper connection is
//! made when the next request's bytes arrive. nginx frees its keep-alive
//! buffers the same way.
//!
//! A connection that is reused quickly would pay for new buffers on every
//! request that way, so only a connection's first wait is released at
//! once. Once a client has come back within a second, the connection waits
//! its turn with the worker's once-a-second sweep (`sweep`) instead, and is
//! released after a whole sweep interval without a byte from the client.
//!
//! The end of input may only be shown when hyper's own read buffer is
//! empty, or it would answer a half-received pipelined request with a 400.
//! hyper checks a busy connection for EOF only when its buffer is empty,
//! so a read that finds nothing while the request body is complete and
//! the response still in flight proves the buffer empty; any byte handed
//! to hyper after that cancels the proof.

use super::conn::{ConnMeta, KeepAlive};
use super::framing::Framing;
use super::prefixed::PrefixedIo;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const IN_REQUEST: u8 = 1;
const BODY_DONE: u8 = 2;
/// The connection was upgraded (WebSocket, CONNECT): it stays a tunnel.
const PINNED: u8 = 4;

/// A client that comes back within this long after its connection was
/// released keeps hyper's buffers between requests until a sweep finds it
/// silent.
pub const QUICK_RETURN: Duration = Duration::from_secs(1);

struct Listed {
    conn: Arc<ConnMeta>,
    waker: Waker,
    /// `activity` when the sweep last looked; `None` before its first look.
    seen: Option<u32>,
}

thread_local! {
    /// Connections of this worker waiting for the sweep to release them.
    static LISTED: RefCell<Vec<Listed>> = const { RefCell::new(Vec::new()) };
}

/// Run once per sweep interval on each worker thread: connections that had
/// no client bytes over the whole interval and no request in flight are
/// woken to give their buffers back.
pub fn sweep() {
    LISTED.with(|l| {
        l.borrow_mut().retain_mut(|e| {
            let k = &e.conn.keepalive;
            let now = k.activity.load(Ordering::Acquire);
            if Arc::strong_count(&e.conn) == 1 {
                return false; // the connection is gone
            }
            if e.seen == Some(now) && k.flags() & IN_REQUEST == 0 {
                k.listed.store(false, Ordering::Release);
                k.expired.store(true, Ordering::Release);
                e.waker.wake_by_ref();
                return false;
            }
            e.seen = Some(now);
            true
        })
    });
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive").field("flags", &self.flags.load(Ordering::Relaxed)).finish()
    }
}

impl KeepAlive {
    pub fn request_started(&self, body_complete: bool) {
        let body = if body_complete { BODY_DONE } else { 0 };
        self.flags.fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| Some((f & PINNED) | IN_REQUEST | body)).ok();
    }

    pub fn request_body_done(&self) {
        self.flags.fetch_or(BODY_DONE, Ordering::AcqRel);
    }

    /// The response body was dropped by hyper: written out, or abandoned.
    pub fn response_done(&self) {
        self.flags.fetch_and(!IN_REQUEST, Ordering::AcqRel);
    }

    pub fn pin(&self) {
        self.flags.fetch_or(PINNED, Ordering::AcqRel);
    }

    fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// The socket of a connection that went idle, if it did.
    pub fn take_parked(&self) -> Option<TcpStream> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The socket as hyper sees it for one stretch of requests.
pub struct ReleasingIo {
    io: Option<PrefixedIo<TcpStream>>,
    conn: Arc<ConnMeta>,
    /// hyper's read buffer is known to be empty.
    clean: bool,
    /// A write is waiting for the socket: hyper still holds response bytes.
    write_pending: bool,
    /// The end of input was shown to hyper; the socket goes back on drop.
    released: bool,
    woke: bool,
    /// Release only once the sweep finds the connection silent.
    defer: bool,
    /// Reads every byte before hyper does (`http::framing`).
    framing: Framing,
}

impl ReleasingIo {
    pub fn new(io: PrefixedIo<TcpStream>, conn: Arc<ConnMeta>, defer: bool) -> Self {
        // A stretch starts between two requests: every earlier one was
        // handed to the service.
        let framing = Framing::new(conn.framing.dispatched());
        ReleasingIo {
            io: Some(io),
            conn,
            clean: false,
            write_pending: false,
            released: false,
            woke: false,
            defer,
            framing,
        }
    }

    fn io(&mut self) -> Pin<&mut PrefixedIo<TcpStream>> {
        Pin::new(self.io.as_mut().expect("socket present until drop"))
    }

    fn idle(&self) -> bool {
        self.clean && !self.write_pending && self.conn.keepalive.flags() & (IN_REQUEST | PINNED) == 0
    }

    /// Whether hyper may be shown the end of input now; otherwise the
    /// connection is put on the sweep list.
    fn may_release(&self, cx: &Context<'_>) -> bool {
        let k = &self.conn.keepalive;
        if !self.defer || k.expired.load(Ordering::Acquire) {
            return true;
        }
        if !k.listed.swap(true, Ordering::AcqRel) {
            let e = Listed { conn: self.conn.clone(), waker: cx.waker().clone(), seen: None };
            LISTED.with(|l| l.borrow_mut().push(e));
        }
        false
    }

    /// hyper does not read again after a response until the socket wakes
    /// it; wake it once so the next read can end this stretch.
    fn after_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<T>) -> Poll<T> {
        self.write_pending = r.is_pending();
        if !self.woke && self.idle() && self.may_release(cx) {
            self.woke = true;
            cx.waker().wake_by_ref();
        }
        r
    }
}

impl Drop for ReleasingIo {
    fn drop(&mut self) {
        if self.released
            && let Some(io) = self.io.take()
        {
            *self.conn.keepalive.parked.lock().unwrap_or_else(|e| e.into_inner()) = Some(io.into_inner());
        }
    }
}

impl AsyncRead for ReleasingIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match me.io().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if let Some(v) = me.framing.feed(&buf.filled()[before..])
                        && me.conn.framing.found(v)
                    {
                        // The request is already on its way upstream: cut
                        // its body short rather than pass the bad bytes on.
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v.reason.as_str())));
                    }
                    me.clean = false;
                    me.woke = false;
                    let k = &me.conn.keepalive;
                    k.activity.fetch_add(1, Ordering::AcqRel);
                    k.expired.store(false, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let f = me.conn.keepalive.flags();
                if f & (IN_REQUEST | BODY_DONE | PINNED) == IN_REQUEST | BODY_DONE {
                    me.clean = true;
                } else if me.idle() && me.may_release(cx) {
                    me.released = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            err => err,
        }
    }
}

impl AsyncWrite for ReleasingIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = me.io().poll_write(cx, buf);
        me.after_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = me.io().poll_write_vectored(cx, bufs);
        me.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = me.io().poll_flush(cx);
        me.after_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.released {
            return Poll::Ready(Ok(()));
        }
        me.io().poll_shutdown(cx)
    }
}
