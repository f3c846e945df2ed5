//! Sending one [`OutgoingRequest`]: the [`HttpClient`] seam (a hyper 1 client by
//! default), per-request deadlines, capped response bodies, and the mapping of what
//! happens onto a response, a [`TransportFailure`] for the machine, or a fatal [`Error`].

use crate::Error;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use upload_session::bytes::{Bytes, BytesMut};
use upload_session::driver::{
    self, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BODY, DEFAULT_REQUEST_TIMEOUT, check_scheme,
};
use upload_session::http;
use upload_session::{OutgoingRequest, TransportFailure};

/// A boxed error, as an [`HttpClient`] reports it.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The response body an [`HttpClient`] returns (read by the driver with a cap).
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// The future an [`HttpClient`] returns.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>;

/// Sends HTTP requests for the driver. The default is a hyper 1 client
/// ([`https_client`]); implement this to inject another connector, a proxy, a test
/// double, or an in-process server.
///
/// The driver hands over the request exactly as the core built it (method, URI,
/// headers, body) and expects the response as the server sent it: 4xx/5xx are
/// responses, redirects are not followed. It enforces its own deadline around the
/// returned future (dropping it when the deadline passes) and reads the body with a cap.
///
/// Errors are classified by walking the error's `source()` chain (and `io::Error`
/// payloads): a [`TransportFailure`] anywhere in it is taken as is; a `rustls::Error`
/// about certificates or negotiation stops the upload ([`Error::Tls`]); `io::Error`
/// kinds and hyper's own errors map onto the other failures; a hyper-util connect error
/// is [`TransportFailure::Connect`].
///
/// A hyper-util legacy [`Client`] with a [`RequestBody`] body (the default,
/// [`DefaultClient`]) or a `Full<Bytes>` body is an `HttpClient` for any connector. For a
/// closure, see [`client_fn`].
///
/// Only [`RequestBody`] makes "dropping the upload stops the body" hold: hyper-util
/// drives each connection on a background task that owns the request body, so a
/// `Full<Bytes>` body already handed to it may still be sent whole after the upload
/// future is gone (and a final fragment may then commit).
pub trait HttpClient: Send + Sync + 'static {
    /// Sends `request` and returns the response head and a body stream.
    fn request(&self, request: http::Request<Bytes>) -> ResponseFuture;
}

impl<C> HttpClient for Client<C, RequestBody>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn request(&self, request: http::Request<Bytes>) -> ResponseFuture {
        let (request, alive) = RequestBody::for_request(request);
        let fut = Client::request(self, request);
        Box::pin(async move {
            // The body stops once this future is dropped before the response head came.
            let _alive = alive;
            let response = fut.await.map_err(|e| Box::new(e) as BoxError)?;
            Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
        })
    }
}

impl<C> HttpClient for Client<C, Full<Bytes>>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn request(&self, request: http::Request<Bytes>) -> ResponseFuture {
        let fut = Client::request(self, request.map(Full::new));
        Box::pin(async move {
            let response = fut.await.map_err(|e| Box::new(e) as BoxError)?;
            Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
        })
    }
}

/// An [`HttpClient`] made of a closure (see [`client_fn`]).
pub struct FnClient<F>(F);

impl<F> fmt::Debug for FnClient<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnClient")
    }
}

impl<F> HttpClient for FnClient<F>
where
    F: Fn(http::Request<Bytes>) -> ResponseFuture + Send + Sync + 'static,
{
    fn request(&self, request: http::Request<Bytes>) -> ResponseFuture {
        (self.0)(request)
    }
}

/// Wraps a closure as an [`HttpClient`] (for test doubles and in-process servers).
///
/// # Examples
/// ```
/// use upload_session::http;
/// use upload_session_async::{client_fn, full_body, HttpClient};
/// let teapot = client_fn(|_req| {
///     Box::pin(async {
///         let mut r = http::Response::new(full_body("short and stout".into()));
///         *r.status_mut() = http::StatusCode::IM_A_TEAPOT;
///         Ok(r)
///     })
/// });
/// let _: &dyn HttpClient = &teapot;
/// ```
pub fn client_fn<F>(f: F) -> FnClient<F>
where
    F: Fn(http::Request<Bytes>) -> ResponseFuture + Send + Sync + 'static,
{
    FnClient(f)
}

