//! A strict reading of HTTP/1 request framing, beside hyper's: a pure
//! scanner fed the client's bytes as they are read (`http::idle` feeds
//! it), before hyper parses them. It follows each request's framing
//! (RFC 9112 §6) and says which request, counted from the connection's
//! first, breaks a rule hyper tolerates or a proxy in front of unknown
//! apps should not:
//!
//! - `Content-Length` with `Transfer-Encoding` (§6.1): hyper drops the
//!   length and closes afterwards, as the RFC allows; nginx and Envoy
//!   answer 400, and so does sidetrace;
//! - a `Transfer-Encoding` other than `chunked` alone (§6.1: nothing else
//!   is ever sent in requests; `chunked` twice is forbidden);
//! - `Content-Length` that is not one decimal number, or lines that differ
//!   (§6.3 item 5, RFC 9110 §8.6);
//! - a line ended by a bare LF or holding a bare CR (§2.2), an obs-fold
//!   (§5.2), a header line without `name:`;
//! - a chunk-size line that is not hex digits, chunk extensions holding
//!   control characters, chunk data not ended by CRLF (§7.1).
//!
//! hyper still parses everything and rejects what it rejects (method,
//! target, version, sizes); this module finds what it would let through.
//! The scanner stops for good after a `CONNECT` or `Upgrade` head (the
//! bytes after it may be a tunnel's) and after its first verdict (the
//! connection closes). It copies nothing: header values it needs (the
//! two lengths) are read digit by digit.

use crate::vocab::RejectReason;

/// Which request broke which rule: `request` counts from 0 on the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub request: u32,
    pub reason: RejectReason,
}

/// Longest chunk-size line (with extensions) accepted; hyper allows more,
/// but no client sends extensions this long.
const MAX_CHUNK_LINE: u32 = 4096;

#[derive(Debug)]
enum State {
    Head(Head),
    Body(u64),
    ChunkSize(ChunkLine),
    ChunkData(u64),
    /// CR then LF after a chunk's data: how many of the two were seen.
    ChunkEnd(u8),
    Trailers(Head),
    /// A tunnel, a verdict, or nothing left to check.
    Done,
}

/// What a header section said so far.
#[derive(Debug, Default)]
struct Head {
    /// Bytes of the current line (capped), and whether it is the request
    /// line.
    line_len: u32,
    request_line_done: bool,
    prev_cr: bool,
    /// The header name so far (lower-cased, first 20 bytes) or, after the
    /// colon, `None`.
    name: Option<NameBuf>,
    field: Field,
    /// Value bytes of the current `Transfer-Encoding` line, compared with
    /// `chunked` as they come.
    te_value: TeValue,
    /// The current `Content-Length` value so far.
    cl_value: ClValue,
    content_length: Option<u64>,
    transfer_encodings: u8,
    chunked: bool,
    /// The request line's first and last bytes: `CONNECT ` and ` HTTP/1.0`.
    start: [u8; 8],
    end: [u8; 9],
    upgrade: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct NameBuf {
    bytes: [u8; 20],
    len: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Field {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Default)]
struct TeValue {
    matched: u8,
    trailing_ws: bool,
    bad: bool,
}

#[derive(Debug, Default)]
struct ClValue {
    value: u64,
    digits: u8,
    trailing_ws: bool,
    bad: bool,
}

#[derive(Debug, Default)]
struct ChunkLine {
    size: u64,
    digits: u8,
    /// Whitespace after the size: only extensions may follow.
    after_ws: bool,
    in_ext: bool,
    len: u32,
    prev_cr: bool,
}

pub struct Framing {
    state: State,
    /// The request whose head or body is being read.
    request: u32,
}

/// The token characters of RFC 9110 §5.6.2, as a table: header names are
/// read a run at a time, and a branch per byte cost more than the check.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        c += 1;
    }
    t
};

fn tchar(c: u8) -> bool {
    TCHAR[usize::from(c)]
}

