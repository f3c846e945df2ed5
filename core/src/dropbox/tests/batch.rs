//! Batch commits: groups, per-entry results and retries, lookups after lost answers.

use super::*;
use crate::dropbox::{
    BatchCommit, BatchEntry, BatchOutcome, ClosedSession, CommitInfo, DropboxConfig, content_hash,
};
use crate::testing::dropbox::{API, CONTENT, arg};
use crate::testing::{VirtualClock, json as json_resp, raw, start_wall};
use crate::{
    AccessToken, BuildError, Event, OutgoingRequest, Output, RequestKind, TransportFailure,
    UploadError, UploadMachine,
};
use bytes::Bytes;
use serde_json::{Value, json};

struct Bh {
    m: BatchCommit,
    clock: VirtualClock,
    events: Vec<Event<crate::dropbox::NoCheckpoint>>,
}

fn entry(i: usize) -> BatchEntry {
    let data = format!("file number {i}");
    BatchEntry {
        session: ClosedSession {
            session_id: format!("sid-{i}"),
            size: data.len() as u64,
            content_hash: content_hash(data.as_bytes()),
        },
        commit: CommitInfo::new(format!("/batch/f{i}.txt")).unwrap(),
    }
}

fn meta(e: &BatchEntry) -> Value {
    json!({"name": "f", "id": format!("id:{}", e.session.session_id), "rev": "0123456789",
           "size": e.session.size, "content_hash": e.session.content_hash,
           "client_modified": "2023-11-14T22:13:20Z", "server_modified": "2023-11-14T22:13:20Z"})
}

fn success(e: &BatchEntry) -> Value {
    let mut m = meta(e);
    m.as_object_mut()
        .unwrap()
        .insert(".tag".into(), json!("success"));
    m
}

fn failure(tag: Value) -> Value {
    json!({".tag": "failure", "failure": tag})
}

fn bh(n: usize, group: usize) -> Bh {
    let m = BatchCommit::builder((0..n).map(entry).collect())
        .group_size(group)
        .config(DropboxConfig::with_hosts(CONTENT, API))
        .access_token(AccessToken::new("tok").unwrap())
        .build()
        .unwrap();
    Bh {
        m,
        clock: VirtualClock::new(start_wall()),
        events: vec![],
    }
}

#[allow(clippy::large_enum_variant)]
enum Next {
    Send(OutgoingRequest),
    Done(Result<BatchOutcome, UploadError>),
}

impl Bh {
    fn next(&mut self) -> Next {
        for _ in 0..1000 {
            match self.m.poll_output(self.clock.now()) {
                Output::Send(r) => return Next::Send(r),
                Output::Event(e) => self.events.push(e),
                Output::Wait(Some(t)) => {
                    self.clock.advance_to(t);
                    self.m.handle_timeout(self.clock.now());
                }
                Output::Wait(None) => panic!("stuck"),
                Output::NeedData { .. } => panic!("a batch needs no data"),
                Output::Finished(r) => return Next::Done(r),
            }
        }
        panic!("no progress");
    }

    fn send(&mut self) -> OutgoingRequest {
        match self.next() {
            Next::Send(r) => r,
            Next::Done(r) => panic!("finished early: {r:?}"),
        }
    }

    fn done(&mut self) -> BatchOutcome {
        match self.next() {
            Next::Done(r) => r.unwrap(),
            Next::Send(r) => panic!("unexpected request {r:?}"),
        }
    }

    fn answer(&mut self, r: &OutgoingRequest, entries: Vec<Value>) {
        let now = self.clock.now();
        self.m
            .handle_response(now, r.id(), json_resp(200, json!({ "entries": entries })))
            .unwrap();
    }
}

