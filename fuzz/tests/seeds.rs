//! The seed corpus, made from the response shapes of `shared/spec/onedrive.md` (§1.4,
//! §2.2-2.4, §3.1, §5) and `shared/spec/dropbox.md` (§2-§7): each seed is a literal
//! response (`@PHASE STATUS` line, headers, blank line, body; see
//! `upload_session_fuzz`'s literal format) for the response targets, and a few
//! hand-made scripts for the others.
//!
//! `UPDATE_SEEDS=1 cargo test -p upload-session-fuzz --test seeds` writes them to
//! `fuzz/corpus/<target>/seed-*`; without it the test checks the checked-in files match
//! and run without a crash.

use std::path::PathBuf;
use upload_session_fuzz::{TARGETS, corpus_dir};

const QXH: &str = "TADXUJco6p+nPaZjPJ/9E2la2bE=";

fn onedrive_seeds() -> Vec<(&'static str, String)> {
    let json = "Content-Type: application/json";
    let mut v = vec![
        ("create-200", format!("@create 200\n{json}\n\n{{\"uploadUrl\": \"https://sn3302.up.1drv.com/up/fe6987415ace7X4e1eF866337\", \"expirationDateTime\": \"2015-01-29T09:21:55.523Z\", \"nextExpectedRanges\": [\"0-\"]}}")),
        ("create-200-no-ranges", format!("@create 200\n{json}\n\n{{\"uploadUrl\": \"http://127.0.0.1:0/onedrive/up/x?tempauth=y\", \"expirationDateTime\": \"2100-01-01T00:00:00Z\"}}")),
        ("create-200-http-remote", format!("@create 200\n{json}\n\n{{\"uploadUrl\": \"http://evil.example/up/x\", \"expirationDateTime\": \"2100-01-01T00:00:00Z\", \"nextExpectedRanges\": [\"0-\"]}}")),
        ("create-409", format!("@create 409\n{json}\n\n{{\"error\": {{\"code\": \"nameAlreadyExists\", \"message\": \"Another file exists with the same name.\"}}}}")),
        ("create-401", format!("@create 401\n{json}\n\n{{\"error\":{{\"code\":\"InvalidAuthenticationToken\",\"message\":\"Access token has expired.\"}}}}")),
        ("create-507", format!("@create 507\n{json}\n\n{{\"error\":{{\"code\":\"quotaLimitReached\",\"message\":\"Insufficient Space Available\"}}}}")),
        ("create-429-retry-after", format!("@create 429\nRetry-After: 41\n{json}\n\n{{\"error\":{{\"code\":\"activityLimitReached\",\"innerError\":{{\"code\":\"throttledRequest\"}}}}}}")),
        ("create-429-ten-years", format!("@create 429\nRetry-After: 315360000\n{json}\n\n{{\"error\":{{\"code\":\"activityLimitReached\"}}}}")),
        ("create-503-date-past", "@create 503\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\n\n".to_string()),
        ("fragment-202", format!("@fragment 202\n{json}\n\n{{\"expirationDateTime\": \"2015-01-29T09:21:55.523Z\", \"nextExpectedRanges\": [\"327680-\"]}}")),
        ("fragment-202-closed", format!("@fragment 202\n{json}\n\n{{\"expirationDateTime\": \"2100-01-01T00:00:00Z\", \"nextExpectedRanges\": [\"327680-1048675\"]}}")),
        ("fragment-202-several", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": [\"12345-55232\", \"77829-99375\"]}}")),
        ("fragment-202-backwards", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": [\"0-\"]}}")),
        ("fragment-202-beyond", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": [\"99999999999-\"]}}")),
        ("fragment-202-overflow", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": [\"18446744073709551616-\"]}}")),
        ("fragment-202-empty", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": []}}")),
        ("fragment-202-not-array", format!("@fragment 202\n{json}\n\n{{\"nextExpectedRanges\": \"0-\"}}")),
        ("fragment-201-item", format!("@fragment 201\n{json}\n\n{{\"id\": \"01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K\", \"name\": \"file.bin\", \"size\": 983140, \"file\": {{\"hashes\": {{\"quickXorHash\": \"{QXH}\"}}}}}}")),
        ("fragment-201-session-shape", format!("@fragment 201\n{json}\n\n{{\"expirationDateTime\": \"2100-01-01T00:00:00Z\", \"nextExpectedRanges\": [\"655360-\"]}}")),
        ("fragment-200-no-id", format!("@fragment 200\n{json}\n\n{{\"name\": \"file.bin\", \"size\": 983140}}")),
        ("fragment-416", format!("@fragment 416\n{json}\n\n{{\"error\": {{\"code\": \"invalidRange\", \"message\": \"fragment out of order\", \"innerError\": {{\"code\": \"fragmentOutOfOrder\"}}}}}}")),
        ("fragment-416-empty", "@fragment 416\n\n".to_string()),
        ("fragment-404", format!("@fragment 404\n{json}\n\n{{\"error\": {{\"code\": \"itemNotFound\", \"message\": \"The upload session was not found\"}}}}")),
        ("fragment-401-expired-url", format!("@fragment 401\n{json}\n\n{{\"error\":{{\"code\":\"unauthenticated\",\"message\":\"Unauthenticated\",\"innerError\":{{\"code\":\"expiredToken\"}}}}}}")),
        ("fragment-409-modified", format!("@fragment 409\n{json}\n\n{{\"error\":{{\"code\":\"resourceModified\",\"message\":\"The resource has changed\"}}}}")),
        ("fragment-413", "@fragment 413\nContent-Type: text/plain\n\nThe entity size in the request exceeds the maximum limit.".to_string()),
        ("fragment-500", format!("@fragment 500\n{json}\n\n{{\"error\":{{\"code\":\"generalException\",\"message\":\"General exception while processing\"}}}}")),
        ("fragment-504-html", "@fragment 504\nContent-Type: text/html\n\n<html><body>Gateway Timeout</body></html>".to_string()),
        ("fragment-503-retry", "@fragment 503\nRetry-After: 3600\n\n".to_string()),
        ("fragment-429-lowercase-inner", format!("@fragment 429\nRetry-After: 30\n{json}\n\n{{\"error\":{{\"code\":\"activityLimitReached\",\"innererror\":{{\"code\":\"throttledRequest\",\"innererror\":{{\"code\":\"quota\"}}}}}}}}")),
        ("fragment-202-truncated", format!("@fragment 202\n{json}\nContent-Length: 10737418240\n\n{{\"nextExpectedRanges\": [\"32768")),
        ("status-200", format!("@status 200\n{json}\n\n{{\"expirationDateTime\": \"2015-01-29T09:21:55.523Z\", \"nextExpectedRanges\": [\"12345-\"]}}")),
        ("status-200-unaligned", format!("@status 200\n{json}\n\n{{\"nextExpectedRanges\": [\"1325399-\"]}}")),
        ("status-200-done", format!("@status 200\n{json}\n\n{{\"nextExpectedRanges\": []}}")),
        ("status-200-wrong-types", format!("@status 200\n{json}\n\n{{\"nextExpectedRanges\": [5, null], \"expirationDateTime\": 17}}")),
        ("status-404", format!("@status 404\n{json}\n\n{{\"error\": {{\"code\": \"itemNotFound\", \"message\": \"The upload session was not found\"}}}}")),
        ("commit-201", format!("@commit 201\n{json}\n\n{{\"id\": \"ITEM\", \"size\": 983140, \"file\": {{\"hashes\": {{\"quickXorHash\": \"{QXH}\", \"sha256Hash\": \"00\"}}}}}}")),
        ("commit-409", format!("@commit 409\n{json}\n\n{{\"error\":{{\"code\":\"nameAlreadyExists\"}}}}")),
        ("metadata-200", format!("@metadata 200\n{json}\n\n{{\"id\": \"ITEM\", \"size\": -1, \"file\": {{\"hashes\": {{\"quickXorHash\": 42}}}}}}")),
        ("metadata-200-huge-size", format!("@metadata 200\n{json}\n\n{{\"id\": \"ITEM\", \"size\": 1e400}}")),
        ("metadata-404", format!("@metadata 404\n{json}\n\n{{\"error\":{{\"code\":\"itemNotFound\"}}}}")),
    ];
    let deep = format!(
        "{}\"code\":\"x\"{}",
        "{\"code\":\"a\",\"innerError\":".repeat(40),
        "}".repeat(40)
    );
    v.push((
        "fragment-500-deep-inner",
        format!("@fragment 500\n{json}\n\n{{\"error\":{deep}}}"),
    ));
    v
}

