//! The OneDrive model: Microsoft Graph `createUploadSession` uploads, enforcing every rule
//! of `shared/spec/onedrive.md` §11 (1-45).
//!
//! # URL layout
//!
//! Graph API, under `{base}/onedrive/v1.0` (bearer token required, rule 1):
//!
//! | Drive | |
//! |---|---|
//! | `/me/drive` | the user's drive (always exists) |
//! | `/drives/{driveId}` | an existing drive; unknown id → 404 `itemNotFound` |
//! | `/sites/{id}/drive`, `/users/{id}/drive`, `/groups/{id}/drive` | one drive per key, created on first use |
//!
//! | Item (after a drive) | |
//! |---|---|
//! | `/root`, `/root:/{path}:` | by path; per-segment percent-encoding, or onedrive-api's single segment `root:%2Fa%2Fb:` |
//! | `/items/{id}` | by id (`root` is an alias of the root) |
//! | `/items/{parentId}:/{path}:`, `/items/{parentId}/children/{name}` | below a folder |
//!
//! | Operation | |
//! |---|---|
//! | `POST {item}/createUploadSession` | body optional: `{"item": driveItemUploadableProperties, "deferCommit": bool}` |
//! | `PUT {item}/content` | simple upload (zero bytes allowed), at most `simple_upload_max` bytes; `?@microsoft.graph.conflictBehavior=` |
//! | `GET {item}`, `GET {item}/content`, `GET {drive}` | metadata (so a client can re-fetch an item, rule 27); content only with `keep_bytes` |
//! | `PUT {item}` with `{"@microsoft.graph.sourceUrl": uploadUrl, "name"?, "@microsoft.graph.conflictBehavior"?}` | commit a complete session under a new name (rule 32). A path whose last segment equals `name` addresses the file, any other path the parent folder. |
//!
//! Upload URLs (no `Authorization` allowed, rule 11):
//! `{base_url}/onedrive/up/{session}?tempauth={secret}` — `PUT` fragment, `GET` status,
//! `DELETE` cancel, `POST` deferCommit commit.
//!
//! # Seeding and inspection
//! Through [`crate::Emulator::onedrive_mut`]: [`OneDrive::seed_file`],
//! [`OneDrive::seed_folder`], [`OneDrive::drive_id`], [`OneDrive::item_id`],
//! [`OneDrive::etag`], [`OneDrive::ctag`], [`OneDrive::open_sessions`],
//! [`OneDrive::session_received`], [`OneDrive::session_info`], [`OneDrive::files_of`].
//! Drives are named by a selector: `me`, `sites/{id}`, `users/{id}`, `groups/{id}`, or a
//! drive id. Paths are display paths (`/folder/name.bin`).
//!
//! Finished files are [`FileRecord`]s with the drive id, the display path, the item id,
//! the eTag as `rev`, and size + SHA-256 + QuickXorHash + Dropbox content hash (bytes
//! only with [`Config::keep_bytes`]). A fragment's body is never collected: it is hashed
//! into a clone of the session's running digests, which replaces the session's state only
//! when the fragment is accepted.
//!
//! # Choices where the spec leaves room
//! - A missing `@microsoft.graph.conflictBehavior` **replaces** (what users observe), an
//!   item-id target always replaces. `fail` conflicts are reported at create or at commit
//!   per [`ConflictAt`](crate::config::ConflictAt); a name taken meanwhile is always
//!   reported at commit (rule 28).
//! - Final fragment: 201 when the item is new, 200 when it replaced a file (rule 26).
//! - Rule 23 answers a concurrent PUT with 416 `fragmentOutOfOrder`.
//! - Every accepted fragment slides `expirationDateTime` to now + the flavour's expiry
//!   (15 min Business, rule 25; days on Personal).
//! - `file.hashes`: `quickXorHash` (base64) always; Personal adds `sha256Hash` as
//!   **uppercase** hex (as Graph shows its hex hashes).
//! - Errors: `{"error":{"code","message","innerError":{"code"?, "date", "request-id",
//!   "client-request-id"}}}`; 412 is `resourceModified`/`entityTagDoesNotMatch`.
//!
//! # Violations and the client's knowledge of the offset
//! A session tracks whether the client can know the server's offset. It cannot after an
//! ambiguous outcome: a PUT answered by an `ErrorAfter` 5xx, a lost response, a reset
//! with a kept prefix, or a 5xx given after the body was read (rule 22). A 5xx, 429 or
//! 404 given before the body (no effect) leaves the client's offset right, so it changes
//! nothing. In the doubtful state one offset mismatch (416
//! overlap / out of order, a premature commit) is answered but **not** counted. A
//! delivered 202, status 200, or **416** ends the doubt: after a 416 the client must GET
//! the status before its next PUT, so a second blind mismatch (the "416 loop" of §9) is
//! counted. Using a session after the client was told for sure that it is gone (a
//! delivered 204, final item or 401 `expiredToken`), or after its `expirationDateTime`,
//! counts as [`Violation::DeadSessionUsed`], except a cleanup DELETE of a session the
//! client did not itself finish. A 404 alone does not make later requests violations: it
//! may be a transient one (rule 43), so retrying it is legitimate.

