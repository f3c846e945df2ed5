//! Upload sessions and everything sent to an `uploadUrl`: fragment PUT, status GET,
//! cancel DELETE, deferCommit POST (onedrive.md §2-§4, §11 rules 11-38, 41-43).

use super::errors::{ErrCx, GraphError, add, fmt_time};
use super::items::{Conflict, NewFileMeta, Placement, TreeError};
use super::{Ticket, TicketKind};
use crate::config::{Alignment, OneDriveFlavor, RangeStyle};
use crate::faults::{Fault, RouteKind};
use crate::ingest::{Received, SinkSpec};
use crate::store::FileHashState;
use crate::{Cx, Started, TransportFault, Violation, wire};
use bytes::Bytes;
use http::{Method, Response, StatusCode, header, request};
use serde_json::json;
use std::time::SystemTime;

/// The fragment alignment unit: 320 KiB (onedrive.md §0).
#[cfg(not(fuzzing))]
pub const ALIGN: u64 = 327_680;
/// Fuzz builds (`--cfg fuzzing`) scale the unit down 1024×, as the core does.
#[cfg(fuzzing)]
pub const ALIGN: u64 = 320;

/// One open upload session.
pub struct Session {
    /// Session id (the last path segment of the upload URL).
    pub id: String,
    /// The `tempauth` secret.
    pub secret: String,
    /// Drive id.
    pub drive: String,
    /// Where the file goes.
    pub placement: Placement,
    /// Conflict behaviour.
    pub conflict: Conflict,
    /// `deferCommit`.
    pub defer: bool,
    /// Metadata for the item.
    pub meta: NewFileMeta,
    /// Declared `item.fileSize`.
    pub file_size: Option<u64>,
    /// Creation time.
    pub created: SystemTime,
    /// Current `expirationDateTime`.
    pub expires: SystemTime,
    /// TOTAL, fixed by the first accepted fragment.
    pub total: Option<u64>,
    /// Running digests of the bytes received (their count is the next expected offset).
    pub hash: FileHashState,
    /// A PUT is reading its body (rule 23).
    pub in_flight: bool,
    /// The client cannot know the current offset (after an ambiguous outcome): the next
    /// offset mismatch is answered but not counted as a violation.
    pub offset_in_doubt: bool,
    /// A non-final fragment ended off a 320 KiB boundary (lenient mode, rule 22).
    pub unaligned: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is a bearer-equivalent: never printed.
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("drive", &self.drive)
            .field("placement", &self.placement)
            .field("total", &self.total)
            .field("received", &self.hash.len())
            .field("defer", &self.defer)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Bytes received (the next expected offset).
    pub fn received(&self) -> u64 {
        self.hash.len()
    }

    /// True when TOTAL is known and every byte arrived.
    pub fn all_in(&self) -> bool {
        self.total.is_some_and(|t| self.received() >= t)
    }

    /// `nextExpectedRanges` (rules 24, 29, 33).
    pub fn ranges(&self, style: RangeStyle) -> Vec<String> {
        let r = self.received();
        match self.total {
            Some(t) if r >= t => Vec::new(),
            Some(t) if style == RangeStyle::Closed => vec![format!("{r}-{}", t - 1)],
            _ => vec![format!("{r}-")],
        }
    }

    /// The uploadSession JSON (status, 202).
    pub fn status_json(&self, style: RangeStyle) -> serde_json::Value {
        json!({
            "expirationDateTime": fmt_time(self.expires),
            "nextExpectedRanges": self.ranges(style),
        })
    }
}

/// Why a session is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// DELETEd (rule 34).
    Cancelled,
    /// Committed (rule 35).
    Completed,
    /// Past `expirationDateTime` (rule 36).
    Expired,
    /// Business 24 h token cap (rule 37).
    TokenExpired,
}

/// A session that no longer exists, kept to answer its URL.
#[derive(Clone, Debug)]
pub struct Tomb {
    /// Its secret (a wrong one is still a tampered URL).
    pub secret: String,
    /// Why it is gone.
    pub gone: Gone,
    /// The client was told for sure that it is gone: a delivered 204 (cancel), final
    /// item (completion) or 401 `expiredToken`. A 404 does not count: it may be a
    /// transient one (rule 43), so a client may retry it.
    pub told: bool,
}

