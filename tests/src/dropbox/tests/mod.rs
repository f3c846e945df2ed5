//! Tests of the Dropbox model: at least one per rule of dropbox.md §12, named
//! `dropbox_rule_<N>_<what>`, plus whole uploads and property tests. Everything goes through
//! [`Emulator::handle`] (or `begin`/`push`/`complete` for races) on a virtual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batch;
mod faults;
mod props;
mod sdk;
mod sessions;
mod transport;
mod uploads;

use crate::{Config, DEFAULT_TOKEN, Emulator, FaultPlan, Service, Violation};
use bytes::Bytes;
use http::{Request, Response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) const MIB: usize = 1024 * 1024;
pub(super) const BLOCK: usize = 4 * MIB;

pub(super) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Deterministic test data.
pub(crate) fn data(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// An upload-style request on the content host.
pub(super) fn up(route: &str, arg: &str, body: &[u8]) -> Request<Bytes> {
    Request::post(format!(
        "http://127.0.0.1/dropbox/content/2/files/upload_session/{route}"
    ))
    .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
    .header("Content-Type", "application/octet-stream")
    .header("Dropbox-API-Arg", arg)
    .header("Content-Length", body.len())
    .body(Bytes::copy_from_slice(body))
    .unwrap()
}

/// An RPC request on the api host; `route` is the part after `/2/`.
pub(super) fn rpc(route: &str, body: &str) -> Request<Bytes> {
    Request::post(format!("http://127.0.0.1/dropbox/api/2/{route}"))
        .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len())
        .body(Bytes::copy_from_slice(body.as_bytes()))
        .unwrap()
}

pub(super) fn body_json(r: &Response<Bytes>) -> Value {
    serde_json::from_slice(r.body()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {:?} status {}",
            String::from_utf8_lossy(r.body()),
            r.status()
        )
    })
}

pub(super) fn body_text(r: &Response<Bytes>) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

/// The tag chain of an error summary, without the trailing `/` and dots.
pub(super) fn summary(r: &Response<Bytes>) -> String {
    let v = body_json(r);
    let s = v["error_summary"]
        .as_str()
        .expect("error_summary")
        .to_string();
    s.trim_end_matches('.').trim_end_matches('/').to_string()
}

/// Asserts a 409 with the given tag chain; returns the `error` union.
#[track_caller]
pub(super) fn assert_409(r: &Response<Bytes>, tags: &str) -> Value {
    assert_eq!(r.status(), 409, "body: {}", body_text(r));
    assert_eq!(summary(r), tags, "body: {}", body_text(r));
    body_json(r)["error"].clone()
}

#[track_caller]
pub(super) fn assert_400(r: &Response<Bytes>, needle: &str) {
    assert_eq!(r.status(), 400, "body: {}", body_text(r));
    let t = body_text(r);
    assert!(t.contains(needle), "{t:?} does not contain {needle:?}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "400 must be plain text"
    );
}

#[track_caller]
pub(super) fn assert_ok_null(r: &Response<Bytes>) {
    assert_eq!(r.status(), 200, "body: {}", body_text(r));
    assert_eq!(r.body().as_ref(), b"null");
}

pub(super) fn arg(v: Value) -> String {
    v.to_string()
}

/// A test harness: the emulator plus a virtual clock.
pub(super) struct H {
    pub emu: Emulator,
    pub now: SystemTime,
}

impl H {
    pub fn new() -> Self {
        Self::with(Config::default(), FaultPlan::none())
    }

    pub fn cfg(f: impl FnOnce(&mut Config)) -> Self {
        let mut c = Config::default();
        f(&mut c);
        Self::with(c, FaultPlan::none())
    }

    pub fn faults(plan: FaultPlan) -> Self {
        Self::with(Config::default(), plan)
    }

    pub fn with(config: Config, plan: FaultPlan) -> Self {
        Self {
            emu: Emulator::with_faults(config, plan),
            now: t0(),
        }
    }

    pub fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    pub fn send(&mut self, r: Request<Bytes>) -> Response<Bytes> {
        self.emu.handle(self.now, r)
    }

    pub fn start(&mut self, a: Value, body: &[u8]) -> Response<Bytes> {
        self.send(up("start", &arg(a), body))
    }

    #[track_caller]
    pub fn start_ok(&mut self, a: Value, body: &[u8]) -> String {
        let r = self.start(a, body);
        assert_eq!(r.status(), 200, "start: {}", body_text(&r));
        body_json(&r)["session_id"].as_str().unwrap().to_string()
    }

    pub fn seq(&mut self) -> String {
        self.start_ok(json!({}), b"")
    }

    pub fn conc(&mut self) -> String {
        self.start_ok(json!({"session_type": "concurrent"}), b"")
    }

    pub fn append(&mut self, sid: &str, offset: u64, close: bool, body: &[u8]) -> Response<Bytes> {
        let a = json!({"cursor": {"session_id": sid, "offset": offset}, "close": close});
        self.send(up("append_v2", &arg(a), body))
    }

    #[track_caller]
    pub fn append_ok(&mut self, sid: &str, offset: u64, close: bool, body: &[u8]) {
        let r = self.append(sid, offset, close, body);
        assert_ok_null(&r);
    }

    pub fn finish_with(
        &mut self,
        sid: &str,
        offset: u64,
        commit: Value,
        body: &[u8],
    ) -> Response<Bytes> {
        let a = json!({"cursor": {"session_id": sid, "offset": offset}, "commit": commit});
        self.send(up("finish", &arg(a), body))
    }

    pub fn finish(&mut self, sid: &str, offset: u64, path: &str, body: &[u8]) -> Response<Bytes> {
        self.finish_with(sid, offset, json!({"path": path}), body)
    }

    #[track_caller]
    pub fn finish_ok(&mut self, sid: &str, offset: u64, path: &str, body: &[u8]) -> Value {
        let r = self.finish(sid, offset, path, body);
        assert_eq!(r.status(), 200, "finish: {}", body_text(&r));
        body_json(&r)
    }

    /// Uploads `bytes` in one start+finish to `path`.
    pub fn upload(&mut self, path: &str, bytes: &[u8]) -> Value {
        let sid = self.seq();
        self.finish_ok(&sid, 0, path, bytes)
    }

    pub fn v(&self, v: Violation) -> u64 {
        self.emu.violations().count(v)
    }

    pub fn violations(&self) -> u64 {
        self.emu.violations().total()
    }

    pub fn file(&self, path: &str) -> Option<crate::FileRecord> {
        self.emu.file(Service::Dropbox, path)
    }

    pub fn info(&mut self, sid: &str) -> Option<crate::dropbox::SessionInfo> {
        self.emu.dropbox_mut().session_info(sid)
    }
}

/// Asserts that a stored file has exactly the digests of `src`.
#[track_caller]
pub(super) fn assert_file(h: &H, path: &str, src: &[u8]) {
    let f = h.file(path).unwrap_or_else(|| panic!("no file at {path}"));
    assert_eq!(f.size(), src.len() as u64);
    assert_eq!(
        f.content.sha256.as_deref(),
        Some(crate::hash::sha256_hex(src).as_str())
    );
    assert_eq!(
        f.content.content_hash.as_deref(),
        Some(crate::hash::content_hash_hex(src).as_str())
    );
    assert_eq!(
        f.content.quick_xor_hash.as_deref(),
        Some(crate::hash::quick_xor_hash_base64(src).as_str())
    );
}
