//! Time: session expiry, Retry-After dates, clocks (onedrive.md §4.2, §6).

use super::*;
use crate::onedrive::limits::FRAGMENT_UNIT;
use crate::testing::{Scenario, raw};
use crate::{Output, RequestKind, UploadMachine};
use bytes::Bytes;
use std::time::Duration;

const U: u64 = FRAGMENT_UNIT;

#[test]
fn retry_after_as_an_http_date_uses_the_wall_clock() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    let at = crate::wallclock::format_rfc3339(h.clock.wall()); // for the log only
    let _ = at;
    // 2023-11-14T22:13:20Z + 90 s
    let mut r = raw(503, Bytes::new());
    r.headers_mut().insert(
        "retry-after",
        "Tue, 14 Nov 2023 22:14:50 GMT".parse().unwrap(),
    );
    let t0 = h.clock.elapsed();
    h.respond(put.id(), r);
    let q = h.expect_send();
    assert_eq!(q.kind(), RequestKind::QueryStatus);
    assert_eq!(h.clock.elapsed() - t0, Duration::from_secs(90));
}

#[test]
fn a_date_header_anchors_the_wall_clock_when_the_adapter_gives_none() {
    let mut m = crate::onedrive::OneDriveUpload::builder(crate::onedrive::Target::path("/x"), 10)
        .access_token(crate::AccessToken::new("t").unwrap())
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let Output::Send(req) = m.poll_output(t0) else {
        panic!()
    };
    let mut r = raw(429, Bytes::new());
    r.headers_mut()
        .insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
    r.headers_mut().insert(
        "retry-after",
        "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap(),
    );
    m.handle_response(t0, req.id(), r).unwrap();
    loop {
        match m.poll_output(t0) {
            Output::Event(_) => {}
            Output::Wait(Some(t)) => {
                assert_eq!(t - t0, Duration::from_secs(30));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_expired_session_is_never_used_it_is_restarted() {
    let mut h = Scenario::onedrive(3 * U).build();
    let create = h.expect_send();
    // The session expires in 2 minutes.
    let exp = h.expiry_in(Duration::from_secs(120));
    h.respond_json(
        create.id(),
        200,
        json!({"uploadUrl": UPLOAD_URL, "expirationDateTime": exp, "nextExpectedRanges": ["0-"]}),
    );
    let put = h.expect_send();
    // Throttled for 10 minutes: by then the session is gone.
    let mut r = raw(429, Bytes::new());
    r.headers_mut()
        .insert("retry-after", "600".parse().unwrap());
    h.respond(put.id(), r);
    let next = h.expect_send();
    assert_eq!(next.kind(), RequestKind::CreateSession);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::SessionRestarted {
            cause: UploadError::SessionExpired,
            ..
        }
    )));
    // Past its expiry, the old session is not even deleted (the server dropped it).
    h.respond_json(
        next.id(),
        409,
        json!({"error": {"code": "nameAlreadyExists"}}),
    );
    assert!(matches!(finished_err(&mut h), UploadError::Conflict { .. }));
}

#[test]
fn a_session_within_the_margin_is_deleted_if_it_blocks_the_new_one() {
    let mut h = Scenario::onedrive(3 * U)
        .config(|c| c.expiry_margin = Duration::from_secs(300))
        .build();
    let create = h.expect_send();
    let exp = h.expiry_in(Duration::from_secs(400));
    h.respond_json(
        create.id(),
        200,
        json!({"uploadUrl": UPLOAD_URL, "expirationDateTime": exp, "nextExpectedRanges": ["0-"]}),
    );
    let put = h.expect_send();
    let mut r = raw(429, Bytes::new());
    r.headers_mut()
        .insert("retry-after", "200".parse().unwrap());
    h.respond(put.id(), r);
    // 200 s later the session has 200 s left, less than the 300 s margin.
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
}

#[test]
fn the_maximum_session_age_restarts_a_session() {
    let mut h = Scenario::onedrive(3 * U)
        .config(|c| c.max_session_age = Some(Duration::from_secs(60)))
        .build();
    let put = h.to_uploading();
    h.clock.advance(Duration::from_secs(61));
    accepted(&mut h, &put, U);
    let next = h.expect_send();
    assert_eq!(next.kind(), RequestKind::CreateSession);
}

#[test]
fn expiry_updates_from_every_answer_keep_a_session_alive() {
    let mut h = Scenario::onedrive(4 * U).build();
    let create = h.expect_send();
    let exp = h.expiry_in(Duration::from_secs(200));
    h.respond_json(
        create.id(),
        200,
        json!({"uploadUrl": UPLOAD_URL, "expirationDateTime": exp, "nextExpectedRanges": ["0-"]}),
    );
    let mut put = h.expect_send();
    for i in 1..4 {
        h.clock.advance(Duration::from_secs(100));
        // Each accept pushes the expiry 200 s out (Business sliding expiry).
        let exp = h.expiry_in(Duration::from_secs(200));
        h.respond_json(
            put.id(),
            202,
            json!({"expirationDateTime": exp, "nextExpectedRanges": [format!("{}-", i * U)]}),
        );
        put = h.expect_send();
        assert_eq!(
            put.kind(),
            RequestKind::UploadData {
                range: crate::ByteRange::new(i * U, (i + 1) * U).unwrap()
            }
        );
    }
}

#[test]
fn time_never_goes_backwards_and_early_timeouts_do_nothing() {
    let mut h = Scenario::onedrive(2 * U).build();
    let put = h.to_uploading();
    h.respond(put.id(), raw(500, Bytes::new()));
    let deadline = match h.run() {
        Next::Wait(Some(t)) => t,
        other => panic!("{other:?}"),
    };
    let earlier = h.clock.now() - Duration::from_secs(100);
    h.m.handle_timeout(earlier);
    assert!(matches!(h.m.poll_output(earlier), Output::Wait(Some(t)) if t == deadline));
    h.m.handle_timeout(deadline);
    h.m.handle_timeout(deadline);
    assert!(matches!(h.m.poll_output(earlier), Output::Send(_)));
}

#[test]
fn request_deadlines_grow_with_the_fragment() {
    let mut h = Scenario::onedrive(40 * U)
        .fragment(32 * U)
        .config(|c| {
            c.request_timeout = Duration::from_secs(30);
            c.min_throughput = 1 << 20;
        })
        .build();
    let create = h.expect_send();
    assert_eq!(
        create.deadline(),
        Some(h.clock.now() + Duration::from_secs(30))
    );
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let put = h.expect_send();
    // 10 MiB at 1 MiB/s: 10 s more.
    assert_eq!(
        put.deadline(),
        Some(h.clock.now() + Duration::from_secs(40))
    );
}