/// Parses `bytes START-END/TOTAL` exactly (rule 14): single spaces, decimal digits, no `*`.
pub fn parse_content_range(s: &str) -> Option<(u64, u64, u64)> {
    fn num(s: &str) -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let r = s.strip_prefix("bytes ")?;
    let (a, rest) = r.split_once('-')?;
    let (b, t) = rest.split_once('/')?;
    Some((num(a)?, num(b)?, num(t)?))
}

impl super::OneDrive {
    /// Moves a session to the tombstones.
    pub(super) fn bury(&mut self, id: &str, gone: Gone, told: bool) {
        if let Some(s) = self.sessions.remove(id) {
            self.tombs.insert(
                id.to_string(),
                Tomb {
                    secret: s.secret,
                    gone,
                    told,
                },
            );
        }
    }

    /// Retires every session past its expiry (or 24 h cap) at `now`, without telling.
    pub(super) fn sweep(&mut self, cfg: &crate::Config, now: SystemTime) {
        let dead: Vec<(String, Gone)> = self
            .sessions
            .values()
            .filter_map(|s| expired(cfg, s, now).map(|g| (s.id.clone(), g)))
            .collect();
        for (id, g) in dead {
            self.bury(&id, g, false);
        }
    }

    /// Handles a request to `/onedrive/up/{id}`.
    pub(super) fn begin_upload(
        &mut self,
        cx: &mut Cx<'_>,
        head: &request::Parts,
        id: &str,
    ) -> Started<Ticket> {
        // Rule 11: no Authorization on an uploadUrl, whatever else is wrong.
        if head.headers.contains_key(header::AUTHORIZATION) {
            cx.violation(Violation::AuthorizationOnUploadUrl);
            return respond(cx, GraphError::unauthenticated());
        }
        let query = head.uri.query().unwrap_or("");
        let method = head.method.clone();
        let secret = match (self.sessions.get(id), self.tombs.get(id)) {
            (Some(s), _) => s.secret.clone(),
            (None, Some(t)) => t.secret.clone(),
            (None, None) => {
                // Never issued: the client made this URL up (rule 12).
                cx.violation(Violation::TamperedUploadUrl);
                return respond(cx, GraphError::session_not_found());
            }
        };
        if query != format!("tempauth={secret}") {
            cx.violation(Violation::TamperedUploadUrl);
            return respond(cx, GraphError::unauthenticated());
        }
        let dead = self
            .sessions
            .get(id)
            .and_then(|s| expired(cx.config, s, cx.now).map(|g| (g, s.created)));
        if let Some((g, created)) = dead {
            // First request after the session died. Using it after its expirationDateTime
            // is a violation (the client was told that time), except a cleanup DELETE; the
            // 24 h token cap is not (rule 37 is observed, not announced).
            if g == Gone::Expired && method != Method::DELETE {
                cx.violation(Violation::DeadSessionUsed);
            }
            self.bury(id, g, g == Gone::TokenExpired);
            return respond(cx, dead_error(g, Some(created)));
        }
        if let Some(t) = self.tombs.get_mut(id) {
            let counts = if method == Method::DELETE {
                t.told && matches!(t.gone, Gone::Cancelled | Gone::Completed)
            } else {
                t.told || t.gone == Gone::Expired
            };
            if counts {
                cx.violation(Violation::DeadSessionUsed);
            }
            if t.gone == Gone::TokenExpired {
                t.told = true;
            }
            let g = t.gone;
            return respond(cx, dead_error(g, None));
        }
        let kind = match method {
            Method::PUT => RouteKind::OneDrivePut,
            Method::GET => RouteKind::OneDriveStatus,
            Method::DELETE => RouteKind::OneDriveCancel,
            Method::POST => RouteKind::OneDriveCommit,
            _ => {
                cx.violation(Violation::UnknownRoute);
                return respond(
                    cx,
                    GraphError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "invalidRequest",
                        "The HTTP method is not supported on an upload URL.",
                    ),
                );
            }
        };
        let fault = cx.decide_fault(kind);
        if let Some(r) = immediate_fault(cx, fault.as_ref(), true) {
            return Started::Respond(r);
        }
        match kind {
            RouteKind::OneDrivePut => self.begin_fragment(cx, head, id),
            RouteKind::OneDriveStatus => {
                let style = cx.config.onedrive.range_style;
                let Some(s) = self.sessions.get_mut(id) else {
                    return respond(cx, GraphError::session_not_found());
                };
                let body = s.status_json(style);
                let (resp, delivered) = after_fault(cx, wire::json(StatusCode::OK, &body));
                if delivered {
                    // The client now knows the offset (rule 33).
                    s.offset_in_doubt = false;
                }
                Started::Respond(resp)
            }
            RouteKind::OneDriveCancel => {
                let (resp, delivered) = after_fault(cx, wire::empty(StatusCode::NO_CONTENT));
                self.bury(id, Gone::Cancelled, delivered);
                Started::Respond(resp)
            }
            _ => {
                // Commit (rule 30/31): the body must be empty.
                match wire::content_length(&head.headers) {
                    Ok(Some(0)) | Ok(None) => {}
                    _ => {
                        cx.violation(Violation::BadCommit);
                        return respond(
                            cx,
                            GraphError::invalid_request(
                                "The commit request must have an empty body.",
                            ),
                        );
                    }
                }
                Started::Read {
                    ticket: Ticket(TicketKind::Commit {
                        session: id.to_string(),
                    }),
                    sink: SinkSpec {
                        max_len: 0,
                        ..SinkSpec::default()
                    },
                }
            }
        }
    }

    fn begin_fragment(
        &mut self,
        cx: &mut Cx<'_>,
        head: &request::Parts,
        id: &str,
    ) -> Started<Ticket> {
        let cfg = &cx.config.onedrive;
        let max_fragment = cfg.max_fragment;
        let max_file = cfg.max_file_size;
        let alignment = cfg.alignment;
        let Some(s) = self.sessions.get_mut(id) else {
            return respond(cx, GraphError::session_not_found());
        };
        // Rule 23: one PUT at a time.
        if s.in_flight {
            cx.violation(Violation::ConcurrentFragment);
            return respond(cx, GraphError::out_of_order());
        }
        // Rules 13-15.
        let mut ranges = head.headers.get_all(header::CONTENT_RANGE).iter();
        let (first, second) = (ranges.next(), ranges.next());
        let Some(first) = first else {
            cx.violation(Violation::BadContentRange);
            return respond(
                cx,
                GraphError::invalid_request("The Content-Range header is missing."),
            );
        };
        let parsed = if second.is_some() {
            None
        } else {
            first.to_str().ok().and_then(parse_content_range)
        };
        let Some((start, end, total)) = parsed else {
            cx.violation(Violation::BadContentRange);
            return respond(
                cx,
                GraphError::invalid_request("The Content-Range header is malformed."),
            );
        };
        if start > end || end >= total {
            cx.violation(Violation::BadContentRange);
            return respond(
                cx,
                GraphError::invalid_request("The Content-Range header is not a valid range."),
            );
        }
        let len = end - start + 1;
        // Rule 16.
        match wire::content_length(&head.headers) {
            Ok(Some(cl)) if cl == len => {}
            Ok(None) => {
                cx.violation(Violation::ContentLengthMismatch);
                return respond(
                    cx,
                    GraphError::new(
                        StatusCode::LENGTH_REQUIRED,
                        "invalidRequest",
                        "Content-Length is required.",
                    ),
                );
            }
            _ => {
                cx.violation(Violation::ContentLengthMismatch);
                return respond(
                    cx,
                    GraphError::invalid_request(
                        "Content-Length does not match the length of the Content-Range.",
                    ),
                );
            }
        }
        // Rule 17.
        if let Some(t) = s.total.or(s.file_size) {
            if t != total {
                cx.violation(Violation::TotalMismatch);
                return respond(
                    cx,
                    GraphError::invalid_request(format!(
                        "The current upload session is for {t} total bytes, but the current fragment declares a total of {total}."
                    ))
                    .inner("fragmentLengthMismatch"),
                );
            }
        }
        // Rule 7 (at the first fragment).
        if total > max_file {
            return respond(
                cx,
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "invalidArgument",
                    "The file exceeds the maximum file size.",
                )
                .inner("maxFileSizeExceeded"),
            );
        }
        // Rule 18.
        if len > max_fragment {
            cx.violation(Violation::FragmentTooLarge);
            return respond(
                cx,
                GraphError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalidRequest",
                    "The entity size in the request exceeds the maximum limit.",
                )
                .inner("maxFragmentLengthExceeded"),
            );
        }
        // Rules 19, 20, 29a.
        let received = s.received();
        if start != received {
            let excused = s.offset_in_doubt;
            let e = if start < received {
                if !excused {
                    cx.violation(Violation::FragmentOverlap);
                }
                GraphError::overlap()
            } else {
                if !excused {
                    cx.violation(Violation::FragmentOutOfOrder);
                }
                GraphError::out_of_order()
            };
            let r = e.response(errcx(cx));
            let (resp, delivered) = after_fault(cx, r);
            if delivered {
                // The client was told its offset is wrong: it must query before the next
                // PUT; one more blind mismatch is the "416 loop" (§9 item 2) and counts.
                s.offset_in_doubt = false;
            }
            return Started::Respond(resp);
        }
        // Rules 21, 22.
        let misaligned = end + 1 != total && (end + 1) % ALIGN != 0;
        if misaligned {
            cx.violation(Violation::MisalignedFragment);
            if alignment == Alignment::Strict {
                return respond(
                    cx,
                    GraphError::invalid_request(format!(
                        "A fragment that is not the last one must end on a multiple of {ALIGN} bytes."
                    )),
                );
            }
        }
        s.in_flight = true;
        Started::Read {
            ticket: Ticket(TicketKind::Fragment {
                session: id.to_string(),
                start,
                end,
                total,
            }),
            sink: SinkSpec {
                file: Some(s.hash.clone()),
                max_len: len,
                ..SinkSpec::default()
            },
        }
    }

    /// The body of a fragment arrived.
    pub(super) fn complete_fragment(
        &mut self,
        cx: &mut Cx<'_>,
        id: &str,
        (start, end, total): (u64, u64, u64),
        body: Received,
    ) -> Response<Bytes> {
        let od = &cx.config.onedrive;
        let style = od.range_style;
        let flavor = od.flavor;
        let alignment = od.alignment;
        let quirk = od.final_returns_session_shape;
        let slide = match flavor {
            OneDriveFlavor::Business => od.business_expiry,
            OneDriveFlavor::Personal => od.personal_expiry,
        };
        let Some(s) = self.sessions.get_mut(id) else {
            // Cancelled while the body was arriving.
            return GraphError::session_not_found().response(errcx(cx));
        };
        s.in_flight = false;
        let len = end - start + 1;
        if body.len != len {
            cx.violation(Violation::ContentLengthMismatch);
            return GraphError::invalid_request("The body is shorter than Content-Length.")
                .response(errcx(cx));
        }
        let Some(file) = body.file.filter(|f| f.len() == end + 1) else {
            return GraphError::out_of_order().response(errcx(cx));
        };
        // Apply.
        s.hash = file;
        s.total = Some(total);
        s.expires = add(cx.now, slide);
        if end + 1 != total && (end + 1) % ALIGN != 0 {
            s.unaligned = true;
        }
        let resp = if end + 1 < total || s.defer {
            // Rules 24, 29.
            wire::json(StatusCode::ACCEPTED, &s.status_json(style))
        } else if lenient_commit_fails(alignment, s) {
            lenient_failure().response(errcx(cx))
        } else {
            self.final_commit(cx, id, quirk, start, style)
        };
        let (resp, delivered) = after_fault(cx, resp);
        let status = resp.status();
        if let Some(s) = self.sessions.get_mut(id) {
            s.offset_in_doubt = !delivered || status.is_server_error();
        } else if let Some(t) = self.tombs.get_mut(id) {
            t.told = delivered;
        }
        resp
    }

    /// Commits a session whose bytes are all in, answering 201/200 with the item (rule 26),
    /// the session-shaped quirk (rule 27) or 409 (rule 28).
    fn final_commit(
        &mut self,
        cx: &mut Cx<'_>,
        id: &str,
        quirk: bool,
        range_start: u64,
        style: RangeStyle,
    ) -> Response<Bytes> {
        let quirk_body = self.sessions.get(id).map(|s| {
            let ranges = match (style, s.total) {
                (RangeStyle::Closed, Some(t)) if t > 0 => {
                    vec![format!("{range_start}-{}", t - 1)]
                }
                _ => vec![format!("{range_start}-")],
            };
            json!({
                "expirationDateTime": fmt_time(s.expires),
                "nextExpectedRanges": ranges,
            })
        });
        match self.commit_session(cx, id, None, None) {
            Ok((drive, item, created)) => {
                if quirk {
                    if let Some(b) = quirk_body {
                        return wire::json(StatusCode::CREATED, &b);
                    }
                }
                self.item_response(cx, &drive, &item, created)
            }
            Err(e) => e.response(errcx(cx)),
        }
    }

    /// Commits session `id` to `placement` (default: the session's own) with `conflict`
    /// (default: the session's). On success the session is buried as completed (told) and
    /// `(drive, item id, created)` is returned; on failure the session is kept.
    pub(super) fn commit_session(
        &mut self,
        cx: &mut Cx<'_>,
        id: &str,
        placement: Option<Placement>,
        conflict: Option<Conflict>,
    ) -> Result<(String, String, bool), GraphError> {
        let s = self
            .sessions
            .remove(id)
            .ok_or_else(GraphError::session_not_found)?;
        let placement = placement.unwrap_or_else(|| s.placement.clone());
        let conflict = conflict.unwrap_or(s.conflict);
        let now = cx.now;
        let result = match self.drives.get(&s.drive) {
            None => Err(GraphError::item_not_found()),
            Some(d) => d.check_target(&placement, conflict).map_err(tree_error),
        };
        if let Err(e) = result {
            self.sessions.insert(id.to_string(), s);
            return Err(e);
        }
        let Session {
            secret,
            drive,
            hash,
            meta,
            ..
        } = s;
        let content = hash.finish();
        let mut next = self.next_id;
        let res = match self.drives.get_mut(&drive) {
            Some(d) => d
                .put_file(&placement, conflict, content, meta, now, || {
                    next += 1;
                    item_id(next)
                })
                .map_err(tree_error),
            None => Err(GraphError::item_not_found()),
        };
        self.next_id = next;
        self.tombs.insert(
            id.to_string(),
            Tomb {
                secret,
                gone: Gone::Completed,
                told: true,
            },
        );
        res.map(|(item, created)| (drive, item, created))
    }

    /// The body of a commit POST arrived (rules 30, 31).
    pub(super) fn complete_commit(
        &mut self,
        cx: &mut Cx<'_>,
        id: &str,
        body: Received,
    ) -> Response<Bytes> {
        let Some(s) = self.sessions.get_mut(id) else {
            return GraphError::session_not_found().response(errcx(cx));
        };
        if body.len != 0 {
            cx.violation(Violation::BadCommit);
            return GraphError::invalid_request("The commit request must have an empty body.")
                .response(errcx(cx));
        }
        if !s.defer {
            cx.violation(Violation::BadCommit);
            return GraphError::invalid_request(
                "The upload session was not created with deferCommit.",
            )
            .response(errcx(cx));
        }
        if !s.all_in() {
            if !s.offset_in_doubt {
                cx.violation(Violation::BadCommit);
            }
            return GraphError::invalid_request("The upload session is missing bytes.")
                .inner("uploadSessionIncomplete")
                .response(errcx(cx));
        }
        let resp = if lenient_commit_fails(cx.config.onedrive.alignment, s) {
            lenient_failure().response(errcx(cx))
        } else {
            match self.commit_session(cx, id, None, None) {
                Ok((drive, item, created)) => self.item_response(cx, &drive, &item, created),
                Err(e) => e.response(errcx(cx)),
            }
        };
        let (resp, delivered) = after_fault(cx, resp);
        if let Some(t) = self.tombs.get_mut(id) {
            t.told = delivered;
        }
        resp
    }

    /// A fragment's connection dropped mid-body (rule 42).
    pub(super) fn abort_fragment(
        &mut self,
        id: &str,
        start: u64,
        total: u64,
        body: Received,
        keep_prefix: bool,
    ) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.in_flight = false;
        if !keep_prefix {
            return;
        }
        // The client cannot tell how much was kept.
        s.offset_in_doubt = true;
        if body.len == 0 || s.received() != start {
            return;
        }
        if let Some(f) = body.file.filter(|f| f.len() == start + body.len) {
            s.hash = f;
            s.total = Some(total);
        }
    }
}

