//! Hostile transport cases of issue 7's catalogue, against a raw TCP server on
//! 127.0.0.1 that says whatever the test wants (the core's side of the catalogue is in
//! `core/tests/hostile_inputs.rs`).
//!
//! Each case ends in a typed [`Error`] (the exact variant is asserted) within a few
//! seconds, and the bytes the server managed to push before the client hung up are
//! bounded: the adapter reads at most `max_response_body` of a body, whatever its
//! announced `Content-Length` or chunking says, so memory stays bounded too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload};
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
use upload_session::retry::RetryPolicy;
use upload_session::{AccessToken, TransportFailure, UploadError};
use upload_session_blocking::{Error, Source, Upload};

/// 10 GiB, the announced length.
const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;
/// The most a connection may push before the client hangs up: the 1 MiB body cap plus
/// generous room for loopback socket buffers on both sides.
const MAX_PUSHED: u64 = 48 * 1024 * 1024;
/// What the server stops at if the client never hangs up.
const PUSH_LIMIT: u64 = 512 * 1024 * 1024;

/// What the server did.
#[derive(Default)]
struct Log {
    /// Request heads (first line) seen.
    requests: Mutex<Vec<String>>,
    /// Body bytes pushed per connection.
    pushed: Mutex<Vec<u64>>,
    stop: AtomicBool,
    connections: AtomicU64,
}

/// A raw server: reads each request (head and `Content-Length` body), then lets
/// `answer` write whatever it likes; returns the bytes `answer` pushed.
fn raw_server(
    answer: impl Fn(&str, &mut TcpStream) -> u64 + Send + Sync + 'static,
) -> (SocketAddr, Arc<Log>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Log::default());
    let l2 = Arc::clone(&log);
    let h = std::thread::spawn(move || {
        while !l2.stop.load(Ordering::Relaxed) {
            let (mut s, _) = match listener.accept() {
                Ok(x) => x,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            l2.connections.fetch_add(1, Ordering::Relaxed);
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // One request per connection (we close after answering).
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() || first.is_empty() {
                continue;
            }
            let mut len = 0usize;
            let mut expect = false;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("expect:") {
                    expect = true;
                }
            }
            if expect {
                let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let mut body = vec![0u8; len.min(1 << 20)];
            let _ = r.read_exact(&mut body);
            l2.requests.lock().unwrap().push(first.trim().to_string());
            let pushed = answer(first.trim(), &mut s);
            l2.pushed.lock().unwrap().push(pushed);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    (addr, log, h)
}

/// Writes `head`, then pushes JSON-ish filler until the peer hangs up or
/// [`PUSH_LIMIT`]; returns the filler bytes written.
fn push_forever(s: &mut TcpStream, head: &str, chunked: bool) -> u64 {
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let piece = vec![b'a'; 64 * 1024];
    let mut pushed = 0u64;
    let _ = s.write_all(if chunked {
        b"e\r\n{\"uploadUrl\":\"\r\n"
    } else {
        b"{\"uploadUrl\":\""
    });
    while pushed < PUSH_LIMIT {
        let ok = if chunked {
            s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .is_ok()
                && s.write_all(&piece).is_ok()
                && s.write_all(b"\r\n").is_ok()
        } else {
            s.write_all(&piece).is_ok()
        };
        if !ok {
            break;
        }
        pushed += piece.len() as u64;
    }
    pushed
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        seed: 7,
        ..RetryPolicy::default()
    }
}

fn onedrive(addr: SocketAddr, data: &[u8]) -> Upload<'_, OneDriveUpload> {
    let mut cfg = OneDriveConfig::with_base(format!("http://{addr}/v1.0"));
    cfg.retry = fast_retry(2);
    cfg.request_timeout = Duration::from_secs(10);
    let m = OneDriveUpload::builder(Target::path("/hostile.bin"), data.len() as u64)
        .fragment_size(327_680)
        .config(cfg)
        .access_token(AccessToken::new("tok").unwrap())
        .build()
        .unwrap();
    Upload::new(m, Source::slice(data))
}

fn stop(log: &Log, h: JoinHandle<()>) {
    log.stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
}

fn last_transport(e: &Error) -> TransportFailure {
    match e {
        Error::Upload(UploadError::TooManyRetries { last, .. }) => match **last {
            UploadError::Transport(f) => f,
            ref other => panic!("last cause {other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// A create answer that announces 10 GiB and streams far more than the cap: the read
/// stops at the cap (`ResponseTooLarge`), the create is retried within the budget, and
/// the upload ends with the typed error.
#[test]
fn content_length_10_gib_streaming_past_the_cap() {
    let (addr, log, h) = raw_server(|_, s| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TEN_GIB}\r\n\r\n"
        );
        push_forever(s, &head, false)
    });
    let data = vec![1u8; 1000];
    let started = Instant::now();
    let e = onedrive(addr, &data).run().unwrap_err();
    stop(&log, h);
    assert_eq!(last_transport(&e), TransportFailure::ResponseTooLarge);
    assert!(started.elapsed() < Duration::from_secs(30));
    let pushed = log.pushed.lock().unwrap().clone();
    assert_eq!(pushed.len(), 3, "one create and two retries: {pushed:?}");
    assert!(pushed.iter().all(|&p| p < MAX_PUSHED), "{pushed:?}");
}

/// The same with an endless chunked body (no length at all).
#[test]
fn endless_chunked_body() {
    let (addr, log, h) = raw_server(|_, s| {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        push_forever(s, head, true)
    });
    let data = vec![1u8; 1000];
    let e = onedrive(addr, &data).run().unwrap_err();
    stop(&log, h);
    assert_eq!(last_transport(&e), TransportFailure::ResponseTooLarge);
    let pushed = log.pushed.lock().unwrap().clone();
    assert!(pushed.iter().all(|&p| p < MAX_PUSHED), "{pushed:?}");
}

/// 10 GiB announced, 20 bytes sent, then the connection closes: a transport failure
/// (the body ended early), retried, then the typed error.
#[test]
fn content_length_10_gib_then_close() {
    let (addr, log, h) = raw_server(|_, s| {
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {TEN_GIB}\r\n\r\n{{\"uploadUrl\":\"https");
        let _ = s.write_all(head.as_bytes());
        20
    });
    let data = vec![1u8; 1000];
    let e = onedrive(addr, &data).run().unwrap_err();
    stop(&log, h);
    let f = last_transport(&e);
    assert!(
        matches!(
            f,
            TransportFailure::Closed | TransportFailure::Reset | TransportFailure::Other
        ),
        "{f:?}"
    );
}

/// A Dropbox `start` answered the same way.
#[test]
fn dropbox_start_content_length_10_gib() {
    let (addr, log, h) = raw_server(|_, s| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TEN_GIB}\r\n\r\n"
        );
        push_forever(s, &head, false)
    });
    let mut cfg = DropboxConfig::with_hosts(
        format!("http://{addr}/dropbox/content/2/"),
        format!("http://{addr}/dropbox/api/2/"),
    );
    cfg.retry = fast_retry(1);
    let data = vec![2u8; 5000];
    let m = DropboxUpload::builder(CommitInfo::new("/h.bin").unwrap(), data.len() as u64)
        .config(cfg)
        .access_token(AccessToken::new("tok").unwrap())
        .build()
        .unwrap();
    let e = Upload::new(m, Source::slice(&data)).run().unwrap_err();
    stop(&log, h);
    assert_eq!(last_transport(&e), TransportFailure::ResponseTooLarge);
    let pushed = log.pushed.lock().unwrap().clone();
    assert!(pushed.iter().all(|&p| p < MAX_PUSHED), "{pushed:?}");
}

