//! Graceful drain: one signal tells every listener to stop accepting and
//! every connection to finish its in-flight requests; the signaller then
//! waits until the last connection's watch is dropped. When the drain's
//! time is up, a second signal cuts what still runs (`Watch::cut`), and
//! request recorders, which see it (`Cut`), say so on their spans.

use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug)]
pub struct Signal {
    tx: watch::Sender<bool>,
    cut: watch::Sender<bool>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by every listener and connection; cloning registers one more
/// thing that must finish before the drain is complete.
#[derive(Clone, Debug)]
pub struct Watch {
    rx: watch::Receiver<bool>,
    cut: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
    /// A worker thread's own count of what still runs on it.
    _local: Option<mpsc::Sender<()>>,
}

/// Whether the drain has run out of time, for what must know it without
/// holding the drain up (a request's recorder).
#[derive(Clone, Debug)]
pub struct Cut(watch::Receiver<bool>);

impl Cut {
    pub fn is_cut(&self) -> bool {
        *self.0.borrow()
    }
}

pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    let (cut_tx, cut) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    (Signal { tx, cut: cut_tx, done_rx }, Watch { rx, cut, _done: done_tx, _local: None })
}

impl Signal {
    /// Asks everything to drain; whether it has within `limit`.
    pub async fn drain(&mut self, limit: Duration) -> bool {
        let _ = self.tx.send(true);
        // Every `Watch` holds a sender; `recv` returns `None` once all are gone.
        tokio::time::timeout(limit, self.done_rx.recv()).await.is_ok()
    }

    /// The drain's time is up: what still runs is closed now. Waits for it
    /// to go, at most `limit`.
    pub async fn cut(&mut self, limit: Duration) {
        let _ = self.cut.send(true);
        let _ = tokio::time::timeout(limit, self.done_rx.recv()).await;
    }

    /// What a recorder reads to know whether the drain is cutting.
    pub fn cut_flag(&self) -> Cut {
        Cut(self.cut.subscribe())
    }
}

impl Watch {
    /// A watch that also keeps `local` open: a worker thread waits on its
    /// receiver to know when its last connection has finished.
    pub fn with_local(&self, local: mpsc::Sender<()>) -> Watch {
        Watch { rx: self.rx.clone(), cut: self.cut.clone(), _done: self._done.clone(), _local: Some(local) }
    }

    /// Resolves once a drain has been asked for.
    pub async fn signaled(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Resolves once the drain's time is up (`Signal::cut`).
    pub async fn cut(&self) {
        let mut rx = self.cut.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}
/// SIGTERM (as Kubernetes and container runtimes stop a process) or
/// SIGINT (Ctrl-C), whichever comes first: when every command of
/// sidetrace begins to stop.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
