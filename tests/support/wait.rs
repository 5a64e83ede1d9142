//! The one bounded wait: ask a probe until it says done or the time is up.
//!
//! A probe answers `bool` (done or not) or `Option<T>` (the value it was
//! waiting for). It is asked at once, then after 10 ms, 20 ms, … up to
//! 200 ms apart, and a last time at the deadline; the wait returns `None`
//! when the deadline passed first, so the caller can fail with a message
//! that says what never happened (and how things stood). `until` is for
//! async tests (it sleeps on the runtime), `until_sync` for plain threads.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(10);
const LONGEST: Duration = Duration::from_millis(200);

/// What a probe answers: done (with a value) or not yet.
pub trait Ready {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Asks `probe` until it is ready, for at most `limit`.
pub async fn until<R: Ready>(limit: Duration, mut probe: impl AsyncFnMut() -> R) -> Option<R::Value> {
    let deadline = Instant::now() + limit;
    let mut pause = FIRST;
    loop {
        if let Some(v) = probe().await.ready() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST);
    }
}

/// `until`, on a thread of its own (no runtime needed).
pub fn until_sync<R: Ready>(limit: Duration, mut probe: impl FnMut() -> R) -> Option<R::Value> {
    let deadline = Instant::now() + limit;
    let mut pause = FIRST;
    loop {
        if let Some(v) = probe().ready() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(LONGEST);
    }
}
