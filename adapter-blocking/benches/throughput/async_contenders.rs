//! The async contenders of the throughput bench: `upload-session-async` and a raw hyper 1
//! loop, on tokio.
//!
//! They live in the blocking adapter's bench rather than in a bench of `adapter-async`
//! so that one harness (emulator process, child per contender, interleaved runs,
//! medians, `VmHWM`) measures every contender, and every ratio the issue asks for
//! (async ÷ raw hyper, async ÷ `onedrive-api` / `dropbox-sdk`, async ÷ blocking,
//! concurrent ÷ sequential) comes from one run of one binary. The price is a
//! dev-dependency of `upload-session-blocking` on `upload-session-async` (and on hyper,
//! which the async adapter already brings in).
//!
//! Runtime: a multi-thread tokio runtime (2 workers, what `#[tokio::main]` gives on this
//! machine) unless the contender's name ends in `@ct` (current-thread).
//!
//! - `…/async`: `upload_session_async::Upload` with default options, reading the file
//!   through `Source::file`. OneDrive: 10 MiB fragments. Dropbox: sequential session,
//!   8 MiB chunks, `content_hash` on every request. `dropbox/async-conc`: the same with
//!   `SessionType::Concurrent` and `parallelism(4)` (8 MiB chunks are 4 MiB-aligned).
//! - `…/raw-hyper`: hyper-util's pooled legacy client over plain TCP (`TCP_NODELAY`,
//!   as the adapter's default client), `Full<Bytes>` bodies read with `pread` into a
//!   fresh buffer, fixed headers, no hashing and no checks beyond the status: the same
//!   PUT sequence (OneDrive) or start / append_v2 / finish sequence (Dropbox) as the
//!   raw ureq loops.

use std::fs::File;
use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use upload_session::bytes::Bytes;
use upload_session::dropbox::{
    CommitInfo, DropboxConfig, DropboxUpload, SessionType, content_hash,
};
use upload_session::http;
use upload_session::{AccessToken, UploadMachine};
use upload_session_async::{Source, Upload};

use super::{DROPBOX_CHUNK, ONEDRIVE_FRAGMENT, TOKEN, read_at};

/// The runtime of a tokio contender: multi-thread unless `current_thread`.
pub fn runtime(current_thread: bool) -> tokio::runtime::Runtime {
    let mut b = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    b.enable_all().build().expect("runtime")
}

async fn run_ours<M>(machine: M, source: &Path) -> M::Completed
where
    M: UploadMachine + Send + 'static,
    M::Checkpoint: serde::Serialize,
{
    let source = Source::file(source).await.expect("source");
    Upload::new(machine, source).run().await.expect("upload")
}

/// `onedrive/async`: the async adapter, default options (QuickXorHash only);
/// `onedrive/async-qxh`: explicit `verify_sha256(false)` (the same since that default).
pub async fn ours_onedrive(url: &str, source: &Path, size: u64, path: &str, sha256: Option<bool>) {
    let machine = super::onedrive_machine(url, size, path, sha256);
    let done = run_ours(machine, source).await;
    assert_eq!(done.item.size, Some(size));
}

/// `dropbox/async` (sequential) and `dropbox/async-conc` (concurrent, `parallelism`
/// appends in flight).
pub async fn ours_dropbox(
    url: &str,
    source: &Path,
    size: u64,
    path: &str,
    parallelism: Option<u32>,
) {
    let mut b = DropboxUpload::builder(CommitInfo::new(path).expect("path"), size)
        .chunk_size(DROPBOX_CHUNK)
        .config(DropboxConfig::with_hosts(
            format!("{url}/dropbox/content/2/"),
            format!("{url}/dropbox/api/2/"),
        ))
        .access_token(AccessToken::new(TOKEN).expect("token"));
    if let Some(n) = parallelism {
        b = b.session_type(SessionType::Concurrent).parallelism(n);
    }
    if let Some(&n) = super::READ_AHEAD.get() {
        b = b.read_ahead(n);
    }
    let done = run_ours(b.build().expect("machine"), source).await;
    assert_eq!(done.metadata().map(|m| m.size), Some(size));
}

type RawClient = Client<HttpConnector, Full<Bytes>>;

fn raw_client() -> RawClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(http)
}

