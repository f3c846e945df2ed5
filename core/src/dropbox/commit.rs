//! What to commit where: [`CommitInfo`] (dropbox.md §5), validated before anything is
//! sent.

use crate::error::BuildError;
use crate::wallclock::format_rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file revision (`Rev`: at least 9 characters of `[0-9a-f]`, dropbox.md §0).
///
/// # Examples
/// ```
/// use upload_session::dropbox::Rev;
/// assert!(Rev::new("a1c10ce0dd78").is_ok());
/// assert!(Rev::new("a1c10").is_err());
/// assert!(Rev::new("A1C10CE0DD78").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rev(String);

impl Rev {
    /// Validates a revision.
    ///
    /// # Errors
    /// [`BuildError::InvalidOption`] when it is shorter than 9 characters or has
    /// anything but `0-9a-f`.
    pub fn new(rev: impl Into<String>) -> Result<Self, BuildError> {
        let rev = rev.into();
        if rev.len() < 9 || !rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BuildError::InvalidOption {
                option: "rev",
                reason: "a rev is at least 9 characters of [0-9a-f]",
            });
        }
        Ok(Self(rev))
    }

    /// The revision text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Rev {
    type Error = BuildError;
    fn try_from(s: String) -> Result<Self, BuildError> {
        Self::new(s)
    }
}

impl From<Rev> for String {
    fn from(r: Rev) -> String {
        r.0
    }
}

/// What to do when the target exists (dropbox.md §5 `WriteMode`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteMode {
    /// Never overwrite; a different existing file is a conflict (default).
    #[default]
    Add,
    /// Replace an existing file.
    Overwrite,
    /// Replace the file only if its current revision is this one.
    Update(Rev),
}

impl WriteMode {
    fn to_json(&self) -> Value {
        match self {
            WriteMode::Add => Value::from("add"),
            WriteMode::Overwrite => Value::from("overwrite"),
            // A non-Void member cannot use the bare-string shorthand (§1.4).
            WriteMode::Update(rev) => {
                let mut m = Map::new();
                m.insert(".tag".into(), Value::from("update"));
                m.insert("update".into(), Value::from(rev.as_str()));
                Value::Object(m)
            }
        }
    }
}

/// Checks a `WritePathOrId` (dropbox.md §5:
/// `(/(.|[\r\n])*)|(ns:[0-9]+(/(.|[\r\n])*)?)|(id:.*)`), and refuses what the server
/// would answer with `path/malformed_path` (a trailing `/` or an empty component, §12
/// rule 19) or cannot name (`.` and `..`).
///
/// # Examples
/// ```
/// use upload_session::dropbox::validate_write_path;
/// for ok in ["/a.txt", "/Docs/ümlaut 😀.bin", "ns:123", "ns:123/x/y", "id:a4ayc_80_OEAAAAAAAAAXw"] {
///     assert!(validate_write_path(ok).is_ok(), "{ok}");
/// }
/// for bad in ["", "a.txt", "/", "/a/", "//a", "/a//b", "ns:", "ns:x/a", "ns:1/", "id:", "/a/../b"] {
///     assert!(validate_write_path(bad).is_err(), "{bad}");
/// }
/// ```
///
/// # Errors
/// [`BuildError::InvalidPath`] saying what is wrong.
pub fn validate_write_path(path: &str) -> Result<(), BuildError> {
    let bad = |reason| {
        Err(BuildError::InvalidPath {
            value: path.to_string(),
            reason,
        })
    };
    let rel = if let Some(rest) = path.strip_prefix("id:") {
        if rest.is_empty() {
            return bad("`id:` needs an id");
        }
        return Ok(());
    } else if let Some(rest) = path.strip_prefix("ns:") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return bad("`ns:` must be followed by a namespace id (digits)");
        }
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Ok(());
        }
        if !tail.starts_with('/') {
            return bad("`ns:<digits>` must be followed by `/` or nothing");
        }
        tail
    } else if path.starts_with('/') {
        path
    } else {
        return bad("a path must start with `/`, `ns:<digits>` or `id:`");
    };
    // `rel` starts with '/'.
    let mut parts = rel.split('/').skip(1).peekable();
    while let Some(p) = parts.next() {
        if p.is_empty() {
            return bad(if parts.peek().is_none() {
                "a path must not end with `/`"
            } else {
                "a path must not have an empty component"
            });
        }
        if p == "." || p == ".." {
            return bad("`.` and `..` are not names");
        }
    }
    Ok(())
}

