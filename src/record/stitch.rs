//! Context stitching: an app that forwards no trace headers still makes
//! whole traces, because its sidecar sees both of its sides. While an
//! inbound request is being handled (it has arrived and its response head
//! has not left), the app's outbound calls without trace context are
//! probably made for it. When exactly one such request is in flight, the
//! outbound CLIENT span becomes its child; with several, the call starts a
//! trace of its own and links to them, so the ambiguity is shown, never
//! guessed.
//!
//! Two bounds keep a long-lived request from adopting everything behind it
//! (the "mega-trace" of heuristic stitchers): an inbound request older
//! than `max_age`, or one that already adopted `max_children` calls, is no
//! longer a parent; a call that finds only such requests starts its own
//! trace with links to them. An answered request (streaming, upgraded) is
//! out of the registry at its response head.
//!
//! The registry is a fixed slab with an occupancy bitmap: registering
//! claims a bit with one atomic OR, leaving clears it, and a lookup reads
//! the bitmap and each occupied slot under its sequence number (a
//! seqlock). No lock and no allocation per request; a full slab makes the
//! requests it cannot hold count as in flight, so lookups stay honest.

use crate::trace::{LinkedSpan, SpanId, TraceId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

/// Inbound requests tracked at once; more than this in flight makes every
/// lookup ambiguous anyway.
const SLOTS: usize = 1024;
const WORDS: usize = SLOTS / 64;
/// OpenTelemetry's limit on the links one span should carry here.
pub const MAX_LINKS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_age: Duration,
    pub max_children: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_age: Duration::from_secs(30), max_children: 100 }
    }
}

/// The span context of an inbound request in flight.
pub type Candidate = LinkedSpan;

/// What a lookup decided for an outbound call without trace context.
#[derive(Debug, PartialEq, Eq)]
pub enum Stitch {
    /// No inbound request in flight: the call starts a trace, as without
    /// stitching.
    Alone,
    /// The only inbound request in flight, within the bounds: the call's
    /// parent.
    Join(Candidate),
    /// Several candidates, or only ones past a bound: the call starts its
    /// own trace and links to (at most `MAX_LINKS` of) `candidates` in
    /// flight.
    Ambiguous { links: Links, candidates: u32 },
}

/// Up to `MAX_LINKS` candidates, inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Links {
    items: [Option<Candidate>; MAX_LINKS],
    len: usize,
}

