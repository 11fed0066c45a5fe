//! The bounded flow table (what `conntrack -L` would list, seen from the wire).
//!
//! Flows are keyed bidirectionally: both directions of a 5-tuple map to one entry whose
//! key holds the two endpoints in canonical order ([`FlowKey::new`] says which side sent
//! the packet). Entries live in a slab threaded on a least-recently-used list, so the
//! table never holds more than `cap` flows: a new flow beyond the cap pushes out the
//! least recently seen one, and flows idle (by packet time) longer than the idle timeout
//! are closed as time advances. Both kinds of removal hand the flow back to the caller,
//! which closes it out into the detectors, and are counted.
//!
//! Memory: the slab and the index are sized on demand and never exceed `cap` entries;
//! see [`FlowTable::bytes_per_flow`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// Which endpoint of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// The endpoint that sorts lower (`FlowKey::a`).
    A,
    /// The other one.
    B,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub(crate) fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// An endpoint: address and port.
pub(crate) type Endpoint = (IpAddr, u16);

/// A bidirectional flow key: capture source, IP protocol, two endpoints in sorted order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub(crate) source: u16,
    pub(crate) protocol: u8,
    pub(crate) a: Endpoint,
    pub(crate) b: Endpoint,
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and which side sent it.
    #[inline]
    pub(crate) fn new(source: u16, protocol: u8, src: Endpoint, dst: Endpoint) -> (FlowKey, Side) {
        // The derived order of (address, port), compared as integers when both are IPv4
        // (an IPv4 address orders as its big-endian value).
        let src_first = match (src.0, dst.0) {
            (IpAddr::V4(x), IpAddr::V4(y)) => (u32::from(x), src.1) <= (u32::from(y), dst.1),
            _ => src <= dst,
        };
        if src_first {
            let k = FlowKey {
                source,
                protocol,
                a: src,
                b: dst,
            };
            (k, Side::A)
        } else {
            let k = FlowKey {
                source,
                protocol,
                a: dst,
                b: src,
            };
            (k, Side::B)
        }
    }

    pub(crate) fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// A small, fast, non-cryptographic hasher (the FxHash mix used by rustc, plus a final
/// avalanche) for the flow index. Keys come from untrusted captures, but the table is bounded, so a crafted
/// collision pattern costs time, never memory.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    /// Mixes one word in.
    #[inline]
    pub(crate) fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    /// The multiply only carries entropy upwards, and hashbrown picks buckets with the
    /// low bits: without a final mix, keys that differ only in their high bytes (IPv4
    /// addresses `10.x.y.z` hashed little-endian) all land in a few buckets. The
    /// murmur3 finalizer spreads every input bit over the whole word.
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const NIL: u32 = u32::MAX;

struct Slot<K, V> {
    key: K,
    value: V,
    last_ns: u64,
    prev: u32,
    next: u32,
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The table was full and this was the least recently seen flow.
    Full,
    /// Idle longer than the idle timeout.
    Idle,
}

/// The flow index: open addressing with linear probing over `(slot + 1, hash)` pairs
/// (0 = empty), at most half full, deletion by backward shift (no tombstones). Keys
/// live only in the slab: a bucket costs 8 bytes where a `HashMap<FlowKey, u32>` entry
/// costs 49, and the 32 hash bits kept let a probe skip most foreign slots unread.
#[derive(Default)]
struct Index {
    buckets: Vec<(u32, u32)>,
    len: usize,
}

/// The hash of a flow key, as the index uses it (see [`endpoints_hash`]).
#[inline]
fn key_hash(key: &FlowKey) -> u32 {
    endpoints_hash(
        u64::from(key.source) << 32 | u64::from(key.protocol) << 48,
        key.a,
        key.b,
    )
}

/// A hash of two endpoints and up to 32 bits of other fields (`extra`, in bits 32..64):
/// the ports and `extra` packed into one word, the addresses into one more (IPv4) or
/// five (IPv6), mixed with [`FxHasher`]; the derived `Hash` feeds the hasher eight or
/// more pieces (each address's discriminant apart). For the flow index and
/// [`DenseMap`], whose indexes order nothing (iteration follows recency or insertion).
#[inline]
pub(crate) fn endpoints_hash(extra: u64, a: Endpoint, b: Endpoint) -> u32 {
    let mut h = FxHasher::default();
    let ports = u64::from(a.1) | u64::from(b.1) << 16 | extra;
    match (a.0, b.0) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            h.add(ports);
            h.add(u64::from(u32::from(x)) << 32 | u64::from(u32::from(y)));
        }
        (x, y) => {
            h.add(ports);
            h.add(u64::MAX);
            for ip in [x, y] {
                let w = match ip {
                    IpAddr::V4(v) => u128::from(u32::from(v)),
                    IpAddr::V6(v) => u128::from(v),
                };
                h.add(w as u64);
                h.add((w >> 64) as u64);
            }
        }
    }
    h.finish() as u32
}

