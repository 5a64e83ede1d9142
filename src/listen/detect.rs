//! Protocol detection: read the client's first bytes and decide between
//! HTTP/1, HTTP/2 with prior knowledge, TLS (recording the SNI) and opaque
//! TCP. The bytes read are replayed to whoever handles the connection.

use crate::vocab::{DetectOutcome, WireProtocol};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Enough for any sane request line; past it we stop looking.
const MAX_PEEK: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    Tls { sni: Option<String> },
    Opaque,
}

impl Protocol {
    pub fn wire(&self) -> WireProtocol {
        match self {
            Protocol::Http1 => WireProtocol::Http1,
            Protocol::Http2 => WireProtocol::Http2,
            Protocol::Tls { .. } => WireProtocol::Tls,
            Protocol::Opaque => WireProtocol::Opaque,
        }
    }
}

/// Reads from `sock` until the protocol is known. Returns the bytes read,
/// which the caller must replay.
pub async fn detect(sock: &mut TcpStream, timeout: Duration) -> (Protocol, BytesMut, DetectOutcome) {
    // Most request heads fit; a longer one grows the buffer.
    let mut buf = BytesMut::with_capacity(512);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify(&buf) {
            Some(p) => return (p, buf, DetectOutcome::Detected),
            None if buf.len() >= MAX_PEEK => return (Protocol::Opaque, buf, DetectOutcome::Detected),
            None => {}
        }
        match tokio::time::timeout_at(deadline, sock.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (Protocol::Opaque, buf, DetectOutcome::Eof),
            Ok(Ok(_)) => {}
            // A client that began an HTTP/1 request line and went slow
            // is an HTTP/1 client: hyper's header read timeout ends it,
            // where an opaque relay would hand the app a slowloris.
            Err(_) if http1_prefix(&buf) => return (Protocol::Http1, buf, DetectOutcome::Timeout),
            Err(_) => return (Protocol::Opaque, buf, DetectOutcome::Timeout),
        }
    }
}

