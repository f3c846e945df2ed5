//! A curl-driven OneDrive upload against the standalone binary (issue 2: "a curl-driven
//! OneDrive upload works against the binary"). Skipped when `curl` is not installed.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use upload_session_emulator::StoredContent;

const BIN: &str = env!("CARGO_BIN_EXE_upload-session-emulator");
const ALIGN: usize = 320 * 1024;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (Proc(child), url)
}

/// Runs curl with `args`; returns (HTTP status, body).
fn curl(cacert: Option<&Path>, args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"]);
    if let Some(c) = cacert {
        cmd.arg("--cacert").arg(c);
    }
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn upload_with_curl(tls: bool) {
    if !have_curl() {
        eprintln!("curl not installed: skipping");
        return;
    }
    let dir = upload_session_emulator::testkit::temp_dir("emu-curl", &tls.to_string());
    let cert: PathBuf = dir.join("cert.pem");
    let cert_s = cert.to_str().unwrap().to_string();
    let mut args = vec!["--port", "0"];
    if tls {
        args.extend(["--tls", "--cert-out", &cert_s]);
    }
    let (mut proc, base) = spawn(&args);
    let cacert = tls.then_some(cert.as_path());

    // 7 MiB + a tail: a 5 MiB fragment (curl sends `Expect: 100-continue` for it), a
    // 1.875 MiB one, then the unaligned final one.
    let mut x: u32 = 12345;
    let src: Vec<u8> = (0..(7 << 20) + 4321)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();

    let (st, body) = curl(
        cacert,
        &[
            "-X",
            "POST",
            "-H",
            "Authorization: Bearer emulator-token",
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"item":{"@microsoft.graph.conflictBehavior":"replace"}}"#,
            &format!(
                "{base}/onedrive/v1.0/me/drive/root:/from%20curl/file.bin:/createUploadSession"
            ),
        ],
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let upload_url = v["uploadUrl"].as_str().unwrap().to_string();
    assert!(upload_url.starts_with(&base), "{upload_url}");

    let cuts = [0, 16 * ALIGN, 22 * ALIGN, src.len()];
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let frag = dir.join(format!("frag-{a}"));
        std::fs::write(&frag, &src[a..b]).unwrap();
        let (st, body) = curl(
            cacert,
            &[
                "-X",
                "PUT",
                "-H",
                &format!("Content-Range: bytes {a}-{}/{}", b - 1, src.len()),
                "--data-binary",
                &format!("@{}", frag.display()),
                &upload_url,
            ],
        );
        let want = if b == src.len() { 201 } else { 202 };
        assert_eq!(st, want, "fragment {a}-{b}: {body}");
    }

    let (st, body) = curl(cacert, &[&format!("{base}/_emulator/files")]);
    assert_eq!(st, 200);
    let files: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want = StoredContent::of(&src, false);
    assert_eq!(files[0]["path"], "/from curl/file.bin", "{body}");
    assert_eq!(files[0]["size"], src.len() as u64);
    assert_eq!(files[0]["sha256"], want.sha256.unwrap());
    assert_eq!(files[0]["quick_xor_hash"], want.quick_xor_hash.unwrap());
    let (_, body) = curl(cacert, &[&format!("{base}/_emulator/violations")]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"],
        0,
        "{body}"
    );

    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(proc.0.wait().unwrap().code(), Some(0));
}

#[test]
fn curl_onedrive_upload_against_the_binary() {
    upload_with_curl(false);
}

#[test]
fn curl_onedrive_upload_against_the_binary_over_tls() {
    upload_with_curl(true);
}
