//! The Dropbox API v2 upload-session model (dropbox.md; every rule of §12, 1-72).
//!
//! ## Hosts and routes
//! The two Dropbox hosts are path prefixes: `/dropbox/content/2/…` is
//! `content.dropboxapi.com` (upload-style routes, argument in `Dropbox-API-Arg` or the `arg`
//! query parameter, raw body), `/dropbox/api/2/…` is `api.dropboxapi.com` (RPC routes,
//! JSON body). With [`crate::config::DropboxConfig::strict_hosts`] (the default) a route on
//! the wrong host is a 400 (rule 3).
//!
//! | Route | Host | Notes |
//! |---|---|---|
//! | `files/upload_session/start` | content | sequential or concurrent |
//! | `files/upload_session/append`, `append_v2` | content | v1 takes a bare cursor |
//! | `files/upload_session/append_batch` | content | body = concatenated entries |
//! | `files/upload_session/finish` | content | commits |
//! | `files/upload_session/start_batch` | api | |
//! | `files/upload_session/finish_batch` (v1, async job) + `finish_batch/check` | api | |
//! | `files/upload_session/finish_batch_v2` | api | synchronous |
//! | `files/get_metadata` | api | so a client can verify a commit whose answer was lost |
//!
//! ## Order of checks (one request)
//! route (404) → method (405) → host (400) → token (400/401) → injected fault
//! ([`crate::Cx::decide_fault`]) → `Content-Type` (400) → argument (400) → route checks
//! that the head allows (409: session lookup, `payload_too_large` from `Content-Length`,
//! closed, alignment, offset, `too_large`) → body → the same route checks again (two
//! requests may race between `begin` and `complete`) → `content_hash` → apply.
//!
//! ## Storage
//! A sequential session's data is never buffered: its running digests
//! ([`crate::store::FileHashState`]) are cloned into the request's sink and continued as
//! the body streams; the clone replaces the session's state only when the request is
//! accepted (so a `content_hash` mismatch or a reset stores nothing). Concurrent appends
//! are kept as refcounted pieces only until the in-order prefix reaches them, then fed
//! into the running whole-file digests: memory is bounded by the out-of-order data.
//!
//! ## Reason phrase
//! Error responses carry `hyper::ext::ReasonPhrase` = the `error_summary` as a response
//! extension (rule 24); hyper's HTTP/1 server writes it as the reason phrase.
//!
//! ## Rule 63 (overlapping batch commits)
//! The pure model handles one request at a time, so overlap exists only through the
//! streaming API: a `finish_batch_v2` / `finish_batch` holds the account's commit lock
//! from `begin` to `complete` (or `abort`/`overflow`), and a v1 job holds it until its
//! virtual deadline. A batch commit that begins while the lock is held is answered 429
//! `too_many_write_operations` (the rule 66 shape) and counted as
//! [`Violation::OverlappingBatchCommit`].
//!
//! ## Violations
//! Counted only for requests a correct client would never send given what it was told:
//! a wrong offset or `closed` right after an outcome the client could not see (5xx after
//! applying, lost response) is answered normally but not counted; a `not_found` for a
//! session whose commit answer was lost, or that just expired, is not counted the first
//! time. An expired token is counted only when reused after the client switched to a
//! fresh token. Write conflicts, `insufficient_space`, `properties_error` and `too_large`
//! depend on account state or limits the client may not know and are never counted.
//!
//! ## Not modelled
//! Team headers (`Dropbox-API-Select-User/Admin`) are ignored; `Dropbox-API-Path-Root`
//! only knows the home namespace ([`Dropbox::home_namespace_id`]); there is no
//! single-shot `files/upload`, no download and no deletion (so `update` +
//! `strict_conflict` treats any missing target as deleted).

mod args;
mod errors;
mod namespace;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header, request};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::faults::{Fault, RouteKind};
use crate::ingest::{Received, SinkSpec};
use crate::store::{FileHashState, StoredContent};
use crate::{Config, Cx, FileRecord, ServiceModel, Started, TokenStatus, Violation, wire};

use args::{
    AppendArg, AppendBatchArg, ArgError, CommitInfo, Cursor, FinishArg, SessionType, StartArg,
};
use errors::{FinishErr, LookupErr, PropErr, WriteErr};
use namespace::{FileEntry, Namespace};

/// Alignment of concurrent sessions and content-hash block size (dropbox.md §0).
const BLOCK: u64 = crate::hash::CONTENT_HASH_BLOCK as u64;

/// Content hash of an empty body.
const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    Content,
    Api,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Start,
    AppendV1,
    AppendV2,
    AppendBatch,
    Finish,
    StartBatch,
    FinishBatch,
    FinishBatchV2,
    FinishBatchCheck,
    GetMetadata,
}

impl Route {
    const ALL: [Route; 10] = [
        Route::Start,
        Route::AppendV1,
        Route::AppendV2,
        Route::AppendBatch,
        Route::Finish,
        Route::StartBatch,
        Route::FinishBatch,
        Route::FinishBatchV2,
        Route::FinishBatchCheck,
        Route::GetMetadata,
    ];

    fn name(self) -> &'static str {
        match self {
            Route::Start => "files/upload_session/start",
            Route::AppendV1 => "files/upload_session/append",
            Route::AppendV2 => "files/upload_session/append_v2",
            Route::AppendBatch => "files/upload_session/append_batch",
            Route::Finish => "files/upload_session/finish",
            Route::StartBatch => "files/upload_session/start_batch",
            Route::FinishBatch => "files/upload_session/finish_batch",
            Route::FinishBatchV2 => "files/upload_session/finish_batch_v2",
            Route::FinishBatchCheck => "files/upload_session/finish_batch/check",
            Route::GetMetadata => "files/get_metadata",
        }
    }

    fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    fn host(self) -> Host {
        match self {
            Route::Start
            | Route::AppendV1
            | Route::AppendV2
            | Route::AppendBatch
            | Route::Finish => Host::Content,
            _ => Host::Api,
        }
    }

    fn kind(self) -> RouteKind {
        match self {
            Route::Start => RouteKind::DropboxStart,
            Route::AppendV1 | Route::AppendV2 | Route::AppendBatch => RouteKind::DropboxAppend,
            Route::Finish => RouteKind::DropboxFinish,
            Route::StartBatch
            | Route::FinishBatch
            | Route::FinishBatchV2
            | Route::FinishBatchCheck => RouteKind::DropboxBatch,
            Route::GetMetadata => RouteKind::DropboxOther,
        }
    }

    /// Routes that commit files and therefore take the namespace lock.
    fn commits(self) -> bool {
        matches!(
            self,
            Route::Finish | Route::FinishBatch | Route::FinishBatchV2
        )
    }
}

/// Data of a concurrent session.
#[derive(Debug)]
struct Conc {
    /// Digests of the contiguous bytes `[0, prefix.len())`.
    prefix: FileHashState,
    /// Pieces that arrived ahead of the prefix, by offset.
    pending: BTreeMap<u64, Vec<Bytes>>,
    /// Every stored range: offset → (length, SHA-256 of its bytes).
    ranges: BTreeMap<u64, (u64, [u8; 32])>,
    /// Total size, fixed by the closing append.
    total: Option<u64>,
}

