//! End-to-end: the blocking adapter uploads to the emulator's Dropbox over loopback,
//! through faults, TLS, cancellation and resume, concurrent sessions, and a source that
//! changes.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_session::dropbox::{
    Checkpoint, CommitInfo, Completed, DropboxConfig, DropboxUpload, SessionType,
};
use upload_session::{AccessToken, Event, SourceFingerprint, UploadError};
use upload_session_blocking::{CancelHandle, Error, Source, Upload, resume_or_start};
use upload_session_emulator::FaultPlan;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};

const MIB: u64 = 1 << 20;

fn committed(c: Completed) -> upload_session::dropbox::Committed {
    match c {
        Completed::Committed(c) => *c,
        other => panic!("not committed: {other:?}"),
    }
}

#[test]
fn a_file_is_uploaded_and_verified_by_content_hash() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("dbx-file");
    let bytes = data((5 * MIB + 12_345) as usize, 21);
    let path = dir.join("a.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("a.checkpoint");
    let mut last = 0;
    let c = Upload::new(
        dropbox_machine(&server, "/Dbx/a.bin", bytes.len() as u64, MIB),
        Source::file(&path).unwrap(),
    )
    .checkpoint_file(&ckpt)
    .on_progress(|p| last = p.acknowledged)
    .run()
    .expect("upload completes");
    let c = committed(c);
    assert!(c.hash_verified);
    assert_eq!(c.metadata.size, bytes.len() as u64);
    assert_eq!(last, bytes.len() as u64);
    assert_dropbox_stored(&server, "/Dbx/a.bin", &bytes);
    assert!(!ckpt.exists());
}

#[test]
fn resets_5xx_after_apply_throttling_and_a_lost_finish_are_survived() {
    let plan = testkit::dropbox_append_gauntlet();
    let server = server(plan);
    let bytes = data((6 * MIB + 3) as usize, 22);
    let n = bytes.len() as u64;
    let events = Mutex::new(Vec::new());
    let started = Instant::now();
    // A plain reader: retries are served from its one-chunk buffer.
    let c = Upload::new(
        dropbox_machine(&server, "/Dbx/faults.bin", n, MIB),
        Source::reader(&bytes[..], n),
    )
    .on_event(|e| events.lock().unwrap().push(e.clone()))
    .run()
    .expect("upload survives the faults");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/Dbx/faults.bin", &bytes);
    assert_eq!(server.snapshot().faults_injected, 4);
    let retries: Vec<_> = events
        .into_inner()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::RetryScheduled { cause, delay, .. } => Some((cause, delay)),
            _ => None,
        })
        .collect();
    assert!(
        retries.iter().any(
            |(c, d)| matches!(c, UploadError::Throttled { status: 429, .. })
                && *d >= Duration::from_secs(1)
        ),
        "Retry-After honoured: {retries:?}"
    );
    assert!(
        retries
            .iter()
            .any(|(c, _)| matches!(c, UploadError::ServerError { status: 500, .. })),
        "{retries:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn tls_with_the_emulator_certificate() {
    let server = testkit::tls_server();
    let cert = ureq::tls::Certificate::from_pem(server.cert_pem().unwrap().as_bytes())
        .unwrap()
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    let bytes = data((2 * MIB + 1) as usize, 23);
    let c = Upload::new(
        dropbox_machine(&server, "/tls.bin", bytes.len() as u64, MIB),
        Source::slice(&bytes),
    )
    .agent(agent)
    .run()
    .expect("upload over TLS");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/tls.bin", &bytes);
}

/// A seekable source that logs when each range is read (its `SeekFrom::Start`).
struct Logged<'a> {
    inner: std::io::Cursor<&'a [u8]>,
    log: &'a Mutex<Vec<(u64, Instant)>>,
}

impl std::io::Read for Logged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Seek for Logged<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        if let std::io::SeekFrom::Start(o) = pos {
            self.log.lock().unwrap().push((o, Instant::now()));
        }
        self.inner.seek(pos)
    }
}

/// (offset or bytes acknowledged, when).
type Log = Vec<(u64, Instant)>;

