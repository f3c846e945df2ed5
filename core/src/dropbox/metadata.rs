//! The committed file's `FileMetadata` (dropbox.md §5) and what a finished upload yields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The `FileMetadata` the server reported for a committed file: the fields the machine
/// uses, plus the whole JSON in [`raw`](Self::raw).
#[derive(Clone, PartialEq)]
pub struct FileMetadata {
    /// Last path component (after autorename: the name the server chose).
    pub name: String,
    /// `id:…`.
    pub id: String,
    /// Revision.
    pub rev: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercased path, when reported.
    pub path_lower: Option<String>,
    /// Path as displayed, when reported.
    pub path_display: Option<String>,
    /// Dropbox content hash of the whole file (hex), when reported.
    pub content_hash: Option<String>,
    /// `client_modified`.
    pub client_modified: Option<String>,
    /// `server_modified`.
    pub server_modified: Option<String>,
    /// The whole JSON object (not shown by `Debug`).
    pub raw: Value,
}

impl fmt::Debug for FileMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileMetadata")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field("size", &self.size)
            .field("path_display", &self.path_display)
            .field("content_hash", &self.content_hash)
            .finish_non_exhaustive()
    }
}

impl FileMetadata {
    /// Reads the fields; an error when a required one (`name`, `id`, `rev`, `size`) is
    /// missing or mistyped.
    pub(crate) fn from_json(v: Value) -> Result<Self, String> {
        let s = |key: &str| -> Option<String> { v.get(key)?.as_str().map(str::to_string) };
        let need = |key: &str| s(key).ok_or_else(|| format!("metadata without `{key}`"));
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or("metadata without a numeric `size`")?;
        Ok(Self {
            name: need("name")?,
            id: need("id")?,
            rev: need("rev")?,
            size,
            path_lower: s("path_lower"),
            path_display: s("path_display"),
            content_hash: s("content_hash"),
            client_modified: s("client_modified"),
            server_modified: s("server_modified"),
            raw: v,
        })
    }
}

/// A closed upload session, ready for [`BatchCommit`](super::BatchCommit): the session
/// holds exactly `size` bytes whose content hash is `content_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedSession {
    /// The session id.
    pub session_id: String,
    /// Bytes the session holds.
    pub size: u64,
    /// Content hash of those bytes (lowercase hex).
    pub content_hash: String,
}

/// A committed file and how it was verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The server's metadata.
    pub metadata: FileMetadata,
    /// The source's content hash.
    pub content_hash: String,
    /// True when the server reported a `content_hash` and it equals the source's (the
    /// size is always checked; an unreported hash is "unknown", not a failure).
    pub hash_verified: bool,
    /// Sessions abandoned and started again on the way.
    pub restarts: u32,
}

/// What a successful [`DropboxUpload`](super::DropboxUpload) yields.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Completed {
    /// The file is committed (verified against its metadata).
    Committed(Box<Committed>),
    /// The session is closed and not committed (an upload built with
    /// [`DropboxUpload::builder_for_batch`](super::DropboxUpload::builder_for_batch)).
    Closed {
        /// The session to commit.
        session: ClosedSession,
        /// Sessions abandoned and started again on the way.
        restarts: u32,
    },
}

impl Completed {
    /// The committed file's metadata, if committed.
    pub fn metadata(&self) -> Option<&FileMetadata> {
        match self {
            Completed::Committed(c) => Some(&c.metadata),
            Completed::Closed { .. } => None,
        }
    }

    /// The closed session, if not committed.
    pub fn closed_session(&self) -> Option<&ClosedSession> {
        match self {
            Completed::Committed(_) => None,
            Completed::Closed { session, .. } => Some(session),
        }
    }

    /// Sessions abandoned and started again on the way.
    pub fn restarts(&self) -> u32 {
        match self {
            Completed::Committed(c) => c.restarts,
            Completed::Closed { restarts, .. } => *restarts,
        }
    }
}
