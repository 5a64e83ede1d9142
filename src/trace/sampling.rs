//! Head sampling, decided where a trace enters the proxy and propagated in
//! the sampled flag, so every sidecar of a trace agrees.
//!
//! Parent-based by default: a sampled parent is always recorded, an
//! unsampled one never; roots are sampled by trace-id ratio (the
//! OpenTelemetry `TraceIdRatioBased` rule on the id's low 64 bits, so two
//! sidecars decide alike for the same trace id) and, optionally, by a cap
//! on roots per second. Sampling rules (`--sampling-rule PATTERN=RATIO`)
//! set the ratio by route: the first rule whose pattern matches the path
//! decides, the default ratio otherwise. What the head sampler skips may
//! still be kept by the tail rule in `export` (errors and slow requests).

use super::ids::TraceId;
use super::route::RoutePattern;
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
    /// Ratios by route, first match wins.
    pub rules: Vec<SamplingRule>,
    /// Packs (second, roots sampled in it) for a lock-free rate cap.
    window: AtomicU64,
}

/// `PATTERN=RATIO`: new traces on routes matching the pattern are sampled
/// at that ratio.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingRule {
    pub pattern: RoutePattern,
    pub ratio: f64,
}

impl SamplingRule {
    /// `/health=0`, `/api/*=0.25`; the ratio is after the last `=`.
    pub fn parse(s: &str) -> Result<SamplingRule, String> {
        let (pattern, ratio) =
            s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not PATTERN=RATIO, e.g. /health=0"))?;
        let pattern = RoutePattern::parse(pattern.trim())?;
        match ratio.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(SamplingRule { pattern, ratio: r }),
            _ => Err(format!("{s:?}: the ratio must be a number from 0 to 1")),
        }
    }
}

impl std::fmt::Display for SamplingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.pattern.as_str(), self.ratio)
    }
}

impl Clone for Sampler {
    fn clone(&self) -> Self {
        Sampler::new(self.parent_based, self.ratio, self.rate_limit).with_rules(self.rules.clone())
    }
}

impl Sampler {
    pub fn new(parent_based: bool, ratio: f64, rate_limit: u32) -> Self {
        Sampler { parent_based, ratio: ratio.clamp(0.0, 1.0), rate_limit, rules: Vec::new(), window: AtomicU64::new(0) }
    }

    pub fn with_rules(mut self, rules: Vec<SamplingRule>) -> Self {
        self.rules = rules;
        self
    }

    /// The decision for a request to `path`: `parent` is the incoming
    /// sampled flag, when a valid context (or a B3 sampling-only header)
    /// carried one.
    pub fn decide(&self, trace_id: TraceId, parent: Option<bool>, path: &str) -> bool {
        if self.parent_based
            && let Some(p) = parent
        {
            return p;
        }
        let ratio = self.rules.iter().find(|r| r.pattern.matches(path)).map_or(self.ratio, |r| r.ratio);
        ratio_sampled(trace_id, ratio) && self.within_rate()
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
        assert!(s.decide(t, Some(true), "/"));
        assert!(!s.decide(t, Some(false), "/"));
        assert!(!s.decide(t, None, "/"));
        let s = Sampler::new(false, 1.0, 0);
        assert!(s.decide(t, Some(false), "/"), "not parent-based: the ratio decides");
    }

    #[test]
    fn ratio_is_consistent_and_close() {
        let a = Sampler::new(true, 0.25, 0);
        let b = Sampler::new(true, 0.25, 0);
        let ids: Vec<TraceId> = (0..20000).map(|_| TraceId::random()).collect();
        let da: Vec<bool> = ids.iter().map(|t| a.decide(*t, None, "/")).collect();
        let db: Vec<bool> = ids.iter().map(|t| b.decide(*t, None, "/")).collect();
        assert_eq!(da, db);
        let share = da.iter().filter(|x| **x).count() as f64 / ids.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
    }

    #[test]
    fn rate_limit_caps_roots() {
        let s = Sampler::new(true, 1.0, 10);
        let sampled = (0..100).filter(|_| s.decide(TraceId::random(), None, "/")).count();
        // A second boundary may fall inside the loop: at most two windows.
        assert!((10..=20).contains(&sampled), "{sampled}");
    }

    #[test]
    fn rules_set_the_ratio_by_route_first_match_wins() {
        let rules = ["/health=0", "/api/orders/*=1", "/api/*=0"].map(|r| SamplingRule::parse(r).unwrap()).to_vec();
        let s = Sampler::new(true, 1.0, 0).with_rules(rules);
        let t = TraceId::random();
        assert!(!s.decide(t, None, "/health"));
        assert!(s.decide(t, None, "/api/orders/7"), "the first matching rule decides");
        assert!(!s.decide(t, None, "/api/users"));
        assert!(s.decide(t, None, "/other"), "no rule: the default ratio");
        assert!(s.decide(t, Some(true), "/health"), "a sampled parent is still followed");
        assert_eq!(SamplingRule::parse("/a/{id}=0.25").unwrap().to_string(), "/a/{id}=0.25");
        for bad in ["/health", "health=0", "/health=2", "/health=x"] {
            assert!(SamplingRule::parse(bad).is_err(), "{bad}");
        }
    }
}
