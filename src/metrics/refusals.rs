//! What the proxy refused before anything was forwarded: requests that
//! broke HTTP/1 framing rules or hyper's parser, or arrived beyond a
//! limit (by `vocab::RejectReason`), and connections closed unread beyond
//! `--max-connections`. A refusal makes no span: nothing reached an
//! upstream, and what hyper refuses on its own never reaches a layer
//! that could make one; these counters are where both are seen.

use super::writer::{Kind, Writer};
use crate::vocab::RejectReason;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Refusals {
    requests: [AtomicU64; RejectReason::ALL.len()],
    connections: AtomicU64,
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
    Ok(())
}
