//! Tests of the OneDrive model, one (at least) per rule of onedrive.md §11, all driven
//! through [`Emulator::handle`] / `begin` / `push` / `abort` with a virtual clock.

use super::ALIGN;
use crate::config::{Alignment, ConflictAt, InnerErrorKey, OneDriveFlavor, RangeStyle};
use crate::{
    Config, DEFAULT_TOKEN, Emulator, Fault, FaultPlan, RouteKind, Service, TransportFault,
    Violation, hash,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const GRAPH: &str = "http://127.0.0.1:0/onedrive/v1.0";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Deterministic pseudo-random bytes.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct H {
    emu: Emulator,
    now: SystemTime,
}

fn json_of(r: &Response<Bytes>) -> Value {
    serde_json::from_slice(r.body()).unwrap_or(Value::Null)
}

/// `(code, inner code)` of an error response.
fn err(r: &Response<Bytes>) -> (String, Option<String>) {
    let v = json_of(r);
    let e = &v["error"];
    (
        e["code"].as_str().unwrap_or("").to_string(),
        e["innerError"]["code"].as_str().map(str::to_string),
    )
}

impl H {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            emu: Emulator::new(config),
            now: t0(),
        }
    }

    fn with_faults(config: Config, plan: FaultPlan) -> Self {
        Self {
            emu: Emulator::with_faults(config, plan),
            now: t0(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    fn req(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Bytes> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.into()).expect("test request");
        self.emu.handle(self.now, req)
    }

    fn auth() -> String {
        format!("Bearer {DEFAULT_TOKEN}")
    }

    /// POST createUploadSession at `item` (e.g. `/me/drive/root:/a.bin:`).
    fn create(&mut self, item: &str, body: Option<Value>) -> Response<Bytes> {
        let uri = format!("{GRAPH}{item}/createUploadSession");
        let auth = Self::auth();
        match body {
            Some(b) => {
                let s = b.to_string();
                let len = s.len().to_string();
                self.req(
                    "POST",
                    &uri,
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                        ("Content-Length", &len),
                    ],
                    s,
                )
            }
            None => self.req("POST", &uri, &[("Authorization", &auth)], Bytes::new()),
        }
    }

    fn create_ok(&mut self, item: &str, body: Option<Value>) -> String {
        let r = self.create(item, body);
        assert_eq!(r.status(), 200, "{:?}", json_of(&r));
        json_of(&r)["uploadUrl"]
            .as_str()
            .expect("uploadUrl")
            .to_string()
    }

    fn put_raw(&mut self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response<Bytes> {
        self.req("PUT", url, headers, Bytes::copy_from_slice(body))
    }

    /// PUT `bytes` at `start` of a `total`-byte file.
    fn put(&mut self, url: &str, start: u64, bytes: &[u8], total: u64) -> Response<Bytes> {
        let end = start + bytes.len() as u64 - 1;
        let cr = format!("bytes {start}-{end}/{total}");
        let cl = bytes.len().to_string();
        self.put_raw(
            url,
            &[("Content-Range", &cr), ("Content-Length", &cl)],
            bytes,
        )
    }

    fn status(&mut self, url: &str) -> Response<Bytes> {
        self.req("GET", url, &[], Bytes::new())
    }

    fn received(&mut self, url: &str) -> Option<u64> {
        self.emu.onedrive_mut().session_received(url)
    }

    fn v(&self, v: Violation) -> u64 {
        self.emu.violations().count(v)
    }

    fn open(&mut self) -> usize {
        let now = self.now;
        self.emu.onedrive_mut().open_sessions(now)
    }

    /// Uploads `content` in fragments of `frag` bytes; returns the final response.
    fn upload_all(&mut self, url: &str, content: &[u8], frag: usize) -> Response<Bytes> {
        let total = content.len() as u64;
        let mut last = None;
        for (i, chunk) in content.chunks(frag).enumerate() {
            let r = self.put(url, (i * frag) as u64, chunk, total);
            last = Some(r);
        }
        last.expect("non-empty")
    }

    fn get(&mut self, path: &str) -> Response<Bytes> {
        let auth = Self::auth();
        self.req(
            "GET",
            &format!("{GRAPH}{path}"),
            &[("Authorization", &auth)],
            Bytes::new(),
        )
    }
}

fn ranges(r: &Response<Bytes>) -> Vec<String> {
    json_of(r)["nextExpectedRanges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn expiry(r: &Response<Bytes>) -> SystemTime {
    let s = json_of(r)["expirationDateTime"]
        .as_str()
        .expect("expirationDateTime")
        .to_string();
    humantime::parse_rfc3339(&s).expect("RFC 3339")
}

fn lenient() -> Config {
    let mut c = Config::default();
    c.onedrive.alignment = Alignment::Lenient {
        fail_threshold: 10 * ALIGN,
    };
    c
}

// ---- session creation ------------------------------------------------------------------

#[test]
fn onedrive_rule_1_create_without_valid_bearer_is_401() {
    let mut h = H::new();
    let uri = format!("{GRAPH}/me/drive/root:/a.bin:/createUploadSession");
    let r = h.req("POST", &uri, &[], Bytes::new());
    assert_eq!(r.status(), 401);
    assert_eq!(err(&r).0, "unauthenticated");
    assert_eq!(h.v(Violation::MissingAuthorization), 1);
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", "Bearer nope")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 401);
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", "Basic abc")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 401);
    assert_eq!(h.v(Violation::BadAuthorization), 2);
    assert_eq!(h.open(), 0);
    h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.open(), 1);
}

#[test]
fn onedrive_rule_2_create_returns_absolute_url_future_expiry_and_range_0() {
    let mut h = H::new();
    let r = h.create("/me/drive/root:/dir/a.bin:", Some(json!({})));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v = json_of(&r);
    let url = v["uploadUrl"].as_str().expect("url");
    assert!(
        url.starts_with("http://127.0.0.1:0/onedrive/up/"),
        "absolute: {url}"
    );
    assert!(url.contains("?tempauth="));
    assert!(expiry(&r) > h.now);
    assert!(
        v["expirationDateTime"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(ranges(&r), vec!["0-".to_string()]);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_3_name_mismatch_is_400_invalid_request() {
    let mut h = H::new();
    let r = h.create(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"name": "b.bin"}})),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::BadCreateRequest), 1);
    assert_eq!(h.open(), 0);
    h.create_ok(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"name": "a.bin"}})),
    );
}

#[test]
fn onedrive_rule_4_bad_conflict_behavior_is_400() {
    let mut h = H::new();
    for bad in [json!("overwrite"), json!(1), json!("Replace")] {
        let r = h.create(
            "/me/drive/root:/a.bin:",
            Some(json!({"item": {"@microsoft.graph.conflictBehavior": bad}})),
        );
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(err(&r).0, "invalidRequest");
    }
    assert_eq!(h.v(Violation::BadCreateRequest), 3);
    assert_eq!(h.open(), 0);
    for ok in ["fail", "replace", "rename"] {
        let p = format!("/me/drive/root:/{ok}.bin:");
        h.create_ok(
            &p,
            Some(json!({"item": {"@microsoft.graph.conflictBehavior": ok}})),
        );
    }
}

#[test]
fn onedrive_rule_5_odata_type_in_item_is_400() {
    let mut h = H::new();
    let r = h.create(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"@odata.type": "microsoft.graph.driveItemUploadableProperties"}})),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::BadCreateRequest), 1);
    assert_eq!(h.open(), 0);
}

#[test]
fn onedrive_rule_6_file_size_over_free_quota_is_507() {
    let mut c = Config::default();
    c.onedrive.quota = 10_000;
    let mut h = H::with(c);
    h.emu
        .onedrive_mut()
        .seed_file("me", "/old.bin", &[1u8; 4000])
        .expect("seed");
    let r = h.create(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"fileSize": 6001}})),
    );
    assert_eq!(r.status(), 507);
    assert_eq!(err(&r).0, "quotaLimitReached");
    assert_eq!(h.open(), 0);
    h.create_ok(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"fileSize": 6000}})),
    );
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_7_file_size_over_max_is_400_max_file_size_exceeded() {
    let mut c = Config::default();
    c.onedrive.max_file_size = 1_000_000;
    let mut h = H::with(c);
    let r = h.create(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"fileSize": 1_000_001}})),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(
        err(&r),
        ("invalidArgument".into(), Some("maxFileSizeExceeded".into()))
    );
    assert_eq!(h.open(), 0);
    // Without fileSize it fires at the first fragment's TOTAL.
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &[0u8; 10], 1_000_001);
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).1.as_deref(), Some("maxFileSizeExceeded"));
    assert_eq!(h.received(&url), Some(0));
}

