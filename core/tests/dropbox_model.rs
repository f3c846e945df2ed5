//! Model-based tests: the Dropbox machines (sequential, concurrent, batch commit) driven
//! against the emulator's Dropbox model, in memory, with a virtual clock and seeded
//! fault plans.
//!
//! Every case comes from one `u64` seed (session type, file size, chunk size,
//! parallelism, fault rates, an existing file at the target, crash-and-resume point), so
//! a failure prints the seed and
//! `UPLOAD_SESSION_SEED=<seed> cargo test -p upload-session --test dropbox_model replay`
//! replays it (`UPLOAD_SESSION_TRACE=1` prints every request).
//!
//! The driver hands each request to the emulator when the machine sends it (so the server
//! sees requests in the order they were sent), then delivers the answers of everything in
//! flight in a seeded random order: concurrent appends complete out of order.
//!
//! Invariants checked for every case:
//! - the run ends within a bounded number of steps (no hang, no livelock);
//! - on success the emulator stores a file whose size, SHA-256 and content hash equal
//!   the source's, and the machine's metadata and content hash agree; for a batch, every
//!   entry;
//! - on failure the error is exactly the one the case forces: `path/conflict/file` when
//!   a different file already sits at the target (mode `add`), or an exhausted retry /
//!   restart budget with at least that many faults injected — never an integrity error;
//! - the emulator counted zero client rule violations;
//! - requests in flight never exceed the parallelism (1 for sequential sessions and
//!   batches), and no data range exceeds one chunk.
//!
//! Soak mode: `UPLOAD_SESSION_SOAK=10000 cargo test --release -p upload-session --test
//! dropbox_model soak -- --nocapture` runs that many cases of each kind.

use bytes::Bytes;
use proptest::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};
use upload_session::dropbox::{
    BatchCommit, BatchEntry, Checkpoint, CommitInfo, Completed, DropboxConfig, DropboxUpload,
    SessionType, WriteMode, content_hash,
};
use upload_session::hash::Sha256State;
use upload_session::retry::{Jitter, RetryPolicy};
use upload_session::testing::VirtualClock;
use upload_session::{
    AccessToken, Event, Output, SourceFingerprint, TransportFailure, UploadError, UploadMachine,
};
use upload_session_emulator::{
    Config, DEFAULT_TOKEN, Emulator, Fault, FaultPlan, FaultRates, ScriptedFault, Service,
    TransportFault,
};

const M: u64 = 1024 * 1024;
const BLOCK: u64 = 4 * M;
const MAX_STEPS: u64 = 200_000;

thread_local! {
    /// Crash-and-resume runs so far on this thread (for the soak summary).
    static RESUMES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The session types a case exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sequential,
    Concurrent,
    Batch,
}

/// What sits at the target before the upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    /// A different file, mode `add`: the commit must fail with `path/conflict/file`.
    ConflictAdd,
    /// A different file, mode `overwrite`.
    Overwrite,
    /// A different file, mode `add` with autorename.
    Autorename,
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    kind: Kind,
    /// File sizes (one per file; several for a batch).
    sizes: Vec<u64>,
    chunk: u64,
    parallelism: u32,
    last_in_finish: bool,
    group_size: usize,
    existing: Existing,
    rates: FaultRates,
    storm: bool,
    /// Any fault rate is non-zero.
    faulty: bool,
    crash_after: Option<u32>,
    crash_sent: bool,
}

