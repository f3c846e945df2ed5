//! Rules 26-58: sessions, finish, namespace.

use super::*;

#[test]
fn dropbox_rule_26_unique_session_ids() {
    let mut h = H::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..50 {
        assert!(ids.insert(h.seq()));
    }
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":100}"#,
    ));
    for id in body_json(&r)["session_ids"].as_array().unwrap() {
        assert!(ids.insert(id.as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len(), 150);
    assert!(ids.iter().all(|i| i.starts_with("pid_upload_session:")));
}

fn declared(mut r: Request<Bytes>, len: u64) -> Request<Bytes> {
    r.headers_mut().insert("content-length", len.into());
    r
}

#[test]
fn dropbox_rule_27_payload_too_large() {
    const MAX: u64 = 157_286_400;
    let mut h = H::new();
    // Declared Content-Length above the cap: rejected before the body.
    let r = h.send(declared(up("start", "{}", b""), MAX + 1));
    assert_409(&r, "payload_too_large");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    let sid = h.seq();
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let r = h.send(declared(up("append_v2", &a, b""), MAX + 1));
    assert_409(&r, "payload_too_large");
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}, "commit": {"path": "/big"}}));
    let r = h.send(declared(up("finish", &a, b""), MAX + 1));
    assert_409(&r, "lookup_failed/payload_too_large");
    assert_eq!(h.v(Violation::OversizeBody), 3);
    // Exactly the cap passes the head checks (the body would then be read).
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let (parts, _) = declared(up("append_v2", &a, b""), MAX).into_parts();
    match h.emu.begin(h.now, &parts) {
        crate::Begin::Body(_) => {}
        crate::Begin::Respond(r) => panic!("rejected at head: {}", body_text(&r)),
    }

    // Streaming overflow (no Content-Length): 409 once the body passes the cap.
    let mut h = H::cfg(|c| c.dropbox.max_body = 1000);
    let sid = h.seq();
    let mut r = up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0}})),
        b"",
    );
    r.headers_mut().remove("content-length");
    let (parts, _) = r.into_parts();
    let crate::Begin::Body(mut p) = h.emu.begin(h.now, &parts) else {
        panic!("expected body")
    };
    p.push(Bytes::from(vec![1u8; 600])).unwrap();
    let o = p.push(Bytes::from(vec![1u8; 600])).unwrap_err();
    let r = h.emu.overflow(h.now, p, o);
    assert_409(&r, "payload_too_large");
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(h.info(&sid).unwrap().held, 0);

    // Optional 413 mode.
    let mut h = H::cfg(|c| c.dropbox.http_413_above = Some(200_000_000));
    let sid = h.seq();
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let r = h.send(declared(up("append_v2", &a, b""), 300_000_000));
    assert_eq!(r.status(), 413);
    let r = h.send(declared(up("append_v2", &a, b""), MAX + 1));
    assert_409(&r, "payload_too_large");
}

