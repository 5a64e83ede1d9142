//! The access log: one line per request on stdout, JSON or text. Lines are
//! formatted and written on a thread of their own, so a slow stdout never
//! blocks a request; when that thread falls behind, lines are dropped and
//! counted rather than queued without bound.

use crate::config::AccessLogFormat;
use crate::trace::SpanRecord;
use crate::vocab::protocol_version;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

const QUEUE: usize = 8192;

#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<SpanRecord>,
    pub dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread. It ends, flushing, once every clone of
    /// the returned `AccessLog` is dropped; join it to be sure the last
    /// lines are out.
    pub fn start(format: AccessLogFormat) -> Option<(AccessLog, std::thread::JoinHandle<()>)> {
        if format == AccessLogFormat::Off {
            return None;
        }
        let (tx, rx) = sync_channel(QUEUE);
        match std::thread::Builder::new().name("access-log".into()).spawn(move || writer(rx, format)) {
            Ok(handle) => Some((AccessLog { tx, dropped: Arc::default() }, handle)),
            Err(e) => {
                tracing::error!(error = %e, "could not start the access log thread; access log disabled");
                None
            }
        }
    }

    pub fn log(&self, span: &SpanRecord) {
        if self.tx.try_send(span.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Drains the queue every few milliseconds instead of blocking on it: a
/// blocked receiver would make each request's `try_send` wake this thread.
fn writer(rx: Receiver<SpanRecord>, format: AccessLogFormat) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = String::with_capacity(512);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(span) => {
                    line.clear();
                    format_line(&span, format, &mut line);
                    if out.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if wrote && out.flush().is_err() {
            return;
        }
    }
}

pub fn format_line(s: &SpanRecord, format: AccessLogFormat, out: &mut String) {
    use std::fmt::Write;
    let time = humantime::format_rfc3339_micros(s.start);
    let duration_ms = s.duration_nanos() as f64 / 1e6;
    let status = s.status.unwrap_or(0);
    let upstream = s.upstream.as_ref().map(|u| u.to_string()).unwrap_or_default();
    let error = s.error.map(|e| e.as_str());
    // The path only: a query may carry secrets.
    let path = s.uri.path();
    match format {
        AccessLogFormat::Json => {
            let v = serde_json::json!({
                "time": time.to_string(),
                "direction": s.direction.as_str(),
                "method": s.method.as_str(),
                "path": path,
                "protocol": protocol_version(s.version),
                "status": status,
                "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
                "bytes_received": s.request_body_size,
                "bytes_sent": s.response_body_size,
                "client": s.client.to_string(),
                "upstream": upstream,
                "trace_id": s.trace_id.to_string(),
                "span_id": s.span_id.to_string(),
                "error": error.as_deref(),
            });
            let _ = writeln!(out, "{v}");
        }
        AccessLogFormat::Text => {
            let path = crate::trace::redact::log_path(path);
            let _ = writeln!(
                out,
                "{time} {} {} {path} HTTP/{} {status} {duration_ms:.3}ms in={} out={} client={} upstream={upstream} trace_id={} span_id={}{}",
                s.direction.as_str(),
                s.method,
                protocol_version(s.version),
                s.request_body_size,
                s.response_body_size,
                s.client,
                s.trace_id,
                s.span_id,
                error.as_deref().map(|e| format!(" error={e}")).unwrap_or_default(),
            );
        }
        AccessLogFormat::Off => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::red::tests::span;
    use crate::vocab::Direction;

    fn line(uri: &str, format: AccessLogFormat) -> String {
        let mut out = String::new();
        format_line(&span(Direction::Inbound, "GET", uri, None), format, &mut out);
        out
    }

    #[test]
    fn text_lines_carry_no_control_characters_or_quotes() {
        // Found by fuzz/fuzz_targets/access_log.rs: the path `/\u{8c}t` (a C1
        // control) was written raw. NEL and U+2028 end lines in some viewers.
        for (uri, path) in [
            ("/\u{8c}t", "/%C2%8Ct"),
            ("/a\u{85}b\u{2028}c", "/a%C2%85b%E2%80%A8c"),
            ("/say/\"hi\"\\x?q=1", "/say/%22hi%22%5Cx"),
            ("/caf%C3%A9/%0D%0A", "/caf%C3%A9/%0D%0A"),
        ] {
            let text = line(uri, AccessLogFormat::Text);
            assert_eq!(text.split(' ').nth(3), Some(path), "{text:?}");
            assert_eq!(text.lines().count(), 1);
            assert!(!text.trim_end_matches('\n').chars().any(|c| c.is_control() || c == '\u{2028}'), "{text:?}");
            // JSON keeps the path as it came, escaped by JSON's rules.
            let json: serde_json::Value = serde_json::from_str(&line(uri, AccessLogFormat::Json)).unwrap();
            assert_eq!(json["path"], uri.split('?').next().unwrap());
        }
    }
}
