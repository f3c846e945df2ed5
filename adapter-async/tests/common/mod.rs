//! Helpers shared by the end-to-end tests: an emulator server on 127.0.0.1, OneDrive
//! and Dropbox machines pointed at it with a fast retry policy, deterministic data, an
//! in-process client over the pure emulator model (for paused-time tests).
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use upload_session::AccessToken;
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
use upload_session::retry::RetryPolicy;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::{DEFAULT_TOKEN, FaultPlan, FileRecord, Service};

/// OneDrive fragments are multiples of this.
pub const UNIT: u64 = 327_680;

/// Starts an emulator server with `faults`.
pub fn server(faults: FaultPlan) -> RunningServer {
    EmulatorServer::start(ServerOptions {
        faults,
        ..ServerOptions::default()
    })
    .expect("emulator starts")
}

/// The Graph base URL of `server`.
pub fn graph_base(server: &RunningServer) -> String {
    format!("{}/onedrive/v1.0", server.url())
}

/// A OneDrive configuration for `server` with short backoff (tests must not sleep long).
pub fn config(server: &RunningServer) -> OneDriveConfig {
    let mut c = OneDriveConfig::with_base(graph_base(server));
    c.retry = RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        seed: 7,
        ..RetryPolicy::default()
    };
    c
}

/// The emulator's default token.
pub fn token() -> AccessToken {
    AccessToken::new(DEFAULT_TOKEN).unwrap()
}

/// A machine uploading `size` bytes to `path` in fragments of `units` × 320 KiB.
pub fn machine(server: &RunningServer, path: &str, size: u64, units: u64) -> OneDriveUpload {
    OneDriveUpload::builder(Target::path(path), size)
        .fragment_size(units * UNIT)
        .config(config(server))
        .access_token(token())
        .build()
        .expect("valid upload")
}

/// Deterministic, non-repeating-looking bytes.
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

/// The OneDrive file the emulator stored at `path`.
pub fn stored(server: &RunningServer, path: &str) -> Option<FileRecord> {
    server
        .emulator()
        .lock()
        .unwrap()
        .file(Service::OneDrive, path)
}

/// Asserts the emulator holds exactly `data` at `path` and saw no protocol violation.
pub fn assert_stored(server: &RunningServer, path: &str, data: &[u8]) {
    let rec = stored(server, path).unwrap_or_else(|| panic!("no file at {path}"));
    assert_eq!(rec.content.size, data.len() as u64, "size of {path}");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(data).as_str()),
        "content of {path}"
    );
    let snap = server.snapshot();
    assert_eq!(
        snap.violations.total(),
        0,
        "violations: {:?}",
        snap.violations
    );
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("usa-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Dropbox configuration for `server` with short backoff.
pub fn dropbox_config(server: &RunningServer) -> upload_session::dropbox::DropboxConfig {
    let mut c = upload_session::dropbox::DropboxConfig::with_hosts(
        format!("{}/dropbox/content/2", server.url()),
        format!("{}/dropbox/api/2", server.url()),
    );
    c.retry = RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        seed: 7,
        ..RetryPolicy::default()
    };
    c
}

/// A Dropbox machine uploading `size` bytes to `path` in `chunk`-byte requests.
pub fn dropbox_machine(
    server: &RunningServer,
    path: &str,
    size: u64,
    chunk: u64,
) -> upload_session::dropbox::DropboxUpload {
    upload_session::dropbox::DropboxUpload::builder(
        upload_session::dropbox::CommitInfo::new(path).unwrap(),
        size,
    )
    .chunk_size(chunk)
    .config(dropbox_config(server))
    .access_token(token())
    .build()
    .expect("valid upload")
}

/// The Dropbox file the emulator stored at `path`.
pub fn dropbox_stored(server: &RunningServer, path: &str) -> Option<FileRecord> {
    server
        .emulator()
        .lock()
        .unwrap()
        .file(Service::Dropbox, path)
}

/// Asserts the emulator holds exactly `data` at Dropbox `path`, with no violation.
pub fn assert_dropbox_stored(server: &RunningServer, path: &str, data: &[u8]) {
    let rec = dropbox_stored(server, path).unwrap_or_else(|| panic!("no file at {path}"));
    assert_eq!(rec.content.size, data.len() as u64, "size of {path}");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(data).as_str()),
        "content of {path}"
    );
    let snap = server.snapshot();
    assert_eq!(
        snap.violations.total(),
        0,
        "violations: {:?}",
        snap.violations
    );
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

/// An [`HttpClient`](upload_session_async::HttpClient) that answers with the pure
/// emulator model, in-process (no sockets: usable with tokio's paused clock). Transport
/// faults the model asks for become failures (lost: `Closed`, cut: `Reset`) or delays.
pub fn model_client(
    emulator: std::sync::Arc<std::sync::Mutex<upload_session_emulator::Emulator>>,
) -> impl upload_session_async::HttpClient {
    upload_session_async::client_fn(move |req| {
        let emulator = emulator.clone();
        Box::pin(async move {
            let resp = emulator
                .lock()
                .unwrap()
                .handle(std::time::SystemTime::now(), req);
            use upload_session_emulator::TransportFault;
            match TransportFault::of(&resp) {
                Some(TransportFault::LostResponse) => {
                    return Err(Box::new(upload_session::TransportFailure::Closed)
                        as upload_session_async::BoxError);
                }
                Some(TransportFault::Reset) => {
                    return Err(Box::new(upload_session::TransportFailure::Reset)
                        as upload_session_async::BoxError);
                }
                Some(TransportFault::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            Ok(resp.map(upload_session_async::full_body))
        })
    })
}
