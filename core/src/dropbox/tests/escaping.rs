//! `Dropbox-API-Arg` over arbitrary Unicode (dropbox.md §1.3): always a valid header of
//! printable ASCII, decoding back to the same text, never able to inject a header.

use crate::dropbox::{CommitInfo, DropboxConfig, DropboxUpload, api_arg_json};
use crate::testing::dropbox::{API, CONTENT, arg};
use crate::{AccessToken, Output, UploadMachine};
use proptest::prelude::*;
use std::time::Instant;

fn assert_header_safe(text: &str) {
    assert!(text.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{text:?}");
    assert!(http::HeaderValue::from_str(text).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arg_json_is_printable_ascii_and_round_trips(s in any::<String>()) {
        let v = serde_json::json!({ "path": s.clone(), "nested": { "k": [s.clone()] } });
        let text = api_arg_json(&v);
        assert_header_safe(&text);
        prop_assert!(!text.contains('\r') && !text.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn commit_paths_reach_the_wire_intact(s in "\\PC{0,40}", t in any::<String>()) {
        // Any valid WritePathOrId, through the real request builder.
        let path = format!("/{}x{}", s.replace('/', "_"), t.replace('/', "_"));
        let commit = CommitInfo::new(path.clone()).unwrap();
        let mut m = DropboxUpload::builder(commit, 0)
            .config(DropboxConfig::with_hosts(CONTENT, API))
            .access_token(AccessToken::new("t").unwrap())
            .build()
            .unwrap();
        let now = Instant::now();
        let Output::Send(start) = m.poll_output(now) else { panic!("start expected") };
        m.handle_response(now, start.id(), crate::testing::json(200, serde_json::json!({"session_id": "s"}))).unwrap();
        let fin = loop {
            match m.poll_output(now) {
                Output::Send(r) => break r,
                Output::Event(_) => {}
                other => panic!("{other:?}"),
            }
        };
        let header = fin.request().headers()["dropbox-api-arg"].to_str().unwrap().to_string();
        assert_header_safe(&header);
        let sent = arg(&fin);
        prop_assert_eq!(sent["commit"]["path"].as_str().unwrap(), path.as_str());
        // Exactly the documented headers: nothing smuggled in through the path.
        let names: Vec<&str> = fin.request().headers().keys().map(|k| k.as_str()).collect();
        prop_assert_eq!(names.len(), 4, "{:?}", names);
    }
}

#[test]
fn astral_characters_are_surrogate_pairs() {
    let v = serde_json::json!({"path": "/tëst/😀.txt"});
    assert_eq!(
        api_arg_json(&v),
        r#"{"path":"/t\u00ebst/\ud83d\ude00.txt"}"#
    );
    // What dropbox-sdk-rust 0.21 gets wrong (§9.1): never `\u1f600`.
    assert!(!api_arg_json(&v).contains("\\u1f600"));
}
