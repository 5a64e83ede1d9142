//! `sidetrace collector`: receives OTLP traces and logs from sidecars and
//! SDKs, stores them durably, serves the query API and the UI (src/ui) on
//! `--ui`, and optionally forwards everything on.
//!
//! ```text
//! OTLP/HTTP (otlp_http) ─┐                                  ┌─► store (SQLite: spans, logs)
//!                        ├─► rows (check, index, render) ─► writer (one thread, batched commits)
//! OTLP/gRPC (otlp_grpc) ─┘        │ after the commit: forward ─► export::exporter ─► OTLP/HTTP
//!                                 ▼
//!           query API (api) ◄─ store::query (own read connections)
//! ```
//!
//! A sender's request is answered only after its batch is committed and
//! synced (`writer`); a full queue is refused with 429 / RESOURCE_EXHAUSTED.
//! Only `main.rs` and `demo` import this module.

mod api;
mod args;
mod forward;
mod otlp_grpc;
mod otlp_http;
pub mod rows;
pub mod store;
mod writer;

pub use args::{CollectorArgs, Storage};
pub use otlp_http::read as read_otlp_http;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Start-up failures, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the store in {dir}: {reason}")]
    Store { dir: String, reason: String },
    #[error("cannot start: {0}")]
    Start(std::io::Error),
}

impl CollectorError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CollectorError::Config(_) => 2,
            _ => 1,
        }
    }
}

pub fn run(args: &CollectorArgs) -> ExitCode {
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidetrace collector: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn open_store(storage: &Storage) -> Result<store::Store, CollectorError> {
    let dir = match storage {
        Storage::Memory => None,
        Storage::Dir(d) => Some(d.as_path()),
    };
    let failed = |reason: String| CollectorError::Store {
        dir: dir.map(|d| d.display().to_string()).unwrap_or_else(|| "memory".into()),
        reason,
    };
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| failed(e.to_string()))?;
    }
    store::Store::open(dir).map_err(|e| failed(e.to_string()))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, CollectorError> {
    TcpListener::bind(addr).await.map_err(|source| CollectorError::Bind { what, addr, source })
}

fn start(args: &CollectorArgs) -> Result<(), CollectorError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_default())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CollectorError::Start)?;
    runtime.block_on(async {
        let running = serve(args).await?;
        // Tests and scripts read the bound addresses from this line.
        tracing::info!(
            otlp_http = %running.otlp_http,
            otlp_grpc = %running.otlp_grpc,
            ui = %running.ui,
            storage = %args.storage,
            "sidetrace collector started"
        );
        crate::drain::stop_signal().await;
        tracing::info!("stopping");
        // Every acknowledged batch is committed already; what is in flight
        // was not acknowledged, and its sender will retry it.
        running.stop();
        Ok(())
    })
}

/// A collector serving on the caller's runtime, with the addresses it
/// bound (`sidetrace demo` runs one in-process).
pub struct Running {
    pub otlp_http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub ui: SocketAddr,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn stop(self) {
        for s in self.servers {
            s.abort();
        }
    }
}

/// Opens the store, starts the writer and serves the receivers, the API
/// and the UI until `Running::stop`.
pub async fn serve(args: &CollectorArgs) -> Result<Running, CollectorError> {
    let storage = args.storage();
    let store = open_store(&storage)?;
    let bounds =
        writer::Bounds { retention: args.retention, max_bytes: args.max_bytes, interval: args.enforce_interval };
    let writer = writer::Writer::start(store.clone(), args.write_queue, bounds).map_err(CollectorError::Start)?;
    let forward = match &args.forward {
        None => None,
        Some(url) => {
            let spool = match &storage {
                Storage::Dir(d) => Some(d.as_path()),
                Storage::Memory => None,
            };
            Some(Arc::new(forward::Forwarder::start(url, spool).map_err(CollectorError::Config)?))
        }
    };
    let token = match &args.api_token_file {
        None => None,
        Some(path) => Some(
            crate::web::Bearer::from_file(path)
                .map_err(|e| CollectorError::Config(format!("--api-token-file: {e}")))?,
        ),
    };
    let http = bind("--otlp-http", args.otlp_http).await?;
    let grpc = bind("--otlp-grpc", args.otlp_grpc).await?;
    let ui = bind("--ui", args.ui).await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(CollectorError::Start);
    let (otlp_http, otlp_grpc, ui_addr) = (addr(&http)?, addr(&grpc)?, addr(&ui)?);
    let receiver = Arc::new(otlp_http::Receiver { writer, forward });
    let api = Arc::new(api::Api { store, log_link_template: args.log_link_template.clone() });
    let servers = vec![
        tokio::spawn(crate::web::serve(http, otlp_http::router(receiver.clone()), None)),
        tokio::spawn(crate::web::serve(grpc, otlp_grpc::router(receiver), None)),
        tokio::spawn(crate::web::serve(ui, api::router(api, token), None)),
    ];
    Ok(Running { otlp_http, otlp_grpc, ui: ui_addr, servers })
}
