//! Fidelity: the official `dropbox-sdk` crate (0.21, sync routes) uploads to the emulator
//! server through a small custom `HttpClient` that rewrites the hard-coded
//! `https://{content,api}.dropboxapi.com/2/` prefixes to the emulator (dropbox.md §9.1).
//! The emulator must answer in shapes the SDK parses, and store the exact bytes.

use dropbox_sdk::client_trait::{HttpClient, HttpRequest, HttpRequestResultRaw, UserAuthClient};
use dropbox_sdk::sync_routes::files;
use std::sync::Arc;

/// A request being built by the SDK.
struct Req {
    url: String,
    headers: Vec<(String, String)>,
}

impl HttpRequest for Req {
    fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// The custom client: ureq 3, status codes as responses, URL prefix rewrite.
struct EmuClient {
    agent: ureq::Agent,
    base: String,
    token: Arc<String>,
}

impl EmuClient {
    fn new(base: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token: Arc::new(token.to_string()),
        }
    }
}

impl HttpClient for EmuClient {
    type Request = Req;

    fn execute(
        &self,
        request: Req,
        body: &[u8],
    ) -> Result<HttpRequestResultRaw, dropbox_sdk::Error> {
        let mut b = self.agent.post(&request.url);
        for (k, v) in &request.headers {
            b = b.header(k, v);
        }
        let resp = b
            .send(body)
            .map_err(|e| dropbox_sdk::Error::HttpClient(Box::new(e)))?;
        let status = resp.status().as_u16();
        let result_header = resp
            .headers()
            .get("Dropbox-API-Result")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_length = resp
            .headers()
            .get("Content-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok());
        let body = resp.into_body().into_reader();
        Ok(HttpRequestResultRaw {
            status,
            result_header,
            content_length,
            body: Box::new(body),
        })
    }

    fn new_request(&self, url: &str) -> Req {
        let url = if let Some(rest) = url.strip_prefix("https://content.dropboxapi.com/2/") {
            format!("{}/dropbox/content/2/{rest}", self.base)
        } else if let Some(rest) = url.strip_prefix("https://api.dropboxapi.com/2/") {
            format!("{}/dropbox/api/2/{rest}", self.base)
        } else {
            url.to_string()
        };
        Req {
            url,
            headers: Vec::new(),
        }
    }

    fn token(&self) -> Option<Arc<String>> {
        Some(self.token.clone())
    }
}

impl UserAuthClient for EmuClient {}

use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::{Config, DEFAULT_TOKEN, Service, hash};

const BLOCK: usize = 4 * 1024 * 1024;

fn start() -> RunningServer {
    EmulatorServer::start(ServerOptions {
        config: Config::default(),
        ..ServerOptions::default()
    })
    .expect("server starts")
}

/// Deterministic test data (no all-zero blocks, so misplaced bytes change every hash).
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn commit(path: &str) -> files::CommitInfo {
    files::CommitInfo::new(path.to_string()).with_mode(files::WriteMode::Overwrite)
}

/// The stored record must equal the source: size, SHA-256, content hash, QuickXorHash.
fn assert_stored(server: &RunningServer, path: &str, src: &[u8]) {
    let rec = server
        .emulator()
        .lock()
        .unwrap()
        .file(Service::Dropbox, path)
        .unwrap_or_else(|| panic!("{path} stored"));
    assert_eq!(rec.content.size, src.len() as u64, "size of {path}");
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(hash::sha256_hex(src).as_str())
    );
    assert_eq!(
        rec.content.content_hash.as_deref(),
        Some(hash::content_hash_hex(src).as_str())
    );
    assert_eq!(
        rec.content.quick_xor_hash.as_deref(),
        Some(hash::quick_xor_hash_base64(src).as_str())
    );
}

