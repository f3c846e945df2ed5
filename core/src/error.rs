//! Errors: [`UploadError`] (what went wrong with the upload, with its [`RetryClass`]),
//! [`Misuse`] (what the caller did wrong), [`BuildError`] and [`ResumeError`].
//!
//! A misbehaving server is input, not a caller error: it moves the machine to retry,
//! resync, restart or fail, and shows up in events and in `Output::Finished(Err(..))`.
//! The `Result` of `handle_*`/`provide_data` only reports [`Misuse`].

use crate::output::{RequestId, TransportFailure};
use std::fmt;
use std::time::Duration;

/// How to react to an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Try the same thing again, after `after` when the server said so.
    Retry {
        /// The server's wait hint.
        after: Option<Duration>,
    },
    /// Ask the server where it stands, then continue from its offset (the offset, when
    /// the error already carries it).
    Resync {
        /// The server's offset, when known.
        offset: Option<u64>,
    },
    /// The server session is unusable: start a new one.
    RestartSession,
    /// Retrying cannot help.
    Fatal,
}

/// A hash algorithm used to verify an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// OneDrive QuickXorHash (onedrive.md §7).
    QuickXor,
    /// SHA-256.
    Sha256,
    /// Dropbox content hash (SHA-256 of the 4 MiB block digests, dropbox.md §8).
    DropboxContentHash,
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::QuickXor => "QuickXorHash",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::DropboxContentHash => "Dropbox content hash",
        })
    }
}

/// The error codes a service gave (outermost first; OneDrive `error.code` followed by
/// the nested `innerError` codes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCodes(pub Vec<String>);

impl ServiceCodes {
    /// True when any code in the chain equals `code`.
    pub fn has(&self, code: &str) -> bool {
        self.0.iter().any(|c| c == code)
    }

    /// The outermost code.
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }
}

impl fmt::Display for ServiceCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("no code")
        } else {
            f.write_str(&self.0.join("/"))
        }
    }
}