impl Conc {
    /// Rule 41: `Ok(Some(sha))` when `[offset, offset+len)` is exactly a stored range (an
    /// idempotent retry if the bytes match), `Ok(None)` when it touches nothing stored,
    /// `Err` when it overlaps a stored range otherwise (or, for a closing append, when
    /// data is stored beyond its end).
    fn overlap(&self, offset: u64, len: Option<u64>, close: bool) -> Result<Option<[u8; 32]>, ()> {
        if let Some((&s, &(l, _))) = self.ranges.range(..offset).next_back() {
            if s.saturating_add(l) > offset {
                return Err(());
            }
        }
        let mut exact = None;
        if let Some(&(l, sha)) = self.ranges.get(&offset) {
            match len {
                Some(x) if x == l => exact = Some(sha),
                Some(_) => return Err(()),
                None => return Ok(None),
            }
        }
        if let Some(len) = len {
            let end = offset.saturating_add(len);
            if exact.is_none()
                && offset < end
                && self.ranges.range(offset + 1..end).next().is_some()
            {
                return Err(());
            }
            if close && self.ranges.range(end.max(offset + 1)..).next().is_some() {
                return Err(());
            }
        }
        Ok(exact)
    }

    /// Stores a piece at `offset` and advances the in-order prefix.
    fn store(&mut self, offset: u64, len: u64, sha: [u8; 32], parts: Vec<Bytes>) {
        self.ranges.insert(offset, (len, sha));
        if len == 0 {
            return;
        }
        if offset == self.prefix.len() {
            for p in &parts {
                self.prefix.update(p);
            }
        } else {
            self.pending.insert(offset, parts);
        }
        while let Some(parts) = self.pending.remove(&self.prefix.len()) {
            for p in &parts {
                self.prefix.update(p);
            }
        }
    }

    fn pending_bytes(&self) -> u64 {
        self.pending
            .values()
            .flat_map(|v| v.iter())
            .map(|b| b.len() as u64)
            .sum()
    }
}

#[derive(Debug)]
enum Data {
    Seq(FileHashState),
    Conc(Conc),
}

#[derive(Debug)]
struct Session {
    created: SystemTime,
    closed: bool,
    /// The client could not see the outcome of the last request that changed this
    /// session (5xx after applying, lost response): its next offset or `closed` error is
    /// excused.
    unsure: bool,
    data: Data,
}

/// A consumed or expired session.
#[derive(Debug, Clone, Copy)]
struct Gone {
    /// The client was told (or could see) that the session is gone.
    client_knows: bool,
}

/// A v1 `finish_batch` job.
#[derive(Debug)]
struct Job {
    id: String,
    deadline: SystemTime,
    entries: Vec<FinishArg>,
    results: Option<Vec<Value>>,
    contention: bool,
    ambiguous: bool,
}

/// Public view of a live session (for tests and inspection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// True for a concurrent session.
    pub concurrent: bool,
    /// Bytes held: sequential = total appended; concurrent = the contiguous prefix.
    pub held: u64,
    /// Closed flag.
    pub closed: bool,
    /// Concurrent only: pieces kept in memory because they arrived ahead of the prefix.
    pub pending_pieces: usize,
    /// Concurrent only: bytes of those pieces.
    pub pending_bytes: u64,
    /// Concurrent only: total size fixed by the closing append.
    pub total: Option<u64>,
}

/// The Dropbox service model.
pub struct Dropbox {
    keep_bytes: bool,
    digests: crate::config::DigestConfig,
    sessions: HashMap<String, Session>,
    gone: HashMap<String, Gone>,
    ns: Namespace,
    jobs: Vec<Job>,
    next_session: u64,
    next_job: u64,
    next_ticket: u64,
    /// Ticket id of the batch commit holding the namespace lock (rule 63).
    commit_lock: Option<u64>,
    /// Tokens (by SHA-256) reported expired → whether a newer token was used since.
    expired_told: HashMap<[u8; 32], bool>,
    dots: u64,
    last_now: SystemTime,
    next_sweep: SystemTime,
}

impl std::fmt::Debug for Dropbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dropbox")
            .field("sessions", &self.sessions.len())
            .field("files", &self.ns.records().len())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Op {
    Start(StartArg),
    Append(AppendArg),
    AppendBatch(AppendBatchArg),
    Finish(FinishArg),
    Rpc,
}

/// Continuation of a Dropbox request whose body is being read.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    route: Route,
    declared: Option<u64>,
    op: Op,
}

type Resp = Response<Bytes>;

fn ambiguous(f: &Option<Fault>) -> bool {
    matches!(f, Some(Fault::ErrorAfter { .. } | Fault::LostResponse))
}

fn token_hash(t: &str) -> [u8; 32] {
    Sha256::digest(t.as_bytes()).into()
}

fn valid_token_chars(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=:".contains(&b))
}

/// Query parameters this model reads.
#[derive(Default)]
struct Query {
    arg: Vec<String>,
    authorization: Vec<String>,
}

fn query(head: &request::Parts) -> Query {
    let mut q = Query::default();
    if let Some(s) = head.uri.query() {
        for (k, v) in form_urlencoded::parse(s.as_bytes()) {
            match k.as_ref() {
                "arg" => q.arg.push(v.into_owned()),
                "authorization" => q.authorization.push(v.into_owned()),
                _ => {}
            }
        }
    }
    q
}

/// Splits a collected body's pieces into consecutive slices of the given lengths
/// (refcounted, no copy).
fn split_parts(parts: &[Bytes], lens: &[u64]) -> Vec<Vec<Bytes>> {
    let mut out = Vec::with_capacity(lens.len());
    let mut it = parts.iter().cloned();
    let mut cur: Option<Bytes> = None;
    for &want in lens {
        let mut need = want;
        let mut piece = Vec::new();
        while need > 0 {
            let b = match cur.take() {
                Some(b) => b,
                None => match it.next() {
                    Some(b) => b,
                    None => break,
                },
            };
            if (b.len() as u64) <= need {
                need -= b.len() as u64;
                if !b.is_empty() {
                    piece.push(b);
                }
            } else {
                let n = need as usize;
                piece.push(b.slice(..n));
                cur = Some(b.slice(n..));
                need = 0;
            }
        }
        out.push(piece);
    }
    out
}

