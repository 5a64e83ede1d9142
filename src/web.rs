//! The HTTP servers that are not the data path — the admin server, the
//! admission webhook, and the collector's API and UI to come — are axum
//! routers served by this one accept loop: HTTP/1.1 and HTTP/2 (ALPN over
//! TLS, prior knowledge in clear), TLS where configured, and the client's
//! address handed to handlers as axum's `ConnectInfo`.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A TLS handshake that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, peer, app).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection(stream, peer, app).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A client on this machine: loopback, also as an IPv4-mapped IPv6 address.
pub fn is_local(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_peers() {
        for (addr, local) in [
            ("127.0.0.1:1", true),
            ("127.9.9.9:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("10.0.0.5:1", false),
            ("[::ffff:10.0.0.5]:1", false),
            ("[fd00::1]:1", false),
        ] {
            assert_eq!(is_local(addr.parse().unwrap()), local, "{addr}");
        }
    }
}

/// A bearer token the routes it guards require: `Authorization: Bearer
/// TOKEN`, or 401 with `WWW-Authenticate` and a JSON reason. The token is
/// compared in constant time.
#[derive(Clone)]
pub struct Bearer(Arc<[u8]>);

impl Bearer {
    /// The token in `path`, surrounding whitespace removed; an empty file
    /// is an error, not an open door.
    pub fn from_file(path: &std::path::Path) -> Result<Bearer, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{}: the token must be printable ASCII without spaces", path.display()));
        }
        Ok(Bearer(token.as_bytes().into()))
    }

    fn admits(&self, headers: &http::HeaderMap) -> bool {
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer ").or_else(|| v.as_bytes().strip_prefix(b"bearer ")))
        else {
            return false;
        };
        given.len() == self.0.len() && given.iter().zip(self.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Wraps `router`'s routes: each request needs the token.
    pub fn guard(self, router: Router) -> Router {
        router.route_layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let admitted = self.admits(req.headers());
                async move {
                    if admitted {
                        return next.run(req).await;
                    }
                    let body = axum::Json(serde_json::json!({ "error": "this API requires a bearer token" }));
                    let challenge = [(http::header::WWW_AUTHENTICATE, "Bearer realm=\"sidetrace\"")];
                    axum::response::IntoResponse::into_response((http::StatusCode::UNAUTHORIZED, challenge, body))
                }
            },
        ))
    }
}
