//! One listener's limits, shared by its workers (`--max-connections`,
//! `--max-concurrent-requests`): a count of open client connections and
//! the semaphore of tower's concurrency limit (`overload_layer`). Both are
//! a single atomic each, touched once per connection or request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

pub struct Limits {
    max_connections: Option<usize>,
    open: AtomicUsize,
    /// Permits for requests waiting for their response head.
    pub requests: Arc<Semaphore>,
}

impl Limits {
    pub fn new(max_connections: Option<usize>, max_concurrent_requests: Option<usize>) -> Limits {
        Limits {
            max_connections,
            open: AtomicUsize::new(0),
            requests: Arc::new(Semaphore::new(max_concurrent_requests.unwrap_or(Semaphore::MAX_PERMITS))),
        }
    }

    /// A place for one more client connection, held until it closes;
    /// `None` at the limit.
    pub fn admit(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                self.max_connections.is_none_or(|max| n < max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| ConnectionSlot(self.clone()))
    }
}

pub struct ConnectionSlot(Arc<Limits>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}
