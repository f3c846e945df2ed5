//! Rules 66-72: injected faults, and the violation excuses that go with them.

use super::*;
use crate::{Fault, RouteKind, TransportFault};

fn plan(route: RouteKind, nth: u64, fault: Fault) -> FaultPlan {
    FaultPlan::none().script(Some(route), nth, fault)
}

#[test]
fn dropbox_rule_66_lock_contention_429() {
    let mut h = H::faults(plan(
        RouteKind::DropboxFinish,
        1,
        Fault::LockContention { retry_after: 3 },
    ));
    let sid = h.start_ok(json!({}), b"abc");
    let r = h.finish(&sid, 3, "/l.txt", b"def");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        body_json(&r),
        json!({"error_summary": "too_many_write_operations/.", "error": {"reason": {".tag": "too_many_write_operations"}}})
    );
    assert!(body_json(&r)["error"].get("retry_after").is_none());
    assert_eq!(
        r.extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap()
            .as_bytes(),
        b"too_many_write_operations/."
    );
    // No effect: the finish body was not appended.
    assert_eq!(h.info(&sid).unwrap().held, 3);
    assert!(h.file("/l.txt").is_none());
    h.finish_ok(&sid, 3, "/l.txt", b"def");
    assert_file(&h, "/l.txt", b"abcdef");
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_66_lock_contention_ignored_on_appends() {
    let mut h = H::faults(plan(
        RouteKind::DropboxAppend,
        1,
        Fault::LockContention { retry_after: 3 },
    ));
    let sid = h.seq();
    h.append_ok(&sid, 0, false, b"abc");
}

#[test]
fn dropbox_rule_67_rate_limit_json() {
    let mut h = H::faults(plan(
        RouteKind::DropboxAppend,
        1,
        Fault::Throttle {
            retry_after: Some(15),
            plain_text: false,
        },
    ));
    let sid = h.seq();
    let r = h.append(&sid, 0, false, b"abc");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "15");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = body_json(&r);
    assert_eq!(
        v["error"],
        json!({"reason": {".tag": "too_many_requests"}, "retry_after": 15})
    );
    assert!(
        v["error_summary"]
            .as_str()
            .unwrap()
            .starts_with("too_many_requests/")
    );
    assert_eq!(h.info(&sid).unwrap().held, 0);
    h.append_ok(&sid, 0, false, b"abc");
}

