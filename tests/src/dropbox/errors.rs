//! Response shapes (dropbox.md §1.5, §7; §12 rules 21-24, 66-69, 72).
//!
//! - Success: 200, `Content-Type: application/json` exactly, JSON body (`null` for Void).
//! - Route errors: 409 `{"error_summary": "<tags>/<dots>", "error": <union>}`; the HTTP
//!   reason phrase is set to the summary through `hyper::ext::ReasonPhrase` (honoured by
//!   hyper's HTTP/1 server; the pure model carries it as a response extension, with the
//!   default `server` feature only).
//! - Bad input: 400 plain text.
//! - Emitted unions always put `.tag` first (it is inserted first, and `.` sorts before
//!   every other key character when the map is ordered).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::wire;

/// Builds a union object `{".tag": tag, ...fields}` with `.tag` first.
pub(crate) fn tagged(tag: &str, fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    let mut m = Map::new();
    m.insert(".tag".to_string(), Value::String(tag.to_string()));
    for (k, v) in fields {
        m.insert(k, v);
    }
    Value::Object(m)
}

/// A Void member: `{".tag": tag}`.
pub(crate) fn void(tag: &str) -> Value {
    tagged(tag, [])
}

/// A union- or primitive-typed member, nested under the tag name.
pub(crate) fn nested(tag: &str, inner: Value) -> Value {
    tagged(tag, [(tag.to_string(), inner)])
}

/// `UploadSessionLookupError` (and the append-error tags that share its names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupErr {
    NotFound,
    IncorrectOffset(u64),
    Closed,
    NotClosed,
    TooLarge,
    ConcurrentInvalidOffset,
    ConcurrentInvalidDataSize,
    PayloadTooLarge,
}

impl LookupErr {
    pub(crate) fn value(self) -> Value {
        match self {
            LookupErr::NotFound => void("not_found"),
            LookupErr::IncorrectOffset(c) => tagged(
                "incorrect_offset",
                [("correct_offset".to_string(), Value::from(c))],
            ),
            LookupErr::Closed => void("closed"),
            LookupErr::NotClosed => void("not_closed"),
            LookupErr::TooLarge => void("too_large"),
            LookupErr::ConcurrentInvalidOffset => void("concurrent_session_invalid_offset"),
            LookupErr::ConcurrentInvalidDataSize => void("concurrent_session_invalid_data_size"),
            LookupErr::PayloadTooLarge => void("payload_too_large"),
        }
    }
}

/// `WriteConflictError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    File,
    Folder,
    FileAncestor,
}

/// `WriteError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteErr {
    MalformedPath,
    Conflict(Conflict),
    NoWritePermission,
    InsufficientSpace,
}

impl WriteErr {
    pub(crate) fn value(self) -> Value {
        match self {
            WriteErr::MalformedPath => void("malformed_path"),
            WriteErr::Conflict(c) => nested(
                "conflict",
                void(match c {
                    Conflict::File => "file",
                    Conflict::Folder => "folder",
                    Conflict::FileAncestor => "file_ancestor",
                }),
            ),
            WriteErr::NoWritePermission => void("no_write_permission"),
            WriteErr::InsufficientSpace => void("insufficient_space"),
        }
    }
}

/// `InvalidPropertyGroupError` members the model produces (rule 58).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PropErr {
    TemplateNotFound(String),
    DoesNotFitTemplate,
    DuplicatePropertyGroups,
    PropertyFieldTooLarge,
}

impl PropErr {
    pub(crate) fn value(&self) -> Value {
        match self {
            PropErr::TemplateNotFound(id) => tagged(
                "template_not_found",
                [("template_not_found".to_string(), Value::String(id.clone()))],
            ),
            PropErr::DoesNotFitTemplate => void("does_not_fit_template"),
            PropErr::DuplicatePropertyGroups => void("duplicate_property_groups"),
            PropErr::PropertyFieldTooLarge => void("property_field_too_large"),
        }
    }
}

/// `UploadSessionFinishError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FinishErr {
    Lookup(LookupErr),
    Path(WriteErr),
    Properties(PropErr),
    TooManyWriteOperations,
    ConcurrentDataNotAllowed,
    ConcurrentNotClosed,
    ConcurrentMissingData,
    ContentHashMismatch,
}

impl FinishErr {
    pub(crate) fn value(&self) -> Value {
        match self {
            FinishErr::Lookup(l) => nested("lookup_failed", l.value()),
            FinishErr::Path(w) => nested("path", w.value()),
            FinishErr::Properties(p) => nested("properties_error", p.value()),
            FinishErr::TooManyWriteOperations => void("too_many_write_operations"),
            FinishErr::ConcurrentDataNotAllowed => void("concurrent_session_data_not_allowed"),
            FinishErr::ConcurrentNotClosed => void("concurrent_session_not_closed"),
            FinishErr::ConcurrentMissingData => void("concurrent_session_missing_data"),
            FinishErr::ContentHashMismatch => void("content_hash_mismatch"),
        }
    }
}

