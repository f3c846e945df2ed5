//! Storage of finished files: size and digests always, bytes only when asked
//! ([`crate::Config::keep_bytes`]).

use crate::config::DigestConfig;
use crate::hash::{ContentHasher, QuickXorHash};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which service a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Service {
    /// OneDrive / Microsoft Graph.
    OneDrive,
    /// Dropbox.
    Dropbox,
}

/// Running digests of a file being assembled in order. Cheap to clone (a few hundred
/// bytes, plus the kept bytes when `keep_bytes` is on), which is how a request that may be
/// rejected after its body arrived is rolled back.
#[derive(Clone, Debug)]
pub struct FileHashState {
    len: u64,
    sha256: Option<Sha256>,
    quick_xor: Option<QuickXorHash>,
    content: Option<ContentHasher>,
    bytes: Option<Vec<u8>>,
}

impl FileHashState {
    /// Returns an empty state computing the digests `digests` asks for, and keeping the
    /// bytes when `keep_bytes`.
    pub fn new(digests: &DigestConfig, keep_bytes: bool) -> Self {
        Self {
            len: 0,
            sha256: digests.sha256.then(Sha256::new),
            quick_xor: digests.quick_xor.then(QuickXorHash::new),
            content: digests.dropbox_content.then(ContentHasher::new),
            bytes: keep_bytes.then(Vec::new),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.quick_xor {
            h.update(data);
        }
        if let Some(h) = &mut self.content {
            h.update(data);
        }
        if let Some(b) = &mut self.bytes {
            b.extend_from_slice(data);
        }
    }

    /// True when the Dropbox content hash is computed and the file stands on a 4 MiB
    /// block boundary: a body appended now has its blocks where the file has them, so
    /// the body's block digests are the file's ([`FileHashState::update_sharing_blocks`]).
    pub fn content_at_block_boundary(&self) -> bool {
        self.content
            .as_ref()
            .is_some_and(ContentHasher::at_block_boundary)
    }

    /// Feeds the next bytes of the file like [`FileHashState::update`], except the
    /// Dropbox content hash: `body` hashes them (it must have started where the file
    /// stood on a block boundary, see [`FileHashState::content_at_block_boundary`]) and
    /// hands each completed block's digest over, so each byte is hashed once. The
    /// pending partial block is taken over by [`FileHashState::adopt_body_tail`] when
    /// the body ends.
    pub fn update_sharing_blocks(&mut self, data: &[u8], body: &mut ContentHasher) {
        self.len += data.len() as u64;
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.quick_xor {
            h.update(data);
        }
        match &mut self.content {
            Some(file) => body.update_with_blocks(data, |d| {
                file.push_block_digest(d, crate::hash::CONTENT_HASH_BLOCK as u64)
            }),
            None => body.update(data),
        }
        if let Some(b) = &mut self.bytes {
            b.extend_from_slice(data);
        }
    }

    /// Ends a run of [`FileHashState::update_sharing_blocks`]: the file's content hash
    /// continues with the body's pending partial block.
    pub fn adopt_body_tail(&mut self, body: &ContentHasher) {
        if let Some(file) = &mut self.content {
            file.adopt_partial_block(body);
        }
    }

    /// QuickXorHash so far (base64), when computed.
    pub fn quick_xor_base64(&self) -> Option<String> {
        self.quick_xor.as_ref().map(QuickXorHash::base64)
    }

    /// Dropbox content hash so far (hex), when computed.
    pub fn content_hash_hex(&self) -> Option<String> {
        self.content.as_ref().map(ContentHasher::hex)
    }

    /// SHA-256 so far (hex), when computed.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256
            .as_ref()
            .map(|h| hex::encode(h.clone().finalize()))
    }

    /// Finishes into the digests of a stored file.
    pub fn finish(self) -> StoredContent {
        StoredContent {
            size: self.len,
            sha256: self.sha256_hex(),
            quick_xor_hash: self.quick_xor_base64(),
            content_hash: self.content_hash_hex(),
            bytes: self.bytes.map(Bytes::from),
        }
    }
}

/// The content of a stored file: size, digests and (optionally) the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredContent {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: Option<String>,
    /// QuickXorHash, base64.
    pub quick_xor_hash: Option<String>,
    /// Dropbox content hash, lowercase hex.
    pub content_hash: Option<String>,
    /// The bytes, when `keep_bytes` was on.
    #[serde(skip)]
    pub bytes: Option<Bytes>,
}

impl StoredContent {
    /// Returns the content of `data` (all digests, and the bytes when `keep_bytes`).
    pub fn of(data: &[u8], keep_bytes: bool) -> Self {
        let mut s = FileHashState::new(&DigestConfig::default(), keep_bytes);
        s.update(data);
        s.finish()
    }

    /// True when both have the same size and every digest both know agrees.
    pub fn same_content(&self, other: &StoredContent) -> bool {
        fn agree(a: &Option<String>, b: &Option<String>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        self.size == other.size
            && agree(&self.sha256, &other.sha256)
            && agree(&self.quick_xor_hash, &other.quick_xor_hash)
            && agree(&self.content_hash, &other.content_hash)
    }
}

/// A finished file as the inspection API reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Which service stored it.
    pub service: Service,
    /// Drive key (OneDrive: the drive id; Dropbox: the namespace, `"home"` by default).
    pub drive: String,
    /// Display path, starting with `/`.
    pub path: String,
    /// Service item id (`id:…` on Dropbox).
    pub id: String,
    /// Revision / eTag.
    pub rev: String,
    /// Size and digests.
    #[serde(flatten)]
    pub content: StoredContent,
}

impl FileRecord {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.content.size
    }

    /// The bytes, when kept.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.content.bytes.as_ref()
    }
}
