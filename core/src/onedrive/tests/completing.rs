//! Phases `AwaitingCommit`, `Committing`, `Verifying`: the end of an upload, deferred
//! commits, lost final answers, zero-byte files and integrity (onedrive.md §2.3, §3.3,
//! §4.3, §7).

use super::*;
use crate::onedrive::{DeferCommit, Phase, QuickXorHash, limits::FRAGMENT_UNIT};
use crate::testing::{Scenario, raw};
use crate::{HashAlgorithm, Misuse, RequestKind, TransportFailure, UploadMachine};
use bytes::Bytes;

const U: u64 = FRAGMENT_UNIT;

fn last_fragment(h: &mut Harness) -> OutgoingRequest {
    let size = h.data.len() as u64;
    let mut req = h.to_uploading();
    loop {
        let (_, end) = fragment_bounds(&req);
        if end == size {
            return req;
        }
        accepted(h, &req, end);
        req = h.expect_send();
    }
}

#[test]
fn a_matching_item_completes_with_both_hashes_verified() {
    let mut h = Scenario::onedrive(2 * U + 5).build();
    let last = last_fragment(&mut h);
    let item = h.item_json();
    h.respond_json(last.id(), 201, item);
    let c = h.expect_finished().unwrap();
    assert_eq!(c.item.size, Some(2 * U + 5));
    assert!(c.verification.quick_xor);
    assert!(c.verification.sha256);
    assert_eq!(h.m.phase(), Phase::Done);
}

/// onedrive.md §7.1: QuickXorHash is the one hash every drive reports, so SHA-256 is
/// opt-in: by default it is neither computed nor compared (a wrong `sha256Hash` is
/// ignored, a wrong `quickXorHash` is not).
#[test]
fn sha256_is_off_by_default_and_then_never_compared() {
    let target = crate::onedrive::Target::path("/a.bin");
    assert!(!crate::onedrive::UploadOptions::new(target).verify_sha256);
    let mut h = Scenario::onedrive(U + 9).sha256(false).build();
    let last = last_fragment(&mut h);
    let mut item = h.item_json();
    item["file"]["hashes"]["sha256Hash"] = json!("00".repeat(32));
    h.respond_json(last.id(), 201, item);
    let c = h.expect_finished().unwrap();
    assert!(c.verification.quick_xor);
    assert!(!c.verification.sha256);
}

#[test]
fn integrity_mismatches_are_typed_errors_never_silent_success() {
    let mut bad_qx = QuickXorHash::new();
    bad_qx.update(b"something else");
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|v| v["size"] = json!(12)), "size"),
        (
            Box::new(|v| {
                v.as_object_mut()
                    .unwrap()
                    .remove("size")
                    .map(|_| ())
                    .unwrap_or(())
            }),
            "size",
        ),
        (
            Box::new(move |v| v["file"]["hashes"]["quickXorHash"] = json!(bad_qx.base64())),
            "qx",
        ),
        (
            Box::new(|v| v["file"]["hashes"]["quickXorHash"] = json!("not base64!")),
            "qx",
        ),
        (
            Box::new(|v| v["file"]["hashes"]["sha256Hash"] = json!("00".repeat(32))),
            "sha",
        ),
    ];
    for (mutate, what) in cases {
        let mut h = Scenario::onedrive(U + 3).build();
        let last = last_fragment(&mut h);
        let mut item = h.item_json();
        mutate(&mut item);
        h.respond_json(last.id(), 200, item);
        let e = finished_err(&mut h);
        assert!(e.is_integrity(), "{what}: {e:?}");
        match what {
            "size" => assert!(matches!(e, UploadError::SizeMismatch { .. })),
            "qx" => assert!(matches!(
                e,
                UploadError::HashMismatch {
                    algorithm: HashAlgorithm::QuickXor,
                    ..
                }
            )),
            _ => assert!(matches!(
                e,
                UploadError::HashMismatch {
                    algorithm: HashAlgorithm::Sha256,
                    ..
                }
            )),
        }
    }
}

#[test]
fn missing_hashes_are_unknown_not_failures() {
    let mut h = Scenario::onedrive(100).build();
    let last = last_fragment(&mut h);
    h.respond_json(last.id(), 201, json!({"id": "X", "size": 100}));
    let c = h.expect_finished().unwrap();
    assert!(!c.verification.quick_xor && !c.verification.sha256);
}

