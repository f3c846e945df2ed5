//! End-to-end: the async adapter uploads to the emulator's Dropbox over loopback:
//! sequential and concurrent sessions (N appends in flight on one file), faults, TLS,
//! token refresh, cancellation and resume, and a source that changes.

mod common;

use common::*;
use std::io::Cursor;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use upload_session::dropbox::{
    Checkpoint, CommitInfo, Completed, DropboxConfig, DropboxUpload, SessionType,
};
use upload_session::{AccessToken, Event, SourceFingerprint, UploadError};
use upload_session_async::{
    CancellationToken, Error, HttpClient, ResponseFuture, Source, Upload, checkpoint, https_client,
    resume_or_start, tls_config_with_roots_pem,
};
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Fault, FaultPlan, RouteKind, Service, Violation};

const MIB: u64 = 1 << 20;

fn committed(c: Completed) -> upload_session::dropbox::Committed {
    match c {
        Completed::Committed(c) => *c,
        other => panic!("not committed: {other:?}"),
    }
}

/// The default client, counting requests in flight (and the most seen at once).
struct Counting {
    inner: upload_session_async::DefaultClient,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl HttpClient for Counting {
    fn request(
        &self,
        request: upload_session::http::Request<upload_session::bytes::Bytes>,
    ) -> ResponseFuture {
        let fut = HttpClient::request(&self.inner, request);
        let (now, max) = (self.now.clone(), self.max.clone());
        Box::pin(async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            let r = fut.await;
            now.fetch_sub(1, Ordering::SeqCst);
            r
        })
    }
}

#[tokio::test]
async fn a_file_is_uploaded_and_verified_by_content_hash() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("dbx-file");
    let bytes = data((5 * MIB + 12_345) as usize, 21);
    let path = dir.join("a.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("a.checkpoint");
    let (tx, rx) = tokio::sync::watch::channel(Default::default());
    let c = Upload::new(
        dropbox_machine(&server, "/Dbx/a.bin", bytes.len() as u64, MIB),
        Source::file(&path).await.unwrap(),
    )
    .checkpoint_file(&ckpt)
    .progress_sender(tx)
    .run()
    .await
    .expect("upload completes");
    let c = committed(c);
    assert!(c.hash_verified);
    assert_eq!(c.metadata.size, bytes.len() as u64);
    assert_eq!(rx.borrow().acknowledged, bytes.len() as u64);
    assert_dropbox_stored(&server, "/Dbx/a.bin", &bytes);
    assert!(!ckpt.exists());
}

#[tokio::test]
async fn resets_5xx_after_apply_throttling_and_a_lost_finish_are_survived() {
    let plan = testkit::dropbox_append_gauntlet();
    let server = server(plan);
    let bytes = data((6 * MIB + 3) as usize, 22);
    let n = bytes.len() as u64;
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let c = Upload::new(
        dropbox_machine(&server, "/Dbx/faults.bin", n, MIB),
        Source::reader(Cursor::new(bytes.clone()), n),
    )
    .on_event(move |e| ev.lock().unwrap().push(e.clone()))
    .run()
    .await
    .expect("upload survives the faults");
    assert!(committed(c).hash_verified);
    let retries: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::RetryScheduled { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .collect();
    // Every byte stored exactly. Violations: none, except after a transport failure the
    // plan did not inject. The one seen (3 runs in 25) was the throttled append: the
    // emulator answered 429 from the head and closed on the unread 1 MiB body, and the
    // kernel's reset could beat the client to the answer. The client resyncs, correctly;
    // the model, believing its answer delivered, may count that as a `WrongOffset`. The
    // emulator now lingers on such bodies (none in 20 runs since); the allowance of one
    // `WrongOffset` per unplanned failure stays for any other lost answer.
    let rec = testkit::stored(&server, Service::Dropbox, "/Dbx/faults.bin").expect("stored");
    assert_eq!(rec.content.size, n);
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(testkit::sha256_hex(&bytes).as_str())
    );
    let unplanned = retries
        .iter()
        .filter(|c| matches!(c, UploadError::Transport(_)))
        .count()
        .saturating_sub(2) as u64; // the plan's reset and its lost finish (`Closed`)
    let v = server.snapshot().violations;
    assert!(
        v.total() == v.count(Violation::WrongOffset) && v.total() <= unplanned,
        "violations {v:?} with {unplanned} unplanned transport failure(s): {retries:?}"
    );
    assert_eq!(server.snapshot().faults_injected, 4);
    assert!(
        retries
            .iter()
            .any(|c| matches!(c, UploadError::ServerError { status: 500, .. })),
        "{retries:?}"
    );
}

