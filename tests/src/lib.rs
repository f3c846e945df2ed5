//! # upload-session-emulator
//!
//! A strict emulator of OneDrive (Microsoft Graph `createUploadSession`) and Dropbox API v2
//! (`files/upload_session/*`) upload sessions. It is an independent implementation of both
//! wire protocols, written from `shared/spec/onedrive.md` and `shared/spec/dropbox.md`; it
//! does **not** depend on the `upload-session` core it checks.
//!
//! Two ways to use it:
//! - the pure model [`Emulator::handle`]: `(now, http::Request<Bytes>) -> http::Response<Bytes>`
//!   with virtual time, for in-memory tests (no sockets, no clocks);
//! - the `server` module (default feature `server`): the same model behind hyper on
//!   127.0.0.1, over HTTP/1.1 or TLS, with streamed bodies, real socket faults and
//!   `/_emulator/` control endpoints;
//! - `testkit` (feature `server`): helpers for adapters' end-to-end tests and examples on
//!   top of the server (stored-file and violation checks, deterministic data, example
//!   binaries), and `embedded` (feature `server`): where an example client's uploads go
//!   (a service, a base URL, or this emulator in-process).
//!
//! ## URL layout
//! | Prefix | What |
//! |---|---|
//! | `{base}/onedrive/v1.0/…` | Graph API (create sessions, items, simple upload, sourceUrl commit) |
//! | `{base}/onedrive/up/{session}?tempauth=…` | OneDrive `uploadUrl`s |
//! | `{base}/dropbox/content/2/…` | Dropbox content host (upload-style routes) |
//! | `{base}/dropbox/api/2/…` | Dropbox api host (RPC routes) |
//! | `{base}/_emulator/…` | control endpoints (server only) |
//!
//! ## Transport faults in the pure model
//! Faults that need a socket are reported on the response as a [`TransportFault`]
//! extension: an in-memory driver must turn [`TransportFault::LostResponse`] and
//! [`TransportFault::Reset`] into a transport failure instead of delivering the response.
//!
//! ```
//! use bytes::Bytes;
//! use upload_session_emulator::{Config, Emulator, DEFAULT_TOKEN};
//! let mut emu = Emulator::new(Config::default());
//! let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
//! let req = http::Request::post("http://127.0.0.1:0/onedrive/v1.0/me/drive/root:/a.bin:/createUploadSession")
//!     .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
//!     .header("Content-Type", "application/json")
//!     .body(Bytes::from_static(b"{}"))
//!     .unwrap();
//! let resp = emu.handle(now, req);
//! assert_eq!(resp.status(), 200);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod dropbox;
#[cfg(feature = "server")]
pub mod embedded;
pub mod faults;
pub mod hash;
pub mod ingest;
pub mod onedrive;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
#[cfg(feature = "server")]
pub mod testkit;
pub mod violations;
pub mod wire;

pub use bytes;
pub use http;

pub use config::{Config, DEFAULT_TOKEN};
pub use faults::{Fault, FaultEngine, FaultPlan, FaultRates, RouteKind, ScriptedFault};
pub use store::{FileRecord, Service, StoredContent};
pub use violations::{Violation, Violations};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, request};
use ingest::{Overflow, Received, Sink, SinkSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// A fault that the transport must carry out instead of (or before) delivering a response.
/// Found in the response's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFault {
    /// The request was applied but the connection closes with no response.
    LostResponse,
    /// The connection dropped mid-body (the request was not answered).
    Reset,
    /// Deliver the response only after this delay (a slow commit).
    Delay(Duration),
}

impl TransportFault {
    /// Returns the transport fault attached to `resp`, if any.
    pub fn of<B>(resp: &Response<B>) -> Option<TransportFault> {
        resp.extensions().get::<TransportFault>().copied()
    }
}

/// Bearer tokens: which are valid, which expired.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    valid: HashSet<String>,
    expired: HashSet<String>,
    accept_any: bool,
    issued: u64,
}

/// The state of one presented token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    /// Valid.
    Valid,
    /// Was valid, has expired.
    Expired,
    /// Never issued.
    Unknown,
}

