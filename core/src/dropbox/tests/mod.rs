//! Unit tests per phase, driven by the scenario harness ([`crate::testing::dropbox`]).

mod batch;
mod building;
mod concurrent;
mod errors;
mod escaping;
mod finishing;
mod read_ahead;
mod resume;
mod sequential;
mod starting;

use crate::Event;
use crate::dropbox::DropboxEvent;
use crate::testing::dropbox::{OutgoingRequestExt, arg};
use std::time::Duration;

/// 1 MiB.
const M: u64 = 1024 * 1024;
/// 4 MiB.
const B: u64 = 4 * M;

/// The `content_hash` argument of a request, if any.
fn hash_arg(req: &crate::OutgoingRequest) -> Option<String> {
    arg(req)["content_hash"].as_str().map(str::to_string)
}

/// The delay of the last `RetryScheduled` event.
fn last_delay(events: &[DropboxEvent]) -> Option<Duration> {
    events.iter().rev().find_map(|e| match e {
        Event::RetryScheduled { delay, .. } => Some(*delay),
        _ => None,
    })
}

/// Checks the invariants every Dropbox request must meet (dropbox.md §1.2, §1.3).
fn check_wire(req: &crate::OutgoingRequest) {
    let r = req.request();
    assert_eq!(r.method(), http::Method::POST);
    let h = r.headers();
    assert!(h["authorization"].to_str().unwrap().starts_with("Bearer "));
    if let Some(a) = h.get("dropbox-api-arg") {
        assert!(a.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)));
        assert_eq!(h["content-type"], "application/octet-stream");
        assert!(
            r.uri()
                .to_string()
                .starts_with(crate::testing::dropbox::CONTENT)
        );
        let body = r.body();
        match req.hash_arg_opt() {
            Some(hash) => assert_eq!(hash, crate::dropbox::content_hash(body)),
            None => assert!(body.is_empty(), "data without content_hash"),
        }
    } else {
        assert_eq!(h["content-type"], "application/json");
        assert!(
            r.uri()
                .to_string()
                .starts_with(crate::testing::dropbox::API)
        );
    }
    assert_eq!(
        h["content-length"].to_str().unwrap(),
        r.body().len().to_string()
    );
}
