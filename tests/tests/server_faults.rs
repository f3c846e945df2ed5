//! Uploads and transport faults through the real server: resets mid-body (discarding or
//! keeping a prefix), lost responses, stalls, slow responses, overflowing bodies, absurd
//! `Content-Length`s and clients that vanish mid-body. onedrive.md §11 rules 39-45 and
//! dropbox.md §12 rules 66-72 are decided by the model; these tests check that the
//! server carries them out on a real socket.

mod server_common;

use server_common::{Raw, agent, connect, json, read, read_all, read_one_response, write_lossy};
use std::io::Write;
use std::time::{Duration, Instant};
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::{
    Config, DEFAULT_TOKEN, Fault, FaultPlan, RouteKind, Service, StoredContent, Violation,
};

const ALIGN: usize = 320 * 1024;

fn start_with(config: Config, faults: FaultPlan) -> RunningServer {
    EmulatorServer::start(ServerOptions {
        config,
        faults,
        ..ServerOptions::default()
    })
    .expect("server starts")
}

fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Creates a OneDrive upload session for `name`, returns its uploadUrl.
fn create(s: &RunningServer, a: &ureq::Agent, name: &str) -> String {
    let (st, body) = read(
        a.post(format!(
            "{}/onedrive/v1.0/me/drive/root:/{name}:/createUploadSession",
            s.url()
        ))
        .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
        .header("Content-Type", "application/json")
        .send("{}"),
    );
    assert_eq!(st, 200, "{body}");
    let url = json(&body)["uploadUrl"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/onedrive/up/", s.url())),
        "{url}"
    );
    url
}

/// PUTs `data[start..end]` of a `total`-byte file with ureq.
fn put(a: &ureq::Agent, url: &str, data: &[u8], start: usize, end: usize) -> (u16, String) {
    read(
        a.put(url)
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{}", end - 1, data.len()),
            )
            .send(&data[start..end]),
    )
}

/// The first byte the session expects, from a status GET.
fn next_expected(a: &ureq::Agent, url: &str) -> u64 {
    let (st, body) = read(a.get(url).call());
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    let r = v["nextExpectedRanges"][0].as_str().unwrap().to_string();
    r.split('-').next().unwrap().parse().unwrap()
}

/// The path and query of an absolute URL.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

/// Sends one raw fragment PUT (head + body) on a fresh connection and reads what comes
/// back until the server closes or goes quiet.
fn raw_put(s: &RunningServer, url: &str, data: &[u8], start: usize, end: usize) -> Raw {
    let mut c = connect(s.local_addr());
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
        path_of(url),
        end - start,
        end - 1,
        data.len()
    );
    write_lossy(&mut c, head.as_bytes());
    write_lossy(&mut c, &data[start..end]);
    read_all(&mut c, Duration::from_secs(5))
}

fn stored(s: &RunningServer, service: Service, path: &str) -> StoredContent {
    s.emulator()
        .lock()
        .unwrap()
        .file(service, path)
        .unwrap_or_else(|| panic!("{path} stored"))
        .content
}

#[test]
fn onedrive_upload_over_http_and_tls_stores_the_right_hashes() {
    for tls in [false, true] {
        let s = EmulatorServer::start(ServerOptions {
            tls,
            ..ServerOptions::default()
        })
        .unwrap();
        let a = agent(s.cert_pem());
        let src = data(3 * ALIGN + 12345, 7);
        let url = create(&s, &a, "big.bin");
        let (st, body) = put(&a, &url, &src, 0, 2 * ALIGN);
        assert_eq!(st, 202, "{body}");
        assert_eq!(next_expected(&a, &url), 2 * ALIGN as u64);
        let (st, body) = put(&a, &url, &src, 2 * ALIGN, src.len());
        assert_eq!(st, 201, "{body}");
        let want = StoredContent::of(&src, false);
        assert!(stored(&s, Service::OneDrive, "/big.bin").same_content(&want));
        // And through the control endpoint.
        let (_, body) = read(a.get(format!("{}/_emulator/files", s.url())).call());
        let files = json(&body);
        assert_eq!(files[0]["path"], "/big.bin");
        assert_eq!(files[0]["size"], src.len() as u64);
        assert_eq!(files[0]["sha256"], want.sha256.clone().unwrap());
        assert_eq!(
            files[0]["quick_xor_hash"],
            want.quick_xor_hash.clone().unwrap()
        );
        assert!(
            s.snapshot().violations.is_empty(),
            "{:?}",
            s.snapshot().violations
        );
    }
}

