//! The hostile-input catalogue of issue 7: what a remote server, a proxy or an attacker
//! can send, and what a careless caller can configure, for both machines.
//!
//! Each input is one named test (a failure names the input). Every case must end in a
//! typed error (the exact variant and its fields are asserted) or a documented safe
//! clamp, never a panic, a hang or an unbounded allocation: runs go through the
//! in-memory [`drive`] loop with a step bound and a virtual clock, and each run asserts
//! that the machine finished within [`MAX_STEPS`] outputs and [`MAX_VIRTUAL`] of virtual
//! time, and that no `Authorization` header reached a pre-authenticated URL.
//!
//! The honest part of every conversation is the emulator's model (in memory); a
//! per-test closure replaces the answers under test. Spec sections are cited as
//! `od §x` (shared/spec/onedrive.md) and `dbx §x` (shared/spec/dropbox.md). The
//! limits and clamps exercised here are listed in the crate docs ("Hostile input").

use bytes::Bytes;
use std::cell::RefCell;
use std::time::{Duration, SystemTime};
use upload_session::dropbox::{
    BatchCommit, BatchEntry, ClosedSession, CommitInfo, DropboxConfig, DropboxUpload, PathRoot,
    SessionType,
};
use upload_session::onedrive::{
    Checkpoint, Drive, OneDriveConfig, OneDriveUpload, QuickXorHash, Target,
};
use upload_session::retry::RetryPolicy;
use upload_session::testing::{Delivery, DriveReport, VirtualClock, drive, pattern, start_wall};
use upload_session::{
    AccessToken, BuildError, Event, ResumeError, ServiceCodes, SourceFingerprint, TransportFailure,
    UploadError, UploadMachine,
};
use upload_session_emulator::{Config, DEFAULT_TOKEN, Emulator};

/// Outputs one run may poll before it counts as a hang.
const MAX_STEPS: u64 = 50_000;
/// Virtual time one run may take before it counts as a hang (no single wait exceeds
/// `retry::MAX_WAIT` = 24 h, and the budgets allow only a handful of them).
const MAX_VIRTUAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// OneDrive fragment unit (od §0).
const UNIT: u64 = 327_680;
/// A OneDrive file of four fragments, the last one short.
const OD_SIZE: u64 = 3 * UNIT + 1000;
/// 10 GiB, the announced length of the `Content-Length` cases.
const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;
/// Ten years in seconds.
const TEN_YEARS: u64 = 10 * 365 * 24 * 3600;

// ------------------------------------------------------------------ shared harness

/// The emulator (the honest server) and a log of every request the machine sent.
struct World {
    emu: RefCell<Emulator>,
    base: String,
    sent: RefCell<Vec<Seen>>,
    /// The wall time of the request being answered.
    wall: std::cell::Cell<SystemTime>,
}

/// What the test saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    uri: String,
    host: String,
    headers: http::HeaderMap,
    body: Bytes,
}

fn world() -> World {
    let emu = Emulator::new(Config::default());
    let base = emu.config().base_url.trim_end_matches('/').to_string();
    World {
        emu: RefCell::new(emu),
        base,
        sent: RefCell::new(Vec::new()),
        wall: std::cell::Cell::new(start_wall()),
    }
}

/// The honest answer.
fn honest(w: &World, wall: SystemTime, req: http::Request<Bytes>) -> http::Response<Bytes> {
    w.emu.borrow_mut().handle(wall, req)
}

/// A response with any status, body and extra headers.
fn resp(status: u16, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> http::Response<Bytes> {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

/// Drives `m` with `server` (which sees the world, the wall time and the request),
/// records every request and event, and checks the universal bounds.
fn run<M: UploadMachine>(
    w: &World,
    m: &mut M,
    source: &Bytes,
    mut server: impl FnMut(&World, SystemTime, http::Request<Bytes>) -> Delivery,
) -> (DriveReport<M::Completed>, Vec<Event<M::Checkpoint>>)
where
    M::Checkpoint: Clone,
{
    let mut clock = VirtualClock::new(start_wall());
    let mut events = Vec::new();
    let report = drive(
        m,
        &mut clock,
        source,
        MAX_STEPS,
        |wall, req| {
            w.wall.set(wall);
            w.sent.borrow_mut().push(Seen {
                method: req.method().clone(),
                uri: req.uri().to_string(),
                host: req.uri().host().unwrap_or("").to_string(),
                headers: req.headers().clone(),
                body: req.body().clone(),
            });
            server(w, wall, req)
        },
        |e| {
            events.push(e.clone());
            false
        },
        || AccessToken::new(DEFAULT_TOKEN).ok(),
    );
    assert!(
        report.result.is_some(),
        "no result after {} steps",
        report.steps
    );
    assert!(!report.stuck, "stuck");
    assert!(report.steps < MAX_STEPS, "{} steps", report.steps);
    assert!(report.elapsed <= MAX_VIRTUAL, "took {:?}", report.elapsed);
    assert_eq!(
        report.auth_on_secret_uri, 0,
        "Authorization on an uploadUrl"
    );
    for s in w.sent.borrow().iter() {
        for (name, v) in &s.headers {
            assert!(
                v.as_bytes()
                    .iter()
                    .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)),
                "header {name} carries control or non-ASCII bytes: {v:?}"
            );
        }
    }
    (report, events)
}

/// The error a run ended with.
fn err_of<C: std::fmt::Debug>(r: &DriveReport<C>) -> UploadError {
    match &r.result {
        Some(Err(e)) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The last cause of a `TooManyRetries`.
fn retries_last(e: &UploadError) -> &UploadError {
    match e {
        UploadError::TooManyRetries { last, .. } => last,
        other => panic!("expected TooManyRetries, got {other:?}"),
    }
}

/// `RetryScheduled` delays seen.
fn delays<K: Clone>(events: &[Event<K>]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RetryScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ OneDrive harness

/// Which OneDrive route a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Od {
    Create,
    Put,
    Status,
    Commit,
    Delete,
    Item,
    Simple,
}

fn od_route(req: &http::Request<Bytes>) -> Od {
    let p = req.uri().path();
    if p.ends_with("/createUploadSession") {
        Od::Create
    } else if p.contains("/onedrive/up/") {
        match *req.method() {
            http::Method::PUT => Od::Put,
            http::Method::GET => Od::Status,
            http::Method::POST => Od::Commit,
            _ => Od::Delete,
        }
    } else if *req.method() == http::Method::PUT {
        Od::Simple
    } else {
        Od::Item
    }
}

fn od_config(w: &World) -> OneDriveConfig {
    OneDriveConfig::with_base(format!("{}/onedrive/v1.0", w.base))
}

fn od_machine(w: &World, size: u64, f: impl FnOnce(&mut OneDriveConfig)) -> OneDriveUpload {
    let mut cfg = od_config(w);
    f(&mut cfg);
    OneDriveUpload::builder(Target::path("/hostile/file.bin"), size)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap()
}

/// The result type of a OneDrive run.
type OdReport = DriveReport<upload_session::onedrive::Completed>;

/// Runs a OneDrive upload of [`OD_SIZE`] bytes where `hostile` may replace the answer
/// to any route (returning `None` keeps the honest one).
fn od_run(
    w: &World,
    f: impl FnOnce(&mut OneDriveConfig),
    mut hostile: impl FnMut(&World, Od, &http::Request<Bytes>) -> Option<http::Response<Bytes>>,
) -> (OdReport, Vec<Event<Checkpoint>>) {
    let mut m = od_machine(w, OD_SIZE, f);
    let source = pattern(OD_SIZE);
    run(w, &mut m, &source, |w, wall, req| {
        let route = od_route(&req);
        Delivery::Response(match hostile(w, route, &req) {
            Some(r) => r,
            None => honest(w, wall, req),
        })
    })
}

/// Applies the request honestly, then answers `r` instead (the server did the work; the
/// answer is hostile).
fn applied(
    w: &World,
    req: &http::Request<Bytes>,
    r: http::Response<Bytes>,
) -> http::Response<Bytes> {
    let mut copy = http::Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    let _ = w.emu.borrow_mut().handle(w.wall.get(), copy);
    r
}

/// The source's OneDrive item JSON with `size` replaced (`None`: removed).
fn od_item(size: serde_json::Value) -> serde_json::Value {
    let data = pattern(OD_SIZE);
    let mut q = QuickXorHash::new();
    q.update(&data);
    serde_json::json!({"id": "ITEM", "name": "file.bin", "size": size,
        "file": {"hashes": {"quickXorHash": q.base64()}}})
}

fn assert_od_ok(r: &OdReport) {
    match &r.result {
        Some(Ok(c)) => {
            assert_eq!(c.item.size, Some(OD_SIZE));
            assert!(c.verification.quick_xor, "not verified: {c:?}");
        }
        other => panic!("expected success, got {other:?}"),
    }
}

/// Every uploadSession-shaped answer (202 to a fragment, 200 to a status query) is
/// `body` (the fragment is applied first), so the machine can never learn an offset.
fn od_session_answers(body: &'static str) -> UploadError {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| match route {
            Od::Put => Some(applied(w, req, resp(202, body, &[]))),
            Od::Status => Some(resp(200, body, &[])),
            _ => None,
        },
    );
    err_of(&r)
}

fn assert_malformed_retries(e: &UploadError) {
    match retries_last(e) {
        UploadError::MalformedResponse { .. } => {}
        other => panic!("expected MalformedResponse as the last cause, got {other:?}"),
    }
}

/// The first fragment's 202 names `range` as the next expected range (applied).
fn od_first_202_range(range: &str) -> UploadError {
    let w = world();
    let body = format!(r#"{{"nextExpectedRanges":["{range}"]}}"#);
    let mut first = true;
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && std::mem::take(&mut first))
                .then(|| applied(w, req, resp(202, body.clone(), &[])))
        },
    );
    err_of(&r)
}

// ============================================================ OneDrive: malformed JSON

/// od §1.4: a truncated create answer is never trusted; the create is retried within
/// the budget, and no fragment is sent anywhere.
#[test]
fn od_create_body_truncated() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| {
            (route == Od::Create).then(|| {
                resp(
                    200,
                    r#"{"uploadUrl":"http://127.0.0.1:0/onedrive/up/x?tempa"#,
                    &[],
                )
            })
        },
    );
    assert_malformed_retries(&err_of(&r));
    assert!(only_creates_were_sent(&w));
}

/// od §1.4: an HTML error page with status 200.
#[test]
fn od_create_body_not_json() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| (route == Od::Create).then(|| resp(200, "<html>oops</html>", &[])),
    );
    assert_malformed_retries(&err_of(&r));
}

/// od §1.4: an empty 200.
#[test]
fn od_create_body_empty() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| (route == Od::Create).then(|| resp(200, "", &[])),
    );
    assert_malformed_retries(&err_of(&r));
}

/// od §2.2, §3.3: every 202 is truncated; the machine asks the status (honest) each
/// time and completes, verified.
#[test]
fn od_202_body_truncated_on_every_fragment() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() as u64 == UNIT)
                .then(|| applied(w, req, resp(202, r#"{"nextExpectedRanges":["32"#, &[])))
        },
    );
    assert_od_ok(&r);
}

/// od §2.2 + §3.1: 202 and status are both truncated forever: the budget ends it.
#[test]
fn od_202_and_status_truncated_forever() {
    assert_malformed_retries(&od_session_answers(
        r#"{"expirationDateTime":"2100-01-01T00:0"#,
    ));
}

/// od §2.3: the final item is truncated; the machine fetches the item and verifies.
#[test]
fn od_final_item_truncated() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() == 1000)
                .then(|| applied(w, req, resp(201, r#"{"id":"ITEM","size":"#, &[])))
        },
    );
    assert_od_ok(&r);
}

