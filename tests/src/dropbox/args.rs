//! Strict decoding of route arguments (dropbox.md §1.3, §1.4; §12 rules 10-20).
//!
//! Arguments arrive as JSON, either in the `Dropbox-API-Arg` header / `arg` query
//! parameter (upload routes) or as the body (RPC routes). The Stone wire format is checked
//! field by field: unknown fields, missing required fields, wrong JSON types, unions
//! without `.tag`, unknown tags, Void shorthands, and the string patterns of
//! `Sha256HexHash`, `DropboxTimestamp`, `WritePathOrId` and `Rev`. Every failure is a
//! plain-text 400 whose wording follows the observed service messages.

use crate::Violation;
use serde_json::{Map, Value};

/// Largest number of entries in a batch argument (dropbox.md §0).
pub(crate) const MAX_BATCH_ENTRIES: usize = 1000;

/// Why an argument was rejected: the message (without the "Error in call to API function"
/// prefix) and the violation it counts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgError {
    /// Message, e.g. `cursor: missing required field 'offset'`.
    pub msg: String,
    /// Counter to bump.
    pub violation: Violation,
}

impl ArgError {
    fn new(path: &str, msg: impl Into<String>, violation: Violation) -> Self {
        let msg = msg.into();
        let msg = if path.is_empty() {
            msg
        } else {
            format!("{path}: {msg}")
        };
        Self { msg, violation }
    }

    fn malformed(path: &str, msg: impl Into<String>) -> Self {
        Self::new(path, msg, Violation::MalformedArgument)
    }
}

type R<T> = Result<T, ArgError>;

/// `UploadSessionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionType {
    /// Data appended in order.
    Sequential,
    /// Data appended in 4 MiB-aligned pieces in any order.
    Concurrent,
}

/// `UploadSessionCursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub session_id: String,
    pub offset: u64,
}

/// `UploadSessionStartArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartArg {
    pub close: bool,
    pub session_type: SessionType,
    pub content_hash: Option<String>,
}

/// `UploadSessionAppendArg` (or the v1 bare cursor, with `close = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendArg {
    pub cursor: Cursor,
    pub close: bool,
    pub content_hash: Option<String>,
}

/// `WriteMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Add,
    Overwrite,
    Update(String),
}

/// `file_properties.PropertyGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PropertyGroup {
    pub template_id: String,
    pub fields: Vec<(String, String)>,
}

/// `CommitInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitInfo {
    pub path: String,
    pub mode: WriteMode,
    pub autorename: bool,
    pub client_modified: Option<String>,
    pub property_groups: Option<Vec<PropertyGroup>>,
    pub strict_conflict: bool,
}

/// `UploadSessionFinishArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinishArg {
    pub cursor: Cursor,
    pub commit: CommitInfo,
    pub content_hash: Option<String>,
}

/// One entry of `UploadSessionAppendBatchArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendBatchEntry {
    pub cursor: Cursor,
    pub length: u64,
    pub close: bool,
}

/// `UploadSessionAppendBatchArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendBatchArg {
    pub entries: Vec<AppendBatchEntry>,
    pub content_hash: Option<String>,
}

/// `UploadSessionStartBatchArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartBatchArg {
    pub num_sessions: u64,
    pub session_type: SessionType,
}

/// `UploadSessionFinishBatchArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinishBatchArg {
    pub entries: Vec<FinishArg>,
}

/// `async.PollArg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PollArg {
    pub async_job_id: String,
}

/// `GetMetadataArg` (only `path` matters to the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetMetadataArg {
    pub path: String,
}

// ---- text → JSON -------------------------------------------------------------------

