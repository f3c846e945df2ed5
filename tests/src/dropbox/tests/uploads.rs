//! Whole uploads (sequential, concurrent, batch), races through the streaming API,
//! `get_metadata`, and a reference "correct client" used by the fault-storm tests.

use super::*;
use crate::{Begin, TransportFault};

enum Outcome {
    Ok(Value),
    Conflict(Value),
    Retry,
}

fn outcome(h: &mut H, r: &Response<Bytes>) -> Outcome {
    if let Some(TransportFault::LostResponse | TransportFault::Reset) = TransportFault::of(r) {
        h.advance(1);
        return Outcome::Retry;
    }
    match r.status().as_u16() {
        200 => Outcome::Ok(if r.body().as_ref() == b"null" {
            Value::Null
        } else {
            body_json(r)
        }),
        409 => Outcome::Conflict(body_json(r)["error"].clone()),
        429 | 500..=599 => {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            h.advance(wait.max(1));
            Outcome::Retry
        }
        s => panic!("unexpected {s}: {}", body_text(r)),
    }
}

/// A correct sequential client: appends `chunk`-sized pieces at the server-confirmed
/// offset, trusts `correct_offset`, retries 429/5xx/resets/lost responses, and verifies a
/// finish whose answer was lost with `get_metadata`.
pub(super) fn robust_sequential_upload(h: &mut H, src: &[u8], path: &str, chunk: usize) {
    let mut budget = 10_000;
    let mut tick = || {
        budget -= 1;
        assert!(budget > 0, "client gave up");
    };
    let sid = loop {
        tick();
        let r = h.start(json!({}), b"");
        match outcome(h, &r) {
            Outcome::Ok(v) => break v["session_id"].as_str().unwrap().to_string(),
            Outcome::Retry => continue,
            Outcome::Conflict(e) => panic!("start: {e}"),
        }
    };
    let mut offset = 0usize;
    while offset < src.len() {
        tick();
        let end = (offset + chunk).min(src.len());
        let r = h.append(&sid, offset as u64, false, &src[offset..end]);
        match outcome(h, &r) {
            Outcome::Ok(_) => offset = end,
            Outcome::Retry => {}
            Outcome::Conflict(e) if e[".tag"] == "incorrect_offset" => {
                offset = e["correct_offset"].as_u64().unwrap() as usize;
            }
            Outcome::Conflict(e) => panic!("append: {e}"),
        }
    }
    let mut unsure = false;
    loop {
        tick();
        let r = h.finish(&sid, offset as u64, path, b"");
        match outcome(h, &r) {
            Outcome::Ok(m) => {
                assert_eq!(m["size"], src.len());
                return;
            }
            Outcome::Retry => unsure = true,
            Outcome::Conflict(e) if e[".tag"] == "too_many_write_operations" => {}
            Outcome::Conflict(e) if unsure && e["lookup_failed"][".tag"] == "not_found" => loop {
                tick();
                let body = json!({ "path": path }).to_string();
                let r = h.send(rpc("files/get_metadata", &body));
                match outcome(h, &r) {
                    Outcome::Ok(m) => {
                        assert_eq!(m["size"], src.len());
                        assert_eq!(m["content_hash"], crate::hash::content_hash_hex(src));
                        return;
                    }
                    Outcome::Retry => {}
                    Outcome::Conflict(e) => panic!("get_metadata: {e}"),
                }
            },
            Outcome::Conflict(e) => panic!("finish: {e}"),
        }
    }
}

#[test]
fn sequential_uploads_record_exact_digests() {
    for (size, chunk) in [
        (0usize, 1usize),
        (1, 1),
        (BLOCK - 1, MIB),
        (BLOCK, BLOCK),
        (BLOCK + 1, 3 * MIB),
        (2 * BLOCK + 12_345, 5 * MIB),
    ] {
        let mut h = H::cfg(|c| c.keep_bytes = true);
        let src = data(size, size as u8);
        let path = format!("/seq/{size}.bin");
        robust_sequential_upload(&mut h, &src, &path, chunk);
        assert_file(&h, &path, &src);
        assert_eq!(h.file(&path).unwrap().bytes().unwrap().as_ref(), &src[..]);
        assert_eq!(h.violations(), 0);
    }
}

