//! Starting: the shortest legal paths, start retries.

use super::*;
use crate::dropbox::{Completed, content_hash};
use crate::testing::dropbox::{DropboxScenario, PATH, route};
use crate::testing::raw;
use crate::{RequestKind, UploadError};
use bytes::Bytes;
use serde_json::json;

#[test]
fn a_small_file_is_a_closing_start_with_data_then_an_empty_finish() {
    let mut h = DropboxScenario::new(1000).build();
    let start = h.expect_send();
    check_wire(&start);
    assert_eq!(route(&start), "start");
    assert_eq!(start.kind(), RequestKind::CreateSession);
    assert_eq!(start.request().body().as_ref(), &h.data[..]);
    let a = arg(&start);
    assert_eq!(a["close"], true);
    assert_eq!(a["content_hash"], content_hash(&h.data));
    assert!(a.get("session_type").is_none());
    h.session(start.id(), "sid-1");
    let fin = h.expect_send();
    check_wire(&fin);
    assert_eq!(route(&fin), "finish");
    assert!(fin.request().body().is_empty());
    assert_eq!(
        arg(&fin),
        json!({"cursor": {"session_id": "sid-1", "offset": 1000}, "commit": {"path": PATH}})
    );
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    match h.expect_finished().unwrap() {
        Completed::Committed(c) => {
            assert!(c.hash_verified);
            assert_eq!(c.metadata.size, 1000);
            assert_eq!(c.content_hash, content_hash(&h.data));
            assert_eq!(c.restarts, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.reads, [(0, 1000)]);
}

#[test]
fn a_zero_byte_file_sends_no_data_and_no_hash_but_the_content_type() {
    let mut h = DropboxScenario::new(0).build();
    let start = h.expect_send();
    check_wire(&start);
    assert!(start.request().body().is_empty());
    assert_eq!(
        start.request().headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(arg(&start), json!({"close": true}));
    h.session(start.id(), "sid-0");
    let fin = h.expect_send();
    assert_eq!(arg(&fin)["cursor"]["offset"], 0);
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert_eq!(done.metadata().unwrap().size, 0);
    assert!(h.reads.is_empty());
}

#[test]
fn a_concurrent_upload_of_a_small_file_takes_the_sequential_shortest_path() {
    let mut h = DropboxScenario::concurrent(B, 4).build();
    assert!(!h.m.is_concurrent());
    let start = h.expect_send();
    assert_eq!(start.request().body().len() as u64, B);
    assert!(arg(&start).get("session_type").is_none());
    assert_eq!(arg(&start)["close"], true);
}

#[test]
fn a_failed_start_is_retried_after_a_backoff() {
    let mut h = DropboxScenario::new(20 * M).build();
    let start = h.expect_send();
    h.respond(start.id(), raw(500, Bytes::new()));
    let t0 = h.clock.now();
    let again = h.expect_send();
    assert_eq!(route(&again), "start");
    assert!(h.clock.now() > t0, "waited");
    assert_eq!(again.request().body(), start.request().body());
    // A start answered with garbage: another start.
    h.respond(
        again.id(),
        raw(200, Bytes::from_static(b"{\"session_id\": 5}")),
    );
    let third = h.expect_send();
    assert_eq!(route(&third), "start");
    assert!(h.saw(|e| matches!(
        e,
        crate::Event::RetryScheduled {
            cause: UploadError::MalformedResponse { .. },
            ..
        }
    )));
}

#[test]
fn a_start_whose_body_was_corrupted_is_resent() {
    let mut h = DropboxScenario::new(20 * M).build();
    let start = h.expect_send();
    h.conflict(start.id(), json!({".tag": "content_hash_mismatch"}));
    let again = h.expect_send();
    assert_eq!(again.request().body(), start.request().body());
    assert_eq!(hash_arg(&again), hash_arg(&start));
    assert!(h.saw(|e| matches!(
        e,
        crate::Event::RetryScheduled {
            cause: UploadError::RequestHashRejected,
            ..
        }
    )));
    // The bytes were read once.
    assert_eq!(h.reads, [(0, 8 * M)]);
}
