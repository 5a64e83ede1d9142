//! Lock-free native (sparse, exponential) histograms for the request
//! durations, exposed in the Prometheus protobuf format when a scraper asks
//! for it (`writer.rs`).
//!
//! Schema 3: bucket `k` holds durations in `(2^((k-1)/8), 2^(k/8)]`
//! seconds, so each bucket is 2^(1/8) ≈ 1.09 times as wide as the one below
//! and any duration is known within 9% with no bucket tuning. The buckets
//! cover (2^-17 s, 2^16 s], about 7.6 µs to 18 hours, as one fixed array
//! of 264 atomics allocated with the series (2 KiB): an observation is one
//! float division, a look at the float's bits and one `fetch_add`, with no
//! lock and no allocation. Durations at or below 2^-17 s go to the zero
//! bucket (a proxied request never finishes that fast; the proxy's own
//! early answers may); longer than 2^16 s are counted in the top bucket.
//!
//! The bucket index follows client_golang's (`math.Frexp` and the same
//! bounds table), so a duration lands where any Prometheus client would put
//! it. The spans and deltas Prometheus wants are built at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

pub const SCHEMA: i32 = 3;
/// 2^-17 seconds: the zero bucket is `[0, ZERO_THRESHOLD]`.
pub const ZERO_THRESHOLD: f64 = 1.0 / 131_072.0;
/// The lowest bucket above the zero bucket: `(2^-17, 2^(-135/8)]`.
const MIN_KEY: i32 = -17 * 8 + 1;
/// The top bucket: `(2^(127/8), 2^16]` seconds.
const MAX_KEY: i32 = 16 * 8;
const SLOTS: usize = (MAX_KEY - MIN_KEY + 1) as usize;

/// client_golang's `nativeHistogramBounds[3]`: 2^(k/8) / 2 for k in 0..8,
/// the fractions `frexp` returns, in [0.5, 1).
const BOUNDS: [f64; 8] = [
    0.5,
    0.5452538663326288,
    0.5946035575013605,
    0.6484197773255048,
    std::f64::consts::FRAC_1_SQRT_2, // 2^(4/8) / 2
    0.7711054127039704,
    0.8408964152537145,
    0.9170040432046712,
];

/// The schema-3 bucket key of a positive, normal `v`: `ceil(8 log2 v)`,
/// computed as client_golang does, from the float's exponent and mantissa.
fn key(v: f64) -> i32 {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022; // frexp: v = frac * 2^exp
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    BOUNDS.partition_point(|b| *b < frac) as i32 + (exp - 1) * 8
}

/// One series' durations.
#[derive(Debug)]
pub struct NativeHistogram {
    zero: AtomicU64,
    /// Slot `i` is bucket key `MIN_KEY + i`.
    counts: Box<[AtomicU64]>,
}

impl Default for NativeHistogram {
    fn default() -> Self {
        NativeHistogram { zero: AtomicU64::new(0), counts: (0..SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl NativeHistogram {
    pub fn observe(&self, nanos: u64) {
        let seconds = nanos as f64 / 1e9;
        if seconds <= ZERO_THRESHOLD {
            self.zero.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let slot = (key(seconds).clamp(MIN_KEY, MAX_KEY) - MIN_KEY) as usize;
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets as Prometheus encodes them: spans of consecutive keys
    /// (the first offset absolute, later ones the gap since the previous
    /// span) and each bucket's count as a delta from the bucket before it.
    pub fn snapshot(&self) -> NativeSnapshot {
        let mut s = NativeSnapshot { zero_count: self.zero.load(Ordering::Relaxed), ..NativeSnapshot::default() };
        let (mut previous_key, mut previous_count) = (None::<i32>, 0i64);
        for (slot, c) in self.counts.iter().enumerate() {
            let count = c.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let key = MIN_KEY + slot as i32;
            match (previous_key, s.spans.last_mut()) {
                (Some(p), Some(span)) if key == p + 1 => span.1 += 1,
                (Some(p), _) => s.spans.push((key - p - 1, 1)),
                (None, _) => s.spans.push((key, 1)),
            }
            s.deltas.push(count as i64 - previous_count);
            s.total += count;
            (previous_key, previous_count) = (Some(key), count as i64);
        }
        s.total += s.zero_count;
        s
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativeSnapshot {
    pub zero_count: u64,
    /// `(offset, length)` per span of consecutive buckets.
    pub spans: Vec<(i32, u32)>,
    pub deltas: Vec<i64>,
    /// Observations in the zero bucket and all others, as read: Prometheus
    /// requires a native histogram's count to equal exactly this.
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upper bound of bucket `k`, from the schema's definition.
    fn upper(k: i32) -> f64 {
        2f64.powf(k as f64 / 8.0)
    }

    #[test]
    fn keys_follow_the_schema() {
        // Powers of two are the inclusive upper bounds of their buckets.
        assert_eq!(key(1.0), 0);
        assert_eq!(key(0.5), -8);
        assert_eq!(key(2.0), 8);
        assert_eq!(key(1.000001), 1);
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100_000 {
            let v = 2f64.powf(rng.f64() * 33.0 - 17.0);
            let k = key(v);
            assert!(upper(k - 1) < v * (1.0 + 1e-12) && v <= upper(k) * (1.0 + 1e-12), "{v} in bucket {k}");
        }
    }

    #[test]
    fn spans_and_deltas() {
        let h = NativeHistogram::default();
        // 1 s (key 0) twice, 1.1 s (key 2: 2^(1/8) < 1.1 <= 2^(2/8)) once,
        // 3 s (key 13) once, 2 µs in the zero bucket.
        for nanos in [1_000_000_000, 1_000_000_000, 1_100_000_000, 3_000_000_000, 2_000] {
            h.observe(nanos);
        }
        let s = h.snapshot();
        assert_eq!(s.zero_count, 1);
        assert_eq!(s.spans, vec![(0, 1), (1, 1), (10, 1)]);
        assert_eq!(s.deltas, vec![2, -1, 0]);
        assert_eq!(s.total, 5);
    }

    #[test]
    fn the_range_ends_are_kept() {
        let h = NativeHistogram::default();
        h.observe(7_630); // just above 2^-17 s
        h.observe(u64::MAX); // 584 years: the top bucket
        let s = h.snapshot();
        assert_eq!(s.spans, vec![(MIN_KEY, 1), (MAX_KEY - MIN_KEY - 1, 1)]);
        assert_eq!(s.deltas, vec![1, 0]);
        assert_eq!(s.zero_count, 0);
    }

    /// The cost of `observe` on one series from one and two threads:
    /// `cargo test --release --lib observe_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn observe_cost() {
        let h = std::sync::Arc::new(NativeHistogram::default());
        const N: u64 = 10_000_000;
        for threads in [1, 2] {
            let started = std::time::Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let h = h.clone();
                    // Durations from 50 µs to ~100 ms, as a proxy sees them.
                    std::thread::spawn(move || (0..N).for_each(|i| h.observe(50_000 + (i * 7919 + t) % 100_000_000)))
                })
                .collect();
            handles.into_iter().for_each(|t| t.join().unwrap());
            let per = started.elapsed().as_nanos() as f64 / N as f64;
            eprintln!("{threads} thread(s): {per:.1} ns per observation (wall time / observations per thread)");
        }
        assert_eq!(h.snapshot().total, 3 * N);
    }
}
