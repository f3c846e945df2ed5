//! The model served over HTTP/1.1 or TLS on 127.0.0.1.
//!
//! [`EmulatorServer`] puts one [`Emulator`] behind a hyper 1 HTTP/1.1 server on the loopback
//! interface, in plain text or over TLS with a certificate generated at start-up (rcgen,
//! self-signed, subject alternative names `127.0.0.1` and `localhost`). Clients trust it
//! through [`EmulatorServer::cert_pem`] / [`EmulatorServer::cert_der`].
//!
//! Two ways to run it:
//! - from synchronous code: [`EmulatorServer::start`] binds, then serves on a background
//!   thread that owns its own tokio runtime; the returned [`RunningServer`] shuts the
//!   server down gracefully on [`RunningServer::shutdown`] or when dropped;
//! - from async code with a tokio runtime: [`EmulatorServer::bind`], then
//!   [`EmulatorServer::serve`] with a shutdown future.
//!
//! ```no_run
//! use upload_session_emulator::server::{EmulatorServer, ServerOptions};
//! let server = EmulatorServer::start(ServerOptions::default()).unwrap();
//! println!("try {}/_emulator/health", server.url());
//! let snapshot = server.snapshot();
//! assert!(snapshot.files.is_empty());
//! server.shutdown().unwrap();
//! ```
//!
//! # Request bodies
//! Bodies are streamed: the emulator's lock is taken for [`Emulator::begin`] (the head)
//! and again for [`Emulator::complete`] / [`Emulator::abort`] / [`Emulator::overflow`];
//! each hyper data frame is handed to [`PendingBody::push`] as the refcounted `Bytes` it
//! arrived in, without holding the lock and without copying the body. Digests are therefore
//! computed on the connection's task, in parallel across connections.
//!
//! # Transport behaviour
//! | Situation | What the socket sees |
//! |---|---|
//! | The model answers from the head alone ([`crate::Begin::Respond`]) | the answer, without the body being read; a small body (≤ 64 KiB declared, no `Expect`) is drained first so the connection stays usable, anything else gets `Connection: close`; a larger declared body, up to 160 MiB (no `Expect`), is read and dropped while the answer goes out, for up to 2 s, so that no reset beats the answer (a lingering close) |
//! | Injected reset ([`PendingBody::cut_at`]) | after exactly that many body bytes the request is aborted and the connection is dropped with no response (usually a TCP RST, since unread body data is pending) |
//! | Injected stall ([`PendingBody::stall`]) | after the first body frame the server stops reading for that long |
//! | [`TransportFault::LostResponse`] | the request is applied, then the connection is closed with no response |
//! | [`TransportFault::Delay`] | the response is sent after that delay |
//! | Body over the route's limit ([`crate::ingest::Overflow`]) | the model's answer with `Connection: close`; the rest of the body is not read |
//! | The client closes mid-body | [`Emulator::abort`] (nothing of the body is kept unless an injected reset said so) |
//! | [`ServerOptions::latency`] | added before every model response (not before control endpoints) |
//! | Malformed request line or headers, a `Content-Length` that is not a number, headers over hyper's limits (100 headers, ~400 KiB head) | hyper's `400`/`431` then close, or a plain close |
//! | Head not complete within 30 s, TLS handshake not done within 10 s | the connection is closed |
//!
//! Memory per connection is bounded by hyper's buffers whatever the client sends; the
//! number of connections is capped at [`MAX_CONNECTIONS`] (further clients wait in the
//! kernel's accept queue).
//!
//! # Control endpoints
//! Everything under `/_emulator/` is handled by the server, not the model, answers JSON,
//! is never subject to faults or latency, and needs no token.
//!
//! | Method and path | Body | Answer |
//! |---|---|---|
//! | `GET /_emulator/health` | | `{"status":"ok"}` |
//! | `GET /_emulator/files` | | array of [`FileRecord`](crate::FileRecord) (`service`, `drive`, `path`, `id`, `rev`, `size`, `sha256`, `quick_xor_hash`, `content_hash`) |
//! | `GET /_emulator/violations` | | `{"total": N, "counts": {"MisalignedFragment": 1, …}}` (names of [`Violation`](crate::Violation)) |
//! | `GET /_emulator/snapshot` | | [`Snapshot`] (`files`, `violations`, `requests`, `faults_injected`) |
//! | `POST /_emulator/reset` | | `{"reset":true}`; forgets sessions, files, violations, issued tokens; restarts the fault plan |
//! | `GET /_emulator/faults` | | the [`FaultPlan`] |
//! | `PUT /_emulator/faults` | a [`FaultPlan`] (≤ 1 MiB) | the plan now in force; `400 {"error":…}` when it does not parse |
//! | `POST /_emulator/tokens` | | `{"token":"…"}`, a freshly issued valid bearer token |
//! | `POST /_emulator/tokens/expire` | | `{"expired":true}`; every token valid so far now gets the service's expired-token answer |
//! | `POST` or `PUT /_emulator/discard` | anything | `{"received": N}`: the body is streamed and dropped (a transport baseline for benchmarks) |
//!
//! An unknown control path answers `404 {"error":"unknown control endpoint"}`, a known one
//! with the wrong method `405` with an `Allow` header.

