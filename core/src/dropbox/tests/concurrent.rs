//! Concurrent sessions: aligned parallel appends in any completion order, the closing
//! append last, an empty finish at offset = size.

use super::*;
use crate::dropbox::content_hash;
use crate::testing::dropbox::{DropboxHarness, DropboxScenario, closes, offset, route};
use crate::testing::raw;
use crate::{Event, OutgoingRequest, TransportFailure, UploadError, UploadMachine};
use bytes::Bytes;
use serde_json::json;

const SIZE: u64 = 3 * B + 100;

fn started(size: u64, n: u32) -> (DropboxHarness, Vec<OutgoingRequest>) {
    let mut h = DropboxScenario::concurrent(size, n).build();
    assert!(h.m.is_concurrent());
    let start = h.expect_send();
    check_wire(&start);
    assert!(start.request().body().is_empty());
    assert_eq!(arg(&start), json!({"session_type": "concurrent"}));
    h.session(start.id(), "csid");
    let first = h.expect_sends();
    (h, first)
}

fn chunk_of(r: &OutgoingRequest) -> u64 {
    offset(r) / B
}

#[test]
fn appends_are_aligned_parallel_and_the_closing_one_goes_last() {
    let (mut h, first) = started(SIZE, 2);
    assert_eq!(first.iter().map(chunk_of).collect::<Vec<_>>(), [0, 1]);
    for r in &first {
        check_wire(r);
        assert_eq!(r.body_len(), B);
        assert_eq!(offset(r) % B, 0);
        assert!(!closes(r));
        assert_eq!(arg(r)["cursor"]["session_id"], "csid");
    }
    assert_eq!(h.m.in_flight(), 2);
    // Chunk 1 completes first.
    h.ok_null(first[1].id());
    let c2 = h.expect_sends();
    assert_eq!(c2.iter().map(chunk_of).collect::<Vec<_>>(), [2]);
    let cp = h.last_checkpoint().unwrap();
    assert_eq!((cp.acknowledged, cp.completed_blocks.clone()), (0, vec![1]));
    h.ok_null(c2[0].id());
    // Chunk 0 is still in flight: the closing append must wait.
    assert!(matches!(
        h.run(),
        crate::testing::dropbox::DbxNext::Wait(None)
    ));
    h.ok_null(first[0].id());
    let close = h.expect_sends();
    let cp = h.last_checkpoint().unwrap();
    assert_eq!(
        (cp.acknowledged, cp.completed_blocks.clone()),
        (3 * B, vec![])
    );
    assert_eq!(close.len(), 1);
    let close = &close[0];
    check_wire(close);
    assert_eq!(
        (offset(close), closes(close), close.body_len()),
        (3 * B, true, 100)
    );
    h.ok_null(close.id());
    let fin = h.expect_send();
    check_wire(&fin);
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", SIZE));
    assert!(fin.request().body().is_empty());
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert!(matches!(done, crate::dropbox::Completed::Committed(c) if c.hash_verified));
    // Every chunk read once.
    let mut reads = h.reads.clone();
    reads.sort();
    assert_eq!(reads, [(0, B), (B, B), (2 * B, B), (3 * B, 100)]);
}

