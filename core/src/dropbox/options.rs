//! What one upload is: [`UploadOptions`] and [`SessionType`].

use super::commit::CommitInfo;
use super::limits::{
    CONCURRENT_ALIGN, DEFAULT_CHUNK, DEFAULT_PARALLELISM, DEFAULT_READ_AHEAD, MAX_BODY,
    MAX_CONCURRENT_CHUNK, MAX_PARALLELISM, MAX_READ_AHEAD,
};
use crate::error::BuildError;
use serde::{Deserialize, Serialize};

/// How the data travels (dropbox.md §3, §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SessionType {
    /// One request at a time, each at the server-confirmed offset. Chunks of any size up
    /// to 150 MiB.
    #[default]
    Sequential,
    /// Several appends in flight (aligned to 4 MiB), the closing append last, then an
    /// empty finish at offset = size. A file that fits in one chunk takes the
    /// sequential shortest path instead (it would gain nothing).
    Concurrent,
}

/// Everything that defines one upload (also stored in a [`Checkpoint`](super::Checkpoint)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadOptions {
    /// Where to commit; `None` closes the session without committing it (for
    /// [`BatchCommit`](super::BatchCommit)).
    pub commit: Option<CommitInfo>,
    /// Sequential or concurrent.
    pub session_type: SessionType,
    /// Bytes per request. Sequential: `1..=157,286,400`. Concurrent: a multiple of
    /// 4,194,304 up to 155,189,248.
    pub chunk_size: u64,
    /// Concurrent appends in flight (`1..=64`; ignored by sequential sessions).
    pub parallelism: u32,
    /// Sequential sessions that commit: carry the last chunk in `finish` (one request
    /// fewer) instead of a closing append. Ignored when the upload only closes (batch
    /// commits need a closed session) and for concurrent sessions (their finish is
    /// always empty).
    pub last_chunk_in_finish: bool,
    /// Chunks read (`Output::NeedData`) ahead of the requests in flight (`0..=16`,
    /// default 1; 0 disables). While chunk k travels, the machine asks for the chunk it
    /// will send next, so the adapter reads and hashes it (the content hash in
    /// `provide_data`) during k's transfer; it is sent from memory once a slot frees.
    /// Memory: up to `(1 + read_ahead) × chunk_size` bytes held for a sequential session,
    /// `(parallelism + read_ahead) × chunk_size` for a concurrent one. Checkpoints
    /// never claim bytes that were only read ahead.
    #[serde(default = "default_read_ahead")]
    pub read_ahead: u32,
}

fn default_read_ahead() -> u32 {
    DEFAULT_READ_AHEAD
}

impl UploadOptions {
    /// Sequential defaults: 8 MiB chunks, the last one in `finish`.
    pub fn new(commit: Option<CommitInfo>) -> Self {
        Self {
            commit,
            session_type: SessionType::Sequential,
            chunk_size: DEFAULT_CHUNK,
            parallelism: DEFAULT_PARALLELISM,
            last_chunk_in_finish: true,
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }

    /// Checks the chunk size and parallelism.
    ///
    /// # Errors
    /// [`BuildError::ChunkSizeZero`], [`BuildError::ChunkSizeTooLarge`],
    /// [`BuildError::ChunkSizeNotMultiple`] (concurrent) or
    /// [`BuildError::InvalidOption`] (parallelism, read-ahead).
    pub fn validate(&self) -> Result<(), BuildError> {
        let c = self.chunk_size;
        if c == 0 {
            return Err(BuildError::ChunkSizeZero);
        }
        if c > MAX_BODY {
            return Err(BuildError::ChunkSizeTooLarge {
                size: c,
                max: MAX_BODY,
            });
        }
        if self.session_type == SessionType::Concurrent {
            if c % CONCURRENT_ALIGN != 0 {
                return Err(BuildError::ChunkSizeNotMultiple {
                    size: c,
                    multiple: CONCURRENT_ALIGN,
                    nearest_below: c / CONCURRENT_ALIGN * CONCURRENT_ALIGN,
                });
            }
            if c > MAX_CONCURRENT_CHUNK {
                return Err(BuildError::ChunkSizeTooLarge {
                    size: c,
                    max: MAX_CONCURRENT_CHUNK,
                });
            }
        }
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(BuildError::InvalidOption {
                option: "parallelism",
                reason: "must be between 1 and 64",
            });
        }
        if self.read_ahead > MAX_READ_AHEAD {
            return Err(BuildError::InvalidOption {
                option: "read_ahead",
                reason: "must be between 0 and 16",
            });
        }
        Ok(())
    }

    /// True when the session uses parallel aligned appends for a file of `size` bytes.
    pub(crate) fn is_concurrent_for(&self, size: u64) -> bool {
        self.session_type == SessionType::Concurrent && size > self.chunk_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_checked_per_session_type() {
        let mut o = UploadOptions::new(None);
        for (c, ok) in [
            (0, false),
            (1, true),
            (MAX_BODY, true),
            (MAX_BODY + 1, false),
        ] {
            o.chunk_size = c;
            assert_eq!(o.validate().is_ok(), ok, "sequential {c}");
        }
        o.session_type = SessionType::Concurrent;
        o.chunk_size = 5_000_000;
        assert_eq!(
            o.validate(),
            Err(BuildError::ChunkSizeNotMultiple {
                size: 5_000_000,
                multiple: CONCURRENT_ALIGN,
                nearest_below: CONCURRENT_ALIGN
            })
        );
        o.chunk_size = MAX_CONCURRENT_CHUNK;
        assert!(o.validate().is_ok());
        o.chunk_size = MAX_CONCURRENT_CHUNK + CONCURRENT_ALIGN;
        assert!(matches!(
            o.validate(),
            Err(BuildError::ChunkSizeTooLarge { .. })
        ));
        o.chunk_size = CONCURRENT_ALIGN;
        o.parallelism = 0;
        assert!(o.validate().is_err());
        o.parallelism = 65;
        assert!(o.validate().is_err());
        o.parallelism = 4;
        for (n, ok) in [(0, true), (1, true), (MAX_READ_AHEAD, true), (17, false)] {
            o.read_ahead = n;
            assert_eq!(o.validate().is_ok(), ok, "read_ahead {n}");
        }
        o.read_ahead = MAX_READ_AHEAD + 1;
        assert_eq!(
            o.validate(),
            Err(BuildError::InvalidOption {
                option: "read_ahead",
                reason: "must be between 0 and 16"
            })
        );
    }
}