/// Sequential sessions as the SDK's users write them: start with the first chunk,
/// append_v2 the middle, finish with the last chunk (dropbox.md §2, §3, §5).
#[test]
fn dropbox_sdk_sequential_uploads_of_several_sizes_store_exact_bytes() {
    let server = start();
    let client = EmuClient::new(server.url(), DEFAULT_TOKEN);
    let chunk = 3 * 1024 * 1024 + 7; // deliberately unaligned: sequential sessions allow it
    for (i, size) in [1usize, 1000, chunk, 2 * chunk + 5, 9_711_423]
        .into_iter()
        .enumerate()
    {
        let src = data(size, i as u8);
        let path = format!("/fidelity/seq-{size}.bin");
        let first = &src[..size.min(chunk)];
        let start = files::upload_session_start(
            &client,
            &files::UploadSessionStartArg::default()
                .with_content_hash(hash::content_hash_hex(first)),
            first,
        )
        .expect("start");
        let mut offset = first.len();
        while src.len() - offset > chunk {
            let piece = &src[offset..offset + chunk];
            let cursor = files::UploadSessionCursor::new(start.session_id.clone(), offset as u64);
            files::upload_session_append_v2(
                &client,
                &files::UploadSessionAppendArg::new(cursor)
                    .with_content_hash(hash::content_hash_hex(piece)),
                piece,
            )
            .expect("append_v2");
            offset += chunk;
        }
        let last = &src[offset..];
        let cursor = files::UploadSessionCursor::new(start.session_id.clone(), offset as u64);
        let meta = files::upload_session_finish(
            &client,
            &files::UploadSessionFinishArg::new(cursor, commit(&path))
                .with_content_hash(hash::content_hash_hex(last)),
            last,
        )
        .expect("finish");
        assert_eq!(meta.size, size as u64);
        assert_eq!(meta.path_display.as_deref(), Some(path.as_str()));
        assert_eq!(
            meta.content_hash.as_deref(),
            Some(hash::content_hash_hex(&src).as_str())
        );
        assert!(meta.rev.len() >= 9);
        assert_stored(&server, &path, &src);
    }
    assert!(
        server.snapshot().violations.is_empty(),
        "{:?}",
        server.snapshot().violations
    );
}

/// A wrong offset comes back as the SDK's typed `IncorrectOffset` with the bytes held
/// (dropbox.md §3, §12 rule 33), and the upload continues from it.
#[test]
fn dropbox_sdk_parses_incorrect_offset_and_resumes() {
    let server = start();
    let client = EmuClient::new(server.url(), DEFAULT_TOKEN);
    let src = data(10_000, 9);
    let start = files::upload_session_start(
        &client,
        &files::UploadSessionStartArg::default(),
        &src[..6_000],
    )
    .expect("start");
    let wrong = files::UploadSessionCursor::new(start.session_id.clone(), 5_000);
    let err = files::upload_session_append_v2(
        &client,
        &files::UploadSessionAppendArg::new(wrong),
        &src[5_000..7_000],
    )
    .expect_err("wrong offset is refused");
    let correct = match err {
        dropbox_sdk::Error::Api(files::UploadSessionAppendError::IncorrectOffset(e)) => {
            e.correct_offset
        }
        other => panic!("expected IncorrectOffset, got {other:?}"),
    };
    assert_eq!(correct, 6_000);
    let cursor = files::UploadSessionCursor::new(start.session_id.clone(), correct);
    let meta = files::upload_session_finish(
        &client,
        &files::UploadSessionFinishArg::new(cursor, commit("/fidelity/resync.bin")),
        &src[6_000..],
    )
    .expect("finish");
    assert_eq!(meta.size, 10_000);
    assert_stored(&server, "/fidelity/resync.bin", &src);
    // The wrong offset was a deliberate client error: the emulator counts it.
    assert_eq!(server.snapshot().violations.total(), 1);
}

/// Concurrent session as in the SDK's large-file example: empty start, 4 MiB-aligned
/// appends in any order, the tail closes, empty finish at offset = size (dropbox.md §4).
#[test]
fn dropbox_sdk_concurrent_session_out_of_order_appends() {
    let server = start();
    let client = EmuClient::new(server.url(), DEFAULT_TOKEN);
    let size = 3 * 2 * BLOCK + 123_457;
    let src = data(size, 3);
    let start = files::upload_session_start(
        &client,
        &files::UploadSessionStartArg::default()
            .with_session_type(files::UploadSessionType::Concurrent),
        &[],
    )
    .expect("concurrent start");
    let chunk = 2 * BLOCK;
    let full = size / chunk;
    // Last full chunk first, then the others, then the closing tail.
    for k in (0..full).rev() {
        let piece = &src[k * chunk..(k + 1) * chunk];
        let cursor = files::UploadSessionCursor::new(start.session_id.clone(), (k * chunk) as u64);
        files::upload_session_append_v2(
            &client,
            &files::UploadSessionAppendArg::new(cursor)
                .with_content_hash(hash::content_hash_hex(piece)),
            piece,
        )
        .expect("aligned append");
    }
    let tail = &src[full * chunk..];
    let cursor = files::UploadSessionCursor::new(start.session_id.clone(), (full * chunk) as u64);
    files::upload_session_append_v2(
        &client,
        &files::UploadSessionAppendArg::new(cursor).with_close(true),
        tail,
    )
    .expect("closing append");
    let cursor = files::UploadSessionCursor::new(start.session_id.clone(), size as u64);
    let meta = files::upload_session_finish(
        &client,
        &files::UploadSessionFinishArg::new(cursor, commit("/fidelity/concurrent.bin")),
        &[],
    )
    .expect("finish");
    assert_eq!(meta.size, size as u64);
    assert_stored(&server, "/fidelity/concurrent.bin", &src);
    assert!(server.snapshot().violations.is_empty());
}

