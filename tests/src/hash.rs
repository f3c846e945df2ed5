//! The digests the emulator records for every stored file, written here by hand so that
//! they are independent of whatever the core uses (two implementations that must agree).
//!
//! - [`QuickXorHash`]: OneDrive's `quickXorHash` (onedrive.md §7.2).
//! - [`ContentHasher`]: Dropbox's `content_hash` (dropbox.md §8).
//! - SHA-256 of the whole file comes from the `sha2` crate.

use sha2::{Digest, Sha256};

/// Size of a Dropbox content-hash block (dropbox.md §8): 4 MiB.
#[cfg(not(fuzzing))]
pub const CONTENT_HASH_BLOCK: usize = 4 * 1024 * 1024;
/// Fuzz builds (`--cfg fuzzing`) scale the block down 1024× (4 KiB), as the core does,
/// so that fuzzed concurrent sessions are cheap.
#[cfg(fuzzing)]
pub const CONTENT_HASH_BLOCK: usize = 4096;

/// QuickXorHash period in bytes: the bit offset of the byte at position `i` is
/// `11 * i mod 160`, which depends only on `i mod 160` (onedrive.md §7.2).
const QXH_PERIOD: usize = 160;

/// QuickXorHash accumulator width in bytes (160 bits).
const QXH_WIDTH: usize = 20;

/// Streaming QuickXorHash (onedrive.md §7.2).
///
/// The hash is linear in its input: the byte at absolute position `i` is XORed into the
/// 160-bit accumulator rotated by `11 * i mod 160`. [`QuickXorHash::at_position`] exploits
/// that to hash a piece of a file that starts at any offset; [`QuickXorHash::combine`]
/// XORs such pieces together.
///
/// # How it is fast
/// The rotation depends only on the position modulo 160, so all bytes whose positions are
/// congruent modulo 160 can be XORed together first and rotated into the accumulator once.
/// The state is therefore a 160-byte "period sum" (slot `k` = XOR of every byte at an
/// absolute position `≡ k (mod 160)`), which [`update`](Self::update) fills with plain
/// 64-bit XORs over whole 160-byte periods (memory-bandwidth bound). The 160 rotations
/// happen only in [`digest`](Self::digest). Pieces combine by XORing period sums.
#[derive(Clone)]
pub struct QuickXorHash {
    /// Slot `k`: XOR of all bytes hashed so far at absolute positions `≡ k (mod 160)`.
    period_sum: [u8; QXH_PERIOD],
    len: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QuickXorHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickXorHash")
            .field("len", &self.len)
            .field("digest", &self.base64())
            .finish()
    }
}

impl QuickXorHash {
    /// Returns an empty hasher (position 0).
    pub fn new() -> Self {
        Self::at_position(0)
    }

    /// Returns an empty hasher whose next byte is at absolute position `pos`.
    ///
    /// Its [`len`](Self::len) starts at `pos`; use it for a piece of a file, then
    /// [`combine`](Self::combine) the pieces.
    pub fn at_position(pos: u64) -> Self {
        Self {
            period_sum: [0; QXH_PERIOD],
            len: pos,
        }
    }

    /// Number of bytes hashed so far (including the starting position).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns true when no byte was hashed and the position is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `data`, which continues the input at position [`len`](Self::len).
    pub fn update(&mut self, data: &[u8]) {
        // `len % 160` fits in usize; the cast cannot truncate.
        let slot = (self.len % QXH_PERIOD as u64) as usize;
        // Lengths beyond 2^64 cannot occur for real files; wrap rather than panic.
        self.len = self.len.wrapping_add(data.len() as u64);

        // Head: bring the position to a multiple of 160 (slot 0).
        let head_len = if slot == 0 {
            0
        } else {
            (QXH_PERIOD - slot).min(data.len())
        };
        let (head, rest) = data.split_at(head_len);
        if let Some(dst) = self.period_sum.get_mut(slot..) {
            xor_into(dst, head);
        }

        // Body: whole periods, XORed word-wise into registers, then into the period sum.
        let mut periods = rest.chunks_exact(QXH_PERIOD);
        if rest.len() >= QXH_PERIOD {
            let mut lanes = [0u64; QXH_PERIOD / 8];
            for period in &mut periods {
                for (lane, word) in lanes.iter_mut().zip(period.chunks_exact(8)) {
                    *lane ^= le_u64(word);
                }
            }
            for (dst, lane) in self.period_sum.chunks_exact_mut(8).zip(lanes) {
                xor_into(dst, &lane.to_le_bytes());
            }
        }

        // Tail: a partial period starting at slot 0.
        xor_into(&mut self.period_sum, periods.remainder());
    }

    /// XORs the accumulator of `other` (a piece hashed with [`at_position`](Self::at_position))
    /// into this one; the length becomes the larger of the two ends.
    pub fn combine(&mut self, other: &QuickXorHash) {
        xor_into(&mut self.period_sum, &other.period_sum);
        self.len = self.len.max(other.len);
    }