/// Rule 22: in lenient mode, a session that had an unaligned non-final fragment and is at
/// least `fail_threshold` bytes fails at commit.
fn lenient_commit_fails(alignment: Alignment, s: &Session) -> bool {
    match alignment {
        Alignment::Lenient { fail_threshold } => {
            s.unaligned && s.total.is_some_and(|t| t >= fail_threshold)
        }
        Alignment::Strict => false,
    }
}

/// Rule 22's answer; the bytes stay in the session.
fn lenient_failure() -> GraphError {
    GraphError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        "Assertion Failure While Processing",
    )
}

/// Why `s` is dead at `now`, if it is.
pub fn expired(cfg: &crate::Config, s: &Session, now: SystemTime) -> Option<Gone> {
    let od = &cfg.onedrive;
    if od.flavor == OneDriveFlavor::Business
        && now >= add(s.created, od.business_token_lifetime)
        && od.business_token_lifetime > std::time::Duration::ZERO
    {
        return Some(Gone::TokenExpired);
    }
    (now > s.expires).then_some(Gone::Expired)
}

/// The answer for a dead session (rules 34-37).
fn dead_error(g: Gone, created: Option<SystemTime>) -> GraphError {
    match g {
        Gone::TokenExpired => {
            let msg = match created {
                Some(c) => format!(
                    "The access token has expired. It's valid from '{}' and to '{}'.",
                    fmt_time(c),
                    fmt_time(add(c, std::time::Duration::from_secs(24 * 3600)))
                ),
                None => "The access token has expired.".to_string(),
            };
            GraphError::new(StatusCode::UNAUTHORIZED, "unauthenticated", msg).inner("expiredToken")
        }
        _ => GraphError::session_not_found(),
    }
}

