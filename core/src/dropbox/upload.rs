//! [`DropboxUpload`]: one file through one upload session (sequential or concurrent).

use super::checkpoint::Checkpoint;
use super::commit::CommitInfo;
use super::concurrent::Conc;
use super::config::DropboxConfig;
use super::content_hash::{BLOCK_SIZE, block_digests, content_hash, hash_of_digests};
use super::ledger::HashLedger;
use super::limits::MAX_FILE_SIZE;
use super::metadata::{ClosedSession, Committed, Completed, FileMetadata};
use super::options::{SessionType, UploadOptions};
use super::sequential::{self, Resync, Seq};
use super::wire::{self, ApiError, CommonHeaders};

use super::pacing::{Class, Pacer, classify};
use super::{DropboxEvent, DropboxOutput, Op, OpKind};
use crate::checkpoint::{CHECKPOINT_VERSION, SourceFingerprint};
use crate::error::{BuildError, HashAlgorithm, Misuse, ResumeError, UploadError};
use crate::machine::UploadMachine;
use crate::output::{Event, OutgoingRequest, Output, RequestId, RequestKind, TransportFailure};
use crate::range::ByteRange;
use crate::secret::AccessToken;
use crate::wallclock::{WallAnchor, format_rfc3339, parse_rfc3339};
use bytes::Bytes;
use http::Uri;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// What a [`DropboxUpload`] is doing, for logs and assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for `set_access_token`.
    NeedToken,
    /// Starting a session.
    Starting,
    /// Sending data (appends; the sequential finish that carries the last chunk counts
    /// as committing).
    Uploading,
    /// Reading bytes only to hash them (after a resume).
    Hashing,
    /// Waiting before a retry, with nothing in flight.
    Backoff,
    /// Sending `finish`.
    Committing,
    /// Checking the committed file (or, after a lost commit answer, looking it up).
    Verifying,
    /// Finished successfully.
    Done,
    /// Finished with an error.
    Failed,
    /// Finished by `cancel`.
    Cancelled,
}

/// Local steps and request families.
#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Need a session.
    Start,
    /// Sending data (sequential: up to and including the finish).
    Upload,
    /// Concurrent: the empty finish.
    Finish,
    /// A finish whose outcome was not seen met `not_found`: look the file up.
    Lookup,
    /// Check `FileMetadata` against the source (after hashing what is missing).
    Verify(Box<FileMetadata>, Purpose),
    /// The session is closed and will not be committed here (batch).
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The finish answered with this metadata: a mismatch is an integrity error.
    Commit,
    /// Found by lookup after a lost commit answer: a mismatch means the commit did not
    /// happen (start again).
    AfterLoss,
}

#[derive(Clone, Debug)]
enum Layout {
    Seq(Seq),
    Conc(Conc),
}

#[derive(Clone, Debug)]
struct Session {
    id: String,
    created_mono: Option<Instant>,
    created_wall: Option<SystemTime>,
    resumed: bool,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    op: Op,
    token_gen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Need {
    range: ByteRange,
    hash_only: bool,
}

/// Bytes read for a request, kept until acknowledged.
#[derive(Clone)]
struct Held {
    data: Bytes,
    /// Content hash of exactly these bytes.
    hash: String,
}

/// The URIs of the routes.
#[derive(Clone, Debug)]
struct Uris {
    start: Uri,
    append: Uri,
    finish: Uri,
    get_metadata: Uri,
}

/// One Dropbox upload: a sans-IO state machine. See the [module docs](super) for the
/// phases and the [crate docs](crate) for the drive loop.
///
/// Build it with [`DropboxUpload::builder`] (commit with `finish`) or
/// [`DropboxUpload::builder_for_batch`] (close the session for a [`BatchCommit`](super::BatchCommit)),
/// or continue one with [`DropboxUpload::resume`]. It implements [`UploadMachine`].
pub struct DropboxUpload {
    cfg: DropboxConfig,
    opts: UploadOptions,
    size: u64,
    fingerprint: SourceFingerprint,
    uris: Uris,
    common: CommonHeaders,
    token: Option<AccessToken>,
    token_gen: u64,

    events: VecDeque<DropboxEvent>,
    result: Option<Result<Completed, UploadError>>,

    stage: Stage,
    layout: Layout,
    session: Option<Session>,
    ledger: HashLedger,
    held: BTreeMap<u64, Held>,
    need: Option<Need>,
    in_flight: BTreeMap<u64, InFlight>,
    /// Requests of an abandoned session (before a restart) still on the wire: their
    /// answers are ignored, but they count against `parallelism` until they come back,
    /// so that a restart never puts more requests (and their bodies) on the wire than
    /// the options allow. Each one is answered by the adapter by its deadline.
    abandoned: BTreeSet<u64>,

    pacer: Pacer,
    restarts: u32,
    next_id: u64,
    now: Option<Instant>,
    anchor: Option<WallAnchor>,
    finish_unsure: bool,
}

impl fmt::Debug for DropboxUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropboxUpload")
            .field("phase", &self.phase())
            .field("path", &self.opts.commit.as_ref().map(CommitInfo::path))
            .field("session_type", &self.opts.session_type)
            .field("size", &self.size)
            .field("acknowledged", &self.acknowledged())
            .field("hashed", &self.ledger.prefix_len())
            .field("in_flight", &self.in_flight.len())
            .field("restarts", &self.restarts)
            .field("has_session", &self.session.is_some())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DropboxUpload`].
///
/// # Examples
/// ```
/// use upload_session::dropbox::{CommitInfo, DropboxUpload, SessionType};
/// use upload_session::AccessToken;
/// let up = DropboxUpload::builder(CommitInfo::new("/backups/disk.img").unwrap(), 50_000_000)
///     .session_type(SessionType::Concurrent)
///     .chunk_size(16 * 1024 * 1024)
///     .parallelism(8)
///     .access_token(AccessToken::new("token").unwrap())
///     .build()
///     .unwrap();
/// assert_eq!(up.size(), 50_000_000);
/// // Concurrent chunks must be multiples of 4 MiB.
/// assert!(DropboxUpload::builder(CommitInfo::new("/a").unwrap(), 10)
///     .session_type(SessionType::Concurrent)
///     .chunk_size(5_000_000)
///     .build()
///     .is_err());
/// ```
#[derive(Debug)]
#[must_use]
pub struct Builder {
    opts: UploadOptions,
    size: u64,
    fingerprint: Option<SourceFingerprint>,
    cfg: DropboxConfig,
    token: Option<AccessToken>,
}

impl Builder {
    /// Sets the session type (default sequential).
    pub fn session_type(mut self, t: SessionType) -> Self {
        self.opts.session_type = t;
        self
    }

