//! OneDrive's QuickXorHash (onedrive.md §7.2), word-at-a-time, with a serialisable state.
//!
//! Written by hand rather than taken from the `quickxorhash` crate: that crate keeps its
//! state private and cannot save or restore it, and a [`Checkpoint`](super::Checkpoint)
//! must carry the running hash so a resumed upload never re-reads acknowledged bytes.
//!
//! How it is fast: the byte at absolute position `i` lands at bit `11·i mod 160` of the
//! 160-bit accumulator, which only depends on `i mod 160`. So bytes are first XOR-folded
//! into 160 one-byte lanes (twenty `u64` words, a plain XOR of 8 bytes at a time), and
//! the lanes are spread into the accumulator only when a digest or a checkpoint is asked
//! for (160 small steps, independent of the input size).

use crate::encoding::{base64_decode, base64_encode, hex_decode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Width of the accumulator in bytes.
const WIDTH: usize = 20;
/// Lanes (the period of the bit positions, in bytes).
const LANES: usize = 160;

/// A running QuickXorHash.
///
/// # Examples
/// ```
/// use upload_session::onedrive::QuickXorHash;
/// let mut h = QuickXorHash::new();
/// h.update(b"hello ");
/// h.update(b"world");
/// assert_eq!(h.base64(), "aCgDG9jwBhDc4Q1yawMZAAAAAAA=");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "QuickXorSaved", try_from = "QuickXorSaved")]
pub struct QuickXorHash {
    /// Accumulator of the bytes already spread (spec layout, length not XORed in).
    acc: [u8; WIDTH],
    /// Lanes of bytes not yet spread: byte `k` (little-endian within the words) holds the
    /// XOR of every byte at a position `≡ k (mod 160)`.
    lanes: [u64; LANES / 8],
    /// Bytes fed so far.
    len: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for QuickXorHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuickXorHash")
            .field("len", &self.len)
            .field("digest", &self.base64())
            .finish()
    }
}

