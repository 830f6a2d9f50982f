//! Storage for the world's orders: a slab that never moves what it holds.

/// Orders by slot, in fixed-size chunks. A single `Vec` of a million orders copies all of
/// them each time it doubles (hundreds of MiB, a tenth of `simulate`'s time); chunks are
/// filled once and never moved. A removed value leaves a hole that the next push fills, so
/// the daemon's orders that leave memory (closed) give their room to new ones.
pub struct Slab<T> {
    chunks: Vec<Vec<Option<T>>>,
    len: usize,
    free: Vec<u32>,
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { chunks: Vec::new(), len: 0, free: Vec::new() }
    }
}

impl<T> Slab<T> {
    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store a value in a hole, or at the end; returns its slot.
    pub fn push(&mut self, value: T) -> u32 {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            if let Some(hole) = self.slot_mut(slot) {
                *hole = Some(value);
                return slot;
            }
        }
        let slot = match self.chunks.last() {
            Some(last) => (self.chunks.len() - 1) * CHUNK + last.len(),
            None => 0,
        };
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(Some(value)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(Some(value));
                self.chunks.push(chunk);
            }
        }
        slot as u32
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Option<T>> {
        self.chunks.get_mut((slot >> CHUNK_BITS) as usize)?.get_mut(slot as usize & (CHUNK - 1))
    }

    pub fn get(&self, slot: u32) -> Option<&T> {
        self.chunks.get((slot >> CHUNK_BITS) as usize)?.get(slot as usize & (CHUNK - 1))?.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.slot_mut(slot)?.as_mut()
    }

    /// Take a value out; its slot is reused by a later push.
    pub fn remove(&mut self, slot: u32) -> Option<T> {
        let value = self.slot_mut(slot)?.take()?;
        self.len -= 1;
        self.free.push(slot);
        Some(value)
    }

    /// Every value with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(slot, v)| v.as_ref().map(|v| (slot as u32, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_put_across_chunks() {
        let mut slab = Slab::default();
        for i in 0..(CHUNK as u32 * 2 + 3) {
            assert_eq!(slab.push(i), i);
        }
        assert_eq!(slab.len(), CHUNK * 2 + 3);
        assert_eq!(slab.get(CHUNK as u32), Some(&(CHUNK as u32)));
        *slab.get_mut(5).unwrap() = 99;
        assert_eq!(slab.iter().nth(5), Some((5, &99)));
        assert_eq!(slab.iter().count(), slab.len());
        assert_eq!(slab.get(CHUNK as u32 * 3), None);
    }

    #[test]
    fn a_removed_slot_is_a_hole_until_the_next_push_fills_it() {
        let mut slab = Slab::default();
        for i in 0..10u32 {
            slab.push(i);
        }
        assert_eq!(slab.remove(3), Some(3));
        assert_eq!(slab.remove(3), None);
        assert_eq!(slab.get(3), None);
        assert_eq!(slab.len(), 9);
        assert!(slab.iter().all(|(slot, _)| slot != 3));
        assert_eq!(slab.push(42), 3);
        assert_eq!(slab.get(3), Some(&42));
        assert_eq!(slab.push(43), 10);
        assert_eq!(slab.len(), 11);
    }
}