/// A hash of one endpoint and up to 48 bits of other fields (`extra`, in bits 16..64),
/// as [`endpoints_hash`] hashes two.
#[inline]
pub(crate) fn endpoint_hash(extra: u64, a: Endpoint) -> u32 {
    let mut h = FxHasher::default();
    h.add(u64::from(a.1) | extra);
    match a.0 {
        IpAddr::V4(x) => h.add(u64::from(u32::from(x))),
        IpAddr::V6(x) => {
            let w = u128::from(x);
            h.add(u64::MAX);
            h.add(w as u64);
            h.add((w >> 64) as u64);
        }
    }
    h.finish() as u32
}

/// A [`DenseMap`] key: equality and the index's 32-bit hash.
pub(crate) trait DenseKey: Eq {
    /// The hash the index files the key under.
    fn dense_hash(&self) -> u32;
}

/// A flow: the flow table's index files it under [`key_hash`].
impl DenseKey for FlowKey {
    #[inline]
    fn dense_hash(&self) -> u32 {
        key_hash(self)
    }
}

/// A socket pair of one capture source.
impl DenseKey for (u16, Endpoint, Endpoint) {
    #[inline]
    fn dense_hash(&self) -> u32 {
        endpoints_hash(u64::from(self.0) << 32, self.1, self.2)
    }
}

/// An endpoint of one capture source.
impl DenseKey for (u16, Endpoint) {
    #[inline]
    fn dense_hash(&self) -> u32 {
        endpoint_hash(u64::from(self.0) << 32, self.1)
    }
}

/// A socket pair of one capture source, and a 16-bit tag (a DNS ID).
impl DenseKey for (u16, Endpoint, Endpoint, u16) {
    #[inline]
    fn dense_hash(&self) -> u32 {
        endpoints_hash(
            u64::from(self.0) << 32 | u64::from(self.3) << 48,
            self.1,
            self.2,
        )
    }
}

#[cfg(test)]
impl DenseKey for u32 {
    fn dense_hash(&self) -> u32 {
        let mut h = FxHasher::default();
        h.add(u64::from(*self));
        h.finish() as u32
    }
}

impl Index {
    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The slot holding `key`.
    #[inline]
    fn get<K: Eq, V>(&self, key: &K, hash: u32, slots: &[Slot<K, V>]) -> Option<u32> {
        self.find(hash, |s| {
            slots.get(s as usize).is_some_and(|x| x.key == *key)
        })
    }