#[test]
fn onedrive_rule_8_if_match_and_if_none_match_preconditions_are_412() {
    let mut h = H::new();
    let seeded = h
        .emu
        .onedrive_mut()
        .seed_file("me", "/a.bin", b"old")
        .expect("seed");
    let ctag = h.emu.onedrive_mut().ctag("me", "/a.bin").expect("ctag");
    let uri = format!("{GRAPH}/me/drive/root:/a.bin:/createUploadSession");
    let auth = H::auth();
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", &auth), ("If-Match", "\"{X},9\"")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 412);
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", &auth), ("If-None-Match", &seeded.etag)],
        Bytes::new(),
    );
    assert_eq!(r.status(), 412);
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", &auth), ("If-None-Match", "*")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 412);
    assert_eq!(h.open(), 0);
    // If-Match on a missing target fails too.
    let r = h.req(
        "POST",
        &format!("{GRAPH}/me/drive/root:/new.bin:/createUploadSession"),
        &[("Authorization", &auth), ("If-Match", "*")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 412);
    let r = h.req(
        "POST",
        &uri,
        &[("Authorization", &auth), ("If-Match", &ctag)],
        Bytes::new(),
    );
    assert_eq!(r.status(), 200);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_9_fail_conflict_is_409_at_create() {
    let mut h = H::new();
    h.emu
        .onedrive_mut()
        .seed_file("me", "/a.bin", b"old")
        .expect("seed");
    let r = h.create(
        "/me/drive/root:/A.BIN:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
    );
    assert_eq!(r.status(), 409);
    assert_eq!(err(&r).0, "nameAlreadyExists");
    assert_eq!(h.open(), 0);
    // replace and rename are fine.
    h.create_ok(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "replace"}})),
    );
}

#[test]
fn onedrive_rule_9_fail_conflict_at_commit_mode() {
    let mut c = Config::default();
    c.onedrive.conflict_at = ConflictAt::Commit;
    let mut h = H::with(c);
    h.emu
        .onedrive_mut()
        .seed_file("me", "/a.bin", b"old")
        .expect("seed");
    let url = h.create_ok(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
    );
    let r = h.put(&url, 0, b"new content", 11);
    assert_eq!(r.status(), 409);
    assert_eq!(err(&r).0, "nameAlreadyExists");
    let f = h.emu.file(Service::OneDrive, "/a.bin").expect("file");
    assert_eq!(f.size(), 3, "the old file is untouched");
}

#[test]
fn onedrive_rule_10_business_second_create_is_409_personal_gets_new_session() {
    let mut h = H::new();
    let first = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.create(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "replace"}})),
    );
    assert_eq!(r.status(), 409);
    assert_eq!(err(&r).0, "nameAlreadyExists");
    assert_eq!(h.open(), 1);
    // Once the first one is cancelled, a new one can be made.
    let r = h.req("DELETE", &first, &[], Bytes::new());
    assert_eq!(r.status(), 204);
    h.create_ok("/me/drive/root:/a.bin:", None);

    let mut c = Config::default();
    c.onedrive.flavor = OneDriveFlavor::Personal;
    let mut h = H::with(c);
    let a = h.create_ok("/me/drive/root:/a.bin:", None);
    let b = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_ne!(a, b);
    assert_eq!(h.open(), 2);
}

// ---- fragment PUT ------------------------------------------------------------------------

#[test]
fn onedrive_rule_11_authorization_on_upload_url_is_401() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let auth = H::auth();
    let r = h.put_raw(
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Range", "bytes 0-3/4"),
            ("Content-Length", "4"),
        ],
        b"abcd",
    );
    assert_eq!(r.status(), 401);
    let v = json_of(&r);
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert_eq!(v["error"]["message"], "Unauthenticated");
    assert_eq!(h.received(&url), Some(0));
    for m in ["GET", "DELETE", "POST"] {
        let r = h.req(m, &url, &[("Authorization", &auth)], Bytes::new());
        assert_eq!(r.status(), 401, "{m}");
    }
    assert_eq!(h.v(Violation::AuthorizationOnUploadUrl), 4);
    assert_eq!(h.open(), 1, "the DELETE with a token did nothing");
}

#[test]
fn onedrive_rule_12_tampered_upload_url_is_401() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let (base, _) = url.split_once('?').expect("query");
    for bad in [
        format!("{base}?tempauth=forged"),
        base.to_string(),
        format!("{url}&x=1"),
    ] {
        let r = h.put(&bad, 0, b"abcd", 4);
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(err(&r).0, "unauthenticated");
    }
    assert_eq!(h.v(Violation::TamperedUploadUrl), 3);
    assert_eq!(h.received(&url), Some(0));
    // A session id that was never issued.
    let r = h.status("http://127.0.0.1:0/onedrive/up/0000?tempauth=x");
    assert_eq!(r.status(), 404);
    assert_eq!(h.v(Violation::TamperedUploadUrl), 4);
}

#[test]
fn onedrive_rule_13_put_without_content_range_is_400() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put_raw(&url, &[("Content-Length", "4")], b"abcd");
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::BadContentRange), 1);
    assert_eq!(h.received(&url), Some(0));
}

#[test]
fn onedrive_rule_14_malformed_content_range_is_400() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let bad = [
        "bytes 0-3/*",
        "bytes  0-3/4",
        "bytes 0 -3/4",
        "bytes=0-3/4",
        "Bytes 0-3/4",
        "0-3/4",
        "bytes 0-3/4 ",
        "bytes +0-3/4",
        "bytes 0x0-3/4",
        "bytes */4",
        "bytes 0-3",
        "bytes 0-3/99999999999999999999999",
    ];
    for b in bad {
        let r = h.put_raw(
            &url,
            &[("Content-Range", b), ("Content-Length", "4")],
            b"abcd",
        );
        assert_eq!(r.status(), 400, "{b:?}");
        assert_eq!(err(&r).0, "invalidRequest");
    }
    // Two Content-Range headers.
    let r = h.put_raw(
        &url,
        &[
            ("Content-Range", "bytes 0-3/4"),
            ("Content-Range", "bytes 0-3/4"),
            ("Content-Length", "4"),
        ],
        b"abcd",
    );
    assert_eq!(r.status(), 400);
    assert_eq!(h.v(Violation::BadContentRange), bad.len() as u64 + 1);
    assert_eq!(h.received(&url), Some(0));
    let r = h.put_raw(
        &url,
        &[("Content-Range", "bytes 0-3/4"), ("Content-Length", "4")],
        b"abcd",
    );
    assert_eq!(r.status(), 201);
}

#[test]
fn onedrive_rule_15_start_after_end_or_end_beyond_total_is_400() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    for (cr, cl) in [
        ("bytes 3-0/4", "4"),
        ("bytes 0-4/4", "5"),
        ("bytes 0-3/3", "4"),
    ] {
        let r = h.put_raw(
            &url,
            &[("Content-Range", cr), ("Content-Length", cl)],
            b"abcd",
        );
        assert_eq!(r.status(), 400, "{cr}");
        assert_eq!(err(&r).0, "invalidRequest");
    }
    assert_eq!(h.v(Violation::BadContentRange), 3);
    assert_eq!(h.received(&url), Some(0));
}

#[test]
fn onedrive_rule_16_content_length_missing_411_or_wrong_400() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put_raw(&url, &[("Content-Range", "bytes 0-3/4")], b"abcd");
    assert_eq!(r.status(), 411);
    let r = h.put_raw(
        &url,
        &[("Content-Range", "bytes 0-3/4"), ("Content-Length", "5")],
        b"abcd",
    );
    assert_eq!(r.status(), 400);
    // Body shorter than Content-Length (truncated) and longer.
    let r = h.put_raw(
        &url,
        &[("Content-Range", "bytes 0-3/4"), ("Content-Length", "4")],
        b"abc",
    );
    assert_eq!(r.status(), 400);
    let r = h.put_raw(
        &url,
        &[("Content-Range", "bytes 0-3/4"), ("Content-Length", "4")],
        b"abcde",
    );
    assert_eq!(r.status(), 400);
    assert_eq!(h.v(Violation::ContentLengthMismatch), 4);
    assert_eq!(h.received(&url), Some(0));
    // The session still works (no stuck in-flight flag).
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 201);
}

#[test]
fn onedrive_rule_17_total_change_is_400_fragment_length_mismatch() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(2 * ALIGN as usize, 1);
    assert_eq!(
        h.put(&url, 0, &a[..ALIGN as usize], 2 * ALIGN).status(),
        202
    );
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], 2 * ALIGN + 1);
    assert_eq!(r.status(), 400);
    assert_eq!(
        err(&r),
        (
            "invalidRequest".into(),
            Some("fragmentLengthMismatch".into())
        )
    );
    assert_eq!(
        json_of(&r)["error"]["message"],
        format!(
            "The current upload session is for {} total bytes, but the current fragment declares a total of {}.",
            2 * ALIGN,
            2 * ALIGN + 1
        )
    );
    assert_eq!(h.v(Violation::TotalMismatch), 1);
    assert_eq!(h.received(&url), Some(ALIGN));
    // A declared fileSize fixes TOTAL before the first fragment.
    let url = h.create_ok(
        "/me/drive/root:/b.bin:",
        Some(json!({"item": {"fileSize": 10}})),
    );
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 400);
    assert_eq!(h.v(Violation::TotalMismatch), 2);
}

