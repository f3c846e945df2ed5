//! Helpers shared by the end-to-end tests: an emulator server on 127.0.0.1, OneDrive
//! machines pointed at it with a fast retry policy, deterministic data. What talks to
//! the emulator only is `upload_session_emulator::testkit`; what needs the core's types
//! is `upload_session::testing::adapters`; this binds the two to one server.
#![allow(dead_code)]

use upload_session::AccessToken;
use upload_session::dropbox::{DropboxConfig, DropboxUpload};
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload};
use upload_session::testing::adapters;
use upload_session_emulator::server::RunningServer;
pub use upload_session_emulator::testkit;
use upload_session_emulator::{DEFAULT_TOKEN, FileRecord, Service};

#[allow(unused_imports)] // each test binary uses some of them
pub use testkit::{assert_no_violations, data, graph_base, server, sha256_hex};
#[allow(unused_imports)] // each test binary uses some of them
pub use upload_session::testing::adapters::{UNIT, fast_retry};

/// A OneDrive configuration for `server` with short backoff.
pub fn config(server: &RunningServer) -> OneDriveConfig {
    adapters::onedrive_config(&graph_base(server))
}

/// A fresh OneDrive machine for `path` with [`UNIT`] fragments: the `start` of
/// `resume_or_start` (either adapter's) when there is no usable checkpoint.
pub fn onedrive_start_at(
    path: &str,
    fp: upload_session::SourceFingerprint,
    cfg: OneDriveConfig,
    tok: Option<AccessToken>,
) -> Result<OneDriveUpload, upload_session::BuildError> {
    let mut b = OneDriveUpload::builder(upload_session::onedrive::Target::path(path), fp.size)
        .fingerprint(fp)
        .fragment_size(UNIT)
        .config(cfg);
    if let Some(t) = tok {
        b = b.access_token(t);
    }
    b.build()
}

/// The emulator's default token.
pub fn token() -> AccessToken {
    AccessToken::new(DEFAULT_TOKEN).unwrap()
}

/// A machine uploading `size` bytes to `path` in fragments of `units` × 320 KiB.
pub fn machine(server: &RunningServer, path: &str, size: u64, units: u64) -> OneDriveUpload {
    adapters::onedrive_machine(config(server), path, size, units, token())
}

/// The OneDrive file the emulator stored at `path`.
pub fn stored(server: &RunningServer, path: &str) -> Option<FileRecord> {
    testkit::stored(server, Service::OneDrive, path)
}

/// Asserts the emulator holds exactly `data` at `path` and saw no protocol violation.
pub fn assert_stored(server: &RunningServer, path: &str, data: &[u8]) {
    testkit::assert_stored(server, Service::OneDrive, path, data);
}

/// A fresh temporary directory for one test, removed when the guard drops.
pub fn temp_dir(name: &str) -> testkit::TempDir {
    testkit::temp_dir("usb", name)
}

/// A Dropbox configuration for `server` with short backoff.
pub fn dropbox_config(server: &RunningServer) -> DropboxConfig {
    let (content, api) = testkit::dropbox_bases(server);
    adapters::dropbox_config(&content, &api)
}

/// A Dropbox machine uploading `size` bytes to `path` in `chunk`-byte requests.
pub fn dropbox_machine(server: &RunningServer, path: &str, size: u64, chunk: u64) -> DropboxUpload {
    adapters::dropbox_machine(dropbox_config(server), path, size, chunk, token())
}

/// The Dropbox file the emulator stored at `path`.
pub fn dropbox_stored(server: &RunningServer, path: &str) -> Option<FileRecord> {
    testkit::stored(server, Service::Dropbox, path)
}

/// Asserts the emulator holds exactly `data` at Dropbox `path`, with no violation.
pub fn assert_dropbox_stored(server: &RunningServer, path: &str, data: &[u8]) {
    testkit::assert_stored(server, Service::Dropbox, path, data);
}