#[test]
fn sequential_upload_with_data_in_start_close_and_finish() {
    let mut h = H::new();
    let src = data(100_000, 3);
    let sid = h.start_ok(json!({}), &src[..30_000]);
    h.append_ok(&sid, 30_000, false, &src[30_000..60_000]);
    h.finish_ok(&sid, 60_000, "/mix.bin", &src[60_000..]);
    assert_file(&h, "/mix.bin", &src);
    // Python style: last chunk in finish; rclone style: closing append then empty finish.
    let sid = h.start_ok(json!({"close": false}), b"");
    h.append_ok(&sid, 0, true, &src);
    h.finish_ok(&sid, src.len() as u64, "/closed.bin", b"");
    assert_file(&h, "/closed.bin", &src);
    assert_eq!(h.violations(), 0);
}

#[test]
fn concurrent_upload_out_of_order_records_exact_digests() {
    let src = data(5 * BLOCK + 777, 9);
    let mut h = H::cfg(|c| c.keep_bytes = true);
    let sid = h.conc();
    let chunk = 2 * BLOCK;
    // Chunks [0,8), [8,16), [16,20) MiB + tail 777 bytes, sent 2, 1, 0, then the tail.
    let ranges = [(2 * chunk, 5 * BLOCK), (chunk, 2 * chunk), (0, chunk)];
    for (a, b) in ranges {
        h.append_ok(&sid, a as u64, false, &src[a..b]);
    }
    let i = h.info(&sid).unwrap();
    assert_eq!(
        (i.pending_pieces, i.pending_bytes),
        (0, 0),
        "pieces released"
    );
    h.append_ok(&sid, 5 * BLOCK as u64, true, &src[5 * BLOCK..]);
    let m = h.finish_ok(&sid, src.len() as u64, "/conc.bin", b"");
    assert_eq!(m["content_hash"], crate::hash::content_hash_hex(&src));
    assert_file(&h, "/conc.bin", &src);
    assert_eq!(
        h.file("/conc.bin").unwrap().bytes().unwrap().as_ref(),
        &src[..]
    );
    assert_eq!(h.violations(), 0);
}

#[test]
fn concurrent_upload_exact_multiple_closes_with_empty_append() {
    // The Rust SDK example: size a multiple of the chunk → empty closing append at size.
    let src = data(2 * BLOCK, 11);
    let mut h = H::new();
    let sid = h.conc();
    h.append_ok(&sid, BLOCK as u64, false, &src[BLOCK..]);
    h.append_ok(&sid, 0, false, &src[..BLOCK]);
    h.append_ok(&sid, 2 * BLOCK as u64, true, b"");
    h.finish_ok(&sid, 2 * BLOCK as u64, "/even.bin", b"");
    assert_file(&h, "/even.bin", &src);
    // Python style: the last full range carries close: true.
    let sid = h.conc();
    h.append_ok(&sid, 0, false, &src[..BLOCK]);
    h.append_ok(&sid, BLOCK as u64, true, &src[BLOCK..]);
    h.finish_ok(&sid, 2 * BLOCK as u64, "/even2.bin", b"");
    assert_file(&h, "/even2.bin", &src);
    assert_eq!(h.violations(), 0);
}

#[test]
fn concurrent_appends_in_parallel_through_the_streaming_api() {
    let src = data(3 * BLOCK, 12);
    let mut h = H::new();
    let sid = h.conc();
    let mut pendings = Vec::new();
    for i in 0..3 {
        let a = arg(json!({"cursor": {"session_id": sid, "offset": i * BLOCK}}));
        let (parts, _) = up("append_v2", &a, &src[i * BLOCK..(i + 1) * BLOCK]).into_parts();
        let Begin::Body(p) = h.emu.begin(h.now, &parts) else {
            panic!("rejected")
        };
        pendings.push((i, p));
    }
    // Bodies arrive interleaved, in small pieces; requests complete in reverse order.
    for piece in 0..8 {
        for (i, p) in pendings.iter_mut() {
            let s = *i * BLOCK + piece * (BLOCK / 8);
            p.push(Bytes::copy_from_slice(&src[s..s + BLOCK / 8]))
                .unwrap();
        }
    }
    while let Some((_, p)) = pendings.pop() {
        assert_ok_null(&h.emu.complete(h.now, p));
    }
    h.append_ok(&sid, 3 * BLOCK as u64, true, b"");
    h.finish_ok(&sid, 3 * BLOCK as u64, "/par.bin", b"");
    assert_file(&h, "/par.bin", &src);
    assert_eq!(h.violations(), 0);
}