#[test]
fn onedrive_rule_18_fragment_over_60_mib_is_413_unless_sharepoint_lenient() {
    let len = 62_914_560 + ALIGN;
    let total = 2 * len;
    let head = |url: &str| {
        Request::put(url)
            .header("Content-Range", format!("bytes 0-{}/{total}", len - 1))
            .header("Content-Length", len.to_string())
            .body(())
            .expect("req")
            .into_parts()
            .0
    };
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    match h.emu.begin(h.now, &head(&url)) {
        crate::Begin::Respond(r) => {
            assert_eq!(r.status(), 413);
            assert_eq!(
                err(&r),
                (
                    "invalidRequest".into(),
                    Some("maxFragmentLengthExceeded".into())
                )
            );
        }
        crate::Begin::Body(_) => panic!("must be refused before the body"),
    }
    assert_eq!(h.v(Violation::FragmentTooLarge), 1);
    // Exactly 60 MiB is fine (head only).
    let ok = Request::put(&url)
        .header(
            "Content-Range",
            format!("bytes 0-{}/{total}", 62_914_560 - 1),
        )
        .header("Content-Length", "62914560")
        .body(())
        .expect("req")
        .into_parts()
        .0;
    match h.emu.begin(h.now, &ok) {
        crate::Begin::Body(p) => {
            h.emu.abort(h.now, p);
        }
        crate::Begin::Respond(r) => panic!("refused: {:?}", json_of(&r)),
    }
    let mut c = Config::default();
    c.onedrive.max_fragment = 262_144_000;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    match h.emu.begin(h.now, &head(&url)) {
        crate::Begin::Body(p) => {
            h.emu.abort(h.now, p);
        }
        crate::Begin::Respond(r) => panic!("refused: {:?}", json_of(&r)),
    }
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_19_overlap_is_416_fragment_overlap() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(3 * ALIGN as usize, 2);
    let total = a.len() as u64;
    assert_eq!(
        h.put(&url, 0, &a[..2 * ALIGN as usize], total).status(),
        202
    );
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 416);
    assert_eq!(
        err(&r),
        ("invalidRange".into(), Some("fragmentOverlap".into()))
    );
    assert_eq!(
        json_of(&r)["error"]["message"],
        "Uploaded fragment overlaps with existing data."
    );
    assert_eq!(h.v(Violation::FragmentOverlap), 1);
    assert_eq!(h.received(&url), Some(2 * ALIGN));
}

#[test]
fn onedrive_rule_20_gap_is_416_fragment_out_of_order() {
    // onedrive-api's live test: 8 bytes, upload 0..2, then 6..8 → 416, then 2..8 → done.
    let mut c = Config::default();
    c.onedrive.alignment = Alignment::Lenient {
        fail_threshold: u64::MAX,
    };
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, b"ab", 8).status(), 202);
    let r = h.put(&url, 6, b"gh", 8);
    assert_eq!(r.status(), 416);
    assert_eq!(
        err(&r),
        ("invalidRange".into(), Some("fragmentOutOfOrder".into()))
    );
    assert_eq!(
        json_of(&r)["error"]["message"],
        "Uploaded fragment is out of order."
    );
    assert_eq!(h.v(Violation::FragmentOutOfOrder), 1);
    assert_eq!(h.received(&url), Some(2));
    assert_eq!(h.put(&url, 2, b"cdefgh", 8).status(), 201);
    let f = h.emu.file(Service::OneDrive, "/a.bin").expect("file");
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(b"abcdefgh")));
}

#[test]
fn onedrive_rule_21_strict_mode_rejects_unaligned_non_final_fragment() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(3 * ALIGN as usize, 3);
    let total = a.len() as u64;
    let r = h.put(&url, 0, &a[..100], total);
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::MisalignedFragment), 1);
    assert_eq!(h.received(&url), Some(0));
    // The END is checked, not the length: a resume from an unaligned offset that ends on
    // a boundary is fine, and so is an unaligned final fragment.
    let mut c = Config::default();
    c.onedrive.alignment = Alignment::Strict;
    let plan = FaultPlan::none().script(
        Some(RouteKind::OneDrivePut),
        1,
        Fault::Reset { keep_prefix: true },
    );
    let mut h = H::with_faults(c, plan);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    let s = h.received(&url).expect("live");
    assert!(s < ALIGN);
    let r = h.put(&url, s, &a[s as usize..ALIGN as usize], total);
    assert_eq!(r.status(), 202);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 201);
    assert!(h.emu.violations().is_empty(), "{:?}", h.emu.violations());
}

#[test]
fn onedrive_rule_22_lenient_mode_fails_unaligned_upload_at_commit() {
    let mut h = H::with(lenient());
    let total = 10 * ALIGN + 5;
    let a = data(total as usize, 4);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &a[..1000], total);
    assert_eq!(r.status(), 202, "lenient accepts an unaligned fragment");
    assert_eq!(h.v(Violation::MisalignedFragment), 1, "still a client bug");
    let r = h.put(&url, 1000, &a[1000..], total);
    assert_eq!(r.status(), 500);
    assert_eq!(err(&r).0, "generalException");
    assert!(h.emu.file(Service::OneDrive, "/a.bin").is_none());
    let r = h.status(&url);
    assert_eq!(r.status(), 200);
    assert!(ranges(&r).is_empty(), "all bytes are in");
    // Below the threshold the same pattern commits.
    let small = data(3000, 5);
    let url = h.create_ok("/me/drive/root:/b.bin:", None);
    assert_eq!(h.put(&url, 0, &small[..1000], 3000).status(), 202);
    assert_eq!(h.put(&url, 1000, &small[1000..], 3000).status(), 201);
}

#[test]
fn onedrive_rule_23_concurrent_put_is_416() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(2 * ALIGN as usize, 6);
    let total = a.len() as u64;
    let head = |start: u64, len: u64| {
        Request::put(url.as_str())
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{total}", start + len - 1),
            )
            .header("Content-Length", len.to_string())
            .body(())
            .expect("req")
            .into_parts()
            .0
    };
    let crate::Begin::Body(mut first) = h.emu.begin(h.now, &head(0, ALIGN)) else {
        panic!("first PUT refused");
    };
    first
        .push(Bytes::copy_from_slice(&a[..1000]))
        .expect("push");
    match h.emu.begin(h.now, &head(ALIGN, ALIGN)) {
        crate::Begin::Respond(r) => {
            assert_eq!(r.status(), 416);
            assert_eq!(
                err(&r),
                ("invalidRange".into(), Some("fragmentOutOfOrder".into()))
            );
        }
        crate::Begin::Body(_) => panic!("concurrent PUT accepted"),
    }
    assert_eq!(h.v(Violation::ConcurrentFragment), 1);
    first
        .push(Bytes::copy_from_slice(&a[1000..ALIGN as usize]))
        .expect("push");
    let r = h.emu.complete(h.now, first);
    assert_eq!(r.status(), 202);
    assert_eq!(
        h.put(&url, ALIGN, &a[ALIGN as usize..], total).status(),
        201
    );
}

#[test]
fn onedrive_rule_24_accepted_fragment_is_202_with_next_range() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(2 * ALIGN as usize + 7, 7);
    let total = a.len() as u64;
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(r.status(), 202);
    assert_eq!(ranges(&r), vec![format!("{ALIGN}-")]);
    assert!(json_of(&r)["expirationDateTime"].is_string());
    let mut c = Config::default();
    c.onedrive.range_style = RangeStyle::Closed;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(ranges(&r), vec![format!("{ALIGN}-{}", total - 1)]);
}

#[test]
fn onedrive_rule_25_accepted_fragment_pushes_expiry_forward() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(3 * ALIGN as usize, 8);
    let total = a.len() as u64;
    h.advance(600);
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(r.status(), 202);
    assert_eq!(expiry(&r), h.now + Duration::from_secs(900));
    // 20 minutes after creation: alive only because the expiry moved.
    h.advance(600);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..2 * ALIGN as usize], total);
    assert_eq!(r.status(), 202);
    let r = h.status(&url);
    assert_eq!(expiry(&r), h.now + Duration::from_secs(900));
}

#[test]
fn onedrive_rule_26_final_fragment_returns_item_201_new_200_replace() {
    let mut h = H::new();
    let a = data(2 * ALIGN as usize + 11, 9);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/docs/a.bin:", None);
    let r = h.upload_all(&url, &a, ALIGN as usize);
    assert_eq!(r.status(), 201);
    let v = json_of(&r);
    assert_eq!(v["name"], "a.bin");
    assert_eq!(v["size"], total);
    assert!(v["id"].is_string());
    assert_eq!(
        v["file"]["hashes"]["quickXorHash"],
        hash::quick_xor_hash_base64(&a)
    );
    assert!(v["file"]["hashes"].get("sha256Hash").is_none(), "Business");
    assert_eq!(v["parentReference"]["path"], "/drive/root:/docs");
    assert!(v["eTag"].is_string() && v["cTag"].is_string());
    // The session is gone (asking again after the item was delivered is a violation).
    assert_eq!(h.status(&url).status(), 404);
    assert_eq!(h.v(Violation::DeadSessionUsed), 1);
    // Replacing the same file answers 200.
    let b = data(1000, 10);
    let url = h.create_ok("/me/drive/root:/docs/a.bin:", None);
    let r = h.put(&url, 0, &b, 1000);
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r)["id"], v["id"]);
    assert_ne!(json_of(&r)["eTag"], v["eTag"]);
    let f = h.emu.file(Service::OneDrive, "/docs/a.bin").expect("file");
    assert_eq!(f.size(), 1000);
    assert_eq!(h.emu.violations().total(), 1);
}

#[test]
fn onedrive_rule_26_personal_item_has_uppercase_sha256() {
    let mut c = Config::default();
    c.onedrive.flavor = OneDriveFlavor::Personal;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, b"hello world", 11);
    assert_eq!(r.status(), 201);
    assert_eq!(
        json_of(&r)["file"]["hashes"]["sha256Hash"],
        hash::sha256_hex(b"hello world").to_uppercase()
    );
}

