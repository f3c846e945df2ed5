//! Rules 1-25: transport, encoding and response shapes.

use super::*;

fn with_header(mut r: Request<Bytes>, name: &'static str, value: &[u8]) -> Request<Bytes> {
    r.headers_mut()
        .insert(name, http::HeaderValue::from_bytes(value).unwrap());
    r
}

fn without_header(mut r: Request<Bytes>, name: &'static str) -> Request<Bytes> {
    r.headers_mut().remove(name);
    r
}

#[test]
fn dropbox_rule_1_post_only() {
    let mut h = H::new();
    for m in ["GET", "PUT", "DELETE", "PATCH"] {
        let mut r = up("start", "{}", b"");
        *r.method_mut() = http::Method::from_bytes(m.as_bytes()).unwrap();
        let resp = h.send(r);
        assert_eq!(resp.status(), 405, "{m}");
    }
    assert_eq!(h.v(Violation::UnknownRoute), 4);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // POST works.
    h.seq();
}

#[test]
fn dropbox_rule_2_unknown_route_404_plain_text() {
    let mut h = H::new();
    for path in [
        "/dropbox/content/2/files/upload_session/begin",
        "/dropbox/api/2/files/upload_session/finish_batch/status",
        "/dropbox/content/3/files/upload_session/start",
        "/dropbox/elsewhere/2/files/upload_session/start",
    ] {
        let mut r = up("start", "{}", b"");
        *r.uri_mut() = path.parse().unwrap();
        let resp = h.send(r);
        assert_eq!(resp.status(), 404, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
    assert_eq!(h.v(Violation::UnknownRoute), 4);
    // Every documented route is known (none answers 404).
    for route in [
        "files/upload_session/start_batch",
        "files/upload_session/finish_batch",
        "files/upload_session/finish_batch_v2",
        "files/upload_session/finish_batch/check",
        "files/get_metadata",
    ] {
        let r = h.send(rpc(route, "{}"));
        assert_ne!(r.status(), 404, "{route}");
    }
}

#[test]
fn dropbox_rule_3_strict_hosts() {
    let mut h = H::new();
    // Upload route on the api host.
    let mut r = up("start", "{}", b"");
    *r.uri_mut() = "/dropbox/api/2/files/upload_session/start".parse().unwrap();
    assert_400(
        &h.send(r),
        "only available on host \"content.dropboxapi.com\"",
    );
    // RPC route on the content host.
    let mut r = rpc("files/upload_session/start_batch", r#"{"num_sessions":1}"#);
    *r.uri_mut() = "/dropbox/content/2/files/upload_session/start_batch"
        .parse()
        .unwrap();
    assert_400(&h.send(r), "only available on host \"api.dropboxapi.com\"");
    assert_eq!(h.v(Violation::WrongHost), 2);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);

    // Lenient mode accepts either host.
    let mut h = H::cfg(|c| c.dropbox.strict_hosts = false);
    let mut r = up("start", "{}", b"");
    *r.uri_mut() = "/dropbox/api/2/files/upload_session/start".parse().unwrap();
    assert_eq!(h.send(r).status(), 200);
    assert_eq!(h.v(Violation::WrongHost), 0);
}

#[test]
fn dropbox_rule_4_missing_authorization() {
    let mut h = H::new();
    let r = h.send(without_header(up("start", "{}", b""), "authorization"));
    assert_400(
        &r,
        "Must provide HTTP header \"Authorization\" or URL parameter \"authorization\"",
    );
    assert_eq!(h.v(Violation::MissingAuthorization), 1);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // The query parameter is an accepted alternative.
    let mut r = without_header(up("start", "{}", b""), "authorization");
    *r.uri_mut() = format!(
        "/dropbox/content/2/files/upload_session/start?authorization=Bearer%20{DEFAULT_TOKEN}"
    )
    .parse()
    .unwrap();
    assert_eq!(h.send(r).status(), 200);
    assert_eq!(h.violations(), 1);
}

#[test]
fn dropbox_rule_5_malformed_or_unknown_token() {
    let mut h = H::new();
    for bad in [
        "Basic abc",
        "Bearer",
        "Bearer ",
        "bearer emulator-token",
        "Bearer a b",
    ] {
        let r = h.send(with_header(
            up("start", "{}", b""),
            "authorization",
            bad.as_bytes(),
        ));
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            body_text(&r),
            "The given OAuth 2 access token is malformed."
        );
    }
    let r = h.send(with_header(
        up("start", "{}", b""),
        "authorization",
        b"Bearer not-a-known-token",
    ));
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = body_json(&r);
    assert_eq!(v["error"], json!({".tag": "invalid_access_token"}));
    assert_eq!(summary(&r), "invalid_access_token");
    assert_eq!(h.v(Violation::BadAuthorization), 6);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
}

#[test]
fn dropbox_rule_6_expired_token_401() {
    let mut h = H::new();
    let sid = h.seq();
    h.emu.expire_tokens();
    let r = h.append(&sid, 0, false, b"abc");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        body_json(&r),
        json!({"error_summary": "expired_access_token/", "error": {".tag": "expired_access_token"}})
    );
    assert_eq!(h.info(&sid).unwrap().held, 0, "no effect");
    // First report is not a violation; the client refreshes and goes on.
    assert_eq!(h.violations(), 0);
    let fresh = h.emu.issue_token();
    let mut r = up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0}})),
        b"abc",
    );
    r.headers_mut()
        .insert("authorization", format!("Bearer {fresh}").parse().unwrap());
    assert_ok_null(&h.send(r));
    // Reusing the old token after switching to the fresh one is a violation.
    let r = h.append(&sid, 3, false, b"x");
    assert_eq!(r.status(), 401);
    assert_eq!(h.v(Violation::ExpiredTokenReused), 1);
}

