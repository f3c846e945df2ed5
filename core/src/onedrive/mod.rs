//! The OneDrive (Microsoft Graph) upload-session machine: [`OneDriveUpload`].
//!
//! Follows onedrive.md §10 (the distilled client machine) and answers every status of
//! §5.3. The phases:
//!
//! ```text
//!            set_access_token                      zero-byte file
//!   NeedToken ─────────────┐            ┌──────────────────────────────▶ SimpleUpload ─┐
//!       ▲ 401              ▼            │                                              │
//!       └──────────── Creating ─────────┴─ 200 ─▶ Uploading ◀──────────┐               │
//!              409/412/507 │ ▲                    │  │  │ 202 [next]  │               │
//!                   Failed ◀┘ │ restart (404,     │  │  └─────────────┘               │
//!                             │ 401, expiry)      │  │ 416 / 5xx / reset / timeout    │
//!                             │                   │  ▼   (after Backoff)              │
//!                             └────────────── Querying ──▶ Uploading (server offset)  │
//!                                                 │                                   │
//!            202 []  (deferCommit) ─▶ AwaitingCommit ─commit()─▶ Committing           │
//!                                                                   │                 │
//!   200/201 item ──────────────────────────────────────────────▶ Verifying ◀──────────┘
//!   (no id: GET item; lost final response: GET item, else restart)  │ size + QuickXorHash
//!                                                                   ▼ (+ SHA-256)
//!                                                          Done / Failed(integrity)
//!   cancel() at any time ─▶ Cancelling (DELETE; 204 or 404) ─▶ Cancelled
//! ```

mod checkpoint;
mod config;
mod item;
pub mod limits;
mod quickxor;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub use checkpoint::Checkpoint;
pub use config::{
    ConflictBehavior, DeferCommit, Drive, FileSystemInfo, FragmentSize, Location, NotFoundPolicy,
    OneDriveConfig, Target, UploadOptions,
};
pub use item::{Completed, DriveItem, Verification};
pub use quickxor::QuickXorHash;

use crate::checkpoint::{CHECKPOINT_VERSION, SourceFingerprint};
use crate::error::{BuildError, HashAlgorithm, Misuse, ResumeError, ServiceCodes, UploadError};
use crate::hash::Sha256State;
use crate::machine::UploadMachine;
use crate::output::{Event, OutgoingRequest, Output, RequestId, RequestKind, TransportFailure};
use crate::range::ByteRange;
use crate::retry::{BudgetExhausted, Jitter, RetryBudget};
use crate::secret::{AccessToken, SecretString};
use crate::wallclock::{RetryAfter, WallAnchor, format_rfc3339, parse_http_date, parse_rfc3339};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Uri};
use limits::{FRAGMENT_UNIT, MAX_READ_AHEAD};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// How often a session abandoned by this upload is deleted because a new create
/// conflicts with it, before the conflict is reported.
const MAX_STALE_DELETES: u32 = 3;

/// The output type of a [`OneDriveUpload`].
pub type OneDriveOutput = Output<Completed, Checkpoint>;
/// The event type of a [`OneDriveUpload`].
pub type OneDriveEvent = Event<Checkpoint>;

/// What the machine is doing, for logs and assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for `set_access_token`.
    NeedToken,
    /// Creating a session (or deleting a stale one first).
    Creating,
    /// Reading or sending a fragment (or uploading an empty file).
    Uploading,
    /// Asking the server where it stands.
    Querying,
    /// Waiting before a retry.
    Backoff,
    /// Reading acknowledged bytes only to hash them (after a resume).
    Hashing,
    /// All bytes are in; waiting for [`OneDriveUpload::commit`].
    AwaitingCommit,
    /// Committing a deferred upload.
    Committing,
    /// Fetching or checking the final item.
    Verifying,
    /// Deleting the session after `cancel`.
    Cancelling,
    /// Finished successfully.
    Done,
    /// Finished with an error.
    Failed,
    /// Finished by `cancel`.
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemPurpose {
    /// The server said the upload completed but sent no item: fetch and verify strictly.
    Completed,
    /// The session vanished after the last byte may have landed: a matching item means
    /// done, anything else means the upload did not complete.
    AfterLoss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeleteReason {
    Cancel,
    /// An abandoned session blocks a new create (OneDrive for Business 409).
    Stale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Create,
    Put,
    Query,
    Commit,
    GetItem(ItemPurpose),
    SimpleUpload,
    Delete(DeleteReason),
    /// Local: check the pending item against the source.
    Verify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ready(Action),
    InFlight {
        id: u64,
        action: Action,
        range: Option<ByteRange>,
    },
    Waiting {
        until: Instant,
        action: Action,
    },
    NeedToken(Action),
    NeedData {
        range: ByteRange,
        /// Keep the bytes to send them (a fragment) or only hash them.
        hold: bool,
        then: Action,
    },
    AwaitingCommit,
    Done,
}

#[derive(Clone)]
struct Session {
    url: Uri,
    url_text: SecretString,
    expires: Option<SystemTime>,
    expiration_text: Option<String>,
    created_mono: Option<Instant>,
    created_wall: Option<SystemTime>,
    /// One past the highest byte sent in this session (resumed: the file size, since
    /// anything may have been sent before).
    sent_end: u64,
    resumed: bool,
    commit_sent: bool,
}

/// One OneDrive upload: a sans-IO state machine (see the [crate docs](crate) for the
/// drive loop and [`Phase`] for the states).
///
/// Build it with [`OneDriveUpload::builder`], or continue one with
/// [`OneDriveUpload::resume`]. It implements [`UploadMachine`].
pub struct OneDriveUpload {
    cfg: OneDriveConfig,
    opts: UploadOptions,
    size: u64,
    fingerprint: SourceFingerprint,
    create_uri: Uri,
    item_uri: Uri,
    content_uri: Uri,
    token: Option<AccessToken>,

    step: Step,
    events: VecDeque<OneDriveEvent>,
    result: Option<Result<Completed, UploadError>>,

    session: Option<Session>,
    stale: Option<Session>,
    offset: u64,
    /// The bytes of the fragment being sent (kept to send it again).
    held: Option<(u64, Bytes)>,
    /// Fragments read ahead ([`OneDriveConfig::read_ahead`]): in file order, each
    /// starting where the one before it (or the fragment in flight) ends.
    ahead: VecDeque<(u64, Bytes)>,
    /// The read-ahead range of the `NeedData` handed out while a fragment travels.
    ahead_want: Option<ByteRange>,

    qxh: QuickXorHash,
    sha: Option<Sha256State>,
    hashed: u64,

    budget: RetryBudget,
    jitter: Jitter,
    restarts: u32,
    next_id: u64,
    now: Option<Instant>,
    anchor: Option<WallAnchor>,
    anchor_explicit: bool,

    create_ambiguous: bool,
    orphan_waits: u32,
    stale_deletes: u32,
    simple_ambiguous: bool,
    bad_request_at: Option<u64>,
    cancel_requested: bool,
    pending_item: Option<(DriveItem, ItemPurpose)>,
}

impl fmt::Debug for OneDriveUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneDriveUpload")
            .field("phase", &self.phase())
            .field("target", &self.opts.target)
            .field("size", &self.size)
            .field("acknowledged", &self.offset)
            .field("hashed", &self.hashed)
            .field("restarts", &self.restarts)
            .field("has_session", &self.session.is_some())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Builds a [`OneDriveUpload`].
///
/// # Examples
/// ```
/// use upload_session::onedrive::{ConflictBehavior, OneDriveUpload, Target};
/// use upload_session::AccessToken;
/// let upload = OneDriveUpload::builder(Target::path("/backups/disk.img"), 50_000_000)
///     .conflict(ConflictBehavior::Replace)
///     .fragment_size(20 * 327_680)
///     .access_token(AccessToken::new("token").unwrap())
///     .build()
///     .unwrap();
/// assert_eq!(upload.size(), 50_000_000);
/// assert!(OneDriveUpload::builder(Target::path("/a"), 10).fragment_size(1000).build().is_err());
/// ```
#[derive(Debug)]
#[must_use]
pub struct Builder {
    opts: UploadOptions,
    fragment: u64,
    size: u64,
    fingerprint: Option<SourceFingerprint>,
    cfg: OneDriveConfig,
    token: Option<AccessToken>,
}

impl Builder {
    /// Sets the conflict behaviour (`None`: not sent, the server decides).
    pub fn conflict(mut self, c: impl Into<Option<ConflictBehavior>>) -> Self {
        self.opts.conflict = c.into();
        self
    }

    /// Sets `item.description`.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.opts.description = Some(d.into());
        self
    }

    /// Sets `item.fileSystemInfo`.
    pub fn file_system_info(mut self, info: FileSystemInfo) -> Self {
        self.opts.file_system_info = Some(info);
        self
    }

    /// Sets `If-Match` on createUploadSession.
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.opts.if_match = Some(etag.into());
        self
    }

    /// Sets the deferCommit mode.
    pub fn defer_commit(mut self, mode: DeferCommit) -> Self {
        self.opts.defer_commit = mode;
        self
    }

    /// Sets the fragment size in bytes (checked by [`build`](Self::build)).
    pub fn fragment_size(mut self, bytes: u64) -> Self {
        self.fragment = bytes;
        self
    }

    /// Whether to send `item.fileSize` (default on).
    pub fn declare_file_size(mut self, on: bool) -> Self {
        self.opts.declare_file_size = on;
        self
    }

    /// Whether to compute SHA-256 too and compare it with the item's `sha256Hash` when
    /// the server reports one (default off: QuickXorHash, always computed and compared,
    /// is the one hash every OneDrive reports, onedrive.md §7.1).
    pub fn verify_sha256(mut self, on: bool) -> Self {
        self.opts.verify_sha256 = on;
        self
    }

    /// Sets the source fingerprint recorded in checkpoints (default: the size and an
    /// empty stamp).
    pub fn fingerprint(mut self, f: SourceFingerprint) -> Self {
        self.fingerprint = Some(f);
        self
    }

    /// Sets the behaviour configuration.
    pub fn config(mut self, cfg: OneDriveConfig) -> Self {
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
    /// A [`BuildError`] naming the first invalid setting.
    pub fn build(mut self) -> Result<OneDriveUpload, BuildError> {
        self.opts.fragment_size = FragmentSize::new(self.fragment)?;
        if self.size > self.cfg.max_file_size {
            return Err(BuildError::FileTooLarge {
                size: self.size,
                max: self.cfg.max_file_size,
            });
        }
        let fingerprint = self
            .fingerprint
            .unwrap_or_else(|| SourceFingerprint::new(self.size, ""));
        if fingerprint.size != self.size {
            return Err(BuildError::FingerprintSize {
                fingerprint: fingerprint.size,
                size: self.size,
            });
        }
        let start = if self.size == 0 {
            Action::SimpleUpload
        } else {
            Action::Create
        };
        OneDriveUpload::assemble(
            self.cfg,
            self.opts,
            self.size,
            fingerprint,
            self.token,
            start,
        )
    }
}