/// A byte that has no place in a field value or a chunk extension: the
/// controls but HT, and DEL (RFC 9110 §5.5).
fn ctl(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

impl Framing {
    /// A scanner at the start of a request: `request` is its number on the
    /// connection.
    pub fn new(request: u32) -> Framing {
        Framing { state: State::Head(Head::default()), request }
    }

    /// Reads `bytes`; the first rule broken, once.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<Verdict> {
        while !bytes.is_empty() {
            let used = match self.step(bytes) {
                Ok(n) => n,
                Err(reason) => {
                    self.state = State::Done;
                    return Some(Verdict { request: self.request, reason });
                }
            };
            bytes = &bytes[used..];
        }
        None
    }

    /// Consumes some of `b` (at least one byte, unless done).
    fn step(&mut self, b: &[u8]) -> Result<usize, RejectReason> {
        match &mut self.state {
            State::Done => Ok(b.len()),
            State::Body(left) | State::ChunkData(left) => {
                let n = (*left).min(b.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = match self.state {
                        State::Body(_) => {
                            self.request += 1;
                            State::Head(Head::default())
                        }
                        _ => State::ChunkEnd(0),
                    };
                }
                Ok(n as usize)
            }
            State::ChunkEnd(seen) => {
                let want = if *seen == 0 { b'\r' } else { b'\n' };
                if b[0] != want {
                    return Err(RejectReason::Chunk);
                }
                *seen += 1;
                if *seen == 2 {
                    self.state = State::ChunkSize(ChunkLine::default());
                }
                Ok(1)
            }
            State::ChunkSize(line) => {
                if let Some(size) = line.byte(b[0])? {
                    self.state = if size == 0 {
                        // The trailer section is a header section without a request line.
                        State::Trailers(Head { request_line_done: true, ..Head::default() })
                    } else {
                        State::ChunkData(size)
                    };
                }
                Ok(1)
            }
            State::Head(head) => {
                let n = head.skip_plain(b);
                if n > 0 {
                    return Ok(n);
                }
                let n = head.name_run(b);
                if n > 0 {
                    return Ok(n);
                }
                if head.byte(b[0])? {
                    self.state = head.framing()?;
                    if matches!(self.state, State::Head(_)) {
                        self.request += 1;
                    }
                }
                Ok(1)
            }
            State::Trailers(head) => {
                if head.byte(b[0])? {
                    self.request += 1;
                    self.state = State::Head(Head::default());
                }
                Ok(1)
            }
        }
    }
}

impl Head {
    /// Reads one byte; `true` at the end of the section (its empty line).
    fn byte(&mut self, c: u8) -> Result<bool, RejectReason> {
        if self.prev_cr {
            self.prev_cr = false;
            if c != b'\n' {
                return Err(RejectReason::LineEnding);
            }
            return self.end_of_line();
        }
        match c {
            b'\r' => {
                self.prev_cr = true;
                return Ok(false);
            }
            b'\n' => return Err(RejectReason::LineEnding),
            _ => {}
        }
        let at_start = self.line_len == 0;
        self.line_len = self.line_len.saturating_add(1);
        if !self.request_line_done {
            self.request_line_byte(c);
            return Ok(false);
        }
        if at_start {
            if c == b' ' || c == b'\t' {
                return Err(RejectReason::ObsFold);
            }
            self.name = Some(NameBuf::default());
        }
        match &mut self.name {
            Some(name) => {
                if c == b':' {
                    if name.len == 0 {
                        return Err(RejectReason::HeaderSyntax);
                    }
                    self.field = match &name.bytes[..usize::from(name.len)] {
                        b"content-length" => Field::ContentLength,
                        b"transfer-encoding" => Field::TransferEncoding,
                        b"upgrade" => {
                            self.upgrade = true;
                            Field::Other
                        }
                        _ => Field::Other,
                    };
                    self.name = None;
                    self.start_value();
                } else if !tchar(c) {
                    return Err(RejectReason::HeaderSyntax);
                } else if usize::from(name.len) < name.bytes.len() {
                    // A longer name is none this module looks for: it stays
                    // at the cap, longer than all of them.
                    name.bytes[usize::from(name.len)] = c.to_ascii_lowercase();
                    name.len += 1;
                }
                Ok(false)
            }
            None => {
                if ctl(c) {
                    return Err(RejectReason::HeaderSyntax);
                }
                match self.field {
                    Field::ContentLength => self.cl_value.byte(c),
                    Field::TransferEncoding => self.te_value.byte(c),
                    Field::Other => {}
                }
                Ok(false)
            }
        }
    }

