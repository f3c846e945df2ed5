//! Peak memory stays about one fragment plus a constant, whatever the file size.
//!
//! Alone in its own test binary (other tests would disturb the process's peak RSS). A
//! 160 MiB upload from a plain reader that generates its bytes on the fly (so the test
//! itself holds nothing), in 4.06 MiB fragments, to an emulator that keeps no bytes.

mod common;

use common::*;
use std::io::Read;
use upload_session::onedrive::{OneDriveUpload, Target};
use upload_session_blocking::{Source, Upload};
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Config, FaultPlan};

/// Peak resident set size (`VmHWM`) in bytes.
#[cfg(target_os = "linux")]
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// An endless deterministic byte stream (xorshift), read in whatever pieces are asked.
struct Generated(u64);

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
        Ok(buf.len())
    }
}

#[cfg(target_os = "linux")]
#[test]
fn peak_memory_is_about_one_fragment() {
    let mut emulator = Config {
        keep_bytes: false,
        ..Config::default()
    };
    emulator.digests.sha256 = false;
    emulator.digests.dropbox_content = false;
    let server = EmulatorServer::start(ServerOptions {
        config: emulator,
        faults: FaultPlan::none(),
        ..ServerOptions::default()
    })
    .unwrap();
    let fragment = 13 * UNIT; // 4,259,840 bytes
    let size: u64 = 160 * 1024 * 1024;
    let machine = OneDriveUpload::builder(Target::path("/mem/big.bin"), size)
        .fragment_size(fragment)
        .verify_sha256(false)
        .config(config(&server))
        .access_token(token())
        .build()
        .unwrap();
    // Warm up allocator arenas, the runtime and the connection pool with a small upload.
    let warm = data(fragment as usize, 1);
    Upload::new(
        OneDriveUpload::builder(Target::path("/mem/warm.bin"), warm.len() as u64)
            .fragment_size(fragment)
            .verify_sha256(false)
            .config(config(&server))
            .access_token(token())
            .build()
            .unwrap(),
        Source::slice(&warm),
    )
    .run()
    .unwrap();
    drop(warm);

    let before = peak_rss();
    let completed = Upload::new(machine, Source::reader(Generated(0x1234_5678), size))
        .run()
        .expect("upload completes");
    let after = peak_rss();
    assert_eq!(completed.item.size, Some(size));
    assert!(completed.verification.quick_xor);
    let growth = after.saturating_sub(before);
    eprintln!(
        "peak RSS before {} MiB, after {} MiB, growth {} MiB for a {} MiB file in {} MiB fragments",
        before >> 20,
        after >> 20,
        growth >> 20,
        size >> 20,
        fragment >> 20
    );
    // One fragment read, one held by the machine while the next is read, plus buffers:
    // far below the file size.
    assert!(
        growth < 4 * fragment + (16 << 20),
        "peak RSS grew by {growth} bytes for {fragment}-byte fragments"
    );
}
