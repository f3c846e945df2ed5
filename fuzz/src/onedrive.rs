//! OneDrive targets: [`onedrive_response`] and [`onedrive_machine`].
//!
//! Both drive a real [`OneDriveUpload`] against a per-request script: the honest
//! emulator model (`upload_session_emulator::Emulator::handle`), a generated response
//! shaped after onedrive.md §2-§5 (or garbage), or a transport failure. Invariants
//! checked on every output (the ones of `core/tests/onedrive_model.rs` and
//! `onedrive_chaos.rs`):
//! - no `Authorization` on an `uploadUrl`; `Authorization` on every Graph request;
//! - fragments: `Content-Range` well formed, total = file size, length = body length,
//!   ≤ one fragment (≤ 60 MiB), ending on a 327,680 boundary unless it is the last;
//! - one request in flight;
//! - a fragment never starts below the previous one unless a server answer came in
//!   between (a 202/416/status/create answer; a transport failure alone is no resync);
//! - `NeedData` inside the file and at most one fragment; the bytes held stay within
//!   `(1 + read_ahead)` fragments;
//! - bounded steps: at most [`BURST`] outputs between two inputs, and once the script
//!   has run out (the honest emulator answers everything) the upload ends within
//!   [`HONEST_STEPS`] polls;
//! - success: the item's size (and hashes, when reported) match the source; when the
//!   answer that finished the upload came from the emulator, the emulator stores exactly
//!   the source (size, SHA-256, QuickXorHash); a clean run (no garbage, no lost answers)
//!   counts zero emulator violations; never `UploadError::Internal`.

use crate::shapes::{self, Clock, Ctx, R, number, pick, rfc3339, short_string};
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use upload_session::onedrive::{
    Checkpoint, Completed, DeferCommit, OneDriveConfig, OneDriveUpload, Target,
};
use upload_session::retry::RetryPolicy;
use upload_session::{
    AccessToken, Event, OutgoingRequest, Output, RequestId, RequestKind, SourceFingerprint,
    TransportFailure, UploadError, UploadMachine,
};
use upload_session_emulator::config::{InnerErrorKey, OneDriveFlavor, RangeStyle};
use upload_session_emulator::{Config, DEFAULT_TOKEN, Emulator, Service, TransportFault};

/// The fragment unit: 320 KiB, or 320 bytes in a fuzz build (`--cfg fuzzing` scales the
/// core's and the emulator's units alike, see fuzz/README.md).
const UNIT: u64 = upload_session::onedrive::limits::FRAGMENT_UNIT;
const MAX_FRAGMENT: u64 = 62_914_560;
/// Most outputs between two inputs (a busy loop otherwise).
pub const BURST: u32 = 64;
/// Polls allowed after the script ran out.
pub const HONEST_STEPS: u64 = 20_000;
/// Polls allowed in all.
const MAX_STEPS: u64 = 60_000;
const PATH: &str = "/fz/file.bin";

/// OneDrive response parsing: status, headers and body through the core's parsers (its
/// `fuzzing` module), with their bounds checked. One input in `UPLOAD_ONE_IN` (32)
/// (chosen by a hash of the input, so the share holds whatever the corpus looks like) also
/// answers one phase of a real (small) upload with the generated response: see
/// [`onedrive_response_in_upload`]. The machine target scripts garbled answers at every
/// phase anyway, so the parse target does not pay for a whole upload per execution.
pub fn onedrive_response(data: &[u8]) {
    parse_one(data, shapes::selected_for_upload(data), false);
}

/// [`onedrive_response`] with the upload phase always on, and a literal response (a seed)
/// answering a two-fragment upload rather than a small one: what the seed replay runs.
pub fn onedrive_response_in_upload(data: &[u8]) {
    parse_one(data, true, true);
}

