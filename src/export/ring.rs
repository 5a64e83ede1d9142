//! The newest spans, kept in memory for `/api/traces` and the UI. Only the
//! export task writes it and only the admin server reads it, so its lock is
//! never taken on the request path.

use crate::trace::{SpanRecord, TraceId};
use std::collections::VecDeque;
use std::sync::Mutex;

pub struct Ring {
    cap: usize,
    spans: Mutex<VecDeque<SpanRecord>>,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Ring { cap, spans: Mutex::new(VecDeque::with_capacity(cap.min(4096))) }
    }

    pub fn extend(&self, spans: impl Iterator<Item = SpanRecord>) {
        let mut q = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        for s in spans {
            if q.len() == self.cap {
                q.pop_front();
            }
            q.push_back(s);
        }
    }

    /// The newest `limit` spans, oldest first.
    pub fn newest(&self, limit: usize) -> Vec<SpanRecord> {
        let q = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().skip(q.len().saturating_sub(limit)).cloned().collect()
    }

    pub fn trace(&self, id: TraceId) -> Vec<SpanRecord> {
        let q = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().filter(|s| s.trace_id == id).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
