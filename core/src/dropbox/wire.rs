//! Dropbox requests and response parsing (dropbox.md §1-§7).
//!
//! - [`api_arg_json`]: the `Dropbox-API-Arg` encoding of §1.3: compact JSON in which every
//!   character outside printable ASCII is a `\uXXXX` escape, with UTF-16 surrogate pairs
//!   above U+FFFF. The result is always a valid header value and can never carry CR/LF.
//! - Request builders for the upload-style routes (content host, argument in the
//!   header, `Content-Type: application/octet-stream` even on empty bodies) and the RPC
//!   routes (API host, JSON body).
//! - Total parsers: any body gives a value or an error, never a panic; bodies larger
//!   than the configured cap are not parsed; error tag chains are walked to a bounded
//!   depth.

use super::metadata::FileMetadata;
use crate::error::ServiceCodes;
use crate::secret::AccessToken;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// `Dropbox-API-Arg`.
pub(crate) const API_ARG: HeaderName = HeaderName::from_static("dropbox-api-arg");
/// `Dropbox-API-Path-Root`.
pub(crate) const PATH_ROOT: HeaderName = HeaderName::from_static("dropbox-api-path-root");
/// `Dropbox-API-Select-User`.
pub(crate) const SELECT_USER: HeaderName = HeaderName::from_static("dropbox-api-select-user");

/// Longest error text kept from a plain-text body.
const MAX_TEXT: usize = 512;
/// Deepest tag chain walked.
const MAX_DEPTH: usize = 8;
/// Longest tag kept.
const MAX_TAG: usize = 128;

/// Encodes `value` as `Dropbox-API-Arg` text (dropbox.md §1.3): compact JSON, then every
/// character that is not printable ASCII (U+0020..=U+007E) written as `\uXXXX`
/// (lowercase hex), with a UTF-16 surrogate pair above U+FFFF. Control characters are
/// already escaped by JSON inside strings, and compact JSON has none outside them.
///
/// # Examples
/// ```
/// use upload_session::dropbox::api_arg_json;
/// let v = serde_json::json!({"path": "/tëst/😀\u{7f}.txt"});
/// assert_eq!(api_arg_json(&v), r#"{"path":"/t\u00ebst/\ud83d\ude00\u007f.txt"}"#);
/// ```
pub fn api_arg_json(value: &Value) -> String {
    let json = value.to_string();
    escape_non_ascii(&json)
}

/// Escapes every character outside U+0020..=U+007E of JSON text as `\uXXXX`.
fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{:04x}", u);
            }
        }
    }
    out
}

/// The argument as a header value (always valid: the text is printable ASCII).
fn arg_header(value: &Value) -> Option<HeaderValue> {
    HeaderValue::from_str(&api_arg_json(value)).ok()
}

/// Headers every Dropbox request carries.
#[derive(Clone, Debug)]
pub(crate) struct CommonHeaders {
    pub path_root: Option<HeaderValue>,
    pub select_user: Option<HeaderValue>,
}

impl CommonHeaders {
    pub(crate) fn new(cfg: &super::DropboxConfig) -> Self {
        Self {
            path_root: cfg
                .path_root
                .as_ref()
                .and_then(|p| HeaderValue::from_str(&p.header_json()).ok()),
            select_user: cfg
                .select_user
                .as_deref()
                .and_then(|u| HeaderValue::from_str(u).ok()),
        }
    }

    fn apply(&self, h: &mut HeaderMap, token: &AccessToken) {
        h.insert(AUTHORIZATION, token.header_value().clone());
        if let Some(v) = &self.path_root {
            h.insert(PATH_ROOT, v.clone());
        }
        if let Some(v) = &self.select_user {
            h.insert(SELECT_USER, v.clone());
        }
    }
}

