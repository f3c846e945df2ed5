//! Unit tests, one file per phase. Each test fast-forwards a machine with
//! [`crate::testing::Scenario`] and feeds it the responses of the case under test.

mod build;
mod cancel;
mod completing;
mod creating;
mod read_ahead;
mod resume;
mod time;
mod uploading;

use crate::testing::{Harness, Next, UPLOAD_URL, fragment_bounds};
use crate::{Event, OutgoingRequest, UploadError};
use serde_json::{Value, json};

/// Asserts the request goes to the uploadUrl without Authorization.
fn assert_upload_url(req: &OutgoingRequest) {
    assert_eq!(req.request().uri().to_string(), UPLOAD_URL);
    assert!(
        req.request().headers().get("authorization").is_none(),
        "Authorization sent to an uploadUrl"
    );
}

fn method(req: &OutgoingRequest) -> &str {
    req.request().method().as_str()
}

fn body_json(req: &OutgoingRequest) -> Value {
    serde_json::from_slice(req.request().body()).expect("JSON body")
}

/// A 202 that asks for `next`.
fn accepted(h: &mut Harness, req: &OutgoingRequest, next: u64) {
    let exp = h.expiry_in(std::time::Duration::from_secs(3600));
    h.respond_json(
        req.id(),
        202,
        json!({"expirationDateTime": exp, "nextExpectedRanges": [format!("{next}-")]}),
    );
}

/// A status answer.
fn status(h: &mut Harness, req: &OutgoingRequest, next: Option<u64>) {
    assert_eq!(method(req), "GET");
    assert_upload_url(req);
    let exp = h.expiry_in(std::time::Duration::from_secs(3600));
    let ranges: Vec<String> = next.map(|n| format!("{n}-")).into_iter().collect();
    h.respond_json(
        req.id(),
        200,
        json!({"expirationDateTime": exp, "nextExpectedRanges": ranges}),
    );
}

/// Sends every remaining fragment with plain 202s and a final 201 carrying the real item.
fn finish_normally(h: &mut Harness, mut req: OutgoingRequest) -> crate::onedrive::Completed {
    let size = h.data.len() as u64;
    loop {
        assert_eq!(method(&req), "PUT");
        let (start, end) = fragment_bounds(&req);
        assert_eq!(
            req.request().body(),
            &h.data.slice(start as usize..end as usize),
            "fragment body is the source range"
        );
        if end == size {
            let item = h.item_json();
            h.respond_json(req.id(), 201, item);
            return h.expect_finished().expect("upload succeeds");
        }
        accepted(h, &req, end);
        req = h.expect_send();
    }
}

fn finished_err(h: &mut Harness) -> UploadError {
    match h.expect_finished() {
        Err(e) => e,
        Ok(c) => panic!("expected an error, got {c:?}"),
    }
}

fn count_events(h: &Harness, f: impl Fn(&Event<crate::onedrive::Checkpoint>) -> bool) -> usize {
    h.events.iter().filter(|e| f(e)).count()
}

fn expect_wait_none(h: &mut Harness) {
    match h.run() {
        Next::Wait(None) => {}
        other => panic!("expected Wait(None), got {other:?}"),
    }
}
