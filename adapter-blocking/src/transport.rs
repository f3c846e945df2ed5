//! Sending one [`OutgoingRequest`] with ureq 3, and mapping what happens onto a response,
//! a [`TransportFailure`] for the machine, or a fatal [`Error`].
//!
//! Per request, whatever agent the caller injected: 4xx/5xx come back as responses
//! (`http_status_as_error(false)`), redirects are not followed (the machine sees the
//! 3xx), the machine's deadline becomes ureq's `timeout_global`, and the response body is
//! read with a cap.

use crate::CancelHandle;
use crate::Error;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use upload_session::bytes::Bytes;
use upload_session::driver::{
    self, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BODY, DEFAULT_REQUEST_TIMEOUT, check_scheme,
};
use upload_session::http;
use upload_session::{OutgoingRequest, RequestId, TransportFailure};

/// How requests are sent.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub allow_insecure_http: bool,
    pub connect_timeout: Option<Duration>,
    /// Upper bound on one request; also used when the machine suggests no deadline.
    pub request_timeout: Duration,
    pub max_response_body: u64,
    /// Send `Expect: 100-continue` with bodies over [`EXPECT_CONTINUE_ABOVE`].
    pub expect_continue: bool,
}

/// Bodies larger than this go with `Expect: 100-continue`, so that a server answering
/// from the head alone (429, 401, 413…) is heard before the body is sent. Without it the
/// server closes the connection under a body it does not read, and ureq, still writing,
/// reports a broken connection instead of the answer (losing a `Retry-After`).
pub(crate) const EXPECT_CONTINUE_ABOVE: usize = 64 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_insecure_http: false,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            expect_continue: true,
        }
    }
}

/// The outcome of one send.
pub(crate) enum Sent {
    /// A response (any status).
    Response(http::Response<Bytes>),
    /// A transport failure to report to the machine.
    Failure(TransportFailure),
    /// The cancel handle fired while the body was being sent.
    Cancelled,
}

/// Largest piece of a request body handed to ureq at once, and the size of the default
/// agent's output buffer: ureq copies the body through that buffer and writes it to the
/// socket one buffer at a time, so 1 MiB (instead of ureq's 128 KiB) means 8× fewer
/// copies-and-sends per fragment. Measured in BENCHMARKS.md (section 3: a raw ureq loop
/// gains ~1.2× on loopback with it). Cancellation still stops within one piece.
pub(crate) const BODY_PIECE: usize = 1024 * 1024;

/// The agent used when the caller gives none: rustls with the webpki roots, 4xx/5xx as
/// responses, no redirects, a [`BODY_PIECE`] output buffer.
pub(crate) fn default_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .output_buffer_size(BODY_PIECE)
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!(
            "upload-session-blocking/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .into()
}

/// What stops a request body mid-way: the caller's cancel handle, and the drive loop's
/// own flag, raised when `run` returns while requests are still on the wire (their
/// outcome is no longer wanted).
#[derive(Clone, Debug, Default)]
pub(crate) struct Stop {
    /// The caller's handle.
    pub user: Option<CancelHandle>,
    /// Raised by the drive loop when it returns.
    pub run: CancelHandle,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.run.is_cancelled() || self.user.as_ref().is_some_and(CancelHandle::is_cancelled)
    }

    fn user_cancelled(&self) -> bool {
        self.user.as_ref().is_some_and(CancelHandle::is_cancelled)
    }
}

/// A request body that stops when the cancel handle fires (so a cancel does not wait for
/// a whole fragment to go out).
struct CancellableBody<'a> {
    data: &'a [u8],
    cancel: Option<&'a Stop>,
}

impl Read for CancellableBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_some_and(Stop::is_set) {
            return Err(io::Error::other("upload cancelled"));
        }
        // Bounded pieces keep cancellation prompt. (Not `Interrupted`: readers retry it.)
        let n = buf.len().min(self.data.len()).min(BODY_PIECE);
        let (head, rest) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = rest;
        Ok(n)
    }
}