/// Why an upload failed, or why an attempt will be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The server throttled the request (429, or 503 "server too busy").
    #[error("throttled (HTTP {status}{})", fmt_after(*retry_after))]
    Throttled {
        /// HTTP status.
        status: u16,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A server-side failure (5xx, 423); the request may or may not have been applied.
    #[error("server error (HTTP {status}, {codes})")]
    ServerError {
        /// HTTP status.
        status: u16,
        /// Service error codes.
        codes: ServiceCodes,
    },
    /// The transport failed; the request may or may not have been applied.
    #[error("transport failure: {0}")]
    Transport(TransportFailure),
    /// The server's position differs from the request's (OneDrive 416).
    #[error("offset mismatch (server has {server:?}, request started at {sent})")]
    OffsetMismatch {
        /// The server's offset, when it said.
        server: Option<u64>,
        /// Where the request started.
        sent: u64,
    },
    /// The server does not know the session (OneDrive 404 on an `uploadUrl`).
    #[error("upload session not found")]
    SessionNotFound,
    /// The session is past its expiry (by the server's `expirationDateTime` or the
    /// configured maximum age).
    #[error("upload session expired")]
    SessionExpired,
    /// The server rejected the access token, or a pre-authenticated URL's own token
    /// expired.
    #[error("unauthorized ({codes})")]
    Unauthorized {
        /// Service error codes.
        codes: ServiceCodes,
    },
    /// A response the machine could not make sense of (bad JSON, missing fields).
    #[error("malformed response (HTTP {status}): {detail}")]
    MalformedResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// A name conflict or concurrent modification (HTTP 409).
    #[error("conflict ({codes})")]
    Conflict {
        /// Service error codes (OneDrive `nameAlreadyExists`, `resourceModified`).
        codes: ServiceCodes,
    },
    /// OneDrive createUploadSession kept answering 409 after creates whose outcome was
    /// unknown (a 5xx, or a lost answer), and no further wait is allowed.
    ///
    /// Such a create may have opened a session whose `uploadUrl` never arrived. On
    /// OneDrive for Business that session blocks the target until it expires, even with
    /// `replace` (onedrive.md §1.5), and the machine waits
    /// [`orphan_session_wait`](crate::onedrive::OneDriveConfig::orphan_session_wait) for
    /// it, at most
    /// [`max_orphan_waits`](crate::onedrive::OneDriveConfig::max_orphan_waits) times.
    /// Unlike [`UploadError::Conflict`], this does not prove the name is taken: trying
    /// again once the unknown session has expired (about 15 minutes) may succeed.
    #[error(
        "conflict ({codes}) right after a create whose answer was lost: a session this \
         upload never learned of may hold the target until it expires (waited {waits} times)"
    )]
    OrphanSessionConflict {
        /// Waits made for the unknown session to expire.
        waits: u32,
        /// Service error codes of the last 409 (`nameAlreadyExists`).
        codes: ServiceCodes,
    },
    /// An `If-Match` precondition failed (HTTP 412).
    #[error("precondition failed")]
    PreconditionFailed,
    /// Not enough storage (HTTP 507).
    #[error("insufficient storage ({codes})")]
    QuotaExceeded {
        /// Service error codes.
        codes: ServiceCodes,
    },
    /// The server refused the request for a reason retrying cannot fix.
    #[error("rejected (HTTP {status}, {codes})")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Service error codes.
        codes: ServiceCodes,
    },
    /// The server contradicted itself or what the machine sent (for example an offset
    /// beyond every byte sent, or a range outside the file).
    #[error("server contradiction: {detail}")]
    ServerContradiction {
        /// What was contradictory.
        detail: String,
    },
    /// The stored file has a different size than the source.
    #[error("size mismatch (source {expected} bytes, server {actual:?})")]
    SizeMismatch {
        /// Source size.
        expected: u64,
        /// What the server reported (`None`: it reported no size).
        actual: Option<u64>,
    },
    /// The stored file's hash differs from the source's.
    #[error("{algorithm} mismatch (source {expected}, server {actual})")]
    HashMismatch {
        /// Which hash.
        algorithm: HashAlgorithm,
        /// The source's digest, as the server encodes it.
        expected: String,
        /// The server's digest.
        actual: String,
    },
    /// The retry budget ran out.
    #[error("gave up after {attempts} attempts over {elapsed:?}; last error: {last}")]
    TooManyRetries {
        /// Failures counted at the last offset.
        attempts: u32,
        /// Time since the first of them.
        elapsed: Duration,
        /// The last failure.
        last: Box<UploadError>,
    },
    /// Too many sessions were abandoned and recreated.
    #[error("gave up after {restarts} session restarts; last cause: {last}")]
    TooManyRestarts {
        /// Restarts made.
        restarts: u32,
        /// The last cause.
        last: Box<UploadError>,
    },
    /// A bug in this crate: the machine reached a state it cannot leave. Please report
    /// it; the upload cannot continue.
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong.
        detail: &'static str,
    },
    /// Namespace lock contention (Dropbox `too_many_write_operations`, as a 429 reason
    /// or a 409 tag): wait, then retry.
    #[error("write contention (HTTP {status}{})", fmt_after(*retry_after))]
    WriteContention {
        /// HTTP status (429 or 409).
        status: u16,
        /// How long the machine waits.
        retry_after: Option<Duration>,
    },
    /// The server says the session is closed (Dropbox `closed`) where the machine had
    /// not closed it.
    #[error("upload session closed")]
    SessionClosed,
    /// The server found that a request body does not match its `content_hash` (Dropbox
    /// `content_hash_mismatch`: corrupted in transit); the body is sent again.
    #[error("request body does not match its content hash")]
    RequestHashRejected,
    /// A bad request whose body is plain text, not a code (Dropbox 400: the text says
    /// what the server disliked).
    #[error("bad request (HTTP {status}): {message}")]
    BadRequest {
        /// HTTP status.
        status: u16,
        /// The server's text (truncated).
        message: String,
    },
    /// The server handed out an upload URL the machine refuses to send file bytes to
    /// (a OneDrive `uploadUrl` that is not `https`, nor plain `http` to a loopback host
    /// or to the configured plain-`http` Graph host, or that carries user info; see
    /// the crate docs, "Hostile input"). Retrying cannot help. The URL is not shown: it
    /// embeds a bearer-equivalent token (onedrive.md §1.4).
    #[error("untrusted upload URL: {reason}")]
    UntrustedUploadUrl {
        /// Which rule the URL broke.
        reason: &'static str,
    },
    /// The upload was cancelled by the caller.
    #[error("cancelled (server session deleted: {session_deleted})")]
    Cancelled {
        /// True when no server session is left behind (deleted, or never created).
        session_deleted: bool,
    },
}

fn fmt_after(d: Option<Duration>) -> String {
    d.map(|d| format!(", retry after {d:?}"))
        .unwrap_or_default()
}

impl UploadError {
    /// Returns how to react to this error.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use upload_session::{RetryClass, UploadError};
    /// let e = UploadError::Throttled { status: 429, retry_after: Some(Duration::from_secs(41)) };
    /// assert_eq!(e.class(), RetryClass::Retry { after: Some(Duration::from_secs(41)) });
    /// assert_eq!(UploadError::SessionNotFound.class(), RetryClass::RestartSession);
    /// ```
    pub fn class(&self) -> RetryClass {
        match self {
            UploadError::Throttled { retry_after, .. }
            | UploadError::WriteContention { retry_after, .. } => RetryClass::Retry {
                after: *retry_after,
            },
            UploadError::RequestHashRejected => RetryClass::Retry { after: None },
            UploadError::SessionClosed => RetryClass::RestartSession,
            UploadError::BadRequest { .. } => RetryClass::Fatal,
            UploadError::ServerError { .. } | UploadError::Transport(_) => {
                RetryClass::Resync { offset: None }
            }
            UploadError::OffsetMismatch { server, .. } => RetryClass::Resync { offset: *server },
            UploadError::MalformedResponse { .. } => RetryClass::Resync { offset: None },
            UploadError::SessionNotFound | UploadError::SessionExpired => {
                RetryClass::RestartSession
            }
            UploadError::Unauthorized { .. } => RetryClass::RestartSession,
            UploadError::Conflict { .. }
            | UploadError::OrphanSessionConflict { .. }
            | UploadError::PreconditionFailed
            | UploadError::QuotaExceeded { .. }
            | UploadError::Rejected { .. }
            | UploadError::ServerContradiction { .. }
            | UploadError::SizeMismatch { .. }
            | UploadError::HashMismatch { .. }
            | UploadError::TooManyRetries { .. }
            | UploadError::TooManyRestarts { .. }
            | UploadError::Internal { .. }
            | UploadError::UntrustedUploadUrl { .. }
            | UploadError::Cancelled { .. } => RetryClass::Fatal,
        }
    }

