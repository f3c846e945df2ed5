//! [`dropbox_api_arg`]: the `Dropbox-API-Arg` encoding (dropbox.md §1.3).

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Map, Value, json};
use upload_session::dropbox::{CommitInfo, DropboxConfig, DropboxUpload, api_arg_json};
use upload_session::{AccessToken, Output, UploadMachine};

/// Arbitrary strings (as paths, keys and nested values) through `api_arg_json`: the
/// result is printable ASCII (so no CR, LF or NUL can leak into the header), a valid
/// `HeaderValue`, and parses back (serde_json) to the same value. A path that
/// `CommitInfo` accepts also goes through a real upload: the `finish` request's header
/// decodes to exactly that path.
pub fn dropbox_api_arg(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // The whole input as one (lossy) string, and structured strings after it.
    let whole = String::from_utf8_lossy(data).into_owned();
    check(&json!({ "path": whole }));
    let a = String::arbitrary(&mut u).unwrap_or_default();
    let b = String::arbitrary(&mut u).unwrap_or_default();
    let n = i64::arbitrary(&mut u).unwrap_or(0);
    let mut m = Map::new();
    m.insert(a.clone(), json!(b));
    m.insert("path".into(), json!(a));
    m.insert("cursor".into(), json!({ "session_id": b, "offset": n }));
    m.insert("list".into(), json!([a, b, n, null, true]));
    check(&Value::Object(m));
    through_upload(&whole);
    through_upload(&a);
    // The same strings as paths under a folder.
    through_upload(&format!("/x/{a}"));
}

fn check(v: &Value) {
    let enc = api_arg_json(v);
    assert!(
        enc.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "not printable ASCII: {enc:?}"
    );
    assert!(!enc.contains(['\r', '\n', '\0']));
    HeaderValue::from_str(&enc).expect("not a valid header value");
    let back: Value = serde_json::from_str(&enc).expect("does not parse back");
    assert_eq!(&back, v, "round trip changed the value");
}

/// A zero-byte upload to `path`: start (answered by hand), then the finish, whose
/// header must carry the path.
fn through_upload(path: &str) {
    let Ok(commit) = CommitInfo::new(path) else {
        return;
    };
    let Ok(token) = AccessToken::new("t") else {
        return;
    };
    let cfg = DropboxConfig::with_hosts("https://content.test/2/", "https://api.test/2/");
    let mut m = DropboxUpload::builder(commit, 0)
        .config(cfg)
        .access_token(token)
        .build()
        .expect("a valid path did not build");
    let now = crate::shapes::origin();
    for _ in 0..64 {
        match m.poll_output(now) {
            Output::Send(req) => {
                let r = req.request();
                if r.uri().path().ends_with("/start") {
                    let mut resp =
                        http::Response::new(Bytes::from_static(b"{\"session_id\":\"s\"}"));
                    *resp.status_mut() = http::StatusCode::OK;
                    m.handle_response(now, req.id(), resp).expect("known id");
                    continue;
                }
                let h = r
                    .headers()
                    .get("dropbox-api-arg")
                    .expect("no Dropbox-API-Arg");
                assert!(h.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)));
                let v: Value = serde_json::from_slice(h.as_bytes()).expect("header is not JSON");
                let got = v.pointer("/commit/path").and_then(Value::as_str);
                assert_eq!(got, Some(path), "the header names another path");
                return;
            }
            Output::NeedData { .. } => panic!("a zero-byte upload asked for data"),
            Output::Event(_) => {}
            Output::Wait(_) | Output::Finished(_) => panic!("no finish request"),
        }
    }
    panic!("no finish request after 64 outputs");
}
