//! What to upload where ([`Target`], [`UploadOptions`]) and how to behave
//! ([`OneDriveConfig`]).

use super::limits::{
    DEFAULT_FRAGMENT, DEFAULT_MAX_FILE_SIZE, DEFAULT_READ_AHEAD, FRAGMENT_UNIT, GRAPH_GLOBAL,
    MAX_FRAGMENT, MAX_READ_AHEAD,
};
use crate::encoding::percent_encode_segment;
use crate::error::BuildError;
use crate::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The drive an upload goes to (onedrive.md §1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Drive {
    /// The signed-in user's drive: `/me/drive`.
    Me,
    /// A drive by id: `/drives/{id}`.
    Id(String),
    /// A SharePoint site's default drive: `/sites/{id}/drive`.
    Site(String),
    /// A user's drive: `/users/{id}/drive`.
    User(String),
    /// A group's drive: `/groups/{id}/drive`.
    Group(String),
}

/// Where in the drive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// A path from the drive root, like `/docs/big.bin`: `root:/docs/big.bin:`.
    Path(String),
    /// A new or existing child of a folder given by id: `items/{parent}:/{name}:`.
    Child {
        /// Folder item id.
        parent_id: String,
        /// File name.
        name: String,
    },
    /// An existing item whose content is replaced: `items/{id}`.
    Item(String),
}

/// The file to create or replace.
///
/// # Examples
/// ```
/// use upload_session::onedrive::{Drive, Target};
/// let t = Target::path("/docs/big file.bin");
/// assert_eq!(t.api_path().unwrap(), "/me/drive/root:/docs/big%20file.bin:");
/// let t = Target::child(Drive::Id("b!x".into()), "01PARENT", "a.txt");
/// assert_eq!(t.api_path().unwrap(), "/drives/b%21x/items/01PARENT:/a.txt:");
/// let t = Target::item(Drive::Site("contoso,1,2".into()), "01ITEM");
/// assert_eq!(t.api_path().unwrap(), "/sites/contoso%2C1%2C2/drive/items/01ITEM");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The drive.
    pub drive: Drive,
    /// The place in it.
    pub location: Location,
}

fn check_id(id: &str) -> Result<(), BuildError> {
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(BuildError::InvalidId {
            value: id.to_string(),
        });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), BuildError> {
    let bad = |reason| {
        Err(BuildError::InvalidPath {
            value: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not file names");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("a name cannot contain `/` or `\\`");
    }
    if name.chars().any(char::is_control) {
        return bad("control characters are not allowed");
    }
    Ok(())
}

impl Target {
    /// A path in the signed-in user's drive (`/me/drive/root:/{path}:`).
    pub fn path(path: impl Into<String>) -> Self {
        Self {
            drive: Drive::Me,
            location: Location::Path(path.into()),
        }
    }

    /// A path in a drive given by id (`/drives/{drive}/root:/{path}:`).
    pub fn drive_path(drive_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            drive: Drive::Id(drive_id.into()),
            location: Location::Path(path.into()),
        }
    }

    /// A file `name` in the folder `parent_id` of `drive`.
    pub fn child(drive: Drive, parent_id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            drive,
            location: Location::Child {
                parent_id: parent_id.into(),
                name: name.into(),
            },
        }
    }

    /// An existing item of `drive`, whose content is replaced.
    pub fn item(drive: Drive, item_id: impl Into<String>) -> Self {
        Self {
            drive,
            location: Location::Item(item_id.into()),
        }
    }

    /// The same location in another drive.
    pub fn in_drive(mut self, drive: Drive) -> Self {
        self.drive = drive;
        self
    }

    /// The file name the request body must carry (onedrive §11 rule 3); `None` for an
    /// item given by id.
    pub fn name(&self) -> Option<&str> {
        match &self.location {
            Location::Path(p) => p.trim_end_matches('/').rsplit('/').next(),
            Location::Child { name, .. } => Some(name),
            Location::Item(_) => None,
        }
    }

    /// Checks the target and returns its Graph path (without the base URL), with every
    /// segment percent-encoded: `/me/drive/root:/a/b.txt:`, `/drives/{d}/items/{p}:/{n}:`
    /// or `/drives/{d}/items/{id}`.
    ///
    /// # Errors
    /// [`BuildError::InvalidPath`] / [`BuildError::InvalidId`].
    pub fn api_path(&self) -> Result<String, BuildError> {
        let drive = match &self.drive {
            Drive::Me => "/me/drive".to_string(),
            Drive::Id(id) => {
                check_id(id)?;
                format!("/drives/{}", percent_encode_segment(id))
            }
            Drive::Site(id) => {
                check_id(id)?;
                format!("/sites/{}/drive", percent_encode_segment(id))
            }
            Drive::User(id) => {
                check_id(id)?;
                format!("/users/{}/drive", percent_encode_segment(id))
            }
            Drive::Group(id) => {
                check_id(id)?;
                format!("/groups/{}/drive", percent_encode_segment(id))
            }
        };
        match &self.location {
            Location::Path(path) => {
                let trimmed = path.trim_start_matches('/');
                if trimmed.is_empty() {
                    return Err(BuildError::InvalidPath {
                        value: path.clone(),
                        reason: "the path must name a file",
                    });
                }
                if trimmed.ends_with('/') {
                    return Err(BuildError::InvalidPath {
                        value: path.clone(),
                        reason: "the path must not end with `/`",
                    });
                }
                let mut out = format!("{drive}/root:");
                for seg in trimmed.split('/') {
                    check_name(seg).map_err(|_| BuildError::InvalidPath {
                        value: path.clone(),
                        reason: "every path segment must be a valid, non-empty name",
                    })?;
                    out.push('/');
                    out.push_str(&percent_encode_segment(seg));
                }
                out.push(':');
                Ok(out)
            }
            Location::Child { parent_id, name } => {
                check_id(parent_id)?;
                check_name(name)?;
                Ok(format!(
                    "{drive}/items/{}:/{}:",
                    percent_encode_segment(parent_id),
                    percent_encode_segment(name)
                ))
            }
            Location::Item(id) => {
                check_id(id)?;
                Ok(format!("{drive}/items/{}", percent_encode_segment(id)))
            }
        }
    }

    /// True for an item given by id.
    pub fn is_item(&self) -> bool {
        matches!(self.location, Location::Item(_))
    }
}