/// Formats a `DropboxTimestamp` (`%Y-%m-%dT%H:%M:%SZ`, whole seconds, UTC).
fn dropbox_timestamp(t: SystemTime) -> Result<String, BuildError> {
    let bad = || BuildError::InvalidOption {
        option: "client_modified",
        reason: "must lie between 1970-01-01 and 9999-12-31",
    };
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_secs();
    // 10000-01-01T00:00:00Z
    if secs >= 253_402_300_800 {
        return Err(bad());
    }
    Ok(format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs)))
}

fn valid_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && crate::wallclock::parse_rfc3339(s).is_some()
}

/// Where and how to commit an upload (`CommitInfo`, dropbox.md §5). The path is
/// validated when the value is made, so an invalid commit never reaches the wire.
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upload_session::dropbox::{CommitInfo, Rev, WriteMode};
/// let c = CommitInfo::new("/Photos/été 😀.jpg").unwrap()
///     .mode(WriteMode::Update(Rev::new("a1c10ce0dd78").unwrap()))
///     .autorename(true)
///     .client_modified(UNIX_EPOCH + Duration::from_millis(1_431_445_838_900)).unwrap()
///     .mute(true)
///     .strict_conflict(true);
/// assert_eq!(c.path(), "/Photos/été 😀.jpg");
/// assert_eq!(c.client_modified_text(), Some("2015-05-12T15:50:38Z"));
/// assert!(CommitInfo::new("Photos/x.jpg").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CommitSaved", into = "CommitSaved")]
pub struct CommitInfo {
    path: String,
    mode: WriteMode,
    autorename: bool,
    client_modified: Option<String>,
    mute: bool,
    strict_conflict: bool,
}

impl CommitInfo {
    /// A commit to `path` (mode `add`, no autorename, no client time, not muted, no strict
    /// conflict: the service defaults).
    ///
    /// # Errors
    /// [`BuildError::InvalidPath`] when `path` is not a valid `WritePathOrId`
    /// ([`validate_write_path`]).
    pub fn new(path: impl Into<String>) -> Result<Self, BuildError> {
        let path = path.into();
        validate_write_path(&path)?;
        Ok(Self {
            path,
            mode: WriteMode::Add,
            autorename: false,
            client_modified: None,
            mute: false,
            strict_conflict: false,
        })
    }

    /// Sets the write mode.
    #[must_use]
    pub fn mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Lets the server pick another name on a conflict.
    #[must_use]
    pub fn autorename(mut self, on: bool) -> Self {
        self.autorename = on;
        self
    }

    /// Sets `client_modified` (sent in whole seconds; sub-second parts are dropped).
    ///
    /// # Errors
    /// [`BuildError::InvalidOption`] for times before 1970 or after year 9999.
    pub fn client_modified(mut self, t: SystemTime) -> Result<Self, BuildError> {
        self.client_modified = Some(dropbox_timestamp(t)?);
        Ok(self)
    }

    /// Suppresses the user notification.
    #[must_use]
    pub fn mute(mut self, on: bool) -> Self {
        self.mute = on;
        self
    }

    /// Treats identical content (and, with `update`, a deleted target) as a conflict.
    #[must_use]
    pub fn strict_conflict(mut self, on: bool) -> Self {
        self.strict_conflict = on;
        self
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The write mode.
    pub fn write_mode(&self) -> &WriteMode {
        &self.mode
    }

    /// Whether autorename is on.
    pub fn is_autorename(&self) -> bool {
        self.autorename
    }

    /// `client_modified` as it is sent.
    pub fn client_modified_text(&self) -> Option<&str> {
        self.client_modified.as_deref()
    }

    /// The JSON `CommitInfo`; default values are omitted as the official SDK does
    /// (dropbox.md §1.4).
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("path".into(), Value::from(self.path.as_str()));
        if self.mode != WriteMode::Add {
            m.insert("mode".into(), self.mode.to_json());
        }
        if self.autorename {
            m.insert("autorename".into(), Value::Bool(true));
        }
        if let Some(t) = &self.client_modified {
            m.insert("client_modified".into(), Value::from(t.as_str()));
        }
        if self.mute {
            m.insert("mute".into(), Value::Bool(true));
        }
        if self.strict_conflict {
            m.insert("strict_conflict".into(), Value::Bool(true));
        }
        Value::Object(m)
    }
}

