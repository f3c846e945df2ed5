//! The whole-file content hash of an upload, built from block digests that arrive in
//! any order (parallel appends) or from bytes fed in order (sequential chunks).

use super::content_hash::{BLOCK_SIZE, ContentHasher, block_digests};
use crate::encoding::{hex_decode, hex_encode};
use crate::range::ByteRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Progress of the whole-file content hash: the hash of a contiguous prefix of the file,
/// plus the digests of whole blocks beyond it that were read out of order. Each block
/// digest is computed once, when the block is first read. Plain serde data, part of a
/// [`Checkpoint`](super::Checkpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LedgerSaved", into = "LedgerSaved")]
pub struct HashLedger {
    prefix: ContentHasher,
    /// Block index → (digest, block length).
    pending: BTreeMap<u64, ([u8; 32], u64)>,
}

impl Default for HashLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl HashLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self {
            prefix: ContentHasher::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Bytes `0..n` are hashed.
    pub fn prefix_len(&self) -> u64 {
        self.prefix.len()
    }

    /// Number of out-of-order block digests held.
    pub fn pending_blocks(&self) -> usize {
        self.pending.len()
    }

    /// True when block `index` is hashed (in the prefix or held).
    pub(crate) fn has_block(&self, index: u64) -> bool {
        index.saturating_mul(BLOCK_SIZE) < self.prefix.len() || self.pending.contains_key(&index)
    }

    /// Records the bytes `data` found at `offset` of a `size`-byte file. `digests`, when
    /// given, are `block_digests(data)` (only used when `offset` is block-aligned).
    /// Bytes already hashed are skipped; an unaligned piece beyond the prefix is ignored
    /// (it will be read again in order).
    pub(crate) fn add(
        &mut self,
        offset: u64,
        data: &[u8],
        digests: Option<&[[u8; 32]]>,
        size: u64,
    ) {
        let len = data.len() as u64;
        let Some(end) = offset.checked_add(len) else {
            return;
        };
        let have = self.prefix.len();
        if end <= have || len == 0 {
            return;
        }
        if offset <= have {
            let skip = have - offset;
            match digests {
                Some(d)
                    if offset % BLOCK_SIZE == 0
                        && skip % BLOCK_SIZE == 0
                        && self.prefix.at_block_boundary() =>
                {
                    let first = usize::try_from(skip / BLOCK_SIZE).unwrap_or(usize::MAX);
                    for (i, dg) in d.iter().enumerate().skip(first) {
                        let block_len = (len - i as u64 * BLOCK_SIZE).min(BLOCK_SIZE);
                        self.prefix.push_block_digest(dg, block_len);
                    }
                }
                _ => {
                    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
                    if let Some(fresh) = data.get(skip..) {
                        self.prefix.update(fresh);
                    }
                }
            }
        } else if offset % BLOCK_SIZE == 0 {
            let computed;
            let d = match digests {
                Some(d) => d,
                None => {
                    computed = block_digests(data);
                    &computed
                }
            };
            let first = offset / BLOCK_SIZE;
            for (i, dg) in d.iter().enumerate() {
                let block_len = (len - i as u64 * BLOCK_SIZE).min(BLOCK_SIZE);
                let start = offset + i as u64 * BLOCK_SIZE;
                if block_len == BLOCK_SIZE || start + block_len == size {
                    self.pending.insert(first + i as u64, (*dg, block_len));
                }
            }
        }
        self.fold();
    }

    fn fold(&mut self) {
        loop {
            while let Some((&k, _)) = self.pending.first_key_value() {
                if k.saturating_mul(BLOCK_SIZE) < self.prefix.len() {
                    self.pending.remove(&k);
                } else {
                    break;
                }
            }
            if !self.prefix.at_block_boundary() || self.prefix.len() % BLOCK_SIZE != 0 {
                break;
            }
            let next = self.prefix.len() / BLOCK_SIZE;
            match self.pending.remove(&next) {
                Some((d, l)) => {
                    self.prefix.push_block_digest(&d, l);
                }
                None => break,
            }
        }
    }

    /// The first range of a `size`-byte file not hashed yet, at most `max_len` long (it
    /// ends where held digests begin).
    pub(crate) fn gap(&self, size: u64, max_len: u64) -> Option<ByteRange> {
        let start = self.prefix.len();
        if start >= size {
            return None;
        }
        let mut end = size.min(start.saturating_add(max_len.max(1)));
        if let Some((&k, _)) = self.pending.range(start / BLOCK_SIZE..).next() {
            end = end.min(k.saturating_mul(BLOCK_SIZE).max(start + 1));
        }
        ByteRange::new(start, end)
    }

