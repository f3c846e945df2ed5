//! Checkpoints and resuming (onedrive.md §3.3).

use super::*;
use crate::onedrive::{Checkpoint, OneDriveConfig, OneDriveUpload, Phase, limits::FRAGMENT_UNIT};
use crate::testing::{Harness, Scenario, VirtualClock, start_wall};
use crate::{AccessToken, Output, RequestKind, ResumeError, SourceFingerprint, UploadMachine};

const U: u64 = FRAGMENT_UNIT;

/// Runs a 5-unit upload until `acked` bytes are acknowledged, then "crashes" and
/// returns the last checkpoint, serialised and parsed back.
fn crash_after(acked: u64) -> (Harness, Checkpoint) {
    let mut h = Scenario::onedrive(5 * U).build();
    let req = h.to_offset(acked);
    let _ = req; // the in-flight fragment dies with the process
    let cp = h.last_checkpoint().expect("a checkpoint");
    assert_eq!(cp.acknowledged, acked);
    let json = cp.to_json().unwrap();
    (h, Checkpoint::from_json(&json).unwrap())
}

fn resumed(old: &Harness, cp: Checkpoint) -> Harness {
    let fp = SourceFingerprint::new(cp.size, "");
    let cfg = OneDriveConfig::with_base("https://graph.test/v1.0");
    let m = OneDriveUpload::resume(cp, &fp, cfg, Some(AccessToken::new("t2").unwrap())).unwrap();
    let clock = VirtualClock::new(start_wall());
    let mut h = Harness {
        m,
        clock,
        data: old.data.clone(),
        events: Vec::new(),
        reads: Vec::new(),
    };
    let (now, wall) = (h.clock.now(), h.clock.wall());
    h.m.handle_wall_clock(now, wall);
    h
}

/// Serves data while recording every range asked for.
fn collect_until_send(h: &mut Harness, asked: &mut Vec<(u64, u64)>) -> OutgoingRequest {
    loop {
        match h.m.poll_output(h.clock.now()) {
            Output::NeedData { offset, len } => {
                asked.push((offset, len));
                let d = h.data.slice(offset as usize..(offset + len) as usize);
                h.m.provide_data(offset, d).unwrap();
            }
            Output::Send(r) => return r,
            Output::Event(e) => h.events.push(e),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn resume_queries_then_continues_without_resending_or_rehashing() {
    let (old, cp) = crash_after(2 * U);
    assert_eq!(cp.hashed, 2 * U);
    let mut h = resumed(&old, cp);
    let mut asked = Vec::new();
    let q = collect_until_send(&mut h, &mut asked);
    assert_eq!(q.kind(), RequestKind::QueryStatus);
    assert_upload_url(&q);
    status(&mut h, &q, Some(2 * U));
    let put = collect_until_send(&mut h, &mut asked);
    assert_eq!(fragment_bounds(&put), (2 * U, 3 * U));
    assert!(asked.iter().all(|(o, _)| *o >= 2 * U), "{asked:?}");
    let c = finish_normally(&mut h, put);
    assert!(c.verification.quick_xor && c.verification.sha256);
}

#[test]
fn resume_behind_the_server_hashes_the_missing_bytes_without_sending_them() {
    // The fragment after the checkpoint landed before the crash.
    let (old, cp) = crash_after(U);
    let mut h = resumed(&old, cp);
    let mut asked = Vec::new();
    let q = collect_until_send(&mut h, &mut asked);
    status(&mut h, &q, Some(3 * U + 100));
    let put = collect_until_send(&mut h, &mut asked);
    assert_eq!(fragment_bounds(&put), (3 * U + 100, 4 * U));
    // [U, 3U+100) was read for hashing only (in at most fragment-sized pieces), then the
    // fragment itself.
    assert_eq!(
        asked,
        [(U, U), (2 * U, U), (3 * U, 100), (3 * U + 100, U - 100)]
    );
    let c = finish_normally(&mut h, put);
    assert!(c.verification.quick_xor);
}

#[test]
fn resume_of_a_finished_session_hashes_everything_then_verifies() {
    let (old, cp) = crash_after(U);
    let mut h = resumed(&old, cp);
    let q = h.expect_send();
    // The session is gone: the upload completed before the crash.
    h.respond_json(q.id(), 404, json!({}));
    let get = h.expect_send();
    assert_eq!(get.kind(), RequestKind::Metadata);
    assert_eq!(get.request().headers()["authorization"], "Bearer t2");
    let item = h.item_json();
    h.respond_json(get.id(), 200, item);
    let c = h.expect_finished().unwrap();
    assert!(c.verification.quick_xor && c.verification.sha256);
}

#[test]
fn resume_refuses_a_changed_source_or_an_inconsistent_checkpoint() {
    let (_, cp) = crash_after(U);
    let cfg = OneDriveConfig::default;
    let err =
        |cp: Checkpoint, fp: SourceFingerprint| OneDriveUpload::resume(cp, &fp, cfg(), None).err();
    assert_eq!(
        err(cp.clone(), SourceFingerprint::new(5 * U, "modified")),
        Some(ResumeError::SourceChanged)
    );
    assert_eq!(
        err(cp.clone(), SourceFingerprint::new(5 * U + 1, "")),
        Some(ResumeError::SourceChanged)
    );
    let fp = SourceFingerprint::new(5 * U, "");
    let mut bad = cp.clone();
    bad.version = 99;
    assert_eq!(
        err(bad, fp.clone()),
        Some(ResumeError::UnsupportedVersion(99))
    );
    let mut bad = cp.clone();
    bad.hashed += 1;
    assert!(matches!(
        err(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut bad = cp.clone();
    bad.acknowledged = 6 * U;
    assert!(matches!(
        err(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut bad = cp.clone();
    bad.upload_url = crate::SecretString::new("not a url");
    assert!(matches!(
        err(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    let mut bad = cp.clone();
    bad.sha256 = None;
    assert!(matches!(
        err(bad, fp.clone()),
        Some(ResumeError::Inconsistent(_))
    ));
    // A JSON checkpoint with an invalid fragment size does not even parse.
    let text = cp
        .to_json()
        .unwrap()
        .replace("\"fragment_size\":327680", "\"fragment_size\":1000");
    assert!(Checkpoint::from_json(&text).is_err());
    assert!(OneDriveUpload::resume(cp, &fp, cfg(), None).is_ok());
}

#[test]
fn checkpoint_debug_and_machine_debug_redact_secrets() {
    let (h, cp) = crash_after(U);
    let text = format!("{cp:?} {:?} {:?}", h.m, h.events);
    assert!(!text.contains("tempauth"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains("test-token"), "{text}");
    // The JSON form does carry the URL: that is its purpose.
    assert!(cp.to_json().unwrap().contains("tempauth=SECRET"));
}

#[test]
fn a_resumed_upload_without_a_token_only_asks_for_one_when_needed() {
    let (old, cp) = crash_after(U);
    let fp = SourceFingerprint::new(cp.size, "");
    let m = OneDriveUpload::resume(cp, &fp, OneDriveConfig::default(), None).unwrap();
    let mut h = Harness {
        m,
        clock: VirtualClock::new(start_wall()),
        data: old.data.clone(),
        events: Vec::new(),
        reads: Vec::new(),
    };
    // The status query needs no token.
    let q = h.expect_send();
    assert_eq!(q.kind(), RequestKind::QueryStatus);
    assert_eq!(h.m.phase(), Phase::Querying);
}