impl OneDriveUpload {
    /// Starts building an upload of `size` bytes to `target`.
    pub fn builder(target: Target, size: u64) -> Builder {
        Builder {
            opts: UploadOptions::new(target),
            fragment: limits::DEFAULT_FRAGMENT,
            size,
            fingerprint: None,
            cfg: OneDriveConfig::default(),
            token: None,
        }
    }

    /// Builds an upload from complete options.
    ///
    /// # Errors
    /// A [`BuildError`] naming the first invalid setting.
    pub fn new(
        options: UploadOptions,
        fingerprint: SourceFingerprint,
        config: OneDriveConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, BuildError> {
        let mut b = Self::builder(options.target.clone(), fingerprint.size)
            .fingerprint(fingerprint)
            .config(config);
        b.fragment = options.fragment_size.get();
        b.opts = options;
        b.token = token;
        b.build()
    }

    fn assemble(
        cfg: OneDriveConfig,
        opts: UploadOptions,
        size: u64,
        fingerprint: SourceFingerprint,
        token: Option<AccessToken>,
        start: Action,
    ) -> Result<Self, BuildError> {
        opts.validate()?;
        let base = cfg.checked_base()?;
        let path = opts.target.api_path()?;
        let bad_url = || BuildError::InvalidBaseUrl {
            value: cfg.graph_base.clone(),
        };
        let create_uri: Uri = format!("{base}{path}/createUploadSession")
            .parse()
            .map_err(|_| bad_url())?;
        let item_uri: Uri = format!("{base}{path}").parse().map_err(|_| bad_url())?;
        let content = match opts.conflict {
            Some(c) => format!(
                "{base}{path}/content?@microsoft.graph.conflictBehavior={}",
                c.as_str()
            ),
            None => format!("{base}{path}/content"),
        };
        let content_uri: Uri = content.parse().map_err(|_| bad_url())?;
        let jitter = Jitter::new(cfg.retry.seed);
        Ok(Self {
            sha: opts.verify_sha256.then(Sha256State::new),
            cfg,
            opts,
            size,
            fingerprint,
            create_uri,
            item_uri,
            content_uri,
            token,
            step: Step::Ready(start),
            events: VecDeque::new(),
            result: None,
            session: None,
            stale: None,
            offset: 0,
            held: None,
            ahead: VecDeque::new(),
            ahead_want: None,
            qxh: QuickXorHash::new(),
            hashed: 0,
            budget: RetryBudget::new(0),
            jitter,
            restarts: 0,
            next_id: 0,
            now: None,
            anchor: None,
            anchor_explicit: false,
            create_ambiguous: false,
            orphan_waits: 0,
            stale_deletes: 0,
            simple_ambiguous: false,
            bad_request_at: None,
            cancel_requested: false,
            pending_item: None,
        })
    }

    /// Continues the upload a [`Checkpoint`] describes. `fingerprint` is the source as it
    /// is now; the first request is a status query of the saved session.
    ///
    /// # Errors
    /// [`ResumeError::SourceChanged`] when the source differs; other variants when the
    /// checkpoint is inconsistent or from another version.
    pub fn resume(
        checkpoint: Checkpoint,
        fingerprint: &SourceFingerprint,
        config: OneDriveConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, ResumeError> {
        checkpoint.check(fingerprint)?;
        let url: Uri = checkpoint
            .upload_url
            .expose()
            .parse()
            .map_err(|_| ResumeError::Inconsistent("uploadUrl is not a URL"))?;
        let base: Uri = config
            .checked_base()?
            .parse()
            .map_err(|_| ResumeError::Inconsistent("the Graph base is not a URL"))?;
        if url.scheme().is_none() {
            return Err(ResumeError::Inconsistent("uploadUrl is not absolute"));
        }
        // A tampered checkpoint must not send file bytes elsewhere (issue 7).
        if let Err(reason) = wire::check_upload_url(&url, &base, &config.upload_url_hosts) {
            return Err(ResumeError::Inconsistent(reason));
        }
        let mut m = Self::assemble(
            config,
            checkpoint.options.clone(),
            checkpoint.size,
            checkpoint.fingerprint.clone(),
            token,
            Action::Query,
        )?;
        m.session = Some(Session {
            url,
            url_text: checkpoint.upload_url.clone(),
            expires: checkpoint.expiration.as_deref().and_then(parse_rfc3339),
            expiration_text: checkpoint.expiration.clone(),
            created_mono: None,
            created_wall: checkpoint
                .session_created
                .as_deref()
                .and_then(parse_rfc3339),
            sent_end: checkpoint.size,
            resumed: true,
            commit_sent: false,
        });
        m.offset = checkpoint.acknowledged;
        m.budget = RetryBudget::new(checkpoint.acknowledged);
        m.hashed = checkpoint.hashed;
        m.qxh = checkpoint.quick_xor;
        m.sha = checkpoint.sha256;
        Ok(m)
    }

    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes the server has acknowledged (its last reported offset).
    pub fn acknowledged(&self) -> u64 {
        self.offset
    }

    /// Sessions abandoned and recreated so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The upload's options.
    pub fn options(&self) -> &UploadOptions {
        &self.opts
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
        let of = |a: Action| match a {
            Action::Create | Action::Delete(DeleteReason::Stale) => Phase::Creating,
            Action::Put | Action::SimpleUpload => Phase::Uploading,
            Action::Query => Phase::Querying,
            Action::Commit => Phase::Committing,
            Action::GetItem(_) | Action::Verify => Phase::Verifying,
            Action::Delete(DeleteReason::Cancel) => Phase::Cancelling,
        };
        match self.step {
            Step::Ready(a) | Step::InFlight { action: a, .. } => of(a),
            Step::Waiting { .. } => Phase::Backoff,
            Step::NeedToken(_) => Phase::NeedToken,
            Step::NeedData { hold: true, .. } => Phase::Uploading,
            Step::NeedData { hold: false, .. } => Phase::Hashing,
            Step::AwaitingCommit => Phase::AwaitingCommit,
            Step::Done => Phase::Done,
        }
    }

    /// Returns a checkpoint of the current state, when a session exists.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let s = self.session.as_ref()?;
        Some(Checkpoint {
            version: CHECKPOINT_VERSION,
            upload_url: s.url_text.clone(),
            expiration: s.expiration_text.clone(),
            session_created: s.created_wall.map(format_rfc3339),
            size: self.size,
            fingerprint: self.fingerprint.clone(),
            acknowledged: self.offset,
            hashed: self.hashed,
            quick_xor: self.qxh.clone(),
            sha256: self.sha.clone(),
            options: self.opts.clone(),
        })
    }

    /// Commits a deferred upload after `Event::ReadyToCommit` (`DeferCommit::Manual`).
    ///
    /// # Errors
    /// [`Misuse::NotNow`] unless the machine is in [`Phase::AwaitingCommit`].
    pub fn commit(&mut self, now: Instant) -> Result<(), Misuse> {
        self.clamp(now);
        if self.step != Step::AwaitingCommit || self.result.is_some() {
            return Err(Misuse::NotNow("commit needs Phase::AwaitingCommit"));
        }
        self.step = Step::Ready(Action::Commit);
        Ok(())
    }

    // ---------------------------------------------------------------- plumbing

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
        self.step = Step::Done;
        self.held = None;
        self.ahead.clear();
        self.ahead_want = None;
        self.pending_item = None;
    }

