//! What a machine asks its adapter to do: [`Output`], [`Event`], [`OutgoingRequest`].

use crate::error::UploadError;
use crate::range::ByteRange;
use crate::secret::redacted_uri;
use bytes::Bytes;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// An opaque id of one request the machine asked to send. Responses and failures are
/// reported with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

/// What a request is for (for logs, metrics and adapter policies such as which HTTP
/// client to use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// Opens an upload session (OneDrive `createUploadSession`).
    CreateSession,
    /// Carries file bytes (OneDrive fragment `PUT`).
    UploadData {
        /// The bytes of the file it carries.
        range: ByteRange,
    },
    /// Asks where the server stands (OneDrive status `GET`).
    QueryStatus,
    /// Finishes a session (OneDrive deferCommit `POST`).
    Commit,
    /// Deletes a session (OneDrive `DELETE`).
    Cancel,
    /// Reads the uploaded item's metadata (to verify or complete an upload).
    Metadata,
    /// Uploads a whole (empty) file in one request (OneDrive `PUT …/content`).
    SimpleUpload,
    /// Commits several closed sessions at once (Dropbox `finish_batch_v2`).
    BatchCommit {
        /// Number of entries.
        entries: usize,
    },
}

/// A request the adapter must send.
///
/// The adapter sends [`request`](Self::request) as it is (method, URI, headers, body)
/// and reports the outcome with the machine's `handle_response` or `handle_failure`,
/// passing [`id`](Self::id). It SHOULD give up at [`deadline`](Self::deadline) and report
/// [`TransportFailure::TimedOut`].
#[must_use]
pub struct OutgoingRequest {
    pub(crate) id: RequestId,
    pub(crate) kind: RequestKind,
    pub(crate) request: http::Request<Bytes>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) secret_uri: bool,
}

impl OutgoingRequest {
    /// The id to report the outcome with.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// What the request is for.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The request to send.
    pub fn request(&self) -> &http::Request<Bytes> {
        &self.request
    }

    /// When the adapter should stop waiting and report a timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True when the URI is a pre-authenticated URL that must not be logged.
    pub fn has_secret_uri(&self) -> bool {
        self.secret_uri
    }

    /// Takes the request out (the body is a cheap `Bytes` handle, never a copy).
    pub fn into_request(self) -> http::Request<Bytes> {
        self.request
    }

    /// Splits into id, request and deadline.
    pub fn into_parts(self) -> (RequestId, http::Request<Bytes>, Option<Instant>) {
        (self.id, self.request, self.deadline)
    }
}

impl fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.request.headers().keys().map(|k| k.as_str()).collect();
        f.debug_struct("OutgoingRequest")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("method", self.request.method())
            .field("uri", &redacted_uri(self.request.uri(), self.secret_uri))
            .field("headers", &headers)
            .field("body_len", &self.request.body().len())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A transport-level failure, reported by the adapter instead of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportFailure {
    /// The connection could not be established (the request never reached the server).
    #[error("could not connect")]
    Connect,
    /// No complete response before the deadline (the request may have been applied).
    #[error("timed out")]
    TimedOut,
    /// The connection was reset while sending or receiving.
    #[error("connection reset")]
    Reset,
    /// The connection closed before a response arrived (the request may have been
    /// applied).
    #[error("connection closed without a response")]
    Closed,
    /// The response body exceeded what the adapter buffers.
    #[error("response too large")]
    ResponseTooLarge,
    /// Any other I/O failure.
    #[error("transport error")]
    Other,
}

/// Something the adapter may log or act on; the machine keeps going after it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event<K> {
    /// A new server session exists.
    SessionCreated {
        /// When the server said it expires (wall clock), if it said.
        expires_at: Option<SystemTime>,
    },
    /// The server acknowledged bytes up to `acknowledged`.
    Progress {
        /// Bytes the server holds, counted from the start of the file.
        acknowledged: u64,
        /// File size.
        total: u64,
    },
    /// A snapshot to persist; resuming from it continues this upload (emitted after
    /// every acknowledged fragment).
    Checkpoint(K),
    /// A failure will be retried after `delay`.
    RetryScheduled {
        /// What failed.
        cause: UploadError,
        /// Failures counted at the current offset, this one included.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// The server's offset differed from the one the machine expected; it continues from
    /// the server's.
    Resynced {
        /// Where the machine expected the server to be.
        expected: u64,
        /// Where the server is.
        server: u64,
    },
    /// The session was abandoned and a new one will be created (its bytes are sent
    /// again; hashing is not repeated).
    SessionRestarted {
        /// Why.
        cause: UploadError,
        /// Restarts so far, this one included.
        restarts: u32,
    },
    /// The machine needs a (new) access token: call `set_access_token`. Nothing that
    /// needs the token happens until then.
    TokenNeeded,
    /// All bytes are in and the commit waits for the caller (OneDrive
    /// `DeferCommit::Manual`): call `commit`.
    ReadyToCommit,
    /// A response or failure for a request the machine no longer waits for (superseded
    /// by a failure report or a cancel) was dropped.
    StaleResponse {
        /// The request.
        id: RequestId,
    },
}

/// The next thing the adapter must do. See the crate docs for the drive loop.
#[derive(Debug)]
#[must_use]
// `Send` is the big variant and the common one; each output is consumed at once.
#[allow(clippy::large_enum_variant)]
pub enum Output<C, K> {
    /// Send this request; report its outcome with `handle_response`/`handle_failure`.
    Send(OutgoingRequest),
    /// Read `len` bytes of the source at `offset` and hand them to `provide_data`. May
    /// come while requests are in flight (read-ahead); see the
    /// [`UploadMachine`](crate::UploadMachine) contract.
    NeedData {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
    /// Log or act on this, then poll again.
    Event(Event<K>),
    /// Nothing to do until this instant (then call `handle_timeout`), or, with `None`,
    /// until a response, a failure or a caller command arrives.
    Wait(Option<Instant>),
    /// The upload is over; polling again returns the same result.
    Finished(Result<C, UploadError>),
}
