//! [`Batch`]: many uploads at once (its docs say how).

use crate::Error;
use crate::{CancellationToken, HttpClient, Shared, Source, Upload, token_provider};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use upload_session::bytes::Bytes;
use upload_session::dropbox::{
    BatchCommit, BatchEntry, CommitInfo, Committed, Completed, DropboxConfig, DropboxUpload,
};
use upload_session::{AccessToken, UploadError, UploadMachine};

/// One Dropbox file of [`Batch::run_dropbox`]: an upload whose machine was built with
/// [`DropboxUpload::builder_for_batch`] (it closes its session), and where to commit it.
/// (A machine built with [`DropboxUpload::builder`] commits on its own; its result is
/// passed through.)
#[derive(Debug)]
pub struct BatchFile {
    /// The upload (with its own progress, events and checkpoint options).
    pub upload: Upload<DropboxUpload>,
    /// Where the closed session is committed.
    pub commit: CommitInfo,
}

/// Runs many uploads with a limit across them; Dropbox files can be committed together
/// with `finish_batch_v2` ([`Batch::run_dropbox`]).
///
/// ```text
///  files ──▶ spawn one task per file ──▶ Semaphore(concurrency) ──▶ Upload::run ──▶ per-file result
///                                                  (OneDrive: each file strictly sequential inside)
///  Dropbox (run_dropbox): each file's session is closed (DropboxUpload::builder_for_batch)
///    ──▶ every closed session ──▶ BatchCommit (groups of ≤ 1000, one call at a time,
///        decided by the core) ──▶ per-file Committed or error
/// ```
///
/// Every upload shares the batch's client (one connection pool), cancel token and token
/// provider unless it has its own. One file failing never fails the others: results
/// come back per file, in input order. Dropping the future aborts every task (each
/// upload's own drop guarantees apply).
///
/// # Examples
/// ```
/// use upload_session::onedrive::{OneDriveConfig, OneDriveUpload, Target};
/// use upload_session_async::{Batch, Source, Upload};
/// use upload_session_emulator::server::{EmulatorServer, ServerOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = EmulatorServer::start(ServerOptions::default()).unwrap();
/// let config = OneDriveConfig::with_base(format!("{}/onedrive/v1.0", server.url()));
/// let uploads = (0..3)
///     .map(|i| {
///         let data = vec![i as u8; 100_000];
///         let machine = OneDriveUpload::builder(Target::path(format!("/many/{i}.bin")), 100_000)
///             .config(config.clone())
///             .build()
///             .unwrap();
///         Upload::new(machine, Source::bytes(data))
///     })
///     .collect();
/// let results = Batch::new()
///     .concurrency(2)
///     .token_provider(|| async {
///         upload_session::AccessToken::new(upload_session_emulator::DEFAULT_TOKEN)
///             .map_err(|e| e.to_string())
///     })
///     .run(uploads)
///     .await;
/// assert!(results.iter().all(|r| r.is_ok()));
/// # }
/// ```
#[must_use]
pub struct Batch {
    shared: Shared,
    concurrency: usize,
    group_size: Option<usize>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("concurrency", &self.concurrency)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

/// A copy of `e` for each file a whole-batch failure concerns.
fn replicate(e: &Error) -> Error {
    match e {
        Error::Upload(u) => Error::Upload(u.clone()),
        Error::Cancelled { .. } => Error::Cancelled { checkpoint: None },
        Error::Tls(s) => Error::Tls(s.clone()),
        Error::TokenUnavailable { reason } => Error::TokenUnavailable {
            reason: reason.clone(),
        },
        Error::InsecureUrl { host } => Error::InsecureUrl { host: host.clone() },
        Error::Stalled(s) => Error::Stalled(s),
        other => Error::Request(format!("the batch commit failed: {other}")),
    }
}

impl Batch {
    /// A batch running 4 uploads at once.
    pub fn new() -> Self {
        Self {
            shared: Shared::default(),
            concurrency: 4,
            group_size: None,
        }
    }

    /// How many uploads run at once (at least 1; default 4). Inside each, a Dropbox
    /// concurrent session still keeps its own appends in flight.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Entries per `finish_batch_v2` call for [`run_dropbox`](Self::run_dropbox)
    /// (`1..=1000`, default 1000; checked by the core).
    pub fn group_size(mut self, n: usize) -> Self {
        self.group_size = Some(n);
        self
    }

    /// The client every upload without its own uses (default: one [`https_client`](crate::https_client)
    /// shared by all, so they share its connection pool).
    pub fn client(mut self, client: impl HttpClient) -> Self {
        self.shared.client = Some(Arc::new(client));
        self
    }

    /// Like [`client`](Self::client), with a shared client.
    pub fn shared_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.shared.client = Some(client);
        self
    }