impl QuickXorHash {
    /// Returns the hash of an empty input.
    pub fn new() -> Self {
        Self {
            acc: [0; WIDTH],
            lanes: [0; LANES / 8],
            len: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn xor_byte(&mut self, lane: usize, b: u8) {
        if let Some(w) = self.lanes.get_mut(lane / 8) {
            *w ^= u64::from(b) << (8 * (lane % 8));
        }
    }

    /// Feeds the next bytes of the input.
    pub fn update(&mut self, data: &[u8]) {
        let mut lane = (self.len % LANES as u64) as usize;
        self.len = self.len.wrapping_add(data.len() as u64);
        let mut rest = data;
        // Bytes until the lane is word-aligned.
        while lane % 8 != 0 {
            let Some((&b, tail)) = rest.split_first() else {
                return;
            };
            self.xor_byte(lane, b);
            lane = (lane + 1) % LANES;
            rest = tail;
        }
        // Words until the lane is back at 0.
        while lane != 0 && rest.len() >= 8 {
            let (w, tail) = rest.split_at(8);
            if let (Ok(w), Some(slot)) = (<[u8; 8]>::try_from(w), self.lanes.get_mut(lane / 8)) {
                *slot ^= u64::from_le_bytes(w);
            }
            lane = (lane + 8) % LANES;
            rest = tail;
        }
        // Whole 160-byte periods: twenty independent word XORs each.
        if lane == 0 {
            let mut periods = rest.chunks_exact(LANES);
            for period in &mut periods {
                for (slot, w) in self.lanes.iter_mut().zip(period.chunks_exact(8)) {
                    if let Ok(w) = <[u8; 8]>::try_from(w) {
                        *slot ^= u64::from_le_bytes(w);
                    }
                }
            }
            rest = periods.remainder();
            while rest.len() >= 8 {
                let (w, tail) = rest.split_at(8);
                if let (Ok(w), Some(slot)) = (<[u8; 8]>::try_from(w), self.lanes.get_mut(lane / 8))
                {
                    *slot ^= u64::from_le_bytes(w);
                }
                lane = (lane + 8) % LANES;
                rest = tail;
            }
        }
        for &b in rest {
            self.xor_byte(lane, b);
            lane = (lane + 1) % LANES;
        }
    }

    /// Spreads the lanes into the accumulator (onedrive.md §7.2) and clears them.
    fn spread(&mut self) {
        if self.lanes.iter().all(|&w| w == 0) {
            return;
        }
        for lane in 0..LANES {
            let word = self.lanes.get(lane / 8).copied().unwrap_or(0);
            let b = (word >> (8 * (lane % 8))) as u8;
            if b == 0 {
                continue;
            }
            let bit = lane * 11 % (WIDTH * 8);
            let (byte, off) = (bit / 8, bit % 8);
            if let Some(a) = self.acc.get_mut(byte) {
                *a ^= b << off;
            }
            if off != 0 {
                if let Some(a) = self.acc.get_mut((byte + 1) % WIDTH) {
                    *a ^= b >> (8 - off);
                }
            }
        }
        self.lanes = [0; LANES / 8];
    }

    /// Returns the 20-byte digest of everything fed so far.
    pub fn digest(&self) -> [u8; WIDTH] {
        let mut s = self.clone();
        s.spread();
        let mut out = s.acc;
        for (o, x) in out[12..].iter_mut().zip(self.len.to_le_bytes()) {
            *o ^= x;
        }
        out
    }

    /// Returns the digest as standard padded base64 (28 characters), the form of
    /// `file.hashes.quickXorHash`.
    pub fn base64(&self) -> String {
        base64_encode(&self.digest())
    }

    /// Decodes a `quickXorHash` as a server sends it: base64 (28 characters), or the
    /// 40-digit hex that OneDrive Personal briefly returned (onedrive.md §7.1).
    pub fn decode_digest(text: &str) -> Option<[u8; WIDTH]> {
        let t = text.trim();
        let bytes = if t.len() == 2 * WIDTH {
            hex_decode(t)?
        } else {
            base64_decode(t)?
        };
        <[u8; WIDTH]>::try_from(bytes.as_slice()).ok()
    }
}

/// Serialised form: the spread accumulator (base64, without the length) and the length.
#[derive(Serialize, Deserialize)]
struct QuickXorSaved {
    accumulator: String,
    length: u64,
}

impl From<QuickXorHash> for QuickXorSaved {
    fn from(mut h: QuickXorHash) -> Self {
        h.spread();
        Self {
            accumulator: base64_encode(&h.acc),
            length: h.len,
        }
    }
}

impl TryFrom<QuickXorSaved> for QuickXorHash {
    type Error = &'static str;
    fn try_from(s: QuickXorSaved) -> Result<Self, Self::Error> {
        let acc = base64_decode(&s.accumulator)
            .and_then(|b| <[u8; WIDTH]>::try_from(b.as_slice()).ok())
            .ok_or("quickXorHash accumulator must be 20 bytes of base64")?;
        Ok(Self {
            acc,
            lanes: [0; LANES / 8],
            len: s.length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition of onedrive.md §7.2, as an independent reference.
    fn reference(data: &[u8]) -> [u8; 20] {
        let mut acc = [0u8; 20];
        for (i, &b) in data.iter().enumerate() {
            let bit = (i % 160) * 11 % 160;
            let (byte, off) = (bit / 8, bit % 8);
            acc[byte] ^= b << off;
            if off != 0 {
                acc[(byte + 1) % 20] ^= b >> (8 - off);
            }
        }
        for (k, x) in (data.len() as u64).to_le_bytes().iter().enumerate() {
            acc[12 + k] ^= x;
        }
        acc
    }

    fn b64(s: &str) -> Vec<u8> {
        base64_decode(s).unwrap()
    }

    #[test]
    fn rclone_vectors_from_the_spec() {
        let vectors = [
            ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
            ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
            ("0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="),
            ("/aNzzCFPS/A=", "/RjFHJgRgicsAR4ACAAAAAAAAAA="),
            ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
            (
                "T6LYJIfDh81JrAK309H2JMJTXis=",
                "zBTHrspn3mEcohlJdIUAbjGNaNg=",
            ),
            (
                "NbYXsp5/K6mR+NmHwExjvWeWDJFnXTKWVlzYHoesp2E=",
                "wjuAuWDiq04qDt1R8hHWDDcwVoQ=",
            ),
        ];
        for (input, want) in vectors {
            let mut h = QuickXorHash::new();
            h.update(&b64(input));
            assert_eq!(h.base64(), want, "input {input}");
        }
    }

    #[test]
    fn all_seventy_rclone_vectors() {
        let tsv = include_str!("../../../tests/tests/data/quickxorhash_rclone.tsv");
        let mut n = 0;
        for line in tsv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "{line}");
            let input = if cols[1] == "-" {
                Vec::new()
            } else {
                b64(cols[1])
            };
            assert_eq!(input.len(), cols[0].parse::<usize>().unwrap(), "{line}");
            // Fed in awkward pieces, to cross the word and period boundaries.
            let mut h = QuickXorHash::new();
            for piece in input.chunks(7) {
                h.update(piece);
            }
            assert_eq!(h.base64(), cols[2], "size {}", cols[0]);
            n += 1;
        }
        assert_eq!(n, 70);
    }

    #[test]
    fn ascii_vectors_from_the_spec() {
        let cases: [(&[u8], &str); 4] = [
            (b"a", "YQAAAAAAAAAAAAAAAQAAAAAAAAA="),
            (b"abc", "YRDDGAAAAAAAAAAAAwAAAAAAAAA="),
            (b"hello world", "aCgDG9jwBhDc4Q1yawMZAAAAAAA="),
            (
                b"The quick brown fox jumps over the lazy dog",
                "bMSlbysmxJL6S75XwfMcQZOpcr4=",
            ),
        ];
        for (input, want) in cases {
            let mut h = QuickXorHash::new();
            h.update(input);
            assert_eq!(h.base64(), want);
        }
        let mut zeros = QuickXorHash::new();
        zeros.update(&vec![0u8; 1 << 20]);
        assert_eq!(zeros.base64(), "AAAAAAAAAAAAAAAAAAAQAAAAAAA=");
        let mut a = QuickXorHash::new();
        a.update(&vec![b'a'; 327_680]);
        assert_eq!(a.base64(), "AAAAAAAAAAAAAAAAAAAFAAAAAAA=");
    }

    #[test]
    fn every_split_matches_the_bytewise_reference() {
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 131 + i / 7) as u8).collect();
        for len in [0usize, 1, 7, 8, 9, 159, 160, 161, 167, 320, 333, 1200] {
            let want = reference(&data[..len]);
            for split in [1usize, 2, 3, 7, 8, 16, 100, 160, 163, 512] {
                let mut h = QuickXorHash::new();
                for piece in data[..len].chunks(split) {
                    h.update(piece);
                }
                assert_eq!(h.digest(), want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn saved_state_resumes_at_any_point() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i ^ (i >> 3)) as u8).collect();
        for cut in [0usize, 1, 5, 8, 159, 160, 161, 999, 1000] {
            let mut h = QuickXorHash::new();
            h.update(&data[..cut]);
            let saved = serde_json::to_string(&h).unwrap();
            let mut r: QuickXorHash = serde_json::from_str(&saved).unwrap();
            r.update(&data[cut..]);
            assert_eq!(r.digest(), reference(&data), "cut {cut}");
        }
        assert!(
            serde_json::from_str::<QuickXorHash>(r#"{"accumulator":"AAAA","length":1}"#).is_err()
        );
    }

    #[test]
    fn digests_decode_from_base64_and_hex() {
        let want = reference(b"abc");
        assert_eq!(
            QuickXorHash::decode_digest("YRDDGAAAAAAAAAAAAwAAAAAAAAA="),
            Some(want)
        );
        assert_eq!(
            QuickXorHash::decode_digest("6110c31800000000000000000300000000000000"),
            Some(want)
        );
        assert_eq!(QuickXorHash::decode_digest("YRDD"), None);
        assert_eq!(QuickXorHash::decode_digest(""), None);
    }
}

#[cfg(test)]
mod throughput {
    /// `cargo test --release -p upload-session throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn quickxor_and_sha256_throughput() {
        let data = vec![0x5au8; 64 << 20];
        let t = std::time::Instant::now();
        let mut h = super::QuickXorHash::new();
        for piece in data.chunks(1 << 20) {
            h.update(&piece[1..]);
            h.update(&piece[..1]);
        }
        let qx = t.elapsed();
        let t = std::time::Instant::now();
        let mut s = crate::hash::Sha256State::new();
        s.update(&data);
        let sha = t.elapsed();
        let mb = data.len() as f64 / 1e6;
        println!(
            "QuickXorHash {:.0} MB/s, SHA-256 {:.0} MB/s ({})",
            mb / qx.as_secs_f64(),
            mb / sha.as_secs_f64(),
            h.base64()
        );
    }
}
