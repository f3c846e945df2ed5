//! Helpers for the adapters' end-to-end tests and examples: start a server with a fault
//! plan, build the service base URLs, make deterministic data and temporary directories,
//! check what the emulator stored (size, SHA-256) and that it saw no protocol violation,
//! and run an example binary and read its JSON lines.
//!
//! Everything here talks to the emulator only (this crate does not depend on the
//! core), and panics with a message on anything unexpected, as tests want.
//!
//! # Examples
//! ```
//! use upload_session_emulator::testkit;
//! let server = testkit::server(Default::default());
//! assert!(testkit::graph_base(&server).ends_with("/onedrive/v1.0"));
//! assert_eq!(testkit::data(16, 1), testkit::data(16, 1));
//! assert_eq!(
//!     testkit::sha256_hex(b""),
//!     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
//! );
//! testkit::assert_no_violations(&server);
//! ```

use crate::server::{EmulatorServer, RunningServer, ServerOptions};
use crate::{FaultPlan, FileRecord, Service};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// OneDrive fragments are multiples of this (320 KiB, onedrive.md §11).
pub const ONEDRIVE_UNIT: u64 = crate::onedrive::ALIGN;

/// Starts an emulator server on 127.0.0.1 with `faults` and otherwise default options.
///
/// # Panics
/// When the server cannot start.
pub fn server(faults: FaultPlan) -> RunningServer {
    EmulatorServer::start(ServerOptions {
        faults,
        ..ServerOptions::default()
    })
    .expect("emulator starts")
}

/// The Graph base URL of `server` (`<url>/onedrive/v1.0`).
pub fn graph_base(server: &RunningServer) -> String {
    format!("{}/onedrive/v1.0", server.url())
}

/// The Dropbox content and API base URLs of `server`
/// (`<url>/dropbox/content/2`, `<url>/dropbox/api/2`).
pub fn dropbox_bases(server: &RunningServer) -> (String, String) {
    (
        format!("{}/dropbox/content/2", server.url()),
        format!("{}/dropbox/api/2", server.url()),
    )
}

/// Deterministic, non-repeating-looking bytes (xorshift from `seed`).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The file the emulator stored for `service` at `path`.
pub fn stored(server: &RunningServer, service: Service, path: &str) -> Option<FileRecord> {
    server
        .emulator()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .file(service, path)
}

/// Asserts the emulator holds exactly `data` for `service` at `path` (size and SHA-256)
/// and saw no protocol violation.
pub fn assert_stored(server: &RunningServer, service: Service, path: &str, data: &[u8]) {
    let rec = stored(server, service, path).unwrap_or_else(|| panic!("no file at {path}"));
    assert_eq!(rec.content.size, data.len() as u64, "size of {path}");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(data).as_str()),
        "content of {path}"
    );
    assert_no_violations(server);
}

/// Asserts the emulator saw no protocol violation.
pub fn assert_no_violations(server: &RunningServer) {
    let snap = server.snapshot();
    assert_eq!(
        snap.violations.total(),
        0,
        "violations: {:?}",
        snap.violations
    );
}

/// A fresh temporary directory `<tmp>/<prefix>-<name>-XXXXXX` for one test.
///
/// It is removed, with everything in it, when the returned guard drops, also when the
/// test panics. (These directories once leaked: 24 GB of them filled the disk a CI run
/// linked on.)
///
/// # Panics
/// When the directory cannot be created.
///
/// # Examples
/// ```
/// use upload_session_emulator::testkit;
/// let dir = testkit::temp_dir("doc", "guard");
/// std::fs::write(dir.join("a.bin"), b"x").unwrap();
/// let path = dir.to_path_buf();
/// drop(dir);
/// assert!(!path.exists());
/// ```
pub fn temp_dir(prefix: &str, name: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-{name}-"))
        .tempdir()
        .expect("temporary directory");
    TempDir(dir)
}

/// A temporary directory that is removed when dropped; dereferences to its [`Path`].
/// Made by [`temp_dir`].
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// The example binary `name` that `cargo test -p <package>` builds next to the running
/// test (`target/<profile>/examples/<name>`).
///
/// # Panics
/// When it is missing (saying which `cargo test` builds it).
pub fn example_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p {package}` (it builds the examples)",
        path.display()
    );
    path
}

/// The JSON values of `stdout`, one per line.
///
/// # Panics
/// When `stdout` is not UTF-8 or a line is not JSON.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Starts an emulator server serving TLS (a self-signed certificate for 127.0.0.1; see
/// [`RunningServer::cert_pem`]) with no faults.
///
/// # Panics
/// When the server cannot start.
pub fn tls_server() -> RunningServer {
    EmulatorServer::start(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    })
    .expect("emulator starts with TLS")
}

/// The adapters' OneDrive fault gauntlet, scripted on the nth fragment `PUT`: a reset
/// mid-body with nothing kept (2nd), a 500 after the fragment was applied (4th), a 429
/// with `Retry-After: 1` (6th), and a reset that keeps a prefix (8th).
pub fn onedrive_put_gauntlet() -> FaultPlan {
    use crate::{Fault, RouteKind};
    FaultPlan::none()
        .script(
            Some(RouteKind::OneDrivePut),
            2,
            Fault::Reset { keep_prefix: false },
        )
        .script(
            Some(RouteKind::OneDrivePut),
            4,
            Fault::ErrorAfter { status: 500 },
        )
        .script(
            Some(RouteKind::OneDrivePut),
            6,
            Fault::Throttle {
                retry_after: Some(1),
                plain_text: false,
            },
        )
        .script(
            Some(RouteKind::OneDrivePut),
            8,
            Fault::Reset { keep_prefix: true },
        )
}

/// The adapters' Dropbox fault gauntlet: on the nth append, a reset mid-body with
/// nothing kept (1st), a 500 after the append was applied (3rd), a 429 with
/// `Retry-After: 1` (5th); and the first finish's response lost.
pub fn dropbox_append_gauntlet() -> FaultPlan {
    use crate::{Fault, RouteKind};
    FaultPlan::none()
        .script(
            Some(RouteKind::DropboxAppend),
            1,
            Fault::Reset { keep_prefix: false },
        )
        .script(
            Some(RouteKind::DropboxAppend),
            3,
            Fault::ErrorAfter { status: 500 },
        )
        .script(
            Some(RouteKind::DropboxAppend),
            5,
            Fault::Throttle {
                retry_after: Some(1),
                plain_text: false,
            },
        )
        .script(Some(RouteKind::DropboxFinish), 1, Fault::LostResponse)
}