/// od §2.3 rule 27: final item and the item GET are both garbage: bounded retries.
#[test]
fn od_final_item_and_metadata_truncated_forever() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| match route {
            Od::Put if req.body().len() == 1000 => {
                Some(applied(w, req, resp(201, "{\"id\":", &[])))
            }
            Od::Item => Some(resp(200, "{\"id\":\"ITEM\",\"size\":", &[])),
            _ => None,
        },
    );
    assert_malformed_retries(&err_of(&r));
}

/// od §3.1: after a 500 (applied), every status answer is truncated.
#[test]
fn od_status_body_truncated_forever() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| match route {
            Od::Put => Some(applied(w, req, resp(500, "", &[]))),
            Od::Status => Some(resp(200, r#"{"nextExpectedRanges":["#, &[])),
            _ => None,
        },
    );
    assert_malformed_retries(&err_of(&r));
}

/// od §5.1: a truncated error body keeps its status; codes are empty.
#[test]
fn od_error_body_truncated() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| (route == Od::Put).then(|| resp(500, r#"{"error":{"code":"generalExc"#, &[])),
    );
    assert_eq!(
        retries_last(&err_of(&r)),
        &UploadError::ServerError {
            status: 500,
            codes: ServiceCodes(vec![])
        }
    );
}

/// od §5.1: an error chain nested 60,000 levels deep (under the 1 MiB cap) must not
/// overflow the stack: serde_json's recursion limit refuses it and the codes are empty.
#[test]
fn od_error_body_nested_60000_deep() {
    let mut body = String::from(r#"{"error":"#);
    for _ in 0..60_000 {
        body.push_str(r#"{"innerError":"#);
    }
    let body: &'static str = Box::leak(body.into_boxed_str());
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| (route == Od::Put).then(|| resp(500, body, &[])),
    );
    assert_eq!(
        retries_last(&err_of(&r)),
        &UploadError::ServerError {
            status: 500,
            codes: ServiceCodes(vec![])
        }
    );
}

/// od §5.1: a body over `max_response_body` is not parsed at all.
#[test]
fn od_202_body_over_the_cap_is_not_parsed() {
    let w = world();
    let big: &'static str = Box::leak(
        format!(
            r#"{{"nextExpectedRanges":["0-"],"pad":"{}"}}"#,
            "x".repeat(2 << 20)
        )
        .into_boxed_str(),
    );
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() as u64 == UNIT)
                .then(|| applied(w, req, resp(202, big, &[])))
        },
    );
    assert_od_ok(&r);
}

// ============================================================ OneDrive: Content-Length

/// The core never reads `Content-Length` of a response: a 10 GiB announcement on small
/// 202 bodies changes nothing (no preallocation, no trust).
#[test]
fn od_content_length_10_gib_on_small_202s() {
    let w = world();
    let cl = TEN_GIB.to_string();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put).then(|| {
                let mut honest = applied_honest(w, req);
                honest
                    .headers_mut()
                    .insert("content-length", cl.parse().unwrap());
                honest
            })
        },
    );
    assert_od_ok(&r);
}

/// Same on the create answer.
#[test]
fn od_content_length_10_gib_on_create() {
    let w = world();
    let cl = TEN_GIB.to_string();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Create).then(|| {
                let mut honest = applied_honest(w, req);
                honest
                    .headers_mut()
                    .insert("content-length", cl.parse().unwrap());
                honest
            })
        },
    );
    assert_od_ok(&r);
}

/// The honest answer to a request we only hold by reference.
fn applied_honest(w: &World, req: &http::Request<Bytes>) -> http::Response<Bytes> {
    let mut copy = http::Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    w.emu.borrow_mut().handle(w.wall.get(), copy)
}

// ============================================================ OneDrive: wrong JSON types

/// od §2.2: `nextExpectedRanges` as an object.
#[test]
fn od_ranges_as_object() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":{"0":"5-"}}"#));
}

/// od §2.2: ranges as numbers.
#[test]
fn od_ranges_as_numbers() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":[327680]}"#));
}

/// od §2.2: `null` where the array is expected counts as absent: malformed for a 202.
#[test]
fn od_ranges_null() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":null}"#));
}

/// od §2.2: a bare string instead of an array.
#[test]
fn od_ranges_as_string() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":"327680-"}"#));
}

/// od §2.2: nested arrays.
#[test]
fn od_ranges_nested_arrays() {
    assert_malformed_retries(&od_session_answers(
        r#"{"nextExpectedRanges":[["327680-"]]}"#,
    ));
}

/// od §2.2: a whole body that is `null`.
#[test]
fn od_session_body_null() {
    assert_malformed_retries(&od_session_answers("null"));
}

/// od §4.2: `expirationDateTime` as a number makes the body malformed.
#[test]
fn od_expiration_as_number() {
    assert_malformed_retries(&od_session_answers(
        r#"{"expirationDateTime":1700000000,"nextExpectedRanges":["0-"]}"#,
    ));
}

/// od §1.4: `uploadUrl` as a number, an array, `null`.
#[test]
fn od_upload_url_as_number() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| {
            (route == Od::Create)
                .then(|| resp(200, r#"{"uploadUrl":42,"nextExpectedRanges":["0-"]}"#, &[]))
        },
    );
    assert_malformed_retries(&err_of(&r));
}

#[test]
fn od_upload_url_as_array() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| {
            (route == Od::Create)
                .then(|| resp(200, r#"{"uploadUrl":["https://up.example/x"]}"#, &[]))
        },
    );
    assert_malformed_retries(&err_of(&r));
}

#[test]
fn od_upload_url_null() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| (route == Od::Create).then(|| resp(200, r#"{"uploadUrl":null}"#, &[])),
    );
    assert_malformed_retries(&err_of(&r));
}

/// The final 201 carries `item` with `size` replaced; the item is taken as is (an id is
/// there), so a size of the wrong type is a size the server did not report.
fn od_final_item(size: serde_json::Value) -> UploadError {
    let w = world();
    let body = od_item(size).to_string();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() == 1000)
                .then(|| applied(w, req, resp(201, body.clone(), &[])))
        },
    );
    err_of(&r)
}

/// od §7.1: a size given as a string is no size: SizeMismatch, never success.
#[test]
fn od_item_size_as_string() {
    assert_eq!(
        od_final_item(serde_json::json!(OD_SIZE.to_string())),
        UploadError::SizeMismatch {
            expected: OD_SIZE,
            actual: None
        }
    );
}

/// od §7.1: a float size.
#[test]
fn od_item_size_as_float() {
    assert_eq!(
        od_final_item(serde_json::json!(OD_SIZE as f64 + 0.5)),
        UploadError::SizeMismatch {
            expected: OD_SIZE,
            actual: None
        }
    );
}

/// od §7.1: a size above u64::MAX.
#[test]
fn od_item_size_above_u64() {
    let w = world();
    let body = od_item(serde_json::json!(0))
        .to_string()
        .replace("\"size\":0", "\"size\":18446744073709551616");
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() == 1000)
                .then(|| applied(w, req, resp(201, body.clone(), &[])))
        },
    );
    assert_eq!(
        err_of(&r),
        UploadError::SizeMismatch {
            expected: OD_SIZE,
            actual: None
        }
    );
}

/// od §7.1: a negative size.
#[test]
fn od_item_size_negative() {
    assert_eq!(
        od_final_item(serde_json::json!(-1)),
        UploadError::SizeMismatch {
            expected: OD_SIZE,
            actual: None
        }
    );
}

/// od §7.1: `null` size.
#[test]
fn od_item_size_null() {
    assert_eq!(
        od_final_item(serde_json::Value::Null),
        UploadError::SizeMismatch {
            expected: OD_SIZE,
            actual: None
        }
    );
}

/// od §2.3 rule 27: an item whose `id` is a number is no item: the machine fetches it.
#[test]
fn od_item_id_as_number_is_fetched() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() == 1000)
                .then(|| applied(w, req, resp(201, r#"{"id":7,"size":7}"#, &[])))
        },
    );
    assert_od_ok(&r);
}

/// od §7.1: a hash of the wrong type counts as unreported (never as a match): the
/// upload completes with `verification.quick_xor == false`.
#[test]
fn od_item_hash_as_number_is_unverified() {
    let w = world();
    let body =
        serde_json::json!({"id": "ITEM", "size": OD_SIZE, "file": {"hashes": {"quickXorHash": 5}}})
            .to_string();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && req.body().len() == 1000)
                .then(|| applied(w, req, resp(201, body.clone(), &[])))
        },
    );
    match &r.result {
        Some(Ok(c)) => assert!(!c.verification.quick_xor && !c.verification.sha256),
        other => panic!("{other:?}"),
    }
}

/// Duplicated keys: serde_json keeps the last one, which is then checked like any other
/// value (here a range beyond the file: a contradiction).
#[test]
fn od_duplicated_keys_last_one_wins() {
    let w = world();
    let body = format!(
        r#"{{"nextExpectedRanges":["{UNIT}-"],"nextExpectedRanges":["{}-"]}}"#,
        OD_SIZE + 1
    );
    let mut first = true;
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && std::mem::take(&mut first))
                .then(|| applied(w, req, resp(202, body.clone(), &[])))
        },
    );
    assert!(matches!(
        err_of(&r),
        UploadError::ServerContradiction { .. }
    ));
}

/// od §2.2: a start of 23 digits.
#[test]
fn od_range_huge_number() {
    assert_malformed_retries(&od_session_answers(
        r#"{"nextExpectedRanges":["99999999999999999999999-"]}"#,
    ));
}

// ============================================================ OneDrive: offsets

/// od §2.2 grammar: a negative start is malformed.
#[test]
fn od_range_negative() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":["-5-"]}"#));
}

/// od §2.2: 2^64 overflows u64: malformed.
#[test]
fn od_range_two_pow_64() {
    assert_malformed_retries(&od_session_answers(
        r#"{"nextExpectedRanges":["18446744073709551616-"]}"#,
    ));
}

/// od §3.3 step 2: u64::MAX lies beyond the file: a contradiction, fatal.
#[test]
fn od_range_u64_max() {
    let e = od_first_202_range("18446744073709551615-");
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// od §3.3 step 2 ("position is in the future"): a start beyond the file.
#[test]
fn od_range_beyond_the_file() {
    let e = od_first_202_range(&format!("{}-", OD_SIZE + 1));
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// A start equal to the size (nothing is missing, yet a range is listed).
#[test]
fn od_range_at_the_file_size() {
    let e = od_first_202_range(&format!("{OD_SIZE}-"));
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// A start inside the file but beyond every byte sent.
#[test]
fn od_range_beyond_what_was_sent() {
    let e = od_first_202_range(&format!("{}-", 2 * UNIT));
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// A range whose end lies beyond the file (`start-end` form): the start is what counts
/// (od §2.2 "do not size your next fragment from the range").
#[test]
fn od_range_end_beyond_the_file_is_ignored() {
    let w = world();
    let mut first = true;
    let body = format!(r#"{{"nextExpectedRanges":["{UNIT}-{}"]}}"#, u64::MAX);
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Put && std::mem::take(&mut first))
                .then(|| applied(w, req, resp(202, body.clone(), &[])))
        },
    );
    assert_od_ok(&r);
}

/// od §2.2: an empty string entry.
#[test]
fn od_range_empty_string() {
    assert_malformed_retries(&od_session_answers(r#"{"nextExpectedRanges":[""]}"#));
}

/// od §3.3: the server goes backwards once (behind what it confirmed): the machine
/// resends, meets the truth, and completes.
#[test]
fn od_range_backwards_once() {
    let w = world();
    let mut n = 0;
    let (r, events) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            if route != Od::Put {
                return None;
            }
            n += 1;
            (n == 2).then(|| applied(w, req, resp(202, r#"{"nextExpectedRanges":["0-"]}"#, &[])))
        },
    );
    assert_od_ok(&r);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Resynced { server: 0, .. }))
    );
}

/// od §3.3: every answer says "start again at 0" after the first fragment landed: the
/// budget (which only resets on progress) ends it.
#[test]
fn od_range_backwards_forever() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| match route {
            Od::Put => Some(applied(
                w,
                req,
                resp(202, r#"{"nextExpectedRanges":["0-"]}"#, &[]),
            )),
            Od::Status => Some(resp(200, r#"{"nextExpectedRanges":["0-"]}"#, &[])),
            _ => None,
        },
    );
    assert!(matches!(
        retries_last(&err_of(&r)),
        UploadError::OffsetMismatch { .. }
    ));
}

/// od §2.2: 40,000 ranges (under the 1 MiB cap) of which only the first is used.
#[test]
fn od_many_ranges() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            if route != Od::Put || req.body().len() as u64 != UNIT {
                return None;
            }
            let honest = applied_honest(w, req);
            let v: serde_json::Value = serde_json::from_slice(honest.body()).unwrap();
            let first = v["nextExpectedRanges"][0].as_str().unwrap().to_string();
            let mut ranges = vec![first];
            ranges.extend((0..40_000).map(|i| format!("{i}-{i}")));
            Some(resp(
                202,
                serde_json::json!({"nextExpectedRanges": ranges}).to_string(),
                &[],
            ))
        },
    );
    assert_od_ok(&r);
}