impl Case {
    fn from_seed(seed: u64, kind: Kind) -> Case {
        let mut r = Jitter::new(seed ^ 0xD80B_0C5E_55A1_0000 ^ (kind as u64) << 60);
        let mut below = |n: u64| r.next_u64() % n.max(1);
        let (chunk, sizes) = match kind {
            Kind::Sequential => {
                let chunk = match below(3) {
                    0 => 1 + below(4096),
                    1 => 16 * 1024 * (1 + below(16)),
                    _ => BLOCK,
                };
                let size = match below(8) {
                    0 => below(3),
                    1 => 1 + below(chunk),
                    2 => (chunk * (1 + below(4))).min(3 * BLOCK),
                    _ => 1 + below(chunk * 5).min(3 * BLOCK),
                };
                (chunk, vec![size])
            }
            Kind::Concurrent => {
                let chunk = BLOCK;
                let size = match below(4) {
                    0 => BLOCK * (2 + below(2)),
                    1 => BLOCK + 1 + below(4096),
                    _ => BLOCK + 1 + below(2 * BLOCK),
                };
                (chunk, vec![size])
            }
            Kind::Batch => {
                let chunk = 1 + below(64 * 1024);
                let n = 1 + below(5);
                (chunk, (0..n).map(|_| below(3 * chunk)).collect())
            }
        };
        let faulty = below(10) != 0;
        let heavy = below(4) == 0;
        let storm = faulty && below(25) == 0;
        let mut rate = |max: u64| -> f64 {
            if !faulty || below(3) == 0 {
                0.0
            } else {
                below(max + 1) as f64 / 1000.0
            }
        };
        let m = if heavy { 120 } else { 50 };
        let rates = FaultRates {
            throttle: rate(m),
            unavailable: rate(m),
            error_before: if storm { 0.97 } else { rate(m) },
            error_after: rate(m),
            lost_response: rate(m),
            reset_discard: rate(m),
            reset_keep_prefix: 0.0,
            transient_404: 0.0,
            slow_finish: rate(m),
            lock_contention: rate(m),
            expire_token: rate(m / 2),
            stall: 0.0,
            retry_after_secs: below(4),
            delay_ms: 100 + below(3000),
        };
        let existing = if kind == Kind::Batch {
            Existing::Nothing
        } else {
            match below(16) {
                0 => Existing::ConflictAdd,
                1 => Existing::Overwrite,
                2 => Existing::Autorename,
                _ => Existing::Nothing,
            }
        };
        let crash = kind != Kind::Batch && below(4) == 0;
        Case {
            seed,
            kind,
            sizes,
            chunk,
            parallelism: 1 + below(4) as u32,
            last_in_finish: below(2) == 0,
            group_size: 1 + below(3) as usize,
            existing,
            rates,
            storm,
            faulty,
            crash_after: crash.then(|| below(4) as u32),
            crash_sent: below(2) == 0,
        }
    }
}

/// One shared source buffer; each file is a slice of it at a seed-dependent offset, so
/// contents differ between cases without generating megabytes per case.
fn source(seed: u64, index: usize, size: u64) -> Bytes {
    static BIG: OnceLock<Bytes> = OnceLock::new();
    const SPAN: u64 = 1 << 20;
    let big = BIG.get_or_init(|| {
        let n = 13 * M + SPAN;
        let mut r = Jitter::new(0xB16_DA7A);
        let mut v = Vec::with_capacity(n as usize);
        while (v.len() as u64) < n {
            v.extend_from_slice(&r.next_u64().to_le_bytes());
        }
        v.truncate(n as usize);
        Bytes::from(v)
    });
    let off = (seed.wrapping_mul(7919).wrapping_add(index as u64 * 104_729)) % SPAN;
    big.slice(off as usize..(off + size) as usize)
}

fn trace() -> bool {
    std::env::var("UPLOAD_SESSION_TRACE").is_ok()
}

/// What the network did with a request.
enum Delivery {
    Response(http::Response<Bytes>),
    Delayed(Duration, http::Response<Bytes>),
    Failure(TransportFailure),
}

fn to_delivery(resp: http::Response<Bytes>) -> Delivery {
    match TransportFault::of(&resp) {
        Some(TransportFault::LostResponse) => Delivery::Failure(TransportFailure::Closed),
        Some(TransportFault::Reset) => Delivery::Failure(TransportFailure::Reset),
        Some(TransportFault::Delay(d)) => Delivery::Delayed(d, resp),
        None => Delivery::Response(resp),
    }
}

/// What one drive produced.
struct Report<C> {
    result: Option<Result<C, UploadError>>,
    steps: u64,
    max_in_flight: usize,
    max_data_len: u64,
    stuck: bool,
    /// Stopped at a simulated crash, with the last checkpoint.
    crashed: Option<Checkpoint>,
    /// Requests sent after the crash decision (never answered).
    abandoned: Vec<http::Request<Bytes>>,
    trace: Vec<String>,
}

