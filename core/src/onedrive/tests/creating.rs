//! Phase `Creating`: createUploadSession and its answers (onedrive.md §1, §10).

use super::*;
use crate::onedrive::{ConflictBehavior, DeferCommit, Drive, Phase, Target};
use crate::testing::{Scenario, raw};
use crate::{AccessToken, RequestKind, UploadMachine};
use bytes::Bytes;
use std::time::Duration;

#[test]
fn create_request_has_bearer_json_body_and_exact_url() {
    let mut h = Scenario::onedrive(1000).build();
    let req = h.expect_send();
    assert_eq!(req.kind(), RequestKind::CreateSession);
    assert_eq!(method(&req), "POST");
    assert_eq!(
        req.request().uri(),
        "https://graph.test/v1.0/me/drive/root:/docs/file.bin:/createUploadSession"
    );
    let hd = req.request().headers();
    assert_eq!(hd["authorization"], "Bearer test-token");
    assert_eq!(hd["content-type"], "application/json");
    assert_eq!(
        hd["content-length"],
        req.request().body().len().to_string().as_str()
    );
    assert_eq!(
        body_json(&req),
        json!({"item": {"@microsoft.graph.conflictBehavior": "fail", "name": "file.bin", "fileSize": 1000}})
    );
    assert_eq!(h.m.phase(), Phase::Creating);
    expect_wait_none(&mut h);
}

#[test]
fn every_target_form_builds_its_documented_url() {
    let cases = [
        (
            Target::drive_path("D1", "/a/b c.txt"),
            "/drives/D1/root:/a/b%20c.txt:/createUploadSession",
            Some("b c.txt"),
        ),
        (
            Target::child(Drive::Me, "PARENT", "x.bin"),
            "/me/drive/items/PARENT:/x.bin:/createUploadSession",
            Some("x.bin"),
        ),
        (
            Target::child(Drive::Id("D2".into()), "P", "é.bin"),
            "/drives/D2/items/P:/%C3%A9.bin:/createUploadSession",
            Some("é.bin"),
        ),
        (
            Target::item(Drive::Id("D3".into()), "ITEM"),
            "/drives/D3/items/ITEM/createUploadSession",
            None,
        ),
        (
            Target::item(Drive::Site("site,1".into()), "ITEM"),
            "/sites/site%2C1/drive/items/ITEM/createUploadSession",
            None,
        ),
        (
            Target::path("/p.bin").in_drive(Drive::User("u@x".into())),
            "/users/u%40x/drive/root:/p.bin:/createUploadSession",
            Some("p.bin"),
        ),
        (
            Target::item(Drive::Group("G".into()), "I"),
            "/groups/G/drive/items/I/createUploadSession",
            None,
        ),
    ];
    for (target, path, name) in cases {
        let mut h = Scenario::onedrive(10).target(target.clone()).build();
        let req = h.expect_send();
        assert_eq!(
            req.request().uri().to_string(),
            format!("https://graph.test/v1.0{path}"),
            "{target:?}"
        );
        let body = body_json(&req);
        assert_eq!(body["item"].get("name").and_then(Value::as_str), name);
        if target.is_item() {
            assert_eq!(body["item"]["@microsoft.graph.conflictBehavior"], "replace");
        }
    }
}

#[test]
fn options_reach_the_wire() {
    let b = crate::onedrive::OneDriveUpload::builder(Target::path("/a.bin"), 5)
        .conflict(ConflictBehavior::Rename)
        .description("desc")
        .if_match("\"etag,1\"")
        .defer_commit(DeferCommit::Auto)
        .declare_file_size(false)
        .access_token(AccessToken::new("t").unwrap())
        .config(crate::onedrive::OneDriveConfig::with_base(
            "http://emu/onedrive/v1.0/",
        ));
    let mut m = b.build().unwrap();
    let now = std::time::Instant::now();
    let crate::Output::Send(req) = m.poll_output(now) else {
        panic!("expected the create")
    };
    assert_eq!(
        req.request().uri(),
        "http://emu/onedrive/v1.0/me/drive/root:/a.bin:/createUploadSession"
    );
    assert_eq!(req.request().headers()["if-match"], "\"etag,1\"");
    assert_eq!(
        body_json(&req),
        json!({"item": {"@microsoft.graph.conflictBehavior": "rename", "name": "a.bin", "description": "desc"}, "deferCommit": true})
    );
}

