//! End-to-end: the blocking adapter uploads to the emulator server over loopback (plain
//! HTTP and TLS), through faults, token expiry, timeouts, cancellation and resume, and
//! stops when the source changes.

mod common;

use common::*;
use std::io::{Cursor, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_session::onedrive::{Checkpoint, OneDriveUpload, Target};
use upload_session::{AccessToken, Event, TransportFailure, UploadError};
use upload_session_blocking::{CancelHandle, Error, Source, Upload, resume_or_start};
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Fault, FaultPlan, RouteKind};

/// Unwraps `TooManyRetries` to the failure that ended the upload.
fn last_cause(e: &UploadError) -> &UploadError {
    match e {
        UploadError::TooManyRetries { last, .. } => last_cause(last),
        other => other,
    }
}

#[test]
fn a_file_is_uploaded_verified_and_its_checkpoint_removed() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("file");
    let bytes = data(20 * UNIT as usize + 1234, 1);
    let path = dir.join("big.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("big.checkpoint");

    let mut seen = Vec::new();
    let mut checkpoints = 0;
    let completed = Upload::new(
        machine(&server, "/e2e/big.bin", bytes.len() as u64, 4),
        Source::file(&path).unwrap(),
    )
    .checkpoint_file(&ckpt)
    .on_progress(|p| seen.push(*p))
    .on_event(|e| {
        if let Event::Checkpoint(_) = e {
            checkpoints += 1;
            assert!(ckpt.exists(), "saved before the next request");
        }
    })
    .run()
    .expect("upload completes");

    assert_eq!(completed.item.size, Some(bytes.len() as u64));
    // OneDrive for Business reports only the QuickXorHash.
    assert!(completed.verification.quick_xor);
    assert_stored(&server, "/e2e/big.bin", &bytes);
    // Progress is monotonic, ends at the size, and has a rate.
    assert!(
        seen.windows(2)
            .all(|w| w[0].acknowledged <= w[1].acknowledged)
    );
    let last = seen.last().expect("progress reported");
    assert_eq!(last.acknowledged, bytes.len() as u64);
    assert_eq!(last.total, bytes.len() as u64);
    assert!(last.bytes_per_second > 0.0);
    assert!(
        checkpoints >= 5,
        "one checkpoint per fragment, got {checkpoints}"
    );
    assert!(!ckpt.exists(), "the checkpoint is removed after success");
}

#[test]
fn every_source_kind_uploads_the_exact_bytes() {
    let server = server(FaultPlan::none());
    let bytes = data(7 * UNIT as usize + 99, 2);
    let n = bytes.len() as u64;
    let sources: Vec<(&str, Source<'_>)> = vec![
        ("/kinds/slice.bin", Source::slice(&bytes)),
        ("/kinds/bytes.bin", Source::bytes(bytes.clone())),
        (
            "/kinds/seek.bin",
            Source::seekable(Cursor::new(bytes.clone())).unwrap(),
        ),
        ("/kinds/read.bin", Source::reader(&bytes[..], n)),
    ];
    for (dest, source) in sources {
        Upload::new(machine(&server, dest, n, 2), source)
            .run()
            .unwrap_or_else(|e| panic!("{dest}: {e}"));
        assert_stored(&server, dest, &bytes);
    }
}

