//! [`AdapterError`]: why an adapter's upload stopped.

use crate::{BuildError, Misuse, ResumeError, UploadError};
use std::io;
use std::path::{Path, PathBuf};

/// Why an adapter's upload (or one of its helpers) did not return a completed upload.
///
/// The core's verdict on the upload itself is [`AdapterError::Upload`] (the machine's
/// [`UploadError`], with its [`RetryClass`](crate::RetryClass)); everything else is
/// about the adapter's side of things: the source, the caller's handles, TLS, the
/// checkpoint file. Both adapters (`upload-session-blocking` and `upload-session-async`)
/// re-export this type as their `Error`. No variant's `Display` or `Debug` shows a token
/// or a pre-authenticated URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The machine finished with an error (after its own retries, resyncs and restarts).
    #[error("upload failed: {0}")]
    Upload(#[from] UploadError),

    /// The source changed while it was being uploaded: its size or modification stamp
    /// differs from when the upload started, or it ended before its declared size
    /// (rclone#9704). The upload was stopped before its last byte was handed over, so
    /// nothing was committed; the server session was deleted (when it could be) and the
    /// checkpoint file removed.
    #[error("the source changed during the upload: {detail}; nothing was committed")]
    SourceChanged {
        /// What differed.
        detail: String,
    },

    /// Reading the source failed. The checkpoint (if any) is kept: the upload can be
    /// resumed once the source is readable again.
    #[error("reading the source failed: {0}")]
    Source(#[source] io::Error),

    /// The machine asked for bytes a plain (forward-only) reader source can no longer
    /// produce (it keeps only the last fragment it read). Use a seekable source for
    /// uploads that may need to go back further (a session restart sends everything
    /// again).
    #[error(
        "a plain reader cannot go back to byte {offset} (it keeps bytes from {buffered_from} on)"
    )]
    SourceNotRewindable {
        /// Offset asked for.
        offset: u64,
        /// The first byte still available.
        buffered_from: u64,
    },

    /// The adapter's cancel handle (blocking: `CancelHandle`, async:
    /// `CancellationToken`) was triggered. The server session is kept, so the upload can
    /// be resumed from the latest checkpoint.
    #[error("cancelled{}", match .checkpoint { Some(p) => format!(" (checkpoint saved in {})", p.display()), None => String::new() })]
    Cancelled {
        /// The checkpoint file, when one was configured and written at least once.
        checkpoint: Option<PathBuf>,
    },

    /// A request would have gone over plain `http://` to a host that is not loopback
    /// and insecure HTTP was not allowed (the adapters' `Upload::allow_insecure_http`;
    /// see [`check_scheme`](super::check_scheme)).
    #[error(
        "refusing plain http to {host}: use https, a loopback host, or allow insecure http explicitly"
    )]
    InsecureUrl {
        /// The host the request was for.
        host: String,
    },

    /// The machine needs an access token and no token provider gave one.
    #[error("no access token: {reason}")]
    TokenUnavailable {
        /// Why (no provider configured, or the provider's own message).
        reason: String,
    },

    /// TLS failed (an untrusted or invalid certificate, a bad PEM, a handshake the peer
    /// refused). Retrying cannot fix a certificate, so this stops the upload at once.
    #[error("TLS failure: {0}")]
    Tls(String),

    /// A request could not be sent at all (an unsupported scheme, an invalid header).
    #[error("request cannot be sent: {0}")]
    Request(String),

    /// Reading or writing the checkpoint file failed.
    #[error("checkpoint file {}: {detail}", .path.display())]
    CheckpointFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// The checkpoint cannot be resumed (the source changed since it was taken, or it is
    /// inconsistent or from another version).
    #[error("cannot resume: {0}")]
    Resume(#[from] ResumeError),

    /// The upload cannot be built as configured.
    #[error("cannot start: {0}")]
    Build(#[from] BuildError),

    /// The machine waits for a caller command this driver does not give (for example
    /// OneDrive `DeferCommit::Manual`, which needs an explicit `commit`).
    #[error("the upload waits for a caller command this driver does not give: {0}")]
    Stalled(&'static str),

    /// The driver broke the machine's contract: a bug in the adapter.
    #[error("adapter bug: {0}")]
    Misuse(#[from] Misuse),
}

impl AdapterError {
    /// True when the upload can be continued later from its checkpoint: it was
    /// cancelled, the source could not be read, or the machine gave up on retries.
    ///
    /// # Examples
    /// ```
    /// use upload_session::driver::AdapterError;
    /// assert!(AdapterError::Cancelled { checkpoint: None }.is_resumable());
    /// assert!(!AdapterError::Tls("unknown issuer".into()).is_resumable());
    /// ```
    pub fn is_resumable(&self) -> bool {
        match self {
            AdapterError::Cancelled { .. }
            | AdapterError::Source(_)
            | AdapterError::SourceNotRewindable { .. } => true,
            AdapterError::Upload(e) => matches!(
                e,
                UploadError::TooManyRetries { .. } | UploadError::TooManyRestarts { .. }
            ),
            _ => false,
        }
    }

    /// [`AdapterError::CheckpointFile`] for `path`.
    pub fn checkpoint_file(path: &Path, detail: impl ToString) -> Self {
        AdapterError::CheckpointFile {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }

    /// [`AdapterError::SourceChanged`] with `detail`.
    pub fn source_changed(detail: impl Into<String>) -> Self {
        AdapterError::SourceChanged {
            detail: detail.into(),
        }
    }
}