/// Maps an I/O error onto a transport failure (the core's table; anything else is
/// `Other`).
fn io_failure(e: &io::Error) -> TransportFailure {
    driver::io_failure(e.kind()).unwrap_or(TransportFailure::Other)
}

/// Maps a ureq error: `Ok` is a failure to report to the machine, `Err` stops the upload.
fn classify(e: ureq::Error) -> Result<TransportFailure, Error> {
    use ureq::Error as U;
    match e {
        U::Timeout(_) => Ok(TransportFailure::TimedOut),
        U::HostNotFound | U::ConnectionFailed => Ok(TransportFailure::Connect),
        U::BodyExceedsLimit(_) => Ok(TransportFailure::ResponseTooLarge),
        U::Io(io) => {
            // ureq wraps its own errors (a body limit, a timeout) in io::Error, and
            // rustls reports handshake failures through the stream as io::Error.
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return classify_tls(tls);
            }
            match io.downcast::<ureq::Error>() {
                Ok(inner) => classify(inner),
                Err(io) => Ok(io_failure(&io)),
            }
        }
        U::Protocol(_) => Ok(TransportFailure::Other),
        U::Tls(m) => Err(Error::Tls(m.to_string())),
        U::Pem(p) => Err(Error::Tls(p.to_string())),
        U::Rustls(r) => classify_tls(&r),
        // Never carries the URI: it may be a pre-authenticated URL.
        U::BadUri(_) => Err(Error::Request("invalid URI".into())),
        U::Http(h) => Err(Error::Request(h.to_string())),
        U::StatusCode(_) | U::RedirectFailed | U::TooManyRedirects => Err(Error::Request(
            "unexpected redirect or status handling".into(),
        )),
        other => Err(Error::Request(other.to_string())),
    }
}

/// A TLS failure: certificate and negotiation failures (and alerts, the peer's explicit
/// refusal) cannot be fixed by retrying and stop the upload; anything else (a corrupt
/// record on a flaky link) is a transport failure the machine may retry.
fn classify_tls(e: &rustls::Error) -> Result<TransportFailure, Error> {
    use rustls::Error as R;
    match e {
        R::InvalidCertificate(_)
        | R::NoCertificatesPresented
        | R::UnsupportedNameType
        | R::PeerIncompatible(_)
        | R::InvalidCertRevocationList(_)
        | R::AlertReceived(_) => Err(Error::Tls(e.to_string())),
        _ => Ok(TransportFailure::Other),
    }
}

/// Sends `req` and reads the whole (capped) response.
pub(crate) fn send(
    agent: &ureq::Agent,
    req: OutgoingRequest,
    settings: &Settings,
    cancel: Option<&Stop>,
) -> Result<Sent, Error> {
    let (_, request, deadline) = req.into_parts();
    check_scheme(request.uri(), settings.allow_insecure_http)?;
    let Some(timeout) =
        driver::request_time_left(Instant::now(), deadline, settings.request_timeout)
    else {
        return Ok(Sent::Failure(TransportFailure::TimedOut));
    };
    let (mut parts, body) = request.into_parts();
    if settings.expect_continue && body.len() > EXPECT_CONTINUE_ABOVE {
        parts.headers.insert(
            http::header::EXPECT,
            http::HeaderValue::from_static("100-continue"),
        );
    }
    let has_length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let result = if body.is_empty() && !has_length {
        run(
            agent,
            http::Request::from_parts(parts, ()),
            timeout,
            settings,
        )
    } else if has_length && !body.is_empty() {
        let mut reader = CancellableBody {
            data: &body[..],
            cancel,
        };
        let send = ureq::SendBody::from_reader(&mut reader);
        run(
            agent,
            http::Request::from_parts(parts, send),
            timeout,
            settings,
        )
    } else {
        run(
            agent,
            http::Request::from_parts(parts, &body[..]),
            timeout,
            settings,
        )
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if cancel.is_some_and(Stop::user_cancelled) {
                return Ok(Sent::Cancelled);
            }
            return classify(e).map(Sent::Failure);
        }
    };
    let (parts, mut body) = response.into_parts();
    match body
        .with_config()
        .limit(settings.max_response_body)
        .read_to_vec()
    {
        Ok(v) => Ok(Sent::Response(http::Response::from_parts(
            parts,
            Bytes::from(v),
        ))),
        Err(e) => classify(e).map(Sent::Failure),
    }
}

