//! One exporter: its memory queue, its spool, its requests in flight and
//! their retries. Batches are started in order; at most `concurrency` are
//! in flight; what does not fit in memory goes to the spool (or is dropped
//! and counted), and the spool is drained in order once memory is empty.
//! With `--spool-mode always` every batch goes through the spool: it is on
//! disk before it is sent and leaves the disk once the backend took it. With
//! a spool, a batch that exhausts its retries waits there instead of being
//! dropped. Every span handed to an exporter is counted in exactly one
//! place at a time: memory (`queue_spans`), in flight, the spool, exported,
//! rejected, or dropped by reason.

use super::grpc_sender::GrpcSender;
use super::http_sender::HttpSender;
use super::retry::{Backoff, Failure, Outcome};
use super::spool::{PushError, Spool};
use crate::config::export::RetryPolicy;
use crate::metrics::export_health::ExporterStats;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
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

/// What the pipeline hands an exporter: a batch and, in `--spool-mode
/// always`, where to say that the batch is in the spool (or was refused
/// and counted), so the pipeline forms the next batch only then.
pub struct Handed {
    pub batch: Batch,
    pub durable: Option<oneshot::Sender<()>>,
}

/// The sending side of an exporter's channel. It counts what it hands over
/// in the exporter's memory gauge, so that a span is counted as waiting
/// from the moment it leaves the pipeline until it is exported or dropped.
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::Sender<Handed>,
    stats: Arc<ExporterStats>,
}

/// An exporter's channel, `capacity` batches deep.
pub fn handoff(stats: Arc<ExporterStats>, capacity: usize) -> (Handoff, mpsc::Receiver<Handed>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Handoff { tx, stats }, rx)
}