impl Links {
    fn push(&mut self, c: Candidate) {
        if self.len < MAX_LINKS {
            self.items[self.len] = Some(c);
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Candidate> {
        self.items[..self.len].iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Default)]
struct Slot {
    /// Odd while free or being written, even while it holds a request;
    /// each registration and each departure moves it on.
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    sampled: AtomicBool,
    /// Nanoseconds after the registry's epoch.
    since: AtomicU64,
    children: AtomicU32,
}

pub struct Registry {
    slots: Box<[Slot]>,
    used: [AtomicU64; WORDS],
    /// Requests in flight that found the slab full.
    untracked: AtomicUsize,
    bounds: Bounds,
    epoch: Instant,
}

/// An inbound request's place in the registry: dropping it (at the
/// response head, or when the request goes away) takes it out.
pub struct Registration {
    registry: Arc<Registry>,
    slot: Option<usize>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        match self.slot {
            Some(i) => {
                let slot = &self.registry.slots[i];
                slot.seq.fetch_add(1, Ordering::Release);
                self.registry.used[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
            }
            None => _ = self.registry.untracked.fetch_sub(1, Ordering::Relaxed),
        }
    }
}

impl Registry {
    pub fn new(bounds: Bounds) -> Arc<Registry> {
        let slots: Box<[Slot]> = (0..SLOTS).map(|_| Slot { seq: AtomicU64::new(1), ..Slot::default() }).collect();
        Arc::new(Registry {
            slots,
            used: Default::default(),
            untracked: AtomicUsize::new(0),
            bounds,
            epoch: Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// An inbound request has arrived with this context.
    pub fn register(self: &Arc<Self>, c: Candidate) -> Registration {
        // Start at a random word, so threads spread over the bitmap
        // instead of all fighting for its first bits.
        let start = fastrand::usize(..WORDS);
        for k in 0..WORDS {
            let w = (start + k) % WORDS;
            let mut word = self.used[w].load(Ordering::Relaxed);
            while word != u64::MAX {
                let bit = (!word).trailing_zeros() as usize;
                let prev = self.used[w].fetch_or(1 << bit, Ordering::Acquire);
                if prev & (1 << bit) == 0 {
                    let i = w * 64 + bit;
                    self.fill(i, c);
                    return Registration { registry: self.clone(), slot: Some(i) };
                }
                word = prev | (1 << bit);
            }
        }
        self.untracked.fetch_add(1, Ordering::Relaxed);
        Registration { registry: self.clone(), slot: None }
    }

    fn fill(&self, i: usize, c: Candidate) {
        let slot = &self.slots[i];
        let id = u128::from_be_bytes(c.trace_id.0);
        slot.trace_hi.store((id >> 64) as u64, Ordering::Relaxed);
        slot.trace_lo.store(id as u64, Ordering::Relaxed);
        slot.span.store(u64::from_be_bytes(c.span_id.0), Ordering::Relaxed);
        slot.sampled.store(c.sampled, Ordering::Relaxed);
        slot.since.store(self.now(), Ordering::Relaxed);
        slot.children.store(0, Ordering::Relaxed);
        // Free slots are odd: this makes the slot valid, publishing the
        // stores above to any reader that sees the new number.
        slot.seq.fetch_add(1, Ordering::Release);
    }

    /// A consistent view of an occupied slot, or `None` if it changed
    /// while being read.
    fn read(&self, i: usize) -> Option<(u64, Candidate, u64, u32)> {
        let slot = &self.slots[i];
        let seq = slot.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        let hi = slot.trace_hi.load(Ordering::Relaxed);
        let lo = slot.trace_lo.load(Ordering::Relaxed);
        let span = slot.span.load(Ordering::Relaxed);
        let sampled = slot.sampled.load(Ordering::Relaxed);
        let since = slot.since.load(Ordering::Relaxed);
        let children = slot.children.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        let trace_id = TraceId((((hi as u128) << 64) | lo as u128).to_be_bytes());
        Some((seq, Candidate { trace_id, span_id: SpanId(span.to_be_bytes()), sampled }, since, children))
    }

    /// An outbound call without trace context is starting: whose is it?
    pub fn lookup(&self) -> Stitch {
        let now = self.now();
        let max_age = self.bounds.max_age.as_nanos() as u64;
        let mut in_flight = self.untracked.load(Ordering::Relaxed) as u32;
        // The one candidate within the bounds, if only one is found.
        let mut parent: Option<(usize, u64, Candidate)> = None;
        let mut within = 0u32;
        let mut links = Links::default();
        for (w, word) in self.used.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some((seq, c, since, children)) = self.read(i) else {
                    // Arriving or leaving right now: in flight all the same.
                    in_flight += 1;
                    continue;
                };
                in_flight += 1;
                links.push(c);
                if now.saturating_sub(since) < max_age && children < self.bounds.max_children {
                    within += 1;
                    parent = Some((i, seq, c));
                }
            }
        }
        match (in_flight, within, parent) {
            (0, ..) => Stitch::Alone,
            (1, 1, Some((i, seq, c))) => {
                let slot = &self.slots[i];
                let adopted = slot.children.fetch_add(1, Ordering::Relaxed);
                // Another call may have taken the last place, or the
                // request left in between: then it is not this call's parent.
                if adopted < self.bounds.max_children && slot.seq.load(Ordering::Acquire) == seq {
                    Stitch::Join(c)
                } else {
                    Stitch::Ambiguous { links, candidates: 1 }
                }
            }
            (n, ..) => Stitch::Ambiguous { links, candidates: n },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: u8) -> Candidate {
        Candidate { trace_id: TraceId([n; 16]), span_id: SpanId([n; 8]), sampled: n.is_multiple_of(2) }
    }

    #[test]
    fn one_in_flight_is_the_parent_and_leaving_ends_it() {
        let r = Registry::new(Bounds::default());
        assert_eq!(r.lookup(), Stitch::Alone);
        let a = r.register(cand(1));
        assert_eq!(r.lookup(), Stitch::Join(cand(1)));
        drop(a);
        assert_eq!(r.lookup(), Stitch::Alone);
    }

    #[test]
    fn several_in_flight_are_linked_not_guessed() {
        let r = Registry::new(Bounds::default());
        let held: Vec<_> = (1..=10).map(|n| r.register(cand(n))).collect();
        let Stitch::Ambiguous { links, candidates } = r.lookup() else { panic!("joined one of ten") };
        assert_eq!(candidates, 10);
        assert_eq!(links.len(), MAX_LINKS);
        let linked: Vec<u8> = links.iter().map(|c| c.trace_id.0[0]).collect();
        assert!(linked.iter().all(|n| (1..=10).contains(n)), "{linked:?}");
        drop(held);
        assert_eq!(r.lookup(), Stitch::Alone);
    }

    #[test]
    fn a_parent_adopts_at_most_max_children() {
        let r = Registry::new(Bounds { max_age: Duration::from_secs(30), max_children: 3 });
        let _a = r.register(cand(2));
        for _ in 0..3 {
            assert_eq!(r.lookup(), Stitch::Join(cand(2)));
        }
        let Stitch::Ambiguous { links, candidates } = r.lookup() else { panic!("adopted a fourth") };
        assert_eq!((candidates, links.iter().copied().collect::<Vec<_>>()), (1, vec![cand(2)]));
    }

    #[test]
    fn an_old_request_is_no_parent() {
        let r = Registry::new(Bounds { max_age: Duration::ZERO, max_children: 100 });
        let _a = r.register(cand(4));
        assert!(matches!(r.lookup(), Stitch::Ambiguous { candidates: 1, .. }));
    }

    #[test]
    fn a_full_slab_still_counts_what_it_cannot_hold() {
        let r = Registry::new(Bounds::default());
        let held: Vec<_> = (0..SLOTS + 1).map(|n| r.register(cand(n as u8))).collect();
        assert_eq!(r.untracked.load(Ordering::Relaxed), 1);
        assert!(matches!(r.lookup(), Stitch::Ambiguous { candidates, .. } if candidates as usize == SLOTS + 1));
        drop(held);
        assert_eq!(r.lookup(), Stitch::Alone);
        // The request that found no slot is no parent even when alone.
        let _untracked_alone = {
            let held: Vec<_> = (0..SLOTS).map(|n| r.register(cand(n as u8))).collect();
            let extra = r.register(cand(9));
            drop(held);
            extra
        };
        assert!(matches!(r.lookup(), Stitch::Ambiguous { candidates: 1, .. }));
    }

    #[test]
    fn registrations_from_many_threads_all_leave() {
        let r = Registry::new(Bounds::default());
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let r = r.clone();
                s.spawn(move || {
                    for n in 0..2000u32 {
                        let reg = r.register(cand(t));
                        let _ = r.lookup();
                        if n % 3 == 0 {
                            drop(reg);
                        }
                    }
                });
            }
        });
        assert_eq!(r.lookup(), Stitch::Alone);
        assert!(r.used.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }
}
