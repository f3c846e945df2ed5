//! End-to-end through the `upload` example, run as a child process against an emulator
//! server started here: crash (SIGKILL) and resume, Ctrl-C, and the embedded mode.
//!
//! The example binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/upload`); `cargo test -p upload-session-blocking` and
//! `cargo test --workspace` build it.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use upload_session::onedrive::Checkpoint;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::testkit;
use upload_session_emulator::{DEFAULT_TOKEN, Violation};

fn example() -> PathBuf {
    testkit::example_binary("upload", "upload-session-blocking")
}

/// A server slow enough to kill a client mid-upload.
fn slow_server() -> RunningServer {
    EmulatorServer::start(ServerOptions {
        latency: Duration::from_millis(120),
        ..ServerOptions::default()
    })
    .unwrap()
}

fn upload_cmd(server: &RunningServer, file: &Path, ckpt: &Path, dest: &str) -> Command {
    upload_cmd_to("onedrive", server, file, ckpt, dest)
}

fn upload_cmd_to(
    service: &str,
    server: &RunningServer,
    file: &Path,
    ckpt: &Path,
    dest: &str,
) -> Command {
    let mut c = Command::new(example());
    c.arg(file)
        .args(["--to", service])
        .args(["--base-url", server.url()])
        .args(["--token", DEFAULT_TOKEN])
        .arg("--checkpoint")
        .arg(ckpt)
        .args(["--chunk", "320KiB", "--dest", dest])
        .env_remove("ONEDRIVE_TOKEN")
        .env_remove("DROPBOX_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits until the checkpoint file says at least `bytes` are acknowledged; returns it as
/// JSON (OneDrive and Dropbox checkpoints both have `acknowledged`).
fn wait_for_checkpoint(child: &mut Child, ckpt: &Path, bytes: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no checkpoint at {bytes} bytes in time"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the upload ended early: {status}");
        }
        if let Ok(Some(cp)) = upload_session_blocking::checkpoint::load::<serde_json::Value>(ckpt) {
            if acknowledged(&cp) >= bytes {
                return cp;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn acknowledged(cp: &serde_json::Value) -> u64 {
    cp["acknowledged"]
        .as_u64()
        .expect("a checkpoint has `acknowledged`")
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "--- child stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one JSON line on stdout.
fn item_json(out: &Output) -> serde_json::Value {
    let mut lines = testkit::json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {lines:?}");
    lines.remove(0)
}

/// Runs the example against a slow emulator, SIGKILLs it mid-upload, and runs it again
/// with the same checkpoint file: it completes, the bytes are exact, and at most one
/// fragment goes over the wire twice.
fn killed_mid_upload_then_resumed(service: &str) {
    let server = slow_server();
    let dir = temp_dir(&format!("crash-{service}"));
    let fragments = 24u64;
    let bytes = data((fragments * UNIT) as usize, 11);
    let n = bytes.len() as u64;
    let file = dir.join("crash.bin");
    std::fs::write(&file, &bytes).unwrap();
    let ckpt = dir.join("crash.checkpoint");
    let dest = "/crash/crash.bin";
    let on_server = |cp: &serde_json::Value| -> u64 {
        let emulator = server.emulator();
        let mut emu = emulator.lock().unwrap();
        if service == "onedrive" {
            let url = cp["upload_url"].as_str().unwrap();
            emu.onedrive_mut()
                .session_received(url)
                .expect("session alive")
        } else {
            let id = cp["session_id"].as_str().unwrap();
            emu.dropbox_mut()
                .session_info(id)
                .expect("session alive")
                .held
        }
    };
    let is_stored = || match service {
        "onedrive" => stored(&server, dest).is_some(),
        _ => dropbox_stored(&server, dest).is_some(),
    };

    let mut child = upload_cmd_to(service, &server, &file, &ckpt, dest)
        .spawn()
        .unwrap();
    let cp = wait_for_checkpoint(&mut child, &ckpt, 6 * UNIT);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let _ = finish(child);
    // Let the server finish whatever the killed client left in flight.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!is_stored(), "killed mid-upload");
    let at_kill = server.snapshot();
    let killed_at = at_kill.requests;
    // A SIGKILL can land mid-body: the emulator then sees the connection close before
    // `Content-Length` bytes arrived (a `TruncatedBody`, dropbox.md rule 70: nothing of
    // it is stored). That is the kill, not the client; at most one body is in flight.
    let truncated_by_kill = at_kill.violations.count(Violation::TruncatedBody);
    assert!(
        at_kill.violations.total() == truncated_by_kill && truncated_by_kill <= 1,
        "violations of the killed run: {:?}",
        at_kill.violations
    );
    let cp_now: serde_json::Value = upload_session_blocking::checkpoint::load(&ckpt)
        .unwrap()
        .unwrap();
    assert!(acknowledged(&cp_now) >= acknowledged(&cp));
    // The checkpoint may lag the server by the fragment in flight at the kill.
    let held = on_server(&cp_now);
    assert!(held >= acknowledged(&cp_now) && held < n, "{held}");
    assert!(held - acknowledged(&cp_now) <= UNIT);

    let out = finish(
        upload_cmd_to(service, &server, &file, &ckpt, dest)
            .spawn()
            .unwrap(),
    );
    assert!(out.status.success(), "resume failed: {:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from"));
    let item = item_json(&out);
    assert_eq!(item["size"], n);
    assert_eq!(item["name"], "crash.bin");
    if service == "onedrive" {
        // OneDrive resumes with a status query: no offset is ever guessed.
        assert_stored(&server, dest, &bytes);
    } else {
        let rec = dropbox_stored(&server, dest).expect("stored");
        assert_eq!(rec.content.size, n);
        assert_eq!(
            rec.content.sha256.as_deref(),
            Some(sha256_hex(&bytes).as_str())
        );
        // Dropbox has no status query: when the kill landed after the server applied
        // the append in flight but before its answer was read, the resumed client learns
        // the offset from one `incorrect_offset`. The emulator cannot know the answer was
        // never read, so it counts that one as a `WrongOffset`; apart from the body the
        // kill cut short, nothing else is allowed.
        let v = server.snapshot().violations;
        let lagged = held > acknowledged(&cp_now);
        let allowed = u64::from(lagged);
        let wrong_offsets = v.count(Violation::WrongOffset);
        assert!(
            v.count(Violation::TruncatedBody) == truncated_by_kill
                && v.total() == wrong_offsets + truncated_by_kill
                && wrong_offsets <= allowed,
            "violations {v:?} (checkpoint lagged the server: {lagged}; \
             bodies cut short by the kill: {truncated_by_kill})"
        );
    }
    assert!(!ckpt.exists(), "checkpoint removed after success");

    // Requests of the resumed run: the fragments from the server's offset, plus at most
    // one fragment sent again (the one in flight at the kill, when the checkpoint lags),
    // plus one status query (OneDrive) or one metadata lookup (Dropbox).
    let remaining = (n - held).div_ceil(UNIT);
    let resumed_requests = server.snapshot().requests - killed_at;
    assert!(
        resumed_requests <= remaining + 2,
        "{resumed_requests} requests to finish {remaining} fragments"
    );
    // Over both runs: every fragment once, at most one twice, plus the session's own
    // requests (OneDrive: create, status; Dropbox: none, start and finish carry data).
    let overhead = if service == "onedrive" { 2 } else { 1 };
    let total = server.snapshot().requests;
    assert!(
        total <= fragments + 1 + overhead,
        "{total} requests for {fragments} fragments"
    );
}

#[test]
fn onedrive_killed_mid_upload_then_resumed_from_the_checkpoint() {
    killed_mid_upload_then_resumed("onedrive");
}

#[test]
fn dropbox_killed_mid_upload_then_resumed_from_the_checkpoint() {
    killed_mid_upload_then_resumed("dropbox");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_the_checkpoint_and_exits_non_zero() {
    let server = slow_server();
    let dir = temp_dir("sigint");
    let bytes = data((16 * UNIT) as usize, 12);
    let file = dir.join("int.bin");
    std::fs::write(&file, &bytes).unwrap();
    let ckpt = dir.join("int.checkpoint");

    let mut child = upload_cmd(&server, &file, &ckpt, "/sigint/int.bin")
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut child, &ckpt, 3 * UNIT);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = finish(child);
    assert_eq!(out.status.code(), Some(130), "interrupted exit status");
    assert!(out.stdout.is_empty(), "no item printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoint saved"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ckpt).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let cp: Checkpoint = upload_session_blocking::checkpoint::load(&ckpt)
        .unwrap()
        .unwrap();
    assert!(cp.acknowledged >= 3 * UNIT && cp.acknowledged < bytes.len() as u64);
    assert!(stored(&server, "/sigint/int.bin").is_none());

    let out = finish(
        upload_cmd(&server, &file, &ckpt, "/sigint/int.bin")
            .spawn()
            .unwrap(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from"));
    assert_stored(&server, "/sigint/int.bin", &bytes);
}

#[test]
fn without_a_token_it_uploads_to_the_embedded_emulator() {
    let dir = temp_dir("embedded");
    let bytes = data(3 * 1024 * 1024 + 17, 13);
    let file = dir.join("hello.bin");
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new(example())
        .arg(&file)
        .args(["--chunk", "1280KiB"])
        .env_remove("ONEDRIVE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let item = item_json(&out);
    assert_eq!(item["size"], bytes.len() as u64);
    assert_eq!(item["name"], "hello.bin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&sha256_hex(&bytes)),
        "prints what was stored: {stderr}"
    );
    assert!(
        stderr.contains("progress:"),
        "plain progress lines off a terminal"
    );

    // A chunk the protocol does not allow is refused with the nearest valid size.
    let out = Command::new(example())
        .arg(&file)
        .args(["--chunk", "1MB"])
        .env_remove("ONEDRIVE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("983040"));

    // Dropbox, embedded too.
    let out = Command::new(example())
        .arg(&file)
        .args([
            "--to",
            "dropbox",
            "--chunk",
            "1MiB",
            "--dest",
            "/Hello/hello.bin",
        ])
        .env_remove("DROPBOX_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let item = item_json(&out);
    assert_eq!(item["size"], bytes.len() as u64);
    assert_eq!(item["path_display"], "/Hello/hello.bin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&sha256_hex(&bytes)), "{stderr}");

    // --base-url without a token is refused.
    let out = Command::new(example())
        .arg(&file)
        .args(["--base-url", "http://127.0.0.1:9"])
        .env_remove("ONEDRIVE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"));
}