/// What a transport worker hands back to the drive loop: the outcome of one request.
pub(crate) struct Done {
    /// The machine's id of the request.
    pub id: RequestId,
    /// Bytes of its body (for the throughput meter).
    pub body_len: u64,
    /// What [`send`] returned (a panic inside it becomes an error).
    pub outcome: Result<Sent, Error>,
}

/// Starts `req` on its own transport thread; its [`Done`] arrives on `tx`. The agent is
/// a clone (ureq agents share their connection pool). A panic in the transport is caught
/// and reported as [`Error::Request`], so the drive loop never waits for an answer that
/// cannot come. When the loop has returned meanwhile, the answer is dropped.
///
/// # Errors
/// [`Error::Request`] when the thread cannot be started.
pub(crate) fn spawn(
    agent: &ureq::Agent,
    req: OutgoingRequest,
    settings: &Settings,
    stop: &Stop,
    tx: &mpsc::Sender<Done>,
) -> Result<(), Error> {
    let id = req.id();
    let body_len = req.request().body().len() as u64;
    let (agent, settings, stop, tx) = (agent.clone(), settings.clone(), stop.clone(), tx.clone());
    std::thread::Builder::new()
        .name("upload-session-send".into())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                send(&agent, req, &settings, Some(&stop))
            }))
            .unwrap_or_else(|_| Err(Error::Request("the transport worker panicked".into())));
            // The loop may be gone (it returned): nobody wants this answer any more.
            let _ = tx.send(Done {
                id,
                body_len,
                outcome,
            });
        })
        .map(drop)
        .map_err(|e| Error::Request(format!("cannot start a transport worker: {e}")))
}

fn run<S: ureq::AsSendBody>(
    agent: &ureq::Agent,
    request: http::Request<S>,
    timeout: Duration,
    settings: &Settings,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let mut config = agent
        .configure_request(request)
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout));
    if let Some(c) = settings.connect_timeout {
        config = config.timeout_connect(Some(c));
    }
    agent.run(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_onto_failures() {
        let f = |k| io_failure(&io::Error::from(k));
        assert_eq!(
            f(io::ErrorKind::ConnectionRefused),
            TransportFailure::Connect
        );
        assert_eq!(f(io::ErrorKind::ConnectionReset), TransportFailure::Reset);
        assert_eq!(f(io::ErrorKind::BrokenPipe), TransportFailure::Reset);
        assert_eq!(f(io::ErrorKind::UnexpectedEof), TransportFailure::Closed);
        assert_eq!(f(io::ErrorKind::TimedOut), TransportFailure::TimedOut);
        assert_eq!(f(io::ErrorKind::Other), TransportFailure::Other);
        assert!(matches!(
            classify(ureq::Error::BodyExceedsLimit(10)),
            Ok(TransportFailure::ResponseTooLarge)
        ));
        let wrapped = io::Error::other(ureq::Error::BodyExceedsLimit(10));
        assert!(matches!(
            classify(ureq::Error::Io(wrapped)),
            Ok(TransportFailure::ResponseTooLarge)
        ));
        assert!(matches!(
            classify(ureq::Error::BadUri("https://x/?tempauth=SECRET".into())),
            Err(Error::Request(m)) if !m.contains("SECRET")
        ));
    }
}
