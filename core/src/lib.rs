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
//! - What every adapter needs, as pure helpers ([`driver`]): the adapters' error type,
//!   the checkpoint file format, resume-or-start, progress, the scheme policy.
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

//!
//! ## Hostile input
//! What a remote server, a proxy or an attacker can send, and what a caller can
//! configure, ends in a typed error or one of the documented clamps below, never a
//! panic, a hang or an unbounded allocation. Each line is proven by a named test in
//! `core/tests/hostile_inputs.rs` (issue 7); the blocking adapter's transport cases are
//! in `adapter-blocking/tests/hostile_transport.rs`.
//! - **Malformed or truncated JSON** (every response kind): never trusted. A garbled
//!   create, `start`, status, item or metadata answer is [`UploadError::MalformedResponse`],
//!   retried within the budget (a OneDrive 202 or a Dropbox finish in doubt is followed
//!   by a status query / a lookup); a garbled error body keeps its status with empty
//!   codes. A Dropbox append's `null` result is not parsed. Bodies over
//!   `max_response_body` (1 MiB by default, must be positive) are not parsed; JSON
//!   nesting is bounded by serde_json's recursion limit and tag chains by a fixed depth.
//! - **Announced `Content-Length`** (10 GiB on a small body): the core never reads a
//!   response's `Content-Length`; it sees only the body the adapter hands over, which
//!   adapters read with a cap (`TransportFailure::ResponseTooLarge` beyond it).
//! - **Wrong JSON types** (numbers as strings, floats, `null`, arrays for objects, huge
//!   numbers): a value of the wrong type is an absent value. Absent required fields are
//!   malformed; a size of the wrong type is no size ([`UploadError::SizeMismatch`] with
//!   `actual: None`); a hash of the wrong type is unreported (not verified, never a
//!   match). Duplicated keys: the last one wins (serde_json) and is checked like any
//!   other value.
//! - **Negative or overflowing offsets** (`"-5-"`, `"18446744073709551616-"`,
//!   `correct_offset: -1` or `2^64`): malformed, retried. `u64::MAX` and any offset at
//!   or beyond the file size or beyond every byte sent: [`UploadError::ServerContradiction`].
//! - **Offsets going backwards** (behind what the server confirmed): OneDrive resends
//!   from there within the retry budget, which resets only on progress; Dropbox abandons
//!   the session (restart, within `max_restarts`). Many ranges: only the first is used.
//! - **`Retry-After`** (ten years, `u64::MAX` s, an HTTP-date in year 9999): clamped to
//!   [`RetryPolicy::max_retry_after`] (1 h by default) and never above
//!   [`retry::MAX_WAIT`] (24 h) whatever the policy says; a wait that would end beyond
//!   `max_elapsed` gives up at once with [`UploadError::TooManyRetries`]. A date in the
//!   past means now (Dropbox: never below `min_throttle_wait`, 1 s); garbage, negative or
//!   duplicated values are no hint (the exponential schedule applies). Dropbox's body
//!   `retry_after` is treated the same, and the reported wait is the clamped one.
//! - **CR/LF and NUL in paths and names**: OneDrive paths, names and ids with control
//!   characters, and `If-Match` values outside visible ASCII, are a [`BuildError`];
//!   a description travels in the JSON body. Dropbox paths may hold them (the spec's
//!   `WritePathOrId` allows them): `Dropbox-API-Arg` escapes every byte outside
//!   printable ASCII, so no header ever carries a raw control byte. Tokens, team
//!   headers and base URLs with control characters are refused.
//! - **An `uploadUrl` that is not https and not loopback**: a OneDrive `uploadUrl`
//!   must be `https`, or plain `http` to a loopback host or to the configured
//!   plain-`http` Graph host and port, and must carry no user info; otherwise
//!   [`UploadError::UntrustedUploadUrl`] (fatal, nothing sent there). A relative or
//!   unparseable URL is malformed (the create is retried). The same policy applies to
//!   the URL of a resumed checkpoint ([`ResumeError::Inconsistent`]). `Authorization`
//!   never goes to an `uploadUrl`, whatever its host. Callers who want file bytes to
//!   reach only named hosts list them in `OneDriveConfig::upload_url_hosts` (opt-in:
//!   the service names its own upload hosts).
//! - **Options out of range**: fragment/chunk sizes (zero, unaligned, above 60 MiB /
//!   150 MiB / 148 MiB concurrent), parallelism outside `1..=64`, files above the
//!   service limit, batch groups outside `1..=1000`, a zero `request_timeout` or
//!   `max_response_body`: a [`BuildError`]. A zero retry or restart budget is valid and
//!   means "give up at the first failure"; an expiry margin longer than a session ends
//!   in [`UploadError::TooManyRestarts`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod driver;
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