#[test]
fn dropbox_rule_7_upload_content_type_exact() {
    let mut h = H::new();
    for ct in [
        "application/json; charset=UTF-8",
        "application/octet-stream; charset=utf8",
        "application/json",
        "text/plain",
    ] {
        let r = h.send(with_header(
            up("start", "{}", b"x"),
            "content-type",
            ct.as_bytes(),
        ));
        assert_400(&r, "Bad HTTP \"Content-Type\" header");
        assert!(body_text(&r).contains(ct), "{}", body_text(&r));
        assert!(body_text(&r).contains(
            "Expecting one of \"application/octet-stream\", \"text/plain; charset=dropbox-cors-hack\""
        ));
    }
    // Missing, even on an empty body.
    let r = h.send(without_header(up("start", "{}", b""), "content-type"));
    assert_400(&r, "Bad HTTP \"Content-Type\" header");
    assert_eq!(h.v(Violation::BadContentType), 5);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // The browser variant is accepted.
    let r = h.send(with_header(
        up("start", "{}", b""),
        "content-type",
        b"text/plain; charset=dropbox-cors-hack",
    ));
    assert_eq!(r.status(), 200);
}

#[test]
fn dropbox_rule_8_rpc_content_type() {
    let mut h = H::new();
    let r = h.send(with_header(
        rpc("files/upload_session/start_batch", r#"{"num_sessions":2}"#),
        "content-type",
        b"application/octet-stream",
    ));
    assert_400(&r, "Bad HTTP \"Content-Type\" header");
    assert_eq!(h.v(Violation::BadContentType), 1);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":2}"#,
    ));
    assert_eq!(r.status(), 200);
}

#[test]
fn dropbox_rule_9_arg_missing_or_both() {
    let mut h = H::new();
    let r = h.send(without_header(up("start", "{}", b""), "dropbox-api-arg"));
    assert_400(
        &r,
        "Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter \"arg\"",
    );
    let mut r = up("start", "{}", b"");
    *r.uri_mut() = "/dropbox/content/2/files/upload_session/start?arg=%7B%7D"
        .parse()
        .unwrap();
    assert_400(&h.send(r), "Can't provide both");
    assert_eq!(h.v(Violation::MissingArgument), 2);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // The query parameter alone works (UTF-8, form-encoded).
    let sid = h.seq();
    let mut r = without_header(up("append_v2", "", b"hi"), "dropbox-api-arg");
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let enc: String = form_urlencoded::byte_serialize(a.as_bytes()).collect();
    *r.uri_mut() = format!("/dropbox/content/2/files/upload_session/append_v2?arg={enc}")
        .parse()
        .unwrap();
    assert_ok_null(&h.send(r));
    assert_eq!(h.info(&sid).unwrap().held, 2);
}

