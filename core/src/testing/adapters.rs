//! Machines for the adapters' end-to-end tests against the emulator server: a retry
//! policy with short backoff (tests must not sleep long), configurations for a server's
//! base URLs, and machines built from them with a token. (The emulator side, such as
//! starting servers and checking stored files, is `upload_session_emulator::testkit`.)

use crate::AccessToken;
use crate::dropbox::{CommitInfo, DropboxConfig, DropboxUpload};
use crate::onedrive::{OneDriveConfig, OneDriveUpload, Target};
use crate::retry::RetryPolicy;
use std::time::Duration;

/// OneDrive fragments are multiples of this (320 KiB).
pub const UNIT: u64 = 327_680;

/// A retry policy with short backoff (10 ms to 100 ms, `Retry-After` up to 5 s, seed 7).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        seed: 7,
        ..RetryPolicy::default()
    }
}

/// A OneDrive configuration for the Graph base URL `graph_base`, with [`fast_retry`].
pub fn onedrive_config(graph_base: &str) -> OneDriveConfig {
    let mut c = OneDriveConfig::with_base(graph_base);
    c.retry = fast_retry();
    c
}

/// A machine uploading `size` bytes to `path` in fragments of `units` × 320 KiB.
///
/// # Panics
/// When the upload is not valid.
pub fn onedrive_machine(
    config: OneDriveConfig,
    path: &str,
    size: u64,
    units: u64,
    token: AccessToken,
) -> OneDriveUpload {
    OneDriveUpload::builder(Target::path(path), size)
        .fragment_size(units * UNIT)
        .config(config)
        .access_token(token)
        .build()
        .expect("valid upload")
}

/// A Dropbox configuration for the content and API base URLs, with [`fast_retry`].
pub fn dropbox_config(content: &str, api: &str) -> DropboxConfig {
    let mut c = DropboxConfig::with_hosts(content, api);
    c.retry = fast_retry();
    c
}

/// A Dropbox machine uploading `size` bytes to `path` in `chunk`-byte requests.
///
/// # Panics
/// When the path or the upload is not valid.
pub fn dropbox_machine(
    config: DropboxConfig,
    path: &str,
    size: u64,
    chunk: u64,
    token: AccessToken,
) -> DropboxUpload {
    DropboxUpload::builder(CommitInfo::new(path).expect("valid path"), size)
        .chunk_size(chunk)
        .config(config)
        .access_token(token)
        .build()
        .expect("valid upload")
}