fn parse_one(data: &[u8], upload: bool, two_fragments: bool) {
    if let Some(lit) = shapes::Literal::parse(data) {
        for cap in [16, 1 << 20] {
            check_parsed(lit.response.body(), lit.response.headers(), cap);
        }
        if upload {
            let size = if two_fragments { UNIT + 100 } else { 1000 };
            let _ = run(&mut Unstructured::new(&[]), &Mode::Literal(lit, size));
        }
        return;
    }
    let mut u = Unstructured::new(data);
    // 1. The parsers directly.
    let ctx = Ctx {
        size: 1_000_000,
        range: Some((327_680, 655_360)),
        qxh: "TADXUJco6p+nPaZjPJ/9E2la2bE=".into(),
        sha: "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".into(),
        session: "https://sn3302.up.1drv.com/up/fe6987415ace7X4e1eF866337".into(),
        ..Ctx::default()
    };
    let resp = if u.ratio(1u8, 3).unwrap_or(false) {
        let mut r = shapes::response(shapes::status(&mut u, &[]), shapes::odd_body(&mut u));
        shapes::headers(&mut u, &mut r);
        r
    } else {
        let kinds = [
            RequestKind::CreateSession,
            RequestKind::UploadData {
                range: upload_session::ByteRange::new(0, 1)
                    .unwrap_or(upload_session::ByteRange::empty(0)),
            },
            RequestKind::QueryStatus,
            RequestKind::Commit,
            RequestKind::Metadata,
        ];
        let k = kinds[u.choose_index(kinds.len()).unwrap_or(0)];
        garbled(&mut u, k, &ctx)
    };
    let cap = if u.ratio(1u8, 8).unwrap_or(false) {
        16
    } else {
        1 << 20
    };
    check_parsed(resp.body(), resp.headers(), cap);
    // 2. The machine (a small file), garbled answers from request `first` for `count`
    // requests.
    if upload {
        let first = u.int_in_range(0u8..=5).unwrap_or(0);
        let count = u.int_in_range(1u8..=4).unwrap_or(1);
        let _ = run(&mut u, &Mode::Response { first, count });
    }
}

/// The OneDrive machine under arbitrary server behaviour (see the module docs).
pub fn onedrive_machine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u, &Mode::Machine);
}

fn check_parsed(body: &[u8], headers: &HeaderMap, cap: usize) {
    let p = upload_session::fuzzing::onedrive_parse(body, headers, cap, shapes::start_wall());
    assert!(p.codes.len() <= 8, "error code chain not bounded");
    assert!(p.codes.iter().all(|c| c.chars().count() <= 128));
    if let Some(Ok(s)) = &p.session {
        for (a, b) in s.ranges.iter().flatten() {
            assert!(b.is_none_or(|b| *a <= b), "range {a}-{b:?} accepted");
        }
    }
    if body.len() > cap {
        assert!(matches!(p.session, Some(Err(_))) && !p.finished_item);
        assert!(p.codes.is_empty());
    }
}

#[derive(Debug)]
enum Mode {
    Machine,
    Response {
        first: u8,
        count: u8,
    },
    /// A seed: this response answers the first request of its phase of an upload of
    /// this many bytes.
    Literal(shapes::Literal, u64),
}

fn phase_of(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::CreateSession => "create",
        RequestKind::UploadData { .. } => "fragment",
        RequestKind::QueryStatus => "status",
        RequestKind::Commit => "commit",
        RequestKind::Metadata => "metadata",
        RequestKind::Cancel => "cancel",
        _ => "other",
    }
}

/// What the "network" does with one request.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Act {
    /// The emulator answers.
    Honest,
    /// The emulator answers, but after `secs` seconds (maybe past the deadline).
    Slow(u8),
    /// The emulator applies it; the answer is lost.
    Lost(bool),
    /// Never reaches the server.
    NotSent,
    /// A generated answer (the emulator never sees the request).
    Garbled,
}

/// What happens while the machine waits.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Between {
    Nothing,
    /// Time passes (seconds; big values expire sessions).
    Jump(u16),
    /// A long jump (hours).
    LongJump(u8),
    Cancel,
    /// Every token expires (the next Graph request gets 401).
    ExpireTokens,
    /// The process dies and resumes from its last checkpoint.
    Crash,
}

enum Delivery {
    Response(Response<Bytes>),
    Delayed(Duration, Response<Bytes>),
    Failure(TransportFailure),
}

struct Flight {
    id: RequestId,
    kind: RequestKind,
    deadline: Option<std::time::Instant>,
    delivery: Delivery,
    honest: bool,
    stale: bool,
}

