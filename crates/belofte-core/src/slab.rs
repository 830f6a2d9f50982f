//! Storage for the world's orders: a slab that never moves what it holds.

/// Orders by slot, in fixed-size chunks. A single `Vec` of a million orders copies all of
/// them each time it doubles (hundreds of MiB, a tenth of `simulate`'s time); chunks are
/// filled once and never moved.
pub struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append; returns the slot.
    pub fn push(&mut self, value: T) -> u32 {
        let slot = self.len;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        slot as u32
    }

    pub fn get(&self, slot: u32) -> Option<&T> {
        self.chunks.get((slot >> CHUNK_BITS) as usize)?.get(slot as usize & (CHUNK - 1))
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.chunks.get_mut((slot >> CHUNK_BITS) as usize)?.get_mut(slot as usize & (CHUNK - 1))
    }

    /// Every value in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
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
        assert_eq!(slab.iter().nth(5), Some(&99));
        assert_eq!(slab.iter().count(), slab.len());
        assert_eq!(slab.get(CHUNK as u32 * 3), None);
    }
}