    /// Sets the chunk size in bytes (checked by [`build`](Self::build)).
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.opts.chunk_size = bytes;
        self
    }

    /// Sets how many concurrent appends may be in flight (default 4).
    pub fn parallelism(mut self, n: u32) -> Self {
        self.opts.parallelism = n;
        self
    }

    /// Sets how many chunks may be read ahead of the requests in flight (default 1, at
    /// most 16, 0 disables; checked by [`build`](Self::build)). Read-ahead lets the
    /// adapter read and hash the next chunk while the current one travels; it holds up
    /// to `(1 + n) × chunk_size` bytes (sequential) or `(parallelism + n) × chunk_size`
    /// (concurrent) in memory. See [`UploadOptions::read_ahead`].
    pub fn read_ahead(mut self, n: u32) -> Self {
        self.opts.read_ahead = n;
        self
    }

    /// Sequential commits: whether the last chunk travels in `finish` (default) or in a
    /// closing append followed by an empty finish.
    pub fn last_chunk_in_finish(mut self, on: bool) -> Self {
        self.opts.last_chunk_in_finish = on;
        self
    }

    /// Sets the source fingerprint recorded in checkpoints (default: the size and an
    /// empty stamp).
    pub fn fingerprint(mut self, f: SourceFingerprint) -> Self {
        self.fingerprint = Some(f);
        self
    }

    /// Sets the behaviour configuration (hosts, retries, timeouts).
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
    /// A [`BuildError`] naming the first invalid setting: chunk size (zero, above
    /// 157,286,400, or for concurrent sessions not a multiple of 4 MiB or above
    /// 155,189,248), parallelism, file size above 2,199,019,061,248, base URLs, team
    /// headers, read-ahead above 16, or a fingerprint of another size.
    pub fn build(self) -> Result<DropboxUpload, BuildError> {
        let fingerprint = self
            .fingerprint
            .unwrap_or_else(|| SourceFingerprint::new(self.size, ""));
        DropboxUpload::assemble(self.cfg, self.opts, self.size, fingerprint, self.token)
    }
}

impl DropboxUpload {
    /// Starts building an upload of `size` bytes committed with `commit`.
    pub fn builder(commit: CommitInfo, size: u64) -> Builder {
        Builder {
            opts: UploadOptions::new(Some(commit)),
            size,
            fingerprint: None,
            cfg: DropboxConfig::default(),
            token: None,
        }
    }

    /// Starts building an upload of `size` bytes that closes its session without
    /// committing it: the result is a [`ClosedSession`] for a
    /// [`BatchCommit`](super::BatchCommit) (dropbox.md §6.5: upload in parallel, commit
    /// many files at once).
    pub fn builder_for_batch(size: u64) -> Builder {
        Builder {
            opts: UploadOptions::new(None),
            size,
            fingerprint: None,
            cfg: DropboxConfig::default(),
            token: None,
        }
    }

    /// Builds an upload from complete options.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub fn new(
        options: UploadOptions,
        fingerprint: SourceFingerprint,
        config: DropboxConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, BuildError> {
        let size = fingerprint.size;
        Self::assemble(config, options, size, fingerprint, token)
    }

    fn assemble(
        cfg: DropboxConfig,
        opts: UploadOptions,
        size: u64,
        fingerprint: SourceFingerprint,
        token: Option<AccessToken>,
    ) -> Result<Self, BuildError> {
        opts.validate()?;
        if size > MAX_FILE_SIZE {
            return Err(BuildError::FileTooLarge {
                size,
                max: MAX_FILE_SIZE,
            });
        }
        if fingerprint.size != size {
            return Err(BuildError::FingerprintSize {
                fingerprint: fingerprint.size,
                size,
            });
        }
        let (content, api) = cfg.checked()?;
        let uri = |base: &str, route: &str| -> Result<Uri, BuildError> {
            format!("{base}{route}")
                .parse()
                .map_err(|_| BuildError::InvalidBaseUrl {
                    value: base.to_string(),
                })
        };
        let uris = Uris {
            start: uri(&content, "files/upload_session/start")?,
            append: uri(&content, "files/upload_session/append_v2")?,
            finish: uri(&content, "files/upload_session/finish")?,
            get_metadata: uri(&api, "files/get_metadata")?,
        };
        let layout = if opts.is_concurrent_for(size) {
            Layout::Conc(Conc::new(size, opts.chunk_size))
        } else {
            Layout::Seq(Seq {
                offset: 0,
                closed: false,
            })
        };
        let mut m = Self {
            common: CommonHeaders::new(&cfg),
            pacer: Pacer::new(cfg.retry.seed, 0),
            cfg,
            opts,
            size,
            fingerprint,
            uris,
            token: None,
            token_gen: 0,
            events: VecDeque::new(),
            result: None,
            stage: Stage::Start,
            layout,
            session: None,
            ledger: HashLedger::new(),
            held: BTreeMap::new(),
            need: None,
            in_flight: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            restarts: 0,
            next_id: 0,
            now: None,
            anchor: None,
            finish_unsure: false,
        };
        match token {
            Some(t) => m.set_access_token(t),
            None => m.event(Event::TokenNeeded),
        }
        Ok(m)
    }

