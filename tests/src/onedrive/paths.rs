//! Parsing of OneDrive request paths: Graph routes under `/onedrive/v1.0/` and upload URLs
//! under `/onedrive/up/` (onedrive.md §1.1).
//!
//! The part after `/onedrive/v1.0/` is percent-decoded **once, as a whole**, then parsed.
//! That accepts both encodings clients use: per-segment (`root:/a%20b/c.bin:`, the JS SDK)
//! and onedrive-api's single segment (`root:%2Fa%2Fc.bin:`). It is safe because OneDrive
//! names may contain neither `/` nor `:` (see [`valid_name`]), so decoding cannot change
//! the structure of a valid path.

use percent_encoding::percent_decode_str;

/// Prefix of every Graph route.
pub const GRAPH_PREFIX: &str = "/onedrive/v1.0/";
/// Prefix of every upload URL path.
pub const UPLOAD_PREFIX: &str = "/onedrive/up/";

/// Which drive a Graph route addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriveSel {
    /// `/me/drive`.
    Me,
    /// `/drives/{id}`: must already exist.
    Id(String),
    /// `/sites/{id}/drive`, `/users/{id}/drive`, `/groups/{id}/drive`: created on first use.
    /// Holds the key `sites/{id}` etc.
    Keyed(String),
}

/// Which item a Graph route addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemSel {
    /// A path from the root (`root`, `root:/a/b:`); empty = the root itself.
    Path(Vec<String>),
    /// An item id (`items/{id}`), optionally followed by a relative path
    /// (`items/{id}:/a/b:`) or a child name (`items/{id}/children/{name}`).
    Id {
        /// The item id.
        id: String,
        /// Relative path segments below it (empty = the item itself).
        rel: Vec<String>,
    },
}

/// A parsed Graph route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphRoute {
    /// The drive.
    pub drive: DriveSel,
    /// The item, `None` for the drive resource itself.
    pub item: Option<ItemSel>,
    /// The action after the item (`createUploadSession`, `content`), if any.
    pub action: Option<String>,
}

/// Why a path could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not a known route shape.
    Unknown,
    /// Bad percent-encoding (not UTF-8) or an invalid name in the path.
    Invalid(String),
}

/// Returns true when `name` is a valid OneDrive item name: non-empty, at most 255 bytes,
/// not `.`/`..`, no control characters and none of `" * : < > ? / \ |`, no trailing
/// space or dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.ends_with(' ')
        && !name.ends_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || "\"*:<>?/\\|".contains(c))
}

fn split_path(p: &str) -> Result<Vec<String>, PathError> {
    let mut out = Vec::new();
    for seg in p.split('/') {
        if seg.is_empty() {
            continue;
        }
        if !valid_name(seg) {
            return Err(PathError::Invalid(format!("invalid name in path: {seg:?}")));
        }
        out.push(seg.to_string());
    }
    Ok(out)
}

/// Parses the `:/path:` part that follows `root` or `items/{id}` (the leading `:` already
/// removed). Returns the segments and what follows the closing colon.
fn colon_path(s: &str) -> Result<(Vec<String>, &str), PathError> {
    let (path, tail) = match s.find(':') {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..).unwrap_or("")),
        None => (s, ""),
    };
    if !path.is_empty() && !path.starts_with('/') {
        return Err(PathError::Unknown);
    }
    Ok((split_path(path)?, tail))
}

/// Parses the action tail: `""` or `/action`.
fn action(tail: &str) -> Result<Option<String>, PathError> {
    if tail.is_empty() || tail == "/" {
        return Ok(None);
    }
    let a = tail.strip_prefix('/').ok_or(PathError::Unknown)?;
    if a.is_empty() || a.contains('/') || a.contains(':') {
        return Err(PathError::Unknown);
    }
    Ok(Some(a.to_string()))
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.~,".contains(&b))
}