    fn fail(&mut self, e: UploadError) {
        self.finish(Err(e));
    }

    fn event(&mut self, e: OneDriveEvent) {
        self.events.push_back(e);
    }

    fn send(
        &mut self,
        now: Instant,
        action: Action,
        kind: RequestKind,
        request: http::Request<Bytes>,
        range: Option<ByteRange>,
        secret_uri: bool,
    ) -> OneDriveOutput {
        let id = self.next_id;
        self.next_id += 1;
        let len = request.body().len() as u64;
        let extra = Duration::from_secs(len / self.cfg.min_throughput.max(1));
        let deadline = now.checked_add(self.cfg.request_timeout.saturating_add(extra));
        self.step = Step::InFlight { id, action, range };
        Output::Send(OutgoingRequest {
            id: RequestId(id),
            kind,
            request,
            deadline,
            secret_uri,
        })
    }

    fn retry_later(
        &mut self,
        now: Instant,
        cause: UploadError,
        hint: Option<Duration>,
        then: Action,
    ) {
        match self
            .budget
            .fail(&self.cfg.retry, now, hint, &mut self.jitter)
        {
            Ok(delay) => match now.checked_add(delay) {
                Some(until) => {
                    self.event(Event::RetryScheduled {
                        cause,
                        attempt: self.budget.attempts(),
                        delay,
                    });
                    self.step = Step::Waiting {
                        until,
                        action: then,
                    };
                }
                None => self.fail(UploadError::TooManyRetries {
                    attempts: self.budget.attempts(),
                    elapsed: Duration::ZERO,
                    last: Box::new(cause),
                }),
            },
            Err(ex) => {
                if then == Action::Delete(DeleteReason::Cancel) {
                    self.fail(UploadError::Cancelled {
                        session_deleted: false,
                    });
                    return;
                }
                let (attempts, elapsed) = match ex {
                    BudgetExhausted::Attempts { attempts, elapsed } => (attempts, elapsed),
                    BudgetExhausted::Time { elapsed } => (self.budget.attempts(), elapsed),
                };
                self.fail(UploadError::TooManyRetries {
                    attempts,
                    elapsed,
                    last: Box::new(cause),
                });
            }
        }
    }

    fn retry_after_hint(&self, now: Instant, headers: &HeaderMap) -> Option<Duration> {
        let ra = RetryAfter::parse(wire::header_str(headers, "retry-after")?)?;
        match ra {
            RetryAfter::Delay(d) => Some(d),
            RetryAfter::At(_) => Some(ra.delay_from(self.anchor?.wall_at(now))),
        }
    }

    fn codes(&self, body: &[u8]) -> ServiceCodes {
        wire::error_codes(body, self.cfg.max_response_body)
    }

    /// Handles 429, 503, 423 and 5xx (but 507). Returns false for other statuses.
    fn transient(
        &mut self,
        now: Instant,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        same: Action,
        after_error: Action,
    ) -> bool {
        let hint = self.retry_after_hint(now, headers);
        match status {
            429 => {
                let cause = UploadError::Throttled {
                    status,
                    retry_after: hint,
                };
                self.retry_later(now, cause, hint, same);
                true
            }
            503 => {
                let cause = UploadError::Throttled {
                    status,
                    retry_after: hint,
                };
                self.retry_later(now, cause, hint, after_error);
                true
            }
            423 | 500..=502 | 504..=506 | 508..=599 => {
                let cause = UploadError::ServerError {
                    status,
                    codes: self.codes(body),
                };
                self.retry_later(now, cause, hint, after_error);
                true
            }
            _ => false,
        }
    }

    fn fragment_range(&self, offset: u64) -> Option<ByteRange> {
        let frag = self.opts.fragment_size.get();
        let rem = offset % FRAGMENT_UNIT;
        // onedrive.md §10: after a partial accept, end the fragment on the next
        // 320 KiB boundary so later fragments are aligned again.
        let len = frag.checked_sub(rem)?.min(self.size.checked_sub(offset)?);
        ByteRange::from_len(offset, len)
    }