    /// Returns the 160-bit accumulator (without the length), little-endian
    /// (onedrive.md §7.2, finalise step 1).
    fn accumulator(&self) -> [u8; QXH_WIDTH] {
        let mut acc = [0u8; QXH_WIDTH];
        // Slot k sits at bit (11 * k) mod 160; step the offset by 11 per slot.
        let mut bit = 0usize;
        for &b in &self.period_sum {
            let (byte, off) = (bit / 8, bit % 8);
            let spread = u16::from(b) << off;
            let [low, high] = spread.to_le_bytes();
            if let Some(x) = acc.get_mut(byte) {
                *x ^= low;
            }
            // Bits past bit 159 wrap to bit 0.
            if let Some(x) = acc.get_mut((byte + 1) % QXH_WIDTH) {
                *x ^= high;
            }
            bit += 11;
            if bit >= QXH_PERIOD {
                bit -= QXH_PERIOD;
            }
        }
        acc
    }

    /// Returns the 20-byte digest (accumulator XOR little-endian length in bytes 12..20).
    pub fn digest(&self) -> [u8; 20] {
        let mut out = self.accumulator();
        for (o, x) in out.iter_mut().skip(12).zip(self.len.to_le_bytes()) {
            *o ^= x;
        }
        out
    }

    /// Returns the digest as standard padded base64 (28 characters), as in `quickXorHash`.
    pub fn base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.digest())
    }
}

/// `dst[i] ^= src[i]` over the common prefix (written so that it auto-vectorises).
#[inline]
fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

/// Little-endian `u64` from an 8-byte slice (callers pass `chunks_exact(8)` items).
#[inline(always)]
fn le_u64(word: &[u8]) -> u64 {
    <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes)
}

/// Streaming Dropbox content hash (dropbox.md §8): SHA-256 over the concatenated SHA-256
/// digests of consecutive 4 MiB blocks.
#[derive(Clone, Debug, Default)]
pub struct ContentHasher {
    outer: Sha256,
    block: Sha256,
    in_block: usize,
    len: u64,
}

impl ContentHasher {
    /// Returns an empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns true when nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.update_with_blocks(data, |_| {});
    }

    /// Feeds `data` like [`ContentHasher::update`], and hands the digest of every 4 MiB
    /// block it completes to `on_block` (so that another hasher positioned on the same
    /// block boundaries can take the digest instead of hashing the bytes again).
    pub fn update_with_blocks(&mut self, mut data: &[u8], mut on_block: impl FnMut(&[u8; 32])) {
        while !data.is_empty() {
            let take = (CONTENT_HASH_BLOCK - self.in_block).min(data.len());
            let (now, rest) = data.split_at(take);
            self.block.update(now);
            self.in_block += take;
            self.len += take as u64;
            data = rest;
            if self.in_block == CONTENT_HASH_BLOCK {
                let digest: [u8; 32] = std::mem::take(&mut self.block).finalize().into();
                self.outer.update(digest);
                self.in_block = 0;
                on_block(&digest);
            }
        }
    }

    /// True when the hasher stands on a 4 MiB block boundary (no partial block pending).
    pub fn at_block_boundary(&self) -> bool {
        self.in_block == 0
    }

    /// Continues with the partial block `other` has pending (the tail of a body whose
    /// complete blocks were already handed over with [`ContentHasher::push_block_digest`]).
    /// Only meaningful when `self` stands on a block boundary, which the caller checks with
    /// [`ContentHasher::at_block_boundary`]; otherwise nothing happens and `false` is
    /// returned.
    pub fn adopt_partial_block(&mut self, other: &ContentHasher) -> bool {
        if self.in_block != 0 {
            return false;
        }
        self.block = other.block.clone();
        self.in_block = other.in_block;
        self.len += other.in_block as u64;
        true
    }

    /// Feeds the digest of one complete block that was hashed elsewhere (used for Dropbox
    /// concurrent sessions, whose blocks arrive out of order).
    ///
    /// # Panics
    /// Never; but the result is only meaningful when called at a block boundary.
    pub fn push_block_digest(&mut self, digest: &[u8; 32], block_len: u64) {
        self.outer.update(digest);
        self.len += block_len;
    }

    fn flush_block(&mut self) {
        let digest = std::mem::take(&mut self.block).finalize();
        self.outer.update(digest);
        self.in_block = 0;
    }

    /// Returns the 32-byte content hash.
    pub fn digest(&self) -> [u8; 32] {
        let mut me = self.clone();
        if me.in_block > 0 {
            me.flush_block();
        }
        me.outer.finalize().into()
    }

    /// Returns the content hash as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.digest())
    }
}

/// Returns the Dropbox content hash of `data` as lowercase hex.
pub fn content_hash_hex(data: &[u8]) -> String {
    let mut h = ContentHasher::new();
    h.update(data);
    h.hex()
}

/// Returns the QuickXorHash of `data` as base64.
pub fn quick_xor_hash_base64(data: &[u8]) -> String {
    let mut h = QuickXorHash::new();
    h.update(data);
    h.base64()
}

/// Returns the SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