/// Drives `m` against the emulator: requests reach the server as they are sent; answers
/// come back in a seeded random order.
#[allow(clippy::too_many_arguments)]
fn drive<M: UploadMachine>(
    m: &mut M,
    emu: &RefCell<Emulator>,
    token: &RefCell<String>,
    clock: &mut VirtualClock,
    data: &Bytes,
    rng: &mut Jitter,
    crash_after: Option<u32>,
    as_checkpoint: impl Fn(&Event<M::Checkpoint>) -> Option<Checkpoint>,
) -> Report<M::Completed>
where
    M::Checkpoint: std::fmt::Debug,
{
    let mut rep = Report {
        result: None,
        steps: 0,
        max_in_flight: 0,
        max_data_len: 0,
        stuck: false,
        crashed: None,
        abandoned: Vec::new(),
        trace: Vec::new(),
    };
    let mut flights: Vec<(
        upload_session::RequestId,
        Option<std::time::Instant>,
        Delivery,
    )> = Vec::new();
    let mut checkpoints = 0u32;
    let mut last_cp: Option<Checkpoint> = None;
    let mut stopping = false;
    m.handle_wall_clock(clock.now(), clock.wall());
    while rep.steps < MAX_STEPS {
        rep.steps += 1;
        match m.poll_output(clock.now()) {
            Output::Send(req) => {
                let (id, request, deadline) = req.into_parts();
                if stopping {
                    rep.abandoned.push(request);
                    continue;
                }
                let line = format!(
                    "{:.3} {} {}",
                    clock.elapsed().as_secs_f64(),
                    request.uri().path().rsplit('/').next().unwrap_or(""),
                    request
                        .headers()
                        .get("dropbox-api-arg")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .chars()
                        .filter(|c| *c != '"')
                        .take(120)
                        .collect::<String>()
                );
                let resp = emu.borrow_mut().handle(clock.wall(), request);
                let line = format!(
                    "{line} -> {} {:?} {}",
                    resp.status().as_u16(),
                    TransportFault::of(&resp),
                    String::from_utf8_lossy(resp.body())
                        .chars()
                        .take(200)
                        .collect::<String>()
                );
                if trace() {
                    println!("  {line}");
                }
                rep.trace.push(line);
                flights.push((id, deadline, to_delivery(resp)));
                rep.max_in_flight = rep.max_in_flight.max(flights.len());
            }
            Output::NeedData { offset, len } => {
                rep.max_data_len = rep.max_data_len.max(len);
                let Some(d) = data
                    .get(offset as usize..(offset + len) as usize)
                    .map(|_| data.slice(offset as usize..(offset + len) as usize))
                else {
                    break;
                };
                if m.provide_data(offset, d).is_err() {
                    break;
                }
            }
            Output::Event(e) => {
                if trace() {
                    println!("    {e:?}");
                }
                if let Some(cp) = as_checkpoint(&e) {
                    checkpoints += 1;
                    last_cp = Some(cp);
                    if crash_after == Some(checkpoints) {
                        stopping = true;
                    }
                }
                if matches!(e, Event::TokenNeeded) {
                    let fresh = emu.borrow_mut().issue_token();
                    if let Ok(t) = AccessToken::new(&fresh) {
                        *token.borrow_mut() = fresh;
                        m.set_access_token(t);
                    }
                }
            }
            Output::Wait(w) => {
                if stopping {
                    rep.crashed = last_cp.take();
                    break;
                }
                if !flights.is_empty() {
                    let i = (rng.next_u64() % flights.len() as u64) as usize;
                    let (id, deadline, delivery) = flights.swap_remove(i);
                    m.handle_wall_clock(clock.now(), clock.wall());
                    let r = match delivery {
                        Delivery::Response(r) => m.handle_response(clock.now(), id, r),
                        Delivery::Failure(f) => m.handle_failure(clock.now(), id, f),
                        Delivery::Delayed(d, r) => {
                            clock.advance(d);
                            if deadline.is_some_and(|t| clock.now() > t) {
                                m.handle_failure(clock.now(), id, TransportFailure::TimedOut)
                            } else {
                                m.handle_response(clock.now(), id, r)
                            }
                        }
                    };
                    if r.is_err() {
                        break;
                    }
                } else if let Some(t) = w {
                    clock.advance_to(t);
                    m.handle_wall_clock(clock.now(), clock.wall());
                    m.handle_timeout(clock.now());
                } else {
                    rep.stuck = true;
                    break;
                }
            }
            Output::Finished(r) => {
                rep.result = Some(r);
                break;
            }
        }
    }
    rep
}

fn emulator(case: &Case) -> Emulator {
    let mut config = Config::default();
    config.digests.quick_xor = false;
    let plan = FaultPlan {
        seed: case.seed,
        rates: case.rates.clone(),
        scripted: Vec::new(),
    };
    Emulator::with_faults(config, plan)
}

fn machine_config(case: &Case, base: &str) -> DropboxConfig {
    let mut cfg = DropboxConfig::with_hosts(
        format!("{base}/dropbox/content/2/"),
        format!("{base}/dropbox/api/2"),
    );
    cfg.retry = RetryPolicy {
        seed: case.seed,
        ..RetryPolicy::default()
    };
    // Above every injected delay (≤ 3.1 s): the pure emulator counts a slow answer as
    // delivered, so a client timing out on it would look like a rule breaker.
    cfg.request_timeout = Duration::from_secs(10);
    cfg.min_throughput = 1 << 30;
    cfg
}

fn path_of(case: &Case, i: usize) -> String {
    format!("/model/{:?}/f-{}-{i} é😀.bin", case.kind, case.seed)
}