    /// Continues the upload a [`Checkpoint`] describes, in the same server session.
    /// `fingerprint` is the source as it is now. Acknowledged bytes are neither re-sent
    /// nor re-hashed; a concurrent session re-sends only the chunks not marked done.
    ///
    /// # Errors
    /// [`ResumeError::SourceChanged`] when the source differs; other variants when the
    /// checkpoint is inconsistent or from another version.
    pub fn resume(
        checkpoint: Checkpoint,
        fingerprint: &SourceFingerprint,
        config: DropboxConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, ResumeError> {
        checkpoint.check(fingerprint)?;
        let mut m = Self::assemble(
            config,
            checkpoint.options.clone(),
            checkpoint.size,
            checkpoint.fingerprint.clone(),
            token,
        )?;
        m.session = Some(Session {
            id: checkpoint.session_id.clone(),
            created_mono: None,
            created_wall: checkpoint
                .session_created
                .as_deref()
                .and_then(parse_rfc3339),
            resumed: true,
        });
        m.ledger = checkpoint.hash.clone();
        let closed = checkpoint.closed;
        match &mut m.layout {
            Layout::Seq(s) => {
                s.offset = checkpoint.acknowledged;
                s.closed = closed;
            }
            Layout::Conc(c) => {
                if !c.restore(
                    checkpoint.acknowledged,
                    &checkpoint.completed_chunks()?,
                    closed,
                ) {
                    return Err(ResumeError::Inconsistent(
                        "completed chunks do not fit the chunk layout",
                    ));
                }
            }
        }
        m.stage = if closed && m.opts.commit.is_none() {
            Stage::Close
        } else if closed && matches!(m.layout, Layout::Conc(_)) {
            Stage::Finish
        } else {
            Stage::Upload
        };
        let progress = m.acknowledged();
        m.pacer.reset(progress);
        Ok(m)
    }

    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes the server acknowledged (sequential: its offset; concurrent: the sum of the
    /// chunks it acknowledged).
    pub fn acknowledged(&self) -> u64 {
        match &self.layout {
            Layout::Seq(s) if self.session.is_some() => s.offset,
            Layout::Seq(_) => 0,
            Layout::Conc(c) => c.done_bytes,
        }
    }

    /// Sessions abandoned and started again so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The upload's options.
    pub fn options(&self) -> &UploadOptions {
        &self.opts
    }

    /// True when the data goes through a concurrent session (the session type is
    /// concurrent and the file is larger than one chunk).
    pub fn is_concurrent(&self) -> bool {
        matches!(self.layout, Layout::Conc(_))
    }

    /// Requests in flight: those of the current session plus those of an abandoned one
    /// (before a restart) whose answers have not come back yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() + self.abandoned.len()
    }

    /// Bytes of source data the machine holds: bodies in flight, bodies kept for a
    /// retry, and chunks read ahead. At most `(1 + read_ahead) × chunk_size` for a
    /// sequential session and `(parallelism + read_ahead) × chunk_size` for a concurrent
    /// one.
    pub fn held_bytes(&self) -> u64 {
        self.held.values().map(|h| h.data.len() as u64).sum()
    }

    /// The current session id, if a session exists.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// What the machine is doing.
    pub fn phase(&self) -> Phase {
        if let Some(r) = &self.result {
            return match r {
                Ok(_) => Phase::Done,
                Err(UploadError::Cancelled { .. }) => Phase::Cancelled,
                Err(_) => Phase::Failed,
            };
        }
        if let Some(n) = self.need {
            return if n.hash_only {
                Phase::Hashing
            } else if self.stage == Stage::Start {
                Phase::Starting
            } else {
                Phase::Uploading
            };
        }
        if self.token.is_none() && self.in_flight.is_empty() {
            return Phase::NeedToken;
        }
        let paused = self.now.is_some_and(|n| self.pacer.paused(n));
        if paused && self.in_flight.is_empty() {
            return Phase::Backoff;
        }
        match &self.stage {
            Stage::Start => Phase::Starting,
            Stage::Upload => match self.plan() {
                Some(op) if op.kind == OpKind::Finish => Phase::Committing,
                _ => match self.in_flight.values().next() {
                    Some(f) if f.op.kind == OpKind::Finish => Phase::Committing,
                    _ => Phase::Uploading,
                },
            },
            Stage::Finish => Phase::Committing,
            Stage::Lookup | Stage::Verify(..) | Stage::Close => Phase::Verifying,
        }
    }

    /// Returns a checkpoint of the current state, when a session exists.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let s = self.session.as_ref()?;
        let (acknowledged, completed_blocks, closed) = match &self.layout {
            // Right after a forward resync the server holds bytes this process has not
            // hashed yet (it reads the gap next): claim only the hashed prefix, so the
            // checkpoint always resumes; the resumed session resyncs forward again.
            Layout::Seq(q) => (q.offset.min(self.ledger.prefix_len()), Vec::new(), q.closed),
            Layout::Conc(c) => {
                let mut blocks = Vec::new();
                for &k in &c.done {
                    let r = c.range(k);
                    let first = r.start() / BLOCK_SIZE;
                    blocks.extend(first..first + r.len().div_ceil(BLOCK_SIZE));
                }
                (c.low_water_bytes(), blocks, c.closed)
            }
        };
        Some(Checkpoint {
            version: CHECKPOINT_VERSION,
            session_id: s.id.clone(),
            session_created: s.created_wall.map(format_rfc3339),
            size: self.size,
            fingerprint: self.fingerprint.clone(),
            options: self.opts.clone(),
            acknowledged,
            completed_blocks,
            closed,
            hash: self.ledger.clone(),
        })
    }

    // ------------------------------------------------------------------ plumbing

    fn clamp(&mut self, now: Instant) -> Instant {
        let n = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(n);
        n
    }

    fn finish(&mut self, r: Result<Completed, UploadError>) {
        self.result = Some(r);
        self.held.clear();
        self.need = None;
        self.in_flight.clear();
        self.abandoned.clear();
    }

    fn fail(&mut self, e: UploadError) {
        if self.result.is_none() {
            self.finish(Err(e));
        }
    }

    fn event(&mut self, e: DropboxEvent) {
        self.events.push_back(e);
    }

    fn wall_now(&self, now: Instant) -> Option<SystemTime> {
        self.anchor.map(|a| a.wall_at(now))
    }

    fn progress_value(&self) -> u64 {
        self.acknowledged()
    }

    fn emit_progress(&mut self) {
        let acknowledged = self.progress_value();
        self.pacer.observe(acknowledged);
        self.event(Event::Progress {
            acknowledged,
            total: self.size,
        });
        if let Some(c) = self.checkpoint() {
            self.event(Event::Checkpoint(c));
        }
    }

    fn paused(&self, now: Instant) -> bool {
        self.pacer.paused(now)
    }

