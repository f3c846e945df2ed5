//! Dropping a request future stops its body: the default client's [`RequestBody`] hands
//! hyper one slice at a time, and none once the request was abandoned. With a
//! `Full<Bytes>` body hyper-util's connection task owns the whole body and may go on
//! sending it after the future is gone; a final fragment would then commit after the
//! user dropped the upload.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use upload_session::bytes::Bytes;
use upload_session::http;
use upload_session_async::{HttpClient, https_client};

const BODY: usize = 48 << 20;

/// A server that reads the head and the first bytes of the body, stops reading until
/// `resume` fires, then reads to the end of the connection. Returns the body bytes it
/// got (or, if the client neither ends nor closes, what it had after 5 s).
async fn stalling_server(listener: TcpListener, resume: oneshot::Receiver<()>) -> usize {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    let head_end = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let mut body = got.len() - head_end;
    let _ = resume.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while body < BODY {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => body += n,
        }
    }
    if body >= BODY {
        let _ = s
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_stops_its_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(stalling_server(listener, rx));
    let client = https_client(None, None).unwrap();
    let request = http::Request::put(url)
        .header(http::header::CONTENT_LENGTH, BODY)
        .body(Bytes::from(vec![7u8; BODY]))
        .unwrap();
    let fut = HttpClient::request(&client, request);
    // The body is on its way into a server that does not read: the request hangs.
    let hung = tokio::time::timeout(Duration::from_millis(500), fut).await;
    assert!(hung.is_err(), "the stalled request answered");
    // The timeout dropped the future. Let the server read again.
    tx.send(()).unwrap();
    let received = server.await.unwrap();
    assert!(
        received < BODY,
        "the whole {BODY}-byte body arrived after its request was dropped"
    );
    // What still arrives is what the kernel and hyper had already taken, not the rest.
    assert!(
        received < 16 << 20,
        "{received} bytes arrived after the drop"
    );
}