/// Decodes the raw bytes of a `Dropbox-API-Arg` header (rules 10, 11).
///
/// Every byte must be printable ASCII (0x20-0x7E); with `accept_raw_utf8` (the lenient
/// 2026 behaviour) well-formed UTF-8 without control characters is accepted too.
pub(crate) fn decode_header_json(raw: &[u8], accept_raw_utf8: bool) -> R<Value> {
    const MSG: &str = "could not decode input as JSON";
    let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b));
    let text = if printable {
        // All ASCII, so this cannot fail.
        std::str::from_utf8(raw).map_err(|_| ArgError::new("", MSG, Violation::NonAsciiApiArg))?
    } else {
        let ok = accept_raw_utf8
            && raw.iter().all(|&b| b >= 0x20 && b != 0x7f)
            && std::str::from_utf8(raw).is_ok();
        if !ok {
            return Err(ArgError::new("", MSG, Violation::NonAsciiApiArg));
        }
        std::str::from_utf8(raw).map_err(|_| ArgError::new("", MSG, Violation::NonAsciiApiArg))?
    };
    serde_json::from_str(text).map_err(|_| ArgError::malformed("", MSG))
}

/// Decodes a JSON text (the `arg` query parameter or an RPC body).
pub(crate) fn decode_json(raw: &[u8]) -> R<Value> {
    serde_json::from_slice(raw)
        .map_err(|_| ArgError::malformed("", "could not decode input as JSON"))
}

// ---- helpers -----------------------------------------------------------------------

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn type_err(path: &str, what: &str, v: &Value) -> ArgError {
    let shown: String = v.to_string().chars().take(40).collect();
    ArgError::malformed(
        path,
        format!("'{shown}' expected to be {what}, got {}", kind(v)),
    )
}

/// A JSON object being decoded as a Stone struct.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// Checks `v` is an object whose keys are all in `known`.
    fn new(v: &'a Value, path: &str, known: &[&str]) -> R<Self> {
        let map = v
            .as_object()
            .ok_or_else(|| type_err(path, "an object", v))?;
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let shown: String = k.chars().take(80).collect();
            return Err(ArgError::malformed(
                path,
                format!("unknown field '{shown}'"),
            ));
        }
        Ok(Self {
            map,
            path: path.to_string(),
        })
    }

    fn at(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// A required field (null is a type error, reported by the caller's type check).
    fn req(&self, name: &str) -> R<&'a Value> {
        self.map.get(name).ok_or_else(|| {
            ArgError::malformed(&self.path, format!("missing required field '{name}'"))
        })
    }

    /// An optional (`T?`) field: absent or null → None.
    fn opt(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A field with a default: absent → None; present (even null) → Some.
    fn def(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    fn bool_or(&self, name: &str, default: bool) -> R<bool> {
        match self.def(name) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| type_err(&self.at(name), "a boolean", v)),
        }
    }

    fn u64(&self, name: &str) -> R<u64> {
        let v = self.req(name)?;
        as_u64(v, &self.at(name))
    }

    fn string(&self, name: &str) -> R<&'a str> {
        let v = self.req(name)?;
        v.as_str()
            .ok_or_else(|| type_err(&self.at(name), "a string", v))
    }

    fn opt_string(&self, name: &str) -> R<Option<&'a str>> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| type_err(&self.at(name), "a string", v)),
        }
    }

    fn list(&self, name: &str) -> R<&'a Vec<Value>> {
        let v = self.req(name)?;
        v.as_array()
            .ok_or_else(|| type_err(&self.at(name), "a list", v))
    }
}

fn as_u64(v: &Value, path: &str) -> R<u64> {
    v.as_u64()
        .ok_or_else(|| type_err(path, "an unsigned 64-bit integer", v))
}

/// Splits a union value into its tag and (for object form) its map. A bare string is the
/// Void shorthand (rule 16).
fn union<'a>(v: &'a Value, path: &str) -> R<(&'a str, Option<&'a Map<String, Value>>)> {
    match v {
        Value::String(s) => Ok((s.as_str(), None)),
        Value::Object(m) => {
            let tag = m
                .get(".tag")
                .ok_or_else(|| ArgError::malformed(path, "missing '.tag' key"))?;
            let tag = tag
                .as_str()
                .ok_or_else(|| type_err(&join(path, ".tag"), "a string", tag))?;
            Ok((tag, Some(m)))
        }
        other => Err(type_err(path, "a union (object with '.tag')", other)),
    }
}

