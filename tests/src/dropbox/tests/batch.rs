//! Rules 59-65: batch routes.

use super::*;

fn finish_entry(sid: &str, offset: u64, path: &str) -> Value {
    json!({"cursor": {"session_id": sid, "offset": offset}, "commit": {"path": path}})
}

fn batch_v2(h: &mut H, entries: Vec<Value>) -> Response<Bytes> {
    h.send(rpc(
        "files/upload_session/finish_batch_v2",
        &json!({ "entries": entries }).to_string(),
    ))
}

/// A closed sequential session holding `bytes`.
fn closed(h: &mut H, bytes: &[u8]) -> String {
    h.start_ok(json!({"close": true}), bytes)
}

#[test]
fn dropbox_rule_59_start_batch() {
    let mut h = H::new();
    for n in ["0", "1001"] {
        let r = h.send(rpc(
            "files/upload_session/start_batch",
            &format!(r#"{{"num_sessions":{n}}}"#),
        ));
        assert_400(&r, "num_sessions");
    }
    assert_eq!(h.v(Violation::BadBatch), 2);
    assert_eq!(h.emu.dropbox_mut().session_count(), 0);
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":3,"session_type":{".tag":"concurrent"}}"#,
    ));
    assert_eq!(r.status(), 200);
    let ids: Vec<String> = body_json(&r)["session_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert!(h.info(id).unwrap().concurrent);
    }
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        r#"{"num_sessions":1000}"#,
    ));
    assert_eq!(body_json(&r)["session_ids"].as_array().unwrap().len(), 1000);
    assert!(
        !h.info(body_json(&r)["session_ids"][0].as_str().unwrap())
            .unwrap()
            .concurrent
    );
}

#[test]
fn dropbox_rule_60_batch_entry_limit() {
    let mut h = H::new();
    let sid = closed(&mut h, b"x");
    let many: Vec<Value> = (0..1001)
        .map(|i| finish_entry(&sid, 1, &format!("/f{i}")))
        .collect();
    let r = batch_v2(&mut h, many.clone());
    assert_400(&r, "entries: list has 1001 items");
    let r = h.send(rpc(
        "files/upload_session/finish_batch",
        &json!({ "entries": many }).to_string(),
    ));
    assert_400(&r, "more than the maximum of 1000");
    assert_eq!(h.v(Violation::BadBatch), 2);
    assert!(h.emu.files().is_empty());
    assert!(h.info(&sid).is_some());
}

