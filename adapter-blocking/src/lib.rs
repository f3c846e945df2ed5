//! # upload-session-blocking
//!
//! Resumable uploads to OneDrive and Dropbox from synchronous code: one drive loop over the sans-IO [`upload_session`] core, with
//! [ureq 3](ureq) for HTTP.
//!
//! ## Scope
//! - [`Upload`]: drives any [`UploadMachine`] to the end: sends its requests, reads the
//!   byte ranges it asks for from a [`Source`] (a file path, any `Read + Seek`, a plain
//!   `Read`, bytes), sleeps until its deadlines, and reports every outcome back.
//! - Options: progress callback (bytes acknowledged and rate), a [`CancelHandle`] that
//!   stops cleanly and leaves a resumable checkpoint, checkpoint persistence to a file
//!   ([`checkpoint`]: atomic, `0600`) and resume from it ([`resume_or_start`]), a token
//!   provider for refresh, request timeouts, an injected [`ureq::Agent`].
//! - Safety: HTTPS (rustls) by default and plain `http://` refused except to loopback
//!   hosts or with explicit consent; capped response bodies; a source that changes or
//!   shrinks mid-upload stops it before its last byte is handed over (nothing is
//!   committed).
//! - Memory: each fragment is read from the source when the machine asks for it and
//!   released once acknowledged; peak memory is about the fragments the machine holds
//!   plus a constant: `1 + read_ahead` fragments for OneDrive and chunks for a
//!   sequential Dropbox session (2 by default), `parallelism + read_ahead` for a
//!   concurrent one.
//! - Machines: [`OneDriveUpload`](upload_session::onedrive::OneDriveUpload) and
//!   [`DropboxUpload`](upload_session::dropbox::DropboxUpload) (sequential or concurrent
//!   sessions), and any other [`UploadMachine`].
//! - Concurrency: each request runs on its own transport thread (sharing the agent's
//!   connection pool), so there are as many as the machine keeps in flight: one for
//!   OneDrive and a sequential Dropbox session, up to `parallelism` for a concurrent
//!   Dropbox session (real parallel appends). Meanwhile the loop thread keeps driving
//!   the machine: it reads and hands over the next fragment or chunk (the OneDrive
//!   QuickXorHash and the Dropbox content hash are computed there, during the
//!   transfer: read-ahead) and waits on the answers with
//!   the machine's deadline. The machine itself stays on the loop thread.
//!
//! ## Out of scope
//! Every protocol decision (fragment sizes, headers, offsets, retries, resyncs, session
//! restarts, verification) is the core's. This crate decides nothing about the protocol:
//! it only moves bytes, keeps time and persists what the core emits. Obtaining tokens
//! (OAuth) is the caller's: the token provider is called when the core asks. Dropbox
//! batch commits (`BatchCommit`) and OneDrive `DeferCommit::Manual` need caller commands
//! this driver does not give.
//!
//! ## The loop
//! ```text
//!          ┌──────────── poll_output(now) ◀─────────────────────────────┐
//!          ▼                                                            │
//!   Send ──▶ check source, start a transport thread ──▶ (poll again at once)
//!              └─ thread: check scheme, ureq (deadline, capped body) ─▶ answer channel
//!   NeedData ──▶ Source::read(offset, len), check source ──────────────▶ provide_data
//!   Event ──▶ progress / checkpoint file / token provider / on_event ──▶ (set_access_token)
//!   Wait(t) ──▶ next answer, or t (checking the cancel handle) ─────────▶ handle_response /
//!                                                                        handle_failure / handle_timeout
//!   Finished ──▶ return (removing the checkpoint file on success)
//! ```
//!
//! ## Example
//! Upload to the emulator (in-process, on 127.0.0.1):
//! ```
//! use upload_session::AccessToken;
//! use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
//! use upload_session_blocking::{Source, Upload};
//! use upload_session_emulator::server::{EmulatorServer, ServerOptions};
//!
//! let server = EmulatorServer::start(ServerOptions::default()).unwrap();
//! let data = vec![42u8; 1_000_000];
//! let machine = OneDriveUpload::builder(Target::path("/docs/a.bin"), data.len() as u64)
//!     .fragment_size(327_680)
//!     .config(OneDriveConfig::with_base(format!("{}/onedrive/v1.0", server.url())))
//!     .build()
//!     .unwrap();
//! let mut seen = 0;
//! let completed = Upload::new(machine, Source::slice(&data))
//!     .token_provider(|| {
//!         AccessToken::new(upload_session_emulator::DEFAULT_TOKEN).map_err(|e| e.to_string())
//!     })
//!     .on_progress(|p| seen = p.acknowledged)
//!     .run()
//!     .unwrap();
//! assert_eq!(completed.item.size, Some(1_000_000));
//! assert!(completed.verification.quick_xor);
//! assert_eq!(seen, 1_000_000);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
mod source;
mod transport;