#[test]
fn dropbox_rule_28_concurrent_start_with_data() {
    let mut h = H::new();
    let r = h.start(json!({"session_type": "concurrent"}), b"data");
    assert_409(&r, "concurrent_session_data_not_allowed");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    // Without Content-Length: caught once the body arrived.
    let mut req = up("start", r#"{"session_type":"concurrent"}"#, b"data");
    req.headers_mut().remove("content-length");
    assert_409(&h.send(req), "concurrent_session_data_not_allowed");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    assert_eq!(h.v(Violation::ConcurrentStartMisuse), 2);
}

#[test]
fn dropbox_rule_29_concurrent_start_close() {
    let mut h = H::new();
    let r = h.start(json!({"session_type": "concurrent", "close": true}), b"");
    assert_409(&r, "concurrent_session_close_not_allowed");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    assert_eq!(h.v(Violation::ConcurrentStartMisuse), 1);
    // A sequential start may close.
    let sid = h.start_ok(json!({"close": true}), b"abc");
    assert!(h.info(&sid).unwrap().closed);
}

#[test]
fn dropbox_rule_30_content_hash_mismatch_stores_nothing() {
    let mut h = H::new();
    let wrong = crate::hash::content_hash_hex(b"other");
    let r = h.start(json!({"content_hash": wrong}), b"abc");
    assert_409(&r, "content_hash_mismatch");
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);

    let sid = h.start_ok(
        json!({"content_hash": crate::hash::content_hash_hex(b"abc")}),
        b"abc",
    );
    let a = json!({"cursor": {"session_id": sid, "offset": 3}, "content_hash": wrong});
    let r = h.send(up("append_v2", &arg(a), b"def"));
    assert_409(&r, "content_hash_mismatch");
    assert_eq!(h.info(&sid).unwrap().held, 3);
    let a = json!({"cursor": {"session_id": sid, "offset": 3}, "content_hash": crate::hash::content_hash_hex(b"def")});
    assert_ok_null(&h.send(up("append_v2", &arg(a), b"def")));

    let a = json!({"cursor": {"session_id": sid, "offset": 6}, "commit": {"path": "/h.txt"}, "content_hash": wrong});
    let r = h.send(up("finish", &arg(a), b"ghi"));
    assert_409(&r, "content_hash_mismatch");
    assert!(h.file("/h.txt").is_none());
    assert_eq!(h.info(&sid).unwrap().held, 6);
    assert_eq!(h.v(Violation::ContentHashMismatch), 3);

    let a = json!({"cursor": {"session_id": sid, "offset": 6}, "commit": {"path": "/h.txt"}, "content_hash": crate::hash::content_hash_hex(b"ghi")});
    assert_eq!(h.send(up("finish", &arg(a), b"ghi")).status(), 200);
    assert_file(&h, "/h.txt", b"abcdefghi");
}