#[test]
fn dropbox_rule_10_non_ascii_arg_rejected() {
    let mut h = H::new();
    let sid = h.seq();
    let raw = format!(
        r#"{{"cursor":{{"session_id":"{sid}","offset":0}},"commit":{{"path":"/tëst.txt"}}}}"#
    );
    let r = h.send(with_header(
        up("finish", "", b"x"),
        "dropbox-api-arg",
        raw.as_bytes(),
    ));
    assert_400(
        &r,
        "HTTP header \"Dropbox-API-Arg\": could not decode input as JSON",
    );
    // A raw tab (outside 0x20-0x7E) too.
    let r = h.send(with_header(
        up("start", "", b""),
        "dropbox-api-arg",
        b"{\"close\":\tfalse}",
    ));
    assert_400(&r, "could not decode input as JSON");
    assert_eq!(h.v(Violation::NonAsciiApiArg), 2);
    assert!(h.file("/tëst.txt").is_none());
    assert_eq!(h.info(&sid).unwrap().held, 0);

    // Escaped, it is accepted and decodes to the original name.
    let esc = raw.replace('ë', "\\u00eb");
    let r = h.send(with_header(
        up("finish", "", b"x"),
        "dropbox-api-arg",
        esc.as_bytes(),
    ));
    assert_eq!(r.status(), 200, "{}", body_text(&r));
    assert!(h.file("/tëst.txt").is_some());

    // Lenient toggle: raw UTF-8 accepted.
    let mut h = H::cfg(|c| c.dropbox.accept_raw_utf8_arg = true);
    let sid = h.seq();
    let raw = format!(
        r#"{{"cursor":{{"session_id":"{sid}","offset":0}},"commit":{{"path":"/tëst.txt"}}}}"#
    );
    let r = h.send(with_header(
        up("finish", "", b"x"),
        "dropbox-api-arg",
        raw.as_bytes(),
    ));
    assert_eq!(r.status(), 200);
    assert!(h.file("/tëst.txt").is_some());
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_10_del_rejected_even_in_lenient_mode() {
    // `http` refuses DEL in header values, so check the decoder directly.
    for lenient in [false, true] {
        let e = crate::dropbox::args::decode_header_json(b"{\"a\":\"\x7f\"}", lenient).unwrap_err();
        assert_eq!(e.violation, Violation::NonAsciiApiArg);
        assert_eq!(e.msg, "could not decode input as JSON");
    }
    assert!(crate::dropbox::args::decode_header_json(b"{\"a\":\"\\u007f\"}", false).is_ok());
}

#[test]
fn dropbox_rule_11_arg_not_json() {
    let mut h = H::new();
    for bad in ["", "{", "close=true", "{\"close\":tru}", "{} {}"] {
        let r = h.send(up("start", bad, b""));
        assert_400(
            &r,
            "Error in call to API function \"files/upload_session/start\": HTTP header \"Dropbox-API-Arg\": could not decode input as JSON",
        );
    }
    assert_eq!(h.v(Violation::MalformedArgument), 5);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // RPC body too.
    let r = h.send(rpc("files/upload_session/start_batch", "{num_sessions:1}"));
    assert_400(&r, "request body: could not decode input as JSON");
}

#[test]
fn dropbox_rule_12_unknown_field() {
    let mut h = H::new();
    let sid = h.seq();
    // A v2 argument sent to the v1 route (rclone#2829).
    let r = h.send(up(
        "append",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0}})),
        b"x",
    ));
    assert_400(
        &r,
        "HTTP header \"Dropbox-API-Arg\": unknown field 'cursor'",
    );
    let r = h.send(up("start", r#"{"close":false,"colse":true}"#, b""));
    assert_400(&r, "unknown field 'colse'");
    let r = h.append(&sid, 0, false, b"");
    assert_ok_null(&r);
    let r = h.send(up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0, "length": 1}})),
        b"x",
    ));
    assert_400(&r, "cursor: unknown field 'length'");
    let r = h.send(rpc(
        "files/upload_session/finish_batch_v2",
        r#"{"entries":[],"root":"x"}"#,
    ));
    assert_400(&r, "request body: unknown field 'root'");
    assert_eq!(h.v(Violation::MalformedArgument), 4);
    assert_eq!(h.info(&sid).unwrap().held, 0);
}

#[test]
fn dropbox_rule_13_missing_required_field() {
    let mut h = H::new();
    let sid = h.seq();
    let cases = [
        (
            "append_v2",
            json!({"close": false}),
            "missing required field 'cursor'",
        ),
        (
            "append_v2",
            json!({"cursor": {"offset": 0}}),
            "cursor: missing required field 'session_id'",
        ),
        (
            "append_v2",
            json!({"cursor": {"session_id": sid}}),
            "cursor: missing required field 'offset'",
        ),
        (
            "finish",
            json!({"cursor": {"session_id": sid, "offset": 0}}),
            "missing required field 'commit'",
        ),
        (
            "finish",
            json!({"cursor": {"session_id": sid, "offset": 0}, "commit": {"mode": "add"}}),
            "commit: missing required field 'path'",
        ),
    ];
    for (route, a, msg) in cases {
        let r = h.send(up(route, &arg(a), b"x"));
        assert_400(&r, msg);
    }
    assert_eq!(h.v(Violation::MalformedArgument), 5);
    assert_eq!(h.info(&sid).unwrap().held, 0);
}

