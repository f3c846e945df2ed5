//! How a Dropbox machine behaves ([`DropboxConfig`]) and the optional team headers
//! ([`PathRoot`]).

use crate::error::BuildError;
use crate::retry::RetryPolicy;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The content host's base URL: upload-style routes (dropbox.md §1.1).
pub const CONTENT_BASE: &str = "https://content.dropboxapi.com/2/";
/// The API host's base URL: RPC routes.
pub const API_BASE: &str = "https://api.dropboxapi.com/2/";

/// `Dropbox-API-Path-Root` (dropbox.md §1.2): which namespace paths are relative to.
///
/// # Examples
/// ```
/// use upload_session::dropbox::PathRoot;
/// assert_eq!(PathRoot::Home.header_json(), r#"{".tag":"home"}"#);
/// assert_eq!(PathRoot::Root("123".into()).header_json(), r#"{".tag":"root","root":"123"}"#);
/// assert_eq!(
///     PathRoot::NamespaceId("7".into()).header_json(),
///     r#"{".tag":"namespace_id","namespace_id":"7"}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PathRoot {
    /// The user's home namespace.
    Home,
    /// The team's root namespace, with the user's root namespace id as a check.
    Root(String),
    /// A namespace the user can access.
    NamespaceId(String),
}

impl PathRoot {
    /// The header value (compact JSON, `.tag` first).
    pub fn header_json(&self) -> String {
        fn obj(tag: &str, id: Option<&str>) -> String {
            match id {
                None => format!(r#"{{".tag":"{tag}"}}"#),
                Some(id) => {
                    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
                    format!(r#"{{".tag":"{tag}","{tag}":{id}}}"#)
                }
            }
        }
        match self {
            PathRoot::Home => obj("home", None),
            PathRoot::Root(id) => obj("root", Some(id)),
            PathRoot::NamespaceId(id) => obj("namespace_id", Some(id)),
        }
    }

    fn validate(&self) -> Result<(), BuildError> {
        match self {
            PathRoot::Home => Ok(()),
            PathRoot::Root(id) | PathRoot::NamespaceId(id) => {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    Err(BuildError::InvalidId { value: id.clone() })
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Behaviour of Dropbox machines. `Default` talks to the real service.
///
/// # Examples
/// ```
/// use upload_session::dropbox::DropboxConfig;
/// let c = DropboxConfig::with_hosts(
///     "http://127.0.0.1:8080/dropbox/content/2",
///     "http://127.0.0.1:8080/dropbox/api/2/",
/// );
/// assert_eq!(c.content_base, "http://127.0.0.1:8080/dropbox/content/2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropboxConfig {
    /// Base URL of the content host (upload routes), e.g. [`CONTENT_BASE`]. A trailing
    /// `/` is optional.
    pub content_base: String,
    /// Base URL of the API host (RPC routes: `finish_batch_v2`, `get_metadata`), e.g.
    /// [`API_BASE`].
    pub api_base: String,
    /// Optional `Dropbox-API-Path-Root`.
    pub path_root: Option<PathRoot>,
    /// Optional `Dropbox-API-Select-User` (a team member id, when a team token acts for a
    /// member).
    pub select_user: Option<String>,
    /// Retry and backoff.
    pub retry: RetryPolicy,
    /// Base deadline of every request (must be positive).
    pub request_timeout: Duration,
    /// Assumed slowest throughput (bytes per second): a request with a body gets
    /// `body / min_throughput` seconds on top of `request_timeout`.
    pub min_throughput: u64,
    /// Largest response body the machine parses; larger bodies are malformed.
    pub max_response_body: usize,
    /// Sessions abandoned and started again before giving up.
    pub max_restarts: u32,
    /// Session lifetime (dropbox.md §0: 7 days from `start`).
    pub session_lifetime: Duration,
    /// A session this close to its end of life is not used any more: a new one is
    /// started instead.
    pub expiry_margin: Duration,
    /// Shortest wait after a 429 or `too_many_write_operations` (dropbox.md §11: never
    /// 0 s).
    pub min_throttle_wait: Duration,
}

impl Default for DropboxConfig {
    fn default() -> Self {
        Self {
            content_base: CONTENT_BASE.into(),
            api_base: API_BASE.into(),
            path_root: None,
            select_user: None,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            min_throughput: 64 * 1024,
            max_response_body: 1 << 20,
            max_restarts: 3,
            session_lifetime: Duration::from_secs(604_800),
            expiry_margin: Duration::from_secs(3600),
            min_throttle_wait: Duration::from_secs(1),
        }
    }
}

impl DropboxConfig {
    /// The defaults with other hosts (an emulator: `{server}/dropbox/content/2/` and
    /// `{server}/dropbox/api/2/`).
    pub fn with_hosts(content_base: impl Into<String>, api_base: impl Into<String>) -> Self {
        Self {
            content_base: content_base.into(),
            api_base: api_base.into(),
            ..Self::default()
        }
    }

    /// Checks the settings; returns the two base URLs, each ending in `/`.
    pub(crate) fn checked(&self) -> Result<(String, String), BuildError> {
        let base = |b: &str| -> Result<String, BuildError> {
            let bad = || BuildError::InvalidBaseUrl {
                value: b.to_string(),
            };
            let uri: http::Uri = b.parse().map_err(|_| bad())?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https"))
                || uri.authority().is_none()
                || uri.query().is_some()
            {
                return Err(bad());
            }
            Ok(if b.ends_with('/') {
                b.to_string()
            } else {
                format!("{b}/")
            })
        };
        let content = base(&self.content_base)?;
        let api = base(&self.api_base)?;
        if let Some(p) = &self.path_root {
            p.validate()?;
        }
        if let Some(u) = &self.select_user {
            if u.is_empty() || HeaderValue::from_str(u).is_err() || !u.is_ascii() {
                return Err(BuildError::InvalidId { value: u.clone() });
            }
        }
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
        Ok((content, api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_checked_and_normalised() {
        let c = DropboxConfig::with_hosts("http://h:1/dropbox/content/2", "https://a/2/");
        assert_eq!(
            c.checked().unwrap(),
            (
                "http://h:1/dropbox/content/2/".into(),
                "https://a/2/".into()
            )
        );
        for bad in ["", "ftp://x/2/", "/2/", "http://h/2/?x=1", "not a url"] {
            let c = DropboxConfig::with_hosts(bad, API_BASE);
            assert!(c.checked().is_err(), "{bad}");
        }
        let mut c = DropboxConfig {
            path_root: Some(PathRoot::Root("12a".into())),
            ..DropboxConfig::default()
        };
        assert!(c.checked().is_err());
        c.path_root = Some(PathRoot::NamespaceId("12".into()));
        c.select_user = Some("dbmid:ÄB".into());
        assert!(c.checked().is_err());
        c.select_user = Some("dbmid:AB".into());
        assert!(c.checked().is_ok());
    }
}