    /// The content hash of the whole file, once `prefix_len() == size`.
    pub(crate) fn finish(&self, size: u64) -> Option<String> {
        (self.prefix.len() == size).then(|| self.prefix.hex())
    }
}

#[derive(Serialize, Deserialize)]
struct PendingSaved {
    block: u64,
    digest: String,
    len: u64,
}

#[derive(Serialize, Deserialize)]
struct LedgerSaved {
    prefix: ContentHasher,
    #[serde(default)]
    pending: Vec<PendingSaved>,
}

impl From<HashLedger> for LedgerSaved {
    fn from(l: HashLedger) -> Self {
        Self {
            prefix: l.prefix,
            pending: l
                .pending
                .into_iter()
                .map(|(block, (d, len))| PendingSaved {
                    block,
                    digest: hex_encode(&d),
                    len,
                })
                .collect(),
        }
    }
}

impl TryFrom<LedgerSaved> for HashLedger {
    type Error = &'static str;
    fn try_from(s: LedgerSaved) -> Result<Self, &'static str> {
        let mut pending = BTreeMap::new();
        for p in s.pending {
            let d = hex_decode(&p.digest)
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or("hash ledger: a block digest is not 64 hex digits")?;
            if p.len == 0 || p.len > BLOCK_SIZE {
                return Err("hash ledger: bad block length");
            }
            if p.block.saturating_mul(BLOCK_SIZE) < s.prefix.len() {
                return Err("hash ledger: a held block lies inside the hashed prefix");
            }
            pending.insert(p.block, (d, p.len));
        }
        let mut l = HashLedger {
            prefix: s.prefix,
            pending,
        };
        l.fold();
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropbox::content_hash::content_hash;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn out_of_order_aligned_chunks_fold_into_the_file_hash() {
        let b = BLOCK_SIZE as usize;
        let size = 3 * b + 12_345;
        let d = data(size);
        let want = content_hash(&d);
        let mut l = HashLedger::new();
        // chunks of 1 block, in the order 2, 3 (short tail), 0, 1
        for k in [2usize, 3, 0, 1] {
            let s = k * b;
            let e = (s + b).min(size);
            let dig = block_digests(&d[s..e]);
            l.add(s as u64, &d[s..e], Some(&dig), size as u64);
        }
        assert_eq!(l.pending_blocks(), 0);
        assert_eq!(l.finish(size as u64), Some(want.clone()));
        // Saved with pending blocks, restored, completed.
        let mut l = HashLedger::new();
        let s = 2 * b;
        l.add(s as u64, &d[s..], None, size as u64);
        assert_eq!(l.pending_blocks(), 2);
        assert!(l.has_block(3) && !l.has_block(1));
        assert_eq!(l.gap(size as u64, u64::MAX), ByteRange::new(0, s as u64));
        let saved = serde_json::to_string(&l).unwrap();
        let mut l: HashLedger = serde_json::from_str(&saved).unwrap();
        l.add(0, &d[..100], None, size as u64);
        assert_eq!(l.gap(size as u64, 1000), ByteRange::new(100, 1100));
        l.add(100, &d[100..s], None, size as u64);
        assert_eq!(l.gap(size as u64, u64::MAX), None);
        assert_eq!(l.finish(size as u64), Some(want));
    }

    #[test]
    fn unaligned_sequential_chunks_and_overlaps() {
        let size = 9_000_001usize;
        let d = data(size);
        let want = content_hash(&d);
        let mut l = HashLedger::new();
        let mut off = 0usize;
        for step in [5_000_000usize, 1, 3_000_000, 999_999, 1] {
            let end = (off + step).min(size);
            l.add(off as u64, &d[off..end], None, size as u64);
            // an overlapping re-read changes nothing
            l.add(0, &d[..end], None, size as u64);
            off = end;
        }
        assert_eq!(l.prefix_len(), size as u64);
        assert_eq!(l.finish(size as u64), Some(want));
    }

    #[test]
    fn bad_saved_ledgers_are_rejected() {
        let l = HashLedger::new();
        let mut v = serde_json::to_value(&l).unwrap();
        v["pending"] = serde_json::json!([{"block": 1, "digest": "00", "len": 5}]);
        assert!(serde_json::from_value::<HashLedger>(v.clone()).is_err());
        v["pending"] = serde_json::json!([{"block": 1, "digest": "0".repeat(64), "len": 0}]);
        assert!(serde_json::from_value::<HashLedger>(v).is_err());
    }
}
