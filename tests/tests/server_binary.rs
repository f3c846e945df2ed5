//! The standalone binary: first stdout line, serving, clean exit on SIGTERM / SIGINT.
#![cfg(unix)]

mod server_common;

use server_common::{agent, json, read};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_upload-session-emulator");

/// A running binary, killed if the test fails before it exits.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let line = line.trim_end_matches('\n');
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Proc { child, url }
}

fn signal(p: &Proc, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "binary did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_prints_first_line_serves_and_exits_0_on_sigterm() {
    let mut p = spawn(&["--port", "0"]);
    let port: u16 = p
        .url
        .strip_prefix("http://127.0.0.1:")
        .expect("http URL on 127.0.0.1")
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let (st, body) = read(
        agent(None)
            .get(format!("{}/_emulator/health", p.url))
            .call(),
    );
    assert_eq!(st, 200);
    assert_eq!(json(&body)["status"], "ok");
    let (st, _) = read(agent(None).get(format!("{}/nope", p.url)).call());
    assert_eq!(st, 404);
    signal(&p, "TERM");
    let st = wait_exit(&mut p);
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn binary_exits_0_on_sigint() {
    let mut p = spawn(&["--port", "0", "--latency-ms", "1"]);
    signal(&p, "INT");
    assert_eq!(wait_exit(&mut p).code(), Some(0));
}

#[test]
fn binary_tls_writes_the_certificate_and_serves_https() {
    let dir = upload_session_emulator::testkit::temp_dir("emu", "cert");
    let cert = dir.join("cert.pem");
    let mut p = spawn(&["--port", "0", "--tls", "--cert-out", cert.to_str().unwrap()]);
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);
    let pem = std::fs::read_to_string(&cert).expect("cert written before the first line");
    let (st, _) = read(
        agent(Some(&pem))
            .get(format!("{}/_emulator/health", p.url))
            .call(),
    );
    assert_eq!(st, 200);
    signal(&p, "TERM");
    assert_eq!(wait_exit(&mut p).code(), Some(0));
}

#[test]
fn binary_flags_reach_the_fault_plan() {
    let mut p = spawn(&[
        "--port",
        "0",
        "--seed",
        "99",
        "--throttle-rate",
        "0.05",
        "--reset-keep-prefix-rate",
        "0.5",
        "--transient-404-rate",
        "0.125",
        "--retry-after-secs",
        "7",
        "--delay-ms",
        "30",
    ]);
    let (st, body) = read(
        agent(None)
            .get(format!("{}/_emulator/faults", p.url))
            .call(),
    );
    assert_eq!(st, 200);
    let plan: upload_session_emulator::FaultPlan = serde_json::from_str(&body).unwrap();
    assert_eq!(plan.seed, 99);
    assert_eq!(plan.rates.throttle, 0.05);
    assert_eq!(plan.rates.reset_keep_prefix, 0.5);
    assert_eq!(plan.rates.transient_404, 0.125);
    assert_eq!(plan.rates.retry_after_secs, 7);
    assert_eq!(plan.rates.delay_ms, 30);
    assert_eq!(plan.rates.unavailable, 0.0);
    signal(&p, "TERM");
    assert_eq!(wait_exit(&mut p).code(), Some(0));
}

#[test]
fn binary_rejects_bad_flags() {
    for args in [
        &["--throttle-rate", "1.5"][..],
        &["--throttle-rate", "x"],
        &["--cert-out", "/tmp/x.pem"],
        &["--range-style", "diagonal"],
        &["--no-such-flag"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A busy port is an error exit, not a panic.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN).args(["--port", &port]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start"));
}

/// Creates a OneDrive upload session for `/{token}.bin` with `token`; returns (status,
/// body).
fn create(url: &str, token: &str) -> (u16, String) {
    read(
        agent(None)
            .post(format!(
                "{url}/onedrive/v1.0/me/drive/root:/{token}.bin:/createUploadSession"
            ))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send("{}"),
    )
}

#[test]
fn binary_mode_flags_reach_the_model() {
    // --token replaces the default token.
    let mut p = spawn(&["--port", "0", "--token", "alpha", "--token", "beta"]);
    assert_eq!(create(&p.url, "alpha").0, 200);
    assert_eq!(create(&p.url, "beta").0, 200);
    assert_eq!(create(&p.url, "emulator-token").0, 401);
    signal(&p, "TERM");
    assert_eq!(wait_exit(&mut p).code(), Some(0));

    // --accept-any-token, --range-style closed, --personal flavour, no SHA-256.
    let mut p = spawn(&[
        "--port",
        "0",
        "--accept-any-token",
        "--range-style",
        "closed",
        "--onedrive-flavor",
        "personal",
        "--no-sha256",
    ]);
    let (st, body) = create(&p.url, "anything-goes");
    assert_eq!(st, 200, "{body}");
    let upload_url = json(&body)["uploadUrl"].as_str().unwrap().to_string();
    let data = vec![5u8; 320 * 1024 + 10];
    let (st, body) = read(
        agent(None)
            .put(&upload_url)
            .header(
                "Content-Range",
                format!("bytes 0-{}/{}", 320 * 1024 - 1, data.len()),
            )
            .send(&data[..320 * 1024]),
    );
    assert_eq!(st, 202, "{body}");
    assert_eq!(
        json(&body)["nextExpectedRanges"][0],
        format!("{}-{}", 320 * 1024, data.len() - 1),
        "closed range style"
    );
    let (st, body) = read(
        agent(None)
            .put(&upload_url)
            .header(
                "Content-Range",
                format!("bytes {}-{}/{}", 320 * 1024, data.len() - 1, data.len()),
            )
            .send(&data[320 * 1024..]),
    );
    assert_eq!(st, 201, "{body}");
    // Personal adds sha256Hash to the item; with --no-sha256 the store has no SHA-256.
    let (_, body) = read(agent(None).get(format!("{}/_emulator/files", p.url)).call());
    let files = json(&body);
    assert_eq!(files[0]["size"], data.len() as u64);
    assert!(files[0]["sha256"].is_null(), "{body}");
    assert!(files[0]["quick_xor_hash"].is_string(), "{body}");
    signal(&p, "TERM");
    assert_eq!(wait_exit(&mut p).code(), Some(0));
}