#[test]
fn dropbox_rule_31_not_found_and_expiry() {
    let mut h = H::new();
    let r = h.append("pid_upload_session:nope", 0, false, b"x");
    assert_409(&r, "not_found");
    let r = h.finish("pid_upload_session:nope", 0, "/x", b"");
    assert_409(&r, "lookup_failed/not_found");
    assert_eq!(h.v(Violation::SessionReused), 2);

    let a = h.seq();
    let b = h.seq();
    let c = h.seq();
    h.append_ok(&c, 0, true, b"c");
    h.advance(604_800);
    h.append_ok(&a, 0, false, b"a"); // exactly 7 days: still alive
    h.advance(1);
    let r = h.append(&a, 1, false, b"a");
    assert_409(&r, "not_found");
    let r = h.finish(&b, 0, "/b", b"");
    assert_409(&r, "lookup_failed/not_found");
    let body =
        json!({"entries": [{"cursor": {"session_id": c, "offset": 1}, "commit": {"path": "/c"}}]});
    let r = h.send(rpc(
        "files/upload_session/finish_batch_v2",
        &body.to_string(),
    ));
    assert_eq!(
        body_json(&r)["entries"][0],
        json!({".tag": "failure", "failure": {".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}}})
    );
    // The first not_found after expiry is how the client learns: not counted.
    assert_eq!(h.v(Violation::SessionReused), 2);
    let r = h.append(&a, 1, false, b"a");
    assert_409(&r, "not_found");
    assert_eq!(h.v(Violation::SessionReused), 3);
    assert!(h.emu.files().is_empty());
}

#[test]
fn dropbox_rule_32_error_precedence() {
    let max = 157_286_400u64;
    let mut h = H::cfg(|c| c.dropbox.max_file_size = 10);
    // not_found before payload_too_large.
    let a = arg(json!({"cursor": {"session_id": "pid_upload_session:zz", "offset": 0}}));
    let r = h.send(declared(up("append_v2", &a, b""), max + 1));
    assert_409(&r, "not_found");
    // payload_too_large before closed.
    let sid = h.start_ok(json!({"close": true}), b"abc");
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let r = h.send(declared(up("append_v2", &a, b""), max + 1));
    assert_409(&r, "payload_too_large");
    // closed before incorrect_offset.
    let r = h.append(&sid, 99, false, b"x");
    assert_409(&r, "closed");
    // incorrect_offset before too_large.
    let sid = h.seq();
    let r = h.append(&sid, 5, false, &[0u8; 11]);
    assert_409(&r, "incorrect_offset");
    let r = h.append(&sid, 0, false, &[0u8; 11]);
    assert_409(&r, "too_large");
    // too_large before content_hash_mismatch.
    let a = json!({"cursor": {"session_id": sid, "offset": 0}, "content_hash": "0".repeat(64)});
    let r = h.send(up("append_v2", &arg(a), &[0u8; 11]));
    assert_409(&r, "too_large");
    // Concurrent: closed before alignment; alignment before too_large.
    let mut h = H::cfg(|c| c.dropbox.max_file_size = 4 * 1024 * 1024);
    let cs = h.conc();
    let r = h.append(&cs, 1, false, &[0u8; 5]);
    assert_409(&r, "concurrent_session_invalid_offset");
    let r = h.append(&cs, 0, false, &[0u8; 5]);
    assert_409(&r, "concurrent_session_invalid_data_size");
    h.append_ok(&cs, 0, true, &[0u8; 5]);
    let r = h.append(&cs, 1, false, &[0u8; 5]);
    assert_409(&r, "closed");
    let cs = h.conc();
    let r = h.append(&cs, 0, false, &vec![0u8; 2 * BLOCK]);
    assert_409(&r, "too_large");
}

#[test]
fn dropbox_rule_33_incorrect_offset_reports_bytes_held() {
    let mut h = H::new();
    let sid = h.start_ok(json!({}), b"hello");
    for wrong in [0u64, 4, 6, 1 << 40] {
        let r = h.append(&sid, wrong, false, b" world");
        let e = assert_409(&r, "incorrect_offset");
        assert_eq!(e, json!({".tag": "incorrect_offset", "correct_offset": 5}));
        assert_eq!(h.info(&sid).unwrap().held, 5, "nothing stored");
    }
    assert_eq!(h.v(Violation::WrongOffset), 4);
    h.append_ok(&sid, 5, false, b" world");
    h.finish_ok(&sid, 11, "/hw.txt", b"");
    assert_file(&h, "/hw.txt", b"hello world");
}

#[test]
fn dropbox_rule_34_append_to_closed_session() {
    let mut h = H::new();
    let sid = h.seq();
    h.append_ok(&sid, 0, true, b"abc");
    let r = h.append(&sid, 3, false, b"def");
    assert_409(&r, "closed");
    let r = h.send(up(
        "append",
        &arg(json!({"session_id": sid, "offset": 3})),
        b"def",
    ));
    assert_409(&r, "closed");
    assert_eq!(h.v(Violation::AppendAfterClose), 2);
    assert_eq!(h.info(&sid).unwrap().held, 3);
}

#[test]
fn dropbox_rule_35_too_large() {
    let mut h = H::cfg(|c| c.dropbox.max_file_size = 10);
    let sid = h.start_ok(json!({}), b"12345");
    h.append_ok(&sid, 5, false, b"12345");
    let r = h.append(&sid, 10, false, b"1");
    assert_409(&r, "too_large");
    assert_eq!(h.info(&sid).unwrap().held, 10);
    let r = h.finish(&sid, 10, "/t", b"1");
    assert_409(&r, "lookup_failed/too_large");
    h.finish_ok(&sid, 10, "/t", b"");
    // Default limit is 2^41 - 2^22.
    assert_eq!(
        Config::default().dropbox.max_file_size,
        (1u64 << 41) - (1 << 22)
    );
}

#[test]
fn dropbox_rule_36_append_success_and_close() {
    let mut h = H::new();
    let sid = h.seq();
    h.append_ok(&sid, 0, false, b"ab");
    assert_eq!(h.info(&sid).unwrap().held, 2);
    // v1 append works too.
    let r = h.send(up(
        "append",
        &arg(json!({"session_id": sid, "offset": 2})),
        b"cd",
    ));
    assert_ok_null(&r);
    assert_eq!(h.info(&sid).unwrap().held, 4);
    assert!(!h.info(&sid).unwrap().closed);
    h.append_ok(&sid, 4, true, b"ef");
    let i = h.info(&sid).unwrap();
    assert_eq!((i.held, i.closed), (6, true));
    h.finish_ok(&sid, 6, "/abc.txt", b"");
    assert_file(&h, "/abc.txt", b"abcdef");
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_37_zero_length_appends() {
    let mut h = H::new();
    let sid = h.start_ok(json!({}), b"x");
    h.append_ok(&sid, 1, false, b"");
    assert_eq!(h.info(&sid).unwrap().held, 1);
    h.append_ok(&sid, 1, true, b"");
    let i = h.info(&sid).unwrap();
    assert_eq!((i.held, i.closed), (1, true));
    h.finish_ok(&sid, 1, "/z.txt", b"");
    assert_file(&h, "/z.txt", b"x");
    // An empty file.
    let sid = h.seq();
    h.finish_ok(&sid, 0, "/empty", b"");
    let f = h.file("/empty").unwrap();
    assert_eq!(
        f.content.content_hash.as_deref(),
        Some(super::super::EMPTY_HASH)
    );
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_38_concurrent_offset_alignment() {
    let mut h = H::new();
    let sid = h.conc();
    for off in [1u64, 4_194_303, 4_194_305, 1 << 20] {
        let r = h.append(&sid, off, false, &vec![0u8; BLOCK]);
        assert_409(&r, "concurrent_session_invalid_offset");
    }
    assert_eq!(h.v(Violation::ConcurrentMisaligned), 4);
    let i = h.info(&sid).unwrap();
    assert_eq!((i.held, i.pending_pieces), (0, 0));
    h.append_ok(&sid, BLOCK as u64, false, &vec![0u8; BLOCK]);
}

#[test]
fn dropbox_rule_39_concurrent_data_size() {
    let mut h = H::new();
    let sid = h.conc();
    for len in [0usize, 1, BLOCK - 1, BLOCK + 1] {
        let r = h.append(&sid, 0, false, &vec![0u8; len]);
        assert_409(&r, "concurrent_session_invalid_data_size");
    }
    assert_eq!(h.v(Violation::ConcurrentMisaligned), 4);
    assert_eq!(h.info(&sid).unwrap().held, 0);
    h.append_ok(&sid, 0, false, &vec![0u8; 2 * BLOCK]);
    // The closing append may carry any remainder.
    h.append_ok(&sid, 2 * BLOCK as u64, true, &[7u8; 3]);
    assert_eq!(h.info(&sid).unwrap().total, Some(2 * BLOCK as u64 + 3));
}

#[test]
fn dropbox_rule_40_concurrent_any_order() {
    let src = data(3 * BLOCK + 1234, 40);
    let chunk = |i: usize| &src[i * BLOCK..((i + 1) * BLOCK).min(src.len())];
    // Blocks 2, 0, 1, then the closing tail: never incorrect_offset.
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, 2 * BLOCK as u64, false, chunk(2));
    let i = h.info(&sid).unwrap();
    assert_eq!(
        (i.held, i.pending_pieces, i.pending_bytes),
        (0, 1, BLOCK as u64)
    );
    h.append_ok(&sid, 0, false, chunk(0));
    assert_eq!(h.info(&sid).unwrap().held, BLOCK as u64);
    h.append_ok(&sid, BLOCK as u64, false, chunk(1));
    let i = h.info(&sid).unwrap();
    assert_eq!((i.held, i.pending_pieces), (3 * BLOCK as u64, 0));
    h.append_ok(&sid, 3 * BLOCK as u64, true, chunk(3));
    let m = h.finish_ok(&sid, src.len() as u64, "/c.bin", b"");
    assert_eq!(m["size"], src.len());
    assert_file(&h, "/c.bin", &src);
    assert_eq!(h.violations(), 0);
}

#[test]
fn dropbox_rule_41_concurrent_overlap() {
    let mut h = H::new();
    let a = data(2 * BLOCK, 41);
    let sid = h.conc();
    h.append_ok(&sid, 0, false, &a);
    // Identical retry: accepted, nothing changes.
    h.append_ok(&sid, 0, false, &a);
    assert_eq!(h.info(&sid).unwrap().held, 2 * BLOCK as u64);
    // Same range, different bytes.
    let mut b = a.clone();
    b[17] ^= 1;
    let r = h.append(&sid, 0, false, &b);
    assert_409(&r, "concurrent_session_invalid_offset");
    // Different length at a stored offset, and a range starting inside stored data.
    let r = h.append(&sid, 0, false, &a[..BLOCK]);
    assert_409(&r, "concurrent_session_invalid_offset");
    let r = h.append(&sid, BLOCK as u64, false, &a);
    assert_409(&r, "concurrent_session_invalid_offset");
    assert_eq!(h.v(Violation::ConcurrentOverlapMismatch), 3);
    h.append_ok(&sid, 2 * BLOCK as u64, true, b"end");
    let mut src = a.clone();
    src.extend_from_slice(b"end");
    h.finish_ok(&sid, src.len() as u64, "/o.bin", b"");
    assert_file(&h, "/o.bin", &src);
}

#[test]
fn dropbox_rule_42_concurrent_after_close() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, BLOCK as u64, true, b"tail");
    // Filling the gap after the closing append.
    let r = h.append(&sid, 0, false, &vec![1u8; BLOCK]);
    assert_409(&r, "closed");
    // A second closing append.
    let r = h.append(&sid, BLOCK as u64, true, b"tail");
    assert_409(&r, "closed");
    assert_eq!(h.v(Violation::AppendAfterClose), 2);
    let r = h.finish(&sid, BLOCK as u64 + 4, "/g", b"");
    assert_409(&r, "concurrent_session_missing_data");
}

#[test]
fn dropbox_rule_43_finish_incorrect_offset() {
    let mut h = H::new();
    let sid = h.start_ok(json!({}), b"12345678");
    let r = h.finish(&sid, 3, "/f.txt", b"9");
    let e = assert_409(&r, "lookup_failed/incorrect_offset");
    assert_eq!(
        e,
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 8}})
    );
    assert!(h.file("/f.txt").is_none());
    assert_eq!(h.info(&sid).unwrap().held, 8);
    assert_eq!(h.v(Violation::WrongOffset), 1);
    h.finish_ok(&sid, 8, "/f.txt", b"9");
    assert_file(&h, "/f.txt", b"123456789");
}

