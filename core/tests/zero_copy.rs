//! Zero payload copies: the body of every data request is the very `Bytes` the adapter
//! handed to `provide_data` (or a slice of it), never a copy. Checked by address: the
//! body's bytes must lie inside the source buffer, at the position of the range they
//! carry. This holds for first sends and for resends after a failure (the held bytes are
//! reused, not read again). The performance figure behind it is in BENCHMARKS.md (core
//! cost); this test keeps it from regressing.

use bytes::Bytes;
use std::time::Duration;
use upload_session::testing::dropbox::{DbxNext, DropboxScenario, offset};
use upload_session::testing::{Scenario, fragment_bounds};
use upload_session::{OutgoingRequest, TransportFailure, UploadMachine};

const UNIT: u64 = 327_680;
const MIB: u64 = 1024 * 1024;

/// Asserts that `req`'s body is the bytes `[start, start + len)` of `source`, in place.
fn assert_in_place(source: &Bytes, req: &OutgoingRequest, start: u64) {
    let body = req.request().body();
    assert!(!body.is_empty(), "a data request carries bytes");
    let base = source.as_ptr() as usize;
    let at = body.as_ptr() as usize;
    assert_eq!(
        at,
        base + start as usize,
        "the body of the request at offset {start} is not the source's memory (copied)"
    );
    assert!(
        at + body.len() <= base + source.len(),
        "the body runs past the source buffer"
    );
}

#[test]
fn onedrive_fragments_are_slices_of_the_provided_bytes() {
    let mut h = Scenario::onedrive(4 * 3 * UNIT + 1000)
        .fragment(3 * UNIT)
        .build();
    let mut req = h.to_uploading();
    let mut retried = false;
    loop {
        let (start, end) = fragment_bounds(&req);
        assert_in_place(&h.data, &req, start);
        let id = req.id();
        if start == 3 * UNIT && !retried {
            // A failure: the resend must reuse the same bytes.
            retried = true;
            let now = h.clock.now();
            h.m.handle_failure(now, id, TransportFailure::Reset)
                .unwrap();
            req = h.expect_send();
            if req.request().method() == http::Method::GET {
                // Status query first (where does the server stand?).
                let exp = h.expiry_in(Duration::from_secs(3600));
                h.respond_json(
                    req.id(),
                    200,
                    serde_json::json!({"expirationDateTime": exp, "nextExpectedRanges": [format!("{start}-")]}),
                );
                req = h.expect_send();
            }
            assert_eq!(
                fragment_bounds(&req),
                (start, end),
                "the same fragment again"
            );
            continue;
        }
        if end == h.data.len() as u64 {
            let item = h.item_json();
            h.respond_json(id, 201, item);
            break;
        }
        let exp = h.expiry_in(Duration::from_secs(3600));
        h.respond_json(
            id,
            202,
            serde_json::json!({"expirationDateTime": exp, "nextExpectedRanges": [format!("{end}-")]}),
        );
        req = h.expect_send();
    }
    assert!(retried);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn dropbox_sequential_chunks_are_slices_of_the_provided_bytes() {
    let mut h = DropboxScenario::new(3 * 8 * MIB + 12_345).build();
    let start = h.expect_send();
    assert!(start.request().uri().path().ends_with("/start"));
    assert_in_place(&h.data, &start, 0);
    h.session(start.id(), "sid-1");
    let mut req = h.expect_send();
    let mut retried = false;
    loop {
        let at = offset(&req);
        assert_in_place(&h.data, &req, at);
        let route = req.request().uri().path().to_string();
        let id = req.id();
        if route.ends_with("/finish") {
            let meta = h.metadata();
            h.ok(id, meta);
            break;
        }
        if at == 16 * MIB && !retried {
            retried = true;
            let now = h.clock.now();
            h.m.handle_failure(now, id, TransportFailure::Reset)
                .unwrap();
            req = h.expect_send();
            assert_eq!(offset(&req), at, "the same chunk again");
            continue;
        }
        h.ok_null(id);
        req = h.expect_send();
    }
    assert!(retried);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn dropbox_concurrent_appends_in_flight_are_slices_of_the_provided_bytes() {
    let size = 10 * 4 * MIB + 777;
    let mut h = DropboxScenario::concurrent(size, 4).build();
    let start = h.expect_send();
    assert!(start.request().uri().path().ends_with("/start"));
    h.session(start.id(), "sid-1");
    let mut seen = 0;
    loop {
        let batch = h.expect_sends();
        if batch.is_empty() {
            break;
        }
        let mut done = false;
        for req in batch {
            let route = req.request().uri().path().to_string();
            if route.ends_with("/finish") {
                assert!(
                    req.request().body().is_empty(),
                    "a concurrent finish is empty"
                );
                let meta = h.metadata();
                h.ok(req.id(), meta);
                done = true;
                continue;
            }
            let at = offset(&req);
            assert_in_place(&h.data, &req, at);
            seen += 1;
            h.ok_null(req.id());
        }
        if done {
            break;
        }
    }
    assert_eq!(seen, 11, "ten full chunks and the tail");
    match h.next_request() {
        DbxNext::Finished(r) => assert!(r.is_ok(), "{r:?}"),
        other => panic!("expected the end, got {other:?}"),
    }
}