/// Maps a tree error to its Graph answer.
pub fn tree_error(e: TreeError) -> GraphError {
    match e {
        TreeError::Exists => GraphError::name_exists(
            "Another file exists with the same name as the uploaded session. You can redirect the upload session to use a new filename by calling PUT with the new metadata and @microsoft.graph.sourceUrl attribute.",
        ),
        TreeError::IsFolder => {
            GraphError::name_exists("A folder with the same name already exists.")
        }
        TreeError::NotAFolder => {
            GraphError::invalid_request("A component of the parent path is not a folder.")
        }
    }
}

/// A fresh item id.
pub fn item_id(n: u64) -> String {
    format!("01EMU{n:016X}")
}

/// The error context of `cx`.
pub fn errcx<'a>(cx: &'a Cx<'_>) -> ErrCx<'a> {
    ErrCx {
        config: &cx.config.onedrive,
        request_id: &cx.request_id,
        now: cx.now,
    }
}

/// Answers with `e` now (applying ErrorAfter / LostResponse / SlowResponse faults).
pub fn respond<T>(cx: &mut Cx<'_>, e: GraphError) -> Started<T> {
    let r = e.response(errcx(cx));
    Started::Respond(after_fault(cx, r).0)
}

/// The answer of a fault that stops a request before it has any effect (rules 39, 40,
/// 43 and the `ErrorBefore`/`ExpireToken` faults). `upload_url` says whether a transient
/// 404 applies. `ExpireToken` is handled by the Graph routes (it needs the token).
pub fn immediate_fault(
    cx: &mut Cx<'_>,
    fault: Option<&Fault>,
    upload_url: bool,
) -> Option<Response<Bytes>> {
    let e = match fault? {
        Fault::Throttle { retry_after, .. } => GraphError::throttled(*retry_after),
        Fault::Unavailable { retry_after } => GraphError::unavailable(*retry_after),
        Fault::ErrorBefore { status } => GraphError::server(*status),
        Fault::Transient404 if upload_url => GraphError::session_not_found(),
        _ => return None,
    };
    Some(e.response(errcx(cx)))
}

/// Applies the "after" faults to a response that reflects an applied request: `ErrorAfter`
/// replaces it with the 5xx (rule 41), `LostResponse`/`SlowResponse` are marked for the
/// transport. Returns the response and whether the client gets to see the real outcome.
pub fn after_fault(cx: &mut Cx<'_>, resp: Response<Bytes>) -> (Response<Bytes>, bool) {
    match cx.fault.clone() {
        Some(Fault::ErrorAfter { status }) => {
            (GraphError::server(status).response(errcx(cx)), false)
        }
        Some(Fault::LostResponse) => {
            let mut r = resp;
            r.extensions_mut().insert(TransportFault::LostResponse);
            (r, false)
        }
        Some(Fault::SlowResponse { ms }) => {
            let mut r = resp;
            r.extensions_mut()
                .insert(TransportFault::Delay(std::time::Duration::from_millis(ms)));
            (r, true)
        }
        _ => (resp, true),
    }
}