fn dropbox_seeds() -> Vec<(&'static str, String)> {
    let json = "Content-Type: application/json";
    let meta = "\"name\": \"file é.bin\", \"id\": \"id:a4ayc_80_OEAAAAAAAAAXw\", \"rev\": \"a1c10ce0dd78\", \"size\": 2500, \"path_lower\": \"/fz/file é.bin\", \"path_display\": \"/fz/file é.bin\", \"client_modified\": \"2015-05-12T15:50:38Z\", \"server_modified\": \"2015-05-12T15:50:38Z\", \"content_hash\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"";
    vec![
        ("start-200", format!("@start 200\n{json}\n\n{{\"session_id\": \"pid_upload_session:ABC\"}}")),
        ("start-200-empty-id", format!("@start 200\n{json}\n\n{{\"session_id\": \"\"}}")),
        ("start-400-text", "@start 400\nContent-Type: text/plain\n\nError in call to API function \"files/upload_session/start\": Bad HTTP \"Content-Type\" header".to_string()),
        ("start-401-expired", format!("@start 401\n{json}\n\n{{\"error_summary\": \"expired_access_token/.\", \"error\": {{\".tag\": \"expired_access_token\"}}}}")),
        ("start-429-json", format!("@start 429\nRetry-After: 1\n{json}\n\n{{\"error_summary\": \"too_many_requests/..\", \"error\": {{\"reason\": {{\".tag\": \"too_many_requests\"}}, \"retry_after\": 300}}}}")),
        ("start-429-text", "@start 429\nRetry-After: 60.0\nContent-Type: text/plain\n\ntoo_many_requests".to_string()),
        ("append-200-null", format!("@append 200\n{json}\n\nnull")),
        ("append-409-incorrect-offset", format!("@append 409\n{json}\n\n{{\"error_summary\": \"incorrect_offset/.\", \"error\": {{\".tag\": \"incorrect_offset\", \"correct_offset\": 1000}}}}")),
        ("append-409-offset-beyond", format!("@append 409\n{json}\n\n{{\"error_summary\": \"incorrect_offset/.\", \"error\": {{\".tag\": \"incorrect_offset\", \"correct_offset\": 300000000}}}}")),
        ("append-409-offset-negative", format!("@append 409\n{json}\n\n{{\"error_summary\": \"incorrect_offset/.\", \"error\": {{\".tag\": \"incorrect_offset\", \"correct_offset\": -5}}}}")),
        ("append-409-not-found", format!("@append 409\n{json}\n\n{{\"error_summary\": \"not_found/..\", \"error\": {{\".tag\": \"not_found\"}}}}")),
        ("append-409-closed", format!("@append 409\n{json}\n\n{{\"error_summary\": \"closed/\", \"error\": {{\".tag\": \"closed\"}}}}")),
        ("append-409-lock", format!("@append 429\nRetry-After: 1\n{json}\n\n{{\"error_summary\": \"too_many_write_operations/.\", \"error\": {{\"reason\": {{\".tag\": \"too_many_write_operations\"}}}}}}")),
        ("append-409-hash", format!("@append 409\n{json}\n\n{{\"error_summary\": \"content_hash_mismatch/\", \"error\": {{\".tag\": \"content_hash_mismatch\"}}}}")),
        ("append-500-empty", "@append 500\n\n".to_string()),
        ("append-503-grpc", "@append 503\nContent-Type: application/grpc\n\n".to_string()),
        ("finish-200", format!("@finish 200\n{json}\n\n{{{meta}}}")),
        ("finish-409-lookup-incorrect-offset", format!("@finish 409\n{json}\n\n{{\"error_summary\": \"lookup_failed/incorrect_offset/..\", \"error\": {{\".tag\": \"lookup_failed\", \"lookup_failed\": {{\".tag\": \"incorrect_offset\", \"correct_offset\": 12556930}}}}}}")),
        ("finish-409-path-conflict", format!("@finish 409\n{json}\n\n{{\"error_summary\": \"path/conflict/file/..\", \"error\": {{\".tag\": \"path\", \"path\": {{\".tag\": \"conflict\", \"conflict\": {{\".tag\": \"file\"}}}}}}}}")),
        ("finish-409-insufficient-space", format!("@finish 409\n{json}\n\n{{\"error_summary\": \"path/insufficient_space/\", \"error\": {{\".tag\": \"path\", \"path\": {{\".tag\": \"insufficient_space\"}}}}}}")),
        ("finish-409-not-closed", format!("@finish 409\n{json}\n\n{{\"error_summary\": \"lookup_failed/not_closed/\", \"error\": {{\".tag\": \"lookup_failed\", \"lookup_failed\": {{\".tag\": \"not_closed\"}}}}}}")),
        ("finish-200-wrong-size", format!("@finish 200\n{json}\n\n{{\"name\": \"f\", \"id\": \"id:x\", \"rev\": \"1\", \"size\": 18446744073709551615}}")),
        ("finish-200-wrong-types", format!("@finish 200\n{json}\n\n{{\"name\": 5, \"id\": null, \"rev\": [], \"size\": \"2500\"}}")),
        ("lookup-200-file", format!("@lookup 200\n{json}\n\n{{\".tag\": \"file\", {meta}}}")),
        ("lookup-200-folder", format!("@lookup 200\n{json}\n\n{{\".tag\": \"folder\", \"name\": \"fz\", \"id\": \"id:y\"}}")),
        ("lookup-409-not-found", format!("@lookup 409\n{json}\n\n{{\"error_summary\": \"path/not_found/.\", \"error\": {{\".tag\": \"path\", \"path\": {{\".tag\": \"not_found\"}}}}}}")),
        ("batch-200", format!("@batch 200 2\n{json}\n\n{{\"entries\": [{{\".tag\": \"success\", {meta}}}, {{\".tag\": \"failure\", \"failure\": {{\".tag\": \"lookup_failed\", \"lookup_failed\": {{\".tag\": \"incorrect_offset\", \"correct_offset\": 7}}}}}}]}}")),
        ("batch-200-count-mismatch", format!("@batch 200 3\n{json}\n\n{{\"entries\": []}}")),
        ("batch-200-bad-entry", format!("@batch 200 1\n{json}\n\n{{\"entries\": [{{\".tag\": \"maybe\"}}]}}")),
    ]
}