    /// The first slot filed under `hash` for which `is` holds.
    #[inline(always)]
    fn find(&self, hash: u32, is: impl Fn(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let (s, h) = *self.buckets.get(i)?;
            if s == 0 {
                return None;
            }
            if h == hash && is(s - 1) {
                return Some(s - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Files the entry `from` (under `hash`) as `to` instead.
    fn relabel(&mut self, from: u32, to: u32, hash: u32) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while let Some(b) = self.buckets.get_mut(i) {
            if b.0 == from + 1 {
                b.0 = to + 1;
                return;
            }
            if b.0 == 0 {
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Forgets every entry, keeping the buckets.
    fn clear(&mut self) {
        self.buckets.fill((0, 0));
        self.len = 0;
    }

    /// Adds `slot` (whose key is not in the index) under `hash`.
    fn insert(&mut self, slot: u32, hash: u32) {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while let Some(b) = self.buckets.get_mut(i) {
            if b.0 == 0 {
                *b = (slot + 1, hash);
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let n = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![(0, 0); n]);
        let mask = n - 1;
        for (s, h) in old.into_iter().filter(|b| b.0 != 0) {
            let mut i = h as usize & mask;
            while let Some(b) = self.buckets.get_mut(i) {
                if b.0 == 0 {
                    *b = (s, h);
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// Removes `slot` (filed under `hash`), shifting later entries of its run back.
    fn remove(&mut self, slot: u32, hash: u32) {
        if self.buckets.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            match self.buckets.get(i) {
                Some(&(s, _)) if s == slot + 1 => break,
                Some(&(0, _)) | None => return,
                Some(_) => i = (i + 1) & mask,
            }
        }
        // Backward shift: move each later entry of the run into the hole when its home
        // position is not between the hole and itself (cyclically).
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let Some(&(s, h)) = self.buckets.get(j) else {
                break;
            };
            if s == 0 {
                break;
            }
            let home = h as usize & mask;
            let dist_home = j.wrapping_sub(home) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.buckets[hole] = (s, h);
                hole = j;
            }
        }
        self.buckets[hole] = (0, 0);
        self.len -= 1;
    }

    fn allocated_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    /// Most bytes an index of `cap` entries holds (while growing: old and new buckets).
    fn bytes_bound(cap: usize) -> usize {
        let buckets = (cap.max(8) * 2).next_power_of_two();
        (buckets + buckets / 2) * std::mem::size_of::<(u32, u32)>()
    }
}

/// A hash map whose entries sit densely in one `Vec` (no empty buckets holding keys
/// and values: a `HashMap` at 65,536 entries holds 131,072 buckets), found through an
/// [`Index`] of 8-byte buckets, hashed by [`DenseKey`]. Iteration is in insertion
/// order, except that a removal moves the last entry into the hole.
pub(crate) struct DenseMap<K, V> {
    entries: Vec<(K, V)>,
    index: Index,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            entries: Vec::new(),
            index: Index::default(),
        }
    }
}

impl<K: DenseKey, V> DenseMap<K, V> {
    #[inline]
    fn hash(key: &K) -> u32 {
        key.dense_hash()
    }

    #[inline(always)]
    fn position(&self, key: &K) -> Option<usize> {
        self.position_hashed(key, Self::hash(key))
    }

    /// [`DenseMap::position`] with the key's hash already computed (a miss followed by
    /// an insert hashes the key once).
    #[inline(always)]
    fn position_hashed(&self, key: &K, hash: u32) -> Option<usize> {
        let e = &self.entries;
        self.index
            .find(hash, |i| e.get(i as usize).is_some_and(|x| x.0 == *key))
            .map(|i| i as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline(always)]
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let i = self.position(key)?;
        self.entries.get(i).map(|e| &e.1)
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.position(key)?;
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// Sets `key` to `value` (replacing its entry, in place, if it has one).
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let hash = Self::hash(&key);
        if let Some(e) = self
            .position_hashed(&key, hash)
            .and_then(|i| self.entries.get_mut(i))
        {
            e.1 = value;
            return;
        }
        let i = self.entries.len() as u32;
        self.entries.push((key, value));
        self.index.insert(i, hash);
    }

    /// Adds `key` (which the caller has just looked up and not found: no probe is spent
    /// on finding it again) with `value`.
    pub(crate) fn insert_absent(&mut self, key: K, value: V) {
        let hash = Self::hash(&key);
        self.insert_absent_hashed(key, hash, value);
    }

    /// The hash `key` is filed under: a caller that looks a key up and then adds it
    /// ([`DenseMap::get_mut_hashed`], [`DenseMap::insert_absent_hashed`]) hashes it once.
    #[inline(always)]
    pub(crate) fn hash_of(key: &K) -> u32 {
        Self::hash(key)
    }

    /// [`DenseMap::get_mut`] with `key`'s hash already computed ([`DenseMap::hash_of`]).
    #[inline(always)]
    pub(crate) fn get_mut_hashed(&mut self, key: &K, hash: u32) -> Option<&mut V> {
        let i = self.position_hashed(key, hash)?;
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// [`DenseMap::insert_absent`] with `key`'s hash already computed
    /// ([`DenseMap::hash_of`]).
    pub(crate) fn insert_absent_hashed(&mut self, key: K, hash: u32, value: V) {
        let i = self.entries.len() as u32;
        self.entries.push((key, value));
        self.index.insert(i, hash);
    }

    /// Adds `key` with `value` unless it is there (then keeps the old value); whether
    /// it was added. One hash and one probe.
    pub(crate) fn insert_if_absent(&mut self, key: K, value: V) -> bool {
        let hash = Self::hash(&key);
        if self.position_hashed(&key, hash).is_some() {
            return false;
        }
        let i = self.entries.len() as u32;
        self.entries.push((key, value));
        self.index.insert(i, hash);
        true
    }

    /// `key`'s value; when absent, inserted as `V::default()` if `room` (given the map,
    /// which it may shrink) says there is room for it, else `None`. One hash and one
    /// probe where `contains_key` then `get_or_insert_default` cost two of each.
    /// `hash` is `key`'s ([`DenseMap::hash_of`], or [`DenseKey::dense_hash`]).
    #[inline(always)]
    pub(crate) fn get_or_insert_default_if_hashed(
        &mut self,
        key: K,
        hash: u32,
        room: impl FnOnce(&mut Self) -> bool,
    ) -> Option<&mut V>
    where
        V: Default,
    {
        let i = match self.position_hashed(&key, hash) {
            Some(i) => i,
            None => {
                if !room(self) {
                    return None;
                }
                let i = self.entries.len();
                self.entries.push((key, V::default()));
                self.index.insert(i as u32, hash);
                i
            }
        };
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// Keeps the entries for which `keep` holds (then re-files them all).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
        self.index.clear();
        for (i, (k, _)) in self.entries.iter().enumerate() {
            self.index.insert(i as u32, Self::hash(k));
        }
    }

    /// Removes every entry, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Removes `key`'s entry, moving the last entry into its place.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let hash = Self::hash(key);
        let i = self.position_hashed(key, hash)?;
        self.index.remove(i as u32, hash);
        let last = self.entries.len() - 1;
        if i != last {
            if let Some((k, _)) = self.entries.get(last) {
                let h = Self::hash(k);
                self.index.relabel(last as u32, i as u32, h);
            }
        }
        Some(self.entries.swap_remove(i).1)
    }

    /// Most heap bytes a map of `cap` entries holds.
    pub(crate) fn bytes_bound(cap: usize) -> usize {
        crate::bounds::vec_bytes::<(K, V)>(cap) + Index::bytes_bound(cap)
    }
}

/// The bounded LRU flow table; with another key `K` (a [`DenseKey`]), any bounded
/// table that evicts its least recently used entry (the DNS clients).
pub(crate) struct FlowTable<V, K = FlowKey> {
    index: Index,
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    cap: usize,
    idle_ns: u64,
    len: usize,
    pub(crate) peak: usize,
    pub(crate) evicted_full: u64,
    pub(crate) evicted_idle: u64,
    pub(crate) created: u64,
}

impl<V, K: DenseKey + Copy> FlowTable<V, K> {
    /// A table holding at most `cap` flows (at least 1), closing flows idle for `idle_ns`.
    pub(crate) fn new(cap: usize, idle_ns: u64) -> Self {
        let cap = cap.max(1);
        FlowTable {
            index: Index::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            cap,
            idle_ns,
            len: 0,
            peak: 0,
            evicted_full: 0,
            evicted_idle: 0,
            created: 0,
        }
    }

    /// Approximate bytes one flow costs: slab slot, two index buckets (the index is at
    /// most half full) and a free-list entry.
    pub(crate) fn bytes_per_flow() -> usize {
        std::mem::size_of::<Slot<K, V>>()
            + 2 * std::mem::size_of::<(u32, u32)>()
            + std::mem::size_of::<u32>()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Most heap bytes a table of `cap` flows holds (see `Config::memory_bound_bytes`).
    pub(crate) fn bytes_bound(cap: usize) -> usize {
        crate::bounds::vec_bytes::<Slot<K, V>>(cap)
            + Index::bytes_bound(cap)
            + crate::bounds::vec_bytes::<u32>(cap)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    /// Removes the least recently used flow.
    fn pop_tail(&mut self) -> Option<(K, V)>
    where
        V: Default,
    {
        let t = self.tail;
        if t == NIL {
            return None;
        }
        self.unlink(t);
        let slot = &mut self.slots[t as usize];
        let key = slot.key;
        let value = std::mem::take(&mut slot.value);
        self.index.remove(t, key.dense_hash());
        self.free.push(t);
        self.len -= 1;
        Some((key, value))
    }

    /// Closes flows idle at `now_ns`, handing each to `closed`.
    pub(crate) fn expire(&mut self, now_ns: u64, mut closed: impl FnMut(K, V, Removal))
    where
        V: Default,
    {
        while self.tail != NIL {
            let last = self.slots[self.tail as usize].last_ns;
            if now_ns.saturating_sub(last) <= self.idle_ns {
                break;
            }
            if let Some((k, v)) = self.pop_tail() {
                self.evicted_idle += 1;
                closed(k, v, Removal::Idle);
            }
        }
    }

    /// The flow for `key`, created with `V::default()` if new (evicting the least recently
    /// seen flow into `closed` when full). Returns the value and whether it was created.
    pub(crate) fn get_or_insert(
        &mut self,
        key: K,
        now_ns: u64,
        closed: impl FnMut(K, V, Removal),
    ) -> (&mut V, bool)
    where
        V: Default,
    {
        let hash = key.dense_hash();
        self.get_or_insert_hashed(key, hash, now_ns, closed)
    }

    /// [`FlowTable::get_or_insert`] with `key`'s hash ([`DenseKey::dense_hash`]) already
    /// computed: a caller that files the key in another table too hashes it once.
    pub(crate) fn get_or_insert_hashed(
        &mut self,
        key: K,
        hash: u32,
        now_ns: u64,
        mut closed: impl FnMut(K, V, Removal),
    ) -> (&mut V, bool)
    where
        V: Default,
    {
        if let Some(i) = self.index.get(&key, hash, &self.slots) {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            let s = &mut self.slots[i as usize];
            s.last_ns = s.last_ns.max(now_ns);
            return (&mut s.value, false);
        }
        if self.len >= self.cap {
            if let Some((k, v)) = self.pop_tail() {
                self.evicted_full += 1;
                closed(k, v, Removal::Full);
            }
        }
        let i = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.key = key;
                s.value = V::default();
                s.last_ns = now_ns;
                i
            }
            None => {
                self.slots.push(Slot {
                    key,
                    value: V::default(),
                    last_ns: now_ns,
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(i, hash);
        self.push_front(i);
        self.len += 1;
        self.created += 1;
        self.peak = self.peak.max(self.len);
        (&mut self.slots[i as usize].value, true)
    }

    /// The entry for `key`, made the most recently used (seen at `now_ns`).
    #[inline]
    pub(crate) fn touch(&mut self, key: &K, now_ns: u64) -> Option<&mut V> {
        let i = self.index.get(key, key.dense_hash(), &self.slots)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        let s = self.slots.get_mut(i as usize)?;
        s.last_ns = s.last_ns.max(now_ns);
        Some(&mut s.value)
    }

    /// Takes the table apart, handing out every flow least recently used first, one at
    /// a time (`finish` closes flows out one at a time: collecting them all first would
    /// hold a second copy of the table at the peak). No key is filed out of the index,
    /// which goes with the table: a backward-shift delete per flow was most of the cost.
    pub(crate) fn drain_lru(mut self) -> impl Iterator<Item = (K, V)>
    where
        V: Default,
    {
        std::iter::from_fn(move || {
            let t = self.tail;
            if t == NIL {
                return None;
            }
            self.unlink(t);
            let slot = self.slots.get_mut(t as usize)?;
            let key = slot.key;
            let value = std::mem::take(&mut slot.value);
            self.len -= 1;
            Some((key, value))
        })
    }

    /// Every flow held, most recently seen first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let s = self.slots.get(at as usize)?;
            at = s.next;
            Some((&s.key, &s.value))
        })
    }

    /// Bytes currently allocated by the slab and the index (capacity, not length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<K, V>>()
            + self.index.allocated_bytes()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(i: u32) -> FlowKey {
        let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
        FlowKey::new(
            0,
            6,
            (a, 1000),
            (IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1)), 80),
        )
        .0
    }

    #[test]
    fn both_directions_share_a_key() {
        let x = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40000);
        let y = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80);
        let (k1, s1) = FlowKey::new(0, 6, x, y);
        let (k2, s2) = FlowKey::new(0, 6, y, x);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.endpoint(s1), x);
    }

    #[test]
    fn the_key_orders_endpoints_as_the_derived_order_does() {
        // Addresses that differ in each byte, equal ones, IPv4 against IPv6; ports on
        // both sides of each other.
        let v4 = [
            [0, 0, 0, 0],
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            [10, 0, 1, 1],
            [10, 1, 0, 0],
            [127, 255, 255, 255],
            [128, 0, 0, 0],
            [255, 255, 255, 255],
        ];
        let mut addrs: Vec<IpAddr> = v4.iter().map(|b| IpAddr::V4(Ipv4Addr::from(*b))).collect();
        addrs.push("::1".parse().expect("v6"));
        addrs.push("fd00::a00:1".parse().expect("v6"));
        let ports = [0u16, 1, 80, 255, 256, 40000, 65535];
        let eps: Vec<Endpoint> = addrs
            .iter()
            .flat_map(|a| ports.iter().map(move |p| (*a, *p)))
            .collect();
        for &x in &eps {
            for &y in &eps {
                let (k, side) = FlowKey::new(3, 17, x, y);
                let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
                assert_eq!((k.a, k.b), (lo, hi), "{x:?} {y:?}");
                assert_eq!(k.endpoint(side), x, "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn cap_is_never_exceeded_and_lru_goes_first() {
        let mut t: FlowTable<u32> = FlowTable::new(3, u64::MAX);
        let mut gone = Vec::new();
        for i in 0..3 {
            *t.get_or_insert(key(i), u64::from(i), |_, _, _| {}).0 = i;
        }
        // touch flow 0 so flow 1 is now the least recently used
        t.get_or_insert(key(0), 10, |_, _, _| {});
        t.get_or_insert(key(7), 11, |k, v, r| gone.push((k, v, r)));
        assert_eq!(t.len(), 3);
        assert_eq!(gone, vec![(key(1), 1, Removal::Full)]);
        assert_eq!(t.evicted_full, 1);
    }

    /// The open-addressing index agrees with a `HashMap` through inserts, LRU
    /// evictions and re-inserts of many keys (growth and backward-shift deletion).
    #[test]
    fn index_agrees_with_a_map_under_churn() {
        let mut t: FlowTable<u32> = FlowTable::new(1000, u64::MAX);
        let mut model: std::collections::HashMap<FlowKey, u32> = Default::default();
        let mut order: std::collections::VecDeque<FlowKey> = Default::default();
        let mut x = 12345u64;
        for n in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = key((x >> 40) as u32 % 3000);
            let (v, created) = t.get_or_insert(k, n, |gone, val, _| {
                assert_eq!(model.remove(&gone), Some(val));
            });
            if created {
                *v = n as u32;
                model.insert(k, n as u32);
            } else {
                assert_eq!(model.get(&k), Some(&*v));
            }
            order.retain(|o| *o != k);
            order.push_front(k);
            order.truncate(1000);
            assert_eq!(t.len(), model.len());
        }
        let held: std::collections::HashSet<FlowKey> = t.iter().map(|(k, _)| *k).collect();
        assert_eq!(held, model.keys().copied().collect());
        assert_eq!(
            t.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            Vec::from(order)
        );
    }

    /// The dense map agrees with a `HashMap` through inserts, replacements, removals,
    /// `retain` and `clear`.
    #[test]
    fn dense_map_agrees_with_a_map() {
        let mut d: DenseMap<u32, u64> = DenseMap::default();
        let mut m: std::collections::HashMap<u32, u64> = Default::default();
        let mut x = 99u64;
        for n in 0..30_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 40) as u32 % 5000;
            match (x >> 20) % 7 {
                0..=2 => {
                    d.insert(k, n);
                    m.insert(k, n);
                }
                3 => assert_eq!(d.remove(&k), m.remove(&k)),
                4 if n % 1000 == 4 => {
                    d.retain(|k, v| (*k + *v as u32) % 3 != 0);
                    m.retain(|k, v| (*k + *v as u32) % 3 != 0);
                }
                5 if n % 5000 == 5 => {
                    d.clear();
                    m.clear();
                }
                _ => assert_eq!(d.get(&k), m.get(&k)),
            }
            assert_eq!(d.len(), m.len());
        }
        let mut got: Vec<(u32, u64)> = d.iter().map(|(k, v)| (*k, *v)).collect();
        got.sort_unstable();
        let mut want: Vec<(u32, u64)> = m.into_iter().collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn idle_flows_expire_by_packet_time() {
        let mut t: FlowTable<u32> = FlowTable::new(10, 100);
        t.get_or_insert(key(1), 0, |_, _, _| {});
        t.get_or_insert(key(2), 150, |_, _, _| {});
        let mut gone = Vec::new();
        t.expire(200, |k, _, r| gone.push((k, r)));
        assert_eq!(gone, vec![(key(1), Removal::Idle)]);
        assert_eq!(t.len(), 1);
        t.get_or_insert(key(3), 160, |_, _, _| {});
        t.get_or_insert(key(2), 170, |_, _, _| {});
        assert_eq!(t.len(), 2);
        let rest: Vec<FlowKey> = t.drain_lru().map(|(k, _)| k).collect();
        assert_eq!(rest, vec![key(3), key(2)]);
    }
}
