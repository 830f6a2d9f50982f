//! Seen event ids as stored: one `seen_batches` row per partition per batch, its ids
//! 16 bytes each (big-endian) one after the other. The worlds hold the seen set and drop a
//! duplicate before it reaches a batch; the table only has to give the set back when a
//! partition is assigned, and lose it after the replay horizon. A row per id was two or
//! three random index inserts per event — the larger part of the pages a batch wrote.

use std::collections::BTreeMap;

use super::StoreError;

/// Bytes per id in a row.
const KEY_BYTES: usize = 16;

/// The batch's seen ids as rows: per partition, in the order they were seen.
pub(super) fn rows(seen: &[(i32, u128)]) -> Vec<(i32, Vec<u8>)> {
    let mut by_part: BTreeMap<i32, Vec<u8>> = BTreeMap::new();
    for (part, key) in seen {
        by_part.entry(*part).or_default().extend_from_slice(&key.to_be_bytes());
    }
    by_part.into_iter().collect()
}

/// The ids of one stored row.
pub(super) fn ids(keys: &[u8]) -> Result<impl Iterator<Item = u128> + '_, StoreError> {
    if keys.len() % KEY_BYTES != 0 {
        return Err(StoreError::Corrupt {
            what: "seen event ids".into(),
            message: format!("{} bytes, not a multiple of {KEY_BYTES}", keys.len()),
        });
    }
    Ok(keys.chunks_exact(KEY_BYTES).map(|c| {
        let mut b = [0u8; KEY_BYTES];
        b.copy_from_slice(c);
        u128::from_be_bytes(b)
    }))
}

/// How many ids rows of these lengths held (what a sweep reports).
pub(super) fn count(lengths: impl IntoIterator<Item = i64>) -> u64 {
    lengths.into_iter().map(|l| u64::try_from(l).unwrap_or(0) / KEY_BYTES as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_row_per_partition_and_reads_back_in_order() {
        let seen = [(3, 7u128), (0, u128::MAX), (3, 1), (0, 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10)];
        let rows = rows(&seen);
        assert_eq!(rows.iter().map(|(p, k)| (*p, k.len())).collect::<Vec<_>>(), vec![(0, 32), (3, 32)]);
        let back: Vec<Vec<u128>> = rows.iter().map(|(_, k)| ids(k).expect("whole ids").collect()).collect();
        assert_eq!(back, vec![vec![u128::MAX, 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10], vec![7, 1]]);
        assert_eq!(count(rows.iter().map(|(_, k)| k.len() as i64)), 4);
    }

    #[test]
    fn a_row_cut_short_is_corrupt_not_misread() {
        let err = ids(&[0u8; 20]).err().expect("20 bytes are not whole ids");
        assert!(err.to_string().contains("20 bytes, not a multiple of 16"), "{err}");
    }
}
