//! [`BatchCommit`]: commits many closed sessions with `finish_batch_v2` (dropbox.md
//! §6.3, §6.5).
//!
//! ```text
//!  queue ──▶ finish_batch_v2 (≤ 1000 entries, one call at a time) ──▶ per entry:
//!    ▲         │ 429: wait, send the group again                     success ─▶ verify size + hash
//!    │         │ 5xx / lost / garbled: send again; in doubt twice ──▶ get_metadata first
//!    │         │ 401 expired: TokenNeeded                            failure:
//!    └─────────┴── too_many_write_operations entries, after a wait ◀──┘ too_many_write_operations
//!                  lookup_failed/not_found after a doubt ──▶ get_metadata ─▶ verify
//!                  anything else ──▶ that entry's typed error
//! ```
//!
//! Batch commits for one account must not overlap (§12 rule 63): the machine sends one
//! call at a time. An entry whose call ended without a visible answer (5xx, lost
//! response) may have been committed already (which consumes its session). It is sent
//! again; when that answers `lookup_failed/not_found`, or when its outcome is in doubt a
//! second time, the file is looked up with `files/get_metadata` and accepted if its size
//! and content hash match the session's (a file committed under another name by
//! `autorename` cannot be found that way and is reported as `SessionNotFound`).
//!
//! A batch needs no checkpoint: to resume after a crash, run the same entries again
//! with [`BatchBuilder::rerun`]: entries the first run committed answer `not_found` and
//! are confirmed by lookup.

use super::commit::CommitInfo;
use super::config::DropboxConfig;
use super::limits::MAX_BATCH;
use super::metadata::{ClosedSession, Committed, FileMetadata};
use super::pacing::{Class, Pacer, classify};
use super::wire::{self, ApiError, BatchEntryResult, CommonHeaders};
use crate::error::{BuildError, HashAlgorithm, Misuse, UploadError};
use crate::machine::UploadMachine;
use crate::output::{Event, OutgoingRequest, Output, RequestId, RequestKind, TransportFailure};
use crate::secret::AccessToken;
use crate::wallclock::WallAnchor;
use bytes::Bytes;
use http::Uri;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// One file of a batch: a closed session and where to commit it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// The closed session (from [`Completed::Closed`](super::Completed::Closed)).
    pub session: ClosedSession,
    /// Where to commit it.
    pub commit: CommitInfo,
}

/// The per-entry results of a batch, in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutcome {
    /// One result per entry.
    pub entries: Vec<Result<Committed, UploadError>>,
}

impl BatchOutcome {
    /// True when every entry was committed.
    pub fn all_committed(&self) -> bool {
        self.entries.iter().all(Result::is_ok)
    }
}

/// A batch has no checkpoint (this type has no values): run the same batch again to
/// resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoCheckpoint {}

/// The output type of a [`BatchCommit`].
pub type BatchOutput = Output<BatchOutcome, NoCheckpoint>;

#[derive(Clone, Debug)]
enum Req {
    Batch(Vec<usize>),
    Lookup(usize),
}

/// Commits closed sessions in groups with `finish_batch_v2` (see the [module
/// docs](self)). It implements [`UploadMachine`] (it never asks for data).
///
/// # Examples
/// ```
/// use upload_session::dropbox::{BatchCommit, BatchEntry, ClosedSession, CommitInfo};
/// use upload_session::AccessToken;
/// let entries = vec![BatchEntry {
///     session: ClosedSession {
///         session_id: "sid-1".into(),
///         size: 11,
///         content_hash: "bc62d4b80d9e36da29c16c5d4d9f11731f36052c72401a76c23c0fb5a9b74423".into(),
///     },
///     commit: CommitInfo::new("/a.txt").unwrap(),
/// }];
/// let batch = BatchCommit::builder(entries)
///     .access_token(AccessToken::new("token").unwrap())
///     .build()
///     .unwrap();
/// assert_eq!(batch.len(), 1);
/// ```
pub struct BatchCommit {
    cfg: DropboxConfig,
    finish_batch: Uri,
    get_metadata: Uri,
    common: CommonHeaders,
    token: Option<AccessToken>,
    token_gen: u64,
    group_size: usize,

    entries: Vec<BatchEntry>,
    results: Vec<Option<Result<Committed, UploadError>>>,
    queue: VecDeque<usize>,
    lookups: VecDeque<usize>,
    unsure: Vec<bool>,
    /// Consecutive calls for this entry that ended without a visible answer.
    doubt: Vec<u8>,
    in_flight: Option<(u64, Req, u64)>,

