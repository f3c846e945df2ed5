//! Secrets: bearer tokens and pre-authenticated URLs. Their `Debug` never shows them.

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An OAuth bearer token, sent as `Authorization: Bearer …` to the service API (never to
/// a OneDrive `uploadUrl`).
///
/// # Examples
/// ```
/// use upload_session::AccessToken;
/// let t = AccessToken::new("eyJ0eXAi.secret").unwrap();
/// assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
/// assert!(AccessToken::new("bad\ntoken").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    header: HeaderValue,
}

/// The token cannot be sent in an HTTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an access token must be non-empty visible ASCII")]
pub struct InvalidToken;

impl AccessToken {
    /// Wraps a token.
    ///
    /// # Errors
    /// [`InvalidToken`] when it is empty or has characters outside visible ASCII.
    pub fn new(token: impl AsRef<str>) -> Result<Self, InvalidToken> {
        let t = token.as_ref();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidToken);
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| InvalidToken)?;
        header.set_sensitive(true);
        Ok(Self { header })
    }

    /// The `Authorization` header value (`Bearer …`), marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// A string that must not be logged (a OneDrive `uploadUrl` embeds a bearer-equivalent
/// token). Serialises as the plain string; `Debug` shows only a redaction marker.
///
/// # Examples
/// ```
/// use upload_session::SecretString;
/// let s = SecretString::new("https://up.example/x?tempauth=abc");
/// assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
/// assert_eq!(s.expose(), "https://up.example/x?tempauth=abc");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Returns the secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Formats a URI for logs: scheme, host and path of API calls; only the host of a
/// pre-authenticated URL.
pub(crate) fn redacted_uri(uri: &http::Uri, secret: bool) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if secret {
        format!("{scheme}://{host}/<redacted>")
    } else {
        format!("{scheme}://{host}{}", uri.path())
    }
}
