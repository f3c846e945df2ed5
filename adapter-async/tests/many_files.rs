//! Many files at once through [`Batch`]: OneDrive files in parallel (each sequential
//! inside), Dropbox files closed in parallel (concurrent sessions for the big ones) and
//! committed with `finish_batch_v2`; per-file results; and the acceptance test: a
//! 50-file directory with faults switched on, every file byte-exact, zero violations.

mod common;

use common::*;
use std::io::Cursor;
use std::path::Path;
use std::time::Instant;
use upload_session::dropbox::{CommitInfo, DropboxUpload, SessionType};
use upload_session::onedrive::{ConflictBehavior, OneDriveUpload, Target};
use upload_session::{AccessToken, UploadError};
use upload_session_async::{Batch, BatchFile, Error, Source, Upload};
use upload_session_emulator::server::RunningServer;
use upload_session_emulator::{FaultPlan, FaultRates, Service};

const MIB: u64 = 1 << 20;

/// Writes `n` files of assorted sizes (0 B to ~9 MiB; every 10th one above 4 MiB, so
/// that Dropbox uses concurrent sessions for them) into a fresh directory.
fn directory(
    name: &str,
    n: usize,
) -> (
    upload_session_emulator::testkit::TempDir,
    Vec<(String, Vec<u8>)>,
) {
    let dir = temp_dir(name);
    let mut files = Vec::new();
    for i in 0..n {
        let size = match i % 10 {
            0 => [0, 1, 1000, 65_536, 327_679][i / 10 % 5],
            1 | 2 => 100_000 + i * 7_919,
            3 | 4 => 327_680 * (1 + i % 3) + i,
            5 | 6 => (MIB as usize) + i * 13_001,
            7 | 8 => 2 * MIB as usize + i * 29_999,
            _ => 4 * MIB as usize + (i % 5) * MIB as usize + 12_345,
        };
        let name = format!("f{i:02}.bin");
        let bytes = data(size, 1000 + i as u64);
        std::fs::write(dir.join(&name), &bytes).unwrap();
        files.push((name, bytes));
    }
    (dir, files)
}

fn fault_rates(onedrive: bool) -> FaultPlan {
    // Dropbox needs fewer requests per file (no create, no status): a higher rate.
    let r = if onedrive { 0.03 } else { 0.08 };
    FaultPlan {
        seed: 42,
        rates: FaultRates {
            throttle: r,
            unavailable: r,
            error_before: r,
            error_after: r,
            lost_response: r,
            reset_discard: r,
            reset_keep_prefix: if onedrive { r } else { 0.0 },
            transient_404: if onedrive { r } else { 0.0 },
            slow_finish: r,
            lock_contention: if onedrive { 0.0 } else { r },
            // Token expiry has its own tests (a shared token expiring under requests
            // already handed to the client is a race the emulator counts).
            expire_token: 0.0,
            stall: 0.0,
            retry_after_secs: 1,
            delay_ms: 100,
        },
        scripted: Vec::new(),
    }
}

fn check_stored(server: &RunningServer, service: Service, path: &str, bytes: &[u8]) {
    let rec = server
        .emulator()
        .lock()
        .unwrap()
        .file(service, path)
        .unwrap_or_else(|| panic!("no file at {path}"));
    assert_eq!(rec.content.size, bytes.len() as u64, "size of {path}");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(bytes).as_str()),
        "content of {path}"
    );
}

fn onedrive_upload(server: &RunningServer, dest: &str, source: Source) -> Upload<OneDriveUpload> {
    let m = OneDriveUpload::builder(Target::path(dest), source.size())
        .fingerprint(source.fingerprint())
        .fragment_size(4 * UNIT)
        .conflict(ConflictBehavior::Fail)
        .config(config(server))
        .build()
        .unwrap();
    let name = dest.to_string();
    Upload::new(m, source).on_event(move |e| {
        if std::env::var_os("USA_DEBUG").is_some() {
            eprintln!("{:?} {name}: {e:?}", std::time::Instant::now());
        }
    })
}

fn dropbox_file(server: &RunningServer, dest: &str, source: Source) -> BatchFile {
    let mut cfg = dropbox_config(server);
    cfg.retry.max_attempts = 20;
    let m = DropboxUpload::builder_for_batch(source.size())
        .fingerprint(source.fingerprint())
        .session_type(SessionType::Concurrent)
        .chunk_size(4 * MIB)
        .parallelism(3)
        .config(cfg)
        .build()
        .unwrap();
    BatchFile {
        upload: Upload::new(m, source),
        commit: CommitInfo::new(dest).unwrap(),
    }
}

