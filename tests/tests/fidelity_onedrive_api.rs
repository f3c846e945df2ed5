//! Fidelity: the `onedrive-api` crate (0.11) drives emulator upload URLs with
//! `UploadSession::from_upload_url` + `upload_part` / `get_meta` / `delete`
//! (onedrive.md §8.1). It must parse our 202 session bodies and final driveItems, and the
//! stored size and hashes must equal the source's. (`OneDrive::new` hard-codes
//! graph.microsoft.com, so sessions are created with a plain request, as §8.1 allows.)

use onedrive_api::UploadSession;
use upload_session_emulator::config::Alignment;
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::{Config, DEFAULT_TOKEN, Service, hash};

const UNIT: u64 = 327_680;

fn start() -> RunningServer {
    start_with(Config::default())
}

fn start_with(config: Config) -> RunningServer {
    EmulatorServer::start(ServerOptions {
        config,
        ..ServerOptions::default()
    })
    .expect("server starts")
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x85EB_CA6Bu32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Creates a session with a plain POST (bearer token only here, §1.2) and returns its
/// uploadUrl.
fn create_session(server: &RunningServer, path: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let name = path.rsplit('/').next().unwrap();
    let body =
        serde_json::json!({"item": {"@microsoft.graph.conflictBehavior": "replace", "name": name}});
    let mut resp = agent
        .post(format!(
            "{}/onedrive/v1.0/me/drive/root:{path}:/createUploadSession",
            server.url()
        ))
        .header("Authorization", format!("Bearer {DEFAULT_TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .expect("create");
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["uploadUrl"].as_str().expect("uploadUrl").to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn assert_stored(server: &RunningServer, path: &str, src: &[u8]) {
    let rec = server
        .emulator()
        .lock()
        .unwrap()
        .file(Service::OneDrive, path)
        .unwrap_or_else(|| panic!("{path} stored"));
    assert_eq!(rec.content.size, src.len() as u64);
    assert_eq!(
        rec.content.sha256.as_deref(),
        Some(hash::sha256_hex(src).as_str())
    );
    assert_eq!(
        rec.content.quick_xor_hash.as_deref(),
        Some(hash::quick_xor_hash_base64(src).as_str())
    );
}

#[test]
fn onedrive_api_uploads_several_sizes_with_aligned_parts() {
    let server = start();
    let client = reqwest::Client::new();
    let rt = runtime();
    for (i, size) in [1u64, UNIT, 3 * UNIT + 5, 10 * UNIT + 12_345]
        .into_iter()
        .enumerate()
    {
        let src = data(size as usize, i as u8);
        let path = format!("/fidelity/od-{size}.bin");
        let session = UploadSession::from_upload_url(create_session(&server, &path));
        let part = 2 * UNIT;
        let mut offset = 0u64;
        let item = rt.block_on(async {
            loop {
                let end = (offset + part).min(size);
                let chunk = src[offset as usize..end as usize].to_vec();
                let r = session
                    .upload_part(chunk, offset..end, size, &client)
                    .await
                    .expect("upload_part");
                if end == size {
                    break r.expect("the last part returns the item");
                }
                assert!(r.is_none(), "202 parses as 'not finished'");
                let meta = session.get_meta(&client).await.expect("get_meta parses");
                assert_eq!(meta.next_expected_ranges.len(), 1);
                assert_eq!(meta.next_expected_ranges[0].start, end);
                offset = end;
            }
        });
        assert_eq!(item.size, Some(size as i64));
        assert!(item.id.is_some());
        let qxh = item
            .file
            .as_ref()
            .and_then(|f| f["hashes"]["quickXorHash"].as_str())
            .map(str::to_string);
        assert_eq!(
            qxh.as_deref(),
            Some(hash::quick_xor_hash_base64(&src).as_str())
        );
        assert_stored(&server, &path, &src);
    }
    assert!(
        server.snapshot().violations.is_empty(),
        "{:?}",
        server.snapshot().violations
    );
}

/// onedrive-api's live test: skipping ahead is a 416 (rule 20), and the status error is
/// kept on the crate's error type; the session survives and completes.
#[test]
fn onedrive_api_sees_416_on_a_gap_and_completes_after_it() {
    // The live service accepts small unaligned fragments (onedrive.md §2.1): lenient mode.
    let mut config = Config::default();
    config.onedrive.alignment = Alignment::Lenient {
        fail_threshold: 1 << 30,
    };
    let server = start_with(config);
    let client = reqwest::Client::new();
    let rt = runtime();
    let src = data(8, 1);
    let session = UploadSession::from_upload_url(create_session(&server, "/fidelity/eight.bin"));
    rt.block_on(async {
        assert!(
            session
                .upload_part(src[..2].to_vec(), 0..2, 8, &client)
                .await
                .unwrap()
                .is_none()
        );
        let err = session
            .upload_part(src[6..].to_vec(), 6..8, 8, &client)
            .await
            .expect_err("a gap is refused");
        assert_eq!(err.status_code().map(|s| s.as_u16()), Some(416));
        let item = session
            .upload_part(src[2..].to_vec(), 2..8, 8, &client)
            .await
            .unwrap()
            .expect("item");
        assert_eq!(item.size, Some(8));
    });
    assert_stored(&server, "/fidelity/eight.bin", &src);
    // The gap is a client error the emulator reports (rule 20).
    let v = server.snapshot().violations;
    assert_eq!(
        v.count(upload_session_emulator::Violation::FragmentOutOfOrder),
        1,
        "{v:?}"
    );
}

#[test]
fn onedrive_api_delete_cancels_and_later_use_is_404() {
    let server = start();
    let client = reqwest::Client::new();
    let rt = runtime();
    let session = UploadSession::from_upload_url(create_session(&server, "/fidelity/gone.bin"));
    rt.block_on(async {
        session.delete(&client).await.expect("204 is success");
        let err = session.get_meta(&client).await.expect_err("gone");
        assert_eq!(err.status_code().map(|s| s.as_u16()), Some(404));
    });
    assert!(
        server
            .emulator()
            .lock()
            .unwrap()
            .file(Service::OneDrive, "/fidelity/gone.bin")
            .is_none()
    );
}
