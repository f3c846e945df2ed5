//! Throttling, tokens, fatal statuses, budgets, stale answers, expiry, garbage.

use super::*;
use crate::testing::dropbox::{DropboxScenario, offset, route};
use crate::testing::{json as json_resp, raw};
use crate::{AccessToken, Event, Misuse, Output, RequestId, UploadError, UploadMachine};
use bytes::Bytes;
use serde_json::json;

#[test]
fn a_429_waits_for_the_larger_of_header_and_body() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    let mut r = json_resp(
        429,
        json!({"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 7}}),
    );
    r.headers_mut().insert("retry-after", "3".parse().unwrap());
    h.respond(a1.id(), r);
    assert_eq!(last_delay_now(&mut h), Some(Duration::from_secs(7)));
    let t0 = h.clock.elapsed();
    let again = h.expect_send();
    assert_eq!(h.clock.elapsed() - t0, Duration::from_secs(7));
    assert_eq!(offset(&again), offset(&a1));
}

fn last_delay_now(h: &mut crate::testing::dropbox::DropboxHarness) -> Option<Duration> {
    // Drain events without moving the clock.
    while let Output::Event(_) = h.poll() {}
    last_delay(&h.events)
}

#[test]
fn a_plain_text_429_without_retry_after_never_waits_zero() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    h.respond(a1.id(), raw(429, Bytes::from_static(b"too_many_requests")));
    assert!(last_delay_now(&mut h).unwrap() >= Duration::from_secs(1));
    let mut r = raw(429, Bytes::new());
    r.headers_mut()
        .insert("retry-after", "60.0".parse().unwrap());
    let a2 = h.expect_send();
    h.respond(a2.id(), r);
    assert_eq!(last_delay_now(&mut h), Some(Duration::from_secs(60)));
}

#[test]
fn an_expired_token_asks_for_a_new_one_and_resends() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    h.respond(
        a1.id(),
        json_resp(401, json!({"error_summary": "expired_access_token/", "error": {".tag": "expired_access_token"}})),
    );
    assert!(matches!(
        h.run(),
        crate::testing::dropbox::DbxNext::Wait(None)
    ));
    assert!(h.saw(|e| matches!(e, Event::TokenNeeded)));
    assert_eq!(h.m.phase(), crate::dropbox::Phase::NeedToken);
    h.m.set_access_token(AccessToken::new("fresh").unwrap());
    let again = h.expect_send();
    assert_eq!(again.request().headers()["authorization"], "Bearer fresh");
    assert_eq!(offset(&again), 8 * M);
    assert_eq!(again.request().body(), a1.request().body());
}

#[test]
fn other_client_errors_are_fatal_and_typed() {
    let cases: Vec<(http::Response<Bytes>, UploadError)> = vec![
        (
            json_resp(401, json!({"error": {".tag": "invalid_access_token"}})),
            UploadError::Rejected { status: 401, codes: crate::ServiceCodes(vec!["invalid_access_token".into()]) },
        ),
        (
            raw(400, Bytes::from_static(b"Error in call to API function \"files/upload_session/append_v2\": HTTP header \"Dropbox-API-Arg\": could not decode input as JSON")),
            UploadError::BadRequest { status: 400, message: "Error in call to API function \"files/upload_session/append_v2\": HTTP header \"Dropbox-API-Arg\": could not decode input as JSON".into() },
        ),
        (
            json_resp(403, json!({"error": {".tag": "invalid_account_type", "invalid_account_type": {".tag": "feature"}}})),
            UploadError::Rejected { status: 403, codes: crate::ServiceCodes(vec!["invalid_account_type".into(), "feature".into()]) },
        ),
        (
            json_resp(422, json!({"error": {".tag": "no_permission"}})),
            UploadError::Rejected { status: 422, codes: crate::ServiceCodes(vec!["no_permission".into()]) },
        ),
    ];
    for (resp, want) in cases {
        let mut h = DropboxScenario::new(20 * M).build();
        let a1 = h.to_uploading();
        h.respond(a1.id(), resp);
        assert_eq!(h.expect_finished().err(), Some(want));
    }
}