use crate::{Begin, Config, Emulator, FaultPlan, PendingBody, Snapshot, TransportFault};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;

/// Most connections served at once; further clients wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 1024;

/// Largest declared body drained (rather than left unread) when the model answers from
/// the head alone, so that the connection can be reused.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long such a drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the rest of a body answered from its head is read before the connection closes.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of such a body is read before the connection closes (a Dropbox append's
/// largest body, 150 MiB, and then some).
const LINGER_LIMIT: u64 = 160 << 20;
/// Largest body accepted by `PUT /_emulator/faults`.
const CONTROL_BODY_LIMIT: usize = 1 << 20;
/// Time allowed for a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer under TLS: rustls reads the socket 4 KiB at a time, so without it a 16 KiB
/// record costs four system calls.
const TLS_READ_BUFFER: usize = 256 * 1024;
/// How long a graceful shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Model configuration. Its `base_url` is overwritten with the server's real URL.
    pub config: Config,
    /// Fault plan in force from the start.
    pub faults: FaultPlan,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS with a freshly generated self-signed certificate.
    pub tls: bool,
    /// Added before every model response.
    pub latency: Duration,
    /// `SO_RCVBUF` of the listening socket (inherited by every accepted connection), in
    /// bytes; `None` leaves the kernel's default and its receive-buffer auto-tuning.
    ///
    /// Setting it fixes how much of a request body the kernel can hold while the server
    /// is not reading (an injected [stall](crate::Fault::Stall)). With auto-tuning a
    /// loopback connection that just carried a large body may buffer tens of MiB (Linux
    /// `tcp_rmem` allows up to 32 MiB), so a test that needs "the body cannot have been
    /// fully handed over yet" must set it. The kernel may round or double the value.
    pub recv_buffer: Option<usize>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            config: Config::default(),
            faults: FaultPlan::none(),
            port: 0,
            tls: false,
            latency: Duration::ZERO,
            recv_buffer: None,
        }
    }
}

/// The generated server certificate.
#[derive(Clone)]
struct Cert {
    pem: String,
    der: Vec<u8>,
}

/// State shared by every connection.
struct State {
    emulator: Arc<Mutex<Emulator>>,
    latency: Duration,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Emulator> {
        lock(&self.emulator)
    }
}

/// Locks the emulator, recovering from a poisoned lock (a panic elsewhere must not take
/// the whole server down).
fn lock(m: &Mutex<Emulator>) -> MutexGuard<'_, Emulator> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds and listens on 127.0.0.1:`port`, with `SO_RCVBUF` set before `listen` when asked
/// (so that the window scale the kernel advertises matches the buffer).
fn listen(port: u16, recv_buffer: Option<usize>) -> io::Result<std::net::TcpListener> {
    let Some(size) = recv_buffer else {
        return std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    };
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // As std's `TcpListener::bind` does on Unix: a restarted server can take its port back
    // while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_recv_buffer_size(size)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A server bound to its port, not yet serving.
pub struct EmulatorServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    url: String,
    cert: Option<Cert>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
}