impl Tokens {
    fn new(config: &Config) -> Self {
        Self {
            valid: config.tokens.iter().cloned().collect(),
            expired: HashSet::new(),
            accept_any: config.accept_any_token,
            issued: 0,
        }
    }

    /// Returns the status of `token`.
    pub fn check(&self, token: &str) -> TokenStatus {
        if self.expired.contains(token) {
            TokenStatus::Expired
        } else if self.accept_any || self.valid.contains(token) {
            TokenStatus::Valid
        } else {
            TokenStatus::Unknown
        }
    }

    /// Expires `token` and every token valid so far (an expiry fault). With
    /// `accept_any_token`, tokens never seen before stay valid.
    pub fn expire_all(&mut self, token: &str) {
        self.expired.insert(token.to_string());
        self.expired.extend(self.valid.drain());
    }

    /// Issues a fresh valid token.
    pub fn issue(&mut self) -> String {
        self.issued += 1;
        let t = format!("emulator-token-{}", self.issued);
        self.valid.insert(t.clone());
        t
    }
}

/// Per-request context handed to a service model.
pub struct Cx<'a> {
    /// Virtual wall-clock time of this request.
    pub now: SystemTime,
    /// Configuration.
    pub config: &'a Config,
    /// Violation counters.
    pub violations: &'a mut Violations,
    /// Fault engine.
    pub faults: &'a mut FaultEngine,
    /// Bearer tokens.
    pub tokens: &'a mut Tokens,
    /// Id of this request (sent back in the service's request-id header).
    pub request_id: String,
    /// The fault decided for this request by [`Cx::decide_fault`].
    pub fault: Option<Fault>,
    /// True inside `complete` (after the body arrived), where `LostResponse` and
    /// `ErrorAfter` faults hide the answer from the client; false in `begin`, whose
    /// immediate answers are always delivered.
    pub completing: bool,
}

impl Cx<'_> {
    /// Decides (once) the fault for this request, now that its route is known.
    pub fn decide_fault(&mut self, route: RouteKind) -> Option<Fault> {
        if self.fault.is_none() {
            self.fault = self.faults.decide(route);
        }
        self.fault.clone()
    }

    /// Records a client rule violation.
    pub fn violation(&mut self, v: Violation) {
        self.violations.record(v);
    }
}

/// What a service decided after looking at a request head.
#[allow(clippy::large_enum_variant)] // built and consumed once per request
pub enum Started<T> {
    /// Answer now; the body is not needed (it is drained or the connection closed).
    Respond(Response<Bytes>),
    /// Read the body into `sink`, then call the service's `complete` with `ticket`.
    Read {
        /// Service continuation.
        ticket: T,
        /// What to compute over the body.
        sink: SinkSpec,
    },
}

