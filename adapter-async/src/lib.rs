//! # upload-session-async
//!
//! Resumable, concurrent and many-file uploads to OneDrive and Dropbox from async code:
//! one drive loop over the sans-IO [`upload_session`] core, on tokio with a hyper 1
//! client (hyper-util's connection pool, rustls with the webpki roots).
//!
//! ## Scope
//! - [`Upload`]: drives any [`UploadMachine`] to the end: sends its requests
//!   (concurrently when the machine has several in flight: a Dropbox concurrent session
//!   keeps N appends going on one file), reads the byte ranges it asks for from a
//!   [`Source`] (a path, a `tokio::fs::File`, any `AsyncRead + AsyncSeek`, a plain
//!   `AsyncRead`, `Bytes`), sleeps until its deadlines on tokio's clock, and reports
//!   every outcome back.
//! - The blocking adapter's options, under the same names: progress (callback and a
//!   [`tokio::sync::watch`] channel), a [`CancellationToken`], checkpoint files
//!   ([`checkpoint`]: atomic, `0600`, the same format, so either adapter resumes the
//!   other's) and [`resume_or_start`], an async token provider, connect and request
//!   timeouts, capped response bodies, an injected [`HttpClient`].
//! - Many files: [`Batch`] runs uploads with a limit across them (OneDrive: files in
//!   parallel, each strictly sequential inside, as the core enforces); on Dropbox
//!   [`Batch::run_dropbox`] closes each file's session and commits them together with
//!   `finish_batch_v2` (the core's [`BatchCommit`](upload_session::dropbox::BatchCommit)),
//!   reporting each file on its own.
//! - Safety: HTTPS by default, plain `http://` refused except to loopback hosts or with
//!   explicit consent; a source that changes or shrinks mid-upload stops it before its
//!   last byte is handed over (nothing is committed).
//! - Futures are `Send + 'static` (when the machine is), so they can be spawned.
//!   Cancelling, by the token or by dropping the future, never commits a partial file:
//!   the core commits only with the last byte, and a request dropped mid-body leaves a
//!   body shorter than its `Content-Length`, which a server discards. That last part
//!   needs a body that stops when its request is dropped: the default client's
//!   [`RequestBody`] (hyper-util's connection task outlives the request future and
//!   would finish sending a `Full<Bytes>` body).
//!
//! ## Out of scope
//! Every protocol decision (fragment sizes, headers, offsets, retries, resyncs, session
//! restarts, verification, batch grouping) is the core's. This crate decides nothing
//! about the protocol: it moves bytes, keeps time, persists what the core emits and
//! runs requests concurrently. Obtaining tokens (OAuth) is the caller's. OneDrive
//! `DeferCommit::Manual` needs a caller command this driver does not give. hyper's
//! client does not wait for `100 Continue`, so an answer a server gives from the
//! request head alone while resetting the connection under an unread body reaches the
//! machine as a reset (which it retries) rather than as that answer.
//!
//! ## The loop
//! ```text
//!          ┌──────────── poll_output(now = tokio's clock) ◀──────────────────────┐
//!          ▼                                                                     │
//!   Send ──▶ check source, check scheme ──▶ spawn into the in-flight set ────────┤
//!   NeedData ──▶ Source::read(offset, len), check source ──▶ provide_data ───────┤
//!   Event ──▶ progress (callback, watch) / checkpoint file / token provider ─────┤
//!   Wait(t) ──▶ select! { next response ──▶ handle_response / handle_failure ────┤
//!                         sleep_until(t) ──▶ handle_timeout ──────────────────────┘
//!                         cancel token  ──▶ return Error::Cancelled }
//!   Finished ──▶ return (removing the checkpoint file on success)
//! ```
//! Each request in flight is a task (the client's exchange plus a capped body read,
//! under `timeout_at(min(machine deadline, now + request timeout))`), spawned the moment
//! the machine emits it, so it travels while the loop serves the next `NeedData` (the
//! read, and the QuickXorHash or Dropbox content hash in `provide_data`: read-ahead
//! overlaps reading and hashing with the transfer). The tasks live in a `JoinSet` owned by the loop: dropping the
//! upload future, a cancel or an error aborts them all; a task that panics is an
//! error. On a current-thread runtime the tasks progress whenever the loop awaits.
//!
//! ## Example
//! Upload to the emulator (in-process, on 127.0.0.1):
//! ```
//! use upload_session::AccessToken;
//! use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
//! use upload_session_async::{Source, Upload};
//! use upload_session_emulator::server::{EmulatorServer, ServerOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = EmulatorServer::start(ServerOptions::default()).unwrap();
//! let data = vec![42u8; 1_000_000];
//! let machine = OneDriveUpload::builder(Target::path("/docs/a.bin"), data.len() as u64)
//!     .fragment_size(327_680)
//!     .config(OneDriveConfig::with_base(format!("{}/onedrive/v1.0", server.url())))
//!     .build()
//!     .unwrap();
//! let (tx, rx) = tokio::sync::watch::channel(Default::default());
//! let completed = Upload::new(machine, Source::bytes(data))
//!     .token_provider(|| async {
//!         AccessToken::new(upload_session_emulator::DEFAULT_TOKEN).map_err(|e| e.to_string())
//!     })
//!     .progress_sender(tx)
//!     .run()
//!     .await
//!     .unwrap();
//! assert_eq!(completed.item.size, Some(1_000_000));
//! assert!(completed.verification.quick_xor);
//! assert_eq!(rx.borrow().acknowledged, 1_000_000);
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
pub mod checkpoint;
mod source;
mod transport;