fn api_arg_seeds() -> Vec<(&'static str, String)> {
    vec![
        ("plain", "/Homework/math/Matrices.txt".into()),
        ("unicode", "/Photos/été 😀.jpg".into()),
        ("crlf-nul", "/a\r\nX-Injected: 1\u{0}.txt".into()),
        ("controls", "/\u{7f}\u{1b}[31m\u{2028}\u{feff}".into()),
        ("ns", "ns:123/x/y".into()),
        ("quotes", "/\"quoted\" \\back\\slash".into()),
    ]
}

fn emulator_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("zeros", vec![0; 64]),
        ("ones", vec![1; 256]),
        ("ramp", (0..=255u8).collect()),
        (
            "ramp-twice",
            (0..=255u8)
                .chain(0..=255u8)
                .map(|b| b.wrapping_mul(7))
                .collect(),
        ),
    ]
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut v = Vec::new();
    for (n, s) in onedrive_seeds() {
        v.push(("onedrive_response", format!("seed-{n}"), s.into_bytes()));
    }
    for (n, s) in dropbox_seeds() {
        v.push(("dropbox_response", format!("seed-{n}"), s.into_bytes()));
    }
    for (n, s) in api_arg_seeds() {
        v.push(("dropbox_api_arg", format!("seed-{n}"), s.into_bytes()));
    }
    for (n, b) in emulator_seeds() {
        v.push(("emulator_request", format!("seed-{n}"), b.clone()));
        // Byte scripts for the machine targets too (empty: an honest server).
        v.push(("onedrive_machine", format!("seed-{n}"), b.clone()));
        v.push(("dropbox_machine", format!("seed-{n}"), b));
    }
    v
}

#[test]
fn seeds_are_checked_in_and_run() {
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    for (target, name, bytes) in seeds() {
        assert!(names.contains(&target));
        let path: PathBuf = corpus_dir(target).join(&name);
        if update {
            std::fs::create_dir_all(corpus_dir(target)).expect("corpus dir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert_eq!(
                on_disk,
                bytes,
                "{} is stale: UPDATE_SEEDS=1 rewrites it",
                path.display()
            );
        }
        let f = TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .map(|(_, f)| *f)
            .expect("target");
        f(&bytes);
    }
}
