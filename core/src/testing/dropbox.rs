//! Dropbox scenario harness: fast-forwards a [`DropboxUpload`] to any phase and builds
//! the service's responses. Panics on unexpected machine output, as tests want.

use super::{MachineHarness, Step, json, pattern, raw};
use crate::dropbox::{
    Checkpoint, CommitInfo, Completed, DropboxConfig, DropboxEvent, DropboxUpload, SessionType,
    content_hash,
};
use crate::{AccessToken, OutgoingRequest, RequestId};
use bytes::Bytes;

/// The content host scenarios use.
pub const CONTENT: &str = "https://content.test/2/";
/// The API host scenarios use.
pub const API: &str = "https://api.test/2/";
/// The commit path scenarios use.
pub const PATH: &str = "/docs/file.bin";

/// Builds a [`DropboxHarness`].
#[derive(Clone, Debug)]
pub struct DropboxScenario {
    size: u64,
    chunk: u64,
    session_type: SessionType,
    parallelism: u32,
    batch: bool,
    last_in_finish: bool,
    config: DropboxConfig,
    token: bool,
    commit: CommitInfo,
    read_ahead: Option<u32>,
}

impl DropboxScenario {
    /// A sequential upload of `size` pattern bytes to [`PATH`], 8 MiB chunks.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            chunk: 8 * 1024 * 1024,
            session_type: SessionType::Sequential,
            parallelism: 4,
            batch: false,
            last_in_finish: true,
            config: DropboxConfig::with_hosts(CONTENT, API),
            token: true,
            commit: CommitInfo::new(PATH).expect("valid path"),
            read_ahead: None,
        }
    }

    /// A concurrent upload with 4 MiB chunks and `parallelism` appends in flight.
    pub fn concurrent(size: u64, parallelism: u32) -> Self {
        let mut s = Self::new(size);
        s.session_type = SessionType::Concurrent;
        s.chunk = 4 * 1024 * 1024;
        s.parallelism = parallelism;
        s
    }

    /// Sets the chunk size.
    pub fn chunk(mut self, c: u64) -> Self {
        self.chunk = c;
        self
    }

    /// Closes the session instead of committing it.
    pub fn for_batch(mut self) -> Self {
        self.batch = true;
        self
    }

    /// Sets `last_chunk_in_finish`.
    pub fn last_chunk_in_finish(mut self, on: bool) -> Self {
        self.last_in_finish = on;
        self
    }

    /// Changes the configuration.
    pub fn config(mut self, f: impl FnOnce(&mut DropboxConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Sets the commit.
    pub fn commit(mut self, c: CommitInfo) -> Self {
        self.commit = c;
        self
    }

    /// Sets the read-ahead (default: the builder's).
    pub fn read_ahead(mut self, n: u32) -> Self {
        self.read_ahead = Some(n);
        self
    }

    /// Starts without an access token.
    pub fn no_token(mut self) -> Self {
        self.token = false;
        self
    }

    /// Builds the harness (the machine has produced no output yet).
    pub fn build(self) -> DropboxHarness {
        let b = if self.batch {
            DropboxUpload::builder_for_batch(self.size)
        } else {
            DropboxUpload::builder(self.commit, self.size)
        };
        let mut b = b
            .session_type(self.session_type)
            .chunk_size(self.chunk)
            .parallelism(self.parallelism)
            .last_chunk_in_finish(self.last_in_finish)
            .config(self.config);
        if let Some(n) = self.read_ahead {
            b = b.read_ahead(n);
        }
        if self.token {
            b = b.access_token(AccessToken::new("test-token").expect("valid token"));
        }
        let m = b.build().expect("scenario builds");
        DropboxHarness::with_machine(m, pattern(self.size))
    }
}

/// What the harness stopped at.
pub type DbxNext = Step<Completed>;

/// A Dropbox machine plus a virtual clock and its source bytes.
pub type DropboxHarness = MachineHarness<DropboxUpload>;

impl DropboxHarness {
    /// Answers 200 with JSON.
    pub fn ok(&mut self, id: RequestId, body: serde_json::Value) {
        self.respond(id, json(200, body));
    }

    /// Answers 200 `null` (append).
    pub fn ok_null(&mut self, id: RequestId) {
        self.respond(id, raw(200, Bytes::from_static(b"null")));
    }

    /// Answers a 409 route error with the given union.
    pub fn conflict(&mut self, id: RequestId, error: serde_json::Value) {
        self.respond(
            id,
            json(
                409,
                serde_json::json!({"error_summary": "x/", "error": error}),
            ),
        );
    }

    /// Answers a start with a session id.
    pub fn session(&mut self, id: RequestId, sid: &str) {
        self.ok(id, serde_json::json!({ "session_id": sid }));
    }

    /// The `FileMetadata` the server would report for the whole source.
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "name": "file.bin",
            "id": "id:FILE1",
            "rev": "0123456789abc",
            "size": self.data.len(),
            "path_lower": PATH,
            "path_display": PATH,
            "client_modified": "2023-11-14T22:13:20Z",
            "server_modified": "2023-11-14T22:13:20Z",
            "content_hash": content_hash(&self.data),
        })
    }

    /// Answers the start request; returns the next request.
    pub fn to_uploading(&mut self) -> OutgoingRequest {
        let start = self.expect_send();
        assert!(start.request().uri().path().ends_with("/start"));
        self.session(start.id(), "sid-1");
        self.expect_send()
    }

    /// The last checkpoint event seen.
    pub fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.events.iter().rev().find_map(|e| match e {
            crate::Event::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
    }

    /// True when an event matching `f` was seen.
    pub fn saw(&self, f: impl Fn(&DropboxEvent) -> bool) -> bool {
        self.events.iter().any(f)
    }
}

/// The route of a request (`start`, `append_v2`, `finish`, `get_metadata`, …).
pub fn route(req: &OutgoingRequest) -> String {
    let p = req.request().uri().path();
    p.rsplit('/').next().unwrap_or("").to_string()
}

/// The parsed `Dropbox-API-Arg` of an upload request (or the JSON body of an RPC).
pub fn arg(req: &OutgoingRequest) -> serde_json::Value {
    let text = match req.request().headers().get("dropbox-api-arg") {
        Some(v) => v.to_str().expect("ASCII arg").to_string(),
        None => String::from_utf8(req.request().body().to_vec()).expect("UTF-8 body"),
    };
    serde_json::from_str(&text).expect("arg is JSON")
}

/// The cursor offset of an append/finish (0 for start).
pub fn offset(req: &OutgoingRequest) -> u64 {
    arg(req)["cursor"]["offset"].as_u64().unwrap_or(0)
}

/// Whether the request closes the session.
pub fn closes(req: &OutgoingRequest) -> bool {
    arg(req)["close"].as_bool().unwrap_or(false)
}

/// Conveniences on requests.
pub trait OutgoingRequestExt {
    /// The `content_hash` argument, if any.
    fn hash_arg_opt(&self) -> Option<String>;
    /// The body length.
    fn body_len(&self) -> u64;
}

impl OutgoingRequestExt for OutgoingRequest {
    fn hash_arg_opt(&self) -> Option<String> {
        self.request()
            .headers()
            .get("dropbox-api-arg")
            .map(|_| arg(self))
            .and_then(|a| a["content_hash"].as_str().map(str::to_string))
    }

    fn body_len(&self) -> u64 {
        self.request().body().len() as u64
    }
}
