//! Graph error responses (onedrive.md §5, §11 rules 39-45).
//!
//! Shape: `{"error":{"code","message","innerError":{"code"?, "date", "request-id",
//! "client-request-id"}}}` with `Content-Type: application/json`. The inner key is
//! `innererror` in [`InnerErrorKey::Lowercase`] mode, and 416/504 answers have an empty
//! body in `empty_error_bodies` mode (rule 44).

use crate::config::{InnerErrorKey, OneDriveConfig};
use crate::wire;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::time::SystemTime;

/// Everything an error answer needs from the request context.
#[derive(Clone, Copy, Debug)]
pub struct ErrCx<'a> {
    /// OneDrive options.
    pub config: &'a OneDriveConfig,
    /// The request id.
    pub request_id: &'a str,
    /// Virtual time.
    pub now: SystemTime,
}

/// An error to answer with.
#[derive(Clone, Debug)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// Top-level `code`.
    pub code: &'static str,
    /// `message`.
    pub message: String,
    /// Chain of inner codes, outermost first.
    pub inner: Vec<&'static str>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl GraphError {
    /// An error without inner code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            inner: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds an inner code (builder style).
    pub fn inner(mut self, code: &'static str) -> Self {
        self.inner.push(code);
        self
    }

    /// 400 `invalidRequest`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }

    /// 401 `unauthenticated` "Unauthenticated" (rule 11's exact shape).
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Unauthenticated",
        )
    }

    /// 404 `itemNotFound` "The upload session was not found" (rules 34-36, 43).
    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The upload session was not found",
        )
    }

    /// 404 `itemNotFound` for an item.
    pub fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The resource could not be found.",
        )
    }

    /// 416 `invalidRange` / `fragmentOverlap` (rules 19, 29a).
    pub fn overlap() -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "Uploaded fragment overlaps with existing data.",
        )
        .inner("fragmentOverlap")
    }

    /// 416 `invalidRange` / `fragmentOutOfOrder` (rules 20, 23).
    pub fn out_of_order() -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "Uploaded fragment is out of order.",
        )
        .inner("fragmentOutOfOrder")
    }

    /// 409 `nameAlreadyExists`.
    pub fn name_exists(message: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "nameAlreadyExists", message)
    }

    /// The 5xx an `ErrorBefore`/`ErrorAfter` fault answers with (rule 41): 500
    /// `generalException`, 503 `serviceNotAvailable`, other 5xx `UnknownError`.
    pub fn server(status: u16) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match status.as_u16() {
            500 => Self::new(
                status,
                "generalException",
                "General exception while processing",
            ),
            503 => Self::new(
                status,
                "serviceNotAvailable",
                "The service is not available. Try the request again after a delay.",
            )
            .inner("serviceNotAvailable"),
            _ => Self::new(status, "UnknownError", ""),
        }
    }

    /// 429 throttling (rule 39).
    pub fn throttled(retry_after: Option<u64>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "activityLimitReached",
            "The request has been throttled",
        )
        .inner("throttledRequest")
        .inner("quota");
        e.retry_after = retry_after;
        e
    }

    /// 503 (rule 40).
    pub fn unavailable(retry_after: Option<u64>) -> Self {
        let mut e = Self::server(503);
        e.retry_after = retry_after;
        e
    }

    /// Builds the response.
    pub fn response(&self, cx: ErrCx<'_>) -> Response<Bytes> {
        let empty_mode = cx.config.empty_error_bodies
            && matches!(
                self.status,
                StatusCode::RANGE_NOT_SATISFIABLE | StatusCode::GATEWAY_TIMEOUT
            );
        let mut resp = if empty_mode {
            wire::empty(self.status)
        } else {
            let key = match cx.config.inner_error_key {
                InnerErrorKey::CamelCase => "innerError",
                InnerErrorKey::Lowercase => "innererror",
            };
            // Innermost first, wrapping outwards.
            let mut inner: Option<Value> = None;
            for code in self.inner.iter().skip(1).rev() {
                let mut m = Map::new();
                m.insert("code".into(), json!(code));
                if let Some(i) = inner.take() {
                    m.insert(key.into(), i);
                }
                inner = Some(Value::Object(m));
            }
            let mut top_inner = Map::new();
            if let Some(c) = self.inner.first() {
                top_inner.insert("code".into(), json!(c));
            }
            if let Some(i) = inner {
                top_inner.insert(key.into(), i);
            }
            top_inner.insert("date".into(), json!(graph_date(cx.now)));
            top_inner.insert("request-id".into(), json!(cx.request_id));
            top_inner.insert("client-request-id".into(), json!(cx.request_id));
            let mut err = Map::new();
            err.insert("code".into(), json!(self.code));
            err.insert("message".into(), json!(self.message));
            err.insert(key.into(), Value::Object(top_inner));
            wire::json(self.status, &json!({ "error": Value::Object(err) }))
        };
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                h.insert(http::header::RETRY_AFTER, v);
            }
        }
        if cx.config.sharepoint_headers
            && matches!(
                self.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
        {
            let reset = self.retry_after.unwrap_or(60).to_string();
            h.insert("RateLimit-Limit", HeaderValue::from_static("1200"));
            h.insert("RateLimit-Remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&reset) {
                h.insert("RateLimit-Reset", v);
            }
        }
        resp
    }
}

/// Clamps a time into what RFC 3339 formatting supports (1970..=9999), so that no virtual
/// clock value can make a formatter fail.
pub fn clamp_time(t: SystemTime) -> SystemTime {
    let max = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799);
    if t < SystemTime::UNIX_EPOCH {
        SystemTime::UNIX_EPOCH
    } else if t > max {
        max
    } else {
        t
    }
}

/// `2015-01-29T09:21:55.523Z` (clamped).
pub fn fmt_time(t: SystemTime) -> String {
    wire::rfc3339_millis(clamp_time(t))
}

/// The `date` of an inner error: `2021-11-30T12:17:46` (no zone, as Graph sends it).
pub fn graph_date(t: SystemTime) -> String {
    let s = wire::rfc3339_seconds(clamp_time(t));
    s.trim_end_matches('Z').to_string()
}

/// `t + d`, saturating instead of overflowing.
pub fn add(t: SystemTime, d: std::time::Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}