fn sha_of(parts: &[Bytes]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl Dropbox {
    /// Creates an empty model.
    pub fn new(config: &Config) -> Self {
        Self {
            keep_bytes: config.keep_bytes,
            digests: config.digests.clone(),
            sessions: HashMap::new(),
            gone: HashMap::new(),
            ns: Namespace::default(),
            jobs: Vec::new(),
            next_session: 0,
            next_job: 0,
            next_ticket: 0,
            commit_lock: None,
            expired_told: HashMap::new(),
            dots: 0,
            last_now: std::time::UNIX_EPOCH,
            next_sweep: std::time::UNIX_EPOCH,
        }
    }

    // ---- public helpers --------------------------------------------------------------

    /// Stores a file at `path` (overwriting a file there), as if uploaded earlier.
    /// Returns `None` when the path is malformed or blocked by a folder / file ancestor.
    pub fn seed_file(&mut self, path: &str, bytes: &[u8]) -> Option<FileRecord> {
        let content = StoredContent::of(bytes, self.keep_bytes);
        let now = wire::rfc3339_seconds(self.last_now);
        let e = self.ns.seed_file(path, content, &now).ok()?;
        Some(FileRecord {
            service: crate::Service::Dropbox,
            drive: "home".to_string(),
            path: e.display,
            id: e.id,
            rev: e.rev,
            content: e.content,
        })
    }

    /// Creates a folder (and its ancestors). Returns false when the path is malformed or
    /// blocked by a file.
    pub fn seed_folder(&mut self, path: &str) -> bool {
        self.ns.seed_folder(path).is_ok()
    }

    /// Registers a property template id (`ptid:…`) with its field names, so that
    /// `commit.property_groups` naming it are accepted (rule 58).
    pub fn add_property_template(&mut self, template_id: &str, fields: &[&str]) {
        self.ns.add_template(template_id, fields);
    }

    /// The id of the account's home namespace (usable as `ns:<id>/path`).
    pub fn home_namespace_id(&self) -> &'static str {
        namespace::HOME_NS
    }

    /// Bytes used by stored files (what [`crate::config::DropboxConfig::quota`] limits).
    pub fn used_bytes(&self) -> u64 {
        self.ns.used()
    }

    /// A live session, by id.
    pub fn session_info(&self, session_id: &str) -> Option<SessionInfo> {
        let s = self.sessions.get(session_id)?;
        Some(match &s.data {
            Data::Seq(st) => SessionInfo {
                concurrent: false,
                held: st.len(),
                closed: s.closed,
                pending_pieces: 0,
                pending_bytes: 0,
                total: None,
            },
            Data::Conc(c) => SessionInfo {
                concurrent: true,
                held: c.prefix.len(),
                closed: s.closed,
                pending_pieces: c.pending.len(),
                pending_bytes: c.pending_bytes(),
                total: c.total,
            },
        })
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    // ---- plumbing --------------------------------------------------------------------

    fn dots(&mut self) -> u64 {
        self.dots = self.dots.wrapping_add(1);
        self.dots
    }

    fn conflict(&mut self, error: Value) -> Resp {
        let d = self.dots();
        errors::conflict(error, d)
    }

    fn new_session_id(&mut self) -> String {
        self.next_session += 1;
        let h = hex::encode(Sha256::digest(
            format!("dropbox-session-{}", self.next_session).as_bytes(),
        ));
        format!(
            "pid_upload_session:{}{:06x}",
            h.get(..26).unwrap_or(""),
            self.next_session
        )
    }

    fn new_file_state(&self) -> FileHashState {
        FileHashState::new(&self.digests, self.keep_bytes)
    }

    fn create_session(&mut self, now: SystemTime, ty: SessionType) -> String {
        let id = self.new_session_id();
        let data = match ty {
            SessionType::Sequential => Data::Seq(self.new_file_state()),
            SessionType::Concurrent => Data::Conc(Conc {
                prefix: self.new_file_state(),
                pending: BTreeMap::new(),
                ranges: BTreeMap::new(),
                total: None,
            }),
        };
        self.sessions.insert(
            id.clone(),
            Session {
                created: now,
                closed: false,
                unsure: false,
                data,
            },
        );
        id
    }

    /// Looks up a live session, expiring it first when it is past its lifetime (rule 31).
    /// A miss is counted as [`Violation::SessionReused`] unless the client could not know.
    fn live(&mut self, cx: &mut Cx<'_>, id: &str) -> Option<&mut Session> {
        let lifetime = cx.config.dropbox.session_lifetime;
        let expired = self.sessions.get(id).is_some_and(|s| {
            cx.now
                .duration_since(s.created)
                .map(|d| d > lifetime)
                .unwrap_or(false)
        });
        if expired {
            self.sessions.remove(id);
            self.gone.insert(
                id.to_string(),
                Gone {
                    client_knows: false,
                },
            );
        }
        if !self.sessions.contains_key(id) {
            match self.gone.get_mut(id) {
                Some(g) => {
                    if g.client_knows {
                        cx.violation(Violation::SessionReused);
                    }
                    // The client learns the session is gone only when this `not_found`
                    // actually reaches it: not when, while completing, the answer is lost
                    // or replaced by a 5xx (an answer given from the head is delivered).
                    let hidden = cx.completing
                        && matches!(
                            cx.fault,
                            Some(Fault::LostResponse | Fault::ErrorAfter { .. })
                        );
                    g.client_knows = !hidden;
                }
                None => cx.violation(Violation::SessionReused),
            }
            return None;
        }
        self.sessions.get_mut(id)
    }

    /// Completes v1 jobs whose deadline passed (rule 64), and (at most once a virtual
    /// minute) drops the data of expired sessions so that abandoned sessions do not hold
    /// memory (their ids stay known, for rule 31).
    fn run_due_jobs(&mut self, cx: &mut Cx<'_>) {
        self.last_now = cx.now;
        if cx.now >= self.next_sweep {
            self.next_sweep = cx
                .now
                .checked_add(std::time::Duration::from_secs(60))
                .unwrap_or(cx.now);
            let lifetime = cx.config.dropbox.session_lifetime;
            let now = cx.now;
            let expired: Vec<String> = self
                .sessions
                .iter()
                .filter(|(_, s)| {
                    now.duration_since(s.created)
                        .map(|d| d > lifetime)
                        .unwrap_or(false)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.sessions.remove(&id);
                self.gone.insert(
                    id,
                    Gone {
                        client_knows: false,
                    },
                );
            }
        }
        while let Some(i) = self
            .jobs
            .iter()
            .position(|j| j.results.is_none() && j.deadline <= cx.now)
        {
            let entries = std::mem::take(&mut self.jobs[i].entries);
            let contention = self.jobs[i].contention;
            let amb = self.jobs[i].ambiguous;
            let results = self.finish_entries(cx, &entries, contention, amb);
            self.jobs[i].results = Some(results);
        }
    }

    /// Rule 63: `Some(excused)` when a batch commit holds the namespace lock; excused
    /// when the only holder is a v1 job whose launch answer the client never saw (its
    /// retry of the launch is what a correct client does).
    fn commit_busy(&self, now: SystemTime) -> Option<bool> {
        if self.commit_lock.is_some() {
            return Some(false);
        }
        let mut running = self
            .jobs
            .iter()
            .filter(|j| j.results.is_none() && j.deadline > now)
            .peekable();
        running.peek()?;
        Some(running.all(|j| j.ambiguous))
    }

    fn release(&mut self, t: &Ticket) {
        if self.commit_lock == Some(t.id) {
            self.commit_lock = None;
        }
    }

    // ---- head checks -----------------------------------------------------------------

    /// Rules 4-6: the bearer token. Returns the token on success.
    #[allow(clippy::result_large_err)] // the error is the response, built once
    fn authorize(
        &mut self,
        cx: &mut Cx<'_>,
        route: Route,
        head: &request::Parts,
        q: &Query,
    ) -> Result<String, Resp> {
        let malformed = || {
            wire::text(
                StatusCode::BAD_REQUEST,
                "The given OAuth 2 access token is malformed.",
            )
        };
        let token = if head.headers.contains_key(header::AUTHORIZATION) {
            match wire::bearer(&head.headers) {
                Ok(Some(t)) => t.to_string(),
                _ => {
                    cx.violation(Violation::BadAuthorization);
                    return Err(malformed());
                }
            }
        } else {
            match q.authorization.as_slice() {
                [] => {
                    cx.violation(Violation::MissingAuthorization);
                    return Err(errors::bad_request(
                        route.name(),
                        "Must provide HTTP header \"Authorization\" or URL parameter \"authorization\".",
                    ));
                }
                [one] => match one.strip_prefix("Bearer ") {
                    Some(t) if valid_token_chars(t) => t.to_string(),
                    _ => {
                        cx.violation(Violation::BadAuthorization);
                        return Err(malformed());
                    }
                },
                _ => {
                    cx.violation(Violation::BadAuthorization);
                    return Err(malformed());
                }
            }
        };
        match cx.tokens.check(&token) {
            TokenStatus::Valid => {
                for refreshed in self.expired_told.values_mut() {
                    *refreshed = true;
                }
                Ok(token)
            }
            TokenStatus::Expired => {
                let h = token_hash(&token);
                if self.expired_told.get(&h).copied().unwrap_or(false) {
                    cx.violation(Violation::ExpiredTokenReused);
                }
                self.expired_told.entry(h).or_insert(false);
                let d = self.dots();
                Err(errors::auth_error("expired_access_token", d * 4))
            }
            TokenStatus::Unknown => {
                cx.violation(Violation::BadAuthorization);
                let d = self.dots();
                Err(errors::auth_error("invalid_access_token", d))
            }
        }
    }

    /// Rules 66-69, 72: faults decided at the head that answer at once.
    fn fault_at_begin(&mut self, cx: &mut Cx<'_>, route: Route, token: &str) -> Option<Resp> {
        match cx.decide_fault(route.kind())? {
            Fault::Throttle {
                retry_after,
                plain_text,
            } => Some(errors::rate_limited(retry_after, plain_text)),
            Fault::LockContention { retry_after } if route.commits() => {
                Some(errors::lock_contention(retry_after))
            }
            Fault::WriteContention if route == Route::Finish => {
                Some(self.conflict(FinishErr::TooManyWriteOperations.value()))
            }
            Fault::Unavailable { retry_after } => Some(errors::server_error(503, retry_after)),
            Fault::ErrorBefore { status } => Some(errors::server_error(status, None)),
            Fault::ExpireToken => {
                cx.tokens.expire_all(token);
                self.expired_told.insert(token_hash(token), false);
                let d = self.dots();
                Some(errors::auth_error("expired_access_token", d * 4))
            }
            _ => None,
        }
    }

    /// Rules 7, 8.
    fn check_content_type(cx: &mut Cx<'_>, route: Route, headers: &HeaderMap) -> Option<Resp> {
        let allowed: &[&str] = match route.host() {
            Host::Content => &[
                "application/octet-stream",
                "text/plain; charset=dropbox-cors-hack",
            ],
            Host::Api => &[
                "application/json",
                "application/json; charset=utf-8",
                "text/plain; charset=dropbox-cors-hack",
            ],
        };
        let mut all = headers.get_all(header::CONTENT_TYPE).iter();
        let shown = match (all.next(), all.next()) {
            (Some(v), None) => match v.to_str() {
                Ok(s) if allowed.contains(&s) => return None,
                Ok("") => "Missing or empty HTTP \"Content-Type\" header".to_string(),
                Ok(s) => format!("\"{}\"", s.chars().take(200).collect::<String>()),
                Err(_) => "(not visible ASCII)".to_string(),
            },
            (None, _) => "Missing or empty HTTP \"Content-Type\" header".to_string(),
            (Some(_), Some(_)) => "(given more than once)".to_string(),
        };
        cx.violation(Violation::BadContentType);
        let expecting = allowed
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Some(errors::bad_request(
            route.name(),
            &format!("Bad HTTP \"Content-Type\" header: {shown}.  Expecting one of {expecting}."),
        ))
    }

    /// `Dropbox-API-Path-Root` (dropbox.md §1.2): `home`, or `root` / `namespace_id` naming
    /// the home namespace, are accepted; another namespace is 422 `no_permission`; a
    /// value that is not a `PathRoot` is 400.
    fn check_path_root(cx: &mut Cx<'_>, route: Route, headers: &HeaderMap) -> Option<Resp> {
        let h = headers.get("dropbox-api-path-root")?;
        let v = args::decode_header_json(h.as_bytes(), false).ok();
        let ns = v.as_ref().and_then(|v| {
            let tag = v.get(".tag")?.as_str()?;
            match tag {
                "home" if v.as_object()?.len() == 1 => Some(None),
                "root" | "namespace_id" if v.as_object()?.len() == 2 => {
                    Some(Some(v.get(tag)?.as_str()?.to_string()))
                }
                _ => None,
            }
        });
        match ns {
            None => {
                cx.violation(Violation::MalformedArgument);
                Some(errors::bad_request(
                    route.name(),
                    "Invalid value for HTTP header \"Dropbox-API-Path-Root\": could not decode input as JSON",
                ))
            }
            Some(None) => None,
            Some(Some(ns)) if ns == namespace::HOME_NS => None,
            Some(Some(_)) => Some(errors::json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                errors::void("no_permission"),
                2,
            )),
        }
    }

    /// Rules 9-16: the upload route argument, from the header or the `arg` parameter.
    #[allow(clippy::result_large_err)] // the error is the response, built once
    fn upload_arg(
        cx: &mut Cx<'_>,
        route: Route,
        headers: &HeaderMap,
        q: &Query,
    ) -> Result<(Value, &'static str), Resp> {
        let hdrs: Vec<_> = headers.get_all("dropbox-api-arg").iter().collect();
        let bad = |cx: &mut Cx<'_>, msg: &str| {
            cx.violation(Violation::MissingArgument);
            errors::bad_request(route.name(), msg)
        };
        let cap = cx.config.max_json_body;
        if hdrs.iter().any(|h| h.len() > cap) || q.arg.iter().any(|a| a.len() > cap) {
            cx.violation(Violation::MalformedArgument);
            return Err(errors::bad_request(
                route.name(),
                "HTTP header \"Dropbox-API-Arg\" / URL parameter \"arg\": too large",
            ));
        }
        match (hdrs.as_slice(), q.arg.as_slice()) {
            ([], []) => Err(bad(
                cx,
                "Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter \"arg\".",
            )),
            ([h], []) => {
                const WHERE: &str = "HTTP header \"Dropbox-API-Arg\"";
                match args::decode_header_json(h.as_bytes(), cx.config.dropbox.accept_raw_utf8_arg)
                {
                    Ok(v) => Ok((v, WHERE)),
                    Err(e) => {
                        cx.violation(e.violation);
                        Err(errors::bad_request(
                            route.name(),
                            &format!("{WHERE}: {}", e.msg),
                        ))
                    }
                }
            }
            ([], [a]) => {
                const WHERE: &str = "URL parameter \"arg\"";
                match args::decode_json(a.as_bytes()) {
                    Ok(v) => Ok((v, WHERE)),
                    Err(e) => {
                        cx.violation(e.violation);
                        Err(errors::bad_request(
                            route.name(),
                            &format!("{WHERE}: {}", e.msg),
                        ))
                    }
                }
            }
            ([_, _, ..], _) | (_, [_, _, ..]) => Err(bad(
                cx,
                "HTTP header \"Dropbox-API-Arg\" / URL parameter \"arg\" given more than once.",
            )),
            (_, _) => Err(bad(
                cx,
                "Can't provide both HTTP header \"Dropbox-API-Arg\" and URL parameter \"arg\".",
            )),
        }
    }

    fn arg_error(cx: &mut Cx<'_>, route: Route, place: &str, e: ArgError) -> Resp {
        cx.violation(e.violation);
        errors::bad_request(route.name(), &format!("{place}: {}", e.msg))
    }

    // ---- session checks --------------------------------------------------------------

    /// Append checks in rule 32 order (not_found → payload_too_large → closed → alignment
    /// → incorrect_offset → too_large), with `len` when known. Returns the session type and,
    /// for a concurrent exact-range retry, the stored range's SHA-256.
    fn append_check(
        &mut self,
        cx: &mut Cx<'_>,
        cursor: &Cursor,
        close: bool,
        len: Option<u64>,
        body_limit: Option<u64>,
    ) -> Result<(SessionType, Option<[u8; 32]>), LookupErr> {
        let max_file = cx.config.dropbox.max_file_size;
        let Some(s) = self.live(cx, &cursor.session_id) else {
            return Err(LookupErr::NotFound);
        };
        if let (Some(l), Some(limit)) = (len, body_limit) {
            if l > limit {
                cx.violation(Violation::OversizeBody);
                return Err(LookupErr::PayloadTooLarge);
            }
        }
        if s.closed {
            if !s.unsure {
                cx.violation(Violation::AppendAfterClose);
            }
            s.unsure = false;
            return Err(LookupErr::Closed);
        }
        let offset = cursor.offset;
        match &s.data {
            Data::Seq(st) => {
                let held = st.len();
                if offset != held {
                    if !s.unsure {
                        cx.violation(Violation::WrongOffset);
                    }
                    s.unsure = false;
                    return Err(LookupErr::IncorrectOffset(held));
                }
                if len.is_some_and(|l| held.saturating_add(l) > max_file) {
                    return Err(LookupErr::TooLarge);
                }
                Ok((SessionType::Sequential, None))
            }
            Data::Conc(c) => {
                if offset % BLOCK != 0 {
                    cx.violation(Violation::ConcurrentMisaligned);
                    return Err(LookupErr::ConcurrentInvalidOffset);
                }
                if let Some(l) = len {
                    if !close && (l == 0 || l % BLOCK != 0) {
                        cx.violation(Violation::ConcurrentMisaligned);
                        return Err(LookupErr::ConcurrentInvalidDataSize);
                    }
                }
                let exact = match c.overlap(offset, len, close) {
                    Ok(e) => e,
                    Err(()) => {
                        cx.violation(Violation::ConcurrentOverlapMismatch);
                        return Err(LookupErr::ConcurrentInvalidOffset);
                    }
                };
                if len.is_some_and(|l| offset.saturating_add(l) > max_file) {
                    return Err(LookupErr::TooLarge);
                }
                Ok((SessionType::Concurrent, exact))
            }
        }
    }

    /// Applies an accepted append (rules 36-37, 40-42). `seq` is the session's state
    /// continued with the body (sequential); `parts`/`sha` the body (concurrent).
    #[allow(clippy::too_many_arguments)]
    fn apply_append(
        &mut self,
        cx: &mut Cx<'_>,
        cursor: &Cursor,
        close: bool,
        len: u64,
        exact: Option<[u8; 32]>,
        seq: Option<FileHashState>,
        parts: Vec<Bytes>,
        sha: Option<[u8; 32]>,
    ) -> Result<(), LookupErr> {
        let amb = ambiguous(&cx.fault);
        let Some(s) = self.sessions.get_mut(&cursor.session_id) else {
            return Err(LookupErr::NotFound);
        };
        match &mut s.data {
            Data::Seq(st) => {
                let next = match seq {
                    Some(n) => n,
                    None => {
                        let mut n = st.clone();
                        for p in &parts {
                            n.update(p);
                        }
                        n
                    }
                };
                *st = next;
            }
            Data::Conc(c) => {
                let sha = sha.unwrap_or_else(|| sha_of(&parts));
                match exact {
                    Some(old) if old == sha => {} // idempotent retry (rule 41)
                    Some(_) => {
                        cx.violation(Violation::ConcurrentOverlapMismatch);
                        return Err(LookupErr::ConcurrentInvalidOffset);
                    }
                    None => c.store(cursor.offset, len, sha, parts),
                }
                if close {
                    c.total = Some(cursor.offset.saturating_add(len));
                }
            }
        }
        if close {
            s.closed = true;
        }
        s.unsure = amb;
        Ok(())
    }

    /// Finish checks (rules 31, 43-48, 62). `in_batch`: a batch entry (no body; the
    /// session must be closed).
    fn finish_check(
        &mut self,
        cx: &mut Cx<'_>,
        cursor: &Cursor,
        len: Option<u64>,
        body_limit: Option<u64>,
        in_batch: bool,
    ) -> Result<(), FinishErr> {
        let max_file = cx.config.dropbox.max_file_size;
        let Some(s) = self.live(cx, &cursor.session_id) else {
            return Err(FinishErr::Lookup(LookupErr::NotFound));
        };
        if let (Some(l), Some(limit)) = (len, body_limit) {
            if l > limit {
                cx.violation(Violation::OversizeBody);
                return Err(FinishErr::Lookup(LookupErr::PayloadTooLarge));
            }
        }
        let offset = cursor.offset;
        let body = len.unwrap_or(0);
        match &s.data {
            Data::Seq(st) => {
                let held = st.len();
                if in_batch && !s.closed {
                    cx.violation(Violation::BatchSessionNotClosed);
                    return Err(FinishErr::Lookup(LookupErr::NotClosed));
                }
                if s.closed && body > 0 {
                    if !s.unsure {
                        cx.violation(Violation::AppendAfterClose);
                    }
                    s.unsure = false;
                    return Err(FinishErr::Lookup(LookupErr::Closed));
                }
                if offset != held {
                    if !s.unsure {
                        cx.violation(Violation::WrongOffset);
                    }
                    s.unsure = false;
                    return Err(FinishErr::Lookup(LookupErr::IncorrectOffset(held)));
                }
                if held.saturating_add(body) > max_file {
                    return Err(FinishErr::Lookup(LookupErr::TooLarge));
                }
            }
            Data::Conc(c) => {
                if body > 0 {
                    cx.violation(Violation::ConcurrentFinishMisuse);
                    return Err(FinishErr::ConcurrentDataNotAllowed);
                }
                if !s.closed {
                    if in_batch {
                        cx.violation(Violation::BatchSessionNotClosed);
                        return Err(FinishErr::Lookup(LookupErr::NotClosed));
                    }
                    cx.violation(Violation::ConcurrentFinishMisuse);
                    return Err(FinishErr::ConcurrentNotClosed);
                }
                let total = c.total.unwrap_or_else(|| c.prefix.len());
                if offset != total {
                    if !s.unsure {
                        cx.violation(Violation::WrongOffset);
                    }
                    s.unsure = false;
                    return Err(FinishErr::Lookup(LookupErr::IncorrectOffset(total)));
                }
                if c.prefix.len() != total {
                    cx.violation(Violation::ConcurrentFinishMisuse);
                    return Err(FinishErr::ConcurrentMissingData);
                }
            }
        }
        Ok(())
    }

    /// Commits a checked session (rules 49-58). `seq` = the sequential state including the
    /// finish body. On a WriteError the body stays appended and the session stays usable.
    fn commit_session(
        &mut self,
        cx: &mut Cx<'_>,
        session_id: &str,
        commit: &CommitInfo,
        seq: Option<FileHashState>,
        amb: bool,
    ) -> Result<(FileEntry, Option<PropErr>), FinishErr> {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return Err(FinishErr::Lookup(LookupErr::NotFound));
        };
        let state = match (&s.data, seq) {
            (Data::Seq(_), Some(n)) => n,
            (Data::Seq(st), None) => st.clone(),
            (Data::Conc(c), _) => c.prefix.clone(),
        };
        let now = wire::rfc3339_seconds(cx.now);
        let content = state.clone().finish();
        match self
            .ns
            .commit(commit, content, &now, cx.config.dropbox.quota)
        {
            Err(w) => {
                if let Data::Seq(st) = &mut s.data {
                    *st = state;
                }
                s.unsure = amb;
                if w == WriteErr::MalformedPath {
                    cx.violation(Violation::BadCommitInfo);
                }
                Err(FinishErr::Path(w))
            }
            Ok(c) => {
                self.sessions.remove(session_id);
                self.gone
                    .insert(session_id.to_string(), Gone { client_knows: !amb });
                let perr = commit
                    .property_groups
                    .as_deref()
                    .and_then(|g| self.ns.check_properties(g));
                Ok((c.entry, perr))
            }
        }
    }

    /// Runs the entries of a batch commit in order (rules 61, 62, 68).
    fn finish_entries(
        &mut self,
        cx: &mut Cx<'_>,
        entries: &[FinishArg],
        contention: bool,
        amb: bool,
    ) -> Vec<Value> {
        // Rule 68 per entry: a non-empty, seeded subset fails with
        // too_many_write_operations and is left untouched.
        let mut busy = vec![false; entries.len()];
        if contention && !entries.is_empty() {
            let first = cx.faults.below(entries.len() as u64) as usize;
            for (i, b) in busy.iter_mut().enumerate() {
                *b = i == first || cx.faults.below(2) == 1;
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for (e, busy) in entries.iter().zip(busy) {
            let r = if busy {
                Err(FinishErr::TooManyWriteOperations)
            } else {
                self.finish_entry(cx, e, amb)
            };
            out.push(match r {
                Ok(entry) => errors::tagged("success", entry.metadata_fields()),
                Err(err) => errors::nested("failure", err.value()),
            });
        }
        out
    }

    fn finish_entry(
        &mut self,
        cx: &mut Cx<'_>,
        e: &FinishArg,
        amb: bool,
    ) -> Result<FileEntry, FinishErr> {
        self.finish_check(cx, &e.cursor, Some(0), None, true)?;
        if let Some(h) = &e.content_hash {
            if h != EMPTY_HASH {
                cx.violation(Violation::ContentHashMismatch);
                return Err(FinishErr::ContentHashMismatch);
            }
        }
        match self.commit_session(cx, &e.cursor.session_id, &e.commit, None, amb)? {
            (entry, None) => Ok(entry),
            (_, Some(p)) => Err(FinishErr::Properties(p)),
        }
    }

    // ---- begin per route ---------------------------------------------------------------

    fn payload_413(cx: &mut Cx<'_>, declared: Option<u64>) -> Option<Resp> {
        let limit = cx.config.dropbox.http_413_above?;
        if declared.is_some_and(|d| d > limit) {
            cx.violation(Violation::OversizeBody);
            return Some(wire::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
            ));
        }
        None
    }

    fn begin_upload(
        &mut self,
        cx: &mut Cx<'_>,
        route: Route,
        tid: u64,
        declared: Option<u64>,
        arg: Value,
        place: &str,
    ) -> Started<Ticket> {
        let max_body = cx.config.dropbox.max_body;
        let respond = Started::Respond;
        let ticket = |op| Ticket {
            id: tid,
            route,
            declared,
            op,
        };
        match route {
            Route::Start => {
                let a = match args::start_arg(&arg) {
                    Ok(a) => a,
                    Err(e) => return respond(Self::arg_error(cx, route, place, e)),
                };
                if declared.is_some_and(|d| d > max_body) {
                    cx.violation(Violation::OversizeBody);
                    return respond(self.conflict(errors::void("payload_too_large")));
                }
                if a.session_type == SessionType::Concurrent {
                    if declared.is_some_and(|d| d > 0) {
                        cx.violation(Violation::ConcurrentStartMisuse);
                        return respond(
                            self.conflict(errors::void("concurrent_session_data_not_allowed")),
                        );
                    }
                    if a.close {
                        cx.violation(Violation::ConcurrentStartMisuse);
                        return respond(
                            self.conflict(errors::void("concurrent_session_close_not_allowed")),
                        );
                    }
                }
                let sink = SinkSpec {
                    file: (a.session_type == SessionType::Sequential)
                        .then(|| self.new_file_state()),
                    body_content_hash: a.content_hash.is_some(),
                    max_len: max_body,
                    ..SinkSpec::default()
                };
                Started::Read {
                    ticket: ticket(Op::Start(a)),
                    sink,
                }
            }
            Route::AppendV1 | Route::AppendV2 => {
                let parsed = if route == Route::AppendV1 {
                    args::append_v1_arg(&arg)
                } else {
                    args::append_v2_arg(&arg)
                };
                let a = match parsed {
                    Ok(a) => a,
                    Err(e) => return respond(Self::arg_error(cx, route, place, e)),
                };
                let ty = match self.append_check(cx, &a.cursor, a.close, declared, Some(max_body)) {
                    Ok((ty, _)) => ty,
                    Err(e) => return respond(self.conflict(e.value())),
                };
                let seq_state = match self.sessions.get(&a.cursor.session_id).map(|s| &s.data) {
                    Some(Data::Seq(st)) => Some(st.clone()),
                    _ => None,
                };
                let sink = SinkSpec {
                    file: seq_state,
                    body_content_hash: a.content_hash.is_some(),
                    body_sha256: ty == SessionType::Concurrent,
                    keep_parts: ty == SessionType::Concurrent,
                    max_len: max_body,
                    ..SinkSpec::default()
                };
                Started::Read {
                    ticket: ticket(Op::Append(a)),
                    sink,
                }
            }
            Route::AppendBatch => {
                let a = match args::append_batch_arg(&arg) {
                    Ok(a) => a,
                    Err(e) => return respond(Self::arg_error(cx, route, place, e)),
                };
                if declared.is_some_and(|d| d > max_body) {
                    cx.violation(Violation::OversizeBody);
                    return respond(self.conflict(errors::void("payload_too_large")));
                }
                let sum = a
                    .entries
                    .iter()
                    .fold(0u64, |s, e| s.saturating_add(e.length));
                if declared.is_some_and(|d| d != sum) {
                    cx.violation(Violation::BadBatch);
                    return respond(self.conflict(errors::void("length_mismatch")));
                }
                let sink = SinkSpec {
                    body_content_hash: a.content_hash.is_some(),
                    keep_parts: true,
                    max_len: max_body,
                    ..SinkSpec::default()
                };
                Started::Read {
                    ticket: ticket(Op::AppendBatch(a)),
                    sink,
                }
            }
            Route::Finish => {
                let a = match args::finish_arg(&arg) {
                    Ok(a) => a,
                    Err(e) => return respond(Self::arg_error(cx, route, place, e)),
                };
                if let Err(e) = self.finish_check(cx, &a.cursor, declared, Some(max_body), false) {
                    return respond(self.conflict(e.value()));
                }
                let seq_state = match self.sessions.get(&a.cursor.session_id).map(|s| &s.data) {
                    Some(Data::Seq(st)) => Some(st.clone()),
                    _ => None,
                };
                let sink = SinkSpec {
                    file: seq_state,
                    body_content_hash: a.content_hash.is_some(),
                    max_len: max_body,
                    ..SinkSpec::default()
                };
                Started::Read {
                    ticket: ticket(Op::Finish(a)),
                    sink,
                }
            }
            _ => respond(wire::text(StatusCode::NOT_FOUND, "Unknown endpoint")),
        }
    }

    // ---- complete per route ------------------------------------------------------------

    fn hash_ok(cx: &mut Cx<'_>, want: &Option<String>, got: &Option<String>) -> bool {
        match want {
            None => true,
            Some(w) => {
                if got.as_deref() == Some(w.as_str()) {
                    true
                } else {
                    cx.violation(Violation::ContentHashMismatch);
                    false
                }
            }
        }
    }

    fn complete_start(&mut self, cx: &mut Cx<'_>, a: StartArg, body: Received) -> Resp {
        if a.session_type == SessionType::Concurrent && body.len > 0 {
            cx.violation(Violation::ConcurrentStartMisuse);
            return self.conflict(errors::void("concurrent_session_data_not_allowed"));
        }
        if !Self::hash_ok(cx, &a.content_hash, &body.body_content_hash) {
            return self.conflict(errors::void("content_hash_mismatch"));
        }
        let id = self.create_session(cx.now, a.session_type);
        if let Some(s) = self.sessions.get_mut(&id) {
            if let (Data::Seq(st), Some(f)) = (&mut s.data, body.file) {
                *st = f;
            }
            s.closed = a.close;
            s.unsure = ambiguous(&cx.fault);
        }
        let mut m = serde_json::Map::new();
        m.insert("session_id".to_string(), Value::String(id));
        errors::ok(&Value::Object(m))
    }

    fn complete_append(&mut self, cx: &mut Cx<'_>, a: AppendArg, body: Received) -> Resp {
        let max_body = cx.config.dropbox.max_body;
        let exact = match self.append_check(cx, &a.cursor, a.close, Some(body.len), Some(max_body))
        {
            Ok((_, exact)) => exact,
            Err(e) => return self.conflict(e.value()),
        };
        if !Self::hash_ok(cx, &a.content_hash, &body.body_content_hash) {
            return self.conflict(errors::void("content_hash_mismatch"));
        }
        match self.apply_append(
            cx,
            &a.cursor,
            a.close,
            body.len,
            exact,
            body.file,
            body.parts,
            body.body_sha256,
        ) {
            Ok(()) => errors::ok_void(),
            Err(e) => self.conflict(e.value()),
        }
    }

    fn complete_append_batch(
        &mut self,
        cx: &mut Cx<'_>,
        a: AppendBatchArg,
        body: Received,
    ) -> Resp {
        let lens: Vec<u64> = a.entries.iter().map(|e| e.length).collect();
        let sum = lens.iter().fold(0u64, |s, l| s.saturating_add(*l));
        if sum != body.len {
            cx.violation(Violation::BadBatch);
            return self.conflict(errors::void("length_mismatch"));
        }
        if !Self::hash_ok(cx, &a.content_hash, &body.body_content_hash) {
            return self.conflict(errors::void("content_hash_mismatch"));
        }
        let pieces = split_parts(&body.parts, &lens);
        let mut results = Vec::with_capacity(a.entries.len());
        for (e, parts) in a.entries.iter().zip(pieces) {
            let r = self
                .append_check(cx, &e.cursor, e.close, Some(e.length), None)
                .and_then(|(_, exact)| {
                    self.apply_append(cx, &e.cursor, e.close, e.length, exact, None, parts, None)
                });
            results.push(match r {
                Ok(()) => errors::void("success"),
                Err(err) => errors::nested("failure", err.value()),
            });
        }
        let mut m = serde_json::Map::new();
        m.insert("entries".to_string(), Value::Array(results));
        errors::ok(&Value::Object(m))
    }

    fn complete_finish(&mut self, cx: &mut Cx<'_>, a: FinishArg, body: Received) -> Resp {
        let max_body = cx.config.dropbox.max_body;
        if let Err(e) = self.finish_check(cx, &a.cursor, Some(body.len), Some(max_body), false) {
            return self.conflict(e.value());
        }
        if !Self::hash_ok(cx, &a.content_hash, &body.body_content_hash) {
            return self.conflict(FinishErr::ContentHashMismatch.value());
        }
        let amb = ambiguous(&cx.fault);
        match self.commit_session(cx, &a.cursor.session_id, &a.commit, body.file, amb) {
            Ok((entry, None)) => errors::ok(&entry.metadata()),
            Ok((_, Some(p))) => self.conflict(FinishErr::Properties(p).value()),
            Err(e) => self.conflict(e.value()),
        }
    }

    fn complete_rpc(&mut self, cx: &mut Cx<'_>, route: Route, body: Received) -> Resp {
        const WHERE: &str = "request body";
        let raw = body.collected.unwrap_or_default();
        let v = match args::decode_json(&raw) {
            Ok(v) => v,
            Err(e) => return Self::arg_error(cx, route, WHERE, e),
        };
        match route {
            Route::StartBatch => {
                let a = match args::start_batch_arg(&v) {
                    Ok(a) => a,
                    Err(e) => return Self::arg_error(cx, route, WHERE, e),
                };
                let ids: Vec<Value> = (0..a.num_sessions)
                    .map(|_| Value::String(self.create_session(cx.now, a.session_type)))
                    .collect();
                let mut m = serde_json::Map::new();
                m.insert("session_ids".to_string(), Value::Array(ids));
                errors::ok(&Value::Object(m))
            }
            Route::FinishBatchV2 | Route::FinishBatch => {
                let a = match args::finish_batch_arg(&v) {
                    Ok(a) => a,
                    Err(e) => return Self::arg_error(cx, route, WHERE, e),
                };
                let contention = matches!(cx.fault, Some(Fault::WriteContention));
                let amb = ambiguous(&cx.fault);
                if route == Route::FinishBatchV2 {
                    let results = self.finish_entries(cx, &a.entries, contention, amb);
                    let mut m = serde_json::Map::new();
                    m.insert("entries".to_string(), Value::Array(results));
                    return errors::ok(&Value::Object(m));
                }
                self.next_job += 1;
                let id = format!(
                    "dbjob:{}{:04x}",
                    hex::encode(Sha256::digest(format!("job-{}", self.next_job).as_bytes()))
                        .get(..20)
                        .unwrap_or(""),
                    self.next_job
                );
                let dur = cx.config.dropbox.batch_job_duration;
                if dur.is_zero() {
                    let results = self.finish_entries(cx, &a.entries, contention, amb);
                    return errors::ok(&errors::tagged(
                        "complete",
                        [("entries".to_string(), Value::Array(results))],
                    ));
                }
                self.jobs.push(Job {
                    id: id.clone(),
                    deadline: cx.now.checked_add(dur).unwrap_or(cx.now),
                    entries: a.entries,
                    results: None,
                    contention,
                    ambiguous: amb,
                });
                errors::ok(&errors::tagged(
                    "async_job_id",
                    [("async_job_id".to_string(), Value::String(id))],
                ))
            }
            Route::FinishBatchCheck => {
                let a = match args::poll_arg(&v) {
                    Ok(a) => a,
                    Err(e) => return Self::arg_error(cx, route, WHERE, e),
                };
                match self.jobs.iter().find(|j| j.id == a.async_job_id) {
                    None => self.conflict(errors::void("invalid_async_job_id")),
                    Some(Job { results: None, .. }) => errors::ok(&errors::void("in_progress")),
                    Some(Job {
                        results: Some(r), ..
                    }) => errors::ok(&errors::tagged(
                        "complete",
                        [("entries".to_string(), Value::Array(r.clone()))],
                    )),
                }
            }
            Route::GetMetadata => {
                let a = match args::get_metadata_arg(&v) {
                    Ok(a) => a,
                    Err(e) => return Self::arg_error(cx, route, WHERE, e),
                };
                match self.ns.lookup(&a.path) {
                    Some(m) => errors::ok(&m),
                    None => self.conflict(errors::nested("path", errors::void("not_found"))),
                }
            }
            _ => wire::text(StatusCode::NOT_FOUND, "Unknown endpoint"),
        }
    }
}

