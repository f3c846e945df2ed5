//! Dropbox API v2 upload sessions: [`DropboxUpload`] (sequential and concurrent
//! sessions) and [`BatchCommit`] (`finish_batch_v2`).
//!
//! Follows dropbox.md §11 (the distilled client machine) and never sends a request that
//! §12 (the strict server's rules) forbids.
//!
//! ## Phases of a [`DropboxUpload`]
//! ```text
//!   NeedToken ◀── 401 expired_access_token (any request; resent after set_access_token)
//!
//!   Starting ──start──▶ Uploading ───────────────────────────▶ Committing ──▶ Verifying ──▶ Done
//!     ▲  (seq: chunk 0,   │ seq: append at the confirmed offset    finish        size + content_hash
//!     │   closing when    │ conc: N aligned appends, closing last  (seq: last    vs FileMetadata
//!     │   it is the file) │ incorrect_offset{c}: landed / resend   chunk or
//!     │                   │   the tail / restart                   empty;
//!     │                   │ closed on a retried closing append:    conc: empty)
//!     │                   │   it landed                              │
//!     │                   ▼                                          │ answer not seen (5xx, lost,
//!     │   builder_for_batch: closing append ──▶ Closed               │ garbled): get_metadata ──▶
//!     │                              (ClosedSession)                 │  ours: Done; not ours: finish
//!     │                                                              ▼  again
//!     └──── restart: not_found, session near its 7-day end, offset behind confirmed data
//!           (at most max_restarts)
//!
//!   Backoff: 429 (max(Retry-After, retry_after, 1 s)), too_many_write_operations,
//!            5xx, timeouts, resets, content_hash_mismatch → wait, then re-issue
//!   Failed:  400, 403, other 401/409 (typed, with the tag chain), integrity, budgets
//! ```
//! The sequential plan is in [`sequential`], the concurrent one in [`concurrent`], the
//! batch commit in [`batch`].
//!
//! ## Wire rules the machine keeps (dropbox.md §1, §12)
//! - Upload routes on the content host, RPC routes (`finish_batch_v2`,
//!   `get_metadata`) on the API host; both hosts are configurable
//!   ([`DropboxConfig::with_hosts`]).
//! - `Dropbox-API-Arg` is printable ASCII: non-ASCII and DEL as `\uXXXX`, UTF-16
//!   surrogate pairs above U+FFFF ([`api_arg_json`]).
//! - `Content-Type: application/octet-stream` on every upload-style request, empty
//!   bodies included; `application/json` on RPC calls.
//! - `content_hash` on every request that carries data; chunks ≤ 150 MiB; concurrent
//!   offsets and non-final lengths multiples of 4 MiB; one batch commit at a time.
//!
//! ## Integrity
//! The whole-file content hash is built from the same 4 MiB block digests that make up
//! each request's `content_hash` (each computed once, even with appends in flight in any
//! order; see [`HashLedger`]) and compared with `FileMetadata.content_hash` and size.
//!
//! ## Example: the drive loop
//! ```
//! use bytes::Bytes;
//! use std::time::Instant;
//! use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload};
//! use upload_session::{AccessToken, Output, UploadMachine};
//! # /// A toy Dropbox that accepts everything in order.
//! # struct Toy { got: Vec<u8> }
//! # impl Toy {
//! #     fn handle(&mut self, req: http::Request<Bytes>) -> http::Response<Bytes> {
//! #         let ok = |body: String| {
//! #             let mut r = http::Response::new(Bytes::from(body));
//! #             r.headers_mut().insert("content-type", "application/json".parse().unwrap());
//! #             r
//! #         };
//! #         assert_eq!(req.headers()["content-type"], "application/octet-stream");
//! #         self.got.extend_from_slice(req.body());
//! #         let path = req.uri().path();
//! #         if path.ends_with("/start") {
//! #             ok(r#"{"session_id":"sid-1"}"#.into())
//! #         } else if path.ends_with("/append_v2") {
//! #             ok("null".into())
//! #         } else {
//! #             let hash = upload_session::dropbox::content_hash(&self.got);
//! #             ok(format!(r#"{{"name":"a.bin","id":"id:1","rev":"0123456789","size":{},"content_hash":"{hash}"}}"#, self.got.len()))
//! #         }
//! #     }
//! # }
//!
//! let source = Bytes::from(vec![7u8; 20_000_000]);
//! let mut upload = DropboxUpload::builder(CommitInfo::new("/docs/data.bin").unwrap(), source.len() as u64)
//!     .access_token(AccessToken::new("token").unwrap())
//!     .config(DropboxConfig::default())
//!     .build()
//!     .unwrap();
//! # let mut server = Toy { got: Vec::new() };
//!
//! let mut now = Instant::now();
//! let completed = loop {
//!     match upload.poll_output(now) {
//!         Output::Send(req) => {
//!             let (id, request, _deadline) = req.into_parts();
//!             let response = server.handle(request); // the adapter's HTTP client
//!             upload.handle_response(now, id, response).unwrap();
//!         }
//!         Output::NeedData { offset, len } => {
//!             // Bytes::slice shares the buffer: no copy.
//!             let data = source.slice(offset as usize..(offset + len) as usize);
//!             upload.provide_data(offset, data).unwrap();
//!         }
//!         Output::Event(event) => { let _ = event; /* log; persist checkpoints */ }
//!         Output::Wait(Some(deadline)) => {
//!             now = deadline; // a real adapter sleeps
//!             upload.handle_timeout(now);
//!         }
//!         Output::Wait(None) => unreachable!("every request is answered at once here"),
//!         Output::Finished(result) => break result,
//!     }
//! };
//! let completed = completed.unwrap();
//! assert_eq!(completed.metadata().unwrap().size, 20_000_000);
//! ```
//!
//! With a concurrent session the machine emits up to `parallelism` `Send`s before it
//! waits; the adapter sends them in parallel and reports each answer, in any order,
//! with its `RequestId`.

pub mod batch;
mod checkpoint;
mod commit;
pub mod concurrent;
mod config;
mod content_hash;
mod ledger;
pub mod limits;
mod metadata;
mod options;
mod pacing;
pub mod sequential;
mod upload;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub use batch::{BatchBuilder, BatchCommit, BatchEntry, BatchOutcome, BatchOutput, NoCheckpoint};
pub use checkpoint::Checkpoint;
pub use commit::{CommitInfo, Rev, WriteMode, validate_write_path};
pub use config::{API_BASE, CONTENT_BASE, DropboxConfig, PathRoot};
pub use content_hash::{
    BLOCK_SIZE, ContentHasher, EMPTY_CONTENT_HASH, block_digests, content_hash, hash_of_digests,
};
pub use ledger::HashLedger;
pub use metadata::{ClosedSession, Committed, Completed, FileMetadata};
pub use options::{SessionType, UploadOptions};
pub use upload::{Builder, DropboxUpload, Phase};
pub use wire::api_arg_json;

use crate::output::{Event, Output};
use crate::range::ByteRange;

/// The output type of a [`DropboxUpload`].
pub type DropboxOutput = Output<Completed, Checkpoint>;
/// The event type of a [`DropboxUpload`].
pub type DropboxEvent = Event<Checkpoint>;

/// Which route a planned request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Start,
    Append,
    Finish,
    /// `files/get_metadata`.
    Lookup,
}

/// A planned request: its route, the file bytes it carries (empty: none; the cursor
/// offset is the body's start), and whether it closes the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    pub kind: OpKind,
    pub body: ByteRange,
    pub close: bool,
    /// Concurrent sessions: the chunk index.
    pub chunk: Option<u64>,
}
