//! Test helpers (feature `test-support`): a virtual clock and a scenario harness that
//! fast-forwards a OneDrive machine to any phase. Not part of the stable API; these
//! helpers panic on unexpected machine output, as tests want.

mod driver;
pub mod dropbox;
pub use driver::{Delivery, DriveReport, drive};

use crate::onedrive::{
    Checkpoint, Completed, DeferCommit, OneDriveConfig, OneDriveEvent, OneDriveOutput,
    OneDriveUpload, Target,
};
use crate::wallclock::format_rfc3339;
use crate::{AccessToken, OutgoingRequest, Output, RequestId, UploadError, UploadMachine};
use bytes::Bytes;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock that only moves when told to.
#[derive(Clone, Copy, Debug)]
pub struct VirtualClock {
    base: Instant,
    elapsed: Duration,
    wall_base: SystemTime,
}

impl VirtualClock {
    /// Starts a clock whose wall time is `wall`. (Reads the real monotonic clock once to
    /// get an `Instant` to count from; nothing depends on its value.)
    pub fn new(wall: SystemTime) -> Self {
        Self {
            base: Instant::now(),
            elapsed: Duration::ZERO,
            wall_base: wall,
        }
    }

    /// The monotonic now.
    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// The wall-clock now.
    pub fn wall(&self) -> SystemTime {
        self.wall_base + self.elapsed
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Moves forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.elapsed += d;
    }

    /// Moves forward to `t` (never backwards).
    pub fn advance_to(&mut self, t: Instant) {
        if let Some(d) = t.checked_duration_since(self.base) {
            self.elapsed = self.elapsed.max(d);
        }
    }
}

/// The wall time scenarios start at: 2023-11-14T22:13:20Z.
pub fn start_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A pattern source of `size` bytes (position-dependent, so misplaced bytes change
/// every hash).
pub fn pattern(size: u64) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i as u8))
            .collect::<Vec<u8>>(),
    )
}

/// The upload URL scenario sessions use.
pub const UPLOAD_URL: &str = "https://up.test/up/session-1?tempauth=SECRET";

/// Builds a [`Harness`].
#[derive(Clone, Debug)]
pub struct Scenario {
    size: u64,
    fragment: u64,
    defer: DeferCommit,
    config: OneDriveConfig,
    token: bool,
    target: Target,
    sha256: bool,
}

impl Scenario {
    /// A OneDrive upload of `size` pattern bytes to `/docs/file.bin`, fragments of one
    /// 320 KiB unit.
    pub fn onedrive(size: u64) -> Self {
        Self {
            size,
            fragment: 327_680,
            defer: DeferCommit::Off,
            config: OneDriveConfig::with_base("https://graph.test/v1.0"),
            token: true,
            target: Target::path("/docs/file.bin"),
            sha256: true,
        }
    }

    /// Sets the fragment size.
    pub fn fragment(mut self, f: u64) -> Self {
        self.fragment = f;
        self
    }

    /// Sets deferCommit.
    pub fn defer_commit(mut self, d: DeferCommit) -> Self {
        self.defer = d;
        self
    }

