//! A client connection and its own upstream connection (`dedicated`), driven
//! in one task, each polled only when something woke it.
//!
//! Polled together naively, every wake-up of either side — its socket, a
//! timer, the other side handing it a request or a response — would run
//! both hyper state machines. Each side here polls with a waker of its
//! own, which marks the side and wakes the task, so a wake-up polls only the
//! side it was for, as if each were a task of its own, without the hand-off
//! between tasks.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

struct Mark {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// One side's mark and the waker that sets it.
struct Side {
    mark: Arc<Mark>,
    waker: Waker,
}

impl Side {
    fn new() -> Side {
        let mark = Arc::new(Mark { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Side { waker: Waker::from(mark.clone()), mark }
    }

    /// Polls with this side's waker if the side was woken since its last
    /// poll (or has never been polled).
    fn poll<T>(&self, cx: &Context<'_>, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        self.mark.task.register(cx.waker());
        if !self.mark.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        f(&mut Context::from_waker(&self.waker))
    }
}

/// Runs `main` to completion, polling `beside` (which never completes)
/// alongside it.
pub async fn drive_beside<F: Future>(main: F, mut beside: impl FnMut(&mut Context<'_>) -> Poll<()>) -> F::Output {
    let (m, b) = (Side::new(), Side::new());
    let mut main = pin!(main);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = m.poll(cx, |cx| main.as_mut().poll(cx)) {
            return Poll::Ready(out);
        }
        let _ = b.poll(cx, &mut beside);
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn each_side_is_polled_when_it_was_woken_and_only_then() {
        let (main_polls, beside_polls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut rx = Some(rx);
        let (bp, mp) = (beside_polls.clone(), main_polls.clone());
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<()>(8);
        let main = std::future::poll_fn(move |cx| {
            mp.fetch_add(1, Ordering::Relaxed);
            match rx.as_mut().map(|r| std::pin::Pin::new(r).poll(cx)) {
                Some(Poll::Ready(_)) => Poll::Ready("done"),
                _ => Poll::Pending,
            }
        });
        let beside = move |cx: &mut Context<'_>| {
            bp.fetch_add(1, Ordering::Relaxed);
            while let Poll::Ready(Some(())) = ping_rx.poll_recv(cx) {}
            Poll::Pending
        };
        let driver = tokio::spawn(drive_beside(main, beside));
        tokio::task::yield_now().await;
        for _ in 0..5 {
            ping_tx.send(()).await.unwrap();
            tokio::task::yield_now().await;
        }
        tx.send(()).unwrap();
        assert_eq!(driver.await.unwrap(), "done");
        // Once at the start, then only when its own waker fired.
        assert_eq!(main_polls.load(Ordering::Relaxed), 2, "main was polled for the beside side's wake-ups");
        assert!(beside_polls.load(Ordering::Relaxed) >= 2);
    }
}