#[test]
fn the_retry_budget_ends_with_the_last_cause() {
    let mut h = DropboxScenario::new(20 * M)
        .config(|c| c.retry.max_attempts = 2)
        .build();
    let mut req = h.to_uploading();
    for _ in 0..2 {
        h.respond(req.id(), raw(500, Bytes::new()));
        req = h.expect_send();
    }
    h.respond(req.id(), raw(504, Bytes::new()));
    match h.expect_finished() {
        Err(UploadError::TooManyRetries {
            attempts: 2, last, ..
        }) => {
            assert!(matches!(
                *last,
                UploadError::ServerError { status: 504, .. }
            ))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn progress_resets_the_budget() {
    let mut h = DropboxScenario::new(40 * M)
        .config(|c| c.retry.max_attempts = 1)
        .build();
    let mut req = h.to_uploading();
    for _ in 0..3 {
        h.respond(req.id(), raw(500, Bytes::new()));
        req = h.expect_send();
        h.ok_null(req.id());
        req = h.expect_send();
    }
    assert!(!h.m.is_finished());
}

#[test]
fn unknown_ids_are_misuse_and_late_answers_are_stale() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    let now = h.clock.now();
    assert_eq!(
        h.m.handle_response(now, RequestId(999), raw(200, Bytes::new())),
        Err(Misuse::UnknownRequest(RequestId(999)))
    );
    h.m.handle_failure(now, a1.id(), crate::TransportFailure::Reset)
        .unwrap();
    // The answer arrives after its failure was reported.
    h.m.handle_response(now, a1.id(), raw(200, Bytes::from_static(b"null")))
        .unwrap();
    assert!(matches!(
        h.poll(),
        Output::Event(Event::RetryScheduled { .. })
    ));
    assert!(matches!(h.poll(), Output::Event(Event::StaleResponse { id }) if id == a1.id()));
    assert_eq!(
        h.m.provide_data(0, Bytes::from_static(b"x")),
        Err(Misuse::UnexpectedData { offset: 0, len: 1 })
    );
}

#[test]
fn wrong_data_is_misuse() {
    let mut h = DropboxScenario::new(100).build();
    let now = h.clock.now();
    assert!(matches!(
        h.m.poll_output(now),
        Output::NeedData {
            offset: 0,
            len: 100
        }
    ));
    assert!(matches!(
        h.m.provide_data(1, Bytes::from(vec![0; 99])),
        Err(Misuse::WrongData {
            wanted_offset: 0,
            wanted_len: 100,
            ..
        })
    ));
}

#[test]
fn a_session_near_its_7_day_end_is_replaced_before_use() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    h.clock.advance(Duration::from_secs(7 * 24 * 3600 - 1800));
    h.ok_null(a1.id());
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert!(h.saw(|e| matches!(
        e,
        Event::SessionRestarted {
            cause: UploadError::SessionExpired,
            ..
        }
    )));
}

#[test]
fn the_session_expiry_is_announced() {
    let mut h = DropboxScenario::new(20 * M).build();
    let _ = h.to_uploading();
    let want = h.clock.wall() + Duration::from_secs(604_800);
    assert!(h.saw(|e| matches!(e, Event::SessionCreated { expires_at: Some(t) } if *t == want)));
}

#[test]
fn cancel_finishes_at_once() {
    let mut h = DropboxScenario::new(20 * M).build();
    let a1 = h.to_uploading();
    let now = h.clock.now();
    h.m.cancel(now);
    assert_eq!(
        h.expect_finished().err(),
        Some(UploadError::Cancelled {
            session_deleted: false
        })
    );
    // Late answers are dropped silently.
    h.ok_null(a1.id());
    assert!(matches!(
        h.poll(),
        Output::Finished(Err(UploadError::Cancelled { .. }))
    ));
}

#[test]
fn garbage_answers_never_panic_and_always_end() {
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"\xff\xfe\x00garbage",
        b"{\"error\": 5}",
        b"{\"error\": {\".tag\": 7}}",
        b"{\"error\": {\".tag\": \"incorrect_offset\", \"correct_offset\": \"9\"}}",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]",
        b"{\"session_id\": \"\", \"name\": 1, \"size\": -1}",
    ];
    let statuses = [
        200u16, 201, 204, 301, 400, 401, 403, 404, 409, 413, 429, 500, 503, 599,
    ];
    for (i, body) in bodies.iter().enumerate() {
        for &status in &statuses {
            let mut h = DropboxScenario::new(20 * M)
                .config(|c| c.retry.max_attempts = 3)
                .build();
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 200, "status {status} body {i} loops");
                match h.next_request() {
                    crate::testing::dropbox::DbxNext::Send(r) => {
                        h.respond(r.id(), raw(status, Bytes::copy_from_slice(body)))
                    }
                    crate::testing::dropbox::DbxNext::Finished(_) => break,
                    crate::testing::dropbox::DbxNext::Wait(None) => {
                        // A token request: supply one (bounded by the step count).
                        h.m.set_access_token(AccessToken::new("t2").unwrap());
                    }
                    crate::testing::dropbox::DbxNext::Wait(Some(_)) => unreachable!(),
                }
            }
        }
    }
}
