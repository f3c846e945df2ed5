//! Graph routes: createUploadSession, simple upload, item GET, sourceUrl commit
//! (onedrive.md §1, §2.1 zero-byte files, §4.3; §11 rules 1-10, 32, 38).

use super::errors::{GraphError, add, fmt_time};
use super::items::{Conflict, NewFileMeta, Placement, drive_type};
use super::paths::{self, DriveSel, GraphRoute, ItemSel, PathError};
use super::session::{Session, after_fault, errcx, immediate_fault, item_id, respond, tree_error};
use super::{Conditions, Ticket, TicketKind};
use crate::config::OneDriveFlavor;
use crate::faults::{Fault, RouteKind};
use crate::ingest::{Received, SinkSpec};
use crate::store::FileHashState;
use crate::{Cx, Started, TokenStatus, Violation, wire};
use bytes::Bytes;
use http::{Method, Response, StatusCode, header, request};
use serde_json::{Map, Value, json};

/// What a Graph request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphOp {
    /// POST …/createUploadSession.
    Create,
    /// PUT …/content.
    Simple,
    /// PUT on an item with `@microsoft.graph.sourceUrl`.
    SourceUrl,
    /// GET an item, its content, or the drive.
    Get,
}

/// A resolved target of a create/upload/commit.
struct Target {
    placement: Placement,
    /// Addressed by item id (replace that file).
    by_id: bool,
}

/// The parsed createUploadSession body (onedrive.md §1.3).
#[derive(Default)]
struct CreateReq {
    conflict: Option<Conflict>,
    name: Option<String>,
    description: Option<String>,
    file_size: Option<u64>,
    fs_info: Option<(Option<String>, Option<String>)>,
    defer: bool,
}

/// A rejected body: the error and the violation it counts (if any).
type BodyError = (GraphError, Option<Violation>);

fn malformed(msg: &str) -> BodyError {
    (
        GraphError::invalid_request(msg.to_string()),
        Some(Violation::MalformedArgument),
    )
}

/// Checks an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS(.f{1,7})?(Z|±HH:MM)`.
pub fn valid_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r)
            .is_some_and(|x| !x.is_empty() && x.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b.get(4) != Some(&b'-')
        || !digits(5..7)
        || b.get(7) != Some(&b'-')
        || !digits(8..10)
        || !matches!(b.get(10), Some(b'T') | Some(b't'))
        || !digits(11..13)
        || b.get(13) != Some(&b':')
        || !digits(14..16)
        || b.get(16) != Some(&b':')
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let mut n = 0;
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            n += 1;
        }
        if n == 0 || n > 7 {
            return false;
        }
    }
    match b.get(i..) {
        Some(b"Z") | Some(b"z") => true,
        Some([s, h1, h2, b':', m1, m2]) => {
            matches!(s, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

fn parse_create(body: &[u8], json_type: bool) -> Result<CreateReq, BodyError> {
    if body.is_empty() {
        return Ok(CreateReq::default());
    }
    if !json_type {
        return Err((
            GraphError::invalid_request("The request body must be application/json."),
            Some(Violation::BadContentType),
        ));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|_| malformed("The request body is not JSON."))?;
    let Value::Object(top) = v else {
        return Err(malformed("The request body must be a JSON object."));
    };
    let mut req = CreateReq::default();
    match top.get("deferCommit") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => req.defer = *b,
        Some(_) => return Err(malformed("deferCommit must be a boolean.")),
    }
    let item = match top.get("item") {
        None | Some(Value::Null) => return Ok(req),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(malformed("item must be an object.")),
    };
    // Rule 5.
    if item.contains_key("@odata.type") {
        return Err((
            GraphError::invalid_request(
                "Property @odata.type is not allowed in driveItemUploadableProperties.",
            ),
            Some(Violation::BadCreateRequest),
        ));
    }
    // Rule 4.
    match item.get("@microsoft.graph.conflictBehavior") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match Conflict::parse(s) {
            Some(c) => req.conflict = Some(c),
            None => {
                return Err((
                    GraphError::invalid_request(format!(
                        "Name conflict behavior: {s} is not valid for this operation."
                    )),
                    Some(Violation::BadCreateRequest),
                ));
            }
        },
        Some(_) => {
            return Err((
                GraphError::invalid_request("The conflict behavior must be a string."),
                Some(Violation::BadCreateRequest),
            ));
        }
    }
    req.name = opt_string(item, "name")?;
    if let Some(n) = &req.name {
        if !paths::valid_name(n) {
            return Err((GraphError::invalid_request("The name is invalid."), None));
        }
    }
    req.description = opt_string(item, "description")?;
    match item.get("fileSize") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(n) => req.file_size = Some(n),
            None => return Err(malformed("fileSize must be a non-negative integer.")),
        },
    }
    match item.get("fileSystemInfo") {
        None | Some(Value::Null) => {}
        Some(Value::Object(f)) => {
            let c = opt_string(f, "createdDateTime")?;
            let m = opt_string(f, "lastModifiedDateTime")?;
            for d in [&c, &m].into_iter().flatten() {
                if !valid_datetime(d) {
                    return Err(malformed("fileSystemInfo holds an invalid date."));
                }
            }
            req.fs_info = Some((c, m));
        }
        Some(_) => return Err(malformed("fileSystemInfo must be an object.")),
    }
    Ok(req)
}

fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, BodyError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(&format!("{key} must be a string."))),
    }
}

fn json_content_type(head: &request::Parts) -> bool {
    wire::header_str(&head.headers, header::CONTENT_TYPE.as_str()).is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// `If-Match` / `If-None-Match` against the target's eTag or cTag (rule 8).
fn check_conditions(
    cond: &Conditions,
    existing: Option<(String, String)>,
) -> Result<(), GraphError> {
    let fails = || {
        GraphError::new(
            StatusCode::PRECONDITION_FAILED,
            "resourceModified",
            "The resource has changed since the caller last read it; usually an eTag mismatch",
        )
        .inner("entityTagDoesNotMatch")
    };
    let matches = |list: &str, (etag, ctag): &(String, String)| {
        entity_tags(list)
            .iter()
            .any(|t| t == "*" || t == etag || t == ctag)
    };
    if let Some(m) = &cond.if_match {
        match &existing {
            Some(tags) if matches(m, tags) => {}
            _ => return Err(fails()),
        }
    }
    if let Some(m) = &cond.if_none_match {
        if let Some(tags) = &existing {
            if matches(m, tags) {
                return Err(fails());
            }
        }
    }
    Ok(())
}

/// Splits an `If-Match` value into its entity tags. OneDrive tags hold commas
/// (`"{ID},1"`), so the list is split on commas outside quotes; a value that is one bare
/// tag is kept whole.
fn entity_tags(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    let mut tags: Vec<String> = out
        .iter()
        .map(|t| {
            let t = t.trim();
            t.strip_prefix("W/").unwrap_or(t).to_string()
        })
        .collect();
    tags.push(list.trim().to_string());
    tags
}

impl super::OneDrive {
    /// Rule 1: a valid bearer token. Returns the token.
    fn auth(&mut self, cx: &mut Cx<'_>, head: &request::Parts) -> Result<String, GraphError> {
        let token = match wire::bearer(&head.headers) {
            Ok(Some(t)) => t.to_string(),
            Ok(None) => {
                cx.violation(Violation::MissingAuthorization);
                return Err(GraphError::unauthenticated());
            }
            Err(()) => {
                cx.violation(Violation::BadAuthorization);
                return Err(GraphError::unauthenticated());
            }
        };
        match cx.tokens.check(&token) {
            TokenStatus::Valid => Ok(token),
            TokenStatus::Unknown => {
                cx.violation(Violation::BadAuthorization);
                Err(GraphError::unauthenticated())
            }
            TokenStatus::Expired => {
                if self.reported_expired.contains(&token) {
                    cx.violation(Violation::ExpiredTokenReused);
                }
                self.reported_expired.insert(token);
                Err(expired_token())
            }
        }
    }

    /// Handles a request under `/onedrive/v1.0/`.
    pub(super) fn begin_graph(
        &mut self,
        cx: &mut Cx<'_>,
        head: &request::Parts,
    ) -> Started<Ticket> {
        let route = match paths::parse_graph(head.uri.path()) {
            Ok(r) => r,
            Err(PathError::Unknown) => {
                cx.violation(Violation::UnknownRoute);
                return respond(
                    cx,
                    GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "invalidRequest",
                        "Invalid request: unknown resource path.",
                    ),
                );
            }
            Err(PathError::Invalid(msg)) => {
                return respond(cx, GraphError::invalid_request(msg));
            }
        };
        let op = match (&head.method, &route.item, route.action.as_deref()) {
            (&Method::POST, Some(_), Some("createUploadSession")) => GraphOp::Create,
            (&Method::PUT, Some(_), Some("content")) => GraphOp::Simple,
            (&Method::PUT, Some(_), None) => GraphOp::SourceUrl,
            (&Method::GET, _, None) | (&Method::GET, Some(_), Some("content")) => GraphOp::Get,
            _ => {
                cx.violation(Violation::UnknownRoute);
                return respond(
                    cx,
                    GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "invalidRequest",
                        "Invalid request: unsupported method or action.",
                    ),
                );
            }
        };
        let token = match self.auth(cx, head) {
            Ok(t) => t,
            Err(e) => return respond(cx, e),
        };
        let kind = match op {
            GraphOp::Create => RouteKind::OneDriveCreate,
            GraphOp::SourceUrl => RouteKind::OneDriveCommit,
            GraphOp::Simple | GraphOp::Get => RouteKind::OneDriveOther,
        };
        let fault = cx.decide_fault(kind);
        if fault == Some(Fault::ExpireToken) {
            cx.tokens.expire_all(&token);
            self.reported_expired.insert(token);
            return Started::Respond(expired_token().response(errcx(cx)));
        }
        if let Some(r) = immediate_fault(cx, fault.as_ref(), false) {
            return Started::Respond(r);
        }
        let Some(drive) = self.resolve_drive(&route.drive, cx.now) else {
            return respond(cx, GraphError::item_not_found());
        };
        let cond = Conditions {
            if_match: wire::header_str(&head.headers, "if-match").map(str::to_string),
            if_none_match: wire::header_str(&head.headers, "if-none-match").map(str::to_string),
        };
        let declared = wire::content_length(&head.headers);
        match op {
            GraphOp::Get => {
                let r = self.get(cx, &drive, &route);
                Started::Respond(after_fault(cx, r).0)
            }
            GraphOp::Create | GraphOp::SourceUrl => {
                let cap = cx.config.max_json_body;
                match declared {
                    Err(()) => {
                        cx.violation(Violation::ContentLengthMismatch);
                        return respond(cx, GraphError::invalid_request("Bad Content-Length."));
                    }
                    Ok(Some(n)) if n > cap as u64 => {
                        cx.violation(Violation::OversizeBody);
                        return respond(
                            cx,
                            GraphError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "invalidRequest",
                                "The request message is too big.",
                            ),
                        );
                    }
                    _ => {}
                }
                let kind = if op == GraphOp::Create {
                    TicketKind::Create {
                        drive,
                        route,
                        cond,
                        json: json_content_type(head),
                    }
                } else {
                    TicketKind::SourceUrl {
                        drive,
                        route,
                        cond,
                        json: json_content_type(head),
                    }
                };
                Started::Read {
                    ticket: Ticket(kind),
                    sink: SinkSpec {
                        collect: Some(cap),
                        max_len: cap as u64,
                        ..SinkSpec::default()
                    },
                }
            }
            GraphOp::Simple => {
                let max = cx.config.onedrive.simple_upload_max;
                let len = match declared {
                    Ok(Some(n)) => n,
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
                    Err(()) => {
                        cx.violation(Violation::ContentLengthMismatch);
                        return respond(cx, GraphError::invalid_request("Bad Content-Length."));
                    }
                };
                if len > max {
                    cx.violation(Violation::OversizeBody);
                    return respond(
                        cx,
                        GraphError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "invalidRequest",
                            "The entity size in the request exceeds the maximum limit.",
                        ),
                    );
                }
                let conflict = match head
                    .uri
                    .query()
                    .and_then(|q| paths::query_param(q, "@microsoft.graph.conflictBehavior"))
                {
                    None => None,
                    Some(s) => match Conflict::parse(&s) {
                        Some(c) => Some(c),
                        None => {
                            cx.violation(Violation::BadCreateRequest);
                            return respond(
                                cx,
                                GraphError::invalid_request(format!(
                                    "Name conflict behavior: {s} is not valid for this operation."
                                )),
                            );
                        }
                    },
                };
                let file = FileHashState::new(&cx.config.digests, cx.config.keep_bytes);
                Started::Read {
                    ticket: Ticket(TicketKind::Simple {
                        drive,
                        route,
                        cond,
                        conflict,
                        len,
                    }),
                    sink: SinkSpec {
                        file: Some(file),
                        max_len: len,
                        ..SinkSpec::default()
                    },
                }
            }
        }
    }

    /// Resolves the full path segments of an item selector.
    fn segments(&self, drive: &str, sel: &ItemSel) -> Result<(Vec<String>, bool), GraphError> {
        let d = self
            .drives
            .get(drive)
            .ok_or_else(GraphError::item_not_found)?;
        match sel {
            ItemSel::Path(segs) => Ok((segs.clone(), false)),
            ItemSel::Id { id, rel } => {
                let base = d.by_id(id).ok_or_else(GraphError::item_not_found)?;
                let mut p = d.path_of(&base.id).ok_or_else(GraphError::item_not_found)?;
                if rel.is_empty() {
                    return Ok((p, true));
                }
                if !base.is_folder() {
                    return Err(GraphError::invalid_request(
                        "The parent item is not a folder.",
                    ));
                }
                p.extend(rel.iter().cloned());
                Ok((p, false))
            }
        }
    }

    /// Resolves a file target (create, simple upload).
    fn target(&self, drive: &str, sel: &ItemSel) -> Result<Target, GraphError> {
        let (mut segs, by_id) = self.segments(drive, sel)?;
        let Some(name) = segs.pop() else {
            return Err(GraphError::invalid_request(
                "The target must be a file, not the root folder.",
            ));
        };
        if by_id {
            let is_folder = self
                .drives
                .get(drive)
                .and_then(|d| {
                    d.by_path(&segs)
                        .and_then(|p| d.walk(&p.id, std::slice::from_ref(&name)))
                })
                .is_some_and(|i| i.is_folder());
            if is_folder {
                return Err(GraphError::invalid_request(
                    "The target must be a file, not a folder.",
                ));
            }
        }
        Ok(Target {
            placement: Placement { parent: segs, name },
            by_id,
        })
    }

    /// `(eTag, cTag)` of the item at `placement`, if any.
    fn tags(&self, drive: &str, placement: &Placement) -> Option<(String, String)> {
        let d = self.drives.get(drive)?;
        let mut segs = placement.parent.clone();
        segs.push(placement.name.clone());
        d.by_path(&segs).map(|i| (i.etag(), i.ctag()))
    }

    /// Answers with the driveItem of `item`: 201 when created, 200 when replaced (rule 26).
    pub(super) fn item_response(
        &self,
        cx: &Cx<'_>,
        drive: &str,
        item: &str,
        created: bool,
    ) -> Response<Bytes> {
        let flavor = cx.config.onedrive.flavor;
        match self
            .drives
            .get(drive)
            .and_then(|d| d.item_json(item, flavor))
        {
            Some(v) => wire::json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &v,
            ),
            None => GraphError::item_not_found().response(errcx(cx)),
        }
    }

    fn get(&self, cx: &Cx<'_>, drive: &str, route: &GraphRoute) -> Response<Bytes> {
        let flavor = cx.config.onedrive.flavor;
        let Some(d) = self.drives.get(drive) else {
            return GraphError::item_not_found().response(errcx(cx));
        };
        let Some(sel) = &route.item else {
            let used = d.used();
            let total = cx.config.onedrive.quota;
            return wire::json(
                StatusCode::OK,
                &json!({
                    "id": d.id,
                    "driveType": drive_type(flavor),
                    "quota": {
                        "total": total,
                        "used": used,
                        "remaining": total.saturating_sub(used),
                        "state": "normal",
                    },
                }),
            );
        };
        let item = match sel {
            ItemSel::Path(segs) => d.by_path(segs),
            ItemSel::Id { id, rel } => d.walk(id, rel),
        };
        let Some(item) = item else {
            return GraphError::item_not_found().response(errcx(cx));
        };
        if route.action.as_deref() == Some("content") {
            return match &item.kind {
                super::items::Kind::File(c) => match &c.bytes {
                    Some(b) => wire::raw(StatusCode::OK, "application/octet-stream", b.clone()),
                    None => GraphError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        "notSupported",
                        "The emulator keeps file bytes only with keep_bytes.",
                    )
                    .response(errcx(cx)),
                },
                super::items::Kind::Folder(_) => {
                    GraphError::invalid_request("A folder has no content.").response(errcx(cx))
                }
            };
        }
        match d.item_json(&item.id, flavor) {
            Some(v) => wire::json(StatusCode::OK, &v),
            None => GraphError::item_not_found().response(errcx(cx)),
        }
    }

    /// The body of a createUploadSession arrived (rules 2-10, 38).
    pub(super) fn complete_create(
        &mut self,
        cx: &mut Cx<'_>,
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        json_type: bool,
        body: Received,
    ) -> Response<Bytes> {
        let bytes = body.collected.unwrap_or_default();
        let req = match parse_create(&bytes, json_type) {
            Ok(r) => r,
            Err((e, v)) => {
                if let Some(v) = v {
                    cx.violation(v);
                }
                return e.response(errcx(cx));
            }
        };
        let Some(sel) = &route.item else {
            return GraphError::item_not_found().response(errcx(cx));
        };
        let target = match self.target(&drive, sel) {
            Ok(t) => t,
            Err(e) => return e.response(errcx(cx)),
        };
        // Rule 3.
        if let Some(n) = &req.name {
            if !target.by_id && *n != target.placement.name {
                cx.violation(Violation::BadCreateRequest);
                return GraphError::invalid_request("Name from path does not match name from body")
                    .response(errcx(cx));
            }
        }
        let od = &cx.config.onedrive;
        let (max_file, quota, flavor, conflict_at) =
            (od.max_file_size, od.quota, od.flavor, od.conflict_at);
        if let Some(size) = req.file_size {
            // Rule 38.
            if size == 0 {
                cx.violation(Violation::ZeroLengthSession);
                return GraphError::invalid_request(
                    "An upload session cannot be created for an empty file; use a simple upload.",
                )
                .response(errcx(cx));
            }
            // Rule 7.
            if size > max_file {
                return GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "invalidArgument",
                    "The file exceeds the maximum file size.",
                )
                .inner("maxFileSizeExceeded")
                .response(errcx(cx));
            }
            // Rule 6.
            let used = self.drives.get(&drive).map(|d| d.used()).unwrap_or(0);
            if size > quota.saturating_sub(used) {
                return GraphError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "quotaLimitReached",
                    "Insufficient Space Available",
                )
                .response(errcx(cx));
            }
        }
        // Rule 8.
        if let Err(e) = check_conditions(&cond, self.tags(&drive, &target.placement)) {
            return e.response(errcx(cx));
        }
        // Omitting the behaviour replaces (users' reports, microsoft-graph-docs#19010); an
        // item-id target always replaces.
        let conflict = if target.by_id {
            Conflict::Replace
        } else {
            req.conflict.unwrap_or(Conflict::Replace)
        };
        // Rule 9 (create mode); a path through a file is always an error.
        if let Some(d) = self.drives.get(&drive) {
            let check = if conflict_at == crate::config::ConflictAt::Create {
                conflict
            } else {
                Conflict::Rename
            };
            if let Err(e) = d.check_target(&target.placement, check) {
                return tree_error(e).response(errcx(cx));
            }
        }
        // Rule 10.
        self.sweep(cx.config, cx.now);
        let key = target.placement.key();
        if flavor == OneDriveFlavor::Business
            && self
                .sessions
                .values()
                .any(|s| s.drive == drive && s.placement.key() == key)
        {
            return GraphError::name_exists(
                "A file with the same name is currently being uploaded. An upload session already exists for this file.",
            )
            .response(errcx(cx));
        }
        let expires = add(
            cx.now,
            match flavor {
                OneDriveFlavor::Business => cx.config.onedrive.business_expiry,
                OneDriveFlavor::Personal => cx.config.onedrive.personal_expiry,
            },
        );
        self.next_id += 1;
        let id = format!("{:016x}{:08x}", rand::random::<u64>(), self.next_id);
        let secret = hex::encode(rand::random::<[u8; 24]>());
        let url = format!(
            "{}/onedrive/up/{id}?tempauth={secret}",
            cx.config.base_url.trim_end_matches('/')
        );
        let session = Session {
            id: id.clone(),
            secret,
            drive,
            placement: target.placement,
            conflict,
            defer: req.defer,
            meta: NewFileMeta {
                fs_info: req.fs_info,
                description: req.description,
            },
            file_size: req.file_size,
            created: cx.now,
            expires,
            total: None,
            hash: FileHashState::new(&cx.config.digests, cx.config.keep_bytes),
            in_flight: false,
            offset_in_doubt: false,
            unaligned: false,
        };
        self.sessions.insert(id, session);
        // Rule 2.
        let resp = wire::json(
            StatusCode::OK,
            &json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": url,
                "expirationDateTime": fmt_time(expires),
                "nextExpectedRanges": ["0-"],
            }),
        );
        after_fault(cx, resp).0
    }

    /// The body of a simple upload arrived.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn complete_simple(
        &mut self,
        cx: &mut Cx<'_>,
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        conflict: Option<Conflict>,
        len: u64,
        body: Received,
    ) -> Response<Bytes> {
        if body.len != len {
            cx.violation(Violation::ContentLengthMismatch);
            return GraphError::invalid_request("The body is shorter than Content-Length.")
                .response(errcx(cx));
        }
        let Some(sel) = &route.item else {
            return GraphError::item_not_found().response(errcx(cx));
        };
        let target = match self.target(&drive, sel) {
            Ok(t) => t,
            Err(e) => return e.response(errcx(cx)),
        };
        if let Err(e) = check_conditions(&cond, self.tags(&drive, &target.placement)) {
            return e.response(errcx(cx));
        }
        let conflict = if target.by_id {
            Conflict::Replace
        } else {
            conflict.unwrap_or(Conflict::Replace)
        };
        let Some(file) = body.file else {
            return GraphError::server(500).response(errcx(cx));
        };
        let now = cx.now;
        let mut next = self.next_id;
        let res = match self.drives.get_mut(&drive) {
            Some(d) => d
                .put_file(
                    &target.placement,
                    conflict,
                    file.finish(),
                    NewFileMeta::default(),
                    now,
                    || {
                        next += 1;
                        item_id(next)
                    },
                )
                .map_err(tree_error),
            None => Err(GraphError::item_not_found()),
        };
        self.next_id = next;
        let resp = match res {
            Ok((item, created)) => self.item_response(cx, &drive, &item, created),
            Err(e) => e.response(errcx(cx)),
        };
        after_fault(cx, resp).0
    }

    /// The body of a sourceUrl commit arrived (rule 32).
    pub(super) fn complete_source_url(
        &mut self,
        cx: &mut Cx<'_>,
        drive: String,
        route: GraphRoute,
        cond: Conditions,
        json_type: bool,
        body: Received,
    ) -> Response<Bytes> {
        let bytes = body.collected.unwrap_or_default();
        if !json_type {
            cx.violation(Violation::BadContentType);
            return GraphError::invalid_request("The request body must be application/json.")
                .response(errcx(cx));
        }
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) else {
            cx.violation(Violation::MalformedArgument);
            return GraphError::invalid_request("The request body must be a JSON object.")
                .response(errcx(cx));
        };
        let parsed = (|| -> Result<(String, Option<String>, Option<Conflict>), BodyError> {
            let url = opt_string(&m, "@microsoft.graph.sourceUrl")?
                .ok_or_else(|| malformed("@microsoft.graph.sourceUrl is required."))?;
            let name = opt_string(&m, "name")?;
            if name.as_deref().is_some_and(|n| !paths::valid_name(n)) {
                return Err((GraphError::invalid_request("The name is invalid."), None));
            }
            let conflict = match opt_string(&m, "@microsoft.graph.conflictBehavior")? {
                None => None,
                Some(s) => Some(Conflict::parse(&s).ok_or((
                    GraphError::invalid_request(format!(
                        "Name conflict behavior: {s} is not valid for this operation."
                    )),
                    Some(Violation::BadCreateRequest),
                ))?),
            };
            Ok((url, name, conflict))
        })();
        let (url, name, conflict) = match parsed {
            Ok(p) => p,
            Err((e, v)) => {
                if let Some(v) = v {
                    cx.violation(v);
                }
                return e.response(errcx(cx));
            }
        };
        let Some(sel) = &route.item else {
            return GraphError::item_not_found().response(errcx(cx));
        };
        // The Graph page addresses the parent, the OneDrive page the file: a path whose last
        // segment is the body's `name` is the file, any other path is the parent.
        let (mut segs, _) = match self.segments(&drive, sel) {
            Ok(s) => s,
            Err(e) => return e.response(errcx(cx)),
        };
        let placement = match name {
            Some(n) => {
                if segs.last().is_some_and(|l| l.eq_ignore_ascii_case(&n)) {
                    segs.pop();
                }
                Placement {
                    parent: segs,
                    name: n,
                }
            }
            None => match segs.pop() {
                Some(n) => Placement {
                    parent: segs,
                    name: n,
                },
                None => {
                    return GraphError::invalid_request("A name is required.").response(errcx(cx));
                }
            },
        };
        // The session.
        self.sweep(cx.config, cx.now);
        let Some((sid, query)) = paths::split_upload_url(&url) else {
            cx.violation(Violation::TamperedUploadUrl);
            return GraphError::invalid_request("The sourceUrl is not an upload URL.")
                .response(errcx(cx));
        };
        let sid = sid.to_string();
        let secret_ok = |secret: &str| query == format!("tempauth={secret}");
        let Some(s) = self.sessions.get(&sid) else {
            if let Some(t) = self.tombs.get_mut(&sid) {
                if !secret_ok(&t.secret) {
                    cx.violation(Violation::TamperedUploadUrl);
                } else if t.told || t.gone == super::session::Gone::Expired {
                    cx.violation(Violation::DeadSessionUsed);
                }
            } else {
                cx.violation(Violation::TamperedUploadUrl);
            }
            return GraphError::session_not_found().response(errcx(cx));
        };
        if !secret_ok(&s.secret) {
            cx.violation(Violation::TamperedUploadUrl);
            return GraphError::unauthenticated().response(errcx(cx));
        }
        if s.drive != drive {
            return GraphError::invalid_request("The upload session belongs to another drive.")
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
        if let Err(e) = check_conditions(&cond, self.tags(&drive, &placement)) {
            return e.response(errcx(cx));
        }
        let resp = match self.commit_session(cx, &sid, Some(placement), conflict) {
            Ok((drive, item, created)) => self.item_response(cx, &drive, &item, created),
            Err(e) => e.response(errcx(cx)),
        };
        let (resp, delivered) = after_fault(cx, resp);
        if let Some(t) = self.tombs.get_mut(&sid) {
            t.told = delivered;
        }
        resp
    }

    /// Finds (or, for site/user/group keys, creates) a drive; returns its id.
    pub(super) fn resolve_drive(
        &mut self,
        sel: &DriveSel,
        now: std::time::SystemTime,
    ) -> Option<String> {
        match sel {
            DriveSel::Me => Some(self.ensure_drive_key("me", now)),
            DriveSel::Keyed(k) => Some(self.ensure_drive_key(k, now)),
            DriveSel::Id(id) => self.drives.contains_key(id).then(|| id.clone()),
        }
    }
}

/// 401 `unauthenticated` / `expiredToken` for an expired bearer token.
fn expired_token() -> GraphError {
    GraphError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Access token has expired or is not yet valid.",
    )
    .inner("expiredToken")
}