impl std::fmt::Debug for EmulatorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorServer")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl EmulatorServer {
    /// Binds 127.0.0.1:`opts.port`, generates the certificate when `opts.tls`, and builds
    /// the emulator (with its base URL set to this server). Needs no runtime.
    ///
    /// # Errors
    /// The port cannot be bound, or the certificate cannot be generated.
    pub fn bind(opts: ServerOptions) -> io::Result<EmulatorServer> {
        let listener = listen(opts.port, opts.recv_buffer)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scheme = if opts.tls { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let (cert, tls) = if opts.tls {
            let (cert, acceptor) = make_tls()?;
            (Some(cert), Some(acceptor))
        } else {
            (None, None)
        };
        let mut emulator = Emulator::with_faults(opts.config, opts.faults);
        emulator.set_base_url(&url);
        Ok(EmulatorServer {
            listener,
            addr,
            url,
            cert,
            tls,
            state: Arc::new(State {
                emulator: Arc::new(Mutex::new(emulator)),
                latency: opts.latency,
            }),
        })
    }

    /// Binds, then serves on a background thread with its own tokio runtime.
    ///
    /// # Errors
    /// As [`bind`](Self::bind), or the runtime or thread cannot be created.
    pub fn start(opts: ServerOptions) -> io::Result<RunningServer> {
        Self::bind(opts)?.spawn()
    }

    /// Serves on a background thread with its own tokio runtime.
    ///
    /// # Errors
    /// The runtime or the thread cannot be created.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("emulator-server")
            .build()?;
        let (tx, rx) = oneshot::channel::<()>();
        let info = ServerInfo {
            url: self.url.clone(),
            addr: self.addr,
            cert: self.cert.clone(),
            emulator: self.emulator(),
        };
        let thread = std::thread::Builder::new()
            .name("emulator-server".into())
            .spawn(move || {
                let result = runtime.block_on(self.serve(async {
                    let _ = rx.await;
                }));
                runtime.shutdown_timeout(Duration::from_millis(100));
                result
            })?;
        Ok(RunningServer {
            info,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL, `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server certificate in PEM, when serving TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.pem.as_str())
    }

    /// The server certificate in DER, when serving TLS.
    pub fn cert_der(&self) -> Option<&[u8]> {
        self.cert.as_ref().map(|c| c.der.as_slice())
    }

    /// The emulator, for in-process inspection and seeding. Hold the lock briefly: every
    /// request takes it.
    pub fn emulator(&self) -> Arc<Mutex<Emulator>> {
        self.state.emulator.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish (for up to 5 s) and returns. Must run inside a tokio runtime with IO and time
    /// enabled.
    ///
    /// # Errors
    /// The listener cannot be registered with the runtime. Errors of single connections
    /// (including failed accepts) are not errors of the server.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = listener.accept() => a,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of descriptors, a connection reset before accept, …: back off
                    // briefly and keep serving.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let tls = self.tls.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                match tls {
                    None => serve_connection(stream, state, stop).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            acceptor.accept(tokio::io::BufReader::with_capacity(
                                TLS_READ_BUFFER,
                                stream,
                            )),
                        )
                        .await;
                        if let Ok(Ok(tls)) = handshake {
                            serve_connection(tls, state, stop).await;
                        }
                    }
                }
                drop(permit);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// A server serving on its own background thread. Shuts down on drop.
pub struct RunningServer {
    info: ServerInfo,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

struct ServerInfo {
    url: String,
    addr: SocketAddr,
    cert: Option<Cert>,
    emulator: Arc<Mutex<Emulator>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("url", &self.info.url)
            .field("tls", &self.info.cert.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Base URL, `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.info.addr
    }

    /// The server certificate in PEM, when serving TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.info.cert.as_ref().map(|c| c.pem.as_str())
    }

    /// The server certificate in DER, when serving TLS.
    pub fn cert_der(&self) -> Option<&[u8]> {
        self.info.cert.as_ref().map(|c| c.der.as_slice())
    }

    /// The emulator, for in-process inspection and seeding. Hold the lock briefly: every
    /// request takes it.
    pub fn emulator(&self) -> Arc<Mutex<Emulator>> {
        self.info.emulator.clone()
    }

    /// Everything the inspection API reports, right now.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.info.emulator).snapshot()
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), and waits for the
    /// server thread.
    ///
    /// # Errors
    /// The server loop failed, or its thread panicked.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Generates the self-signed certificate and the TLS acceptor.
fn make_tls() -> io::Result<(Cert, tokio_rustls::TlsAcceptor)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(io::Error::other)?;
    let cert = Cert {
        pem: certified.cert.pem(),
        der: certified.cert.der().to_vec(),
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.key_pair.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cert, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Serves one connection until it ends, or until shutdown (graceful: the request in
/// flight finishes).
async fn serve_connection<I>(io: I, state: Arc<State>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), req));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = async {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Why a request ends with the connection dropped instead of a response. Returning it
/// from the service makes hyper close the connection without writing anything.
#[derive(Debug)]
enum Dropped {
    /// An injected reset mid-body.
    Reset,
    /// An injected lost response.
    LostResponse,
    /// The client went away mid-body.
    ClientGone,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dropped::Reset => "injected connection reset",
            Dropped::LostResponse => "injected lost response",
            Dropped::ClientGone => "client closed the connection mid-body",
        })
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