    /// The body of fragment `range`, from memory when the bytes are there: the fragment
    /// held, else the first fragment read ahead when it covers `range` (read-ahead
    /// behind `range` is dropped). After a resync that moved the fragment grid (a
    /// partial accept, onedrive.md §10) the range can straddle the held fragment and
    /// the read-ahead: it is then assembled from them (one copy, once: the read-ahead
    /// asked for meanwhile ends on the new grid), so a forward-only source is never
    /// asked to go back. `None` when memory does not cover it.
    fn body_for(&mut self, range: ByteRange) -> Option<Bytes> {
        if let Some(b) = self.held_slice(range) {
            return Some(b);
        }
        while let Some((start, bytes)) = self.ahead.front() {
            let end = start.saturating_add(bytes.len() as u64);
            if end > range.start() {
                break;
            }
            self.ahead.pop_front();
        }
        if let Some((start, bytes)) = self.ahead.front() {
            let end = start.saturating_add(bytes.len() as u64);
            if *start <= range.start() && range.end() <= end {
                self.held = self.ahead.pop_front();
                return self.held_slice(range);
            }
        }
        let mut body = BytesMut::new();
        let mut at = range.start();
        for (start, bytes) in self.held.iter().chain(self.ahead.iter()) {
            let end = start.saturating_add(bytes.len() as u64);
            if *start <= at && at < end {
                let to = end.min(range.end());
                let a = usize::try_from(at - start).ok()?;
                let b = usize::try_from(to - start).ok()?;
                body.extend_from_slice(bytes.get(a..b)?);
                at = to;
                if at == range.end() {
                    break;
                }
            }
        }
        if at != range.end() {
            self.ahead.clear();
            return None;
        }
        // The read-ahead keeps only what lies past the body (zero-copy slices).
        while let Some((start, bytes)) = self.ahead.pop_front() {
            let end = start.saturating_add(bytes.len() as u64);
            if end > range.end() {
                let from = usize::try_from(range.end().saturating_sub(start)).ok()?;
                let tail = bytes.slice(from.min(bytes.len())..);
                self.ahead.push_front((start.max(range.end()), tail));
                break;
            }
        }
        self.held = Some((range.start(), body.freeze()));
        self.held_slice(range)
    }

    /// The range to read ahead while a fragment travels (`None`: read-ahead is off or
    /// full, or nothing follows). It continues what memory covers, in file order (so
    /// every byte is still hashed once: it starts at or before `hashed`), and ends
    /// where a fragment the plan sends next ends, if the fragment in flight lands.
    fn read_ahead_range(&self) -> Option<ByteRange> {
        if self.cfg.read_ahead == 0 || self.cancel_requested {
            return None;
        }
        let Step::InFlight {
            action: Action::Put,
            range: Some(r),
            ..
        } = self.step
        else {
            return None;
        };
        let covered = match self.ahead.back() {
            Some((s, b)) => s.saturating_add(b.len() as u64).max(r.end()),
            None => r.end(),
        };
        // Depth in bytes: at most `read_ahead` fragments' worth past the one in flight
        // (the read-ahead left after a resync may be a partial fragment).
        let depth = u64::from(self.cfg.read_ahead).saturating_mul(self.opts.fragment_size.get());
        if covered >= self.size || covered > self.hashed || covered - r.end() >= depth {
            return None;
        }
        let mut planned = self.fragment_range(r.end())?;
        // Bounded: `r` ends on a 320 KiB boundary unless it is the last fragment, so
        // the planned fragments after it are whole fragments (but the last); `covered`
        // is less than `read_ahead` of them past `r`, so `read_ahead` steps reach it.
        for _ in 0..=MAX_READ_AHEAD + 1 {
            if planned.end() > covered {
                return ByteRange::new(covered, planned.end()).filter(|x| !x.is_empty());
            }
            planned = self.fragment_range(planned.end())?;
        }
        None
    }

    /// Bytes of the source held in memory: the fragment being sent and the fragments
    /// read ahead. At most `(1 + read_ahead) × fragment_size`.
    pub fn held_bytes(&self) -> u64 {
        let held = self.held.as_ref().map_or(0, |(_, b)| b.len() as u64);
        self.ahead
            .iter()
            .fold(held, |n, (_, b)| n.saturating_add(b.len() as u64))
    }

    /// Feeds the part of `data` (the bytes of `range`) that the hashes have not seen
    /// yet: each byte exactly once, in file order.
    fn hash_fresh(&mut self, range: ByteRange, data: &Bytes) {
        if range.end() > self.hashed && range.start() <= self.hashed {
            let from = usize::try_from(self.hashed - range.start()).unwrap_or(usize::MAX);
            if let Some(fresh) = data.get(from..) {
                self.qxh.update(fresh);
                if let Some(s) = &mut self.sha {
                    s.update(fresh);
                }
                self.hashed = range.end();
            }
        }
    }

    fn held_slice(&self, range: ByteRange) -> Option<Bytes> {
        let (start, bytes) = self.held.as_ref()?;
        let end = start.checked_add(bytes.len() as u64)?;
        if range.start() < *start || range.end() > end {
            return None;
        }
        let a = usize::try_from(range.start() - start).ok()?;
        let b = usize::try_from(range.end() - start).ok()?;
        Some(bytes.slice(a..b))
    }

    fn wall_now(&self, now: Instant) -> Option<SystemTime> {
        self.anchor.map(|a| a.wall_at(now))
    }

