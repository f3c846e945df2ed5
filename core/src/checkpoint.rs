//! Protocol-neutral pieces of resume state. Each protocol's checkpoint (for OneDrive:
//! [`crate::onedrive::Checkpoint`]) is plain serde data built from these.

use serde::{Deserialize, Serialize};

/// Identifies the source a checkpoint was taken from: its size plus a caller-given
/// modification stamp (an mtime, an ETag, a content version: anything that changes when
/// the content does). A resume is refused when either differs.
///
/// # Examples
/// ```
/// use upload_session::SourceFingerprint;
/// let a = SourceFingerprint::new(1024, "mtime:1700000000.123");
/// let b = SourceFingerprint::new(1024, "mtime:1700000999.000");
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceFingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Caller-given modification stamp.
    pub modified: String,
}

impl SourceFingerprint {
    /// Returns a fingerprint.
    pub fn new(size: u64, modified: impl Into<String>) -> Self {
        Self {
            size,
            modified: modified.into(),
        }
    }
}

/// The checkpoint format version this crate writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
