//! Helpers shared by the `server_*` integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A ureq agent that returns 4xx/5xx as responses and trusts `cert_pem` when given.
pub fn agent(cert_pem: Option<&str>) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)));
    if let Some(pem) = cert_pem {
        let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("cert parses");
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
            .build();
        b = b.tls_config(tls);
    }
    b.build().into()
}

/// Reads exactly one response with a `Content-Length` from a keep-alive connection and
/// returns it as text (head and body). Panics if the connection closes first.
pub fn read_one_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read a response");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("a numeric Content-Length"))
                })
                .expect("a Content-Length");
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Status and body (as text) of a response.
pub fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut resp = resp.expect("request succeeds at the transport level");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body readable");
    (status, body)
}

/// Parses a JSON body.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Outcome of a raw exchange on one TCP connection.
#[derive(Debug)]
pub struct Raw {
    /// Everything the server sent before closing (or before the read timed out).
    pub bytes: Vec<u8>,
    /// True when the connection was closed by the server (EOF or reset).
    pub closed: bool,
    /// True when the close was a TCP reset.
    pub reset: bool,
}

impl Raw {
    /// The response text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Status code of the first response, if any.
    pub fn status(&self) -> Option<u16> {
        let t = self.text();
        let line = t.lines().next()?;
        let mut it = line.split(' ');
        if !it.next()?.starts_with("HTTP/1.") {
            return None;
        }
        it.next()?.parse().ok()
    }
}

/// Connects to `addr` with a read timeout.
pub fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until the server closes or `timeout` passes without data.
pub fn read_all(s: &mut TcpStream, timeout: Duration) -> Raw {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return Raw {
                    bytes,
                    closed: true,
                    reset: false,
                };
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Raw {
                    bytes,
                    closed: false,
                    reset: false,
                };
            }
            Err(_) => {
                return Raw {
                    bytes,
                    closed: true,
                    reset: true,
                };
            }
        }
    }
}

/// Writes `data`, ignoring a failure (the server may already have closed).
pub fn write_lossy(s: &mut TcpStream, data: &[u8]) -> bool {
    s.write_all(data).is_ok()
}
