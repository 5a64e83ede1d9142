//! `http.route` templates with low cardinality.
//!
//! A configured pattern (`--route /users/{id}/orders/{order}`) wins; any
//! other path has its identifier-like segments (numbers, UUIDs, long hex,
//! long opaque tokens) replaced by `{id}`. The cap on distinct routes per
//! direction belongs to the metrics registry (`metrics::bounded`), not here.
//!
//! A request's route is computed once, when its span starts
//! (`RouteTemplates::route`), and rides in the span record as a shared
//! `Arc<str>`: metrics, the access log and every exporter read it from
//! there. Routes are interned per thread, so a route seen before costs one
//! hash lookup and a reference count, never an allocation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The longest route the heuristics make, in bytes. A longer path is no
/// route anyone wrote: its segments past the limit become `/{*rest}`, so a
/// client cannot make routes (metric labels, span attributes, interned
/// strings) as long as the paths it sends. Configured patterns are kept
/// whole.
pub const MAX_ROUTE_LEN: usize = 256;
const ELIDED: &str = "/{*rest}";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    /// A trailing `{*rest}` or `*` matches any remaining segments.
    Rest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    segments: Vec<Segment>,
}

impl RoutePattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("route pattern {s:?} must start with '/'"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = s[1..].split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let seg = if *part == "*" || (part.starts_with("{*") && part.ends_with('}')) {
                if !last {
                    return Err(format!("route pattern {s:?}: a wildcard must be the last segment"));
                }
                Segment::Rest
            } else if part.starts_with('{') && part.ends_with('}') && part.len() > 2 {
                Segment::Param
            } else if part.contains(['{', '}']) {
                return Err(format!("route pattern {s:?}: a parameter must be a whole segment like {{id}}"));
            } else {
                Segment::Literal((*part).to_string())
            };
            segments.push(seg);
        }
        Ok(RoutePattern { text: s.to_string(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        for seg in &self.segments {
            match (seg, parts.next()) {
                (Segment::Rest, _) => return true,
                (Segment::Param, Some(p)) if !p.is_empty() => {}
                (Segment::Literal(l), Some(p)) if l == p => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

#[derive(Clone, Debug, Default)]
pub struct RouteTemplates {
    patterns: Vec<RoutePattern>,
}

/// Prints as the list of configured patterns.
impl serde::Serialize for RouteTemplates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.patterns.iter().map(RoutePattern::as_str))
    }
}

impl RouteTemplates {
    pub fn new(patterns: Vec<RoutePattern>) -> Self {
        RouteTemplates { patterns }
    }

    pub fn patterns(&self) -> Vec<&str> {
        self.patterns.iter().map(RoutePattern::as_str).collect()
    }

    /// The route for a request path (without its query), written into
    /// `out` (cleared first) so the request path reuses one buffer.
    pub fn write_template(&self, path: &str, out: &mut String) {
        out.clear();
        if let Some(p) = self.patterns.iter().find(|p| p.matches(path)) {
            out.push_str(p.as_str());
            return;
        }
        // Where the route can be cut and still have room for `ELIDED`.
        let mut fits = 0;
        for (i, seg) in path.split('/').enumerate() {
            let seg = if is_identifier(seg) { "{id}" } else { seg };
            if out.len() + usize::from(i > 0) + seg.len() > MAX_ROUTE_LEN {
                out.truncate(fits);
                out.push_str(ELIDED);
                return;
            }
            if i > 0 {
                out.push('/');
            }
            out.push_str(seg);
            if out.len() + ELIDED.len() <= MAX_ROUTE_LEN {
                fits = out.len();
            }
        }
    }

    /// The route of a request path, shared. Templating writes into a
    /// per-thread buffer; a route already seen on this thread comes back
    /// as the same `Arc`.
    pub fn route(&self, path: &str) -> Arc<str> {
        BUFFER.with_borrow_mut(|buf| {
            self.write_template(path, buf);
            intern(buf)
        })
    }

    #[cfg(test)]
    fn template(&self, path: &str) -> String {
        let mut out = String::new();
        self.write_template(path, &mut out);
        out
    }
}

/// Interned routes per thread at most. Templates have low cardinality, so
/// this is only reached by traffic whose paths defeat the heuristics;
/// past it, routes are allocated per request and not kept.
const INTERNED_MAX: usize = 4096;

thread_local! {
    static BUFFER: RefCell<String> = RefCell::new(String::with_capacity(128));
    static INTERNED: RefCell<HashMap<Box<str>, Arc<str>>> = RefCell::new(HashMap::new());
}

fn intern(route: &str) -> Arc<str> {
    INTERNED.with_borrow_mut(|table| {
        if let Some(r) = table.get(route) {
            return r.clone();
        }
        let r: Arc<str> = route.into();
        if table.len() < INTERNED_MAX {
            table.insert(route.into(), r.clone());
        }
        r
    })
}

/// Whether a path segment looks like an identifier rather than a name.
pub fn is_identifier(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Opaque tokens (base64url ids, hashes, session keys): long and mixing
    // digits with letters, which words and slugs rarely do.
    let token_char = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'~');
    b.len() >= 20 && b.iter().all(token_char) && b.iter().any(u8::is_ascii_digit)
        || b.len() >= 32 && b.iter().all(token_char)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_become_id() {
        let t = RouteTemplates::default();
        assert_eq!(t.template("/users/42/orders"), "/users/{id}/orders");
        assert_eq!(t.template("/o/123e4567-e89b-12d3-a456-426614174000"), "/o/{id}");
        assert_eq!(t.template("/blob/4bf92f3577b34da6a3ce929d0e0e4736"), "/blob/{id}");
        assert_eq!(t.template("/s/aGVsbG8gd29ybGQgMTIzNDU2Nzg"), "/s/{id}");
        assert_eq!(t.template("/api/v1/health-check"), "/api/v1/health-check");
        assert_eq!(t.template("/"), "/");
    }

    #[test]
    fn patterns_win() {
        let t = RouteTemplates::new(vec![
            RoutePattern::parse("/users/{id}/orders/{order}").unwrap(),
            RoutePattern::parse("/static/*").unwrap(),
        ]);
        assert_eq!(t.template("/users/alice/orders/x1"), "/users/{id}/orders/{order}");
        assert_eq!(t.template("/static/css/site.css"), "/static/*");
        assert_eq!(t.template("/users/alice"), "/users/alice");
        let mut buf = String::from("stale");
        for path in ["/users/alice/orders/x1", "/static/a", "/o/42/x", "/plain", "/"] {
            t.write_template(path, &mut buf);
            assert_eq!(buf, t.template(path), "{path}");
        }
    }

    #[test]
    fn routes_are_shared_once_seen() {
        let t = RouteTemplates::default();
        let a = t.route("/users/42");
        let b = t.route("/users/43");
        assert_eq!(&*a, "/users/{id}");
        assert!(Arc::ptr_eq(&a, &b), "the second request reuses the first's route");
    }

    #[test]
    fn long_paths_make_bounded_routes() {
        // Found while writing fuzz/fuzz_targets/route.rs: a 60 KB path of
        // words was a 60 KB route, interned up to 4096 times per thread.
        let t = RouteTemplates::default();
        let words = format!("/{}", "a%25/".repeat(12_000));
        let r = t.template(&words);
        assert!(r.len() <= MAX_ROUTE_LEN && r.ends_with("/a%25/{*rest}"), "{} bytes: {r}", r.len());
        assert_eq!(t.template(&format!("/{}", "x!".repeat(35_000))), "/{*rest}");
        assert_eq!(t.template(&"1/".repeat(1000)).len(), MAX_ROUTE_LEN - 4, "{{id}} x 49, then /{{*rest}}");
        // A route of exactly the limit is kept whole.
        let exact = format!("/{}", "!".repeat(MAX_ROUTE_LEN - 1));
        assert_eq!(t.template(&exact), exact);
        assert_eq!(t.template(&format!("{exact}/x")), "/{*rest}");
        let patterns = RouteTemplates::new(vec![RoutePattern::parse("/files/*").unwrap()]);
        assert_eq!(patterns.template(&format!("/files/{}", "x".repeat(1000))), "/files/*");
    }

    #[test]
    fn bad_patterns() {
        assert!(RoutePattern::parse("users").is_err());
        assert!(RoutePattern::parse("/a/*/b").is_err());
        assert!(RoutePattern::parse("/a/x{id}").is_err());
    }
}