    /// Records a failure and pauses new requests for the backoff delay.
    fn retry_later(&mut self, now: Instant, cause: UploadError, hint: Option<Duration>) {
        match self.pacer.fail(&self.cfg, now, cause, hint) {
            Ok((delay, cause)) => self.event(Event::RetryScheduled {
                cause,
                attempt: self.pacer.attempts(),
                delay,
            }),
            Err(e) => self.fail(e),
        }
    }

    fn throttle_wait(&mut self, hint: Option<Duration>) -> Duration {
        self.pacer.throttle_wait(&self.cfg, hint)
    }

    /// False when the session is within `expiry_margin` of its 7-day lifetime.
    fn session_usable(&self, now: Instant) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        let limit = self
            .cfg
            .session_lifetime
            .saturating_sub(self.cfg.expiry_margin);
        let age = match (s.created_mono, s.created_wall, self.wall_now(now)) {
            (Some(c), _, _) => Some(now.saturating_duration_since(c)),
            (None, Some(c), Some(w)) => Some(w.duration_since(c).unwrap_or_default()),
            _ => None,
        };
        age.is_none_or(|a| a < limit)
    }

    fn restart(&mut self, cause: UploadError) {
        if self.restarts >= self.cfg.max_restarts {
            let restarts = self.restarts;
            self.fail(UploadError::TooManyRestarts {
                restarts,
                last: Box::new(cause),
            });
            return;
        }
        self.restarts += 1;
        self.event(Event::SessionRestarted {
            cause,
            restarts: self.restarts,
        });
        self.session = None;
        self.stage = Stage::Start;
        self.finish_unsure = false;
        // Answers of the old session's requests are stale now (they stay counted against
        // the cap until they come back). Their bodies (and any read ahead) are dropped,
        // so the held bytes stay within the bound of `held_bytes` while the new session
        // reads from its start.
        self.abandon_in_flight();
        self.need = None;
        self.held.clear();
        match &mut self.layout {
            Layout::Seq(s) => {
                s.offset = 0;
                s.closed = false;
            }
            Layout::Conc(c) => c.reset(),
        }
        self.pacer.reset(0);
    }

    /// Moves the requests in flight to `abandoned`: their answers will be ignored, but
    /// they stay counted against `parallelism` until they come back.
    fn abandon_in_flight(&mut self) {
        let ids = std::mem::take(&mut self.in_flight);
        self.abandoned.extend(ids.into_keys());
        if let Layout::Conc(c) = &mut self.layout {
            c.in_flight.clear();
        }
    }

    /// Most requests on the wire at once: `parallelism` for a concurrent session, one
    /// for a sequential one.
    fn wire_cap(&self) -> usize {
        match &self.layout {
            Layout::Seq(_) => 1,
            Layout::Conc(_) => self.opts.parallelism.max(1) as usize,
        }
    }

    fn need_token(&mut self, token_gen_at: u64) {
        if token_gen_at == self.token_gen && self.token.is_some() {
            self.token = None;
            self.event(Event::TokenNeeded);
        }
    }

    fn commit_mode(&self) -> bool {
        self.opts.commit.is_some()
    }

    /// The next request the plan calls for (`None`: nothing may go now).
    fn plan(&self) -> Option<Op> {
        // Requests of an abandoned session count against the cap until they return.
        let free = self
            .wire_cap()
            .checked_sub(self.in_flight.len() + self.abandoned.len())
            .filter(|&n| n > 0)?;
        match &self.stage {
            Stage::Start => {
                if !self.in_flight.is_empty() {
                    return None;
                }
                Some(match &self.layout {
                    Layout::Seq(_) => Seq::start_op(self.size, self.opts.chunk_size),
                    Layout::Conc(_) => Op {
                        kind: OpKind::Start,
                        body: ByteRange::empty(0),
                        close: false,
                        chunk: None,
                    },
                })
            }
            Stage::Upload => match &self.layout {
                Layout::Seq(s) => {
                    if !self.in_flight.is_empty() {
                        return None;
                    }
                    Some(s.next_op(
                        self.size,
                        self.opts.chunk_size,
                        self.commit_mode(),
                        self.opts.last_chunk_in_finish,
                    ))
                }
                Layout::Conc(c) => {
                    let cap = c.in_flight.len().saturating_add(free);
                    c.next_op(u32::try_from(cap).unwrap_or(u32::MAX))
                }
            },
            Stage::Finish => self.in_flight.is_empty().then_some(Op {
                kind: OpKind::Finish,
                body: ByteRange::empty(self.size),
                close: false,
                chunk: None,
            }),
            Stage::Lookup => self.in_flight.is_empty().then_some(Op {
                kind: OpKind::Lookup,
                body: ByteRange::empty(0),
                close: false,
                chunk: None,
            }),
            Stage::Verify(..) | Stage::Close => None,
        }
    }

    fn held_body(&self, range: ByteRange) -> Option<(Bytes, String)> {
        let (&start, h) = self.held.range(..=range.start()).next_back()?;
        let end = start.checked_add(h.data.len() as u64)?;
        if range.end() > end {
            return None;
        }
        if start == range.start() && end == range.end() {
            return Some((h.data.clone(), h.hash.clone()));
        }
        let a = usize::try_from(range.start() - start).ok()?;
        let b = usize::try_from(range.end() - start).ok()?;
        let body = h.data.slice(a..b);
        let hash = content_hash(&body);
        Some((body, hash))
    }

    /// Drops held bytes no request can need any more.
    fn release_held(&mut self) {
        match &self.layout {
            Layout::Seq(s) => {
                let off = s.offset;
                self.held
                    .retain(|&start, h| start.saturating_add(h.data.len() as u64) > off);
            }
            Layout::Conc(c) => {
                let (chunk, low_water) = (c.chunk.max(1), c.low_water);
                let done = &c.done;
                self.held.retain(|&start, _| {
                    let k = start / chunk;
                    k >= low_water && !done.contains(&k)
                });
            }
        }
    }

    fn request(&self, op: Op, body: Bytes, hash: Option<&str>) -> Option<http::Request<Bytes>> {
        let token = self.token.as_ref()?;
        let concurrent = matches!(self.layout, Layout::Conc(_));
        let sid = self.session.as_ref().map(|s| s.id.as_str());
        Some(match op.kind {
            OpKind::Start => wire::upload(
                &self.uris.start,
                &wire::start_arg(op.close, concurrent, hash),
                body,
                token,
                &self.common,
            ),
            OpKind::Append => wire::upload(
                &self.uris.append,
                &wire::append_arg(sid?, op.body.start(), op.close, hash),
                body,
                token,
                &self.common,
            ),
            OpKind::Finish => wire::upload(
                &self.uris.finish,
                &wire::finish_arg(sid?, op.body.start(), self.opts.commit.as_ref()?, hash),
                body,
                token,
                &self.common,
            ),
            OpKind::Lookup => wire::rpc(
                &self.uris.get_metadata,
                &wire::get_metadata_arg(self.opts.commit.as_ref()?.path()),
                token,
                &self.common,
            ),
        })
    }

    fn send(
        &mut self,
        now: Instant,
        op: Op,
        body: Bytes,
        hash: Option<String>,
    ) -> Option<DropboxOutput> {
        let hash = hash.filter(|_| !body.is_empty());
        let Some(request) = self.request(op, body, hash.as_deref()) else {
            self.fail(UploadError::Internal {
                detail: "a request without its session, commit or token",
            });
            return None;
        };
        let id = self.next_id;
        self.next_id += 1;
        let len = request.body().len() as u64;
        let extra = Duration::from_secs(len / self.cfg.min_throughput.max(1));
        let deadline = now.checked_add(self.cfg.request_timeout.saturating_add(extra));
        if let (Layout::Conc(c), Some(k)) = (&mut self.layout, op.chunk) {
            c.in_flight.insert(k);
        }
        self.in_flight.insert(
            id,
            InFlight {
                op,
                token_gen: self.token_gen,
            },
        );
        let kind = match op.kind {
            OpKind::Start => RequestKind::CreateSession,
            OpKind::Append => RequestKind::UploadData { range: op.body },
            OpKind::Finish => RequestKind::Commit,
            OpKind::Lookup => RequestKind::Metadata,
        };
        Some(Output::Send(OutgoingRequest {
            id: RequestId(id),
            kind,
            request,
            deadline,
            secret_uri: false,
        }))
    }

    /// One step of the poll loop: an output, or `None` when the state changed (poll
    /// again) — `Err(())` when there is nothing to do until an input arrives.
    fn step(&mut self, now: Instant) -> Result<Option<DropboxOutput>, ()> {
        match &self.stage {
            Stage::Verify(..) | Stage::Close => {
                if !self.in_flight.is_empty() {
                    return Err(());
                }
                if let Some(gap) = self.ledger.gap(self.size, self.hash_read_len()) {
                    self.need = Some(Need {
                        range: gap,
                        hash_only: true,
                    });
                    return Ok(None);
                }
                self.conclude();
                return Ok(None);
            }
            _ => {}
        }
        if self.paused(now) {
            return Err(());
        }
        let Some(op) = self.plan() else {
            if let (Stage::Upload, Layout::Conc(c)) = (&self.stage, &self.layout) {
                if c.all_done() && self.in_flight.is_empty() {
                    self.stage = if self.commit_mode() {
                        Stage::Finish
                    } else {
                        Stage::Close
                    };
                    return Ok(None);
                }
            }
            // Nothing may be sent now: read (and hash) what will be sent next.
            if let Some(range) = self.read_ahead_range() {
                self.need = Some(Need {
                    range,
                    hash_only: false,
                });
                return Ok(None);
            }
            return Err(());
        };
        if self.token.is_none() {
            return Err(());
        }
        if matches!(op.kind, OpKind::Append | OpKind::Finish) && !self.session_usable(now) {
            self.restart(UploadError::SessionExpired);
            return Ok(None);
        }
        if !op.body.is_empty() {
            // Sequential: hash what the server holds but this process never read (a
            // resumed session that was further along) before reading on.
            if matches!(self.layout, Layout::Seq(_)) && op.body.start() > self.ledger.prefix_len() {
                let start = self.ledger.prefix_len();
                let end = op
                    .body
                    .start()
                    .min(start.saturating_add(self.hash_read_len()));
                if let Some(range) = ByteRange::new(start, end) {
                    self.need = Some(Need {
                        range,
                        hash_only: true,
                    });
                    return Ok(None);
                }
            }
            match self.held_body(op.body) {
                Some((body, hash)) => Ok(self.send(now, op, body, Some(hash))),
                None => {
                    if matches!(self.layout, Layout::Seq(_)) {
                        self.held.clear();
                    }
                    self.need = Some(Need {
                        range: op.body,
                        hash_only: false,
                    });
                    Ok(None)
                }
            }
        } else {
            Ok(self.send(now, op, Bytes::new(), None))
        }
    }

    /// True when `range` lies inside one held body.
    fn holds(&self, range: ByteRange) -> bool {
        self.held
            .range(..=range.start())
            .next_back()
            .is_some_and(|(&start, h)| start.saturating_add(h.data.len() as u64) >= range.end())
    }

    /// The body to read ahead while requests are in flight and nothing else may be sent
    /// (`None`: read-ahead is off, full, or there is nothing to read). Only bodies the
    /// plan will send next *if every request in flight succeeds* qualify: sequential,
    /// the chunks right after the one in flight; concurrent, the next chunks in dispatch
    /// order that are neither done nor in flight. At most `read_ahead` of them are held
    /// besides the bodies in flight, so `held` stays within `(in-flight + read_ahead)`
    /// chunks. Read-ahead bytes extend the hash ledger but never the acknowledged
    /// offset, so checkpoints do not claim them.
    fn read_ahead_range(&self) -> Option<ByteRange> {
        let depth = self.opts.read_ahead;
        if depth == 0 || self.in_flight.is_empty() || self.token.is_none() {
            return None;
        }
        let candidates: Vec<ByteRange> = match (&self.stage, &self.layout) {
            (Stage::Start | Stage::Upload, Layout::Seq(_)) => {
                // One request at a time: what follows it if it lands.
                let mut it = self.in_flight.values();
                let f = it.next()?;
                if it.next().is_some() || f.op.kind == OpKind::Finish {
                    return None;
                }
                let mut q = Seq {
                    offset: f.op.body.end(),
                    closed: f.op.close,
                };
                let mut out = Vec::new();
                for _ in 0..depth {
                    let next = q.next_op(
                        self.size,
                        self.opts.chunk_size,
                        self.commit_mode(),
                        self.opts.last_chunk_in_finish,
                    );
                    if next.body.is_empty() {
                        break;
                    }
                    out.push(next.body);
                    q.offset = next.body.end();
                    q.closed = next.close;
                }
                out
            }
            (Stage::Upload, Layout::Conc(c)) => c.upcoming(depth as usize, self.opts.parallelism),
            _ => return None,
        };
        // A resumed sequential session reads the gap the ledger lacks first (hash only);
        // read ahead only in order after the hashed prefix.
        let hashed = self.ledger.prefix_len();
        candidates
            .into_iter()
            .filter(|r| !matches!(self.layout, Layout::Seq(_)) || r.start() <= hashed)
            .find(|&r| !self.holds(r))
    }

    fn hash_read_len(&self) -> u64 {
        self.opts.chunk_size.max(BLOCK_SIZE)
    }

    /// Verify / Close, once every byte is hashed.
    fn conclude(&mut self) {
        let Some(ours) = self.ledger.finish(self.size) else {
            self.fail(UploadError::Internal {
                detail: "concluding before every byte is hashed",
            });
            return;
        };
        let restarts = self.restarts;
        match std::mem::replace(&mut self.stage, Stage::Close) {
            Stage::Close => {
                let Some(s) = &self.session else {
                    self.fail(UploadError::Internal {
                        detail: "closed without a session",
                    });
                    return;
                };
                let session = ClosedSession {
                    session_id: s.id.clone(),
                    size: self.size,
                    content_hash: ours,
                };
                self.finish(Ok(Completed::Closed { session, restarts }));
            }
            Stage::Verify(meta, purpose) => {
                let size_ok = meta.size == self.size;
                let hash = meta
                    .content_hash
                    .as_deref()
                    .map(|h| h.eq_ignore_ascii_case(&ours));
                match purpose {
                    Purpose::Commit => {
                        if !size_ok {
                            self.fail(UploadError::SizeMismatch {
                                expected: self.size,
                                actual: Some(meta.size),
                            });
                        } else if hash == Some(false) {
                            self.fail(UploadError::HashMismatch {
                                algorithm: HashAlgorithm::DropboxContentHash,
                                expected: ours,
                                actual: meta.content_hash.clone().unwrap_or_default(),
                            });
                        } else {
                            self.finish(Ok(Completed::Committed(Box::new(Committed {
                                metadata: *meta,
                                content_hash: ours,
                                hash_verified: hash == Some(true),
                                restarts,
                            }))));
                        }
                    }
                    Purpose::AfterLoss => {
                        if size_ok && hash == Some(true) {
                            self.finish(Ok(Completed::Committed(Box::new(Committed {
                                metadata: *meta,
                                content_hash: ours,
                                hash_verified: true,
                                restarts,
                            }))));
                        } else {
                            // The file there is not ours: the commit did not happen.
                            self.not_committed();
                        }
                    }
                }
            }
            other => {
                self.stage = other;
                self.fail(UploadError::Internal {
                    detail: "conclude outside Verify/Close",
                });
            }
        }
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, f: InFlight, resp: http::Response<Bytes>) {
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        let wall = self.wall_now(now);
        match classify(
            &mut self.pacer,
            &self.cfg,
            wall,
            status,
            &parts.headers,
            &body,
        ) {
            Class::Success => self.on_success(now, f.op, status, &body),
            Class::Retry {
                cause,
                hint,
                ambiguous,
            } => {
                if ambiguous && f.op.kind == OpKind::Finish {
                    self.finish_in_doubt();
                }
                self.retry_later(now, cause, hint);
            }
            Class::Token => self.need_token(f.token_gen),
            Class::Api(e) => self.on_api_error(now, f.op, e),
            Class::Fatal(e) => self.fail(e),
        }
    }

    fn on_success(&mut self, now: Instant, op: Op, status: u16, body: &[u8]) {
        let cap = self.cfg.max_response_body;
        match op.kind {
            OpKind::Start => match wire::parse_session_id(body, cap) {
                Err(detail) => {
                    // A session may exist that we cannot use; start another.
                    self.retry_later(now, UploadError::MalformedResponse { status, detail }, None);
                }
                Ok(id) => {
                    let wall = self.wall_now(now);
                    self.session = Some(Session {
                        id,
                        created_mono: Some(now),
                        created_wall: wall,
                        resumed: false,
                    });
                    self.pacer.reset(0);
                    self.finish_unsure = false;
                    let lifetime = self.cfg.session_lifetime;
                    self.event(Event::SessionCreated {
                        expires_at: wall.and_then(|w| w.checked_add(lifetime)),
                    });
                    self.stage = Stage::Upload;
                    if let Layout::Seq(s) = &mut self.layout {
                        s.offset = op.body.end();
                        s.closed = op.close;
                        if op.close && self.opts.commit.is_none() {
                            self.stage = Stage::Close;
                        }
                    }
                    self.release_held();
                    self.emit_progress();
                }
            },
            OpKind::Append => match &mut self.layout {
                Layout::Seq(_) => self.seq_landed(op.body.end(), op.close),
                Layout::Conc(c) => {
                    let k = op.chunk.unwrap_or(u64::MAX);
                    if c.complete(k) {
                        self.release_held();
                        self.emit_progress();
                    }
                }
            },
            OpKind::Finish => match wire::parse_metadata(body, cap) {
                Ok(meta) => {
                    self.session = None;
                    self.held.clear();
                    self.stage = Stage::Verify(Box::new(meta), Purpose::Commit);
                }
                Err(detail) => {
                    // Committed, most likely, but unreadable: look the file up.
                    self.finish_in_doubt();
                    self.retry_later(now, UploadError::MalformedResponse { status, detail }, None);
                }
            },
            OpKind::Lookup => match wire::parse_metadata(body, cap) {
                Ok(meta) => {
                    self.stage = Stage::Verify(Box::new(meta), Purpose::AfterLoss);
                }
                Err(detail) => {
                    self.retry_later(now, UploadError::MalformedResponse { status, detail }, None);
                }
            },
        }
    }

    /// A sequential request landed up to `end` (closing the session when `close`).
    fn seq_landed(&mut self, end: u64, close: bool) {
        let Layout::Seq(s) = &mut self.layout else {
            return;
        };
        s.offset = s.offset.max(end);
        s.closed |= close;
        let closed = s.closed;
        if closed && !self.commit_mode() {
            self.stage = Stage::Close;
        }
        self.release_held();
        self.emit_progress();
    }

    fn contradiction(&mut self, detail: String) {
        self.fail(UploadError::ServerContradiction { detail });
    }

    fn rejected(&mut self, e: ApiError) {
        self.fail(UploadError::Rejected {
            status: 409,
            codes: e.tags,
        });
    }

    fn on_api_error(&mut self, now: Instant, op: Op, e: ApiError) {
        let resumed = self.session.as_ref().is_some_and(|s| s.resumed);
        match op.kind {
            OpKind::Start => {
                if e.is(&["content_hash_mismatch"]) {
                    self.retry_later(now, UploadError::RequestHashRejected, None);
                } else {
                    self.rejected(e);
                }
            }
            OpKind::Append => {
                let first = e.first().unwrap_or("");
                match first {
                    "not_found" => self.session_gone(resumed),
                    "content_hash_mismatch" => {
                        self.retry_later(now, UploadError::RequestHashRejected, None)
                    }
                    "incorrect_offset" => match &self.layout {
                        Layout::Seq(_) => self.seq_offset(now, op, e.correct_offset),
                        Layout::Conc(_) => self.contradiction(format!(
                            "incorrect_offset on a concurrent append at {}",
                            op.body.start()
                        )),
                    },
                    "closed" => self.on_closed(op, resumed),
                    _ => self.rejected(e),
                }
            }
            OpKind::Finish => {
                let first = e.first().unwrap_or("");
                match first {
                    "lookup_failed" => {
                        let second = e.tags.0.get(1).map(String::as_str).unwrap_or("");
                        match second {
                            "not_found" => self.session_gone(resumed || self.finish_unsure),
                            "incorrect_offset" => match &self.layout {
                                Layout::Seq(_) => self.seq_offset(now, op, e.correct_offset),
                                Layout::Conc(_) => self.contradiction(format!(
                                    "finish at {} met incorrect_offset {:?}",
                                    op.body.start(),
                                    e.correct_offset
                                )),
                            },
                            "closed" if resumed && !op.body.is_empty() => {
                                // An earlier process closed the session: finish empty.
                                if let Layout::Seq(s) = &mut self.layout {
                                    s.closed = true;
                                    s.offset = self.size;
                                }
                            }
                            _ => self.rejected(e),
                        }
                    }
                    "path" => {
                        // The finish body is in the session now (§5): continue at the
                        // advanced offset with an empty body.
                        if let Layout::Seq(s) = &mut self.layout {
                            s.offset = s.offset.max(op.body.end());
                        }
                        let second = e.tags.0.get(1).map(String::as_str).unwrap_or("");
                        match second {
                            "too_many_write_operations" => {
                                let wait = self.throttle_wait(None);
                                self.retry_later(
                                    now,
                                    UploadError::WriteContention {
                                        status: 409,
                                        retry_after: Some(wait),
                                    },
                                    Some(wait),
                                );
                            }
                            "conflict" => self.fail(UploadError::Conflict { codes: e.tags }),
                            "insufficient_space" => {
                                self.fail(UploadError::QuotaExceeded { codes: e.tags })
                            }
                            _ => self.rejected(e),
                        }
                    }
                    "content_hash_mismatch" => {
                        self.retry_later(now, UploadError::RequestHashRejected, None)
                    }
                    _ => self.rejected(e),
                }
            }
            OpKind::Lookup => {
                if e.is(&["path", "not_found"]) {
                    // Not committed.
                    self.not_committed();
                } else {
                    self.rejected(e);
                }
            }
        }
    }

    /// A finish ended without a visible answer (5xx, lost response, garbled success):
    /// it may have committed the file, which consumes the session. Look the file up
    /// before sending the finish again (dropbox.md §11), so a consumed session is not
    /// used again.
    fn finish_in_doubt(&mut self) {
        self.finish_unsure = true;
        self.stage = Stage::Lookup;
    }

    /// The lookup shows the commit did not happen: finish again (a finish that meets
    /// `not_found` now means the session expired), or start a new session when the
    /// server already said this one is gone.
    fn not_committed(&mut self) {
        self.finish_unsure = false;
        if self.session.is_none() {
            self.restart(UploadError::SessionNotFound);
            return;
        }
        self.stage = match self.layout {
            Layout::Seq(_) => Stage::Upload,
            Layout::Conc(_) => Stage::Finish,
        };
    }

    /// The server does not know the session. When it may have been consumed by a commit
    /// whose answer this process never saw (a finish in doubt, or a session resumed from
    /// a checkpoint taken before an earlier process's finish), look the file up first;
    /// otherwise (or when the file is not ours) start a new session.
    fn session_gone(&mut self, maybe_committed: bool) {
        if maybe_committed && self.commit_mode() {
            self.session = None;
            self.finish_unsure = false;
            self.stage = Stage::Lookup;
        } else {
            self.restart(UploadError::SessionNotFound);
        }
    }

    /// `closed` on an append.
    fn on_closed(&mut self, op: Op, resumed: bool) {
        if op.close {
            // A retried closing append whose first answer was lost: it landed (§11).
            match &mut self.layout {
                Layout::Seq(_) => self.seq_landed(op.body.end(), true),
                Layout::Conc(c) => {
                    let k = op.chunk.unwrap_or(u64::MAX);
                    if c.complete(k) {
                        self.release_held();
                        self.emit_progress();
                    }
                }
            }
        } else if resumed {
            // An earlier process closed the session; let the finish's checks decide.
            match &mut self.layout {
                Layout::Seq(s) => {
                    s.closed = true;
                    s.offset = self.size;
                    if self.opts.commit.is_none() {
                        self.stage = Stage::Close;
                    }
                }
                Layout::Conc(c) => {
                    c.reset();
                    c.low_water = c.count;
                    c.done_bytes = self.size;
                    c.closed = true;
                    self.abandon_in_flight();
                    self.stage = if self.opts.commit.is_some() {
                        Stage::Finish
                    } else {
                        Stage::Close
                    };
                }
            }
            self.held.clear();
        } else {
            self.fail(UploadError::SessionClosed);
        }
    }

    /// `incorrect_offset{c}` on a sequential append or finish.
    fn seq_offset(&mut self, now: Instant, op: Op, c: Option<u64>) {
        let Some(c) = c else {
            self.retry_later(
                now,
                UploadError::MalformedResponse {
                    status: 409,
                    detail: "incorrect_offset without correct_offset".into(),
                },
                None,
            );
            return;
        };
        let resumed = self.session.as_ref().is_some_and(|s| s.resumed);
        let before = match &self.layout {
            Layout::Seq(s) => s.offset,
            Layout::Conc(_) => return,
        };
        let verdict = sequential::resync(op.body, c, self.size, resumed);
        if matches!(verdict, Resync::Landed | Resync::At(_)) && c <= before {
            // No progress (the server repeats the offset the request used): a garbled
            // answer, retried within the budget rather than looped on.
            self.retry_later(
                now,
                UploadError::OffsetMismatch {
                    server: Some(c),
                    sent: op.body.start(),
                },
                None,
            );
            return;
        }
        match verdict {
            Resync::Landed => {
                if op.body.end() != op.body.start() {
                    self.event(Event::Resynced {
                        expected: op.body.start(),
                        server: c,
                    });
                }
                self.seq_landed(c, op.close && op.kind == OpKind::Append);
            }
            Resync::At(c) => {
                self.event(Event::Resynced {
                    expected: op.body.start(),
                    server: c,
                });
                if let Layout::Seq(s) = &mut self.layout {
                    s.offset = c;
                }
                self.release_held();
                self.emit_progress();
            }
            Resync::Behind => self.restart(UploadError::OffsetMismatch {
                server: Some(c),
                sent: op.body.start(),
            }),
            Resync::Impossible => self.contradiction(format!(
                "server offset {c} beyond the {} bytes sent of a {}-byte file",
                op.body.end(),
                self.size
            )),
        }
    }

    fn on_failure(&mut self, now: Instant, f: InFlight, failure: TransportFailure) {
        if f.op.kind == OpKind::Finish && failure != TransportFailure::Connect {
            self.finish_in_doubt();
        }
        self.retry_later(now, UploadError::Transport(failure), None);
    }

    /// Finds in-flight request `id`; `Ok(None)` for a stale one.
    fn take_in_flight(&mut self, id: RequestId) -> Result<Option<InFlight>, Misuse> {
        if id.0 >= self.next_id {
            return Err(Misuse::UnknownRequest(id));
        }
        if self.abandoned.remove(&id.0) {
            if self.result.is_none() {
                self.event(Event::StaleResponse { id });
            }
            return Ok(None);
        }
        match self.in_flight.remove(&id.0) {
            Some(f) if self.result.is_none() => {
                if let (Layout::Conc(c), Some(k)) = (&mut self.layout, f.op.chunk) {
                    c.in_flight.remove(&k);
                }
                Ok(Some(f))
            }
            _ => {
                if self.result.is_none() {
                    self.event(Event::StaleResponse { id });
                }
                Ok(None)
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.pacer.deadline(now)
    }
}

impl UploadMachine for DropboxUpload {
    type Completed = Completed;
    type Checkpoint = Checkpoint;

    /// Returns the next output. Order: queued events first, then the final result,
    /// then data to read, then requests (several, for a concurrent session), then a wait.
    fn poll_output(&mut self, now: Instant) -> DropboxOutput {
        let now = self.clamp(now);
        // Every iteration returns or changes the state; the bound guards against a bug
        // turning into a hang.
        for _ in 0..256 {
            if let Some(e) = self.events.pop_front() {
                return Output::Event(e);
            }
            if let Some(r) = &self.result {
                return Output::Finished(r.clone());
            }
            if let Some(n) = self.need {
                return Output::NeedData {
                    offset: n.range.start(),
                    len: n.range.len(),
                };
            }
            match self.step(now) {
                Ok(Some(out)) => return out,
                Ok(None) => {}
                Err(()) => {
                    if self.result.is_some() || !self.events.is_empty() {
                        continue;
                    }
                    return Output::Wait(self.next_deadline(now));
                }
            }
        }
        self.fail(UploadError::Internal {
            detail: "the state machine did not settle",
        });
        Output::Finished(self.result.clone().unwrap_or(Err(UploadError::Internal {
            detail: "no result",
        })))
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: http::Response<Bytes>,
    ) -> Result<(), Misuse> {
        let now = self.clamp(now);
        let Some(f) = self.take_in_flight(id)? else {
            return Ok(());
        };
        self.on_response(now, f, response);
        Ok(())
    }

    fn handle_failure(
        &mut self,
        now: Instant,
        id: RequestId,
        failure: TransportFailure,
    ) -> Result<(), Misuse> {
        let now = self.clamp(now);
        let Some(f) = self.take_in_flight(id)? else {
            return Ok(());
        };
        self.on_failure(now, f, failure);
        Ok(())
    }

    fn provide_data(&mut self, offset: u64, data: Bytes) -> Result<(), Misuse> {
        let len = data.len() as u64;
        let Some(need) = self.need else {
            return Err(Misuse::UnexpectedData { offset, len });
        };
        let range = need.range;
        Misuse::check_data(range, offset, len)?;
        if need.hash_only {
            self.ledger.add(offset, &data, None, self.size);
        } else {
            let aligned =
                offset % BLOCK_SIZE == 0 && (len % BLOCK_SIZE == 0 || range.end() == self.size);
            let hash = if aligned {
                // Each block digest is computed once and serves both the request's
                // content_hash and the whole-file hash.
                let digests = block_digests(&data);
                self.ledger.add(offset, &data, Some(&digests), self.size);
                hash_of_digests(&digests)
            } else {
                self.ledger.add(offset, &data, None, self.size);
                content_hash(&data)
            };
            self.held.insert(offset, Held { data, hash });
        }
        self.need = None;
        Ok(())
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

    /// Cancels the upload. Dropbox has no call to delete an upload session: an
    /// uncommitted session expires on its own after 7 days. Finishes with
    /// `UploadError::Cancelled { session_deleted }`, true only when no session was
    /// started.
    fn cancel(&mut self, now: Instant) {
        self.clamp(now);
        if self.result.is_some() {
            return;
        }
        let deleted = self.session.is_none() && self.in_flight.is_empty();
        self.fail(UploadError::Cancelled {
            session_deleted: deleted,
        });
    }

    fn is_finished(&self) -> bool {
        self.result.is_some()
    }
}
