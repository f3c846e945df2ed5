//! Property tests: well-behaved sequences end with correct files and no violations;
//! garbage never panics; `Dropbox-API-Arg` escaping.

use super::*;
use proptest::prelude::*;

/// JSON-escapes `s` the way a correct client must (dropbox.md §1.3): control characters,
/// DEL and everything non-ASCII as `\uXXXX`, astral characters as surrogate pairs.
pub(super) fn header_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The dropbox-sdk 0.21.0 bug (§9.1): `\u{:04x}` of the code point, no surrogate pairs.
fn buggy_escape(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn finish_arg_raw(sid: &str, offset: u64, path_json: &str) -> String {
    format!(
        r#"{{"cursor":{{"session_id":"{sid}","offset":{offset}}},"commit":{{"path":{path_json}}}}}"#
    )
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[^/]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn escaped_args_decode_to_the_original_path(name in name_strategy()) {
        let mut h = H::new();
        let sid = h.seq();
        let path = format!("/dir/{name}");
        let a = finish_arg_raw(&sid, 0, &header_escape(&path));
        prop_assert!(a.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        let r = h.send(up("finish", &a, b"e"));
        prop_assert_eq!(r.status(), 200, "{}", body_text(&r));
        let m = body_json(&r);
        prop_assert_eq!(m["path_display"].as_str().unwrap(), path.as_str());
        prop_assert!(h.file(&path).is_some());
        prop_assert_eq!(h.violations(), 0);
    }

    #[test]
    fn raw_non_ascii_args_are_rejected(name in name_strategy()) {
        let path = format!("/dir/{name}");
        // Only strings with a byte outside 0x20-0x7E that http lets through as a header
        // value (it refuses controls other than HTAB, and DEL).
        let raw = serde_json::to_string(&path).unwrap();
        prop_assume!(raw.bytes().any(|b| !(0x20..=0x7e).contains(&b)));
        prop_assume!(http::HeaderValue::from_bytes(raw.as_bytes()).is_ok());
        let mut h = H::new();
        let sid = h.seq();
        let mut req = up("finish", "{}", b"e");
        let a = finish_arg_raw(&sid, 0, &raw);
        req.headers_mut().insert("dropbox-api-arg", http::HeaderValue::from_bytes(a.as_bytes()).unwrap());
        let r = h.send(req);
        prop_assert_eq!(r.status(), 400);
        prop_assert!(body_text(&r).contains("could not decode input as JSON"));
        prop_assert_eq!(h.v(Violation::NonAsciiApiArg), 1);
        prop_assert!(h.emu.files().is_empty());
        prop_assert_eq!(h.info(&sid).unwrap().held, 0);
    }

    #[test]
    fn any_non_printable_byte_in_the_header_is_rejected(
        prefix in "[ -~]{0,10}",
        bad in prop_oneof![Just(b'\t'), 0x80u8..=0xff],
        suffix in "[ -~]{0,10}",
    ) {
        let mut bytes = prefix.into_bytes();
        bytes.push(bad);
        bytes.extend_from_slice(suffix.as_bytes());
        let mut h = H::new();
        let mut req = up("start", "{}", b"");
        req.headers_mut().insert("dropbox-api-arg", http::HeaderValue::from_bytes(&bytes).unwrap());
        let r = h.send(req);
        prop_assert_eq!(r.status(), 400);
        prop_assert_eq!(h.v(Violation::NonAsciiApiArg), 1);
        prop_assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    }
}

#[test]
fn astral_characters_need_surrogate_pairs() {
    let mut h = H::new();
    let path = "/t\u{eb}st/\u{1f600}.txt";
    let sid = h.seq();
    let r = h.send(up(
        "finish",
        &finish_arg_raw(&sid, 0, &header_escape(path)),
        b"x",
    ));
    assert_eq!(body_json(&r)["path_display"], path);
    // dropbox-sdk 0.21.0's escaping silently renames the file (`\u1f600` = U+1F60 + "0").
    let sid = h.seq();
    let r = h.send(up(
        "finish",
        &finish_arg_raw(&sid, 0, &buggy_escape(path)),
        b"y",
    ));
    assert_eq!(body_json(&r)["path_display"], "/t\u{eb}st/\u{1f60}0.txt");
    // Lone surrogates are not JSON the server can decode.
    let sid = h.seq();
    let r = h.send(up(
        "finish",
        &finish_arg_raw(&sid, 0, "\"/\\ud83d.txt\""),
        b"z",
    ));
    assert_400(&r, "could not decode input as JSON");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn well_behaved_sequential_sequences(
        size in 0usize..200_000,
        chunk in 1usize..70_000,
        first_in_start in any::<bool>(),
        ending in 0u8..3,
        seed in any::<u8>(),
    ) {
        let src = data(size, seed);
        let mut h = H::new();
        let first = if first_in_start { chunk.min(size) } else { 0 };
        let sid = h.start_ok(json!({}), &src[..first]);
        let mut off = first;
        // Leave the last piece for the ending.
        let last_start = if size > first { size - ((size - first - 1) % chunk + 1) } else { size };
        while off < last_start {
            let end = (off + chunk).min(last_start);
            h.append_ok(&sid, off as u64, false, &src[off..end]);
            off = end;
        }
        match ending {
            0 => { h.finish_ok(&sid, off as u64, "/p.bin", &src[off..]); }
            1 => {
                h.append_ok(&sid, off as u64, true, &src[off..]);
                h.finish_ok(&sid, size as u64, "/p.bin", b"");
            }
            _ => {
                h.append_ok(&sid, off as u64, false, &src[off..]);
                h.append_ok(&sid, size as u64, true, b"");
                let body = json!({"entries": [{"cursor": {"session_id": sid, "offset": size}, "commit": {"path": "/p.bin"}}]});
                let r = h.send(rpc("files/upload_session/finish_batch_v2", &body.to_string()));
                let v = body_json(&r);
                prop_assert_eq!(v["entries"][0][".tag"].as_str(), Some("success"));
            }
        }
        assert_file(&h, "/p.bin", &src);
        prop_assert_eq!(h.violations(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn well_behaved_concurrent_sequences(
        blocks in 0usize..4,
        tail in 0usize..50_000,
        two_block_chunks in any::<bool>(),
        order in any::<proptest::sample::Index>(),
        seed in any::<u8>(),
    ) {
        let size = blocks * BLOCK + tail;
        let src = data(size, seed);
        let chunk = if two_block_chunks { 2 * BLOCK } else { BLOCK };
        let mut ranges: Vec<(usize, usize)> = (0..blocks * BLOCK)
            .step_by(chunk)
            .map(|a| (a, (a + chunk).min(blocks * BLOCK)))
            .collect();
        // A seeded shuffle of the full chunks.
        let n = ranges.len();
        if n > 1 {
            let k = order.index(n);
            ranges.rotate_left(k);
            if k % 2 == 1 { ranges.reverse(); }
        }
        let mut h = H::new();
        let sid = h.conc();
        for (a, b) in ranges {
            h.append_ok(&sid, a as u64, false, &src[a..b]);
        }
        h.append_ok(&sid, (blocks * BLOCK) as u64, true, &src[blocks * BLOCK..]);
        h.finish_ok(&sid, size as u64, "/c.bin", b"");
        assert_file(&h, "/c.bin", &src);
        prop_assert_eq!(h.violations(), 0);
    }
}

// ---- garbage ------------------------------------------------------------------------

fn garbage_request() -> impl Strategy<Value = Request<Bytes>> {
    let paths = prop_oneof![
        Just("/dropbox/content/2/files/upload_session/start".to_string()),
        Just("/dropbox/content/2/files/upload_session/append_v2".to_string()),
        Just("/dropbox/content/2/files/upload_session/append".to_string()),
        Just("/dropbox/content/2/files/upload_session/append_batch".to_string()),
        Just("/dropbox/content/2/files/upload_session/finish".to_string()),
        Just("/dropbox/api/2/files/upload_session/start_batch".to_string()),
        Just("/dropbox/api/2/files/upload_session/finish_batch".to_string()),
        Just("/dropbox/api/2/files/upload_session/finish_batch_v2".to_string()),
        Just("/dropbox/api/2/files/upload_session/finish_batch/check".to_string()),
        Just("/dropbox/api/2/files/get_metadata".to_string()),
        "/dropbox/[a-z/_0-9]{0,40}",
    ];
    let arg = prop_oneof![
        Just(None),
        "[ -~]{0,80}".prop_map(Some),
        Just(Some(r#"{"cursor":{"session_id":"pid_upload_session:x","offset":0},"commit":{"path":"/a","mode":{".tag":"update","update":"0123456789"}}}"#.to_string())),
        Just(Some(r#"{"entries":[{"cursor":{"session_id":"s","offset":18446744073709551615},"length":18446744073709551615}]}"#.to_string())),
        Just(Some(r#"{"close":true,"session_type":"concurrent","content_hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#.to_string())),
    ];
    let ct = prop_oneof![
        Just(None),
        Just(Some("application/octet-stream".to_string())),
        Just(Some("application/json".to_string())),
        "[ -~]{0,30}".prop_map(Some),
    ];
    let auth = prop_oneof![
        Just(Some(format!("Bearer {DEFAULT_TOKEN}"))),
        Just(None),
        "[ -~]{0,30}".prop_map(Some),
    ];
    let cl = prop_oneof![
        Just(None),
        any::<u64>().prop_map(|n| Some(n.to_string())),
        "[ -~]{0,12}".prop_map(Some)
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(
            br#"{"entries":[{"cursor":{"session_id":"a","offset":0},"commit":{"path":"/x"}}]}"#
                .to_vec()
        ),
        Just(br#"{"num_sessions":2,"session_type":"concurrent"}"#.to_vec()),
        Just(br#"{"async_job_id":"x"}"#.to_vec()),
        Just(br#"{"path":"/"}"#.to_vec()),
    ];
    let method = prop_oneof![Just("POST"), Just("GET"), Just("PUT")];
    (paths, "[ -~]{0,20}", arg, ct, auth, cl, body, method).prop_map(
        |(path, query, arg, ct, auth, cl, body, method)| {
            let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
            let uri = format!("http://h{path}?x={q}");
            let mut b = Request::builder().method(method);
            b = match uri.parse::<http::Uri>() {
                Ok(u) => b.uri(u),
                Err(_) => b.uri("http://h/dropbox/"),
            };
            for (name, v) in [
                ("dropbox-api-arg", arg),
                ("content-type", ct),
                ("authorization", auth),
                ("content-length", cl),
            ] {
                if let Some(v) = v {
                    if let Ok(hv) = http::HeaderValue::from_str(&v) {
                        b = b.header(name, hv);
                    }
                }
            }
            b.body(Bytes::from(body)).unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(reqs in proptest::collection::vec(garbage_request(), 1..8), faults in any::<u64>()) {
        let plan = FaultPlan {
            seed: faults,
            rates: crate::FaultRates {
                throttle: 0.05, unavailable: 0.05, error_after: 0.1, lost_response: 0.1,
                reset_discard: 0.1, lock_contention: 0.1, expire_token: 0.02, ..Default::default()
            },
            scripted: vec![],
        };
        let mut h = H::new();
        // Some real state to poke at.
        let sid = h.seq();
        h.append_ok(&sid, 0, false, b"abc");
        h.emu.set_fault_plan(plan);
        for r in reqs {
            let resp = h.send(r);
            prop_assert!(resp.status().as_u16() >= 200);
            if resp.status() == 200 {
                prop_assert_eq!(&resp.headers()["content-type"], "application/json");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Rule 10 at the decoder: any byte outside 0x20-0x7E (controls, DEL, non-ASCII) is
    /// rejected in strict mode; in lenient mode only well-formed UTF-8 without controls
    /// or DEL gets through.
    #[test]
    fn decoder_rejects_every_non_printable_byte(
        prefix in "[ -~]{0,10}",
        bad in prop_oneof![0u8..0x20, Just(0x7fu8), 0x80u8..=0xff],
        suffix in "[ -~]{0,10}",
    ) {
        let mut bytes = br#"{"a":""#.to_vec();
        bytes.extend_from_slice(prefix.replace(['"', '\\'], "").as_bytes());
        bytes.push(bad);
        bytes.extend_from_slice(suffix.replace(['"', '\\'], "").as_bytes());
        bytes.extend_from_slice(br#""}"#);
        let e = crate::dropbox::args::decode_header_json(&bytes, false).unwrap_err();
        prop_assert_eq!(e.violation, Violation::NonAsciiApiArg);
        if bad < 0x80 {
            let e = crate::dropbox::args::decode_header_json(&bytes, true).unwrap_err();
            prop_assert_eq!(e.violation, Violation::NonAsciiApiArg);
        }
    }
}