fn ids(r: &OutgoingRequest) -> Vec<String> {
    arg(r)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"]["session_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn groups_are_committed_one_call_at_a_time_and_verified() {
    let mut b = bh(3, 2);
    let r1 = b.send();
    check_wire(&r1);
    assert_eq!(r1.kind(), RequestKind::BatchCommit { entries: 2 });
    assert_eq!(
        r1.request().uri().to_string(),
        format!("{API}files/upload_session/finish_batch_v2")
    );
    let a = arg(&r1);
    assert_eq!(
        a["entries"][0],
        json!({"cursor": {"session_id": "sid-0", "offset": entry(0).session.size}, "commit": {"path": "/batch/f0.txt"}})
    );
    assert!(
        matches!(b.m.poll_output(b.clock.now()), Output::Wait(None)),
        "one call at a time"
    );
    b.answer(&r1, vec![success(&entry(0)), success(&entry(1))]);
    let r2 = b.send();
    assert_eq!(ids(&r2), ["sid-2"]);
    b.answer(&r2, vec![success(&entry(2))]);
    let out = b.done();
    assert!(out.all_committed());
    assert!(
        out.entries
            .iter()
            .all(|e| e.as_ref().unwrap().hash_verified)
    );
}

#[test]
fn contended_entries_are_retried_alone_after_a_wait() {
    let mut b = bh(3, 1000);
    let r1 = b.send();
    b.answer(
        &r1,
        vec![
            success(&entry(0)),
            failure(json!({".tag": "too_many_write_operations"})),
            failure(
                json!({".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "file"}}}),
            ),
        ],
    );
    let t0 = b.clock.elapsed();
    let r2 = b.send();
    assert!(b.clock.elapsed() - t0 >= Duration::from_secs(1));
    assert_eq!(ids(&r2), ["sid-1"]);
    b.answer(&r2, vec![success(&entry(1))]);
    let out = b.done();
    assert!(out.entries[0].is_ok() && out.entries[1].is_ok());
    match &out.entries[2] {
        Err(UploadError::Conflict { codes }) => assert_eq!(codes.0, ["path", "conflict", "file"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_batch_answer_is_resolved_by_lookup() {
    let mut b = bh(2, 1000);
    let r1 = b.send();
    let now = b.clock.now();
    b.m.handle_failure(now, r1.id(), TransportFailure::Closed)
        .unwrap();
    let r2 = b.send();
    assert_eq!(ids(&r2), ["sid-0", "sid-1"]);
    let nf = json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}});
    b.answer(&r2, vec![failure(nf.clone()), success(&entry(1))]);
    let look = b.send();
    assert_eq!(look.kind(), RequestKind::Metadata);
    assert_eq!(arg(&look), json!({"path": "/batch/f0.txt"}));
    let now = b.clock.now();
    let mut m = meta(&entry(0));
    m[".tag"] = json!("file");
    b.m.handle_response(now, look.id(), json_resp(200, m))
        .unwrap();
    let out = b.done();
    assert!(out.all_committed());
}

#[test]
fn entries_in_doubt_twice_are_looked_up_before_being_sent_again() {
    let mut b = bh(2, 1000);
    let r1 = b.send();
    let now = b.clock.now();
    b.m.handle_response(now, r1.id(), raw(502, Bytes::new()))
        .unwrap();
    let r2 = b.send();
    assert_eq!(ids(&r2), ["sid-0", "sid-1"]);
    let now = b.clock.now();
    b.m.handle_failure(now, r2.id(), TransportFailure::Closed)
        .unwrap();
    // Second doubt: look both up instead of sending the sessions a third time.
    let l0 = b.send();
    assert_eq!(arg(&l0), json!({"path": "/batch/f0.txt"}));
    let now = b.clock.now();
    b.m.handle_response(now, l0.id(), json_resp(200, meta(&entry(0))))
        .unwrap();
    let l1 = b.send();
    assert_eq!(arg(&l1), json!({"path": "/batch/f1.txt"}));
    let now = b.clock.now();
    b.m.handle_response(
        now,
        l1.id(),
        json_resp(
            409,
            json!({"error": {".tag": "path", "path": {".tag": "not_found"}}}),
        ),
    )
    .unwrap();
    // Entry 1 was not committed: it goes in a batch again.
    let r3 = b.send();
    assert_eq!(ids(&r3), ["sid-1"]);
    b.answer(&r3, vec![success(&entry(1))]);
    assert!(b.done().all_committed());
}

#[test]
fn not_found_without_doubt_is_an_entry_error_and_bad_results_are_typed() {
    let mut b = bh(3, 1000);
    let r1 = b.send();
    let mut wrong = success(&entry(2));
    wrong["content_hash"] = json!("f".repeat(64));
    b.answer(
        &r1,
        vec![
            failure(json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}})),
            failure(json!({".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 3}})),
            wrong,
        ],
    );
    let out = b.done();
    assert_eq!(
        out.entries[0].clone().err(),
        Some(UploadError::SessionNotFound)
    );
    assert!(matches!(
        out.entries[1],
        Err(UploadError::OffsetMismatch {
            server: Some(3),
            ..
        })
    ));
    assert!(matches!(
        out.entries[2],
        Err(UploadError::HashMismatch { .. })
    ));
}

#[test]
fn whole_call_throttling_and_errors() {
    let mut b = bh(1, 1000);
    let r1 = b.send();
    let now = b.clock.now();
    let mut r = raw(429, Bytes::new());
    r.headers_mut().insert("retry-after", "5".parse().unwrap());
    b.m.handle_response(now, r1.id(), r).unwrap();
    let t0 = b.clock.elapsed();
    let r2 = b.send();
    assert_eq!(b.clock.elapsed() - t0, Duration::from_secs(5));
    assert_eq!(ids(&r2), ["sid-0"]);
    // A garbled answer: unknown outcome, retried; then not_found → lookup.
    let now = b.clock.now();
    b.m.handle_response(now, r2.id(), json_resp(200, json!({"entries": []})))
        .unwrap();
    let r3 = b.send();
    b.answer(
        &r3,
        vec![failure(
            json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}}),
        )],
    );
    let look = b.send();
    let now = b.clock.now();
    b.m.handle_response(
        now,
        look.id(),
        json_resp(
            409,
            json!({"error": {".tag": "path", "path": {".tag": "not_found"}}}),
        ),
    )
    .unwrap();
    assert_eq!(
        b.done().entries[0].clone().err(),
        Some(UploadError::SessionNotFound)
    );
    // A 400 fails the group's entries.
    let mut b = bh(2, 1000);
    let r1 = b.send();
    let now = b.clock.now();
    b.m.handle_response(
        now,
        r1.id(),
        raw(400, Bytes::from_static(b"request body: entries: bad")),
    )
    .unwrap();
    let out = b.done();
    assert!(
        out.entries
            .iter()
            .all(|e| matches!(e, Err(UploadError::BadRequest { .. })))
    );
}

#[test]
fn large_batches_are_split_into_groups_of_at_most_1000() {
    let mut b = bh(2500, 1000);
    let mut sizes = vec![];
    loop {
        match b.next() {
            Next::Send(r) => {
                let n = ids(&r).len();
                sizes.push(n);
                let start: usize = sizes[..sizes.len() - 1].iter().sum();
                let ans = (start..start + n).map(|i| success(&entry(i))).collect();
                b.answer(&r, ans);
            }
            Next::Done(r) => {
                assert!(r.unwrap().all_committed());
                break;
            }
        }
    }
    assert_eq!(sizes, [1000, 1000, 500]);
}

#[test]
fn batches_are_validated() {
    let bad = |b: crate::dropbox::BatchBuilder| b.build().err();
    assert!(matches!(
        bad(BatchCommit::builder(vec![]).group_size(0)),
        Some(BuildError::InvalidOption { .. })
    ));
    assert!(matches!(
        bad(BatchCommit::builder(vec![]).group_size(1001)),
        Some(BuildError::InvalidOption { .. })
    ));
    let mut e = entry(0);
    e.session.content_hash = "xyz".into();
    assert!(matches!(
        bad(BatchCommit::builder(vec![e])),
        Some(BuildError::InvalidOption { .. })
    ));
    // An empty batch finishes at once.
    let mut b = bh(0, 10);
    assert!(b.done().entries.is_empty());
    let _ = &b.events;
}

#[test]
fn a_rerun_confirms_entries_an_earlier_run_committed() {
    let m = BatchCommit::builder(vec![entry(0)])
        .rerun(true)
        .config(DropboxConfig::with_hosts(CONTENT, API))
        .access_token(AccessToken::new("tok").unwrap())
        .build()
        .unwrap();
    let mut b = Bh {
        m,
        clock: VirtualClock::new(start_wall()),
        events: vec![],
    };
    let r1 = b.send();
    b.answer(
        &r1,
        vec![failure(
            json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}}),
        )],
    );
    let look = b.send();
    let now = b.clock.now();
    b.m.handle_response(now, look.id(), json_resp(200, meta(&entry(0))))
        .unwrap();
    assert!(b.done().all_committed());
}
