//! Core cost: CPU time and allocations per fragment of the protocol machines, hashing
//! excluded, and a proof of zero payload copies.
//!
//! Run: `cargo bench -p upload-session --bench core_cost` (criterion figures, then a
//! summary table at the realistic sizes of the end-to-end bench).
//!
//! # What is measured
//! One iteration drives a whole upload through the machine against an in-memory server
//! whose answers are built before the clock starts (a queue of `http::Response`s in the
//! order the protocol needs them), so the server costs nothing: the loop only polls,
//! slices the source (`Bytes::slice`: a reference-count increment), hands data over,
//! and feeds the prebuilt answers back.
//!
//! Hashing is excluded by stopping the clock around `provide_data`: in both machines
//! every digest is computed there (OneDrive: QuickXorHash + optional SHA-256;
//! Dropbox: the 4 MiB block digests of the chunk's `content_hash`, reused for the
//! whole-file hash), and nothing else of substance happens there (a range check and
//! storing the `Bytes` handle). So "protocol" time = the whole loop minus
//! `provide_data`, with no subtraction of two large noisy numbers. The summary also
//! shows, per fragment, `provide_data`'s time beside a plain hash of the same bytes, so
//! what `provide_data` adds beyond hashing is visible too. (Subtracting a separately
//! measured hash from a whole cycle would be swamped by the hash's own noise: at 10 MiB
//! the hash takes milliseconds, the protocol microseconds.)
//!
//! Allocations are counted by a counting `#[global_allocator]` (allocations and
//! reallocations; the bench is single-threaded while counting). Payload copies are
//! counted by address: every data request's body must point into the source buffer at
//! its own offset; the bench panics otherwise (`core/tests/zero_copy.rs` asserts the
//! same in `cargo test`).

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use upload_session::dropbox::{
    CommitInfo, DropboxConfig, DropboxUpload, SessionType, block_digests, content_hash,
    hash_of_digests,
};
use upload_session::hash::Sha256State;
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, QuickXorHash, Target};
use upload_session::{AccessToken, Output, UploadMachine};

// ---------------------------------------------------------------------------------------
// Counting allocator

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------
// Workloads

const UNIT: u64 = 327_680;
const MIB: u64 = 1024 * 1024;

/// Which machine, with which sizes.
#[derive(Clone, Copy, Debug)]
enum Kind {
    OneDrive { sha256: bool },
    DropboxSequential,
    DropboxConcurrent { parallelism: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Workload {
    kind: Kind,
    fragment: u64,
    fragments: u64,
    /// After each `provide_data` (outside the clock), overwrite a 32 MiB buffer, so the
    /// protocol runs with caches as cold as after hashing a large fragment.
    evict: bool,
}

impl Workload {
    fn size(&self) -> u64 {
        self.fragment * self.fragments
    }

    fn label(&self) -> String {
        let f = if self.fragment >= MIB {
            format!("{} MiB", self.fragment / MIB)
        } else {
            format!("{} KiB", self.fragment / 1024)
        };
        let f = if self.evict { format!("{f} cold") } else { f };
        match self.kind {
            Kind::OneDrive { sha256 } => {
                format!("onedrive {f}{}", if sha256 { " +sha256" } else { "" })
            }
            Kind::DropboxSequential => format!("dropbox sequential {f}"),
            Kind::DropboxConcurrent { parallelism } => {
                format!("dropbox concurrent {f} x{parallelism}")
            }
        }
    }
}

/// The source bytes: a deterministic pattern (so that every hash differs per position).
fn source(size: u64) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = vec![0u8; size as usize];
    for w in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let n = w.len();
        w.copy_from_slice(&b[..n]);
    }
    Bytes::from(v)
}

fn resp(status: u16, body: String) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

/// Everything one upload needs, built before the clock starts: the machine and the
/// server's answers in order.
// Built once per upload, outside the clock; boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
enum Machine {
    OneDrive(OneDriveUpload),
    Dropbox(DropboxUpload),
}

/// Hashes of the whole source, computed once per workload (the final answers carry
/// them; the machine compares).
struct Digests {
    quick_xor: String,
    sha256: String,
    content: String,
}

fn digests(data: &Bytes) -> Digests {
    let mut q = QuickXorHash::new();
    q.update(data);
    let mut s = Sha256State::new();
    s.update(data);
    Digests {
        quick_xor: q.base64(),
        sha256: s.hex().to_uppercase(),
        content: content_hash(data),
    }
}

