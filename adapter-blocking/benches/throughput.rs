//! End-to-end upload throughput and peak memory on loopback, against the emulator
//! running in its own process, for both adapters (the async ones are in
//! `throughput/async_contenders.rs`, which says why they are here).
//!
//! ```sh
//! cargo build --release -p upload-session-emulator --bin upload-session-emulator
//! cargo bench -p upload-session-blocking --bench throughput -- \
//!     [--size-mib 1024] [--runs 5] [--protocol both|onedrive|dropbox] \
//!     [--digests native|all|none] [--only NAME,NAME] [--latency-ms 0] \
//!     [--reference NAME]
//! # peak RSS while uploading a 4 GiB file:
//! cargo bench -p upload-session-blocking --bench throughput -- --size-mib 4096 --runs 1
//! # 50 ms latency, Dropbox sequential against concurrent (4 appends in flight):
//! cargo bench -p upload-session-blocking --bench throughput -- --protocol dropbox \
//!     --latency-ms 50 --reference dropbox/async \
//!     --only dropbox/async,dropbox/async-conc,dropbox/raw-hyper,dropbox/raw-hyper-conc
//! ```
//!
//! `--latency-ms` is passed to the emulator, which sleeps that long before every model
//! response (once per request). `--reference` names the contender of the `÷ ref`
//! column (default: the group's `raw-ureq`). A contender name may end in `@buf=KIB`
//! (ureq output buffer), `@ct` or `@mt` (tokio current-thread / multi-thread runtime), or
//! `@ra=N` (`read_ahead` of our contenders; default the core's).
//!
//! The parent process writes the source file under `/tmp` (pseudo-random bytes; removed
//! at the end), starts `target/release/upload-session-emulator` (or `$EMULATOR_BIN`) on
//! 127.0.0.1, then for each run starts one child process per contender, in the same
//! order every run (A B C A B C …, so load changes on the machine hit every contender
//! alike). Each child uploads the file once and reports its wall time, its CPU time
//! (user + system, from `getrusage`-equivalent `/proc/self/stat`) and its peak RSS
//! (`VmHWM` from `/proc/self/status`), so the client is measured alone: the emulator's
//! CPU and memory are in another process.
//!
//! Contenders (every one reads the file one fragment at a time with `pread`, as a real
//! upload would; no contender holds the whole file):
//! - OneDrive, 10 MiB fragments (10,485,760 = 32 × 320 KiB):
//!   `ours` (this crate's `Upload` over `OneDriveUpload`, default options: QuickXorHash
//!   only since `verify_sha256` defaults to off), `ours-qxh` (explicit
//!   `verify_sha256(false)`, the same since that change; not in the default list),
//!   `ours-sha256` (`verify_sha256(true)`, the former default; not in the default list), `raw-ureq` (one
//!   `createUploadSession` POST, then a loop of fragment PUTs with `Content-Range`; no
//!   hashing, no checks), `onedrive-api` (0.11, reqwest, `UploadSession::from_upload_url`
//!   and `upload_part`, on a current-thread tokio runtime; the session is created with
//!   one ureq POST because `OneDrive::new` hard-codes graph.microsoft.com).
//! - Dropbox, 8 MiB chunks, sequential session: `ours` (`DropboxUpload`, content hash of
//!   every chunk in its `content_hash` argument), `raw-ureq` (start with the first chunk,
//!   `append_v2`, finish with the last; no `content_hash`), `dropbox-sdk` (0.21 sync
//!   routes through a ureq `HttpClient` rewriting the hosts, as users call it: no
//!   `content_hash`), `dropbox-sdk+hash` (the same, passing each chunk's content hash,
//!   computed with `upload_session::dropbox::content_hash`).
//! - `async`, `async-conc`, `raw-hyper`, `raw-hyper-conc`: see `throughput/async_contenders.rs`.
//!
//! Throughput = file bytes / wall time of the child's upload (decimal MB/s), the median
//! of the runs, with the min–max spread; ratios are medians of per-run ratios to the
//! reference contender of the same run.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use upload_session::AccessToken;
use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload, content_hash};
use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
use upload_session_blocking::{Source, Upload};

#[path = "throughput/async_contenders.rs"]
mod async_contenders;
use async_contenders::RawHash;

