//! [`emulator_request`]: the emulator must not panic on any request.

use crate::shapes::{self, Clock, pick, short_string};
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use serde_json::{Value, json};
use std::time::Duration;
use upload_session_emulator::config::{
    Alignment, ConflictAt, InnerErrorKey, OneDriveFlavor, RangeStyle,
};
use upload_session_emulator::{Begin, Config, DEFAULT_TOKEN, Emulator, FaultPlan, FaultRates};

/// Random sequences of requests to both services (method, path, query, headers, body;
/// whole through `Emulator::handle` or streamed through `begin`/`push`/`complete`,
/// `abort` or `overflow`), with the model's configuration, fault plan and clock chosen
/// by the input. Session ids, upload URLs and tokens the emulator hands out are reused
/// by later requests so the sessions get deep. Nothing may panic.
pub fn emulator_request(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut config = Config {
        keep_bytes: u.ratio(1u8, 4).unwrap_or(false),
        ..Config::default()
    };
    config.digests.sha256 = u.ratio(1u8, 4).unwrap_or(false);
    config.digests.quick_xor = u.ratio(1u8, 2).unwrap_or(false);
    config.digests.dropbox_content = u.ratio(1u8, 2).unwrap_or(false);
    config.accept_any_token = u.ratio(1u8, 8).unwrap_or(false);
    config.max_json_body = if u.ratio(1u8, 8).unwrap_or(false) {
        64
    } else {
        1 << 20
    };
    config.onedrive.flavor = pick(
        &mut u,
        &[OneDriveFlavor::Business, OneDriveFlavor::Personal],
    );
    if u.ratio(1u8, 4).unwrap_or(false) {
        config.onedrive.alignment = Alignment::Lenient {
            fail_threshold: u.int_in_range(0u64..=1_000_000).unwrap_or(0),
        };
    }
    config.onedrive.conflict_at = pick(&mut u, &[ConflictAt::Create, ConflictAt::Commit]);
    config.onedrive.range_style = pick(&mut u, &[RangeStyle::OpenEnded, RangeStyle::Closed]);
    config.onedrive.final_returns_session_shape = u.ratio(1u8, 4).unwrap_or(false);
    config.onedrive.inner_error_key = pick(
        &mut u,
        &[InnerErrorKey::CamelCase, InnerErrorKey::Lowercase],
    );
    config.onedrive.empty_error_bodies = u.ratio(1u8, 4).unwrap_or(false);
    config.onedrive.sharepoint_headers = u.ratio(1u8, 4).unwrap_or(false);
    if u.ratio(1u8, 4).unwrap_or(false) {
        config.onedrive.quota = u.int_in_range(0u64..=2_000_000).unwrap_or(0);
        config.dropbox.quota = Some(u.int_in_range(0u64..=2_000_000).unwrap_or(0));
    }
    config.onedrive.max_fragment = if u.ratio(1u8, 4).unwrap_or(false) {
        655_360
    } else {
        62_914_560
    };
    config.onedrive.simple_upload_max = u.int_in_range(0u64..=4096).unwrap_or(4096);
    config.dropbox.strict_hosts = !u.ratio(1u8, 4).unwrap_or(false);
    config.dropbox.accept_raw_utf8_arg = u.ratio(1u8, 4).unwrap_or(false);
    if u.ratio(1u8, 4).unwrap_or(false) {
        config.dropbox.max_body = u.int_in_range(0u64..=8192).unwrap_or(0);
        config.dropbox.http_413_above = Some(u.int_in_range(0u64..=8192).unwrap_or(0));
        config.dropbox.max_file_size = u.int_in_range(0u64..=100_000).unwrap_or(0);
    }
    let base = config.base_url.clone();
    let mut emu = if u.ratio(1u8, 3).unwrap_or(false) {
        let mut rate = || f64::from(u.int_in_range(0u8..=80).unwrap_or(0)) / 255.0;
        let rates = FaultRates {
            throttle: rate(),
            unavailable: rate(),
            error_before: rate(),
            error_after: rate(),
            lost_response: rate(),
            reset_discard: rate(),
            reset_keep_prefix: rate(),
            transient_404: rate(),
            slow_finish: rate(),
            lock_contention: rate(),
            expire_token: rate(),
            stall: rate(),
            retry_after_secs: u.int_in_range(0u64..=5).unwrap_or(0),
            delay_ms: u.int_in_range(0u64..=5000).unwrap_or(0),
        };
        let plan = FaultPlan {
            seed: u64::arbitrary(&mut u).unwrap_or(0),
            rates,
            scripted: Vec::new(),
        };
        Emulator::with_faults(config, plan)
    } else {
        Emulator::new(config)
    };
    let mut st = State {
        clock: Clock::new(),
        tokens: vec![DEFAULT_TOKEN.to_string()],
        upload_urls: Vec::new(),
        sessions: Vec::new(),
        ids: Vec::new(),
        base,
    };
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let req = st.request(&mut u);
        let streamed = u.ratio(1u8, 2).unwrap_or(false);
        let resp = if streamed {
            st.streamed(&mut u, &mut emu, req)
        } else {
            emu.handle(st.clock.wall(), req)
        };
        st.learn(resp.body());
        match u.int_in_range(0u8..=9).unwrap_or(0) {
            0 => st.clock.advance(Duration::from_secs(u64::from(
                u.int_in_range(0u32..=100_000).unwrap_or(0),
            ))),
            1 => st.clock.advance(Duration::from_secs(
                3600 * 24 * u64::from(u.int_in_range(0u16..=4000).unwrap_or(0)),
            )),
            2 => st.tokens.push(emu.issue_token()),
            3 if u.ratio(1u8, 8).unwrap_or(false) => emu.expire_tokens(),
            _ => st.clock.advance(Duration::from_millis(u64::from(
                u.int_in_range(0u16..=3000).unwrap_or(0),
            ))),
        }
    }
    let _ = emu.snapshot();
    let _ = emu.files();
}