/// Handles one request.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let path = req.uri().path();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Ok(control(&state, req).await);
    }
    let (parts, body) = req.into_parts();
    let begun = state.lock().begin(SystemTime::now(), &parts);
    let resp = match begun {
        Begin::Respond(mut r) => {
            match drain_small(&parts.headers, body).await {
                Drained::Reusable => {}
                Drained::Close { linger } => {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    if let Some(rest) = linger {
                        tokio::spawn(linger_close(rest));
                    }
                }
            }
            r
        }
        Begin::Body(pending) => {
            let guard = PendingGuard {
                state: state.clone(),
                pending: Some(pending),
            };
            stream_body(guard, body).await?
        }
    };
    deliver(&state, resp).await
}

/// What became of a body the model answered without reading.
enum Drained {
    /// Read to its end: the connection can serve the next request.
    Reusable,
    /// The connection closes after the answer. `linger` is the unread rest of a large
    /// body, to be read and dropped for a while (see [`linger_close`]).
    Close { linger: Option<Incoming> },
}

/// Reads and discards a small body that the model did not need, so the connection can be
/// reused. The connection closes instead when the body is large (its rest lingers), of
/// unknown length, awaited with `Expect: 100-continue` (the client has not sent it and
/// must not be invited to), or does not arrive in time.
async fn drain_small(headers: &http::HeaderMap, mut body: Incoming) -> Drained {
    let close = Drained::Close { linger: None };
    if headers.contains_key(header::EXPECT) {
        return close;
    }
    let declared = match crate::wire::content_length(headers) {
        Ok(Some(n)) => n,
        Ok(None) if !headers.contains_key(header::TRANSFER_ENCODING) => 0,
        _ => return close,
    };
    if declared == 0 {
        return Drained::Reusable;
    }
    if declared > LINGER_LIMIT {
        // It could not be read to its end anyway (an absurd length): close at once.
        return close;
    }
    if declared > DRAIN_LIMIT {
        return Drained::Close { linger: Some(body) };
    }
    let drain = async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain)
        .await
        .unwrap_or(false)
    {
        Drained::Reusable
    } else {
        close
    }
}

