//! Digest test vectors and properties for `upload_session_emulator::hash`.
//!
//! - QuickXorHash: all 70 vectors of rclone's `quickxorhash_test.go`, the ASCII and long
//!   vectors and the service-side zero files of onedrive.md §7.3; the fast implementation
//!   against a byte-wise reference written straight from the §7.2 definition.
//! - Dropbox content hash: the vectors of dropbox.md §8.
//!
//! Every test name contains "hash" so that `cargo test -p upload-session-emulator hash`
//! selects them all.

use base64::Engine as _;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use upload_session_emulator::hash::{
    CONTENT_HASH_BLOCK, ContentHasher, QuickXorHash, content_hash_hex, quick_xor_hash_base64,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Byte-wise reference QuickXorHash (onedrive.md §7.2), deliberately naive.

#[derive(Clone)]
struct RefQxh {
    acc: [u8; 20],
    len: u64,
}

impl RefQxh {
    fn at(pos: u64) -> Self {
        Self {
            acc: [0; 20],
            len: pos,
        }
    }

    fn update(&mut self, data: &[u8]) {
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

    fn digest(&self) -> [u8; 20] {
        let mut out = self.acc;
        for (k, x) in self.len.to_le_bytes().iter().enumerate() {
            out[12 + k] ^= x;
        }
        out
    }
}

fn ref_qxh(data: &[u8]) -> [u8; 20] {
    let mut h = RefQxh::at(0);
    h.update(data);
    h.digest()
}

fn qxh(data: &[u8]) -> [u8; 20] {
    let mut h = QuickXorHash::new();
    h.update(data);
    h.digest()
}

/// The expected digest of an input whose 160-byte periods cancel out: only the length.
fn length_only(len: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[12..].copy_from_slice(&len.to_le_bytes());
    out
}

/// QuickXorHash of `total` zero bytes, fed from one reused buffer in `chunk`-sized updates.
fn qxh_zeros(total: u64, chunk: usize) -> QuickXorHash {
    let zeros = vec![0u8; chunk];
    let mut h = QuickXorHash::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    h
}

// ---------------------------------------------------------------------------------------
// rclone vectors (onedrive.md §7.3)

struct Vector {
    size: usize,
    input: Vec<u8>,
    want: [u8; 20],
    want_b64: String,
}

fn rclone_vectors() -> Vec<Vector> {
    include_str!("data/quickxorhash_rclone.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "bad data line {line:?}");
            let size: usize = cols[0].parse().expect("size");
            let input = if cols[1] == "-" {
                Vec::new()
            } else {
                B64.decode(cols[1]).expect("input base64")
            };
            let want: [u8; 20] = B64
                .decode(cols[2])
                .expect("digest base64")
                .try_into()
                .expect("20-byte digest");
            Vector {
                size,
                input,
                want,
                want_b64: cols[2].to_owned(),
            }
        })
        .collect()
}

#[test]
fn quickxorhash_rclone_vectors_are_all_present() {
    let sizes: Vec<usize> = rclone_vectors().iter().map(|v| v.size).collect();
    let mut expected: Vec<usize> = (0..=64).collect();
    expected.extend([111, 128, 222, 256, 333]);
    assert_eq!(sizes, expected);
    assert_eq!(sizes.len(), 70);
    for v in rclone_vectors() {
        assert_eq!(
            v.input.len(),
            v.size,
            "decoded input length of vector {}",
            v.size
        );
    }
}

#[test]
fn quickxorhash_rclone_vectors_one_shot() {
    for v in rclone_vectors() {
        assert_eq!(qxh(&v.input), v.want, "size {}", v.size);
        assert_eq!(
            quick_xor_hash_base64(&v.input),
            v.want_b64,
            "size {}",
            v.size
        );
        assert_eq!(ref_qxh(&v.input), v.want, "reference, size {}", v.size);
    }
}

#[test]
fn quickxorhash_rclone_vectors_by_block() {
    // The block sizes of rclone's TestQuickXorHashByBlock, plus some odd ones around the
    // 160-byte period.
    for block in [1, 2, 4, 7, 8, 16, 32, 64, 128, 159, 160, 161, 256, 319, 512] {
        for v in rclone_vectors() {
            let mut h = QuickXorHash::new();
            for piece in v.input.chunks(block) {
                h.update(piece);
            }
            assert_eq!(h.len(), v.size as u64);
            assert_eq!(h.digest(), v.want, "size {} block {block}", v.size);
        }
    }
}

#[test]
fn quickxorhash_rclone_vectors_from_pieces_at_positions() {
    // Each vector cut in three, each piece hashed at its absolute position, combined in
    // reverse order.
    for v in rclone_vectors() {
        let (a, b) = (v.size / 3, 2 * v.size / 3);
        let mut whole = QuickXorHash::new();
        for (start, piece) in [(b, &v.input[b..]), (a, &v.input[a..b]), (0, &v.input[..a])] {
            let mut h = QuickXorHash::at_position(start as u64);
            h.update(piece);
            whole.combine(&h);
        }
        assert_eq!(whole.len(), v.size as u64);
        assert_eq!(whole.digest(), v.want, "size {}", v.size);
    }
}

// ---------------------------------------------------------------------------------------
// Other vectors of onedrive.md §7.3

#[test]
fn quickxorhash_ascii_vectors() {
    let table: [(&[u8], &str, &str); 4] = [
        (
            b"a",
            "YQAAAAAAAAAAAAAAAQAAAAAAAAA=",
            "6100000000000000000000000100000000000000",
        ),
        (
            b"abc",
            "YRDDGAAAAAAAAAAAAwAAAAAAAAA=",
            "6110c31800000000000000000300000000000000",
        ),
        (
            b"hello world",
            "aCgDG9jwBhDc4Q1yawMZAAAAAAA=",
            "6828031bd8f00610dce10d726b03190000000000",
        ),
        (
            b"The quick brown fox jumps over the lazy dog",
            "bMSlbysmxJL6S75XwfMcQZOpcr4=",
            "6cc4a56f2b26c492fa4bbe57c1f31c4193a972be",
        ),
    ];
    for (input, b64, hex) in table {
        assert_eq!(quick_xor_hash_base64(input), b64);
        assert_eq!(hex::encode(qxh(input)), hex);
        assert_eq!(hex::encode(ref_qxh(input)), hex);
    }
}

#[test]
fn quickxorhash_empty_and_default() {
    let h = QuickXorHash::default();
    assert!(h.is_empty());
    assert_eq!(h.base64(), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let mut h = QuickXorHash::new();
    h.update(b"");
    assert!(h.is_empty());
    h.update(b"x");
    assert!(!h.is_empty());
    assert_eq!(h.len(), 1);
}

#[test]
fn quickxorhash_one_mib_of_zeros() {
    let zeros = vec![0u8; MIB];
    assert_eq!(
        quick_xor_hash_base64(&zeros),
        "AAAAAAAAAAAAAAAAAAAQAAAAAAA="
    );
    assert_eq!(ref_qxh(&zeros), length_only(MIB as u64));
}

#[test]
fn quickxorhash_327680_letters_a() {
    // 2048 repetitions of the 160-byte period cancel out: "length only".
    let input = vec![b'a'; 327_680];
    assert_eq!(
        quick_xor_hash_base64(&input),
        "AAAAAAAAAAAAAAAAAAAFAAAAAAA="
    );
    assert_eq!(ref_qxh(&input), length_only(327_680));
    // One more byte must not cancel.
    let mut h = QuickXorHash::new();
    h.update(&input);
    h.update(b"a");
    assert_ne!(h.digest(), length_only(327_681));
    assert_eq!(h.digest(), {
        let mut r = RefQxh::at(0);
        r.update(&input);
        r.update(b"a");
        r.digest()
    });
}

#[test]
fn quickxorhash_service_zero_file_personal_1_gib() {
    // onedrive.md §7.3 [OBS] #1157: OneDrive Personal, 1,073,741,824 zero bytes.
    let h = qxh_zeros(1 << 30, MIB);
    assert_eq!(h.len(), 1 << 30);
    assert_eq!(h.base64(), "AAAAAAAAAAAAAAAAAAAAQAAAAAA=");
}

#[test]
fn quickxorhash_service_zero_file_business_20_000_000() {
    // onedrive.md §7.3 [OBS] #1157: OneDrive for Business, 20,000,000 zero bytes.
    const WANT: &str = "AAAAAAAAAAAAAAAAAC0xAQAAAAA=";
    assert_eq!(qxh_zeros(20_000_000, MIB).base64(), WANT);
    // Odd update size: most updates start mid-period.
    assert_eq!(qxh_zeros(20_000_000, 65_537).base64(), WANT);
    // Two pieces at their absolute positions, combined in reverse order.
    let zeros = vec![0u8; 10_000_000];
    let mut tail = QuickXorHash::at_position(10_000_000);
    tail.update(&zeros);
    let mut head = QuickXorHash::new();
    head.update(&zeros);
    tail.combine(&head);
    assert_eq!(tail.base64(), WANT);
}

#[test]
fn quickxorhash_is_not_length_only_for_nonzero_data() {
    // Guards against an implementation that ignores the data: a single non-zero byte at
    // every period slot must change the digest, and to the reference's value.
    for pos in 0..320usize {
        let mut data = vec![0u8; 400];
        data[pos] = 0xA5;
        assert_ne!(qxh(&data), length_only(400), "pos {pos}");
        assert_eq!(qxh(&data), ref_qxh(&data), "pos {pos}");
    }
}

// ---------------------------------------------------------------------------------------
// QuickXorHash properties

/// Cut `data` at the given fractions (in 0..=1000 per mille) into consecutive pieces.
fn cut(data: &[u8], cuts: &[u16]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| data.len() * usize::from(c.min(1000)) / 1000)
        .collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.windows(2).map(|w| (w[0], w[1])).collect()
}

proptest! {
    #[test]
    fn quickxorhash_fast_equals_reference_with_random_splits(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(0u16..=1000, 0..8),
        start in prop_oneof![Just(0u64), 0u64..1000, 0u64..(1u64 << 40)],
    ) {
        let mut fast = QuickXorHash::at_position(start);
        for (a, b) in cut(&data, &cuts) {
            fast.update(&data[a..b]);
        }
        let mut reference = RefQxh::at(start);
        reference.update(&data);
        prop_assert_eq!(fast.len(), start + data.len() as u64);
        prop_assert_eq!(fast.digest(), reference.digest());
    }

    #[test]
    fn quickxorhash_pieces_combine_in_any_order(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(0u16..=1000, 0..8),
        order_keys in prop::collection::vec(any::<u32>(), 10),
    ) {
        let mut pieces: Vec<(u32, QuickXorHash)> = cut(&data, &cuts)
            .into_iter()
            .zip(order_keys)
            .map(|((a, b), key)| {
                let mut h = QuickXorHash::at_position(a as u64);
                h.update(&data[a..b]);
                (key, h)
            })
            .collect();
        pieces.sort_by_key(|(key, _)| *key);
        let mut combined = QuickXorHash::new();
        for (_, piece) in &pieces {
            combined.combine(piece);
        }
        prop_assert_eq!(combined.len(), data.len() as u64);
        prop_assert_eq!(combined.digest(), ref_qxh(&data));
        prop_assert_eq!(combined.digest(), qxh(&data));
    }
}

// ---------------------------------------------------------------------------------------
// Dropbox content hash (dropbox.md §8)

fn unhex32(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

#[test]
fn content_hash_milky_way_from_block_digests() {
    let blocks = [
        (
            4_194_304u64,
            "2a846fa617c3361fc117e1c5c1e1838c336b6a5cef982c1a2d9bdf68f2f1992a",
        ),
        (
            4_194_304,
            "c68469027410ea393eba6551b9fa1e26db775f00eae70a0c3c129a0011a39cf9",
        ),
        (
            1_322_815,
            "7376192de020925ce6c5ef5a8a0405e931b0a9a8c75517aacd9ca24a8a56818b",
        ),
    ];
    let mut h = ContentHasher::new();
    for (len, digest) in blocks {
        h.push_block_digest(&unhex32(digest), len);
    }
    assert_eq!(h.len(), 9_711_423);
    assert_eq!(
        h.hex(),
        "485291fa0ee50c016982abbfa943957bcd231aae0492ccbaa22c58e3997b35e0"
    );
}

#[test]
fn content_hash_synthetic_letter_a_vectors() {
    let table: [(usize, &str); 10] = [
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
            4_096,
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
    let letters = vec![b'A'; 8_388_609];
    for (n, want) in table {
        assert_eq!(content_hash_hex(&letters[..n]), want, "n = {n}");
        // Same through odd-sized updates.
        let mut h = ContentHasher::new();
        for piece in letters[..n].chunks(1_000_003) {
            h.update(piece);
        }
        assert_eq!(h.len(), n as u64);
        assert_eq!(h.hex(), want, "n = {n}, chunked");
    }
}

#[test]
fn content_hash_empty_has_no_blocks() {
    let h = ContentHasher::new();
    assert!(h.is_empty());
    assert_eq!(h.hex(), hex::encode(Sha256::digest(b"")));
}

#[test]
fn content_hash_hello_world_is_not_plain_sha256() {
    assert_eq!(
        content_hash_hex(b"hello world"),
        "bc62d4b80d9e36da29c16c5d4d9f11731f36052c72401a76c23c0fb5a9b74423"
    );
    assert_ne!(
        content_hash_hex(b"hello world"),
        hex::encode(Sha256::digest(b"hello world"))
    );
}

#[test]
fn content_hash_zero_vectors() {
    let zeros = vec![0u8; 2 * CONTENT_HASH_BLOCK + 1];
    assert_eq!(
        content_hash_hex(&zeros[..4 * MIB]),
        "c7e946d101855255d919ef0c70718633adf77d3dfb3adeeecf5d0cb4e951be58"
    );
    assert_eq!(
        content_hash_hex(&zeros),
        "0abd0f48fe25004ce9ca2e45df928ba9b1052f20666d7dde21ecdbeb7aa96482"
    );
}

#[test]
fn content_hash_rdrop2_byte_ramp_vectors() {
    let mut data: Vec<u8> = (0..4 * MIB).map(|i| (i % 256) as u8).collect();
    assert_eq!(
        content_hash_hex(&data),
        "894bbb52d1212d6bcbe9967f1a2169138c4d4af0c8dfbaeae86cd1d3f0c03faf"
    );
    data.push(0xFF);
    assert_eq!(
        content_hash_hex(&data),
        "9149387a91f71c7c2149b8427d15526b71c1a38d6c6f999ad71486a2ce788d57"
    );
}

#[test]
fn content_hash_block_digests_mix_with_streamed_bytes() {
    // A first block hashed elsewhere (Dropbox concurrent sessions), the rest streamed:
    // same hash as streaming everything (the 8,388,609 x 'A' vector).
    let letters = vec![b'A'; 8_388_609];
    let mut h = ContentHasher::new();
    let first: [u8; 32] = Sha256::digest(&letters[..CONTENT_HASH_BLOCK]).into();
    h.push_block_digest(&first, CONTENT_HASH_BLOCK as u64);
    h.update(&letters[CONTENT_HASH_BLOCK..]);
    assert_eq!(h.len(), 8_388_609);
    assert_eq!(
        h.hex(),
        "02c8a4aefc2bfc9036f89a7098001865885938ca580e5c9e5db672385edd303c"
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), cheap for multi-MiB inputs.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Content hash straight from the §8 definition, over a whole buffer.
fn ref_content_hash(data: &[u8]) -> String {
    let mut outer = Sha256::new();
    for block in data.chunks(CONTENT_HASH_BLOCK) {
        outer.update(Sha256::digest(block));
    }
    hex::encode(outer.finalize())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn content_hash_any_split_gives_the_same_hash(
        seed in any::<u64>(),
        len in prop_oneof![
            0usize..10_000,
            (CONTENT_HASH_BLOCK - 3000)..(CONTENT_HASH_BLOCK + 3000),
            (2 * CONTENT_HASH_BLOCK - 100)..(2 * CONTENT_HASH_BLOCK + 100),
        ],
        cuts in prop::collection::vec(0u16..=1000, 0..8),
    ) {
        let data = pseudo_random(seed, len);
        let want = ref_content_hash(&data);
        prop_assert_eq!(content_hash_hex(&data), want.clone());
        let mut h = ContentHasher::new();
        for (a, b) in cut(&data, &cuts) {
            h.update(&data[a..b]);
        }
        prop_assert_eq!(h.len(), len as u64);
        prop_assert_eq!(h.hex(), want);
    }
}