impl ServiceModel for Dropbox {
    type Ticket = Ticket;

    fn begin(&mut self, cx: &mut Cx<'_>, head: &request::Parts) -> Started<Ticket> {
        self.run_due_jobs(cx);
        let respond = Started::Respond;
        // Rule 2: route.
        let path = head.uri.path();
        let (host, name) = if let Some(n) = path.strip_prefix("/dropbox/content/2/") {
            (Host::Content, n)
        } else if let Some(n) = path.strip_prefix("/dropbox/api/2/") {
            (Host::Api, n)
        } else {
            cx.violation(Violation::UnknownRoute);
            return respond(wire::text(StatusCode::NOT_FOUND, "Unknown endpoint"));
        };
        let Some(route) = Route::parse(name) else {
            cx.violation(Violation::UnknownRoute);
            let shown: String = name.chars().take(200).collect();
            return respond(wire::text(
                StatusCode::NOT_FOUND,
                &format!("Unknown API function: \"{shown}\""),
            ));
        };
        // Rule 1: POST only.
        if head.method != Method::POST {
            cx.violation(Violation::UnknownRoute);
            let mut r = wire::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            r.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return respond(r);
        }
        // Rule 3: host.
        if cx.config.dropbox.strict_hosts && host != route.host() {
            cx.violation(Violation::WrongHost);
            let want = match route.host() {
                Host::Content => "content.dropboxapi.com",
                Host::Api => "api.dropboxapi.com",
            };
            return respond(errors::bad_request(
                route.name(),
                &format!("This endpoint is only available on host \"{want}\"."),
            ));
        }
        // Rules 4-6.
        let q = query(head);
        let token = match self.authorize(cx, route, head, &q) {
            Ok(t) => t,
            Err(r) => return respond(r),
        };
        // Rules 66-69, 72.
        if let Some(r) = self.fault_at_begin(cx, route, &token) {
            return respond(r);
        }
        // Rules 7-8.
        if let Some(r) = Self::check_content_type(cx, route, &head.headers) {
            return respond(r);
        }
        if let Some(r) = Self::check_path_root(cx, route, &head.headers) {
            return respond(r);
        }
        let declared = match wire::content_length(&head.headers) {
            Ok(d) => d,
            Err(()) => {
                cx.violation(Violation::ContentLengthMismatch);
                return respond(wire::text(StatusCode::BAD_REQUEST, "Bad Content-Length"));
            }
        };
        self.next_ticket += 1;
        let tid = self.next_ticket;
        if route.host() == Host::Content {
            if let Some(r) = Self::payload_413(cx, declared) {
                return respond(r);
            }
            let (arg, place) = match Self::upload_arg(cx, route, &head.headers, &q) {
                Ok(a) => a,
                Err(r) => return respond(r),
            };
            return self.begin_upload(cx, route, tid, declared, arg, place);
        }
        // RPC: the argument is the JSON body.
        if matches!(route, Route::FinishBatch | Route::FinishBatchV2) {
            if let Some(excused) = self.commit_busy(cx.now) {
                if !excused {
                    cx.violation(Violation::OverlappingBatchCommit);
                }
                return respond(errors::lock_contention(1));
            }
            self.commit_lock = Some(tid);
        }
        let cap = cx.config.max_json_body;
        Started::Read {
            ticket: Ticket {
                id: tid,
                route,
                declared,
                op: Op::Rpc,
            },
            sink: SinkSpec {
                collect: Some(cap),
                max_len: cap as u64,
                ..SinkSpec::default()
            },
        }
    }