#[test]
fn onedrive_rule_27_quirk_final_fragment_returns_session_shape() {
    let mut c = Config::default();
    c.onedrive.final_returns_session_shape = true;
    let mut h = H::with(c);
    let a = data(ALIGN as usize + 3, 11);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 201);
    let v = json_of(&r);
    assert!(v.get("id").is_none());
    assert_eq!(ranges(&r), vec![format!("{ALIGN}-")]);
    // The client re-fetches the item.
    let r = h.get("/me/drive/root:/a.bin:");
    assert_eq!(r.status(), 200);
    let v = json_of(&r);
    assert_eq!(v["size"], total);
    assert_eq!(
        v["file"]["hashes"]["quickXorHash"],
        hash::quick_xor_hash_base64(&a)
    );
    let id = v["id"].as_str().expect("id").to_string();
    let r = h.get(&format!("/me/drive/items/{id}"));
    assert_eq!(json_of(&r)["name"], "a.bin");
}

#[test]
fn onedrive_rule_28_name_taken_meanwhile_is_409_and_session_kept() {
    let mut h = H::new();
    let a = data(ALIGN as usize + 3, 12);
    let total = a.len() as u64;
    let url = h.create_ok(
        "/me/drive/root:/a.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
    );
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    h.emu
        .onedrive_mut()
        .seed_file("me", "/a.bin", b"someone else")
        .expect("seed");
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 409);
    assert_eq!(err(&r).0, "nameAlreadyExists");
    assert_eq!(h.open(), 1, "kept until expiry");
    let r = h.status(&url);
    assert_eq!(r.status(), 200);
    assert!(ranges(&r).is_empty());
    assert_eq!(
        h.emu.file(Service::OneDrive, "/a.bin").expect("f").size(),
        12
    );
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_29_defer_commit_last_byte_is_202_empty_ranges() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", Some(json!({"deferCommit": true})));
    let r = h.put(&url, 0, b"abcdef", 6);
    assert_eq!(r.status(), 202);
    assert_eq!(json_of(&r)["nextExpectedRanges"], json!([]));
    assert!(h.emu.file(Service::OneDrive, "/a.bin").is_none());
    let r = h.get("/me/drive/root:/a.bin:");
    assert_eq!(r.status(), 404);
}

#[test]
fn onedrive_rule_29a_put_after_all_bytes_in_is_416_overlap() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", Some(json!({"deferCommit": true})));
    assert_eq!(h.put(&url, 0, b"abcdef", 6).status(), 202);
    let r = h.put(&url, 5, b"f", 6);
    assert_eq!(r.status(), 416);
    assert_eq!(
        err(&r),
        ("invalidRange".into(), Some("fragmentOverlap".into()))
    );
    assert_eq!(h.v(Violation::FragmentOverlap), 1);
}

#[test]
fn onedrive_rule_30_defer_commit_post_creates_the_item() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", Some(json!({"deferCommit": true})));
    assert_eq!(h.put(&url, 0, b"abcdef", 6).status(), 202);
    let r = h.req("POST", &url, &[("Content-Length", "0")], Bytes::new());
    assert_eq!(r.status(), 201);
    assert_eq!(json_of(&r)["size"], 6);
    let f = h.emu.file(Service::OneDrive, "/a.bin").expect("file");
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(b"abcdef")));
    assert!(h.emu.violations().is_empty());
    assert_eq!(h.status(&url).status(), 404);
    assert_eq!(h.v(Violation::DeadSessionUsed), 1, "it was told it is done");
}

#[test]
fn onedrive_rule_31_bad_commit_posts_are_400() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", Some(json!({"deferCommit": true})));
    let a = data(ALIGN as usize + 3, 30);
    let total = a.len() as u64;
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    let r = h.req("POST", &url, &[("Content-Length", "0")], Bytes::new());
    assert_eq!(r.status(), 400);
    assert_eq!(
        err(&r),
        (
            "invalidRequest".into(),
            Some("uploadSessionIncomplete".into())
        )
    );
    assert_eq!(
        h.put(&url, ALIGN, &a[ALIGN as usize..], total).status(),
        202
    );
    let r = h.req(
        "POST",
        &url,
        &[("Content-Length", "2")],
        Bytes::from_static(b"{}"),
    );
    assert_eq!(r.status(), 400);
    // No Content-Length but a body.
    let r = h.req("POST", &url, &[], Bytes::from_static(b"x"));
    assert_eq!(r.status(), 400);
    // A session without deferCommit.
    let url2 = h.create_ok("/me/drive/root:/b.bin:", None);
    assert_eq!(
        h.put(&url2, 0, &data(ALIGN as usize, 1), 2 * ALIGN)
            .status(),
        202
    );
    let r = h.req("POST", &url2, &[("Content-Length", "0")], Bytes::new());
    assert_eq!(r.status(), 400);
    assert_eq!(h.v(Violation::BadCommit), 4);
    assert!(h.emu.file(Service::OneDrive, "/a.bin").is_none());
    // Even with every byte in (its final PUT hit a 409), a session without deferCommit
    // cannot be committed by POST.
    let url3 = h.create_ok(
        "/me/drive/root:/c.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
    );
    h.emu
        .onedrive_mut()
        .seed_file("me", "/c.bin", b"x")
        .expect("seed");
    assert_eq!(h.put(&url3, 0, b"abc", 3).status(), 409);
    let r = h.req("POST", &url3, &[("Content-Length", "0")], Bytes::new());
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::BadCommit), 5);
    // The good commit still works.
    let r = h.req("POST", &url, &[("Content-Length", "0")], Bytes::new());
    assert_eq!(r.status(), 201);
}

#[test]
fn onedrive_rule_32_source_url_commits_under_a_new_name() {
    let mut c = Config::default();
    c.onedrive.conflict_at = ConflictAt::Commit;
    let mut h = H::with(c);
    h.emu
        .onedrive_mut()
        .seed_file("me", "/d/a.bin", b"old")
        .expect("seed");
    let url = h.create_ok(
        "/me/drive/root:/d/a.bin:",
        Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
    );
    let r = h.put(&url, 0, b"newdata", 7);
    assert_eq!(r.status(), 409);
    let body = json!({
        "name": "a.bin",
        "@microsoft.graph.conflictBehavior": "rename",
        "@microsoft.graph.sourceUrl": url,
    })
    .to_string();
    let auth = H::auth();
    let r = h.req(
        "PUT",
        &format!("{GRAPH}/me/drive/root:/d/a.bin"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status(), 201, "{:?}", json_of(&r));
    assert_eq!(json_of(&r)["name"], "a 1.bin");
    let f = h
        .emu
        .file(Service::OneDrive, "/d/a 1.bin")
        .expect("renamed");
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(b"newdata")));
    assert_eq!(
        h.emu
            .file(Service::OneDrive, "/d/a.bin")
            .expect("old")
            .size(),
        3
    );
    assert_eq!(h.status(&url).status(), 404, "the session is consumed");
    // An incomplete session cannot be committed.
    let url = h.create_ok("/me/drive/root:/e.bin:", Some(json!({"deferCommit": true})));
    let body = json!({"name": "e.bin", "@microsoft.graph.sourceUrl": url}).to_string();
    let r = h.req(
        "PUT",
        &format!("{GRAPH}/me/drive/root:/"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).1.as_deref(), Some("uploadSessionIncomplete"));
    assert_eq!(h.v(Violation::BadCommit), 1);
}

// ---- status, cancel, expiry ----------------------------------------------------------------

#[test]
fn onedrive_rule_33_status_lists_the_missing_range() {
    let mut h = H::new();
    let a = data(2 * ALIGN as usize, 13);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", Some(json!({"deferCommit": true})));
    let r = h.status(&url);
    assert_eq!(r.status(), 200);
    assert_eq!(ranges(&r), vec!["0-".to_string()]);
    assert!(json_of(&r).get("uploadUrl").is_none());
    h.put(&url, 0, &a[..ALIGN as usize], total);
    let r = h.status(&url);
    assert_eq!(ranges(&r), vec![format!("{ALIGN}-")]);
    assert!(expiry(&r) > h.now);
    h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert!(ranges(&h.status(&url)).is_empty());
    let mut c = Config::default();
    c.onedrive.range_style = RangeStyle::Closed;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(
        ranges(&h.status(&url)),
        vec![format!("{ALIGN}-{}", total - 1)]
    );
}

#[test]
fn onedrive_rule_34_delete_is_204_then_404() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.req("DELETE", &url, &[], Bytes::new());
    assert_eq!(r.status(), 204);
    assert!(r.body().is_empty());
    assert_eq!(h.open(), 0);
    for m in ["GET", "PUT", "DELETE"] {
        let r = if m == "PUT" {
            h.put(&url, 0, b"abcd", 4)
        } else {
            h.req(m, &url, &[], Bytes::new())
        };
        assert_eq!(r.status(), 404, "{m}");
        assert_eq!(
            json_of(&r)["error"]["message"],
            "The upload session was not found"
        );
        assert_eq!(err(&r).0, "itemNotFound");
    }
    assert_eq!(h.v(Violation::DeadSessionUsed), 3);
}

#[test]
fn onedrive_rule_35_completed_session_url_is_404() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 201);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 404);
    assert_eq!(err(&r).0, "itemNotFound");
    assert_eq!(h.status(&url).status(), 404);
    assert_eq!(h.v(Violation::DeadSessionUsed), 2);
}

