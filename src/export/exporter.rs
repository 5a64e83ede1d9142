//! One exporter: its memory queue, its spool, its requests in flight and
//! their retries. Batches are started in order; at most `concurrency` are
//! in flight; what does not fit in memory goes to the spool (or is dropped
//! and counted), and the spool is drained in order once memory is empty.

use super::grpc_sender::GrpcSender;
use super::http_sender::HttpSender;
use super::retry::{Backoff, Failure, Outcome};
use super::spool::{PushError, Spool};
use crate::config::export::RetryPolicy;
use crate::metrics::export_health::ExporterStats;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub enum Transport {
    Http(HttpSender),
    Grpc(GrpcSender),
}

impl Transport {
    async fn send(&self, body: Bytes) -> Outcome {
        match self {
            Transport::Http(h) => h.send(body).await,
            Transport::Grpc(g) => g.send(body).await,
        }
    }
}

/// An encoded batch; `spooled` when its bytes live in the spool.
#[derive(Clone, Debug)]
pub struct Batch {
    pub payload: Bytes,
    pub spans: u32,
    pub spooled: Option<u64>,
}

pub struct Exporter {
    pub transport: Arc<Transport>,
    pub stats: Arc<ExporterStats>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub capacity_spans: u64,
    pub spool: Option<Arc<Mutex<Spool>>>,
}

enum Delivery {
    Sent { rejected: i64, message: String },
    NonRetryable(Failure),
    Exhausted(Failure),
}

