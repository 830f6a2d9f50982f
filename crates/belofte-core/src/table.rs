//! The world's two large tables, written out so that a caller can ask the memory for a
//! key's place ahead of time (`prefetch`). The decide thread of `simulate` waits on cache
//! misses, not instructions: hashbrown's tables cost two misses per look-up (control
//! bytes, then the entry) and offer no way to load either early. These are open addressing
//! with linear probing, one array, at most three quarters full; a removal shifts the
//! following entries back (no tombstones, so a long run never slows look-ups down).

/// Ask for the cache line at `p` without waiting for it. Only a hint: nothing is read.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and reads nothing architecturally, whatever the
    // address; SSE, which it needs, is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Ask for every cache line of `*value` (an order is a dozen lines).
#[inline]
pub(crate) fn prefetch_all<T>(value: &T) {
    let start = value as *const T as *const u8;
    for offset in (0..std::mem::size_of::<T>()).step_by(64) {
        prefetch(start.wrapping_add(offset));
    }
}

const MIN_CAPACITY: usize = 16;

/// Whether `len` entries overflow a table of `capacity` at three quarters.
fn too_full(len: usize, capacity: usize) -> bool {
    len * 4 > capacity * 3
}

/// Where the entry at `i`, whose home is `home`, may move on removing the one at `hole`:
/// back into the hole unless its home lies after the hole (cyclically).
fn may_fill(hole: usize, i: usize, home: usize, mask: usize) -> bool {
    (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask)
}

/// The place a key of the seen set starts its probe at: its low bits.
fn key_home(key: u128, mask: usize) -> usize {
    key as u64 as usize & mask
}

/// The place an index entry starts its probe at: its tag's low bits.
fn tag_home(tag: u32, mask: usize) -> usize {
    tag as usize & mask
}

/// Backward-shift removal from a table of a power-of-two size, the entry at `hole` taken
/// out: each later entry of its run that may (`may_fill`) moves back into the hole, whose
/// place moves on to it. Returns the place left to empty.
fn shift_back<T: Copy>(places: &mut [T], mut hole: usize, empty: impl Fn(T) -> bool, home: impl Fn(T) -> usize) -> usize {
    let mask = places.len().wrapping_sub(1);
    let mut i = hole;
    loop {
        i = (i + 1) & mask;
        let next = places[i];
        if empty(next) {
            return hole;
        }
        if may_fill(hole, i, home(next), mask) {
            places[hole] = next;
            hole = i;
        }
    }
}

/// A set of 128-bit event keys. The keys are MurmurHash3 output already, so their low bits
/// pick the place; 0 marks an empty place and the key 0 itself is kept aside.
#[derive(Default)]
pub(crate) struct KeySet {
    places: Vec<u128>,
    len: usize,
    has_zero: bool,
}

impl KeySet {
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.has_zero
    }

    fn mask(&self) -> usize {
        self.places.len().wrapping_sub(1)
    }

    fn home(&self, key: u128) -> usize {
        key_home(key, self.mask())
    }

    /// The place holding `key`, or the empty one where it would go.
    fn probe(&self, key: u128) -> usize {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.places[i] != 0 && self.places[i] != key {
            i = (i + 1) & mask;
        }
        i
    }

    pub fn contains(&self, key: u128) -> bool {
        if key == 0 {
            return self.has_zero;
        }
        !self.places.is_empty() && self.places[self.probe(key)] == key
    }

    /// Add `key`; false when it was there already.
    pub fn insert(&mut self, key: u128) -> bool {
        if key == 0 {
            return !std::mem::replace(&mut self.has_zero, true);
        }
        if self.places.is_empty() || too_full(self.len + 1, self.places.len()) {
            self.grow();
        }
        let i = self.probe(key);
        if self.places[i] == key {
            return false;
        }
        self.places[i] = key;
        self.len += 1;
        true
    }

    /// Take `key` out; false when it was not there.
    pub fn remove(&mut self, key: u128) -> bool {
        if key == 0 {
            return std::mem::replace(&mut self.has_zero, false);
        }
        if self.places.is_empty() {
            return false;
        }
        let hole = self.probe(key);
        if self.places[hole] != key {
            return false;
        }
        let mask = self.mask();
        let hole = shift_back(&mut self.places, hole, |k| k == 0, |k| key_home(k, mask));
        self.places[hole] = 0;
        self.len -= 1;
        true
    }

    /// Load the place of `key` into the cache, for an `insert` or `contains` soon after.
    pub fn prefetch(&self, key: u128) {
        if let Some(place) = self.places.get(self.home(key)) {
            prefetch(place);
        }
    }

    fn grow(&mut self) {
        let capacity = (self.places.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.places, vec![0; capacity]);
        for key in old.into_iter().filter(|&k| k != 0) {
            let i = self.probe(key);
            self.places[i] = key;
        }
    }
}

/// Slots by a 64-bit hash of what names them (an order id, a tracking number). The table
/// keeps 32 bits of the hash beside each slot, so a look-up compares the name in the
/// value itself (`same`) only when those agree: no copy of the name is kept here.
#[derive(Default)]
pub(crate) struct SlotIndex {
    places: Vec<Place>,
    len: usize,
}

#[derive(Clone, Copy)]
struct Place {
    tag: u32,
    /// `EMPTY`, or a slot.
    slot: u32,
}