    /// True for errors that mean the stored file is not the source (integrity).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            UploadError::SizeMismatch { .. } | UploadError::HashMismatch { .. }
        )
    }
}

/// A caller broke the machine's contract. The machine's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// The id was never issued by this machine.
    #[error("unknown request id {0}")]
    UnknownRequest(RequestId),
    /// Data was provided although the machine did not ask for any.
    #[error("data at {offset} ({len} bytes) was not asked for")]
    UnexpectedData {
        /// Offset given.
        offset: u64,
        /// Length given.
        len: u64,
    },
    /// Data was provided for a different range than the one asked for.
    #[error(
        "data at {offset} ({len} bytes) does not match the request for {wanted_len} bytes at {wanted_offset}"
    )]
    WrongData {
        /// Offset given.
        offset: u64,
        /// Length given.
        len: u64,
        /// Offset asked for.
        wanted_offset: u64,
        /// Length asked for.
        wanted_len: u64,
    },
    /// The operation needs a state the machine is not in (for example `commit` before
    /// all bytes are in).
    #[error("not possible now: {0}")]
    NotNow(&'static str),
}

impl Misuse {
    /// `Ok` when data for `offset..offset + len` is exactly `range`, the range a
    /// `NeedData` asked for; else [`Misuse::WrongData`]. Shared by every machine.
    pub(crate) fn check_data(
        range: crate::range::ByteRange,
        offset: u64,
        len: u64,
    ) -> Result<(), Misuse> {
        if offset != range.start() || len != range.len() {
            return Err(Misuse::WrongData {
                offset,
                len,
                wanted_offset: range.start(),
                wanted_len: range.len(),
            });
        }
        Ok(())
    }
}

/// An upload cannot be built as configured. Every variant says what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A chunk (fragment) size of zero.
    #[error("chunk size must not be zero")]
    ChunkSizeZero,
    /// A chunk size that is not a multiple of the protocol's unit.
    #[error("chunk size {size} is not a multiple of {multiple} (nearest below: {nearest_below})")]
    ChunkSizeNotMultiple {
        /// Size given.
        size: u64,
        /// Required multiple.
        multiple: u64,
        /// The largest valid size below it (0 when none).
        nearest_below: u64,
    },
    /// A chunk size above the protocol's maximum.
    #[error("chunk size {size} exceeds the maximum {max}")]
    ChunkSizeTooLarge {
        /// Size given.
        size: u64,
        /// Maximum.
        max: u64,
    },
    /// A file larger than the configured maximum.
    #[error("file size {size} exceeds the maximum {max}")]
    FileTooLarge {
        /// Size given.
        size: u64,
        /// Maximum.
        max: u64,
    },
    /// A path or name that cannot be addressed.
    #[error("invalid path or name {value:?}: {reason}")]
    InvalidPath {
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// An id (drive, item, site, user, group) that is empty or has control characters.
    #[error("invalid id {value:?}")]
    InvalidId {
        /// The value.
        value: String,
    },
    /// A base URL that is not absolute `http(s)://host[/path]`.
    #[error("invalid base URL {value:?}")]
    InvalidBaseUrl {
        /// The value.
        value: String,
    },
    /// An option whose value cannot be sent.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Which option.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The source fingerprint's size differs from the upload size.
    #[error("fingerprint size {fingerprint} differs from the upload size {size}")]
    FingerprintSize {
        /// Fingerprint size.
        fingerprint: u64,
        /// Upload size.
        size: u64,
    },
}

/// A checkpoint cannot be resumed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The source changed since the checkpoint (size or modification stamp differ).
    #[error("the source changed since the checkpoint")]
    SourceChanged,
    /// The checkpoint comes from an incompatible version of this crate.
    #[error("unsupported checkpoint version {0}")]
    UnsupportedVersion(u32),
    /// The checkpoint's fields contradict each other.
    #[error("inconsistent checkpoint: {0}")]
    Inconsistent(&'static str),
    /// The checkpoint's options are invalid.
    #[error("invalid options in checkpoint: {0}")]
    Options(#[from] BuildError),
}