    /// False when the session is past (or within the margin of) its expiry or older
    /// than the configured maximum age.
    fn session_usable(&self, now: Instant) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        let wall = self.wall_now(now);
        if let (Some(exp), Some(w)) = (s.expires, wall) {
            match w.checked_add(self.cfg.expiry_margin) {
                Some(limit) if limit < exp => {}
                _ => return false,
            }
        }
        if let Some(max) = self.cfg.max_session_age {
            let age = match (s.created_mono, s.created_wall, wall) {
                (Some(c), _, _) => Some(now.saturating_duration_since(c)),
                (None, Some(c), Some(w)) => Some(w.duration_since(c).unwrap_or_default()),
                _ => None,
            };
            if age.is_some_and(|a| a >= max) {
                return false;
            }
        }
        true
    }

    /// True when the server itself would no longer accept requests to `s` (past its
    /// expiry by our clock, without margin): such a session must not be touched.
    fn past_expiry(&self, s: &Session, now: Instant) -> bool {
        matches!((s.expires, self.wall_now(now)), (Some(e), Some(w)) if w >= e)
    }

    fn update_expiry(&mut self, text: Option<String>) {
        let Some(text) = text else { return };
        let Some(t) = parse_rfc3339(&text) else {
            return;
        };
        if let Some(s) = &mut self.session {
            s.expires = Some(t);
            s.expiration_text = Some(text);
        }
    }

    /// Abandons the session and starts a new one. `unusable`: the old session can
    /// never be used again (its own token expired), so it is not even kept for a
    /// cleanup DELETE.
    fn restart(&mut self, cause: UploadError, unusable: bool) {
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
        let old = self.session.take();
        self.stale = if unusable { None } else { old };
        self.offset = 0;
        self.budget.reset(0);
        self.bad_request_at = None;
        self.create_ambiguous = false;
        self.stale_deletes = 0;
        self.step = Step::Ready(if self.size == 0 {
            Action::SimpleUpload
        } else {
            Action::Create
        });
    }

    fn emit_progress(&mut self) {
        self.event(Event::Progress {
            acknowledged: self.offset,
            total: self.size,
        });
        if let Some(c) = self.checkpoint() {
            self.event(Event::Checkpoint(c));
        }
    }

    /// Applies a server offset `s` (from a 202 or a status). Returns false when the
    /// machine failed or scheduled something else.
    fn server_offset(&mut self, now: Instant, s: u64, expected: u64, count_stall: bool) -> bool {
        let sent_end = self.session.as_ref().map_or(0, |x| x.sent_end);
        if s >= self.size {
            self.fail(UploadError::ServerContradiction {
                detail: format!("server expects byte {s} of a {}-byte file", self.size),
            });
            return false;
        }
        if s > sent_end {
            self.fail(UploadError::ServerContradiction {
                detail: format!("server expects byte {s}, but only {sent_end} bytes were sent"),
            });
            return false;
        }
        if s != expected {
            self.event(Event::Resynced {
                expected,
                server: s,
            });
        }
        let before = self.offset;
        self.offset = s;
        if self.budget.observe_offset(s) {
            self.bad_request_at = None;
            if let Some((start, b)) = &self.held {
                if start.saturating_add(b.len() as u64) <= s {
                    self.held = None;
                }
            }
            self.emit_progress();
        } else if count_stall && s <= before {
            let cause = UploadError::OffsetMismatch {
                server: Some(s),
                sent: before,
            };
            self.retry_later(now, cause, Some(Duration::ZERO), Action::Put);
            return false;
        }
        true
    }

    /// The server holds every byte.
    fn all_received(&mut self) {
        let sent_end = self.session.as_ref().map_or(0, |x| x.sent_end);
        if sent_end < self.size {
            self.fail(UploadError::ServerContradiction {
                detail: format!(
                    "server reports all {} bytes received, but only {sent_end} were sent",
                    self.size
                ),
            });
            return;
        }
        self.offset = self.size;
        if self.budget.observe_offset(self.size) {
            self.emit_progress();
        }
        self.held = None;
        match self.opts.defer_commit {
            DeferCommit::Auto => self.step = Step::Ready(Action::Commit),
            DeferCommit::Manual => {
                self.step = Step::AwaitingCommit;
                self.event(Event::ReadyToCommit);
            }
            // Not deferred, yet nothing is missing: the final commit failed or the
            // item exists already (onedrive.md §3.2, §3.3 step 3).
            DeferCommit::Off => self.step = Step::Ready(Action::GetItem(ItemPurpose::AfterLoss)),
        }
    }

    fn maybe_complete(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.sent_end >= self.size || s.resumed || s.commit_sent)
    }

    /// The session is gone for good (confirmed 404).
    fn session_gone(&mut self) {
        if self.maybe_complete() {
            self.step = Step::Ready(Action::GetItem(ItemPurpose::AfterLoss));
        } else if self.cfg.not_found == NotFoundPolicy::Fail {
            self.fail(UploadError::SessionNotFound);
        } else {
            // Kept as stale: a 404 may have been transient, and a live session would
            // block the new create (onedrive §1.5); it is deleted only if it does.
            self.restart(UploadError::SessionNotFound, false);
        }
    }

    fn not_found_on_upload(&mut self, now: Instant) {
        if self.cfg.not_found == NotFoundPolicy::ConfirmThenRestart {
            self.retry_later(now, UploadError::SessionNotFound, None, Action::Query);
        } else {
            self.session_gone();
        }
    }

    fn bad_request(&mut self, now: Instant, codes: ServiceCodes) {
        if self.bad_request_at == Some(self.offset) {
            self.fail(UploadError::Rejected { status: 400, codes });
        } else {
            self.bad_request_at = Some(self.offset);
            let cause = UploadError::Rejected { status: 400, codes };
            self.retry_later(now, cause, Some(Duration::ZERO), Action::Query);
        }
    }

    fn finished_body(&mut self, body: &[u8], purpose: ItemPurpose) {
        // The server consumed the session.
        self.session = None;
        self.stale = None;
        match wire::parse_finished(body, self.cfg.max_response_body) {
            wire::Finished::Item(item) => {
                self.pending_item = Some((*item, purpose));
                self.step = Step::Ready(Action::Verify);
            }
            // onedrive §11 rule 27: no id → fetch the item.
            wire::Finished::NoItem => {
                self.step = Step::Ready(Action::GetItem(ItemPurpose::Completed));
            }
        }
    }

    fn verify(&mut self, item: DriveItem, purpose: ItemPurpose) {
        let size_ok = item.size == Some(self.size);
        let ours_qx = self.qxh.digest();
        let qx = item
            .quick_xor_hash
            .as_deref()
            .map(|h| QuickXorHash::decode_digest(h) == Some(ours_qx));
        let ours_sha = self.sha.as_ref().map(Sha256State::hex);
        let sha = match (&item.sha256_hash, &ours_sha) {
            (Some(theirs), Some(ours)) => Some(theirs.trim().eq_ignore_ascii_case(ours)),
            _ => None,
        };
        match purpose {
            ItemPurpose::Completed => {
                if !size_ok {
                    self.fail(UploadError::SizeMismatch {
                        expected: self.size,
                        actual: item.size,
                    });
                } else if qx == Some(false) {
                    self.fail(UploadError::HashMismatch {
                        algorithm: HashAlgorithm::QuickXor,
                        expected: self.qxh.base64(),
                        actual: item.quick_xor_hash.clone().unwrap_or_default(),
                    });
                } else if sha == Some(false) {
                    self.fail(UploadError::HashMismatch {
                        algorithm: HashAlgorithm::Sha256,
                        expected: ours_sha.unwrap_or_default(),
                        actual: item.sha256_hash.clone().unwrap_or_default(),
                    });
                } else {
                    let restarts = self.restarts;
                    self.finish(Ok(Completed {
                        item,
                        verification: Verification {
                            quick_xor: qx == Some(true),
                            sha256: sha == Some(true),
                        },
                        restarts,
                    }));
                }
            }
            ItemPurpose::AfterLoss => {
                if size_ok && qx == Some(true) && sha != Some(false) {
                    let restarts = self.restarts;
                    self.finish(Ok(Completed {
                        item,
                        verification: Verification {
                            quick_xor: true,
                            sha256: sha == Some(true),
                        },
                        restarts,
                    }));
                } else if self.cfg.not_found == NotFoundPolicy::Fail {
                    self.fail(UploadError::SessionNotFound);
                } else {
                    self.restart(UploadError::SessionNotFound, false);
                }
            }
        }
    }

    fn need_token(&mut self, action: Action) {
        self.token = None;
        self.step = Step::NeedToken(action);
        self.event(Event::TokenNeeded);
    }

    // ---------------------------------------------------------------- starting actions

    /// Starts `action`; returns output to hand out, or `None` when the state changed
    /// without output (the poll loop continues).
    fn start(&mut self, now: Instant, action: Action) -> Option<OneDriveOutput> {
        match action {
            Action::Create => {
                if self.cancel_requested {
                    let deleted = self.stale.is_none();
                    self.fail(UploadError::Cancelled {
                        session_deleted: deleted,
                    });
                    return None;
                }
                let Some(token) = &self.token else {
                    self.step = Step::NeedToken(Action::Create);
                    self.event(Event::TokenNeeded);
                    return None;
                };
                let req = wire::create(&self.create_uri, &self.opts, self.size, token);
                Some(self.send(now, action, RequestKind::CreateSession, req, None, false))
            }
            Action::Put => {
                if !self.session_usable(now) {
                    self.restart(UploadError::SessionExpired, false);
                    return None;
                }
                let Some(range) = self.fragment_range(self.offset).filter(|r| !r.is_empty()) else {
                    self.step = Step::Ready(Action::Query);
                    return None;
                };
                if range.start() > self.hashed {
                    // Resumed behind the server: hash the bytes it already holds first.
                    let end = range
                        .start()
                        .min(self.hashed.saturating_add(self.opts.fragment_size.get()));
                    let hash_range = ByteRange::new(self.hashed, end)?;
                    self.step = Step::NeedData {
                        range: hash_range,
                        hold: false,
                        then: Action::Put,
                    };
                    return None;
                }
                let Some(body) = self.body_for(range) else {
                    self.held = None;
                    self.step = Step::NeedData {
                        range,
                        hold: true,
                        then: Action::Put,
                    };
                    return None;
                };
                let s = self.session.as_mut()?;
                s.sent_end = s.sent_end.max(range.end());
                let req = wire::fragment(&s.url, range, self.size, body);
                Some(self.send(
                    now,
                    action,
                    RequestKind::UploadData { range },
                    req,
                    Some(range),
                    true,
                ))
            }
            Action::Query | Action::Commit => {
                if !self.session_usable(now) {
                    self.restart(UploadError::SessionExpired, false);
                    return None;
                }
                let s = self.session.as_mut()?;
                let (req, kind) = if action == Action::Query {
                    (wire::status(&s.url), RequestKind::QueryStatus)
                } else {
                    s.commit_sent = true;
                    (wire::commit(&s.url), RequestKind::Commit)
                };
                Some(self.send(now, action, kind, req, None, true))
            }
            Action::GetItem(_) | Action::SimpleUpload => {
                let Some(token) = &self.token else {
                    self.step = Step::NeedToken(action);
                    self.event(Event::TokenNeeded);
                    return None;
                };
                let (req, kind) = if action == Action::SimpleUpload {
                    (
                        wire::simple_upload(&self.content_uri, &self.opts, token),
                        RequestKind::SimpleUpload,
                    )
                } else {
                    (wire::get_item(&self.item_uri, token), RequestKind::Metadata)
                };
                Some(self.send(now, action, kind, req, None, false))
            }
            Action::Delete(reason) => {
                let target = match reason {
                    DeleteReason::Cancel => self.session.clone(),
                    DeleteReason::Stale => self.stale.clone(),
                };
                match target {
                    Some(s) if !self.past_expiry(&s, now) => {
                        let req = wire::delete(&s.url);
                        Some(self.send(now, action, RequestKind::Cancel, req, None, true))
                    }
                    // Nothing to delete, or the server has dropped it already.
                    _ => {
                        match reason {
                            DeleteReason::Cancel => {
                                self.session = None;
                                let deleted = self.stale.is_none();
                                self.fail(UploadError::Cancelled {
                                    session_deleted: deleted,
                                });
                            }
                            DeleteReason::Stale => {
                                self.stale = None;
                                self.step = Step::Ready(Action::Create);
                            }
                        }
                        None
                    }
                }
            }
            Action::Verify => {
                let Some((item, purpose)) = self.pending_item.take() else {
                    self.fail(UploadError::Internal {
                        detail: "verification without an item",
                    });
                    return None;
                };
                if self.hashed < self.size {
                    let end = self
                        .size
                        .min(self.hashed.saturating_add(self.opts.fragment_size.get()));
                    let range = ByteRange::new(self.hashed, end)?;
                    self.pending_item = Some((item, purpose));
                    self.step = Step::NeedData {
                        range,
                        hold: false,
                        then: Action::Verify,
                    };
                    return None;
                }
                self.verify(item, purpose);
                None
            }
        }
    }

    // ---------------------------------------------------------------- responses

    fn on_response(
        &mut self,
        now: Instant,
        action: Action,
        range: Option<ByteRange>,
        resp: http::Response<Bytes>,
    ) {
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        let headers = &parts.headers;
        let cap = self.cfg.max_response_body;
        match action {
            Action::Create => self.on_create(now, status, headers, &body),
            Action::Put => match range {
                Some(range) => self.on_put(now, status, headers, &body, range),
                None => self.fail(UploadError::Internal {
                    detail: "fragment without a range",
                }),
            },
            Action::Query => self.on_query(now, status, headers, &body),
            Action::Commit => self.on_commit(now, status, headers, &body),
            Action::GetItem(purpose) => match status {
                200 => match wire::parse_item(&body, cap) {
                    Ok(item) => {
                        self.pending_item = Some((item, purpose));
                        self.step = Step::Ready(Action::Verify);
                    }
                    Err(detail) => {
                        let cause = UploadError::MalformedResponse { status, detail };
                        self.retry_later(now, cause, None, action);
                    }
                },
                404 => match purpose {
                    ItemPurpose::Completed => {
                        let cause = UploadError::ServerError {
                            status,
                            codes: self.codes(&body),
                        };
                        self.retry_later(now, cause, None, action);
                    }
                    ItemPurpose::AfterLoss => {
                        if self.cfg.not_found == NotFoundPolicy::Fail {
                            self.fail(UploadError::SessionNotFound);
                        } else {
                            self.restart(UploadError::SessionNotFound, false);
                        }
                    }
                },
                401 => self.need_token(action),
                _ => {
                    if !self.transient(now, status, headers, &body, action, action) {
                        let codes = self.codes(&body);
                        self.fail(UploadError::Rejected { status, codes });
                    }
                }
            },
            Action::SimpleUpload => match status {
                200 | 201 => self.finished_body(&body, ItemPurpose::Completed),
                401 => self.need_token(action),
                409 if self.simple_ambiguous => {
                    self.simple_ambiguous = false;
                    self.step = Step::Ready(Action::GetItem(ItemPurpose::AfterLoss));
                }
                409 => {
                    let codes = self.codes(&body);
                    self.fail(UploadError::Conflict { codes });
                }
                412 => self.fail(UploadError::PreconditionFailed),
                507 => {
                    let codes = self.codes(&body);
                    self.fail(UploadError::QuotaExceeded { codes });
                }
                _ => {
                    if status >= 500 {
                        self.simple_ambiguous = true;
                    }
                    if !self.transient(now, status, headers, &body, action, action) {
                        let codes = self.codes(&body);
                        self.fail(UploadError::Rejected { status, codes });
                    }
                }
            },
            Action::Delete(reason) => {
                let gone = (200..300).contains(&status) || status == 404;
                match reason {
                    DeleteReason::Cancel if gone => {
                        self.session = None;
                        let deleted = self.stale.is_none();
                        self.fail(UploadError::Cancelled {
                            session_deleted: deleted,
                        });
                    }
                    DeleteReason::Cancel => {
                        if !self.transient(now, status, headers, &body, action, action) {
                            self.fail(UploadError::Cancelled {
                                session_deleted: false,
                            });
                        }
                    }
                    DeleteReason::Stale => {
                        if status == 404 {
                            // Gone, or a transient 404 (onedrive §11 rule 43): keep it in
                            // case the next create still conflicts with it.
                            self.step = Step::Ready(Action::Create);
                        } else if gone
                            || !self.transient(now, status, headers, &body, action, action)
                        {
                            self.stale = None;
                            self.step = Step::Ready(Action::Create);
                        }
                    }
                }
            }
            Action::Verify => {}
        }
    }

    fn on_create(&mut self, now: Instant, status: u16, headers: &HeaderMap, body: &[u8]) {
        let cap = self.cfg.max_response_body;
        if self.cancel_requested && !(200..300).contains(&status) {
            let deleted = self.stale.is_none();
            self.fail(UploadError::Cancelled {
                session_deleted: deleted,
            });
            return;
        }
        match status {
            200 | 201 => {
                let parsed = wire::parse_session(body, cap).and_then(|s| {
                    let text = s.upload_url.clone().ok_or("no `uploadUrl`")?;
                    let url: Uri = text.parse().map_err(|_| "`uploadUrl` is not a URL")?;
                    if url.scheme().is_none() || url.authority().is_none() {
                        return Err("`uploadUrl` is not absolute".to_string());
                    }
                    Ok((s, url, text))
                });
                let (s, url, text) = match parsed {
                    Ok(x) => x,
                    Err(detail) => {
                        // A session may exist that we cannot use.
                        self.create_ambiguous = true;
                        let cause = UploadError::MalformedResponse { status, detail };
                        self.retry_later(now, cause, None, Action::Create);
                        return;
                    }
                };
                // Hostile input: the fragments (and nothing else) would go there.
                if let Err(reason) =
                    wire::check_upload_url(&url, &self.create_uri, &self.cfg.upload_url_hosts)
                {
                    self.fail(UploadError::UntrustedUploadUrl { reason });
                    return;
                }
                if let Some(r) = &s.ranges {
                    if r.first().map(|x| x.start) != Some(0) {
                        self.fail(UploadError::ServerContradiction {
                            detail: "a new session does not expect byte 0".into(),
                        });
                        return;
                    }
                }
                let expires = s.expiration.as_deref().and_then(parse_rfc3339);
                self.session = Some(Session {
                    url,
                    url_text: SecretString::new(text),
                    expires,
                    expiration_text: expires.and(s.expiration),
                    created_mono: Some(now),
                    created_wall: self.wall_now(now),
                    sent_end: 0,
                    resumed: false,
                    commit_sent: false,
                });
                self.create_ambiguous = false;
                self.stale = None;
                self.stale_deletes = 0;
                self.offset = 0;
                self.budget.reset(0);
                self.bad_request_at = None;
                self.event(Event::SessionCreated {
                    expires_at: expires,
                });
                if let Some(c) = self.checkpoint() {
                    self.event(Event::Checkpoint(c));
                }
                self.step = Step::Ready(if self.cancel_requested {
                    Action::Delete(DeleteReason::Cancel)
                } else {
                    Action::Put
                });
            }
            401 => self.need_token(Action::Create),
            409 => {
                let codes = self.codes(body);
                // A stale session past its expiry cannot be what blocks the target.
                if self
                    .stale
                    .as_ref()
                    .is_some_and(|s| self.past_expiry(s, now))
                {
                    self.stale = None;
                }
                if self.stale.is_some() && self.stale_deletes >= MAX_STALE_DELETES {
                    self.stale = None;
                }
                if self.stale.is_some() {
                    self.stale_deletes += 1;
                    if self.stale_deletes == 1 {
                        self.step = Step::Ready(Action::Delete(DeleteReason::Stale));
                    } else {
                        let cause = UploadError::Conflict { codes };
                        self.retry_later(now, cause, None, Action::Delete(DeleteReason::Stale));
                    }
                } else if let (true, true, Some(wait)) = (
                    self.create_ambiguous,
                    self.orphan_waits < self.cfg.max_orphan_waits,
                    self.cfg.orphan_session_wait,
                ) {
                    // A session we never heard of may block the target until it expires.
                    // The wait is deliberate and bounded by its own count, so it starts
                    // the retry budget afresh.
                    self.orphan_waits += 1;
                    self.create_ambiguous = false;
                    self.budget.reset(0);
                    match now.checked_add(wait) {
                        Some(until) => {
                            self.event(Event::RetryScheduled {
                                cause: UploadError::Conflict { codes },
                                attempt: self.budget.attempts(),
                                delay: wait,
                            });
                            self.step = Step::Waiting {
                                until,
                                action: Action::Create,
                            };
                        }
                        None => self.fail(UploadError::Conflict { codes }),
                    }
                } else if self.create_ambiguous {
                    // No wait left (or waits are off): say what may block the target.
                    let waits = self.orphan_waits;
                    self.fail(UploadError::OrphanSessionConflict { waits, codes });
                } else {
                    self.fail(UploadError::Conflict { codes });
                }
            }
            412 => self.fail(UploadError::PreconditionFailed),
            507 => {
                let codes = self.codes(body);
                self.fail(UploadError::QuotaExceeded { codes });
            }
            _ => {
                if status >= 500 {
                    self.create_ambiguous = true;
                }
                if !self.transient(now, status, headers, body, Action::Create, Action::Create) {
                    let codes = self.codes(body);
                    self.fail(UploadError::Rejected { status, codes });
                }
            }
        }
    }

    fn on_put(
        &mut self,
        now: Instant,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        range: ByteRange,
    ) {
        let cap = self.cfg.max_response_body;
        match status {
            202 => match wire::parse_session(body, cap) {
                Err(detail) => {
                    let cause = UploadError::MalformedResponse { status, detail };
                    self.retry_later(now, cause, None, Action::Query);
                }
                Ok(s) => {
                    self.update_expiry(s.expiration);
                    match s.ranges {
                        None => {
                            let cause = UploadError::MalformedResponse {
                                status,
                                detail: "202 without `nextExpectedRanges`".into(),
                            };
                            self.retry_later(now, cause, None, Action::Query);
                        }
                        Some(r) => match r.first() {
                            None => self.all_received(),
                            Some(first) => {
                                if self.server_offset(now, first.start, range.end(), true) {
                                    self.step = Step::Ready(Action::Put);
                                }
                            }
                        },
                    }
                }
            },
            200 | 201 => self.finished_body(body, ItemPurpose::Completed),
            416 => {
                let cause = UploadError::OffsetMismatch {
                    server: None,
                    sent: range.start(),
                };
                self.retry_later(now, cause, Some(Duration::ZERO), Action::Query);
            }
            404 => self.not_found_on_upload(now),
            401 => {
                // We never send Authorization to an uploadUrl, so the URL's own token
                // expired (onedrive.md §2.4): only a new session helps.
                let codes = self.codes(body);
                self.restart(UploadError::Unauthorized { codes }, true);
            }
            409 => {
                let codes = self.codes(body);
                self.fail(UploadError::Conflict { codes });
            }
            400 => {
                let codes = self.codes(body);
                self.bad_request(now, codes);
            }
            507 => {
                let codes = self.codes(body);
                self.fail(UploadError::QuotaExceeded { codes });
            }
            _ => {
                if !self.transient(now, status, headers, body, Action::Put, Action::Query) {
                    let codes = self.codes(body);
                    self.fail(UploadError::Rejected { status, codes });
                }
            }
        }
    }

    fn on_query(&mut self, now: Instant, status: u16, headers: &HeaderMap, body: &[u8]) {
        let cap = self.cfg.max_response_body;
        match status {
            200 => match wire::parse_session(body, cap) {
                Err(detail) => {
                    let cause = UploadError::MalformedResponse { status, detail };
                    self.retry_later(now, cause, None, Action::Query);
                }
                Ok(s) => {
                    self.update_expiry(s.expiration);
                    match s.ranges {
                        None => {
                            let cause = UploadError::MalformedResponse {
                                status,
                                detail: "status without `nextExpectedRanges`".into(),
                            };
                            self.retry_later(now, cause, None, Action::Query);
                        }
                        Some(r) => match r.first() {
                            None => self.all_received(),
                            Some(first) => {
                                let expected = self.offset;
                                if self.server_offset(now, first.start, expected, false) {
                                    self.step = Step::Ready(Action::Put);
                                }
                            }
                        },
                    }
                }
            },
            // A 400 on a status query has been seen for a vanished session (§5.3).
            404 | 400 => self.session_gone(),
            401 => {
                let codes = self.codes(body);
                self.restart(UploadError::Unauthorized { codes }, true);
            }
            _ => {
                if !self.transient(now, status, headers, body, Action::Query, Action::Query) {
                    let codes = self.codes(body);
                    self.fail(UploadError::Rejected { status, codes });
                }
            }
        }
    }

    fn on_commit(&mut self, now: Instant, status: u16, headers: &HeaderMap, body: &[u8]) {
        match status {
            200 | 201 => self.finished_body(body, ItemPurpose::Completed),
            409 => {
                let codes = self.codes(body);
                self.fail(UploadError::Conflict { codes });
            }
            404 => self.not_found_on_upload(now),
            401 => {
                let codes = self.codes(body);
                self.restart(UploadError::Unauthorized { codes }, true);
            }
            400 => {
                let codes = self.codes(body);
                self.bad_request(now, codes);
            }
            416 => {
                let cause = UploadError::OffsetMismatch {
                    server: None,
                    sent: self.size,
                };
                self.retry_later(now, cause, Some(Duration::ZERO), Action::Query);
            }
            507 => {
                let codes = self.codes(body);
                self.fail(UploadError::QuotaExceeded { codes });
            }
            _ => {
                if !self.transient(now, status, headers, body, Action::Commit, Action::Query) {
                    let codes = self.codes(body);
                    self.fail(UploadError::Rejected { status, codes });
                }
            }
        }
    }

    fn on_failure(&mut self, now: Instant, action: Action, failure: TransportFailure) {
        let cause = UploadError::Transport(failure);
        match action {
            Action::Create => {
                if self.cancel_requested {
                    let deleted = self.stale.is_none();
                    self.fail(UploadError::Cancelled {
                        session_deleted: deleted,
                    });
                    return;
                }
                if failure != TransportFailure::Connect {
                    self.create_ambiguous = true;
                }
                self.retry_later(now, cause, None, Action::Create);
            }
            Action::Put | Action::Query | Action::Commit => {
                self.retry_later(now, cause, None, Action::Query);
            }
            Action::SimpleUpload => {
                if failure != TransportFailure::Connect {
                    self.simple_ambiguous = true;
                }
                self.retry_later(now, cause, None, action);
            }
            Action::GetItem(_) | Action::Delete(_) => self.retry_later(now, cause, None, action),
            Action::Verify => {}
        }
    }

    fn anchor_from_date(&mut self, now: Instant, headers: &HeaderMap) {
        if self.anchor_explicit {
            return;
        }
        if let Some(t) = wire::header_str(headers, "date").and_then(parse_http_date) {
            self.anchor = Some(WallAnchor::new(now, t));
        }
    }

    /// Finds the in-flight request `id`; `Ok(None)` for a stale one.
    fn take_in_flight(
        &mut self,
        id: RequestId,
    ) -> Result<Option<(Action, Option<ByteRange>)>, Misuse> {
        if id.0 >= self.next_id {
            return Err(Misuse::UnknownRequest(id));
        }
        match self.step {
            Step::InFlight {
                id: cur,
                action,
                range,
            } if cur == id.0 && self.result.is_none() => Ok(Some((action, range))),
            _ => {
                if self.result.is_none() {
                    self.event(Event::StaleResponse { id });
                }
                Ok(None)
            }
        }
    }
}

