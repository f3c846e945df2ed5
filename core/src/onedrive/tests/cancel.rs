//! Phase `Cancelling` (onedrive.md §4.1).

use super::*;
use crate::onedrive::{Phase, limits::FRAGMENT_UNIT};
use crate::testing::{Scenario, raw};
use crate::{RequestKind, TransportFailure, UploadMachine};
use bytes::Bytes;

const U: u64 = FRAGMENT_UNIT;

#[test]
fn cancel_deletes_the_session_and_204_or_404_end_cleanly() {
    for status in [204u16, 404] {
        let mut h = Scenario::onedrive(3 * U).build();
        let put = h.to_uploading();
        h.m.cancel(h.clock.now());
        let del = h.expect_send();
        assert_eq!(del.kind(), RequestKind::Cancel);
        assert_eq!(method(&del), "DELETE");
        assert_upload_url(&del);
        assert_eq!(h.m.phase(), Phase::Cancelling);
        // The fragment's late answer is dropped.
        accepted(&mut h, &put, U);
        h.respond(del.id(), raw(status, Bytes::new()));
        assert_eq!(
            finished_err(&mut h),
            UploadError::Cancelled {
                session_deleted: true
            }
        );
        assert!(
            h.events
                .iter()
                .any(|e| matches!(e, Event::StaleResponse { id } if *id == put.id()))
        );
        assert_eq!(h.m.phase(), Phase::Cancelled);
        assert!(h.m.is_finished());
    }
}

#[test]
fn cancel_before_any_session_sends_nothing() {
    let mut h = Scenario::onedrive(10).build();
    h.m.cancel(h.clock.now());
    assert_eq!(
        finished_err(&mut h),
        UploadError::Cancelled {
            session_deleted: true
        }
    );
}

#[test]
fn cancel_during_create_deletes_the_session_it_returns() {
    let mut h = Scenario::onedrive(10).build();
    let create = h.expect_send();
    h.m.cancel(h.clock.now());
    expect_wait_none(&mut h);
    let body = h.session_body();
    h.respond_json(create.id(), 200, body);
    let del = h.expect_send();
    assert_eq!(del.kind(), RequestKind::Cancel);
    h.respond(del.id(), raw(204, Bytes::new()));
    assert!(matches!(
        finished_err(&mut h),
        UploadError::Cancelled {
            session_deleted: true
        }
    ));
}

#[test]
fn a_failing_delete_is_retried_then_reported() {
    let mut h = Scenario::onedrive(2 * U)
        .config(|c| c.retry.max_attempts = 2)
        .build();
    let _put = h.to_uploading();
    h.m.cancel(h.clock.now());
    for _ in 0..2 {
        let del = h.expect_send();
        assert_eq!(del.kind(), RequestKind::Cancel);
        h.m.handle_failure(h.clock.now(), del.id(), TransportFailure::Reset)
            .unwrap();
    }
    let del = h.expect_send();
    h.respond(del.id(), raw(500, Bytes::new()));
    assert_eq!(
        finished_err(&mut h),
        UploadError::Cancelled {
            session_deleted: false
        }
    );
}

#[test]
fn cancel_after_the_end_changes_nothing() {
    let mut h = Scenario::onedrive(10).build();
    let put = h.to_uploading();
    let item = h.item_json();
    h.respond_json(put.id(), 201, item);
    assert!(h.expect_finished().is_ok());
    h.m.cancel(h.clock.now());
    assert!(h.expect_finished().is_ok());
}
