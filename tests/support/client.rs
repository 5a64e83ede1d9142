//! The one HTTP client of the tests: hyper over HTTP/1.1 or HTTP/2 with
//! prior knowledge (h2c), optionally over TLS (rustls, trusting only the
//! test's CA, with a client certificate for mTLS), through an HTTP proxy
//! (absolute-form) or a CONNECT tunnel. A call returns what a transparency
//! test compares: status, headers, body bytes and trailers.
//!
//! ```ignore
//! let r = Client::http1().get(&format!("{url}/status/404")).send().await;
//! let mut conn = Client::h2c().connect(addr).await;       // one connection,
//! conn.post("/echo").body("hi").send().await;             // many requests
//! ```
//!
//! Every call is bounded in time (30 s unless `timeout` says otherwise).
//! `send` fails the test with the call in the message; `try_send` returns
//! the failure, with whatever arrived before it, for tests about failures.
//!
//! curl is still used where a test is about curl's own behaviour:
//! `Expect: 100-continue` (curl waits for the interim response, hyper's
//! client does not), in tests/protocols.rs.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body: `empty`, `full`, `chunks` (streamed, with trailers if
/// given) or any stream of frames.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A body of unknown length (chunked on HTTP/1.1), sent chunk by chunk,
/// then the trailers if any.
pub fn chunks(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Body {
    let frames = chunks.into_iter().map(Frame::data).chain(trailers.map(Frame::trailers)).map(Ok::<_, BoxError>);
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    /// HTTP/2 with prior knowledge (cleartext h2c, or h2 over TLS).
    Http2,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2",
        })
    }
}

/// What came back.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body, unless the call asked to `discard_body`.
    pub body: Bytes,
    /// How many body bytes arrived (kept or not).
    pub body_len: u64,
    pub trailers: Option<HeaderMap>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A call that did not complete: where it stopped, and what had arrived.
#[derive(Debug)]
pub struct Failure {
    /// The response's status, when its head arrived.
    pub status: Option<StatusCode>,
    /// Body bytes that arrived before the failure.
    pub body_len: u64,
    pub error: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (status {:?}, {} body bytes before it)", self.error, self.status, self.body_len)
    }
}

#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    proto: Proto,
    tls: Option<Tls>,
}

impl Client {
    pub fn new(proto: Proto) -> Client {
        Client { proto, tls: None }
    }

    pub fn http1() -> Client {
        Client::new(Proto::Http1)
    }

    pub fn h2c() -> Client {
        Client::new(Proto::Http2)
    }

    /// Over TLS, trusting only the CA certificate(s) in `ca` (PEM), with a
    /// client certificate and key when `identity` names them.
    pub fn tls(mut self, ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(ca)) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => {
                let certs = CertificateDer::pem_slice_iter(&read(cert)).collect::<Result<Vec<_>, _>>().unwrap();
                let key = PrivateKeyDer::from_pem_slice(&read(key)).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![match self.proto {
            Proto::Http1 => b"http/1.1".to_vec(),
            Proto::Http2 => b"h2".to_vec(),
        }];
        self.tls = Some(Tls { config: Arc::new(config), server_name: None });
        self
    }

    /// The name the TLS handshake asks for and verifies (SNI), when it is
    /// not the address connected to.
    pub fn server_name(mut self, name: &str) -> Client {
        self.tls.as_mut().expect("server_name is for TLS clients").server_name = Some(name.to_string());
        self
    }

    pub fn get(&self, url: &str) -> Call<'static> {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: &str) -> Call<'static> {
        self.request(Method::POST, url)
    }

    /// A call on a connection of its own to the URL's authority (or to the
    /// proxy given with `via`).
    pub fn request(&self, method: Method, url: &str) -> Call<'static> {
        Call::new(On::Fresh(self.clone()), method, url)
    }

    /// One connection to `addr`, for several requests.
    pub async fn connect(&self, addr: SocketAddr) -> Conn {
        self.try_connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr} ({}): {e}", self.proto))
    }

    pub async fn try_connect(&self, addr: SocketAddr) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let authority = addr.to_string();
        match &self.tls {
            None => self.handshake(tcp, authority).await,
            Some(tls) => {
                let name = tls.server_name.clone().unwrap_or_else(|| addr.ip().to_string());
                let server_name = ServerName::try_from(name).map_err(|e| e.to_string())?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector.connect(server_name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                let mut conn = self.handshake(stream, authority).await?;
                conn.scheme = "https";
                Ok(conn)
            }
        }
    }

    /// A tunnel through `proxy` to `authority` (HTTP CONNECT), then one
    /// connection of this client's protocol inside it.
    pub async fn connect_tunnel(&self, proxy: SocketAddr, authority: &str) -> Result<Conn, Failure> {
        let fail = |status, error: String| Failure { status, body_len: 0, error };
        let tcp = TcpStream::connect(proxy).await.map_err(|e| fail(None, e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail(None, e.to_string()))?;
        tokio::spawn(conn.with_upgrades());
        let req = Request::connect(authority).header("host", authority).body(empty()).unwrap();
        let resp = sender.send_request(req).await.map_err(|e| fail(None, e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(fail(Some(resp.status()), "CONNECT was refused".into()));
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(|e| fail(Some(StatusCode::OK), e.to_string()))?;
        self.handshake(TokioIo::new(upgraded), authority.to_string()).await.map_err(|e| fail(None, e))
    }

    async fn handshake<T>(&self, io: T, authority: String) -> Result<Conn, String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = match self.proto {
            Proto::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn.with_upgrades());
                Sender::H1(sender)
            }
            Proto::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Ok(Conn { sender, authority, scheme: "http" })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

/// One client connection.
pub struct Conn {
    sender: Sender,
    /// Where it goes: the Host (or `:authority`) of path-only targets.
    authority: String,
    scheme: &'static str,
}

impl Conn {
    pub fn get(&mut self, target: &str) -> Call<'_> {
        self.request(Method::GET, target)
    }

    pub fn post(&mut self, target: &str) -> Call<'_> {
        self.request(Method::POST, target)
    }

    /// A call on this connection; `target` is a path (`/x?y`) or a URL.
    pub fn request(&mut self, method: Method, target: &str) -> Call<'_> {
        Call::new(On::Conn(self), method, target)
    }

    /// Another handle on this HTTP/2 connection, for concurrent streams.
    pub fn stream(&self) -> Conn {
        match &self.sender {
            Sender::H2(s) => {
                Conn { sender: Sender::H2(s.clone()), authority: self.authority.clone(), scheme: self.scheme }
            }
            Sender::H1(_) => panic!("an HTTP/1 connection carries one request at a time"),
        }
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }
}