#[test]
fn concurrent_parallel_duplicate_ranges() {
    let a = data(BLOCK, 13);
    let mut b = a.clone();
    b[0] ^= 0xff;
    let mut h = H::new();
    let sid = h.conc();
    let begin = |h: &mut H, bytes: &[u8]| {
        let ar = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
        let (parts, _) = up("append_v2", &ar, bytes).into_parts();
        let Begin::Body(mut p) = h.emu.begin(h.now, &parts) else {
            panic!("rejected")
        };
        p.push(Bytes::copy_from_slice(bytes)).unwrap();
        p
    };
    let p1 = begin(&mut h, &a);
    let p2 = begin(&mut h, &a);
    let p3 = begin(&mut h, &b);
    assert_ok_null(&h.emu.complete(h.now, p1));
    assert_ok_null(&h.emu.complete(h.now, p2)); // identical retry raced: fine
    assert_409(
        &h.emu.complete(h.now, p3),
        "concurrent_session_invalid_offset",
    );
    assert_eq!(h.info(&sid).unwrap().held, BLOCK as u64);
}

#[test]
fn sequential_race_rechecks_offset_at_complete() {
    let mut h = H::new();
    let sid = h.seq();
    let begin = |h: &mut H, body: &[u8]| {
        let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
        let (parts, _) = up("append_v2", &a, body).into_parts();
        let Begin::Body(mut p) = h.emu.begin(h.now, &parts) else {
            panic!("rejected at head")
        };
        p.push(Bytes::copy_from_slice(body)).unwrap();
        p
    };
    let p1 = begin(&mut h, b"first");
    let p2 = begin(&mut h, b"second");
    assert_ok_null(&h.emu.complete(h.now, p1));
    let r = h.emu.complete(h.now, p2);
    let e = assert_409(&r, "incorrect_offset");
    assert_eq!(e["correct_offset"], 5);
    assert_eq!(h.info(&sid).unwrap().held, 5);
    assert_eq!(h.v(Violation::WrongOffset), 1);
    h.finish_ok(&sid, 5, "/race.txt", b"");
    assert_file(&h, "/race.txt", b"first");
}

#[test]
fn abort_without_fault_counts_truncated_body() {
    let mut h = H::new();
    let sid = h.seq();
    let a = arg(json!({"cursor": {"session_id": sid, "offset": 0}}));
    let (parts, _) = up("append_v2", &a, b"abcdef").into_parts();
    let Begin::Body(mut p) = h.emu.begin(h.now, &parts) else {
        panic!()
    };
    p.push(Bytes::from_static(b"abc")).unwrap();
    let r = h.emu.abort(h.now, p);
    assert_eq!(TransportFault::of(&r), Some(TransportFault::Reset));
    assert_eq!(h.info(&sid).unwrap().held, 0);
    assert_eq!(h.v(Violation::TruncatedBody), 1);
}

#[test]
fn content_length_mismatch_in_the_pure_model() {
    let mut h = H::new();
    let sid = h.seq();
    let mut r = h.append(&sid, 0, false, b"");
    assert_ok_null(&r);
    let mut req = up(
        "append_v2",
        &arg(json!({"cursor": {"session_id": sid, "offset": 0}})),
        b"abc",
    );
    req.headers_mut().insert("content-length", 5.into());
    r = h.send(req);
    assert_eq!(r.status(), 400);
    assert_eq!(h.info(&sid).unwrap().held, 0);
    assert_eq!(h.v(Violation::ContentLengthMismatch), 1);
}

