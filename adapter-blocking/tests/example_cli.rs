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
use upload_session_emulator::DEFAULT_TOKEN;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/examples/upload
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir
        .join("examples")
        .join(format!("upload{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p upload-session-blocking` (it builds the examples)",
        path.display()
    );
    path
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
    let mut c = Command::new(example());
    c.arg(file)
        .args(["--base-url", server.url()])
        .args(["--token", DEFAULT_TOKEN])
        .arg("--checkpoint")
        .arg(ckpt)
        .args(["--chunk", "320KiB", "--dest", dest])
        .env_remove("ONEDRIVE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits until the checkpoint file says at least `bytes` are acknowledged.
fn wait_for_checkpoint(child: &mut Child, ckpt: &Path, bytes: u64) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no checkpoint at {bytes} bytes in time"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the upload ended early: {status}");
        }
        if let Ok(Some(cp)) = upload_session_blocking::checkpoint::load::<Checkpoint>(ckpt) {
            if cp.acknowledged >= bytes {
                return cp;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {text:?}");
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn killed_mid_upload_then_resumed_from_the_checkpoint() {
    let server = slow_server();
    let dir = temp_dir("crash");
    let fragments = 24u64;
    let bytes = data((fragments * UNIT) as usize, 11);
    let file = dir.join("crash.bin");
    std::fs::write(&file, &bytes).unwrap();
    let ckpt = dir.join("crash.checkpoint");

    let mut child = upload_cmd(&server, &file, &ckpt, "/crash/crash.bin")
        .spawn()
        .unwrap();
    let cp = wait_for_checkpoint(&mut child, &ckpt, 6 * UNIT);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let _ = finish(child);
    // Let the server finish whatever the killed client left in flight.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        stored(&server, "/crash/crash.bin").is_none(),
        "killed mid-upload"
    );
    let killed_at = server.snapshot().requests;
    // The checkpoint may lag the server by the fragment in flight at the kill.
    let cp_now: Checkpoint = upload_session_blocking::checkpoint::load(&ckpt)
        .unwrap()
        .unwrap();
    assert!(cp_now.acknowledged >= cp.acknowledged);
    let on_server = server
        .emulator()
        .lock()
        .unwrap()
        .onedrive_mut()
        .session_received(cp_now.upload_url.expose())
        .expect("the session survives the crash");
    assert!(on_server >= cp_now.acknowledged && on_server < bytes.len() as u64);

    let out = finish(
        upload_cmd(&server, &file, &ckpt, "/crash/crash.bin")
            .spawn()
            .unwrap(),
    );
    assert!(out.status.success(), "resume failed: {:?}", out.status);
    let item = item_json(&out);
    assert_eq!(item["size"], bytes.len() as u64);
    assert_eq!(item["name"], "crash.bin");
    assert_stored(&server, "/crash/crash.bin", &bytes);
    assert!(!ckpt.exists(), "checkpoint removed after success");

    // The resumed run: one status query, then fragment PUTs from the server's offset.
    // At most one fragment is sent again (the one in flight at the kill, if the server
    // had not kept it).
    let remaining = (bytes.len() as u64 - on_server).div_ceil(UNIT);
    let resumed_requests = server.snapshot().requests - killed_at;
    assert!(
        resumed_requests <= 1 + remaining + 1,
        "{resumed_requests} requests to finish {remaining} fragments"
    );
    // And nothing before the checkpoint's offset went again: the first run's PUTs plus
    // the second run's add up to at most one more than the fragments in the file.
    let first_run_puts = killed_at - 1; // minus the create
    let second_run_puts = resumed_requests - 1; // minus the status query
    assert!(
        first_run_puts + second_run_puts <= fragments + 1,
        "{first_run_puts} + {second_run_puts} PUTs for {fragments} fragments"
    );
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

    // Dropbox is refused clearly until the core has its machine.
    let out = Command::new(example())
        .arg(&file)
        .args(["--to", "dropbox"])
        .env_remove("DROPBOX_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dropbox"));
}