/// od §2.2: an empty list before every byte was sent (without deferCommit).
#[test]
fn od_ranges_empty_mid_upload() {
    let e = {
        let w = world();
        let mut first = true;
        let (r, _) = od_run(
            &w,
            |_| {},
            |w, route, req| {
                (route == Od::Put && std::mem::take(&mut first))
                    .then(|| applied(w, req, resp(202, r#"{"nextExpectedRanges":[]}"#, &[])))
            },
        );
        err_of(&r)
    };
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

// ============================================================ OneDrive: Retry-After

/// Every fragment answer is a 429 with this `Retry-After`.
fn od_throttled(
    value: &'static str,
    f: impl FnOnce(&mut OneDriveConfig),
) -> (UploadError, Vec<Duration>, Duration) {
    let w = world();
    let (r, events) = od_run(&w, f, |_, route, _| {
        (route == Od::Put).then(|| resp(429, "", &[("retry-after", value)]))
    });
    (err_of(&r), delays(&events), r.elapsed)
}

/// Waits of exactly `clamp`, and an end by the retry or the restart budget (a session
/// may expire during a long wait: a new one is made, within `max_restarts`).
fn assert_clamped(e: &UploadError, d: &[Duration], clamp: Duration) {
    assert!(!d.is_empty() && d.iter().all(|x| *x == clamp), "{d:?}");
    match e {
        UploadError::TooManyRetries { last, .. } => {
            assert!(matches!(**last, UploadError::Throttled { .. }), "{e:?}")
        }
        UploadError::TooManyRestarts { last, .. } => {
            assert_eq!(**last, UploadError::SessionExpired)
        }
        other => panic!("{other:?}"),
    }
}

/// od §6: ten years. The hint is clamped to `RetryPolicy::max_retry_after` (1 h); a wait
/// that would end beyond `max_elapsed` (30 min) gives up at once: no wait at all.
#[test]
fn od_retry_after_ten_years() {
    let ten: &'static str = Box::leak(TEN_YEARS.to_string().into_boxed_str());
    let (e, d, elapsed) = od_throttled(ten, |_| {});
    assert_eq!(
        retries_last(&e),
        &UploadError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(TEN_YEARS))
        }
    );
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(elapsed, Duration::ZERO);
}

/// With a budget long enough, the machine waits exactly the clamp (1 h), never longer.
#[test]
fn od_retry_after_ten_years_waits_the_clamp() {
    let ten: &'static str = Box::leak(TEN_YEARS.to_string().into_boxed_str());
    let (e, d, _) = od_throttled(ten, |c| {
        c.retry.max_elapsed = Duration::from_secs(100 * 3600);
        c.retry.max_attempts = 3;
    });
    assert_clamped(&e, &d, Duration::from_secs(3600));
}

/// od §6: u64::MAX seconds (and more digits than u64 holds) saturate, then clamp.
#[test]
fn od_retry_after_u64_max() {
    let (e, d, _) = od_throttled("18446744073709551615", |c| {
        c.retry.max_elapsed = Duration::from_secs(100 * 3600);
        c.retry.max_attempts = 2;
    });
    assert_clamped(&e, &d, Duration::from_secs(3600));
}

#[test]
fn od_retry_after_more_digits_than_u64() {
    let (e, d, _) = od_throttled("99999999999999999999999999999", |c| {
        c.retry.max_elapsed = Duration::from_secs(100 * 3600);
        c.retry.max_attempts = 2;
    });
    assert_clamped(&e, &d, Duration::from_secs(3600));
}

/// od §6: an HTTP-date in the past means "now"; the attempt budget still ends it.
#[test]
fn od_retry_after_http_date_in_the_past() {
    let (e, d, elapsed) = od_throttled("Sun, 06 Nov 1994 08:49:37 GMT", |_| {});
    assert!(matches!(retries_last(&e), UploadError::Throttled { .. }));
    assert_eq!(d, vec![Duration::ZERO; 10]);
    assert_eq!(elapsed, Duration::ZERO);
}

/// An HTTP-date in year 9999 clamps like a huge delay.
#[test]
fn od_retry_after_http_date_year_9999() {
    let (e, d, _) = od_throttled("Fri, 31 Dec 9999 23:59:59 GMT", |c| {
        c.retry.max_elapsed = Duration::from_secs(100 * 3600);
        c.retry.max_attempts = 2;
    });
    assert_clamped(&e, &d, Duration::from_secs(3600));
}

/// Garbage is no hint: the exponential schedule (capped at `max_delay`) applies.
#[test]
fn od_retry_after_garbage() {
    let (e, d, _) = od_throttled("soon, I promise", |_| {});
    assert_eq!(
        retries_last(&e),
        &UploadError::Throttled {
            status: 429,
            retry_after: None
        }
    );
    assert!(
        !d.is_empty() && d.iter().all(|d| *d <= Duration::from_secs(60)),
        "{d:?}"
    );
}

/// A negative value is no hint.
#[test]
fn od_retry_after_negative() {
    let (e, d, _) = od_throttled("-30", |_| {});
    assert_eq!(
        retries_last(&e),
        &UploadError::Throttled {
            status: 429,
            retry_after: None
        }
    );
    assert!(d.iter().all(|d| *d <= Duration::from_secs(60)), "{d:?}");
}

/// Two `Retry-After` headers: ambiguous, ignored.
#[test]
fn od_retry_after_duplicated() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |_, route, _| {
            (route == Od::Put)
                .then(|| resp(429, "", &[("retry-after", "5"), ("retry-after", "999999")]))
        },
    );
    assert_eq!(
        retries_last(&err_of(&r)),
        &UploadError::Throttled {
            status: 429,
            retry_after: None
        }
    );
}

// ============================================================ OneDrive: CR/LF/NUL

fn od_build(target: Target) -> Result<OneDriveUpload, BuildError> {
    OneDriveUpload::builder(target, 10)
        .fragment_size(UNIT)
        .build()
}

/// od §1.1: a path with CR/LF never reaches a URL or a header.
#[test]
fn od_path_with_crlf() {
    assert!(matches!(
        od_build(Target::path("/docs/a\r\nX-Evil: 1.bin")),
        Err(BuildError::InvalidPath { .. })
    ));
}

#[test]
fn od_path_with_nul() {
    assert!(matches!(
        od_build(Target::path("/docs/a\0b.bin")),
        Err(BuildError::InvalidPath { .. })
    ));
}

#[test]
fn od_child_name_with_lf() {
    assert!(matches!(
        od_build(Target::child(Drive::Me, "01PARENT", "a\nb.txt")),
        Err(BuildError::InvalidPath { .. })
    ));
}

#[test]
fn od_drive_id_with_cr() {
    assert!(matches!(
        od_build(Target::drive_path("b!x\r", "/a.bin")),
        Err(BuildError::InvalidId { .. })
    ));
}

#[test]
fn od_item_id_with_nul() {
    assert!(matches!(
        od_build(Target::item(Drive::Me, "01ITEM\0")),
        Err(BuildError::InvalidId { .. })
    ));
}

#[test]
fn od_parent_id_with_crlf() {
    assert!(matches!(
        od_build(Target::child(
            Drive::Group("g".into()),
            "01P\r\nX: y",
            "a.txt"
        )),
        Err(BuildError::InvalidId { .. })
    ));
}

/// od §1.2: `If-Match` goes into a header: CR/LF refused.
#[test]
fn od_if_match_with_crlf() {
    let r = OneDriveUpload::builder(Target::path("/a.bin"), 10)
        .fragment_size(UNIT)
        .if_match("\"etag\"\r\nX-Evil: 1")
        .build();
    assert!(
        matches!(
            r,
            Err(BuildError::InvalidOption {
                option: "if_match",
                ..
            })
        ),
        "{r:?}"
    );
}

/// od §1.3: a description travels in the JSON body, escaped; no header carries it.
#[test]
fn od_description_with_crlf_and_nul_stays_in_the_body() {
    let w = world();
    let mut m = OneDriveUpload::builder(Target::path("/hostile/d.bin"), OD_SIZE)
        .fragment_size(UNIT)
        .description("line1\r\nX-Evil: 1\0")
        .config(od_config(&w))
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let source = pattern(OD_SIZE);
    let (r, _) = run(&w, &mut m, &source, |w, wall, req| {
        Delivery::Response(honest(w, wall, req))
    });
    assert!(r.result.is_some());
    let sent = w.sent.borrow();
    let create = sent
        .iter()
        .find(|s| s.uri.ends_with("/createUploadSession"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(v["item"]["description"], "line1\r\nX-Evil: 1\0");
}

/// A percent-encoded CR/LF in a name is just text: encoded again, never decoded.
#[test]
fn od_path_with_percent_encoded_crlf_is_reencoded() {
    let t = Target::path("/a%0D%0Ab.bin");
    assert_eq!(t.api_path().unwrap(), "/me/drive/root:/a%250D%250Ab.bin:");
}

#[test]
fn od_graph_base_with_crlf() {
    let r = OneDriveUpload::builder(Target::path("/a.bin"), 10)
        .fragment_size(UNIT)
        .config(OneDriveConfig::with_base(
            "https://graph.microsoft.com/v1.0\r\nX: y",
        ))
        .build();
    assert!(matches!(r, Err(BuildError::InvalidBaseUrl { .. })), "{r:?}");
}

#[test]
fn access_token_with_crlf_or_nul() {
    assert!(AccessToken::new("tok\r\nX-Evil: 1").is_err());
    assert!(AccessToken::new("tok\0").is_err());
    assert!(AccessToken::new("").is_err());
}

// ============================================================ OneDrive: uploadUrl

/// The create answer (honestly applied) names `url` as the uploadUrl. Returns the
/// error and checks that no request went anywhere but the Graph host (loopback here),
/// and that nothing but the create carried `Authorization`.
fn od_upload_url(url: &'static str) -> OdReport {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Create).then(|| {
                let honest = applied_honest(w, req);
                let mut v: serde_json::Value = serde_json::from_slice(honest.body()).unwrap();
                v["uploadUrl"] = serde_json::Value::from(url);
                resp(200, v.to_string(), &[])
            })
        },
    );
    for s in w.sent.borrow().iter() {
        assert_eq!(s.host, "127.0.0.1", "a request went to {}", s.uri);
        assert!(!s.uri.contains("evil"), "{}", s.uri);
        if s.method != http::Method::POST || !s.uri.ends_with("/createUploadSession") {
            assert_ne!(s.method, http::Method::PUT, "a fragment was sent");
        }
    }
    r
}