#[test]
fn dropbox_rule_67_rate_limit_plain_text_and_no_retry_after() {
    let mut h = H::faults(
        FaultPlan::none()
            .script(
                Some(RouteKind::DropboxAppend),
                1,
                Fault::Throttle {
                    retry_after: Some(300),
                    plain_text: true,
                },
            )
            .script(
                Some(RouteKind::DropboxAppend),
                2,
                Fault::Throttle {
                    retry_after: None,
                    plain_text: false,
                },
            ),
    );
    let sid = h.seq();
    let r = h.append(&sid, 0, false, b"abc");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["retry-after"], "300");
    assert_eq!(body_text(&r), "too_many_requests");
    let r = h.append(&sid, 0, false, b"abc");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(
        body_json(&r)["error"],
        json!({"reason": {".tag": "too_many_requests"}})
    );
    assert_eq!(h.info(&sid).unwrap().held, 0);
    h.append_ok(&sid, 0, false, b"abc");
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_68_too_many_write_operations_from_finish() {
    let mut h = H::faults(plan(RouteKind::DropboxFinish, 1, Fault::WriteContention));
    let sid = h.start_ok(json!({}), b"abc");
    let r = h.finish(&sid, 3, "/w.txt", b"");
    let e = assert_409(&r, "too_many_write_operations");
    assert_eq!(e, json!({".tag": "too_many_write_operations"}));
    assert!(h.file("/w.txt").is_none());
    h.finish_ok(&sid, 3, "/w.txt", b"");
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_68_too_many_write_operations_per_batch_entry() {
    let mut h = H::faults(plan(RouteKind::DropboxBatch, 1, Fault::WriteContention));
    let ids: Vec<String> = (0..8)
        .map(|i| h.start_ok(json!({"close": true}), format!("file{i}").as_bytes()))
        .collect();
    let entries: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"cursor": {"session_id": s, "offset": 5}, "commit": {"path": format!("/e{i}")}}))
        .collect();
    let body = json!({ "entries": entries }).to_string();
    let r = h.send(rpc("files/upload_session/finish_batch_v2", &body));
    assert_eq!(r.status(), 200);
    let v = body_json(&r);
    let mut failed = Vec::new();
    for (i, e) in v["entries"].as_array().unwrap().iter().enumerate() {
        if e[".tag"] == "failure" {
            assert_eq!(e["failure"], json!({".tag": "too_many_write_operations"}));
            assert!(
                h.info(&ids[i]).is_some(),
                "failed entry's session stays valid"
            );
            failed.push(i);
        } else {
            assert!(h.file(&format!("/e{i}")).is_some());
        }
    }
    assert!(!failed.is_empty());
    // Retrying the failed entries succeeds.
    let retry: Vec<Value> = failed.iter().map(|&i| entries[i].clone()).collect();
    let r = h.send(rpc(
        "files/upload_session/finish_batch_v2",
        &json!({ "entries": retry }).to_string(),
    ));
    for e in body_json(&r)["entries"].as_array().unwrap() {
        assert_eq!(e[".tag"], "success");
    }
    assert_eq!(h.emu.files().len(), 8);
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_69_5xx_before_applying() {
    for (fault, status, ct) in [
        (
            Fault::ErrorBefore { status: 500 },
            500,
            Some("application/grpc"),
        ),
        (Fault::ErrorBefore { status: 504 }, 504, None),
        (
            Fault::Unavailable {
                retry_after: Some(2),
            },
            503,
            None,
        ),
    ] {
        let mut h = H::faults(plan(RouteKind::DropboxAppend, 1, fault));
        let sid = h.seq();
        let r = h.append(&sid, 0, false, b"abc");
        assert_eq!(r.status(), status);
        assert!(r.body().is_empty());
        assert_eq!(
            r.headers().get("content-type").map(|v| v.to_str().unwrap()),
            ct
        );
        assert_eq!(h.info(&sid).unwrap().held, 0, "not applied");
        h.append_ok(&sid, 0, false, b"abc");
        assert_eq!(h.violations(), 0);
    }
}

#[test]
fn dropbox_rule_69_5xx_after_applying_append() {
    let mut h = H::faults(plan(
        RouteKind::DropboxAppend,
        1,
        Fault::ErrorAfter { status: 500 },
    ));
    let sid = h.seq();
    let r = h.append(&sid, 0, false, b"abc");
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], "application/grpc");
    assert!(r.body().is_empty());
    assert_eq!(h.info(&sid).unwrap().held, 3, "applied");
    // The blind retry meets incorrect_offset, which is not counted.
    let r = h.append(&sid, 0, false, b"abc");
    let e = assert_409(&r, "incorrect_offset");
    assert_eq!(e["correct_offset"], 3);
    assert_eq!(h.violations(), 0);
    // Once told, the same mistake counts.
    let r = h.append(&sid, 0, false, b"abc");
    assert_409(&r, "incorrect_offset");
    assert_eq!(h.v(Violation::WrongOffset), 1);
}

