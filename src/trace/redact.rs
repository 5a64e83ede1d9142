//! Secrets never reach spans or logs: query values of configured keys are
//! replaced by `REDACTED` (the OpenTelemetry `url.query` guidance), and no
//! header other than User-Agent is ever recorded.

use std::borrow::Cow;

pub fn redact_query<'a>(query: &'a str, keys: &[String]) -> Cow<'a, str> {
    let sensitive = |pair: &str| {
        let key = pair.split('=').next().unwrap_or("");
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        keys.iter().any(|k| k.eq_ignore_ascii_case(&key))
    };
    if !query.split('&').any(|p| p.contains('=') && sensitive(p)) {
        return Cow::Borrowed(query);
    }
    let parts: Vec<Cow<str>> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if sensitive(p) => Cow::Owned(format!("{k}=REDACTED")),
            _ => Cow::Borrowed(p),
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

/// What a one-line log encodes in a path: a request target may carry `"`,
/// `\` and any UTF-8 (C1 controls such as NEL, U+2028), none of which may
/// reach a log line raw. CR, LF, space and ASCII controls cannot be in a
/// parsed path, and are encoded anyway.
const LOG_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'\\');

/// A path as a text log line may carry it (the access log's text format,
/// the body of an OTLP log record).
pub fn log_path(path: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(path, LOG_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_configured_keys() {
        let keys = vec!["token".to_string(), "sig".to_string()];
        assert_eq!(redact_query("a=1&TOKEN=abc&sig=x&b", &keys), "a=1&TOKEN=REDACTED&sig=REDACTED&b");
        assert_eq!(redact_query("a=1&b=2", &keys), "a=1&b=2");
        assert_eq!(redact_query("to%6Ben=s3cret", &keys), "to%6Ben=REDACTED");
    }
}
