//! Tokio paused-time tests: backoff, `Retry-After` and request timeouts are waited on
//! tokio's clock, so minutes of virtual time pass in milliseconds of real time. The
//! requests go to the pure emulator model in-process (an injected client: no sockets,
//! which do not mix with a paused clock).

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload};
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
use upload_session::retry::RetryPolicy;
use upload_session::{Event, TransportFailure, UploadError};
use upload_session_async::{Error, Source, Upload, client_fn};
use upload_session_emulator::{Config, Emulator, Fault, FaultPlan, RouteKind, Service};

const BASE: &str = "http://127.0.0.1:9";

fn emulator(plan: FaultPlan) -> Arc<Mutex<Emulator>> {
    let mut e = Emulator::with_faults(Config::default(), plan);
    e.set_base_url(BASE);
    Arc::new(Mutex::new(e))
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(60),
        seed: 3,
        ..RetryPolicy::default()
    }
}

fn onedrive(size: u64) -> OneDriveUpload {
    let mut cfg = OneDriveConfig::with_base(format!("{BASE}/onedrive/v1.0"));
    cfg.retry = retry();
    OneDriveUpload::builder(Target::path("/paused/a.bin"), size)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(token())
        .build()
        .unwrap()
}

type Delays = Arc<Mutex<Vec<(UploadError, Duration)>>>;

fn record(
    delays: &Delays,
) -> impl FnMut(&Event<upload_session::onedrive::Checkpoint>) + Send + 'static {
    let d = delays.clone();
    move |e| {
        if let Event::RetryScheduled { cause, delay, .. } = e {
            d.lock().unwrap().push((cause.clone(), *delay));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_30_waits_30_virtual_seconds() {
    let plan = FaultPlan::none().script(
        Some(RouteKind::OneDrivePut),
        2,
        Fault::Throttle {
            retry_after: Some(30),
            plain_text: false,
        },
    );
    let emu = emulator(plan);
    let bytes = data(3 * UNIT as usize, 31);
    let delays: Delays = Arc::default();
    let real = Instant::now();
    let virt = tokio::time::Instant::now();
    let done = Upload::new(onedrive(bytes.len() as u64), Source::bytes(bytes.clone()))
        .client(model_client(emu.clone()))
        .on_event(record(&delays))
        .run()
        .await
        .expect("completes after the throttle");
    let waited = virt.elapsed();
    assert!(done.verification.quick_xor);
    assert!(waited >= Duration::from_secs(30), "virtual {waited:?}");
    assert!(waited < Duration::from_secs(40), "virtual {waited:?}");
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "real {:?}",
        real.elapsed()
    );
    let delays = delays.lock().unwrap();
    assert_eq!(delays.len(), 1, "{delays:?}");
    assert!(matches!(
        delays[0].0,
        UploadError::Throttled {
            status: 429,
            retry_after: Some(r)
        } if r == Duration::from_secs(30)
    ));
    let emu = emu.lock().unwrap();
    let rec = emu
        .file(Service::OneDrive, "/paused/a.bin")
        .expect("stored");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(emu.violations().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_is_slept_on_tokios_clock() {
    // Three 503s without Retry-After in a row on the same fragment.
    let mut plan = FaultPlan::none();
    for nth in 2..=4 {
        plan = plan.script(
            Some(RouteKind::OneDrivePut),
            nth,
            Fault::ErrorBefore { status: 503 },
        );
    }
    let emu = emulator(plan);
    let bytes = data(2 * UNIT as usize, 32);
    let delays: Delays = Arc::default();
    let real = Instant::now();
    let virt = tokio::time::Instant::now();
    Upload::new(onedrive(bytes.len() as u64), Source::bytes(bytes))
        .client(model_client(emu.clone()))
        .on_event(record(&delays))
        .run()
        .await
        .expect("completes after the backoff");
    let waited = virt.elapsed();
    let delays = delays.lock().unwrap();
    assert_eq!(delays.len(), 3, "{delays:?}");
    let total: Duration = delays.iter().map(|(_, d)| *d).sum();
    // Growing delays (seeded jitter), each slept in full on tokio's clock.
    assert!(total >= Duration::from_secs(2), "{delays:?}");
    assert!(waited >= total, "virtual {waited:?} < planned {total:?}");
    assert!(
        waited < total + Duration::from_secs(1),
        "virtual {waited:?}"
    );
    assert!(real.elapsed() < Duration::from_secs(10));
    assert_eq!(emu.lock().unwrap().violations().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropbox_retry_after_on_an_append_is_honoured_in_virtual_time() {
    let plan = FaultPlan::none().script(
        Some(RouteKind::DropboxAppend),
        1,
        Fault::Throttle {
            retry_after: Some(45),
            plain_text: false,
        },
    );
    let emu = emulator(plan);
    let bytes = data(3 << 20, 33);
    let mut cfg = DropboxConfig::with_hosts(
        format!("{BASE}/dropbox/content/2"),
        format!("{BASE}/dropbox/api/2"),
    );
    cfg.retry = retry();
    let m = DropboxUpload::builder(
        CommitInfo::new("/Paused/b.bin").unwrap(),
        bytes.len() as u64,
    )
    .chunk_size(1 << 20)
    .config(cfg)
    .access_token(token())
    .build()
    .unwrap();
    let real = Instant::now();
    let virt = tokio::time::Instant::now();
    let done = Upload::new(m, Source::bytes(bytes.clone()))
        .client(model_client(emu.clone()))
        .run()
        .await
        .expect("completes");
    assert!(done.metadata().is_some());
    assert!(
        virt.elapsed() >= Duration::from_secs(45),
        "{:?}",
        virt.elapsed()
    );
    assert!(real.elapsed() < Duration::from_secs(10));
    let emu = emu.lock().unwrap();
    let rec = emu.file(Service::Dropbox, "/Paused/b.bin").expect("stored");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(emu.violations().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out_on_tokios_clock() {
    // A client whose requests never complete: only the request timeout ends them.
    let hang = client_fn(|_req| Box::pin(std::future::pending()));
    let mut cfg = OneDriveConfig::with_base(format!("{BASE}/onedrive/v1.0"));
    cfg.retry = RetryPolicy {
        max_attempts: 3,
        ..retry()
    };
    let m = OneDriveUpload::builder(Target::path("/hang.bin"), 1000)
        .fragment_size(UNIT)
        .config(cfg)
        .access_token(token())
        .build()
        .unwrap();
    let real = Instant::now();
    let virt = tokio::time::Instant::now();
    let err = Upload::new(m, Source::bytes(vec![1u8; 1000]))
        .client(hang)
        .request_timeout(Duration::from_secs(10))
        .run()
        .await
        .unwrap_err();
    let cause = match &err {
        Error::Upload(UploadError::TooManyRetries { last, .. }) => (**last).clone(),
        Error::Upload(e) => e.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(cause, UploadError::Transport(TransportFailure::TimedOut));
    // Three attempts of 10 s each (the adapter's limit, sooner than the core's 60 s
    // deadline) plus the backoff between them passed in virtual time.
    let waited = virt.elapsed();
    assert!(waited >= Duration::from_secs(30), "{waited:?}");
    assert!(waited < Duration::from_secs(60), "{waited:?}");
    assert!(real.elapsed() < Duration::from_secs(10));
}