impl UploadMachine for OneDriveUpload {
    type Completed = Completed;
    type Checkpoint = Checkpoint;

    /// Returns the next output. Order: queued events first, then the final result,
    /// then whatever the current step needs (a request, data, or a wait).
    fn poll_output(&mut self, now: Instant) -> OneDriveOutput {
        let now = self.clamp(now);
        // Every iteration either returns or moves to a different step; the bound only
        // guards against a bug turning into a hang.
        for _ in 0..64 {
            if let Some(e) = self.events.pop_front() {
                return Output::Event(e);
            }
            if let Some(r) = &self.result {
                return Output::Finished(r.clone());
            }
            if !matches!(
                self.step,
                Step::InFlight {
                    action: Action::Put,
                    ..
                }
            ) {
                // A read-ahead asked for belongs to the fragment in flight only.
                self.ahead_want = None;
            }
            match self.step {
                Step::Ready(a) => {
                    if let Some(o) = self.start(now, a) {
                        return o;
                    }
                }
                Step::Waiting { until, action } => {
                    if now >= until {
                        self.step = Step::Ready(action);
                    } else {
                        return Output::Wait(Some(until));
                    }
                }
                Step::InFlight { .. } => {
                    // Read-ahead: ask for the next fragment while this one travels.
                    if let Some(want) = self.ahead_want.or_else(|| self.read_ahead_range()) {
                        self.ahead_want = Some(want);
                        return Output::NeedData {
                            offset: want.start(),
                            len: want.len(),
                        };
                    }
                    return Output::Wait(None);
                }
                Step::NeedToken(_) | Step::AwaitingCommit => {
                    return Output::Wait(None);
                }
                Step::NeedData { range, .. } => {
                    return Output::NeedData {
                        offset: range.start(),
                        len: range.len(),
                    };
                }
                Step::Done => {
                    self.fail(UploadError::Internal {
                        detail: "done without a result",
                    });
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
        let Some((action, range)) = self.take_in_flight(id)? else {
            return Ok(());
        };
        self.anchor_from_date(now, response.headers());
        self.on_response(now, action, range, response);
        Ok(())
    }

    fn handle_failure(
        &mut self,
        now: Instant,
        id: RequestId,
        failure: TransportFailure,
    ) -> Result<(), Misuse> {
        let now = self.clamp(now);
        let Some((action, _)) = self.take_in_flight(id)? else {
            return Ok(());
        };
        self.on_failure(now, action, failure);
        Ok(())
    }

    fn provide_data(&mut self, offset: u64, data: Bytes) -> Result<(), Misuse> {
        let len = data.len() as u64;
        if let (Some(want), Step::InFlight { .. }) = (self.ahead_want, self.step) {
            Misuse::check_data(want, offset, len)?;
            self.hash_fresh(want, &data);
            self.ahead.push_back((offset, data));
            self.ahead_want = None;
            return Ok(());
        }
        let Step::NeedData { range, hold, then } = self.step else {
            return Err(Misuse::UnexpectedData { offset, len });
        };
        Misuse::check_data(range, offset, len)?;
        self.hash_fresh(range, &data);
        if hold {
            self.held = Some((offset, data));
        }
        self.step = Step::Ready(then);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.clamp(now);
    }

    fn handle_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        let now = self.clamp(now);
        self.anchor = Some(WallAnchor::new(now, wall));
        self.anchor_explicit = true;
    }

    fn set_access_token(&mut self, token: AccessToken) {
        self.token = Some(token);
        if let Step::NeedToken(a) = self.step {
            self.step = Step::Ready(a);
        }
    }

    fn cancel(&mut self, now: Instant) {
        self.clamp(now);
        if self.result.is_some() {
            return;
        }
        self.cancel_requested = true;
        match self.step {
            // The create's answer decides whether there is a session to delete.
            Step::InFlight {
                action: Action::Create,
                ..
            }
            | Step::InFlight {
                action: Action::Delete(DeleteReason::Cancel),
                ..
            } => {}
            _ => {
                if self.session.is_some() {
                    self.held = None;
                    self.ahead.clear();
                    self.pending_item = None;
                    self.step = Step::Ready(Action::Delete(DeleteReason::Cancel));
                } else {
                    let deleted = self.stale.is_none();
                    self.fail(UploadError::Cancelled {
                        session_deleted: deleted,
                    });
                }
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.result.is_some()
    }
}
