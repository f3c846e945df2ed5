//! Sequential sessions: appends at the confirmed offset, resyncs, closing, restarts.

use super::*;
use crate::dropbox::{Completed, content_hash};
use crate::testing::dropbox::{DropboxHarness, DropboxScenario, closes, offset, route};
use crate::testing::raw;
use crate::{Event, RequestKind, TransportFailure, UploadError, UploadMachine};
use bytes::Bytes;
use serde_json::json;

const SIZE: u64 = 20 * M + 5;

fn h() -> DropboxHarness {
    DropboxScenario::new(SIZE).build()
}

fn slice(h: &DropboxHarness, a: u64, b: u64) -> Bytes {
    h.data.slice(a as usize..b as usize)
}

#[test]
fn appends_follow_the_confirmed_offset_and_finish_carries_the_last_chunk() {
    let mut h = h();
    let start = h.expect_send();
    check_wire(&start);
    assert_eq!(start.request().body(), &slice(&h, 0, 8 * M));
    assert!(!closes(&start));
    h.session(start.id(), "sid-1");
    let a1 = h.expect_send();
    check_wire(&a1);
    assert_eq!(route(&a1), "append_v2");
    assert_eq!(
        a1.kind(),
        RequestKind::UploadData {
            range: crate::ByteRange::new(8 * M, 16 * M).unwrap()
        }
    );
    assert_eq!(
        arg(&a1)["cursor"],
        json!({"session_id": "sid-1", "offset": 8 * M})
    );
    assert!(!closes(&a1));
    assert_eq!(a1.request().body(), &slice(&h, 8 * M, 16 * M));
    h.ok_null(a1.id());
    let fin = h.expect_send();
    check_wire(&fin);
    assert_eq!(route(&fin), "finish");
    assert_eq!(offset(&fin), 16 * M);
    assert_eq!(fin.request().body(), &slice(&h, 16 * M, SIZE));
    assert_eq!(
        hash_arg(&fin).unwrap(),
        content_hash(&slice(&h, 16 * M, SIZE))
    );
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert_eq!(done.metadata().unwrap().size, SIZE);
    // Every byte read exactly once, in order.
    assert_eq!(h.reads, [(0, 8 * M), (8 * M, 8 * M), (16 * M, 4 * M + 5)]);
    // Progress and a checkpoint after each acknowledged request.
    let acks: Vec<u64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { acknowledged, .. } => Some(*acknowledged),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [8 * M, 16 * M]);
    let cp = h.last_checkpoint().unwrap();
    assert_eq!((cp.session_id.as_str(), cp.acknowledged), ("sid-1", 16 * M));
}

#[test]
fn without_last_chunk_in_finish_a_closing_append_precedes_an_empty_finish() {
    let mut h = DropboxScenario::new(SIZE)
        .last_chunk_in_finish(false)
        .build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let close = h.expect_send();
    assert_eq!(
        (route(&close).as_str(), offset(&close), closes(&close)),
        ("append_v2", 16 * M, true)
    );
    assert_eq!(close.body_len(), 4 * M + 5);
    h.ok_null(close.id());
    let fin = h.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", SIZE));
    assert!(fin.request().body().is_empty());
}

#[test]
fn incorrect_offset_at_the_end_of_the_body_means_it_landed() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 16 * M}),
    );
    let fin = h.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", 16 * M));
    assert!(h.saw(|e| matches!(e, Event::Resynced { expected, server } if *expected == 8 * M && *server == 16 * M)));
}

#[test]
fn incorrect_offset_inside_the_body_resends_the_tail_from_held_bytes() {
    let mut h = h();
    let a1 = h.to_uploading();
    let reads = h.reads.len();
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 8 * M + 100}),
    );
    let tail = h.expect_send();
    check_wire(&tail);
    assert_eq!(offset(&tail), 8 * M + 100);
    assert_eq!(tail.request().body(), &slice(&h, 8 * M + 100, 16 * M));
    assert_eq!(h.reads.len(), reads, "no re-read");
    h.ok_null(tail.id());
    let fin = h.expect_send();
    assert_eq!(offset(&fin), 16 * M);
}

#[test]
fn incorrect_offset_behind_confirmed_data_restarts_the_session() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 5}),
    );
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert!(h.saw(|e| matches!(e, Event::SessionRestarted { restarts: 1, .. })));
    assert_eq!(h.m.restarts(), 1);
}

#[test]
fn incorrect_offset_beyond_what_was_sent_is_a_contradiction() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 16 * M + 1}),
    );
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::ServerContradiction { .. })
    ));
    let mut h = super::sequential::h();
    let a1 = h.to_uploading();
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": u64::MAX}),
    );
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::ServerContradiction { .. })
    ));
}

