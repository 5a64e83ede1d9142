//! Upstream failures become honest answers: refused → 502, slow → 504, a
//! reset mid-body aborts the client's stream. And memory stays flat: a GiB
//! each way streams through, and idle keep-alive clients cost little.

mod support;

use sidetrace::config::Config;
use sidetrace::vocab::ErrorType;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502_with_error_type() {
    let proxy = proxy_for(closed_port()).await;
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://{}/x", proxy.inbound.unwrap())]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
    let span = spans(&proxy, 1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::ConnectionRefused));
    assert_eq!(span.status, Some(502));
    let otlp = proxy.encoder.span(&span);
    let error_type = otlp.attributes.iter().find(|a| a.key == "error.type").expect("error.type set");
    assert_eq!(
        format!("{:?}", error_type.value),
        format!(
            "{:?}",
            Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "connection_refused".into()
                ))
            })
        )
    );
    assert_eq!(otlp.status.unwrap().code, 2, "status Error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let app = echo_app().await;
    let mut config = Config::local(app.addr, "timeouts");
    config.response_timeout = Some(Duration::from_millis(200));
    let proxy = proxy_with(config).await;
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://{}/slow/3000", proxy.inbound.unwrap())]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "504");
    let span = spans(&proxy, 1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::ResponseTimeout));
}

/// An app that promises a megabyte and hangs up after a kilobyte.
async fn resetting_app() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n").await;
                let _ = s.write_all(&[b'x'; 1024]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_aborts_the_client_stream() {
    let proxy = proxy_for(resetting_app().await).await;
    let out = curl(&["-o", "/dev/null", "-w", "%{size_download}", &format!("http://{}/big", proxy.inbound.unwrap())]);
    // curl 18: "transfer closed with outstanding read data remaining".
    assert_eq!(out.status.code(), Some(18), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1024");
    let span = spans(&proxy, 1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::UpstreamReset));
    assert_eq!(span.response_body_size, 1024);
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The proxy as its own process, so its memory is its own.
fn spawn_proxy(app: std::net::SocketAddr) -> (KillOnDrop, String) {
    let port = closed_port().port();
    let child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sidetrace"))
            .args(["run", "--inbound", &format!("127.0.0.1:{port}"), "--app", &app.to_string()])
            .args(["--outbound", "off", "--admin", "off", "--access-log", "off"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port), "proxy did not start");
    (child, format!("http://127.0.0.1:{port}"))
}

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    let app = echo_app().await;
    let (proxy, url) = spawn_proxy(app.addr);
    let pid = proxy.0.id();
    let url2 = url.clone();
    let down = tokio::task::spawn_blocking(move || {
        curl(&["-o", "/dev/null", "-w", "%{size_download}", &format!("{url2}/bytes/{GIB}")])
    })
    .await
    .unwrap();
    assert!(down.status.success(), "{down:?}");
    assert_eq!(String::from_utf8_lossy(&down.stdout), GIB.to_string());

    let upload = tokio::task::spawn_blocking(move || {
        let mut curl = Command::new("curl")
            .args(["-sS", "-T", "-", "-H", "Content-Type: application/octet-stream", &format!("{url}/sink")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = curl.stdin.take().unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..1024 {
            stdin.write_all(&chunk).unwrap();
        }
        drop(stdin);
        let mut out = String::new();
        curl.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(curl.wait().unwrap().success());
        out
    })
    .await
    .unwrap();
    assert_eq!(upload.trim(), GIB.to_string(), "the app received every byte");
    let peak_kib = vm_kib(pid, "VmHWM:");
    eprintln!("proxy peak RSS after 1 GiB each way: {} KiB", peak_kib);
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB is not under 64 MiB");
}

/// Lets this process (and the proxy it starts) hold `n` more descriptors.
fn raise_fd_limit(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max.min(lim.rlim_cur.max(n + 1024));
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    assert!(lim.rlim_cur >= n + 256, "the descriptor limit {} is too low for {n} connections", lim.rlim_cur);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_cost_little_memory() {
    const CONNS: usize = 1500;
    raise_fd_limit(CONNS as u64);
    let app = echo_app().await;
    let (proxy, url) = spawn_proxy(app.addr);
    let pid = proxy.0.id();
    assert!(curl(&[&format!("{url}/")]).status.success());
    let before = vm_kib(pid, "VmRSS:");
    let addr = url.trim_start_matches("http://").to_string();
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"hello from the app\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        conns.push(s);
    }
    let held = vm_kib(pid, "VmRSS:");
    let per_conn = (held.saturating_sub(before)) as f64 * 1024.0 / CONNS as f64;
    eprintln!("{CONNS} idle keep-alive connections: RSS {before} -> {held} KiB, {per_conn:.0} B each");
    // hyper alone would hold ~20 KiB of buffers per connection.
    assert!(per_conn < 10.0 * 1024.0, "{per_conn:.0} bytes per idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_would_loop_are_refused_with_508() {
    // HTTP_PROXY-style request naming the outbound listener itself.
    let proxy = proxy_for(closed_port()).await;
    let outbound = proxy.outbound.unwrap();
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &format!("http://{outbound}"),
        &format!("http://{outbound}/x"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "508");
    let span = spans(&proxy, 1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::LoopDetected));

    // An app address that is the inbound listener under another name.
    let port = closed_port().port();
    let mut config = Config::local(([127, 0, 0, 1], port).into(), "loop");
    config.inbound = Some(([0, 0, 0, 0], port).into());
    let proxy = proxy_with(config).await;
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{port}/x")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "508");
    assert_eq!(spans(&proxy, 1).await.len(), 1, "one request, one span: it did not go round");
}
