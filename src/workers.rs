//! Thread-per-core serving. Each worker is a thread with a single-threaded
//! tokio runtime, its own `SO_REUSEPORT` listeners (the kernel spreads
//! connections across them) and its own upstream pools. A request never
//! leaves the thread that accepted it, so the path has no cross-thread
//! wake-ups and no shared pool lock; Envoy and nginx run their workers the
//! same way. The export pipeline and the admin server run elsewhere (the
//! caller's runtime) and meet the workers only through atomics and the
//! span queue, which they poll rather than wait on.

use crate::drain;
use crate::http::Shared;
use crate::listen;
use crate::vocab::Direction;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The operating system refused a worker its thread or runtime.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a worker {what}: {source}")]
pub struct SpawnError {
    what: &'static str,
    source: std::io::Error,
}

/// One worker's listening sockets.
pub struct WorkerListeners {
    pub inbound: Option<std::net::TcpListener>,
    pub outbound: Option<std::net::TcpListener>,
}

/// `[::]` is dual-stack; in a network namespace without IPv6 (disabled by
/// sysctl or the kernel) it cannot be bound, and `0.0.0.0` serves the same
/// clients.
fn bind_one(what: &'static str, addr: SocketAddr, reuse_port: bool) -> Result<std::net::TcpListener, BindError> {
    match bind_exact(what, addr, reuse_port) {
        Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED && no_ipv6(&e.source) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::warn!(%addr, fallback = %v4, error = %e.source, "no IPv6 here; listening on IPv4 only");
            bind_exact(what, v4, reuse_port)
        }
        r => r,
    }
}

fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT))
}

fn bind_exact(what: &'static str, addr: SocketAddr, reuse_port: bool) -> Result<std::net::TcpListener, BindError> {
    let err = |source| BindError { what, addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

/// `SO_REUSEPORT` would also let a second sidetrace (same user, same port)
/// join the listeners silently and take half the connections. A plain
/// bind fails where any socket already listens, so trying one first makes
/// a taken port an error, as it is with a single worker.
fn port_is_free(what: &'static str, addr: SocketAddr) -> Result<(), BindError> {
    let err = |source| BindError { what, addr, source };
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    probe.set_reuse_address(true).map_err(err)?;
    probe.bind(&addr.into()).map_err(err)
}

/// Every worker's sockets, and the addresses they are bound to.
pub struct Bound {
    pub workers: Vec<WorkerListeners>,
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
}

/// Binds `workers` sockets per listener address. With port 0 the first
/// socket picks the port and the others join it.
pub fn bind(workers: usize, inbound: Option<SocketAddr>, outbound: Option<SocketAddr>) -> Result<Bound, BindError> {
    let reuse = workers > 1;
    if reuse {
        for (what, addr) in [("--inbound", inbound), ("--outbound", outbound)] {
            if let Some(a) = addr.filter(|a| a.port() != 0) {
                port_is_free(what, a)?;
            }
        }
    }
    let mut all: Vec<WorkerListeners> = Vec::with_capacity(workers);
    let (mut in_addr, mut out_addr) = (inbound, outbound);
    for _ in 0..workers {
        let one = |what, addr: &mut Option<SocketAddr>| -> Result<Option<std::net::TcpListener>, BindError> {
            let Some(a) = *addr else { return Ok(None) };
            let l = bind_one(what, a, reuse)?;
            *addr = Some(l.local_addr().map_err(|source| BindError { what, addr: a, source })?);
            Ok(Some(l))
        };
        let inbound = one("--inbound", &mut in_addr)?;
        let outbound = one("--outbound", &mut out_addr)?;
        all.push(WorkerListeners { inbound, outbound });
    }
    Ok(Bound { workers: all, inbound: in_addr, outbound: out_addr })
}

/// Once a second: idle HTTP/1 connections give back their buffers
/// (`http::idle::sweep`). The tick also keeps a timer always due within a
/// second, which matters because tokio wakes its own I/O driver (an
/// eventfd write and one more event for epoll to report) whenever a timer
/// is set to fire earlier than the wake-up the driver last planned: a
/// worker whose other timers were idle connections' hour-long ones would
/// pay that on every request, for hyper's 30 s header-read timer.
async fn heartbeat() {
    let mut tick = tokio::time::interval(crate::http::idle::QUICK_RETURN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        crate::http::idle::sweep();
    }
}

/// Starts one thread per worker. `shared` makes a worker's state for a
/// direction (each worker has its own pools). Each thread ends once the
/// drain has been signalled and its last connection is done.
pub fn spawn(
    listeners: Vec<WorkerListeners>,
    shared: impl Fn(Direction) -> Arc<Shared>,
    watch: &drain::Watch,
) -> Result<Vec<JoinHandle<()>>, SpawnError> {
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.into_iter().enumerate() {
        let work: Vec<(std::net::TcpListener, Arc<Shared>)> =
            [(l.inbound, Direction::Inbound), (l.outbound, Direction::Outbound)]
                .into_iter()
                .filter_map(|(l, d)| l.map(|l| (l, shared(d))))
                .collect();
        let watch = watch.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| SpawnError { what: "runtime", source })?;
        let thread = std::thread::Builder::new()
            .name(format!("sidetrace-worker-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let (local_tx, mut local_rx) = tokio::sync::mpsc::channel::<()>(1);
                    for (listener, shared) in work {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(l) => {
                                tokio::spawn(listen::accept_loop(l, shared, watch.with_local(local_tx.clone())));
                            }
                            Err(e) => tracing::error!(error = %e, "cannot register a listener with the worker runtime"),
                        }
                    }
                    drop(local_tx);
                    drop(watch);
                    // Ends when every accept loop and connection of this worker is gone.
                    tokio::select! {
                        _ = local_rx.recv() => {}
                        _ = heartbeat() => {}
                    }
                });
            })
            .map_err(|source| SpawnError { what: "thread", source })?;
        threads.push(thread);
    }
    Ok(threads)
}