#[test]
fn a_hex_quickxorhash_is_accepted() {
    let mut h = Scenario::onedrive(100).build();
    let last = last_fragment(&mut h);
    let mut q = QuickXorHash::new();
    q.update(&h.data);
    let hex = crate::encoding::hex_encode(&q.digest()).to_uppercase();
    h.respond_json(
        last.id(),
        201,
        json!({"id": "X", "size": 100, "file": {"hashes": {"quickXorHash": hex}}}),
    );
    assert!(h.expect_finished().unwrap().verification.quick_xor);
}

#[test]
fn a_completion_without_an_id_fetches_the_item() {
    // onedrive §11 rule 27: 201 with an uploadSession-shaped body.
    let mut h = Scenario::onedrive(U + 1).build();
    let last = last_fragment(&mut h);
    h.respond_json(
        last.id(),
        201,
        json!({"nextExpectedRanges": [format!("{U}-")]}),
    );
    let get = h.expect_send();
    assert_eq!(get.kind(), RequestKind::Metadata);
    assert_eq!(method(&get), "GET");
    assert_eq!(
        get.request().uri(),
        "https://graph.test/v1.0/me/drive/root:/docs/file.bin:"
    );
    assert_eq!(
        get.request().headers()["authorization"],
        "Bearer test-token"
    );
    // Not visible yet: retried.
    h.respond_json(get.id(), 404, json!({"error": {"code": "itemNotFound"}}));
    let get = h.expect_send();
    let item = h.item_json();
    h.respond_json(get.id(), 200, item);
    assert!(h.expect_finished().unwrap().verification.quick_xor);
}

#[test]
fn a_lost_final_answer_is_verified_against_the_item() {
    for failure in [
        Ok(500u16),
        Ok(504),
        Err(TransportFailure::Closed),
        Err(TransportFailure::TimedOut),
    ] {
        let mut h = Scenario::onedrive(2 * U).build();
        let last = last_fragment(&mut h);
        match failure {
            Ok(s) => h.respond(last.id(), raw(s, Bytes::new())),
            Err(f) => h.m.handle_failure(h.clock.now(), last.id(), f).unwrap(),
        }
        let q = h.expect_send();
        assert_eq!(q.kind(), RequestKind::QueryStatus);
        // The session was consumed by the completed upload (onedrive §3.3 step 4).
        h.respond_json(q.id(), 404, json!({"error": {"code": "itemNotFound"}}));
        let get = h.expect_send();
        assert_eq!(get.kind(), RequestKind::Metadata);
        let item = h.item_json();
        h.respond_json(get.id(), 200, item);
        let c = h.expect_finished().unwrap();
        assert_eq!(c.restarts, 0, "{failure:?}");
    }
}