/// The interface both service models implement.
pub trait ServiceModel {
    /// Continuation of a request whose body is being read.
    type Ticket: std::fmt::Debug + Send + 'static;
    /// Handles a request head.
    fn begin(&mut self, cx: &mut Cx<'_>, head: &request::Parts) -> Started<Self::Ticket>;
    /// Handles the end of a body that arrived whole.
    fn complete(
        &mut self,
        cx: &mut Cx<'_>,
        ticket: Self::Ticket,
        body: Received,
    ) -> Response<Bytes>;
    /// Handles a connection that dropped mid-body; `keep_prefix` says whether the bytes
    /// that did arrive are kept (OneDrive chaos mode) or discarded.
    fn abort(&mut self, cx: &mut Cx<'_>, ticket: Self::Ticket, body: Received, keep_prefix: bool);
    /// Answers a body that grew beyond its limit (the connection is closed afterwards).
    fn overflow(&mut self, cx: &mut Cx<'_>, ticket: Self::Ticket, limit: u64) -> Response<Bytes>;
    /// Lists the finished files.
    fn files(&self) -> Vec<FileRecord>;
}

#[derive(Debug)]
enum Ticket {
    OneDrive(<onedrive::OneDrive as ServiceModel>::Ticket),
    Dropbox(<dropbox::Dropbox as ServiceModel>::Ticket),
}

/// A request whose head was accepted and whose body is being streamed in.
///
/// Feed it with [`push`](Self::push), then hand it back to [`Emulator::complete`] (the
/// whole body arrived), [`Emulator::abort`] (the connection dropped) or
/// [`Emulator::overflow`] (`push` failed).
#[derive(Debug)]
pub struct PendingBody {
    ticket: Ticket,
    sink: Sink,
    fault: Option<Fault>,
    request_id: String,
    client_request_id: Option<HeaderValue>,
    cut_at: Option<u64>,
    stall: Option<Duration>,
}

impl PendingBody {
    /// Takes the next piece of the body.
    ///
    /// # Errors
    /// [`Overflow`] when the body exceeds what the route allows.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Overflow> {
        self.sink.push(chunk)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.sink.len()
    }

    /// When set, the transport must drop the connection once this many body bytes have
    /// been pushed (an injected reset mid-body), then call [`Emulator::abort`].
    pub fn cut_at(&self) -> Option<u64> {
        self.cut_at
    }

    /// When set, the transport stops reading the body for this long (an injected stall).
    pub fn stall(&self) -> Option<Duration> {
        self.stall
    }
}

/// Outcome of [`Emulator::begin`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built and consumed once per request
pub enum Begin {
    /// Answer now without reading the body.
    Respond(Response<Bytes>),
    /// Stream the body into this.
    Body(PendingBody),
}

/// Everything the inspection API reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Finished files.
    pub files: Vec<FileRecord>,
    /// Violation counters.
    pub violations: Violations,
    /// Requests handled.
    pub requests: u64,
    /// Faults injected.
    pub faults_injected: u64,
}

/// The emulator: both service models, storage, tokens, faults and violation counters.
pub struct Emulator {
    config: Config,
    onedrive: onedrive::OneDrive,
    dropbox: dropbox::Dropbox,
    violations: Violations,
    faults: FaultEngine,
    tokens: Tokens,
    requests: u64,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("requests", &self.requests)
            .field("violations", &self.violations)
            .finish_non_exhaustive()
    }
}

macro_rules! cx {
    ($self:ident, $now:expr, $rid:expr, $fault:expr) => {
        cx!($self, $now, $rid, $fault, false)
    };
    ($self:ident, $now:expr, $rid:expr, $fault:expr, $completing:expr) => {
        Cx {
            now: $now,
            config: &$self.config,
            violations: &mut $self.violations,
            faults: &mut $self.faults,
            tokens: &mut $self.tokens,
            request_id: $rid,
            fault: $fault,
            completing: $completing,
        }
    };
}

impl Emulator {
    /// Creates an emulator with no faults.
    pub fn new(config: Config) -> Self {
        Self {
            onedrive: onedrive::OneDrive::new(&config),
            dropbox: dropbox::Dropbox::new(&config),
            tokens: Tokens::new(&config),
            violations: Violations::default(),
            faults: FaultEngine::new(FaultPlan::none()),
            requests: 0,
            config,
        }
    }

    /// Creates an emulator with a fault plan.
    pub fn with_faults(config: Config, plan: FaultPlan) -> Self {
        let mut e = Self::new(config);
        e.set_fault_plan(plan);
        e
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the base URL used in OneDrive `uploadUrl`s (the server calls this with its
    /// real address).
    pub fn set_base_url(&mut self, base: &str) {
        self.config.base_url = base.trim_end_matches('/').to_string();
    }

    /// Replaces the fault plan (and restarts its generator).
    pub fn set_fault_plan(&mut self, plan: FaultPlan) {
        self.faults = FaultEngine::new(plan);
    }

    /// The fault plan.
    pub fn fault_plan(&self) -> &FaultPlan {
        self.faults.plan()
    }

    /// Issues a fresh valid bearer token (what a refresh would return).
    pub fn issue_token(&mut self) -> String {
        self.tokens.issue()
    }

    /// Expires every token valid so far.
    pub fn expire_tokens(&mut self) {
        self.tokens.expire_all("");
    }

    /// Violation counters.
    pub fn violations(&self) -> &Violations {
        &self.violations
    }

    /// Finished files of both services.
    pub fn files(&self) -> Vec<FileRecord> {
        let mut v = self.onedrive.files();
        v.extend(self.dropbox.files());
        v
    }

    /// The finished file at `path` (display path, case-insensitive) of `service`.
    pub fn file(&self, service: Service, path: &str) -> Option<FileRecord> {
        let want = path.to_lowercase();
        self.files()
            .into_iter()
            .find(|f| f.service == service && f.path.to_lowercase() == want)
    }

    /// Everything the inspection API reports.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files: self.files(),
            violations: self.violations.clone(),
            requests: self.requests,
            faults_injected: self.faults.injected(),
        }
    }