/// Parses a request path starting with [`GRAPH_PREFIX`].
pub fn parse_graph(raw_path: &str) -> Result<GraphRoute, PathError> {
    let rest = raw_path
        .strip_prefix(GRAPH_PREFIX)
        .ok_or(PathError::Unknown)?;
    let rest = percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| PathError::Invalid("path is not valid UTF-8".into()))?;
    let rest: &str = &rest;
    let (drive, after) = if let Some(a) = rest.strip_prefix("me/drive") {
        (DriveSel::Me, a)
    } else if let Some(a) = rest.strip_prefix("drives/") {
        let (id, a) = a.split_at(a.find('/').unwrap_or(a.len()));
        if !id_ok(id) {
            return Err(PathError::Unknown);
        }
        (DriveSel::Id(id.to_string()), a)
    } else {
        let mut found = None;
        for kind in ["sites/", "users/", "groups/"] {
            if let Some(a) = rest.strip_prefix(kind) {
                let i = a.find('/').ok_or(PathError::Unknown)?;
                let id = a.get(..i).unwrap_or("");
                let a = a
                    .get(i..)
                    .and_then(|a| a.strip_prefix("/drive"))
                    .ok_or(PathError::Unknown)?;
                if !id_ok(id) {
                    return Err(PathError::Unknown);
                }
                found = Some((DriveSel::Keyed(format!("{kind}{id}")), a));
            }
        }
        found.ok_or(PathError::Unknown)?
    };
    if after.is_empty() || after == "/" {
        return Ok(GraphRoute {
            drive,
            item: None,
            action: None,
        });
    }
    let after = after.strip_prefix('/').ok_or(PathError::Unknown)?;
    if let Some(r) = after.strip_prefix("root") {
        if let Some(p) = r.strip_prefix(':') {
            let (segs, tail) = colon_path(p)?;
            return Ok(GraphRoute {
                drive,
                item: Some(ItemSel::Path(segs)),
                action: action(tail)?,
            });
        }
        return Ok(GraphRoute {
            drive,
            item: Some(ItemSel::Path(Vec::new())),
            action: action(r)?,
        });
    }
    if let Some(r) = after.strip_prefix("items/") {
        let end = r.find([':', '/']).unwrap_or(r.len());
        let (id, r) = r.split_at(end);
        if !id_ok(id) {
            return Err(PathError::Unknown);
        }
        if let Some(p) = r.strip_prefix(':') {
            let (segs, tail) = colon_path(p)?;
            return Ok(GraphRoute {
                drive,
                item: Some(ItemSel::Id {
                    id: id.to_string(),
                    rel: segs,
                }),
                action: action(tail)?,
            });
        }
        if let Some(c) = r.strip_prefix("/children/") {
            let end = c.find('/').unwrap_or(c.len());
            let (name, tail) = c.split_at(end);
            if !valid_name(name) {
                return Err(PathError::Invalid(format!("invalid name: {name:?}")));
            }
            return Ok(GraphRoute {
                drive,
                item: Some(ItemSel::Id {
                    id: id.to_string(),
                    rel: vec![name.to_string()],
                }),
                action: action(tail)?,
            });
        }
        return Ok(GraphRoute {
            drive,
            item: Some(ItemSel::Id {
                id: id.to_string(),
                rel: Vec::new(),
            }),
            action: action(r)?,
        });
    }
    Err(PathError::Unknown)
}

/// Parses an upload URL path (`/onedrive/up/{session}`) into the session id.
pub fn parse_upload(raw_path: &str) -> Option<&str> {
    let id = raw_path.strip_prefix(UPLOAD_PREFIX)?;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(id)
}

/// Extracts `(session id, query)` from an absolute or relative upload URL (used for
/// `@microsoft.graph.sourceUrl` and the inspection helpers). The host part is ignored.
pub fn split_upload_url(url: &str) -> Option<(&str, &str)> {
    let i = url.find(UPLOAD_PREFIX)?;
    let rest = url.get(i..)?;
    let (path, query) = match rest.find('?') {
        Some(q) => (rest.get(..q)?, rest.get(q + 1..)?),
        None => (rest, ""),
    };
    Some((parse_upload(path)?, query))
}

