//! The disk spool: batches that do not fit in memory while the collector
//! is away, kept in order across restarts and crashes.
//!
//! One file per batch, `{seq:020}.batch`: a 20-byte header (magic, span
//! count, payload length, CRC-32 of the payload) and the payload. A file
//! is written under a temporary name, synced, then renamed, so a crash
//! leaves either a whole file or a `.tmp` that is discarded; a file whose
//! length or checksum does not match (truncated, damaged) is reported,
//! counted and skipped, and the rest replays. A batch's file is deleted
//! when the collector has taken it, so nothing is replayed twice.
//!
//! A maintained on-disk queue crate (queue-file, yaque) was considered; this
//! format is smaller than either and gives per-batch checksums, which the
//! "skip a damaged batch, keep the rest" rule needs.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"STSPOOL1";
const HEADER: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub spans: u32,
    pub size: u64,
}

#[derive(Debug)]
pub enum PushError {
    Full,
    Io(io::Error),
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    bytes: u64,
    /// Spans (or log records) in the batches on disk.
    spans: u64,
    next_seq: u64,
    entries: VecDeque<Entry>,
}

impl Spool {
    /// Opens (creating) the directory and indexes what a previous run left.
    /// Returns the spool and how many damaged files were skipped.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, usize)> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        let mut damaged = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name.strip_suffix(".batch").and_then(|s| s.parse::<u64>().ok()) else { continue };
            match read_header(&path) {
                Ok(Some((spans, size))) => found.push(Entry { seq, spans, size }),
                Ok(None) | Err(_) => {
                    tracing::warn!(file = %path.display(), "spool file is damaged (truncated or not a spool batch); skipped");
                    let _ = fs::remove_file(&path);
                    damaged += 1;
                }
            }
        }
        found.sort_by_key(|e| e.seq);
        let next_seq = found.last().map_or(0, |e| e.seq + 1);
        let bytes = found.iter().map(|e| e.size).sum();
        let spans = found.iter().map(|e| u64::from(e.spans)).sum();
        Ok((Spool { dir: dir.to_path_buf(), max_bytes, bytes, spans, next_seq, entries: found.into() }, damaged))
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Spans (or log records) in the batches on disk.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.batch"))
    }

    pub fn push(&mut self, payload: &[u8], spans: u32) -> Result<Entry, PushError> {
        let size = (HEADER + payload.len()) as u64;
        if self.bytes + size > self.max_bytes {
            return Err(PushError::Full);
        }
        let seq = self.next_seq;
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&spans.to_le_bytes());
            header[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            header[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
            f.write_all(&header)?;
            f.write_all(payload)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path(seq))?;
            // The rename is durable only once the directory is synced.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            PushError::Io(e)
        })?;
        self.next_seq += 1;
        self.bytes += size;
        self.spans += u64::from(spans);
        let entry = Entry { seq, spans, size };
        self.entries.push_back(entry);
        Ok(entry)
    }

    /// The payload of a batch, or `None` if its checksum fails.
    pub fn read(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let mut f = File::open(self.path(seq))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        if buf.len() < HEADER || &buf[..8] != MAGIC {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[12..16].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(buf[16..20].try_into().unwrap_or_default());
        let payload = buf.split_off(HEADER);
        Ok((payload.len() == len && crc32fast::hash(&payload) == crc).then_some(payload))
    }

    pub fn remove(&mut self, seq: u64) {
        if let Some(i) = self.entries.iter().position(|e| e.seq == seq) {
            let e = self.entries.remove(i).unwrap_or(Entry { seq, spans: 0, size: 0 });
            self.bytes = self.bytes.saturating_sub(e.size);
            self.spans = self.spans.saturating_sub(u64::from(e.spans));
        }
        let _ = fs::remove_file(self.path(seq));
    }
}

/// Span count and file size, when the header is sound and the length adds up.
fn read_header(path: &Path) -> io::Result<Option<(u32, u64)>> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut header = [0u8; HEADER];
    if f.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Ok(None);
    }
    let spans = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default()) as u64;
    Ok((size == HEADER as u64 + len).then_some((spans, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sidetrace-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn survives_reopen_in_order_and_skips_damage() {
        let d = dir("reopen");
        let (mut s, _) = Spool::open(&d, 1 << 20).unwrap();
        for i in 0..5u8 {
            s.push(&vec![i; 1000], u32::from(i) + 1).unwrap();
        }
        drop(s);
        // Truncate the third batch mid-payload; leave a torn temp file.
        let third = d.join(format!("{:020}.batch", 2));
        let f = fs::OpenOptions::new().write(true).open(&third).unwrap();
        f.set_len(500).unwrap();
        fs::write(d.join("00000000000000000009.tmp"), b"torn").unwrap();
        let (mut s, damaged) = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(damaged, 1);
        let seqs: Vec<u64> = s.entries().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![0, 1, 3, 4]);
        assert_eq!(s.read(3).unwrap().unwrap(), vec![3u8; 1000]);
        s.remove(0);
        let next = s.push(b"new", 1).unwrap();
        assert_eq!(next.seq, 5, "sequence continues after the highest on disk");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn checksum_catches_damage_and_cap_holds() {
        let d = dir("crc");
        let (mut s, _) = Spool::open(&d, 2100).unwrap();
        s.push(&[1u8; 1000], 1).unwrap();
        s.push(&[2u8; 1000], 1).unwrap();
        assert!(matches!(s.push(&[3u8; 1000], 1), Err(PushError::Full)));
        let path = d.join(format!("{:020}.batch", 1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(s.read(1).unwrap(), None);
        fs::remove_dir_all(d).unwrap();
    }
}