#[test]
fn dropbox_rule_44_finish_body_and_closed() {
    let mut h = H::new();
    let sid = h.start_ok(json!({}), b"ab");
    let m = h.finish_ok(&sid, 2, "/p.txt", b"cd");
    assert_eq!(m["size"], 4);
    assert_file(&h, "/p.txt", b"abcd");
    // Closed session + non-empty finish body.
    let sid = h.start_ok(json!({"close": true}), b"ab");
    let r = h.finish(&sid, 2, "/q.txt", b"cd");
    assert_409(&r, "lookup_failed/closed");
    assert_eq!(h.v(Violation::AppendAfterClose), 1);
    assert!(h.file("/q.txt").is_none());
    // Closed + empty body commits.
    h.finish_ok(&sid, 2, "/q.txt", b"");
    assert_file(&h, "/q.txt", b"ab");
}

#[test]
fn dropbox_rule_45_concurrent_finish_with_data() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, 0, true, b"abc");
    let r = h.finish(&sid, 3, "/d", b"more");
    assert_409(&r, "concurrent_session_data_not_allowed");
    assert_eq!(h.v(Violation::ConcurrentFinishMisuse), 1);
    assert!(h.file("/d").is_none());
    h.finish_ok(&sid, 3, "/d", b"");
    assert_file(&h, "/d", b"abc");
}