    /// The bytes at the start of `b` that need no look one at a time: the
    /// middle of the request line, or of a value this module does not
    /// read, up to the next CR, LF or control byte. Most of a head is
    /// these, so a scan for the bytes that matter keeps the per-byte
    /// state machine for the few that do.
    fn skip_plain(&mut self, b: &[u8]) -> usize {
        let in_line = self.line_len > 0 && !self.prev_cr;
        let unread = !self.request_line_done || (self.name.is_none() && self.field == Field::Other);
        if !in_line || !unread {
            return 0;
        }
        let n = b.iter().position(|&c| c == b'\r' || c == b'\n' || ctl(c)).unwrap_or(b.len());
        if !self.request_line_done {
            let base = self.line_len as usize;
            for (k, &c) in b[..n].iter().enumerate().take(self.start.len().saturating_sub(base)) {
                self.start[base + k] = c;
            }
            let tail = &b[n.saturating_sub(self.end.len())..n];
            self.end.rotate_left(tail.len());
            let keep = self.end.len() - tail.len();
            self.end[keep..].copy_from_slice(tail);
        }
        self.line_len = self.line_len.saturating_add(n as u32);
        n
    }

    /// The token bytes at the start of `b` that continue a header name
    /// already started: what `byte` does for each of them, for the run at
    /// once. The byte that ends the name (a colon, or a bad one) is left
    /// to `byte`.
    fn name_run(&mut self, b: &[u8]) -> usize {
        let Some(name) = &mut self.name else { return 0 };
        if self.line_len == 0 || self.prev_cr {
            return 0;
        }
        let n = b.iter().position(|&c| !tchar(c)).unwrap_or(b.len());
        let at = usize::from(name.len);
        let take = n.min(name.bytes.len() - at);
        for (dst, c) in name.bytes[at..at + take].iter_mut().zip(&b[..take]) {
            *dst = c.to_ascii_lowercase();
        }
        name.len += take as u8;
        self.line_len = self.line_len.saturating_add(n as u32);
        n
    }

    fn request_line_byte(&mut self, c: u8) {
        let i = (self.line_len - 1) as usize;
        if i < self.start.len() {
            self.start[i] = c;
        }
        self.end.rotate_left(1);
        self.end[self.end.len() - 1] = c;
    }

    fn start_value(&mut self) {
        match self.field {
            Field::ContentLength => self.cl_value = ClValue::default(),
            Field::TransferEncoding => self.te_value = TeValue::default(),
            Field::Other => {}
        }
    }

    /// At a CRLF; `true` when it ends the section.
    fn end_of_line(&mut self) -> Result<bool, RejectReason> {
        let empty = self.line_len == 0;
        self.line_len = 0;
        if !self.request_line_done {
            // Empty lines before the request line are ignored (RFC 9112 §2.2).
            self.request_line_done = !empty;
            return Ok(false);
        }
        if empty {
            return Ok(true);
        }
        if self.name.take().is_some() {
            return Err(RejectReason::HeaderSyntax);
        }
        match std::mem::take(&mut self.field) {
            Field::ContentLength => {
                let v = std::mem::take(&mut self.cl_value);
                let value = (!v.bad && v.digits > 0).then_some(v.value);
                self.content_length = match (self.content_length, value) {
                    (_, None) => Some(u64::MAX),
                    (None, Some(v)) => Some(v),
                    (Some(a), Some(b)) if a == b => Some(a),
                    (Some(_), Some(_)) => Some(u64::MAX),
                };
            }
            Field::TransferEncoding => {
                let v = std::mem::take(&mut self.te_value);
                self.transfer_encodings = self.transfer_encodings.saturating_add(1);
                self.chunked = !v.bad && usize::from(v.matched) == CHUNKED.len();
            }
            Field::Other => {}
        }
        Ok(false)
    }