#[test]
fn get_metadata_file_folder_and_not_found() {
    let mut h = H::new();
    h.upload("/Meta/File.txt", b"meta");
    let r = h.send(rpc("files/get_metadata", r#"{"path":"/meta/file.TXT"}"#));
    assert_eq!(r.status(), 200);
    assert!(body_text(&r).starts_with(r#"{".tag":"file","#));
    let m = body_json(&r);
    assert_eq!(m["path_display"], "/Meta/File.txt");
    assert_eq!(m["size"], 4);
    let id = m["id"].as_str().unwrap().to_string();
    let r = h.send(rpc("files/get_metadata", &json!({"path": id}).to_string()));
    assert_eq!(body_json(&r)["path_display"], "/Meta/File.txt");
    let r = h.send(rpc("files/get_metadata", r#"{"path":"/Meta"}"#));
    let m = body_json(&r);
    assert_eq!(m[".tag"], "folder");
    assert_eq!(m["name"], "Meta");
    let r = h.send(rpc("files/get_metadata", r#"{"path":"/nope"}"#));
    let e = assert_409(&r, "path/not_found");
    assert_eq!(e, json!({".tag": "path", "path": {".tag": "not_found"}}));
    let r = h.send(rpc(
        "files/get_metadata",
        r#"{"path":"/x","include_deleted":false,"include_media_info":false}"#,
    ));
    assert_409(&r, "path/not_found");
    let r = h.send(rpc("files/get_metadata", r#"{"path":"nope"}"#));
    assert_400(&r, "path:");
    let r = h.send(rpc("files/get_metadata", r#"{"path":"/x","bogus":1}"#));
    assert_400(&r, "unknown field 'bogus'");
}

#[test]
fn seeding_helpers() {
    let mut h = H::cfg(|c| c.keep_bytes = true);
    let f = h
        .emu
        .dropbox_mut()
        .seed_file("/Seed/a.txt", b"seeded")
        .unwrap();
    assert_eq!(f.path, "/Seed/a.txt");
    assert!(f.id.starts_with("id:"));
    assert_eq!(f.bytes().unwrap().as_ref(), b"seeded");
    assert!(
        h.emu
            .dropbox_mut()
            .seed_file("/Seed/a.txt/b", b"x")
            .is_none()
    );
    assert!(h.emu.dropbox_mut().seed_file("relative", b"x").is_none());
    assert!(!h.emu.dropbox_mut().seed_folder("/Seed/a.txt"));
    assert!(h.emu.dropbox_mut().seed_folder("/Seed/sub/deeper"));
    assert_eq!(h.emu.dropbox_mut().used_bytes(), 6);
    assert_eq!(h.emu.files().len(), 1);
    h.emu.reset();
    assert!(h.emu.files().is_empty());
}

/// Bodies that carry `content_hash` and start on a 4 MiB boundary of the file have their
/// block digests reused for the file's content hash (one SHA-256 pass per byte); bodies
/// that start elsewhere are hashed twice. Either way the stored digests must be exact, and
/// a mismatching `content_hash` must still be refused with nothing stored (dropbox.md §8,
/// §12 rule 30).
#[test]
fn bodies_with_content_hash_keep_the_file_digests_exact_aligned_or_not() {
    let hashed = |body: &[u8]| crate::hash::content_hash_hex(body);
    // (start body, then append bodies, then finish body), in bytes.
    for (case, sizes) in [
        // Aligned throughout: every body starts on a block boundary.
        ("aligned", vec![BLOCK, 2 * BLOCK, BLOCK + 5, 0]),
        // Unaligned starts, then back on a boundary by chance, then a partial tail.
        (
            "unaligned",
            vec![MIB + 7, BLOCK, 3 * MIB - 7, 2 * BLOCK + 1, 9],
        ),
        // Aligned start with a partial tail, then an unaligned append spanning blocks.
        ("mixed", vec![2 * BLOCK, BLOCK - 1, BLOCK + 1, BLOCK, 3]),
        // Everything in start+finish, both with hashes.
        ("two", vec![BLOCK, 7]),
    ] {
        let total: usize = sizes.iter().sum();
        let src = data(total, total as u8);
        let mut h = H::new();
        let mut pieces = Vec::new();
        let mut at = 0;
        for n in &sizes {
            pieces.push(&src[at..at + n]);
            at += n;
        }
        let (first, rest) = pieces.split_first().unwrap();
        let (last, middle) = rest.split_last().unwrap();
        let r = h.send(up(
            "start",
            &arg(json!({ "content_hash": hashed(first) })),
            first,
        ));
        assert_eq!(r.status(), 200, "{case}: {}", body_text(&r));
        let sid = body_json(&r)["session_id"].as_str().unwrap().to_string();
        let mut offset = first.len();
        for body in middle {
            // A wrong hash first: refused, and the file state must not move.
            let bad = json!({ "cursor": { "session_id": sid, "offset": offset },
                              "content_hash": hashed(b"not this body") });
            assert_409(
                &h.send(up("append_v2", &arg(bad), body)),
                "content_hash_mismatch",
            );
            let good = json!({ "cursor": { "session_id": sid, "offset": offset },
                               "content_hash": hashed(body) });
            let r = h.send(up("append_v2", &arg(good), body));
            assert_eq!(r.status(), 200, "{case}: {}", body_text(&r));
            offset += body.len();
        }
        let fin = json!({ "cursor": { "session_id": sid, "offset": offset },
                          "commit": { "path": format!("/hashed/{case}.bin") },
                          "content_hash": hashed(last) });
        let r = h.send(up("finish", &arg(fin), last));
        assert_eq!(r.status(), 200, "{case}: {}", body_text(&r));
        assert_eq!(body_json(&r)["content_hash"], hashed(&src), "{case}");
        assert_file(&h, &format!("/hashed/{case}.bin"), &src);
        assert_eq!(
            h.v(Violation::ContentHashMismatch),
            middle.len() as u64,
            "{case}: only the deliberate mismatches"
        );
        assert_eq!(h.violations(), middle.len() as u64, "{case}");
    }
}
