//! Checkpoints and resume in the same server session.

use super::*;
use crate::dropbox::{Checkpoint, DropboxConfig, DropboxUpload};
use crate::testing::dropbox::{API, CONTENT, DropboxHarness, DropboxScenario, offset, route};
use crate::testing::pattern;
use crate::{AccessToken, Event, ResumeError, SourceFingerprint};
use serde_json::json;

const SIZE: u64 = 30 * M + 5;

fn resume(cp: Checkpoint) -> DropboxHarness {
    let cp = Checkpoint::from_json(&cp.to_json().unwrap()).unwrap();
    let m = DropboxUpload::resume(
        cp,
        &SourceFingerprint::new(SIZE, ""),
        DropboxConfig::with_hosts(CONTENT, API),
        Some(AccessToken::new("t").unwrap()),
    )
    .unwrap();
    DropboxHarness::with_machine(m, pattern(SIZE))
}

#[test]
fn a_sequential_checkpoint_continues_at_the_acknowledged_offset() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let _a2 = h.expect_send(); // in flight when the process dies
    let cp = h.last_checkpoint().unwrap();
    assert_eq!(cp.acknowledged, 16 * M);
    assert!(cp.hash.prefix_len() >= 16 * M);
    let mut r = resume(cp);
    let a2 = r.expect_send();
    assert_eq!((route(&a2).as_str(), offset(&a2)), ("append_v2", 16 * M));
    assert_eq!(arg(&a2)["cursor"]["session_id"], "sid-1");
    check_wire(&a2);
    r.ok_null(a2.id());
    let fin = r.expect_send();
    let meta = r.metadata();
    r.ok(fin.id(), meta);
    assert!(r.expect_finished().is_ok());
    // Nothing before 16 MiB was read again.
    assert!(r.reads.iter().all(|(o, _)| *o >= 16 * M), "{:?}", r.reads);
}

#[test]
fn a_resumed_session_that_is_further_along_hashes_the_gap_then_continues() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let cp = h.last_checkpoint().unwrap();
    let mut r = resume(cp);
    let a2 = r.expect_send();
    // The earlier process's append [16, 24) landed before it died.
    r.conflict(
        a2.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 24 * M}),
    );
    let fin = r.expect_send();
    assert_eq!((route(&fin).as_str(), offset(&fin)), ("finish", 24 * M));
    check_wire(&fin);
    let meta = r.metadata();
    r.ok(fin.id(), meta);
    match r.expect_finished().unwrap() {
        crate::dropbox::Completed::Committed(c) => assert!(c.hash_verified),
        other => panic!("{other:?}"),
    }
    assert!(r.saw(|e| matches!(e, Event::Resynced { .. })));
}

/// Found by the `dropbox_machine` fuzz target: right after a forward resync the machine
/// knows the server holds bytes it has not hashed yet (it reads the gap next). A
/// checkpoint taken then must still resume (it may claim less than the server holds,
/// never more than was hashed: dropbox.md §11, resync).
#[test]
fn a_checkpoint_taken_before_the_gap_is_hashed_still_resumes() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let cp = h.last_checkpoint().unwrap();
    let mut r = resume(cp);
    let a2 = r.expect_send();
    r.conflict(
        a2.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 24 * M}),
    );
    let fin = r.expect_send();
    assert_eq!(offset(&fin), 24 * M);
    // Every checkpoint emitted so far, including the one right after the resync.
    let cps: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert!(!cps.is_empty());
    for cp in cps {
        let json = cp.to_json().unwrap();
        let back = crate::dropbox::Checkpoint::from_json(&json).unwrap();
        let _resumed = resume(back);
    }
}

#[test]
fn a_concurrent_checkpoint_resends_only_unfinished_chunks() {
    let mut h = DropboxScenario::concurrent(SIZE, 3).build();
    let start = h.expect_send();
    h.session(start.id(), "c1");
    let first = h.expect_sends();
    assert_eq!(first.len(), 3);
    h.ok_null(first[1].id());
    let _more = h.expect_sends();
    let cp = h.last_checkpoint().unwrap();
    assert_eq!((cp.acknowledged, cp.completed_blocks.clone()), (0, vec![1]));
    let mut r = resume(cp);
    let mut sent = r.expect_sends();
    let mut chunks = vec![];
    while let Some(req) = sent.pop() {
        check_wire(&req);
        if route(&req) == "finish" {
            let meta = r.metadata();
            r.ok(req.id(), meta);
            break;
        }
        chunks.push(offset(&req) / B);
        r.ok_null(req.id());
        while let crate::testing::dropbox::DbxNext::Send(n) = r.run() {
            sent.push(n);
        }
    }
    chunks.sort();
    assert_eq!(chunks, [0, 2, 3, 4, 5, 6, 7]);
    assert!(r.expect_finished().is_ok());
    assert!(r.reads.iter().all(|(o, _)| *o != B), "chunk 1 not re-read");
}