struct State {
    clock: Clock,
    tokens: Vec<String>,
    /// `path?query` of upload URLs handed out.
    upload_urls: Vec<String>,
    /// Dropbox session ids handed out.
    sessions: Vec<String>,
    /// Item ids and drive ids seen.
    ids: Vec<String>,
    base: String,
}

fn choose<'a>(u: &mut Unstructured<'_>, v: &'a [String]) -> Option<&'a str> {
    if v.is_empty() {
        return None;
    }
    Some(v[u.choose_index(v.len()).unwrap_or(0)].as_str())
}

impl State {
    fn learn(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if let Some(url) = v.get("uploadUrl").and_then(Value::as_str) {
            if let Some(rest) = url.strip_prefix(self.base.as_str()) {
                if self.upload_urls.len() < 8 {
                    self.upload_urls.push(rest.to_string());
                }
            }
        }
        if let Some(s) = v.get("session_id").and_then(Value::as_str) {
            if self.sessions.len() < 8 {
                self.sessions.push(s.to_string());
            }
        }
        for key in ["id", "async_job_id"] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                if self.ids.len() < 8 {
                    self.ids.push(s.to_string());
                }
            }
        }
        if let Some(Value::Array(ids)) = v.get("session_ids") {
            for s in ids.iter().filter_map(Value::as_str) {
                if self.sessions.len() < 8 {
                    self.sessions.push(s.to_string());
                }
            }
        }
    }

    fn name(&self, u: &mut Unstructured<'_>) -> String {
        match u.int_in_range(0u8..=5).unwrap_or(0) {
            0..=2 => (pick(
                u,
                &["a.bin", "dir/b.txt", "é 😀.bin", "x%2Fy", "con", "a:b"],
            ))
            .to_string(),
            3 => short_string(u, 40),
            4 => "a/".repeat(u.int_in_range(0usize..=50).unwrap_or(0)),
            _ => format!("{}", u64::arbitrary(u).unwrap_or(0)),
        }
    }

    fn number(&self, u: &mut Unstructured<'_>) -> u64 {
        match u.int_in_range(0u8..=6).unwrap_or(0) {
            0 => 0,
            1 => 327_680 * u64::from(u.int_in_range(0u8..=4).unwrap_or(1)),
            2 => 4_194_304 * u64::from(u.int_in_range(0u8..=3).unwrap_or(1)),
            3 => u64::MAX,
            4 => u64::from(u.int_in_range(0u16..=5000).unwrap_or(0)),
            5 => 1 << 40,
            _ => u64::arbitrary(u).unwrap_or(1),
        }
    }

    fn path(&mut self, u: &mut Unstructured<'_>) -> (Method, String) {
        let m = |u: &mut Unstructured<'_>, likely: Method| -> Method {
            if u.ratio(7u8, 8).unwrap_or(true) {
                likely
            } else {
                (pick(
                    u,
                    &[
                        Method::GET,
                        Method::PUT,
                        Method::DELETE,
                        Method::PATCH,
                        Method::HEAD,
                        Method::OPTIONS,
                    ],
                ))
                .clone()
            }
        };
        let name = self.name(u);
        let id = choose(u, &self.ids)
            .map(str::to_string)
            .unwrap_or_else(|| "root".into());
        match u.int_in_range(0u8..=21).unwrap_or(0) {
            0 | 1 => (
                m(u, Method::POST),
                format!("/onedrive/v1.0/me/drive/root:/{name}:/createUploadSession"),
            ),
            2 => (
                m(u, Method::POST),
                format!("/onedrive/v1.0/drives/{id}/items/{id}:/{name}:/createUploadSession"),
            ),
            3 => (
                m(u, Method::POST),
                format!("/onedrive/v1.0/sites/s1/drive/items/{id}/createUploadSession"),
            ),
            4 => (
                m(u, Method::PUT),
                format!("/onedrive/v1.0/me/drive/root:/{name}:/content"),
            ),
            5 => (
                m(u, Method::GET),
                format!("/onedrive/v1.0/me/drive/items/{id}"),
            ),
            6 => (
                m(u, Method::GET),
                format!("/onedrive/v1.0/me/drive/root:/{name}:"),
            ),
            7 => (
                m(u, Method::PUT),
                format!("/onedrive/v1.0/me/drive/items/{id}/children/{name}"),
            ),
            8..=10 => {
                let url = choose(u, &self.upload_urls)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("/onedrive/up/{name}?tempauth=x"));
                let method = (pick(
                    u,
                    &[
                        Method::PUT,
                        Method::PUT,
                        Method::GET,
                        Method::DELETE,
                        Method::POST,
                    ],
                ))
                .clone();
                (method, url)
            }
            11 | 12 => (
                m(u, Method::POST),
                "/dropbox/content/2/files/upload_session/start".into(),
            ),
            13 | 14 => (
                m(u, Method::POST),
                "/dropbox/content/2/files/upload_session/append_v2".into(),
            ),
            15 => (
                m(u, Method::POST),
                "/dropbox/content/2/files/upload_session/finish".into(),
            ),
            16 => (
                m(u, Method::POST),
                "/dropbox/api/2/files/upload_session/finish_batch_v2".into(),
            ),
            17 => (
                m(u, Method::POST),
                (pick(
                    u,
                    &[
                        "/dropbox/api/2/files/upload_session/start_batch",
                        "/dropbox/api/2/files/upload_session/finish_batch",
                        "/dropbox/api/2/files/upload_session/finish_batch/check",
                        "/dropbox/content/2/files/upload_session/append_batch",
                        "/dropbox/content/2/files/upload_session/append",
                        "/dropbox/content/2/files/upload",
                        "/dropbox/api/2/files/upload_session/start",
                    ],
                ))
                .to_string(),
            ),
            18 => (
                m(u, Method::POST),
                "/dropbox/api/2/files/get_metadata".into(),
            ),
            19 => (m(u, Method::POST), format!("/dropbox/content/2/{name}")),
            20 => (m(u, Method::GET), format!("/onedrive/{name}")),
            _ => (m(u, Method::GET), format!("/{}", short_string(u, 30))),
        }
    }

    fn arg(&self, u: &mut Unstructured<'_>, body: &[u8]) -> Value {
        let sid = choose(u, &self.sessions)
            .map(str::to_string)
            .unwrap_or_else(|| short_string(u, 20));
        let offset = if u.ratio(1u8, 3).unwrap_or(false) {
            json!(-1)
        } else {
            json!(self.number(u))
        };
        let mut m = serde_json::Map::new();
        if u.ratio(3u8, 4).unwrap_or(true) {
            m.insert(
                "cursor".into(),
                json!({ "session_id": sid, "offset": offset }),
            );
        }
        if u.ratio(1u8, 3).unwrap_or(false) {
            m.insert("close".into(), json!(bool::arbitrary(u).unwrap_or(true)));
        }
        if u.ratio(1u8, 4).unwrap_or(false) {
            m.insert(
                "session_type".into(),
                json!(pick(u, &["concurrent", "sequential", "x"])),
            );
        }
        if u.ratio(1u8, 2).unwrap_or(false) {
            let h = if u.ratio(3u8, 4).unwrap_or(true) {
                upload_session::dropbox::content_hash(body)
            } else {
                short_string(u, 64)
            };
            m.insert("content_hash".into(), json!(h));
        }
        if u.ratio(1u8, 2).unwrap_or(false) {
            let path = format!("/{}", self.name(u));
            let mode = match u.int_in_range(0u8..=3).unwrap_or(0) {
                0 => json!("add"),
                1 => json!("overwrite"),
                2 => json!({".tag": "update", "update": short_string(u, 16)}),
                _ => shapes::any_json(u, 2),
            };
            m.insert(
                "commit".into(),
                json!({ "path": path, "mode": mode, "autorename": bool::arbitrary(u).unwrap_or(false), "client_modified": "2023-11-14T22:13:20Z" }),
            );
        }
        if u.ratio(1u8, 4).unwrap_or(false) {
            let n = u.int_in_range(0usize..=3).unwrap_or(1);
            let entries: Vec<Value> = (0..n)
                .map(|_| {
                    let sid = choose(u, &self.sessions).map(str::to_string).unwrap_or_default();
                    json!({ "cursor": { "session_id": sid, "offset": self.number(u) }, "commit": { "path": format!("/{}", self.name(u)) } })
                })
                .collect();
            m.insert("entries".into(), Value::Array(entries));
            m.insert("num_sessions".into(), json!(self.number(u)));
        }
        if u.ratio(1u8, 4).unwrap_or(false) {
            m.insert("path".into(), json!(format!("/{}", self.name(u))));
            m.insert(
                "async_job_id".into(),
                json!(choose(u, &self.ids).unwrap_or("job")),
            );
        }
        if u.ratio(1u8, 8).unwrap_or(false) {
            m.insert(short_string(u, 10), shapes::any_json(u, 2));
        }
        Value::Object(m)
    }

    fn request(&mut self, u: &mut Unstructured<'_>) -> Request<Bytes> {
        let (method, path) = self.path(u);
        let body = match u.int_in_range(0u8..=5).unwrap_or(0) {
            0 => Bytes::new(),
            1 => {
                let item = json!({ "item": { "@microsoft.graph.conflictBehavior": pick(u, &["fail", "replace", "rename", "x"]), "name": self.name(u), "fileSize": self.number(u) }, "deferCommit": bool::arbitrary(u).unwrap_or(false) });
                Bytes::from(item.to_string())
            }
            2 => Bytes::from(shapes::any_json(u, 3).to_string()),
            3 => {
                // A pattern body of a chosen length (up to 700 KB: fragments, chunks).
                let n = match u.int_in_range(0u8..=15).unwrap_or(0) {
                    0 => 327_680,
                    1 => 655_360,
                    _ => u.int_in_range(0usize..=10_000).unwrap_or(0),
                };
                shapes::source(n as u64)
            }
            _ => Bytes::from(<Vec<u8>>::arbitrary(u).unwrap_or_default()),
        };
        let uri = if u.ratio(1u8, 8).unwrap_or(false) {
            format!(
                "{path}{}arg={}",
                if path.contains('?') { '&' } else { '?' },
                short_string(u, 60)
            )
        } else {
            path
        };
        let uri = if u.ratio(1u8, 2).unwrap_or(false) {
            format!("{}{uri}", self.base)
        } else {
            uri
        };
        let mut b = Request::builder().method(method).uri(uri.as_str());
        // Authorization.
        match u.int_in_range(0u8..=7).unwrap_or(0) {
            0..=3 => {
                let t = choose(u, &self.tokens).unwrap_or(DEFAULT_TOKEN).to_string();
                b = b.header("authorization", format!("Bearer {t}"));
            }
            4 => {}
            5 => b = b.header("authorization", "Bearer "),
            6 => b = b.header("authorization", "Basic dXNlcjpwYXNz"),
            _ => {
                if let Ok(v) = HeaderValue::from_bytes(short_string(u, 40).as_bytes()) {
                    b = b.header("authorization", v);
                }
            }
        }
        let n = u.int_in_range(0u8..=6).unwrap_or(0);
        for _ in 0..n {
            let (name, value): (&str, String) = match u.int_in_range(0u8..=11).unwrap_or(0) {
                0 | 1 => {
                    let a = self.number(u);
                    let len = self.number(u);
                    let total = self.number(u);
                    let v = match u.int_in_range(0u8..=3).unwrap_or(0) {
                        0 => format!(
                            "bytes {a}-{}/{total}",
                            a.wrapping_add(body.len() as u64).wrapping_sub(1)
                        ),
                        1 => format!("bytes {a}-{len}/*"),
                        2 => format!("bytes */{total}"),
                        _ => short_string(u, 40),
                    };
                    ("content-range", v)
                }
                2 | 3 => {
                    let arg = self.arg(u, &body);
                    let text = if u.ratio(1u8, 4).unwrap_or(false) {
                        arg.to_string() // raw UTF-8, maybe not a valid header
                    } else {
                        upload_session::dropbox::api_arg_json(&arg)
                    };
                    ("dropbox-api-arg", text)
                }
                4 => (
                    "content-type",
                    (pick(
                        u,
                        &[
                            "application/octet-stream",
                            "application/json",
                            "text/plain; charset=dropbox-cors-hack",
                            "application/json; charset=utf-8",
                            "",
                        ],
                    ))
                    .to_string(),
                ),
                5 => (
                    "content-length",
                    match u.int_in_range(0u8..=3).unwrap_or(0) {
                        0 => body.len().to_string(),
                        1 => "10737418240".into(),
                        2 => "-1".into(),
                        _ => (body.len() + 1).to_string(),
                    },
                ),
                6 => (
                    "dropbox-api-path-root",
                    (pick(
                        u,
                        &[
                            "{\".tag\": \"home\"}",
                            "{\".tag\": \"root\", \"root\": \"123\"}",
                            "{\".tag\": \"namespace_id\", \"namespace_id\": \"7\"}",
                            "junk",
                        ],
                    ))
                    .to_string(),
                ),
                7 => ("dropbox-api-select-user", short_string(u, 30)),
                8 => (
                    "if-match",
                    (pick(u, &["*", "\"{ABC},1\"", "junk"])).to_string(),
                ),
                9 => ("client-request-id", short_string(u, 200)),
                10 => ("expect", "100-continue".into()),
                _ => ("x-junk", short_string(u, 30)),
            };
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                b = b.header(n, v);
            }
        }
        match b.body(body.clone()) {
            Ok(r) => r,
            // An invalid URI or method from the input: a plain request instead.
            Err(_) => {
                let mut r = Request::new(body);
                *r.uri_mut() = http::Uri::from_static("/onedrive/v1.0/me/drive");
                r
            }
        }
    }

    fn streamed(
        &mut self,
        u: &mut Unstructured<'_>,
        emu: &mut Emulator,
        req: Request<Bytes>,
    ) -> http::Response<Bytes> {
        let (parts, body) = req.into_parts();
        let now = self.clock.wall();
        match emu.begin(now, &parts) {
            Begin::Respond(r) => r,
            Begin::Body(mut p) => {
                let mut at = 0usize;
                while at < body.len() {
                    let step = u
                        .int_in_range(1usize..=body.len() - at)
                        .unwrap_or(body.len() - at);
                    if let Some(cut) = p.cut_at() {
                        if (at + step) as u64 > cut {
                            let keep = (cut as usize).clamp(at, body.len());
                            let _ = p.push(body.slice(at..keep));
                            return emu.abort(now, p);
                        }
                    }
                    if let Err(o) = p.push(body.slice(at..at + step)) {
                        return emu.overflow(now, p, o);
                    }
                    at += step;
                    if u.ratio(1u8, 32).unwrap_or(false) {
                        // The connection drops mid-body.
                        return emu.abort(now, p);
                    }
                }
                let _ = (p.received(), p.stall());
                emu.complete(now, p)
            }
        }
    }
}