#[test]
fn incorrect_offset_repeating_the_sent_offset_is_retried_within_the_budget() {
    let mut h = DropboxScenario::new(SIZE)
        .config(|c| c.retry.max_attempts = 3)
        .build();
    let mut req = h.to_uploading();
    for _ in 0..3 {
        h.conflict(
            req.id(),
            json!({".tag": "incorrect_offset", "correct_offset": 8 * M}),
        );
        req = h.expect_send();
        assert_eq!(offset(&req), 8 * M);
    }
    h.conflict(
        req.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 8 * M}),
    );
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::TooManyRetries { .. })
    ));
}

#[test]
fn closed_on_a_retried_closing_append_goes_on_to_finish() {
    let mut h = DropboxScenario::new(SIZE)
        .last_chunk_in_finish(false)
        .build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let close = h.expect_send();
    let now = h.clock.now();
    h.m.handle_failure(now, close.id(), TransportFailure::Closed)
        .unwrap();
    let again = h.expect_send();
    assert_eq!((offset(&again), closes(&again)), (16 * M, true));
    h.conflict(again.id(), json!({".tag": "closed"}));
    let fin = h.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", SIZE));
    assert!(fin.request().body().is_empty());
}

#[test]
fn closed_on_a_non_closing_append_is_fatal() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(a1.id(), json!({".tag": "closed"}));
    assert_eq!(h.expect_finished().err(), Some(UploadError::SessionClosed));
}

#[test]
fn not_found_restarts_the_session_and_the_upload_still_verifies() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(a1.id(), json!({".tag": "not_found"}));
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert_eq!(start.request().body(), &slice(&h, 0, 8 * M));
    h.session(start.id(), "sid-2");
    let a1 = h.expect_send();
    assert_eq!(arg(&a1)["cursor"]["session_id"], "sid-2");
    h.ok_null(a1.id());
    let fin = h.expect_send();
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert_eq!(done.restarts(), 1);
}

#[test]
fn a_corrupted_body_is_resent_identically() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.conflict(a1.id(), json!({".tag": "content_hash_mismatch"}));
    let again = h.expect_send();
    assert_eq!(offset(&again), 8 * M);
    assert_eq!(again.request().body(), a1.request().body());
    assert_eq!(hash_arg(&again), hash_arg(&a1));
}

#[test]
fn a_5xx_is_retried_and_an_applied_append_is_recognised() {
    let mut h = h();
    let a1 = h.to_uploading();
    h.respond(
        a1.id(),
        raw(502, Bytes::from_static(b"<html>bad gateway</html>")),
    );
    let again = h.expect_send();
    assert_eq!(offset(&again), 8 * M);
    // It had been applied: the server now holds 16 MiB.
    h.conflict(
        again.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 16 * M}),
    );
    let fin = h.expect_send();
    assert_eq!(offset(&fin), 16 * M);
}

#[test]
fn batch_mode_closes_the_session_and_reports_it() {
    let mut h = DropboxScenario::new(SIZE).for_batch().build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let close = h.expect_send();
    assert_eq!(
        (route(&close).as_str(), closes(&close)),
        ("append_v2", true)
    );
    h.ok_null(close.id());
    match h.expect_finished().unwrap() {
        Completed::Closed { session, restarts } => {
            assert_eq!(session.session_id, "sid-1");
            assert_eq!(session.size, SIZE);
            assert_eq!(session.content_hash, content_hash(&h.data));
            assert_eq!(restarts, 0);
        }
        other => panic!("{other:?}"),
    }
    // A small file in batch mode: one closing start.
    let mut h = DropboxScenario::new(10).for_batch().build();
    let start = h.expect_send();
    assert!(closes(&start));
    h.session(start.id(), "s");
    assert!(h.expect_finished().unwrap().closed_session().is_some());
}

#[test]
fn unaligned_chunks_still_hash_correctly() {
    let size = 10_000_000;
    let mut h = DropboxScenario::new(size).chunk(3_000_001).build();
    let mut req = h.expect_send();
    h.session(req.id(), "s");
    loop {
        req = h.expect_send();
        check_wire(&req);
        if route(&req) == "finish" {
            break;
        }
        h.ok_null(req.id());
    }
    let meta = h.metadata();
    h.ok(req.id(), meta);
    let done = h.expect_finished().unwrap();
    assert!(matches!(done, Completed::Committed(c) if c.hash_verified));
}