/// Closed sessions committed together with `finish_batch_v2` (dropbox.md §6.3).
#[test]
fn dropbox_sdk_finish_batch_v2_commits_closed_sessions() {
    let server = start();
    let client = EmuClient::new(server.url(), DEFAULT_TOKEN);
    let mut entries = Vec::new();
    let mut sources = Vec::new();
    for i in 0..5usize {
        let src = data(1_000 * (i + 1) + i, 40 + i as u8);
        let start = files::upload_session_start(
            &client,
            &files::UploadSessionStartArg::default().with_close(true),
            &src,
        )
        .expect("start+close");
        let path = format!("/fidelity/batch/{i}.bin");
        let cursor = files::UploadSessionCursor::new(start.session_id, src.len() as u64);
        entries.push(files::UploadSessionFinishArg::new(cursor, commit(&path)));
        sources.push((path, src));
    }
    let result = files::upload_session_finish_batch_v2(
        &client,
        &files::UploadSessionFinishBatchArg::new(entries),
    )
    .expect("finish_batch_v2");
    assert_eq!(result.entries.len(), 5);
    for (entry, (path, src)) in result.entries.iter().zip(&sources) {
        match entry {
            files::UploadSessionFinishBatchResultEntry::Success(meta) => {
                assert_eq!(meta.size, src.len() as u64);
                assert_eq!(meta.path_display.as_deref(), Some(path.as_str()));
            }
            other => panic!("{path}: {other:?}"),
        }
        assert_stored(&server, path, src);
    }
    assert!(server.snapshot().violations.is_empty());
}

/// dropbox-sdk 0.21 escapes characters above U+FFFF as `\u1f600` instead of a surrogate
/// pair (dropbox.md §9.1). A JSON parser reads `\u1f60` + `0`, so the emulator, like the
/// real service, stores the file under a silently changed name; BMP characters survive.
#[test]
fn dropbox_sdk_astral_escaping_bug_renames_the_file_and_the_emulator_shows_it() {
    let server = start();
    let client = EmuClient::new(server.url(), DEFAULT_TOKEN);
    let upload = |path: &str| {
        let start =
            files::upload_session_start(&client, &files::UploadSessionStartArg::default(), b"abc")
                .expect("start");
        let cursor = files::UploadSessionCursor::new(start.session_id, 3);
        files::upload_session_finish(
            &client,
            &files::UploadSessionFinishArg::new(cursor, commit(path)),
            &[],
        )
        .expect("finish")
    };
    // BMP non-ASCII: escaped correctly by the SDK, stored under the right name.
    let meta = upload("/t\u{eb}st/caf\u{e9}.txt");
    assert_eq!(
        meta.path_display.as_deref(),
        Some("/t\u{eb}st/caf\u{e9}.txt")
    );
    // Astral: the SDK's `\u1f600` decodes as U+1F60 followed by '0'.
    let meta = upload("/t\u{eb}st/\u{1F600}.txt");
    let renamed = "/t\u{eb}st/\u{1F60}0.txt";
    assert_eq!(meta.path_display.as_deref(), Some(renamed));
    let emu = server.emulator();
    let emu = emu.lock().unwrap();
    assert!(emu.file(Service::Dropbox, renamed).is_some());
    assert!(
        emu.file(Service::Dropbox, "/t\u{eb}st/\u{1F600}.txt")
            .is_none()
    );
}

/// The same astral path sent with a correct surrogate pair keeps its name: the emulator
/// decodes standard JSON escapes, so the rename above is the SDK's fault.
#[test]
fn surrogate_pair_escaping_keeps_astral_names() {
    let server = start();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = server.url();
    let mut resp = agent
        .post(format!(
            "{base}/dropbox/content/2/files/upload_session/start"
        ))
        .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
        .header("Content-Type", "application/octet-stream")
        .header("Dropbox-API-Arg", "{\"close\":true}")
        .send(&b"abc"[..])
        .expect("start");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let sid = v["session_id"].as_str().unwrap().to_string();
    let arg = format!(
        "{{\"cursor\":{{\"session_id\":\"{sid}\",\"offset\":3}},\"commit\":{{\"path\":\"/t\\u00ebst/\\ud83d\\ude00.txt\"}}}}"
    );
    let mut resp = agent
        .post(format!(
            "{base}/dropbox/content/2/files/upload_session/finish"
        ))
        .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
        .header("Content-Type", "application/octet-stream")
        .header("Dropbox-API-Arg", arg)
        .send(&b""[..])
        .expect("finish");
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path_display"], "/t\u{eb}st/\u{1F600}.txt");
}
