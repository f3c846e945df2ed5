//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API:
//! it exposes the crate-private response parsers so the targets can feed them any body
//! and check their bounds (no panic, bounded output) without going through a machine.

use crate::dropbox::wire as dbx;
use crate::onedrive::wire as od;
use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// What the OneDrive parsers made of one body.
#[derive(Debug, Default)]
pub struct OneDriveParsed {
    /// `parse_session`: `uploadUrl`, `expirationDateTime` and the ranges as
    /// `(start, end_inclusive)`, or the error text.
    pub session: Option<Result<SessionSummary, String>>,
    /// `parse_finished` found an item with an id.
    pub finished_item: bool,
    /// `parse_item`: the item id, or the error text.
    pub item: Option<Result<String, String>>,
    /// `error_codes`: the code chain.
    pub codes: Vec<String>,
    /// `Retry-After` as the OneDrive machine reads it, as a delay from `wall_now`.
    pub retry_after: Option<Duration>,
}

/// An uploadSession body, summarised.
#[derive(Debug, Default)]
pub struct SessionSummary {
    /// `uploadUrl`.
    pub upload_url: Option<String>,
    /// `expirationDateTime` (raw) and whether it parsed as RFC 3339.
    pub expiration: Option<(String, bool)>,
    /// `nextExpectedRanges` as `(start, end_inclusive)`.
    pub ranges: Option<Vec<(u64, Option<u64>)>>,
}

/// Runs every OneDrive response parser over `body` (bodies above `cap` are refused as
/// the machine refuses them) and the `Retry-After` reading over `headers`.
pub fn onedrive_parse(
    body: &[u8],
    headers: &HeaderMap,
    cap: usize,
    wall_now: SystemTime,
) -> OneDriveParsed {
    let session = od::parse_session(body, cap).map(|s| SessionSummary {
        expiration: s.expiration.map(|e| {
            let ok = crate::wallclock::parse_rfc3339(&e).is_some();
            (e, ok)
        }),
        upload_url: s.upload_url,
        ranges: s
            .ranges
            .map(|v| v.iter().map(|r| (r.start, r.end_inclusive)).collect()),
    });
    let finished_item = matches!(od::parse_finished(body, cap), od::Finished::Item(_));
    let item = od::parse_item(body, cap).map(|i| i.id);
    let codes = od::error_codes(body, cap).0;
    let retry_after = od::header_str(headers, "retry-after")
        .and_then(crate::wallclock::RetryAfter::parse)
        .map(|r| r.delay_from(wall_now));
    OneDriveParsed {
        session: Some(session),
        finished_item,
        item: Some(item),
        codes,
        retry_after,
    }
}

/// One `finish_batch_v2` entry: `Ok(size)` for a success, `Err(tags)` for a failure.
pub type BatchEntry = Result<u64, Vec<String>>;

/// What the Dropbox parsers made of one body.
#[derive(Debug, Default)]
pub struct DropboxParsed {
    /// `parse_session_id`.
    pub session_id: Option<Result<String, String>>,
    /// `parse_metadata`: `(size, content_hash)`, or the error text.
    pub metadata: Option<Result<(u64, Option<String>), String>>,
    /// `parse_batch_result` for `expected` entries: per entry, `Ok(size)` for a success
    /// or `Err(tags)` for a failure.
    pub batch: Option<Result<Vec<BatchEntry>, String>>,
    /// `ApiError::parse`: the tag chain.
    pub tags: Vec<String>,
    /// `ApiError::parse`: `correct_offset`.
    pub correct_offset: Option<u64>,
    /// `ApiError::parse`: body `retry_after`.
    pub body_retry_after: Option<Duration>,
    /// `ApiError::parse`: the kept text of a non-JSON body.
    pub text: Option<String>,
    /// `retry_after_secs` over the headers.
    pub header_retry_after: Option<Duration>,
}

/// Runs every Dropbox response parser over `body` and the `Retry-After` reading over
/// `headers`; a batch result is parsed as the answer to `expected` entries.
pub fn dropbox_parse(
    body: &[u8],
    headers: &HeaderMap,
    cap: usize,
    expected: usize,
) -> DropboxParsed {
    let session_id = dbx::parse_session_id(body, cap);
    let metadata = dbx::parse_metadata(body, cap).map(|m| (m.size, m.content_hash));
    let batch = dbx::parse_batch_result(body, cap, expected).map(|v| {
        v.into_iter()
            .map(|e| match e {
                dbx::BatchEntryResult::Success(m) => Ok(m.size),
                dbx::BatchEntryResult::Failure(a) => Err(a.tags.0),
            })
            .collect()
    });
    let e = dbx::ApiError::parse(body, cap);
    DropboxParsed {
        session_id: Some(session_id),
        metadata: Some(metadata),
        batch: Some(batch),
        tags: e.tags.0,
        correct_offset: e.correct_offset,
        body_retry_after: e.retry_after,
        text: e.text,
        header_retry_after: dbx::retry_after_secs(headers),
    }
}
