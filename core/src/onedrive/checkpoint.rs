//! The OneDrive resume snapshot.

use super::config::UploadOptions;
use super::quickxor::QuickXorHash;
use crate::checkpoint::{CHECKPOINT_VERSION, SourceFingerprint};
use crate::error::ResumeError;
use crate::hash::Sha256State;
use crate::secret::SecretString;
use crate::wallclock::parse_rfc3339;
use serde::{Deserialize, Serialize};

/// Everything needed to continue an upload in another process (onedrive.md §3.3 step 5):
/// emitted as `Event::Checkpoint` after every acknowledged fragment. Plain serde data
/// (JSON is the intended format). `Debug` redacts the `uploadUrl`.
///
/// Resume with [`OneDriveUpload::resume`](super::OneDriveUpload::resume): the machine
/// queries the session's status and continues from the server's offset; acknowledged
/// bytes are neither re-sent nor re-hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The session's `uploadUrl` (a secret).
    pub upload_url: SecretString,
    /// The newest `expirationDateTime` the server gave, as sent.
    pub expiration: Option<String>,
    /// When the session was created (RFC 3339), if the machine knew the wall clock.
    pub session_created: Option<String>,
    /// File size.
    pub size: u64,
    /// The source this upload reads.
    pub fingerprint: SourceFingerprint,
    /// Bytes the server had acknowledged.
    pub acknowledged: u64,
    /// Bytes fed to the hashes (every byte before this offset, exactly once).
    pub hashed: u64,
    /// QuickXorHash of bytes `0..hashed`.
    pub quick_xor: QuickXorHash,
    /// SHA-256 of bytes `0..hashed`, when verification is on.
    pub sha256: Option<Sha256State>,
    /// What the upload is.
    pub options: UploadOptions,
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
    /// Malformed JSON or invalid fields (a bad fragment size, hash state…).
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
        if self.acknowledged > self.size || self.hashed > self.size {
            return Err(ResumeError::Inconsistent("offsets beyond the file size"));
        }
        if self.quick_xor.len() != self.hashed {
            return Err(ResumeError::Inconsistent("QuickXorHash length != hashed"));
        }
        match (&self.sha256, self.options.verify_sha256) {
            (Some(s), true) if s.len() == self.hashed => {}
            (None, false) => {}
            _ => {
                return Err(ResumeError::Inconsistent(
                    "SHA-256 state does not match the options or the hashed length",
                ));
            }
        }
        if self.size == 0 {
            return Err(ResumeError::Inconsistent(
                "a zero-byte upload has no session",
            ));
        }
        let uri: http::Uri = self
            .upload_url
            .expose()
            .parse()
            .map_err(|_| ResumeError::Inconsistent("uploadUrl is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.authority().is_none() {
            return Err(ResumeError::Inconsistent("uploadUrl is not absolute"));
        }
        if let Some(e) = &self.expiration {
            if parse_rfc3339(e).is_none() {
                return Err(ResumeError::Inconsistent("unparseable expiration"));
            }
        }
        if let Some(c) = &self.session_created {
            if parse_rfc3339(c).is_none() {
                return Err(ResumeError::Inconsistent("unparseable creation time"));
            }
        }
        Ok(())
    }
}