fn post(uri: &Uri, body: Bytes) -> Request<Bytes> {
    let len = body.len() as u64;
    let mut r = Request::new(body);
    *r.method_mut() = Method::POST;
    *r.uri_mut() = uri.clone();
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// An upload-style request (content host): argument in `Dropbox-API-Arg`, raw body,
/// `Content-Type: application/octet-stream` (also on an empty body, §1.2).
pub(crate) fn upload(
    uri: &Uri,
    arg: &Value,
    body: Bytes,
    token: &AccessToken,
    common: &CommonHeaders,
) -> Request<Bytes> {
    let mut r = post(uri, body);
    let h = r.headers_mut();
    common.apply(h, token);
    if let Some(v) = arg_header(arg) {
        h.insert(API_ARG, v);
    }
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

/// An RPC request (API host): JSON body, `Content-Type: application/json`.
pub(crate) fn rpc(
    uri: &Uri,
    arg: &Value,
    token: &AccessToken,
    common: &CommonHeaders,
) -> Request<Bytes> {
    // Escaping is not required in a body, but it keeps the body pure ASCII as well.
    let mut r = post(uri, Bytes::from(api_arg_json(arg)));
    let h = r.headers_mut();
    common.apply(h, token);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn cursor(session_id: &str, offset: u64) -> Value {
    let mut m = Map::new();
    m.insert("session_id".into(), Value::from(session_id));
    m.insert("offset".into(), Value::from(offset));
    Value::Object(m)
}

/// `UploadSessionStartArg` (§2); defaults omitted.
pub(crate) fn start_arg(close: bool, concurrent: bool, content_hash: Option<&str>) -> Value {
    let mut m = Map::new();
    if close {
        m.insert("close".into(), Value::Bool(true));
    }
    if concurrent {
        m.insert("session_type".into(), Value::from("concurrent"));
    }
    if let Some(h) = content_hash {
        m.insert("content_hash".into(), Value::from(h));
    }
    Value::Object(m)
}

/// `UploadSessionAppendArg` (§3).
pub(crate) fn append_arg(
    session_id: &str,
    offset: u64,
    close: bool,
    content_hash: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("cursor".into(), cursor(session_id, offset));
    if close {
        m.insert("close".into(), Value::Bool(true));
    }
    if let Some(h) = content_hash {
        m.insert("content_hash".into(), Value::from(h));
    }
    Value::Object(m)
}

/// `UploadSessionFinishArg` (§5).
pub(crate) fn finish_arg(
    session_id: &str,
    offset: u64,
    commit: &super::CommitInfo,
    content_hash: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("cursor".into(), cursor(session_id, offset));
    m.insert("commit".into(), commit.to_json());
    if let Some(h) = content_hash {
        m.insert("content_hash".into(), Value::from(h));
    }
    Value::Object(m)
}

/// `UploadSessionFinishBatchArg` (§6.3).
pub(crate) fn finish_batch_arg(entries: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert("entries".into(), Value::Array(entries));
    Value::Object(m)
}

/// `GetMetadataArg` for `files/get_metadata`.
pub(crate) fn get_metadata_arg(path: &str) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), Value::from(path));
    Value::Object(m)
}

fn json_value(body: &[u8], cap: usize) -> Result<Value, String> {
    if body.len() > cap {
        return Err(format!("body of {} bytes exceeds {cap}", body.len()));
    }
    serde_json::from_slice::<Value>(body).map_err(|e| format!("body is not JSON: {e}"))
}

/// Parses a `start` result: `{"session_id": "<non-empty string>"}`.
pub(crate) fn parse_session_id(body: &[u8], cap: usize) -> Result<String, String> {
    match json_value(body, cap)? {
        Value::Object(m) => match m.get("session_id") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err("`session_id` is not a non-empty string".into()),
            None => Err("no `session_id`".into()),
        },
        _ => Err("body is not a JSON object".into()),
    }
}