/// Uploads `bytes` through a server answering each request after `latency`, logging
/// when each chunk is read and when each acknowledgement is handled.
fn logged_upload(
    bytes: &[u8],
    latency: Duration,
    build: impl FnOnce(&RunningServer, u64) -> DropboxUpload,
) -> (Log, Log, RunningServer) {
    let server = EmulatorServer::start(ServerOptions {
        latency,
        ..ServerOptions::default()
    })
    .unwrap();
    let reads = Mutex::new(Vec::new());
    let acks = Mutex::new(Vec::new());
    let source = Source::seekable(Logged {
        inner: std::io::Cursor::new(bytes),
        log: &reads,
    })
    .unwrap();
    let c = Upload::new(build(&server, bytes.len() as u64), source)
        .on_progress(|p| acks.lock().unwrap().push((p.acknowledged, Instant::now())))
        .run()
        .expect("completes");
    assert!(committed(c).hash_verified);
    (
        reads.into_inner().unwrap(),
        acks.into_inner().unwrap(),
        server,
    )
}

#[test]
fn the_next_chunk_is_read_while_the_current_one_is_on_the_wire() {
    let bytes = data((4 * MIB + 5) as usize, 31);
    for read_ahead in [1, 0] {
        let (reads, acks, server) =
            logged_upload(&bytes, Duration::from_millis(150), |server, n| {
                DropboxUpload::builder(CommitInfo::new("/Dbx/ahead.bin").unwrap(), n)
                    .chunk_size(MIB)
                    .read_ahead(read_ahead)
                    .config(dropbox_config(server))
                    .access_token(token())
                    .build()
                    .unwrap()
            });
        assert_dropbox_stored(&server, "/Dbx/ahead.bin", &bytes);
        let read_at = |o: u64| reads.iter().find(|r| r.0 == o).unwrap().1;
        let acked_at = |a: u64| acks.iter().find(|p| p.0 == a).unwrap().1;
        // Every chunk read exactly once.
        let mut offsets: Vec<u64> = reads.iter().map(|r| r.0).collect();
        offsets.dedup();
        assert_eq!(offsets, [0, MIB, 2 * MIB, 3 * MIB, 4 * MIB]);
        for k in 1..=3 {
            // Chunk k+1 is read before chunk k's acknowledgement (with read-ahead), or
            // after it (without): the read overlaps the transfer only with read-ahead.
            let overlapped = read_at((k + 1) * MIB) < acked_at((k + 1) * MIB);
            assert_eq!(
                overlapped,
                read_ahead == 1,
                "chunk {k}, read_ahead {read_ahead}"
            );
        }
    }
}

#[test]
fn a_concurrent_session_keeps_parallelism_appends_on_the_wire() {
    let latency = Duration::from_millis(300);
    let bytes = data((8 * 4 * MIB + 5) as usize, 32);
    let t0 = Instant::now();
    let (reads, acks, server) = logged_upload(&bytes, latency, |server, n| {
        DropboxUpload::builder(CommitInfo::new("/Dbx/par.bin").unwrap(), n)
            .session_type(SessionType::Concurrent)
            .chunk_size(4 * MIB)
            .parallelism(4)
            .config(dropbox_config(server))
            .access_token(token())
            .build()
            .unwrap()
    });
    let elapsed = t0.elapsed();
    assert_dropbox_stored(&server, "/Dbx/par.bin", &bytes);
    // Four appends on the wire plus one chunk read ahead before the first answer.
    let first_ack = acks.iter().find(|a| a.0 > 0).unwrap().1;
    let before = reads.iter().filter(|r| r.1 < first_ack).count();
    assert_eq!(
        before, 5,
        "reads before the first acknowledgement: {reads:?}"
    );
    // 11 requests (start, 9 appends, finish) one at a time take at least 11 latencies;
    // four at a time, about 1 + 2 + 1 + 1 + 1 = 6.
    assert!(
        elapsed < latency * 9,
        "{elapsed:?}: the appends did not overlap"
    );
}

#[test]
fn a_concurrent_session_completes() {
    let server = server(FaultPlan::none());
    let bytes = data((13 * MIB + 5) as usize, 24);
    let m = DropboxUpload::builder(
        CommitInfo::new("/Dbx/conc.bin").unwrap(),
        bytes.len() as u64,
    )
    .session_type(SessionType::Concurrent)
    .chunk_size(4 * MIB)
    .config(dropbox_config(&server))
    .access_token(token())
    .build()
    .unwrap();
    let c = Upload::new(m, Source::slice(&bytes))
        .run()
        .expect("completes");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/Dbx/conc.bin", &bytes);
}