/// Whether some fragment (`PUT`) was sent to `host`.
fn a_fragment_went_to(w: &World, host: &str) -> bool {
    w.sent
        .borrow()
        .iter()
        .any(|s| s.method == http::Method::PUT && s.host == host)
}

/// Whether every request sent was a create (`POST`): no fragment left.
fn only_creates_were_sent(w: &World) -> bool {
    w.sent
        .borrow()
        .iter()
        .all(|s| s.method == http::Method::POST)
}

fn assert_untrusted(r: &OdReport) {
    match err_of(r) {
        UploadError::UntrustedUploadUrl { reason } => {
            assert!(!reason.contains("evil"), "the URL leaked into the error")
        }
        other => panic!("expected UntrustedUploadUrl, got {other:?}"),
    }
}

/// od §1.4, §2.4: plain http to a remote host.
#[test]
fn od_upload_url_plain_http_remote() {
    assert_untrusted(&od_upload_url("http://evil.example/up?tempauth=x"));
}

#[test]
fn od_upload_url_ftp() {
    assert_untrusted(&od_upload_url("ftp://evil.example/up"));
}

#[test]
fn od_upload_url_file_scheme() {
    // `file:///etc/passwd` has no authority: not absolute, retried as malformed.
    assert_malformed_retries(&err_of(&od_upload_url("file:///etc/passwd")));
}

/// A relative URL (no scheme, no host) is malformed: the create is retried, never used.
#[test]
fn od_upload_url_relative() {
    assert_malformed_retries(&err_of(&od_upload_url("/onedrive/up/evil?tempauth=x")));
}

/// A scheme-relative URL.
#[test]
fn od_upload_url_scheme_relative() {
    assert_malformed_retries(&err_of(&od_upload_url("//evil.example/up")));
}

/// User info makes the real host `evil.example`.
#[test]
fn od_upload_url_userinfo_trick() {
    assert_untrusted(&od_upload_url(
        "https://graph.microsoft.com@evil.example/up",
    ));
}

#[test]
fn od_upload_url_userinfo_on_loopback() {
    assert_untrusted(&od_upload_url("http://user:pass@127.0.0.1:0/onedrive/up/x"));
}

/// Loopback look-alikes are not loopback.
#[test]
fn od_upload_url_loopback_lookalike_ip() {
    assert_untrusted(&od_upload_url("http://127.0.0.1.evil.example/up"));
}

#[test]
fn od_upload_url_localhost_lookalike() {
    assert_untrusted(&od_upload_url("http://localhost.evil.example/up"));
}

/// Plain http to the Graph host but another port is another service.
#[test]
fn od_upload_url_graph_host_other_port_plain_http() {
    // The emulator's Graph host is loopback, so use a config whose base is a remote
    // plain-http host and check the rule directly through a create answer.
    let w = world();
    let mut m = OneDriveUpload::builder(Target::path("/hostile/p.bin"), OD_SIZE)
        .fragment_size(UNIT)
        .config(OneDriveConfig::with_base(
            "http://emu.lan:8080/onedrive/v1.0",
        ))
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let source = pattern(OD_SIZE);
    let (r, _) = run(&w, &mut m, &source, |_, _, _| {
        Delivery::Response(resp(
            200,
            r#"{"uploadUrl":"http://emu.lan:9999/up/x","nextExpectedRanges":["0-"]}"#,
            &[],
        ))
    });
    assert_untrusted(&r);
    assert!(only_creates_were_sent(&w));
}

/// Plain http to the configured plain-http Graph host (same host and port) is the
/// caller's explicit choice and is accepted (a remote emulator).
#[test]
fn od_upload_url_same_plain_http_graph_host_is_accepted() {
    let w = world();
    let mut m = OneDriveUpload::builder(Target::path("/hostile/p.bin"), OD_SIZE)
        .fragment_size(UNIT)
        .config(OneDriveConfig::with_base(
            "http://emu.lan:8080/onedrive/v1.0",
        ))
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let source = pattern(OD_SIZE);
    let (r, _) = run(&w, &mut m, &source, |_, _, req| {
        Delivery::Response(if req.method() == http::Method::POST {
            resp(
                200,
                r#"{"uploadUrl":"http://emu.lan:8080/up/x","nextExpectedRanges":["0-"]}"#,
                &[],
            )
        } else {
            resp(507, "", &[])
        })
    });
    assert!(matches!(err_of(&r), UploadError::QuotaExceeded { .. }));
    assert!(a_fragment_went_to(&w, "emu.lan"));
}

/// Plain http on loopback (`localhost`, `[::1]`) is accepted: an emulator.
#[test]
fn od_upload_url_localhost_is_accepted() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Create).then(|| {
                let honest = applied_honest(w, req);
                let text = String::from_utf8(honest.body().to_vec()).unwrap();
                resp(200, text.replace("127.0.0.1", "localhost"), &[])
            })
        },
    );
    assert_od_ok(&r);
    assert!(w.sent.borrow().iter().any(|s| s.host == "localhost"));
}

/// https on any host is accepted (the host is opaque, od §1.4), and never gets the
/// bearer token: the driver counts `Authorization` on every pre-authenticated URL.
#[test]
fn od_upload_url_https_other_host_never_gets_the_token() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |_| {},
        |w, route, req| {
            (route == Od::Create).then(|| {
                let honest = applied_honest(w, req);
                let text = String::from_utf8(honest.body().to_vec()).unwrap();
                resp(
                    200,
                    text.replace("http://127.0.0.1:0", "https://graph.microsoft.com"),
                    &[],
                )
            })
        },
    );
    assert_od_ok(&r);
    for s in w
        .sent
        .borrow()
        .iter()
        .filter(|s| s.host == "graph.microsoft.com")
    {
        assert!(
            !s.headers.contains_key("authorization"),
            "{} {}",
            s.method,
            s.uri
        );
    }
}

/// CR/LF inside the URL: not a URL.
#[test]
fn od_upload_url_with_crlf() {
    assert_malformed_retries(&err_of(&od_upload_url("https://up.example/x\r\nX-Evil: 1")));
}

/// A 100 KB URL is longer than a URI may be: malformed, retried.
#[test]
fn od_upload_url_huge() {
    let url: &'static str =
        Box::leak(format!("https://up.example/{}", "a".repeat(100_000)).into_boxed_str());
    assert_malformed_retries(&err_of(&od_upload_url(url)));
}

/// `upload_url_hosts = [host]`, and the create answer's `uploadUrl` moved to `https://{to}`.
fn od_upload_url_with_hosts(w: &World, host: &'static str, to: &'static str) -> OdReport {
    od_run(
        w,
        |c| c.upload_url_hosts = vec![host.to_string()],
        |w, route, req| {
            (route == Od::Create).then(|| {
                let honest = applied_honest(w, req);
                let text = String::from_utf8(honest.body().to_vec()).unwrap();
                resp(
                    200,
                    text.replace("http://127.0.0.1:0", &format!("https://{to}")),
                    &[],
                )
            })
        },
    )
    .0
}

/// `upload_url_hosts`: a look-alike that merely ends with an allowed name is refused,
/// and nothing is sent to it.
#[test]
fn od_upload_url_hosts_refuse_a_lookalike() {
    let w = world();
    let r = od_upload_url_with_hosts(&w, "sharepoint.com", "evilsharepoint.com");
    match err_of(&r) {
        UploadError::UntrustedUploadUrl { reason } => {
            assert!(reason.contains("upload_url_hosts"), "{reason}")
        }
        other => panic!("expected UntrustedUploadUrl, got {other:?}"),
    }
    assert!(w.sent.borrow().iter().all(|s| s.host == "127.0.0.1"));
}

/// `upload_url_hosts`: a subdomain of an entry is admitted, whatever the case.
#[test]
fn od_upload_url_hosts_admit_a_subdomain() {
    let w = world();
    let r = od_upload_url_with_hosts(&w, "SharePoint.com", "contoso-my.sharepoint.com");
    assert_od_ok(&r);
    assert!(a_fragment_went_to(&w, "contoso-my.sharepoint.com"));
}

/// `upload_url_hosts` does not imply loopback: the emulator's own URL is refused when
/// the list names only Microsoft hosts.
#[test]
fn od_upload_url_hosts_do_not_imply_loopback() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |c| c.upload_url_hosts = vec!["sharepoint.com".into()],
        |_, _, _| None,
    );
    assert!(matches!(err_of(&r), UploadError::UntrustedUploadUrl { .. }));
    assert!(only_creates_were_sent(&w));
}

/// `upload_url_hosts` entries are bare host names; anything else is refused at build.
#[test]
fn od_upload_url_hosts_must_be_bare_names() {
    let w = world();
    for bad in [
        "",
        "https://sharepoint.com",
        "sharepoint.com:443",
        "sharepoint.com/x",
        ".sharepoint.com",
        "sharepoint..com",
        "share point.com",
        "sharepoint.com\r\nX: y",
        "*.sharepoint.com",
    ] {
        let mut cfg = od_config(&w);
        cfg.upload_url_hosts = vec!["api.onedrive.com".into(), bad.into()];
        let r = OneDriveUpload::builder(Target::path("/a"), 10)
            .fragment_size(UNIT)
            .config(cfg)
            .build();
        assert!(
            matches!(
                r,
                Err(BuildError::InvalidOption {
                    option: "upload_url_hosts",
                    ..
                })
            ),
            "{bad:?}: {r:?}"
        );
    }
}

/// The last checkpoint of an upload whose second fragment never got through.
fn od_interrupted_checkpoint(w: &World) -> Checkpoint {
    let mut m = od_machine(w, OD_SIZE, |_| {});
    let source = pattern(OD_SIZE);
    let mut first = true;
    let (r, events) = run(w, &mut m, &source, |w, wall, req| {
        if od_route(&req) == Od::Put && !std::mem::take(&mut first) {
            return Delivery::Failure(TransportFailure::Connect);
        }
        Delivery::Response(honest(w, wall, req))
    });
    let _ = r;
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap()
}

/// A tampered checkpoint cannot redirect the fragments either.
#[test]
fn od_resume_with_untrusted_upload_url() {
    let w = world();
    let cp = od_interrupted_checkpoint(&w);
    let mut v = serde_json::to_value(&cp).unwrap();
    v["upload_url"] = serde_json::Value::from("http://evil.example/up?tempauth=x");
    let tampered: Checkpoint = serde_json::from_value(v).unwrap();
    let fp = SourceFingerprint::new(OD_SIZE, "");
    let e = OneDriveUpload::resume(tampered, &fp, od_config(&w), None).unwrap_err();
    assert!(matches!(e, ResumeError::Inconsistent(_)), "{e:?}");
}

/// A resumed `uploadUrl` must be within `upload_url_hosts` too; the same checkpoint
/// resumes when the list names its host.
#[test]
fn od_resume_outside_upload_url_hosts() {
    let w = world();
    let cp = od_interrupted_checkpoint(&w);
    let fp = SourceFingerprint::new(OD_SIZE, "");
    let mut cfg = od_config(&w);
    cfg.upload_url_hosts = vec!["sharepoint.com".into()];
    let e = OneDriveUpload::resume(cp.clone(), &fp, cfg.clone(), None).unwrap_err();
    match e {
        ResumeError::Inconsistent(why) => assert!(why.contains("upload_url_hosts"), "{why}"),
        other => panic!("{other:?}"),
    }
    cfg.upload_url_hosts.push("127.0.0.1".into());
    assert!(OneDriveUpload::resume(cp, &fp, cfg, None).is_ok());
}

// ============================================================ OneDrive: options

