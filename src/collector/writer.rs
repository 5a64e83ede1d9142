//! The one writer: receivers hand it batches through a bounded queue and
//! wait for its word. It takes every batch waiting, up to a cap, into one
//! transaction (one fsync for many requests), commits, and only then
//! acknowledges each batch. A full queue is refused at once (`Busy`), so
//! the receivers answer 429 / RESOURCE_EXHAUSTED and the sender retries:
//! nothing is dropped without the sender knowing.
//!
//! Between transactions, at most every `Bounds::interval`, the writer
//! applies `--retention` and `--max-bytes` (`Store::enforce`); doing it on
//! this thread keeps every write to the database on one connection.

use super::rows::Batch;
use super::store::Store;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Spans and logs per transaction, at most: large enough to pay for the
/// fsync many times over, small enough that the first request of a commit
/// does not wait long for the last.
const MAX_ITEMS_PER_COMMIT: usize = 50_000;

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub retention: Duration,
    pub max_bytes: u64,
    pub interval: Duration,
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the collector's write queue is full; retry later")]
    Busy,
    #[error("the store failed: {0}")]
    Failed(String),
    #[error("the collector is stopping")]
    Stopped,
}

struct Job {
    batch: Batch,
    ack: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
}

impl Writer {
    /// Starts the writer thread; `queue` batches may wait for it.
    pub fn start(store: Store, queue: usize, bounds: Bounds) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel(queue);
        std::thread::Builder::new().name("collector-writer".into()).spawn(move || run(&store, &rx, bounds))?;
        Ok(Writer { tx })
    }

    /// Ok once the batch is durable.
    pub async fn write(&self, batch: Batch) -> Result<(), Refused> {
        self.submit(batch)?.durable().await
    }

    /// Queues the batch without waiting: refused at once when the queue is full.
    pub fn submit(&self, batch: Batch) -> Result<Ack, Refused> {
        let (ack, done) = oneshot::channel();
        if batch.is_empty() {
            let _ = ack.send(Ok(()));
            return Ok(Ack(done));
        }
        match self.tx.try_send(Job { batch, ack }) {
            Ok(()) => Ok(Ack(done)),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// The writer's word on one queued batch.
pub struct Ack(oneshot::Receiver<Result<(), String>>);

impl Ack {
    pub async fn durable(self) -> Result<(), Refused> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Refused::Failed(e)),
            Err(_) => Err(Refused::Stopped),
        }
    }
}

fn run(store: &Store, rx: &Receiver<Job>, bounds: Bounds) {
    let mut next_enforce = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_enforce {
            enforce(store, bounds);
            next_enforce = now + bounds.interval;
            continue;
        }
        let first = match rx.recv_timeout(next_enforce - now) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut items = first.batch.len();
        let mut jobs = vec![first];
        while items < MAX_ITEMS_PER_COMMIT {
            let Ok(job) = rx.try_recv() else { break };
            items += job.batch.len();
            jobs.push(job);
        }
        let result = store.insert(jobs.iter().map(|j| &j.batch)).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, batches = jobs.len(), "cannot store; the senders are told to retry");
        }
        for job in jobs {
            // A sender that gave up waiting is no longer listening.
            let _ = job.ack.send(result.clone());
        }
    }
}

fn enforce(store: &Store, bounds: Bounds) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let oldest = now.saturating_sub(bounds.retention).as_nanos().min(i64::MAX as u128) as i64;
    match store.enforce(oldest, bounds.max_bytes) {
        Ok(removed) if removed.spans + removed.logs > 0 => {
            tracing::info!(spans = removed.spans, logs = removed.logs, "removed the oldest data (retention, size cap)")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot apply retention and the size cap"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::rows::LogRow;

    fn batch() -> Batch {
        let log = LogRow { time: 1, trace_id: None, service: "s".into(), doc: "{}".into() };
        Batch { spans: Vec::new(), logs: vec![log] }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_the_rest_acknowledged_when_durable() {
        let store = Store::open(None).unwrap();
        let hour = Duration::from_secs(3600);
        let writer =
            Writer::start(store.clone(), 1, Bounds { retention: hour, max_bytes: u64::MAX, interval: hour }).unwrap();
        // Past its first round of `enforce`, the writer waits for batches.
        writer.write(batch()).await.unwrap();
        let stalled = store.stall();
        // Busy until the writer takes the first batch (and stalls on the
        // store); then the queue of one takes another, and then refuses.
        let mut acks = vec![writer.submit(batch()).unwrap()];
        let mut refused_when_full = false;
        for _ in 0..10_000 {
            match writer.submit(batch()) {
                Ok(ack) => acks.push(ack),
                Err(Refused::Busy) if acks.len() > 1 => {
                    refused_when_full = true;
                    break;
                }
                Err(Refused::Busy) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused_when_full && acks.len() <= 3, "{} batches queued behind a stalled store", acks.len());
        for ack in &mut acks {
            assert!(ack.0.try_recv().is_err(), "acknowledged before the commit");
        }
        drop(stalled);
        let queued = acks.len() as i64 + 1;
        for ack in acks {
            ack.durable().await.unwrap();
        }
        let logs: i64 = store.read(|c| c.query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0))).unwrap();
        assert_eq!(logs, queued);
    }
}