pub use source::{MAX_READ, Source};
pub use upload_session;
/// Why [`Upload::run`] (or a helper) did not return a completed upload: the core's
/// [`AdapterError`](upload_session::driver::AdapterError), which the async adapter
/// shares. No variant's `Display` or `Debug` shows a token or a pre-authenticated URL.
pub use upload_session::driver::AdapterError as Error;
/// A machine ready to run, and whether it continues a checkpoint.
pub use upload_session::driver::Prepared;
/// Progress of an upload, reported whenever the server acknowledges bytes (see
/// [`Upload::on_progress`]).
pub use upload_session::driver::Progress;
/// A machine that can continue from its checkpoint (the glue [`resume_or_start`] needs).
pub use upload_session::driver::Resumable;
pub use ureq;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};
use transport::{Done, Sent, Settings, Stop};
use upload_session::driver::{self, Abandon, AbandonStep, ProgressMeter};
use upload_session::{
    AccessToken, BuildError, Event, Output, RequestKind, SourceFingerprint, UploadMachine,
};

/// A handle that stops an upload from another thread (or a signal handler).
///
/// Cancelling does **not** delete the server session: the upload stops at the next
/// opportunity (between requests, while sleeping or waiting for an answer, or while a
/// request body is being sent) and [`Upload::run`] returns [`Error::Cancelled`], leaving
/// the latest checkpoint resumable. Requests still on the wire are abandoned: their
/// bodies stop within one 1 MiB piece and their answers are ignored.
///
/// # Examples
/// ```
/// let handle = upload_session_blocking::CancelHandle::new();
/// let for_signal = handle.clone();
/// for_signal.cancel();
/// assert!(handle.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Returns a handle that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Raises the drive loop's stop flag when dropped (when `run` returns).
struct StopOnDrop(CancelHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

type TokenProvider<'a> = Box<dyn FnMut() -> Result<AccessToken, String> + 'a>;
type ProgressFn<'a> = Box<dyn FnMut(&Progress) + 'a>;
type EventFn<'a, K> = Box<dyn FnMut(&Event<K>) + 'a>;

/// One upload: a machine, a source and the driver's options. Build it with
/// [`Upload::new`], set options, then [`run`](Upload::run) it.
#[must_use]
pub struct Upload<'a, M: UploadMachine> {
    machine: M,
    source: Source<'a>,
    agent: Option<ureq::Agent>,
    settings: Settings,
    cancel: Option<CancelHandle>,
    checkpoint_file: Option<PathBuf>,
    keep_checkpoint: bool,
    progress: Option<ProgressFn<'a>>,
    events: Option<EventFn<'a, M::Checkpoint>>,
    tokens: Option<TokenProvider<'a>>,
}

impl<M: UploadMachine> fmt::Debug for Upload<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("source", &self.source)
            .field("settings", &self.settings)
            .field("checkpoint_file", &self.checkpoint_file)
            .finish_non_exhaustive()
    }
}

impl<'a, M: UploadMachine> Upload<'a, M> {
    /// Returns an upload of `source` driven by `machine`. The machine's size must be the
    /// source's (the machine asks for ranges; a range outside the source is an error).
    pub fn new(machine: M, source: Source<'a>) -> Self {
        Self {
            machine,
            source,
            agent: None,
            settings: Settings::default(),
            cancel: None,
            checkpoint_file: None,
            keep_checkpoint: false,
            progress: None,
            events: None,
            tokens: None,
        }
    }

