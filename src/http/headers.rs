//! The rewrite phase's header rules. Hop-by-hop headers (RFC 9110 section
//! 7.6.1) describe one connection and are not forwarded, nor is any header
//! the `Connection` header names; an absolute-form target becomes
//! origin-form.

use http::header::{self, HOST, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the request asks to switch protocols (`Connection: upgrade`
/// with an `Upgrade` header), e.g. WebSocket.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

/// Removes hop-by-hop headers. An upgrade keeps `Connection: upgrade` and
/// `Upgrade`, which the next hop needs to switch protocols too. `TE:
/// trailers` is kept: it tells the app the client accepts trailers (gRPC
/// relies on it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && *n == header::UPGRADE) && *n != header::TE)
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(header::CONNECTION);
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    if headers.remove(header::TE).is_some() && te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// An HTTP/1 request forwarded to an origin carries origin-form
/// (`/path?q`), with the authority moved to `Host` if it was not there
/// (RFC 9112 section 3.2.2).
pub fn to_origin_form(uri: &mut Uri, headers: &mut HeaderMap) {
    if uri.authority().is_none() || uri.path_and_query().is_none() {
        return; // authority-form (CONNECT) stays as it is
    }
    if !headers.contains_key(HOST)
        && let Some(v) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(HOST, v);
    }
    let pq = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(pq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_named_and_standard() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn upgrade_keeps_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }
}