pub use batch::{Batch, BatchFile};
pub use source::{MAX_READ, Source};
pub use tokio_util::sync::CancellationToken;
pub use transport::{
    BodyAbandoned, BodyAlive, BoxError, DefaultClient, FnClient, HttpClient, RequestBody,
    ResponseBody, ResponseFuture, client_fn, default_tls_config, full_body, https_client,
    tls_config_with_roots_pem,
};
pub use upload_session;
/// Why [`Upload::run`] (or a helper) did not return a completed upload: the core's
/// [`AdapterError`](upload_session::driver::AdapterError), the same type as the blocking
/// adapter's `Error`. No variant's `Display` or `Debug` shows a token or a
/// pre-authenticated URL.
pub use upload_session::driver::AdapterError as Error;
/// A machine ready to run, and whether it continues a checkpoint.
pub use upload_session::driver::Prepared;
/// Progress of an upload, reported whenever the server acknowledges bytes (see
/// [`Upload::on_progress`] and [`Upload::progress_sender`]); `elapsed` is on tokio's
/// clock.
pub use upload_session::driver::Progress;
/// A machine that can continue from its checkpoint (the glue [`resume_or_start`] needs).
pub use upload_session::driver::Resumable;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinSet;
use transport::{Sent, Settings};
use upload_session::driver::{self, Abandon, AbandonStep, ProgressMeter};
use upload_session::{
    AccessToken, BuildError, Event, Output, RequestId, RequestKind, SourceFingerprint,
    UploadMachine,
};

/// The future a token provider returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<AccessToken, String>> + Send>>;
/// A shareable async token provider.
pub(crate) type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;
type ProgressFn = Box<dyn FnMut(&Progress) + Send>;
type EventFn<K> = Box<dyn FnMut(&Event<K>) + Send>;
/// The requests in flight: one spawned task each (so a request starts at once and
/// travels while the loop reads and hashes the next chunk); dropping the set aborts them.
type InFlight = JoinSet<(RequestId, u64, Result<Sent, Error>)>;

/// Wraps a closure returning a future as a shareable token provider.
pub(crate) fn token_provider<F, Fut>(f: F) -> TokenProvider
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken, String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()) as TokenFuture)
}

/// The current instant on tokio's clock (which `tokio::time::pause` controls), as the
/// `std` instant the core takes.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// [`Error::Cancelled`], naming the checkpoint file when one was written.
async fn cancelled_error(checkpoint_file: Option<PathBuf>) -> Error {
    let checkpoint = match checkpoint_file {
        Some(p) if tokio::fs::try_exists(&p).await.unwrap_or(false) => Some(p),
        _ => None,
    };
    Error::Cancelled { checkpoint }
}

/// What uploads share: the client, sending settings, cancel token, token provider.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    pub client: Option<Arc<dyn HttpClient>>,
    pub tls: Option<rustls::ClientConfig>,
    pub settings: Settings,
    pub cancel: Option<CancellationToken>,
    pub tokens: Option<TokenProvider>,
}