/// Sends one request and reads its whole answer; panics unless the status is 2xx.
async fn exchange(
    client: &RawClient,
    method: http::Method,
    uri: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Bytes {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = client.request(req).await.expect("send");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    assert!(
        status.is_success(),
        "{uri}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// `onedrive/raw-hyper`: one create POST, then the fragment PUTs.
pub async fn raw_onedrive(url: &str, file: &File, size: u64, path: &str) {
    let client = raw_client();
    let name = path.rsplit('/').next().unwrap_or("f.bin");
    let create =
        format!(r#"{{"item":{{"@microsoft.graph.conflictBehavior":"replace","name":"{name}"}}}}"#);
    let answer = exchange(
        &client,
        http::Method::POST,
        &format!("{url}/onedrive/v1.0/me/drive/root:{path}:/createUploadSession"),
        &[
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/json".into()),
        ],
        create.into_bytes(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&answer).expect("json");
    let upload_url = v["uploadUrl"].as_str().expect("uploadUrl").to_string();
    let mut offset = 0;
    while offset < size {
        let end = (offset + ONEDRIVE_FRAGMENT).min(size);
        let body = read_at(file, offset, end - offset);
        let range = format!("bytes {offset}-{}/{size}", end - 1);
        exchange(
            &client,
            http::Method::PUT,
            &upload_url,
            &[("content-range", range)],
            body,
        )
        .await;
        offset = end;
    }
}

/// `dropbox/raw-hyper`: start with the first chunk, `append_v2`, finish with the last;
/// no `content_hash`.
pub async fn raw_dropbox(url: &str, file: &File, size: u64, path: &str) {
    let client = raw_client();
    let content = format!("{url}/dropbox/content/2/files");
    let post = |route: &str, arg: serde_json::Value, body: Vec<u8>| {
        let uri = format!("{content}/{route}");
        let headers = [
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/octet-stream".to_string()),
            ("dropbox-api-arg", arg.to_string()),
        ];
        let client = &client;
        async move { exchange(client, http::Method::POST, &uri, &headers, body).await }
    };
    let first_end = DROPBOX_CHUNK.min(size);
    let start = post(
        "upload_session/start",
        serde_json::json!({"close": false}),
        read_at(file, 0, first_end),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&start).expect("json");
    let sid = v["session_id"].as_str().expect("session_id").to_string();
    let mut offset = first_end;
    while size - offset > DROPBOX_CHUNK {
        post(
            "upload_session/append_v2",
            serde_json::json!({"cursor": {"session_id": sid, "offset": offset}, "close": false}),
            read_at(file, offset, DROPBOX_CHUNK),
        )
        .await;
        offset += DROPBOX_CHUNK;
    }
    post(
        "upload_session/finish",
        serde_json::json!({
            "cursor": {"session_id": sid, "offset": offset},
            "commit": {"path": path, "mode": "overwrite"}
        }),
        read_at(file, offset, size - offset),
    )
    .await;
}

/// Where `raw_dropbox_concurrent` computes each append's `content_hash`.
#[derive(Clone, Copy)]
pub enum RawHash {
    /// No `content_hash` (`dropbox/raw-hyper-conc`).
    None,
    /// In the loop, before the append is spawned (`…+hash`).
    InLoop,
    /// Inside the append's task (`…+taskhash`).
    InTask,
}

/// `dropbox/raw-hyper-conc`: a concurrent session with `parallelism` appends in flight
/// (tasks on the runtime), the closing append once all others landed, an empty finish;
/// no `content_hash`. The baseline of the latency figure: what 4 appends in flight give
/// without any of our code.
///
/// `hash`: `dropbox/raw-hyper-conc+hash` passes each append's `content_hash`, computed
/// in the loop before the append is spawned (as our adapter does: the same client and
/// server work as `async-conc`); `…+taskhash` computes it inside each append's task, so
/// the runtime's workers hash in parallel.
pub async fn raw_dropbox_concurrent(
    url: &str,
    file: &File,
    size: u64,
    path: &str,
    parallelism: usize,
    hash: RawHash,
) {
    let client = raw_client();
    let content = format!("{url}/dropbox/content/2/files");
    let post = move |client: RawClient, route: &str, arg: serde_json::Value, body: Vec<u8>| {
        let uri = format!("{content}/{route}");
        let headers = [
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/octet-stream".to_string()),
            ("dropbox-api-arg", arg.to_string()),
        ];
        async move { exchange(&client, http::Method::POST, &uri, &headers, body).await }
    };
    let start = post(
        client.clone(),
        "upload_session/start",
        serde_json::json!({"session_type": "concurrent"}),
        Vec::new(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&start).expect("json");
    let sid = v["session_id"].as_str().expect("session_id").to_string();
    let count = size.div_ceil(DROPBOX_CHUNK);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..count - 1 {
        if tasks.len() >= parallelism {
            tasks.join_next().await.expect("task").expect("append");
        }
        let offset = k * DROPBOX_CHUNK;
        let body = read_at(file, offset, DROPBOX_CHUNK);
        let mut arg =
            serde_json::json!({"cursor": {"session_id": sid, "offset": offset}, "close": false});
        match hash {
            RawHash::None => {
                tasks.spawn(post(client.clone(), "upload_session/append_v2", arg, body));
            }
            RawHash::InLoop => {
                arg["content_hash"] = content_hash(&body).into();
                tasks.spawn(post(client.clone(), "upload_session/append_v2", arg, body));
            }
            RawHash::InTask => {
                let (client, post) = (client.clone(), post.clone());
                tasks.spawn(async move {
                    arg["content_hash"] = content_hash(&body).into();
                    post(client, "upload_session/append_v2", arg, body).await
                });
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("append");
    }
    let offset = (count - 1) * DROPBOX_CHUNK;
    post(
        client.clone(),
        "upload_session/append_v2",
        serde_json::json!({"cursor": {"session_id": sid, "offset": offset}, "close": true}),
        read_at(file, offset, size - offset),
    )
    .await;
    post(
        client,
        "upload_session/finish",
        serde_json::json!({
            "cursor": {"session_id": sid, "offset": size},
            "commit": {"path": path, "mode": "overwrite"}
        }),
        Vec::new(),
    )
    .await;
}
