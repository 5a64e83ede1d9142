//! Giving freed heap back to the system after a burst. glibc's allocator
//! keeps what a burst of connections freed (issue 13: 4000 connections at
//! once, one request each, took RSS from 10 to 124 MiB, and 60 s after
//! they closed it was still 120 MiB), while a sidecar's memory limit is
//! sized for its steady state. `malloc_trim(0)` hands the free pages of
//! every arena back (13.5 MiB in the same run), so one thread per process
//! looks every few seconds at how much free memory the allocator holds
//! (`mallinfo2`) and trims when it is more than a steady state leaves
//! lying around. BENCHMARKS.md ("Issue 13: memory after a burst") has the
//! measurements, jemalloc with background purging among them.

use std::sync::Once;
use std::time::Duration;

/// How often the allocator's free memory is looked at.
const EVERY: Duration = Duration::from_secs(5);

/// Starts the process's trimming thread, once however many sidecars the
/// process starts (tests start many).
pub fn start_trimming() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("sidetrace-trim".into()).spawn(|| {
            loop {
                std::thread::sleep(EVERY);
                trim_if_worth_it();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the heap trimming thread; freed memory stays with the allocator");
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth_it() {
    // Free heap above this is given back; below it, pages a busy proxy
    // will reuse soon stay mapped (trimming them would only cost faults).
    const KEEP_FREE: usize = 8 << 20;
    // SAFETY: both only read and adjust glibc's own allocator state, under
    // its arena locks.
    let free = unsafe { libc::mallinfo2() }.fordblks;
    if free > KEEP_FREE {
        let started = std::time::Instant::now();
        unsafe { libc::malloc_trim(0) };
        tracing::debug!(free_bytes = free, took = ?started.elapsed(), "freed heap given back to the system");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_worth_it() {}