    /// Number of requests handled.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Forgets every session, file, violation and issued token, and restarts the fault
    /// plan; the configuration stays.
    pub fn reset(&mut self) {
        let plan = self.faults.plan().clone();
        *self = Emulator::with_faults(self.config.clone(), plan);
    }

    /// The OneDrive model (seeding existing items, inspecting sessions).
    pub fn onedrive_mut(&mut self) -> &mut onedrive::OneDrive {
        &mut self.onedrive
    }

    /// The Dropbox model (seeding existing files and folders, inspecting sessions).
    pub fn dropbox_mut(&mut self) -> &mut dropbox::Dropbox {
        &mut self.dropbox
    }

    /// Handles one whole request (the pure model).
    ///
    /// Transport faults are reported as a [`TransportFault`] extension on the response.
    pub fn handle(&mut self, now: SystemTime, req: Request<Bytes>) -> Response<Bytes> {
        let (parts, body) = req.into_parts();
        match self.begin(now, &parts) {
            Begin::Respond(r) => r,
            Begin::Body(mut p) => {
                if let Some(cut) = p.cut_at() {
                    let cut = (cut as usize).min(body.len());
                    if p.push(body.slice(..cut)).is_err() {
                        return self.abort(now, p);
                    }
                    return self.abort(now, p);
                }
                match p.push(body) {
                    Ok(()) => self.complete(now, p),
                    Err(o) => self.overflow(now, p, o),
                }
            }
        }
    }

    /// Handles a request head: answers it at once, or returns a [`PendingBody`] to stream
    /// the body into.
    pub fn begin(&mut self, now: SystemTime, head: &request::Parts) -> Begin {
        self.requests += 1;
        let request_id = format!(
            "emu-{:08x}-{:08x}",
            self.faults.plan().seed as u32,
            self.requests
        );
        let client_request_id = echoed_client_request_id(&head.headers);
        let path = head.uri.path();
        let service = if path.starts_with("/onedrive/") {
            Some(Service::OneDrive)
        } else if path.starts_with("/dropbox/") {
            Some(Service::Dropbox)
        } else {
            None
        };
        let Some(service) = service else {
            self.violations.record(Violation::UnknownRoute);
            let mut r = wire::text(StatusCode::NOT_FOUND, "Unknown endpoint");
            stamp(&mut r, None, &request_id, None);
            return Begin::Respond(r);
        };
        let mut cx = cx!(self, now, request_id.clone(), None);
        let started = match service {
            Service::OneDrive => match self.onedrive.begin(&mut cx, head) {
                Started::Respond(r) => Err(r),
                Started::Read { ticket, sink } => Ok((Ticket::OneDrive(ticket), sink)),
            },
            Service::Dropbox => match self.dropbox.begin(&mut cx, head) {
                Started::Respond(r) => Err(r),
                Started::Read { ticket, sink } => Ok((Ticket::Dropbox(ticket), sink)),
            },
        };
        let fault = cx.fault.take();
        match started {
            Err(mut r) => {
                stamp(
                    &mut r,
                    Some(service),
                    &request_id,
                    client_request_id.as_ref(),
                );
                Begin::Respond(r)
            }
            Ok((ticket, sink)) => {
                let declared = wire::content_length(&head.headers).ok().flatten();
                let mut cut_at = None;
                let mut stall = None;
                match &fault {
                    Some(Fault::Reset { .. }) => {
                        let n = declared.unwrap_or(1 << 20);
                        cut_at = Some(self.faults.below(n.max(1)));
                    }
                    Some(Fault::Stall { ms }) => stall = Some(Duration::from_millis(*ms)),
                    _ => {}
                }
                Begin::Body(PendingBody {
                    ticket,
                    sink: Sink::new(sink),
                    fault,
                    request_id,
                    client_request_id,
                    cut_at,
                    stall,
                })
            }
        }
    }