#[test]
fn in_flight_never_exceeds_the_parallelism() {
    let (mut h, first) = started(20 * B + 1, 3);
    assert_eq!(first.len(), 3);
    let mut pending = first;
    let mut max = 0;
    while let Some(r) = pending.pop() {
        max = max.max(h.m.in_flight());
        if route(&r) == "finish" {
            let meta = h.metadata();
            h.ok(r.id(), meta);
            break;
        }
        h.ok_null(r.id());
        if let crate::testing::dropbox::DbxNext::Send(n) = h.run() {
            pending.push(n);
            while let crate::testing::dropbox::DbxNext::Send(n) = h.run() {
                pending.push(n);
            }
        }
    }
    assert!(max <= 3);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn a_failed_append_is_resent_identically_without_rereading() {
    let (mut h, first) = started(SIZE, 2);
    h.respond(first[0].id(), raw(503, Bytes::new()));
    let reads = h.reads.len();
    // The other one completes meanwhile; after the pause chunk 0 goes again.
    h.ok_null(first[1].id());
    let next = h.expect_sends();
    let chunks: Vec<u64> = next.iter().map(chunk_of).collect();
    assert!(chunks.contains(&0) && chunks.contains(&2), "{chunks:?}");
    let again = next.iter().find(|r| chunk_of(r) == 0).unwrap();
    assert_eq!(again.request().body(), first[0].request().body());
    assert_eq!(hash_arg(again), hash_arg(&first[0]));
    assert_eq!(h.reads.len(), reads + 1, "only chunk 2 is read");
}

#[test]
fn closed_on_a_retried_closing_append_goes_on_to_finish() {
    let (mut h, first) = started(2 * B + 7, 2);
    h.ok_null(first[0].id());
    h.ok_null(first[1].id());
    let close = h.expect_send();
    assert!(closes(&close));
    let now = h.clock.now();
    h.m.handle_failure(now, close.id(), TransportFailure::TimedOut)
        .unwrap();
    let again = h.expect_send();
    assert!(closes(&again));
    h.conflict(again.id(), json!({".tag": "closed"}));
    let fin = h.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", 2 * B + 7));
}

#[test]
fn an_exact_multiple_closes_with_a_full_chunk() {
    let (mut h, first) = started(2 * B, 4);
    assert_eq!(first.len(), 1, "the closing chunk waits");
    h.ok_null(first[0].id());
    let close = h.expect_send();
    assert_eq!(
        (offset(&close), close.body_len(), closes(&close)),
        (B, B, true)
    );
}

#[test]
fn not_found_restarts_and_sends_every_chunk_again() {
    let (mut h, first) = started(SIZE, 2);
    h.ok_null(first[1].id());
    let _c2 = h.expect_sends();
    h.conflict(first[0].id(), json!({".tag": "not_found"}));
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert!(h.saw(|e| matches!(
        e,
        Event::SessionRestarted {
            cause: UploadError::SessionNotFound,
            ..
        }
    )));
    // An answer for the old session is stale now.
    let n_events = h.events.len();
    h.ok_null(_c2[0].id());
    assert!(matches!(
        h.poll(),
        crate::Output::Event(Event::StaleResponse { .. })
    ));
    assert!(h.events.len() > n_events);
    h.session(start.id(), "csid-2");
    let mut sent = h.expect_sends();
    let mut all = vec![];
    while let Some(r) = sent.pop() {
        if route(&r) == "finish" {
            let meta = h.metadata();
            h.ok(r.id(), meta);
            break;
        }
        assert_eq!(arg(&r)["cursor"]["session_id"], "csid-2");
        all.push(chunk_of(&r));
        h.ok_null(r.id());
        while let crate::testing::dropbox::DbxNext::Send(n) = h.run() {
            sent.push(n);
        }
    }
    all.sort();
    assert_eq!(all, [0, 1, 2, 3]);
    assert_eq!(h.expect_finished().unwrap().restarts(), 1);
}

#[test]
fn incorrect_offset_on_a_concurrent_append_is_a_contradiction() {
    let (mut h, first) = started(SIZE, 2);
    h.conflict(
        first[0].id(),
        json!({".tag": "incorrect_offset", "correct_offset": 7}),
    );
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::ServerContradiction { .. })
    ));
}

#[test]
fn a_failed_finish_never_carries_data() {
    let (mut h, first) = started(2 * B + 1, 2);
    h.ok_null(first[0].id());
    h.ok_null(first[1].id());
    let close = h.expect_send();
    h.ok_null(close.id());
    let fin = h.expect_send();
    h.respond(fin.id(), raw(500, Bytes::new()));
    let look = h.expect_send();
    assert_eq!(route(&look), "get_metadata");
    h.conflict(
        look.id(),
        json!({".tag": "path", "path": {".tag": "not_found"}}),
    );
    let fin2 = h.expect_send();
    assert_eq!(route(&fin2), "finish");
    assert!(fin2.request().body().is_empty());
    assert_eq!(offset(&fin2), 2 * B + 1);
    let _ = content_hash(b"");
}

/// Found by the `dropbox_machine` fuzz target: after a restart, the old session's
/// appends were forgotten while still on the wire, and the new session put
/// `parallelism` more beside them. They now count against the cap until they return.
#[test]
fn a_restart_counts_the_old_sessions_requests_until_they_return() {
    let (mut h, first) = started(SIZE, 2);
    assert_eq!(first.len(), 2);
    h.conflict(first[0].id(), json!({".tag": "not_found"}));
    // One old append on the wire + the new start = 2.
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert_eq!(h.m.in_flight(), 2);
    h.session(start.id(), "csid-2");
    let sent = h.expect_sends();
    assert_eq!(
        sent.len(),
        1,
        "the old append still holds one of the two slots"
    );
    assert_eq!(h.m.in_flight(), 2);
    // The old append's answer is stale and frees its slot.
    h.ok_null(first[1].id());
    assert!(matches!(
        h.poll(),
        crate::Output::Event(Event::StaleResponse { .. })
    ));
    let more = h.expect_sends();
    assert_eq!(more.len(), 1);
    assert_ne!(chunk_of(&more[0]), chunk_of(&sent[0]));
    assert_eq!(h.m.in_flight(), 2);
}
