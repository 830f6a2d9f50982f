//! The hashes the world keeps its tables with: a fixed, fast hasher for ids, and the
//! stable 128-bit key of an event for duplicate detection.

use std::hash::Hasher;

/// A fixed, fast hasher (the Fx algorithm of rustc): iteration order must not change
/// between two runs on the same input, and keys here are ids, not attacker-chosen.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // Fx leaves the low bits (the ones hashbrown uses for the bucket) weakly mixed:
        // ids that differ only in their high bytes ("G-0000001", "G-0260001") would pile
        // into a few buckets. One splitmix64 finaliser spreads them.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The identity of an event for duplicate detection: `source` + `id`, as the 128-bit
/// MurmurHash3 (x64) of both. The daemon stores these keys, so the function must never
/// change between builds: it is written out here, not taken from `std` (whose hasher may
/// change with any Rust release) or a crate that does not promise stable output.
pub fn event_key(source: &str, id: &str) -> u128 {
    let mut m = Murmur3::default();
    m.write(source.as_bytes());
    m.write(&[0xff]);
    m.write(id.as_bytes());
    m.finish()
}

/// MurmurHash3_x64_128 (Austin Appleby, public domain), seed 0, fed in pieces.
#[derive(Default)]
struct Murmur3 {
    h1: u64,
    h2: u64,
    tail: [u8; 16],
    tail_len: usize,
    total: u64,
}

impl Murmur3 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;

    fn write(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.tail_len > 0 {
            let take = (16 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 16 {
                return;
            }
            let block = self.tail;
            self.block(&block);
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(16);
        for b in &mut blocks {
            let mut block = [0u8; 16];
            block.copy_from_slice(b);
            self.block(&block);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn block(&mut self, b: &[u8; 16]) {
        let (k1, k2) = Self::words(b);
        self.h1 ^= Self::mix_k1(k1);
        self.h1 = self.h1.rotate_left(27).wrapping_add(self.h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        self.h2 ^= Self::mix_k2(k2);
        self.h2 = self.h2.rotate_left(31).wrapping_add(self.h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }

    fn words(b: &[u8; 16]) -> (u64, u64) {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
    }

    fn mix_k1(k: u64) -> u64 {
        k.wrapping_mul(Self::C1).rotate_left(31).wrapping_mul(Self::C2)
    }

    fn mix_k2(k: u64) -> u64 {
        k.wrapping_mul(Self::C2).rotate_left(33).wrapping_mul(Self::C1)
    }

    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }

    fn finish(mut self) -> u128 {
        if self.tail_len > 0 {
            let mut block = [0u8; 16];
            block[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            let (k1, k2) = Self::words(&block);
            if self.tail_len > 8 {
                self.h2 ^= Self::mix_k2(k2);
            }
            self.h1 ^= Self::mix_k1(k1);
        }
        let (mut h1, mut h2) = (self.h1 ^ self.total, self.h2 ^ self.total);
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        h1 = Self::fmix(h1);
        h2 = Self::fmix(h2);
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        ((h2 as u128) << 64) | h1 as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn murmur(bytes: &[u8]) -> u128 {
        let mut m = Murmur3::default();
        m.write(bytes);
        m.finish()
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // MurmurHash3_x64_128 with seed 0, as the reference implementation prints them
        // (h1 then h2, little-endian): the stored keys depend on these never changing.
        assert_eq!(murmur(b""), 0);
        assert_eq!(
            murmur(b"The quick brown fox jumps over the lazy dog"),
            u128::from_le_bytes(*b"\x6c\x1b\x07\xbc\x7b\xbc\x4b\xe3\x47\x93\x9a\xc4\xa9\x3c\x43\x7a")
        );
    }

    #[test]
    fn feeding_in_pieces_is_feeding_at_once() {
        let whole = b"/carrier\xffcarrier-000017-with-a-long-id";
        for cut in 0..whole.len() {
            let mut m = Murmur3::default();
            m.write(&whole[..cut]);
            m.write(&whole[cut..]);
            assert_eq!(m.finish(), murmur(whole), "cut at {cut}");
        }
        assert_eq!(event_key("/carrier", "carrier-000017-with-a-long-id"), murmur(whole));
        assert_ne!(event_key("/a", "b"), event_key("/ab", ""));
    }
}