    events: VecDeque<Event<NoCheckpoint>>,
    result: Option<Result<BatchOutcome, UploadError>>,
    pacer: Pacer,
    next_id: u64,
    now: Option<Instant>,
    anchor: Option<WallAnchor>,
}

impl fmt::Debug for BatchCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchCommit")
            .field("entries", &self.entries.len())
            .field("resolved", &self.resolved())
            .field("queued", &self.queue.len())
            .field("lookups", &self.lookups.len())
            .field("in_flight", &self.in_flight.is_some())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BatchCommit`].
#[derive(Debug)]
#[must_use]
pub struct BatchBuilder {
    entries: Vec<BatchEntry>,
    group_size: usize,
    cfg: DropboxConfig,
    token: Option<AccessToken>,
    rerun: bool,
}

impl BatchBuilder {
    /// Declares that an earlier run may have committed some entries (a crash, or an
    /// unknown outcome): an entry whose session is gone is then looked up and accepted
    /// when the file matches, instead of failing with `SessionNotFound`.
    pub fn rerun(mut self, on: bool) -> Self {
        self.rerun = on;
        self
    }

    /// Entries per `finish_batch_v2` call (`1..=1000`, default 1000).
    pub fn group_size(mut self, n: usize) -> Self {
        self.group_size = n;
        self
    }

    /// Sets the behaviour configuration.
    pub fn config(mut self, cfg: DropboxConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Sets the access token (without one, the machine starts with `Event::TokenNeeded`).
    pub fn access_token(mut self, token: AccessToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Checks everything and returns the machine.
    ///
    /// # Errors
    /// [`BuildError::InvalidOption`] for a group size outside `1..=1000` or an entry
    /// whose session id is empty or whose content hash is not 64 hex digits;
    /// [`BuildError::InvalidBaseUrl`] for bad hosts.
    pub fn build(self) -> Result<BatchCommit, BuildError> {
        if self.group_size == 0 || self.group_size > MAX_BATCH {
            return Err(BuildError::InvalidOption {
                option: "group_size",
                reason: "must be between 1 and 1000",
            });
        }
        for e in &self.entries {
            if e.session.session_id.is_empty() {
                return Err(BuildError::InvalidOption {
                    option: "session_id",
                    reason: "must not be empty",
                });
            }
            let h = &e.session.content_hash;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BuildError::InvalidOption {
                    option: "content_hash",
                    reason: "must be 64 hex digits",
                });
            }
        }
        let (_, api) = self.cfg.checked()?;
        let uri = |route: &str| -> Result<Uri, BuildError> {
            format!("{api}{route}")
                .parse()
                .map_err(|_| BuildError::InvalidBaseUrl { value: api.clone() })
        };
        let n = self.entries.len();
        let mut m = BatchCommit {
            finish_batch: uri("files/upload_session/finish_batch_v2")?,
            get_metadata: uri("files/get_metadata")?,
            common: CommonHeaders::new(&self.cfg),
            pacer: Pacer::new(self.cfg.retry.seed, 0),
            cfg: self.cfg,
            token: None,
            token_gen: 0,
            group_size: self.group_size,
            entries: self.entries,
            results: vec![None; n],
            queue: (0..n).collect(),
            lookups: VecDeque::new(),
            unsure: vec![self.rerun; n],
            doubt: vec![0; n],
            in_flight: None,
            events: VecDeque::new(),
            result: None,
            next_id: 0,
            now: None,
            anchor: None,
        };
        match self.token {
            Some(t) => m.set_access_token(t),
            None => m.events.push_back(Event::TokenNeeded),
        }
        Ok(m)
    }
}

impl BatchCommit {
    /// Starts building a batch commit of `entries`.
    pub fn builder(entries: Vec<BatchEntry>) -> BatchBuilder {
        BatchBuilder {
            entries,
            group_size: MAX_BATCH,
            cfg: DropboxConfig::default(),
            token: None,
            rerun: false,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries with a final result.
    pub fn resolved(&self) -> usize {
        self.results.iter().filter(|r| r.is_some()).count()
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        let n = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(n);
        n
    }

    fn resolve(&mut self, i: usize, r: Result<Committed, UploadError>) {
        if let Some(slot) = self.results.get_mut(i) {
            if slot.is_none() {
                *slot = Some(r);
            }
        }
    }

    fn verify(&self, i: usize, meta: FileMetadata) -> Result<Committed, UploadError> {
        let Some(e) = self.entries.get(i) else {
            return Err(UploadError::Internal {
                detail: "batch entry out of range",
            });
        };
        if meta.size != e.session.size {
            return Err(UploadError::SizeMismatch {
                expected: e.session.size,
                actual: Some(meta.size),
            });
        }
        let hash = meta
            .content_hash
            .as_deref()
            .map(|h| h.eq_ignore_ascii_case(&e.session.content_hash));
        if hash == Some(false) {
            return Err(UploadError::HashMismatch {
                algorithm: HashAlgorithm::DropboxContentHash,
                expected: e.session.content_hash.clone(),
                actual: meta.content_hash.clone().unwrap_or_default(),
            });
        }
        Ok(Committed {
            metadata: meta,
            content_hash: e.session.content_hash.to_ascii_lowercase(),
            hash_verified: hash == Some(true),
            restarts: 0,
        })
    }

    /// Puts entries back at the front of the queue, keeping their order.
    fn requeue(&mut self, group: &[usize]) {
        for &i in group.iter().rev() {
            self.queue.push_front(i);
        }
    }

    fn requeue_req(&mut self, req: &Req) {
        match req {
            Req::Batch(g) => {
                let g = g.clone();
                self.requeue(&g);
            }
            Req::Lookup(i) => self.lookups.push_front(*i),
        }
    }

    fn progress(&mut self) {
        let done = self.resolved() as u64;
        self.pacer.observe(done);
        self.events.push_back(Event::Progress {
            acknowledged: done,
            total: self.entries.len() as u64,
        });
    }

    /// Waits before the next call; when the budget is used up every unresolved entry
    /// gets the `TooManyRetries` error.
    fn retry_later(&mut self, now: Instant, cause: UploadError, hint: Option<Duration>) {
        match self.pacer.fail(&self.cfg, now, cause, hint) {
            Ok((delay, cause)) => self.events.push_back(Event::RetryScheduled {
                cause,
                attempt: self.pacer.attempts(),
                delay,
            }),
            Err(e) => {
                let pending: Vec<usize> =
                    self.queue.drain(..).chain(self.lookups.drain(..)).collect();
                for i in pending {
                    self.resolve(i, Err(e.clone()));
                }
            }
        }
    }

    fn entry_failure(&mut self, i: usize, e: ApiError) -> Option<Result<Committed, UploadError>> {
        let size = self.entries.get(i).map_or(0, |x| x.session.size);
        let first = e.first().unwrap_or("");
        let second = e.tags.0.get(1).map(String::as_str).unwrap_or("");
        Some(Err(match (first, second) {
            ("too_many_write_operations", _) | ("path", "too_many_write_operations") => {
                return None;
            }
            ("lookup_failed", "not_found") => {
                if self.unsure.get(i).copied().unwrap_or(false) {
                    self.lookups.push_back(i);
                    return None;
                }
                UploadError::SessionNotFound
            }
            ("lookup_failed", "incorrect_offset") => UploadError::OffsetMismatch {
                server: e.correct_offset,
                sent: size,
            },
            ("path", "conflict") => UploadError::Conflict { codes: e.tags },
            ("path", "insufficient_space") => UploadError::QuotaExceeded { codes: e.tags },
            _ => UploadError::Rejected {
                status: 409,
                codes: e.tags,
            },
        }))
    }

    fn on_batch(&mut self, now: Instant, group: Vec<usize>, status: u16, body: &[u8]) {
        match wire::parse_batch_result(body, self.cfg.max_response_body, group.len()) {
            Err(detail) => {
                // Applied or not, we cannot tell.
                self.in_doubt(&Req::Batch(group));
                self.retry_later(now, UploadError::MalformedResponse { status, detail }, None);
            }
            Ok(results) => {
                let mut contended = Vec::new();
                for (i, r) in group.iter().copied().zip(results) {
                    match r {
                        BatchEntryResult::Success(meta) => {
                            let v = self.verify(i, meta);
                            self.resolve(i, v);
                        }
                        BatchEntryResult::Failure(e) => match self.entry_failure(i, e) {
                            Some(r) => self.resolve(i, r),
                            None => {
                                if !self.lookups.contains(&i) {
                                    contended.push(i);
                                }
                            }
                        },
                    }
                }
                self.progress();
                if !contended.is_empty() {
                    self.requeue(&contended);
                    let wait = self.pacer.throttle_wait(&self.cfg, None);
                    self.retry_later(
                        now,
                        UploadError::WriteContention {
                            status: 409,
                            retry_after: Some(wait),
                        },
                        Some(wait),
                    );
                }
            }
        }
    }

    fn on_lookup(&mut self, now: Instant, i: usize, class: Class, status: u16, body: &[u8]) {
        match class {
            Class::Success => match wire::parse_metadata(body, self.cfg.max_response_body) {
                Ok(meta) => match self.verify(i, meta) {
                    Ok(c) if c.hash_verified => {
                        self.resolve(i, Ok(c));
                        self.progress();
                    }
                    // Another file there: this entry's commit did not happen.
                    _ => self.lookup_miss(i),
                },
                Err(detail) => {
                    self.lookups.push_front(i);
                    self.retry_later(now, UploadError::MalformedResponse { status, detail }, None);
                }
            },
            Class::Api(e) if e.is(&["path", "not_found"]) => self.lookup_miss(i),
            Class::Api(e) => {
                self.resolve(
                    i,
                    Err(UploadError::Rejected {
                        status,
                        codes: e.tags,
                    }),
                );
                self.progress();
            }
            _ => {}
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        req: Req,
        token_gen_at: u64,
        resp: http::Response<Bytes>,
    ) {
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        let wall = self.anchor.map(|a| a.wall_at(now));
        let class = classify(
            &mut self.pacer,
            &self.cfg,
            wall,
            status,
            &parts.headers,
            &body,
        );
        match class {
            Class::Retry {
                cause,
                hint,
                ambiguous,
            } => {
                if ambiguous {
                    self.in_doubt(&req);
                } else {
                    self.requeue_req(&req);
                }
                self.retry_later(now, cause, hint);
            }
            Class::Token => {
                self.requeue_req(&req);
                if token_gen_at == self.token_gen && self.token.is_some() {
                    self.token = None;
                    self.events.push_back(Event::TokenNeeded);
                }
            }
            Class::Fatal(e) => {
                let ids = match &req {
                    Req::Batch(g) => g.clone(),
                    Req::Lookup(i) => vec![*i],
                };
                for i in ids {
                    self.resolve(i, Err(e.clone()));
                }
                self.progress();
            }
            class => match req {
                Req::Batch(group) => match class {
                    Class::Success => self.on_batch(now, group, status, &body),
                    // finish_batch_v2 has no route errors (Void): a 409 is unexpected.
                    Class::Api(e) => {
                        for i in group {
                            self.resolve(
                                i,
                                Err(UploadError::Rejected {
                                    status,
                                    codes: e.tags.clone(),
                                }),
                            );
                        }
                        self.progress();
                    }
                    _ => {}
                },
                Req::Lookup(i) => self.on_lookup(now, i, class, status, &body),
            },
        }
    }

    /// A call ended without a visible answer: its entries may be committed. They are
    /// sent again; an entry in doubt for the second time in a row is looked up first
    /// instead, so a session that may be consumed is not used again and again.
    fn in_doubt(&mut self, req: &Req) {
        match req {
            Req::Batch(g) => {
                let mut again = Vec::new();
                for &i in g {
                    if let Some(u) = self.unsure.get_mut(i) {
                        *u = true;
                    }
                    let d = match self.doubt.get_mut(i) {
                        Some(d) => {
                            *d = d.saturating_add(1);
                            *d
                        }
                        None => 0,
                    };
                    if d >= 2 {
                        self.lookups.push_back(i);
                    } else {
                        again.push(i);
                    }
                }
                self.requeue(&again);
            }
            Req::Lookup(i) => self.lookups.push_front(*i),
        }
    }

    /// The lookup shows entry `i` is not committed: send it again.
    fn not_committed(&mut self, i: usize) {
        if let Some(u) = self.unsure.get_mut(i) {
            *u = false;
        }
        if let Some(d) = self.doubt.get_mut(i) {
            *d = 0;
        }
        self.queue.push_front(i);
    }

    /// The file is not (or not ours) at the entry's path.
    fn lookup_miss(&mut self, i: usize) {
        if self.doubt.get(i).copied().unwrap_or(0) >= 2 {
            // Looked up before sending again: it was not committed.
            self.not_committed(i);
        } else {
            // The session answered not_found and the file is not there: gone.
            self.resolve(i, Err(UploadError::SessionNotFound));
            self.progress();
        }
    }

    fn send(&mut self, now: Instant, req: Req) -> Option<BatchOutput> {
        let token = self.token.as_ref()?;
        let (request, kind) = match &req {
            Req::Batch(g) => {
                let entries = g
                    .iter()
                    .filter_map(|&i| self.entries.get(i))
                    .map(|e| {
                        wire::finish_arg(&e.session.session_id, e.session.size, &e.commit, None)
                    })
                    .collect();
                (
                    wire::rpc(
                        &self.finish_batch,
                        &wire::finish_batch_arg(entries),
                        token,
                        &self.common,
                    ),
                    RequestKind::BatchCommit { entries: g.len() },
                )
            }
            Req::Lookup(i) => {
                let e = self.entries.get(*i)?;
                (
                    wire::rpc(
                        &self.get_metadata,
                        &wire::get_metadata_arg(e.commit.path()),
                        token,
                        &self.common,
                    ),
                    RequestKind::Metadata,
                )
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now.checked_add(self.cfg.request_timeout);
        self.in_flight = Some((id, req, self.token_gen));
        Some(Output::Send(OutgoingRequest {
            id: RequestId(id),
            kind,
            request,
            deadline,
            secret_uri: false,
        }))
    }

    fn take(&mut self, id: RequestId) -> Result<Option<(Req, u64)>, Misuse> {
        if id.0 >= self.next_id {
            return Err(Misuse::UnknownRequest(id));
        }
        match self.in_flight.take() {
            Some((cur, req, token_gen_at)) if cur == id.0 && self.result.is_none() => {
                Ok(Some((req, token_gen_at)))
            }
            other => {
                self.in_flight = other;
                if self.result.is_none() {
                    self.events.push_back(Event::StaleResponse { id });
                }
                Ok(None)
            }
        }
    }
}

impl UploadMachine for BatchCommit {
    type Completed = BatchOutcome;
    type Checkpoint = NoCheckpoint;

    /// Returns the next output: queued events, the final result, the next call (a
    /// lookup first, then the next group), or a wait.
    fn poll_output(&mut self, now: Instant) -> BatchOutput {
        let now = self.clamp(now);
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        if let Some(r) = &self.result {
            return Output::Finished(r.clone());
        }
        if self.in_flight.is_some() {
            return Output::Wait(None);
        }
        if self.queue.is_empty() && self.lookups.is_empty() {
            let entries = self
                .results
                .iter()
                .map(|r| {
                    r.clone().unwrap_or(Err(UploadError::Internal {
                        detail: "batch entry without a result",
                    }))
                })
                .collect();
            let r = Ok(BatchOutcome { entries });
            self.result = Some(r.clone());
            return Output::Finished(r);
        }
        if self.pacer.paused(now) {
            return Output::Wait(self.pacer.deadline(now));
        }
        if self.token.is_none() {
            return Output::Wait(None);
        }
        let req = if let Some(i) = self.lookups.pop_front() {
            Req::Lookup(i)
        } else {
            let n = self.group_size.min(self.queue.len());
            Req::Batch(self.queue.drain(..n).collect())
        };
        match self.send(now, req) {
            Some(o) => o,
            None => {
                let r = Err(UploadError::Internal {
                    detail: "batch request could not be built",
                });
                self.result = Some(r.clone());
                Output::Finished(r)
            }
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: http::Response<Bytes>,
    ) -> Result<(), Misuse> {
        let now = self.clamp(now);
        if let Some((req, token_gen_at)) = self.take(id)? {
            self.on_response(now, req, token_gen_at, response);
        }
        Ok(())
    }

    fn handle_failure(
        &mut self,
        now: Instant,
        id: RequestId,
        failure: TransportFailure,
    ) -> Result<(), Misuse> {
        let now = self.clamp(now);
        if let Some((req, _)) = self.take(id)? {
            if failure != TransportFailure::Connect {
                self.in_doubt(&req);
            } else {
                self.requeue_req(&req);
            }
            self.retry_later(now, UploadError::Transport(failure), None);
        }
        Ok(())
    }

    fn provide_data(&mut self, offset: u64, data: Bytes) -> Result<(), Misuse> {
        Err(Misuse::UnexpectedData {
            offset,
            len: data.len() as u64,
        })
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.pacer.on_timeout(now);
    }

    fn handle_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        let now = self.clamp(now);
        self.anchor = Some(WallAnchor::new(now, wall));
    }

    fn set_access_token(&mut self, token: AccessToken) {
        self.token = Some(token);
        self.token_gen += 1;
    }

    /// Stops the batch: entries committed so far stay committed; the machine finishes
    /// with `UploadError::Cancelled`.
    fn cancel(&mut self, now: Instant) {
        self.clamp(now);
        if self.result.is_none() {
            self.in_flight = None;
            self.result = Some(Err(UploadError::Cancelled {
                session_deleted: false,
            }));
        }
    }

    fn is_finished(&self) -> bool {
        self.result.is_some()
    }
}