fn unknown_tag(path: &str, tag: &str) -> ArgError {
    let shown: String = tag.chars().take(80).collect();
    ArgError::malformed(path, format!("unknown tag '{shown}'"))
}

/// Checks a Void member given in object form has no other key.
fn void_member(m: Option<&Map<String, Value>>, path: &str) -> R<()> {
    if let Some(m) = m {
        if let Some(k) = m.keys().find(|k| k.as_str() != ".tag") {
            let shown: String = k.chars().take(80).collect();
            return Err(ArgError::malformed(
                path,
                format!("unknown field '{shown}'"),
            ));
        }
    }
    Ok(())
}

fn session_type(v: &Value, path: &str) -> R<SessionType> {
    let (tag, m) = union(v, path)?;
    let t = match tag {
        "sequential" => SessionType::Sequential,
        "concurrent" => SessionType::Concurrent,
        other => return Err(unknown_tag(path, other)),
    };
    void_member(m, path)?;
    Ok(t)
}

/// `Sha256HexHash`: exactly 64 characters (SPEC), hexadecimal (rule 17). Returned
/// lowercased.
fn content_hash(o: &Obj<'_>) -> R<Option<String>> {
    let Some(s) = o.opt_string("content_hash")? else {
        return Ok(None);
    };
    let path = o.at("content_hash");
    if s.chars().count() != 64 {
        return Err(ArgError::new(
            &path,
            format!(
                "'{}' length must be 64",
                s.chars().take(80).collect::<String>()
            ),
            Violation::BadContentHashFormat,
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ArgError::new(
            &path,
            format!("'{s}' is not a hexadecimal SHA-256 digest"),
            Violation::BadContentHashFormat,
        ));
    }
    Ok(Some(s.to_ascii_lowercase()))
}

fn cursor(v: &Value, path: &str) -> R<Cursor> {
    let o = Obj::new(v, path, &["session_id", "offset"])?;
    Ok(Cursor {
        session_id: o.string("session_id")?.to_string(),
        offset: o.u64("offset")?,
    })
}

/// `WritePathOrId` pattern (rule 19):
/// `(/(.|[\r\n])*)|(ns:[0-9]+(/(.|[\r\n])*)?)|(id:.*)` as a full match.
pub(crate) fn is_write_path_or_id(p: &str) -> bool {
    if p.starts_with('/') {
        return true;
    }
    if let Some(rest) = p.strip_prefix("ns:") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        return digits > 0 && (rest.len() == digits || rest[digits..].starts_with('/'));
    }
    if let Some(rest) = p.strip_prefix("id:") {
        return !rest.contains('\n');
    }
    false
}

/// `ReadPath` pattern of `files/get_metadata`:
/// `(/(.|[\r\n])*|id:.*)|(rev:[0-9a-f]{9,})|(ns:[0-9a-f]+(/.*)?)`.
fn is_read_path(p: &str) -> bool {
    if p.starts_with('/') {
        return true;
    }
    if let Some(rest) = p.strip_prefix("id:") {
        return !rest.contains('\n');
    }
    if let Some(rest) = p.strip_prefix("rev:") {
        return is_rev(rest);
    }
    if let Some(rest) = p.strip_prefix("ns:") {
        let n = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        return n > 0 && (rest.len() == n || (rest[n..].starts_with('/') && !rest.contains('\n')));
    }
    false
}

/// `Rev` pattern `[0-9a-f]{9,}` (rule 20).
pub(crate) fn is_rev(s: &str) -> bool {
    s.len() >= 9
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `DropboxTimestamp` `%Y-%m-%dT%H:%M:%SZ` (rule 18), and a real date.
pub(crate) fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 20 {
        return false;
    }
    let shape = b.iter().enumerate().all(|(i, &c)| match i {
        4 | 7 => c == b'-',
        10 => c == b'T',
        13 | 16 => c == b':',
        19 => c == b'Z',
        _ => c.is_ascii_digit(),
    });
    shape && humantime::parse_rfc3339(s).is_ok()
}