#[test]
fn dropbox_rule_46_concurrent_finish_not_closed() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, 0, false, &vec![3u8; BLOCK]);
    let r = h.finish(&sid, BLOCK as u64, "/nc", b"");
    assert_409(&r, "concurrent_session_not_closed");
    assert_eq!(h.v(Violation::ConcurrentFinishMisuse), 1);
    assert!(h.file("/nc").is_none());
    h.append_ok(&sid, BLOCK as u64, true, b"");
    h.finish_ok(&sid, BLOCK as u64, "/nc", b"");
}

#[test]
fn dropbox_rule_47_concurrent_finish_missing_data() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, BLOCK as u64, false, &vec![1u8; BLOCK]);
    h.append_ok(&sid, 2 * BLOCK as u64, true, b"x");
    let r = h.finish(&sid, 2 * BLOCK as u64 + 1, "/m", b"");
    assert_409(&r, "concurrent_session_missing_data");
    assert_eq!(h.v(Violation::ConcurrentFinishMisuse), 1);
    assert!(h.file("/m").is_none());
    assert_eq!(h.info(&sid).unwrap().pending_pieces, 2);
}

#[test]
fn dropbox_rule_48_concurrent_finish_offset_is_total() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, 0, true, b"12345");
    for wrong in [0u64, 4, 6] {
        let r = h.finish(&sid, wrong, "/w", b"");
        let e = assert_409(&r, "lookup_failed/incorrect_offset");
        assert_eq!(e["lookup_failed"]["correct_offset"], 5);
    }
    assert_eq!(h.v(Violation::WrongOffset), 3);
    h.finish_ok(&sid, 5, "/w", b"");
}