/// A complete in-memory response body (for [`HttpClient`] implementations).
pub fn full_body(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The driver's default client type: hyper-util's pooled client over rustls.
pub type DefaultClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>;

/// Largest slice of a request body handed to hyper at a time. hyper queues what it is
/// given (up to ~400 KiB of buffers) and asks for more only once the socket took it, so
/// this bounds what can still leave after the request was abandoned.
const REQUEST_BODY_CHUNK: usize = 256 * 1024;

/// A request body for hyper that stops when the request is abandoned.
///
/// The bytes are handed out as zero-copy slices of at most 256 KiB. Each slice is
/// handed out only while the request's future is alive; once it was dropped (the upload
/// future was dropped, or its deadline passed) the next poll ends the body with an error.
/// hyper then closes the connection: the server gets a body shorter than its
/// `Content-Length` and applies nothing (onedrive.md §11 rule 42, dropbox.md §12 rule
/// 70). With `Full<Bytes>` the whole body sits in hyper's write queue, and hyper-util's
/// connection task, which outlives the request future, may finish sending it.
///
/// The body reports its exact length, so hyper sends `Content-Length`.
///
/// # Examples
/// ```
/// use upload_session::bytes::Bytes;
/// use upload_session::http;
/// use upload_session_async::RequestBody;
/// let request = http::Request::new(Bytes::from_static(b"fragment"));
/// let (request, alive) = RequestBody::for_request(request);
/// assert_eq!(hyper::body::Body::size_hint(request.body()).exact(), Some(8));
/// drop(alive); // the body now ends with an error at its next poll
/// ```
pub struct RequestBody {
    rest: Bytes,
    alive: std::sync::Weak<()>,
}

impl fmt::Debug for RequestBody {
    /// The length and state only: a body is user data, and may be megabytes long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("remaining", &self.rest.len())
            .field("abandoned", &(self.alive.strong_count() == 0))
            .finish()
    }
}

