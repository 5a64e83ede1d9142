//! An app that serves one connection at a time (Python's `http.server`
//! with HTTP/1.1 keep-alive, as many small services and dev servers are)
//! keeps working behind sidetrace with several workers: the app sees the
//! connections its clients make, not idle ones of the proxy's own.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sidetrace::config::Config;
use std::net::SocketAddr;
use support::*;
use tokio::net::TcpStream;

const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Header and body go out in two writes; without this, Nagle and
    # delayed ACKs cost 40 ms a request, with or without a proxy.
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b"hello from a one-connection app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

fn one_connection_app() -> (KillOnDrop, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args(["-c", SERVER])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("the app prints its port");
    (KillOnDrop(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

async fn get(sender: &mut http1::SendRequest<Empty<Bytes>>, path: &str) -> u16 {
    sender.ready().await.unwrap();
    let req = http::Request::get(path).header("host", "app").body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

async fn connect(addr: SocketAddr) -> http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = http1::handshake(TokioIo::new(TcpStream::connect(addr).await.unwrap())).await.unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_serving_one_connection_at_a_time_answers_every_request() {
    let (_app, app_addr) = one_connection_app();
    let config = Config::local_with(app_addr, "one-connection", &["--workers", "2", "--response-timeout", "5s"]);
    let proxy = proxy_with(config).await;
    let inbound = proxy.inbound.unwrap();

    let mut statuses = Vec::new();
    for i in 0..200 {
        let mut fresh = connect(inbound).await;
        statuses.push(get(&mut fresh, &format!("/fresh/{i}")).await);
    }
    assert!(statuses.iter().all(|s| *s == 200), "fresh connections: {statuses:?}");

    let mut kept = connect(inbound).await;
    let mut statuses = Vec::new();
    for i in 0..200 {
        statuses.push(get(&mut kept, &format!("/kept/{i}")).await);
    }
    assert!(statuses.iter().all(|s| *s == 200), "one keep-alive connection: {statuses:?}");
    spans(&proxy, 400).await;
}
