//! Phase `Uploading` (and the `Querying`/`Backoff` it falls back to): fragments and
//! every answer to them (onedrive.md §2, §3, §5.3, §10).

use super::*;
use crate::onedrive::{Phase, limits::FRAGMENT_UNIT};
use crate::testing::{Scenario, raw};
use crate::{Misuse, Output, RequestKind, TransportFailure, UploadMachine};
use bytes::Bytes;
use std::time::Duration;

const U: u64 = FRAGMENT_UNIT;

#[test]
fn fragments_are_aligned_sequential_and_carry_no_authorization() {
    let size = 3 * U + 12_345;
    let mut h = Scenario::onedrive(size).fragment(2 * U).build();
    let first = h.to_uploading();
    assert_upload_url(&first);
    assert_eq!(
        first.kind(),
        RequestKind::UploadData {
            range: crate::ByteRange::new(0, 2 * U).unwrap()
        }
    );
    let hd = first.request().headers();
    assert_eq!(
        hd["content-range"],
        format!("bytes 0-{}/{size}", 2 * U - 1).as_str()
    );
    assert_eq!(hd["content-length"], (2 * U).to_string().as_str());
    // One fragment in flight: nothing more until it is answered.
    expect_wait_none(&mut h);
    accepted(&mut h, &first, 2 * U);
    let last = h.expect_send();
    assert_eq!(fragment_bounds(&last), (2 * U, size));
    assert_eq!(
        last.request().headers()["content-range"],
        format!("bytes {}-{}/{size}", 2 * U, size - 1).as_str()
    );
    let c = finish_normally(&mut h, last);
    assert_eq!(c.item.id, "ITEM-1");
}

#[test]
fn the_next_offset_comes_from_the_server_and_realigns_after_a_partial_accept() {
    let size = 6 * U;
    let mut h = Scenario::onedrive(size).fragment(2 * U).build();
    let first = h.to_uploading();
    // The server kept only part of the fragment, at an unaligned offset.
    let partial = U + 1000;
    accepted(&mut h, &first, partial);
    let next = h.expect_send();
    // onedrive §10: len = chunk - offset % unit, so the fragment ends on a boundary.
    assert_eq!(fragment_bounds(&next), (partial, 3 * U));
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Resynced { expected, server } if *expected == 2 * U && *server == partial
    )));
    accepted(&mut h, &next, 3 * U);
    let aligned = h.expect_send();
    assert_eq!(fragment_bounds(&aligned), (3 * U, 5 * U));
    finish_normally(&mut h, aligned);
}

#[test]
fn a_retry_reuses_the_held_fragment_without_rereading() {
    let mut h = Scenario::onedrive(3 * U).fragment(2 * U).build();
    let first = h.to_uploading();
    let mut r = raw(429, Bytes::new());
    r.headers_mut().insert("retry-after", "2".parse().unwrap());
    h.respond(first.id(), r);
    // No NeedData: the held fragment is re-sent.
    match h.m.poll_output(h.clock.now()) {
        Output::Event(Event::RetryScheduled { delay, .. }) => {
            assert_eq!(delay, Duration::from_secs(2))
        }
        other => panic!("{other:?}"),
    }
    h.clock.advance(Duration::from_secs(2));
    match h.m.poll_output(h.clock.now()) {
        Output::Send(again) => {
            assert_eq!(fragment_bounds(&again), (0, 2 * U));
            assert_eq!(again.request().body(), first.request().body());
        }
        other => panic!("expected the same fragment again, got {other:?}"),
    }
}