/// Tags of a union chain: `.tag`, then the tag of the member nested under that name, …
pub(crate) fn summary_tags(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = v;
    while let Some(tag) = cur.get(".tag").and_then(Value::as_str) {
        out.push(tag.to_string());
        match cur.get(tag) {
            Some(next) if next.get(".tag").is_some() => cur = next,
            _ => break,
        }
    }
    out
}

/// `error_summary`: the tags joined by `/`, a trailing `/`, then `dots % 4` dots.
pub(crate) fn error_summary(v: &Value, dots: u64) -> String {
    let mut s = summary_tags(v).join("/");
    s.push('/');
    for _ in 0..(dots % 4) {
        s.push('.');
    }
    s
}

#[cfg(feature = "server")]
fn set_reason(r: &mut Response<Bytes>, reason: &str) {
    if let Ok(p) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec()) {
        r.extensions_mut().insert(p);
    }
}

/// Only the hyper server reads the extension: without the `server` feature (hyper is not
/// even built) there is nothing to set.
#[cfg(not(feature = "server"))]
fn set_reason(_: &mut Response<Bytes>, _: &str) {}

/// An error response with a JSON `{"error_summary", "error"}` body whose reason phrase is
/// the summary.
pub(crate) fn json_error(status: StatusCode, error: Value, dots: u64) -> Response<Bytes> {
    let summary = error_summary(&error, dots);
    let mut m = Map::new();
    m.insert("error_summary".to_string(), Value::String(summary.clone()));
    m.insert("error".to_string(), error);
    let mut r = wire::json(status, &Value::Object(m));
    set_reason(&mut r, &summary);
    r
}

/// 409 route error (rule 24).
pub(crate) fn conflict(error: Value, dots: u64) -> Response<Bytes> {
    json_error(StatusCode::CONFLICT, error, dots)
}

/// 200 with a JSON result (rule 21).
pub(crate) fn ok(v: &Value) -> Response<Bytes> {
    wire::json(StatusCode::OK, v)
}

/// 200 `null` for Void results (rule 21).
pub(crate) fn ok_void() -> Response<Bytes> {
    wire::raw(
        StatusCode::OK,
        "application/json",
        Bytes::from_static(b"null"),
    )
}

/// 400 plain text `Error in call to API function "<route>": <msg>`.
pub(crate) fn bad_request(route: &str, msg: &str) -> Response<Bytes> {
    wire::text(
        StatusCode::BAD_REQUEST,
        &format!("Error in call to API function \"{route}\": {msg}"),
    )
}

/// 401 `AuthError` (rules 5, 6).
pub(crate) fn auth_error(tag: &str, dots: u64) -> Response<Bytes> {
    json_error(StatusCode::UNAUTHORIZED, void(tag), dots)
}

fn retry_after(r: &mut Response<Bytes>, secs: u64) {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
}

/// 429 lock contention (rule 66): `Retry-After` header, no body `retry_after`.
pub(crate) fn lock_contention(secs: u64) -> Response<Bytes> {
    let error = Value::Object(Map::from_iter([(
        "reason".to_string(),
        void("too_many_write_operations"),
    )]));
    let mut m = Map::new();
    m.insert(
        "error_summary".to_string(),
        Value::String("too_many_write_operations/.".to_string()),
    );
    m.insert("error".to_string(), error);
    let mut r = wire::json(StatusCode::TOO_MANY_REQUESTS, &Value::Object(m));
    set_reason(&mut r, "too_many_write_operations/.");
    retry_after(&mut r, secs);
    r
}

/// 429 rate limit (rule 67): JSON with `retry_after` and the header, the plain-text
/// variant, or (with `secs = None`) neither header nor body field.
pub(crate) fn rate_limited(secs: Option<u64>, plain_text: bool) -> Response<Bytes> {
    let mut r = if plain_text {
        wire::raw(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain",
            Bytes::from_static(b"too_many_requests"),
        )
    } else {
        let mut error = Map::new();
        error.insert("reason".to_string(), void("too_many_requests"));
        if let Some(s) = secs {
            error.insert("retry_after".to_string(), Value::from(s));
        }
        let mut m = Map::new();
        m.insert(
            "error_summary".to_string(),
            Value::String("too_many_requests/...".to_string()),
        );
        m.insert("error".to_string(), Value::Object(error));
        let mut r = wire::json(StatusCode::TOO_MANY_REQUESTS, &Value::Object(m));
        set_reason(&mut r, "too_many_requests/...");
        r
    };
    if let Some(s) = secs {
        retry_after(&mut r, s);
    }
    r
}

/// A 5xx (rule 69): 500 is an empty `application/grpc` body (dbxcli#185), 502 a small
/// HTML page, 503 and 504 an empty body with no content type. 503 may carry `Retry-After`.
pub(crate) fn server_error(status: u16, retry: Option<u64>) -> Response<Bytes> {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(StatusCode::is_server_error)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match status.as_u16() {
        500 => wire::raw(status, "application/grpc", Bytes::new()),
        502 => wire::raw(
            status,
            "text/html",
            Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        ),
        _ => wire::empty(status),
    };
    if let Some(s) = retry {
        retry_after(&mut r, s);
    }
    r
}
