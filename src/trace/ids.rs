//! Trace and span identifiers: 16- and 8-byte values, random when new,
//! printed as lowercase hex as W3C Trace Context and OTLP/JSON require.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TraceId(pub [u8; 16]);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SpanId(pub [u8; 8]);

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0x0f) as usize];
    }
}

/// Decodes hex of exactly `out.len() * 2` digits. `lowercase_only` follows
/// W3C's HEXDIGLC; B3 is lenient about case.
fn read_hex(s: &[u8], out: &mut [u8], lowercase_only: bool) -> bool {
    if s.len() != out.len() * 2 {
        return false;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' if !lowercase_only => Some(c - b'A' + 10),
            _ => None,
        }
    };
    for (i, pair) in s.chunks_exact(2).enumerate() {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

impl TraceId {
    pub fn random() -> Self {
        loop {
            let id = TraceId(fastrand::u128(..).to_be_bytes());
            if id.is_valid() {
                return id;
            }
        }
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    pub fn from_hex(s: &[u8], lowercase_only: bool) -> Option<Self> {
        let mut id = [0u8; 16];
        read_hex(s, &mut id, lowercase_only).then_some(TraceId(id))
    }

    /// A 64-bit B3 trace id is the low half of a 128-bit one.
    pub fn from_hex_64(s: &[u8]) -> Option<Self> {
        let mut low = [0u8; 8];
        if !read_hex(s, &mut low, false) {
            return None;
        }
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&low);
        Some(TraceId(id))
    }

    pub fn hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_hex(&self.0, &mut out);
        out
    }

    /// The low 64 bits, used by ratio sampling and 64-bit B3.
    pub fn low_u64(&self) -> u64 {
        u64::from_be_bytes(self.0[8..].try_into().unwrap_or([0; 8]))
    }
}

impl SpanId {
    pub fn random() -> Self {
        loop {
            let id = SpanId(fastrand::u64(..).to_be_bytes());
            if id.is_valid() {
                return id;
            }
        }
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    pub fn from_hex(s: &[u8], lowercase_only: bool) -> Option<Self> {
        let mut id = [0u8; 8];
        read_hex(s, &mut id, lowercase_only).then_some(SpanId(id))
    }

    pub fn hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        write_hex(&self.0, &mut out);
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits are ASCII, so this cannot fail.
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let t = TraceId::random();
        assert_eq!(TraceId::from_hex(&t.hex(), true), Some(t));
        let s = SpanId::random();
        assert_eq!(SpanId::from_hex(&s.hex(), true), Some(s));
    }

    #[test]
    fn uppercase_only_when_lenient() {
        let up = b"4BF92F3577B34DA6A3CE929D0E0E4736";
        assert_eq!(TraceId::from_hex(up, true), None);
        assert!(TraceId::from_hex(up, false).is_some());
    }

    #[test]
    fn b3_64_bit_ids_pad_left() {
        let t = TraceId::from_hex_64(b"a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_string(), "0000000000000000a3ce929d0e0e4736");
    }
}