#[test]
fn dropbox_rule_61_finish_batch_v2_results_in_order() {
    let mut h = H::new();
    let a = closed(&mut h, b"alpha");
    let b = closed(&mut h, b"beta");
    let c = closed(&mut h, b"gamma");
    h.emu.dropbox_mut().seed_folder("/blocked");
    let r = batch_v2(
        &mut h,
        vec![
            finish_entry(&a, 5, "/batch/a.txt"),
            finish_entry(&b, 4, "/blocked"),
            finish_entry(&c, 5, "/batch/c.txt"),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = body_json(&r);
    let e = v["entries"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0][".tag"], "success");
    assert_eq!(e[0]["path_display"], "/batch/a.txt");
    assert_eq!(e[0]["size"], 5);
    assert_eq!(
        e[0]["content_hash"],
        crate::hash::content_hash_hex(b"alpha")
    );
    assert_eq!(
        e[1],
        json!({".tag": "failure", "failure": {".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "folder"}}}})
    );
    assert_eq!(e[2]["path_display"], "/batch/c.txt");
    assert_file(&h, "/batch/a.txt", b"alpha");
    assert_file(&h, "/batch/c.txt", b"gamma");
    // The failed entry's session is still usable.
    assert!(h.info(&b).is_some());
    let r = batch_v2(&mut h, vec![finish_entry(&b, 4, "/batch/b.txt")]);
    assert_eq!(body_json(&r)["entries"][0][".tag"], "success");
    assert_file(&h, "/batch/b.txt", b"beta");
    // Empty batch.
    let r = batch_v2(&mut h, vec![]);
    assert_eq!(body_json(&r), json!({"entries": []}));
}

#[test]
fn dropbox_rule_62_batch_entry_not_closed_or_wrong_offset() {
    let mut h = H::new();
    let open = h.start_ok(json!({}), b"open");
    let conc_open = h.conc();
    let c = closed(&mut h, b"closed");
    let r = batch_v2(
        &mut h,
        vec![
            finish_entry(&open, 4, "/o"),
            finish_entry(&conc_open, 0, "/co"),
            finish_entry(&c, 2, "/c"),
        ],
    );
    let v = body_json(&r);
    let nc = json!({".tag": "failure", "failure": {".tag": "lookup_failed", "lookup_failed": {".tag": "not_closed"}}});
    assert_eq!(v["entries"][0], nc);
    assert_eq!(v["entries"][1], nc);
    assert_eq!(
        v["entries"][2],
        json!({".tag": "failure", "failure": {".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset", "correct_offset": 6}}})
    );
    assert_eq!(h.v(Violation::BatchSessionNotClosed), 2);
    assert_eq!(h.v(Violation::WrongOffset), 1);
    assert!(h.emu.files().is_empty());
}

#[test]
fn dropbox_rule_63_overlapping_batch_commits() {
    let mut h = H::new();
    let a = closed(&mut h, b"a");
    let b = closed(&mut h, b"b");
    // First batch commit: head arrived, body still streaming (holds the lock).
    let body = json!({"entries": [finish_entry(&a, 1, "/a")]}).to_string();
    let (parts, _) = rpc("files/upload_session/finish_batch_v2", &body).into_parts();
    let crate::Begin::Body(mut first) = h.emu.begin(h.now, &parts) else {
        panic!("expected body")
    };
    // A second batch commit overlaps.
    let r = batch_v2(&mut h, vec![finish_entry(&b, 1, "/b")]);
    assert_eq!(r.status(), 429);
    assert_eq!(summary(&r), "too_many_write_operations");
    assert_eq!(
        body_json(&r)["error"]["reason"][".tag"],
        "too_many_write_operations"
    );
    assert_eq!(h.v(Violation::OverlappingBatchCommit), 1);
    assert!(h.file("/b").is_none());
    // The first completes normally and releases the lock.
    first.push(Bytes::from(body)).unwrap();
    let r = h.emu.complete(h.now, first);
    assert_eq!(body_json(&r)["entries"][0][".tag"], "success");
    let r = batch_v2(&mut h, vec![finish_entry(&b, 1, "/b")]);
    assert_eq!(body_json(&r)["entries"][0][".tag"], "success");

    // A v1 job in progress holds the lock until its virtual deadline.
    let c = closed(&mut h, b"c");
    let d = closed(&mut h, b"d");
    let r = h.send(rpc(
        "files/upload_session/finish_batch",
        &json!({"entries": [finish_entry(&c, 1, "/c")]}).to_string(),
    ));
    assert_eq!(body_json(&r)[".tag"], "async_job_id");
    let r = batch_v2(&mut h, vec![finish_entry(&d, 1, "/d")]);
    assert_eq!(r.status(), 429);
    assert_eq!(h.v(Violation::OverlappingBatchCommit), 2);
    h.advance(2);
    let r = batch_v2(&mut h, vec![finish_entry(&d, 1, "/d")]);
    assert_eq!(body_json(&r)["entries"][0][".tag"], "success");
    assert!(h.file("/c").is_some());
}

#[test]
fn dropbox_rule_64_finish_batch_v1_async_job() {
    let mut h = H::new();
    let a = closed(&mut h, b"one");
    let b = closed(&mut h, b"two");
    let r = h.send(rpc(
        "files/upload_session/finish_batch",
        &json!({"entries": [finish_entry(&a, 3, "/j/a"), finish_entry(&b, 0, "/j/b")]}).to_string(),
    ));
    assert_eq!(r.status(), 200);
    let text = body_text(&r);
    assert!(
        text.starts_with(r#"{".tag":"async_job_id","async_job_id":""#),
        "{text}"
    );
    let job = body_json(&r)["async_job_id"].as_str().unwrap().to_string();
    let check = |h: &mut H, id: &str| {
        h.send(rpc(
            "files/upload_session/finish_batch/check",
            &json!({ "async_job_id": id }).to_string(),
        ))
    };
    let r = check(&mut h, &job);
    assert_eq!(body_json(&r), json!({".tag": "in_progress"}));
    assert!(
        h.file("/j/a").is_none(),
        "not committed before the deadline"
    );
    h.advance(1);
    assert_eq!(
        body_json(&check(&mut h, &job)),
        json!({".tag": "in_progress"})
    );
    h.advance(1);
    let r = check(&mut h, &job);
    let v = body_json(&r);
    assert_eq!(v[".tag"], "complete");
    assert_eq!(v["entries"][0][".tag"], "success");
    assert_eq!(v["entries"][0]["path_display"], "/j/a");
    assert_eq!(
        v["entries"][1]["failure"]["lookup_failed"]["correct_offset"],
        3
    );
    assert_file(&h, "/j/a", b"one");
    // Still complete on a later poll.
    assert_eq!(body_json(&check(&mut h, &job))[".tag"], "complete");
    // Unknown job id.
    let r = check(&mut h, "dbjob:unknown");
    assert_409(&r, "invalid_async_job_id");
    // A zero job duration completes at once.
    let mut h = H::cfg(|c| c.dropbox.batch_job_duration = Duration::ZERO);
    let a = closed(&mut h, b"now");
    let r = h.send(rpc(
        "files/upload_session/finish_batch",
        &json!({"entries": [finish_entry(&a, 3, "/now")]}).to_string(),
    ));
    assert_eq!(body_json(&r)[".tag"], "complete");
    assert_file(&h, "/now", b"now");
}

fn append_batch(h: &mut H, entries: Value, body: &[u8]) -> Response<Bytes> {
    h.send(up(
        "append_batch",
        &arg(json!({ "entries": entries })),
        body,
    ))
}

#[test]
fn dropbox_rule_65_append_batch() {
    let mut h = H::new();
    let a = h.seq();
    let b = h.start_ok(json!({}), b"bb");
    let c = h.conc();
    let blk = data(BLOCK, 65);
    let mut body = b"aaa".to_vec();
    body.extend_from_slice(b"BB");
    body.extend_from_slice(&blk);
    body.extend_from_slice(b"zz");
    let entries = json!([
        {"cursor": {"session_id": a, "offset": 0}, "length": 3},
        {"cursor": {"session_id": b, "offset": 0}, "length": 2},
        {"cursor": {"session_id": c, "offset": 0}, "length": BLOCK},
        {"cursor": {"session_id": "pid_upload_session:none", "offset": 0}, "length": 2, "close": true},
    ]);
    // Σ length ≠ body length.
    let r = append_batch(&mut h, entries.clone(), &body[..body.len() - 1]);
    assert_409(&r, "length_mismatch");
    let mut req = up(
        "append_batch",
        &arg(json!({ "entries": entries })),
        &body[..body.len() - 1],
    );
    req.headers_mut().remove("content-length");
    assert_409(&h.send(req), "length_mismatch");
    assert_eq!(h.v(Violation::BadBatch), 2);
    assert_eq!(h.info(&a).unwrap().held, 0);
    // Per-entry results.
    let r = append_batch(&mut h, entries, &body);
    assert_eq!(r.status(), 200, "{}", body_text(&r));
    let v = body_json(&r);
    assert_eq!(v["entries"][0], json!({".tag": "success"}));
    assert_eq!(
        v["entries"][1],
        json!({".tag": "failure", "failure": {".tag": "incorrect_offset", "correct_offset": 2}})
    );
    assert_eq!(v["entries"][2], json!({".tag": "success"}));
    assert_eq!(
        v["entries"][3],
        json!({".tag": "failure", "failure": {".tag": "not_found"}})
    );
    assert_eq!(h.info(&a).unwrap().held, 3);
    assert_eq!(h.info(&b).unwrap().held, 2);
    assert_eq!(h.info(&c).unwrap().held, BLOCK as u64);
    // Closing through append_batch, then commit through finish_batch_v2.
    let r = append_batch(
        &mut h,
        json!([{"cursor": {"session_id": a, "offset": 3}, "length": 1, "close": true},
               {"cursor": {"session_id": c, "offset": BLOCK}, "length": 1, "close": true}]),
        b"AC",
    );
    assert_eq!(
        body_json(&r)["entries"],
        json!([{".tag": "success"}, {".tag": "success"}])
    );
    let r = h.send(rpc(
        "files/upload_session/finish_batch_v2",
        &json!({"entries": [
            {"cursor": {"session_id": a, "offset": 4}, "commit": {"path": "/ab/a"}},
            {"cursor": {"session_id": c, "offset": BLOCK + 1}, "commit": {"path": "/ab/c"}},
        ]})
        .to_string(),
    ));
    let v = body_json(&r);
    assert_eq!(v["entries"][0][".tag"], "success", "{v}");
    assert_eq!(v["entries"][1][".tag"], "success", "{v}");
    assert_file(&h, "/ab/a", b"aaaA");
    let mut csrc = blk.clone();
    csrc.push(b'C');
    assert_file(&h, "/ab/c", &csrc);
    // Whole-call content_hash covers the body.
    let d = h.seq();
    let a2 = json!({"entries": [{"cursor": {"session_id": d, "offset": 0}, "length": 2}], "content_hash": crate::hash::content_hash_hex(b"xx")});
    assert_409(
        &h.send(up("append_batch", &arg(a2.clone()), b"xy")),
        "content_hash_mismatch",
    );
    assert_eq!(h.info(&d).unwrap().held, 0);
    assert_eq!(
        body_json(&h.send(up("append_batch", &arg(a2), b"xx")))["entries"][0][".tag"],
        "success"
    );
}

#[test]
fn dropbox_rule_63_retried_v1_launch_after_5xx_is_not_a_violation() {
    let mut h = H::faults(FaultPlan::none().script(
        Some(crate::RouteKind::DropboxBatch),
        1,
        crate::Fault::ErrorAfter { status: 503 },
    ));
    let a = closed(&mut h, b"a");
    let body = json!({"entries": [finish_entry(&a, 1, "/a")]}).to_string();
    let r = h.send(rpc("files/upload_session/finish_batch", &body));
    assert_eq!(r.status(), 503);
    // The client retries the launch; the unseen job still holds the lock.
    let r = h.send(rpc("files/upload_session/finish_batch", &body));
    assert_eq!(r.status(), 429);
    assert_eq!(h.violations(), 0);
    h.advance(2);
    let r = h.send(rpc("files/upload_session/finish_batch", &body));
    let job = body_json(&r)["async_job_id"].as_str().unwrap().to_string();
    h.advance(2);
    let r = h.send(rpc(
        "files/upload_session/finish_batch/check",
        &json!({ "async_job_id": job }).to_string(),
    ));
    // The first (unseen) job committed the file; this one finds the session consumed.
    assert_eq!(
        body_json(&r)["entries"][0]["failure"],
        json!({".tag": "lookup_failed", "lookup_failed": {".tag": "not_found"}})
    );
    assert_file(&h, "/a", b"a");
    assert_eq!(h.violations(), 0);
}
