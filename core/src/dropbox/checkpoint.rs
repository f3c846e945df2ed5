//! The Dropbox resume snapshot.

use super::concurrent::Conc;
use super::content_hash::BLOCK_SIZE;
use super::ledger::HashLedger;
use super::options::UploadOptions;
use crate::checkpoint::{CHECKPOINT_VERSION, SourceFingerprint};
use crate::error::ResumeError;
use crate::wallclock::parse_rfc3339;
use serde::{Deserialize, Serialize};

/// Everything needed to continue an upload in the same server session from another
/// process: emitted as `Event::Checkpoint` after every acknowledged request. Plain
/// serde data (JSON is the intended format).
///
/// The session id is not a credential (every call also needs the bearer token, which
/// is never stored here), so it is shown by `Debug`.
///
/// Resume with [`DropboxUpload::resume`](super::DropboxUpload::resume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The upload session.
    pub session_id: String,
    /// When the session was started (RFC 3339), if the machine knew the wall clock:
    /// sessions live 7 days.
    pub session_created: Option<String>,
    /// File size.
    pub size: u64,
    /// The source this upload reads.
    pub fingerprint: SourceFingerprint,
    /// What the upload is.
    pub options: UploadOptions,
    /// Sequential: the server's offset. Concurrent: the low-water mark (every chunk
    /// below it is in the session).
    pub acknowledged: u64,
    /// Concurrent: the 4 MiB blocks (index = offset / 4,194,304) above the low-water
    /// mark that the server acknowledged, ascending. Blocks travel in whole chunks, so
    /// they come in runs of one chunk.
    pub completed_blocks: Vec<u64>,
    /// The session is closed (no more data; commit only).
    pub closed: bool,
    /// The whole-file content hash so far.
    pub hash: HashLedger,
}

impl Checkpoint {
    /// Serialises to JSON.
    ///
    /// # Errors
    /// Only if serde_json fails, which plain data does not.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses JSON written by [`to_json`](Self::to_json).
    ///
    /// # Errors
    /// Malformed JSON or invalid fields (a bad commit path, hash state…).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Checks that the fields agree with each other and with `fingerprint`.
    pub(crate) fn check(&self, fingerprint: &SourceFingerprint) -> Result<(), ResumeError> {
        if self.version != CHECKPOINT_VERSION {
            return Err(ResumeError::UnsupportedVersion(self.version));
        }
        if &self.fingerprint != fingerprint || fingerprint.size != self.size {
            return Err(ResumeError::SourceChanged);
        }
        self.options.validate()?;
        if self.session_id.is_empty() {
            return Err(ResumeError::Inconsistent("empty session id"));
        }
        if self.acknowledged > self.size || self.hash.prefix_len() > self.size {
            return Err(ResumeError::Inconsistent("offsets beyond the file size"));
        }
        if let Some(c) = &self.session_created {
            if parse_rfc3339(c).is_none() {
                return Err(ResumeError::Inconsistent("unparseable creation time"));
            }
        }
        if self.options.is_concurrent_for(self.size) {
            let mut layout = Conc::new(self.size, self.options.chunk_size);
            let chunks = self.completed_chunks()?;
            if !layout.restore(self.acknowledged, &chunks, self.closed) {
                return Err(ResumeError::Inconsistent(
                    "completed chunks do not fit the chunk layout",
                ));
            }
            // Every acknowledged chunk was hashed when it was read.
            let done = (0..layout.low_water).chain(layout.done.iter().copied());
            for k in done {
                let r = layout.range(k);
                let mut b = r.start() / BLOCK_SIZE;
                while b.saturating_mul(BLOCK_SIZE) < r.end() {
                    if !self.hash.has_block(b) {
                        return Err(ResumeError::Inconsistent(
                            "an acknowledged chunk is missing from the hash",
                        ));
                    }
                    b += 1;
                }
            }
        } else {
            if !self.completed_blocks.is_empty() {
                return Err(ResumeError::Inconsistent(
                    "completed chunks in a sequential session",
                ));
            }
            if self.hash.prefix_len() < self.acknowledged {
                return Err(ResumeError::Inconsistent(
                    "acknowledged bytes that were never hashed",
                ));
            }
            if self.closed && self.acknowledged != self.size {
                return Err(ResumeError::Inconsistent(
                    "a closed sequential session that does not hold the whole file",
                ));
            }
        }
        Ok(())
    }

    /// The completed chunks of a concurrent session, from the completed blocks: every
    /// block of a listed chunk must be listed, and nothing else.
    pub(crate) fn completed_chunks(&self) -> Result<Vec<u64>, ResumeError> {
        let layout = Conc::new(self.size, self.options.chunk_size);
        let bad = || ResumeError::Inconsistent("completed blocks do not form whole chunks");
        let mut chunks = Vec::new();
        let mut i = 0;
        while let Some(&b) = self.completed_blocks.get(i) {
            let k = b.saturating_mul(BLOCK_SIZE) / layout.chunk;
            let r = layout.range(k);
            let first = r.start() / BLOCK_SIZE;
            let count = r.len().div_ceil(BLOCK_SIZE);
            if b != first || count == 0 {
                return Err(bad());
            }
            for j in 0..count {
                if self.completed_blocks.get(i + j as usize) != Some(&(first + j)) {
                    return Err(bad());
                }
            }
            chunks.push(k);
            i += count as usize;
        }
        Ok(chunks)
    }
}