mod errors;
mod graph;
mod items;
mod paths;
mod session;
#[cfg(test)]
mod tests;

pub use items::Conflict;
pub use session::ALIGN;

use crate::ingest::Received;
use crate::store::StoredContent;
use crate::{Config, Cx, FileRecord, ServiceModel, Started, Violation};
use bytes::Bytes;
use errors::GraphError;
use http::{Response, request};
use items::{Drive, Placement, TreeError};
use paths::GraphRoute;
use session::{Session, Tomb, errcx, item_id};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// The OneDrive service model. See the [module docs](self) for the URL layout.
pub struct OneDrive {
    drives: HashMap<String, Drive>,
    drive_keys: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    tombs: HashMap<String, Tomb>,
    reported_expired: HashSet<String>,
    next_id: u64,
    last_now: SystemTime,
    keep_bytes: bool,
}

impl std::fmt::Debug for OneDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneDrive")
            .field("drives", &self.drives.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// `If-Match` / `If-None-Match` of a request.
#[derive(Clone, Debug, Default)]
struct Conditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
}

/// Continuation of a OneDrive request whose body is being read.
#[derive(Debug)]
pub struct Ticket(TicketKind);

#[derive(Debug)]
enum TicketKind {
    Create {
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        json: bool,
    },
    SourceUrl {
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        json: bool,
    },
    Simple {
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        conflict: Option<Conflict>,
        len: u64,
    },
    Fragment {
        session: String,
        start: u64,
        end: u64,
        total: u64,
    },
    Commit {
        session: String,
    },
}

/// A seeded item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededItem {
    /// Drive id.
    pub drive: String,
    /// Item id.
    pub id: String,
    /// Its eTag.
    pub etag: String,
}

/// Why seeding failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedError {
    /// Unknown drive selector.
    UnknownDrive,
    /// The path is empty or holds an invalid name.
    BadPath,
    /// A component of the path is a file, or the target is a folder.
    Conflict,
}

/// What the inspection API tells about an open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Bytes received (the next expected offset).
    pub received: u64,
    /// TOTAL, once the first fragment fixed it.
    pub total: Option<u64>,
    /// `deferCommit`.
    pub defer_commit: bool,
    /// Current `expirationDateTime`.
    pub expires: SystemTime,
    /// Drive id.
    pub drive: String,
    /// Target display path (`/folder/name.bin`).
    pub path: String,
}

fn seed_segments(path: &str) -> Result<Vec<String>, SeedError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segs.iter().all(|s| paths::valid_name(s)) {
        Ok(segs)
    } else {
        Err(SeedError::BadPath)
    }
}

impl OneDrive {
    /// Creates an empty model with the `me` drive.
    pub fn new(config: &Config) -> Self {
        let mut od = Self {
            drives: HashMap::new(),
            drive_keys: HashMap::new(),
            sessions: HashMap::new(),
            tombs: HashMap::new(),
            reported_expired: HashSet::new(),
            next_id: 0,
            last_now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            keep_bytes: config.keep_bytes,
        };
        let now = od.last_now;
        od.ensure_drive_key("me", now);
        od
    }