#[test]
fn dropbox_rule_69_5xx_after_applying_finish() {
    let mut h = H::faults(plan(
        RouteKind::DropboxFinish,
        1,
        Fault::ErrorAfter { status: 504 },
    ));
    let sid = h.start_ok(json!({}), b"abc");
    let r = h.finish(&sid, 3, "/after.txt", b"def");
    assert_eq!(r.status(), 504);
    assert!(r.body().is_empty());
    assert_file(&h, "/after.txt", b"abcdef");
    // The retry meets not_found (not counted); get_metadata confirms the commit.
    let r = h.finish(&sid, 3, "/after.txt", b"def");
    assert_409(&r, "lookup_failed/not_found");
    assert_eq!(h.violations(), 0);
    let r = h.send(rpc("files/get_metadata", r#"{"path":"/after.txt"}"#));
    assert_eq!(r.status(), 200);
    let m = body_json(&r);
    assert_eq!(m[".tag"], "file");
    assert_eq!(m["size"], 6);
    assert_eq!(m["content_hash"], crate::hash::content_hash_hex(b"abcdef"));
    // Using the session again after being told is counted.
    let r = h.finish(&sid, 6, "/after.txt", b"");
    assert_409(&r, "lookup_failed/not_found");
    assert_eq!(h.v(Violation::SessionReused), 1);
}

#[test]
fn dropbox_rule_69_lost_response_closing_append_then_closed_not_counted() {
    let mut h = H::faults(plan(RouteKind::DropboxAppend, 2, Fault::LostResponse));
    let sid = h.seq();
    h.append_ok(&sid, 0, false, b"abc");
    let r = h.append(&sid, 3, true, b"def");
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    // The client retries the closing append whose answer was lost.
    let r = h.append(&sid, 3, true, b"def");
    assert_409(&r, "closed");
    assert_eq!(h.violations(), 0);
    h.finish_ok(&sid, 6, "/lost.txt", b"");
    assert_file(&h, "/lost.txt", b"abcdef");
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_69_lost_concurrent_append_retry_is_idempotent() {
    let mut h = H::faults(plan(RouteKind::DropboxAppend, 1, Fault::LostResponse));
    let src = data(BLOCK + 10, 69);
    let sid = h.conc();
    let r = h.append(&sid, 0, false, &src[..BLOCK]);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    h.append_ok(&sid, 0, false, &src[..BLOCK]);
    h.append_ok(&sid, BLOCK as u64, true, &src[BLOCK..]);
    h.finish_ok(&sid, src.len() as u64, "/idem.bin", b"");
    assert_file(&h, "/idem.bin", &src);
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_70_reset_mid_body_stores_nothing() {
    for route in [
        RouteKind::DropboxStart,
        RouteKind::DropboxAppend,
        RouteKind::DropboxFinish,
    ] {
        let mut h = H::faults(plan(route, 1, Fault::Reset { keep_prefix: true }));
        let src = data(5000, 70);
        let sid = if route == RouteKind::DropboxStart {
            let r = h.start(json!({}), &src);
            assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
            assert_eq!(h.emu.dropbox_mut().session_count(), 0);
            h.seq()
        } else {
            h.seq()
        };
        if route == RouteKind::DropboxAppend {
            let r = h.append(&sid, 0, false, &src);
            assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
            assert_eq!(h.info(&sid).unwrap().held, 0, "no prefix kept");
        }
        if route == RouteKind::DropboxFinish {
            let r = h.finish(&sid, 0, "/r.bin", &src);
            assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
            assert_eq!(h.info(&sid).unwrap().held, 0);
            assert!(h.file("/r.bin").is_none());
        }
        h.finish_ok(&sid, 0, "/r.bin", &src);
        assert_file(&h, "/r.bin", &src);
        assert_eq!(h.violations(), 0);
    }
}

#[test]
fn dropbox_rule_70_reset_of_concurrent_append() {
    let mut h = H::faults(plan(
        RouteKind::DropboxAppend,
        1,
        Fault::Reset { keep_prefix: false },
    ));
    let src = data(BLOCK, 7);
    let sid = h.conc();
    let r = h.append(&sid, 0, false, &src);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    let i = h.info(&sid).unwrap();
    assert_eq!((i.held, i.pending_pieces), (0, 0));
    h.append_ok(&sid, 0, true, &src);
    h.finish_ok(&sid, BLOCK as u64, "/rc", b"");
    assert_file(&h, "/rc", &src);
}

#[test]
fn dropbox_rule_71_slow_finish() {
    let mut h = H::faults(plan(
        RouteKind::DropboxFinish,
        1,
        Fault::SlowResponse { ms: 2500 },
    ));
    let sid = h.start_ok(json!({}), b"slow");
    let r = h.finish(&sid, 4, "/slow.txt", b"");
    assert_eq!(r.status(), 200);
    assert_eq!(
        TransportFault::of(&r),
        Some(TransportFault::Delay(Duration::from_millis(2500)))
    );
    assert_file(&h, "/slow.txt", b"slow");
}

#[test]
fn dropbox_rule_72_expired_token_fault() {
    let mut h = H::faults(plan(RouteKind::DropboxAppend, 2, Fault::ExpireToken));
    let sid = h.seq();
    h.append_ok(&sid, 0, false, b"abc");
    let r = h.append(&sid, 3, false, b"def");
    assert_eq!(r.status(), 401);
    assert_eq!(
        body_json(&r),
        json!({"error_summary": "expired_access_token/", "error": {".tag": "expired_access_token"}})
    );
    assert_eq!(h.info(&sid).unwrap().held, 3);
    // Every call with the old token now fails the same way.
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":1}"#,
    ));
    assert_eq!(r.status(), 401);
    assert_eq!(h.violations(), 0);
    // After a refresh the upload goes on.
    let fresh = h.emu.issue_token();
    let mut r = up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": sid, "offset": 3}})),
        b"def",
    );
    r.headers_mut()
        .insert("authorization", format!("Bearer {fresh}").parse().unwrap());
    assert_ok_null(&h.send(r));
    assert_eq!(h.info(&sid).unwrap().held, 6);
    assert_eq!(h.violations(), 0);
}

#[test]
fn random_faults_on_a_well_behaved_sequence_never_count_violations() {
    // A simple correct client (trusts correct_offset, retries 5xx/429/resets, refreshes
    // tokens, verifies a lost finish with get_metadata) under a seeded fault storm.
    for seed in 0..6u64 {
        let rates = crate::FaultRates {
            throttle: 0.05,
            unavailable: 0.05,
            error_before: 0.05,
            error_after: 0.08,
            lost_response: 0.08,
            reset_discard: 0.05,
            slow_finish: 0.05,
            lock_contention: 0.05,
            ..Default::default()
        };
        let mut h = H::faults(FaultPlan {
            seed,
            rates,
            scripted: vec![],
        });
        let src = data(50_000 + seed as usize * 777, seed as u8);
        let path = format!("/storm/{seed}.bin");
        super::uploads::robust_sequential_upload(&mut h, &src, &path, 4096);
        assert_file(&h, &path, &src);
        assert_eq!(h.violations(), 0, "seed {seed}: {:?}", h.emu.violations());
    }
}

/// A batch entry's `not_found` whose answer is itself lost does not tell the client the
/// session is gone: the next retry is excused too; only a retry after a delivered answer
/// counts (rule 57, with the rule-69 lost answers).
#[test]
fn dropbox_rule_57_lost_not_found_does_not_make_the_next_retry_a_violation() {
    let plan = FaultPlan::none()
        .script(Some(RouteKind::DropboxBatch), 1, Fault::LostResponse)
        .script(Some(RouteKind::DropboxBatch), 2, Fault::LostResponse);
    let mut h = H::faults(plan);
    let sid = h.start_ok(json!({"close": true}), b"abc");
    let entry =
        json!({"cursor": {"session_id": sid, "offset": 3}, "commit": {"path": "/lost.txt"}});
    let batch = |h: &mut H| {
        h.send(rpc(
            "files/upload_session/finish_batch_v2",
            &json!({ "entries": [entry.clone()] }).to_string(),
        ))
    };
    let r = batch(&mut h);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    assert!(
        h.file("/lost.txt").is_some(),
        "the first commit was applied"
    );
    // Retry 1: the entry fails with `not_found`, but that answer is lost too.
    let r = batch(&mut h);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    // Retry 2: the client still could not know; not counted, and now it is told.
    let r = batch(&mut h);
    assert_eq!(TransportFault::of(&r), None);
    assert_eq!(body_json(&r)["entries"][0][".tag"], "failure");
    assert_eq!(h.v(Violation::SessionReused), 0);
    // Retry 3, after a delivered `not_found`, is a violation.
    let _ = batch(&mut h);
    assert_eq!(h.v(Violation::SessionReused), 1);
}