/// Returns the value of query parameter `name` when it occurs exactly once.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if found.is_some() {
                return None;
            }
            found = Some(v.into_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> GraphRoute {
        parse_graph(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn parses_the_addressing_forms() {
        let r = p("/onedrive/v1.0/me/drive/root:/a%20b/c.bin:/createUploadSession");
        assert_eq!(r.drive, DriveSel::Me);
        assert_eq!(
            r.item,
            Some(ItemSel::Path(vec!["a b".into(), "c.bin".into()]))
        );
        assert_eq!(r.action.as_deref(), Some("createUploadSession"));
        // onedrive-api: the whole `root:/a/c.bin:` as one encoded segment.
        let r = p("/onedrive/v1.0/me/drive/root:%2Fa%2Fc.bin:/createUploadSession");
        assert_eq!(
            r.item,
            Some(ItemSel::Path(vec!["a".into(), "c.bin".into()]))
        );
        let r = p("/onedrive/v1.0/drives/b!x1/items/ABC:/n.bin:/content");
        assert_eq!(r.drive, DriveSel::Id("b!x1".into()));
        assert_eq!(
            r.item,
            Some(ItemSel::Id {
                id: "ABC".into(),
                rel: vec!["n.bin".into()]
            })
        );
        assert_eq!(r.action.as_deref(), Some("content"));
        let r = p("/onedrive/v1.0/sites/s1/drive/items/ABC/createUploadSession");
        assert_eq!(r.drive, DriveSel::Keyed("sites/s1".into()));
        assert_eq!(
            r.item,
            Some(ItemSel::Id {
                id: "ABC".into(),
                rel: vec![]
            })
        );
        let r = p("/onedrive/v1.0/users/u/drive/items/P/children/x.bin/createUploadSession");
        assert_eq!(
            r.item,
            Some(ItemSel::Id {
                id: "P".into(),
                rel: vec!["x.bin".into()]
            })
        );
        let r = p("/onedrive/v1.0/groups/g/drive/root");
        assert_eq!(r.item, Some(ItemSel::Path(vec![])));
        let r = p("/onedrive/v1.0/me/drive/root:/a/b.bin");
        assert_eq!(
            r.item,
            Some(ItemSel::Path(vec!["a".into(), "b.bin".into()]))
        );
        assert_eq!(r.action, None);
        let r = p("/onedrive/v1.0/me/drive");
        assert_eq!(r.item, None);
    }

    #[test]
    fn rejects_bad_paths() {
        for s in [
            "/onedrive/v1.0/",
            "/onedrive/v1.0/you/drive",
            "/onedrive/v1.0/me/drive/rooty",
            "/onedrive/v1.0/me/drive/root:/a:/b/c",
            "/onedrive/v1.0/me/drive/root:a:",
            "/onedrive/v1.0/sites/x",
            "/onedrive/v1.0/drives//root",
        ] {
            assert!(parse_graph(s).is_err(), "{s}");
        }
        assert!(matches!(
            parse_graph("/onedrive/v1.0/me/drive/root:/a%FF:"),
            Err(PathError::Invalid(_))
        ));
        assert!(matches!(
            parse_graph("/onedrive/v1.0/me/drive/root:/a%3Cb:"),
            Err(PathError::Invalid(_))
        ));
    }

    #[test]
    fn upload_urls() {
        assert_eq!(parse_upload("/onedrive/up/abc123"), Some("abc123"));
        assert_eq!(parse_upload("/onedrive/up/abc/1"), None);
        assert_eq!(
            split_upload_url("http://h:1/onedrive/up/abc?tempauth=x"),
            Some(("abc", "tempauth=x"))
        );
        assert_eq!(query_param("tempauth=a&tempauth=b", "tempauth"), None);
        assert_eq!(query_param("tempauth=a", "tempauth").as_deref(), Some("a"));
    }
}