impl Shared {
    /// The injected client, or the default one built from the settings.
    pub(crate) fn client(&mut self) -> Result<Arc<dyn HttpClient>, Error> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c: Arc<dyn HttpClient> = Arc::new(https_client(
            self.tls.take(),
            self.settings.connect_timeout,
        )?);
        self.client = Some(c.clone());
        Ok(c)
    }
}

/// One upload: a machine, a source and the driver's options. Build it with
/// [`Upload::new`], set options, then [`run`](Upload::run) it.
#[must_use]
pub struct Upload<M: UploadMachine> {
    machine: M,
    source: Source,
    shared: Shared,
    checkpoint_file: Option<PathBuf>,
    keep_checkpoint: bool,
    progress: Option<ProgressFn>,
    progress_tx: Option<watch::Sender<Progress>>,
    events: Option<EventFn<M::Checkpoint>>,
}

impl<M: UploadMachine> fmt::Debug for Upload<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("source", &self.source)
            .field("settings", &self.shared.settings)
            .field("checkpoint_file", &self.checkpoint_file)
            .finish_non_exhaustive()
    }
}

impl<M: UploadMachine> Upload<M> {
    /// Returns an upload of `source` driven by `machine`. The machine's size must be the
    /// source's (the machine asks for ranges; a range outside the source is an error).
    pub fn new(machine: M, source: Source) -> Self {
        Self {
            machine,
            source,
            shared: Shared::default(),
            checkpoint_file: None,
            keep_checkpoint: false,
            progress: None,
            progress_tx: None,
            events: None,
        }
    }

    /// Sends requests with this client instead of the default hyper client (see
    /// [`HttpClient`]). A hyper-util `Client<C, RequestBody>` (or `Client<C, Full<Bytes>>`,
    /// whose bodies may outlive a dropped upload: see [`RequestBody`]) with any connector
    /// works as it is. The connect timeout and TLS options do not apply to an injected client;
    /// the request timeout, the response cap and the scheme check do.
    pub fn client(mut self, client: impl HttpClient) -> Self {
        self.shared.client = Some(Arc::new(client));
        self
    }