const FAR: &str = "2100-01-01T00:00:00Z";

fn prepare(w: &Workload, d: &Digests) -> (Machine, VecDeque<http::Response<Bytes>>) {
    let size = w.size();
    let token = AccessToken::new("bench-token").unwrap();
    let mut answers = VecDeque::new();
    match w.kind {
        Kind::OneDrive { sha256 } => {
            let m = OneDriveUpload::builder(Target::path("/bench/file.bin"), size)
                .fragment_size(w.fragment)
                .verify_sha256(sha256)
                .config(OneDriveConfig::with_base("https://graph.test/v1.0"))
                .access_token(token)
                .build()
                .unwrap();
            answers.push_back(resp(
                200,
                format!(
                    r#"{{"uploadUrl":"https://up.test/s?tempauth=x","expirationDateTime":"{FAR}","nextExpectedRanges":["0-"]}}"#
                ),
            ));
            for i in 1..w.fragments {
                let end = i * w.fragment;
                answers.push_back(resp(
                    202,
                    format!(r#"{{"expirationDateTime":"{FAR}","nextExpectedRanges":["{end}-"]}}"#),
                ));
            }
            answers.push_back(resp(
                201,
                format!(
                    r#"{{"id":"ITEM-1","name":"file.bin","size":{size},"file":{{"hashes":{{"quickXorHash":"{}","sha256Hash":"{}"}}}}}}"#,
                    d.quick_xor, d.sha256
                ),
            ));
            (Machine::OneDrive(m), answers)
        }
        Kind::DropboxSequential | Kind::DropboxConcurrent { .. } => {
            let (t, p) = match w.kind {
                Kind::DropboxConcurrent { parallelism } => (SessionType::Concurrent, parallelism),
                _ => (SessionType::Sequential, 1),
            };
            let m = DropboxUpload::builder(CommitInfo::new("/bench/file.bin").unwrap(), size)
                .session_type(t)
                .chunk_size(w.fragment)
                .parallelism(p)
                .config(DropboxConfig::with_hosts(
                    "https://content.test/2/",
                    "https://api.test/2/",
                ))
                .access_token(token)
                .build()
                .unwrap();
            answers.push_back(resp(200, r#"{"session_id":"sid-1"}"#.into()));
            // Sequential: start carries chunk 0, the finish the last; concurrent: an
            // empty start, one append per chunk, an empty finish.
            let appends = match t {
                SessionType::Concurrent => w.fragments,
                _ => w.fragments - 2,
            };
            for _ in 0..appends {
                answers.push_back(resp(200, "null".into()));
            }
            answers.push_back(resp(
                200,
                format!(
                    r#"{{"name":"file.bin","id":"id:FILE1","rev":"0123456789abc","size":{size},"path_lower":"/bench/file.bin","path_display":"/bench/file.bin","client_modified":"2023-11-14T22:13:20Z","server_modified":"2023-11-14T22:13:20Z","content_hash":"{}"}}"#,
                    d.content
                ),
            ));
            (Machine::Dropbox(m), answers)
        }
    }
}

/// What one upload cost.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    /// Whole loop minus `provide_data`.
    protocol: Duration,
    /// Inside `provide_data` (hashing, mostly).
    provide: Duration,
    protocol_allocs: u64,
    protocol_alloc_bytes: u64,
    provide_allocs: u64,
    provide_alloc_bytes: u64,
    /// Time spent evicting caches (counted in `provide`, reported apart).
    evict: Duration,
    /// Data-carrying requests (fragments / chunks).
    data_requests: u64,
    /// Bytes carried by data requests.
    data_bytes: u64,
}

/// Drives one upload to the end with the prebuilt answers; panics on any failure or on
/// a copied payload.
fn run<M: UploadMachine>(
    m: &mut M,
    data: &Bytes,
    mut answers: VecDeque<http::Response<Bytes>>,
    mut evict: Option<&mut Vec<u8>>,
) -> Cost
where
    M::Completed: std::fmt::Debug,
{
    let base = data.as_ptr() as usize;
    let end = base + data.len();
    let now = Instant::now();
    let mut pending = Vec::with_capacity(64);
    let mut cost = Cost::default();
    let (a0, b0) = allocs();
    let t0 = Instant::now();
    loop {
        match m.poll_output(now) {
            Output::Send(req) => {
                let (id, request, _) = req.into_parts();
                let body = request.body();
                // Data requests: everything with a body that is not JSON (OneDrive
                // fragment PUTs, Dropbox start/append/finish as octet-stream).
                let json = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                if !body.is_empty() && !json {
                    let at = body.as_ptr() as usize;
                    // Zero payload copies: the body lies inside the source buffer.
                    assert!(at >= base && at + body.len() <= end, "payload copied");
                    cost.data_requests += 1;
                    cost.data_bytes += body.len() as u64;
                }
                pending.push((id, request));
            }
            Output::NeedData { offset, len } => {
                let slice = data.slice(offset as usize..(offset + len) as usize);
                let (pa, pb) = allocs();
                let t = Instant::now();
                m.provide_data(offset, slice).unwrap();
                cost.provide += t.elapsed();
                let (qa, qb) = allocs();
                cost.provide_allocs += qa - pa;
                cost.provide_alloc_bytes += qb - pb;
                if let Some(buf) = evict.as_deref_mut() {
                    let t = Instant::now();
                    let v = buf.first().copied().unwrap_or(0).wrapping_add(1);
                    buf.fill(v);
                    black_box(&buf);
                    // Outside the protocol's time, like provide_data.
                    cost.provide += t.elapsed();
                    cost.evict += t.elapsed();
                }
            }
            Output::Event(e) => drop(black_box(e)),
            Output::Wait(None) => {
                assert!(!pending.is_empty(), "waiting with nothing in flight");
                for (id, request) in pending.drain(..) {
                    drop(request);
                    let answer = answers.pop_front().expect("an answer for every request");
                    m.handle_response(now, id, answer).unwrap();
                }
            }
            Output::Wait(Some(_)) => panic!("no timers expected"),
            Output::Finished(r) => {
                black_box(r.expect("the upload succeeds"));
                break;
            }
        }
    }
    let total = t0.elapsed();
    let (a1, b1) = allocs();
    assert!(answers.is_empty(), "every prebuilt answer used");
    cost.protocol = total.saturating_sub(cost.provide);
    cost.protocol_allocs = (a1 - a0) - cost.provide_allocs;
    cost.protocol_alloc_bytes = (b1 - b0) - cost.provide_alloc_bytes;
    cost
}

struct Prepared {
    w: Workload,
    data: Bytes,
    digests: Digests,
}

impl Prepared {
    fn new(w: Workload) -> Self {
        let data = source(w.size());
        let digests = digests(&data);
        Self { w, data, digests }
    }

    fn once(&self) -> Cost {
        let (m, answers) = prepare(&self.w, &self.digests);
        let mut buf = self.w.evict.then(|| vec![0u8; 32 << 20]);
        let cost = match m {
            Machine::OneDrive(mut m) => run(&mut m, &self.data, answers, buf.as_mut()),
            Machine::Dropbox(mut m) => run(&mut m, &self.data, answers, buf.as_mut()),
        };
        assert_eq!(cost.data_bytes, self.w.size(), "every byte sent once");
        cost
    }
}

// ---------------------------------------------------------------------------------------
// Criterion: protocol time per upload of `fragments` fragments (hashing excluded)

fn bench_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_cost");
    // Small fragments keep the (excluded, but still executed) hashing short, so the
    // sampler gets many iterations; the protocol cost does not depend on the size.
    let workloads = [
        (
            Workload {
                kind: Kind::OneDrive { sha256: false },
                fragment: UNIT,
                fragments: 16,
                evict: false,
            },
            Duration::from_millis(400),
        ),
        (
            Workload {
                kind: Kind::DropboxSequential,
                fragment: 16 * 1024,
                fragments: 16,
                evict: false,
            },
            Duration::from_millis(400),
        ),
        (
            Workload {
                kind: Kind::DropboxConcurrent { parallelism: 4 },
                fragment: 4 * MIB,
                fragments: 8,
                evict: false,
            },
            Duration::from_millis(5),
        ),
    ];
    for (w, time) in workloads {
        let p = Prepared::new(w);
        g.sample_size(10)
            .warm_up_time(time / 4)
            .measurement_time(time);
        g.bench_function(
            format!("{} /upload of {} fragments", w.label(), w.fragments),
            |b| b.iter_custom(|iters| (0..iters).map(|_| p.once().protocol).sum::<Duration>()),
        );
    }
    g.finish();
}

criterion_group!(benches, bench_core);

// ---------------------------------------------------------------------------------------
// Summary at the end-to-end sizes

fn hash_only(kind: Kind, data: &[u8]) -> Duration {
    let t = Instant::now();
    match kind {
        Kind::OneDrive { sha256 } => {
            let mut q = QuickXorHash::new();
            q.update(data);
            black_box(q.digest());
            if sha256 {
                let mut s = Sha256State::new();
                s.update(data);
                black_box(s.hex());
            }
        }
        Kind::DropboxSequential | Kind::DropboxConcurrent { .. } => {
            let d = block_digests(data);
            black_box(hash_of_digests(&d));
        }
    }
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn summary() {
    const RUNS: usize = 5;
    println!();
    println!(
        "core cost per data request (median of {RUNS} uploads; protocol = whole loop minus provide_data)"
    );
    println!(
        "{:<36} {:>11} {:>10} {:>12} {:>12} {:>12} {:>7}",
        "machine / fragment",
        "protocol",
        "allocs",
        "alloc bytes",
        "provide_data",
        "hash alone",
        "copies"
    );
    let workloads = [
        Workload {
            kind: Kind::OneDrive { sha256: true },
            fragment: 32 * UNIT,
            fragments: 24,
            evict: false,
        },
        Workload {
            kind: Kind::OneDrive { sha256: false },
            fragment: 32 * UNIT,
            fragments: 24,
            evict: false,
        },
        Workload {
            kind: Kind::OneDrive { sha256: false },
            fragment: UNIT,
            fragments: 64,
            evict: false,
        },
        Workload {
            kind: Kind::OneDrive { sha256: false },
            fragment: UNIT,
            fragments: 64,
            evict: true,
        },
        Workload {
            kind: Kind::DropboxSequential,
            fragment: 8 * MIB,
            fragments: 24,
            evict: false,
        },
        Workload {
            kind: Kind::DropboxSequential,
            fragment: 4096,
            fragments: 256,
            evict: false,
        },
        Workload {
            kind: Kind::DropboxSequential,
            fragment: 4096,
            fragments: 256,
            evict: true,
        },
        Workload {
            kind: Kind::DropboxConcurrent { parallelism: 4 },
            fragment: 8 * MIB,
            fragments: 24,
            evict: false,
        },
    ];
    for w in workloads {
        let p = Prepared::new(w);
        p.once(); // warm-up
        let mut proto = Vec::new();
        let mut prov = Vec::new();
        let mut hash = Vec::new();
        let mut last = Cost::default();
        for _ in 0..RUNS {
            let c = p.once();
            let n = c.data_requests as f64;
            proto.push(c.protocol.as_secs_f64() / n);
            prov.push(c.provide.saturating_sub(c.evict).as_secs_f64() / n);
            let h: Duration = p
                .data
                .chunks(w.fragment as usize)
                .map(|piece| hash_only(w.kind, piece))
                .sum();
            hash.push(h.as_secs_f64() / n);
            last = c;
        }
        let n = last.data_requests;
        println!(
            "{:<36} {:>8.2} µs {:>10.1} {:>12.0} {:>9.1} µs {:>9.1} µs {:>7}",
            w.label(),
            median(proto) * 1e6,
            last.protocol_allocs as f64 / n as f64,
            last.protocol_alloc_bytes as f64 / n as f64,
            median(prov) * 1e6,
            median(hash) * 1e6,
            0
        );
    }
    println!(
        "(allocs/alloc bytes: per data request, protocol part only; provide_data's own allocations are the block-digest list;"
    );
    println!(
        " cold: a 32 MiB buffer is overwritten after each provide_data, outside the clock, as hashing a large fragment would)"
    );
}

/// `--callgrind`: one upload of each small-fragment workload and nothing else, for
/// `valgrind --tool=callgrind` (instruction counts do not depend on the machine's load):
/// `callgrind_annotate --inclusive=yes` then gives `poll_output`, `handle_response` and
/// `provide_data` per upload; divide by the fragment count.
fn callgrind() {
    for w in [
        Workload {
            kind: Kind::OneDrive { sha256: false },
            fragment: UNIT,
            fragments: 64,
            evict: false,
        },
        Workload {
            kind: Kind::DropboxSequential,
            fragment: 4096,
            fragments: 256,
            evict: false,
        },
    ] {
        let p = Prepared::new(w);
        let c = p.once();
        println!("{}: {} data requests", w.label(), c.data_requests);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--callgrind") {
        callgrind();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