fn commit_of(case: &Case, i: usize) -> Result<CommitInfo, String> {
    let c = CommitInfo::new(path_of(case, i)).map_err(|e| e.to_string())?;
    Ok(match case.existing {
        Existing::Overwrite => c.mode(WriteMode::Overwrite),
        Existing::Autorename => c.autorename(true),
        _ => c,
    })
}

#[derive(Debug)]
enum Outcome {
    Uploaded,
    /// The typed error the case forces.
    Forced(UploadError),
}

/// True when `e` is what the fault plan or the existing file forces.
fn forced(case: &Case, e: &UploadError, injected: u64) -> bool {
    match e {
        UploadError::TooManyRetries { attempts, .. } => {
            *attempts > 0 && injected >= u64::from(*attempts)
        }
        UploadError::TooManyRestarts { restarts, .. } => injected >= u64::from(*restarts),
        UploadError::Conflict { codes } => {
            case.existing == Existing::ConflictAdd && codes.0 == ["path", "conflict", "file"]
        }
        _ => false,
    }
}

fn check_stored(emu: &Emulator, path: &str, src: &Bytes) -> Result<(), String> {
    let rec = emu
        .file(Service::Dropbox, path)
        .ok_or_else(|| format!("no file at {path}"))?;
    let mut s = Sha256State::new();
    s.update(src);
    if rec.content.size != src.len() as u64 {
        return Err(format!(
            "stored {} bytes of {}",
            rec.content.size,
            src.len()
        ));
    }
    if rec.content.sha256.as_deref() != Some(s.hex().as_str()) {
        return Err("stored SHA-256 differs from the source".into());
    }
    if rec.content.content_hash.as_deref() != Some(content_hash(src).as_str()) {
        return Err("stored content hash differs from the source".into());
    }
    Ok(())
}

fn check_committed(
    emu: &Emulator,
    case: &Case,
    i: usize,
    done: &Completed,
    src: &Bytes,
) -> Result<(), String> {
    let Completed::Committed(c) = done else {
        return Err("a committing upload returned a closed session".into());
    };
    if c.metadata.size != src.len() as u64 || c.content_hash != content_hash(src) {
        return Err("the machine's metadata disagrees with the source".into());
    }
    if !c.hash_verified {
        return Err("the emulator reports content_hash, yet it was not verified".into());
    }
    let path = match case.existing {
        Existing::Autorename => c.metadata.path_display.clone().ok_or("no path_display")?,
        _ => path_of(case, i),
    };
    check_stored(emu, &path, src)
}

/// Runs one upload (with an optional crash-and-resume); returns its result and steps.
#[allow(clippy::too_many_arguments)]
fn upload_one(
    case: &Case,
    emu: &RefCell<Emulator>,
    token: &RefCell<String>,
    clock: &mut VirtualClock,
    rng: &mut Jitter,
    i: usize,
    for_batch: bool,
    trace_out: &mut Vec<String>,
) -> Result<Result<Completed, UploadError>, String> {
    let size = case.sizes[i];
    let src = source(case.seed, i, size);
    let base = emu.borrow().config().base_url.clone();
    let fingerprint = SourceFingerprint::new(size, format!("seed-{}-{i}", case.seed));
    let b = if for_batch {
        DropboxUpload::builder_for_batch(size)
    } else {
        DropboxUpload::builder(commit_of(case, i)?, size)
    };
    let session_type = if case.kind == Kind::Concurrent {
        SessionType::Concurrent
    } else {
        SessionType::Sequential
    };
    let mut m = b
        .session_type(session_type)
        .chunk_size(case.chunk)
        .parallelism(case.parallelism)
        .last_chunk_in_finish(case.last_in_finish)
        .fingerprint(fingerprint.clone())
        .config(machine_config(case, &base))
        .access_token(AccessToken::new(token.borrow().as_str()).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| format!("build: {e}"))?;
    let as_cp = |e: &Event<Checkpoint>| match e {
        Event::Checkpoint(c) => Some(c.clone()),
        _ => None,
    };
    let limit = if session_type == SessionType::Concurrent && size > case.chunk {
        case.parallelism as usize
    } else {
        1
    };
    let mut rep = drive(
        &mut m,
        emu,
        token,
        clock,
        &src,
        rng,
        case.crash_after,
        as_cp,
    );
    let mut steps = rep.steps;
    trace_out.append(&mut rep.trace);
    check_limits(&rep, limit, case.chunk)?;
    if let Some(cp) = rep.crashed.take() {
        // The process dies; requests it was sending did or did not reach the server. A
        // request that reached it is applied, but its answer died with the process: the
        // emulator must see a lost response, not a delivered one.
        if case.crash_sent {
            let mut e = emu.borrow_mut();
            let plan = e.fault_plan().clone();
            for req in &rep.abandoned {
                e.set_fault_plan(FaultPlan {
                    seed: plan.seed,
                    rates: FaultRates::default(),
                    scripted: vec![ScriptedFault {
                        route: None,
                        nth: 1,
                        fault: Fault::LostResponse,
                    }],
                });
                let _ = e.handle(clock.wall(), req.clone());
            }
            e.set_fault_plan(plan);
        }
        let json = cp.to_json().map_err(|e| e.to_string())?;
        let cp = Checkpoint::from_json(&json).map_err(|e| e.to_string())?;
        RESUMES.with(|r| r.set(r.get() + 1));
        // The new process logs in again.
        let fresh = emu.borrow_mut().issue_token();
        *token.borrow_mut() = fresh.clone();
        let t = AccessToken::new(fresh).ok();
        let mut m2 = DropboxUpload::resume(cp, &fingerprint, machine_config(case, &base), t)
            .map_err(|e| format!("resume: {e}"))?;
        rep = drive(&mut m2, emu, token, clock, &src, rng, None, as_cp);
        trace_out.append(&mut rep.trace);
        check_limits(&rep, limit, case.chunk)?;
        steps += rep.steps;
    }
    if rep.stuck {
        return Err("the machine got stuck waiting".into());
    }
    rep.result
        .ok_or_else(|| format!("no result after {steps} steps"))
}

