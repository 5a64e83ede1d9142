//! Route templating: `RouteTemplates::route` on arbitrary paths, with
//! configured patterns from the input. Never panics; a route made by the
//! heuristics keeps no identifier of a known shape (digits, UUID, long hex)
//! and is bounded in length, whatever the path.
//!
//! Input: lines; the last is the path, the ones before it are patterns
//! (those `RoutePattern::parse` refuses are skipped, as start-up would
//! refuse them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidetrace::trace::route::{MAX_ROUTE_LEN, RoutePattern, RouteTemplates};

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn is_long_hex(s: &str) -> bool {
    s.len() >= 16 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let path = lines.pop().unwrap_or_default();
    let patterns: Vec<RoutePattern> = lines.iter().filter_map(|l| RoutePattern::parse(l).ok()).collect();
    let configured: Vec<String> = patterns.iter().map(|p| p.as_str().to_owned()).collect();
    let templates = RouteTemplates::new(patterns);
    let route = templates.route(path);
    assert_eq!(route, templates.route(path), "the same path, another route");
    if let Some(p) = configured.iter().find(|p| ***p == *route) {
        assert!(RoutePattern::parse(p).unwrap().matches(path));
        return;
    }
    assert!(route.len() <= MAX_ROUTE_LEN, "a route of {} bytes from a path of {}", route.len(), path.len());
    for seg in route.split('/') {
        assert!(!is_digits(seg) && !is_uuid(seg) && !is_long_hex(seg), "{seg:?} left in {route:?} (path {path:?})");
    }
    // Without patterns, a short path keeps its shape: one segment for one.
    if configured.is_empty() && path.len() <= 64 {
        assert_eq!(route.split('/').count(), path.split('/').count(), "{path:?} -> {route:?}");
    }
});