#[test]
fn no_token_asks_for_one_first() {
    let mut h = Scenario::onedrive(10).no_token().build();
    expect_wait_none(&mut h);
    assert_eq!(h.m.phase(), Phase::NeedToken);
    assert!(matches!(h.events.as_slice(), [Event::TokenNeeded]));
    h.m.set_access_token(AccessToken::new("fresh").unwrap());
    let req = h.expect_send();
    assert_eq!(req.request().headers()["authorization"], "Bearer fresh");
}

#[test]
fn unauthorized_create_emits_token_needed_and_never_reuses_the_token() {
    let mut h = Scenario::onedrive(10).build();
    let req = h.expect_send();
    h.respond_json(
        req.id(),
        401,
        json!({"error": {"code": "unauthenticated", "message": "expired"}}),
    );
    expect_wait_none(&mut h);
    assert_eq!(h.m.phase(), Phase::NeedToken);
    assert_eq!(count_events(&h, |e| matches!(e, Event::TokenNeeded)), 1);
    h.m.set_access_token(AccessToken::new("second").unwrap());
    let req = h.expect_send();
    assert_eq!(req.kind(), RequestKind::CreateSession);
    assert_eq!(req.request().headers()["authorization"], "Bearer second");
}

#[test]
fn conflict_precondition_and_quota_are_fatal_and_typed() {
    for (status, code, want) in [
        (
            409,
            "nameAlreadyExists",
            UploadError::Conflict {
                codes: crate::ServiceCodes(vec!["nameAlreadyExists".into()]),
            },
        ),
        (412, "preconditionFailed", UploadError::PreconditionFailed),
        (
            507,
            "quotaLimitReached",
            UploadError::QuotaExceeded {
                codes: crate::ServiceCodes(vec!["quotaLimitReached".into()]),
            },
        ),
        (
            403,
            "accessDenied",
            UploadError::Rejected {
                status: 403,
                codes: crate::ServiceCodes(vec!["accessDenied".into()]),
            },
        ),
    ] {
        let mut h = Scenario::onedrive(10).build();
        let req = h.expect_send();
        h.respond_json(
            req.id(),
            status,
            json!({"error": {"code": code, "message": "m"}}),
        );
        assert_eq!(finished_err(&mut h), want);
        assert_eq!(h.m.phase(), Phase::Failed);
    }
}

#[test]
fn throttled_create_waits_for_retry_after_seconds() {
    let mut h = Scenario::onedrive(10).build();
    let req = h.expect_send();
    let t0 = h.clock.now();
    let mut r = raw(
        429,
        Bytes::from_static(b"{\"error\":{\"code\":\"activityLimitReached\"}}"),
    );
    r.headers_mut().insert("retry-after", "41".parse().unwrap());
    h.respond(req.id(), r);
    match h.run() {
        Next::Wait(Some(t)) => assert_eq!(t - t0, Duration::from_secs(41)),
        other => panic!("expected a wait, got {other:?}"),
    }
    assert_eq!(h.m.phase(), Phase::Backoff);
    // An early timeout does nothing.
    h.clock.advance(Duration::from_secs(40));
    h.m.handle_timeout(h.clock.now());
    assert!(matches!(h.run(), Next::Wait(Some(_))));
    let again = h.expect_send();
    assert_eq!(again.kind(), RequestKind::CreateSession);
    assert_eq!(h.clock.elapsed(), Duration::from_secs(41));
}

#[test]
fn server_errors_on_create_back_off_then_create_again() {
    let mut h = Scenario::onedrive(10).build();
    let req = h.expect_send();
    h.respond(req.id(), raw(500, Bytes::from_static(b"<html>oops</html>")));
    let again = h.expect_send();
    assert_eq!(again.kind(), RequestKind::CreateSession);
    let waited = h.clock.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited <= Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::RetryScheduled {
            cause: UploadError::ServerError { status: 500, .. },
            attempt: 1,
            ..
        }
    )));
}

