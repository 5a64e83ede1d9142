//! Opens N keep-alive connections to an HTTP/1.1 proxy, sends one `GET /`
//! on each (so the proxy has parsed a request and holds a live HTTP
//! connection, not one still in protocol detection), reads the answer, and
//! then holds every connection idle. Prints `open OK FAILED SECONDS` once
//! they are all set up, then waits for a line (or EOF) on stdin, or for
//! `--hold` seconds, and exits, closing them.
//!
//! `idle-conns --target 127.0.0.1:PORT [--conns 10000] [--parallel 64] [--hold 120]`
//! The caller raises `ulimit -n` (each connection is one descriptor).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn one(target: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n").await?;
    // Read the head, then exactly content-length bytes of body.
    let mut buf = Vec::with_capacity(2048);
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the response"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(std::io::Error::other(format!("bad status: {}", head.lines().next().unwrap_or(""))));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut have = buf.len() - head_end;
    while have < len {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed mid-body"));
        }
        have += n;
    }
    Ok(s)
}

fn main() {
    let (mut target, mut conns, mut parallel, mut hold) = (String::new(), 10_000usize, 64usize, 120u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("flag value");
        match a.as_str() {
            "--target" => target = v,
            "--conns" => conns = v.parse().expect("--conns N"),
            "--parallel" => parallel = v.parse().expect("--parallel N"),
            "--hold" => hold = v.parse().expect("--hold SECONDS"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!target.is_empty(), "--target ADDR is required");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let start = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
        let target = Arc::new(target);
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (gate, target) = (gate.clone(), target.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                tokio::time::timeout(Duration::from_secs(10), one(&target))
                    .await
                    .map_err(|_| ())
                    .and_then(|r| r.map_err(|e| eprintln!("{e}")))
            }));
        }
        let mut held = Vec::with_capacity(conns);
        let mut failed = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => held.push(s),
                _ => failed += 1,
            }
        }
        println!("open {} {} {:.3}", held.len(), failed, start.elapsed().as_secs_f64());
        std::io::stdout().flush().ok();
        let mut line = String::new();
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let _ = tokio::time::timeout(Duration::from_secs(hold), stdin.read_line(&mut line)).await;
        // How many are still open (the proxy may have closed idle ones)?
        let mut alive = 0;
        for s in &held {
            let mut b = [0u8; 1];
            match s.try_read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
                _ => {}
            }
        }
        println!("alive {alive}");
        drop(held);
    });
}
