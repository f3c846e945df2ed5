//! Committing: finish errors, the lookup after a lost answer, verification.

use super::*;
use crate::dropbox::{Completed, content_hash};
use crate::error::HashAlgorithm;
use crate::testing::dropbox::{API, DropboxHarness, DropboxScenario, PATH, offset, route};
use crate::testing::raw;
use crate::{Event, OutgoingRequest, RequestKind, TransportFailure, UploadError, UploadMachine};
use bytes::Bytes;
use serde_json::json;

const SIZE: u64 = 20 * M + 5;

/// A sequential upload at its finish (which carries [16 MiB, SIZE)).
fn at_finish() -> (DropboxHarness, OutgoingRequest) {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let fin = h.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", 16 * M));
    (h, fin)
}

#[test]
fn lookup_failed_incorrect_offset_at_the_end_retries_empty_at_the_new_offset() {
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": SIZE}}),
    );
    let again = h.expect_send();
    assert_eq!((route(&again).as_str(), offset(&again)), ("finish", SIZE));
    assert!(again.request().body().is_empty());
    assert!(hash_arg(&again).is_none());
}

#[test]
fn lookup_failed_incorrect_offset_inside_resends_the_tail_in_the_finish() {
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 16 * M + 10}}),
    );
    let again = h.expect_send();
    check_wire(&again);
    assert_eq!(offset(&again), 16 * M + 10);
    assert_eq!(again.body_len(), SIZE - 16 * M - 10);
}

#[test]
fn a_path_error_retries_at_the_advanced_offset_with_an_empty_body() {
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "path", "path": {".tag": "too_many_write_operations"}}),
    );
    let again = h.expect_send();
    assert_eq!((route(&again).as_str(), offset(&again)), ("finish", SIZE));
    assert!(again.request().body().is_empty());
    assert!(h.saw(|e| matches!(e, Event::RetryScheduled { cause: UploadError::WriteContention { status: 409, .. }, delay, .. } if *delay >= Duration::from_secs(1))));
}

#[test]
fn a_conflict_is_fatal_and_carries_the_tag_chain() {
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "file"}}}),
    );
    match h.expect_finished() {
        Err(UploadError::Conflict { codes }) => assert_eq!(codes.0, ["path", "conflict", "file"]),
        other => panic!("{other:?}"),
    }
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "path", "path": {".tag": "insufficient_space"}}),
    );
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::QuotaExceeded { .. })
    ));
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "path", "path": {".tag": "disallowed_name"}}),
    );
    match h.expect_finished() {
        Err(UploadError::Rejected { status: 409, codes }) => {
            assert_eq!(codes.0, ["path", "disallowed_name"])
        }
        other => panic!("{other:?}"),
    }
    let (mut h, fin) = at_finish();
    h.conflict(fin.id(), json!({".tag": "some_future_tag"}));
    assert!(matches!(
        h.expect_finished(),
        Err(UploadError::Rejected { status: 409, .. })
    ));
}

fn lost_finish() -> (DropboxHarness, OutgoingRequest) {
    let (mut h, fin) = at_finish();
    let now = h.clock.now();
    h.m.handle_failure(now, fin.id(), TransportFailure::TimedOut)
        .unwrap();
    // The finish may have committed (consuming the session): look before sending again.
    let look = h.expect_send();
    check_wire(&look);
    assert_eq!(look.kind(), RequestKind::Metadata);
    assert_eq!(
        look.request().uri().to_string(),
        format!("{API}files/get_metadata")
    );
    assert_eq!(arg(&look), json!({"path": PATH}));
    assert_eq!(h.m.phase(), crate::dropbox::Phase::Verifying);
    (h, look)
}

#[test]
fn a_lost_finish_is_checked_against_the_file_metadata() {
    let (mut h, look) = lost_finish();
    let mut meta = h.metadata();
    meta[".tag"] = json!("file");
    h.ok(look.id(), meta);
    match h.expect_finished().unwrap() {
        Completed::Committed(c) => assert!(c.hash_verified),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_finish_that_did_not_commit_is_sent_again() {
    // Another file at the path: not ours, the commit did not happen.
    let (mut h, look) = lost_finish();
    let mut meta = h.metadata();
    meta["content_hash"] = json!(content_hash(b"something else"));
    h.ok(look.id(), meta);
    let again = h.expect_send();
    assert_eq!((route(&again).as_str(), offset(&again)), ("finish", 16 * M));
    assert_eq!(again.body_len(), SIZE - 16 * M);
    assert_eq!(h.m.restarts(), 0);
    // Nothing at the path.
    let (mut h, look) = lost_finish();
    h.conflict(
        look.id(),
        json!({".tag": "path", "path": {".tag": "not_found"}}),
    );
    let again = h.expect_send();
    assert_eq!(route(&again), "finish");
    // Now a not_found can only mean the session expired.
    h.conflict(
        again.id(),
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}}),
    );
    assert_eq!(route(&h.expect_send()), "start");
    assert_eq!(h.m.restarts(), 1);
}

#[test]
fn a_5xx_finish_is_also_in_doubt() {
    let (mut h, fin) = at_finish();
    h.respond(fin.id(), raw(503, Bytes::new()));
    assert_eq!(route(&h.expect_send()), "get_metadata");
}

#[test]
fn not_found_at_a_first_finish_restarts_without_a_lookup() {
    let (mut h, fin) = at_finish();
    h.conflict(
        fin.id(),
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}}),
    );
    assert_eq!(route(&h.expect_send()), "start");
}

#[test]
fn a_garbled_finish_success_is_looked_up() {
    let (mut h, fin) = at_finish();
    h.respond(fin.id(), raw(200, Bytes::from_static(b"{\"name\": tru")));
    assert_eq!(route(&h.expect_send()), "get_metadata");
}

#[test]
fn verification_compares_size_and_content_hash() {
    let (mut h, fin) = at_finish();
    let mut meta = h.metadata();
    meta["size"] = json!(SIZE - 1);
    h.ok(fin.id(), meta);
    assert_eq!(
        h.expect_finished().err(),
        Some(UploadError::SizeMismatch {
            expected: SIZE,
            actual: Some(SIZE - 1)
        })
    );
    let (mut h, fin) = at_finish();
    let mut meta = h.metadata();
    meta["content_hash"] = json!("0".repeat(64));
    h.ok(fin.id(), meta);
    match h.expect_finished() {
        Err(
            e @ UploadError::HashMismatch {
                algorithm: HashAlgorithm::DropboxContentHash,
                ..
            },
        ) => {
            assert!(e.is_integrity())
        }
        other => panic!("{other:?}"),
    }
    // No hash reported: size checked, hash unknown.
    let (mut h, fin) = at_finish();
    let mut meta = h.metadata();
    meta.as_object_mut().unwrap().remove("content_hash");
    h.ok(fin.id(), meta);
    match h.expect_finished().unwrap() {
        Completed::Committed(c) => assert!(!c.hash_verified),
        other => panic!("{other:?}"),
    }
}
