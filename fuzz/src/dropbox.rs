//! Dropbox targets: [`dropbox_response`] and [`dropbox_machine`].
//!
//! Both drive a real [`DropboxUpload`] (sequential or concurrent) against a per-request
//! script: the honest emulator model, a generated response shaped after dropbox.md §2-§7
//! (error unions with `.tag` chains, `incorrect_offset` with `correct_offset`, 429
//! bodies, metadata), or a transport failure. Requests reach the emulator in the order
//! they are sent; answers come back in an order the input picks (concurrent appends
//! complete out of order). Invariants checked on every output (those of
//! `core/tests/dropbox_model.rs`, plus the request rules of dropbox.md §12):
//! - every request carries `Authorization`; upload-style routes carry a printable ASCII
//!   `Dropbox-API-Arg` that parses as JSON;
//! - bodies ≤ 150 MiB and ≤ one chunk; a request with data names its `content_hash`;
//! - sequential: one request in flight; an append/finish offset never goes below the
//!   previous one unless a server answer came in between;
//! - concurrent: ≤ parallelism appends in flight; offsets and non-closing lengths are
//!   multiples of 4 MiB; start and finish carry no data, start never closes, finish's
//!   offset is the file size; the closing append is sent only when no other append is in
//!   flight;
//! - `NeedData` inside the file and ≤ max(one chunk, one 4 MiB hash block); bytes held
//!   ≤ (parallelism + 1 read ahead) chunks;
//! - bounded steps (see [`crate::onedrive`]);
//! - success: the metadata's size and the content hash match the source; when the
//!   answer that finished the upload came from the emulator, the emulator stores exactly
//!   the source (size and content hash); a clean run counts zero emulator violations;
//!   never `UploadError::Internal`.

use crate::shapes::{self, Clock, Ctx, R, number, pick, short_string};
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{Value, json};
use std::time::Duration;
use upload_session::dropbox::{
    Checkpoint, CommitInfo, Completed, DropboxConfig, DropboxUpload, SessionType,
};
use upload_session::retry::RetryPolicy;
use upload_session::{
    AccessToken, Event, OutgoingRequest, Output, RequestId, RequestKind, SourceFingerprint,
    TransportFailure, UploadError, UploadMachine,
};
use upload_session_emulator::{
    Config, DEFAULT_TOKEN, Emulator, Service, TransportFault, Violation,
};

/// The content-hash block and concurrent alignment: 4 MiB, or 4 KiB in a fuzz build
/// (`--cfg fuzzing` scales the core's and the emulator's blocks alike, fuzz/README.md).
const BLOCK: u64 = upload_session::dropbox::BLOCK_SIZE;
const MAX_BODY: u64 = 157_286_400;
const BURST: u32 = 400;
const HONEST_STEPS: u64 = 40_000;
const MAX_STEPS: u64 = 100_000;
const PATH: &str = "/fz/file é.bin";

/// Dropbox response parsing: status, headers and body through the core's parsers (its
/// `fuzzing` module), with their bounds checked. One input in `UPLOAD_ONE_IN` (32)
/// also answers one phase (start, append, finish, get_metadata) of a real, small,
/// sequential upload with the generated response: see [`dropbox_response_in_upload`].
pub fn dropbox_response(data: &[u8]) {
    parse_one(data, shapes::selected_for_upload(data));
}

/// [`dropbox_response`] with the upload phase always on (what the seed replay runs).
pub fn dropbox_response_in_upload(data: &[u8]) {
    parse_one(data, true);
}

fn parse_one(data: &[u8], upload: bool) {
    if let Some(lit) = shapes::Literal::parse(data) {
        for cap in [16, 1 << 20] {
            check_parsed(lit.response.body(), lit.response.headers(), cap, lit.n);
        }
        if upload && lit.phase != "batch" {
            let _ = run(&mut Unstructured::new(&[]), &Mode::Literal(lit));
        }
        return;
    }
    let mut u = Unstructured::new(data);
    let ctx = Ctx {
        size: 10_000_000,
        range: Some((4_194_304, 8_388_608)),
        content_hash: upload_session::dropbox::EMPTY_CONTENT_HASH.into(),
        session: "pid_upload_session:ABC".into(),
        entries: 3,
        ..Ctx::default()
    };
    let resp = match u.int_in_range(0u8..=5).unwrap_or(0) {
        0 => {
            let mut r = shapes::response(shapes::status(&mut u, &[]), shapes::odd_body(&mut u));
            shapes::headers(&mut u, &mut r);
            r
        }
        1 => batch_result(&mut u, &ctx),
        n => {
            let route =
                [Route::Start, Route::Append, Route::Finish, Route::Lookup][usize::from(n - 2)];
            garbled(&mut u, route, &ctx)
        }
    };
    let cap = if u.ratio(1u8, 8).unwrap_or(false) {
        16
    } else {
        1 << 20
    };
    let expected = u.int_in_range(0usize..=4).unwrap_or(1);
    check_parsed(resp.body(), resp.headers(), cap, expected);
    if upload {
        let first = u.int_in_range(0u8..=6).unwrap_or(0);
        let count = u.int_in_range(1u8..=4).unwrap_or(1);
        let _ = run(&mut u, &Mode::Response { first, count });
    }
}

