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
//! The end of input may only be shown when hyper's own read buffer is
//! empty, or it would answer a half-received pipelined request with a 400.
//! hyper checks a busy connection for EOF only when its buffer is empty,
//! so a read that finds nothing while the request body is complete and
//! the response still in flight proves the buffer empty; any byte handed
//! to hyper after that cancels the proof.

use crate::listen::ConnMeta;
use crate::listen::prefixed::PrefixedIo;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const IN_REQUEST: u8 = 1;
const BODY_DONE: u8 = 2;
/// The connection was upgraded (WebSocket, CONNECT): it stays a tunnel.
const PINNED: u8 = 4;

/// Per-connection bookkeeping, shared by the service (which sees requests
/// start and responses end) and the socket wrapper (which sees reads).
#[derive(Default)]
pub struct KeepAlive {
    flags: AtomicU8,
    parked: Mutex<Option<TcpStream>>,
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
}

impl ReleasingIo {
    pub fn new(io: PrefixedIo<TcpStream>, conn: Arc<ConnMeta>) -> Self {
        ReleasingIo { io: Some(io), conn, clean: false, write_pending: false, released: false, woke: false }
    }

    fn io(&mut self) -> Pin<&mut PrefixedIo<TcpStream>> {
        Pin::new(self.io.as_mut().expect("socket present until drop"))
    }

    fn idle(&self) -> bool {
        self.clean && !self.write_pending && self.conn.keepalive.flags() & (IN_REQUEST | PINNED) == 0
    }

    /// hyper does not read again after a response until the socket wakes
    /// it; wake it once so the next read can end this stretch now.
    fn after_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<T>) -> Poll<T> {
        self.write_pending = r.is_pending();
        if !self.woke && self.idle() {
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
                    me.clean = false;
                    me.woke = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let f = me.conn.keepalive.flags();
                if f & (IN_REQUEST | BODY_DONE | PINNED) == IN_REQUEST | BODY_DONE {
                    me.clean = true;
                } else if me.idle() {
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