#[test]
fn scripted_reset_drops_the_connection_mid_body_without_a_response() {
    let plan = FaultPlan::none().script(
        Some(RouteKind::OneDrivePut),
        1,
        Fault::Reset { keep_prefix: false },
    );
    let s = start_with(Config::default(), plan);
    let a = agent(None);
    let src = data(4 * ALIGN, 1);
    let url = create(&s, &a, "r.bin");
    let r = raw_put(&s, &url, &src, 0, 2 * ALIGN);
    assert!(r.closed, "connection dropped");
    assert!(r.bytes.is_empty(), "no response at all: {}", r.text());
    // Nothing was kept, the session is not stuck "in flight", and nothing is a violation.
    assert_eq!(next_expected(&a, &url), 0);
    let (st, body) = put(&a, &url, &src, 0, 2 * ALIGN);
    assert_eq!(st, 202, "{body}");
    let (st, _) = put(&a, &url, &src, 2 * ALIGN, src.len());
    assert_eq!(st, 201);
    assert!(stored(&s, Service::OneDrive, "/r.bin").same_content(&StoredContent::of(&src, false)));
    let snap = s.snapshot();
    assert!(snap.violations.is_empty(), "{:?}", snap.violations);
    assert_eq!(snap.faults_injected, 1);
}

#[test]
fn scripted_reset_keeping_a_prefix_keeps_exactly_the_bytes_that_arrived() {
    // Several seeds: the cut point is drawn from the plan's generator.
    let mut kept_some = false;
    for seed in [1u64, 2, 3, 4] {
        let mut plan = FaultPlan::none().script(
            Some(RouteKind::OneDrivePut),
            1,
            Fault::Reset { keep_prefix: true },
        );
        plan.seed = seed;
        let s = start_with(Config::default(), plan);
        let a = agent(None);
        let src = data(3 * ALIGN + 99, seed);
        let url = create(&s, &a, "k.bin");
        let r = raw_put(&s, &url, &src, 0, 3 * ALIGN);
        assert!(r.closed && r.bytes.is_empty(), "{}", r.text());
        let kept = next_expected(&a, &url) as usize;
        assert!(kept < 3 * ALIGN, "a strict prefix was kept ({kept})");
        kept_some |= kept > 0;
        // Resume from where the server says; the stored file must equal the source, which
        // proves the kept prefix was exactly the first `kept` bytes sent.
        let (st, body) = put(&a, &url, &src, kept, src.len());
        assert_eq!(st, 201, "seed {seed}, kept {kept}: {body}");
        assert!(
            stored(&s, Service::OneDrive, "/k.bin").same_content(&StoredContent::of(&src, false))
        );
        // Resyncing after a kept prefix is the normal path: the unaligned resume is the
        // final fragment, so nothing is counted.
        assert!(
            s.snapshot().violations.is_empty(),
            "{:?}",
            s.snapshot().violations
        );
    }
    assert!(kept_some, "some seed kept a non-empty prefix");
}

#[test]
fn lost_response_applies_then_closes_without_a_response() {
    let plan = FaultPlan::none().script(Some(RouteKind::OneDrivePut), 1, Fault::LostResponse);
    let s = start_with(Config::default(), plan);
    let a = agent(None);
    let src = data(2 * ALIGN + 5, 3);
    let url = create(&s, &a, "l.bin");
    let r = raw_put(&s, &url, &src, 0, ALIGN);
    assert!(r.closed, "connection closed");
    assert!(r.bytes.is_empty(), "no response: {}", r.text());
    assert!(
        !r.reset,
        "the body was read whole: a clean close, not a reset"
    );
    // The fragment was applied.
    assert_eq!(next_expected(&a, &url), ALIGN as u64);
    let (st, _) = put(&a, &url, &src, ALIGN, src.len());
    assert_eq!(st, 201);
    assert!(s.snapshot().violations.is_empty());
}

#[test]
fn slow_response_and_stall_delay_the_answer() {
    let plan = FaultPlan::none()
        .script(
            Some(RouteKind::OneDrivePut),
            1,
            Fault::SlowResponse { ms: 400 },
        )
        .script(Some(RouteKind::OneDrivePut), 2, Fault::Stall { ms: 400 });
    let s = start_with(Config::default(), plan);
    let a = agent(None);
    let src = data(2 * ALIGN, 4);
    let url = create(&s, &a, "s.bin");
    let t0 = Instant::now();
    let (st, _) = put(&a, &url, &src, 0, ALIGN);
    assert_eq!(st, 202);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    let (st, _) = put(&a, &url, &src, ALIGN, src.len());
    assert_eq!(st, 201);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    assert!(stored(&s, Service::OneDrive, "/s.bin").same_content(&StoredContent::of(&src, false)));
}