#[tokio::test]
async fn tls_with_the_emulator_certificate() {
    let server = testkit::tls_server();
    let tls = tls_config_with_roots_pem(server.cert_pem().unwrap().as_bytes()).unwrap();
    let bytes = data((2 * MIB + 1) as usize, 23);
    let c = Upload::new(
        dropbox_machine(&server, "/tls.bin", bytes.len() as u64, MIB),
        Source::bytes(bytes.clone()),
    )
    .tls_config(tls)
    .run()
    .await
    .expect("upload over TLS");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/tls.bin", &bytes);
}

fn concurrent(
    server: &upload_session_emulator::server::RunningServer,
    path: &str,
    size: u64,
    parallelism: u32,
) -> DropboxUpload {
    DropboxUpload::builder(CommitInfo::new(path).unwrap(), size)
        .session_type(SessionType::Concurrent)
        .chunk_size(4 * MIB)
        .parallelism(parallelism)
        .config(dropbox_config(server))
        .access_token(token())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_session_keeps_several_appends_in_flight() {
    // Some latency so that appends overlap for sure.
    let server = EmulatorServer::start(ServerOptions {
        latency: Duration::from_millis(100),
        ..ServerOptions::default()
    })
    .unwrap();
    let bytes = data((21 * MIB + 5) as usize, 24);
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = Counting {
        inner: https_client(None, None).unwrap(),
        now,
        max: max.clone(),
    };
    let c = Upload::new(
        concurrent(&server, "/Dbx/conc.bin", bytes.len() as u64, 4),
        Source::bytes(bytes.clone()),
    )
    .client(client)
    .run()
    .await
    .expect("completes");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/Dbx/conc.bin", &bytes);
    let max = max.load(Ordering::SeqCst);
    assert!(max >= 3, "at most {max} requests were in flight at once");
    assert!(max <= 4, "{max} in flight with parallelism 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_in_a_concurrent_session() {
    // The expiries hit requests that are alone in flight (the start, the empty finish).
    // On an append with others in flight, an append already handed to the client but
    // still waiting for a connection may reach the server with the old token after the
    // refreshed one, which the emulator counts as `ExpiredTokenReused` although the
    // client had not yet been told.
    let plan = FaultPlan::none()
        .script(Some(RouteKind::DropboxStart), 1, Fault::ExpireToken)
        .script(Some(RouteKind::DropboxFinish), 1, Fault::ExpireToken);
    let server = server(plan);
    let emulator = server.emulator();
    let bytes = data((13 * MIB) as usize, 27);
    let m = DropboxUpload::builder(CommitInfo::new("/Dbx/tok.bin").unwrap(), bytes.len() as u64)
        .session_type(SessionType::Concurrent)
        .chunk_size(4 * MIB)
        .config(dropbox_config(&server))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let done = Upload::new(m, Source::bytes(bytes.clone()))
        .token_provider(move || {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            let emulator = emulator.clone();
            async move {
                if first {
                    Ok(token())
                } else {
                    AccessToken::new(emulator.lock().unwrap().issue_token())
                        .map_err(|e| e.to_string())
                }
            }
        })
        .run()
        .await
        .expect("upload with a refreshed token");
    assert!(committed(done).hash_verified);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "asked at the start and after each expiry"
    );
    assert_dropbox_stored(&server, "/Dbx/tok.bin", &bytes);
}

fn start(
    fp: SourceFingerprint,
    cfg: DropboxConfig,
    tok: Option<AccessToken>,
) -> Result<DropboxUpload, upload_session::BuildError> {
    let mut b = DropboxUpload::builder(CommitInfo::new("/Dbx/c.bin").unwrap(), fp.size)
        .fingerprint(fp)
        .session_type(SessionType::Concurrent)
        .chunk_size(4 * MIB)
        .config(cfg);
    if let Some(t) = tok {
        b = b.access_token(t);
    }
    b.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_session_cancelled_by_token_resumes_from_the_checkpoint_file() {
    let server = EmulatorServer::start(ServerOptions {
        latency: Duration::from_millis(30),
        ..ServerOptions::default()
    })
    .unwrap();
    let dir = temp_dir("dbx-cancel");
    let bytes = data((26 * MIB + 99) as usize, 25);
    let path = dir.join("c.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("c.checkpoint");
    let source = Source::file(&path).await.unwrap();
    let prepared = resume_or_start(
        &ckpt,
        &source,
        dropbox_config(&server),
        Some(token()),
        start,
    )
    .await
    .unwrap();
    assert!(!prepared.resumed);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let err = Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .cancel_token(cancel)
        .on_progress(move |p| {
            if p.acknowledged >= 8 * MIB {
                c.cancel();
            }
        })
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Cancelled {
                checkpoint: Some(_)
            }
        ),
        "{err:?}"
    );
    // A concurrent checkpoint's `acknowledged` is the contiguous prefix; chunks done
    // above it are listed in it too.
    let _saved: Checkpoint = checkpoint::load(&ckpt).await.unwrap().unwrap();
    assert!(dropbox_stored(&server, "/Dbx/c.bin").is_none());
    // Let the appends dropped at the cancel finish on the server side.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.snapshot().requests;

    let source = Source::file(&path).await.unwrap();
    let prepared = resume_or_start(
        &ckpt,
        &source,
        dropbox_config(&server),
        Some(token()),
        start,
    )
    .await
    .unwrap();
    assert!(prepared.resumed);
    let c = Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .run()
        .await
        .expect("resumed upload completes");
    assert!(committed(c).hash_verified);
    let rec = dropbox_stored(&server, "/Dbx/c.bin").expect("stored");
    assert_eq!(rec.content.size, bytes.len() as u64);
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert!(!ckpt.exists());
    // At least two of the seven chunks were done before the cancel and are not sent
    // again: at most five appends, the finish and one lookup.
    let resumed = server.snapshot().requests - before;
    assert!(resumed <= 7, "{resumed} requests after the resume");
}

#[tokio::test]
async fn a_source_modified_mid_upload_stops_it_and_nothing_is_committed() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("dbx-modified");
    let bytes = data((4 * MIB) as usize, 26);
    let path = dir.join("m.bin");
    std::fs::write(&path, &bytes).unwrap();
    let changed = Arc::new(AtomicU32::new(0));
    let (ch, p2, b2) = (changed.clone(), path.clone(), bytes.clone());
    let err = Upload::new(
        dropbox_machine(&server, "/Dbx/m.bin", bytes.len() as u64, MIB),
        Source::file(&path).await.unwrap(),
    )
    .on_progress(move |p| {
        if p.acknowledged >= 2 * MIB && ch.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(20));
            let mut other = b2.clone();
            other[0] ^= 0xff;
            std::fs::write(&p2, &other).unwrap();
        }
    })
    .run()
    .await
    .unwrap_err();
    assert!(changed.load(Ordering::SeqCst) > 0);
    assert!(matches!(err, Error::SourceChanged { .. }), "{err:?}");
    assert!(dropbox_stored(&server, "/Dbx/m.bin").is_none());
}
