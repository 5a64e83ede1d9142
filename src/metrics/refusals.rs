//! What the proxy refused before anything was forwarded: requests that
//! broke HTTP/1 framing rules or hyper's parser, or arrived beyond a
//! limit (by `vocab::RejectReason`), and connections closed unread beyond
//! `--max-connections`; and HTTP/2 connections that hyper's h2 closed
//! with an error GOAWAY of its own (rapid reset, CONTINUATION floods,
//! protocol errors). A refusal makes no span: nothing reached an
//! upstream, and what hyper refuses on its own never reaches a layer
//! that could make one; these counters are where both are seen.

use super::writer::{Kind, Writer};
use crate::vocab::{H2_ERROR_CODES, RejectReason};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Refusals {
    requests: [AtomicU64; RejectReason::ALL.len()],
    connections: AtomicU64,
    /// By RFC 9113 error code; the last slot for codes it does not define.
    h2_goaways: [AtomicU64; H2_ERROR_CODES.len() + 1],
}

impl Refusals {
    pub fn request(&self, reason: RejectReason) {
        let i = RejectReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection beyond `--max-connections`, closed before any read.
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP/2 connection the server closed with a GOAWAY carrying
    /// error `code` (RFC 9113 §7).
    pub fn http2_goaway(&self, code: u32) {
        let i = (code as usize).min(H2_ERROR_CODES.len());
        self.h2_goaways[i].fetch_add(1, Ordering::Relaxed);
    }
}

pub fn render(w: &mut Writer, dirs: &[(&'static str, &Refusals)]) -> fmt::Result {
    let mut f = w.family(
        "sidetrace_rejected_requests",
        Kind::Counter,
        None,
        "Requests answered by the proxy itself and never forwarded: malformed or ambiguous HTTP/1 framing (400), header sections too large (431), header read timeouts (connection closed), --max-concurrent-requests reached (503).",
    )?;
    for (d, r) in dirs {
        for (reason, c) in RejectReason::ALL.iter().zip(&r.requests) {
            f.counter(&[("direction", d), ("reason", reason.as_str())], c.load(Ordering::Relaxed))?;
        }
    }
    let mut f = w.family(
        "sidetrace_refused_connections",
        Kind::Counter,
        None,
        "Client connections closed before any read because --max-connections were already open on the listener.",
    )?;
    for (d, r) in dirs {
        f.counter(&[("direction", d), ("reason", "max_connections")], r.connections.load(Ordering::Relaxed))?;
    }
    let mut f = w.family(
        "sidetrace_http2_connection_errors",
        Kind::Counter,
        None,
        "HTTP/2 client connections the proxy closed with an error GOAWAY, by its RFC 9113 error code: enhance_your_calm for rapid reset, CONTINUATION floods and too many refused streams; protocol_error, frame_size_error, compression_error, flow_control_error for frames that break the protocol.",
    )?;
    let reasons = H2_ERROR_CODES.iter().copied().chain(["unknown"]);
    for (d, r) in dirs {
        // NO_ERROR is a graceful close, not an error.
        for (reason, c) in reasons.clone().zip(&r.h2_goaways).skip(1) {
            f.counter(&[("direction", d), ("reason", reason)], c.load(Ordering::Relaxed))?;
        }
    }
    Ok(())
}