#[test]
fn dropbox_rule_49_write_error_keeps_finish_body() {
    let mut h = H::new();
    assert!(h.emu.dropbox_mut().seed_folder("/taken"));
    let sid = h.start_ok(json!({}), b"abc");
    let r = h.finish(&sid, 3, "/taken", b"def");
    let e = assert_409(&r, "path/conflict/folder");
    assert_eq!(
        e,
        json!({".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "folder"}}})
    );
    // The body stayed appended; the session is still usable.
    assert_eq!(h.info(&sid).unwrap().held, 6);
    let r = h.finish(&sid, 3, "/free.txt", b"def");
    assert_409(&r, "lookup_failed/incorrect_offset");
    h.finish_ok(&sid, 6, "/free.txt", b"");
    assert_file(&h, "/free.txt", b"abcdef");
}

#[test]
fn dropbox_rule_50_add_conflict_and_autorename() {
    let mut h = H::new();
    h.upload("/Docs/document.txt", b"one");
    let sid = h.seq();
    let r = h.finish(&sid, 0, "/docs/document.txt", b"two");
    assert_409(&r, "path/conflict/file");
    assert_eq!(h.info(&sid).unwrap().held, 3);
    let r = h.finish_with(
        &sid,
        3,
        json!({"path": "/docs/document.txt", "autorename": true}),
        b"",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(&r)["path_display"], "/Docs/document (2).txt");
    assert_eq!(body_json(&r)["name"], "document (2).txt");
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/Docs/document.txt", "autorename": true}),
        b"three",
    );
    assert_eq!(body_json(&r)["path_display"], "/Docs/document (3).txt");
    assert_file(&h, "/Docs/document.txt", b"one");
    assert_file(&h, "/Docs/document (2).txt", b"two");
    assert_file(&h, "/Docs/document (3).txt", b"three");
    assert_eq!(
        h.violations(),
        0,
        "conflicts are account state, not client errors"
    );
}

#[test]
fn dropbox_rule_51_identical_content() {
    let mut h = H::new();
    let first = h.upload("/same.txt", b"same");
    let again = h.upload("/SAME.txt", b"same");
    assert_eq!(first["rev"], again["rev"]);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["path_display"], "/same.txt");
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/same.txt", "strict_conflict": true}),
        b"same",
    );
    assert_409(&r, "path/conflict/file");
    assert_eq!(h.emu.files().len(), 1);
}

#[test]
fn dropbox_rule_52_folder_conflict_in_every_mode() {
    let mut h = H::new();
    h.emu.dropbox_mut().seed_folder("/Folder");
    for mode in [
        json!("add"),
        json!("overwrite"),
        json!({".tag": "update", "update": "015000000001"}),
    ] {
        let sid = h.seq();
        let r = h.finish_with(&sid, 0, json!({"path": "/folder", "mode": mode}), b"f");
        assert_409(&r, "path/conflict/folder");
    }
    assert!(h.emu.files().is_empty());
}