const EMPTY: u32 = u32::MAX;
const VACANT: Place = Place { tag: 0, slot: EMPTY };

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl SlotIndex {
    fn mask(&self) -> usize {
        self.places.len().wrapping_sub(1)
    }

    fn home(&self, tag: u32) -> usize {
        tag_home(tag, self.mask())
    }

    /// The place holding the slot `same` accepts, or the empty one ending the search.
    fn probe(&self, tag: u32, mut same: impl FnMut(u32) -> bool) -> usize {
        let mask = self.mask();
        let mut i = self.home(tag);
        loop {
            let p = self.places[i];
            if p.slot == EMPTY || (p.tag == tag && same(p.slot)) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub fn find(&self, hash: u64, same: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.places.is_empty() {
            return None;
        }
        let p = self.places[self.probe(tag_of(hash), same)];
        (p.slot != EMPTY).then_some(p.slot)
    }

    /// The first slot stored under this hash, without comparing names: what a look-up will
    /// most likely find, for prefetching.
    pub fn likely(&self, hash: u64) -> Option<u32> {
        if self.places.is_empty() {
            return None;
        }
        let p = self.places[self.probe(tag_of(hash), |_| true)];
        (p.slot != EMPTY).then_some(p.slot)
    }

    /// Point the name `same` accepts at `slot` (its earlier slot, if any, is replaced).
    pub fn set(&mut self, hash: u64, slot: u32, same: impl FnMut(u32) -> bool) {
        debug_assert_ne!(slot, EMPTY);
        if self.places.is_empty() || too_full(self.len + 1, self.places.len()) {
            self.grow();
        }
        let tag = tag_of(hash);
        let i = self.probe(tag, same);
        if self.places[i].slot == EMPTY {
            self.len += 1;
        }
        self.places[i] = Place { tag, slot };
    }

    /// Take out the entry of `slot` stored under this hash; false when there is none.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.places.is_empty() {
            return false;
        }
        let hole = self.probe(tag_of(hash), |s| s == slot);
        if self.places[hole].slot == EMPTY {
            return false;
        }
        let mask = self.mask();
        let hole = shift_back(&mut self.places, hole, |p| p.slot == EMPTY, |p| tag_home(p.tag, mask));
        self.places[hole] = VACANT;
        self.len -= 1;
        true
    }

    /// Load the first place this hash probes into the cache.
    pub fn prefetch(&self, hash: u64) {
        if let Some(place) = self.places.get(self.home(tag_of(hash))) {
            prefetch(place);
        }
    }

    fn grow(&mut self) {
        let capacity = (self.places.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.places, vec![VACANT; capacity]);
        for p in old.into_iter().filter(|p| p.slot != EMPTY) {
            let i = self.probe(p.tag, |_| false);
            self.places[i] = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Keys that collide on purpose: the low bits pick the place, so a table of 16 sees
    /// runs, wrap-arounds and removals in the middle of a run.
    fn crowded(n: u128) -> impl Iterator<Item = u128> {
        (0..n).map(|i| (i % 5) | (i << 70))
    }

    #[test]
    fn the_key_set_agrees_with_a_hash_set_through_inserts_and_removals() {
        let mut ours = KeySet::default();
        let mut std_set = HashSet::new();
        for (step, key) in crowded(3000).chain(crowded(3000)).enumerate() {
            if step % 3 == 2 {
                assert_eq!(ours.remove(key), std_set.remove(&key), "remove {key:#x}");
            } else {
                assert_eq!(ours.insert(key), std_set.insert(key), "insert {key:#x}");
            }
        }
        for key in crowded(3000).chain([0, 1 << 100]) {
            assert_eq!(ours.contains(key), std_set.contains(&key), "contains {key:#x}");
        }
        assert_eq!(ours.len, std_set.iter().filter(|&&k| k != 0).count());
    }

    #[test]
    fn the_key_zero_is_a_key_like_any_other() {
        let mut set = KeySet::default();
        assert!(set.is_empty());
        assert!(!set.contains(0));
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(!set.is_empty());
        assert!(set.contains(0));
        assert!(set.remove(0));
        assert!(!set.remove(0));
        assert!(set.is_empty());
    }

    #[test]
    fn the_slot_index_finds_by_name_replaces_and_forgets() {
        // Names are numbers; the hash keeps only a few tag bits so that tags collide and
        // the name comparison decides.
        let names: Vec<u64> = (0..2000).collect();
        let hash = |name: u64| (name % 7) << 32 | name;
        let mut index = SlotIndex::default();
        let mut slots: Vec<u64> = Vec::new(); // slot -> name
        for &n in &names {
            slots.push(n);
            let slot = slots.len() as u32 - 1;
            index.set(hash(n), slot, |s| slots[s as usize] == n);
        }
        // Name 10 moves to a new slot: the old one is no longer found.
        slots.push(10);
        let moved = slots.len() as u32 - 1;
        index.set(hash(10), moved, |s| slots[s as usize] == 10);
        assert_eq!(index.len, names.len());
        for &n in &names {
            let expected = if n == 10 { moved } else { n as u32 };
            assert_eq!(index.find(hash(n), |s| slots[s as usize] == n), Some(expected));
        }
        for n in (0..2000).step_by(3) {
            let slot = index.find(hash(n), |s| slots[s as usize] == n).unwrap();
            assert!(index.remove(hash(n), slot));
            assert!(!index.remove(hash(n), slot));
        }
        for &n in &names {
            let found = index.find(hash(n), |s| slots[s as usize] == n);
            assert_eq!(found.is_some(), n % 3 != 0, "name {n}");
        }
        assert_eq!(index.find(hash(5000), |_| false), None);
        assert_eq!(index.likely(hash(1)), index.find(hash(1), |s| slots[s as usize] == 1));
    }
}