/// `@microsoft.graph.conflictBehavior` (onedrive.md §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictBehavior {
    /// Fail with 409 when the name exists.
    Fail,
    /// Replace the existing file.
    Replace,
    /// Pick a new name.
    Rename,
}

impl ConflictBehavior {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictBehavior::Fail => "fail",
            ConflictBehavior::Replace => "replace",
            ConflictBehavior::Rename => "rename",
        }
    }
}

/// Client-side timestamps to record on the item (`fileSystemInfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemInfo {
    /// `createdDateTime`.
    pub created: Option<SystemTime>,
    /// `lastModifiedDateTime`.
    pub last_modified: Option<SystemTime>,
}

/// `deferCommit` (onedrive.md §4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeferCommit {
    /// The last fragment creates the file.
    #[default]
    Off,
    /// `deferCommit: true`, and the machine commits as soon as all bytes are in.
    Auto,
    /// `deferCommit: true`; the machine emits `Event::ReadyToCommit` and waits for
    /// [`OneDriveUpload::commit`](super::OneDriveUpload::commit).
    Manual,
}

/// A validated fragment size: a non-zero multiple of 327,680 bytes, at most 62,914,560.
///
/// # Examples
/// ```
/// use upload_session::BuildError;
/// use upload_session::onedrive::FragmentSize;
/// assert_eq!(FragmentSize::new(10 * 1024 * 1024).unwrap().get(), 10_485_760);
/// assert_eq!(FragmentSize::new(0), Err(BuildError::ChunkSizeZero));
/// assert!(matches!(
///     FragmentSize::new(1_000_000),
///     Err(BuildError::ChunkSizeNotMultiple { nearest_below: 983_040, .. })
/// ));
/// assert!(matches!(FragmentSize::new(62_914_560 + 327_680), Err(BuildError::ChunkSizeTooLarge { .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct FragmentSize(u64);

