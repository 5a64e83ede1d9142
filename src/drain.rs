//! Graceful drain: one signal tells every listener to stop accepting and
//! every connection to finish its in-flight requests; the signaller then
//! waits until the last connection's watch is dropped.

use tokio::sync::{mpsc, watch};

#[derive(Debug)]
pub struct Signal {
    tx: watch::Sender<bool>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by every listener and connection; cloning registers one more
/// thing that must finish before the drain is complete.
#[derive(Clone, Debug)]
pub struct Watch {
    rx: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
    /// A worker thread's own count of what still runs on it.
    _local: Option<mpsc::Sender<()>>,
}

pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    (Signal { tx, done_rx }, Watch { rx, _done: done_tx, _local: None })
}

impl Signal {
    /// Asks everything to drain and waits until it has.
    pub async fn drain(mut self) {
        let _ = self.tx.send(true);
        // Every `Watch` holds a sender; `recv` returns `None` once all are gone.
        let _ = self.done_rx.recv().await;
    }
}

impl Watch {
    /// A watch that also keeps `local` open: a worker thread waits on its
    /// receiver to know when its last connection has finished.
    pub fn with_local(&self, local: mpsc::Sender<()>) -> Watch {
        Watch { rx: self.rx.clone(), _done: self._done.clone(), _local: Some(local) }
    }

    /// Resolves once a drain has been asked for.
    pub async fn signaled(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|d| *d).await;
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