#[test]
fn dropbox_rule_53_file_ancestor() {
    let mut h = H::new();
    h.upload("/a/file.txt", b"x");
    let sid = h.seq();
    let r = h.finish(&sid, 0, "/A/File.txt/inner.txt", b"y");
    assert_409(&r, "path/conflict/file_ancestor");
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/a/file.txt/deeper/inner.txt", "autorename": true}),
        b"y",
    );
    assert_409(&r, "path/conflict/file_ancestor");
    assert_eq!(h.emu.files().len(), 1);
}

#[test]
fn dropbox_rule_54_update_mode() {
    let mut h = H::new();
    let m = h.upload("/u/report.txt", b"v1");
    let rev1 = m["rev"].as_str().unwrap().to_string();
    // Matching rev replaces (same id, new rev).
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/u/report.txt", "mode": {".tag": "update", "update": rev1}}),
        b"v2",
    );
    let m2 = body_json(&r);
    assert_eq!(m2["id"], m["id"]);
    assert_ne!(m2["rev"], m["rev"]);
    assert_file(&h, "/u/report.txt", b"v2");
    // Stale rev conflicts; with autorename → conflicted copy.
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/u/report.txt", "mode": {".tag": "update", "update": rev1}}),
        b"v3",
    );
    assert_409(&r, "path/conflict/file");
    let r = h.finish_with(&sid, 2, json!({"path": "/u/report.txt", "mode": {".tag": "update", "update": rev1}, "autorename": true}), b"");
    assert_eq!(
        body_json(&r)["path_display"],
        "/u/report (conflicted copy).txt"
    );
    assert_file(&h, "/u/report.txt", b"v2");
    assert_file(&h, "/u/report (conflicted copy).txt", b"v3");
    // Missing target: written, unless strict_conflict.
    let sid = h.seq();
    let upd = json!({".tag": "update", "update": "015000000099"});
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/u/gone.txt", "mode": upd, "strict_conflict": true}),
        b"g",
    );
    assert_409(&r, "path/conflict/file");
    let r = h.finish_with(&sid, 1, json!({"path": "/u/gone.txt", "mode": upd}), b"");
    assert_eq!(r.status(), 200);
}

#[test]
fn dropbox_rule_55_insufficient_space() {
    let mut h = H::cfg(|c| c.dropbox.quota = Some(10));
    h.upload("/q1", b"123456");
    let sid = h.seq();
    let r = h.finish(&sid, 0, "/q2", b"12345");
    let e = assert_409(&r, "path/insufficient_space");
    assert_eq!(
        e,
        json!({".tag": "path", "path": {".tag": "insufficient_space"}})
    );
    assert!(h.file("/q2").is_none());
    // Overwriting frees the replaced file's space.
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/q1", "mode": "overwrite"}),
        b"0123456789",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(h.emu.dropbox_mut().used_bytes(), 10);
}