#[test]
fn data_requests_never_exceed_one_fragment() {
    let mut h = Scenario::onedrive(5 * U + 7).fragment(2 * U).build();
    let mut req = h.to_uploading();
    let mut asked = Vec::new();
    loop {
        let (_, end) = fragment_bounds(&req);
        if end == 5 * U + 7 {
            break;
        }
        accepted(&mut h, &req, end);
        loop {
            match h.m.poll_output(h.clock.now()) {
                Output::NeedData { offset, len } => {
                    asked.push((offset, len));
                    let d = h.data.slice(offset as usize..(offset + len) as usize);
                    h.m.provide_data(offset, d).unwrap();
                }
                Output::Send(r) => {
                    req = r;
                    break;
                }
                Output::Event(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(asked, [(2 * U, 2 * U), (4 * U, U + 7)]);
}

#[test]
fn range_not_satisfiable_queries_then_resumes_from_the_server_offset() {
    let mut h = Scenario::onedrive(4 * U).fragment(2 * U).build();
    let first = h.to_uploading();
    h.respond_json(
        first.id(),
        416,
        json!({"error": {"code": "invalidRange", "innerError": {"code": "fragmentOverlap"}}}),
    );
    let q = h.expect_send();
    assert_eq!(q.kind(), RequestKind::QueryStatus);
    assert_eq!(h.m.phase(), Phase::Querying);
    status(&mut h, &q, Some(2 * U));
    let next = h.expect_send();
    assert_eq!(fragment_bounds(&next), (2 * U, 4 * U));
    finish_normally(&mut h, next);
}

#[test]
fn server_errors_and_transport_failures_back_off_then_query() {
    for fail in [
        Err(TransportFailure::Reset),
        Err(TransportFailure::TimedOut),
        Err(TransportFailure::Closed),
        Ok(500u16),
        Ok(502),
        Ok(504),
        Ok(503),
        Ok(423),
    ] {
        let mut h = Scenario::onedrive(2 * U).build();
        let first = h.to_uploading();
        let t0 = h.clock.elapsed();
        match fail {
            Ok(status) => h.respond(first.id(), raw(status, Bytes::new())),
            Err(f) => h.m.handle_failure(h.clock.now(), first.id(), f).unwrap(),
        }
        let q = h.expect_send();
        assert_eq!(q.kind(), RequestKind::QueryStatus, "{fail:?}");
        assert!(
            h.clock.elapsed() - t0 >= Duration::from_millis(500),
            "{fail:?}"
        );
        // The fragment had been applied after all.
        status(&mut h, &q, Some(U));
        let next = h.expect_send();
        assert_eq!(fragment_bounds(&next), (U, 2 * U), "{fail:?}");
        finish_normally(&mut h, next);
    }
}

#[test]
fn a_reset_with_a_kept_unaligned_prefix_resends_only_the_tail() {
    let mut h = Scenario::onedrive(3 * U).fragment(2 * U).build();
    let first = h.to_uploading();
    h.m.handle_failure(h.clock.now(), first.id(), TransportFailure::Reset)
        .unwrap();
    let q = h.expect_send();
    status(&mut h, &q, Some(12_345));
    let tail = h.expect_send();
    assert_eq!(fragment_bounds(&tail), (12_345, 2 * U));
    finish_normally(&mut h, tail);
}

#[test]
fn a_not_found_is_confirmed_before_restarting() {
    // Transient 404: the status query shows the session alive.
    let mut h = Scenario::onedrive(2 * U).build();
    let first = h.to_uploading();
    h.respond_json(first.id(), 404, json!({"error": {"code": "itemNotFound"}}));
    let q = h.expect_send();
    status(&mut h, &q, Some(0));
    let again = h.expect_send();
    assert_eq!(fragment_bounds(&again), (0, U));
    assert_eq!(h.m.restarts(), 0);

    // Real 404: the query confirms, the session is recreated and bytes are re-sent.
    h.respond_json(again.id(), 404, json!({"error": {"code": "itemNotFound"}}));
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({"error": {"code": "itemNotFound"}}));
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
    assert_eq!(h.m.restarts(), 1);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::SessionRestarted {
            cause: UploadError::SessionNotFound,
            restarts: 1
        }
    )));
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let put = h.expect_send();
    assert_eq!(fragment_bounds(&put), (0, U));
    let c = finish_normally(&mut h, put);
    assert_eq!(c.restarts, 1);
}

#[test]
fn restarts_are_bounded() {
    let mut h = Scenario::onedrive(2 * U)
        .config(|c| {
            c.max_restarts = 2;
            c.not_found = crate::onedrive::NotFoundPolicy::Restart;
        })
        .build();
    let mut put = h.to_uploading();
    for _ in 0..2 {
        h.respond_json(put.id(), 404, json!({}));
        let create = h.expect_send();
        assert_eq!(create.kind(), RequestKind::CreateSession);
        let body = h.session_body();
        h.respond_json(create.id(), 200, body);
        put = h.expect_send();
    }
    h.respond_json(put.id(), 404, json!({}));
    assert!(matches!(
        finished_err(&mut h),
        UploadError::TooManyRestarts { restarts: 2, .. }
    ));
}

#[test]
fn not_found_policy_fail_fails_typed() {
    let mut h = Scenario::onedrive(2 * U)
        .config(|c| c.not_found = crate::onedrive::NotFoundPolicy::Fail)
        .build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 404, json!({}));
    assert_eq!(finished_err(&mut h), UploadError::SessionNotFound);
}

#[test]
fn unauthorized_on_the_upload_url_restarts_the_session() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond_json(
        put.id(),
        401,
        json!({"error": {"code": "unauthenticated", "innerError": {"code": "expiredToken"}}}),
    );
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::SessionRestarted {
            cause: UploadError::Unauthorized { .. },
            ..
        }
    )));
}