#[test]
fn onedrive_rule_36_request_after_expiry_is_404() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    h.advance(15 * 60);
    assert_eq!(
        h.status(&url).status(),
        200,
        "still alive at the expiry instant"
    );
    h.advance(1);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 404);
    assert_eq!(err(&r).0, "itemNotFound");
    assert_eq!(h.v(Violation::DeadSessionUsed), 1);
    // A cleanup DELETE is not counted.
    assert_eq!(h.req("DELETE", &url, &[], Bytes::new()).status(), 404);
    assert_eq!(h.v(Violation::DeadSessionUsed), 1);
    assert_eq!(h.open(), 0);
    // Personal sessions last days.
    let mut c = Config::default();
    c.onedrive.flavor = OneDriveFlavor::Personal;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    h.advance(5 * 24 * 3600);
    assert_eq!(h.status(&url).status(), 200);
    h.advance(2 * 24 * 3600);
    assert_eq!(h.status(&url).status(), 404);
}

#[test]
fn onedrive_rule_37_business_24h_cap_is_401_expired_token() {
    let mut c = Config::default();
    c.onedrive.business_expiry = Duration::from_secs(48 * 3600);
    let mut h = H::with(c.clone());
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    h.advance(24 * 3600 - 1);
    assert_eq!(h.status(&url).status(), 200);
    h.advance(1);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 401);
    assert_eq!(
        err(&r),
        ("unauthenticated".into(), Some("expiredToken".into()))
    );
    assert_eq!(
        h.v(Violation::DeadSessionUsed),
        0,
        "the cap is not announced"
    );
    assert_eq!(h.status(&url).status(), 401);
    assert_eq!(h.v(Violation::DeadSessionUsed), 1, "but the 401 was");
    assert_eq!(h.open(), 0);
    c.onedrive.flavor = OneDriveFlavor::Personal;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    h.advance(24 * 3600 + 60);
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 201);
}

#[test]
fn onedrive_rule_38_zero_length_session_is_rejected() {
    let mut h = H::new();
    let r = h.create(
        "/me/drive/root:/empty.bin:",
        Some(json!({"item": {"fileSize": 0}})),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
    assert_eq!(h.v(Violation::ZeroLengthSession), 1);
    assert_eq!(h.open(), 0);
    // A zero-byte file goes through the simple upload.
    let auth = H::auth();
    let r = h.req(
        "PUT",
        &format!("{GRAPH}/me/drive/root:/empty.bin:/content"),
        &[("Authorization", &auth), ("Content-Length", "0")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(json_of(&r)["size"], 0);
    assert_eq!(
        json_of(&r)["file"]["hashes"]["quickXorHash"],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    assert_eq!(
        h.emu
            .file(Service::OneDrive, "/empty.bin")
            .expect("f")
            .size(),
        0
    );
}

// ---- faults --------------------------------------------------------------------------------

fn plan(route: RouteKind, nth: u64, fault: Fault) -> FaultPlan {
    FaultPlan::none().script(Some(route), nth, fault)
}

#[test]
fn onedrive_rule_39_throttle_is_429_with_retry_after_and_no_effect() {
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDrivePut,
            1,
            Fault::Throttle {
                retry_after: Some(7),
                plain_text: false,
            },
        ),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(
        err(&r),
        (
            "activityLimitReached".into(),
            Some("throttledRequest".into())
        )
    );
    assert_eq!(h.received(&url), Some(0));
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 201);
    assert!(h.emu.violations().is_empty());
    // On create too.
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDriveCreate,
            1,
            Fault::Throttle {
                retry_after: Some(3),
                plain_text: false,
            },
        ),
    );
    assert_eq!(h.create("/me/drive/root:/a.bin:", None).status(), 429);
    assert_eq!(h.open(), 0);
    h.create_ok("/me/drive/root:/a.bin:", None);
}

#[test]
fn onedrive_rule_40_unavailable_is_503_with_and_without_retry_after() {
    let p = FaultPlan::none()
        .script(
            Some(RouteKind::OneDrivePut),
            1,
            Fault::Unavailable {
                retry_after: Some(5),
            },
        )
        .script(
            Some(RouteKind::OneDrivePut),
            2,
            Fault::Unavailable { retry_after: None },
        );
    let mut h = H::with_faults(Config::default(), p);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 503);
    assert_eq!(err(&r).0, "serviceNotAvailable");
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(h.received(&url), Some(0));
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 201);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_41_error_after_applies_then_fails_and_blind_retry_gets_416() {
    for (status, code) in [
        (500, "generalException"),
        (502, "UnknownError"),
        (504, "UnknownError"),
    ] {
        let mut h = H::with_faults(
            Config::default(),
            plan(RouteKind::OneDrivePut, 1, Fault::ErrorAfter { status }),
        );
        let a = data(2 * ALIGN as usize, 14);
        let total = a.len() as u64;
        let url = h.create_ok("/me/drive/root:/a.bin:", None);
        let r = h.put(&url, 0, &a[..ALIGN as usize], total);
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(err(&r).0, code);
        assert_eq!(h.received(&url), Some(ALIGN), "applied");
        // The blind retry is excused once...
        let r = h.put(&url, 0, &a[..ALIGN as usize], total);
        assert_eq!(r.status(), 416);
        assert_eq!(err(&r).1.as_deref(), Some("fragmentOverlap"));
        assert_eq!(h.v(Violation::FragmentOverlap), 0);
        // ...but repeating it after the 416 is the 416 loop.
        assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 416);
        assert_eq!(h.v(Violation::FragmentOverlap), 1);
        let r = h.status(&url);
        assert_eq!(ranges(&r), vec![format!("{ALIGN}-")]);
        assert_eq!(
            h.put(&url, ALIGN, &a[ALIGN as usize..], total).status(),
            201
        );
        let f = h.emu.file(Service::OneDrive, "/a.bin").expect("file");
        assert_eq!(f.content.sha256, Some(hash::sha256_hex(&a)));
    }
}

#[test]
fn onedrive_rule_41_error_after_on_final_fragment_commits() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDrivePut, 1, Fault::ErrorAfter { status: 500 }),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 500);
    assert!(h.emu.file(Service::OneDrive, "/a.bin").is_some());
    // The client's retry sees the session gone; not a violation (it could not know).
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 404);
    assert!(h.emu.violations().is_empty());
    assert_eq!(h.get("/me/drive/root:/a.bin:").status(), 200);
}

#[test]
fn onedrive_rule_42_reset_discards_by_default() {
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDrivePut,
            1,
            Fault::Reset { keep_prefix: false },
        ),
    );
    let a = data(2 * ALIGN as usize, 15);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    assert_eq!(h.received(&url), Some(0));
    assert_eq!(ranges(&h.status(&url)), vec!["0-".to_string()]);
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_42_reset_keeps_an_unaligned_prefix_in_chaos_mode() {
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDrivePut,
            2,
            Fault::Reset { keep_prefix: true },
        ),
    );
    let a = data(3 * ALIGN as usize, 16);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..2 * ALIGN as usize], total);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    let s = h.received(&url).expect("live");
    assert!((ALIGN..2 * ALIGN).contains(&s));
    // Blind retry: excused 416.
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..2 * ALIGN as usize], total);
    if s > ALIGN {
        assert_eq!(r.status(), 416);
    }
    let r = h.status(&url);
    assert_eq!(ranges(&r), vec![format!("{s}-")]);
    assert_eq!(
        h.put(&url, s, &a[s as usize..2 * ALIGN as usize], total)
            .status(),
        202
    );
    assert_eq!(
        h.put(&url, 2 * ALIGN, &a[2 * ALIGN as usize..], total)
            .status(),
        201
    );
    let f = h.emu.file(Service::OneDrive, "/a.bin").expect("file");
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(&a)));
    assert_eq!(
        f.content.quick_xor_hash,
        Some(hash::quick_xor_hash_base64(&a))
    );
    assert!(h.emu.violations().is_empty(), "{:?}", h.emu.violations());
}

#[test]
fn onedrive_rule_42_abort_via_streaming_api_keeps_the_pushed_prefix() {
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDrivePut,
            1,
            Fault::Reset { keep_prefix: true },
        ),
    );
    let a = data(ALIGN as usize, 17);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let head = Request::put(url.as_str())
        .header(
            "Content-Range",
            format!("bytes 0-{}/{}", ALIGN - 1, 2 * ALIGN),
        )
        .header("Content-Length", ALIGN.to_string())
        .body(())
        .expect("req")
        .into_parts()
        .0;
    let crate::Begin::Body(mut p) = h.emu.begin(h.now, &head) else {
        panic!("refused");
    };
    let cut = p.cut_at().expect("a reset has a cut point");
    p.push(Bytes::copy_from_slice(&a[..cut as usize]))
        .expect("push");
    let r = h.emu.abort(h.now, p);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    assert_eq!(h.received(&url), Some(cut));
}