#[test]
fn conflict_after_an_ambiguous_create_waits_for_the_orphan() {
    let mut h = Scenario::onedrive(10).build();
    let req = h.expect_send();
    h.m.handle_failure(h.clock.now(), req.id(), crate::TransportFailure::Closed)
        .unwrap();
    let req = h.expect_send();
    let before = h.clock.elapsed();
    h.respond_json(
        req.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    let req = h.expect_send();
    assert_eq!(req.kind(), RequestKind::CreateSession);
    assert_eq!(h.clock.elapsed() - before, Duration::from_secs(16 * 60));
    h.respond_json(
        req.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    assert!(matches!(finished_err(&mut h), UploadError::Conflict { .. }));
}

#[test]
fn garbled_create_answers_are_retried_never_trusted() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        br#"{"uploadUrl": 5}"#,
        br#"{"expirationDateTime":"2100-01-01T00:00:00Z"}"#,
        br#"{"uploadUrl":"/relative/path"}"#,
        br#"{"uploadUrl":"https://u/x","nextExpectedRanges":"0-"}"#,
    ] {
        let mut h = Scenario::onedrive(10).build();
        let req = h.expect_send();
        h.respond(req.id(), raw(200, Bytes::from_static(body)));
        let again = h.expect_send();
        assert_eq!(
            again.kind(),
            RequestKind::CreateSession,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert!(h.events.iter().any(|e| matches!(
            e,
            Event::RetryScheduled {
                cause: UploadError::MalformedResponse { .. },
                ..
            }
        )));
    }
}

#[test]
fn a_new_session_that_claims_bytes_is_a_contradiction() {
    for ranges in [json!(["5-"]), json!([])] {
        let mut h = Scenario::onedrive(10).build();
        let req = h.expect_send();
        h.respond_json(
            req.id(),
            200,
            json!({"uploadUrl": UPLOAD_URL, "nextExpectedRanges": ranges}),
        );
        assert!(matches!(
            finished_err(&mut h),
            UploadError::ServerContradiction { .. }
        ));
    }
}

#[test]
fn create_without_ranges_or_expiry_is_accepted() {
    let mut h = Scenario::onedrive(10).build();
    let req = h.expect_send();
    h.respond_json(req.id(), 200, json!({"uploadUrl": UPLOAD_URL}));
    let put = h.expect_send();
    assert_upload_url(&put);
    assert_eq!(fragment_bounds(&put), (0, 10));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::SessionCreated { expires_at: None }))
    );
    let c = finish_normally(&mut h, put);
    assert!(c.verification.quick_xor && c.verification.sha256);
}

#[test]
fn with_orphan_waits_off_a_conflict_after_an_ambiguous_create_names_the_orphan() {
    let mut h = Scenario::onedrive(10)
        .config(|c| c.orphan_session_wait = None)
        .build();
    let req = h.expect_send();
    h.m.handle_failure(h.clock.now(), req.id(), crate::TransportFailure::Closed)
        .unwrap();
    let req = h.expect_send();
    h.respond_json(
        req.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    assert!(matches!(
        finished_err(&mut h),
        UploadError::OrphanSessionConflict { waits: 0, .. }
    ));
}

/// Business keeps a lost create's session until it expires (onedrive.md §1.5): a
/// bounded number of waits, then an error that says so.
#[test]
fn orphan_waits_are_bounded() {
    let mut h = Scenario::onedrive(10)
        .config(|c| c.max_orphan_waits = 1)
        .build();
    let req = h.expect_send();
    h.respond(req.id(), raw(502, Bytes::new()));
    let req = h.expect_send();
    h.respond_json(
        req.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    // After the wait, another ambiguous create, another conflict: no second wait.
    let req = h.expect_send();
    h.respond(req.id(), raw(502, Bytes::new()));
    let req = h.expect_send();
    h.respond_json(
        req.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    // The error says what may block the target, not that the name is taken.
    match finished_err(&mut h) {
        UploadError::OrphanSessionConflict { waits: 1, codes } => {
            assert!(codes.has("nameAlreadyExists"))
        }
        other => panic!("{other:?}"),
    }
    assert!(h.clock.elapsed() < Duration::from_secs(17 * 60));
}