struct Run {
    size: u64,
    fragment: u64,
    qxh: String,
    /// The source's SHA-256 and QuickXorHash, computed when first needed.
    sha: String,
    clock: Clock,
    emu: Emulator,
    flights: VecDeque<Flight>,
    /// Start of the last fragment sent, and whether a server answer came since.
    last_fragment: Option<u64>,
    resynced: bool,
    /// No garbage, no lost answers, no crash with a request on the wire.
    clean: bool,
    /// Requests sent so far.
    requests: u32,
    last_cp: Option<Checkpoint>,
    /// The last delivery came from the emulator.
    last_honest: bool,
    upload_url: String,
    refused_token: bool,
    literal_used: bool,
    /// Answers delivered since the last checkpoint.
    answers_since_cp: u32,
}

fn machine_config(u: &mut Unstructured<'_>, base: &str) -> OneDriveConfig {
    let mut cfg = OneDriveConfig::with_base(format!("{base}/onedrive/v1.0"));
    cfg.retry = RetryPolicy {
        seed: u64::arbitrary(u).unwrap_or(1),
        max_attempts: u.int_in_range(1u32..=6).unwrap_or(4),
        initial_delay: Duration::from_millis(u64::from(u.int_in_range(1u16..=2000).unwrap_or(500))),
        max_delay: Duration::from_secs(30),
        max_retry_after: Duration::from_secs(if u.ratio(1u8, 4).unwrap_or(false) {
            3600
        } else {
            120
        }),
        ..RetryPolicy::default()
    };
    cfg.request_timeout = Duration::from_secs(u64::from(u.int_in_range(5u8..=60).unwrap_or(30)));
    // Read-ahead depth 0-2, derived from a value already drawn so that the corpus
    // keeps its meaning (no new bytes are consumed).
    cfg.read_ahead = (cfg.request_timeout.as_secs() % 3) as u32;
    cfg.min_throughput = 1 << 20;
    cfg.max_restarts = u.int_in_range(0u32..=3).unwrap_or(2);
    cfg.max_orphan_waits = u.int_in_range(0u32..=2).unwrap_or(1);
    if u.ratio(1u8, 4).unwrap_or(false) {
        cfg.max_session_age = Some(Duration::from_secs(u64::from(
            u.int_in_range(60u16..=9000).unwrap_or(600),
        )));
    }
    cfg
}

