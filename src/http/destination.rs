//! The destination phase: where a request goes. Inbound, always the app,
//! so the inbound side is never a relay. Outbound, the absolute URI of an
//! HTTP-proxy request, or the original destination of a redirected
//! connection.

use super::conn::ConnMeta;
use super::error::ProxyError;
use super::shared::Shared;
use crate::trace::Upstream;
use crate::vocab::Direction;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Version};

pub fn destination<B>(shared: &Shared, conn: &ConnMeta, req: &Request<B>) -> Result<Upstream, ProxyError> {
    match shared.direction {
        Direction::Inbound => Ok(Upstream::Addr(shared.inbound_target(conn.original_dst))),
        Direction::Outbound => {
            if let Some(orig) = conn.original_dst {
                return Ok(Upstream::Addr(orig));
            }
            let uri = req.uri();
            let absolute_form = req.version() != Version::HTTP_2 && uri.authority().is_some();
            match uri.authority() {
                Some(auth) if absolute_form || req.method() == Method::CONNECT => {
                    if uri.scheme() == Some(&Scheme::HTTPS) {
                        return Err(ProxyError::BadRequest("https:// URIs must be tunnelled with CONNECT"));
                    }
                    Ok(Upstream::Name(with_default_port(auth)))
                }
                _ => Err(ProxyError::NoDestination),
            }
        }
    }
}

fn with_default_port(auth: &Authority) -> Authority {
    if auth.port().is_some() {
        return auth.clone();
    }
    Authority::try_from(format!("{}:80", auth.host())).unwrap_or_else(|_| auth.clone())
}
