//! Bounded label tables and the sharded maps behind them.
//!
//! A label whose values come from traffic (a route, an outbound server
//! address, a TLS server name) gets at most `cap` distinct values per
//! direction; later values share the `_other` entry, and each observation
//! that lands there is counted. Memory and series stay bounded however
//! many distinct paths a client sends.
//!
//! Lookups happen on the request path, so a table is 16 shards, each an
//! `RwLock<HashMap>`: a hit takes one shard's read lock (no process-wide
//! lock, no allocation: the map is queried with the borrowed `&str`), and
//! the write lock is only taken the first time a value is seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

const SHARDS: usize = 16;

/// A map split into shards by key hash; values are handed out as `Arc`s.
pub struct ShardedMap<K, V> {
    hasher: RandomState,
    shards: [RwLock<HashMap<K, Arc<V>>>; SHARDS],
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap { hasher: RandomState::new(), shards: std::array::from_fn(|_| RwLock::default()) }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, Arc<V>>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// The value for `key`, made by `make` if absent.
    pub fn get_or_insert<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_or_try_insert(key, || Some(make())).expect("make always makes a value")
    }

    /// The value for `key`, made by `make` if absent; `make` returning
    /// `None` (a full table) inserts nothing.
    pub fn get_or_try_insert<Q>(&self, key: &Q, make: impl FnOnce() -> Option<(K, V)>) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.get(key) {
            return Some(v);
        }
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = shard.get(key) {
            return Some(v.clone());
        }
        let (k, v) = make()?;
        let v = Arc::new(v);
        shard.insert(k, v.clone());
        Some(v)
    }

    /// Every value, for exposition.
    pub fn values(&self) -> Vec<Arc<V>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

/// The label value of the overflow entry.
pub const OTHER: &str = "_other";

/// One distinct label value and what hangs off it.
pub struct Entry<T> {
    /// Small and dense: 0 is `_other`.
    pub id: u32,
    pub name: Arc<str>,
    pub value: T,
}

pub struct Bounded<T> {
    map: ShardedMap<Box<str>, Entry<T>>,
    cap: usize,
    /// Values admitted; `fetch_update` keeps it at most `cap` even when
    /// inserts in different shards race.
    len: AtomicUsize,
    overflow: Arc<Entry<T>>,
    /// Observations that went to `_other` because the table was full.
    overflowed: AtomicU64,
}

impl<T> Bounded<T> {
    pub fn new(cap: usize, make: impl Fn() -> T) -> Self {
        Bounded {
            map: ShardedMap::default(),
            cap,
            len: AtomicUsize::new(0),
            overflow: Arc::new(Entry { id: 0, name: OTHER.into(), value: make() }),
            overflowed: AtomicU64::new(0),
        }
    }

    /// The entry for `name`, or `_other` once `cap` values are known.
    pub fn get(&self, name: &str, make: impl FnOnce() -> T) -> Arc<Entry<T>> {
        if let Some(e) = self.map.get(name) {
            return e;
        }
        // A full table answers `_other` without the shard's write lock: past
        // the cap, unknown values are most of the traffic.
        if self.len.load(Ordering::Relaxed) >= self.cap {
            return self.other();
        }
        let made = self.map.get_or_try_insert(name, || {
            let id = self.len.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.cap).then_some(n + 1));
            let id = id.ok()? as u32 + 1;
            Some((name.into(), Entry { id, name: name.into(), value: make() }))
        });
        made.unwrap_or_else(|| self.other())
    }

    fn other(&self) -> Arc<Entry<T>> {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        self.overflow.clone()
    }

    /// Every entry, `_other` last, for exposition.
    pub fn entries(&self) -> Vec<Arc<Entry<T>>> {
        let mut v = self.map.values();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.push(self.overflow.clone());
        v
    }

    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Distinct values known (not counting `_other`).
    pub fn known(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_goes_to_other_and_is_counted() {
        let t: Bounded<()> = Bounded::new(3, || ());
        for name in ["/a", "/b", "/a", "/c", "/d", "/e", "/a"] {
            t.get(name, || ());
        }
        assert_eq!(t.known(), 3);
        assert_eq!(t.overflowed(), 2);
        assert_eq!(t.get("/d", || ()).name.as_ref(), OTHER);
        assert_eq!(t.get("/b", || ()).name.as_ref(), "/b");
        let names: Vec<String> = t.entries().iter().map(|e| e.name.to_string()).collect();
        assert_eq!(names, ["/a", "/b", "/c", "_other"]);
    }

    #[test]
    fn racing_inserts_respect_the_cap() {
        let t: Arc<Bounded<()>> = Arc::new(Bounded::new(100, || ()));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).for_each(|i| _ = t.get(&format!("/{k}/{i}"), || ())))
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(t.known(), 100);
        assert_eq!(t.entries().len(), 101);
        assert_eq!(t.overflowed(), 3900);
    }
}
