//! What every adapter needs: pure helpers, no I/O.
//!
//! The adapters (`upload-session-blocking` on ureq, `upload-session-async` on hyper and
//! tokio) differ in how they move bytes and keep time; everything they decide the same
//! way lives here, so that both decide it identically:
//!
//! - [`AdapterError`]: why an adapter's upload stopped (each adapter's `Error`).
//! - The checkpoint file format: [`encode_checkpoint`] / [`decode_checkpoint`] (the
//!   core's checkpoint as JSON, at most [`MAX_CHECKPOINT_BYTES`]); writing the file
//!   atomically stays in each adapter. A file written by one adapter resumes in the other.
//! - Resume or start: [`Resumable`] (the protocols' `resume` constructors behind one
//!   trait), [`Prepared`] and [`prepare`] (the decision, given the loaded checkpoint).
//! - Progress: [`Progress`] and the [`ProgressMeter`] that computes it (time is passed in).
//! - The drive loop's decisions: [`starts_work`] (what a cancel stops), [`Abandon`] (the
//!   bounded clean-up after the source changed).
//! - Sending: the http-vs-https/loopback policy ([`check_scheme`], [`is_loopback`]),
//!   [`request_time_left`], [`io_failure`], default limits.
//! - Sources: [`check_range`], [`FileStamp`] (the modification stamp and change
//!   detection), [`ForwardWindow`] (a forward-only reader's retry window).
//!
//! Nothing here reads files, opens sockets, sleeps or reads a clock: instants and file
//! metadata are passed in.

mod error;
mod source;

pub use error::AdapterError;
pub use source::{
    FileStamp, ForwardRead, ForwardWindow, MAX_READ, check_range, source_ended_early,
};

