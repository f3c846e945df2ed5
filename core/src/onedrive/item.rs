//! The uploaded item and how it was verified.

use std::fmt;

/// The `driveItem` the server reported for the uploaded file (the fields the machine
/// uses, plus the whole JSON in [`raw`](Self::raw)).
#[derive(Clone, PartialEq)]
pub struct DriveItem {
    /// Item id.
    pub id: String,
    /// File name (after a `rename` conflict behaviour, the name the server chose).
    pub name: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// `eTag`.
    pub e_tag: Option<String>,
    /// `cTag`.
    pub c_tag: Option<String>,
    /// `file.hashes.quickXorHash` (base64).
    pub quick_xor_hash: Option<String>,
    /// `file.hashes.sha256Hash` (hex).
    pub sha256_hash: Option<String>,
    /// `file.hashes.sha1Hash` (hex; not verified, SHA-1 is deprecated on OneDrive).
    pub sha1_hash: Option<String>,
    /// The whole JSON body. It can hold pre-authenticated links
    /// (`@microsoft.graph.downloadUrl`), so `Debug` does not print it.
    pub raw: serde_json::Value,
}

impl fmt::Debug for DriveItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriveItem")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("e_tag", &self.e_tag)
            .field("quick_xor_hash", &self.quick_xor_hash)
            .field("sha256_hash", &self.sha256_hash)
            .finish_non_exhaustive()
    }
}

impl DriveItem {
    /// Reads the fields from a JSON value; `None` when there is no string `id`.
    pub(crate) fn from_json(v: serde_json::Value) -> Option<Self> {
        let id = v.get("id")?.as_str()?.to_string();
        let s = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_string);
        let hashes = v.get("file").and_then(|f| f.get("hashes"));
        Some(Self {
            name: s(v.get("name")),
            size: v.get("size").and_then(serde_json::Value::as_u64),
            e_tag: s(v.get("eTag")),
            c_tag: s(v.get("cTag")),
            quick_xor_hash: s(hashes.and_then(|h| h.get("quickXorHash"))),
            sha256_hash: s(hashes.and_then(|h| h.get("sha256Hash"))),
            sha1_hash: s(hashes.and_then(|h| h.get("sha1Hash"))),
            id,
            raw: v,
        })
    }
}

/// Which checks passed on the uploaded item. Size is always checked; a hash the server
/// did not report is "unknown", not a failure (onedrive.md §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    /// `quickXorHash` was reported and equals the source's.
    pub quick_xor: bool,
    /// `sha256Hash` was reported and equals the source's.
    pub sha256: bool,
}

/// A finished upload.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// The item.
    pub item: DriveItem,
    /// What was verified.
    pub verification: Verification,
    /// Sessions abandoned and recreated on the way.
    pub restarts: u32,
}