    fn ensure_drive_key(&mut self, key: &str, now: SystemTime) -> String {
        if let Some(id) = self.drive_keys.get(key) {
            return id.clone();
        }
        self.next_id += 1;
        let id = format!("b!emu{:012x}", self.next_id);
        self.next_id += 1;
        let root = item_id(self.next_id);
        self.drives
            .insert(id.clone(), Drive::new(id.clone(), root, now));
        self.drive_keys.insert(key.to_string(), id.clone());
        id
    }

    fn drive_of(&self, selector: &str) -> Option<&str> {
        if let Some(id) = self.drive_keys.get(selector) {
            return Some(id);
        }
        self.drives.get(selector).map(|d| d.id.as_str())
    }

    /// The id of a drive: `selector` is `me`, `sites/{id}`, `users/{id}`, `groups/{id}`
    /// (created on first use, like the Graph routes do) or an existing drive id.
    pub fn drive_id(&mut self, selector: &str) -> Option<String> {
        let keyed = ["sites/", "users/", "groups/"].iter().any(|p| {
            selector
                .strip_prefix(p)
                .is_some_and(|r| !r.is_empty() && !r.contains('/'))
        });
        if selector == "me" || keyed {
            let now = self.last_now;
            return Some(self.ensure_drive_key(selector, now));
        }
        self.drives
            .contains_key(selector)
            .then(|| selector.to_string())
    }

    /// Seeds an existing file at `path` (`/folder/name.bin`) of `drive` (see
    /// [`drive_id`](Self::drive_id)), creating folders as needed and replacing an existing
    /// file. Its bytes are kept only with `keep_bytes`.
    pub fn seed_file(
        &mut self,
        drive: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<SeededItem, SeedError> {
        let drive = self.drive_id(drive).ok_or(SeedError::UnknownDrive)?;
        let mut segs = seed_segments(path)?;
        let name = segs.pop().ok_or(SeedError::BadPath)?;
        let placement = Placement { parent: segs, name };
        let content = StoredContent::of(bytes, self.keep_bytes);
        let now = self.last_now;
        let mut next = self.next_id;
        let d = self.drives.get_mut(&drive).ok_or(SeedError::UnknownDrive)?;
        let res = d.put_file(
            &placement,
            Conflict::Replace,
            content,
            items::NewFileMeta::default(),
            now,
            || {
                next += 1;
                item_id(next)
            },
        );
        self.next_id = next;
        let (id, _) = res.map_err(|_| SeedError::Conflict)?;
        let etag = d.by_id(&id).map(|i| i.etag()).unwrap_or_default();
        Ok(SeededItem { drive, id, etag })
    }

    /// Seeds a folder (and its parents); returns its item id.
    pub fn seed_folder(&mut self, drive: &str, path: &str) -> Result<String, SeedError> {
        let drive = self.drive_id(drive).ok_or(SeedError::UnknownDrive)?;
        let segs = seed_segments(path)?;
        let now = self.last_now;
        let mut next = self.next_id;
        let d = self.drives.get_mut(&drive).ok_or(SeedError::UnknownDrive)?;
        let res = d.ensure_folders(&segs, now, || {
            next += 1;
            item_id(next)
        });
        self.next_id = next;
        res.map_err(|_: TreeError| SeedError::Conflict)
    }

    fn item_at(&self, drive: &str, path: &str) -> Option<&items::Item> {
        let d = self.drives.get(self.drive_of(drive)?)?;
        d.by_path(&seed_segments(path).ok()?)
    }

    /// The item id at `path` of `drive` (`me`, a key, or a drive id).
    pub fn item_id(&self, drive: &str, path: &str) -> Option<String> {
        self.item_at(drive, path).map(|i| i.id.clone())
    }

    /// The eTag of the item at `path`.
    pub fn etag(&self, drive: &str, path: &str) -> Option<String> {
        self.item_at(drive, path).map(items::Item::etag)
    }

    /// The cTag of the item at `path`.
    pub fn ctag(&self, drive: &str, path: &str) -> Option<String> {
        self.item_at(drive, path).map(items::Item::ctag)
    }

    /// Number of sessions that are neither finished, cancelled nor past their expiry at
    /// `now`.
    pub fn open_sessions(&self, now: SystemTime) -> usize {
        self.sessions.values().filter(|s| now <= s.expires).count()
    }

    fn session_by_url(&self, upload_url: &str) -> Option<&Session> {
        let (id, query) = paths::split_upload_url(upload_url)?;
        let s = self.sessions.get(id)?;
        (query == format!("tempauth={}", s.secret)).then_some(s)
    }

    /// Bytes received so far by the open session behind `upload_url` (the next expected
    /// offset), or `None` when there is no such open session.
    pub fn session_received(&self, upload_url: &str) -> Option<u64> {
        self.session_by_url(upload_url).map(Session::received)
    }

    /// Details of the open session behind `upload_url`.
    pub fn session_info(&self, upload_url: &str) -> Option<SessionInfo> {
        self.session_by_url(upload_url).map(|s| SessionInfo {
            received: s.received(),
            total: s.total,
            defer_commit: s.defer,
            expires: s.expires,
            drive: s.drive.clone(),
            path: s.placement.display(),
        })
    }

    /// The finished files of one drive.
    pub fn files_of(&self, drive: &str) -> Vec<FileRecord> {
        self.drive_of(drive)
            .and_then(|id| self.drives.get(id))
            .map(Drive::records)
            .unwrap_or_default()
    }
}

impl ServiceModel for OneDrive {
    type Ticket = Ticket;