#[test]
fn dropbox_rule_14_wrong_types() {
    let mut h = H::new();
    let sid = h.seq();
    for off in [
        json!("0"),
        json!(-1),
        json!(1.5),
        json!(18446744073709551616u128 as f64),
        json!(null),
    ] {
        let r = h.send(up(
            "append_v2",
            &arg(json!({"cursor": {"session_id": sid, "offset": off}})),
            b"x",
        ));
        assert_400(&r, "cursor.offset:");
    }
    // u64 beyond range written literally.
    let r = h.send(up(
        "append_v2",
        &format!(r#"{{"cursor":{{"session_id":"{sid}","offset":18446744073709551616}}}}"#),
        b"x",
    ));
    assert_400(&r, "cursor.offset:");
    let r = h.send(up("start", r#"{"close":"yes"}"#, b""));
    assert_400(&r, "close:");
    let r = h.send(up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": 5, "offset": 0}})),
        b"x",
    ));
    assert_400(&r, "cursor.session_id:");
    let r = h.send(up(
        "finish",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0}, "commit": {"path": null}})),
        b"x",
    ));
    assert_400(&r, "commit.path: 'null' expected to be a string, got null");
    let r = h.send(up("start", "[]", b""));
    assert_400(&r, "expected to be an object");
    assert_eq!(h.v(Violation::MalformedArgument), 10);
    assert_eq!(h.info(&sid).unwrap().held, 0);
}

