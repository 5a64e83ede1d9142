//! Lock-free Prometheus histograms for the request path.
//!
//! An observation is one `fetch_add` on its bucket and one on the sum, both
//! integers in the metric's base unit (nanoseconds, bytes), so sums are
//! exact and no lock is taken. The count is the sum of the buckets, read at
//! scrape time, so `_count` always equals the `+Inf` bucket.
//!
//! Exemplars (OpenMetrics) sit beside the buckets behind a `Mutex` that the
//! request path only ever `try_lock`s: an exemplar is a sample, so when two
//! sampled requests of one series finish at the same instant one of them
//! simply does not replace the exemplar, and nobody waits.
//!
//! We do not use `prometheus-client`'s histograms here: they take a mutex
//! per observation (and `HistogramWithExemplars` an `RwLock` on top).
//! `writer.rs` hands these snapshots to its encoders at scrape time; this
//! file knows nothing of exposition formats.

use crate::trace::{SpanId, TraceId};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Bucket boundaries of one kind of histogram, in the base unit and in the
/// exposed unit.
#[derive(Debug)]
pub struct Buckets {
    /// Upper bounds in base units (inclusive, as Prometheus' `le`).
    bounds: Vec<u64>,
    /// The same bounds in exposed units (seconds, bytes): the `le` values.
    pub upper: Vec<f64>,
    /// Base units per exposed unit: 1e9 for seconds from nanoseconds.
    pub per_unit: f64,
}

impl Buckets {
    /// `upper` in exposed units (seconds, bytes), ascending.
    pub fn new(upper: &[f64], per_unit: f64) -> Buckets {
        Buckets {
            bounds: upper.iter().map(|u| (u * per_unit).round() as u64).collect(),
            upper: upper.to_vec(),
            per_unit,
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The bucket of a value: the first bound it does not exceed, or the
    /// `+Inf` bucket (index `len()`).
    fn index(&self, v: u64) -> usize {
        self.bounds.partition_point(|b| *b < v)
    }
}

/// A sampled request's ids, shown on the bucket its duration fell in.
#[derive(Clone, Copy, Debug)]
pub struct Exemplar {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// In base units.
    pub value: u64,
    pub time: SystemTime,
}

#[derive(Debug)]
pub struct Histogram {
    buckets: &'static Buckets,
    /// Non-cumulative counts; the last one is the `+Inf` bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    exemplars: Option<Mutex<Box<[Option<Exemplar>]>>>,
}

/// A consistent-enough copy for exposition.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub buckets: &'static Buckets,
    /// Not cumulative (the encoders add them up), one per bound plus `+Inf`.
    pub counts: Vec<u64>,
    /// In base units.
    pub sum: u64,
    /// One slot per bucket, or none when the histogram keeps no exemplars.
    pub exemplars: Vec<Option<Exemplar>>,
}

impl Snapshot {
    /// The `+Inf` bucket's count: the sum of the buckets as read.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum in exposed units.
    pub fn sum(&self) -> f64 {
        self.sum as f64 / self.buckets.per_unit
    }

    /// `(upper bound, count)` per bucket in exposed units, `+Inf` last.
    pub fn bucket_pairs(&self) -> Vec<(f64, u64)> {
        let upper = self.buckets.upper.iter().copied().chain(std::iter::once(f64::INFINITY));
        upper.zip(self.counts.iter().copied()).collect()
    }
}

impl Histogram {
    pub fn new(buckets: &'static Buckets) -> Histogram {
        Histogram {
            buckets,
            counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            exemplars: None,
        }
    }

    pub fn with_exemplars(buckets: &'static Buckets) -> Histogram {
        let mut h = Histogram::new(buckets);
        h.exemplars = Some(Mutex::new(vec![None; buckets.len() + 1].into_boxed_slice()));
        h
    }

    /// Records a value in base units. Returns its bucket.
    pub fn observe(&self, v: u64) -> usize {
        let i = self.buckets.index(v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        i
    }

    /// Records a value and, when the histogram keeps exemplars and nobody
    /// else holds them this instant, makes it its bucket's exemplar.
    pub fn observe_with_exemplar(&self, v: u64, exemplar: Option<(TraceId, SpanId, SystemTime)>) {
        let i = self.observe(v);
        if let (Some(slots), Some((trace_id, span_id, time))) = (&self.exemplars, exemplar)
            && let Ok(mut slots) = slots.try_lock()
        {
            slots[i] = Some(Exemplar { trace_id, span_id, value: v, time });
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let counts = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let exemplars = match &self.exemplars {
            Some(m) => m.lock().unwrap_or_else(|p| p.into_inner()).to_vec(),
            None => Vec::new(),
        };
        Snapshot { buckets: self.buckets, counts, sum: self.sum.load(Ordering::Relaxed), exemplars }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static B: LazyLock<Buckets> = LazyLock::new(|| Buckets::new(&[0.001, 0.01, 0.1], 1e9));

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let h = Histogram::new(&B);
        h.observe(1_000_000); // exactly 1 ms: le="0.001"
        h.observe(1_000_001);
        h.observe(5_000_000_000);
        let s = h.snapshot();
        assert_eq!(s.counts, vec![1, 1, 0, 1]);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum, 5_002_000_001);
        assert_eq!(s.bucket_pairs(), vec![(0.001, 1), (0.01, 1), (0.1, 0), (f64::INFINITY, 1)]);
    }

    #[test]
    fn exemplars_land_on_their_bucket() {
        let h = Histogram::with_exemplars(&B);
        let (t, s) = (TraceId([7; 16]), SpanId([9; 8]));
        h.observe_with_exemplar(2_000_000, Some((t, s, SystemTime::UNIX_EPOCH)));
        h.observe_with_exemplar(3_000_000, None);
        let snap = h.snapshot();
        assert!(snap.exemplars[0].is_none());
        let e = snap.exemplars[1].expect("an exemplar on le=0.01");
        assert_eq!((e.trace_id, e.value), (t, 2_000_000));
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(&B));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..10_000u64).for_each(|i| _ = h.observe(i * 1000)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(h.snapshot().count(), 40_000);
    }
}