async fn deliver(transport: Arc<Transport>, batch: Bytes, retry: RetryPolicy, stats: Arc<ExporterStats>) -> Delivery {
    let started = Instant::now();
    let mut backoff = Backoff::new(retry);
    loop {
        let t0 = Instant::now();
        let outcome = transport.send(batch.clone()).await;
        stats.export_nanos_sum.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.export_count.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok { rejected, message } => return Delivery::Sent { rejected, message },
            Outcome::Fail { reason } => return Delivery::NonRetryable(reason),
            Outcome::Retry { after, reason } => {
                let wait = backoff.delay(after);
                if started.elapsed() + wait > retry.max_elapsed {
                    return Delivery::Exhausted(reason);
                }
                tracing::debug!(exporter = stats.name, %reason, ?wait, "export failed; retrying");
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn with_spool<T>(spool: &Arc<Mutex<Spool>>, f: impl FnOnce(&mut Spool) -> T) -> T {
    f(&mut spool.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Logs at most once per interval, so a long outage or a collector that
/// rejects every batch does not flood sidetrace's own log.
struct Quiet {
    last: Option<Instant>,
    suppressed: u64,
}

impl Quiet {
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < Duration::from_secs(10)) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Exporter {
    /// Runs until the batch channel closes and everything is delivered, or
    /// the shutdown deadline passes; then what is left is spooled (if a
    /// spool is set) or counted as dropped.
    pub async fn run(self, mut rx: mpsc::Receiver<Batch>, mut deadline: watch::Receiver<Option<Instant>>) {
        let mut memory: VecDeque<Batch> = VecDeque::new();
        let mut memory_spans = 0u64;
        let mut next_spooled = self.spool.as_ref().and_then(|s| with_spool(s, |s| s.entries().next().map(|e| e.seq)));
        let mut inflight: JoinSet<Delivery> = JoinSet::new();
        let mut flying: HashMap<tokio::task::Id, Batch> = HashMap::new();
        let mut closed = false;
        let mut failures = Quiet { last: None, suppressed: 0 };
        let mut rejections = Quiet { last: None, suppressed: 0 };
        loop {
            while inflight.len() < self.concurrency {
                let batch = match memory.pop_front() {
                    Some(b) => {
                        memory_spans -= u64::from(b.spans);
                        Some(b)
                    }
                    None => self.load_spooled(&mut next_spooled).await,
                };
                let Some(batch) = batch else { break };
                let task = inflight.spawn(deliver(
                    self.transport.clone(),
                    batch.payload.clone(),
                    self.retry,
                    self.stats.clone(),
                ));
                flying.insert(task.id(), batch);
            }
            self.stats.queue_spans.store(memory_spans, Ordering::Relaxed);
            if closed && inflight.is_empty() && memory.is_empty() && next_spooled.is_none() {
                return;
            }
            let shutdown_at = if closed { *deadline.borrow() } else { None };
            tokio::select! {
                b = rx.recv(), if !closed => match b {
                    Some(b) => self.enqueue(b, &mut memory, &mut memory_spans, next_spooled.is_some()).await
                        .into_iter().for_each(|seq| { next_spooled.get_or_insert(seq); }),
                    None => closed = true,
                },
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    let (id, delivery) = match done {
                        Ok((id, d)) => (id, Some(d)),
                        Err(e) => (e.id(), None),
                    };
                    if let (Some(batch), Some(d)) = (flying.remove(&id), delivery) {
                        self.settle(batch, d, &mut failures, &mut rejections);
                    }
                }
                _ = deadline.changed(), if closed && shutdown_at.is_none() => {}
                _ = sleep_until_opt(shutdown_at), if shutdown_at.is_some() => {
                    inflight.abort_all();
                    let left: Vec<Batch> = flying.drain().map(|(_, b)| b).chain(memory.drain(..)).collect();
                    self.stash_at_shutdown(left).await;
                    self.stats.queue_spans.store(0, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Puts a new batch in memory, or in the spool when memory is full or
    /// older batches already wait there. Returns the spool sequence number
    /// when the batch went to disk.
    async fn enqueue(
        &self,
        b: Batch,
        memory: &mut VecDeque<Batch>,
        memory_spans: &mut u64,
        spool_waiting: bool,
    ) -> Option<u64> {
        let fits = *memory_spans + u64::from(b.spans) <= self.capacity_spans;
        match &self.spool {
            Some(spool) if spool_waiting || !fits => self.to_spool(spool, b).await,
            _ if fits => {
                *memory_spans += u64::from(b.spans);
                memory.push_back(b);
                None
            }
            _ => {
                self.stats.dropped_spans_queue_full.fetch_add(u64::from(b.spans), Ordering::Relaxed);
                None
            }
        }
    }

    async fn to_spool(&self, spool: &Arc<Mutex<Spool>>, b: Batch) -> Option<u64> {
        spool_batch(spool.clone(), self.stats.clone(), b).await
    }

    /// The next spooled batch, read from disk; damaged ones are skipped.
    async fn load_spooled(&self, next: &mut Option<u64>) -> Option<Batch> {
        let spool = self.spool.as_ref()?.clone();
        loop {
            let seq = (*next)?;
            let s = spool.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                with_spool(&s, |s| {
                    let entry = s.entries().find(|e| e.seq >= seq).copied();
                    let following = entry.and_then(|e| s.entries().find(|x| x.seq > e.seq).map(|x| x.seq));
                    (entry, entry.map(|e| s.read(e.seq)), following)
                })
            })
            .await
            .ok()?;
            *next = loaded.2;
            match loaded {
                (None, _, _) => return None,
                (Some(e), Some(Ok(Some(payload))), _) => {
                    return Some(Batch { payload: Bytes::from(payload), spans: e.spans, spooled: Some(e.seq) });
                }
                (Some(e), _, _) => {
                    tracing::warn!(
                        exporter = self.stats.name,
                        seq = e.seq,
                        "spooled batch fails its checksum; skipped"
                    );
                    self.stats.dropped_spans_spool_damaged.fetch_add(u64::from(e.spans), Ordering::Relaxed);
                    self.stats.spool_batches_damaged.fetch_add(1, Ordering::Relaxed);
                    self.forget_spooled(e.seq);
                }
            }
        }
    }

    fn forget_spooled(&self, seq: u64) {
        if let Some(spool) = &self.spool {
            with_spool(spool, |s| {
                s.remove(seq);
                self.stats.spool_bytes.store(s.bytes(), Ordering::Relaxed);
            });
        }
    }

    fn settle(&self, batch: Batch, d: Delivery, failures: &mut Quiet, rejections: &mut Quiet) {
        let spans = u64::from(batch.spans);
        match d {
            Delivery::Sent { rejected, message } => {
                self.stats.batches_ok.fetch_add(1, Ordering::Relaxed);
                let rejected = rejected.max(0) as u64;
                self.stats.exported_spans.fetch_add(spans.saturating_sub(rejected), Ordering::Relaxed);
                if rejected > 0 {
                    self.stats.rejected_spans.fetch_add(rejected, Ordering::Relaxed);
                    if let Some(suppressed) = rejections.allow() {
                        tracing::warn!(exporter = self.stats.name, rejected, %message, suppressed, "the collector rejected spans");
                    }
                }
            }
            Delivery::NonRetryable(reason) => {
                self.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_spans_non_retryable.fetch_add(spans, Ordering::Relaxed);
                if let Some(suppressed) = failures.allow() {
                    tracing::warn!(exporter = self.stats.name, %reason, spans, suppressed, "export failed and cannot be retried; batch dropped");
                }
            }
            Delivery::Exhausted(reason) => {
                self.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_spans_retries_exhausted.fetch_add(spans, Ordering::Relaxed);
                if let Some(suppressed) = failures.allow() {
                    tracing::warn!(exporter = self.stats.name, %reason, spans, suppressed, "export kept failing; batch dropped after the retry limit");
                }
            }
        }
        if let Some(seq) = batch.spooled {
            self.forget_spooled(seq);
        }
    }

    async fn stash_at_shutdown(&self, left: Vec<Batch>) {
        for b in left {
            if b.spooled.is_some() {
                continue; // still on disk for the next run
            }
            match &self.spool {
                Some(spool) => {
                    self.to_spool(spool, b).await;
                }
                None => {
                    self.stats.dropped_spans_shutdown.fetch_add(u64::from(b.spans), Ordering::Relaxed);
                }
            }
        }
    }
}

/// Writes a batch to the spool off the runtime; returns its sequence
/// number, or counts its spans as dropped for the reason it was refused.
async fn spool_batch(spool: Arc<Mutex<Spool>>, stats: Arc<ExporterStats>, b: Batch) -> Option<u64> {
    let spans = u64::from(b.spans);
    let writer_stats = stats.clone();
    let pushed = tokio::task::spawn_blocking(move || {
        with_spool(&spool, |s| {
            let r = s.push(&b.payload, b.spans);
            writer_stats.spool_bytes.store(s.bytes(), Ordering::Relaxed);
            r
        })
    })
    .await;
    let dropped = match pushed {
        Ok(Ok(entry)) => return Some(entry.seq),
        Ok(Err(PushError::Full)) => &stats.dropped_spans_spool_full,
        Ok(Err(PushError::Io(e))) => {
            tracing::warn!(exporter = stats.name, error = %e, "cannot write to the spool; batch dropped");
            &stats.dropped_spans_spool_error
        }
        Err(e) => {
            tracing::error!(exporter = stats.name, error = %e, "the spool write failed; batch dropped");
            &stats.dropped_spans_spool_error
        }
    };
    dropped.fetch_add(spans, Ordering::Relaxed);
    None
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_that_cannot_be_written_is_an_error_not_full() {
        let dir = std::env::temp_dir().join(format!("sidetrace-spool-error-{}", std::process::id()));
        let (spool, _) = Spool::open(&dir, 1 << 20).unwrap();
        let spool = Arc::new(Mutex::new(spool));
        let stats = Arc::new(ExporterStats { name: "test", ..Default::default() });
        let batch = |spans| Batch { payload: Bytes::from_static(b"spans"), spans, spooled: None };
        assert_eq!(spool_batch(spool.clone(), stats.clone(), batch(3)).await, Some(0));
        // The directory vanishes under the spool: writes fail with an I/O error.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(spool_batch(spool.clone(), stats.clone(), batch(5)).await, None);
        assert_eq!(stats.dropped_spans_spool_error.load(Ordering::Relaxed), 5);
        assert_eq!(stats.dropped_spans_spool_full.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dropped_total(), 5);
    }

    /// The write task panics, for a real cause and not a hook: a spool
    /// whose last file carries the largest sequence number but one makes
    /// the next write's sequence counter overflow (a panic under the
    /// overflow checks of debug builds, which the tests are). The batch
    /// is counted as a spool error, not lost.
    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn a_spool_write_task_that_panics_is_counted_as_an_error() {
        let dir = std::env::temp_dir().join(format!("sidetrace-spool-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut spool, _) = Spool::open(&dir, 1 << 20).unwrap();
        spool.push(b"spans", 1).unwrap();
        drop(spool);
        let last = format!("{:020}.batch", u64::MAX - 1);
        std::fs::rename(dir.join(format!("{:020}.batch", 0)), dir.join(last)).unwrap();
        let (spool, _) = Spool::open(&dir, 1 << 20).unwrap();
        let spool = Arc::new(Mutex::new(spool));
        let stats = Arc::new(ExporterStats { name: "test", ..Default::default() });
        let batch = Batch { payload: Bytes::from_static(b"spans"), spans: 7, spooled: None };
        assert_eq!(spool_batch(spool, stats.clone(), batch).await, None);
        assert_eq!(stats.dropped_spans_spool_error.load(Ordering::Relaxed), 7);
        assert_eq!(stats.dropped_spans_spool_full.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dropped_total(), 7);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