    /// Finishes a request whose whole body arrived.
    pub fn complete(&mut self, now: SystemTime, pending: PendingBody) -> Response<Bytes> {
        let PendingBody {
            ticket,
            sink,
            fault,
            request_id,
            client_request_id,
            ..
        } = pending;
        let received = sink.finish();
        let mut cx = cx!(self, now, request_id.clone(), fault.clone(), true);
        let (mut resp, service) = match ticket {
            Ticket::OneDrive(t) => (
                self.onedrive.complete(&mut cx, t, received),
                Service::OneDrive,
            ),
            Ticket::Dropbox(t) => (
                self.dropbox.complete(&mut cx, t, received),
                Service::Dropbox,
            ),
        };
        match fault {
            Some(Fault::LostResponse) => {
                resp.extensions_mut().insert(TransportFault::LostResponse);
            }
            Some(Fault::SlowResponse { ms }) => {
                resp.extensions_mut()
                    .insert(TransportFault::Delay(Duration::from_millis(ms)));
            }
            _ => {}
        }
        stamp(
            &mut resp,
            Some(service),
            &request_id,
            client_request_id.as_ref(),
        );
        resp
    }

    /// Handles a connection that dropped mid-body. Returns a placeholder response marked
    /// [`TransportFault::Reset`] (nothing is sent on the wire).
    pub fn abort(&mut self, now: SystemTime, pending: PendingBody) -> Response<Bytes> {
        let PendingBody {
            ticket,
            sink,
            fault,
            request_id,
            ..
        } = pending;
        let keep = matches!(fault, Some(Fault::Reset { keep_prefix: true }));
        let received = sink.finish();
        let mut cx = cx!(self, now, request_id, fault);
        match ticket {
            Ticket::OneDrive(t) => self.onedrive.abort(&mut cx, t, received, keep),
            Ticket::Dropbox(t) => self.dropbox.abort(&mut cx, t, received, keep),
        }
        let mut r = wire::empty(StatusCode::BAD_REQUEST);
        r.extensions_mut().insert(TransportFault::Reset);
        r
    }

    /// Answers a body that grew beyond its limit; the transport closes the connection
    /// after sending it.
    pub fn overflow(
        &mut self,
        now: SystemTime,
        pending: PendingBody,
        overflow: Overflow,
    ) -> Response<Bytes> {
        let PendingBody {
            ticket,
            request_id,
            client_request_id,
            ..
        } = pending;
        self.violations.record(Violation::OversizeBody);
        let mut cx = cx!(self, now, request_id.clone(), None);
        let (mut r, service) = match ticket {
            Ticket::OneDrive(t) => (
                self.onedrive.overflow(&mut cx, t, overflow.limit),
                Service::OneDrive,
            ),
            Ticket::Dropbox(t) => (
                self.dropbox.overflow(&mut cx, t, overflow.limit),
                Service::Dropbox,
            ),
        };
        stamp(
            &mut r,
            Some(service),
            &request_id,
            client_request_id.as_ref(),
        );
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        r
    }
}

/// Returns the client's `client-request-id` when it is short visible ASCII (Graph echoes
/// it back; onedrive.md §5.1). Anything else is ignored, so no input can shape a header.
fn echoed_client_request_id(headers: &http::HeaderMap) -> Option<HeaderValue> {
    let v = headers.get("client-request-id")?;
    let ok = v.len() <= 128 && v.as_bytes().iter().all(|b| (0x21..0x7f).contains(b));
    ok.then(|| v.clone())
}

/// Adds the request-id headers every response carries (onedrive §11 rule 45, dropbox §12
/// rule 25). OneDrive echoes a well-formed client `client-request-id`.
fn stamp(
    r: &mut Response<Bytes>,
    service: Option<Service>,
    request_id: &str,
    client_request_id: Option<&HeaderValue>,
) {
    let Ok(v) = HeaderValue::from_str(request_id) else {
        return;
    };
    let h = r.headers_mut();
    match service {
        Some(Service::OneDrive) => {
            h.insert("request-id", v.clone());
            h.insert("client-request-id", client_request_id.cloned().unwrap_or(v));
        }
        Some(Service::Dropbox) => {
            h.insert("x-dropbox-request-id", v);
        }
        None => {
            h.insert("x-request-id", v);
        }
    }
}