fn write_mode(v: &Value, path: &str) -> R<WriteMode> {
    let (tag, m) = union(v, path)?;
    match tag {
        "add" => void_member(m, path).map(|()| WriteMode::Add),
        "overwrite" => void_member(m, path).map(|()| WriteMode::Overwrite),
        "update" => {
            let Some(m) = m else {
                // A non-Void member may not use the bare-string shorthand (rule 16).
                return Err(ArgError::malformed(
                    path,
                    "tag 'update' requires a value: expected {\".tag\": \"update\", \"update\": <rev>}",
                ));
            };
            if let Some(k) = m.keys().find(|k| *k != ".tag" && *k != "update") {
                let shown: String = k.chars().take(80).collect();
                return Err(ArgError::malformed(
                    path,
                    format!("unknown field '{shown}'"),
                ));
            }
            let inner_path = join(path, "update");
            let rev = m
                .get("update")
                .ok_or_else(|| ArgError::malformed(path, "missing required field 'update'"))?;
            let rev = rev
                .as_str()
                .ok_or_else(|| type_err(&inner_path, "a string", rev))?;
            if !is_rev(rev) {
                return Err(ArgError::new(
                    &inner_path,
                    format!(
                        "'{}' did not match pattern '[0-9a-f]{{9,}}'",
                        rev.chars().take(80).collect::<String>()
                    ),
                    Violation::BadCommitInfo,
                ));
            }
            Ok(WriteMode::Update(rev.to_string()))
        }
        other => Err(unknown_tag(path, other)),
    }
}

fn property_groups(v: &Value, path: &str) -> R<Vec<PropertyGroup>> {
    let list = v.as_array().ok_or_else(|| type_err(path, "a list", v))?;
    let mut out = Vec::with_capacity(list.len().min(64));
    for item in list {
        let o = Obj::new(item, path, &["template_id", "fields"])?;
        let template_id = o.string("template_id")?;
        if template_id.is_empty()
            || !(template_id.starts_with('/') || template_id.starts_with("ptid:"))
        {
            return Err(ArgError::malformed(
                &o.at("template_id"),
                format!(
                    "'{}' did not match pattern '(/|ptid:).*'",
                    template_id.chars().take(80).collect::<String>()
                ),
            ));
        }
        let mut fields = Vec::new();
        let fpath = o.at("fields");
        for f in o.list("fields")? {
            let fo = Obj::new(f, &fpath, &["name", "value"])?;
            fields.push((
                fo.string("name")?.to_string(),
                fo.string("value")?.to_string(),
            ));
        }
        out.push(PropertyGroup {
            template_id: template_id.to_string(),
            fields,
        });
    }
    Ok(out)
}

fn commit_info(v: &Value, path: &str) -> R<CommitInfo> {
    let o = Obj::new(
        v,
        path,
        &[
            "path",
            "mode",
            "autorename",
            "client_modified",
            "mute",
            "property_groups",
            "strict_conflict",
        ],
    )?;
    let p = o.string("path")?;
    if !is_write_path_or_id(p) {
        return Err(ArgError::new(
            &o.at("path"),
            format!(
                "'{}' did not match pattern '(/(.|[\\r\\n])*)|(ns:[0-9]+(/(.|[\\r\\n])*)?)|(id:.*)'",
                p.chars().take(200).collect::<String>()
            ),
            Violation::BadCommitInfo,
        ));
    }
    let mode = match o.def("mode") {
        None => WriteMode::Add,
        Some(v) => write_mode(v, &o.at("mode"))?,
    };
    let client_modified = match o.opt_string("client_modified")? {
        None => None,
        Some(s) if is_timestamp(s) => Some(s.to_string()),
        Some(s) => {
            return Err(ArgError::new(
                &o.at("client_modified"),
                format!(
                    "time data '{}' does not match format '%Y-%m-%dT%H:%M:%SZ'",
                    s.chars().take(80).collect::<String>()
                ),
                Violation::BadCommitInfo,
            ));
        }
    };
    let property_groups = match o.opt("property_groups") {
        None => None,
        Some(v) => Some(property_groups(v, &o.at("property_groups"))?),
    };
    o.bool_or("mute", false)?;
    Ok(CommitInfo {
        path: p.to_string(),
        mode,
        autorename: o.bool_or("autorename", false)?,
        client_modified,
        property_groups,
        strict_conflict: o.bool_or("strict_conflict", false)?,
    })
}