/// Parses a `FileMetadata` body (finish, or `get_metadata` with `.tag: file`).
pub(crate) fn parse_metadata(body: &[u8], cap: usize) -> Result<FileMetadata, String> {
    let v = json_value(body, cap)?;
    if let Some(tag) = v.get(".tag") {
        if tag.as_str() != Some("file") {
            return Err(format!("metadata is not a file ({tag})"));
        }
    }
    FileMetadata::from_json(v)
}

/// One `finish_batch_v2` entry result.
#[derive(Debug)]
pub(crate) enum BatchEntryResult {
    Success(FileMetadata),
    Failure(ApiError),
}

/// Parses a `finish_batch_v2` result: `{"entries": [...]}` with exactly `expected`
/// entries (§6.3).
pub(crate) fn parse_batch_result(
    body: &[u8],
    cap: usize,
    expected: usize,
) -> Result<Vec<BatchEntryResult>, String> {
    let v = json_value(body, cap)?;
    let Some(Value::Array(entries)) = v.get("entries") else {
        return Err("no `entries` array".into());
    };
    if entries.len() != expected {
        return Err(format!(
            "{} entries for {expected} requested",
            entries.len()
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        match e.get(".tag").and_then(Value::as_str) {
            Some("success") => out.push(BatchEntryResult::Success(FileMetadata::from_json(
                e.clone(),
            )?)),
            Some("failure") => {
                let failure = e.get("failure").unwrap_or(&Value::Null);
                out.push(BatchEntryResult::Failure(ApiError::from_union(failure)));
            }
            _ => return Err("entry is neither `success` nor `failure`".into()),
        }
    }
    Ok(out)
}

/// What an error body says (dropbox.md §7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// Tag chain, outermost first (`lookup_failed`, `incorrect_offset`). For a 429 JSON
    /// body: the `reason` tag.
    pub tags: ServiceCodes,
    /// `correct_offset` of an `incorrect_offset` anywhere in the chain.
    pub correct_offset: Option<u64>,
    /// 429 body `retry_after` (seconds).
    pub retry_after: Option<Duration>,
    /// A non-JSON body's text (truncated), e.g. a 400's message.
    pub text: Option<String>,
}

impl ApiError {
    /// Walks a union value: its `.tag`, then the member nested under that tag, and so on.
    pub(crate) fn from_union(v: &Value) -> Self {
        let mut e = ApiError::default();
        let mut cur = Some(v);
        for _ in 0..MAX_DEPTH {
            let Some(obj) = cur.and_then(Value::as_object) else {
                break;
            };
            let Some(tag) = obj.get(".tag").and_then(Value::as_str) else {
                break;
            };
            if tag == "incorrect_offset" {
                e.correct_offset = obj.get("correct_offset").and_then(Value::as_u64);
            }
            e.tags.0.push(tag.chars().take(MAX_TAG).collect());
            cur = obj.get(tag);
        }
        e
    }

    /// Parses any error body: `{"error": <union>, "error_summary": …}`, a 429
    /// `{"error": {"reason": {...}, "retry_after": n}}`, or plain text.
    pub(crate) fn parse(body: &[u8], cap: usize) -> Self {
        let text = || {
            let t = String::from_utf8_lossy(body.get(..MAX_TEXT.min(body.len())).unwrap_or(&[]));
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_string())
        };
        if body.len() > cap {
            return ApiError {
                text: text(),
                ..ApiError::default()
            };
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return ApiError {
                text: text(),
                ..ApiError::default()
            };
        };
        let Some(err) = v.get("error") else {
            return ApiError::default();
        };
        if let Some(reason) = err.get("reason") {
            let mut e = ApiError::from_union(reason);
            e.retry_after = err
                .get("retry_after")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(1e9)));
            return e;
        }
        ApiError::from_union(err)
    }

    /// True when the chain is exactly `tags` from the start.
    pub(crate) fn is(&self, tags: &[&str]) -> bool {
        self.tags.0.len() >= tags.len() && self.tags.0.iter().zip(tags).all(|(a, b)| a == b)
    }

    /// The first tag.
    pub(crate) fn first(&self) -> Option<&str> {
        self.tags.first()
    }
}