    fn begin(&mut self, cx: &mut Cx<'_>, head: &request::Parts) -> Started<Ticket> {
        self.last_now = cx.now;
        let path = head.uri.path();
        if path.starts_with(paths::GRAPH_PREFIX) {
            return self.begin_graph(cx, head);
        }
        if let Some(id) = paths::parse_upload(path) {
            let id = id.to_string();
            return self.begin_upload(cx, head, &id);
        }
        cx.violation(Violation::UnknownRoute);
        session::respond(
            cx,
            GraphError::new(
                http::StatusCode::NOT_FOUND,
                "itemNotFound",
                "Unknown endpoint.",
            ),
        )
    }

    fn complete(&mut self, cx: &mut Cx<'_>, ticket: Ticket, body: Received) -> Response<Bytes> {
        self.last_now = cx.now;
        match ticket.0 {
            TicketKind::Create {
                drive,
                route,
                cond,
                json,
            } => self.complete_create(cx, drive, route, cond, json, body),
            TicketKind::SourceUrl {
                drive,
                route,
                cond,
                json,
            } => self.complete_source_url(cx, drive, route, cond, json, body),
            TicketKind::Simple {
                drive,
                route,
                cond,
                conflict,
                len,
            } => self.complete_simple(cx, drive, route, cond, conflict, len, body),
            TicketKind::Fragment {
                session,
                start,
                end,
                total,
            } => self.complete_fragment(cx, &session, (start, end, total), body),
            TicketKind::Commit { session } => self.complete_commit(cx, &session, body),
        }
    }

    fn abort(&mut self, cx: &mut Cx<'_>, ticket: Ticket, body: Received, keep_prefix: bool) {
        self.last_now = cx.now;
        if let TicketKind::Fragment {
            session,
            start,
            total,
            ..
        } = ticket.0
        {
            self.abort_fragment(&session, start, total, body, keep_prefix);
        }
    }

    fn overflow(&mut self, cx: &mut Cx<'_>, ticket: Ticket, limit: u64) -> Response<Bytes> {
        self.last_now = cx.now;
        let e = match ticket.0 {
            TicketKind::Fragment { session, .. } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.in_flight = false;
                }
                cx.violation(Violation::ContentLengthMismatch);
                GraphError::invalid_request("The body is longer than Content-Length.")
            }
            TicketKind::Commit { .. } => {
                cx.violation(Violation::BadCommit);
                GraphError::invalid_request("The commit request must have an empty body.")
            }
            TicketKind::Simple { .. } => {
                cx.violation(Violation::ContentLengthMismatch);
                GraphError::invalid_request("The body is longer than Content-Length.")
            }
            TicketKind::Create { .. } | TicketKind::SourceUrl { .. } => GraphError::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "invalidRequest",
                format!("The request message is too big (limit {limit} bytes)."),
            ),
        };
        e.response(errcx(cx))
    }

    fn files(&self) -> Vec<FileRecord> {
        let mut ids: Vec<&String> = self.drives.keys().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.drives.get(id))
            .flat_map(Drive::records)
            .collect()
    }
}
