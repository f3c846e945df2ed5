//! Small helpers to build responses and read request heads, shared by both services.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// Builds a response with a JSON body and `Content-Type: application/json` (exactly,
/// no charset: dropbox §12 rule 21).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    raw(status, "application/json", Bytes::from(body))
}

/// Builds a response with a JSON body given as already-serialised text.
pub fn json_text(status: StatusCode, body: String) -> Response<Bytes> {
    raw(status, "application/json", Bytes::from(body))
}

/// Builds a plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Bytes> {
    raw(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

/// Builds a response with an arbitrary content type and body.
pub fn raw(status: StatusCode, content_type: &str, body: Bytes) -> Response<Bytes> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Builds a response with no body and no content type.
pub fn empty(status: StatusCode) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

/// Returns a header as text when it is present, unique and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// Returns the declared `Content-Length`, `Ok(None)` when absent, `Err(())` when present
/// but not a single decimal number.
#[allow(clippy::result_unit_err)]
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut all = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(());
    }
    let s = first.to_str().map_err(|_| ())?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse::<u64>().map(Some).map_err(|_| ())
}

/// Extracts the bearer token of an `Authorization: Bearer <token>` header.
///
/// Returns `Ok(None)` when the header is absent, `Err(())` when it is present but not of
/// that form.
#[allow(clippy::result_unit_err)]
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let v = header_str(headers, header::AUTHORIZATION.as_str()).ok_or(())?;
    let token = v.strip_prefix("Bearer ").ok_or(())?;
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=:".contains(&b))
    {
        return Err(());
    }
    Ok(Some(token))
}

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds (`2015-01-29T09:21:55.523Z`).
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Formats a wall-clock time as RFC 3339 UTC with whole seconds (`2015-05-12T15:50:38Z`),
/// the Dropbox timestamp format.
pub fn rfc3339_seconds(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