#[test]
fn resets_5xx_after_apply_and_throttling_are_survived() {
    // Scripted on the nth fragment PUT: a reset mid-body (nothing kept), a 500 after the
    // fragment was applied, a 429 with Retry-After: 1, and a reset that keeps a prefix.
    let plan = testkit::onedrive_put_gauntlet();
    let server = server(plan);
    let bytes = data(12 * UNIT as usize + 5, 3);
    let n = bytes.len() as u64;
    let events = Mutex::new(Vec::new());
    let started = Instant::now();
    // A plain reader: the retries must be served from its one-fragment buffer.
    Upload::new(
        machine(&server, "/faults/f.bin", n, 2),
        Source::reader(&bytes[..], n),
    )
    .on_event(|e| events.lock().unwrap().push(e.clone()))
    .run()
    .expect("upload survives the faults");
    assert_stored(&server, "/faults/f.bin", &bytes);
    assert_eq!(server.snapshot().faults_injected, 4);

    let events = events.into_inner().unwrap();
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::RetryScheduled { cause, delay, .. } => Some((cause.clone(), *delay)),
            _ => None,
        })
        .collect();
    assert!(
        retries.iter().any(|(c, d)| matches!(
            c,
            UploadError::Throttled { status: 429, retry_after: Some(r) } if *r == Duration::from_secs(1)
        ) && *d >= Duration::from_secs(1)),
        "the throttle's Retry-After was honoured: {retries:?}"
    );
    assert!(
        retries
            .iter()
            .any(|(c, _)| matches!(c, UploadError::ServerError { status: 500, .. })),
        "{retries:?}"
    );
    assert!(
        retries
            .iter()
            .filter(|(c, _)| matches!(c, UploadError::Transport(_)))
            .count()
            >= 2,
        "both resets were transport failures: {retries:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After slept"
    );
}

#[test]
fn tls_with_the_emulator_certificate() {
    let server = testkit::tls_server();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let pem = server.cert_pem().unwrap().to_string();
    let bytes = data(3 * UNIT as usize, 4);
    let n = bytes.len() as u64;

    // The default agent trusts only the public roots: a certificate error, at once.
    let started = Instant::now();
    let err = Upload::new(machine(&server, "/tls/a.bin", n, 1), Source::slice(&bytes))
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");

    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes())
        .unwrap()
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    // The injected agent has status-as-error on (ureq's default): the driver overrides
    // it per request, so 4xx/5xx still reach the machine.
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    let completed = Upload::new(machine(&server, "/tls/a.bin", n, 1), Source::slice(&bytes))
        .agent(agent)
        .run()
        .expect("upload over TLS");
    assert!(completed.verification.quick_xor);
    assert_stored(&server, "/tls/a.bin", &bytes);
}

#[test]
fn an_expired_token_is_refreshed_through_the_provider() {
    let plan = FaultPlan::none().script(Some(RouteKind::OneDriveCreate), 1, Fault::ExpireToken);
    let server = server(plan);
    let emulator = server.emulator();
    let bytes = data(2 * UNIT as usize, 5);
    let n = bytes.len() as u64;
    // Built without a token: the provider is asked at the start and after the 401.
    let m = OneDriveUpload::builder(Target::path("/tok/a.bin"), n)
        .fragment_size(UNIT)
        .config(config(&server))
        .build()
        .unwrap();
    let mut calls = 0;
    Upload::new(m, Source::slice(&bytes))
        .token_provider(|| {
            calls += 1;
            if calls == 1 {
                Ok(token())
            } else {
                let fresh = emulator.lock().unwrap().issue_token();
                AccessToken::new(fresh).map_err(|e| e.to_string())
            }
        })
        .run()
        .expect("upload with a refreshed token");
    assert_eq!(calls, 2);
    assert_stored(&server, "/tok/a.bin", &bytes);

    // Without a provider, a machine with no token stops with a typed error.
    let m = OneDriveUpload::builder(Target::path("/tok/b.bin"), n)
        .fragment_size(UNIT)
        .config(config(&server))
        .build()
        .unwrap();
    let err = Upload::new(m, Source::slice(&bytes)).run().unwrap_err();
    assert!(matches!(err, Error::TokenUnavailable { .. }), "{err:?}");
}

