//! The digests the emulator records for every stored file, written here by hand so that
//! they are independent of whatever the core uses (two implementations that must agree).
//!
//! - [`QuickXorHash`]: OneDrive's `quickXorHash` (onedrive.md §7.2).
//! - [`ContentHasher`]: Dropbox's `content_hash` (dropbox.md §8).
//! - SHA-256 of the whole file comes from the `sha2` crate.

use sha2::{Digest, Sha256};

/// Size of a Dropbox content-hash block (dropbox.md §8): 4 MiB.
pub const CONTENT_HASH_BLOCK: usize = 4 * 1024 * 1024;

/// Streaming QuickXorHash (onedrive.md §7.2).
///
/// The hash is linear in its input: the byte at absolute position `i` is XORed into the
/// 160-bit accumulator rotated by `11 * i mod 160`. [`QuickXorHash::at_position`] exploits
/// that to hash a piece of a file that starts at any offset; [`QuickXorHash::combine`]
/// XORs such pieces together.
#[derive(Clone, Debug, Default)]
pub struct QuickXorHash {
    acc: [u8; 20],
    len: u64,
}

impl QuickXorHash {
    /// Returns an empty hasher (position 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns an empty hasher whose next byte is at absolute position `pos`.
    ///
    /// Its [`len`](Self::len) starts at `pos`; use it for a piece of a file, then
    /// [`combine`](Self::combine) the pieces.
    pub fn at_position(pos: u64) -> Self {
        Self {
            acc: [0; 20],
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
        for &b in data {
            let bit = ((self.len % 160) * 11 % 160) as usize;
            let (byte, off) = (bit / 8, bit % 8);
            self.acc[byte] ^= b << off;
            if off != 0 {
                self.acc[(byte + 1) % 20] ^= b >> (8 - off);
            }
            self.len += 1;
        }
    }

    /// XORs the accumulator of `other` (a piece hashed with [`at_position`](Self::at_position))
    /// into this one; the length becomes the larger of the two ends.
    pub fn combine(&mut self, other: &QuickXorHash) {
        for (a, b) in self.acc.iter_mut().zip(other.acc.iter()) {
            *a ^= b;
        }
        self.len = self.len.max(other.len);
    }

    /// Returns the 20-byte digest (accumulator XOR little-endian length in bytes 12..20).
    pub fn digest(&self) -> [u8; 20] {
        let mut out = self.acc;
        for (k, x) in self.len.to_le_bytes().iter().enumerate() {
            out[12 + k] ^= x;
        }
        out
    }

    /// Returns the digest as standard padded base64 (28 characters), as in `quickXorHash`.
    pub fn base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.digest())
    }
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
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (CONTENT_HASH_BLOCK - self.in_block).min(data.len());
            self.block.update(&data[..take]);
            self.in_block += take;
            self.len += take as u64;
            data = &data[take..];
            if self.in_block == CONTENT_HASH_BLOCK {
                self.flush_block();
            }
        }
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