#[test]
fn cancel_then_resume_from_the_checkpoint_file() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("dbx-cancel");
    let bytes = data((8 * MIB + 99) as usize, 25);
    let n = bytes.len() as u64;
    let path = dir.join("c.bin");
    std::fs::write(&path, &bytes).unwrap();
    let ckpt = dir.join("c.checkpoint");
    let start = |fp: SourceFingerprint, cfg: DropboxConfig, tok: Option<AccessToken>| {
        let mut b = DropboxUpload::builder(CommitInfo::new("/Dbx/c.bin").unwrap(), fp.size)
            .fingerprint(fp)
            .chunk_size(MIB)
            .config(cfg);
        if let Some(t) = tok {
            b = b.access_token(t);
        }
        b.build()
    };
    let source = Source::file(&path).unwrap();
    let prepared = resume_or_start(
        &ckpt,
        &source,
        dropbox_config(&server),
        Some(token()),
        start,
    )
    .unwrap();
    assert!(!prepared.resumed);
    let cancel = CancelHandle::new();
    let err = Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .cancel_handle(&cancel)
        .on_progress(|p| {
            if p.acknowledged >= 3 * MIB {
                cancel.cancel();
            }
        })
        .run()
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
    let saved: Checkpoint = upload_session_blocking::checkpoint::load(&ckpt)
        .unwrap()
        .unwrap();
    assert_eq!(saved.acknowledged, 3 * MIB);
    assert!(dropbox_stored(&server, "/Dbx/c.bin").is_none());
    let before = server.snapshot().requests;

    let source = Source::file(&path).unwrap();
    let prepared = resume_or_start(
        &ckpt,
        &source,
        dropbox_config(&server),
        Some(token()),
        start,
    )
    .unwrap();
    assert!(prepared.resumed);
    let c = Upload::new(prepared.machine, source)
        .checkpoint_file(&ckpt)
        .run()
        .expect("resumed upload completes");
    assert!(committed(c).hash_verified);
    assert_dropbox_stored(&server, "/Dbx/c.bin", &bytes);
    assert!(!ckpt.exists());
    // Exactly the remaining chunks (the last one travels in the finish).
    let remaining = (n - 3 * MIB).div_ceil(MIB);
    assert_eq!(server.snapshot().requests - before, remaining);
}

#[test]
fn a_source_modified_mid_upload_stops_it_and_nothing_is_committed() {
    let server = server(FaultPlan::none());
    let dir = temp_dir("dbx-modified");
    let bytes = data((4 * MIB) as usize, 26);
    let path = dir.join("m.bin");
    std::fs::write(&path, &bytes).unwrap();
    let mut changed = false;
    let err = Upload::new(
        dropbox_machine(&server, "/Dbx/m.bin", bytes.len() as u64, MIB),
        Source::file(&path).unwrap(),
    )
    .on_progress(|p| {
        if p.acknowledged >= 2 * MIB && !changed {
            changed = true;
            // Same size, rewritten in place: only the modification time tells.
            std::thread::sleep(Duration::from_millis(20));
            let mut other = bytes.clone();
            other[0] ^= 0xff;
            std::fs::write(&path, &other).unwrap();
        }
    })
    .run()
    .unwrap_err();
    assert!(changed);
    assert!(matches!(err, Error::SourceChanged { .. }), "{err:?}");
    assert!(
        dropbox_stored(&server, "/Dbx/m.bin").is_none(),
        "nothing committed"
    );
}

#[test]
fn a_cancel_does_not_wait_for_the_answer_of_a_request_on_the_wire() {
    // Every answer takes 5 s; the cancel comes while the start waits for its answer.
    let server = EmulatorServer::start(ServerOptions {
        latency: Duration::from_secs(5),
        ..ServerOptions::default()
    })
    .unwrap();
    let bytes = data((2 * MIB) as usize, 33);
    let cancel = CancelHandle::new();
    let canceller = {
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            c.cancel();
        })
    };
    let started = Instant::now();
    let err = Upload::new(
        dropbox_machine(&server, "/Dbx/slow.bin", bytes.len() as u64, MIB),
        Source::slice(&bytes),
    )
    .cancel_handle(&cancel)
    .run()
    .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(dropbox_stored(&server, "/Dbx/slow.bin").is_none());
}