#[test]
fn dropbox_rule_56_file_metadata() {
    let mut h = H::new();
    let src = data(10_000, 56);
    let sid = h.start_ok(json!({}), &src[..4000]);
    h.advance(30);
    let m = h.finish_with(
        &sid,
        4000,
        json!({"path": "/Homework/Math/Prime_Numbers.TXT", "client_modified": "2015-05-12T15:50:38Z"}),
        &src[4000..],
    );
    let m = body_json(&m);
    assert_eq!(m["name"], "Prime_Numbers.TXT");
    assert_eq!(m["path_display"], "/Homework/Math/Prime_Numbers.TXT");
    assert_eq!(m["path_lower"], "/homework/math/prime_numbers.txt");
    assert_eq!(m["size"], 10_000);
    assert_eq!(m["content_hash"], crate::hash::content_hash_hex(&src));
    assert_eq!(m["client_modified"], "2015-05-12T15:50:38Z");
    assert_eq!(m["server_modified"], crate::wire::rfc3339_seconds(h.now));
    assert_eq!(m["is_downloadable"], true);
    let rev = m["rev"].as_str().unwrap();
    assert!(
        rev.len() >= 9
            && rev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert!(m["id"].as_str().unwrap().starts_with("id:"));
    assert!(m.get(".tag").is_none(), "FileMetadata is a plain struct");
    // Default client_modified = server_modified; id stable per path; rev fresh.
    let sid = h.seq();
    let m2 = h.finish_with(
        &sid,
        0,
        json!({"path": "/homework/math/prime_numbers.txt", "mode": "overwrite"}),
        b"new",
    );
    let m2 = body_json(&m2);
    assert_eq!(m2["client_modified"], m2["server_modified"]);
    assert_eq!(m2["id"], m["id"]);
    assert_ne!(m2["rev"], m["rev"]);
    let f = h.file("/Homework/Math/Prime_Numbers.TXT").unwrap();
    assert_eq!((f.drive.as_str(), f.service), ("home", Service::Dropbox));
    assert_eq!(f.rev, m2["rev"].as_str().unwrap());
}

#[test]
fn dropbox_rule_57_session_consumed_after_finish() {
    let mut h = H::new();
    let sid = h.start_ok(json!({}), b"abc");
    h.finish_ok(&sid, 3, "/done", b"");
    assert!(h.info(&sid).is_none());
    let r = h.append(&sid, 3, false, b"d");
    assert_409(&r, "not_found");
    let r = h.finish(&sid, 3, "/done2", b"");
    assert_409(&r, "lookup_failed/not_found");
    assert_eq!(h.v(Violation::SessionReused), 2);
    assert!(h.file("/done2").is_none());
}

#[test]
fn dropbox_rule_58_property_groups() {
    let mut h = H::new();
    let groups = json!([{"template_id": "ptid:1a5n2i6d3OYEAAAAAAAAAYa", "fields": [{"name": "Security Policy", "value": "Confidential"}]}]);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/props.txt", "property_groups": groups}),
        b"p",
    );
    let e = assert_409(&r, "properties_error/template_not_found");
    assert_eq!(
        e,
        json!({".tag": "properties_error", "properties_error": {".tag": "template_not_found", "template_not_found": "ptid:1a5n2i6d3OYEAAAAAAAAAYa"}})
    );
    // The file was saved anyway and the session consumed.
    assert_file(&h, "/props.txt", b"p");
    assert!(h.info(&sid).is_none());
    // Known template: fields must fit.
    h.emu
        .dropbox_mut()
        .add_property_template("ptid:1a5n2i6d3OYEAAAAAAAAAYa", &["Security Policy"]);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/props2.txt", "property_groups": groups}),
        b"p",
    );
    assert_eq!(r.status(), 200);
    let bad = json!([{"template_id": "ptid:1a5n2i6d3OYEAAAAAAAAAYa", "fields": [{"name": "Other", "value": "x"}]}]);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/props3.txt", "property_groups": bad}),
        b"p",
    );
    assert_409(&r, "properties_error/does_not_fit_template");
    assert!(h.file("/props3.txt").is_some());
    let dup = json!([groups[0], groups[0]]);
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/props4.txt", "property_groups": dup}),
        b"p",
    );
    assert_409(&r, "properties_error/duplicate_property_groups");
    // Malformed groups are a 400, not a 409.
    let sid = h.seq();
    let r = h.finish_with(
        &sid,
        0,
        json!({"path": "/props5.txt", "property_groups": [{"template_id": "nope", "fields": []}]}),
        b"p",
    );
    assert_400(&r, "property_groups.template_id");
}

#[test]
fn dropbox_rule_31_expired_sessions_release_their_memory() {
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, BLOCK as u64, false, &vec![1u8; BLOCK]);
    assert_eq!(h.info(&sid).unwrap().pending_bytes, BLOCK as u64);
    h.advance(8 * 24 * 3600);
    h.seq(); // any request sweeps
    assert!(h.info(&sid).is_none());
    let r = h.append(&sid, 0, false, &vec![1u8; BLOCK]);
    assert_409(&r, "not_found");
    assert_eq!(h.violations(), 0);
}
