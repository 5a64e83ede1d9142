//! `tracestate` by W3C Trace Context Level 2 (section 3.3): which headers
//! pass on, and sidetrace's own vendor entry in them.
//!
//! - A key is a lowercase letter or a digit, then up to 255 of lowercase
//!   letters, digits, `_ - * / @` (Level 2 folds Level 1's `tenant@system`
//!   form into this one grammar, so `foo@` and `foo@@bar` are valid).
//! - A value is 1 to 256 printable ASCII characters other than `,` and `=`,
//!   not ending with a space.
//! - At most 32 members; empty list members are skipped. A repeated key is
//!   not invalid: the header passes on with it. A header with an invalid
//!   member is discarded whole.
//!
//! sidetrace's entry (key `sidetrace`) carries only the service name of the
//! sidecar that forwarded the request, so the next sidecar can name its
//! caller (`peer.service`). It goes first and replaces only an older
//! `sidetrace` entry; other members pass through unchanged and in order,
//! dropped from the end when the entry would break the 32-member limit.

use http::HeaderValue;

/// sidetrace's vendor key.
pub const KEY: &str = "sidetrace";
pub const MAX_MEMBERS: usize = 32;
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 256;

/// The non-empty members of a list, trimmed of optional white space.
fn members(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&c| c == b',').map(trim_ows).filter(|m| !m.is_empty())
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| *c != b' ' && *c != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|c| *c != b' ' && *c != b'\t').map_or(start, |e| e + 1);
    &s[start..end]
}

fn split(member: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = member.iter().position(|&c| c == b'=')?;
    Some((&member[..eq], &member[eq + 1..]))
}

pub fn key_ok(key: &[u8]) -> bool {
    let keychar = |c: &u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@');
    (1..=MAX_KEY).contains(&key.len())
        && (key[0].is_ascii_lowercase() || key[0].is_ascii_digit())
        && key.iter().all(keychar)
}

pub fn value_ok(value: &[u8]) -> bool {
    (1..=MAX_VALUE).contains(&value.len())
        && value.iter().all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && value.last() != Some(&b' ')
}

/// Whether a whole `tracestate` list may pass on.
pub fn is_valid(v: &[u8]) -> bool {
    let mut n = 0;
    for member in members(v) {
        n += 1;
        match split(member) {
            Some((k, v)) if n <= MAX_MEMBERS && key_ok(k) && value_ok(v) => {}
            _ => return false,
        }
    }
    true
}

/// The value of sidetrace's entry: the service that forwarded the request.
pub fn own_entry(v: &[u8]) -> Option<&str> {
    members(v).filter_map(split).find(|(k, _)| *k == KEY.as_bytes()).and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// A service name as a tracestate value: characters a value cannot hold
/// become `_`, and it is cut to 256 characters.
pub fn as_value(service: &str) -> String {
    let mut v: String = service
        .chars()
        .map(|c| if c.is_ascii() && (0x20..=0x7e).contains(&(c as u8)) && c != ',' && c != '=' { c } else { '_' })
        .take(MAX_VALUE)
        .collect();
    while v.ends_with(' ') {
        v.pop();
    }
    if v.is_empty() { "_".into() } else { v }
}

/// The list with sidetrace's entry `entry` (`sidetrace=<service>`) first:
/// an older sidetrace entry is replaced, other members keep their order,
/// and members are dropped from the end past 32. `None` when the existing
/// list would not change the entry alone, so the caller can reuse a value
/// it made once.
pub fn with_own_entry(existing: Option<&HeaderValue>, entry: &HeaderValue) -> Option<HeaderValue> {
    let existing = existing?.as_bytes();
    let others = || members(existing).filter(|m| split(m).is_none_or(|(k, _)| k != KEY.as_bytes()));
    others().next()?;
    let mut out = Vec::with_capacity(entry.len() + 1 + existing.len());
    out.extend_from_slice(entry.as_bytes());
    for m in others().take(MAX_MEMBERS - 1) {
        out.push(b',');
        out.extend_from_slice(m);
    }
    HeaderValue::from_bytes(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn level_2_keys_at_their_edges() {
        for ok in ["a", "0", "foo@", "foo@@bar", "t@v", "a_b-c*d/e@f", "9lives"] {
            assert!(key_ok(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "@foo", "_a", "Foo", "a b", "a.b", "é"] {
            assert!(!key_ok(bad.as_bytes()), "{bad}");
        }
        let k256 = format!("a{}", "b".repeat(255));
        let k257 = format!("a{}", "b".repeat(256));
        assert!(is_valid(format!("{k256}=1").as_bytes()));
        assert!(!is_valid(format!("{k257}=1").as_bytes()));
    }

    #[test]
    fn values_at_their_edges() {
        assert!(value_ok(b"t61rcWkgMzE"));
        assert!(value_ok(b" leading space is fine"));
        assert!(!value_ok(b"trailing "));
        assert!(!value_ok(b"a,b") && !value_ok(b"a=b") && !value_ok(b""));
        assert!(value_ok("x".repeat(256).as_bytes()) && !value_ok("x".repeat(257).as_bytes()));
    }

    #[test]
    fn repeated_keys_pass_invalid_members_discard_the_header() {
        assert!(is_valid(b"a=1,a=2"), "Level 2: a repeated key is not invalid");
        assert!(is_valid(b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,"));
        assert!(!is_valid(b"a=1 ,b"), "a member without '='");
        assert!(!is_valid(b"a=1,B=2"));
    }

    #[test]
    fn at_most_32_members() {
        let list = |n: usize| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        assert!(is_valid(list(32).as_bytes()));
        assert!(!is_valid(list(33).as_bytes()));
    }

    #[test]
    fn own_entry_goes_first_and_replaces_only_its_older_one() {
        let entry = hv("sidetrace=orders");
        assert_eq!(with_own_entry(None, &entry), None, "nothing else: the prepared value serves");
        assert_eq!(with_own_entry(Some(&hv("sidetrace=old")), &entry), None);
        let out = with_own_entry(Some(&hv("rojo=1, sidetrace=old ,congo=2")), &entry).unwrap();
        assert_eq!(out, "sidetrace=orders,rojo=1,congo=2");
        assert_eq!(own_entry(out.as_bytes()), Some("orders"));
        assert_eq!(own_entry(b"rojo=1"), None);
    }

    #[test]
    fn members_are_dropped_from_the_end_to_stay_at_32() {
        let full: String = (0..32).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let out = with_own_entry(Some(&hv(&full)), &hv("sidetrace=a")).unwrap();
        let keys: Vec<&str> = out.to_str().unwrap().split(',').map(|m| m.split('=').next().unwrap()).collect();
        assert_eq!(keys.len(), 32);
        assert_eq!(keys[0], "sidetrace");
        assert_eq!(keys[1], "k0");
        assert_eq!(keys[31], "k30", "the last member went");
        assert!(is_valid(out.as_bytes()));
    }

    #[test]
    fn service_names_become_values() {
        assert_eq!(as_value("orders-api"), "orders-api");
        assert_eq!(as_value("a,b=c"), "a_b_c");
        assert_eq!(as_value("café"), "caf_");
        assert_eq!(as_value(&"x".repeat(300)).len(), 256);
    }
}