fn run(u: &mut Unstructured<'_>, mode: &Mode) -> R<()> {
    // The upload.
    // Mostly one-fragment files; one input in four is a whole fragment or spans two to
    // six. With the real 320 KiB unit that hashing would dominate a run; a fuzz build
    // scales the unit to 320 bytes, so multi-fragment runs cost little there. The
    // response target answers one-fragment files only.
    let size = match u.int_in_range(0u8..=31)? {
        0 => 0,
        n if n <= 23 || matches!(mode, Mode::Response { .. }) => {
            u.int_in_range(1u64..=4096.min(UNIT))?
        }
        24 => UNIT - u.int_in_range(0u64..=100.min(UNIT - 1))?,
        25 => UNIT,
        26 => UNIT + u.int_in_range(1u64..=2000.min(UNIT - 1))?,
        _ => UNIT * u.int_in_range(2u64..=6)? + u.int_in_range(0u64..=100)?,
    };
    let fragment = if u.ratio(1u8, 8)? { 2 * UNIT } else { UNIT };
    let (size, literal_commit) = match mode {
        Mode::Literal(l, size) => (*size, l.phase == "commit"),
        _ => (size, false),
    };
    let defer = if literal_commit {
        DeferCommit::Auto
    } else {
        pick(
            u,
            &[DeferCommit::Off, DeferCommit::Auto, DeferCommit::Manual],
        )
    };
    let mut config = Config::default();
    config.digests.dropbox_content = false;
    config.digests.sha256 = false;
    config.onedrive.flavor = pick(u, &[OneDriveFlavor::Business, OneDriveFlavor::Personal]);
    config.onedrive.range_style = pick(u, &[RangeStyle::OpenEnded, RangeStyle::Closed]);
    config.onedrive.final_returns_session_shape = u.ratio(1u8, 4)?;
    config.onedrive.inner_error_key =
        pick(u, &[InnerErrorKey::CamelCase, InnerErrorKey::Lowercase]);
    config.onedrive.empty_error_bodies = u.ratio(1u8, 4)?;
    let emu = Emulator::new(config);
    let base = emu.config().base_url.clone();
    let cfg = machine_config(u, &base);

    let src = shapes::source(size);
    let fingerprint = SourceFingerprint::new(size, "fuzz");
    let Ok(token) = AccessToken::new(DEFAULT_TOKEN) else {
        return Ok(());
    };
    let Ok(mut m) = OneDriveUpload::builder(Target::path(PATH), size)
        .fragment_size(fragment)
        .defer_commit(defer)
        .fingerprint(fingerprint.clone())
        .access_token(token)
        .config(cfg.clone())
        .build()
    else {
        panic!("a valid upload did not build");
    };
    let mut r = Run {
        size,
        fragment,
        qxh: String::new(),
        sha: String::new(),
        clock: Clock::new(),
        emu,
        flights: VecDeque::new(),
        last_fragment: None,
        resynced: false,
        clean: true,
        requests: 0,
        last_cp: None,
        last_honest: false,
        upload_url: format!("{base}/onedrive/up/none?tempauth=x"),
        refused_token: false,
        literal_used: false,
        answers_since_cp: 0,
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
        let now = r.clock.now();
        match m.poll_output(now) {
            Output::Send(req) => r.send(u, mode, req),
            Output::NeedData { offset, len } => {
                assert!(
                    len <= r.fragment,
                    "NeedData of {len} bytes (fragment {})",
                    r.fragment
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
                let cap = (1 + u64::from(cfg.read_ahead)) * r.fragment;
                assert!(
                    m.held_bytes() <= cap,
                    "{} bytes held (read-ahead {}, fragment {})",
                    m.held_bytes(),
                    cfg.read_ahead,
                    r.fragment
                );
                burst = 0;
            }
            Output::Event(e) => {
                if shapes::trace() && !matches!(e, Event::Progress { .. }) {
                    eprintln!("    event {e:?}");
                }
                match e {
                    Event::Checkpoint(cp) => {
                        r.last_cp = Some(cp);
                        r.answers_since_cp = 0;
                    }
                    Event::TokenNeeded => {
                        if u.ratio(1u8, 16).unwrap_or(false) {
                            r.refused_token = true;
                        } else {
                            let t = r.emu.issue_token();
                            if let Ok(t) = AccessToken::new(t) {
                                m.set_access_token(t);
                                burst = 0;
                            }
                        }
                    }
                    Event::ReadyToCommit => {
                        m.commit(r.clock.now())
                            .expect("commit refused after ReadyToCommit");
                        burst = 0;
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
                    Between::LongJump(h) => {
                        r.clock.advance(Duration::from_secs(3600 * u64::from(h)))
                    }
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
                if let Some(f) = r.flights.pop_front() {
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

impl Run {
    fn sha(&mut self) -> String {
        if self.sha.is_empty() {
            self.sha = shapes::source_sha256(self.size);
        }
        self.sha.clone()
    }

    fn qxh(&mut self) -> String {
        if self.qxh.is_empty() {
            self.qxh = shapes::source_qxh(self.size);
        }
        self.qxh.clone()
    }

    fn ctx(&mut self, range: Option<(u64, u64)>) -> Ctx {
        let sha = self.sha();
        Ctx {
            size: self.size,
            range,
            qxh: self.qxh(),
            sha,
            session: self.upload_url.clone(),
            ..Ctx::default()
        }
    }

    fn send(&mut self, u: &mut Unstructured<'_>, mode: &Mode, req: OutgoingRequest) {
        self.check(&req);
        let in_flight = self.flights.iter().filter(|f| !f.stale).count();
        assert_eq!(
            in_flight, 0,
            "a second request while one is in flight: {req:?}"
        );
        let kind = req.kind();
        let range = match kind {
            RequestKind::UploadData { range } => Some((range.start(), range.end())),
            _ => None,
        };
        if let Some((start, _)) = range {
            if let Some(prev) = self.last_fragment {
                assert!(
                    start >= prev || self.resynced,
                    "fragment at {start} after one at {prev} with no server answer in between"
                );
            }
            self.last_fragment = Some(start);
            self.resynced = false;
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
            Mode::Literal(l, _) if !self.literal_used && l.phase == phase_of(kind) => {
                self.literal_used = true;
                Act::Garbled
            }
            Mode::Literal(..) => Act::Honest,
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
                let resp = self.emu.handle(self.clock.wall(), request);
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
                let resp = match mode {
                    Mode::Literal(l, _) => l.response(),
                    _ => garbled(u, kind, &self.ctx(range)),
                };
                (Delivery::Response(resp), false)
            }
        };
        self.flights.push_back(Flight {
            id,
            kind,
            deadline,
            delivery,
            honest,
            stale: false,
        });
    }

    fn check(&self, req: &OutgoingRequest) {
        let r = req.request();
        let auth = r.headers().contains_key(http::header::AUTHORIZATION);
        if req.has_secret_uri() {
            assert!(!auth, "Authorization on an uploadUrl: {req:?}");
        } else {
            assert!(auth, "no Authorization on a Graph request: {req:?}");
        }
        if let Some(len) = r.headers().get(http::header::CONTENT_LENGTH) {
            let len: Option<u64> = len.to_str().ok().and_then(|s| s.parse().ok());
            assert_eq!(
                len,
                Some(r.body().len() as u64),
                "Content-Length differs from the body"
            );
        }
        let body_len = r.body().len() as u64;
        if let RequestKind::UploadData { range } = req.kind() {
            assert_eq!(r.method(), Method::PUT);
            let cr = r
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .expect("a fragment without Content-Range");
            let (a, b, total) = parse_content_range(cr).expect("malformed Content-Range");
            let len = b
                .checked_sub(a)
                .map(|d| d + 1)
                .expect("Content-Range end below start");
            assert_eq!(total, self.size, "Content-Range total {cr}");
            assert_eq!(len, body_len, "Content-Range {cr} for {body_len} bytes");
            assert_eq!(
                (a, b + 1),
                (range.start(), range.end()),
                "kind range differs from {cr}"
            );
            assert!(
                len <= self.fragment && len <= MAX_FRAGMENT,
                "fragment of {len} bytes"
            );
            assert!(
                (b + 1) % UNIT == 0 || b + 1 == total,
                "unaligned fragment {cr}"
            );
        } else if let Some(cr) = r.headers().get(http::header::CONTENT_RANGE) {
            panic!("Content-Range {cr:?} on a {:?}", req.kind());
        }
        if matches!(req.kind(), RequestKind::SimpleUpload) {
            assert_eq!(body_len, self.size, "simple upload of {body_len} bytes");
        }
    }

    fn deliver(&mut self, m: &mut OneDriveUpload, f: Flight) {
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
        let outcome = match f.delivery {
            Delivery::Response(resp) => {
                self.answered(&f.kind, &resp, f.stale);
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
                    self.answered(&f.kind, &resp, f.stale);
                    m.handle_response(now, f.id, resp)
                }
            }
        };
        self.last_honest = f.honest;
        self.answers_since_cp += 1;
        if shapes::trace() {
            eprintln!("    phase {:?}", m.phase());
        }
        outcome.expect("the machine refused the outcome of its own request");
    }

    fn answered(&mut self, kind: &RequestKind, resp: &Response<Bytes>, stale: bool) {
        if stale {
            return;
        }
        if matches!(
            kind,
            RequestKind::CreateSession
                | RequestKind::UploadData { .. }
                | RequestKind::QueryStatus
                | RequestKind::Commit
        ) {
            self.resynced = true;
        }
        if matches!(kind, RequestKind::CreateSession) {
            if let Ok(v) = serde_json::from_slice::<Value>(resp.body()) {
                if let Some(url) = v.get("uploadUrl").and_then(Value::as_str) {
                    self.upload_url = url.to_string();
                }
            }
        }
    }

    fn crash(
        &mut self,
        fingerprint: &SourceFingerprint,
        cfg: &OneDriveConfig,
    ) -> Option<OneDriveUpload> {
        let cp = self.last_cp.as_ref()?;
        let token = AccessToken::new(self.emu.issue_token()).ok();
        let m = crate::resume_after_crash::<OneDriveUpload>(cp, fingerprint, cfg, token)?;
        // The new process forgets what the server told it since the checkpoint: the
        // emulator cannot know that, so it may flag the (correct) re-query.
        if self.answers_since_cp > 0 || self.flights.iter().any(|f| f.honest) {
            // An applied request whose answer died with the process.
            self.clean = false;
        }
        self.flights.clear();
        self.last_fragment = None;
        self.resynced = false;
        Some(m)
    }

    fn finished(&mut self, result: Result<Completed, UploadError>) {
        if self.clean {
            let v: Vec<_> = self.emu.violations().iter().collect();
            assert!(v.is_empty(), "a correct client was flagged: {v:?}");
        }
        match result {
            Ok(done) => {
                assert_eq!(
                    done.item.size,
                    Some(self.size),
                    "success with the wrong size"
                );
                let qxh = self.qxh();
                if let Some(h) = &done.item.quick_xor_hash {
                    assert_eq!(h, &qxh, "success with a wrong quickXorHash");
                    assert!(done.verification.quick_xor);
                }
                // SHA-256 is opt-in (off by default, onedrive.md §7.1): a reported
                // sha256Hash is only compared when the machine computed one.
                if done.verification.sha256 {
                    let h = done.item.sha256_hash.as_deref().unwrap_or_default();
                    assert!(
                        h.eq_ignore_ascii_case(&self.sha()),
                        "success with a wrong sha256Hash"
                    );
                }
                if self.last_honest {
                    let rec = self
                        .emu
                        .file(Service::OneDrive, PATH)
                        .expect("the emulator confirmed an upload it does not hold");
                    assert_eq!(
                        rec.content.size, self.size,
                        "the emulator holds other bytes"
                    );
                    assert_eq!(rec.content.quick_xor_hash.as_deref(), Some(qxh.as_str()));
                }
            }
            Err(UploadError::Internal { detail }) => panic!("internal error: {detail}"),
            Err(_) => {}
        }
    }
}

fn parse_content_range(cr: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = cr.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

fn ranges(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    if u.ratio(1u8, 10).unwrap_or(false) {
        return shapes::any_json(u, 2);
    }
    let n = u.int_in_range(0u8..=3).unwrap_or(1);
    let mut v = Vec::new();
    for _ in 0..n {
        let a = number(u, ctx);
        let a = a.as_u64().map_or_else(|| a.to_string(), |n| n.to_string());
        v.push(match u.int_in_range(0u8..=4).unwrap_or(0) {
            0 | 1 => json!(format!("{a}-")),
            2 => {
                let b = number(u, ctx);
                let b = b.as_u64().map_or_else(|| b.to_string(), |n| n.to_string());
                json!(format!("{a}-{b}"))
            }
            3 => json!(format!("{a}-{}", ctx.size.saturating_sub(1))),
            _ => json!(short_string(u, 24)),
        });
    }
    Value::Array(v)
}

fn session(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let url = match u.int_in_range(0u8..=7).unwrap_or(0) {
        0..=2 => json!(ctx.session),
        3 => json!("https://up.example/s?tempauth=T"),
        4 => json!("http://evil.example/upload?tempauth=T"),
        5 => json!("/relative/path"),
        6 => json!(7),
        _ => json!(short_string(u, 60)),
    };
    let mut m = serde_json::Map::new();
    if !u.ratio(1u8, 10).unwrap_or(false) {
        m.insert("uploadUrl".into(), url);
    }
    if !u.ratio(1u8, 6).unwrap_or(false) {
        m.insert("expirationDateTime".into(), rfc3339(u));
    }
    if !u.ratio(1u8, 6).unwrap_or(false) {
        m.insert("nextExpectedRanges".into(), ranges(u, ctx));
    }
    Value::Object(m)
}

fn item(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let qx = match u.int_in_range(0u8..=5).unwrap_or(0) {
        0..=2 => json!(ctx.qxh),
        3 => json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        4 => Value::Null,
        _ => json!(42),
    };
    let sha = match u.int_in_range(0u8..=4).unwrap_or(0) {
        0 | 1 => json!(ctx.sha.to_uppercase()),
        2 => json!(ctx.sha),
        3 => json!("00"),
        _ => Value::Null,
    };
    let size = if u.ratio(3u8, 4).unwrap_or(true) {
        json!(ctx.size)
    } else {
        number(u, ctx)
    };
    let id = match u.int_in_range(0u8..=4).unwrap_or(0) {
        0..=2 => json!("01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K"),
        3 => json!(5),
        _ => json!(""),
    };
    let mut hashes = serde_json::Map::new();
    if !u.ratio(1u8, 5).unwrap_or(false) {
        hashes.insert("quickXorHash".into(), qx);
    }
    if u.ratio(1u8, 2).unwrap_or(false) {
        hashes.insert("sha256Hash".into(), sha);
    }
    let mut m = serde_json::Map::new();
    if !u.ratio(1u8, 8).unwrap_or(false) {
        m.insert("id".into(), id);
    }
    m.insert("name".into(), json!("file.bin"));
    m.insert("size".into(), size);
    m.insert("eTag".into(), json!("\"{ABC},2\""));
    m.insert("file".into(), json!({ "hashes": Value::Object(hashes) }));
    Value::Object(m)
}

fn error(u: &mut Unstructured<'_>) -> Value {
    let codes = [
        "itemNotFound",
        "invalidRange",
        "activityLimitReached",
        "nameAlreadyExists",
        "resourceModified",
        "quotaLimitReached",
        "unauthenticated",
        "InvalidAuthenticationToken",
        "generalException",
        "serviceNotAvailable",
        "fragmentOverlap",
        "invalidRequest",
        "accessDenied",
        "fileSizeExceedsMaxLimit",
    ];
    let depth = u.int_in_range(0u8..=10).unwrap_or(1);
    let mut inner = Value::Null;
    for i in 0..=depth {
        let code = if u.ratio(1u8, 8).unwrap_or(false) {
            json!(short_string(u, 200))
        } else {
            json!(codes[u.choose_index(codes.len()).unwrap_or(0)])
        };
        let mut m = serde_json::Map::new();
        m.insert("code".into(), code);
        if i == depth {
            m.insert(
                "message".into(),
                json!("The request is malformed or incorrect."),
            );
        }
        if !inner.is_null() {
            let key = if u.ratio(1u8, 2).unwrap_or(false) {
                "innerError"
            } else {
                "innererror"
            };
            m.insert(key.into(), inner);
        }
        inner = Value::Object(m);
    }
    json!({ "error": inner })
}

/// A generated answer to a request of `kind`.
fn garbled(u: &mut Unstructured<'_>, kind: RequestKind, ctx: &Ctx) -> Response<Bytes> {
    let likely: &[u16] = match kind {
        RequestKind::CreateSession => &[200, 200, 200, 401, 409, 412, 429, 503, 507, 404, 400],
        RequestKind::UploadData { .. } => &[
            202, 202, 202, 200, 201, 416, 404, 409, 500, 503, 429, 401, 413,
        ],
        RequestKind::QueryStatus => &[200, 200, 404, 401, 500, 429],
        RequestKind::Commit => &[200, 201, 409, 404, 500, 202, 412],
        RequestKind::Metadata => &[200, 200, 404, 500, 429],
        RequestKind::Cancel => &[204, 404, 500],
        _ => &[200, 201, 409, 500],
    };
    let status = shapes::status(u, likely);
    let s = status.as_u16();
    let shape = u.int_in_range(0u8..=9).unwrap_or(0);
    let v = match (s, shape) {
        (_, 9) => Value::Null,
        (_, 8) => error(u),
        (200 | 201, 0..=4)
            if !matches!(kind, RequestKind::CreateSession | RequestKind::QueryStatus) =>
        {
            item(u, ctx)
        }
        (200..=202, 0..=5) => session(u, ctx),
        (202, _) => {
            json!({ "nextExpectedRanges": ranges(u, ctx), "expirationDateTime": rfc3339(u) })
        }
        (400..=599, 0..=6) => error(u),
        (_, 6) => item(u, ctx),
        _ => session(u, ctx),
    };
    let body = if v.is_null() {
        shapes::odd_body(u)
    } else {
        shapes::body_of(u, v)
    };
    let mut r = shapes::response(status, body);
    shapes::headers(u, &mut r);
    r
}
