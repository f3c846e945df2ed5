//! The `upload-async` example (examples/upload.rs), run as a child process against its embedded emulator on a
//! small directory (both services, Dropbox by batch commit), and its argument checks.
//!
//! The example binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/upload-async`).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use upload_session_emulator::testkit;

fn example() -> PathBuf {
    testkit::example_binary("upload-async", "upload-session-async")
}

fn run(args: &[&str], files: &[&Path]) -> Output {
    let out = Command::new(example())
        .args(files)
        .args(args)
        .env_remove("ONEDRIVE_TOKEN")
        .env_remove("DROPBOX_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    testkit::json_lines(&out.stdout)
}

/// A small directory: a subdirectory (only with --recursive), sizes 0 B to ~1.5 MiB.
/// Each test names its own (tests run in parallel: one rewriting the other's files
/// mid-upload makes that upload fail as a modified source).
fn small_dir(name: &str) -> (testkit::TempDir, Vec<(String, Vec<u8>)>) {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut files = Vec::new();
    for (i, size) in [0usize, 1, 70_000, 1_500_001].into_iter().enumerate() {
        let name = format!("f{i}.bin");
        let bytes = data(size, 50 + i as u64);
        std::fs::write(dir.join(&name), &bytes).unwrap();
        files.push((name, bytes));
    }
    let nested = data(400_000, 60);
    std::fs::write(dir.join("sub").join("n.bin"), &nested).unwrap();
    files.push(("sub/n.bin".into(), nested));
    (dir, files)
}

fn check(out: &Output, files: &[(String, Vec<u8>)], dir: &Path) {
    assert!(out.status.success(), "{:?}", out.status);
    let lines = lines(out);
    assert_eq!(lines.len(), files.len(), "one JSON line per file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, bytes) in files {
        let local = dir.join(name).display().to_string();
        let line = lines
            .iter()
            .find(|l| l["local_path"] == local.as_str())
            .unwrap_or_else(|| panic!("no line for {local}"));
        assert_eq!(line["size"], bytes.len() as u64, "{name}");
        assert!(line.get("error").is_none());
        assert!(
            stderr.contains(&sha256_hex(bytes)),
            "{name} checked in the emulator"
        );
    }
}

#[test]
fn a_directory_goes_to_the_embedded_emulator_on_both_services() {
    let (dir, files) = small_dir("cli-dir");
    let out = run(
        &[
            "--recursive",
            "--concurrency",
            "3",
            "--chunk",
            "320KiB",
            "--dest",
            "/cli",
        ],
        &[&dir],
    );
    check(&out, &files, &dir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("progress:"));

    let out = run(
        &[
            "--to",
            "dropbox",
            "--recursive",
            "--concurrency",
            "3",
            "--dest",
            "/Cli",
        ],
        &[&dir],
    );
    check(&out, &files, &dir);
    // Without --recursive, the subdirectory is skipped.
    let out = run(&["--to", "dropbox", "--dest", "/Flat"], &[&dir]);
    check(&out, &files[..4], &dir);
}

#[test]
fn arguments_are_checked() {
    let (dir, files) = small_dir("cli-args");
    let one = dir.join(&files[2].0);
    // One file, as in the blocking example: --dest is its path.
    let out = run(&["--dest", "/single/x.bin"], &[&one]);
    assert!(out.status.success());
    let l = lines(&out);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["name"], "x.bin");
    // --checkpoint with several files, --base-url without a token: refused.
    let out = run(&["--checkpoint", "/tmp/x.json"], &[&dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("single file"));
    let out = run(&["--base-url", "http://127.0.0.1:9"], &[&one]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"));
    // An invalid OneDrive chunk fails (exit 1), with an error line for the file.
    let out = run(&["--chunk", "1MB"], &[&one]);
    assert_eq!(out.status.code(), Some(1));
}
