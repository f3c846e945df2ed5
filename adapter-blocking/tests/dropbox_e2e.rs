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

#[test]
fn a_concurrent_session_is_driven_one_request_at_a_time() {
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
