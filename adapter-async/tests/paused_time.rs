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

/// Issue 8's overlap, shown on tokio's clock instead of a bench: a source that takes
/// 50 ms (virtual) to produce each 1 MiB chunk and a server that takes 100 ms to answer.
/// Each request is first polled at the very instant it can go, once its chunk is read
/// and the previous append answered (it is spawned when the machine emits it, not after
/// the next chunk has been prepared), and the next chunk is read while that request is
/// still on the wire (Dropbox `read_ahead`, default
/// 1). A loop without the overlap would start each request 50 ms late, or read each
/// chunk only after the previous answer.
#[tokio::test(start_paused = true)]
async fn dropbox_reads_the_next_chunk_while_a_request_is_on_the_wire() {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};
    use tokio::time::Instant as VInstant;

    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 4;
    const READ: Duration = Duration::from_millis(50);
    const ANSWER: Duration = Duration::from_millis(100);

    /// Serves `data`, sleeping `READ` before the first byte of each chunk, and records
    /// when the last byte of each chunk was handed over.
    struct SlowChunks {
        data: Vec<u8>,
        pos: usize,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        slept_for: Option<usize>,
        done_at: Arc<Mutex<Vec<VInstant>>>,
    }
    impl AsyncRead for SlowChunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = &mut *self;
            if this.pos >= this.data.len() {
                return Poll::Ready(Ok(()));
            }
            let chunk = this.pos / CHUNK;
            if this.slept_for != Some(chunk) {
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(READ)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                this.slept_for = Some(chunk);
            }
            let end = ((chunk + 1) * CHUNK).min(this.data.len());
            let n = (end - this.pos).min(buf.remaining());
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == end {
                this.done_at.lock().unwrap().push(VInstant::now());
            }
            Poll::Ready(Ok(()))
        }
    }
    use std::future::Future;

    let emu = emulator(FaultPlan::none());
    let bytes = data(CHUNKS * CHUNK, 34);
    let read_done: Arc<Mutex<Vec<VInstant>>> = Arc::default();
    // (first poll, answer) of each request that carries file bytes, in order.
    let on_wire: Arc<Mutex<Vec<(VInstant, VInstant)>>> = Arc::default();
    let client = {
        let (emu, on_wire) = (emu.clone(), on_wire.clone());
        client_fn(move |req| {
            let (emu, on_wire) = (emu.clone(), on_wire.clone());
            Box::pin(async move {
                let started = VInstant::now();
                let carries_data = !req.body().is_empty();
                tokio::time::sleep(ANSWER).await;
                let resp = emu
                    .lock()
                    .unwrap()
                    .handle(std::time::SystemTime::now(), req);
                if carries_data {
                    on_wire.lock().unwrap().push((started, VInstant::now()));
                }
                Ok(resp.map(upload_session_async::full_body))
            })
        })
    };
    let mut cfg = DropboxConfig::with_hosts(
        format!("{BASE}/dropbox/content/2"),
        format!("{BASE}/dropbox/api/2"),
    );
    cfg.retry = retry();
    let m = DropboxUpload::builder(
        CommitInfo::new("/Paused/overlap.bin").unwrap(),
        bytes.len() as u64,
    )
    .chunk_size(CHUNK as u64)
    .config(cfg)
    .access_token(token())
    .build()
    .unwrap();
    let source = Source::reader(
        SlowChunks {
            data: bytes.clone(),
            pos: 0,
            sleep: None,
            slept_for: None,
            done_at: read_done.clone(),
        },
        bytes.len() as u64,
    );
    Upload::new(m, source)
        .client(client)
        .run()
        .await
        .expect("completes");

    let read_done = read_done.lock().unwrap().clone();
    let on_wire = on_wire.lock().unwrap().clone();
    assert_eq!(read_done.len(), CHUNKS, "{read_done:?}");
    assert_eq!(on_wire.len(), CHUNKS, "{on_wire:?}");
    for k in 0..CHUNKS {
        let (first_poll, answered) = on_wire[k];
        // Sequential appends: request k can go once its chunk is read and request k-1
        // has been answered, and it must go right then.
        let ready = match k {
            0 => read_done[0],
            _ => read_done[k].max(on_wire[k - 1].1),
        };
        assert_eq!(
            first_poll,
            ready,
            "request {k} was first polled {:?} after it could go",
            first_poll - ready
        );
        if k + 1 < CHUNKS {
            assert!(
                read_done[k + 1] < answered,
                "chunk {} was read {:?} after request {k} was answered",
                k + 1,
                read_done[k + 1] - answered
            );
        }
    }
    let emu = emu.lock().unwrap();
    let rec = emu
        .file(Service::Dropbox, "/Paused/overlap.bin")
        .expect("stored");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(emu.violations().total(), 0);
}