/// Keeps a [`RequestBody`] going; dropping it stops the body at its next slice.
#[derive(Debug)]
#[must_use = "the body stops as soon as this is dropped"]
pub struct BodyAlive(#[allow(dead_code)] Arc<()>);

/// The error a [`RequestBody`] ends with once its request was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("the request was abandoned while its body was being sent")]
pub struct BodyAbandoned;

impl RequestBody {
    /// Wraps `request`'s body; the body runs while the returned [`BodyAlive`] lives.
    pub fn for_request(request: http::Request<Bytes>) -> (http::Request<RequestBody>, BodyAlive) {
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let request = request.map(|rest| RequestBody { rest, alive: weak });
        (request, BodyAlive(alive))
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyAbandoned;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyAbandoned>>> {
        use std::task::Poll;
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        if self.alive.strong_count() == 0 {
            return Poll::Ready(Some(Err(BodyAbandoned)));
        }
        let n = self.rest.len().min(REQUEST_BODY_CHUNK);
        let chunk = self.rest.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The rustls configuration used when none is given: the ring provider, rustls' safe
/// default protocol versions, and the webpki (Mozilla) roots.
///
/// # Errors
/// [`Error::Tls`] when rustls refuses the configuration.
pub fn default_tls_config() -> Result<rustls::ClientConfig, Error> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_webpki_roots()
        .with_no_client_auth())
}

fn tls_config_with(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A rustls configuration that trusts exactly the certificates in `pem` (for example
/// the emulator's self-signed certificate, or a private CA).
///
/// # Errors
/// [`Error::Tls`] when `pem` holds no certificate or one rustls refuses.
pub fn tls_config_with_roots_pem(pem: &[u8]) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Tls(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("no certificate in the PEM".into()));
    }
    tls_config_with(roots)
}

/// Builds the default client: hyper-util's pooled HTTP/1.1 client over hyper-rustls
/// (`https` and, subject to the driver's scheme check, `http`), with TCP_NODELAY, the
/// given connect timeout (TCP connect; the TLS handshake counts against the request's
/// deadline) and `tls` (default: [`default_tls_config`]). Share one client between
/// uploads to share its connection pool.
///
/// # Errors
/// [`Error::Tls`] when the default TLS configuration cannot be built.
pub fn https_client(
    tls: Option<rustls::ClientConfig>,
    connect_timeout: Option<Duration>,
) -> Result<DefaultClient, Error> {
    let tls = match tls {
        Some(t) => t,
        None => default_tls_config()?,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(connect_timeout);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

/// How requests are sent.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub allow_insecure_http: bool,
    pub connect_timeout: Option<Duration>,
    /// Upper bound on one request; also used when the machine suggests no deadline.
    pub request_timeout: Duration,
    pub max_response_body: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_insecure_http: false,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
        }
    }
}

/// The outcome of one send.
pub(crate) enum Sent {
    /// A response (any status).
    Response(http::Response<Bytes>),
    /// A transport failure to report to the machine.
    Failure(TransportFailure),
}

/// A TLS failure: certificate and negotiation failures (and alerts, the peer's explicit
/// refusal) cannot be fixed by retrying and stop the upload; anything else is a
/// transport failure the machine may retry.
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

/// Every error in `e`'s chain, `io::Error` payloads included (an `io::Error`'s
/// `source()` skips its payload).
fn flatten<'a>(e: &'a (dyn StdError + 'static), out: &mut Vec<&'a (dyn StdError + 'static)>) {
    if out.len() >= 32 {
        return;
    }
    out.push(e);
    if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        flatten(inner, out);
        return;
    }
    if let Some(s) = e.source() {
        flatten(s, out);
    }
}

/// Maps a client error: `Ok` is a failure to report to the machine, `Err` stops the
/// upload.
pub(crate) fn classify(e: &(dyn StdError + 'static)) -> Result<TransportFailure, Error> {
    let mut chain = Vec::new();
    flatten(e, &mut chain);
    if let Some(f) = chain
        .iter()
        .find_map(|e| e.downcast_ref::<TransportFailure>())
    {
        return Ok(*f);
    }
    if let Some(t) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return classify_tls(t);
    }
    let connect = chain.iter().any(|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
    });
    if connect {
        return Ok(TransportFailure::Connect);
    }
    if let Some(f) = chain
        .iter()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .find_map(|e| driver::io_failure(e.kind()))
    {
        return Ok(f);
    }
    if let Some(h) = chain.iter().find_map(|e| e.downcast_ref::<hyper::Error>()) {
        if h.is_timeout() {
            return Ok(TransportFailure::TimedOut);
        }
        if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
            return Ok(TransportFailure::Closed);
        }
        if h.is_body_write_aborted() {
            return Ok(TransportFailure::Reset);
        }
    }
    Ok(TransportFailure::Other)
}