fn entries_list<'a>(o: &Obj<'a>) -> R<&'a Vec<Value>> {
    let list = o.list("entries")?;
    if list.len() > MAX_BATCH_ENTRIES {
        return Err(ArgError::new(
            &o.at("entries"),
            format!(
                "list has {} items, more than the maximum of {MAX_BATCH_ENTRIES}",
                list.len()
            ),
            Violation::BadBatch,
        ));
    }
    Ok(list)
}

// ---- the route arguments -------------------------------------------------------------

pub(crate) fn start_arg(v: &Value) -> R<StartArg> {
    let o = Obj::new(v, "", &["close", "session_type", "content_hash"])?;
    let session_type = match o.opt("session_type") {
        None => SessionType::Sequential,
        Some(v) => session_type(v, "session_type")?,
    };
    Ok(StartArg {
        close: o.bool_or("close", false)?,
        session_type,
        content_hash: content_hash(&o)?,
    })
}

pub(crate) fn append_v2_arg(v: &Value) -> R<AppendArg> {
    let o = Obj::new(v, "", &["cursor", "close", "content_hash"])?;
    Ok(AppendArg {
        cursor: cursor(o.req("cursor")?, "cursor")?,
        close: o.bool_or("close", false)?,
        content_hash: content_hash(&o)?,
    })
}

/// The deprecated v1 `append` takes a bare `UploadSessionCursor` and cannot close.
pub(crate) fn append_v1_arg(v: &Value) -> R<AppendArg> {
    Ok(AppendArg {
        cursor: cursor(v, "")?,
        close: false,
        content_hash: None,
    })
}

fn finish_arg_at(v: &Value, path: &str) -> R<FinishArg> {
    let o = Obj::new(v, path, &["cursor", "commit", "content_hash"])?;
    Ok(FinishArg {
        cursor: cursor(o.req("cursor")?, &o.at("cursor"))?,
        commit: commit_info(o.req("commit")?, &o.at("commit"))?,
        content_hash: content_hash(&o)?,
    })
}

pub(crate) fn finish_arg(v: &Value) -> R<FinishArg> {
    finish_arg_at(v, "")
}

pub(crate) fn append_batch_arg(v: &Value) -> R<AppendBatchArg> {
    let o = Obj::new(v, "", &["entries", "content_hash"])?;
    let mut entries = Vec::new();
    for e in entries_list(&o)? {
        let eo = Obj::new(e, "entries", &["cursor", "length", "close"])?;
        entries.push(AppendBatchEntry {
            cursor: cursor(eo.req("cursor")?, "entries.cursor")?,
            length: eo.u64("length")?,
            close: eo.bool_or("close", false)?,
        });
    }
    Ok(AppendBatchArg {
        entries,
        content_hash: content_hash(&o)?,
    })
}

pub(crate) fn start_batch_arg(v: &Value) -> R<StartBatchArg> {
    let o = Obj::new(v, "", &["num_sessions", "session_type"])?;
    let num_sessions = o.u64("num_sessions")?;
    if !(1..=MAX_BATCH_ENTRIES as u64).contains(&num_sessions) {
        return Err(ArgError::new(
            "num_sessions",
            format!("{num_sessions} is not within the range 1..=1000"),
            Violation::BadBatch,
        ));
    }
    let session_type = match o.opt("session_type") {
        None => SessionType::Sequential,
        Some(v) => session_type(v, "session_type")?,
    };
    Ok(StartBatchArg {
        num_sessions,
        session_type,
    })
}

pub(crate) fn finish_batch_arg(v: &Value) -> R<FinishBatchArg> {
    let o = Obj::new(v, "", &["entries"])?;
    let mut entries = Vec::new();
    for e in entries_list(&o)? {
        entries.push(finish_arg_at(e, "entries")?);
    }
    Ok(FinishBatchArg { entries })
}