use crate::dropbox::{DropboxConfig, DropboxUpload};
use crate::onedrive::{OneDriveConfig, OneDriveUpload};
use crate::{
    AccessToken, BuildError, OutgoingRequest, Output, RequestKind, ResumeError, SourceFingerprint,
    TransportFailure, UploadMachine,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Checkpoint files.

/// Largest checkpoint file read back (they are a few KiB).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of a checkpoint file: `checkpoint` serialised as JSON.
///
/// # Errors
/// The serialiser's message when `checkpoint` cannot be serialised.
///
/// # Examples
/// ```
/// use upload_session::driver::{decode_checkpoint, encode_checkpoint};
/// let bytes = encode_checkpoint(&serde_json::json!({"acknowledged": 42})).unwrap();
/// let back: serde_json::Value = decode_checkpoint(&bytes).unwrap();
/// assert_eq!(back["acknowledged"], 42);
/// assert!(decode_checkpoint::<serde_json::Value>(b"{not json").is_err());
/// ```
pub fn encode_checkpoint<K: Serialize>(checkpoint: &K) -> Result<Vec<u8>, String> {
    serde_json::to_vec(checkpoint).map_err(|e| e.to_string())
}

/// Reads a checkpoint file's bytes back. An adapter reads at most
/// `MAX_CHECKPOINT_BYTES + 1` bytes of the file, so that a larger one is refused here
/// without being read whole.
///
/// # Errors
/// A message saying why: larger than [`MAX_CHECKPOINT_BYTES`], or not a valid checkpoint.
pub fn decode_checkpoint<K: DeserializeOwned>(bytes: &[u8]) -> Result<K, String> {
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err("larger than any checkpoint".into());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not a valid checkpoint ({e})"))
}

// ---------------------------------------------------------------------------------------
// Resume or start.

/// A machine that can continue from its checkpoint (the glue a `resume_or_start` needs;
/// each protocol's constructor differs).
pub trait Resumable: UploadMachine + Sized {
    /// The machine's behaviour configuration (not part of a checkpoint).
    type Config;

    /// Continues the upload `checkpoint` describes, reading `source` as it is now.
    ///
    /// # Errors
    /// [`ResumeError::SourceChanged`] when the source differs from the checkpoint's;
    /// other variants when the checkpoint is unusable.
    fn resume(
        checkpoint: Self::Checkpoint,
        source: &SourceFingerprint,
        config: Self::Config,
        token: Option<AccessToken>,
    ) -> Result<Self, ResumeError>;
}

impl Resumable for DropboxUpload {
    type Config = DropboxConfig;

    fn resume(
        checkpoint: Self::Checkpoint,
        source: &SourceFingerprint,
        config: DropboxConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, ResumeError> {
        DropboxUpload::resume(checkpoint, source, config, token)
    }
}

impl Resumable for OneDriveUpload {
    type Config = OneDriveConfig;

    fn resume(
        checkpoint: Self::Checkpoint,
        source: &SourceFingerprint,
        config: OneDriveConfig,
        token: Option<AccessToken>,
    ) -> Result<Self, ResumeError> {
        OneDriveUpload::resume(checkpoint, source, config, token)
    }
}

/// A machine ready to run, and whether it continues a checkpoint.
#[derive(Debug)]
#[non_exhaustive]
pub struct Prepared<M> {
    /// The machine.
    pub machine: M,
    /// True when it was resumed from the checkpoint file.
    pub resumed: bool,
}

/// The resume-or-start decision: resumes from `loaded` (the checkpoint file's content,
/// when there is one), else calls `start` with the source's `fingerprint`.
///
/// # Errors
/// [`AdapterError::Resume`] when the checkpoint cannot be resumed (for example
/// [`ResumeError::SourceChanged`]); [`AdapterError::Build`] from `start`.
pub fn prepare<M, F>(
    loaded: Option<M::Checkpoint>,
    fingerprint: SourceFingerprint,
    config: M::Config,
    token: Option<AccessToken>,
    start: F,
) -> Result<Prepared<M>, AdapterError>
where
    M: Resumable,
    F: FnOnce(SourceFingerprint, M::Config, Option<AccessToken>) -> Result<M, BuildError>,
{
    match loaded {
        Some(cp) => Ok(Prepared {
            machine: M::resume(cp, &fingerprint, config, token)?,
            resumed: true,
        }),
        None => Ok(Prepared {
            machine: start(fingerprint, config, token)?,
            resumed: false,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Progress.

/// Progress of an upload, reported whenever the server acknowledges bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes the server holds, counted from the start of the file.
    pub acknowledged: u64,
    /// File size.
    pub total: u64,
    /// Throughput of this run: request body bytes the server accepted (2xx), divided by
    /// the time since the adapter's `Upload::run` started.
    pub bytes_per_second: f64,
    /// Time since the adapter's `Upload::run` started (on the adapter's clock).
    pub elapsed: Duration,
}

/// Counts what one run of a drive loop sent and reported, and turns it into
/// [`Progress`].
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use upload_session::driver::ProgressMeter;
/// let t0 = Instant::now();
/// let mut meter = ProgressMeter::new(t0);
/// meter.sent(true, 1000);
/// meter.sent(false, 500); // not accepted: not counted
/// let p = meter.acknowledged(t0 + Duration::from_secs(2), 1000, 4000);
/// assert_eq!(p.bytes_per_second, 500.0);
/// // The end is reported once more only when the last acknowledgement did not reach it.
/// assert!(meter.finished(t0 + Duration::from_secs(3), 4000).is_some());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ProgressMeter {
    started: Instant,
    accepted: u64,
    reported: u64,
}

impl ProgressMeter {
    /// A meter for a run that started at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            accepted: 0,
            reported: 0,
        }
    }

    /// Records a response to a request with a `body_len`-byte body; `success` when its
    /// status was 2xx.
    pub fn sent(&mut self, success: bool, body_len: u64) {
        if success {
            self.accepted = self.accepted.saturating_add(body_len);
        }
    }

    fn at(&self, now: Instant, acknowledged: u64, total: u64) -> Progress {
        let elapsed = now.saturating_duration_since(self.started);
        let secs = elapsed.as_secs_f64();
        Progress {
            acknowledged,
            total,
            bytes_per_second: if secs > 0.0 {
                self.accepted as f64 / secs
            } else {
                0.0
            },
            elapsed,
        }
    }

    /// The progress to report for an [`Event::Progress`](crate::Event::Progress).
    pub fn acknowledged(&mut self, now: Instant, acknowledged: u64, total: u64) -> Progress {
        self.reported = acknowledged;
        self.at(now, acknowledged, total)
    }

    /// The progress to report when the upload of a `total`-byte source completed: the
    /// last fragment's answer is the item, not a new offset, so the end is reported when
    /// no acknowledgement reached it.
    pub fn finished(&mut self, now: Instant, total: u64) -> Option<Progress> {
        (self.reported < total).then(|| self.acknowledged(now, total, total))
    }
}

// ---------------------------------------------------------------------------------------
// Drive loop decisions.

/// True for the outputs that start new work (a request, a read, a wait), which a cancel
/// stops; events (a checkpoint above all) and the result are still taken after a cancel.
pub fn starts_work<C, K>(output: &Output<C, K>) -> bool {
    matches!(
        output,
        Output::Send(_) | Output::NeedData { .. } | Output::Wait(_)
    )
}

/// The bounded clean-up after the source changed: the machine is cancelled (its session
/// is deleted, so it neither blocks the target nor can be committed), for at most 16
/// outputs and 30 s, waiting out only short backoffs.
#[derive(Clone, Copy, Debug)]
pub struct Abandon {
    started: Instant,
    steps: u32,
}

/// What to do next while abandoning (from [`Abandon::next`]).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // consumed at once
pub enum AbandonStep {
    /// Send this `Cancel` request and report its outcome to the machine (stop on a fatal
    /// error).
    Send(OutgoingRequest),
    /// Nothing to do: ask again.
    Skip,
    /// Sleep until this instant, call `handle_timeout`, then ask again.
    SleepUntil(Instant),
    /// Stop (remove the checkpoint file and return the error).
    Stop,
}

impl Abandon {
    /// Cancels `machine` at `now` and starts counting.
    pub fn start<M: UploadMachine>(machine: &mut M, now: Instant) -> Self {
        machine.cancel(now);
        Self {
            started: now,
            steps: 0,
        }
    }

    /// The next step, polling `machine` at `now`.
    pub fn next<M: UploadMachine>(&mut self, machine: &mut M, now: Instant) -> AbandonStep {
        if self.steps >= 16 || now.saturating_duration_since(self.started) > Duration::from_secs(30)
        {
            return AbandonStep::Stop;
        }
        self.steps += 1;
        match machine.poll_output(now) {
            Output::Send(req) if req.kind() == RequestKind::Cancel => AbandonStep::Send(req),
            Output::Event(_) => AbandonStep::Skip,
            Output::Wait(Some(t)) if t.saturating_duration_since(now) < Duration::from_secs(5) => {
                AbandonStep::SleepUntil(t)
            }
            _ => AbandonStep::Stop,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sending.

/// Default time allowed to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upper bound on one request (also used when the machine suggests no deadline).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default largest response body read.
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 1 << 20;

/// True for `localhost` and loopback addresses (`127.0.0.0/8`, `::1`, with or without
/// brackets).
///
/// # Examples
/// ```
/// use upload_session::driver::is_loopback;
/// assert!(is_loopback("127.8.9.10") && is_loopback("[::1]") && is_loopback("LOCALHOST"));
/// assert!(!is_loopback("localhost.evil") && !is_loopback("10.0.0.1"));
/// ```
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Refuses schemes other than https, and http to non-loopback hosts unless
/// `allow_insecure`.
///
/// # Errors
/// [`AdapterError::InsecureUrl`] for plain http to another host (naming only the host,
/// never the URL, which may be pre-authenticated); [`AdapterError::Request`] for other
/// schemes.
pub fn check_scheme(uri: &http::Uri, allow_insecure: bool) -> Result<(), AdapterError> {
    let host = uri.host().unwrap_or("").to_string();
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_insecure || is_loopback(&host) => Ok(()),
        Some("http") => Err(AdapterError::InsecureUrl { host }),
        _ => Err(AdapterError::Request(
            "only http and https URLs can be sent".into(),
        )),
    }
}

/// The time one request may take: until the machine's `deadline` or `request_timeout`
/// from `now`, whichever is sooner; `None` when the deadline has already passed (report
/// [`TransportFailure::TimedOut`] without sending).
pub fn request_time_left(
    now: Instant,
    deadline: Option<Instant>,
    request_timeout: Duration,
) -> Option<Duration> {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(now);
            (!left.is_zero()).then(|| left.min(request_timeout))
        }
        None => Some(request_timeout),
    }
}

/// Maps an I/O error kind onto a transport failure (`None`: the kind says nothing).
pub fn io_failure(kind: io::ErrorKind) -> Option<TransportFailure> {
    use io::ErrorKind as K;
    Some(match kind {
        K::ConnectionRefused
        | K::NotConnected
        | K::AddrNotAvailable
        | K::AddrInUse
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown => TransportFailure::Connect,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => TransportFailure::Reset,
        K::UnexpectedEof => TransportFailure::Closed,
        K::TimedOut | K::WouldBlock => TransportFailure::TimedOut,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "",
            "example.com",
            "10.0.0.1",
            "192.168.1.1",
            "[::2]",
            "localhost.evil",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn plain_http_needs_loopback_or_consent() {
        let u = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(check_scheme(&u("https://graph.microsoft.com/v1.0"), false).is_ok());
        assert!(check_scheme(&u("http://127.0.0.1:8080/x"), false).is_ok());
        assert!(check_scheme(&u("http://[::1]:8080/x"), false).is_ok());
        assert!(matches!(
            check_scheme(&u("http://graph.microsoft.com/v1.0"), false),
            Err(AdapterError::InsecureUrl { host }) if host == "graph.microsoft.com"
        ));
        assert!(check_scheme(&u("http://graph.microsoft.com/v1.0"), true).is_ok());
        assert!(matches!(
            check_scheme(&u("ftp://example.com/x"), true),
            Err(AdapterError::Request(_))
        ));
    }

    #[test]
    fn request_time_is_the_sooner_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(request_time_left(t0, None, s(9)), Some(s(9)));
        assert_eq!(request_time_left(t0, Some(t0 + s(3)), s(9)), Some(s(3)));
        assert_eq!(request_time_left(t0, Some(t0 + s(30)), s(9)), Some(s(9)));
        assert_eq!(request_time_left(t0 + s(1), Some(t0), s(9)), None);
    }

    #[test]
    fn io_kinds_map_onto_failures() {
        use io::ErrorKind as K;
        assert_eq!(
            io_failure(K::ConnectionRefused),
            Some(TransportFailure::Connect)
        );
        assert_eq!(io_failure(K::BrokenPipe), Some(TransportFailure::Reset));
        assert_eq!(io_failure(K::UnexpectedEof), Some(TransportFailure::Closed));
        assert_eq!(io_failure(K::WouldBlock), Some(TransportFailure::TimedOut));
        assert_eq!(io_failure(K::Other), None);
    }

    #[test]
    fn progress_counts_only_accepted_bodies_and_reaches_the_end_once() {
        let t0 = Instant::now();
        let mut m = ProgressMeter::new(t0);
        assert_eq!(m.acknowledged(t0, 0, 10).bytes_per_second, 0.0);
        m.sent(true, 10);
        m.sent(false, 99);
        let p = m.acknowledged(t0 + Duration::from_secs(5), 10, 10);
        assert_eq!((p.acknowledged, p.bytes_per_second), (10, 2.0));
        assert!(m.finished(t0 + Duration::from_secs(6), 10).is_none());
    }
}