/// od §0: fragment sizes.
#[test]
fn od_fragment_zero() {
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(0)
        .build();
    assert_eq!(r.unwrap_err(), BuildError::ChunkSizeZero);
}

#[test]
fn od_fragment_not_a_multiple_of_320_kib() {
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(1_000_000)
        .build();
    assert_eq!(
        r.unwrap_err(),
        BuildError::ChunkSizeNotMultiple {
            size: 1_000_000,
            multiple: UNIT,
            nearest_below: 983_040
        }
    );
}

#[test]
fn od_fragment_above_60_mib() {
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(62_914_560 + UNIT)
        .build();
    assert_eq!(
        r.unwrap_err(),
        BuildError::ChunkSizeTooLarge {
            size: 62_914_560 + UNIT,
            max: 62_914_560
        }
    );
}

#[test]
fn od_fragment_u64_max() {
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(u64::MAX)
        .build();
    assert!(
        matches!(r, Err(BuildError::ChunkSizeTooLarge { size: u64::MAX, .. })),
        "{r:?}"
    );
}

/// od §0: 250 GB.
#[test]
fn od_file_above_the_service_limit() {
    let r = OneDriveUpload::builder(Target::path("/a"), 250_000_000_001)
        .fragment_size(UNIT)
        .build();
    assert_eq!(
        r.unwrap_err(),
        BuildError::FileTooLarge {
            size: 250_000_000_001,
            max: 250_000_000_000
        }
    );
}

#[test]
fn od_file_size_u64_max() {
    let r = OneDriveUpload::builder(Target::path("/a"), u64::MAX)
        .fragment_size(UNIT)
        .build();
    assert!(
        matches!(r, Err(BuildError::FileTooLarge { size: u64::MAX, .. })),
        "{r:?}"
    );
}

/// A description over 1024 characters.
#[test]
fn od_description_too_long() {
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(UNIT)
        .description("d".repeat(1025))
        .build();
    assert!(
        matches!(
            r,
            Err(BuildError::InvalidOption {
                option: "description",
                ..
            })
        ),
        "{r:?}"
    );
}

/// A retry budget of zero attempts: the first failure ends the upload.
#[test]
fn od_retry_attempts_zero() {
    let w = world();
    let (r, events) = od_run(
        &w,
        |c| c.retry.max_attempts = 0,
        |_, route, _| (route == Od::Put).then(|| resp(503, "", &[])),
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRetries { attempts: 0, .. }),
        "{:?}",
        err_of(&r)
    );
    assert!(delays(&events).is_empty());
}

/// Zero time budget: any non-zero wait ends the upload.
#[test]
fn od_retry_max_elapsed_zero() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |c| c.retry.max_elapsed = Duration::ZERO,
        |_, route, _| (route == Od::Put).then(|| resp(503, "", &[])),
    );
    assert!(matches!(err_of(&r), UploadError::TooManyRetries { .. }));
}

/// Zero restarts allowed: the first lost session ends the upload.
#[test]
fn od_max_restarts_zero() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |c| c.max_restarts = 0,
        |_, route, _| match route {
            Od::Put | Od::Status => Some(resp(404, r#"{"error":{"code":"itemNotFound"}}"#, &[])),
            _ => None,
        },
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRestarts { restarts: 0, .. }),
        "{:?}",
        err_of(&r)
    );
}

/// A zero request timeout can never work (every bodyless request would be due at once).
#[test]
fn od_request_timeout_zero() {
    let c = OneDriveConfig {
        request_timeout: Duration::ZERO,
        ..OneDriveConfig::default()
    };
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(UNIT)
        .config(c)
        .build();
    assert!(
        matches!(
            r,
            Err(BuildError::InvalidOption {
                option: "request_timeout",
                ..
            })
        ),
        "{r:?}"
    );
}

/// A zero response cap would make every answer malformed.
#[test]
fn od_max_response_body_zero() {
    let c = OneDriveConfig {
        max_response_body: 0,
        ..OneDriveConfig::default()
    };
    let r = OneDriveUpload::builder(Target::path("/a"), 10)
        .fragment_size(UNIT)
        .config(c)
        .build();
    assert!(
        matches!(
            r,
            Err(BuildError::InvalidOption {
                option: "max_response_body",
                ..
            })
        ),
        "{r:?}"
    );
}

/// An expiry margin longer than any session: every session is "expiring"; the restart
/// budget ends it.
#[test]
fn od_expiry_margin_longer_than_sessions() {
    let w = world();
    let (r, _) = od_run(
        &w,
        |c| c.expiry_margin = Duration::from_secs(TEN_YEARS),
        |_, _, _| None,
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRestarts { .. }),
        "{:?}",
        err_of(&r)
    );
}

/// A policy without caps (`Duration::MAX` everywhere): a ten-year hint still waits at
/// most `retry::MAX_WAIT` (24 h) per attempt.
#[test]
fn od_unbounded_policy_and_ten_year_hint() {
    let ten: &'static str = Box::leak(TEN_YEARS.to_string().into_boxed_str());
    let (e, d, elapsed) = od_throttled(ten, |c| {
        c.retry = RetryPolicy {
            max_retry_after: Duration::MAX,
            max_elapsed: Duration::MAX,
            max_attempts: 2,
            ..RetryPolicy::default()
        };
    });
    assert_clamped(&e, &d, upload_session::retry::MAX_WAIT);
    assert!(elapsed <= MAX_VIRTUAL);
}

// ------------------------------------------------------------------ Dropbox harness

const MIB: u64 = 1024 * 1024;
/// A sequential Dropbox file: three 1 MiB chunks and 5 bytes.
const DBX_SIZE: u64 = 3 * MIB + 5;
/// A concurrent Dropbox file: two 4 MiB chunks and a short third.
const CONC_SIZE: u64 = 10 * MIB + 3;

/// Which Dropbox route a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dbx {
    Start,
    Append,
    Finish,
    Lookup,
    Batch,
}