async fn sources(dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<Source> {
    let mut out = Vec::new();
    for (name, _) in files {
        out.push(Source::file(dir.join(name)).await.unwrap());
    }
    out
}

fn provider() -> impl Fn() -> std::future::Ready<Result<AccessToken, String>> + Send + Sync + 'static
{
    || std::future::ready(Ok(token()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onedrive_files_in_parallel_each_reported_on_its_own() {
    let server = server(FaultPlan::none());
    let (dir, files) = directory("many-od", 8);
    // One destination exists already: that file (and only it) fails with a conflict.
    Upload::new(
        machine(&server, "/many/f03.bin", 3, 1),
        Source::bytes(&b"old"[..]),
    )
    .run()
    .await
    .unwrap();
    let uploads = sources(&dir, &files)
        .await
        .into_iter()
        .zip(&files)
        .map(|(s, (name, _))| onedrive_upload(&server, &format!("/many/{name}"), s))
        .collect();
    let results = Batch::new()
        .concurrency(3)
        .token_provider(provider())
        .run(uploads)
        .await;
    assert_eq!(results.len(), files.len());
    for (r, (name, bytes)) in results.into_iter().zip(&files) {
        if name == "f03.bin" {
            assert!(
                matches!(r, Err(Error::Upload(UploadError::Conflict { .. }))),
                "{r:?}"
            );
            continue;
        }
        let c = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.item.size, Some(bytes.len() as u64));
        check_stored(&server, Service::OneDrive, &format!("/many/{name}"), bytes);
    }
    assert_no_violations(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropbox_files_are_batch_committed_and_a_failing_one_does_not_fail_the_others() {
    let server = server(FaultPlan::none());
    let (dir, files) = directory("many-dbx", 6);
    let mut batch: Vec<BatchFile> = sources(&dir, &files)
        .await
        .into_iter()
        .zip(&files)
        .map(|(s, (name, _))| dropbox_file(&server, &format!("/Many/{name}"), s))
        .collect();
    // A stream shorter than it claims: that upload fails, the others are committed.
    let short = data(100, 9);
    batch.push(dropbox_file(
        &server,
        "/Many/short.bin",
        Source::reader(Cursor::new(short), 5000),
    ));
    let results = Batch::new()
        .concurrency(4)
        .token_provider(provider())
        .run_dropbox(batch, dropbox_config(&server))
        .await;
    assert_eq!(results.len(), files.len() + 1);
    for (r, (name, bytes)) in results.iter().zip(&files) {
        let c = r.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.hash_verified);
        assert_eq!(c.metadata.size, bytes.len() as u64);
        check_stored(&server, Service::Dropbox, &format!("/Many/{name}"), bytes);
    }
    assert!(
        matches!(results.last(), Some(Err(Error::SourceChanged { .. }))),
        "{:?}",
        results.last()
    );
    assert!(dropbox_stored(&server, "/Many/short.bin").is_none());
    assert_no_violations(&server);
}

/// THE acceptance test, OneDrive: 50 files, faults on, all byte-exact, no violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_files_with_faults_onedrive() {
    // OneDrive Personal: on Business, a create whose answer was lost (or failed after
    // applying) leaves a session that blocks the name until it expires, and the core
    // then waits (by design, `orphan_session_wait`: 16 minutes) before creating again.
    let mut emulator = upload_session_emulator::Config::default();
    emulator.onedrive.flavor = upload_session_emulator::config::OneDriveFlavor::Personal;
    let server = upload_session_emulator::server::EmulatorServer::start(
        upload_session_emulator::server::ServerOptions {
            config: emulator,
            faults: fault_rates(true),
            ..Default::default()
        },
    )
    .unwrap();
    let (dir, files) = directory("fifty-od", 50);
    let started = Instant::now();
    let uploads = sources(&dir, &files)
        .await
        .into_iter()
        .zip(&files)
        .map(|(s, (name, _))| onedrive_upload(&server, &format!("/fifty/{name}"), s))
        .collect();
    let results = Batch::new()
        .concurrency(8)
        .token_provider(provider())
        .run(uploads)
        .await;
    for (r, (name, bytes)) in results.into_iter().zip(&files) {
        let c = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.item.size, Some(bytes.len() as u64), "{name}");
        check_stored(&server, Service::OneDrive, &format!("/fifty/{name}"), bytes);
    }
    let snap = server.snapshot();
    eprintln!(
        "50 files to OneDrive in {:?}: {} requests, {} faults injected",
        started.elapsed(),
        snap.requests,
        snap.faults_injected
    );
    assert!(
        snap.faults_injected >= 10,
        "faults were on: {}",
        snap.faults_injected
    );
    assert_eq!(snap.files.len(), 50);
    assert_eq!(snap.violations.total(), 0, "{:?}", snap.violations);
}

/// THE acceptance test, Dropbox: 50 files closed in parallel (concurrent sessions for
/// the big ones), committed with finish_batch_v2, faults on, all byte-exact, no
/// violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_files_with_faults_dropbox_batch_commit() {
    let server = server(fault_rates(false));
    let (dir, files) = directory("fifty-dbx", 50);
    let started = Instant::now();
    let batch = sources(&dir, &files)
        .await
        .into_iter()
        .zip(&files)
        .map(|(s, (name, _))| dropbox_file(&server, &format!("/Fifty/{name}"), s))
        .collect();
    let mut cfg = dropbox_config(&server);
    cfg.retry.max_attempts = 20;
    let results = Batch::new()
        .concurrency(8)
        .token_provider(provider())
        .run_dropbox(batch, cfg)
        .await;
    for (r, (name, bytes)) in results.into_iter().zip(&files) {
        let c = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.hash_verified, "{name}");
        assert_eq!(c.metadata.size, bytes.len() as u64, "{name}");
        check_stored(&server, Service::Dropbox, &format!("/Fifty/{name}"), bytes);
    }
    let snap = server.snapshot();
    eprintln!(
        "50 files to Dropbox in {:?}: {} requests, {} faults injected",
        started.elapsed(),
        snap.requests,
        snap.faults_injected
    );
    assert!(
        snap.faults_injected >= 10,
        "faults were on: {}",
        snap.faults_injected
    );
    assert_eq!(snap.files.len(), 50);
    assert_eq!(snap.violations.total(), 0, "{:?}", snap.violations);
}
