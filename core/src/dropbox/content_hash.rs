//! The Dropbox content hash (dropbox.md §8): SHA-256 of the concatenated SHA-256 digests
//! of the input's 4 MiB blocks, lowercase hex.
//!
//! Two uses:
//! - the `content_hash` argument of every request that carries data, computed over that
//!   request's body (block boundaries relative to the body's start);
//! - the whole-file hash compared with `FileMetadata.content_hash` at the end.
//!
//! When a request body starts on a file block boundary and covers whole blocks (or ends
//! at the end of the file), its blocks *are* file blocks: the machine computes each block
//! digest once ([`block_digests`]) and uses it for both ([`hash_of_digests`] for the
//! request, [`ContentHasher::push_block_digest`] for the file). Block digests use the
//! `sha2` crate directly; the running state that a checkpoint must hold (a partial block
//! and the outer hash) uses the crate's resumable [`Sha256State`].

use crate::encoding::hex_encode;
use crate::hash::Sha256State;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;

/// Block size of the content hash and alignment unit of concurrent sessions: 4 MiB.
#[cfg(not(fuzzing))]
pub const BLOCK_SIZE: u64 = 4_194_304;
/// Fuzz builds (`--cfg fuzzing`) scale the block down 1024× (4 KiB), with the
/// emulator's, so that concurrent sessions cost microseconds per fuzz input instead of
/// hashing 4 MiB blocks (fuzz/README.md). Every other build uses 4 MiB.
#[cfg(fuzzing)]
pub const BLOCK_SIZE: u64 = 4096;

