//! Hashing throughput of the core's digests against a memcpy of the same buffer and
//! against the raw `sha2` crate.
//!
//! Run: `cargo bench -p upload-session --bench hashing`.
//!
//! Criterion measures each digest over one 8 MiB buffer (a Dropbox chunk; it stays in
//! the L2/L3 cache as the upload's own buffer would be right after the read) and prints
//! GiB/s. A summary then prints decimal GB/s (10^9 B/s) and the ratios to memcpy and to
//! raw `sha2`, measured in the same run (best of 15 passes each, interleaved).
//!
//! Rows:
//! - `memcpy`: `copy_from_slice` into a second 8 MiB buffer (the bandwidth baseline);
//! - `quickxor core`: `upload_session::onedrive::QuickXorHash` (what the OneDrive machine
//!   feeds), and `quickxor crate`: the `quickxorhash` crate (0.1) for comparison;
//! - `sha256 core`: `upload_session::hash::Sha256State` (OneDrive's optional SHA-256, and
//!   the resumable state the checkpoints carry);
//! - `content_hash core`: `upload_session::dropbox::content_hash` (what a Dropbox chunk
//!   costs: the 4 MiB block digests plus the digest of digests), and the streaming
//!   `ContentHasher`;
//! - `sha2 raw`: `sha2::Sha256::digest` of the whole buffer (the hardware SHA-NI speed
//!   when the CPU has it).

use criterion::{Criterion, Throughput, criterion_group};
use sha2::Digest;
use std::hint::black_box;
use std::time::{Duration, Instant};
use upload_session::dropbox::{ContentHasher, content_hash};
use upload_session::hash::Sha256State;
use upload_session::onedrive::QuickXorHash;

const SIZE: usize = 8 * 1024 * 1024;

fn buffer() -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = vec![0u8; SIZE];
    for w in v.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    v
}

type Row = (&'static str, Box<dyn Fn(&[u8], &mut [u8])>);

fn rows() -> Vec<Row> {
    vec![
        (
            "memcpy",
            Box::new(|src: &[u8], dst: &mut [u8]| {
                dst.copy_from_slice(black_box(src));
                black_box(dst);
            }),
        ),
        (
            "quickxor core",
            Box::new(|src: &[u8], _: &mut [u8]| {
                let mut h = QuickXorHash::new();
                h.update(black_box(src));
                black_box(h.digest());
            }),
        ),
        (
            "quickxor crate",
            Box::new(|src: &[u8], _: &mut [u8]| {
                let mut h = quickxorhash::QuickXorHash::new();
                h.update(black_box(src));
                black_box(h.finalize());
            }),
        ),
        (
            "sha256 core (Sha256State)",
            Box::new(|src: &[u8], _: &mut [u8]| {
                let mut h = Sha256State::new();
                h.update(black_box(src));
                black_box(h.digest());
            }),
        ),
        (
            "content_hash core",
            Box::new(|src: &[u8], _: &mut [u8]| {
                black_box(content_hash(black_box(src)));
            }),
        ),
        (
            "ContentHasher core (streaming)",
            Box::new(|src: &[u8], _: &mut [u8]| {
                let mut h = ContentHasher::new();
                h.update(black_box(src));
                black_box(h.digest());
            }),
        ),
        (
            "sha2 raw (Sha256::digest)",
            Box::new(|src: &[u8], _: &mut [u8]| {
                black_box(sha2::Sha256::digest(black_box(src)));
            }),
        ),
    ]
}

fn bench_hashing(c: &mut Criterion) {
    let src = buffer();
    let mut dst = vec![1u8; SIZE];
    let mut g = c.benchmark_group("hashing 8 MiB");
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, f) in rows() {
        g.bench_function(name, |b| b.iter(|| f(&src, &mut dst)));
    }
    g.finish();
}

criterion_group!(benches, bench_hashing);

fn summary() {
    const PASSES: usize = 15;
    let src = buffer();
    let mut dst = vec![1u8; SIZE];
    let rows = rows();
    let mut best = vec![Duration::MAX; rows.len()];
    // Interleaved passes: each row once per pass, so load changes hit every row alike.
    for _ in 0..PASSES {
        for (i, (_, f)) in rows.iter().enumerate() {
            let t = Instant::now();
            f(&src, &mut dst);
            best[i] = best[i].min(t.elapsed());
        }
    }
    let gbps = |d: Duration| SIZE as f64 / d.as_secs_f64() / 1e9;
    let memcpy = gbps(best[0]);
    let sha = gbps(best[rows.len() - 1]);
    println!();
    println!("summary: 8 MiB buffer, best of {PASSES} interleaved passes, one core");
    println!(
        "{:<32} {:>9} {:>12} {:>12}",
        "", "GB/s", "vs memcpy", "vs sha2 raw"
    );
    for ((name, _), d) in rows.iter().zip(&best) {
        let r = gbps(*d);
        println!(
            "{name:<32} {r:>9.2} {:>11.2}x {:>11.2}x",
            r / memcpy,
            r / sha
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