#[test]
fn a_lost_final_answer_without_a_matching_item_restarts() {
    let mut h = Scenario::onedrive(2 * U).build();
    let last = last_fragment(&mut h);
    h.m.handle_failure(h.clock.now(), last.id(), TransportFailure::Closed)
        .unwrap();
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({}));
    let get = h.expect_send();
    // An older file with different content sits at the path.
    h.respond_json(
        get.id(),
        200,
        json!({"id": "OLD", "size": 2 * U, "file": {"hashes": {"quickXorHash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}}}),
    );
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
    assert_eq!(h.m.restarts(), 1);
    let put = {
        let body = h.session_body();
        h.respond_json(create.id(), 200, body);
        h.expect_send()
    };
    // Bytes are re-sent but not re-hashed: the final check still matches.
    let c = finish_normally(&mut h, put);
    assert!(c.verification.quick_xor);
}

#[test]
fn all_bytes_in_without_defer_commit_checks_the_item() {
    let mut h = Scenario::onedrive(U + 1).build();
    let last = last_fragment(&mut h);
    h.respond_json(last.id(), 202, json!({"nextExpectedRanges": []}));
    let get = h.expect_send();
    assert_eq!(get.kind(), RequestKind::Metadata);
    h.respond_json(get.id(), 404, json!({}));
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
}

#[test]
fn defer_commit_auto_posts_an_empty_commit() {
    let mut h = Scenario::onedrive(U + 9)
        .defer_commit(DeferCommit::Auto)
        .build();
    let create = h.expect_send();
    assert_eq!(body_json(&create)["deferCommit"], true);
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let mut req = h.expect_send();
    accepted(&mut h, &req, U);
    req = h.expect_send();
    h.respond_json(req.id(), 202, json!({"nextExpectedRanges": []}));
    let commit = h.expect_send();
    assert_eq!(commit.kind(), RequestKind::Commit);
    assert_eq!(method(&commit), "POST");
    assert_upload_url(&commit);
    assert_eq!(commit.request().headers()["content-length"], "0");
    assert!(commit.request().body().is_empty());
    let item = h.item_json();
    h.respond_json(commit.id(), 201, item);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn defer_commit_manual_waits_for_the_caller() {
    let mut h = Scenario::onedrive(U)
        .defer_commit(DeferCommit::Manual)
        .build();
    let put = h.to_uploading();
    assert_eq!(
        h.m.commit(h.clock.now()),
        Err(Misuse::NotNow("commit needs Phase::AwaitingCommit"))
    );
    h.respond_json(put.id(), 202, json!({"nextExpectedRanges": []}));
    expect_wait_none(&mut h);
    assert_eq!(h.m.phase(), Phase::AwaitingCommit);
    assert!(h.events.iter().any(|e| matches!(e, Event::ReadyToCommit)));
    h.m.commit(h.clock.now()).unwrap();
    let commit = h.expect_send();
    assert_eq!(commit.kind(), RequestKind::Commit);
    // The commit's answer is lost; the retry after a status query commits again.
    h.respond(commit.id(), raw(502, Bytes::new()));
    let q = h.expect_send();
    status(&mut h, &q, None);
    // Manual mode: the caller decides again.
    expect_wait_none(&mut h);
    h.m.commit(h.clock.now()).unwrap();
    let commit = h.expect_send();
    let item = h.item_json();
    h.respond_json(commit.id(), 200, item);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn a_commit_whose_answer_was_lost_is_verified_after_a_404() {
    let mut h = Scenario::onedrive(U)
        .defer_commit(DeferCommit::Auto)
        .build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 202, json!({"nextExpectedRanges": []}));
    let commit = h.expect_send();
    h.m.handle_failure(h.clock.now(), commit.id(), TransportFailure::Closed)
        .unwrap();
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({}));
    let get = h.expect_send();
    assert_eq!(get.kind(), RequestKind::Metadata);
    let item = h.item_json();
    h.respond_json(get.id(), 200, item);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn a_conflict_at_the_last_fragment_is_typed() {
    let mut h = Scenario::onedrive(U + 1).build();
    let last = last_fragment(&mut h);
    h.respond_json(
        last.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    match finished_err(&mut h) {
        UploadError::Conflict { codes } => assert!(codes.has("nameAlreadyExists")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn zero_byte_files_use_a_simple_put() {
    let mut h = Scenario::onedrive(0).build();
    let put = h.expect_send();
    assert_eq!(put.kind(), RequestKind::SimpleUpload);
    assert_eq!(method(&put), "PUT");
    assert_eq!(
        put.request().uri(),
        "https://graph.test/v1.0/me/drive/root:/docs/file.bin:/content?@microsoft.graph.conflictBehavior=fail"
    );
    assert_eq!(
        put.request().headers()["authorization"],
        "Bearer test-token"
    );
    assert_eq!(put.request().headers()["content-length"], "0");
    assert!(put.request().headers().get("content-range").is_none());
    h.respond_json(
        put.id(),
        201,
        json!({"id": "E", "size": 0, "file": {"hashes": {"quickXorHash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "sha256Hash": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}}}),
    );
    let c = h.expect_finished().unwrap();
    assert!(c.verification.quick_xor && c.verification.sha256);
}

#[test]
fn zero_byte_files_survive_an_ambiguous_first_attempt() {
    let mut h = Scenario::onedrive(0).build();
    let put = h.expect_send();
    h.respond(put.id(), raw(500, Bytes::new()));
    let put = h.expect_send();
    assert_eq!(put.kind(), RequestKind::SimpleUpload);
    // The first attempt had created the file; conflict behaviour `fail` now says 409.
    h.respond_json(
        put.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    let get = h.expect_send();
    assert_eq!(get.kind(), RequestKind::Metadata);
    h.respond_json(
        get.id(),
        200,
        json!({"id": "E", "size": 0, "file": {"hashes": {"quickXorHash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}}}),
    );
    assert!(h.expect_finished().is_ok());
}
