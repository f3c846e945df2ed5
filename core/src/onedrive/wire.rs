//! OneDrive requests and response parsing. Every parser is total: any body gives a
//! value or an error string, never a panic, and nothing larger than the configured cap
//! is parsed.

use super::config::{DeferCommit, UploadOptions};
use super::item::DriveItem;
use crate::error::ServiceCodes;
use crate::range::{ByteRange, ExpectedRange};
use crate::secret::AccessToken;
use crate::wallclock::format_rfc3339;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_MATCH};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use serde_json::{Map, Value};

fn request(method: Method, uri: &Uri, body: Bytes) -> Request<Bytes> {
    let len = body.len() as u64;
    let mut r = Request::new(body);
    *r.method_mut() = method;
    *r.uri_mut() = uri.clone();
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// The createUploadSession body (onedrive.md §1.3). Never sends `@odata.type` (rule 5).
pub(crate) fn create_body(options: &UploadOptions, size: u64) -> Bytes {
    let mut item = Map::new();
    if let Some(c) = options.conflict {
        item.insert(
            "@microsoft.graph.conflictBehavior".into(),
            Value::from(c.as_str()),
        );
    }
    if let Some(name) = options.target.name() {
        item.insert("name".into(), Value::from(name));
    }
    if let Some(d) = &options.description {
        item.insert("description".into(), Value::from(d.as_str()));
    }
    if options.declare_file_size {
        item.insert("fileSize".into(), Value::from(size));
    }
    if let Some(fsi) = &options.file_system_info {
        let mut m = Map::new();
        if let Some(t) = fsi.created {
            m.insert("createdDateTime".into(), Value::from(format_rfc3339(t)));
        }
        if let Some(t) = fsi.last_modified {
            m.insert(
                "lastModifiedDateTime".into(),
                Value::from(format_rfc3339(t)),
            );
        }
        if !m.is_empty() {
            item.insert("fileSystemInfo".into(), Value::Object(m));
        }
    }
    let mut root = Map::new();
    root.insert("item".into(), Value::Object(item));
    if options.defer_commit != DeferCommit::Off {
        root.insert("deferCommit".into(), Value::Bool(true));
    }
    Bytes::from(serde_json::to_vec(&Value::Object(root)).unwrap_or_default())
}

/// `POST …/createUploadSession` with the bearer token.
pub(crate) fn create(
    uri: &Uri,
    options: &UploadOptions,
    size: u64,
    token: &AccessToken,
) -> Request<Bytes> {
    let mut r = request(Method::POST, uri, create_body(options, size));
    let h = r.headers_mut();
    h.insert(AUTHORIZATION, token.header_value().clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(m) = options.if_match.as_deref() {
        if let Ok(v) = HeaderValue::from_str(m) {
            h.insert(IF_MATCH, v);
        }
    }
    r
}

/// `PUT {uploadUrl}` with `Content-Range`; no `Authorization` (onedrive.md §2.4).
pub(crate) fn fragment(url: &Uri, range: ByteRange, total: u64, body: Bytes) -> Request<Bytes> {
    let mut r = request(Method::PUT, url, body);
    if let Ok(v) = HeaderValue::from_str(&range.content_range(total)) {
        r.headers_mut().insert(CONTENT_RANGE, v);
    }
    r
}

/// `GET {uploadUrl}` (status).
pub(crate) fn status(url: &Uri) -> Request<Bytes> {
    let mut r = request(Method::GET, url, Bytes::new());
    r.headers_mut().remove(CONTENT_LENGTH);
    r
}

/// `POST {uploadUrl}` with an empty body (deferCommit completion, §4.3).
pub(crate) fn commit(url: &Uri) -> Request<Bytes> {
    request(Method::POST, url, Bytes::new())
}

/// `DELETE {uploadUrl}`.
pub(crate) fn delete(url: &Uri) -> Request<Bytes> {
    let mut r = request(Method::DELETE, url, Bytes::new());
    r.headers_mut().remove(CONTENT_LENGTH);
    r
}

/// `GET {graph item}` with the bearer token.
pub(crate) fn get_item(uri: &Uri, token: &AccessToken) -> Request<Bytes> {
    let mut r = request(Method::GET, uri, Bytes::new());
    r.headers_mut().remove(CONTENT_LENGTH);
    r.headers_mut()
        .insert(AUTHORIZATION, token.header_value().clone());
    r
}

/// `PUT {graph item}/content` with an empty body (zero-byte files, §2.1).
pub(crate) fn simple_upload(
    uri: &Uri,
    options: &UploadOptions,
    token: &AccessToken,
) -> Request<Bytes> {
    let mut r = request(Method::PUT, uri, Bytes::new());
    let h = r.headers_mut();
    h.insert(AUTHORIZATION, token.header_value().clone());
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(m) = options.if_match.as_deref() {
        if let Ok(v) = HeaderValue::from_str(m) {
            h.insert(IF_MATCH, v);
        }
    }
    r
}

/// An `uploadSession` body (create, 202, status).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SessionBody {
    pub upload_url: Option<String>,
    pub expiration: Option<String>,
    /// `None`: the field is absent; `Some(vec![])`: present and empty.
    pub ranges: Option<Vec<ExpectedRange>>,
}

fn json_object(body: &[u8], cap: usize) -> Result<Map<String, Value>, String> {
    if body.len() > cap {
        return Err(format!("body of {} bytes exceeds {cap}", body.len()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("body is not a JSON object".into()),
        Err(e) => Err(format!("body is not JSON: {e}")),
    }
}

/// Parses an uploadSession body.
pub(crate) fn parse_session(body: &[u8], cap: usize) -> Result<SessionBody, String> {
    let m = json_object(body, cap)?;
    let string = |key: &str| -> Result<Option<String>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` is not a string")),
        }
    };
    let ranges = match m.get("nextExpectedRanges") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len().min(16));
            for v in a {
                let s = v
                    .as_str()
                    .ok_or("`nextExpectedRanges` entry is not a string")?;
                out.push(
                    ExpectedRange::parse(s)
                        .ok_or_else(|| format!("bad `nextExpectedRanges` entry {s:?}"))?,
                );
            }
            Some(out)
        }
        Some(_) => return Err("`nextExpectedRanges` is not an array".into()),
    };
    Ok(SessionBody {
        upload_url: string("uploadUrl")?,
        expiration: string("expirationDateTime")?,
        ranges,
    })
}

/// What a 200/201 body says.
pub(crate) enum Finished {
    /// A driveItem with an id.
    Item(Box<DriveItem>),
    /// No id: an empty body, an uploadSession-shaped body (§11 rule 27), or anything
    /// else that is not an item. The item must be fetched.
    NoItem,
}

/// Parses a 200/201 completion body.
pub(crate) fn parse_finished(body: &[u8], cap: usize) -> Finished {
    if body.is_empty() || body.len() > cap {
        return Finished::NoItem;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => DriveItem::from_json(v).map_or(Finished::NoItem, |i| Finished::Item(Box::new(i))),
        Err(_) => Finished::NoItem,
    }
}

/// Parses an item body (GET); an error string when it is not an item.
pub(crate) fn parse_item(body: &[u8], cap: usize) -> Result<DriveItem, String> {
    let m = json_object(body, cap)?;
    DriveItem::from_json(Value::Object(m)).ok_or_else(|| "item without an `id`".to_string())
}

/// Reads the error code chain of an error body (`error.code`, then nested `innerError`
/// / `innererror` codes, onedrive.md §5.1). Non-JSON bodies give an empty chain.
pub(crate) fn error_codes(body: &[u8], cap: usize) -> ServiceCodes {
    let mut codes = Vec::new();
    if body.len() > cap {
        return ServiceCodes(codes);
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ServiceCodes(codes);
    };
    let mut cur = v.get("error");
    for _ in 0..8 {
        let Some(obj) = cur else { break };
        if let Some(c) = obj.get("code").and_then(Value::as_str) {
            codes.push(c.chars().take(128).collect());
        }
        cur = obj.get("innerError").or_else(|| obj.get("innererror"));
    }
    ServiceCodes(codes)
}

/// True for `localhost` and loopback addresses (`127.0.0.0/8`, `::1`), as a URI host
/// (IPv6 in brackets).
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The `uploadUrl` policy (issue 7, onedrive.md §1.4 and §2.4): file bytes go only to
/// - an `https` URL (any host: the service names its own upload hosts, the spec says the
///   host is opaque and differs from Graph's), or
/// - a plain `http` URL whose host is loopback (`localhost`, `127.0.0.0/8`, `::1`: an
///   emulator on this machine), or equals the host and port of `graph_base` when that
///   base is itself plain `http` (the caller chose to talk plain HTTP to that host);
///
/// and never to a URL with user info (`https://graph.microsoft.com@evil.example/`: the
/// host is `evil.example`, and some clients turn user info into credentials). Real
/// upload URLs never have any. When `hosts` (the caller's `upload_url_hosts`) is not
/// empty, the host must also be one of them or a subdomain of one. `Err` names the rule
/// broken; the URL is never echoed. The caller has already checked that the URL is
/// absolute (scheme and authority).
pub(crate) fn check_upload_url(
    url: &Uri,
    graph_base: &Uri,
    hosts: &[String],
) -> Result<(), &'static str> {
    let authority = url.authority().ok_or("`uploadUrl` is not absolute")?;
    if authority.as_str().contains('@') {
        return Err("`uploadUrl` carries user info");
    }
    if !hosts.is_empty() && !hosts.iter().any(|h| host_within(authority.host(), h)) {
        return Err("`uploadUrl` host is not in `upload_url_hosts`");
    }
    match url.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let host = authority.host();
            let same_plain_base = graph_base.scheme_str() == Some("http")
                && graph_base.authority().is_some_and(|b| {
                    b.host().eq_ignore_ascii_case(host) && b.port_u16() == authority.port_u16()
                });
            if is_loopback_host(host) || same_plain_base {
                Ok(())
            } else {
                Err(
                    "`uploadUrl` is plain http to a host that is neither loopback nor the configured Graph host",
                )
            }
        }
        _ => Err("`uploadUrl` is neither https nor http"),
    }
}

/// True when `host` is `allowed` or a subdomain of it (ASCII case-insensitive; a
/// trailing root dot on `host` is ignored).
fn host_within(host: &str, allowed: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() == allowed.len() {
        return host.eq_ignore_ascii_case(allowed);
    }
    host.len() > allowed.len()
        && host.is_char_boundary(host.len() - allowed.len())
        && host.as_bytes()[host.len() - allowed.len() - 1] == b'.'
        && host[host.len() - allowed.len()..].eq_ignore_ascii_case(allowed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_url_hosts_match_the_host_and_its_subdomains_only() {
        assert!(host_within("sharepoint.com", "sharepoint.com"));
        assert!(host_within("contoso-my.SharePoint.com", "sharepoint.COM"));
        assert!(host_within("a.b.sharepoint.com.", "sharepoint.com"));
        assert!(!host_within("evilsharepoint.com", "sharepoint.com"));
        assert!(!host_within(
            "sharepoint.com.evil.example",
            "sharepoint.com"
        ));
        assert!(!host_within("harepoint.com", "sharepoint.com"));
        assert!(!host_within("", "sharepoint.com"));
        // Not a panic on multi-byte hosts (a hostile URL's host need not be ASCII).
        assert!(!host_within("é.sharepoint.cém", "sharepoint.com"));
        let base: Uri = "https://graph.microsoft.com/v1.0".parse().unwrap();
        let hosts = ["sharepoint.com".to_string()];
        let ok: Uri = "https://x.sharepoint.com/up".parse().unwrap();
        let other: Uri = "https://up.example/up".parse().unwrap();
        assert_eq!(check_upload_url(&ok, &base, &hosts), Ok(()));
        assert!(check_upload_url(&other, &base, &hosts).is_err());
        assert_eq!(check_upload_url(&other, &base, &[]), Ok(()));
    }
    use crate::onedrive::config::{ConflictBehavior, FileSystemInfo, Target};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn create_body_has_the_documented_shape() {
        let mut o = UploadOptions::new(Target::path("/a/b.bin"));
        o.conflict = Some(ConflictBehavior::Rename);
        o.description = Some("d".into());
        o.defer_commit = DeferCommit::Auto;
        o.file_system_info = Some(FileSystemInfo {
            created: Some(UNIX_EPOCH + Duration::from_secs(1_704_067_200)),
            last_modified: None,
        });
        let v: Value = serde_json::from_slice(&create_body(&o, 1234)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "item": {
                    "@microsoft.graph.conflictBehavior": "rename",
                    "name": "b.bin",
                    "description": "d",
                    "fileSize": 1234,
                    "fileSystemInfo": {"createdDateTime": "2024-01-01T00:00:00Z"}
                },
                "deferCommit": true
            })
        );
        let item_target = UploadOptions::new(Target::item(super::super::Drive::Me, "X"));
        let v: Value = serde_json::from_slice(&create_body(&item_target, 5)).unwrap();
        assert!(v["item"].get("name").is_none());
        assert_eq!(v["item"]["@microsoft.graph.conflictBehavior"], "replace");
        assert!(v.get("deferCommit").is_none());
    }

    #[test]
    fn session_bodies_parse_strictly() {
        let s = parse_session(
            br#"{"uploadUrl":"https://u/x","expirationDateTime":"2015-01-29T09:21:55.523Z","nextExpectedRanges":["0-"]}"#,
            1024,
        )
        .unwrap();
        assert_eq!(s.upload_url.as_deref(), Some("https://u/x"));
        assert_eq!(s.ranges.unwrap()[0].start, 0);
        let s = parse_session(br#"{"nextExpectedRanges":[]}"#, 1024).unwrap();
        assert_eq!(s.ranges, Some(vec![]));
        let s = parse_session(br#"{"expirationDateTime":"x"}"#, 1024).unwrap();
        assert_eq!(s.ranges, None);
        for bad in [
            &br#"{"nextExpectedRanges":"0-"}"#[..],
            br#"{"nextExpectedRanges":[5]}"#,
            br#"{"nextExpectedRanges":["9-3"]}"#,
            br#"{"uploadUrl":7}"#,
            br#"[1,2]"#,
            br#"{"nextExpectedRanges":["0-"]"#,
            b"",
        ] {
            assert!(
                parse_session(bad, 1024).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_session(&[b' '; 2000], 1024).is_err());
    }

    #[test]
    fn every_prefix_of_a_recorded_response_parses_without_panicking() {
        let bodies: [&[u8]; 3] = [
            br#"{"expirationDateTime":"2015-01-29T09:21:55.523Z","nextExpectedRanges":["26-","77829-99375"]}"#,
            br#"{"id":"912310013A123","name":"largefile.vhd","size":128,"file":{"hashes":{"quickXorHash":"YRDDGAAAAAAAAAAAAwAAAAAAAAA="}}}"#,
            br#"{"error":{"code":"invalidRange","message":"m","innerError":{"code":"fragmentOverlap"}}}"#,
        ];
        for b in bodies {
            for cut in 0..=b.len() {
                let _ = parse_session(&b[..cut], 4096);
                let _ = parse_item(&b[..cut], 4096);
                let _ = parse_finished(&b[..cut], 4096);
                let _ = error_codes(&b[..cut], 4096);
            }
        }
    }

    #[test]
    fn error_codes_walk_both_casings() {
        let c = error_codes(
            br#"{"error":{"code":"activityLimitReached","innerError":{"code":"throttledRequest","innererror":{"code":"quota"}}}}"#,
            4096,
        );
        assert_eq!(c.0, ["activityLimitReached", "throttledRequest", "quota"]);
        assert!(error_codes(b"<html>", 4096).0.is_empty());
    }

    #[test]
    fn finished_bodies_without_id_need_a_fetch() {
        assert!(matches!(parse_finished(b"", 100), Finished::NoItem));
        assert!(matches!(
            parse_finished(br#"{"nextExpectedRanges":["0-"]}"#, 100),
            Finished::NoItem
        ));
        match parse_finished(br#"{"id":"A","size":3}"#, 100) {
            Finished::Item(i) => assert_eq!((i.id.as_str(), i.size), ("A", Some(3))),
            Finished::NoItem => panic!("expected an item"),
        }
    }
}