#[test]
fn onedrive_rule_43_transient_404_on_a_live_session() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDrivePut, 1, Fault::Transient404),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 404);
    assert_eq!(
        json_of(&r)["error"]["message"],
        "The upload session was not found"
    );
    assert_eq!(h.received(&url), Some(0));
    assert_eq!(h.put(&url, 0, b"abcd", 4).status(), 201);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn onedrive_rule_44_error_body_shape_and_modes() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let a = data(2 * ALIGN as usize, 18);
    let total = a.len() as u64;
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v = json_of(&r);
    let inner = &v["error"]["innerError"];
    assert_eq!(inner["code"], "fragmentOutOfOrder");
    assert!(inner["request-id"].is_string() && inner["date"].is_string());
    assert!(v["error"]["message"].is_string());

    let mut c = Config::default();
    c.onedrive.inner_error_key = InnerErrorKey::Lowercase;
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let v = json_of(&h.put(&url, ALIGN, &a[ALIGN as usize..], total));
    assert_eq!(v["error"]["innererror"]["code"], "fragmentOutOfOrder");
    assert!(v["error"].get("innerError").is_none());

    let mut c = Config::default();
    c.onedrive.empty_error_bodies = true;
    let mut h = H::with_faults(
        c,
        plan(
            RouteKind::OneDriveStatus,
            1,
            Fault::ErrorBefore { status: 504 },
        ),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(r.status(), 416);
    assert!(r.body().is_empty());
    let r = h.status(&url);
    assert_eq!(r.status(), 504);
    assert!(r.body().is_empty());
    // Other errors keep their JSON body.
    let r = h.put_raw(&url, &[("Content-Length", "1")], b"x");
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r).0, "invalidRequest");
}

#[test]
fn onedrive_rule_45_request_ids_on_every_response_and_ratelimit_headers() {
    let mut c = Config::default();
    c.onedrive.sharepoint_headers = true;
    let mut h = H::with_faults(
        c,
        plan(
            RouteKind::OneDriveStatus,
            1,
            Fault::Throttle {
                retry_after: Some(30),
                plain_text: false,
            },
        ),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let mut rs = vec![
        h.status(&url),
        h.put(&url, 0, b"ab", 4),
        h.put_raw(&url, &[], b""),
        h.get("/me/drive/root:/missing.bin:"),
        h.req(
            "GET",
            "http://127.0.0.1:0/onedrive/nowhere",
            &[],
            Bytes::new(),
        ),
    ];
    rs.push(h.create("/me/drive/root:/b.bin:", None));
    for r in &rs {
        assert!(r.headers().contains_key("request-id"), "{}", r.status());
        assert!(r.headers().contains_key("client-request-id"));
    }
    let throttled = &rs[0];
    assert_eq!(throttled.status(), 429);
    for k in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
        assert!(throttled.headers().contains_key(k), "{k}");
    }
    assert_eq!(
        throttled
            .headers()
            .get("RateLimit-Reset")
            .map(|v| v.as_bytes()),
        Some(&b"30"[..])
    );
    assert!(!rs[1].headers().contains_key("RateLimit-Limit"));
}

// ---- other behaviour -------------------------------------------------------------------------

#[test]
fn full_multi_fragment_upload_records_matching_hashes() {
    let mut h = H::new();
    let a = data(5 * ALIGN as usize + 12_345, 19);
    let url = h.create_ok(
        "/me/drive/root:/folder/big.bin:",
        Some(json!({"item": {
            "@microsoft.graph.conflictBehavior": "fail",
            "name": "big.bin",
            "description": "d",
            "fileSize": a.len(),
            "fileSystemInfo": {"createdDateTime": "2024-01-01T00:00:00Z",
                               "lastModifiedDateTime": "2024-01-02T00:00:00.1234567+00:00"}
        }})),
    );
    let r = h.upload_all(&url, &a, 2 * ALIGN as usize);
    assert_eq!(r.status(), 201);
    let v = json_of(&r);
    assert_eq!(v["description"], "d");
    assert_eq!(
        v["fileSystemInfo"]["createdDateTime"],
        "2024-01-01T00:00:00Z"
    );
    let f = h
        .emu
        .file(Service::OneDrive, "/folder/big.bin")
        .expect("file");
    assert_eq!(f.size(), a.len() as u64);
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(&a)));
    assert_eq!(
        f.content.quick_xor_hash,
        Some(hash::quick_xor_hash_base64(&a))
    );
    assert_eq!(f.content.content_hash, Some(hash::content_hash_hex(&a)));
    assert!(f.bytes().is_none(), "bytes kept only with keep_bytes");
    assert_eq!(f.rev, v["eTag"].as_str().expect("etag"));
    assert_eq!(f.id, v["id"].as_str().expect("id"));
    let drive = h.emu.onedrive_mut().drive_id("me").expect("me");
    assert_eq!(f.drive, drive);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn keep_bytes_keeps_content_and_get_content_serves_it() {
    let c = Config {
        keep_bytes: true,
        ..Config::default()
    };
    let mut h = H::with(c);
    let url = h.create_ok("/me/drive/root:/a.txt:", None);
    h.put(&url, 0, b"hello", 5);
    let f = h.emu.file(Service::OneDrive, "/a.txt").expect("f");
    assert_eq!(f.bytes().map(|b| &b[..]), Some(&b"hello"[..]));
    let r = h.get("/me/drive/root:/a.txt:/content");
    assert_eq!(r.status(), 200);
    assert_eq!(&r.body()[..], b"hello");
    assert_eq!(
        json_of(&h.get("/me/drive/root:/a.txt:"))["file"]["mimeType"],
        "text/plain"
    );
}

#[test]
fn addressing_forms_and_drives() {
    let mut h = H::new();
    // onedrive-api's single-segment path.
    let url = h.create_ok("/me/drive/root:%2Fx%2Fy%20z.bin:", None);
    assert_eq!(h.put(&url, 0, b"1", 1).status(), 201);
    assert!(h.emu.file(Service::OneDrive, "/x/y z.bin").is_some());
    // Parent id + name, both styles.
    let folder = h
        .emu
        .onedrive_mut()
        .seed_folder("me", "/p")
        .expect("folder");
    let url = h.create_ok(&format!("/me/drive/items/{folder}:/c.bin:"), None);
    assert_eq!(h.put(&url, 0, b"2", 1).status(), 201);
    let url = h.create_ok(&format!("/me/drive/items/{folder}/children/d.bin"), None);
    assert_eq!(h.put(&url, 0, b"3", 1).status(), 201);
    assert!(h.emu.file(Service::OneDrive, "/p/c.bin").is_some());
    assert!(h.emu.file(Service::OneDrive, "/p/d.bin").is_some());
    // Replace by item id: 200.
    let id = h.emu.onedrive_mut().item_id("me", "/p/c.bin").expect("id");
    let url = h.create_ok(&format!("/me/drive/items/{id}"), None);
    let r = h.put(&url, 0, b"22", 2);
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r)["id"], id);
    // Unknown parent id and unknown drive id: 404.
    assert_eq!(h.create("/me/drive/items/NOPE:/c.bin:", None).status(), 404);
    assert_eq!(h.create("/drives/b!nope/root:/c.bin:", None).status(), 404);
    // Sites/users/groups get their own drive, reachable by id.
    let url = h.create_ok("/sites/contoso/drive/root:/s.bin:", None);
    assert_eq!(h.put(&url, 0, b"s", 1).status(), 201);
    let site = h
        .emu
        .onedrive_mut()
        .drive_id("sites/contoso")
        .expect("site");
    assert_ne!(site, h.emu.onedrive_mut().drive_id("me").expect("me"));
    let r = h.get(&format!("/drives/{site}/root:/s.bin:"));
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r)["parentReference"]["driveId"], site);
    assert_eq!(h.emu.onedrive_mut().files_of("sites/contoso").len(), 1);
    let url = h.create_ok(&format!("/drives/{site}/root:/t.bin:"), None);
    assert_eq!(h.put(&url, 0, b"t", 1).status(), 201);
    for d in ["/users/u1/drive", "/groups/g1/drive"] {
        let url = h.create_ok(&format!("{d}/root:/u.bin:"), None);
        assert_eq!(h.put(&url, 0, b"u", 1).status(), 201);
    }
    assert_eq!(h.get("/me/drive").status(), 200);
    assert!(h.emu.violations().is_empty(), "{:?}", h.emu.violations());
}

#[test]
fn lost_response_on_final_fragment_is_not_a_violation() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDrivePut, 2, Fault::LostResponse),
    );
    let a = data(ALIGN as usize + 10, 20);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 202);
    let r = h.put(&url, ALIGN, &a[ALIGN as usize..], total);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    assert!(h.emu.file(Service::OneDrive, "/a.bin").is_some());
    assert_eq!(
        h.put(&url, ALIGN, &a[ALIGN as usize..], total).status(),
        404
    );
    assert!(h.emu.violations().is_empty());
    // A 404 may be transient (rule 43): asking again is not a violation either.
    assert_eq!(h.status(&url).status(), 404);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn lost_response_mid_upload_excuses_one_mismatch() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDrivePut, 1, Fault::LostResponse),
    );
    let a = data(2 * ALIGN as usize, 21);
    let total = a.len() as u64;
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, &a[..ALIGN as usize], total);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::LostResponse));
    assert_eq!(h.put(&url, 0, &a[..ALIGN as usize], total).status(), 416);
    assert!(h.emu.violations().is_empty());
}

#[test]
fn expire_token_fault_on_create_is_401_and_reuse_counts() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDriveCreate, 1, Fault::ExpireToken),
    );
    let r = h.create("/me/drive/root:/a.bin:", None);
    assert_eq!(r.status(), 401);
    assert_eq!(
        err(&r),
        ("unauthenticated".into(), Some("expiredToken".into()))
    );
    assert_eq!(h.open(), 0);
    let r = h.create("/me/drive/root:/a.bin:", None);
    assert_eq!(r.status(), 401);
    assert_eq!(h.v(Violation::ExpiredTokenReused), 1);
    let fresh = h.emu.issue_token();
    let r = h.req(
        "POST",
        &format!("{GRAPH}/me/drive/root:/a.bin:/createUploadSession"),
        &[("Authorization", &format!("Bearer {fresh}"))],
        Bytes::new(),
    );
    assert_eq!(r.status(), 200);
}