/// A lingering close: goes on reading (and dropping) the body of a request answered from
/// its head while the answer is sent, for at most [`LINGER_TIMEOUT`] and
/// [`LINGER_LIMIT`] bytes, as common servers do (nginx's `lingering_close`). Closing at
/// once with unread data makes the kernel reset the connection, and the reset can beat
/// the client to the answer: a 429 or 401 would reach it as a transport failure.
async fn linger_close(mut body: Incoming) {
    let linger = async {
        let mut read = 0u64;
        // The declared length is at most LINGER_LIMIT and hyper enforces it; the count
        // guards against a body that is not what it declared anyway.
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > LINGER_LIMIT {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, linger).await;
}

/// Carries out the transport fault attached to a model response, adds the configured
/// latency, and converts the body.
async fn deliver(state: &State, resp: Response<Bytes>) -> Result<Resp, Dropped> {
    match TransportFault::of(&resp) {
        Some(TransportFault::LostResponse) => return Err(Dropped::LostResponse),
        Some(TransportFault::Reset) => return Err(Dropped::Reset),
        Some(TransportFault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    Ok(resp.map(Full::new))
}

/// A body being streamed into the model. If the request's future is dropped before the
/// body was handed back (the connection died, the server is shutting down), the request
/// is aborted so that the model never keeps a request "in flight" forever.
struct PendingGuard {
    state: Arc<State>,
    pending: Option<PendingBody>,
}

impl PendingGuard {
    fn abort(&mut self) {
        if let Some(p) = self.pending.take() {
            let _ = self.state.lock().abort(SystemTime::now(), p);
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Streams a body into the model, honouring injected resets and stalls.
async fn stream_body(
    mut guard: PendingGuard,
    mut body: Incoming,
) -> Result<Response<Bytes>, Dropped> {
    let Some(pending) = guard.pending.as_ref() else {
        return Err(Dropped::Reset);
    };
    let cut = pending.cut_at();
    let mut stall = pending.stall();
    if cut == Some(0) {
        guard.abort();
        return Err(Dropped::Reset);
    }
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(_)) => {
                guard.abort();
                return Err(Dropped::ClientGone);
            }
        };
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: ignored
        };
        if data.is_empty() {
            continue;
        }
        let Some(pending) = guard.pending.as_mut() else {
            return Err(Dropped::Reset);
        };
        let mut cutting = false;
        if let Some(c) = cut {
            let room = c.saturating_sub(pending.received());
            if data.len() as u64 >= room {
                data = data.slice(..usize::try_from(room).unwrap_or(data.len()));
                cutting = true;
            }
        }
        if let Err(o) = pending.push(data) {
            let Some(p) = guard.pending.take() else {
                return Err(Dropped::Reset);
            };
            return Ok(guard.state.lock().overflow(SystemTime::now(), p, o));
        }
        if cutting {
            guard.abort();
            return Err(Dropped::Reset);
        }
        if let Some(d) = stall.take() {
            tokio::time::sleep(d).await;
        }
    }
    if cut.is_some() {
        // The body ended before the planned cut: the connection drops all the same.
        guard.abort();
        return Err(Dropped::Reset);
    }
    let Some(p) = guard.pending.take() else {
        return Err(Dropped::Reset);
    };
    Ok(guard.state.lock().complete(SystemTime::now(), p))
}

// ---- control endpoints --------------------------------------------------------------

fn control_json(status: StatusCode, value: &serde_json::Value) -> Resp {
    crate::wire::json(status, value).map(Full::new)
}

fn control_error(status: StatusCode, msg: &str) -> Resp {
    control_json(status, &serde_json::json!({ "error": msg }))
}

fn to_json<T: serde::Serialize>(value: &T) -> Resp {
    match serde_json::to_value(value) {
        Ok(v) => control_json(StatusCode::OK, &v),
        Err(e) => control_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The control endpoints (see the module docs).
async fn control(state: &State, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let allowed: &str = match path.as_str() {
        "/_emulator/health"
        | "/_emulator/files"
        | "/_emulator/violations"
        | "/_emulator/snapshot" => "GET",
        "/_emulator/reset" | "/_emulator/tokens" | "/_emulator/tokens/expire" => "POST",
        "/_emulator/faults" => "GET, PUT",
        "/_emulator/discard" => "POST, PUT",
        _ => return control_error(StatusCode::NOT_FOUND, "unknown control endpoint"),
    };
    match (method, path.as_str()) {
        (Method::GET, "/_emulator/health") => {
            control_json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (Method::GET, "/_emulator/files") => to_json(&state.lock().files()),
        (Method::GET, "/_emulator/violations") => {
            let v = state.lock().violations().clone();
            let counts: serde_json::Map<String, serde_json::Value> = v
                .iter()
                .map(|(k, n)| (format!("{k:?}"), serde_json::Value::from(n)))
                .collect();
            control_json(
                StatusCode::OK,
                &serde_json::json!({ "total": v.total(), "counts": counts }),
            )
        }
        (Method::GET, "/_emulator/snapshot") => to_json(&state.lock().snapshot()),
        (Method::POST, "/_emulator/reset") => {
            state.lock().reset();
            control_json(StatusCode::OK, &serde_json::json!({ "reset": true }))
        }
        (Method::GET, "/_emulator/faults") => to_json(state.lock().fault_plan()),
        (Method::PUT, "/_emulator/faults") => {
            let declared = crate::wire::content_length(req.headers());
            if !matches!(declared, Ok(Some(n)) if n <= CONTROL_BODY_LIMIT as u64)
                && !matches!(declared, Ok(None))
            {
                let mut r = control_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "fault plan body too large (limit 1 MiB)",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            let body = match Limited::new(req.into_body(), CONTROL_BODY_LIMIT)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    let mut r = control_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "fault plan body too large or cut short",
                    );
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return r;
                }
            };
            match serde_json::from_slice::<FaultPlan>(&body) {
                Ok(plan) => {
                    let mut emu = state.lock();
                    emu.set_fault_plan(plan);
                    to_json(emu.fault_plan())
                }
                Err(e) => control_error(StatusCode::BAD_REQUEST, &format!("bad fault plan: {e}")),
            }
        }
        (Method::POST, "/_emulator/tokens") => {
            let token = state.lock().issue_token();
            control_json(StatusCode::OK, &serde_json::json!({ "token": token }))
        }
        (Method::POST, "/_emulator/tokens/expire") => {
            state.lock().expire_tokens();
            control_json(StatusCode::OK, &serde_json::json!({ "expired": true }))
        }
        (Method::POST | Method::PUT, "/_emulator/discard") => {
            let mut body = req.into_body();
            let mut received: u64 = 0;
            loop {
                match body.frame().await {
                    None => break,
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            received += d.len() as u64;
                        }
                    }
                    Some(Err(_)) => {
                        return control_error(StatusCode::BAD_REQUEST, "body cut short");
                    }
                }
            }
            control_json(StatusCode::OK, &serde_json::json!({ "received": received }))
        }
        _ => {
            let mut r = control_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            r
        }
    }
}
