//! A resumable SHA-256: the running state is plain data, so a checkpoint can hold it and
//! a later process can continue the digest where the first one stopped.
//!
//! The compression function comes from the `sha2` crate (its `compress` feature, which
//! uses SHA-NI / ARMv8 instructions when the CPU has them); padding, buffering and the
//! serialisable state are ours, because `sha2::Sha256` cannot export its state.

use crate::encoding::{hex_decode, hex_encode};
use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;
use std::fmt;

const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A running SHA-256 whose state can be saved (serde) and restored.
///
/// # Examples
/// ```
/// use upload_session::hash::Sha256State;
/// let mut a = Sha256State::new();
/// a.update(b"hello ");
/// let saved = serde_json::to_string(&a).unwrap();
/// let mut b: Sha256State = serde_json::from_str(&saved).unwrap();
/// b.update(b"world");
/// assert_eq!(
///     b.hex(),
///     "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
/// );
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Sha256Saved", into = "Sha256Saved")]
pub struct Sha256State {
    h: [u32; 8],
    buf: [u8; 64],
    buf_len: usize,
    len: u64,
}

impl Default for Sha256State {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sha256State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256State")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Sha256State {
    /// Returns the state of an empty input.
    pub fn new() -> Self {
        Self {
            h: H0,
            buf: [0; 64],
            buf_len: 0,
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

    fn compress(h: &mut [u32; 8], block: &[u8]) {
        sha2::compress256(h, std::slice::from_ref(GenericArray::from_slice(block)));
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(head);
            self.buf_len += take;
            data = rest;
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            Self::compress(&mut self.h, &block);
            self.buf_len = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            Self::compress(&mut self.h, block);
        }
        let rem = blocks.remainder();
        self.buf[..rem.len()].copy_from_slice(rem);
        self.buf_len = rem.len();
    }

    /// Returns the digest of everything fed so far (the state is left as it is).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = self.h;
        let mut block = [0u8; 128];
        block[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
        block[self.buf_len] = 0x80;
        let total = if self.buf_len < 56 { 64 } else { 128 };
        let bits = self.len.wrapping_mul(8).to_be_bytes();
        block[total - 8..total].copy_from_slice(&bits);
        for b in block[..total].chunks_exact(64) {
            Self::compress(&mut h, b);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(h.iter()) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Returns the digest as lowercase hex (64 characters).
    pub fn hex(&self) -> String {
        hex_encode(&self.digest())
    }
}

/// The serialised form of [`Sha256State`].
#[derive(Serialize, Deserialize)]
struct Sha256Saved {
    /// The eight chaining words, as 64 hex digits (big-endian words).
    state: String,
    /// Buffered bytes of the incomplete block, as hex.
    pending: String,
    /// Bytes fed so far.
    length: u64,
}

impl From<Sha256State> for Sha256Saved {
    fn from(s: Sha256State) -> Self {
        let mut words = Vec::with_capacity(32);
        for w in s.h {
            words.extend_from_slice(&w.to_be_bytes());
        }
        Self {
            state: hex_encode(&words),
            pending: hex_encode(&s.buf[..s.buf_len]),
            length: s.len,
        }
    }
}

impl TryFrom<Sha256Saved> for Sha256State {
    type Error = String;
    fn try_from(s: Sha256Saved) -> Result<Self, String> {
        let words = hex_decode(&s.state).filter(|w| w.len() == 32);
        let words = words.ok_or("sha256 state must be 64 hex digits")?;
        let pending = hex_decode(&s.pending).ok_or("sha256 pending bytes must be hex")?;
        if pending.len() >= 64 || (s.length % 64) as usize != pending.len() {
            return Err("sha256 pending bytes do not match the length".into());
        }
        let mut h = [0u32; 8];
        for (w, c) in h.iter_mut().zip(words.chunks_exact(4)) {
            *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        let mut buf = [0u8; 64];
        buf[..pending.len()].copy_from_slice(&pending);
        Ok(Self {
            h,
            buf,
            buf_len: pending.len(),
            len: s.length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Sha256State::new().hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut s = Sha256State::new();
        s.update(b"abc");
        assert_eq!(
            s.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn any_split_and_any_save_point_match_the_reference() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 999, 1000] {
            let want = hex_encode(&sha2::Sha256::digest(&data[..len]));
            for split in [0, 1, 17, 63, 64, 65, len / 2, len] {
                let split = split.min(len);
                let mut s = Sha256State::new();
                s.update(&data[..split]);
                let saved = serde_json::to_string(&s).unwrap();
                let mut r: Sha256State = serde_json::from_str(&saved).unwrap();
                r.update(&data[split..len]);
                assert_eq!(r.hex(), want, "len {len} split {split}");
                assert_eq!(r.len(), len as u64);
            }
        }
    }

    #[test]
    fn inconsistent_saved_state_is_rejected() {
        let bad = [
            r#"{"state":"00","pending":"","length":0}"#,
            r#"{"state":"6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19","pending":"00","length":0}"#,
            r#"{"state":"6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19","pending":"zz","length":1}"#,
        ];
        for b in bad {
            assert!(serde_json::from_str::<Sha256State>(b).is_err(), "{b}");
        }
    }
}