impl FragmentSize {
    /// Validates a fragment size.
    ///
    /// # Errors
    /// [`BuildError::ChunkSizeZero`], [`BuildError::ChunkSizeNotMultiple`],
    /// [`BuildError::ChunkSizeTooLarge`].
    pub fn new(size: u64) -> Result<Self, BuildError> {
        if size == 0 {
            return Err(BuildError::ChunkSizeZero);
        }
        if size > MAX_FRAGMENT {
            return Err(BuildError::ChunkSizeTooLarge {
                size,
                max: MAX_FRAGMENT,
            });
        }
        if size % FRAGMENT_UNIT != 0 {
            return Err(BuildError::ChunkSizeNotMultiple {
                size,
                multiple: FRAGMENT_UNIT,
                nearest_below: size / FRAGMENT_UNIT * FRAGMENT_UNIT,
            });
        }
        Ok(Self(size))
    }

    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for FragmentSize {
    fn default() -> Self {
        Self(DEFAULT_FRAGMENT)
    }
}

impl TryFrom<u64> for FragmentSize {
    type Error = BuildError;
    fn try_from(v: u64) -> Result<Self, BuildError> {
        Self::new(v)
    }
}

impl From<FragmentSize> for u64 {
    fn from(f: FragmentSize) -> u64 {
        f.0
    }
}

/// What the upload is: part of every checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadOptions {
    /// Where the file goes.
    pub target: Target,
    /// Conflict behaviour. `None` lets the server decide (it is not sent).
    pub conflict: Option<ConflictBehavior>,
    /// `item.description` (OneDrive Personal only).
    pub description: Option<String>,
    /// `item.fileSystemInfo`.
    pub file_system_info: Option<FileSystemInfo>,
    /// `If-Match` on createUploadSession (an eTag or cTag); a mismatch fails with
    /// `UploadError::PreconditionFailed`.
    pub if_match: Option<String>,
    /// deferCommit mode.
    pub defer_commit: DeferCommit,
    /// Fragment size.
    pub fragment_size: FragmentSize,
    /// Send `item.fileSize` so the server can check the quota up front (507 at once).
    pub declare_file_size: bool,
    /// Compute SHA-256 too and compare it with `file.hashes.sha256Hash` when the server
    /// reports one (QuickXorHash is always computed and compared). Off by default:
    /// QuickXorHash is the only hash both Personal and Business report (onedrive.md
    /// §7.1; Business never sends `sha256Hash`), and a second SHA-256 pass halves the
    /// client's throughput (BENCHMARKS.md, "OneDrive: SHA-256 default").
    pub verify_sha256: bool,
}

impl UploadOptions {
    /// Options with defaults for `target`: conflict `fail` (`replace` for an item given
    /// by id), no description or timestamps, no deferCommit, 10 MiB fragments, declared
    /// file size, SHA-256 verification off (QuickXorHash only).
    pub fn new(target: Target) -> Self {
        let conflict = if target.is_item() {
            ConflictBehavior::Replace
        } else {
            ConflictBehavior::Fail
        };
        Self {
            target,
            conflict: Some(conflict),
            description: None,
            file_system_info: None,
            if_match: None,
            defer_commit: DeferCommit::Off,
            fragment_size: FragmentSize::default(),
            declare_file_size: true,
            verify_sha256: false,
        }
    }

    /// Checks every option.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.target.api_path()?;
        if let Some(m) = &self.if_match {
            if m.is_empty() || !m.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(BuildError::InvalidOption {
                    option: "if_match",
                    reason: "must be a non-empty eTag or cTag in visible ASCII",
                });
            }
        }
        if let Some(d) = &self.description {
            if d.chars().count() > 1024 {
                return Err(BuildError::InvalidOption {
                    option: "description",
                    reason: "at most 1024 characters",
                });
            }
        }
        FragmentSize::new(self.fragment_size.get())?;
        Ok(())
    }
}

/// What to do when the server says the session does not exist (404).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotFoundPolicy {
    /// Query the session's status once before believing it (SharePoint answers a
    /// transient 404 under load, onedrive §11 rule 43); when the status confirms,
    /// verify the item if the last byte may have landed, else restart the session.
    #[default]
    ConfirmThenRestart,
    /// Verify the item if the last byte may have landed, else restart at once.
    Restart,
    /// Verify the item if the last byte may have landed, else fail with
    /// `UploadError::SessionNotFound`.
    Fail,
}

