//! Bad input to the server: garbage heads, absurd `Content-Length`, truncated bodies,
//! oversized headers. Each gets a documented error or a closed connection, and the server
//! keeps serving (issue 2, "Bad input").

mod server_common;

use server_common::{agent, connect, read, read_all, read_one_response, write_lossy};
use std::io::Write;
use std::time::Duration;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};

fn start() -> RunningServer {
    EmulatorServer::start(ServerOptions::default()).expect("server starts")
}

fn assert_alive(s: &RunningServer) {
    let (st, _) = read(
        agent(None)
            .get(format!("{}/_emulator/health", s.url()))
            .call(),
    );
    assert_eq!(st, 200, "server still serves");
}

/// Sends `head` (and nothing else), returns what came back.
fn exchange(s: &RunningServer, head: &[u8]) -> server_common::Raw {
    let mut c = connect(s.local_addr());
    write_lossy(&mut c, head);
    read_all(&mut c, Duration::from_secs(5))
}

#[test]
fn garbage_request_line_gets_400_or_close() {
    let s = start();
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /_emulator/health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
        b"GET /_emulator/health HTTP/1.1\r\nX-Bad\x01Name: v\r\n\r\n",
        b"GET /_emulator/health HTTP/1.1\r\nX: a\rb\r\n\r\n",
    ] {
        let r = exchange(&s, junk);
        assert!(r.closed, "connection closed after {junk:?}: {}", r.text());
        if let Some(st) = r.status() {
            assert!((400..500).contains(&st), "{junk:?} -> {}", r.text());
        }
    }
    assert_alive(&s);
}

#[test]
fn non_numeric_and_overflowing_content_length_get_400() {
    let s = start();
    for cl in ["abc", "-5", "1e9", "99999999999999999999999999", "12, 13"] {
        let head = format!(
            "PUT /onedrive/up/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {cl}\r\n\r\n"
        );
        let r = exchange(&s, head.as_bytes());
        assert_eq!(r.status(), Some(400), "Content-Length {cl:?}: {}", r.text());
        assert!(r.closed);
    }
    // Two different Content-Length headers.
    let r = exchange(
        &s,
        b"PUT /onedrive/up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    );
    assert_eq!(r.status(), Some(400), "{}", r.text());
    assert_alive(&s);
}

#[test]
fn absurd_content_length_is_answered_without_reading_the_body() {
    let s = start();
    for path in [
        "/nowhere",
        "/onedrive/up/abc?tempauth=x",
        "/dropbox/content/2/files/upload_session/start",
    ] {
        let mut c = connect(s.local_addr());
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000000\r\n\r\n"
        );
        c.write_all(head.as_bytes()).unwrap();
        // No body is sent: an answer proves the server did not wait for it.
        let r = read_all(&mut c, Duration::from_secs(5));
        let st = r
            .status()
            .unwrap_or_else(|| panic!("{path}: no answer: {}", r.text()));
        assert!(st >= 400, "{path}: {}", r.text());
        assert!(
            r.closed,
            "{path}: the connection closes since the body is not read"
        );
        assert!(
            r.text().to_ascii_lowercase().contains("connection: close"),
            "{path}: {}",
            r.text()
        );
    }
    assert_alive(&s);
}

#[test]
fn expect_continue_is_not_granted_when_the_head_is_rejected() {
    let s = start();
    let mut c = connect(s.local_addr());
    c.write_all(
        b"PUT /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let r = read_all(&mut c, Duration::from_secs(5));
    let t = r.text();
    assert!(!t.contains("100 Continue"), "{t}");
    assert_eq!(r.status(), Some(404), "{t}");
    assert_alive(&s);
}

#[test]
fn small_rejected_bodies_are_drained_and_the_connection_reused() {
    let s = start();
    let mut c = connect(s.local_addr());
    for _ in 0..3 {
        c.write_all(b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
            .unwrap();
        let t = read_one_response(&mut c);
        assert!(t.starts_with("HTTP/1.1 404"), "{t}");
        assert!(!t.to_ascii_lowercase().contains("connection: close"), "{t}");
    }
}

#[test]
fn truncated_bodies_and_early_closes_do_not_hurt() {
    let s = start();
    for path in [
        "/nowhere",
        "/_emulator/discard",
        "/_emulator/faults",
        "/onedrive/up/x",
    ] {
        let mut c = connect(s.local_addr());
        let head = format!("PUT {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
        write_lossy(&mut c, head.as_bytes());
        write_lossy(&mut c, &[7u8; 1000]);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = read_all(&mut c, Duration::from_secs(5));
    }
    // A truncated chunked body.
    let mut c = connect(s.local_addr());
    write_lossy(
        &mut c,
        b"PUT /_emulator/discard HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\nabc",
    );
    drop(c);
    // Bad chunk sizes.
    let r = exchange(
        &s,
        b"PUT /_emulator/discard HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    );
    assert!(r.closed);
    let r = exchange(
        &s,
        b"PUT /_emulator/discard HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n",
    );
    assert!(r.closed, "{}", r.text());
    assert_alive(&s);
}

#[test]
fn oversized_heads_are_refused() {
    let s = start();
    // One enormous header value (1 MiB).
    let mut head = b"GET /_emulator/health HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    head.extend_from_slice(b"\r\n\r\n");
    let r = exchange(&s, &head);
    assert!(r.closed);
    if let Some(st) = r.status() {
        assert!(st == 431 || st == 400, "{}", r.text());
    }
    // Too many headers.
    let mut head = b"GET /_emulator/health HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..500 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let r = exchange(&s, &head);
    assert!(r.closed);
    if let Some(st) = r.status() {
        assert!(st == 431 || st == 400, "{}", r.text());
    }
    // An endless request line.
    let mut c = connect(s.local_addr());
    let mut sent = 0usize;
    c.write_all(b"GET /").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    while sent < 16 << 20 && write_lossy(&mut c, &chunk) {
        sent += chunk.len();
    }
    let r = read_all(&mut c, Duration::from_secs(5));
    assert!(r.closed, "the server gave up on an endless head");
    assert!(
        sent < 16 << 20,
        "the server stopped reading long before 16 MiB ({sent})"
    );
    assert_alive(&s);
}

#[test]
fn many_concurrent_garbage_connections() {
    let s = start();
    let addr = s.local_addr();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                for j in 0..20 {
                    let mut c = connect(addr);
                    let junk: Vec<u8> = (0..200u32)
                        .map(|k| ((k * 31 + i * 7 + j) % 256) as u8)
                        .collect();
                    write_lossy(&mut c, &junk);
                    write_lossy(&mut c, b"\r\n\r\n");
                    let _ = read_all(&mut c, Duration::from_secs(5));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_alive(&s);
}