/// A single header as text, when present once and visible ASCII.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// Parses `Retry-After` as (possibly decimal) seconds, e.g. `1`, `60.0` (dropbox.md
/// §7.3). HTTP-dates are left to the caller.
pub(crate) fn retry_after_secs(headers: &HeaderMap) -> Option<Duration> {
    let t = header_str(headers, "retry-after")?.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let s: f64 = t.parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropbox::CommitInfo;

    #[test]
    fn escaping_matches_the_json_encoding_page() {
        let v = serde_json::json!({"field": "some_üñîcødé_and_\u{7f}"});
        assert_eq!(
            api_arg_json(&v),
            r#"{"field":"some_\u00fc\u00f1\u00eec\u00f8d\u00e9_and_\u007f"}"#
        );
        // Control characters keep JSON's own escapes; nothing raw survives.
        let v = serde_json::json!({"p": "a\r\nb\t\u{1}"});
        assert_eq!(api_arg_json(&v), r#"{"p":"a\r\nb\t\u0001"}"#);
        // Astral plane: surrogate pairs, never `\u1f600`.
        let v = serde_json::json!({"p": "😀𝄞"});
        assert_eq!(api_arg_json(&v), r#"{"p":"\ud83d\ude00\ud834\udd1e"}"#);
    }

    #[test]
    fn upload_requests_carry_the_exact_headers() {
        let token = AccessToken::new("tok").unwrap();
        let cfg = super::super::DropboxConfig {
            path_root: Some(super::super::PathRoot::NamespaceId("42".into())),
            select_user: Some("dbmid:abc".into()),
            ..super::super::DropboxConfig::default()
        };
        let common = CommonHeaders::new(&cfg);
        let uri: Uri = "https://c/2/files/upload_session/finish".parse().unwrap();
        let commit = CommitInfo::new("/ü.txt").unwrap();
        let r = upload(
            &uri,
            &finish_arg("sid", 7, &commit, None),
            Bytes::new(),
            &token,
            &common,
        );
        let h = r.headers();
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-length"], "0");
        assert_eq!(h["authorization"], "Bearer tok");
        assert_eq!(
            h["dropbox-api-arg"],
            r#"{"commit":{"path":"/\u00fc.txt"},"cursor":{"offset":7,"session_id":"sid"}}"#
        );
        assert_eq!(
            h["dropbox-api-path-root"],
            r#"{".tag":"namespace_id","namespace_id":"42"}"#
        );
        assert_eq!(h["dropbox-api-select-user"], "dbmid:abc");
        let r = rpc(&uri, &get_metadata_arg("/é"), &token, &common);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body().as_ref(), br#"{"path":"/\u00e9"}"#);
    }

    #[test]
    fn args_omit_defaults() {
        assert_eq!(start_arg(false, false, None).to_string(), "{}");
        assert_eq!(
            start_arg(true, true, Some("h")),
            serde_json::json!({"close": true, "session_type": "concurrent", "content_hash": "h"})
        );
        assert_eq!(
            append_arg("s", 9, false, None),
            serde_json::json!({"cursor": {"session_id": "s", "offset": 9}})
        );
    }

    #[test]
    fn error_chains_are_walked() {
        let e = ApiError::parse(
            br#"{"error_summary": "lookup_failed/incorrect_offset/..", "error": {".tag": "lookup_failed",
              "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 12556930}}}"#,
            4096,
        );
        assert_eq!(e.tags.0, ["lookup_failed", "incorrect_offset"]);
        assert_eq!(e.correct_offset, Some(12_556_930));
        assert!(e.is(&["lookup_failed"]));
        assert!(!e.is(&["lookup_failed", "not_found"]));
        let e = ApiError::parse(
            br#"{"error":{".tag":"path","path":{".tag":"conflict","conflict":{".tag":"file"}}},"error_summary":"path/conflict/file/"}"#,
            4096,
        );
        assert_eq!(e.tags.0, ["path", "conflict", "file"]);
        let e = ApiError::parse(
            br#"{"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 300}}"#,
            4096,
        );
        assert_eq!(e.tags.0, ["too_many_requests"]);
        assert_eq!(e.retry_after, Some(Duration::from_secs(300)));
        let e = ApiError::parse(b"too_many_requests", 4096);
        assert!(e.tags.0.is_empty());
        assert_eq!(e.text.as_deref(), Some("too_many_requests"));
        let e = ApiError::parse(
            br#"{"error":{".tag":"incorrect_offset","correct_offset":-5}}"#,
            4096,
        );
        assert_eq!(e.correct_offset, None);
        // Deeply nested chains are cut, not followed forever.
        let mut deep = String::from(r#"{".tag":"x"}"#);
        for _ in 0..100 {
            deep = format!(r#"{{".tag":"x","x":{deep}}}"#);
        }
        let e = ApiError::parse(format!(r#"{{"error":{deep}}}"#).as_bytes(), 1 << 20);
        assert_eq!(e.tags.0.len(), MAX_DEPTH);
    }

    #[test]
    fn retry_after_accepts_decimals() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("60.0"));
        assert_eq!(retry_after_secs(&h), Some(Duration::from_secs(60)));
        h.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(retry_after_secs(&h), Some(Duration::from_secs(1)));
        h.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after_secs(&h), None);
        h.insert(
            "retry-after",
            HeaderValue::from_static("99999999999999999999999"),
        );
        assert!(retry_after_secs(&h).is_some());
    }

    #[test]
    fn every_prefix_of_recorded_bodies_parses_without_panicking() {
        let bodies: [&[u8]; 5] = [
            br#"{"session_id": "pid_upload_session:h-NtwvAdw3XDqqHmb0J2t0XfIaSnQw2Eor59pfZI9D_ZGNJ4Ew"}"#,
            br#"{"name": "Prime_Numbers.txt", "id": "id:a4ayc_80_OEAAAAAAAAAXw", "client_modified": "2015-05-12T15:50:38Z", "server_modified": "2015-05-12T15:50:38Z", "rev": "a1c10ce0dd78", "size": 7212, "path_lower": "/homework/math/prime_numbers.txt", "path_display": "/Homework/math/Prime_Numbers.txt", "content_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
            br#"{"error_summary": "lookup_failed/incorrect_offset/..", "error": {".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 12556930}}}"#,
            br#"{"entries":[{".tag":"success","name":"a","id":"id:1","rev":"0123456789","size":1,"client_modified":"2015-05-12T15:50:38Z","server_modified":"2015-05-12T15:50:38Z"},{".tag":"failure","failure":{".tag":"too_many_write_operations"}}]}"#,
            br#"{"error_summary": "too_many_write_operations/.", "error": {"reason": {".tag": "too_many_write_operations"}}}"#,
        ];
        for b in bodies {
            for cut in 0..=b.len() {
                let p = &b[..cut];
                let _ = parse_session_id(p, 4096);
                let _ = parse_metadata(p, 4096);
                let _ = parse_batch_result(p, 4096, 2);
                let _ = ApiError::parse(p, 4096);
            }
        }
        assert!(parse_session_id(bodies[0], 4096).is_ok());
        assert_eq!(parse_metadata(bodies[1], 4096).unwrap().size, 7212);
        let r = parse_batch_result(bodies[3], 4096, 2).unwrap();
        assert!(matches!(r[0], BatchEntryResult::Success(_)));
        match &r[1] {
            BatchEntryResult::Failure(e) => assert_eq!(e.tags.0, ["too_many_write_operations"]),
            other => panic!("{other:?}"),
        }
        assert!(parse_batch_result(bodies[3], 4096, 3).is_err());
        assert!(parse_session_id(br#"{"session_id": ""}"#, 4096).is_err());
        assert!(parse_session_id(bodies[0], 10).is_err());
    }
}
