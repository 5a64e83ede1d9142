//! Live per-route statistics for people (`GET /api/stats`, the demo's
//! summary): count, errors, requests per second over the last minute,
//! mean, p50/p90/p99 and max latency.
//!
//! Percentiles come from a high-resolution log-linear histogram (the
//! HdrHistogram layout: exact below 128 µs, then 64 sub-buckets per power
//! of two, so any value is known within 1/128 of itself), not from
//! interpolating Prometheus buckets. Its counts are atomics, so recording
//! takes no lock; `hdrhistogram::Histogram` would need one per route.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const LINEAR: u64 = 128;
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Octaves above the linear range: values up to 2^37 µs (38 hours).
const OCTAVES: usize = 30;
const SLOTS: usize = LINEAR as usize + OCTAVES * SUB as usize;
const MAX_MICROS: u64 = (1 << 37) - 1;
const WINDOW_SECONDS: u64 = 60;

/// Latencies in microseconds, lock-free.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }
}

fn index(v: u64) -> usize {
    let v = v.min(MAX_MICROS);
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 7 ..= 36
    let shift = e - SUB_BITS;
    LINEAR as usize + (e as usize - 7) * SUB as usize + ((v >> shift) - SUB) as usize
}

/// The lowest value of a slot and its width.
fn slot_range(i: usize) -> (u64, u64) {
    if (i as u64) < LINEAR {
        return (i as u64, 1);
    }
    let k = i - LINEAR as usize;
    let e = 7 + (k / SUB as usize) as u32;
    let m = SUB + (k % SUB as usize) as u64;
    let shift = e - SUB_BITS;
    (m << shift, 1 << shift)
}

impl LatencyHistogram {
    pub fn record(&self, micros: u64) {
        self.counts[index(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Percentiles (0..=100) in microseconds: each the middle of the slot
    /// holding that rank, never above the maximum seen.
    pub fn percentiles<const N: usize>(&self, ps: [f64; N]) -> ([u64; N], u64) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let max = self.max_micros.load(Ordering::Relaxed);
        let mut out = [0u64; N];
        if total == 0 {
            return (out, 0);
        }
        for (o, p) in out.iter_mut().zip(ps) {
            let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    let (lo, width) = slot_range(i);
                    *o = (lo + width / 2).min(max);
                    break;
                }
            }
        }
        (out, total)
    }
}

/// One route's numbers.
pub struct RouteStats {
    latency: LatencyHistogram,
    errors: AtomicU64,
    /// Per second of the last minute: the second (high 32 bits) and its
    /// count (low 32 bits) in one word, so a new second resets its slot
    /// with the same compare-and-swap that counts.
    window: [AtomicU64; WINDOW_SECONDS as usize],
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            latency: LatencyHistogram::default(),
            errors: AtomicU64::new(0),
            window: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RouteStats {
    pub fn record(&self, nanos: u64, error: bool, end: SystemTime) {
        self.latency.record(nanos / 1000);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let second = end.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) & 0xffff_ffff;
        let slot = &self.window[(second % WINDOW_SECONDS) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let next = if cur >> 32 == second { cur + 1 } else { (second << 32) | 1 };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Requests that ended in the last `WINDOW_SECONDS` seconds (including
    /// the current one), per second over `span` seconds.
    fn rate(&self, now: SystemTime, span: f64) -> f64 {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) & 0xffff_ffff;
        let recent: u64 = self
            .window
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|v| now.wrapping_sub(v >> 32) < WINDOW_SECONDS)
            .map(|v| v & 0xffff_ffff)
            .sum();
        if span > 0.0 { recent as f64 / span } else { 0.0 }
    }

    pub fn snapshot(&self, direction: &'static str, route: &str, now: SystemTime, age: f64) -> RouteSnapshot {
        let ([p50, p90, p99], count) = self.latency.percentiles([50.0, 90.0, 99.0]);
        let ms = |us: u64| us as f64 / 1000.0;
        let sum = self.latency.sum_micros.load(Ordering::Relaxed);
        // Over the last minute, or since we started if that is shorter:
        // the partial current second counts, so the span is 59 s plus it.
        let frac = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.subsec_nanos() as f64 / 1e9);
        let span = age.min((WINDOW_SECONDS - 1) as f64 + frac);
        RouteSnapshot {
            direction,
            route: route.to_string(),
            count,
            errors: self.errors.load(Ordering::Relaxed),
            tps: self.rate(now, span),
            mean_ms: if count > 0 { sum as f64 / count as f64 / 1000.0 } else { 0.0 },
            p50_ms: ms(p50),
            p90_ms: ms(p90),
            p99_ms: ms(p99),
            max_ms: ms(self.latency.max_micros.load(Ordering::Relaxed)),
        }
    }
}

/// One line of `/api/stats`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RouteSnapshot {
    pub direction: &'static str,
    pub route: String,
    pub count: u64,
    pub errors: u64,
    /// Requests per second over the last minute.
    pub tps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_values_within_a_128th() {
        let mut last = 0;
        for v in (0..5000).chain((5000..MAX_MICROS).step_by(9_999_991)) {
            let i = index(v);
            assert!(i >= last && i < SLOTS, "{v}");
            last = i;
            let (lo, width) = slot_range(i);
            assert!(lo <= v && v < lo + width, "{v} not in slot {i} = [{lo}, {})", lo + width);
            assert!(width == 1 || width * 64 <= lo, "{v}: slot too wide");
        }
        assert_eq!(index(MAX_MICROS), SLOTS - 1);
    }

    #[test]
    fn percentiles_agree_with_hdrhistogram() {
        let ours = LatencyHistogram::default();
        let mut hdr = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            // Log-uniform from 10 µs to 10 s.
            let v = (10f64 * 1e6f64.powf(rng.f64())) as u64;
            ours.record(v);
            hdr.record(v).unwrap();
        }
        let ([p50, p90, p99], n) = ours.percentiles([50.0, 90.0, 99.0]);
        assert_eq!(n, 100_000);
        for (got, p) in [(p50, 50.0), (p90, 90.0), (p99, 99.0)] {
            let want = hdr.value_at_percentile(p) as f64;
            assert!((got as f64 - want).abs() <= want / 100.0, "p{p}: {got} vs hdrhistogram {want}");
        }
    }

    #[test]
    fn rate_counts_the_last_minute() {
        let s = RouteStats::default();
        let t0 = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..120u64 {
            s.record(1000, false, t0 + std::time::Duration::from_secs(i));
        }
        let now = t0 + std::time::Duration::from_secs(119);
        let snap = s.snapshot("inbound", "/", now, 1e9);
        // 60 requests ended in seconds 60..=119, over 59 s + 0.
        assert!((snap.tps - 60.0 / 59.0).abs() < 1e-9, "{}", snap.tps);
        assert_eq!(snap.count, 120);
    }
}