const TOKEN: &str = "emulator-token";
const MIB: u64 = 1024 * 1024;
const ONEDRIVE_FRAGMENT: u64 = 10 * MIB;
const DROPBOX_CHUNK: u64 = 8 * MIB;

// ---------------------------------------------------------------------------------------
// Measurements of this process

/// Peak resident set size (`VmHWM`), KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process, seconds (clock ticks of `/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------------------------------
// Child: one upload

/// Reads `[offset, offset + len)` of the file into a fresh buffer.
fn read_at(file: &File, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).expect("read source");
    buf
}

/// ureq's output buffer size for this child (`NAME@buf=KIB`; default ureq's 128 KiB).
static OUTPUT_BUFFER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// `read_ahead` of our contenders for this child (`NAME@ra=N`; default the core's).
static READ_AHEAD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

fn plain_agent() -> ureq::Agent {
    let mut b = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(&n) = OUTPUT_BUFFER.get() {
        b = b.output_buffer_size(n);
    }
    b.build().into()
}

fn onedrive_create(agent: &ureq::Agent, url: &str, path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or("f.bin");
    let body =
        format!(r#"{{"item":{{"@microsoft.graph.conflictBehavior":"replace","name":"{name}"}}}}"#);
    let mut resp = agent
        .post(format!(
            "{url}/onedrive/v1.0/me/drive/root:{path}:/createUploadSession"
        ))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .expect("create");
    let text = resp.body_mut().read_to_string().expect("create body");
    assert_eq!(resp.status(), 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["uploadUrl"].as_str().expect("uploadUrl").to_string()
}

fn raw_onedrive(url: &str, file: &File, size: u64, path: &str) {
    let agent = plain_agent();
    let upload_url = onedrive_create(&agent, url, path);
    let mut offset = 0;
    while offset < size {
        let end = (offset + ONEDRIVE_FRAGMENT).min(size);
        let body = read_at(file, offset, end - offset);
        let mut resp = agent
            .put(&upload_url)
            .header(
                "Content-Range",
                format!("bytes {offset}-{}/{size}", end - 1),
            )
            .send(&body[..])
            .expect("PUT");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert!((200..=202).contains(&status), "{status} {text}");
        offset = end;
    }
}

/// The OneDrive machine of our contenders (blocking and async): 10 MiB fragments,
/// default options unless `sha256` or `@ra=N` say otherwise.
fn onedrive_machine(url: &str, size: u64, path: &str, sha256: Option<bool>) -> OneDriveUpload {
    let mut b = OneDriveUpload::builder(Target::path(path), size);
    if let Some(on) = sha256 {
        b = b.verify_sha256(on);
    }
    let mut cfg = OneDriveConfig::with_base(format!("{url}/onedrive/v1.0"));
    if let Some(&n) = READ_AHEAD.get() {
        cfg.read_ahead = n;
    }
    b.fragment_size(ONEDRIVE_FRAGMENT)
        .config(cfg)
        .access_token(AccessToken::new(TOKEN).expect("token"))
        .build()
        .expect("machine")
}

fn ours_onedrive(url: &str, source: &Path, size: u64, path: &str, sha256: Option<bool>) {
    let machine = onedrive_machine(url, size, path, sha256);
    let mut upload = Upload::new(machine, Source::file(source).expect("source"));
    if OUTPUT_BUFFER.get().is_some() {
        upload = upload.agent(plain_agent());
    }
    let done = upload.run().expect("upload");
    assert_eq!(done.item.size, Some(size));
}

fn onedrive_api(url: &str, file: &File, size: u64, path: &str, rt: &tokio::runtime::Runtime) {
    let upload_url = onedrive_create(&plain_agent(), url, path);
    let session = onedrive_api::UploadSession::from_upload_url(upload_url);
    let client = reqwest::Client::new();
    rt.block_on(async {
        let mut offset = 0;
        while offset < size {
            let end = (offset + ONEDRIVE_FRAGMENT).min(size);
            let body = read_at(file, offset, end - offset);
            let item = session
                .upload_part(body, offset..end, size, &client)
                .await
                .expect("upload_part");
            assert_eq!(item.is_some(), end == size);
            offset = end;
        }
    });
}

fn dropbox_arg(v: serde_json::Value) -> String {
    v.to_string()
}

fn raw_dropbox(url: &str, file: &File, size: u64, path: &str) {
    let agent = plain_agent();
    let content = format!("{url}/dropbox/content/2/files");
    let post = |route: &str, arg: String, body: &[u8]| -> String {
        let mut resp = agent
            .post(format!("{content}/{route}"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/octet-stream")
            .header("Dropbox-API-Arg", arg)
            .send(body)
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "{route}: {text}");
        text
    };
    let first_end = DROPBOX_CHUNK.min(size);
    let first = read_at(file, 0, first_end);
    let start = post(
        "upload_session/start",
        dropbox_arg(serde_json::json!({"close": false})),
        &first,
    );
    drop(first);
    let v: serde_json::Value = serde_json::from_str(&start).expect("json");
    let sid = v["session_id"].as_str().expect("session_id").to_string();
    let mut offset = first_end;
    while size - offset > DROPBOX_CHUNK {
        let body = read_at(file, offset, DROPBOX_CHUNK);
        post(
            "upload_session/append_v2",
            dropbox_arg(
                serde_json::json!({"cursor": {"session_id": sid, "offset": offset}, "close": false}),
            ),
            &body,
        );
        offset += DROPBOX_CHUNK;
    }
    let last = read_at(file, offset, size - offset);
    post(
        "upload_session/finish",
        dropbox_arg(serde_json::json!({
            "cursor": {"session_id": sid, "offset": offset},
            "commit": {"path": path, "mode": "overwrite"}
        })),
        &last,
    );
}

fn ours_dropbox(url: &str, source: &Path, size: u64, path: &str) {
    let mut b = DropboxUpload::builder(CommitInfo::new(path).expect("path"), size)
        .chunk_size(DROPBOX_CHUNK)
        .config(DropboxConfig::with_hosts(
            format!("{url}/dropbox/content/2/"),
            format!("{url}/dropbox/api/2/"),
        ))
        .access_token(AccessToken::new(TOKEN).expect("token"));
    if let Some(&n) = READ_AHEAD.get() {
        b = b.read_ahead(n);
    }
    let machine = b.build().expect("machine");
    let mut upload = Upload::new(machine, Source::file(source).expect("source"));
    if OUTPUT_BUFFER.get().is_some() {
        upload = upload.agent(plain_agent());
    }
    let done = upload.run().expect("upload");
    assert_eq!(done.metadata().map(|m| m.size), Some(size));
}

mod sdk {
    //! The dropbox-sdk client of `tests/tests/fidelity_dropbox_sdk.rs`: ureq, status
    //! codes as responses, the hard-coded hosts rewritten to the emulator.
    use dropbox_sdk::client_trait::{
        HttpClient, HttpRequest, HttpRequestResultRaw, UserAuthClient,
    };
    use std::sync::Arc;

    pub struct Req {
        url: String,
        headers: Vec<(String, String)>,
    }

    impl HttpRequest for Req {
        fn set_header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_string(), value.to_string()));
            self
        }
    }

    pub struct EmuClient {
        agent: ureq::Agent,
        base: String,
        token: Arc<String>,
    }

    impl EmuClient {
        pub fn new(base: &str, token: &str) -> Self {
            Self {
                agent: super::plain_agent(),
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
            Ok(HttpRequestResultRaw {
                status,
                result_header,
                content_length,
                body: Box::new(resp.into_body().into_reader()),
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
}

fn dropbox_sdk(url: &str, file: &File, size: u64, path: &str, hash: bool) {
    use dropbox_sdk::sync_routes::files;
    let client = sdk::EmuClient::new(url, TOKEN);
    let with_hash = |data: &[u8]| hash.then(|| content_hash(data));
    let first_end = DROPBOX_CHUNK.min(size);
    let first = read_at(file, 0, first_end);
    let mut arg = files::UploadSessionStartArg::default();
    if let Some(h) = with_hash(&first) {
        arg = arg.with_content_hash(h);
    }
    let start = files::upload_session_start(&client, &arg, &first).expect("start");
    drop(first);
    let mut offset = first_end;
    while size - offset > DROPBOX_CHUNK {
        let body = read_at(file, offset, DROPBOX_CHUNK);
        let cursor = files::UploadSessionCursor::new(start.session_id.clone(), offset);
        let mut arg = files::UploadSessionAppendArg::new(cursor);
        if let Some(h) = with_hash(&body) {
            arg = arg.with_content_hash(h);
        }
        files::upload_session_append_v2(&client, &arg, &body).expect("append_v2");
        offset += DROPBOX_CHUNK;
    }
    let last = read_at(file, offset, size - offset);
    let cursor = files::UploadSessionCursor::new(start.session_id.clone(), offset);
    let commit = files::CommitInfo::new(path.to_string()).with_mode(files::WriteMode::Overwrite);
    let mut arg = files::UploadSessionFinishArg::new(cursor, commit);
    if let Some(h) = with_hash(&last) {
        arg = arg.with_content_hash(h);
    }
    let meta = files::upload_session_finish(&client, &arg, &last).expect("finish");
    assert_eq!(meta.size, size);
}

/// Runs one contender; prints `RESULT <wall s> <cpu s> <VmHWM KiB>`.
fn child(name: &str, url: &str, source: &Path, path: &str) {
    let size = std::fs::metadata(source).expect("source").len();
    let file = File::open(source).expect("open source");
    let mut parts = name.split('@');
    let name = parts.next().unwrap_or_default();
    // Tokio contenders: the multi-thread runtime (`#[tokio::main]`), except
    // `onedrive-api`, measured on a current-thread runtime since the first figures.
    let mut current_thread = name == "onedrive/onedrive-api";
    for option in parts {
        match option {
            "ct" => current_thread = true,
            "mt" => current_thread = false,
            _ => {
                if let Some(n) = option.strip_prefix("ra=") {
                    let _ = READ_AHEAD.set(n.parse().expect("@ra=N"));
                    continue;
                }
                let kib: usize = option
                    .strip_prefix("buf=")
                    .and_then(|k| k.parse().ok())
                    .expect("@buf=KIB, @ra=N, @ct or @mt");
                let _ = OUTPUT_BUFFER.set(kib * 1024);
            }
        }
    }
    // Built before the clock starts (the blocking contenders have no runtime).
    let rt = async_contenders::runtime(current_thread);
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    match name {
        "onedrive/ours" => ours_onedrive(url, source, size, path, None),
        "onedrive/ours-qxh" => ours_onedrive(url, source, size, path, Some(false)),
        "onedrive/ours-sha256" => ours_onedrive(url, source, size, path, Some(true)),
        "onedrive/raw-ureq" => raw_onedrive(url, &file, size, path),
        "onedrive/onedrive-api" => onedrive_api(url, &file, size, path, &rt),
        "onedrive/async" => rt.block_on(async_contenders::ours_onedrive(
            url, source, size, path, None,
        )),
        "onedrive/async-qxh" => rt.block_on(async_contenders::ours_onedrive(
            url,
            source,
            size,
            path,
            Some(false),
        )),
        "onedrive/raw-hyper" => rt.block_on(async_contenders::raw_onedrive(url, &file, size, path)),
        "dropbox/ours" => ours_dropbox(url, source, size, path),
        "dropbox/raw-ureq" => raw_dropbox(url, &file, size, path),
        "dropbox/dropbox-sdk" => dropbox_sdk(url, &file, size, path, false),
        "dropbox/dropbox-sdk+hash" => dropbox_sdk(url, &file, size, path, true),
        "dropbox/async" => rt.block_on(async_contenders::ours_dropbox(
            url, source, size, path, None,
        )),
        "dropbox/async-conc" => rt.block_on(async_contenders::ours_dropbox(
            url,
            source,
            size,
            path,
            Some(4),
        )),
        "dropbox/raw-hyper" => rt.block_on(async_contenders::raw_dropbox(url, &file, size, path)),
        "dropbox/raw-hyper-conc" => rt.block_on(async_contenders::raw_dropbox_concurrent(
            url,
            &file,
            size,
            path,
            4,
            RawHash::None,
        )),
        "dropbox/raw-hyper-conc+hash" => rt.block_on(async_contenders::raw_dropbox_concurrent(
            url,
            &file,
            size,
            path,
            4,
            RawHash::InLoop,
        )),
        "dropbox/raw-hyper-conc+taskhash" => rt.block_on(async_contenders::raw_dropbox_concurrent(
            url,
            &file,
            size,
            path,
            4,
            RawHash::InTask,
        )),
        other => panic!("unknown contender {other}"),
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!("RESULT {wall} {cpu} {}", vm_hwm_kib());
}

// ---------------------------------------------------------------------------------------
// Parent

const ONEDRIVE: [&str; 5] = [
    "onedrive/ours",
    "onedrive/raw-ureq",
    "onedrive/onedrive-api",
    "onedrive/async",
    "onedrive/raw-hyper",
];
const DROPBOX: [&str; 7] = [
    "dropbox/ours",
    "dropbox/raw-ureq",
    "dropbox/dropbox-sdk",
    "dropbox/dropbox-sdk+hash",
    "dropbox/async",
    "dropbox/async-conc",
    "dropbox/raw-hyper",
];

struct Options {
    size_mib: u64,
    runs: usize,
    protocol: String,
    digests: String,
    only: Option<Vec<String>>,
    latency_ms: u64,
    reference: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        size_mib: 1024,
        runs: 5,
        protocol: "both".into(),
        digests: "native".into(),
        only: None,
        latency_ms: 0,
        reference: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--size-mib" => o.size_mib = value()?.parse().map_err(|e| format!("{e}"))?,
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--protocol" => o.protocol = value()?,
            "--digests" => o.digests = value()?,
            "--only" => o.only = Some(value()?.split(',').map(str::to_string).collect()),
            "--latency-ms" => o.latency_ms = value()?.parse().map_err(|e| format!("{e}"))?,
            "--reference" => o.reference = Some(value()?),
            // `cargo bench` passes `--bench`; ignore it and any filter.
            "--bench" => {}
            _ => {}
        }
    }
    Ok(o)
}

/// Writes `size` pseudo-random bytes to `path`, 8 MiB at a time.
fn write_source(path: &Path, size: u64) {
    let mut f = File::create(path).expect("create source file");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut buf = vec![0u8; 8 * MIB as usize];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write source file");
        left -= n as u64;
    }
    f.sync_all().ok();
}

struct Emulator {
    child: Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn emulator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EMULATOR_BIN") {
        return PathBuf::from(p);
    }
    // target/release/deps/throughput-… → target/release/upload-session-emulator
    let exe = std::env::current_exe().expect("current exe");
    let release = exe.parent().and_then(Path::parent).expect("target/release");
    release.join("upload-session-emulator")
}

fn start_emulator(digests: &str, onedrive: bool, latency_ms: u64) -> Emulator {
    let bin = emulator_bin();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release -p upload-session-emulator --bin upload-session-emulator` first (or set EMULATOR_BIN)",
        bin.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.arg("--port").arg("0");
    cmd.arg("--latency-ms").arg(latency_ms.to_string());
    match digests {
        // Only the service's own digest (the emulator's digests are global, so each
        // protocol group gets its own emulator): QuickXorHash for OneDrive, the content
        // hash for Dropbox. Uploads are still checked against them.
        "native" if onedrive => {
            cmd.args(["--no-sha256", "--no-content-hash"]);
        }
        "native" => {
            cmd.args(["--no-sha256", "--no-quick-xor"]);
        }
        "none" => {
            cmd.args(["--no-sha256", "--no-quick-xor", "--no-content-hash"]);
        }
        "all" => {}
        other => panic!("--digests {other}: native|all|none"),
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("emulator's first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on URL")
        .to_string();
    Emulator { child, url }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: f64,
    cpu: f64,
    hwm_kib: u64,
}

fn run_child(exe: &Path, name: &str, url: &str, source: &Path, path: &str) -> Sample {
    let out = Command::new(exe)
        .args(["--child", name, url])
        .arg(source)
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the contender");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name} failed: {text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{name}: no RESULT in {text}"));
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    Sample {
        wall: f[0],
        cpu: f[1],
        hwm_kib: f[2] as u64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(
    group: &str,
    names: &[String],
    samples: &[Vec<Sample>],
    size: u64,
    reference: Option<&str>,
) {
    let mbps = |s: &Sample| size as f64 / s.wall / 1e6;
    let find = |suffix: &str| names.iter().position(|n| n.ends_with(suffix));
    let (reference_name, reference) =
        match reference.and_then(|r| names.iter().position(|n| n == r)) {
            Some(i) => (names[i].as_str(), Some(i)),
            None => ("raw-ureq", find("/raw-ureq")),
        };
    let ours = find("/ours");
    println!("÷ ref: this ÷ {reference_name}");
    println!();
    println!(
        "{group}: {} MiB, {} runs; ratios = medians of per-run throughput ratios",
        size / MIB,
        samples.first().map_or(0, Vec::len)
    );
    println!(
        "{:<26} {:>10} {:>17} {:>12} {:>13} {:>12} {:>9}",
        "contender", "MB/s med", "MB/s min-max", "÷ ref", "ours ÷ this", "CPU s (med)", "VmHWM MiB"
    );
    for (i, name) in names.iter().enumerate() {
        let s = &samples[i];
        let rates: Vec<f64> = s.iter().map(mbps).collect();
        let lo = rates.iter().copied().fold(f64::MAX, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        // Median over runs of (the other's wall time / this one's): > 1 = this is faster.
        let faster_than = |j: Option<usize>| {
            j.map_or(f64::NAN, |j| {
                median(
                    s.iter()
                        .zip(&samples[j])
                        .map(|(a, b)| b.wall / a.wall)
                        .collect(),
                )
            })
        };
        let hwm = s.iter().map(|x| x.hwm_kib).max().unwrap_or(0) as f64 / 1024.0;
        // A ratio whose other contender is not in the run prints as `-`, not `NaNx`.
        let ratio = |r: f64| {
            if r.is_finite() {
                format!("{r:.2}x")
            } else {
                "-".to_string()
            }
        };
        println!(
            "{name:<26} {:>10.0} {:>8.0}-{:<8.0} {:>12} {:>13} {:>12.2} {:>9.1}",
            median(rates.clone()),
            lo,
            hi,
            ratio(faster_than(reference)),
            ratio(1.0 / faster_than(ours)),
            median(s.iter().map(|x| x.cpu).collect()),
            hwm
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let [_, _, name, url, source, path] = &args[..] else {
            panic!("--child NAME URL SOURCE PATH");
        };
        child(name, url, Path::new(source), path);
        return;
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let size = o.size_mib * MIB;
    let source = std::env::temp_dir().join(format!("upload-bench-{}.bin", std::process::id()));
    println!("load before: {}", load());
    let t = Instant::now();
    write_source(&source, size);
    println!(
        "source: {} ({} MiB) written in {:.1} s",
        source.display(),
        o.size_mib,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe().expect("current exe");
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    // `--only` lists the contenders to run, in order (any `NAME@buf=KIB` variant too).
    let pick = |prefix: &str, all: &[&str]| -> Vec<String> {
        match &o.only {
            Some(only) => only
                .iter()
                .filter(|n| n.starts_with(prefix))
                .cloned()
                .collect(),
            None => all.iter().map(|n| n.to_string()).collect(),
        }
    };
    if o.protocol == "both" || o.protocol == "onedrive" {
        groups.push(("OneDrive, 10 MiB fragments", pick("onedrive/", &ONEDRIVE)));
    }
    if o.protocol == "both" || o.protocol == "dropbox" {
        groups.push(("Dropbox, 8 MiB chunks", pick("dropbox/", &DROPBOX)));
    }
    groups.retain(|(_, names)| !names.is_empty());
    let mut results = Vec::new();
    for (group, names) in &groups {
        let emulator = start_emulator(&o.digests, group.starts_with("OneDrive"), o.latency_ms);
        println!(
            "{group}: emulator {} (digests: {}, latency {} ms)",
            emulator.url, o.digests, o.latency_ms
        );
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); names.len()];
        for run in 0..o.runs {
            for (i, name) in names.iter().enumerate() {
                let path = format!(
                    "/bench/{}-{run}.bin",
                    name.replace(['/', '+', '@', '='], "-")
                );
                let s = run_child(&exe, name, &emulator.url, &source, &path);
                eprintln!(
                    "  run {run} {name:<26} {:>7.0} MB/s  cpu {:.2} s  VmHWM {:.1} MiB  (load {})",
                    size as f64 / s.wall / 1e6,
                    s.cpu,
                    s.hwm_kib as f64 / 1024.0,
                    load()
                );
                samples[i].push(s);
            }
        }
        drop(emulator);
        results.push((group, names, samples));
    }
    let _ = std::fs::remove_file(&source);
    for (group, names, samples) in &results {
        report(group, names, samples, size, o.reference.as_deref());
    }
    println!();
    println!("load after: {}", load());
}
