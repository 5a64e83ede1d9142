//! A budget for the HTTP/2 frames that make the server work without
//! carrying a request: PING, SETTINGS, WINDOW_UPDATE, PRIORITY and empty
//! DATA. h2 answers each one (an acknowledgement, a window change) and
//! queues at most one acknowledgement, so a flood from a client that does
//! not read stalls at bounded memory; but a client that reads would be
//! served such frames forever. The guard follows the frame headers in both
//! directions (payloads are skipped, never copied) and, once a kind of
//! frame is past its budget, writes `GOAWAY ENHANCE_YOUR_CALM` at a frame
//! boundary of the server's output and ends the connection, as Envoy's
//! flood limits do.
//!
//! The budgets grow with what the connection legitimately does, so busy
//! connections never meet them: 1000 of each kind, plus 100 per second of
//! the connection's life and 10 per stream opened; WINDOW_UPDATE also 10
//! per DATA frame the server sent (the client's answer to data).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The client's connection preface, before its first frame.
const PREFACE_LEN: usize = 24;

const BASE: u64 = 1000;
const PER_SECOND: u64 = 100;
const PER_STREAM: u64 = 10;
const PER_DATA_SENT: u64 = 10;

/// Frame headers in a byte stream, found without reading payloads.
#[derive(Default)]
struct Frames {
    preface_left: usize,
    head: [u8; 9],
    have: usize,
    skip: u64,
}

impl Frames {
    fn feed(&mut self, mut b: &[u8], mut f: impl FnMut(u8, u8, u32, u32)) {
        while !b.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(b.len());
                self.preface_left -= n;
                b = &b[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(b.len() as u64);
                self.skip -= n;
                b = &b[n as usize..];
            } else {
                let n = (9 - self.have).min(b.len());
                self.head[self.have..self.have + n].copy_from_slice(&b[..n]);
                self.have += n;
                b = &b[n..];
                if self.have == 9 {
                    self.have = 0;
                    let h = self.head;
                    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    f(h[3], h[4], stream, len);
                    self.skip = u64::from(len);
                }
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.have == 0 && self.skip == 0
    }
}

#[derive(Default)]
struct Counts {
    streams: u64,
    last_stream: u32,
    data_sent: u64,
    pings: u64,
    settings: u64,
    window_updates: u64,
    priorities: u64,
    empty_data: u64,
}

impl Counts {
    fn inbound(&mut self, kind: u8, flags: u8, stream: u32, len: u32) {
        match kind {
            HEADERS => {
                self.streams += 1;
                self.last_stream = self.last_stream.max(stream);
            }
            PING if flags & ACK == 0 => self.pings += 1,
            SETTINGS if flags & ACK == 0 => self.settings += 1,
            WINDOW_UPDATE => self.window_updates += 1,
            PRIORITY => self.priorities += 1,
            DATA if len == 0 && flags & END_STREAM == 0 => self.empty_data += 1,
            _ => {}
        }
    }

    fn most(&self) -> u64 {
        [self.pings, self.settings, self.window_updates, self.priorities, self.empty_data]
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// The kind of frame past its budget, if any.
    fn spent(&self, seconds: u64) -> Option<&'static str> {
        let allowance = BASE + PER_SECOND * seconds + PER_STREAM * self.streams;
        if self.pings > allowance {
            Some("PING")
        } else if self.settings > allowance {
            Some("SETTINGS")
        } else if self.window_updates > allowance + PER_DATA_SENT * self.data_sent {
            Some("WINDOW_UPDATE")
        } else if self.priorities > allowance {
            Some("PRIORITY")
        } else if self.empty_data > allowance {
            Some("empty DATA")
        } else {
            None
        }
    }
}

/// An HTTP/2 server connection's socket with the flood budget;
/// `flooded` is set when the guard ended the connection.
pub struct FloodGuard<T> {
    io: T,
    inbound: Frames,
    outbound: Frames,
    counts: Counts,
    started: Instant,
    closed: bool,
    flooded: Arc<AtomicBool>,
}

impl<T> FloodGuard<T> {
    pub fn new(io: T, flooded: Arc<AtomicBool>) -> Self {
        FloodGuard {
            io,
            inbound: Frames { preface_left: PREFACE_LEN, ..Frames::default() },
            outbound: Frames::default(),
            counts: Counts::default(),
            started: Instant::now(),
            closed: false,
            flooded,
        }
    }
}

fn goaway(last_stream: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8; // length
    f[3] = 7; // GOAWAY
    f[9..13].copy_from_slice(&last_stream.to_be_bytes());
    f[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    f
}

fn flood_error() -> io::Error {
    io::Error::other("HTTP/2 frame flood: GOAWAY ENHANCE_YOUR_CALM")
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for FloodGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.closed {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut me.io).poll_read(cx, buf);
        if !matches!(read, Poll::Ready(Ok(()))) {
            return read;
        }
        let counts = &mut me.counts;
        me.inbound.feed(&buf.filled()[before..], |k, f, s, l| counts.inbound(k, f, s, l));
        // The clock is read only once some kind is past the base budget.
        if me.counts.most() <= BASE {
            return Poll::Ready(Ok(()));
        }
        let Some(kind) = me.counts.spent(me.started.elapsed().as_secs()) else { return Poll::Ready(Ok(())) };
        tracing::debug!(frame = kind, "HTTP/2 frame flood: closing the connection with ENHANCE_YOUR_CALM");
        me.closed = true;
        me.flooded.store(true, Ordering::Relaxed);
        if me.outbound.at_boundary() {
            // Best effort: a client that does not read gets the close alone.
            let frame = goaway(me.counts.last_stream);
            if let Poll::Ready(Ok(n)) = Pin::new(&mut me.io).poll_write(cx, &frame)
                && n == frame.len()
            {
                let _ = Pin::new(&mut me.io).poll_flush(cx);
            }
        }
        Poll::Ready(Err(flood_error()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FloodGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        let written = Pin::new(&mut me.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            let counts = &mut me.counts;
            me.outbound.feed(&buf[..n], |kind, _, _, _| {
                if kind == DATA {
                    counts.data_sent += 1;
                }
            });
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    #[test]
    fn frame_headers_are_found_however_the_bytes_are_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0; 6]));
        bytes.extend(frame(HEADERS, 0x4, 1, &[0x82; 30]));
        bytes.extend(frame(PING, 0, 0, b"12345678"));
        bytes.extend(frame(DATA, 0, 1, &[]));
        for split in [1, 2, 7, 9, 10, 100, bytes.len()] {
            let mut frames = Frames { preface_left: PREFACE_LEN, ..Frames::default() };
            let mut seen = Vec::new();
            for chunk in bytes.chunks(split) {
                frames.feed(chunk, |k, f, s, l| seen.push((k, f, s, l)));
            }
            assert_eq!(seen, [(SETTINGS, 0, 0, 6), (HEADERS, 4, 1, 30), (PING, 0, 0, 8), (DATA, 0, 1, 0)], "{split}");
            assert!(frames.at_boundary());
        }
    }

    #[test]
    fn budgets_grow_with_time_streams_and_data() {
        let mut c = Counts { pings: BASE, window_updates: BASE, ..Counts::default() };
        assert_eq!(c.spent(0), None);
        c.pings += 1;
        assert_eq!(c.spent(0), Some("PING"));
        assert_eq!(c.spent(1), None);
        c.window_updates += 500;
        c.data_sent = 50;
        assert_eq!(c.spent(1), None);
        c.window_updates += 200;
        assert_eq!(c.spent(1), Some("WINDOW_UPDATE"));
        c.streams = 100;
        assert_eq!(c.spent(1), None);
    }
}
