//! Where finished spans go. The request path only ever calls
//! `SpanSink::push`, a non-blocking send onto a bounded queue; a full queue
//! drops the span and counts it. A background task drains the queue into
//! the in-memory ring that `/api/traces` reads.

pub mod otlp;
pub mod ring;

use crate::trace::SpanRecord;
use ring::Ring;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans offered to the queue (sampled, or kept by the tail rule).
    pub recorded: AtomicU64,
    /// Spans the head sampler skipped and the tail rule did not keep.
    pub sampled_out: AtomicU64,
    pub dropped_queue_full: AtomicU64,
}

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanRecord>,
    stats: Arc<ExportStats>,
    keep_slower_than: Option<Duration>,
}

impl SpanSink {
    /// Never waits: a full queue drops the span and counts it.
    pub fn push(&self, mut span: SpanRecord) {
        if !span.sampled {
            let slow = self.keep_slower_than.is_some_and(|t| span.duration_nanos() > t.as_nanos() as u64);
            if !(span.is_error() || slow) {
                self.stats.sampled_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
            span.tail = true;
        }
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(span).is_err() {
            self.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Pipeline {
    pub sink: SpanSink,
    pub ring: Arc<Ring>,
    pub stats: Arc<ExportStats>,
    rx: mpsc::Receiver<SpanRecord>,
}

impl Pipeline {
    pub fn new(queue_size: usize, ring_size: usize, keep_slower_than: Option<Duration>) -> Self {
        let (tx, rx) = mpsc::channel(queue_size);
        let stats = Arc::new(ExportStats::default());
        let sink = SpanSink { tx, stats: stats.clone(), keep_slower_than };
        Pipeline { sink, ring: Arc::new(Ring::new(ring_size)), stats, rx }
    }

    /// Runs until every sink is dropped and the queue is empty, so a
    /// shutdown that drops the listeners flushes what was recorded.
    pub async fn run(mut self) {
        drop(self.sink);
        let mut batch = Vec::with_capacity(256);
        while self.rx.recv_many(&mut batch, 256).await > 0 {
            self.ring.extend(batch.drain(..));
        }
    }
}