    fn complete(&mut self, cx: &mut Cx<'_>, t: Ticket, body: Received) -> Response<Bytes> {
        self.release(&t);
        self.run_due_jobs(cx);
        let resp = if t.declared.is_some_and(|d| d != body.len) {
            cx.violation(Violation::ContentLengthMismatch);
            wire::text(
                StatusCode::BAD_REQUEST,
                "Content-Length does not match the body",
            )
        } else {
            let route = t.route;
            match t.op {
                Op::Start(a) => self.complete_start(cx, a, body),
                Op::Append(a) => self.complete_append(cx, a, body),
                Op::AppendBatch(a) => self.complete_append_batch(cx, a, body),
                Op::Finish(a) => self.complete_finish(cx, a, body),
                Op::Rpc => self.complete_rpc(cx, route, body),
            }
        };
        // Rule 69: applied, then a 5xx.
        if let Some(Fault::ErrorAfter { status }) = cx.fault {
            return errors::server_error(status, None);
        }
        resp
    }

    fn abort(&mut self, cx: &mut Cx<'_>, t: Ticket, _body: Received, _keep_prefix: bool) {
        // Rule 70: nothing from a partial body is stored (Dropbox never keeps a prefix).
        self.release(&t);
        self.run_due_jobs(cx);
        if cx.fault.is_none() {
            cx.violation(Violation::TruncatedBody);
        }
    }

    fn overflow(&mut self, cx: &mut Cx<'_>, t: Ticket, _limit: u64) -> Response<Bytes> {
        self.release(&t);
        self.run_due_jobs(cx);
        match t.op {
            Op::Start(_) | Op::Append(_) | Op::AppendBatch(_) => {
                self.conflict(errors::void("payload_too_large"))
            }
            Op::Finish(_) => self.conflict(FinishErr::Lookup(LookupErr::PayloadTooLarge).value()),
            Op::Rpc => errors::bad_request(t.route.name(), "request body: too large"),
        }
    }

    fn files(&self) -> Vec<FileRecord> {
        self.ns.records()
    }
}