#[test]
fn fatal_fragment_answers_are_typed() {
    for (status, check) in [
        (409u16, "conflict"),
        (507, "quota"),
        (413, "rejected"),
        (403, "rejected"),
    ] {
        let mut h = Scenario::onedrive(2 * U).build();
        let put = h.to_uploading();
        h.respond_json(put.id(), status, json!({"error": {"code": "x"}}));
        let e = finished_err(&mut h);
        let ok = match check {
            "conflict" => matches!(e, UploadError::Conflict { .. }),
            "quota" => matches!(e, UploadError::QuotaExceeded { .. }),
            _ => matches!(e, UploadError::Rejected { status: s, .. } if s == status),
        };
        assert!(ok, "{status}: {e:?}");
    }
}

#[test]
fn a_bad_request_gets_one_status_query_then_fails() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 400, json!({"error": {"code": "invalidRequest"}}));
    let q = h.expect_send();
    status(&mut h, &q, Some(0));
    let again = h.expect_send();
    h.respond_json(
        again.id(),
        400,
        json!({"error": {"code": "invalidRequest"}}),
    );
    assert!(matches!(
        finished_err(&mut h),
        UploadError::Rejected { status: 400, .. }
    ));
}

#[test]
fn contradictory_offsets_are_typed_errors() {
    // Beyond every byte sent.
    let mut h = Scenario::onedrive(4 * U).build();
    let put = h.to_uploading();
    accepted(&mut h, &put, 3 * U);
    assert!(matches!(
        finished_err(&mut h),
        UploadError::ServerContradiction { .. }
    ));
    // At or beyond the end of the file.
    let mut h = Scenario::onedrive(U).build();
    let put = h.to_uploading();
    accepted(&mut h, &put, U);
    assert!(matches!(
        finished_err(&mut h),
        UploadError::ServerContradiction { .. }
    ));
    // "All received" although the last bytes were never sent.
    let mut h = Scenario::onedrive(4 * U).build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 202, json!({"nextExpectedRanges": []}));
    assert!(matches!(
        finished_err(&mut h),
        UploadError::ServerContradiction { .. }
    ));
}

#[test]
fn offsets_going_backwards_resync_but_cannot_loop_forever() {
    let mut h = Scenario::onedrive(4 * U)
        .config(|c| c.retry.max_attempts = 4)
        .build();
    let mut put = h.to_uploading();
    accepted(&mut h, &put, U);
    put = h.expect_send();
    assert_eq!(fragment_bounds(&put), (U, 2 * U));
    // The server keeps answering "start from 0": resync, but each stall counts.
    for _ in 0..4 {
        accepted(&mut h, &put, 0);
        put = h.expect_send();
        assert_eq!(fragment_bounds(&put), (0, U));
    }
    accepted(&mut h, &put, 0);
    assert!(matches!(
        finished_err(&mut h),
        UploadError::TooManyRetries { attempts: 4, .. }
    ));
}

#[test]
fn garbled_accepts_fall_back_to_a_status_query() {
    for body in [
        &b"{}"[..],
        b"garbage",
        br#"{"nextExpectedRanges":["x-"]}"#,
        br#"{"nextExpectedRanges":["-5"]}"#,
    ] {
        let mut h = Scenario::onedrive(2 * U).build();
        let put = h.to_uploading();
        h.respond(put.id(), raw(202, Bytes::from_static(body)));
        let q = h.expect_send();
        assert_eq!(q.kind(), RequestKind::QueryStatus);
    }
}

#[test]
fn the_budget_gives_up_after_max_attempts_at_one_offset_and_resets_on_progress() {
    let mut h = Scenario::onedrive(3 * U)
        .config(|c| c.retry.max_attempts = 3)
        .build();
    let mut put = h.to_uploading();
    // Two failures, then progress: the budget starts over.
    for _ in 0..2 {
        h.respond(put.id(), raw(500, Bytes::new()));
        let q = h.expect_send();
        status(&mut h, &q, Some(0));
        put = h.expect_send();
    }
    accepted(&mut h, &put, U);
    put = h.expect_send();
    for _ in 0..3 {
        h.respond(put.id(), raw(500, Bytes::new()));
        let q = h.expect_send();
        status(&mut h, &q, Some(U));
        put = h.expect_send();
    }
    h.respond(put.id(), raw(500, Bytes::new()));
    match finished_err(&mut h) {
        UploadError::TooManyRetries { attempts, last, .. } => {
            assert_eq!(attempts, 3);
            assert!(matches!(
                *last,
                UploadError::ServerError { status: 500, .. }
            ));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn progress_and_checkpoints_follow_every_acknowledged_fragment() {
    let mut h = Scenario::onedrive(3 * U).build();
    let put = h.to_uploading();
    finish_normally(&mut h, put);
    let acks: Vec<u64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Checkpoint(c) => Some(c.acknowledged),
            _ => None,
        })
        .collect();
    // One after the create, one per acknowledged non-final fragment.
    assert_eq!(acks, [0, U, 2 * U]);
    let progress: Vec<u64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                acknowledged,
                total,
            } => {
                assert_eq!(*total, 3 * U);
                Some(*acknowledged)
            }
            _ => None,
        })
        .collect();
    assert_eq!(progress, [U, 2 * U]);
}