impl Handoff {
    /// Waits for room in the channel; when `durable`, also until the
    /// exporter has written the batch to its spool (or refused it).
    pub async fn send(&self, batch: Batch, durable: bool) {
        let spans = u64::from(batch.spans);
        self.stats.queue_spans.fetch_add(spans, Ordering::Relaxed);
        let (ack, acked) = match durable {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        if self.tx.send(Handed { batch, durable: ack }).await.is_err() {
            self.stats.queue_spans.fetch_sub(spans, Ordering::Relaxed);
            self.stats.dropped_spans_shutdown.fetch_add(spans, Ordering::Relaxed);
            return;
        }
        if let Some(acked) = acked {
            let _ = acked.await;
        }
    }

    /// Never waits: a full channel drops the batch and counts it.
    pub fn try_send(&self, batch: Batch) -> bool {
        let spans = u64::from(batch.spans);
        self.stats.queue_spans.fetch_add(spans, Ordering::Relaxed);
        if self.tx.try_send(Handed { batch, durable: None }).is_err() {
            self.stats.queue_spans.fetch_sub(spans, Ordering::Relaxed);
            self.stats.dropped_spans_queue_full.fetch_add(spans, Ordering::Relaxed);
            return false;
        }
        true
    }
}

pub struct Exporter {
    pub transport: Arc<Transport>,
    pub stats: Arc<ExporterStats>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub capacity_spans: u64,
    pub spool: Option<Arc<Mutex<Spool>>>,
    /// `--spool-mode always`: every batch is written to the spool before
    /// it is sent, and removed once the backend has taken it.
    pub always: bool,
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
    pub async fn run(self, mut rx: mpsc::Receiver<Handed>, mut deadline: watch::Receiver<Option<Instant>>) {
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
                        self.stats.queue_spans.fetch_sub(u64::from(b.spans), Ordering::Relaxed);
                        Some(b)
                    }
                    None => {
                        let flying_seqs = flying.values().filter_map(|b| b.spooled).collect();
                        self.load_spooled(&mut next_spooled, flying_seqs).await
                    }
                };
                let Some(batch) = batch else { break };
                self.stats.in_flight_spans.fetch_add(u64::from(batch.spans), Ordering::Relaxed);
                if batch.spooled.is_some() {
                    self.stats.in_flight_spooled.fetch_add(u64::from(batch.spans), Ordering::Relaxed);
                    self.publish_spool();
                }
                let task = inflight.spawn(deliver(
                    self.transport.clone(),
                    batch.payload.clone(),
                    self.retry,
                    self.stats.clone(),
                ));
                flying.insert(task.id(), batch);
            }
            if closed && inflight.is_empty() && memory.is_empty() && next_spooled.is_none() {
                return;
            }
            let shutdown_at = if closed { *deadline.borrow() } else { None };
            tokio::select! {
                h = rx.recv(), if !closed => match h {
                    Some(Handed { batch, durable }) => {
                        self.enqueue(batch, &mut memory, &mut memory_spans, &mut next_spooled).await;
                        if let Some(durable) = durable {
                            let _ = durable.send(());
                        }
                    }
                    None => closed = true,
                },
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    let (id, delivery) = match done {
                        Ok((id, d)) => (id, d),
                        // The sending task panicked: the batch is treated
                        // as one that exhausted its retries, not lost.
                        Err(e) => (e.id(), Delivery::Exhausted(Failure::Connection(format!("export task failed: {e}")))),
                    };
                    if let Some(batch) = flying.remove(&id) {
                        self.settle(batch, delivery, &mut next_spooled, &mut failures, &mut rejections).await;
                    }
                }
                _ = deadline.changed(), if closed && shutdown_at.is_none() => {}
                _ = sleep_until_opt(shutdown_at), if shutdown_at.is_some() => {
                    inflight.abort_all();
                    self.stats.in_flight_spans.store(0, Ordering::Relaxed);
                    self.stats.in_flight_spooled.store(0, Ordering::Relaxed);
                    self.stats.queue_spans.fetch_sub(memory_spans, Ordering::Relaxed);
                    self.publish_spool();
                    let left: Vec<Batch> = flying.drain().map(|(_, b)| b).chain(memory.drain(..)).collect();
                    self.stash_at_shutdown(left).await;
                    return;
                }
            }
        }
    }

    /// Puts a new batch in memory, or in the spool: always in `always`
    /// mode, otherwise when memory is full or older batches already wait
    /// there. A batch the spool refuses is dropped and counted, except in
    /// `always` mode when nothing waits on disk and memory has room: then
    /// it waits in memory (it is still sent, but a crash would lose it).
    async fn enqueue(
        &self,
        b: Batch,
        memory: &mut VecDeque<Batch>,
        memory_spans: &mut u64,
        next_spooled: &mut Option<u64>,
    ) {
        let spans = u64::from(b.spans);
        let spool_waiting = next_spooled.is_some();
        let fits = *memory_spans + spans <= self.capacity_spans;
        if let Some(spool) = &self.spool
            && (self.always || spool_waiting || !fits)
        {
            self.stats.queue_spans.fetch_sub(spans, Ordering::Relaxed);
            match write_spool(spool.clone(), self.stats.clone(), b.payload.clone(), b.spans).await {
                Ok(seq) => {
                    next_spooled.get_or_insert(seq);
                }
                Err(e) if self.always && !spool_waiting && fits => {
                    tracing::warn!(exporter = self.stats.name, error = ?e, "cannot write to the spool; the batch waits in memory");
                    self.stats.queue_spans.fetch_add(spans, Ordering::Relaxed);
                    *memory_spans += spans;
                    memory.push_back(b);
                }
                Err(e) => count_refused(&self.stats, e, spans),
            }
        } else if fits {
            *memory_spans += spans;
            memory.push_back(b);
        } else {
            self.stats.queue_spans.fetch_sub(spans, Ordering::Relaxed);
            self.stats.dropped_spans_queue_full.fetch_add(spans, Ordering::Relaxed);
        }
    }

    /// The next spooled batch from `next` on that is not in flight, read
    /// from disk; damaged ones are skipped.
    async fn load_spooled(&self, next: &mut Option<u64>, flying: HashSet<u64>) -> Option<Batch> {
        let spool = self.spool.as_ref()?.clone();
        loop {
            let from = (*next)?;
            let s = spool.clone();
            let skip = flying.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                with_spool(&s, |s| {
                    let entry = s.entries().find(|e| e.seq >= from && !skip.contains(&e.seq)).copied();
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
                publish(s, &self.stats);
            });
        }
    }

    /// Sets the spool's gauges from the spool.
    fn publish_spool(&self) {
        if let Some(spool) = &self.spool {
            with_spool(spool, |s| publish(s, &self.stats));
        }
    }

    async fn settle(
        &self,
        batch: Batch,
        d: Delivery,
        next_spooled: &mut Option<u64>,
        failures: &mut Quiet,
        rejections: &mut Quiet,
    ) {
        let spans = u64::from(batch.spans);
        self.stats.in_flight_spans.fetch_sub(spans, Ordering::Relaxed);
        if batch.spooled.is_some() {
            self.stats.in_flight_spooled.fetch_sub(spans, Ordering::Relaxed);
        }
        match d {
            Delivery::Sent { rejected, message } => {
                self.stats.batches_ok.fetch_add(1, Ordering::Relaxed);
                let rejected = (rejected.max(0) as u64).min(spans);
                self.stats.exported_spans.fetch_add(spans - rejected, Ordering::Relaxed);
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
                self.exhausted(batch, reason, next_spooled, failures).await;
                return;
            }
        }
        if let Some(seq) = batch.spooled {
            self.forget_spooled(seq);
        }
    }

    /// A batch that kept failing past the retry limit waits in the spool
    /// (where it is, or at its end) and is tried again in the spool's
    /// order; without a spool it is dropped and counted.
    async fn exhausted(&self, batch: Batch, reason: Failure, next_spooled: &mut Option<u64>, failures: &mut Quiet) {
        let spans = u64::from(batch.spans);
        let Some(spool) = &self.spool else {
            self.stats.dropped_spans_retries_exhausted.fetch_add(spans, Ordering::Relaxed);
            if let Some(suppressed) = failures.allow() {
                tracing::warn!(exporter = self.stats.name, %reason, spans, suppressed, "export kept failing; batch dropped after the retry limit");
            }
            return;
        };
        let seq = match batch.spooled {
            Some(seq) => {
                self.publish_spool();
                seq
            }
            None => match write_spool(spool.clone(), self.stats.clone(), batch.payload, batch.spans).await {
                Ok(seq) => seq,
                Err(e) => return count_refused(&self.stats, e, spans),
            },
        };
        *next_spooled = Some(next_spooled.map_or(seq, |n| n.min(seq)));
        if let Some(suppressed) = failures.allow() {
            tracing::warn!(exporter = self.stats.name, %reason, spans, suppressed, "export kept failing past the retry limit; the batch waits in the spool");
        }
    }

    async fn stash_at_shutdown(&self, left: Vec<Batch>) {
        for b in left {
            if b.spooled.is_some() {
                continue; // still on disk for the next run
            }
            match &self.spool {
                Some(spool) => {
                    spool_batch(spool.clone(), self.stats.clone(), b).await;
                }
                None => {
                    self.stats.dropped_spans_shutdown.fetch_add(u64::from(b.spans), Ordering::Relaxed);
                }
            }
        }
    }
}