    /// Uses this agent (for its TLS roots, proxy, connection pool…). Whatever its
    /// configuration, each request is sent with 4xx/5xx as responses, no redirects, and
    /// this driver's timeouts.
    pub fn agent(mut self, agent: ureq::Agent) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Allows plain `http://` to hosts that are not loopback (default: refused with
    /// [`Error::InsecureUrl`]; `https` and loopback `http` are always allowed).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.settings.allow_insecure_http = allow;
        self
    }

    /// Time allowed to connect (DNS, TCP, TLS); default 30 s, `None` for no limit.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Upper bound on one request, from connecting to the end of the response body;
    /// also the limit of requests for which the machine suggests no deadline. Default
    /// 15 minutes. The machine's own suggested deadline applies when it is sooner. A
    /// request over its limit is reported to the machine as timed out.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Largest response body read (default 1 MiB). A larger one is reported to the
    /// machine as [`TransportFailure::ResponseTooLarge`](upload_session::TransportFailure::ResponseTooLarge),
    /// never buffered.
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.settings.max_response_body = bytes;
        self
    }

    /// Whether request bodies over 64 KiB are sent with `Expect: 100-continue` (default
    /// on), so that an answer the server gives before reading the body (a 429 with its
    /// `Retry-After`, a 401) reaches the machine instead of a broken connection. A
    /// server that ignores it costs one second per such request (ureq's wait for the
    /// `100 Continue`).
    pub fn expect_continue(mut self, on: bool) -> Self {
        self.settings.expect_continue = on;
        self
    }

    /// Stops the upload when `handle` is cancelled.
    pub fn cancel_handle(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        self
    }

    /// Saves every checkpoint the machine emits to `path` (atomically, `0600`), and
    /// removes the file once the upload completes. Resume with [`resume_or_start`].
    pub fn checkpoint_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint_file = Some(path.into());
        self
    }

    /// Keeps the checkpoint file after a successful upload (default: removed).
    pub fn keep_checkpoint_file(mut self, keep: bool) -> Self {
        self.keep_checkpoint = keep;
        self
    }

    /// Calls `f` whenever the server acknowledges bytes.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with every event the machine emits (retries, resyncs, restarts,
    /// checkpoints…), for logging. Events never show secrets in `Debug`.
    pub fn on_event(mut self, f: impl FnMut(&Event<M::Checkpoint>) + 'a) -> Self {
        self.events = Some(Box::new(f));
        self
    }

    /// Calls `f` whenever the machine needs a (new) access token: at the start when the
    /// machine was built without one, and after the server rejected the current one.
    /// An `Err` stops the upload with [`Error::TokenUnavailable`].
    pub fn token_provider(mut self, f: impl FnMut() -> Result<AccessToken, String> + 'a) -> Self {
        self.tokens = Some(Box::new(f));
        self
    }

    /// The machine (for example to read its phase or a checkpoint before running).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled)
    }

    fn cancelled_error(&self) -> Error {
        Error::Cancelled {
            checkpoint: self.checkpoint_file.clone().filter(|p| p.exists()),
        }
    }

    /// Sleeps until `t`, waking early when cancelled.
    fn sleep_until(&self, t: Instant) {
        loop {
            let now = Instant::now();
            if now >= t || self.cancelled() {
                return;
            }
            std::thread::sleep((t - now).min(Duration::from_millis(50)));
        }
    }

    /// Waits for the next answer of a transport thread, until `deadline` (or for ever),
    /// waking to check the cancel handle. `None`: the deadline passed or the upload was
    /// cancelled.
    ///
    /// # Errors
    /// [`Error::Request`] if every transport thread and the loop's own sender were gone
    /// (cannot happen while the loop runs; never a hang).
    fn next_answer(
        &self,
        answers: &mpsc::Receiver<Done>,
        deadline: Option<Instant>,
    ) -> Result<Option<Done>, Error> {
        loop {
            if self.cancelled() {
                return Ok(None);
            }
            let mut slice = Duration::from_millis(50);
            if let Some(t) = deadline {
                let now = Instant::now();
                if now >= t {
                    return Ok(None);
                }
                slice = slice.min(t - now);
            }
            match answers.recv_timeout(slice) {
                Ok(done) => return Ok(Some(done)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Request("the transport threads are gone".into()));
                }
            }
        }
    }

    /// Hands a transport thread's answer to the machine.
    fn answer(&mut self, done: Done, meter: &mut ProgressMeter) -> Result<(), Error> {
        let Done {
            id,
            body_len,
            outcome,
        } = done;
        match outcome? {
            Sent::Response(response) => {
                meter.sent(response.status().is_success(), body_len);
                let now = Instant::now();
                self.machine.handle_wall_clock(now, SystemTime::now());
                self.machine.handle_response(now, id, response)?;
            }
            Sent::Failure(f) => self.machine.handle_failure(Instant::now(), id, f)?,
            Sent::Cancelled => return Err(self.cancelled_error()),
        }
        Ok(())
    }

    /// Calls the progress callback.
    fn report(&mut self, progress: Option<Progress>) {
        if let (Some(f), Some(p)) = (&mut self.progress, progress) {
            f(&p);
        }
    }

    /// Stops after the source changed: deletes the server session (so it neither blocks
    /// the target nor can be committed) and removes the now useless checkpoint.
    fn abandon(&mut self, agent: &ureq::Agent, error: Error) -> Result<M::Completed, Error> {
        let mut abandon = Abandon::start(&mut self.machine, Instant::now());
        loop {
            match abandon.next(&mut self.machine, Instant::now()) {
                AbandonStep::Send(req) => {
                    let id = req.id();
                    match transport::send(agent, req, &self.settings, None) {
                        Ok(Sent::Response(r)) => {
                            self.machine.handle_response(Instant::now(), id, r)?
                        }
                        Ok(Sent::Failure(f)) => {
                            self.machine.handle_failure(Instant::now(), id, f)?
                        }
                        Ok(Sent::Cancelled) | Err(_) => break,
                    }
                }
                AbandonStep::Skip => {}
                AbandonStep::SleepUntil(t) => {
                    std::thread::sleep(t.saturating_duration_since(Instant::now()));
                    self.machine.handle_timeout(Instant::now());
                }
                AbandonStep::Stop => break,
            }
        }
        if let Some(p) = &self.checkpoint_file {
            checkpoint::remove(p)?;
        }
        Err(error)
    }

    /// Drives the upload to its end.
    ///
    /// # Errors
    /// [`Error::Upload`] when the machine gives up; [`Error::Cancelled`] when the
    /// cancel handle fired; [`Error::SourceChanged`] when the source changed (nothing is
    /// committed); the other [`Error`] variants for the source, TLS, tokens and the
    /// checkpoint file.
    pub fn run(mut self) -> Result<M::Completed, Error>
    where
        M::Checkpoint: Serialize,
    {
        let agent = self.agent.take().unwrap_or_else(transport::default_agent);
        let started = Instant::now();
        let mut meter = ProgressMeter::new(started);
        self.machine.handle_wall_clock(started, SystemTime::now());
        // Requests run on transport threads; their answers come back on `answers`.
        let stop = Stop {
            user: self.cancel.clone(),
            run: CancelHandle::new(),
        };
        // When `run` returns (any way), requests still on the wire stop sending.
        let _stop_on_return = StopOnDrop(stop.run.clone());
        let (tx, answers) = mpsc::channel::<Done>();
        let mut in_flight = 0usize;
        loop {
            let output = self.machine.poll_output(Instant::now());
            // Events (a checkpoint above all) and the result are taken even after a
            // cancel; no new work is started.
            if driver::starts_work(&output) && self.cancelled() {
                return Err(self.cancelled_error());
            }
            match output {
                Output::Send(req) => {
                    if req.kind() != RequestKind::Cancel {
                        if let Err(e) = self.source.check_unchanged() {
                            return self.abandon(&agent, e);
                        }
                    }
                    transport::spawn(&agent, req, &self.settings, &stop, &tx)?;
                    in_flight += 1;
                }
                Output::NeedData { offset, len } => {
                    let data = match self.source.read(offset, len) {
                        Ok(d) => d,
                        Err(e @ Error::SourceChanged { .. }) => return self.abandon(&agent, e),
                        Err(e) => return Err(e),
                    };
                    if let Err(e) = self.source.check_unchanged() {
                        return self.abandon(&agent, e);
                    }
                    self.machine.provide_data(offset, data)?;
                }
                Output::Event(event) => {
                    match &event {
                        Event::TokenNeeded => {
                            let token = match &mut self.tokens {
                                Some(f) => {
                                    f().map_err(|reason| Error::TokenUnavailable { reason })?
                                }
                                None => {
                                    return Err(Error::TokenUnavailable {
                                        reason: "no token provider is configured".into(),
                                    });
                                }
                            };
                            self.machine.set_access_token(token);
                        }
                        Event::Checkpoint(cp) => {
                            if let Some(path) = &self.checkpoint_file {
                                checkpoint::save(path, cp)?;
                            }
                        }
                        Event::Progress {
                            acknowledged,
                            total,
                        } => {
                            let p = meter.acknowledged(Instant::now(), *acknowledged, *total);
                            self.report(Some(p));
                        }
                        _ => {}
                    }
                    // After handling: a checkpoint the callback sees is already saved.
                    if let Some(f) = &mut self.events {
                        f(&event);
                    }
                }
                Output::Wait(deadline) if in_flight > 0 => {
                    if let Some(done) = self.next_answer(&answers, deadline)? {
                        in_flight -= 1;
                        self.answer(done, &mut meter)?;
                    } else if deadline.is_some_and(|t| Instant::now() >= t) {
                        self.machine.handle_timeout(Instant::now());
                    }
                }
                Output::Wait(Some(t)) => {
                    self.sleep_until(t);
                    self.machine.handle_timeout(Instant::now());
                }
                Output::Wait(None) => {
                    return Err(Error::Stalled(
                        "the machine waits with no request in flight (a manual commit?)",
                    ));
                }
                Output::Finished(Ok(completed)) => {
                    // The last fragment's answer is the item, not a new offset: report
                    // the end so that progress reaches the total.
                    let end = meter.finished(Instant::now(), self.source.size());
                    self.report(end);
                    if let (Some(p), false) = (&self.checkpoint_file, self.keep_checkpoint) {
                        checkpoint::remove(p)?;
                    }
                    return Ok(completed);
                }
                Output::Finished(Err(e)) => return Err(Error::Upload(e)),
            }
        }
    }
}