/// How the machine behaves: not part of a checkpoint, so a resumed upload may use a
/// different policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OneDriveConfig {
    /// Graph base URL, no trailing slash: [`GRAPH_GLOBAL`] by default; national clouds
    /// have their own (see [`super::limits`]); the emulator's is `{server}/onedrive/v1.0`.
    pub graph_base: String,
    /// Backoff and budget.
    pub retry: RetryPolicy,
    /// Suggested deadline of a request without a body (must be positive).
    pub request_timeout: Duration,
    /// Slowest acceptable upload speed (bytes/second): a fragment's deadline is
    /// `request_timeout + len / min_throughput`.
    pub min_throughput: u64,
    /// A session is treated as expired this long before its `expirationDateTime`.
    pub expiry_margin: Duration,
    /// Optional hard cap on a session's age (OneDrive for Business URLs stop working
    /// 24 h after creation, onedrive.md §4.2): `Some(Duration::from_secs(23 * 3600))` is
    /// a sensible value there. `None` relies on the server's 401.
    pub max_session_age: Option<Duration>,
    /// Sessions that may be abandoned and recreated before giving up.
    pub max_restarts: u32,
    /// Reaction to a 404 on an `uploadUrl`.
    pub not_found: NotFoundPolicy,
    /// After a createUploadSession whose outcome is unknown (5xx, lost response), a 409
    /// on the next create can mean the lost session still blocks the target (OneDrive
    /// for Business, onedrive.md §1.5). Wait this long (about the 15-minute session
    /// expiry) and try again; `None` fails at once. When no wait is left the upload ends
    /// in [`UploadError::OrphanSessionConflict`](crate::UploadError::OrphanSessionConflict).
    /// Keep it above the service's expiry: a 409 after the wait is taken as a real name
    /// conflict ([`UploadError::Conflict`](crate::UploadError::Conflict)).
    pub orphan_session_wait: Option<Duration>,
    /// How many such waits one upload may make before failing with the conflict.
    pub max_orphan_waits: u32,
    /// Largest file accepted at build time.
    pub max_file_size: u64,
    /// Response bodies larger than this are not parsed (treated as malformed). Must be
    /// positive.
    pub max_response_body: usize,
    /// Hosts an `uploadUrl` may point at (created or resumed from a checkpoint), on top
    /// of the scheme rule ([`UploadError::UntrustedUploadUrl`]). Empty (the default):
    /// any host, since the service names its own upload hosts (onedrive.md §1.4). Each
    /// entry is a bare host name and admits itself and its subdomains, compared without
    /// regard to ASCII case: `sharepoint.com` admits `contoso-my.sharepoint.com`, not
    /// `evilsharepoint.com`. Loopback is not implied: an emulator on `127.0.0.1` needs
    /// that entry. The hosts observed in the spec's logs are `sharepoint.com`
    /// (Business), `api.onedrive.com` and `up.1drv.com` (Personal); national clouds
    /// have their own.
    ///
    /// [`UploadError::UntrustedUploadUrl`]: crate::UploadError::UntrustedUploadUrl
    ///
    /// # Examples
    /// ```
    /// use upload_session::onedrive::OneDriveConfig;
    /// let mut cfg = OneDriveConfig::default();
    /// cfg.upload_url_hosts = vec!["sharepoint.com".into(), "api.onedrive.com".into()];
    /// ```
    pub upload_url_hosts: Vec<String>,
    /// Fragments read (and hashed) ahead while the one before them travels, so that
    /// reading the source and hashing overlap the transfer instead of following it
    /// (BENCHMARKS.md §6.1). Memory: up to `(1 + read_ahead) × fragment_size` bytes held.
    /// `0` reads each fragment only when it is its turn. Default 1, at most
    /// [`MAX_READ_AHEAD`](super::limits::MAX_READ_AHEAD). Reads stay in file order and
    /// never go back for a fragment memory covers: after a partial accept moved the
    /// fragment grid (onedrive.md §10), the next fragment is assembled from the held
    /// fragment and the read-ahead, so a forward-only source (`Source::reader` in the
    /// adapters) keeps working.
    pub read_ahead: u32,
}

impl Default for OneDriveConfig {
    fn default() -> Self {
        Self {
            graph_base: GRAPH_GLOBAL.to_string(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            min_throughput: 64 * 1024,
            expiry_margin: Duration::from_secs(60),
            max_session_age: None,
            max_restarts: 5,
            not_found: NotFoundPolicy::default(),
            orphan_session_wait: Some(Duration::from_secs(16 * 60)),
            max_orphan_waits: 3,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_response_body: 1 << 20,
            upload_url_hosts: Vec::new(),
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }
}

impl OneDriveConfig {
    /// A configuration for Graph at `graph_base` (other fields default).
    pub fn with_base(graph_base: impl Into<String>) -> Self {
        Self {
            graph_base: graph_base.into(),
            ..Self::default()
        }
    }

    /// Returns the base URL without trailing slashes, checked.
    pub(crate) fn checked_base(&self) -> Result<String, BuildError> {
        let base = self.graph_base.trim_end_matches('/');
        let bad = || BuildError::InvalidBaseUrl {
            value: self.graph_base.clone(),
        };
        let uri: http::Uri = base.parse().map_err(|_| bad())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
        if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
            return Err(bad());
        }
        // Options that can never work (issue 7): a zero deadline times every request
        // out at once; a zero cap makes every answer "too large".
        if self.request_timeout.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "request_timeout",
                reason: "must be positive",
            });
        }
        if self.max_response_body == 0 {
            return Err(BuildError::InvalidOption {
                option: "max_response_body",
                reason: "must be positive",
            });
        }
        if self.read_ahead > MAX_READ_AHEAD {
            return Err(BuildError::InvalidOption {
                option: "read_ahead",
                reason: "at most 16 fragments",
            });
        }
        if !self.upload_url_hosts.iter().all(|h| is_bare_host(h)) {
            return Err(BuildError::InvalidOption {
                option: "upload_url_hosts",
                reason: "each entry must be a bare host name such as `sharepoint.com` \
                         (letters, digits, `-` and inner dots; no scheme, port or path)",
            });
        }
        Ok(base.to_string())
    }
}

/// An `upload_url_hosts` entry: labels of ASCII letters, digits and `-`, joined by
/// single dots, at most 253 bytes (a DNS name; an IPv4 address also fits).
fn is_bare_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
