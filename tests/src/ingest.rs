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
    /// The body's content hash and the file's coincide block for block (the body starts
    /// on a 4 MiB boundary of the file): each block is hashed once, by `body_content`,
    /// and its digest handed to the file's content hash.
    shared_blocks: bool,
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
        let shared_blocks = spec.body_content_hash
            && spec
                .file
                .as_ref()
                .is_some_and(FileHashState::content_at_block_boundary);
        Self {
            shared_blocks,
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
        match (&mut self.file, &mut self.body_content) {
            (Some(f), Some(h)) if self.shared_blocks => f.update_sharing_blocks(&chunk, h),
            (f, h) => {
                if let Some(f) = f {
                    f.update(&chunk);
                }
                if let Some(h) = h {
                    h.update(&chunk);
                }
            }
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
    pub fn finish(mut self) -> Received {
        if self.shared_blocks
            && let (Some(f), Some(h)) = (&mut self.file, &self.body_content)
        {
            f.adopt_body_tail(h);
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::DigestConfig;
    use crate::hash::CONTENT_HASH_BLOCK as BLOCK;

    /// The Dropbox model tests' deterministic data.
    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        crate::dropbox::tests::data(n, seed)
    }

    /// Feeds `prefix` into a file state, then streams `body` through a sink (in uneven
    /// pieces) with the body's content hash on; returns the sink's sharing decision and
    /// the file's final content.
    fn stream(prefix: &[u8], body: &[u8]) -> (bool, Received) {
        let mut file = FileHashState::new(&DigestConfig::default(), false);
        file.update(prefix);
        let mut sink = Sink::new(SinkSpec {
            file: Some(file),
            body_content_hash: true,
            max_len: u64::MAX,
            ..SinkSpec::default()
        });
        let shared = sink.shared_blocks;
        for piece in body.chunks(1_000_003) {
            sink.push(Bytes::copy_from_slice(piece)).unwrap();
        }
        (shared, sink.finish())
    }

    #[test]
    fn body_blocks_are_shared_with_the_file_only_on_a_block_boundary_and_stay_exact() {
        let all = bytes(3 * BLOCK + 77, 5);
        for (prefix, body_len, want_shared) in [
            (0, 2 * BLOCK + 5, true),
            (BLOCK, BLOCK, true),
            (2 * BLOCK, BLOCK - 1, true),
            (1, 2 * BLOCK, false),
            (BLOCK + 3, BLOCK + 9, false),
            (0, 0, true),
        ] {
            let (p, b) = all.split_at(prefix);
            let b = &b[..body_len];
            let (shared, got) = stream(p, b);
            assert_eq!(shared, want_shared, "prefix {prefix} body {body_len}");
            assert_eq!(
                got.body_content_hash.as_deref(),
                Some(crate::hash::content_hash_hex(b).as_str())
            );
            let whole = [p, b].concat();
            let file = got.file.unwrap().finish();
            assert_eq!(file, crate::store::StoredContent::of(&whole, false));
            assert_eq!(file.size, whole.len() as u64);
        }
    }
}