/// The Dropbox machines (sequential and concurrent) under arbitrary server behaviour.
pub fn dropbox_machine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u, &Mode::Machine);
}

fn check_parsed(body: &[u8], headers: &HeaderMap, cap: usize, expected: usize) {
    let p = upload_session::fuzzing::dropbox_parse(body, headers, cap, expected);
    assert!(p.tags.len() <= 8, "tag chain not bounded");
    assert!(p.tags.iter().all(|t| t.chars().count() <= 128));
    if let Some(t) = &p.text {
        assert!(t.len() <= 4 * 512, "error text not bounded");
    }
    for d in [p.body_retry_after, p.header_retry_after]
        .into_iter()
        .flatten()
    {
        assert!(
            d <= Duration::from_secs(1_000_000_000),
            "retry_after {d:?} not clamped"
        );
    }
    if let Some(Ok(v)) = &p.batch {
        assert_eq!(v.len(), expected);
    }
    if body.len() > cap {
        assert!(matches!(p.session_id, Some(Err(_))) && matches!(p.metadata, Some(Err(_))));
        assert!(p.tags.is_empty());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Start,
    Append,
    Finish,
    Lookup,
    Other,
}

fn route_of(req: &http::Request<Bytes>) -> Route {
    let p = req.uri().path();
    if p.ends_with("/upload_session/start") {
        Route::Start
    } else if p.ends_with("/upload_session/append_v2") {
        Route::Append
    } else if p.ends_with("/upload_session/finish") {
        Route::Finish
    } else if p.ends_with("/files/get_metadata") {
        Route::Lookup
    } else {
        Route::Other
    }
}

#[derive(Debug)]
enum Mode {
    Machine,
    Response {
        first: u8,
        count: u8,
    },
    /// A seed: this response answers the first request of its phase.
    Literal(shapes::Literal),
}

fn phase_of(route: Route) -> &'static str {
    match route {
        Route::Start => "start",
        Route::Append => "append",
        Route::Finish => "finish",
        Route::Lookup => "lookup",
        Route::Other => "other",
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Act {
    Honest,
    Slow(u8),
    Lost(bool),
    NotSent,
    Garbled,
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Between {
    Nothing,
    Jump(u16),
    LongJump(u8),
    Cancel,
    ExpireTokens,
    Crash,
}

enum Delivery {
    Response(Response<Bytes>),
    Delayed(Duration, Response<Bytes>),
    Failure(TransportFailure),
}

struct Flight {
    id: RequestId,
    route: Route,
    close: bool,
    /// How many session restarts the machine had announced when this was sent: after a
    /// restart, requests of the abandoned session may still be on the wire beside the
    /// new session's (a garbled answer may even give the new session the old id).
    generation: u32,
    deadline: Option<std::time::Instant>,
    delivery: Delivery,
    honest: bool,
    stale: bool,
}

struct Run {
    size: u64,
    chunk: u64,
    concurrent: bool,
    parallelism: usize,
    hash: Option<String>,
    clock: Clock,
    emu: Emulator,
    flights: Vec<Flight>,
    last_offset: Option<u64>,
    resynced: bool,
    clean: bool,
    requests: u32,
    last_cp: Option<Checkpoint>,
    last_honest: bool,
    session: String,
    refused_token: bool,
    literal_used: bool,
    /// Answers delivered since the last checkpoint.
    answers_since_cp: u32,
    /// `SessionReused` counts the client could not have avoided (see `send`).
    excused_reuse: u64,
    /// `SessionRestarted` events seen.
    generation: u32,
}

fn run(u: &mut Unstructured<'_>, mode: &Mode) -> R<()> {
    // Concurrent sessions work in whole blocks: one input in four (a fuzz build scales
    // the 4 MiB block to 4 KiB, so they cost little there). The response target answers
    // a small sequential upload.
    let concurrent = !u.ratio(3u8, 4)? && matches!(mode, Mode::Machine);
    let (chunk, size) = if concurrent {
        let chunk = BLOCK * u.int_in_range(1u64..=2)?;
        let size = match u.int_in_range(0u8..=7)? {
            0 => u.int_in_range(0u64..=4096)?,
            1 => 2 * BLOCK,
            2 => 2 * BLOCK + u.int_in_range(1u64..=64)?,
            3 | 4 => BLOCK * u.int_in_range(3u64..=6)? + u.int_in_range(0u64..=64)?,
            _ => BLOCK + u.int_in_range(1u64..=4096)?,
        };
        (chunk, size)
    } else {
        let chunk = match u.int_in_range(0u8..=3)? {
            0 => u.int_in_range(1u64..=64)?,
            1 | 2 => u.int_in_range(1u64..=4096)?,
            _ => u.int_in_range(1u64..=65_536)?,
        };
        // Up to five chunks, small files (hashing dominates the cost of a run).
        let max = if matches!(mode, Mode::Machine) {
            65_536
        } else {
            8192
        };
        let size = match u.int_in_range(0u8..=5)? {
            0 => 0,
            1 => u.int_in_range(1u64..=chunk.min(max))?,
            2 => (chunk * u.int_in_range(1u64..=4)?).min(max),
            _ => u.int_in_range(1u64..=(chunk * 5).min(max))?,
        };
        (chunk, size)
    };
    // Seeds: a sequential upload of three chunks (start, appends, finish).
    let (chunk, size) = match mode {
        Mode::Literal(_) => (1000, 2500),
        _ => (chunk, size),
    };
    let parallelism = u.int_in_range(1u32..=4)?;
    let last_in_finish = u.ratio(1u8, 2)?;
    let mut config = Config::default();
    config.digests.quick_xor = false;
    config.digests.sha256 = false;
    let emu = Emulator::new(config);
    let base = emu.config().base_url.clone();
    let mut cfg = DropboxConfig::with_hosts(
        format!("{base}/dropbox/content/2/"),
        format!("{base}/dropbox/api/2"),
    );
    cfg.retry = RetryPolicy {
        seed: u64::arbitrary(u)?,
        max_attempts: u.int_in_range(1u32..=6)?,
        initial_delay: Duration::from_millis(u64::from(u.int_in_range(1u16..=2000)?)),
        max_delay: Duration::from_secs(30),
        max_retry_after: Duration::from_secs(if u.ratio(1u8, 4)? { 3600 } else { 120 }),
        ..RetryPolicy::default()
    };
    cfg.request_timeout = Duration::from_secs(u64::from(u.int_in_range(5u8..=60)?));
    cfg.min_throughput = 1 << 20;
    cfg.max_restarts = u.int_in_range(0u32..=3)?;

    let src = shapes::source(size);
    let fingerprint = SourceFingerprint::new(size, "fuzz");
    let commit = CommitInfo::new(PATH).expect("a valid path");
    let Ok(token) = AccessToken::new(DEFAULT_TOKEN) else {
        return Ok(());
    };
    let session_type = if concurrent {
        SessionType::Concurrent
    } else {
        SessionType::Sequential
    };
    let mut m = DropboxUpload::builder(commit, size)
        .session_type(session_type)
        .chunk_size(chunk)
        .parallelism(parallelism)
        .last_chunk_in_finish(last_in_finish)
        .fingerprint(fingerprint.clone())
        .config(cfg.clone())
        .access_token(token)
        .build()
        .expect("a valid upload did not build");
    // A file of one chunk takes the sequential path.
    let concurrent = m.is_concurrent();
    let mut r = Run {
        size,
        chunk,
        concurrent,
        parallelism: if concurrent { parallelism as usize } else { 1 },
        hash: None,
        clock: Clock::new(),
        emu,
        flights: Vec::new(),
        last_offset: None,
        resynced: false,
        clean: true,
        requests: 0,
        last_cp: None,
        last_honest: false,
        session: "pid_upload_session:none".into(),
        refused_token: false,
        literal_used: false,
        answers_since_cp: 0,
        excused_reuse: 0,
        generation: 0,
    };

    let mut steps = 0u64;
    let mut honest_steps = 0u64;
    let mut burst = 0u32;
    m.handle_wall_clock(r.clock.now(), r.clock.wall());
    loop {
        steps += 1;
        if u.is_empty() {
            honest_steps += 1;
            assert!(
                honest_steps <= HONEST_STEPS,
                "no end after {HONEST_STEPS} polls against the honest emulator"
            );
        }
        if steps > MAX_STEPS {
            return Ok(());
        }
        burst += 1;
        assert!(
            burst <= BURST,
            "{BURST} outputs without any input: busy loop"
        );
        match m.poll_output(r.clock.now()) {
            Output::Send(req) => r.send(u, mode, req),
            Output::NeedData { offset, len } => {
                // A chunk, or (to hash what a found file should hold) one 4 MiB
                // content-hash block at most, as in core/tests/dropbox_model.rs.
                assert!(
                    len <= r.chunk.max(BLOCK),
                    "NeedData of {len} bytes (chunk {})",
                    r.chunk
                );
                let end = offset.checked_add(len).expect("NeedData range overflows");
                assert!(
                    end <= r.size,
                    "NeedData {offset}+{len} beyond the file ({})",
                    r.size
                );
                let data = src.slice(offset as usize..end as usize);
                m.provide_data(offset, data)
                    .expect("the data asked for is refused");
                let cap = (r.parallelism as u64 + 1) * r.chunk; // + 1: the default read-ahead
                assert!(m.held_bytes() <= cap, "{} bytes held", m.held_bytes());
                burst = 0;
            }
            Output::Event(e) => {
                if shapes::trace() && !matches!(e, Event::Checkpoint(_) | Event::Progress { .. }) {
                    eprintln!("    event {e:?}");
                }
                match e {
                    Event::Checkpoint(cp) => {
                        r.last_cp = Some(cp);
                        r.answers_since_cp = 0;
                    }
                    Event::SessionRestarted { .. } => r.generation += 1,
                    Event::TokenNeeded => {
                        if u.ratio(1u8, 16).unwrap_or(false) {
                            r.refused_token = true;
                        } else if let Ok(t) = AccessToken::new(r.emu.issue_token()) {
                            m.set_access_token(t);
                            burst = 0;
                        }
                    }
                    _ => {}
                }
            }
            Output::Wait(w) => {
                burst = 0;
                let between = if u.is_empty() || matches!(mode, Mode::Response { .. }) {
                    Between::Nothing
                } else {
                    Between::arbitrary(u).unwrap_or(Between::Nothing)
                };
                match between {
                    Between::Nothing => {}
                    Between::Jump(s) => r.clock.advance(Duration::from_secs(u64::from(s))),
                    Between::LongJump(h) => r
                        .clock
                        .advance(Duration::from_secs(3600 * 24 * u64::from(h % 16))),
                    Between::Cancel => {
                        // Requests on the wire still reach the server after the cancel:
                        // the emulator cannot know the client stopped listening.
                        if !r.flights.is_empty() {
                            r.clean = false;
                        }
                        for f in r.flights.iter_mut() {
                            f.stale = true;
                        }
                        m.cancel(r.clock.now());
                        continue;
                    }
                    Between::ExpireTokens => r.emu.expire_tokens(),
                    Between::Crash => {
                        if let Some(next) = r.crash(&fingerprint, &cfg) {
                            m = next;
                            m.handle_wall_clock(r.clock.now(), r.clock.wall());
                            continue;
                        }
                    }
                }
                m.handle_wall_clock(r.clock.now(), r.clock.wall());
                if !r.flights.is_empty() {
                    let i = if u.is_empty() {
                        0
                    } else {
                        u.choose_index(r.flights.len()).unwrap_or(0)
                    };
                    let f = r.flights.remove(i);
                    r.deliver(&mut m, f);
                } else if let Some(t) = w {
                    r.clock.advance_to(t);
                    m.handle_wall_clock(r.clock.now(), r.clock.wall());
                    m.handle_timeout(r.clock.now());
                } else {
                    assert!(
                        r.refused_token,
                        "the machine waits for nothing: nothing in flight, no timer, no token asked"
                    );
                    return Ok(());
                }
            }
            Output::Finished(result) => {
                r.finished(result);
                return Ok(());
            }
        }
    }
}

fn arg_of(req: &http::Request<Bytes>) -> Value {
    match req.headers().get("dropbox-api-arg") {
        Some(v) => {
            assert!(
                v.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)),
                "Dropbox-API-Arg is not printable ASCII"
            );
            let text = v.to_str().expect("ASCII");
            serde_json::from_str(text).expect("Dropbox-API-Arg is not JSON")
        }
        None => serde_json::from_slice(req.body()).unwrap_or(Value::Null),
    }
}

impl Run {
    fn content_hash(&mut self) -> String {
        if self.hash.is_none() {
            self.hash = Some(shapes::source_content_hash(self.size));
        }
        self.hash.clone().unwrap_or_default()
    }

    fn send(&mut self, u: &mut Unstructured<'_>, mode: &Mode, req: OutgoingRequest) {
        let r = req.request();
        assert!(
            r.headers().contains_key(http::header::AUTHORIZATION),
            "no Authorization: {req:?}"
        );
        let route = route_of(r);
        let body_len = r.body().len() as u64;
        let in_flight: Vec<&Flight> = self.flights.iter().filter(|f| !f.stale).collect();
        assert!(
            in_flight.len() < self.parallelism,
            "{} requests in flight, limit {}: {req:?}",
            in_flight.len() + 1,
            self.parallelism
        );
        let data_route = matches!(route, Route::Start | Route::Append | Route::Finish);
        assert!(
            !data_route || (body_len <= MAX_BODY && body_len <= self.chunk),
            "body of {body_len} bytes"
        );
        let mut close = false;
        let generation = self.generation;
        if matches!(route, Route::Start | Route::Append | Route::Finish) {
            let arg = arg_of(r);
            close = arg.get("close").and_then(Value::as_bool).unwrap_or(false);
            // The closing-append rules (§12 rule 42) hold per session.
            let same: Vec<&&Flight> = in_flight
                .iter()
                .filter(|f| f.generation == generation)
                .collect();
            if body_len > 0 {
                assert!(
                    arg.get("content_hash").and_then(Value::as_str).is_some(),
                    "a data request without content_hash: {arg}"
                );
            }
            let offset = arg
                .pointer("/cursor/offset")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if self.concurrent {
                match route {
                    Route::Start => {
                        assert_eq!(body_len, 0, "concurrent start with data");
                        assert!(!close, "concurrent start closes");
                    }
                    Route::Append => {
                        assert_eq!(offset % BLOCK, 0, "unaligned concurrent offset {offset}");
                        assert!(
                            close || body_len % BLOCK == 0,
                            "unaligned concurrent length {body_len}"
                        );
                        assert!(offset + body_len <= self.size, "append beyond the file");
                        if close {
                            assert_eq!(
                                offset + body_len,
                                self.size,
                                "closing append short of the end"
                            );
                            assert!(
                                !same.iter().any(|f| f.route == Route::Append),
                                "closing append while other appends are in flight"
                            );
                        }
                        assert!(
                            !same.iter().any(|f| f.route == Route::Append && f.close),
                            "an append while the closing append is in flight"
                        );
                    }
                    Route::Finish => {
                        assert_eq!(body_len, 0, "concurrent finish with data");
                        assert_eq!(offset, self.size, "concurrent finish offset");
                    }
                    _ => {}
                }
            } else if matches!(route, Route::Append | Route::Finish) {
                assert!(offset + body_len <= self.size, "data beyond the file");
                if let Some(prev) = self.last_offset {
                    assert!(
                        offset >= prev || self.resynced,
                        "offset {offset} after {prev} with no server answer in between"
                    );
                }
                self.last_offset = Some(offset);
                self.resynced = false;
            } else {
                assert!(body_len <= self.size);
            }
        }
        let index = self.requests;
        self.requests += 1;
        let act = match mode {
            Mode::Machine if !u.is_empty() => Act::arbitrary(u).unwrap_or(Act::Honest),
            Mode::Machine => Act::Honest,
            Mode::Response { first, count } => {
                let i = u32::from(*first);
                if index >= i && index < i + u32::from(*count) {
                    Act::Garbled
                } else {
                    Act::Honest
                }
            }
            Mode::Literal(l) if !self.literal_used && l.phase == phase_of(route) => {
                self.literal_used = true;
                Act::Garbled
            }
            Mode::Literal(_) => Act::Honest,
        };
        let range = match req.kind() {
            RequestKind::UploadData { range } => Some((range.start(), range.end())),
            _ => None,
        };
        if shapes::trace() {
            let arg = req
                .request()
                .headers()
                .get("dropbox-api-arg")
                .or_else(|| req.request().headers().get("content-range"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            eprintln!(
                "{:>10.3}s #{index} {act:?} {:?} {} {arg}",
                self.clock.elapsed.as_secs_f64(),
                req.kind(),
                req.request().uri().path()
            );
        }
        let (id, request, deadline) = req.into_parts();
        let (delivery, honest) = match act {
            Act::Honest | Act::Slow(_) | Act::Lost(_) => {
                let reused = self.emu.violations().count(Violation::SessionReused);
                let resp = self.emu.handle(self.clock.wall(), request);
                // The emulator applies a request when it is sent and assumes the client
                // has seen every earlier answer: with answers still undelivered (parallel
                // appends), a `not_found` among them is news the client has not had yet.
                let now_reused = self.emu.violations().count(Violation::SessionReused);
                if now_reused > reused && self.flights.iter().any(|f| f.honest && !f.stale) {
                    self.excused_reuse += now_reused - reused;
                }
                if route == Route::Start {
                    if let Ok(v) = serde_json::from_slice::<Value>(resp.body()) {
                        if let Some(s) = v.get("session_id").and_then(Value::as_str) {
                            self.session = s.to_string();
                        }
                    }
                }
                let d = match TransportFault::of(&resp) {
                    Some(TransportFault::LostResponse) => {
                        Delivery::Failure(TransportFailure::Closed)
                    }
                    Some(TransportFault::Reset) => Delivery::Failure(TransportFailure::Reset),
                    Some(TransportFault::Delay(d)) => Delivery::Delayed(d, resp),
                    None => match act {
                        Act::Slow(s) => {
                            self.clean = false;
                            Delivery::Delayed(Duration::from_secs(u64::from(s)), resp)
                        }
                        Act::Lost(timeout) => {
                            self.clean = false;
                            Delivery::Failure(if timeout {
                                TransportFailure::TimedOut
                            } else {
                                TransportFailure::Closed
                            })
                        }
                        _ => Delivery::Response(resp),
                    },
                };
                (d, true)
            }
            Act::NotSent => (Delivery::Failure(TransportFailure::Connect), true),
            Act::Garbled => {
                self.clean = false;
                let needs_hash = matches!(route, Route::Finish | Route::Lookup);
                let ctx = Ctx {
                    size: self.size,
                    range,
                    content_hash: if needs_hash {
                        self.content_hash()
                    } else {
                        String::new()
                    },
                    session: self.session.clone(),
                    ..Ctx::default()
                };
                let resp = match mode {
                    Mode::Literal(l) => l.response(),
                    _ => garbled(u, route, &ctx),
                };
                (Delivery::Response(resp), false)
            }
        };
        self.flights.push(Flight {
            id,
            route,
            close,
            generation,
            deadline,
            delivery,
            honest,
            stale: false,
        });
    }

    fn deliver(&mut self, m: &mut DropboxUpload, f: Flight) {
        if shapes::trace() {
            match &f.delivery {
                Delivery::Response(r) | Delivery::Delayed(_, r) => eprintln!(
                    "    -> {} {}{}",
                    r.status(),
                    String::from_utf8_lossy(r.body())
                        .chars()
                        .take(300)
                        .collect::<String>(),
                    if f.stale { " (stale)" } else { "" }
                ),
                Delivery::Failure(e) => eprintln!("    -> {e:?}"),
            }
        }
        let now = self.clock.now();
        let answered = !f.stale
            && matches!(
                f.route,
                Route::Start | Route::Append | Route::Finish | Route::Lookup
            );
        let outcome = match f.delivery {
            Delivery::Response(resp) => {
                self.resynced |= answered;
                m.handle_response(now, f.id, resp)
            }
            Delivery::Failure(fail) => m.handle_failure(now, f.id, fail),
            Delivery::Delayed(d, resp) => {
                self.clock.advance(d);
                m.handle_wall_clock(self.clock.now(), self.clock.wall());
                let now = self.clock.now();
                if f.deadline.is_some_and(|t| now > t) {
                    m.handle_failure(now, f.id, TransportFailure::TimedOut)
                } else {
                    self.resynced |= answered;
                    m.handle_response(now, f.id, resp)
                }
            }
        };
        self.last_honest = f.honest;
        self.answers_since_cp += 1;
        outcome.expect("the machine refused the outcome of its own request");
    }

    fn crash(
        &mut self,
        fingerprint: &SourceFingerprint,
        cfg: &DropboxConfig,
    ) -> Option<DropboxUpload> {
        let cp = self.last_cp.as_ref()?;
        let token = AccessToken::new(self.emu.issue_token()).ok();
        let m = crate::resume_after_crash::<DropboxUpload>(cp, fingerprint, cfg, token)?;
        // The new process forgets what the server told it since the checkpoint: the
        // emulator cannot know that, so it may flag the (correct) re-query.
        if self.answers_since_cp > 0 || self.flights.iter().any(|f| f.honest) {
            // An applied request whose answer died with the process.
            self.clean = false;
        }
        self.flights.clear();
        self.last_offset = None;
        self.resynced = false;
        Some(m)
    }

    fn finished(&mut self, result: Result<Completed, UploadError>) {
        if self.clean {
            let excused = self.excused_reuse;
            let v: Vec<_> = self
                .emu
                .violations()
                .iter()
                .filter(|&(k, n)| !(k == Violation::SessionReused && n <= excused))
                .collect();
            assert!(v.is_empty(), "a correct client was flagged: {v:?}");
        }
        match result {
            Ok(Completed::Committed(c)) => {
                let hash = self.content_hash();
                assert_eq!(c.metadata.size, self.size, "success with the wrong size");
                assert_eq!(c.content_hash, hash, "the machine hashed other bytes");
                if let Some(h) = &c.metadata.content_hash {
                    assert_eq!(h, &hash, "success with a wrong content_hash");
                    assert!(c.hash_verified);
                }
                if self.last_honest {
                    let path = c
                        .metadata
                        .path_display
                        .clone()
                        .unwrap_or_else(|| PATH.to_string());
                    let rec = self
                        .emu
                        .file(Service::Dropbox, &path)
                        .or_else(|| self.emu.file(Service::Dropbox, PATH))
                        .expect("the emulator confirmed an upload it does not hold");
                    assert_eq!(
                        rec.content.size, self.size,
                        "the emulator holds other bytes"
                    );
                    assert_eq!(rec.content.content_hash.as_deref(), Some(hash.as_str()));
                }
            }
            Ok(other) => panic!("a committing upload ended with {other:?}"),
            Err(UploadError::Internal { detail }) => panic!("internal error: {detail}"),
            Err(_) => {}
        }
    }
}

const TAGS: &[&str] = &[
    "lookup_failed",
    "incorrect_offset",
    "not_found",
    "closed",
    "not_closed",
    "too_large",
    "concurrent_session_invalid_offset",
    "concurrent_session_invalid_data_size",
    "concurrent_session_data_not_allowed",
    "concurrent_session_close_not_allowed",
    "concurrent_session_not_closed",
    "concurrent_session_missing_data",
    "payload_too_large",
    "content_hash_mismatch",
    "path",
    "conflict",
    "file",
    "folder",
    "malformed_path",
    "insufficient_space",
    "disallowed_name",
    "too_many_write_operations",
    "too_many_requests",
    "too_many_shared_folder_targets",
    "properties_error",
    "expired_access_token",
    "invalid_access_token",
    "other",
];

/// A union chain: `{".tag": t1, t1: {".tag": t2, …}}`, `correct_offset` next to an
/// `incorrect_offset`.
fn union(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let depth = u.int_in_range(1u8..=10).unwrap_or(1);
    let tags: Vec<String> = (0..depth)
        .map(|_| {
            if u.ratio(1u8, 10).unwrap_or(false) {
                short_string(u, 200)
            } else {
                TAGS[u.choose_index(TAGS.len()).unwrap_or(0)].to_string()
            }
        })
        .collect();
    let mut inner = Value::Null;
    for tag in tags.iter().rev() {
        let mut m = serde_json::Map::new();
        m.insert(".tag".into(), json!(tag));
        if tag == "incorrect_offset" {
            m.insert("correct_offset".into(), number(u, ctx));
        }
        if !inner.is_null() {
            m.insert(tag.clone(), inner);
        }
        inner = Value::Object(m);
    }
    inner
}

fn error_body(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let e = union(u, ctx);
    let summary = e
        .get(".tag")
        .and_then(Value::as_str)
        .unwrap_or("other")
        .to_string();
    json!({ "error_summary": format!("{summary}/.."), "error": e })
}

fn metadata(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let mut m = serde_json::Map::new();
    if u.ratio(1u8, 2).unwrap_or(false) {
        let tag = pick(u, &["file", "file", "folder", "deleted"]);
        m.insert(".tag".into(), json!(tag));
    }
    for (k, v) in [
        ("name", json!("file é.bin")),
        ("id", json!("id:a4ayc_80_OEAAAAAAAAAXw")),
        ("rev", json!("a1c10ce0dd78")),
        ("path_lower", json!("/fz/file é.bin")),
        ("path_display", json!(PATH)),
        ("client_modified", json!("2023-11-14T22:13:20Z")),
        ("server_modified", json!("2023-11-14T22:13:20Z")),
    ] {
        if !u.ratio(1u8, 12).unwrap_or(false) {
            m.insert(k.into(), v);
        }
    }
    let size = if u.ratio(3u8, 4).unwrap_or(true) {
        json!(ctx.size)
    } else {
        number(u, ctx)
    };
    m.insert("size".into(), size);
    let hash = match u.int_in_range(0u8..=4).unwrap_or(0) {
        0..=2 => json!(ctx.content_hash),
        3 => json!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        _ => json!(12),
    };
    if !u.ratio(1u8, 6).unwrap_or(false) {
        m.insert("content_hash".into(), hash);
    }
    Value::Object(m)
}

fn batch_result(u: &mut Unstructured<'_>, ctx: &Ctx) -> Response<Bytes> {
    let n = u.int_in_range(0usize..=4).unwrap_or(ctx.entries);
    let entries: Vec<Value> = (0..n)
        .map(|_| match u.int_in_range(0u8..=3).unwrap_or(0) {
            0 | 1 => {
                let mut m = metadata(u, ctx);
                if let Some(o) = m.as_object_mut() {
                    o.insert(".tag".into(), json!("success"));
                }
                m
            }
            2 => json!({".tag": "failure", "failure": union(u, ctx)}),
            _ => shapes::any_json(u, 2),
        })
        .collect();
    let body = shapes::body_of(u, json!({ "entries": entries }));
    let mut r = shapes::response(shapes::status(u, &[200, 200, 409, 429, 500]), body);
    shapes::headers(u, &mut r);
    r
}

/// A generated answer to a request on `route`.
fn garbled(u: &mut Unstructured<'_>, route: Route, ctx: &Ctx) -> Response<Bytes> {
    let likely: &[u16] = match route {
        Route::Start => &[200, 200, 200, 409, 429, 500, 401, 400],
        Route::Append => &[200, 200, 200, 409, 409, 429, 500, 503, 401],
        Route::Finish => &[200, 200, 409, 409, 429, 500, 503],
        Route::Lookup => &[200, 200, 409, 500],
        Route::Other => &[200, 409, 500],
    };
    let status = shapes::status(u, likely);
    let shape = u.int_in_range(0u8..=9).unwrap_or(0);
    let v = match (status.as_u16(), shape) {
        (_, 9) => Value::Null,
        (200, 0..=6) => match route {
            Route::Start => {
                let sid = match u.int_in_range(0u8..=3).unwrap_or(0) {
                    0 | 1 => json!(ctx.session),
                    2 => json!(""),
                    _ => json!(5),
                };
                json!({ "session_id": sid })
            }
            Route::Append => json!(null),
            _ => metadata(u, ctx),
        },
        (429, 0..=5) => {
            let mut reason = serde_json::Map::new();
            reason.insert(
                ".tag".into(),
                json!(pick(
                    u,
                    &["too_many_requests", "too_many_write_operations", "other"]
                )),
            );
            let mut e = serde_json::Map::new();
            e.insert("reason".into(), Value::Object(reason));
            if u.ratio(1u8, 2).unwrap_or(false) {
                e.insert("retry_after".into(), number(u, ctx));
            }
            json!({ "error_summary": "too_many_requests/..", "error": Value::Object(e) })
        }
        (400, _) => json!(short_string(u, 200)),
        (_, 7) => metadata(u, ctx),
        _ => error_body(u, ctx),
    };
    let body = match v {
        Value::Null if shape == 9 => shapes::odd_body(u),
        Value::String(s) => Bytes::from(s),
        v => shapes::body_of(u, v),
    };
    let mut r = shapes::response(status, body);
    shapes::headers(u, &mut r);
    r
}
