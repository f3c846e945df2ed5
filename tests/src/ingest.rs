//! Streaming intake of a request body, after its head passed every check that can reject
//! early. The body is never copied whole: it is hashed as it arrives (continuing the
//! session's running digests), and only kept when the service needs the pieces (a small
//! JSON body, or a Dropbox concurrent append that arrived out of order).

use crate::hash::ContentHasher;
use crate::store::FileHashState;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// What a service wants computed over a request body.
#[derive(Debug, Default)]
pub struct SinkSpec {
    /// Collect the body into memory, up to this many bytes (JSON bodies). A larger body is
    /// an error ([`Overflow`]).
    pub collect: Option<usize>,
    /// Continue the file's running digests with the body (sequential uploads). The state
    /// was cloned from the session, so dropping the result rolls everything back.
    pub file: Option<FileHashState>,
    /// Compute the Dropbox content hash of the body alone (the `content_hash` argument).
    pub body_content_hash: bool,
    /// Compute the SHA-256 of the body alone (idempotent-retry checks).
    pub body_sha256: bool,
    /// Keep the body's pieces (refcounted, no copy).
    pub keep_parts: bool,
    /// The body may not exceed this many bytes (checked as it streams).
    pub max_len: u64,
}

/// The body ended beyond what the route allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The limit that was exceeded.
    pub limit: u64,
}

/// A body being received.
#[derive(Debug)]
pub struct Sink {
    spec_collect: Option<usize>,
    max_len: u64,
    len: u64,
    collected: Option<BytesMut>,
    file: Option<FileHashState>,
    body_content: Option<ContentHasher>,
    body_sha: Option<Sha256>,
    parts: Option<Vec<Bytes>>,
}

/// What was received (possibly only a prefix, when the connection dropped).
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes received.
    pub len: u64,
    /// The collected body (when `collect` was asked).
    pub collected: Option<Bytes>,
    /// The file digests continued with the body.
    pub file: Option<FileHashState>,
    /// Content hash of the body (lowercase hex).
    pub body_content_hash: Option<String>,
    /// SHA-256 of the body.
    pub body_sha256: Option<[u8; 32]>,
    /// The body's pieces in order.
    pub parts: Vec<Bytes>,
}

impl Sink {
    /// Starts receiving according to `spec`.
    pub fn new(spec: SinkSpec) -> Self {
        Self {
            spec_collect: spec.collect,
            max_len: spec.max_len,
            len: 0,
            collected: spec.collect.map(|_| BytesMut::new()),
            file: spec.file,
            body_content: spec.body_content_hash.then(ContentHasher::new),
            body_sha: spec.body_sha256.then(Sha256::new),
            parts: spec.keep_parts.then(Vec::new),
        }
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the next piece of the body.
    ///
    /// # Errors
    /// [`Overflow`] when the body grows past its limit; nothing of this piece is taken.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Overflow> {
        let new_len = self.len + chunk.len() as u64;
        if new_len > self.max_len {
            return Err(Overflow {
                limit: self.max_len,
            });
        }
        if let (Some(cap), Some(buf)) = (self.spec_collect, &mut self.collected) {
            if buf.len() + chunk.len() > cap {
                return Err(Overflow { limit: cap as u64 });
            }
            buf.extend_from_slice(&chunk);
        }
        self.len = new_len;
        if let Some(f) = &mut self.file {
            f.update(&chunk);
        }
        if let Some(h) = &mut self.body_content {
            h.update(&chunk);
        }
        if let Some(h) = &mut self.body_sha {
            h.update(&chunk);
        }
        if let Some(p) = &mut self.parts {
            p.push(chunk);
        }
        Ok(())
    }

    /// Ends the intake.
    pub fn finish(self) -> Received {
        Received {
            len: self.len,
            collected: self.collected.map(BytesMut::freeze),
            file: self.file,
            body_content_hash: self.body_content.map(|h| h.hex()),
            body_sha256: self.body_sha.map(|h| h.finalize().into()),
            parts: self.parts.unwrap_or_default(),
        }
    }
}
