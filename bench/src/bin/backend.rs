//! The benchmark backend (and OTLP sink) as a process:
//! `backend [--listen 127.0.0.1:0] [--threads N]`. Prints
//! `listening ADDR` once bound; routes are in the crate docs (`src/lib.rs`).

use std::io::Write;
use std::sync::Arc;

fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--threads" => threads = args.next().and_then(|n| n.parse().ok()).expect("--threads N"),
            other => panic!("unknown argument {other}; usage: backend [--listen ADDR] [--threads N]"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("listening {}", listener.local_addr().expect("local addr"));
        std::io::stdout().flush().ok();
        sidetrace_bench::serve(listener, Arc::new(sidetrace_bench::Stats::default())).await;
    });
}