/// Resumes from `checkpoint_file` when it exists, else calls `start` with the source's
/// fingerprint to build a new machine.
///
/// # Errors
/// [`Error::CheckpointFile`] when the file exists but cannot be read or parsed;
/// [`Error::Resume`] when it cannot be resumed (for example
/// [`ResumeError::SourceChanged`](upload_session::ResumeError::SourceChanged): the source is not what was being uploaded; delete the
/// file to start over); [`Error::Build`] from `start`.
///
/// # Examples
/// ```
/// use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
/// use upload_session_blocking::{Source, resume_or_start};
/// let source = Source::slice(b"some bytes");
/// let dir = std::env::temp_dir();
/// let prepared = resume_or_start::<OneDriveUpload, _>(
///     &dir.join("no-such-checkpoint.json"),
///     &source,
///     OneDriveConfig::default(),
///     None,
///     |fingerprint, config, _token| {
///         OneDriveUpload::builder(Target::path("/a.bin"), fingerprint.size)
///             .fingerprint(fingerprint)
///             .config(config)
///             .build()
///     },
/// )
/// .unwrap();
/// assert!(!prepared.resumed);
/// ```
pub fn resume_or_start<M, F>(
    checkpoint_file: &Path,
    source: &Source<'_>,
    config: M::Config,
    token: Option<AccessToken>,
    start: F,
) -> Result<Prepared<M>, Error>
where
    M: Resumable,
    M::Checkpoint: DeserializeOwned,
    F: FnOnce(SourceFingerprint, M::Config, Option<AccessToken>) -> Result<M, BuildError>,
{
    let loaded = checkpoint::load::<M::Checkpoint>(checkpoint_file)?;
    driver::prepare(loaded, source.fingerprint(), config, token, start)
}
