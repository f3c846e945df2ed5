//! Counters of client rule violations.
//!
//! A violation is a request that a correct client would never send, given everything the
//! server has told it so far. Requests that are wrong only because the client could not
//! know better (an offset mismatch right after a lost response, a `closed` after a
//! retried closing append whose answer was lost) are answered with the same error but
//! are **not** counted: they are the normal resync paths of the protocol.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One kind of client rule violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Violation {
    // ---- shared -------------------------------------------------------------------
    /// No bearer token where one is required.
    MissingAuthorization,
    /// A malformed `Authorization` header, or an unknown token.
    BadAuthorization,
    /// A token the server had already reported as expired was used again.
    ExpiredTokenReused,
    /// Unknown route, or a known route with the wrong method.
    UnknownRoute,
    /// Request body larger than the route allows.
    OversizeBody,
    /// `Content-Length` missing where required, or different from the body.
    ContentLengthMismatch,
    /// A request body that was cut short by the client (connection closed early).
    TruncatedBody,
    /// Request JSON (body or header) malformed, with unknown, missing or mistyped fields.
    MalformedArgument,
    // ---- OneDrive -----------------------------------------------------------------
    /// `Authorization` header sent to an `uploadUrl` (onedrive §11 rule 11).
    AuthorizationOnUploadUrl,
    /// Upload URL with a tampered token/query (rule 12).
    TamperedUploadUrl,
    /// createUploadSession body that the service rejects (rules 3, 4, 5).
    BadCreateRequest,
    /// Missing or malformed `Content-Range` (rules 13, 14, 15).
    BadContentRange,
    /// TOTAL differs from the session's (rule 17).
    TotalMismatch,
    /// Fragment larger than the maximum (rule 18).
    FragmentTooLarge,
    /// Fragment starts before the first missing byte although the server had told the
    /// client where to continue (rule 19).
    FragmentOverlap,
    /// Fragment starts after the first missing byte (rule 20).
    FragmentOutOfOrder,
    /// Non-final fragment not ending on a 320 KiB boundary (rule 21).
    MisalignedFragment,
    /// Second PUT while one is in flight on the same session (rule 23).
    ConcurrentFragment,
    /// Commit POST that is not allowed (rule 31).
    BadCommit,
    /// A request to a session the server had already reported as gone, or one used after
    /// its `expirationDateTime` (rules 34-36).
    DeadSessionUsed,
    /// Zero-length session (rule 38).
    ZeroLengthSession,
    // ---- Dropbox ------------------------------------------------------------------
    /// Upload route on the api host or RPC route on the content host (rule 3).
    WrongHost,
    /// `Content-Type` not exactly as required (rules 7, 8).
    BadContentType,
    /// `Dropbox-API-Arg` missing or given twice (rule 9).
    MissingArgument,
    /// `Dropbox-API-Arg` with bytes outside 0x20-0x7E (rule 10).
    NonAsciiApiArg,
    /// `content_hash` malformed (rule 17).
    BadContentHashFormat,
    /// `content_hash` that does not match the body (rule 30).
    ContentHashMismatch,
    /// Invalid commit path, rev or timestamp (rules 18, 19, 20).
    BadCommitInfo,
    /// Concurrent start carrying data or `close` (rules 28, 29).
    ConcurrentStartMisuse,
    /// Sequential offset wrong although the client knew the right one (rules 33, 43, 48).
    WrongOffset,
    /// Append to a closed session (rules 34, 42, 44) when the client knew it was closed.
    AppendAfterClose,
    /// Concurrent append offset or size not aligned to 4 MiB (rules 38, 39).
    ConcurrentMisaligned,
    /// Concurrent append overlapping stored data with different bytes (rule 41).
    ConcurrentOverlapMismatch,
    /// Finish of a concurrent session that carried data, was not closed or has gaps
    /// (rules 45-47).
    ConcurrentFinishMisuse,
    /// Session used after it was committed or expired (rules 31, 57).
    SessionReused,
    /// Batch with an invalid size (rules 59, 60, 65).
    BadBatch,
    /// Batch commit started while another one for the same account was running (rule 63).
    OverlappingBatchCommit,
    /// Batch commit entry whose session was never closed (dropbox rule 62).
    BatchSessionNotClosed,
}

/// Per-kind counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    counts: BTreeMap<Violation, u64>,
}

impl Violations {
    /// Records one violation.
    pub fn record(&mut self, v: Violation) {
        *self.counts.entry(v).or_insert(0) += 1;
    }

    /// Returns the count for one kind.
    pub fn count(&self, v: Violation) -> u64 {
        self.counts.get(&v).copied().unwrap_or(0)
    }

    /// Returns the total over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Returns true when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Iterates over the non-zero counters.
    pub fn iter(&self) -> impl Iterator<Item = (Violation, u64)> + '_ {
        self.counts.iter().map(|(k, v)| (*k, *v))
    }

    /// Clears every counter.
    pub fn clear(&mut self) {
        self.counts.clear();
    }
}