enum On<'a> {
    Fresh(Client),
    Conn(&'a mut Conn),
}

/// One request, built up, then sent.
pub struct Call<'a> {
    on: On<'a>,
    method: Method,
    target: String,
    version: Option<Version>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Body>,
    via: Option<SocketAddr>,
    keep_body: bool,
    timeout: Duration,
}

impl<'a> Call<'a> {
    fn new(on: On<'a>, method: Method, target: &str) -> Call<'a> {
        Call {
            on,
            method,
            target: target.to_string(),
            version: None,
            headers: Vec::new(),
            body: None,
            via: None,
            keep_body: true,
            timeout: Duration::from_secs(30),
        }
    }

    /// Adds a header (a name may be given several times).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("header name {name:?}: {e}"));
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("header value {value:?}: {e}"));
        self.headers.push((name, value));
        self
    }

    pub fn body(self, bytes: impl Into<Bytes>) -> Self {
        self.body_stream(full(bytes))
    }

    pub fn body_stream(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    /// The request's HTTP version on an HTTP/1 connection (`HTTP_10`).
    pub fn version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Through the HTTP proxy at `proxy`: the request line carries the
    /// absolute URL (as `HTTP_PROXY` clients send it).
    pub fn via(mut self, proxy: SocketAddr) -> Self {
        self.via = Some(proxy);
        self
    }

    /// Counts the body's bytes without keeping them (a GiB download).
    pub fn discard_body(mut self) -> Self {
        self.keep_body = false;
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Sends the call; any failure fails the test, naming the call.
    pub async fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.target);
        self.try_send().await.unwrap_or_else(|f| panic!("{what}: {f}"))
    }

    pub async fn try_send(self) -> Result<Response, Failure> {
        let limit = self.timeout;
        let what = format!("{} {}", self.method, self.target);
        tokio::time::timeout(limit, self.exchange()).await.unwrap_or_else(|_| {
            Err(Failure { status: None, body_len: 0, error: format!("{what}: no complete answer within {limit:?}") })
        })
    }

    async fn exchange(self) -> Result<Response, Failure> {
        let fail = |error: String| Failure { status: None, body_len: 0, error };
        let Call { on, method, target, version, headers, body, via, keep_body, .. } = self;
        let url: Option<Uri> = target.starts_with("http").then(|| target.parse().expect("a URL"));
        let mut fresh;
        let conn: &mut Conn = match on {
            On::Conn(conn) => conn,
            On::Fresh(client) => {
                let to = match via {
                    Some(proxy) => proxy,
                    None => {
                        let url = url.as_ref().expect("a fresh call needs a URL, not a path");
                        let authority = url.authority().expect("a URL with an authority").as_str();
                        authority.parse().unwrap_or_else(|e| panic!("{authority} is not an address: {e}"))
                    }
                };
                fresh = client.try_connect(to).await.map_err(fail)?;
                &mut fresh
            }
        };
        let authority = match &url {
            Some(u) => u.authority().expect("a URL with an authority").to_string(),
            None => conn.authority.clone(),
        };
        let path = match &url {
            Some(u) => u.path_and_query().map_or("/".to_string(), |p| p.to_string()),
            None => target.clone(),
        };
        let absolute = format!("{}://{authority}{path}", conn.scheme);
        let h2 = matches!(conn.sender, Sender::H2(_));
        // HTTP/2 always carries the authority; HTTP/1 sends origin-form
        // with a Host header, or the absolute URL to a proxy.
        let uri = if h2 || via.is_some() { absolute } else { path };
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(v) = version {
            req = req.version(v);
        } else if h2 {
            req = req.version(Version::HTTP_2);
        }
        let mut req = req.body(body.unwrap_or_else(empty)).map_err(|e| fail(e.to_string()))?;
        if !h2 && !headers.iter().any(|(n, _)| n == http::header::HOST) {
            req.headers_mut().insert(http::header::HOST, HeaderValue::from_str(&authority).unwrap());
        }
        for (name, value) in headers {
            req.headers_mut().append(name, value);
        }
        let resp = match &mut conn.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| fail(e.to_string()))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| fail(e.to_string()))?;
                s.send_request(req).await
            }
        };
        let resp = resp.map_err(|e| fail(format!("{e} ({e:?})")))?;
        let (head, mut body) = resp.into_parts();
        let mut kept = BytesMut::new();
        let mut body_len = 0u64;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure {
                status: Some(head.status),
                body_len,
                error: format!("the body failed: {e} ({e:?})"),
            })?;
            match frame.into_data() {
                Ok(data) => {
                    body_len += data.len() as u64;
                    if keep_body {
                        kept.extend_from_slice(&data);
                    }
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        Ok(Response {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body: kept.freeze(),
            body_len,
            trailers,
        })
    }
}