#[test]
fn slow_response_marks_the_final_fragment() {
    let mut h = H::with_faults(
        Config::default(),
        plan(RouteKind::OneDrivePut, 1, Fault::SlowResponse { ms: 1500 }),
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let r = h.put(&url, 0, b"abcd", 4);
    assert_eq!(r.status(), 201);
    assert_eq!(
        TransportFault::of(&r),
        Some(TransportFault::Delay(Duration::from_millis(1500)))
    );
}

#[test]
fn error_after_on_create_leaves_an_open_session_on_business() {
    let mut h = H::with_faults(
        Config::default(),
        plan(
            RouteKind::OneDriveCreate,
            1,
            Fault::ErrorAfter { status: 502 },
        ),
    );
    assert_eq!(h.create("/me/drive/root:/a.bin:", None).status(), 502);
    assert_eq!(h.open(), 1);
    assert_eq!(h.create("/me/drive/root:/a.bin:", None).status(), 409);
}

#[test]
fn create_body_type_errors_are_400_malformed() {
    let mut h = H::new();
    for body in [
        json!([]),
        json!({"item": 5}),
        json!({"deferCommit": "yes"}),
        json!({"item": {"fileSize": -1}}),
        json!({"item": {"fileSize": "10"}}),
        json!({"item": {"name": 5}}),
        json!({"item": {"fileSystemInfo": {"createdDateTime": "yesterday"}}}),
        json!({"item": {"fileSystemInfo": 1}}),
    ] {
        let r = h.create("/me/drive/root:/a.bin:", Some(body.clone()));
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(h.v(Violation::MalformedArgument), 8);
    let auth = H::auth();
    let r = h.req(
        "POST",
        &format!("{GRAPH}/me/drive/root:/a.bin:/createUploadSession"),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        "{}",
    );
    assert_eq!(r.status(), 400);
    assert_eq!(h.v(Violation::BadContentType), 1);
    assert_eq!(h.open(), 0);
}

#[test]
fn absurd_content_length_is_refused_before_the_body() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let heads = [
        Request::post(format!("{GRAPH}/me/drive/root:/b.bin:/createUploadSession"))
            .header("Authorization", H::auth())
            .header("Content-Length", "18446744073709551615")
            .body(())
            .expect("r"),
        Request::put(format!("{GRAPH}/me/drive/root:/b.bin:/content"))
            .header("Authorization", H::auth())
            .header("Content-Length", "18446744073709551615")
            .body(())
            .expect("r"),
        Request::put(url.as_str())
            .header(
                "Content-Range",
                "bytes 0-18446744073709551613/18446744073709551615",
            )
            .header("Content-Length", "18446744073709551614")
            .body(())
            .expect("r"),
        Request::put(url.as_str())
            .header("Content-Range", "bytes 0-3/4")
            .header("Content-Length", "99999999999999999999999")
            .body(())
            .expect("r"),
    ];
    for req in heads {
        let (parts, ()) = req.into_parts();
        match h.emu.begin(h.now, &parts) {
            crate::Begin::Respond(r) => assert!(r.status().is_client_error(), "{}", r.status()),
            crate::Begin::Body(_) => panic!("accepted {:?}", parts.uri),
        }
    }
}

#[test]
fn garbage_requests_never_panic() {
    let mut h = H::with_faults(
        Config::default(),
        FaultPlan {
            seed: 3,
            rates: crate::FaultRates {
                throttle: 0.05,
                error_after: 0.05,
                lost_response: 0.05,
                reset_keep_prefix: 0.05,
                transient_404: 0.05,
                ..Default::default()
            },
            scripted: vec![],
        },
    );
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let paths = [
        url.clone(),
        format!("{url}%00"),
        "http://127.0.0.1:0/onedrive/up/".to_string(),
        "http://127.0.0.1:0/onedrive/up/%FF?tempauth=%ZZ".to_string(),
        format!("{GRAPH}/me/drive/root:/%FF%FE:/createUploadSession"),
        format!("{GRAPH}/me/drive/root:/a:/b:/c:/createUploadSession"),
        format!("{GRAPH}/me/drive/items/:/createUploadSession"),
        format!("{GRAPH}/me/drive/items/x/children/"),
        format!("{GRAPH}/me/drive/root:/a.bin"),
        format!("{GRAPH}/me/drive/root:/a.bin:/content"),
        format!("{GRAPH}/sites//drive"),
        format!("{GRAPH}/drives/"),
        format!("{GRAPH}/me/drive/root:/../x:/createUploadSession"),
        "http://127.0.0.1:0/onedrive/v1.0".to_string(),
    ];
    let headers: [&[(&str, &str)]; 6] = [
        &[],
        &[("Authorization", "Bearer emulator-token")],
        &[
            ("Authorization", "Bearer emulator-token"),
            ("Content-Type", "application/json"),
            ("Content-Length", "3"),
        ],
        &[("Content-Range", "bytes 0-0/1"), ("Content-Length", "1")],
        &[
            (
                "Content-Range",
                "bytes 18446744073709551615-18446744073709551615/18446744073709551615",
            ),
            ("Content-Length", "1"),
        ],
        &[("Content-Length", "-1"), ("Content-Range", "bytes 1-0/0")],
    ];
    let bodies: [&[u8]; 5] = [
        b"",
        b"{}",
        b"{\"item\":{\"name\":[1,2]},\"deferCommit\":null}",
        b"\xff\xfe\x00",
        b"{\"@microsoft.graph.sourceUrl\": 5}",
    ];
    let mut i = 0u64;
    for p in &paths {
        for m in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            for hs in headers {
                for b in bodies {
                    i += 1;
                    h.now += Duration::from_secs(i % 3);
                    let r = h.req(m, p, hs, Bytes::copy_from_slice(b));
                    assert!(r.status().as_u16() >= 200);
                }
            }
        }
    }
}

/// What the client saw.
fn seen(r: &Response<Bytes>) -> Option<StatusCode> {
    match TransportFault::of(r) {
        Some(TransportFault::LostResponse) | Some(TransportFault::Reset) => None,
        _ => Some(r.status()),
    }
}

fn first_start(r: &Response<Bytes>) -> Option<u64> {
    ranges(r)
        .first()
        .and_then(|x| x.split('-').next().and_then(|n| n.parse().ok()))
}