    /// Like [`client`](Self::client), sharing one client (and its connection pool)
    /// between uploads.
    pub fn shared_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.shared.client = Some(client);
        self
    }

    /// Uses this rustls configuration for the default client (for example
    /// [`tls_config_with_roots_pem`] to trust a private CA). Default:
    /// [`default_tls_config`].
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.shared.tls = Some(config);
        self
    }

    /// Allows plain `http://` to hosts that are not loopback (default: refused with
    /// [`Error::InsecureUrl`]; `https` and loopback `http` are always allowed).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.shared.settings.allow_insecure_http = allow;
        self
    }

    /// Time allowed to connect (TCP) with the default client; default 30 s, `None` for
    /// no limit.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.shared.settings.connect_timeout = timeout;
        self
    }

    /// Upper bound on one request, from connecting to the end of the response body;
    /// also the limit of requests for which the machine suggests no deadline. Default
    /// 15 minutes. The machine's own suggested deadline applies when it is sooner. A
    /// request over its limit is dropped and reported to the machine as timed out.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.shared.settings.request_timeout = timeout;
        self
    }

    /// Largest response body read (default 1 MiB). A larger one (declared or actual) is
    /// reported to the machine as
    /// [`TransportFailure::ResponseTooLarge`](upload_session::TransportFailure::ResponseTooLarge),
    /// never buffered.
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.shared.settings.max_response_body = bytes;
        self
    }

    /// Stops the upload when `token` is cancelled.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.shared.cancel = Some(token);
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
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Publishes progress on a watch channel (create it with
    /// `tokio::sync::watch::channel(Progress::default())`); the same values as
    /// [`on_progress`](Self::on_progress).
    pub fn progress_sender(mut self, tx: watch::Sender<Progress>) -> Self {
        self.progress_tx = Some(tx);
        self
    }

    /// Calls `f` with every event the machine emits (retries, resyncs, restarts,
    /// checkpoints…), for logging. Events never show secrets in `Debug`.
    pub fn on_event(mut self, f: impl FnMut(&Event<M::Checkpoint>) + Send + 'static) -> Self {
        self.events = Some(Box::new(f));
        self
    }

    /// Calls `f` whenever the machine needs a (new) access token: at the start when the
    /// machine was built without one, and after the server rejected the current one.
    /// An `Err` stops the upload with [`Error::TokenUnavailable`].
    pub fn token_provider<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AccessToken, String>> + Send + 'static,
    {
        self.shared.tokens = Some(token_provider(f));
        self
    }

    pub(crate) fn shared_mut(&mut self) -> &mut Shared {
        &mut self.shared
    }

    /// The machine (for example to read its phase or a checkpoint before running).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Calls the progress callback and publishes on the watch channel.
    fn report(&mut self, progress: Option<Progress>) {
        let Some(p) = progress else { return };
        if let Some(f) = &mut self.progress {
            f(&p);
        }
        if let Some(tx) = &self.progress_tx {
            tx.send_replace(p);
        }
    }

    /// Stops after the source changed: deletes the server session (so it neither blocks
    /// the target nor can be committed) and removes the now useless checkpoint.
    async fn abandon(
        &mut self,
        client: &Arc<dyn HttpClient>,
        settings: &Arc<Settings>,
        error: Error,
    ) -> Result<M::Completed, Error> {
        let mut abandon = Abandon::start(&mut self.machine, now());
        loop {
            match abandon.next(&mut self.machine, now()) {
                AbandonStep::Send(req) => {
                    let id = req.id();
                    match transport::send(client.clone(), req, settings.clone()).await {
                        Ok(Sent::Response(r)) => self.machine.handle_response(now(), id, r)?,
                        Ok(Sent::Failure(f)) => self.machine.handle_failure(now(), id, f)?,
                        Err(_) => break,
                    }
                }
                AbandonStep::Skip => {}
                AbandonStep::SleepUntil(t) => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
                    self.machine.handle_timeout(now());
                }
                AbandonStep::Stop => break,
            }
        }
        if let Some(p) = &self.checkpoint_file {
            checkpoint::remove(p).await?;
        }
        Err(error)
    }

    /// Drives the upload to its end.
    ///
    /// The future is `Send + 'static` when the machine is (the core's machines are).
    /// Dropping it stops the upload at once: requests in flight are dropped and their
    /// bodies stop (with the default client, see [`RequestBody`]: what the kernel and
    /// hyper had already taken, a few MiB at most, still leaves), the server session and
    /// the latest checkpoint file stay, and nothing is committed unless the last
    /// request's body had already been handed over whole.
    ///
    /// # Errors
    /// [`Error::Upload`] when the machine gives up; [`Error::Cancelled`] when the cancel
    /// token fired; [`Error::SourceChanged`] when the source changed (nothing is
    /// committed); the other [`Error`] variants for the source, TLS, tokens and the
    /// checkpoint file.
    pub async fn run(mut self) -> Result<M::Completed, Error>
    where
        M::Checkpoint: Serialize,
    {
        let client = self.shared.client()?;
        let settings = Arc::new(self.shared.settings.clone());
        let cancel = self.shared.cancel.clone().unwrap_or_default();
        let started = now();
        let mut meter = ProgressMeter::new(started);
        // Requests are spawned on the runtime this future runs in (none: an error, not a
        // panic).
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Request("the upload must run inside a tokio runtime".into()))?;
        let mut in_flight: InFlight = JoinSet::new();
        self.machine.handle_wall_clock(started, SystemTime::now());
        loop {
            let output = self.machine.poll_output(now());
            // Events (a checkpoint above all) and the result are taken even after a
            // cancel; no new work is started.
            if driver::starts_work(&output) && cancel.is_cancelled() {
                return Err(cancelled_error(self.checkpoint_file.clone()).await);
            }
            match output {
                Output::Send(req) => {
                    if req.kind() != RequestKind::Cancel {
                        if let Err(e) = self.source.check_unchanged().await {
                            drop(in_flight);
                            return self.abandon(&client, &settings, e).await;
                        }
                    }
                    driver::check_scheme(req.request().uri(), settings.allow_insecure_http)?;
                    let id = req.id();
                    let body_len = req.request().body().len() as u64;
                    let fut = transport::send(client.clone(), req, settings.clone());
                    in_flight.spawn_on(async move { (id, body_len, fut.await) }, &runtime);
                }
                Output::NeedData { offset, len } => {
                    let read = tokio::select! {
                        r = self.source.read(offset, len) => r,
                        _ = cancel.cancelled() => return Err(cancelled_error(self.checkpoint_file.clone()).await),
                    };
                    let data = match read {
                        Ok(d) => d,
                        Err(e @ Error::SourceChanged { .. }) => {
                            drop(in_flight);
                            return self.abandon(&client, &settings, e).await;
                        }
                        Err(e) => return Err(e),
                    };
                    if let Err(e) = self.source.check_unchanged().await {
                        drop(in_flight);
                        return self.abandon(&client, &settings, e).await;
                    }
                    self.machine.provide_data(offset, data)?;
                }
                Output::Event(event) => {
                    match &event {
                        Event::TokenNeeded => {
                            let Some(provider) = self.shared.tokens.clone() else {
                                return Err(Error::TokenUnavailable {
                                    reason: "no token provider is configured".into(),
                                });
                            };
                            let token = tokio::select! {
                                t = provider() => t,
                                _ = cancel.cancelled() => return Err(cancelled_error(self.checkpoint_file.clone()).await),
                            };
                            let token =
                                token.map_err(|reason| Error::TokenUnavailable { reason })?;
                            self.machine.set_access_token(token);
                        }
                        Event::Checkpoint(cp) => {
                            if let Some(path) = &self.checkpoint_file {
                                checkpoint::save(path, cp).await?;
                            }
                        }
                        Event::Progress {
                            acknowledged,
                            total,
                        } => {
                            let p = meter.acknowledged(now(), *acknowledged, *total);
                            self.report(Some(p));
                        }
                        _ => {}
                    }
                    // After handling: a checkpoint the callback sees is already saved.
                    if let Some(f) = &mut self.events {
                        f(&event);
                    }
                }
                Output::Wait(t) => {
                    if t.is_none() && in_flight.is_empty() {
                        return Err(Error::Stalled(
                            "the machine waits with no request in flight (a manual commit?)",
                        ));
                    }
                    let sleep = async {
                        match t {
                            Some(t) => {
                                tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(cancelled_error(self.checkpoint_file.clone()).await),
                        Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                            // A request task that panicked (or was aborted) is an error,
                            // never a hang.
                            let (id, body_len, sent) = joined.map_err(|e| {
                                Error::Request(if e.is_panic() {
                                    "a request task panicked".into()
                                } else {
                                    "a request task was aborted".into()
                                })
                            })?;
                            match sent? {
                                Sent::Response(response) => {
                                    meter.sent(response.status().is_success(), body_len);
                                    let now = now();
                                    self.machine.handle_wall_clock(now, SystemTime::now());
                                    self.machine.handle_response(now, id, response)?;
                                }
                                Sent::Failure(f) => self.machine.handle_failure(now(), id, f)?,
                            }
                        }
                        _ = sleep => self.machine.handle_timeout(now()),
                    }
                }
                Output::Finished(Ok(completed)) => {
                    // The last fragment's answer is the item, not a new offset: report
                    // the end so that progress reaches the total.
                    let end = meter.finished(now(), self.source.size());
                    self.report(end);
                    if let (Some(p), false) = (&self.checkpoint_file, self.keep_checkpoint) {
                        checkpoint::remove(p).await?;
                    }
                    return Ok(completed);
                }
                Output::Finished(Err(e)) => return Err(Error::Upload(e)),
            }
        }
    }
}

/// Resumes from `checkpoint_file` when it exists, else calls `start` with the source's
/// fingerprint to build a new machine. A checkpoint file written by the blocking
/// adapter resumes here too (same format, same file fingerprint).
///
/// # Errors
/// [`Error::CheckpointFile`] when the file exists but cannot be read or parsed;
/// [`Error::Resume`] when it cannot be resumed (for example
/// [`ResumeError::SourceChanged`](upload_session::ResumeError::SourceChanged): the source is not what was being uploaded; delete the
/// file to start over); [`Error::Build`] from `start`.
pub async fn resume_or_start<M, F>(
    checkpoint_file: &Path,
    source: &Source,
    config: M::Config,
    token: Option<AccessToken>,
    start: F,
) -> Result<Prepared<M>, Error>
where
    M: Resumable,
    M::Checkpoint: DeserializeOwned,
    F: FnOnce(SourceFingerprint, M::Config, Option<AccessToken>) -> Result<M, BuildError>,
{
    let loaded = checkpoint::load::<M::Checkpoint>(checkpoint_file).await?;
    driver::prepare(loaded, source.fingerprint(), config, token, start)
}
