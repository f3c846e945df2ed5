//! A checkpoint file written by one adapter resumes in the other: both persist the core's
//! checkpoint through `upload_session::driver`, so a program may switch from the blocking
//! adapter to the async one (or back) between two runs without losing what was uploaded.

mod common;

use common::*;
use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload};
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload};
use upload_session::{AccessToken, BuildError, SourceFingerprint};
use upload_session_emulator::FaultPlan;

fn onedrive_start(
    fp: SourceFingerprint,
    cfg: OneDriveConfig,
    tok: Option<AccessToken>,
) -> Result<OneDriveUpload, BuildError> {
    onedrive_start_at("/cross/od.bin", fp, cfg, tok)
}

const CHUNK: u64 = 1 << 20;

fn dropbox_start(
    fp: SourceFingerprint,
    cfg: DropboxConfig,
    tok: Option<AccessToken>,
) -> Result<DropboxUpload, BuildError> {
    let commit = CommitInfo::new("/cross/db.bin").expect("a valid path");
    let mut b = DropboxUpload::builder(commit, fp.size)
        .fingerprint(fp)
        .chunk_size(CHUNK)
        .config(cfg);
    if let Some(t) = tok {
        b = b.access_token(t);
    }
    b.build()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn a_blocking_onedrive_checkpoint_resumes_in_the_async_adapter_without_resending() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("cross-od");
    let bytes = data(9 * UNIT as usize + 123, 21);
    let n = bytes.len() as u64;
    let path = dir.join("od.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("od.checkpoint");
    let cfg = config(&server);

    // Run 1, blocking: cancelled once 3 fragments are acknowledged.
    let source = upload_session_blocking::Source::file(&path).unwrap();
    let prepared = upload_session_blocking::resume_or_start(
        &ckpt,
        &source,
        cfg.clone(),
        Some(token()),
        onedrive_start,
    )
    .unwrap();
    assert!(!prepared.resumed);
    let cancel = upload_session_blocking::CancelHandle::new();
    let err = upload_session_blocking::Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .cancel_handle(&cancel)
        .on_progress(|p| {
            if p.acknowledged >= 3 * UNIT {
                cancel.cancel();
            }
        })
        .run()
        .unwrap_err();
    assert!(err.is_resumable(), "{err:?}");
    assert!(stored(&server, "/cross/od.bin").is_none());
    let acknowledged =
        upload_session_blocking::checkpoint::load::<upload_session::onedrive::Checkpoint>(&ckpt)
            .unwrap()
            .expect("a checkpoint file")
            .acknowledged;
    assert!(acknowledged >= 3 * UNIT && acknowledged < n);
    let before = server.snapshot().requests;

    // Run 2, async: resumes from the same file and finishes.
    runtime().block_on(async {
        let source = upload_session_async::Source::file(&path).await.unwrap();
        let prepared = upload_session_async::resume_or_start(
            &ckpt,
            &source,
            cfg,
            Some(token()),
            onedrive_start,
        )
        .await
        .unwrap();
        assert!(
            prepared.resumed,
            "the async adapter reads the blocking one's file"
        );
        upload_session_async::Upload::new(prepared.machine, source)
            .checkpoint_file(&ckpt)
            .run()
            .await
            .expect("the resumed upload completes");
    });
    assert_stored(&server, "/cross/od.bin", &bytes);
    assert!(!ckpt.exists(), "removed on success");
    // One status query, then only the fragments the first run had not delivered.
    let remaining = (n - acknowledged).div_ceil(UNIT);
    assert_eq!(server.snapshot().requests - before, 1 + remaining);
}

#[test]
fn an_async_dropbox_checkpoint_resumes_in_the_blocking_adapter() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("cross-db");
    let bytes = data(5 * CHUNK as usize + 999, 22);
    let path = dir.join("db.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("db.checkpoint");
    let cfg = dropbox_config(&server);

    // Run 1, async: cancelled once 2 chunks are acknowledged.
    let err = runtime().block_on(async {
        let source = upload_session_async::Source::file(&path).await.unwrap();
        let prepared = upload_session_async::resume_or_start(
            &ckpt,
            &source,
            cfg.clone(),
            Some(token()),
            dropbox_start,
        )
        .await
        .unwrap();
        assert!(!prepared.resumed);
        let cancel = upload_session_async::CancellationToken::new();
        let c = cancel.clone();
        upload_session_async::Upload::new(prepared.machine, source)
            .checkpoint_file(&ckpt)
            .cancel_token(cancel)
            .on_progress(move |p| {
                if p.acknowledged >= 2 * CHUNK {
                    c.cancel();
                }
            })
            .run()
            .await
            .unwrap_err()
    });
    assert!(
        matches!(err, upload_session_async::Error::Cancelled { .. }),
        "{err:?}"
    );
    assert!(dropbox_stored(&server, "/cross/db.bin").is_none());
    assert!(ckpt.exists(), "the async run left its checkpoint");
    let before = server.snapshot().requests;

    // Run 2, blocking: resumes the same session.
    let source = upload_session_blocking::Source::file(&path).unwrap();
    let prepared =
        upload_session_blocking::resume_or_start(&ckpt, &source, cfg, Some(token()), dropbox_start)
            .unwrap();
    assert!(
        prepared.resumed,
        "the blocking adapter reads the async one's file"
    );
    let completed = upload_session_blocking::Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .run()
        .expect("the resumed upload completes");
    assert_eq!(completed.restarts(), 0, "the same session was continued");
    assert_dropbox_stored(&server, "/cross/db.bin", &bytes);
    assert!(!ckpt.exists(), "removed on success");
    // At most the 4 remaining chunks (3 appends + a finish carrying the last, or the
    // last append and an empty finish): the first 2 are not sent again.
    let sent = server.snapshot().requests - before;
    assert!(sent <= 5, "{sent} requests after resume");
}