fn check_limits<C>(rep: &Report<C>, limit: usize, chunk: u64) -> Result<(), String> {
    if rep.max_in_flight > limit {
        return Err(format!(
            "{} requests in flight (limit {limit})",
            rep.max_in_flight
        ));
    }
    if rep.max_data_len > chunk.max(BLOCK) {
        return Err(format!("asked for {} bytes at once", rep.max_data_len));
    }
    Ok(())
}

/// Runs a case; returns its outcome and a trace (for the reproducibility check).
fn run_case(case: &Case) -> Result<(Outcome, Vec<String>), String> {
    let emu = RefCell::new(emulator(case));
    let mut clock = VirtualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let mut rng = Jitter::new(case.seed ^ 0x0DD5);
    let mut trace = Vec::new();
    let token = RefCell::new(DEFAULT_TOKEN.to_string());
    if case.existing != Existing::Nothing {
        let other = source(case.seed ^ 1, 9, 1000);
        emu.borrow_mut()
            .dropbox_mut()
            .seed_file(&path_of(case, 0), &other)
            .ok_or("could not seed the existing file")?;
    }
    let outcome = match case.kind {
        Kind::Sequential | Kind::Concurrent => {
            let r = upload_one(
                case, &emu, &token, &mut clock, &mut rng, 0, false, &mut trace,
            )?;
            let e = emu.borrow();
            let v: Vec<_> = e.violations().iter().collect();
            if !v.is_empty() {
                return Err(format!("emulator violations: {v:?}"));
            }
            match r {
                Ok(done) => {
                    if case.existing == Existing::ConflictAdd {
                        return Err("committed over a different file in mode add".into());
                    }
                    let src = source(case.seed, 0, case.sizes[0]);
                    check_committed(&e, case, 0, &done, &src)?;
                    Outcome::Uploaded
                }
                Err(err) => {
                    let injected = e.snapshot().faults_injected;
                    if !forced(case, &err, injected) {
                        return Err(format!("failed with {err} ({injected} faults injected)"));
                    }
                    Outcome::Forced(err)
                }
            }
        }
        Kind::Batch => run_batch(case, &emu, &token, &mut clock, &mut rng, &mut trace)?,
    };
    Ok((outcome, trace))
}