#[test]
fn stall_really_stops_reading_the_socket() {
    let plan = FaultPlan::none().script(Some(RouteKind::OneDrivePut), 1, Fault::Stall { ms: 1500 });
    let s = start_with(Config::default(), plan);
    let a = agent(None);
    // Big enough to overflow the socket buffers: the writer blocks while the server stalls.
    let n = 80 * ALIGN;
    let src = data(n, 5);
    let url = create(&s, &a, "st.bin");
    let mut c = connect(s.local_addr());
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {n}\r\nContent-Range: bytes 0-{}/{n}\r\n\r\n",
        path_of(&url),
        n - 1
    );
    c.write_all(head.as_bytes()).unwrap();
    let t0 = Instant::now();
    c.write_all(&src).unwrap();
    let wrote = t0.elapsed();
    assert!(
        wrote >= Duration::from_millis(1000),
        "writing was not held up: {wrote:?}"
    );
    let r = read_all(&mut c, Duration::from_secs(5));
    assert_eq!(r.status(), Some(201), "{}", r.text());
}

#[test]
fn client_vanishing_mid_body_aborts_the_request() {
    let s = start_with(Config::default(), FaultPlan::none());
    let a = agent(None);
    let src = data(2 * ALIGN, 6);
    let url = create(&s, &a, "v.bin");
    {
        let mut c = connect(s.local_addr());
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nContent-Range: bytes 0-{}/{}\r\n\r\n",
            path_of(&url),
            ALIGN,
            ALIGN - 1,
            src.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(&src[..ALIGN / 2]).unwrap();
    } // closed here
    // The server notices, aborts (nothing kept) and frees the session for the next PUT.
    let t0 = Instant::now();
    loop {
        // Until the abort is processed the session is still busy (rule 23): the server
        // answers 416 from the head and closes without reading our 320 KiB body, which
        // the client may see as a broken pipe instead of the 416.
        let sent = a
            .put(&url)
            .header(
                "Content-Range",
                format!("bytes 0-{}/{}", ALIGN - 1, src.len()),
            )
            .send(&src[..ALIGN]);
        if let Ok(resp) = sent {
            let (st, body) = read(Ok(resp));
            if st == 202 {
                break;
            }
            assert_eq!(st, 416, "{body}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "session stayed in flight"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(next_expected(&a, &url), ALIGN as u64);
}

#[test]
fn dropbox_truncated_body_is_aborted_and_counted() {
    let s = start_with(Config::default(), FaultPlan::none());
    let mut c = connect(s.local_addr());
    let head = format!(
        "POST /dropbox/content/2/files/upload_session/start HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {{}}\r\nContent-Length: 100000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&[1u8; 5000]).unwrap();
    drop(c);
    let t0 = Instant::now();
    while s.snapshot().violations.count(Violation::TruncatedBody) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "abort never reached the model"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dropbox_upload_through_the_server() {
    let s = start_with(Config::default(), FaultPlan::none());
    let a = agent(None);
    let src = data(5 * 1024 * 1024 + 3, 9);
    let up = |route: &str, arg: serde_json::Value, body: &[u8]| {
        read(
            a.post(format!(
                "{}/dropbox/content/2/files/upload_session/{route}",
                s.url()
            ))
            .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
            .header("Content-Type", "application/octet-stream")
            .header("Dropbox-API-Arg", arg.to_string())
            .send(body),
        )
    };
    let (st, body) = up("start", serde_json::json!({}), &src[..4 << 20]);
    assert_eq!(st, 200, "{body}");
    let sid = json(&body)["session_id"].as_str().unwrap().to_string();
    let (st, body) = up(
        "finish",
        serde_json::json!({"cursor": {"session_id": sid, "offset": 4 << 20}, "commit": {"path": "/d/x.bin"}}),
        &src[4 << 20..],
    );
    assert_eq!(st, 200, "{body}");
    let want = StoredContent::of(&src, false);
    assert_eq!(
        json(&body)["content_hash"],
        want.content_hash.clone().unwrap()
    );
    assert!(stored(&s, Service::Dropbox, "/d/x.bin").same_content(&want));
}

#[test]
fn overflowing_chunked_body_is_answered_and_the_rest_not_read() {
    let mut config = Config::default();
    config.dropbox.max_body = 64 * 1024;
    let s = start_with(config, FaultPlan::none());
    let mut c = connect(s.local_addr());
    let head = format!(
        "POST /dropbox/content/2/files/upload_session/start HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {{}}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    // 128 KiB in one chunk, and no final chunk: the answer must come without the end.
    c.write_all(format!("{:x}\r\n", 128 * 1024).as_bytes())
        .unwrap();
    c.write_all(&vec![2u8; 128 * 1024]).unwrap();
    c.write_all(b"\r\n").unwrap();
    let r = read_all(&mut c, Duration::from_secs(5));
    assert_eq!(r.status(), Some(409), "{}", r.text());
    let t = r.text();
    assert!(t.contains("payload_too_large"), "{t}");
    assert!(t.to_ascii_lowercase().contains("connection: close"), "{t}");
    assert!(r.closed, "connection closed after the overflow");
    assert_eq!(s.snapshot().violations.count(Violation::OversizeBody), 1);
    assert!(s.snapshot().files.is_empty());
}

#[test]
fn overflowing_json_body_is_refused() {
    let config = Config {
        max_json_body: 1024,
        ..Config::default()
    };
    let s = start_with(config, FaultPlan::none());
    let mut c = connect(s.local_addr());
    let head = format!(
        "POST /onedrive/v1.0/me/drive/root:/j.bin:/createUploadSession HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let filler = format!(
        "{{\"item\": {{\"description\": \"{}\"}}}}",
        "x".repeat(8000)
    );
    c.write_all(format!("{:x}\r\n{filler}\r\n", filler.len()).as_bytes())
        .unwrap();
    let r = read_all(&mut c, Duration::from_secs(5));
    assert_eq!(r.status(), Some(413), "{}", r.text());
    assert!(r.closed);
}

#[test]
fn absurd_content_length_on_data_routes_is_refused_from_the_head() {
    let s = start_with(Config::default(), FaultPlan::none());
    let a = agent(None);
    let url = create(&s, &a, "abs.bin");
    for (head, want) in [
        (
            format!(
                "PUT {} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\nContent-Range: bytes 0-999999999/100000000000\r\n\r\n",
                path_of(&url)
            ),
            413,
        ),
        (
            format!(
                "POST /dropbox/content/2/files/upload_session/start HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {{}}\r\nContent-Length: 1000000000000\r\n\r\n"
            ),
            409,
        ),
    ] {
        let mut c = connect(s.local_addr());
        c.write_all(head.as_bytes()).unwrap();
        let r = read_all(&mut c, Duration::from_secs(5));
        assert_eq!(r.status(), Some(want), "{}", r.text());
        assert!(r.closed, "not kept alive with an unread body");
    }
    assert_eq!(
        s.snapshot().violations.count(Violation::FragmentTooLarge),
        1
    );
    assert_eq!(s.snapshot().violations.count(Violation::OversizeBody), 1);
}

#[test]
fn issued_and_expired_tokens_through_control_endpoints() {
    let s = start_with(Config::default(), FaultPlan::none());
    let a = agent(None);
    let (_, body) = read(a.post(format!("{}/_emulator/tokens", s.url())).send_empty());
    let token = json(&body)["token"].as_str().unwrap().to_string();
    let create_with = |t: &str| {
        read(
            a.post(format!(
                "{}/onedrive/v1.0/me/drive/root:/t.bin:/createUploadSession",
                s.url()
            ))
            .header("Authorization", format!("Bearer {t}"))
            .header("Content-Type", "application/json")
            .send("{}"),
        )
        .0
    };
    assert_eq!(create_with(&token), 200);
    assert_eq!(create_with("never-issued"), 401);
    let (st, _) = read(
        a.post(format!("{}/_emulator/tokens/expire", s.url()))
            .send_empty(),
    );
    assert_eq!(st, 200);
    assert_eq!(create_with(&token), 401);
    assert_eq!(create_with(DEFAULT_TOKEN), 401);
}

#[test]
fn fault_plan_set_over_http_takes_effect_and_reset_forgets_files() {
    let s = start_with(Config::default(), FaultPlan::none());
    let a = agent(None);
    let plan = FaultPlan::none().script(Some(RouteKind::OneDrivePut), 1, Fault::LostResponse);
    let (st, _) = read(
        a.put(format!("{}/_emulator/faults", s.url()))
            .send(serde_json::to_string(&plan).unwrap()),
    );
    assert_eq!(st, 200);
    let src = data(1000, 8);
    let url = create(&s, &a, "f.bin");
    let r = raw_put(&s, &url, &src, 0, src.len());
    assert!(r.closed && r.bytes.is_empty(), "{}", r.text());
    assert_eq!(s.snapshot().files.len(), 1, "the lost response was applied");
    let (st, _) = read(a.post(format!("{}/_emulator/reset", s.url())).send_empty());
    assert_eq!(st, 200);
    assert!(s.snapshot().files.is_empty());
    // The plan survives a reset and restarts: the first PUT loses its response again.
    let url = create(&s, &a, "g.bin");
    let r = raw_put(&s, &url, &src, 0, src.len());
    assert!(r.closed && r.bytes.is_empty());
}

#[test]
fn shutdown_aborts_a_request_stuck_mid_body() {
    let s = start_with(Config::default(), FaultPlan::none());
    let emu = s.emulator();
    let mut c = connect(s.local_addr());
    let head = format!(
        "POST /dropbox/content/2/files/upload_session/start HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {{}}\r\nContent-Length: 100000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&[1u8; 5000]).unwrap();
    // Wait until the server is inside the body.
    let t0 = Instant::now();
    while emu.lock().unwrap().requests() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    // The client neither finishes nor leaves: shutdown waits its grace period, then drops
    // the request, which the model must hear about (not leave "in flight" forever).
    let t0 = Instant::now();
    s.shutdown().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let emu = emu.lock().unwrap();
    assert_eq!(emu.violations().count(Violation::TruncatedBody), 1);
    drop(c);
}

/// Bytes a stalled server lets a writer hand to the kernel on a connection that just
/// carried a large body at full speed (so receive-buffer auto-tuning has grown it).
fn bytes_accepted_while_stalled(recv_buffer: Option<usize>) -> usize {
    const FRAGMENT: usize = 96 * ALIGN; // 30 MiB
    let plan =
        FaultPlan::none().script(Some(RouteKind::OneDrivePut), 2, Fault::Stall { ms: 1_500 });
    let s = EmulatorServer::start(ServerOptions {
        faults: plan,
        recv_buffer,
        ..ServerOptions::default()
    })
    .unwrap();
    let a = agent(None);
    let src = data(2 * FRAGMENT, 7);
    let url = create(&s, &a, "rb.bin");
    let mut c = connect(s.local_addr());
    // A small send buffer on our side, so that what is absorbed is mostly the server's.
    socket2::SockRef::from(&c)
        .set_send_buffer_size(64 * 1024)
        .unwrap();
    let head = |start: usize| {
        format!(
            "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {FRAGMENT}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
            path_of(&url),
            start + FRAGMENT - 1,
            src.len()
        )
    };
    // Fragment 1 at full speed, on a keep-alive connection; read its whole answer.
    c.write_all(head(0).as_bytes()).unwrap();
    c.write_all(&src[..FRAGMENT]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let answer = read_one_response(&mut c);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // Fragment 2 into the stall: write until the kernel stops taking bytes.
    c.write_all(head(FRAGMENT).as_bytes()).unwrap();
    c.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0;
    while sent < FRAGMENT {
        match c.write(&src[FRAGMENT + sent..(FRAGMENT + sent + 64 * 1024).min(2 * FRAGMENT)]) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    sent
}

/// `ServerOptions::recv_buffer` bounds what a stalled connection can absorb, even on a
/// connection whose receive buffer auto-tuning has grown (what tests that drop a client
/// mid-body rely on: the body cannot have been fully handed over).
#[test]
fn recv_buffer_bounds_what_a_stalled_connection_absorbs() {
    let capped = bytes_accepted_while_stalled(Some(128 * 1024));
    let tuned = bytes_accepted_while_stalled(None);
    eprintln!("accepted while stalled: capped {capped}, auto-tuned {tuned}");
    assert!(
        capped < 8 << 20,
        "{capped} bytes taken with a 128 KiB buffer"
    );
}

/// An answer given from the head alone (here a scripted 429 on a 24 MiB fragment) reaches
/// a client that sends its whole body before reading: the server reads and drops the
/// rest while the answer goes out (a lingering close) instead of closing on unread data,
/// which makes the kernel reset the connection and can lose the answer.
#[test]
fn an_answer_from_the_head_survives_a_large_unread_body() {
    let plan = FaultPlan::none().script(
        Some(RouteKind::OneDrivePut),
        1,
        Fault::Throttle {
            retry_after: Some(1),
            plain_text: false,
        },
    );
    let s = start_with(Config::default(), plan);
    let a = agent(None);
    let src = data(75 * ALIGN, 8);
    let url = create(&s, &a, "linger.bin");
    // ureq sends the whole body, then reads the answer.
    let (st, body) = put(&a, &url, &src, 0, src.len());
    assert_eq!(st, 429, "{body}");
    // Nothing was applied; the same fragment then completes the file.
    let (st, body) = put(&a, &url, &src, 0, src.len());
    assert_eq!(st, 201, "{body}");
    assert_eq!(s.snapshot().faults_injected, 1);
}