    /// Changes the configuration.
    pub fn config(mut self, f: impl FnOnce(&mut OneDriveConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Starts without an access token.
    pub fn no_token(mut self) -> Self {
        self.token = false;
        self
    }

    /// Whether the machine computes SHA-256 (on in scenarios, so the unit tests check
    /// both hashes; the builder's default is off).
    pub fn sha256(mut self, on: bool) -> Self {
        self.sha256 = on;
        self
    }

    /// Sets the target.
    pub fn target(mut self, t: Target) -> Self {
        self.target = t;
        self
    }

    /// Builds the harness (the machine has produced no output yet).
    pub fn build(self) -> Harness {
        let mut b = OneDriveUpload::builder(self.target, self.size)
            .fragment_size(self.fragment)
            .defer_commit(self.defer)
            .verify_sha256(self.sha256)
            .config(self.config);
        if self.token {
            b = b.access_token(AccessToken::new("test-token").expect("valid token"));
        }
        let m = b.build().expect("scenario builds");
        let clock = VirtualClock::new(start_wall());
        let mut h = Harness {
            m,
            clock,
            data: pattern(self.size),
            events: Vec::new(),
        };
        let (now, wall) = (h.clock.now(), h.clock.wall());
        h.m.handle_wall_clock(now, wall);
        h
    }
}

/// What the harness stopped at.
#[derive(Debug)]
pub enum Next {
    /// A request to answer.
    Send(OutgoingRequest),
    /// A wait.
    Wait(Option<Instant>),
    /// The end.
    Finished(Result<Completed, UploadError>),
}

/// A machine plus a virtual clock and its source bytes.
#[derive(Debug)]
pub struct Harness {
    /// The machine.
    pub m: OneDriveUpload,
    /// The clock.
    pub clock: VirtualClock,
    /// The source.
    pub data: Bytes,
    /// Every event seen so far.
    pub events: Vec<OneDriveEvent>,
}

/// Builds a JSON response.
pub fn json(status: u16, body: serde_json::Value) -> http::Response<Bytes> {
    raw(status, Bytes::from(body.to_string()))
}

/// Builds a response with any body.
pub fn raw(status: u16, body: Bytes) -> http::Response<Bytes> {
    let mut r = http::Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    r
}

impl Harness {
    /// Polls once (raw output; events are recorded too).
    pub fn poll(&mut self) -> OneDriveOutput {
        let o = self.m.poll_output(self.clock.now());
        if let Output::Event(e) = &o {
            self.events.push(e.clone());
        }
        o
    }

    /// Polls until a request, a wait or the end, recording events and serving data.
    pub fn run(&mut self) -> Next {
        for _ in 0..10_000 {
            match self.poll() {
                Output::Send(r) => return Next::Send(r),
                Output::NeedData { offset, len } => {
                    let data = self.data.slice(offset as usize..(offset + len) as usize);
                    self.m.provide_data(offset, data).expect("data accepted");
                }
                Output::Event(_) => {}
                Output::Wait(w) => return Next::Wait(w),
                Output::Finished(r) => return Next::Finished(r),
            }
        }
        panic!("the machine did not settle");
    }

    /// Like [`run`](Self::run), but also lets timers fire until a request or the end.
    pub fn next_request(&mut self) -> Next {
        for _ in 0..1000 {
            match self.run() {
                Next::Wait(Some(t)) => {
                    self.clock.advance_to(t);
                    let now = self.clock.now();
                    self.m.handle_timeout(now);
                }
                other => return other,
            }
        }
        panic!("no request after 1000 timers");
    }

    /// Expects a request (after letting timers fire).
    pub fn expect_send(&mut self) -> OutgoingRequest {
        match self.next_request() {
            Next::Send(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Expects the end.
    pub fn expect_finished(&mut self) -> Result<Completed, UploadError> {
        match self.next_request() {
            Next::Finished(r) => r,
            other => panic!("expected the end, got {other:?}"),
        }
    }

    /// Answers request `id`.
    pub fn respond(&mut self, id: RequestId, resp: http::Response<Bytes>) {
        let now = self.clock.now();
        self.m
            .handle_response(now, id, resp)
            .expect("known request");
    }

    /// Answers request `id` with JSON.
    pub fn respond_json(&mut self, id: RequestId, status: u16, body: serde_json::Value) {
        self.respond(id, json(status, body));
    }

    /// An expiry one hour from the virtual now.
    pub fn expiry_in(&self, d: Duration) -> String {
        format_rfc3339(self.clock.wall() + d)
    }

    /// A session body for the create answer.
    pub fn session_body(&self) -> serde_json::Value {
        serde_json::json!({
            "uploadUrl": UPLOAD_URL,
            "expirationDateTime": self.expiry_in(Duration::from_secs(3600)),
            "nextExpectedRanges": ["0-"],
        })
    }

    /// Answers the create request with a session; returns the first fragment request.
    pub fn to_uploading(&mut self) -> OutgoingRequest {
        let create = self.expect_send();
        assert_eq!(create.request().method(), http::Method::POST);
        let body = self.session_body();
        self.respond_json(create.id(), 200, body);
        self.expect_send()
    }

    /// Accepts fragments with 202 until the server holds at least `offset` bytes;
    /// returns the next fragment request.
    pub fn to_offset(&mut self, offset: u64) -> OutgoingRequest {
        let mut req = self.to_uploading();
        loop {
            let (start, end) = fragment_bounds(&req);
            if start >= offset {
                return req;
            }
            let exp = self.expiry_in(Duration::from_secs(3600));
            self.respond_json(
                req.id(),
                202,
                serde_json::json!({"expirationDateTime": exp, "nextExpectedRanges": [format!("{end}-")]}),
            );
            req = self.expect_send();
        }
    }

    /// The item JSON the server would report for the whole source.
    pub fn item_json(&self) -> serde_json::Value {
        let mut q = crate::onedrive::QuickXorHash::new();
        q.update(&self.data);
        let mut s = crate::hash::Sha256State::new();
        s.update(&self.data);
        serde_json::json!({
            "id": "ITEM-1",
            "name": "file.bin",
            "size": self.data.len(),
            "file": {"hashes": {"quickXorHash": q.base64(), "sha256Hash": s.hex().to_uppercase()}},
        })
    }

    /// The last checkpoint event seen.
    pub fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.events.iter().rev().find_map(|e| match e {
            crate::Event::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
    }
}

/// The `[start, end)` of a fragment request, from its `Content-Range`.
pub fn fragment_bounds(req: &OutgoingRequest) -> (u64, u64) {
    let cr = req
        .request()
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .expect("fragment has Content-Range");
    let (range, _) = cr
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .expect("Content-Range shape");
    let (a, b) = range.split_once('-').expect("range shape");
    let a: u64 = a.parse().expect("start");
    let b: u64 = b.parse().expect("end");
    (a, b + 1)
}
