//! Head sampling, decided where a trace enters the proxy and propagated in
//! the sampled flag, so every sidecar of a trace agrees.
//!
//! Parent-based by default: a sampled parent is always recorded, an
//! unsampled one never; roots are sampled by trace-id ratio (the
//! OpenTelemetry `TraceIdRatioBased` rule on the id's low 64 bits, so two
//! sidecars decide alike for the same trace id) and, optionally, by a cap
//! on roots per second. What the head sampler skips may still be kept by
//! the tail rule in `export` (errors and slow requests).

use super::ids::TraceId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct Sampler {
    /// Follow the parent's decision when there is one.
    pub parent_based: bool,
    /// Probability for roots (and for every request when not parent-based).
    pub ratio: f64,
    /// Roots per second at most; 0 for no cap.
    pub rate_limit: u32,
    /// Packs (second, roots sampled in it) for a lock-free rate cap.
    window: AtomicU64,
}

impl Clone for Sampler {
    fn clone(&self) -> Self {
        Sampler::new(self.parent_based, self.ratio, self.rate_limit)
    }
}

impl Sampler {
    pub fn new(parent_based: bool, ratio: f64, rate_limit: u32) -> Self {
        Sampler { parent_based, ratio: ratio.clamp(0.0, 1.0), rate_limit, window: AtomicU64::new(0) }
    }

    /// The decision for a request: `parent` is the incoming sampled flag,
    /// when a valid context (or a B3 sampling-only header) carried one.
    pub fn decide(&self, trace_id: TraceId, parent: Option<bool>) -> bool {
        if self.parent_based
            && let Some(p) = parent
        {
            return p;
        }
        ratio_sampled(trace_id, self.ratio) && self.within_rate()
    }

    fn within_rate(&self) -> bool {
        if self.rate_limit == 0 {
            return true;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (sec, count) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec == now { (sec << 32) | (count + 1) } else { (now << 32) | 1 };
            if sec == now && count >= u64::from(self.rate_limit) {
                return false;
            }
            match self.window.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// OpenTelemetry's TraceIdRatioBased: sampled when the low 64 bits of the
/// trace id, shifted right by one, fall below ratio × 2^63.
pub fn ratio_sampled(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (trace_id.low_u64() >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_decides_when_parent_based() {
        let s = Sampler::new(true, 0.0, 0);
        let t = TraceId::random();
        assert!(s.decide(t, Some(true)));
        assert!(!s.decide(t, Some(false)));
        assert!(!s.decide(t, None));
        let s = Sampler::new(false, 1.0, 0);
        assert!(s.decide(t, Some(false)), "not parent-based: the ratio decides");
    }

    #[test]
    fn ratio_is_consistent_and_close() {
        let a = Sampler::new(true, 0.25, 0);
        let b = Sampler::new(true, 0.25, 0);
        let ids: Vec<TraceId> = (0..20000).map(|_| TraceId::random()).collect();
        let da: Vec<bool> = ids.iter().map(|t| a.decide(*t, None)).collect();
        let db: Vec<bool> = ids.iter().map(|t| b.decide(*t, None)).collect();
        assert_eq!(da, db);
        let share = da.iter().filter(|x| **x).count() as f64 / ids.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
    }

    #[test]
    fn rate_limit_caps_roots() {
        let s = Sampler::new(true, 1.0, 10);
        let sampled = (0..100).filter(|_| s.decide(TraceId::random(), None)).count();
        // A second boundary may fall inside the loop: at most two windows.
        assert!((10..=20).contains(&sampled), "{sampled}");
    }
}