/// Reads `body` completely, refusing more than `max` bytes (a declared length above it
/// is refused at once; the declared length is never used to allocate).
async fn read_capped(
    mut body: ResponseBody,
    max: u64,
) -> Result<Result<Bytes, TransportFailure>, Error> {
    use http_body_util::BodyExt as _;
    if hyper::body::Body::size_hint(&body).lower() > max {
        return Ok(Err(TransportFailure::ResponseTooLarge));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return classify(e.as_ref()).map(Err),
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > max {
                return Ok(Err(TransportFailure::ResponseTooLarge));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Ok(buf.freeze()))
}

/// Sends `req` with `client` and reads the whole (capped) response, giving up at the
/// machine's deadline or after `request_timeout`, whichever is sooner (on tokio's
/// clock).
pub(crate) async fn send(
    client: Arc<dyn HttpClient>,
    req: OutgoingRequest,
    settings: Arc<Settings>,
) -> Result<Sent, Error> {
    let (_, mut request, deadline) = req.into_parts();
    check_scheme(request.uri(), settings.allow_insecure_http)?;
    let now = tokio::time::Instant::now();
    let mut limit = now + settings.request_timeout;
    if let Some(d) = deadline {
        limit = limit.min(tokio::time::Instant::from_std(d));
    }
    if limit <= now {
        return Ok(Sent::Failure(TransportFailure::TimedOut));
    }
    if !request.headers().contains_key(http::header::USER_AGENT) {
        request.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!(
                "upload-session-async/",
                env!("CARGO_PKG_VERSION")
            )),
        );
    }
    let max = settings.max_response_body;
    let exchange = async move {
        let response = match client.request(request).await {
            Ok(r) => r,
            Err(e) => return classify(e.as_ref()).map(Sent::Failure),
        };
        let (parts, body) = response.into_parts();
        Ok(match read_capped(body, max).await? {
            Ok(bytes) => Sent::Response(http::Response::from_parts(parts, bytes)),
            Err(f) => Sent::Failure(f),
        })
    };
    match tokio::time::timeout_at(limit, exchange).await {
        Ok(r) => r,
        Err(_) => Ok(Sent::Failure(TransportFailure::TimedOut)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_through_their_chains() {
        let io = |k| io::Error::from(k);
        assert_eq!(
            classify(&io(io::ErrorKind::ConnectionRefused)).unwrap(),
            TransportFailure::Connect
        );
        assert_eq!(
            classify(&io(io::ErrorKind::ConnectionReset)).unwrap(),
            TransportFailure::Reset
        );
        assert_eq!(
            classify(&io(io::ErrorKind::UnexpectedEof)).unwrap(),
            TransportFailure::Closed
        );
        assert_eq!(
            classify(&io(io::ErrorKind::Other)).unwrap(),
            TransportFailure::Other
        );
        // Nested in io::Error payloads, as hyper-rustls reports handshake failures.
        let tls = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(matches!(classify(&tls), Err(Error::Tls(_))));
        let soft = io::Error::other(rustls::Error::DecryptError);
        assert_eq!(classify(&soft).unwrap(), TransportFailure::Other);
        // An explicit failure from a custom client wins.
        let custom = io::Error::other(TransportFailure::TimedOut);
        assert_eq!(classify(&custom).unwrap(), TransportFailure::TimedOut);
    }

    #[tokio::test]
    async fn bodies_are_capped_whatever_they_declare() {
        let body = full_body(Bytes::from(vec![b'x'; 100]));
        assert_eq!(
            read_capped(body, 99).await.unwrap().unwrap_err(),
            TransportFailure::ResponseTooLarge
        );
        let body = full_body(Bytes::from(vec![b'x'; 100]));
        assert_eq!(read_capped(body, 100).await.unwrap().unwrap().len(), 100);
        // A stream that declares nothing and goes on too long.
        let frames = futures_util::stream::iter(
            (0..10)
                .map(|_| Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from(vec![0u8; 64])))),
        );
        let body = http_body_util::StreamBody::new(frames).boxed();
        assert_eq!(
            read_capped(body, 500).await.unwrap().unwrap_err(),
            TransportFailure::ResponseTooLarge
        );
    }

    /// Polls one frame of `body` (it never waits).
    fn frame(body: &mut RequestBody) -> Option<Result<Bytes, BodyAbandoned>> {
        use hyper::body::Body;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            std::task::Poll::Ready(f) => f.map(|r| r.map(|f| f.into_data().unwrap())),
            std::task::Poll::Pending => panic!("a request body never waits"),
        }
    }

    #[test]
    fn a_request_body_hands_out_slices_while_alive_and_stops_after() {
        use hyper::body::Body;
        let data = Bytes::from(
            (0..(REQUEST_BODY_CHUNK * 2 + 10))
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let (request, alive) = RequestBody::for_request(http::Request::new(data.clone()));
        let mut body = request.into_body();
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        assert_eq!(
            format!("{body:?}"),
            format!(
                "RequestBody {{ remaining: {}, abandoned: false }}",
                data.len()
            )
        );
        let first = frame(&mut body).unwrap().unwrap();
        assert_eq!(first.len(), REQUEST_BODY_CHUNK);
        // Zero-copy: the slice points into the caller's buffer.
        assert_eq!(first.as_ptr(), data.as_ptr());
        assert_eq!(
            body.size_hint().exact(),
            Some((REQUEST_BODY_CHUNK + 10) as u64)
        );
        drop(alive);
        assert!(matches!(frame(&mut body), Some(Err(BodyAbandoned))));

        let (request, _alive) = RequestBody::for_request(http::Request::new(data.clone()));
        let mut body = request.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = frame(&mut body) {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, data);
        assert!(body.is_end_stream());
        // An empty body ends at once, alive or not.
        let (request, alive) = RequestBody::for_request(http::Request::new(Bytes::new()));
        drop(alive);
        assert!(frame(&mut request.into_body()).is_none());
    }
}