#[test]
fn bad_checkpoints_are_refused() {
    let mut h = DropboxScenario::concurrent(SIZE, 2).build();
    let start = h.expect_send();
    h.session(start.id(), "c1");
    let first = h.expect_sends();
    h.ok_null(first[1].id());
    let cp = h.last_checkpoint().unwrap();
    let cfg = || DropboxConfig::with_hosts(CONTENT, API);
    let try_resume =
        |cp: Checkpoint, fp: SourceFingerprint| DropboxUpload::resume(cp, &fp, cfg(), None).err();
    let fp = SourceFingerprint::new(SIZE, "");
    assert_eq!(
        try_resume(cp.clone(), SourceFingerprint::new(SIZE, "other")),
        Some(ResumeError::SourceChanged)
    );
    let mut bad = cp.clone();
    bad.version = 99;
    assert_eq!(
        try_resume(bad, fp.clone()),
        Some(ResumeError::UnsupportedVersion(99))
    );
    let mut bad = cp.clone();
    bad.completed_blocks = vec![1, 3];
    assert!(
        matches!(
            try_resume(bad, fp.clone()),
            Some(ResumeError::Inconsistent(_))
        ),
        "chunk 3 was never hashed"
    );
    let mut bad = cp.clone();
    bad.completed_blocks = vec![0];
    assert!(matches!(
        try_resume(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut bad = cp.clone();
    bad.acknowledged = 5;
    assert!(matches!(
        try_resume(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut bad = cp.clone();
    bad.options.chunk_size = 3;
    assert!(matches!(
        try_resume(bad, fp.clone()),
        Some(ResumeError::Options(_))
    ));
    assert!(try_resume(cp, fp).is_none());
    assert!(Checkpoint::from_json("{\"version\": 1}").is_err());
}

#[test]
fn completed_blocks_come_in_whole_chunks() {
    // 8 MiB chunks = 2 blocks each.
    let mut h = DropboxScenario::concurrent(SIZE, 2).chunk(2 * B).build();
    let start = h.expect_send();
    h.session(start.id(), "c1");
    let first = h.expect_sends();
    h.ok_null(first[1].id());
    let _ = h.expect_sends();
    let cp = h.last_checkpoint().unwrap();
    assert_eq!(
        (cp.acknowledged, cp.completed_blocks.clone()),
        (0, vec![2, 3])
    );
    let fp = SourceFingerprint::new(SIZE, "");
    let cfg = || DropboxConfig::with_hosts(CONTENT, API);
    assert!(DropboxUpload::resume(cp.clone(), &fp, cfg(), None).is_ok());
    let mut half = cp.clone();
    half.completed_blocks = vec![2];
    assert!(matches!(
        DropboxUpload::resume(half, &fp, cfg(), None).err(),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut shifted = cp;
    shifted.completed_blocks = vec![3, 4];
    assert!(matches!(
        DropboxUpload::resume(shifted, &fp, cfg(), None).err(),
        Some(ResumeError::Inconsistent(_))
    ));
}

#[test]
fn a_resumed_session_consumed_by_an_earlier_finish_is_looked_up() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    h.ok_null(a1.id());
    let cp = h.last_checkpoint().unwrap();
    // The earlier process went on, committed, and died before recording it.
    let mut r = resume(cp.clone());
    let a2 = r.expect_send();
    r.conflict(a2.id(), json!({".tag": "not_found"}));
    let look = r.expect_send();
    assert_eq!(route(&look), "get_metadata");
    let meta = r.metadata();
    r.ok(look.id(), meta);
    let done = r.expect_finished().unwrap();
    assert_eq!(done.restarts(), 0);
    // Hashing of the bytes this process never read happened before verification.
    assert!(r.reads.iter().any(|(o, _)| *o == 16 * M));
    // Not there: a new session.
    let mut r = resume(cp);
    let a2 = r.expect_send();
    r.conflict(a2.id(), json!({".tag": "not_found"}));
    let look = r.expect_send();
    r.conflict(
        look.id(),
        json!({".tag": "path", "path": {".tag": "not_found"}}),
    );
    assert_eq!(route(&r.expect_send()), "start");
    assert_eq!(r.m.restarts(), 1);
}