/// A smaller `max_response_body` caps the read lower still.
#[test]
fn a_lower_cap_is_honoured() {
    let (addr, log, h) = raw_server(|_, s| {
        let body = format!(
            "{{\"uploadUrl\":\"https://up.example/{}\"}}",
            "a".repeat(100_000)
        );
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body.as_bytes());
        body.len() as u64
    });
    let data = vec![1u8; 1000];
    let e = onedrive(addr, &data)
        .max_response_body(10_000)
        .run()
        .unwrap_err();
    stop(&log, h);
    assert_eq!(last_transport(&e), TransportFailure::ResponseTooLarge);
}

/// A create that hands out a plain-http uploadUrl on a remote host: the core refuses
/// it (`UploadError::UntrustedUploadUrl`) before anything is sent there (a connection to 203.0.113.7, a TEST-NET address,
/// would hang until the connect timeout).
#[test]
fn untrusted_upload_url_is_never_contacted() {
    let (addr, log, h) = raw_server(|_, s| {
        let body =
            r#"{"uploadUrl":"http://203.0.113.7/up?tempauth=SECRET","nextExpectedRanges":["0-"]}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body.as_bytes());
        0
    });
    let data = vec![1u8; 1000];
    let started = Instant::now();
    // Even with the adapter's own plain-http guard turned off, the core refuses.
    let e = onedrive(addr, &data)
        .allow_insecure_http(true)
        .run()
        .unwrap_err();
    stop(&log, h);
    match &e {
        Error::Upload(UploadError::UntrustedUploadUrl { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("SECRET"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let requests = log.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("POST "), "{requests:?}");
}

/// A `Retry-After` of ten years over the wire: no ten-year sleep; the budget gives up
/// at once (the clamped wait exceeds `max_elapsed`).
#[test]
fn retry_after_ten_years_does_not_sleep() {
    let (addr, log, h) = raw_server(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 315360000\r\nContent-Length: 0\r\n\r\n",
        );
        0
    });
    let data = vec![1u8; 1000];
    let started = Instant::now();
    let e = onedrive(addr, &data).run().unwrap_err();
    stop(&log, h);
    assert!(started.elapsed() < Duration::from_secs(5));
    match e {
        Error::Upload(UploadError::TooManyRetries { last, .. }) => assert_eq!(
            *last,
            UploadError::Throttled {
                status: 429,
                retry_after: Some(Duration::from_secs(315_360_000))
            }
        ),
        other => panic!("{other:?}"),
    }
}

/// A transport that panics (here a caller's ureq middleware) on the worker thread that
/// sends the request: the panic is caught there and the upload ends in a typed
/// [`Error::Request`] at once, instead of the drive loop waiting for an answer that can
/// never come. Nothing reaches the server.
#[test]
fn a_panicking_transport_thread_is_a_typed_error() {
    let (addr, log, h) = raw_server(|_, _| 0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(
            |_: ureq::http::Request<ureq::SendBody>,
             _: ureq::middleware::MiddlewareNext|
             -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
                panic!("middleware blew up")
            },
        )
        .build()
        .into();
    let data = vec![2u8; 1000];
    let started = Instant::now();
    let e = onedrive(addr, &data).agent(agent).run().unwrap_err();
    stop(&log, h);
    assert!(started.elapsed() < Duration::from_secs(5));
    match &e {
        Error::Request(why) => assert!(why.contains("panicked"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.connections.load(Ordering::Relaxed), 0);
}