    /// The rustls configuration of the default client.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.shared.tls = Some(config);
        self
    }

    /// Time allowed to connect (TCP) with the default client.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.shared.settings.connect_timeout = timeout;
        self
    }

    /// Allows plain `http://` to hosts that are not loopback, for the batch commit
    /// (each upload keeps its own setting).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.shared.settings.allow_insecure_http = allow;
        self
    }

    /// Stops every upload (without its own token) and the batch commit when `token` is
    /// cancelled.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.shared.cancel = Some(token);
        self
    }

    /// The token provider of every upload without its own, and of the batch commit.
    pub fn token_provider<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AccessToken, String>> + Send + 'static,
    {
        self.shared.tokens = Some(token_provider(f));
        self
    }

    /// Gives `upload` what it lacks of the batch's shared options.
    fn equip<M: UploadMachine>(
        shared: &Shared,
        client: &Arc<dyn HttpClient>,
        mut upload: Upload<M>,
    ) -> Upload<M> {
        let own = upload.shared_mut();
        if own.client.is_none() && own.tls.is_none() {
            own.client = Some(client.clone());
        }
        if own.cancel.is_none() {
            own.cancel = shared.cancel.clone();
        }
        if own.tokens.is_none() {
            own.tokens = shared.tokens.clone();
        }
        upload
    }

    /// Runs `uploads`, at most [`concurrency`](Self::concurrency) at once, each on its
    /// own tokio task. Returns one result per upload, in input order.
    ///
    /// A panic inside an upload is resumed here.
    pub async fn run<M>(mut self, uploads: Vec<Upload<M>>) -> Vec<Result<M::Completed, Error>>
    where
        M: UploadMachine + Send + 'static,
        M::Completed: Send + 'static,
        M::Checkpoint: Serialize + Send + 'static,
    {
        let client = match self.shared.client() {
            Ok(c) => c,
            Err(e) => return uploads.iter().map(|_| Err(replicate(&e))).collect(),
        };
        let limit = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let n = uploads.len();
        for (i, upload) in uploads.into_iter().enumerate() {
            let upload = Self::equip(&self.shared, &client, upload);
            let limit = limit.clone();
            tasks.spawn(async move {
                let result = match limit.acquire_owned().await {
                    Ok(_permit) => upload.run().await,
                    Err(_) => Err(Error::Stalled("the batch's semaphore closed")),
                };
                (i, result)
            });
        }
        let mut results: Vec<Option<Result<M::Completed, Error>>> = (0..n).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, r)) => {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Stalled("an upload task was aborted"))))
            .collect()
    }

    /// Uploads Dropbox `files` (at most [`concurrency`](Self::concurrency) at once),
    /// closing each file's session, then commits every closed session with one
    /// [`BatchCommit`] (`finish_batch_v2`, grouped and paced by the core) configured with
    /// `config` (hosts, retries). Returns one result per file, in input order: a file
    /// whose upload failed reports its own error and is not committed; the others are
    /// committed and verified (size and content hash) individually.
    pub async fn run_dropbox(
        mut self,
        files: Vec<BatchFile>,
        config: DropboxConfig,
    ) -> Vec<Result<Committed, Error>> {
        let (uploads, commits): (Vec<_>, Vec<_>) =
            files.into_iter().map(|f| (f.upload, f.commit)).unzip();
        let group_size = self.group_size;
        let client = match self.shared.client() {
            Ok(c) => c,
            Err(e) => return commits.iter().map(|_| Err(replicate(&e))).collect(),
        };
        let shared = self.shared.clone();
        let uploaded = self.run(uploads).await;

        let mut results: Vec<Option<Result<Committed, Error>>> = Vec::new();
        let mut entries = Vec::new();
        let mut owners = Vec::new();
        for (i, (r, commit)) in uploaded.into_iter().zip(commits).enumerate() {
            results.push(match r {
                Ok(Completed::Closed { session, .. }) => {
                    entries.push(BatchEntry { session, commit });
                    owners.push(i);
                    None
                }
                Ok(Completed::Committed(c)) => Some(Ok(*c)),
                Ok(_) => Some(Err(Error::Upload(UploadError::Internal {
                    detail: "an unknown kind of completed Dropbox upload",
                }))),
                Err(e) => Some(Err(e)),
            });
        }
        if !entries.is_empty() {
            let mut builder = BatchCommit::builder(entries).config(config);
            if let Some(g) = group_size {
                builder = builder.group_size(g);
            }
            let outcome = match builder.build() {
                Ok(machine) => {
                    let mut upload = Upload::new(machine, Source::bytes(Bytes::new()));
                    {
                        let own = upload.shared_mut();
                        own.settings = shared.settings.clone();
                        own.client = Some(client);
                        own.cancel = shared.cancel.clone();
                        own.tokens = shared.tokens.clone();
                    }
                    upload.run().await
                }
                Err(e) => Err(Error::Build(e)),
            };
            match outcome {
                Ok(outcome) => {
                    for (i, r) in owners.iter().zip(outcome.entries) {
                        if let Some(slot) = results.get_mut(*i) {
                            *slot = Some(r.map_err(Error::Upload));
                        }
                    }
                }
                Err(e) => {
                    for i in &owners {
                        if let Some(slot) = results.get_mut(*i) {
                            *slot = Some(Err(replicate(&e)));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or(Err(Error::Upload(UploadError::Internal {
                    detail: "batch entry without a result",
                })))
            })
            .collect()
    }
}