/// The spool's gauges: its bytes, and its spans less those in flight.
fn publish(s: &Spool, stats: &ExporterStats) {
    let in_flight = stats.in_flight_spooled.load(Ordering::Relaxed);
    stats.spool_spans.store(s.spans().saturating_sub(in_flight), Ordering::Relaxed);
    stats.spool_bytes.store(s.bytes(), Ordering::Relaxed);
}

/// Writes a batch to the spool off the runtime (written, synced, renamed,
/// directory synced: `Spool::push`); returns its sequence number.
async fn write_spool(
    spool: Arc<Mutex<Spool>>,
    stats: Arc<ExporterStats>,
    payload: Bytes,
    spans: u32,
) -> Result<u64, PushError> {
    let pushed = tokio::task::spawn_blocking(move || {
        with_spool(&spool, |s| {
            let r = s.push(&payload, spans);
            publish(s, &stats);
            r
        })
    })
    .await;
    match pushed {
        Ok(r) => r.map(|entry| entry.seq),
        Err(e) => Err(PushError::Io(std::io::Error::other(format!("the spool write failed: {e}")))),
    }
}

/// Counts the spans of a batch the spool refused, by reason.
fn count_refused(stats: &ExporterStats, e: PushError, spans: u64) {
    let dropped = match e {
        PushError::Full => &stats.dropped_spans_spool_full,
        PushError::Io(e) => {
            tracing::warn!(exporter = stats.name, error = %e, "cannot write to the spool; batch dropped");
            &stats.dropped_spans_spool_error
        }
    };
    dropped.fetch_add(spans, Ordering::Relaxed);
}

/// Writes a batch to the spool; returns its sequence number, or counts its
/// spans as dropped for the reason it was refused.
async fn spool_batch(spool: Arc<Mutex<Spool>>, stats: Arc<ExporterStats>, b: Batch) -> Option<u64> {
    let spans = u64::from(b.spans);
    match write_spool(spool, stats.clone(), b.payload, b.spans).await {
        Ok(seq) => Some(seq),
        Err(e) => {
            count_refused(&stats, e, spans);
            None
        }
    }
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
