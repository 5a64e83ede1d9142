//! Protocol switches (WebSocket and other `Upgrade`s, and `CONNECT`): once
//! both sides have switched, bytes are copied both ways until either side
//! closes, and the request's span ends then.

use crate::record::InFlight;
use crate::vocab::ErrorType;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, mut rec: InFlight) {
    tokio::spawn(async move {
        let (c, u) = tokio::join!(client, upstream);
        let (Ok(c), Ok(u)) = (c, u) else {
            rec.finish(Some(ErrorType::UpstreamReset));
            return;
        };
        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
        match tokio::io::copy_bidirectional(&mut c, &mut u).await {
            Ok((sent, received)) => {
                rec.set_request_bytes(sent);
                rec.response_bytes = received;
                rec.finish(None);
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel ended with an error");
                rec.finish(Some(ErrorType::UpstreamReset));
            }
        }
    });
}

/// A `CONNECT` through the outbound proxy: the client gets 200 and a raw
/// tunnel to the target; what flows inside (usually TLS) stays opaque.
pub fn spawn_connect(client: OnUpgrade, upstream: tokio::net::TcpStream, mut rec: InFlight) {
    tokio::spawn(async move {
        let Ok(c) = client.await else {
            rec.finish(Some(ErrorType::ClientAborted));
            return;
        };
        let mut c = TokioIo::new(c);
        let mut u = upstream;
        match tokio::io::copy_bidirectional(&mut c, &mut u).await {
            Ok((sent, received)) => {
                rec.set_request_bytes(sent);
                rec.response_bytes = received;
                rec.finish(None);
            }
            Err(_) => rec.finish(Some(ErrorType::UpstreamReset)),
        }
    });
}
