//! Throughput of the emulator's digests over one 256 MiB buffer, against a memcpy of the
//! same buffer as a memory-bandwidth baseline.
//!
//! Run: `cargo bench -p upload-session-emulator --bench hash_speed`.
//! Prints the best of several runs in GB/s (10^9 bytes per second).

use std::hint::black_box;
use std::time::{Duration, Instant};
use upload_session_emulator::hash::{ContentHasher, QuickXorHash};

const SIZE: usize = 256 * 1024 * 1024;
const RUNS: usize = 5;
/// Feed size per `update` call for the "chunked" rows (a typical HTTP body frame).
const FRAME: usize = 64 * 1024;

fn best<F: FnMut()>(mut f: F) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn report(name: &str, d: Duration) {
    let gbps = SIZE as f64 / d.as_secs_f64() / 1e9;
    println!(
        "{name:<34} {gbps:>7.2} GB/s  ({:.1} ms)",
        d.as_secs_f64() * 1e3
    );
}

fn main() {
    // Deterministic pseudo-random bytes (xorshift64*), so no page is left untouched.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; SIZE];
    for word in buf.chunks_exact_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    let mut dst = vec![0u8; SIZE];
    dst.fill(1);

    println!("buffer: {} MiB, best of {RUNS} runs", SIZE >> 20);
    report(
        "memcpy (baseline)",
        best(|| {
            dst.copy_from_slice(black_box(&buf));
            black_box(&dst);
        }),
    );
    report(
        "QuickXorHash (one update)",
        best(|| {
            let mut h = QuickXorHash::new();
            h.update(black_box(&buf));
            black_box(h.digest());
        }),
    );
    report(
        "QuickXorHash (64 KiB+3 updates)",
        best(|| {
            let mut h = QuickXorHash::new();
            // Odd frame size so most updates start mid-period.
            for piece in black_box(&buf).chunks(FRAME + 3) {
                h.update(piece);
            }
            black_box(h.digest());
        }),
    );
    report(
        "Dropbox content hash",
        best(|| {
            let mut h = ContentHasher::new();
            h.update(black_box(&buf));
            black_box(h.digest());
        }),
    );
    report(
        "Dropbox content hash (64 KiB)",
        best(|| {
            let mut h = ContentHasher::new();
            for piece in black_box(&buf).chunks(FRAME) {
                h.update(piece);
            }
            black_box(h.digest());
        }),
    );
}