fn run_batch(
    case: &Case,
    emu: &RefCell<Emulator>,
    token: &RefCell<String>,
    clock: &mut VirtualClock,
    rng: &mut Jitter,
    trace: &mut Vec<String>,
) -> Result<Outcome, String> {
    let mut entries = Vec::new();
    for i in 0..case.sizes.len() {
        match upload_one(case, emu, token, clock, rng, i, true, trace)? {
            Ok(Completed::Closed { session, .. }) => {
                let src = source(case.seed, i, case.sizes[i]);
                if session.size != src.len() as u64 || session.content_hash != content_hash(&src) {
                    return Err(format!("closed session {i} disagrees with its source"));
                }
                entries.push(BatchEntry {
                    session,
                    commit: commit_of(case, i)?,
                });
            }
            Ok(other) => return Err(format!("expected a closed session, got {other:?}")),
            Err(e) => {
                let injected = emu.borrow().snapshot().faults_injected;
                if forced(case, &e, injected) {
                    return Ok(Outcome::Forced(e));
                }
                return Err(format!("upload {i} failed with {e}"));
            }
        }
    }
    let base = emu.borrow().config().base_url.clone();
    let mut b = BatchCommit::builder(entries)
        .group_size(case.group_size)
        .config(machine_config(case, &base))
        .access_token(AccessToken::new(token.borrow().as_str()).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| format!("batch build: {e}"))?;
    let mut rep = drive(&mut b, emu, token, clock, &Bytes::new(), rng, None, |_| {
        None
    });
    trace.append(&mut rep.trace);
    check_limits(&rep, 1, case.chunk)?;
    if rep.stuck {
        return Err("the batch got stuck waiting".into());
    }
    let out = rep
        .result
        .ok_or("no batch result")?
        .map_err(|e| format!("batch failed as a whole: {e}"))?;
    let e = emu.borrow();
    let v: Vec<_> = e.violations().iter().collect();
    if !v.is_empty() {
        return Err(format!("emulator violations: {v:?}"));
    }
    let injected = e.snapshot().faults_injected;
    let mut forced_err = None;
    for (i, r) in out.entries.iter().enumerate() {
        let src = source(case.seed, i, case.sizes[i]);
        match r {
            Ok(c) => {
                if c.metadata.size != src.len() as u64 || !c.hash_verified {
                    return Err(format!("entry {i}: metadata disagrees"));
                }
                check_stored(&e, &path_of(case, i), &src)?;
            }
            Err(err) if forced(case, err, injected) => forced_err = Some(err.clone()),
            Err(err) => return Err(format!("entry {i} failed with {err} ({injected} faults)")),
        }
    }
    Ok(match forced_err {
        Some(e) => Outcome::Forced(e),
        None => Outcome::Uploaded,
    })
}

fn check_seed(seed: u64, kind: Kind) -> Result<Outcome, String> {
    check_seed_traced(seed, kind).map(|(o, _)| o)
}

fn check_seed_traced(seed: u64, kind: Kind) -> Result<(Outcome, Vec<String>), String> {
    let case = Case::from_seed(seed, kind);
    run_case(&case).map_err(|e| format!("seed {seed} {kind:?}: {e}\n{case:#?}"))
}

/// Counts of what the soak exercised, from the request traces.
#[derive(Default)]
struct Stats {
    requests: u64,
    by_route: std::collections::BTreeMap<String, u64>,
    by_answer: std::collections::BTreeMap<String, u64>,
}

impl Stats {
    fn add(&mut self, trace: &[String]) {
        for line in trace {
            self.requests += 1;
            let mut it = line.split_whitespace();
            let _time = it.next();
            let route = it.next().unwrap_or("").to_string();
            *self.by_route.entry(route).or_default() += 1;
            let answer = match line.split(" -> ").nth(1) {
                Some(a) => {
                    let mut w = a.split_whitespace();
                    let status = w.next().unwrap_or("");
                    let fault = w.next().unwrap_or("");
                    let summary = a
                        .split("\"error_summary\":")
                        .nth(1)
                        .and_then(|t| t.trim_start().strip_prefix('"'))
                        .and_then(|t| t.split('"').next())
                        .map(|t| t.trim_end_matches(['.', '/']))
                        .unwrap_or("");
                    if fault != "None" {
                        let fault = fault.split('(').take(2).collect::<Vec<_>>().join("(");
                        format!("{status} {fault}")
                    } else if !summary.is_empty() {
                        format!("{status} {summary}")
                    } else {
                        status.to_string()
                    }
                }
                None => "?".into(),
            };
            *self.by_answer.entry(answer).or_default() += 1;
        }
    }
}