/// Serialised [`CommitInfo`] (re-validated when read back).
#[derive(Serialize, Deserialize)]
struct CommitSaved {
    path: String,
    #[serde(default)]
    mode: WriteMode,
    #[serde(default)]
    autorename: bool,
    #[serde(default)]
    client_modified: Option<String>,
    #[serde(default)]
    mute: bool,
    #[serde(default)]
    strict_conflict: bool,
}

impl From<CommitInfo> for CommitSaved {
    fn from(c: CommitInfo) -> Self {
        Self {
            path: c.path,
            mode: c.mode,
            autorename: c.autorename,
            client_modified: c.client_modified,
            mute: c.mute,
            strict_conflict: c.strict_conflict,
        }
    }
}

impl TryFrom<CommitSaved> for CommitInfo {
    type Error = BuildError;
    fn try_from(s: CommitSaved) -> Result<Self, BuildError> {
        validate_write_path(&s.path)?;
        if let Some(t) = &s.client_modified {
            if !valid_timestamp(t) {
                return Err(BuildError::InvalidOption {
                    option: "client_modified",
                    reason: "must be %Y-%m-%dT%H:%M:%SZ",
                });
            }
        }
        Ok(Self {
            path: s.path,
            mode: s.mode,
            autorename: s.autorename,
            client_modified: s.client_modified,
            mute: s.mute,
            strict_conflict: s.strict_conflict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_omits_defaults_and_nests_update() {
        let c = CommitInfo::new("/a.txt").unwrap();
        assert_eq!(c.to_json(), serde_json::json!({"path": "/a.txt"}));
        let c = c
            .mode(WriteMode::Update(Rev::new("0123456789abcdef").unwrap()))
            .autorename(true)
            .mute(true)
            .strict_conflict(true)
            .client_modified(UNIX_EPOCH + Duration::from_secs(1_431_445_838))
            .unwrap();
        assert_eq!(
            c.to_json(),
            serde_json::json!({
                "path": "/a.txt",
                "mode": {".tag": "update", "update": "0123456789abcdef"},
                "autorename": true,
                "client_modified": "2015-05-12T15:50:38Z",
                "mute": true,
                "strict_conflict": true,
            })
        );
        let o = CommitInfo::new("/a").unwrap().mode(WriteMode::Overwrite);
        assert_eq!(o.to_json()["mode"], "overwrite");
    }

    #[test]
    fn timestamps_are_whole_seconds_and_bounded() {
        let c = CommitInfo::new("/a")
            .unwrap()
            .client_modified(UNIX_EPOCH + Duration::from_millis(999))
            .unwrap();
        assert_eq!(c.client_modified_text(), Some("1970-01-01T00:00:00Z"));
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert!(CommitInfo::new("/a").unwrap().client_modified(far).is_err());
        let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        let c = CommitInfo::new("/a")
            .unwrap()
            .client_modified(last)
            .unwrap();
        assert_eq!(c.client_modified_text(), Some("9999-12-31T23:59:59Z"));
        assert!(valid_timestamp("9999-12-31T23:59:59Z"));
        assert!(!valid_timestamp("2015-02-30T00:00:00Z"));
        assert!(!valid_timestamp("2015-05-12T15:50:38.5Z"));
    }

    #[test]
    fn serde_round_trip_revalidates() {
        let c = CommitInfo::new("ns:42/x")
            .unwrap()
            .mode(WriteMode::Update(Rev::new("abcdef0123").unwrap()));
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CommitInfo>(&s).unwrap(), c);
        for bad in [
            r#"{"path":"x"}"#,
            r#"{"path":"/a","mode":{"Update":"xyz"}}"#,
            r#"{"path":"/a","client_modified":"yesterday"}"#,
        ] {
            assert!(serde_json::from_str::<CommitInfo>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_with_control_characters_and_newlines_are_valid_write_paths() {
        // The regex allows them; the header encoder escapes them.
        assert!(validate_write_path("/a\r\nb").is_ok());
        assert!(validate_write_path("/\u{7f}").is_ok());
    }
}
