//! # upload-session
//!
//! A deterministic, sans-IO state machine for resumable uploads to OneDrive (Microsoft
//! Graph upload sessions) and Dropbox (API v2 upload sessions). It decides everything (fragment sizes and alignment, headers,
//! offsets, retries, resyncs, session restarts, hashing, checkpoints) and performs
//! nothing: an adapter moves bytes between it, the network, the source and a timer.
//!
//! ## Scope
//! - OneDrive / SharePoint uploads through `createUploadSession` ([`onedrive`]): path,
//!   parent + name, drive path and item-id (replace) targets in `/me`, drive, site, user
//!   and group drives; any Graph base URL (global, national clouds, an emulator);
//!   conflict behaviour, declared file size, description, `fileSystemInfo`, `If-Match`,
//!   `deferCommit` with automatic or explicit commit; zero-byte files via a simple `PUT`.
//! - Every response of onedrive.md §5.3/§10: 202 ranges, 200/201 items (fetched when the
//!   body has no id), 416 resync, 404 confirm/verify/restart, 409, 412, 429/503 with
//!   `Retry-After` (seconds or HTTP-date), 5xx/timeouts/resets with seeded backoff, 401
//!   on create as [`Event::TokenNeeded`], 507.
//! - A retry budget (attempts per server offset plus total time, reset when the offset
//!   advances), session expiry tracking, cancel.
//! - Integrity: QuickXorHash (and SHA-256) of every byte, fed exactly once in order,
//!   compared with the server's item at the end.
//! - Serde [`onedrive::Checkpoint`]s after every acknowledged fragment, and resume.
//! - Dropbox ([`dropbox`]): sequential and concurrent (N aligned appends in flight)
//!   upload sessions, batch commits with `finish_batch_v2`, every error of dropbox.md
//!   §11, `Dropbox-API-Arg` escaping with surrogate pairs, per-request and whole-file
//!   content hashes, checkpoints; see the [`dropbox`] module docs for its phases and
//!   drive loop.
//!
//! ## Out of scope
//! - Any I/O: sockets, TLS, files, timers, threads, clocks. Adapters own them.
//! - Token acquisition and refresh (the machine asks, the caller supplies).
//! - Parallel fragments within one OneDrive session (the protocol forbids them) and
//!   orchestration of many files (Dropbox batch commits are the building block).
//!
//! ## Phases (OneDrive)
//! ```text
//!  NeedToken ◀─401── Creating ──200──▶ Uploading ◀──202 next range──┐
//!                      │  ▲               │  │                     │
//!        409/412/507 ◀─┘  └─restart──┐    │  └─────────────────────┘
//!          (Failed)     404/401/expiry│    │ 416, 5xx, reset, timeout
//!                                    │    ▼      (Backoff first)
//!                                  Querying ──200──▶ Uploading at the server offset
//!                                    │ 200 []
//!   202 [] (deferCommit) ─▶ AwaitingCommit ─▶ Committing ─▶ 200/201 ─▶ Verifying ─▶ Done
//!   200/201 on the last fragment ───────────────────────────────────▶ Verifying
//!   cancel() ─▶ Cancelling (DELETE) ─▶ Cancelled
//! ```
//!
//! ## The drive loop
//! The adapter calls [`UploadMachine::poll_output`] until it returns `Wait` or
//! `Finished`, doing what each output says, and feeds every outcome back. Here a toy
//! in-memory "server" stands in for the network:
//!
//! ```
//! use bytes::Bytes;
//! use std::time::{Duration, Instant, SystemTime};
//! use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
//! use upload_session::{AccessToken, Output, UploadMachine};
//! # use upload_session::onedrive::QuickXorHash;
//! # /// A toy server that accepts every fragment in order.
//! # struct Toy { got: Vec<u8>, total: u64 }
//! # impl Toy {
//! #     fn handle(&mut self, req: http::Request<Bytes>) -> http::Response<Bytes> {
//! #         let json = |status: u16, v: serde_json::Value| {
//! #             let mut r = http::Response::new(Bytes::from(v.to_string()));
//! #             *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
//! #             r
//! #         };
//! #         if req.uri().path().ends_with("/createUploadSession") {
//! #             return json(200, serde_json::json!({
//! #                 "uploadUrl": "https://up.example/session?tempauth=x",
//! #                 "expirationDateTime": "2100-01-01T00:00:00Z",
//! #                 "nextExpectedRanges": ["0-"]}));
//! #         }
//! #         assert!(req.headers().get("authorization").is_none());
//! #         self.got.extend_from_slice(req.body());
//! #         if self.got.len() as u64 == self.total {
//! #             let mut h = QuickXorHash::new();
//! #             h.update(&self.got);
//! #             json(201, serde_json::json!({"id": "ITEM", "size": self.total,
//! #                 "file": {"hashes": {"quickXorHash": h.base64()}}}))
//! #         } else {
//! #             json(202, serde_json::json!({"nextExpectedRanges": [format!("{}-", self.got.len())]}))
//! #         }
//! #     }
//! # }
//!
//! let source = Bytes::from(vec![7u8; 1_000_000]);
//! let mut upload = OneDriveUpload::builder(Target::path("/docs/data.bin"), source.len() as u64)
//!     .fragment_size(327_680)
//!     .access_token(AccessToken::new("token").unwrap())
//!     .config(OneDriveConfig::default())
//!     .build()
//!     .unwrap();
//! # let mut server = Toy { got: Vec::new(), total: source.len() as u64 };
//!
//! let mut now = Instant::now();
//! upload.handle_wall_clock(now, SystemTime::now());
//! let completed = loop {
//!     match upload.poll_output(now) {
//!         Output::Send(req) => {
//!             let (id, request, _deadline) = req.into_parts();
//!             let response = server.handle(request); // the adapter's HTTP client
//!             upload.handle_response(now, id, response).unwrap();
//!         }
//!         Output::NeedData { offset, len } => {
//!             // Read the source; `Bytes::slice` shares, it does not copy.
//!             let data = source.slice(offset as usize..(offset + len) as usize);
//!             upload.provide_data(offset, data).unwrap();
//!         }
//!         Output::Event(event) => { let _ = event; /* log, persist checkpoints */ }
//!         Output::Wait(Some(deadline)) => {
//!             now = deadline; // a real adapter sleeps until then
//!             upload.handle_timeout(now);
//!         }
//!         Output::Wait(None) => unreachable!("this loop answers every request at once"),
//!         Output::Finished(result) => break result,
//!     }
//! };
//! let completed = completed.unwrap();
//! assert_eq!(completed.item.id, "ITEM");
//! assert!(completed.verification.quick_xor);
//! ```
//!
//! ## Guarantees
//! - Never more than one fragment in flight; never `Authorization` on an `uploadUrl`.
//! - Fragments are multiples of 327,680 bytes except the last, at most 62,914,560.
//! - At most one fragment of payload is held ([`Output::NeedData`] ranges are at most
//!   one fragment; the data is sliced, never copied).
//! - Server input never panics the machine; bad input gives a typed error or a resync.
//! - `Debug` never prints tokens, `uploadUrl`s or payloads.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod dropbox;
mod encoding;
pub mod error;
pub mod hash;
pub mod machine;
pub mod onedrive;
pub mod output;
pub mod range;
pub mod retry;
mod secret;
pub mod wallclock;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod testing;

pub use bytes;
pub use http;

pub use checkpoint::SourceFingerprint;
pub use error::{
    BuildError, HashAlgorithm, Misuse, ResumeError, RetryClass, ServiceCodes, UploadError,
};
pub use machine::UploadMachine;
pub use output::{Event, OutgoingRequest, Output, RequestId, RequestKind, TransportFailure};
pub use range::ByteRange;
pub use retry::RetryPolicy;
pub use secret::{AccessToken, InvalidToken, SecretString};
pub use wallclock::WallAnchor;
