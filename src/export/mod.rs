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
use tokio::sync::mpsc;

#[derive(Debug, Default)]
pub struct ExportStats {
    pub recorded: AtomicU64,
    pub dropped_queue_full: AtomicU64,
}

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanRecord>,
    stats: Arc<ExportStats>,
}

impl SpanSink {
    pub fn push(&self, span: SpanRecord) {
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
    pub fn new(queue_size: usize, ring_size: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue_size);
        let stats = Arc::new(ExportStats::default());
        Pipeline { sink: SpanSink { tx, stats: stats.clone() }, ring: Arc::new(Ring::new(ring_size)), stats, rx }
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