#[test]
fn stale_and_unknown_ids_are_handled() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.m.handle_failure(h.clock.now(), put.id(), TransportFailure::TimedOut)
        .unwrap();
    // The response arrives after its failure was reported: dropped.
    accepted(&mut h, &put, U);
    let unknown = crate::RequestId(999);
    assert_eq!(
        h.m.handle_response(h.clock.now(), unknown, raw(200, Bytes::new())),
        Err(Misuse::UnknownRequest(unknown))
    );
    let q = h.expect_send();
    assert_eq!(q.kind(), RequestKind::QueryStatus);
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::StaleResponse { id } if *id == put.id()))
    );
}

#[test]
fn wrong_or_unasked_data_is_misuse() {
    let mut h = Scenario::onedrive(2 * U).build();
    assert!(matches!(
        h.m.provide_data(0, Bytes::from_static(b"x")),
        Err(Misuse::UnexpectedData { .. })
    ));
    let create = h.expect_send();
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    loop {
        match h.m.poll_output(h.clock.now()) {
            Output::NeedData { offset, len } => {
                assert_eq!((offset, len), (0, U));
                assert!(matches!(
                    h.m.provide_data(1, h.data.slice(1..U as usize + 1)),
                    Err(Misuse::WrongData { .. })
                ));
                assert!(matches!(
                    h.m.provide_data(0, h.data.slice(0..10)),
                    Err(Misuse::WrongData { .. })
                ));
                // Still asking for the same range.
                assert!(matches!(
                    h.m.poll_output(h.clock.now()),
                    Output::NeedData { offset: 0, .. }
                ));
                break;
            }
            Output::Event(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_session_wrongly_believed_gone_is_deleted_when_it_blocks_the_new_one() {
    // Two transient 404s in a row (PUT and its confirmation) on OneDrive for Business:
    // the old session still exists and the new create conflicts with it.
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 404, json!({}));
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({}));
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
    h.respond_json(
        create.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    let del = h.expect_send();
    assert_eq!(del.kind(), RequestKind::Cancel);
    assert_upload_url(&del);
    h.respond(del.id(), raw(204, Bytes::new()));
    let create = h.expect_send();
    assert_eq!(create.kind(), RequestKind::CreateSession);
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let put = h.expect_send();
    assert_eq!(fragment_bounds(&put), (0, U));
    finish_normally(&mut h, put);
}

#[test]
fn a_stale_session_answering_a_transient_404_to_its_delete_is_deleted_again() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 404, json!({}));
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({}));
    let mut create = h.expect_send();
    for _ in 0..2 {
        h.respond_json(
            create.id(),
            409,
            json!({"error": {"code": "nameAlreadyExists"}}),
        );
        let del = h.expect_send();
        assert_eq!(del.kind(), RequestKind::Cancel);
        h.respond_json(del.id(), 404, json!({}));
        create = h.expect_send();
        assert_eq!(create.kind(), RequestKind::CreateSession);
    }
    // The third DELETE works; the create after it too.
    h.respond_json(
        create.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    let del = h.expect_send();
    h.respond(del.id(), raw(204, Bytes::new()));
    let create = h.expect_send();
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let put = h.expect_send();
    finish_normally(&mut h, put);

    // Without end: after three deletes the conflict is reported.
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond_json(put.id(), 404, json!({}));
    let q = h.expect_send();
    h.respond_json(q.id(), 404, json!({}));
    let mut create = h.expect_send();
    for _ in 0..3 {
        h.respond_json(
            create.id(),
            409,
            json!({"error": {"code": "nameAlreadyExists"}}),
        );
        let del = h.expect_send();
        h.respond_json(del.id(), 404, json!({}));
        create = h.expect_send();
    }
    h.respond_json(
        create.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    assert!(matches!(finished_err(&mut h), UploadError::Conflict { .. }));
}