#[test]
fn dropbox_rule_15_union_tags() {
    let mut h = H::new();
    let sid = h.seq();
    let fin = |mode: Value| {
        arg(
            json!({"cursor": {"session_id": sid, "offset": 0}, "commit": {"path": "/a", "mode": mode}}),
        )
    };
    let r = h.send(up("finish", &fin(json!({"update": "015000000001"})), b""));
    assert_400(&r, "commit.mode: missing '.tag' key");
    let r = h.send(up("finish", &fin(json!({".tag": "sideways"})), b""));
    assert_400(&r, "commit.mode: unknown tag 'sideways'");
    let r = h.send(up("finish", &fin(json!("replace")), b""));
    assert_400(&r, "unknown tag 'replace'");
    let r = h.send(up("start", r#"{"session_type":{".tag":"parallel"}}"#, b""));
    assert_400(&r, "session_type: unknown tag 'parallel'");
    let r = h.send(up("start", r#"{"session_type":{"concurrent":null}}"#, b""));
    assert_400(&r, "session_type: missing '.tag' key");
    assert_eq!(h.v(Violation::MalformedArgument), 5);
    assert!(h.file("/a").is_none());
}

#[test]
fn dropbox_rule_16_void_shorthand() {
    let mut h = H::new();
    let sid = h.start_ok(json!({"session_type": "concurrent"}), b"");
    assert!(h.info(&sid).unwrap().concurrent);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/v.txt", "mode": "overwrite"}),
        b"v",
    );
    assert_eq!(r.status(), 200);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/v.txt", "mode": {".tag": "add"}}),
        b"w",
    );
    assert_409(&r, "path/conflict/file");
    let sid = h.seq();
    let r = h.finish_with(&sid, 0, json!({"path": "/v.txt", "mode": "update"}), b"w");
    assert_400(&r, "tag 'update' requires a value");
    assert_eq!(h.v(Violation::MalformedArgument), 1);
}

#[test]
fn dropbox_rule_17_content_hash_format() {
    let mut h = H::new();
    let r = h.start(json!({"content_hash": "ab".repeat(31) + "a"}), b"");
    assert_400(&r, "content_hash: ");
    assert!(body_text(&r).contains("length must be 64"));
    let r = h.start(json!({"content_hash": "zz".repeat(32)}), b"");
    assert_400(&r, "is not a hexadecimal SHA-256 digest");
    let r = h.start(json!({"content_hash": "a".repeat(65)}), b"");
    assert_400(&r, "length must be 64");
    assert_eq!(h.v(Violation::BadContentHashFormat), 3);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // Correct (upper-case hex is hex).
    let good = crate::hash::content_hash_hex(b"abc").to_uppercase();
    h.start_ok(json!({"content_hash": good}), b"abc");
}

#[test]
fn dropbox_rule_18_client_modified_format() {
    let mut h = H::new();
    for bad in [
        "2015-05-12T15:50:38.000Z",
        "2015-05-12 15:50:38Z",
        "2015-05-12T15:50:38+00:00",
        "2015-13-12T15:50:38Z",
        "yesterday",
    ] {
        let sid = h.seq();
        let r = h.finish_with(
            &sid,
            0,
            json!({"path": "/c.txt", "client_modified": bad}),
            b"c",
        );
        assert_400(&r, "commit.client_modified:");
    }
    assert_eq!(h.v(Violation::BadCommitInfo), 5);
    assert!(h.file("/c.txt").is_none());
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/c.txt", "client_modified": "2015-05-12T15:50:38Z"}),
        b"c",
    );
    assert_eq!(body_json(&r)["client_modified"], "2015-05-12T15:50:38Z");
}

#[test]
fn dropbox_rule_19_write_path_pattern_and_malformed() {
    let mut h = H::new();
    for bad in ["a.txt", "", "ns:/x", "ns:12a/x", "home/a"] {
        let sid = h.seq();
        let r = h.finish(&sid, 0, bad, b"p");
        assert_400(&r, "commit.path:");
    }
    assert_eq!(h.v(Violation::BadCommitInfo), 5);
    for bad in ["/a/", "/a//b", "/", "/a/./b"] {
        let sid = h.seq();
        let r = h.finish(&sid, 0, bad, b"p");
        assert_409(&r, "path/malformed_path");
    }
    assert_eq!(h.v(Violation::BadCommitInfo), 9);
    assert!(h.emu.files().is_empty());
    // ns:<home>/… and id:… are valid forms.
    let ns = h.emu.dropbox_mut().home_namespace_id();
    let sid = h.seq();
    h.finish_ok(&sid, 0, &format!("ns:{ns}/via-ns.txt"), b"n");
    let id = h.file("/via-ns.txt").unwrap().id;
    let sid = h.seq();
    let r = h.finish_with(&sid, 0, json!({"path": id, "mode": "overwrite"}), b"n2");
    assert_eq!(body_json(&r)["path_display"], "/via-ns.txt");
    assert_file(&h, "/via-ns.txt", b"n2");
}

#[test]
fn dropbox_rule_20_update_rev_pattern() {
    let mut h = H::new();
    for bad in ["abc", "ABCDEF0123", "0123456789g", ""] {
        let sid = h.seq();
        let r = h.finish_with(
            &sid,
            0,
            json!({"path": "/r.txt", "mode": {".tag": "update", "update": bad}}),
            b"r",
        );
        assert_400(&r, "commit.mode.update:");
    }
    assert_eq!(h.v(Violation::BadCommitInfo), 4);
    assert!(h.file("/r.txt").is_none());
}

#[test]
fn dropbox_rule_21_success_shapes() {
    let mut h = H::new();
    let r = h.start(json!({}), b"ab");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let sid = body_json(&r)["session_id"].as_str().unwrap().to_string();
    let r = h.append(&sid, 2, false, b"cd");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.body().as_ref(), b"null");
    assert_eq!(r.body().len(), 4);
    let r = h.finish(&sid, 4, "/s.txt", b"");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(body_json(&r)["size"], 4);
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":1}"#,
    ));
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[test]
fn dropbox_rule_22_no_api_result_header() {
    let mut h = H::new();
    let sid = h.seq();
    let mut rs = vec![h.append(&sid, 0, true, b"x")];
    rs.push(h.finish(&sid, 1, "/n.txt", b""));
    rs.push(h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":1}"#,
    )));
    rs.push(h.send(rpc("files/get_metadata", r#"{"path":"/n.txt"}"#)));
    for r in rs {
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("dropbox-api-result").is_none());
    }
}

#[test]
fn dropbox_rule_23_tag_first_and_nesting() {
    let mut h = H::new();
    h.emu.dropbox_mut().seed_folder("/dir");
    let sid = h.seq();
    let r = h.finish(&sid, 0, "/dir", b"z");
    let text = body_text(&r);
    // Union-typed members are nested under their tag, `.tag` first in every object.
    assert!(
        text.contains(
            r#""error":{".tag":"path","path":{".tag":"conflict","conflict":{".tag":"folder"}}}"#
        ),
        "{text}"
    );
    // Struct-typed members are flattened.
    let r = h.append(&sid, 0, false, b"");
    assert!(
        body_text(&r).contains(r#""error":{".tag":"incorrect_offset","correct_offset":1}"#),
        "{}",
        body_text(&r)
    );
    // Batch results: every entry starts with .tag; success flattens FileMetadata.
    let a = h.seq();
    h.append_ok(&a, 0, true, b"batch");
    let b = h.seq();
    let body = json!({"entries": [
        {"cursor": {"session_id": a, "offset": 5}, "commit": {"path": "/b1.txt"}},
        {"cursor": {"session_id": b, "offset": 0}, "commit": {"path": "/b2.txt"}},
    ]});
    let r = h.send(rpc(
        "files/upload_session/finish_batch_v2",
        &body.to_string(),
    ));
    let text = body_text(&r);
    assert!(
        text.starts_with(r#"{"entries":[{".tag":"success","#),
        "{text}"
    );
    assert!(
        text.contains(r#"{".tag":"failure","failure":{".tag":"lookup_failed","lookup_failed":{".tag":"not_closed"}}}"#),
        "{text}"
    );
}

#[test]
fn dropbox_rule_24_error_summary_and_reason_phrase() {
    let mut h = H::new();
    let sid = h.seq();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let r = h.append(&sid, 7, false, b"");
        assert_eq!(r.status(), 409);
        let s = body_json(&r)["error_summary"].as_str().unwrap().to_string();
        let dots = s.strip_prefix("incorrect_offset/").unwrap();
        assert!(dots.len() <= 3 && dots.chars().all(|c| c == '.'), "{s}");
        seen.insert(s.clone());
        let reason = r
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .expect("reason phrase");
        assert_eq!(reason.as_bytes(), s.as_bytes());
    }
    assert!(seen.len() > 1, "dots vary between identical responses");
    let r = h.finish(&sid, 3, "/x", b"");
    let s = body_json(&r)["error_summary"].as_str().unwrap().to_string();
    assert!(s.starts_with("lookup_failed/incorrect_offset/"), "{s}");
}

#[test]
fn dropbox_rule_25_request_id_on_every_response() {
    let mut h = H::new();
    let sid = h.seq();
    let mut bad_route = up("start", "{}", b"");
    *bad_route.uri_mut() = "/dropbox/content/2/files/nope".parse().unwrap();
    let rs = vec![
        h.append(&sid, 0, false, b"a"),
        h.append(&sid, 0, false, b"a"),
        h.send(up("start", "{", b"")),
        h.send(bad_route),
        h.send(without_header(up("start", "{}", b""), "authorization")),
        h.send(rpc(
            "files/upload_session/start_batch",
            r#"{"num_sessions":1}"#,
        )),
    ];
    let mut ids = std::collections::HashSet::new();
    for r in rs {
        let id = r
            .headers()
            .get("x-dropbox-request-id")
            .unwrap_or_else(|| panic!("no request id on {}", r.status()));
        ids.insert(id.to_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 6);
}

#[test]
fn path_root_header() {
    let mut h = H::new();
    let ns = h.emu.dropbox_mut().home_namespace_id();
    for ok in [
        r#"{".tag":"home"}"#.to_string(),
        format!(r#"{{".tag":"root","root":"{ns}"}}"#),
        format!(r#"{{".tag":"namespace_id","namespace_id":"{ns}"}}"#),
    ] {
        let r = h.send(with_header(
            up("start", "{}", b""),
            "dropbox-api-path-root",
            ok.as_bytes(),
        ));
        assert_eq!(r.status(), 200, "{ok}");
    }
    let r = h.send(with_header(
        up("start", "{}", b""),
        "dropbox-api-path-root",
        br#"{".tag":"root","root":"999"}"#,
    ));
    assert_eq!(r.status(), 422);
    assert_eq!(body_json(&r)["error"], json!({".tag": "no_permission"}));
    let r = h.send(with_header(
        up("start", "{}", b""),
        "dropbox-api-path-root",
        b"home",
    ));
    assert_400(&r, "Dropbox-API-Path-Root");
    assert_eq!(h.emu.dropbox_mut().session_count(), 3);
}

#[test]
fn oversized_arg_is_rejected_without_panic() {
    let mut h = H::cfg(|c| c.max_json_body = 64);
    let big = format!(r#"{{"close":false,"x":"{}"}}"#, "a".repeat(100));
    let r = h.send(up("start", &big, b""));
    assert_400(&r, "too large");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
}