    /// What follows a complete request head.
    fn framing(&self) -> Result<State, RejectReason> {
        let http10 = self.end.eq_ignore_ascii_case(b" HTTP/1.0");
        let tunnel = self.start.eq_ignore_ascii_case(b"CONNECT ") || self.upgrade;
        match (self.content_length, self.transfer_encodings) {
            (Some(_), 1..) => Err(RejectReason::LengthAndChunked),
            (None, 1..) if http10 || self.transfer_encodings > 1 || !self.chunked => {
                Err(RejectReason::TransferEncoding)
            }
            (Some(u64::MAX), _) => Err(RejectReason::ContentLength),
            _ if tunnel => Ok(State::Done),
            (None, 1..) => Ok(State::ChunkSize(ChunkLine::default())),
            (Some(n), _) if n > 0 => Ok(State::Body(n)),
            _ => Ok(State::Head(Head::default())),
        }
    }
}

const CHUNKED: &[u8] = b"chunked";

impl TeValue {
    fn byte(&mut self, c: u8) {
        let ws = c == b' ' || c == b'\t';
        if ws {
            self.trailing_ws = self.matched > 0;
            return;
        }
        if self.trailing_ws || usize::from(self.matched) >= CHUNKED.len() {
            self.bad = true;
            return;
        }
        if c.to_ascii_lowercase() == CHUNKED[usize::from(self.matched)] {
            self.matched += 1;
        } else {
            self.bad = true;
        }
    }
}

impl ClValue {
    fn byte(&mut self, c: u8) {
        let ws = c == b' ' || c == b'\t';
        if ws {
            self.trailing_ws = self.digits > 0;
            return;
        }
        if self.trailing_ws || !c.is_ascii_digit() {
            self.bad = true;
            return;
        }
        self.digits = self.digits.saturating_add(1);
        match self.value.checked_mul(10).and_then(|v| v.checked_add(u64::from(c - b'0'))) {
            Some(v) if v < u64::MAX => self.value = v,
            _ => self.bad = true,
        }
    }
}