pub(crate) fn poll_arg(v: &Value) -> R<PollArg> {
    let o = Obj::new(v, "", &["async_job_id"])?;
    let id = o.string("async_job_id")?;
    if id.is_empty() {
        return Err(ArgError::malformed(
            "async_job_id",
            "'' length must be at least 1",
        ));
    }
    Ok(PollArg {
        async_job_id: id.to_string(),
    })
}

pub(crate) fn get_metadata_arg(v: &Value) -> R<GetMetadataArg> {
    let o = Obj::new(
        v,
        "",
        &[
            "path",
            "include_media_info",
            "include_deleted",
            "include_has_explicit_shared_members",
            "include_property_groups",
        ],
    )?;
    let path = o.string("path")?;
    if !is_read_path(path) {
        return Err(ArgError::malformed(
            "path",
            format!(
                "'{}' did not match pattern '(/(.|[\\r\\n])*|id:.*)|(rev:[0-9a-f]{{9,}})|(ns:[0-9a-f]+(/.*)?)'",
                path.chars().take(200).collect::<String>()
            ),
        ));
    }
    for f in [
        "include_media_info",
        "include_deleted",
        "include_has_explicit_shared_members",
    ] {
        o.bool_or(f, false)?;
    }
    if let Some(v) = o.opt("include_property_groups") {
        let p = o.at("include_property_groups");
        let (tag, m) = union(v, &p)?;
        match (tag, m) {
            ("filter_some", Some(m)) => {
                if let Some(k) = m.keys().find(|k| *k != ".tag" && *k != "filter_some") {
                    return Err(ArgError::malformed(&p, format!("unknown field '{k}'")));
                }
                let list = m.get("filter_some").ok_or_else(|| {
                    ArgError::malformed(&p, "missing required field 'filter_some'")
                })?;
                let items = list
                    .as_array()
                    .ok_or_else(|| type_err(&join(&p, "filter_some"), "a list", list))?;
                if let Some(bad) = items.iter().find(|i| !i.is_string()) {
                    return Err(type_err(&join(&p, "filter_some"), "a string", bad));
                }
            }
            (other, _) => return Err(unknown_tag(&p, other)),
        }
    }
    Ok(GetMetadataArg {
        path: path.to_string(),
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns() {
        assert!(is_write_path_or_id("/a"));
        assert!(is_write_path_or_id("ns:123/a"));
        assert!(is_write_path_or_id("ns:123"));
        assert!(!is_write_path_or_id("ns:/a"));
        assert!(!is_write_path_or_id("ns:12a"));
        assert!(is_write_path_or_id("id:abc"));
        assert!(!is_write_path_or_id("a/b"));
        assert!(!is_write_path_or_id(""));
        assert!(is_rev("015000000001"));
        assert!(!is_rev("01500000"));
        assert!(!is_rev("0150000000G"));
        assert!(!is_rev("015000000A1"));
        assert!(is_timestamp("2015-05-12T15:50:38Z"));
        assert!(!is_timestamp("2015-05-12T15:50:38.000Z"));
        assert!(!is_timestamp("2015-13-12T15:50:38Z"));
        assert!(!is_timestamp("2015-05-12 15:50:38Z"));
    }

    #[test]
    fn void_shorthand_and_tags() {
        let a = start_arg(&json!({"session_type": "concurrent"})).unwrap();
        assert_eq!(a.session_type, SessionType::Concurrent);
        let a = start_arg(&json!({"session_type": {".tag": "sequential"}})).unwrap();
        assert_eq!(a.session_type, SessionType::Sequential);
        let e = start_arg(&json!({"session_type": {"x": 1}})).unwrap_err();
        assert!(e.msg.contains("missing '.tag' key"), "{}", e.msg);
        let e = start_arg(&json!({"session_type": "parallel"})).unwrap_err();
        assert!(e.msg.contains("unknown tag 'parallel'"), "{}", e.msg);
    }
}