fn soak_cases() -> u64 {
    std::env::var("UPLOAD_SESSION_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn soak_kind(kind: Kind) {
    let n = soak_cases();
    let start: u64 = std::env::var("UPLOAD_SESSION_SEED_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let t0 = std::time::Instant::now();
    let (mut ok, mut forced_errs, mut calm_forced) = (0u64, Vec::new(), 0u64);
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    let mut faulted = 0u64;
    let resumes0 = RESUMES.with(|r| r.get());
    for seed in start..start + n {
        faulted += u64::from(Case::from_seed(seed, kind).faulty);
        let r = check_seed_traced(seed, kind).map(|(o, t)| {
            stats.add(&t);
            o
        });
        match r {
            Ok(Outcome::Uploaded) => ok += 1,
            Ok(Outcome::Forced(e)) => {
                let c = Case::from_seed(seed, kind);
                if !c.storm && c.existing != Existing::ConflictAdd {
                    calm_forced += 1;
                }
                forced_errs.push((seed, e));
            }
            Err(e) => failures.push(e),
        }
    }
    let conflicts = forced_errs
        .iter()
        .filter(|(_, e)| matches!(e, UploadError::Conflict { .. }))
        .count();
    println!(
        "soak {kind:?}: {n} cases in {:.1}s, {ok} byte-exact, {} ended with the error their \
         case forces ({conflicts} conflicts with an existing file, {calm_forced} budget \
         exhaustions outside storms), {} failed",
        t0.elapsed().as_secs_f64(),
        forced_errs.len(),
        failures.len()
    );
    println!(
        "  {faulted} cases with faults, {} crash-and-resume runs",
        RESUMES.with(|r| r.get()) - resumes0
    );
    println!(
        "  {} requests; by route {:?}",
        stats.requests, stats.by_route
    );
    println!("  answers {:?}", stats.by_answer);
    for (seed, e) in forced_errs
        .iter()
        .filter(|(_, e)| !matches!(e, UploadError::Conflict { .. }))
        .take(10)
    {
        println!("  forced, seed {seed}: {e}");
    }
    for f in failures.iter().take(20) {
        println!("  FAILED {}", f.lines().next().unwrap_or(""));
    }
    assert!(
        failures.is_empty(),
        "{} failures; first:\n{}",
        failures.len(),
        failures[0]
    );
    assert!(ok * 10 >= n * 8, "only {ok} of {n} uploads succeeded");
}

/// `UPLOAD_SESSION_SOAK` (default 40) sequential cases.
#[test]
fn soak_sequential() {
    soak_kind(Kind::Sequential);
}

/// `UPLOAD_SESSION_SOAK` (default 40) concurrent cases.
#[test]
fn soak_concurrent() {
    soak_kind(Kind::Concurrent);
}

/// `UPLOAD_SESSION_SOAK` (default 40) batch cases.
#[test]
fn soak_batch() {
    soak_kind(Kind::Batch);
}

/// Replays one seed: `UPLOAD_SESSION_SEED=<seed> UPLOAD_SESSION_KIND=seq|conc|batch`.
#[test]
fn replay() {
    let Some(seed) = std::env::var("UPLOAD_SESSION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let kind = match std::env::var("UPLOAD_SESSION_KIND").as_deref() {
        Ok("conc") => Kind::Concurrent,
        Ok("batch") => Kind::Batch,
        _ => Kind::Sequential,
    };
    let case = Case::from_seed(seed, kind);
    println!("{case:#?}");
    match run_case(&case) {
        Ok((o, _)) => println!("{o:?}"),
        Err(e) => panic!("seed {seed}: {e}"),
    }
}

/// The same case twice gives the same requests, answers and outcome.
#[test]
fn cases_reproduce_from_their_seed() {
    for kind in [Kind::Sequential, Kind::Concurrent, Kind::Batch] {
        for seed in [3u64, 17] {
            let case = Case::from_seed(seed, kind);
            let a = run_case(&case).map(|(o, t)| (format!("{o:?}"), t));
            let b = run_case(&case).map(|(o, t)| (format!("{o:?}"), t));
            assert_eq!(a, b, "seed {seed} {kind:?}");
        }
    }
}

/// Without faults every upload succeeds byte-exact.
#[test]
fn fault_free_uploads_are_byte_exact() {
    for kind in [Kind::Sequential, Kind::Concurrent, Kind::Batch] {
        for seed in 1000..1012u64 {
            let mut case = Case::from_seed(seed, kind);
            case.rates = FaultRates::default();
            case.crash_after = None;
            case.existing = Existing::Nothing;
            match run_case(&case) {
                Ok((Outcome::Uploaded, _)) => {}
                other => panic!("seed {seed} {kind:?}: {:?}\n{case:#?}", other.map(|x| x.0)),
            }
        }
    }
}

/// A different file at the target in mode `add` ends with exactly `path/conflict/file`.
#[test]
fn an_existing_file_forces_a_conflict() {
    for (seed, kind) in [(5u64, Kind::Sequential), (6, Kind::Concurrent)] {
        let mut case = Case::from_seed(seed, kind);
        case.existing = Existing::ConflictAdd;
        case.rates = FaultRates::default();
        case.crash_after = None;
        match run_case(&case) {
            Ok((Outcome::Forced(UploadError::Conflict { codes }), _)) => {
                assert_eq!(codes.0, ["path", "conflict", "file"])
            }
            other => panic!("{:?}", other.map(|x| x.0)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Random sequential cases.
    #[test]
    fn sequential_against_the_model(seed in any::<u64>()) {
        let r = check_seed(seed, Kind::Sequential);
        prop_assert!(r.is_ok(), "{}", r.err().unwrap_or_default());
    }

    /// Random concurrent cases.
    #[test]
    fn concurrent_against_the_model(seed in any::<u64>()) {
        let r = check_seed(seed, Kind::Concurrent);
        prop_assert!(r.is_ok(), "{}", r.err().unwrap_or_default());
    }

    /// Random batch cases.
    #[test]
    fn batch_against_the_model(seed in any::<u64>()) {
        let r = check_seed(seed, Kind::Batch);
        prop_assert!(r.is_ok(), "{}", r.err().unwrap_or_default());
    }
}

/// One fault-free sequential upload with a custom configuration and commit.
fn plain_upload(
    emu: &RefCell<Emulator>,
    cfg: DropboxConfig,
    commit: CommitInfo,
    size: u64,
) -> Result<Completed, UploadError> {
    let src = source(size, 0, size);
    let mut m = DropboxUpload::builder(commit, size)
        .chunk_size(100_000)
        .config(cfg)
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let mut clock = VirtualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let token = RefCell::new(DEFAULT_TOKEN.to_string());
    let rep = drive(
        &mut m,
        emu,
        &token,
        &mut clock,
        &src,
        &mut Jitter::new(1),
        None,
        |_| None,
    );
    let r = rep.result.expect("a result");
    if let Ok(Completed::Committed(c)) = &r {
        let path = c.metadata.path_display.clone().unwrap_or_default();
        check_stored(&emu.borrow(), &path, &src).unwrap();
    }
    r
}

/// Team headers and namespace paths reach the emulator in the shapes it accepts.
#[test]
fn path_roots_and_namespace_paths_are_accepted() {
    let case = Case::from_seed(1, Kind::Sequential);
    let emu = RefCell::new(Emulator::new(Config::default()));
    let base = emu.borrow().config().base_url.clone();
    let ns = emu
        .borrow_mut()
        .dropbox_mut()
        .home_namespace_id()
        .to_string();
    for root in [
        None,
        Some(upload_session::dropbox::PathRoot::Home),
        Some(upload_session::dropbox::PathRoot::NamespaceId(ns.clone())),
    ] {
        let mut cfg = machine_config(&case, &base);
        cfg.path_root = root.clone();
        let commit = CommitInfo::new(format!("/roots/{root:?}.bin")).unwrap();
        let r = plain_upload(&emu, cfg, commit, 250_001);
        assert!(r.is_ok(), "{root:?}: {r:?}");
    }
    let commit = CommitInfo::new(format!("ns:{ns}/roots/ns-path.bin")).unwrap();
    let r = plain_upload(&emu, machine_config(&case, &base), commit, 1000);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        emu.borrow().violations().is_empty(),
        "{:?}",
        emu.borrow().violations()
    );
}

/// Write modes against an existing file: `update` with its rev replaces it, a stale rev
/// is a conflict, `strict_conflict` makes identical content a conflict too.
#[test]
fn write_modes_against_an_existing_file() {
    let case = Case::from_seed(2, Kind::Sequential);
    let emu = RefCell::new(Emulator::new(Config::default()));
    let base = emu.borrow().config().base_url.clone();
    let cfg = || machine_config(&case, &base);
    let old = emu
        .borrow_mut()
        .dropbox_mut()
        .seed_file("/modes/a.bin", b"old content")
        .unwrap();
    let rev = upload_session::dropbox::Rev::new(old.rev.clone()).unwrap();
    let commit = CommitInfo::new("/modes/a.bin")
        .unwrap()
        .mode(WriteMode::Update(rev.clone()));
    let done = plain_upload(&emu, cfg(), commit.clone(), 5000).unwrap();
    assert_ne!(done.metadata().unwrap().rev, old.rev);
    // The same rev again is stale now.
    match plain_upload(&emu, cfg(), commit, 6000) {
        Err(UploadError::Conflict { codes }) => assert_eq!(codes.0[..2], ["path", "conflict"]),
        other => panic!("{other:?}"),
    }
    // Identical content in mode add: success, unless strict_conflict.
    let add = CommitInfo::new("/modes/a.bin").unwrap();
    assert!(plain_upload(&emu, cfg(), add.clone(), 5000).is_ok());
    assert!(matches!(
        plain_upload(&emu, cfg(), add.strict_conflict(true), 5000),
        Err(UploadError::Conflict { .. })
    ));
    assert!(
        emu.borrow().violations().is_empty(),
        "{:?}",
        emu.borrow().violations()
    );
}
