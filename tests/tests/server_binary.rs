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
    let dir = std::env::temp_dir().join(format!("emu-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    let _ = std::fs::remove_dir_all(&dir);
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