/// A correct OneDrive client, written from onedrive.md §3.3 and §10.
fn run_correct_client(h: &mut H, a: &[u8], frag: u64, defer: bool) -> Result<(), String> {
    let total = a.len() as u64;
    let auth = H::auth();
    let item_exists = |h: &mut H| -> Option<bool> {
        let r = h.get("/me/drive/root:/c/f.bin:");
        match seen(&r) {
            Some(s) if s == 200 => Some(json_of(&r)["size"] == total),
            Some(s) if s == 404 => Some(false),
            _ => None,
        }
    };
    let mut budget = 400;
    let url = loop {
        budget -= 1;
        if budget == 0 {
            return Err("create never succeeded".into());
        }
        h.advance(1);
        let r = h.req(
            "POST",
            &format!("{GRAPH}/me/drive/root:/c/f.bin:/createUploadSession"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            json!({"deferCommit": defer}).to_string(),
        );
        if seen(&r) == Some(StatusCode::OK) {
            break json_of(&r)["uploadUrl"].as_str().unwrap_or("").to_string();
        }
    };
    let mut offset = 0u64;
    let mut need_status = false;
    while budget > 0 {
        budget -= 1;
        h.advance(1);
        if need_status {
            let r = h.status(&url);
            match seen(&r).map(|s| s.as_u16()) {
                Some(200) => {
                    need_status = false;
                    match first_start(&r) {
                        Some(s) => offset = s,
                        None => offset = total,
                    }
                }
                Some(404) if item_exists(h) == Some(true) => return Ok(()),
                _ => {}
            }
            continue;
        }
        if offset >= total {
            // Only with deferCommit: commit.
            let r = h.req("POST", &url, &[("Content-Length", "0")], Bytes::new());
            match seen(&r).map(|s| s.as_u16()) {
                Some(200) | Some(201) => return Ok(()),
                Some(429) | Some(503) => {}
                _ => need_status = true,
            }
            continue;
        }
        let end = ((offset / frag + 1) * frag).min(total);
        let r = h.put(&url, offset, &a[offset as usize..end as usize], total);
        match seen(&r).map(|s| s.as_u16()) {
            Some(202) => match first_start(&r) {
                Some(s) => offset = s,
                None if defer => offset = total,
                None => return Err("202 [] without deferCommit".into()),
            },
            Some(200) | Some(201) => return Ok(()),
            Some(429) | Some(503) => {}
            Some(s) if s == 416 || s == 404 || s >= 500 => need_status = true,
            None => need_status = true,
            Some(s) => return Err(format!("unexpected {s}: {:?}", json_of(&r))),
        }
    }
    Err("budget exhausted".into())
}

#[test]
fn simple_upload_limits_conflicts_and_preconditions() {
    let mut c = Config::default();
    c.onedrive.simple_upload_max = 10;
    let mut h = H::with(c);
    let auth = H::auth();
    let uri = format!("{GRAPH}/me/drive/root:/s/a.txt:/content");
    // Too big: refused before the body.
    let (parts, ()) = Request::put(uri.as_str())
        .header("Authorization", &auth)
        .header("Content-Length", "11")
        .body(())
        .expect("r")
        .into_parts();
    match h.emu.begin(h.now, &parts) {
        crate::Begin::Respond(r) => assert_eq!(r.status(), 413),
        crate::Begin::Body(_) => panic!("accepted"),
    }
    assert_eq!(h.v(Violation::OversizeBody), 1);
    let r = h.req("PUT", &uri, &[("Authorization", &auth)], "x");
    assert_eq!(r.status(), 411);
    let r = h.req(
        "PUT",
        &uri,
        &[("Authorization", &auth), ("Content-Length", "5")],
        "hello",
    );
    assert_eq!(r.status(), 201);
    let etag = json_of(&r)["eTag"].as_str().expect("etag").to_string();
    let fail = format!("{uri}?@microsoft.graph.conflictBehavior=fail");
    let r = h.req(
        "PUT",
        &fail,
        &[("Authorization", &auth), ("Content-Length", "5")],
        "world",
    );
    assert_eq!(r.status(), 409);
    let r = h.req(
        "PUT",
        &uri,
        &[
            ("Authorization", &auth),
            ("Content-Length", "5"),
            ("If-Match", "\"{nope},1\""),
        ],
        "world",
    );
    assert_eq!(r.status(), 412);
    let r = h.req(
        "PUT",
        &uri,
        &[
            ("Authorization", &auth),
            ("Content-Length", "5"),
            ("If-Match", &etag),
        ],
        "world",
    );
    assert_eq!(r.status(), 200);
    let rename = format!("{uri}?@microsoft.graph.conflictBehavior=rename");
    let r = h.req(
        "PUT",
        &rename,
        &[("Authorization", &auth), ("Content-Length", "1")],
        "!",
    );
    assert_eq!(r.status(), 201);
    assert_eq!(json_of(&r)["name"], "a 1.txt");
    let f = h.emu.file(Service::OneDrive, "/s/a.txt").expect("f");
    assert_eq!(f.content.sha256, Some(hash::sha256_hex(b"world")));
    // Unauthenticated simple upload.
    let r = h.req("PUT", &uri, &[("Content-Length", "1")], "x");
    assert_eq!(r.status(), 401);
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/a.bin:", None);
    let secret = url.split("tempauth=").nth(1).expect("secret").to_string();
    let (parts, ()) = Request::put(url.as_str())
        .header("Content-Range", "bytes 0-3/4")
        .header("Content-Length", "4")
        .body(())
        .expect("r")
        .into_parts();
    let crate::Begin::Body(p) = h.emu.begin(h.now, &parts) else {
        panic!("refused");
    };
    let model = format!("{:?}", h.emu.onedrive_mut());
    let dbg = format!("{p:?} {:?} {model}", h.emu);
    assert!(!dbg.contains(&secret), "{dbg}");
    assert!(!dbg.contains(DEFAULT_TOKEN));
    h.emu.abort(h.now, p);
    let info = h.emu.onedrive_mut().session_info(&url).expect("info");
    assert_eq!(info.path, "/a.bin");
    assert_eq!(info.received, 0);
    assert!(!info.defer_commit);
    assert!(
        h.emu
            .onedrive_mut()
            .session_info("http://x/onedrive/up/zz?tempauth=1")
            .is_none()
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any well-behaved sequence ends with the right file and no violation.
        #[test]
        fn well_behaved_uploads_always_succeed(
            size in 1usize..(4 * ALIGN as usize),
            units in 1u64..4,
            defer in any::<bool>(),
            status_every in 0usize..3,
            seed in any::<u64>(),
        ) {
            let mut h = H::new();
            let a = data(size, seed);
            let total = size as u64;
            let frag = (units * ALIGN) as usize;
            let url = h.create_ok(
                "/me/drive/root:/p/f.bin:",
                Some(json!({"deferCommit": defer, "item": {"fileSize": size}})),
            );
            let mut offset = 0usize;
            let mut n = 0usize;
            let mut last = None;
            while offset < size {
                let end = (offset + frag).min(size);
                let r = h.put(&url, offset as u64, &a[offset..end], total);
                prop_assert!(r.status() == 202 || r.status() == 201, "{}", r.status());
                if r.status() == 202 && end < size {
                    let next = ranges(&r);
                    prop_assert_eq!(next, vec![format!("{end}-")]);
                }
                n += 1;
                if status_every > 0 && n % status_every == 0 && end < size {
                    let s = h.status(&url);
                    prop_assert_eq!(ranges(&s), vec![format!("{end}-")]);
                }
                offset = end;
                last = Some(r);
            }
            let last = last.expect("at least one fragment");
            if defer {
                prop_assert_eq!(last.status(), StatusCode::ACCEPTED);
                let r = h.req("POST", &url, &[("Content-Length", "0")], Bytes::new());
                prop_assert_eq!(r.status(), StatusCode::CREATED);
            } else {
                prop_assert_eq!(last.status(), StatusCode::CREATED);
            }
            let f = h.emu.file(Service::OneDrive, "/p/f.bin").expect("file");
            prop_assert_eq!(f.size(), total);
            prop_assert_eq!(f.content.sha256.clone(), Some(hash::sha256_hex(&a)));
            prop_assert_eq!(f.content.quick_xor_hash.clone(), Some(hash::quick_xor_hash_base64(&a)));
            prop_assert!(h.emu.violations().is_empty(), "{:?}", h.emu.violations());
            prop_assert_eq!(h.open(), 0);
        }

        /// A correct client (GET status after any ambiguous outcome, resume from the
        /// server's offset on a 320 KiB boundary, retry throttling as is, check the item
        /// after a 404) survives every fault with a correct file and no violation.
        #[test]
        fn correct_client_under_random_faults_has_no_violations(
            size in 1usize..(3 * ALIGN as usize),
            units in 1u64..3,
            defer in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut c = Config::default();
            // Personal: a create whose answer was lost does not block the retry (rule 10).
            c.onedrive.flavor = OneDriveFlavor::Personal;
            let rates = crate::FaultRates {
                throttle: 0.05,
                unavailable: 0.05,
                error_before: 0.05,
                error_after: 0.08,
                lost_response: 0.08,
                reset_discard: 0.05,
                reset_keep_prefix: 0.1,
                transient_404: 0.05,
                slow_finish: 0.05,
                ..Default::default()
            };
            let mut h = H::with_faults(c, FaultPlan { seed, rates, scripted: vec![] });
            let a = data(size, seed);
            let total = size as u64;
            let frag = units * ALIGN;
            let outcome = run_correct_client(&mut h, &a, frag, defer);
            prop_assert!(outcome.is_ok(), "{:?}", outcome);
            let f = h.emu.file(Service::OneDrive, "/c/f.bin").expect("file");
            prop_assert_eq!(f.size(), total);
            prop_assert_eq!(f.content.sha256.clone(), Some(hash::sha256_hex(&a)));
            prop_assert_eq!(f.content.quick_xor_hash.clone(), Some(hash::quick_xor_hash_base64(&a)));
            prop_assert!(h.emu.violations().is_empty(), "{:?}", h.emu.violations());
        }

        /// Random header values on a fragment PUT never panic and never store bytes
        /// unless the request is exactly right.
        #[test]
        fn random_fragment_heads_never_panic(
            cr in "\\PC{0,40}",
            cl in "\\PC{0,24}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut h = H::new();
            let url = h.create_ok("/me/drive/root:/a.bin:", None);
            let mut b = Request::put(url.as_str());
            if let Ok(v) = http::HeaderValue::from_str(&cr) {
                b = b.header("Content-Range", v);
            }
            if let Ok(v) = http::HeaderValue::from_str(&cl) {
                b = b.header("Content-Length", v);
            }
            let req = b.body(Bytes::from(body.clone())).expect("req");
            let r = h.emu.handle(h.now, req);
            let got = h.received(&url);
            if r.status() == 201 {
                prop_assert!(got.is_none());
            } else if r.status() == 202 {
                prop_assert!(got.is_some_and(|g| g > 0));
            } else {
                prop_assert_eq!(got, Some(0));
            }
        }

        /// Random create bodies never panic.
        #[test]
        fn random_create_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut h = H::new();
            let r = h.req(
                "POST",
                &format!("{GRAPH}/me/drive/root:/a.bin:/createUploadSession"),
                &[("Authorization", "Bearer emulator-token"), ("Content-Type", "application/json")],
                body,
            );
            prop_assert!(r.status() == 200 || r.status() == 400, "{}", r.status());
        }
    }
}

#[test]
fn onedrive_rule_45_client_request_id_is_echoed_when_well_formed() {
    let mut h = H::new();
    let url = h.create_ok("/me/drive/root:/echo.bin:", None);
    let r = h.req(
        "GET",
        &url,
        &[("client-request-id", "abc-123")],
        Bytes::new(),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["client-request-id"], "abc-123");
    assert_ne!(r.headers()["request-id"], "abc-123");
    // A value with spaces (or anything but short visible ASCII) is not echoed.
    let r = h.req("GET", &url, &[("client-request-id", "a b")], Bytes::new());
    assert_ne!(r.headers()["client-request-id"], "a b");
}