/// The content hash of empty input (SHA-256 of nothing).
pub const EMPTY_CONTENT_HASH: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Returns the SHA-256 digest of every 4 MiB block of `data` (the last may be shorter;
/// empty input has no blocks).
///
/// # Examples
/// ```
/// use upload_session::dropbox::{block_digests, hash_of_digests, content_hash};
/// let data = vec![b'A'; 4_194_305];
/// let d = block_digests(&data);
/// assert_eq!(d.len(), 2);
/// assert_eq!(hash_of_digests(&d), content_hash(&data));
/// ```
pub fn block_digests(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks(BLOCK_SIZE as usize)
        .map(|b| sha2::Sha256::digest(b).into())
        .collect()
}

/// Returns the content hash (lowercase hex) of an input whose block digests are `digests`.
pub fn hash_of_digests(digests: &[[u8; 32]]) -> String {
    let mut outer = sha2::Sha256::new();
    for d in digests {
        outer.update(d);
    }
    hex_encode(&outer.finalize())
}

/// Returns the content hash of `data` (lowercase hex, 64 characters).
///
/// # Examples
/// ```
/// use upload_session::dropbox::content_hash;
/// // dropbox.md §8: "hello world" and the empty input.
/// assert_eq!(
///     content_hash(b"hello world"),
///     "bc62d4b80d9e36da29c16c5d4d9f11731f36052c72401a76c23c0fb5a9b74423"
/// );
/// assert_eq!(content_hash(b""), upload_session::dropbox::EMPTY_CONTENT_HASH);
/// ```
pub fn content_hash(data: &[u8]) -> String {
    hash_of_digests(&block_digests(data))
}

/// A streaming, resumable content hasher (its state is plain serde data, so a
/// checkpoint can hold it).
///
/// Feed bytes in order with [`update`](Self::update), or whole blocks' digests with
/// [`push_block_digest`](Self::push_block_digest) when they are already known.
///
/// # Examples
/// ```
/// use upload_session::dropbox::{ContentHasher, content_hash};
/// let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
/// let mut h = ContentHasher::new();
/// h.update(&data[..123]);
/// let saved = serde_json::to_string(&h).unwrap();
/// let mut h: ContentHasher = serde_json::from_str(&saved).unwrap();
/// h.update(&data[123..]);
/// assert_eq!(h.hex(), content_hash(&data));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HasherSaved", into = "HasherSaved")]
pub struct ContentHasher {
    outer: Sha256State,
    block: Sha256State,
    len: u64,
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentHasher")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ContentHasher {
    /// Returns the hasher of empty input.
    pub fn new() -> Self {
        Self {
            outer: Sha256State::new(),
            block: Sha256State::new(),
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the input so far ends on a block boundary (and a whole block's digest
    /// may be pushed).
    pub fn at_block_boundary(&self) -> bool {
        self.block.is_empty()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let in_block = self.block.len();
            if in_block == 0 && data.len() as u64 >= BLOCK_SIZE {
                // A whole block: one `sha2` pass, no intermediate state.
                let (b, rest) = data.split_at(BLOCK_SIZE as usize);
                let d: [u8; 32] = sha2::Sha256::digest(b).into();
                self.outer.update(&d);
                self.len += BLOCK_SIZE;
                data = rest;
                continue;
            }
            let room = usize::try_from(BLOCK_SIZE - in_block).unwrap_or(usize::MAX);
            let take = room.min(data.len());
            let (head, rest) = data.split_at(take);
            self.block.update(head);
            self.len += take as u64;
            data = rest;
            if self.block.len() == BLOCK_SIZE {
                let d = self.block.digest();
                self.outer.update(&d);
                self.block = Sha256State::new();
            }
        }
    }

    /// Feeds the digest of the next block, `block_len` bytes long (`1..=BLOCK_SIZE`; only
    /// the file's last block may be shorter). Returns false (and changes nothing) when
    /// the input so far does not end on a block boundary or `block_len` is out of range.
    pub fn push_block_digest(&mut self, digest: &[u8; 32], block_len: u64) -> bool {
        if !self.at_block_boundary() || block_len == 0 || block_len > BLOCK_SIZE {
            return false;
        }
        self.outer.update(digest);
        self.len += block_len;
        true
    }

    /// Returns the content hash of everything fed so far (the state is kept).
    pub fn digest(&self) -> [u8; 32] {
        let mut outer = self.outer.clone();
        if !self.block.is_empty() {
            outer.update(&self.block.digest());
        }
        outer.digest()
    }

    /// Returns the content hash as lowercase hex (64 characters).
    pub fn hex(&self) -> String {
        hex_encode(&self.digest())
    }
}

/// The serialised form of [`ContentHasher`].
#[derive(Serialize, Deserialize)]
struct HasherSaved {
    /// Bytes hashed.
    length: u64,
    /// SHA-256 over the digests of the complete blocks.
    outer: Sha256State,
    /// SHA-256 of the incomplete block.
    block: Sha256State,
}

impl From<ContentHasher> for HasherSaved {
    fn from(h: ContentHasher) -> Self {
        Self {
            length: h.len,
            outer: h.outer,
            block: h.block,
        }
    }
}

impl TryFrom<HasherSaved> for ContentHasher {
    type Error = &'static str;
    fn try_from(s: HasherSaved) -> Result<Self, &'static str> {
        // Every complete block contributed one 32-byte digest; a shorter final block is
        // either still open (its bytes in `block`) or was pushed as a digest too.
        let blocks = s.outer.len() / 32;
        let full = s.length / BLOCK_SIZE;
        let rem = s.length % BLOCK_SIZE;
        let open = blocks == full && s.block.len() == rem;
        let pushed = rem != 0 && blocks == full + 1 && s.block.is_empty();
        if s.outer.len() % 32 != 0 || !(open || pushed) {
            return Err("content hasher: block count does not match the length");
        }
        Ok(Self {
            outer: s.outer,
            block: s.block,
            len: s.length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: usize) -> Vec<u8> {
        vec![b'A'; n]
    }

    /// rclone's dbhash vectors, re-verified in dropbox.md §8.
    #[test]
    fn published_vectors() {
        let vectors: [(usize, &str); 10] = [
            (
                0,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                1,
                "1cd6ef71e6e0ff46ad2609d403dc3fee244417089aa4461245a4e4fe23a55e42",
            ),
            (
                2,
                "01e0655fb754d10418a73760f57515f4903b298e6d67dda6bf0987fa79c22c88",
            ),
            (
                4096,
                "8620913d33852befe09f16fff8fd75f77a83160d29f76f07e0276e9690903035",
            ),
            (
                4_194_303,
                "647c8627d70f7a7d13ce96b1e7710a771a55d41a62c3da490d92e56044d311fa",
            ),
            (
                4_194_304,
                "d4d63bac5b866c71620185392a8a6218ac1092454a2d16f820363b69852befa3",
            ),
            (
                4_194_305,
                "8f553da8d00d0bf509d8470e242888be33019c20c0544811f5b2b89e98360b92",
            ),
            (
                8_388_607,
                "83b30cf4fb5195b04a937727ae379cf3d06673bf8f77947f6a92858536e8369c",
            ),
            (
                8_388_608,
                "e08b3ba1f538804075c5f939accdeaa9efc7b5c01865c94a41e78ca6550a88e7",
            ),
            (
                8_388_609,
                "02c8a4aefc2bfc9036f89a7098001865885938ca580e5c9e5db672385edd303c",
            ),
        ];
        for (n, want) in vectors {
            let data = a(n);
            assert_eq!(content_hash(&data), want, "n = {n}");
            let mut h = ContentHasher::new();
            for piece in data.chunks(1_000_003) {
                h.update(piece);
            }
            assert_eq!(h.hex(), want, "streamed, n = {n}");
        }
    }

    #[test]
    fn milky_way_block_digests_combine_to_the_published_hash() {
        let hex = [
            "2a846fa617c3361fc117e1c5c1e1838c336b6a5cef982c1a2d9bdf68f2f1992a",
            "c68469027410ea393eba6551b9fa1e26db775f00eae70a0c3c129a0011a39cf9",
            "7376192de020925ce6c5ef5a8a0405e931b0a9a8c75517aacd9ca24a8a56818b",
        ];
        let digests: Vec<[u8; 32]> = hex
            .iter()
            .map(|h| {
                let v = crate::encoding::hex_decode(h).unwrap();
                <[u8; 32]>::try_from(v.as_slice()).unwrap()
            })
            .collect();
        assert_eq!(
            hash_of_digests(&digests),
            "485291fa0ee50c016982abbfa943957bcd231aae0492ccbaa22c58e3997b35e0"
        );
        let mut h = ContentHasher::new();
        assert!(h.push_block_digest(&digests[0], BLOCK_SIZE));
        assert!(h.push_block_digest(&digests[1], BLOCK_SIZE));
        assert!(h.push_block_digest(&digests[2], 1_322_815));
        assert_eq!(h.len(), 9_711_423);
        assert_eq!(
            h.hex(),
            "485291fa0ee50c016982abbfa943957bcd231aae0492ccbaa22c58e3997b35e0"
        );
    }

    #[test]
    fn digests_and_streaming_mix() {
        let data: Vec<u8> = (0..9_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let want = content_hash(&data);
        let b = BLOCK_SIZE as usize;
        let mut h = ContentHasher::new();
        let d = block_digests(&data[..b]);
        assert!(h.push_block_digest(&d[0], BLOCK_SIZE));
        h.update(&data[b..b + 10]);
        assert!(!h.push_block_digest(&d[0], BLOCK_SIZE), "not at a boundary");
        h.update(&data[b + 10..]);
        assert_eq!(h.hex(), want);
    }

    #[test]
    fn saved_state_round_trips_at_any_point_and_rejects_inconsistency() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 7) as u8).collect();
        let want = content_hash(&data);
        for cut in [0usize, 1, 4_194_303, 4_194_304, 4_194_305, 5_000_000] {
            let mut h = ContentHasher::new();
            h.update(&data[..cut]);
            let s = serde_json::to_string(&h).unwrap();
            let mut r: ContentHasher = serde_json::from_str(&s).unwrap();
            assert_eq!(r, h);
            r.update(&data[cut..]);
            assert_eq!(r.hex(), want, "cut {cut}");
        }
        // A short final block pushed as a digest survives a round trip.
        let mut p = ContentHasher::new();
        assert!(p.push_block_digest(&[7; 32], 10));
        let back: ContentHasher =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back.hex(), p.hex());
        let mut h = ContentHasher::new();
        h.update(b"abc");
        let mut v: serde_json::Value = serde_json::to_value(&h).unwrap();
        v["length"] = serde_json::json!(4);
        assert!(serde_json::from_value::<ContentHasher>(v.clone()).is_err());
        v["length"] = serde_json::json!(4_194_307u64);
        assert!(serde_json::from_value::<ContentHasher>(v).is_err());
    }
}