/// `None` while more bytes could change the answer.
pub fn classify(b: &[u8]) -> Option<Protocol> {
    if b.is_empty() {
        return None;
    }
    if H2_PREFACE.starts_with(&b[..b.len().min(H2_PREFACE.len())]) {
        return (b.len() >= H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    if b[0] == 0x16 {
        return tls(b);
    }
    http1(b)
}

/// An HTTP/1 request line: `token SP target SP HTTP/1.x CRLF`.
fn http1(b: &[u8]) -> Option<Protocol> {
    let tchar = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
    let method_len = b.iter().take_while(|c| tchar(c)).count();
    if b.len() == method_len && method_len <= 32 {
        return None;
    }
    // Bytes that start with a token may be a request line until its end
    // says otherwise; anything else is not HTTP/1 from its first byte on.
    // Only these two rules decide, and a line's prefix never contradicts
    // the whole line, so the verdict does not depend on how the bytes were
    // split into reads.
    if method_len == 0 || method_len > 32 {
        return Some(Protocol::Opaque);
    }
    let eol = b.iter().position(|&c| c == b'\n')?;
    // A first line that says HTTP/1 is HTTP/1 even with a bad method or
    // target (control bytes included): hyper answers it 400, where
    // relaying it as opaque bytes would hand the app what no HTTP parser
    // accepted.
    let line = b[..eol].strip_suffix(b"\r").unwrap_or(&b[..eol]);
    if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
        Some(Protocol::Http1)
    } else {
        Some(Protocol::Opaque)
    }
}

/// The start of an HTTP/1 request line: a method, then a space and text.
fn http1_prefix(b: &[u8]) -> bool {
    let tchar = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
    let method_len = b.iter().take_while(|c| tchar(c)).count();
    let rest = &b[method_len..];
    (1..=32).contains(&method_len)
        && rest.first().is_none_or(|c| *c == b' ')
        && rest.iter().all(|c| !c.is_ascii_control() || matches!(c, b'\r' | b'\n' | b'\t'))
}

/// A TLS handshake record (RFC 8446 5.1) carrying a ClientHello; the SNI
/// extension (RFC 6066 section 3) when the whole hello has arrived.
fn tls(b: &[u8]) -> Option<Protocol> {
    if b.len() < 6 {
        return None;
    }
    if b[1] != 0x03 || b[5] != 0x01 {
        return Some(Protocol::Opaque);
    }
    let record_len = u16::from_be_bytes([b[3], b[4]]) as usize;
    if b.len() < 5 + record_len {
        return None;
    }
    Some(Protocol::Tls { sni: client_hello_sni(&b[5..5 + record_len]) })
}

fn client_hello_sni(h: &[u8]) -> Option<String> {
    let mut r = Reader(h);
    r.skip(1)?; // handshake type
    r.skip(3)?; // length
    r.skip(2 + 32)?; // version, random
    let sid = r.u8()? as usize;
    r.skip(sid)?;
    let suites = r.u16()? as usize;
    r.skip(suites)?;
    let comp = r.u8()? as usize;
    r.skip(comp)?;
    let ext_total = r.u16()? as usize;
    let mut exts = Reader(r.take(ext_total)?);
    while let (Some(ty), Some(len)) = (exts.u16(), exts.u16()) {
        let body = exts.take(len as usize)?;
        if ty == 0 {
            let mut s = Reader(body);
            let _list_len = s.u16()?;
            if s.u8()? != 0 {
                return None;
            }
            let n = s.u16()? as usize;
            return std::str::from_utf8(s.take(n)?).ok().map(str::to_owned);
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_and_h2() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET / HT"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(Protocol::Http2));
        assert_eq!(classify(b"PRI * HTTP/2"), None);
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x00\x01\x02"), Some(Protocol::Opaque));
        // Not a method, but an HTTP/1 request line: hyper refuses it.
        assert_eq!(classify(b"G(T / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET\t/ HTTP/1.1\r\n"), Some(Protocol::Http1));
        // Until its line ends, it may still say HTTP/1.
        assert_eq!(classify(b"G(T / HT"), None);
        assert_eq!(classify(b"{x HTTP/1.1\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"{\"a\":1}\n"), Some(Protocol::Opaque));
        // What a slow client had sent when detection gave up.
        assert!(http1_prefix(b"GET"));
        assert!(http1_prefix(b"GET /index.html HTTP/1.1\r\nHost: a\r\nX-Slow: a"));
        assert!(!http1_prefix(b""));
        assert!(!http1_prefix(b"\x00\x01"));
        assert!(!http1_prefix(b"{\"a\""));
        assert!(!http1_prefix(b"SSH-2.0-x\r\n"));
    }

    #[test]
    fn the_verdict_does_not_depend_on_the_reads() {
        // Found by fuzz/fuzz_targets/detect.rs: a control character in the
        // request line made it opaque when the line came in two reads, and
        // HTTP/1 when it came in one.
        let input = b"GET /user^^^^^^^^^^&\0\0\0\0\0\0\0^^^^^^^^s/42 HTTP/1.1\r\nHost: app\r\n\r\n";
        for cut in 1..input.len() {
            let first = classify(&input[..cut]);
            assert!(first.is_none() || first == classify(input), "{cut} bytes say {first:?}");
        }
        // A request line is HTTP/1 whatever its target holds: hyper refuses it.
        assert_eq!(classify(input), Some(Protocol::Http1));
        assert_eq!(classify(b"GET /\t HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET /a\rb HTTP/1.1\r\n"), Some(Protocol::Http1), "a bare CR is hyper's to refuse");
    }

    #[test]
    fn tls_sni() {
        // A ClientHello for "example.com", built by hand per RFC 8446.
        let name = b"example.com";
        let mut sni = vec![];
        sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        assert_eq!(classify(&rec[..20]), None);
        assert_eq!(classify(&rec), Some(Protocol::Tls { sni: Some("example.com".into()) }));
    }
}
