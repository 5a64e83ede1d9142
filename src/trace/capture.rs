//! Request and response headers recorded on spans: only those the operator
//! lists (`--capture-request-headers`, `--capture-response-headers`), as
//! OpenTelemetry's `http.request.header.<name>` and
//! `http.response.header.<name>` string arrays. Credentials are never
//! captured, whatever the lists say: the configuration refuses them.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers that carry credentials; naming one is a configuration error.
pub const NEVER: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Names per list, so that a span's attributes stay bounded.
pub const MAX_NAMES: usize = 8;
pub const REQUEST_PREFIX: &str = "http.request.header.";
pub const RESPONSE_PREFIX: &str = "http.response.header.";

/// One captured value, under its attribute key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub key: &'static str,
    pub value: HeaderValue,
}

/// The headers one direction of a request captures.
#[derive(Clone, Debug, Default)]
pub struct HeaderCapture {
    names: Vec<(HeaderName, &'static str)>,
}

impl HeaderCapture {
    /// `names` as given by the operator, any case; `prefix` is
    /// `REQUEST_PREFIX` or `RESPONSE_PREFIX`. The error says which name is
    /// wrong and why.
    pub fn new(prefix: &str, names: &[String]) -> Result<HeaderCapture, String> {
        let mut out: Vec<(HeaderName, &'static str)> = Vec::new();
        for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))?;
            if NEVER.contains(&name.as_str()) {
                return Err(format!("{name} carries credentials and is never captured"));
            }
            if out.iter().any(|(h, _)| *h == name) {
                continue;
            }
            if out.len() == MAX_NAMES {
                return Err(format!("at most {MAX_NAMES} headers"));
            }
            // The key lives as long as the process: configuration is read
            // once, and spans borrow the key instead of copying it.
            let key: &'static str = Box::leak(format!("{prefix}{name}").into_boxed_str());
            out.push((name, key));
        }
        Ok(HeaderCapture { names: out })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(n, _)| n.as_str())
    }

    /// Appends the listed headers' values, each name's values together and
    /// in the order received. Allocates only when a listed header is there.
    pub fn capture(&self, headers: &HeaderMap, out: &mut Vec<Captured>) {
        for (name, key) in &self.names {
            for value in headers.get_all(name) {
                out.push(Captured { key, value: value.clone() });
            }
        }
    }
}

impl serde::Serialize for HeaderCapture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_listed_headers_only_with_every_value() {
        let c = HeaderCapture::new(REQUEST_PREFIX, &names(&["X-Tenant", "x-request-id", "x-tenant"])).unwrap();
        let mut h = HeaderMap::new();
        h.append("x-tenant", "a".parse().unwrap());
        h.append("x-tenant", "b".parse().unwrap());
        h.append("x-other", "c".parse().unwrap());
        let mut out = Vec::new();
        c.capture(&h, &mut out);
        let got: Vec<_> = out.iter().map(|c| (c.key, c.value.to_str().unwrap())).collect();
        assert_eq!(got, [("http.request.header.x-tenant", "a"), ("http.request.header.x-tenant", "b")]);
    }

    #[test]
    fn refuses_credentials_bad_names_and_long_lists() {
        for secret in ["Authorization", "proxy-authorization", "COOKIE", "set-cookie"] {
            let e = HeaderCapture::new(RESPONSE_PREFIX, &names(&["x-a", secret])).unwrap_err();
            assert!(e.contains("never captured"), "{e}");
        }
        assert!(HeaderCapture::new(REQUEST_PREFIX, &names(&["a b"])).unwrap_err().contains("not a header name"));
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("x-{i}")).collect();
        assert!(HeaderCapture::new(REQUEST_PREFIX, &many).is_err());
    }
}