#[test]
fn request_timeouts_are_enforced() {
    let server = EmulatorServer::start(ServerOptions {
        latency: Duration::from_secs(3),
        ..ServerOptions::default()
    })
    .unwrap();
    let bytes = data(UNIT as usize, 6);
    let mut cfg = config(&server);
    cfg.retry.max_attempts = 2;
    let m = OneDriveUpload::builder(Target::path("/slow/a.bin"), bytes.len() as u64)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(token())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = Upload::new(m, Source::slice(&bytes))
        .request_timeout(Duration::from_millis(300))
        .run()
        .unwrap_err();
    match &err {
        Error::Upload(e) => assert_eq!(
            last_cause(e),
            &UploadError::Transport(TransportFailure::TimedOut),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_oversized_response_is_a_typed_error() {
    // A "server" that answers every request with a 2 MiB body.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for conn in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 65536];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let body = vec![b' '; 2 << 20];
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
        }
    });
    let bytes = data(1000, 7);
    let mut cfg =
        upload_session::onedrive::OneDriveConfig::with_base(format!("http://{addr}/v1.0"));
    cfg.retry.max_attempts = 2;
    cfg.retry.initial_delay = Duration::from_millis(5);
    cfg.orphan_session_wait = None;
    let m = OneDriveUpload::builder(Target::path("/big-answer.bin"), bytes.len() as u64)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(token())
        .build()
        .unwrap();
    let err = Upload::new(m, Source::slice(&bytes))
        .max_response_body(64 * 1024)
        .run()
        .unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    t.join().unwrap();
    match &err {
        Error::Upload(e) => assert_eq!(
            last_cause(e),
            &UploadError::Transport(TransportFailure::ResponseTooLarge),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_leaves_a_private_checkpoint_and_resume_completes_without_resending() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("cancel");
    let bytes = data(10 * UNIT as usize + 77, 8);
    let n = bytes.len() as u64;
    let path = dir.join("c.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("c.checkpoint");
    let cfg = config(&server);
    let start = |fp, cfg, tok| onedrive_start_at("/cancel/c.bin", fp, cfg, tok);

    let source = Source::file(&path).unwrap();
    let prepared = resume_or_start(&ckpt, &source, cfg.clone(), Some(token()), start).unwrap();
    assert!(!prepared.resumed);
    let cancel = CancelHandle::new();
    let err = Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .cancel_handle(&cancel)
        .on_progress(|p| {
            if p.acknowledged >= 4 * UNIT {
                cancel.cancel();
            }
        })
        .run()
        .unwrap_err();
    match &err {
        Error::Cancelled { checkpoint } => assert_eq!(checkpoint.as_deref(), Some(ckpt.as_path())),
        other => panic!("{other:?}"),
    }
    assert!(err.is_resumable());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ckpt).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the checkpoint holds the uploadUrl");
    }
    let saved: Checkpoint = upload_session_blocking::checkpoint::load(&ckpt)
        .unwrap()
        .unwrap();
    assert_eq!(saved.acknowledged, 4 * UNIT);
    assert!(
        stored(&server, "/cancel/c.bin").is_none(),
        "nothing committed yet"
    );
    let before = server.snapshot().requests;

    let source = Source::file(&path).unwrap();
    let prepared = resume_or_start(&ckpt, &source, cfg, Some(token()), start).unwrap();
    assert!(prepared.resumed);
    Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .run()
        .expect("resumed upload completes");
    assert_stored(&server, "/cancel/c.bin", &bytes);
    assert!(!ckpt.exists());
    // One status query, then exactly the 7 remaining fragments: nothing re-sent.
    let remaining = (n - 4 * UNIT).div_ceil(UNIT);
    assert_eq!(server.snapshot().requests - before, 1 + remaining);
}

#[test]
fn a_source_modified_mid_upload_stops_it_and_nothing_is_committed() {
    enum Change {
        Append,
        Truncate,
        Touch,
    }
    let server = server(FaultPlan::none());
    let dir = temp_dir("modified");
    for (i, change) in [Change::Append, Change::Truncate, Change::Touch]
        .into_iter()
        .enumerate()
    {
        let bytes = data(6 * UNIT as usize + 10, 9 + i as u64);
        let path = dir.join(format!("m{i}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        let ckpt = dir.join(format!("m{i}.checkpoint"));
        let dest = format!("/modified/m{i}.bin");
        let mut changed = false;
        let err = Upload::new(
            machine(&server, &dest, bytes.len() as u64, 1),
            Source::file(&path).unwrap(),
        )
        .checkpoint_file(&ckpt)
        .on_progress(|p| {
            if p.acknowledged >= 2 * UNIT && !changed {
                changed = true;
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                match change {
                    Change::Append => {
                        f.set_len(bytes.len() as u64 + 1).unwrap();
                    }
                    Change::Truncate => f.set_len(UNIT).unwrap(),
                    Change::Touch => f
                        .set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
                        .unwrap(),
                }
            }
        })
        .run()
        .unwrap_err();
        assert!(matches!(err, Error::SourceChanged { .. }), "{i}: {err:?}");
        assert!(changed);
        assert!(stored(&server, &dest).is_none(), "{i}: nothing committed");
        assert!(!ckpt.exists(), "{i}: the useless checkpoint is removed");
        let open = server
            .emulator()
            .lock()
            .unwrap()
            .onedrive_mut()
            .open_sessions(std::time::SystemTime::now());
        assert_eq!(open, 0, "{i}: the session was deleted");
    }
}

/// onedrive.md §10 with read-ahead on (the default) and a forward-only source: resets
/// that keep a random prefix of the fragment make the next fragment straddle the one
/// held and the one read ahead. The core assembles it from memory, so the plain reader
/// is never asked to go back (`Error::SourceNotRewindable` otherwise).
#[test]
fn a_plain_reader_survives_partial_accepts_with_read_ahead() {
    let mut plan = FaultPlan::none();
    for nth in [2, 4, 6, 8, 10, 12] {
        plan = plan.script(
            Some(RouteKind::OneDrivePut),
            nth,
            Fault::Reset { keep_prefix: true },
        );
    }
    let server = server(plan);
    let bytes = data(16 * UNIT as usize + 77, 21);
    let n = bytes.len() as u64;
    let mut resyncs = 0;
    Upload::new(
        machine(&server, "/faults/partial.bin", n, 2),
        Source::reader(&bytes[..], n),
    )
    .on_event(|e| {
        if let Event::Resynced { .. } = e {
            resyncs += 1;
        }
    })
    .run()
    .expect("upload survives partial accepts from a forward-only source");
    assert_stored(&server, "/faults/partial.bin", &bytes);
    assert_eq!(server.snapshot().faults_injected, 6);
    assert!(resyncs >= 1, "the server kept partial fragments");
}

/// onedrive.md §1.5: on OneDrive for Business a create whose answer is lost leaves a
/// session that holds the target, so the next create gets 409 `nameAlreadyExists`. With
/// orphan waits off, the upload ends in `OrphanSessionConflict`, not in a `Conflict` that
/// would say the name is taken; nothing is stored and no rule is broken.
#[test]
fn a_lost_create_answer_on_business_ends_in_an_orphan_session_conflict() {
    let plan = FaultPlan::none().script(Some(RouteKind::OneDriveCreate), 1, Fault::LostResponse);
    let server = server(plan);
    let bytes = data(UNIT as usize, 8);
    let mut cfg = config(&server);
    cfg.orphan_session_wait = None;
    let m = OneDriveUpload::builder(Target::path("/orphan/a.bin"), bytes.len() as u64)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(token())
        .build()
        .unwrap();
    let err = Upload::new(m, Source::slice(&bytes)).run().unwrap_err();
    match &err {
        Error::Upload(UploadError::OrphanSessionConflict { waits: 0, codes }) => {
            assert!(codes.has("nameAlreadyExists"), "{codes}")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("may hold the target"), "{err}");
    assert!(stored(&server, "/orphan/a.bin").is_none());
    assert_no_violations(&server);
}