impl ChunkLine {
    /// Reads one byte of `chunk-size [ chunk-ext ] CRLF`; the size once
    /// the line ends.
    fn byte(&mut self, c: u8) -> Result<Option<u64>, RejectReason> {
        self.len += 1;
        if self.len > MAX_CHUNK_LINE {
            return Err(RejectReason::Chunk);
        }
        if self.prev_cr {
            return if c == b'\n' && self.digits > 0 { Ok(Some(self.size)) } else { Err(RejectReason::Chunk) };
        }
        if c == b'\r' {
            self.prev_cr = true;
            return Ok(None);
        }
        if self.in_ext {
            return if ctl(c) { Err(RejectReason::Chunk) } else { Ok(None) };
        }
        match c {
            b';' if self.digits > 0 => self.in_ext = true,
            // BWS before the extensions (RFC 9112 §7.1.1).
            b' ' | b'\t' if self.digits > 0 => self.after_ws = true,
            _ => {
                let Some(d) = (c as char).to_digit(16).filter(|_| !self.after_ws) else {
                    return Err(RejectReason::Chunk);
                };
                self.digits += 1;
                if self.digits > 16 {
                    return Err(RejectReason::Chunk);
                }
                self.size = (self.size << 4) | u64::from(d);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectReason::*;

    fn verdict(bytes: &[u8]) -> Option<Verdict> {
        Framing::new(0).feed(bytes)
    }

    /// The same bytes fed one at a time give the same answer.
    fn check(bytes: &[u8]) -> Option<(u32, RejectReason)> {
        let whole = verdict(bytes).map(|v| (v.request, v.reason));
        let mut f = Framing::new(0);
        let split = bytes.iter().find_map(|b| f.feed(std::slice::from_ref(b))).map(|v| (v.request, v.reason));
        assert_eq!(whole, split, "{}", String::from_utf8_lossy(bytes));
        whole
    }

    #[test]
    fn well_formed_requests_pass() {
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(check(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(check(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(check(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nContent-Length:5 \r\n\r\nhello"), None);
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n5;name=\"v a\"\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n";
        assert_eq!(check(chunked), None);
        // Names that only begin like the ones read, or run past the
        // name buffer, are other fields.
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nContent-Length-Of-Something-Else: x\r\nTransfer-Encodings: gzip\r\n\r\n"),
            None
        );
        assert_eq!(check(b"GET / HTTP/1.1\r\nX-A-Very-Long-Header-Name-Indeed: v\r\ncontent-lengtH: 0\r\n\r\n"), None);
        // Body bytes that look like heads are body bytes.
        assert_eq!(check(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\n\r\r\nGET / HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn a_bad_byte_inside_a_name_is_named() {
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad\"Name: v\r\n\r\n"), Some((0, HeaderSyntax)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad Name: v\r\n\r\n"), Some((0, HeaderSyntax)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\nX-No-Colon\r\n\r\n"), Some((0, HeaderSyntax)));
    }

    #[test]
    fn length_and_chunked_in_either_order() {
        let a = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let b = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
        assert_eq!(check(a), Some((0, LengthAndChunked)));
        assert_eq!(check(b), Some((0, LengthAndChunked)));
    }

    #[test]
    fn the_second_request_is_named() {
        let two = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(check(two), Some((1, ContentLength)));
    }

    #[test]
    fn transfer_codings_other_than_chunked() {
        for te in ["chunked, gzip", "gzip", "gzip, chunked", "chunked, chunked", "chunkedx", "identity"] {
            let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(check(req.as_bytes()), Some((0, TransferEncoding)), "{te}");
        }
        let twice = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check(twice), Some((0, TransferEncoding)));
        let http10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check(http10), Some((0, TransferEncoding)));
    }

    #[test]
    fn lengths_that_are_not_one_number() {
        for cl in ["5, 5", "+5", "0x5", "5 5", "", "99999999999999999999999"] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(check(req.as_bytes()), Some((0, ContentLength)), "{cl}");
        }
    }

    #[test]
    fn line_endings_and_folds() {
        assert_eq!(check(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), Some((0, LineEnding)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), Some((0, LineEnding)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), Some((0, LineEnding)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), Some((0, ObsFold)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nX a\r\n\r\n"), Some((0, HeaderSyntax)));
        assert_eq!(check(b"GET / HTTP/1.1\r\n: a\r\n\r\n"), Some((0, HeaderSyntax)));
        assert_eq!(check(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"), Some((0, HeaderSyntax)));
    }

    #[test]
    fn chunks() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in ["zz\r\n", "\r\n", "-1\r\n", "5 5\r\nhello\r\n", "0x5\r\n", "11111111111111111\r\n"] {
            let req = format!("{head}{body}");
            assert_eq!(check(req.as_bytes()), Some((0, Chunk)), "{body:?}");
        }
        for body in ["5;a\x01b\r\n", "5;a\x7f\r\n", "5\r\nhelloXX", "5\r\n", "5\rhello"] {
            let req = format!("{head}{body}");
            let found = check(req.as_bytes());
            assert!(found.is_none() || found == Some((0, Chunk)), "{body:?}");
        }
        assert_eq!(check(format!("{head}5;a\x01b\r\n").as_bytes()), Some((0, Chunk)));
        assert_eq!(check(format!("{head}5\r\nhelloXX").as_bytes()), Some((0, Chunk)));
        assert_eq!(check(format!("{head}0\r\nx: a\nb\r\n\r\n").as_bytes()), Some((0, LineEnding)));
    }

    #[test]
    fn tunnels_end_the_scan() {
        assert_eq!(check(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01\n\n"), None);
        assert_eq!(check(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\n"), None);
    }
}
