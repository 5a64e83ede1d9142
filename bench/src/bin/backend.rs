//! The benchmark backend (and OTLP sink) as a process:
//! `backend [--listen 127.0.0.1:0] [--threads N] [--call-via PROXY --call URL]`. Prints
//! `listening ADDR` once bound; routes are in the crate docs (`src/lib.rs`).

use std::io::Write;
use std::sync::Arc;

fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut via, mut call) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--threads" => threads = args.next().and_then(|n| n.parse().ok()).expect("--threads N"),
            "--call-via" => via = Some(args.next().and_then(|a| a.parse().ok()).expect("--call-via ADDR")),
            "--call" => call = Some(args.next().and_then(|u| u.parse().ok()).expect("--call URL")),
            other => panic!(
                "unknown argument {other}; usage: backend [--listen ADDR] [--threads N] [--call-via PROXY --call URL]"
            ),
        }
    }
    if let (Some(via), Some(call)) = (via, call) {
        let _ = sidetrace_bench::CALL.set(sidetrace_bench::Call::new(via, call));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("listening {}", listener.local_addr().expect("local addr"));
        std::io::stdout().flush().ok();
        sidetrace_bench::serve(listener, Arc::new(sidetrace_bench::Stats::default())).await;
    });
}