fn dbx_route(req: &http::Request<Bytes>) -> Dbx {
    let p = req.uri().path();
    if p.ends_with("/start") {
        Dbx::Start
    } else if p.ends_with("/append_v2") {
        Dbx::Append
    } else if p.ends_with("/finish") {
        Dbx::Finish
    } else if p.ends_with("/finish_batch_v2") {
        Dbx::Batch
    } else {
        Dbx::Lookup
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Seq,
    Conc,
}

fn dbx_config(w: &World) -> DropboxConfig {
    DropboxConfig::with_hosts(
        format!("{}/dropbox/content/2/", w.base),
        format!("{}/dropbox/api/2/", w.base),
    )
}

fn dbx_size(kind: Kind) -> u64 {
    match kind {
        Kind::Seq => DBX_SIZE,
        Kind::Conc => CONC_SIZE,
    }
}

fn dbx_builder(kind: Kind, commit: CommitInfo) -> upload_session::dropbox::Builder {
    let b = DropboxUpload::builder(commit, dbx_size(kind));
    match kind {
        Kind::Seq => b.chunk_size(MIB),
        Kind::Conc => b
            .session_type(SessionType::Concurrent)
            .chunk_size(4 * MIB)
            .parallelism(3),
    }
}

type DbxReport = DriveReport<upload_session::dropbox::Completed>;
type DbxEvents = Vec<Event<upload_session::dropbox::Checkpoint>>;

/// Runs a Dropbox upload where `hostile` may replace any answer.
fn dbx_run(
    w: &World,
    kind: Kind,
    f: impl FnOnce(&mut DropboxConfig),
    mut hostile: impl FnMut(&World, Dbx, &http::Request<Bytes>) -> Option<http::Response<Bytes>>,
) -> (DbxReport, DbxEvents) {
    let mut cfg = dbx_config(w);
    f(&mut cfg);
    let mut m = dbx_builder(kind, CommitInfo::new("/hostile/file.bin").unwrap())
        .config(cfg)
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let source = pattern(dbx_size(kind));
    run(w, &mut m, &source, |w, wall, req| {
        let route = dbx_route(&req);
        Delivery::Response(match hostile(w, route, &req) {
            Some(r) => r,
            None => honest(w, wall, req),
        })
    })
}

fn assert_dbx_ok(r: &DbxReport, kind: Kind) {
    match &r.result {
        Some(Ok(c)) => {
            let m = c.metadata().expect("committed");
            assert_eq!(m.size, dbx_size(kind));
            match c {
                upload_session::dropbox::Completed::Committed(c) => assert!(c.hash_verified),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("expected success, got {other:?}"),
    }
}

/// A 409 route error body with `error` = `union`.
fn route_error(union: &str) -> http::Response<Bytes> {
    resp(
        409,
        format!(r#"{{"error_summary":"x/","error":{union}}}"#),
        &[],
    )
}

/// The first append (sequential) or finish is answered with `r` (applied or not).
fn dbx_first(
    kind: Kind,
    route: Dbx,
    apply: bool,
    r: http::Response<Bytes>,
) -> (DbxReport, DbxEvents) {
    let w = world();
    let mut once = Some(r);
    dbx_run(
        &w,
        kind,
        |_| {},
        |w, rt, req| {
            if rt != route {
                return None;
            }
            let r = once.take()?;
            Some(if apply { applied(w, req, r) } else { r })
        },
    )
}

// ============================================================ Dropbox: malformed JSON

/// Every `start` answer is `body`.
fn dbx_start_answers(kind: Kind, body: &'static str) -> UploadError {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        kind,
        |_| {},
        |_, route, _| (route == Dbx::Start).then(|| resp(200, body, &[])),
    );
    err_of(&r)
}

/// dbx §2: truncated start result.
#[test]
fn dbx_start_body_truncated() {
    assert_malformed_retries(&dbx_start_answers(Kind::Seq, r#"{"session_id":"AAA"#));
}

#[test]
fn dbx_start_body_truncated_concurrent() {
    assert_malformed_retries(&dbx_start_answers(Kind::Conc, r#"{"session_id":"#));
}

#[test]
fn dbx_start_body_not_json() {
    assert_malformed_retries(&dbx_start_answers(Kind::Seq, "<html>bad gateway</html>"));
}

/// dbx §2: wrong types for `session_id`.
#[test]
fn dbx_start_session_id_number() {
    assert_malformed_retries(&dbx_start_answers(Kind::Seq, r#"{"session_id":12345}"#));
}

#[test]
fn dbx_start_session_id_empty() {
    assert_malformed_retries(&dbx_start_answers(Kind::Seq, r#"{"session_id":""}"#));
}

#[test]
fn dbx_start_session_id_null() {
    assert_malformed_retries(&dbx_start_answers(Kind::Conc, r#"{"session_id":null}"#));
}

#[test]
fn dbx_start_body_is_array() {
    assert_malformed_retries(&dbx_start_answers(Kind::Seq, r#"[{"session_id":"a"}]"#));
}

/// dbx §3: an append's 200 body (`null`) is not parsed: garbage there changes nothing.
#[test]
fn dbx_append_body_garbled_is_ignored() {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |_| {},
        |w, route, req| (route == Dbx::Append).then(|| applied(w, req, resp(200, "{\"trunc", &[]))),
    );
    assert_dbx_ok(&r, Kind::Seq);
}

/// dbx §5: a truncated finish result: in doubt, the file is looked up and verified.
#[test]
fn dbx_finish_body_truncated_once() {
    let (r, _) = dbx_first(
        Kind::Seq,
        Dbx::Finish,
        true,
        resp(200, r#"{"name":"file.bin","id":"#, &[]),
    );
    assert_dbx_ok(&r, Kind::Seq);
}

#[test]
fn dbx_finish_body_truncated_once_concurrent() {
    let (r, _) = dbx_first(Kind::Conc, Dbx::Finish, true, resp(200, "{", &[]));
    assert_dbx_ok(&r, Kind::Conc);
}

/// dbx §5: finish and lookup garbled forever: the budget ends it.
#[test]
fn dbx_finish_and_lookup_truncated_forever() {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |_| {},
        |w, route, req| match route {
            Dbx::Finish => Some(applied(w, req, resp(200, "{\"size\":", &[]))),
            Dbx::Lookup => Some(resp(200, "{\".tag\":\"file\",", &[])),
            _ => None,
        },
    );
    assert_malformed_retries(&err_of(&r));
}

/// dbx §7: a 409 whose body is cut: no tag can be read; a typed rejection with the
/// status, never a guess.
#[test]
fn dbx_error_body_truncated() {
    let (r, _) = dbx_first(
        Kind::Seq,
        Dbx::Append,
        false,
        resp(409, r#"{"error":{".tag":"incorr"#, &[]),
    );
    assert_eq!(
        err_of(&r),
        UploadError::Rejected {
            status: 409,
            codes: ServiceCodes(vec![])
        }
    );
}

/// dbx §7: a tag chain nested 60,000 deep (under the cap) hits serde_json's recursion
/// limit, not the stack.
#[test]
fn dbx_error_body_nested_60000_deep() {
    let mut body = String::from(r#"{"error":"#);
    for _ in 0..60_000 {
        body.push_str(r#"{".tag":"a","a":"#);
    }
    let (r, _) = dbx_first(Kind::Seq, Dbx::Append, false, resp(409, body, &[]));
    assert_eq!(
        err_of(&r),
        UploadError::Rejected {
            status: 409,
            codes: ServiceCodes(vec![])
        }
    );
}

/// dbx §7: a chain of 5,000 valid levels is walked to a bounded depth only.
#[test]
fn dbx_error_chain_deep_but_valid_is_bounded() {
    let mut body = String::from(r#"{"error":"#);
    for _ in 0..100 {
        body.push_str(r#"{".tag":"a","a":"#);
    }
    body.push_str("null");
    for _ in 0..100 {
        body.push('}');
    }
    body.push('}');
    let (r, _) = dbx_first(Kind::Seq, Dbx::Append, false, resp(409, body, &[]));
    match err_of(&r) {
        UploadError::Rejected { status: 409, codes } => assert!(codes.0.len() <= 8, "{codes:?}"),
        other => panic!("{other:?}"),
    }
}

// ============================================================ Dropbox: Content-Length

/// The core never reads a response's `Content-Length`.
#[test]
fn dbx_content_length_10_gib_on_every_answer() {
    let w = world();
    let cl = TEN_GIB.to_string();
    let (r, _) = dbx_run(
        &w,
        Kind::Conc,
        |_| {},
        |w, _, req| {
            let mut h = applied_honest(w, req);
            h.headers_mut()
                .insert("content-length", cl.parse().unwrap());
            Some(h)
        },
    );
    assert_dbx_ok(&r, Kind::Conc);
}

// ============================================================ Dropbox: wrong JSON types

/// The finish answers metadata with `size` replaced, forever (the lookup says the same).
fn dbx_finish_metadata(size: &str) -> UploadError {
    let w = world();
    let size = size.to_string();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |_| {},
        |w, route, req| {
            let body = format!(
                r#"{{"name":"file.bin","id":"id:1","rev":"0123456789abc","size":{size},"content_hash":"{}"}}"#,
                upload_session::dropbox::content_hash(&pattern(DBX_SIZE))
            );
            match route {
                Dbx::Finish => Some(applied(w, req, resp(200, body, &[]))),
                Dbx::Lookup => Some(resp(200, body, &[])),
                _ => None,
            }
        },
    );
    err_of(&r)
}

/// dbx §5: `size` as a string: the metadata is malformed, never accepted.
#[test]
fn dbx_metadata_size_as_string() {
    assert_malformed_retries(&dbx_finish_metadata(&format!("\"{DBX_SIZE}\"")));
}

#[test]
fn dbx_metadata_size_as_float() {
    assert_malformed_retries(&dbx_finish_metadata(&format!("{DBX_SIZE}.5")));
}

#[test]
fn dbx_metadata_size_negative() {
    assert_malformed_retries(&dbx_finish_metadata("-1"));
}

#[test]
fn dbx_metadata_size_above_u64() {
    assert_malformed_retries(&dbx_finish_metadata("18446744073709551616"));
}

#[test]
fn dbx_metadata_size_null() {
    assert_malformed_retries(&dbx_finish_metadata("null"));
}

/// Duplicated keys: the last `size` wins and is checked: an integrity error.
#[test]
fn dbx_metadata_duplicated_size_last_wins() {
    let (r, _) = dbx_first(
        Kind::Seq,
        Dbx::Finish,
        true,
        resp(
            200,
            format!(
                r#"{{"name":"f","id":"id:1","rev":"0123456789abc","size":{DBX_SIZE},"size":{},"content_hash":"{}"}}"#,
                DBX_SIZE + 1,
                upload_session::dropbox::content_hash(&pattern(DBX_SIZE))
            ),
            &[],
        ),
    );
    assert_eq!(
        err_of(&r),
        UploadError::SizeMismatch {
            expected: DBX_SIZE,
            actual: Some(DBX_SIZE + 1)
        }
    );
}

/// The first append meets `incorrect_offset` with this `correct_offset` JSON, forever.
fn dbx_correct_offset_forever(kind: Kind, value: &str) -> UploadError {
    let w = world();
    let body = format!(r#"{{".tag":"incorrect_offset","correct_offset":{value}}}"#);
    let (r, _) = dbx_run(
        &w,
        kind,
        |_| {},
        |_, route, _| (route == Dbx::Append).then(|| route_error(&body)),
    );
    err_of(&r)
}

/// dbx §3.2: `correct_offset` as a string is no offset: retried as malformed.
#[test]
fn dbx_correct_offset_as_string() {
    assert_malformed_retries(&dbx_correct_offset_forever(
        Kind::Seq,
        &format!("\"{MIB}\""),
    ));
}

#[test]
fn dbx_correct_offset_as_float() {
    assert_malformed_retries(&dbx_correct_offset_forever(Kind::Seq, &format!("{MIB}.0")));
}

#[test]
fn dbx_correct_offset_as_object() {
    assert_malformed_retries(&dbx_correct_offset_forever(Kind::Seq, "{\"value\":1}"));
}

/// dbx §7: `.tag` as a number: no tag, a typed rejection.
#[test]
fn dbx_tag_as_number() {
    let (r, _) = dbx_first(Kind::Seq, Dbx::Append, false, route_error(r#"{".tag":5}"#));
    assert_eq!(
        err_of(&r),
        UploadError::Rejected {
            status: 409,
            codes: ServiceCodes(vec![])
        }
    );
}

#[test]
fn dbx_error_as_array() {
    let (r, _) = dbx_first(
        Kind::Seq,
        Dbx::Append,
        false,
        route_error(r#"[{".tag":"closed"}]"#),
    );
    assert_eq!(
        err_of(&r),
        UploadError::Rejected {
            status: 409,
            codes: ServiceCodes(vec![])
        }
    );
}

#[test]
fn dbx_error_null() {
    let (r, _) = dbx_first(Kind::Seq, Dbx::Append, false, route_error("null"));
    assert_eq!(
        err_of(&r),
        UploadError::Rejected {
            status: 409,
            codes: ServiceCodes(vec![])
        }
    );
}

// ============================================================ Dropbox: offsets

/// dbx §3.2: a negative `correct_offset`.
#[test]
fn dbx_correct_offset_negative() {
    assert_malformed_retries(&dbx_correct_offset_forever(Kind::Seq, "-1"));
}

/// dbx §3.2: 2^64 does not fit a u64.
#[test]
fn dbx_correct_offset_two_pow_64() {
    assert_malformed_retries(&dbx_correct_offset_forever(
        Kind::Seq,
        "18446744073709551616",
    ));
}

/// dbx §3.2, §11: u64::MAX lies beyond the file: a contradiction.
#[test]
fn dbx_correct_offset_u64_max() {
    let e = dbx_correct_offset_forever(Kind::Seq, "18446744073709551615");
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// `correct_offset` beyond the file size.
#[test]
fn dbx_correct_offset_beyond_the_file() {
    let e = dbx_correct_offset_forever(Kind::Seq, &(DBX_SIZE + 1).to_string());
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// Inside the file but beyond every byte sent.
#[test]
fn dbx_correct_offset_beyond_what_was_sent() {
    let e = dbx_correct_offset_forever(Kind::Seq, &(3 * MIB).to_string());
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// Behind what the server confirmed (the start landed 1 MiB): the session is unusable;
/// new sessions meet the same answer and the restart budget ends it.
#[test]
fn dbx_correct_offset_behind_confirmed() {
    let e = dbx_correct_offset_forever(Kind::Seq, "5");
    match e {
        UploadError::TooManyRestarts { last, .. } => {
            assert!(matches!(
                *last,
                UploadError::OffsetMismatch {
                    server: Some(5),
                    ..
                }
            ))
        }
        other => panic!("{other:?}"),
    }
}

/// A concurrent session never meets `incorrect_offset` (dbx §4): a contradiction.
#[test]
fn dbx_correct_offset_on_a_concurrent_append() {
    let e = dbx_correct_offset_forever(Kind::Conc, "0");
    assert!(
        matches!(e, UploadError::ServerContradiction { .. }),
        "{e:?}"
    );
}

/// dbx §5: `lookup_failed/incorrect_offset` on the finish, beyond the file.
#[test]
fn dbx_finish_correct_offset_beyond_the_file() {
    let body = format!(
        r#"{{".tag":"lookup_failed","lookup_failed":{{".tag":"incorrect_offset","correct_offset":{}}}}}"#,
        u64::MAX
    );
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |_| {},
        |_, route, _| (route == Dbx::Finish).then(|| route_error(&body)),
    );
    assert!(
        matches!(err_of(&r), UploadError::ServerContradiction { .. }),
        "{:?}",
        err_of(&r)
    );
}

#[test]
fn dbx_finish_correct_offset_concurrent() {
    let body = r#"{".tag":"lookup_failed","lookup_failed":{".tag":"incorrect_offset","correct_offset":0}}"#;
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Conc,
        |_| {},
        |_, route, _| (route == Dbx::Finish).then(|| route_error(body)),
    );
    assert!(
        matches!(err_of(&r), UploadError::ServerContradiction { .. }),
        "{:?}",
        err_of(&r)
    );
}

// ============================================================ Dropbox: Retry-After

/// Every data request (append) is a 429 with these headers and body.
fn dbx_throttled(
    kind: Kind,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    f: impl FnOnce(&mut DropboxConfig),
) -> (UploadError, Vec<Duration>, Duration) {
    let w = world();
    let (r, events) = dbx_run(&w, kind, f, |_, route, _| {
        (route == Dbx::Append).then(|| resp(429, body, headers))
    });
    (err_of(&r), delays(&events), r.elapsed)
}

fn long_budget(c: &mut DropboxConfig) {
    c.retry.max_elapsed = Duration::from_secs(100 * 3600);
    c.retry.max_attempts = 2;
}

/// The reported throttle wait of the last cause.
fn throttle_after(e: &UploadError) -> Option<Duration> {
    match retries_last(e) {
        UploadError::Throttled { retry_after, .. }
        | UploadError::WriteContention { retry_after, .. } => *retry_after,
        other => panic!("{other:?}"),
    }
}

/// dbx §7.3: a ten-year `Retry-After` header: clamped to `max_retry_after` (1 h), the
/// cause reports the clamped wait.
#[test]
fn dbx_retry_after_header_ten_years() {
    let (e, d, _) = dbx_throttled(Kind::Seq, &[("retry-after", "315360000")], "", long_budget);
    assert_eq!(d, vec![Duration::from_secs(3600); 2]);
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// With the default 30-minute budget, a 1 h wait gives up at once, without waiting.
#[test]
fn dbx_retry_after_header_ten_years_default_budget() {
    let (e, d, elapsed) = dbx_throttled(Kind::Seq, &[("retry-after", "315360000")], "", |_| {});
    assert!(d.is_empty() && elapsed == Duration::ZERO, "{d:?}");
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// dbx §7.3: `retry_after` in the JSON body, ten years.
#[test]
fn dbx_retry_after_body_ten_years() {
    let (e, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":315360000}}"#,
        long_budget,
    );
    assert_eq!(d, vec![Duration::from_secs(3600); 2]);
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// u64::MAX in the body (a float in JSON terms).
#[test]
fn dbx_retry_after_body_u64_max() {
    let (e, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":18446744073709551615}}"#,
        long_budget,
    );
    assert_eq!(d, vec![Duration::from_secs(3600); 2]);
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// 1e400 does not parse as JSON: the body is text, the floor applies.
#[test]
fn dbx_retry_after_body_1e400() {
    let (e, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":1e400}}"#,
        |_| {},
    );
    assert!(
        d.iter()
            .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(60)),
        "{d:?}"
    );
    assert!(matches!(retries_last(&e), UploadError::Throttled { .. }));
}

/// Negative, string and fractional `retry_after`: never below the 1 s floor.
#[test]
fn dbx_retry_after_body_negative() {
    let (_, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":-5}}"#,
        |_| {},
    );
    assert!(
        !d.is_empty() && d.iter().all(|d| *d >= Duration::from_secs(1)),
        "{d:?}"
    );
}

#[test]
fn dbx_retry_after_body_string() {
    let (_, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":"7"}}"#,
        |_| {},
    );
    assert!(
        !d.is_empty() && d.iter().all(|d| *d >= Duration::from_secs(1)),
        "{d:?}"
    );
}

#[test]
fn dbx_retry_after_body_fraction() {
    let (_, d, _) = dbx_throttled(
        Kind::Seq,
        &[],
        r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":0.001}}"#,
        |_| {},
    );
    assert_eq!(d, vec![Duration::from_secs(1); 10]);
}

/// dbx §7.3: an HTTP-date in the past: the 1 s floor.
#[test]
fn dbx_retry_after_http_date_in_the_past() {
    let (_, d, _) = dbx_throttled(
        Kind::Seq,
        &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")],
        "",
        |_| {},
    );
    assert_eq!(d, vec![Duration::from_secs(1); 10]);
}

#[test]
fn dbx_retry_after_garbage() {
    let (_, d, _) = dbx_throttled(Kind::Seq, &[("retry-after", "1.2.3")], "", |_| {});
    assert!(
        !d.is_empty()
            && d.iter()
                .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(60)),
        "{d:?}"
    );
}

#[test]
fn dbx_retry_after_negative_header() {
    let (_, d, _) = dbx_throttled(Kind::Seq, &[("retry-after", "-1")], "", |_| {});
    assert!(
        !d.is_empty()
            && d.iter()
                .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(60)),
        "{d:?}"
    );
}

/// Concurrent appends, ten years in the header.
#[test]
fn dbx_retry_after_ten_years_concurrent() {
    let (e, d, _) = dbx_throttled(Kind::Conc, &[("retry-after", "315360000")], "", long_budget);
    assert!(
        !d.is_empty() && d.iter().all(|x| *x == Duration::from_secs(3600)),
        "{d:?}"
    );
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// Lock contention (409 `too_many_write_operations`) with a ten-year header.
#[test]
fn dbx_write_contention_ten_years() {
    let w = world();
    let (r, events) = dbx_run(&w, Kind::Seq, long_budget, |_, route, _| {
        (route == Dbx::Append).then(|| {
            let mut r = route_error(r#"{".tag":"too_many_write_operations"}"#);
            r.headers_mut()
                .insert("retry-after", "315360000".parse().unwrap());
            r
        })
    });
    let e = err_of(&r);
    assert!(matches!(
        retries_last(&e),
        UploadError::WriteContention { status: 409, .. }
    ));
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
    assert_eq!(delays(&events), vec![Duration::from_secs(3600); 2]);
}

/// A ten-year `min_throttle_wait` is clamped like a hint.
#[test]
fn dbx_min_throttle_wait_ten_years() {
    let (e, d, _) = dbx_throttled(Kind::Seq, &[], "", |c| {
        long_budget(c);
        c.min_throttle_wait = Duration::from_secs(TEN_YEARS);
    });
    assert_eq!(d, vec![Duration::from_secs(3600); 2]);
    assert_eq!(throttle_after(&e), Some(Duration::from_secs(3600)));
}

/// A policy without caps still waits at most `retry::MAX_WAIT`.
#[test]
fn dbx_unbounded_policy_and_ten_year_hint() {
    let (e, d, _) = dbx_throttled(Kind::Seq, &[("retry-after", "315360000")], "", |c| {
        c.retry = RetryPolicy {
            max_retry_after: Duration::MAX,
            max_elapsed: Duration::MAX,
            max_attempts: 2,
            ..RetryPolicy::default()
        };
    });
    assert_eq!(d, vec![upload_session::retry::MAX_WAIT; 2]);
    assert_eq!(throttle_after(&e), Some(upload_session::retry::MAX_WAIT));
}

// ============================================================ Dropbox: CR/LF/NUL

/// dbx §1.3, §5: a commit path with CR/LF and NUL is a valid `WritePathOrId` (the
/// spec's regex allows them); `Dropbox-API-Arg` escapes them (`\r`, `\n`, `\u0000`),
/// so no header carries a raw control byte (checked for every request by `run`), and
/// the argument decodes back to the exact path.
fn dbx_path_round_trip(kind: Kind, path: &str) {
    let w = world();
    let mut m = dbx_builder(kind, CommitInfo::new(path).unwrap())
        .config(dbx_config(&w))
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let source = pattern(dbx_size(kind));
    let (r, _) = run(&w, &mut m, &source, |w, wall, req| {
        Delivery::Response(honest(w, wall, req))
    });
    assert!(r.result.is_some());
    let sent = w.sent.borrow();
    let finish = sent
        .iter()
        .find(|s| s.uri.ends_with("/finish"))
        .expect("a finish");
    let arg = finish.headers["dropbox-api-arg"].to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(arg).unwrap();
    assert_eq!(v["commit"]["path"], path);
}

#[test]
fn dbx_commit_path_with_crlf_is_escaped() {
    dbx_path_round_trip(Kind::Seq, "/hostile/a\r\nX-Evil: 1.bin");
}

#[test]
fn dbx_commit_path_with_nul_is_escaped() {
    dbx_path_round_trip(Kind::Conc, "/hostile/a\0b.bin");
}

#[test]
fn dbx_commit_path_with_del_and_astral_is_escaped() {
    dbx_path_round_trip(Kind::Seq, "/hostile/\u{7f}😀.bin");
}

/// A session id from the server with CR/LF (dbx §2) is escaped the same way.
#[test]
fn dbx_session_id_with_crlf_from_the_server() {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |_| {},
        |_, route, _| match route {
            Dbx::Start => Some(resp(200, r#"{"session_id":"sid\r\nX-Evil: 1\u0000"}"#, &[])),
            Dbx::Append | Dbx::Finish => Some(route_error(r#"{".tag":"not_found"}"#)),
            _ => None,
        },
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRestarts { .. }),
        "{:?}",
        err_of(&r)
    );
    let sent = w.sent.borrow();
    let append = sent
        .iter()
        .find(|s| s.uri.ends_with("/append_v2"))
        .expect("an append");
    let v: serde_json::Value =
        serde_json::from_str(append.headers["dropbox-api-arg"].to_str().unwrap()).unwrap();
    assert_eq!(v["cursor"]["session_id"], "sid\r\nX-Evil: 1\0");
}

/// dbx §1.2: team headers refuse control characters.
#[test]
fn dbx_select_user_with_crlf() {
    let c = DropboxConfig {
        select_user: Some("dbmid:a\r\nX: y".into()),
        ..DropboxConfig::default()
    };
    let r = DropboxUpload::builder(CommitInfo::new("/a").unwrap(), 1)
        .config(c)
        .build();
    assert!(matches!(r, Err(BuildError::InvalidId { .. })), "{r:?}");
}

#[test]
fn dbx_path_root_with_crlf() {
    let c = DropboxConfig {
        path_root: Some(PathRoot::NamespaceId("12\r\n".into())),
        ..DropboxConfig::default()
    };
    let r = DropboxUpload::builder(CommitInfo::new("/a").unwrap(), 1)
        .config(c)
        .build();
    assert!(matches!(r, Err(BuildError::InvalidId { .. })), "{r:?}");
}

#[test]
fn dbx_content_base_with_crlf() {
    let c = DropboxConfig::with_hosts(
        "https://content.dropboxapi.com/2/\r\nX: y",
        "https://api.dropboxapi.com/2/",
    );
    let r = DropboxUpload::builder(CommitInfo::new("/a").unwrap(), 1)
        .config(c)
        .build();
    assert!(matches!(r, Err(BuildError::InvalidBaseUrl { .. })), "{r:?}");
}

/// Relative and malformed paths never reach the wire (dbx §5, §12 rule 19).
#[test]
fn dbx_relative_path() {
    assert!(matches!(
        CommitInfo::new("a\r\nb"),
        Err(BuildError::InvalidPath { .. })
    ));
    assert!(matches!(
        CommitInfo::new("/a/\0/"),
        Err(BuildError::InvalidPath { .. })
    ));
}

// ============================================================ Dropbox: options

fn dbx_build(
    f: impl FnOnce(upload_session::dropbox::Builder) -> upload_session::dropbox::Builder,
) -> Result<DropboxUpload, BuildError> {
    f(DropboxUpload::builder(
        CommitInfo::new("/a").unwrap(),
        100 * MIB,
    ))
    .build()
}

/// dbx §0: chunk sizes.
#[test]
fn dbx_chunk_zero() {
    assert_eq!(
        dbx_build(|b| b.chunk_size(0)).unwrap_err(),
        BuildError::ChunkSizeZero
    );
}

#[test]
fn dbx_chunk_above_150_mib() {
    assert_eq!(
        dbx_build(|b| b.chunk_size(150 * MIB + 1)).unwrap_err(),
        BuildError::ChunkSizeTooLarge {
            size: 150 * MIB + 1,
            max: 150 * MIB
        }
    );
}

#[test]
fn dbx_chunk_u64_max() {
    assert!(matches!(
        dbx_build(|b| b.chunk_size(u64::MAX)),
        Err(BuildError::ChunkSizeTooLarge { .. })
    ));
}

#[test]
fn dbx_concurrent_chunk_not_4_mib_aligned() {
    assert_eq!(
        dbx_build(|b| b.session_type(SessionType::Concurrent).chunk_size(5 * MIB)).unwrap_err(),
        BuildError::ChunkSizeNotMultiple {
            size: 5 * MIB,
            multiple: 4 * MIB,
            nearest_below: 4 * MIB
        }
    );
}

#[test]
fn dbx_concurrent_chunk_above_150_mib() {
    assert_eq!(
        dbx_build(|b| b
            .session_type(SessionType::Concurrent)
            .chunk_size(152 * MIB))
        .unwrap_err(),
        BuildError::ChunkSizeTooLarge {
            size: 152 * MIB,
            max: 150 * MIB
        }
    );
}

#[test]
fn dbx_parallelism_zero() {
    assert!(matches!(
        dbx_build(|b| b
            .session_type(SessionType::Concurrent)
            .chunk_size(4 * MIB)
            .parallelism(0)),
        Err(BuildError::InvalidOption {
            option: "parallelism",
            ..
        })
    ));
}

#[test]
fn dbx_parallelism_huge() {
    assert!(matches!(
        dbx_build(|b| b
            .session_type(SessionType::Concurrent)
            .chunk_size(4 * MIB)
            .parallelism(u32::MAX)),
        Err(BuildError::InvalidOption {
            option: "parallelism",
            ..
        })
    ));
}

/// dbx §0: 2^41 − 2^22 bytes per session.
#[test]
fn dbx_file_above_the_service_limit() {
    let r = DropboxUpload::builder(CommitInfo::new("/a").unwrap(), 2_199_019_061_249).build();
    assert_eq!(
        r.unwrap_err(),
        BuildError::FileTooLarge {
            size: 2_199_019_061_249,
            max: 2_199_019_061_248
        }
    );
}

#[test]
fn dbx_file_size_u64_max() {
    let r = DropboxUpload::builder_for_batch(u64::MAX).build();
    assert!(
        matches!(r, Err(BuildError::FileTooLarge { size: u64::MAX, .. })),
        "{r:?}"
    );
}

#[test]
fn dbx_request_timeout_zero() {
    let c = DropboxConfig {
        request_timeout: Duration::ZERO,
        ..DropboxConfig::default()
    };
    assert!(matches!(
        dbx_build(|b| b.config(c)),
        Err(BuildError::InvalidOption {
            option: "request_timeout",
            ..
        })
    ));
}

#[test]
fn dbx_max_response_body_zero() {
    let c = DropboxConfig {
        max_response_body: 0,
        ..DropboxConfig::default()
    };
    assert!(matches!(
        dbx_build(|b| b.config(c)),
        Err(BuildError::InvalidOption {
            option: "max_response_body",
            ..
        })
    ));
}

/// Zero retry attempts: the first failure ends the upload.
#[test]
fn dbx_retry_attempts_zero() {
    let w = world();
    let (r, events) = dbx_run(
        &w,
        Kind::Conc,
        |c| c.retry.max_attempts = 0,
        |_, route, _| (route == Dbx::Append).then(|| resp(503, "", &[])),
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRetries { attempts: 0, .. }),
        "{:?}",
        err_of(&r)
    );
    assert!(delays(&events).is_empty());
}

/// Zero restarts: the first lost session ends the upload.
#[test]
fn dbx_max_restarts_zero() {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |c| c.max_restarts = 0,
        |_, route, _| (route == Dbx::Append).then(|| route_error(r#"{".tag":"not_found"}"#)),
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRestarts { restarts: 0, .. }),
        "{:?}",
        err_of(&r)
    );
}

/// An expiry margin longer than the session lifetime: every session is "expiring";
/// the restart budget ends it.
#[test]
fn dbx_expiry_margin_above_the_lifetime() {
    let w = world();
    let (r, _) = dbx_run(
        &w,
        Kind::Seq,
        |c| c.expiry_margin = Duration::from_secs(TEN_YEARS),
        |_, _, _| None,
    );
    assert!(
        matches!(err_of(&r), UploadError::TooManyRestarts { .. }),
        "{:?}",
        err_of(&r)
    );
}

// ============================================================ Dropbox: batch commits

/// Closes `n` sessions honestly (1-byte files) and returns the batch entries.
fn closed_sessions(w: &World, n: usize) -> Vec<BatchEntry> {
    (0..n)
        .map(|i| {
            let data = Bytes::from(vec![i as u8; 3]);
            let mut m = DropboxUpload::builder_for_batch(3)
                .config(dbx_config(w))
                .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
                .build()
                .unwrap();
            let (r, _) = run(w, &mut m, &data, |w, wall, req| {
                Delivery::Response(honest(w, wall, req))
            });
            let session = match r.result {
                Some(Ok(c)) => c.closed_session().unwrap().clone(),
                other => panic!("{other:?}"),
            };
            BatchEntry {
                session,
                commit: CommitInfo::new(format!("/hostile/batch-{i}.bin")).unwrap(),
            }
        })
        .collect()
}

type BatchReport = DriveReport<upload_session::dropbox::BatchOutcome>;

fn batch_run(
    w: &World,
    entries: Vec<BatchEntry>,
    f: impl FnOnce(&mut DropboxConfig),
    mut hostile: impl FnMut(&World, Dbx, &http::Request<Bytes>) -> Option<http::Response<Bytes>>,
) -> BatchReport {
    let mut cfg = dbx_config(w);
    f(&mut cfg);
    let mut m = BatchCommit::builder(entries)
        .config(cfg)
        .access_token(AccessToken::new(DEFAULT_TOKEN).unwrap())
        .build()
        .unwrap();
    let (r, _) = run(w, &mut m, &Bytes::new(), |w, wall, req| {
        let route = dbx_route(&req);
        Delivery::Response(match hostile(w, route, &req) {
            Some(r) => r,
            None => honest(w, wall, req),
        })
    });
    r
}

/// dbx §6.3: a truncated batch result, once (applied): the entries are confirmed by
/// sending again (`not_found` after a doubt → lookup) and all commit.
#[test]
fn dbx_batch_body_truncated_once() {
    let w = world();
    let entries = closed_sessions(&w, 3);
    let mut once = true;
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |w, route, req| {
            (route == Dbx::Batch && std::mem::take(&mut once))
                .then(|| applied(w, req, resp(200, r#"{"entries":[{".tag":"succ"#, &[])))
        },
    );
    match &r.result {
        Some(Ok(o)) => assert!(o.all_committed(), "{o:?}"),
        other => panic!("{other:?}"),
    }
}

/// dbx §6.3: garbage forever (never applied): bounded, every entry ends in an error.
#[test]
fn dbx_batch_body_garbage_forever() {
    let w = world();
    let entries = closed_sessions(&w, 2);
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |_, route, _| (route == Dbx::Batch).then(|| resp(200, "{\"entries\":{}}", &[])),
    );
    match &r.result {
        Some(Ok(o)) => assert!(o.entries.iter().all(Result::is_err), "{o:?}"),
        Some(Err(e)) => assert!(matches!(e, UploadError::TooManyRetries { .. }), "{e:?}"),
        None => unreachable!(),
    }
}

/// dbx §6.3: a result with a different number of entries than requested.
#[test]
fn dbx_batch_entry_count_mismatch() {
    let w = world();
    let entries = closed_sessions(&w, 2);
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |_, route, _| (route == Dbx::Batch).then(|| resp(200, r#"{"entries":[]}"#, &[])),
    );
    match &r.result {
        Some(Ok(o)) => assert!(o.entries.iter().all(Result::is_err), "{o:?}"),
        Some(Err(e)) => assert!(matches!(e, UploadError::TooManyRetries { .. }), "{e:?}"),
        None => unreachable!(),
    }
}

/// An entry failure with `incorrect_offset` of u64::MAX: that entry's typed error.
#[test]
fn dbx_batch_entry_correct_offset_u64_max() {
    let w = world();
    let entries = closed_sessions(&w, 1);
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |_, route, _| {
            (route == Dbx::Batch).then(|| {
            resp(200, format!(
                r#"{{"entries":[{{".tag":"failure","failure":{{".tag":"lookup_failed","lookup_failed":{{".tag":"incorrect_offset","correct_offset":{}}}}}}}]}}"#,
                u64::MAX
            ), &[])
        })
        },
    );
    match &r.result {
        Some(Ok(o)) => assert!(
            matches!(
                &o.entries[0],
                Err(UploadError::OffsetMismatch {
                    server: Some(u64::MAX),
                    sent: 3
                })
            ),
            "{o:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// An entry "success" whose metadata is of another size: an integrity error, never
/// success.
#[test]
fn dbx_batch_entry_success_with_wrong_size() {
    let w = world();
    let entries = closed_sessions(&w, 1);
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |_, route, _| {
            (route == Dbx::Batch).then(|| {
            resp(200, r#"{"entries":[{".tag":"success","name":"b","id":"id:1","rev":"0123456789","size":4}]}"#, &[])
        })
        },
    );
    match &r.result {
        Some(Ok(o)) => assert!(
            matches!(
                &o.entries[0],
                Err(UploadError::SizeMismatch {
                    expected: 3,
                    actual: Some(4)
                })
            ),
            "{o:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A 429 with ten years on the batch call: clamped.
#[test]
fn dbx_batch_retry_after_ten_years() {
    let w = world();
    let entries = closed_sessions(&w, 1);
    let r = batch_run(&w, entries, long_budget, |_, route, _| {
        (route == Dbx::Batch).then(|| resp(429, "", &[("retry-after", "315360000")]))
    });
    match &r.result {
        Some(Ok(o)) => match &o.entries[0] {
            Err(UploadError::TooManyRetries { last, .. }) => assert_eq!(
                **last,
                UploadError::Throttled {
                    status: 429,
                    retry_after: Some(Duration::from_secs(3600))
                }
            ),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(r.elapsed <= Duration::from_secs(3 * 3600));
}

/// dbx §6.3: group sizes.
#[test]
fn dbx_batch_group_size_zero() {
    assert!(matches!(
        BatchCommit::builder(vec![]).group_size(0).build(),
        Err(BuildError::InvalidOption {
            option: "group_size",
            ..
        })
    ));
}

#[test]
fn dbx_batch_group_size_1001() {
    assert!(matches!(
        BatchCommit::builder(vec![]).group_size(1001).build(),
        Err(BuildError::InvalidOption {
            option: "group_size",
            ..
        })
    ));
}

/// More than 1000 entries go in groups of at most 1000 (dbx §12 rule 63), one call at
/// a time; a server that fails every call ends the batch within the budget.
#[test]
fn dbx_batch_2500_entries_in_groups_of_1000() {
    let w = world();
    let entries: Vec<BatchEntry> = (0..2500)
        .map(|i| BatchEntry {
            session: ClosedSession {
                session_id: format!("sid-{i}"),
                size: 1,
                content_hash: "0".repeat(64),
            },
            commit: CommitInfo::new(format!("/b/{i}")).unwrap(),
        })
        .collect();
    let r = batch_run(
        &w,
        entries,
        |_| {},
        |_, route, req| {
            (route == Dbx::Batch).then(|| {
                let v: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
                assert!(v["entries"].as_array().unwrap().len() <= 1000);
                resp(503, "", &[])
            })
        },
    );
    assert!(r.result.is_some());
    assert_eq!(r.max_in_flight, 1);
}

/// An empty batch finishes at once with no entries.
#[test]
fn dbx_batch_empty() {
    let w = world();
    let r = batch_run(&w, vec![], |_| {}, |_, _, _| None);
    match &r.result {
        Some(Ok(o)) => assert!(o.entries.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(w.sent.borrow().is_empty());
}

/// Batch entries with a bad content hash or an empty session id are refused.
#[test]
fn dbx_batch_entry_bad_hash() {
    let e = BatchEntry {
        session: ClosedSession {
            session_id: "s".into(),
            size: 1,
            content_hash: "zz".into(),
        },
        commit: CommitInfo::new("/a").unwrap(),
    };
    assert!(matches!(
        BatchCommit::builder(vec![e]).build(),
        Err(BuildError::InvalidOption {
            option: "content_hash",
            ..
        })
    ));
}

/// A batch commit path with CR/LF travels in the JSON body (escaped), never a header.
#[test]
fn dbx_batch_commit_path_with_crlf() {
    let w = world();
    let mut entries = closed_sessions(&w, 1);
    entries[0].commit = CommitInfo::new("/hostile/x\r\ny\0.bin").unwrap();
    let _ = batch_run(&w, entries, |_| {}, |_, _, _| None);
    let sent = w.sent.borrow();
    let batch = sent
        .iter()
        .find(|s| s.uri.ends_with("/finish_batch_v2"))
        .unwrap();
    assert!(batch.body.iter().all(|&b| (0x20..0x7f).contains(&b)));
    let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
    assert_eq!(v["entries"][0]["commit"]["path"], "/hostile/x\r\ny\0.bin");
}
