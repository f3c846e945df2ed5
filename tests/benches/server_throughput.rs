//! Upload-body throughput of the emulator server on loopback.
//!
//! ```text
//! cargo bench -p upload-session-emulator --bench server_throughput -- \
//!     [--route discard|onedrive|dropbox] [--digests all|native|none] [--tls] \
//!     [--total-gib 4] [--body-mib 60] [--conns 2] [--content-hash]
//! ```
//!
//! A raw client (std `TcpStream`, or rustls over it with `--tls`) pushes `--total-gib` of
//! request bodies of `--body-mib` each over `--conns` parallel keep-alive connections, one
//! thread each, and reports body bytes per second. The body is one pseudo-random 1 MiB
//! buffer written repeatedly, so the client costs little more than the kernel copy.
//!
//! Routes:
//! - `discard`: `PUT /_emulator/discard`, the server's transport alone (hyper, TLS, the
//!   streaming loop), no model;
//! - `onedrive`: each connection creates its own OneDrive upload session and PUTs aligned
//!   fragments to its `uploadUrl` through the full model (digests, checks);
//! - `dropbox`: each connection starts its own sequential Dropbox upload session, appends
//!   bodies (`append_v2`, rounded to 4 MiB) and finishes it with an empty body.
//!
//! `--digests` selects what the storage computes: `all` (SHA-256, QuickXorHash and the
//! Dropbox content hash), `native` (only the route's service digest: QuickXorHash for
//! OneDrive, the content hash for Dropbox), `none`.
//!
//! `--content-hash` (Dropbox): every append carries the body's `content_hash`, as the
//! core's Dropbox machine sends it, so the server checks each body's hash as well
//! (computed by the client before the timed window).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Config, DEFAULT_TOKEN};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Discard,
    OneDrive,
    Dropbox,
}

#[derive(Clone, Debug)]
struct Opts {
    route: Route,
    digests: String,
    tls: bool,
    total: u64,
    body: u64,
    conns: usize,
    content_hash: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        route: Route::Discard,
        digests: "all".into(),
        tls: false,
        total: 4 << 30,
        body: 60 << 20,
        conns: 2,
        content_hash: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--route" => {
                o.route = match val().as_str() {
                    "discard" => Route::Discard,
                    "onedrive" => Route::OneDrive,
                    "dropbox" => Route::Dropbox,
                    r => panic!("unknown route {r}"),
                }
            }
            "--digests" => o.digests = val(),
            "--tls" => o.tls = true,
            "--total-gib" => o.total = (val().parse::<f64>().unwrap() * (1u64 << 30) as f64) as u64,
            "--body-mib" => o.body = (val().parse::<f64>().unwrap() * (1u64 << 20) as f64) as u64,
            "--conns" => o.conns = val().parse().unwrap(),
            "--content-hash" => o.content_hash = true,
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let o = parse();
    let mut config = Config::default();
    match o.digests.as_str() {
        "all" => {}
        "native" => {
            config.digests.sha256 = false;
            config.digests.quick_xor = o.route == Route::OneDrive;
            config.digests.dropbox_content = o.route == Route::Dropbox;
        }
        "none" => {
            config.digests.sha256 = false;
            config.digests.quick_xor = false;
            config.digests.dropbox_content = false;
        }
        d => panic!("unknown digests {d}"),
    }
    let server = EmulatorServer::start(ServerOptions {
        config,
        tls: o.tls,
        ..ServerOptions::default()
    })
    .expect("server starts");
    let addr = server.local_addr();
    let tls = server.cert_der().map(|der| client_tls(der.to_vec()));

    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let block: Arc<[u8]> = block.into();

    let per_conn = o.total / o.conns as u64;
    // The content hash of each body length the Dropbox route sends (the 1 MiB block
    // repeated), computed before the clock starts.
    let hashes: Arc<HashMap<u64, String>> = Arc::new(if o.content_hash {
        let body = (o.body / (4 << 20)).max(1) * (4 << 20);
        [body.min(per_conn), per_conn % body]
            .into_iter()
            .map(|n| (n, body_content_hash(n, &block)))
            .collect()
    } else {
        HashMap::new()
    });
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..o.conns)
        .map(|i| {
            let block = block.clone();
            let tls = tls.clone();
            let o = o.clone();
            let hashes = hashes.clone();
            std::thread::Builder::new().name("bench-client".into()).spawn(move || {
                let mut s = open(addr, tls.as_ref());
                match o.route {
                    Route::Discard => {
                        let mut left = per_conn;
                        while left > 0 {
                            let n = left.min(o.body);
                            let head = format!(
                                "PUT /_emulator/discard HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {n}\r\n\r\n"
                            );
                            let (st, body) = request(&mut *s, head.as_bytes(), n, &block);
                            assert_eq!(st, 200, "{body}");
                            left -= n;
                        }
                    }
                    Route::OneDrive => onedrive(&mut *s, i, per_conn, o.body, &block),
                    Route::Dropbox => dropbox(&mut *s, i, per_conn, o.body, &block, &hashes),
                }
                (per_conn, own_cpu())
            }).unwrap()
        })
        .collect();
    let (mut sent, mut client_cpu) = (0u64, 0.0f64);
    for w in workers {
        let (n, cpu) = w.join().unwrap();
        sent += n;
        client_cpu += cpu;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = thread_cpu();
    let server_cpu = cpu1.0 - cpu0.0;
    let snap = server.snapshot();
    assert!(snap.violations.is_empty(), "{:?}", snap.violations);
    println!(
        "route={:?} digests={} tls={} conns={} body={} MiB total={:.2} GiB: {:.3} s, {:.0} MB/s ({:.2} GiB/s)",
        o.route,
        o.digests,
        o.tls,
        o.conns,
        o.body >> 20,
        sent as f64 / (1u64 << 30) as f64,
        secs,
        sent as f64 / secs / 1e6,
        sent as f64 / secs / (1u64 << 30) as f64,
    );
    println!(
        "  cpu: server {server_cpu:.2} s ({:.0} MB per server cpu-second), client {client_cpu:.2} s; load average {}",
        sent as f64 / server_cpu.max(1e-9) / 1e6,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    server.shutdown().unwrap();
}

fn client_tls(der: Vec<u8>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn open(addr: std::net::SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    match tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    }
}

/// Sends a head and `n` body bytes (the 1 MiB block repeated), returns status and body.
fn request(s: &mut dyn Stream, head: &[u8], n: u64, block: &[u8]) -> (u16, String) {
    s.write_all(head).unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        s.write_all(&block[..k]).unwrap();
        left -= k as u64;
    }
    s.flush().unwrap();
    read_response(s)
}

fn read_response(s: &mut dyn Stream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut b = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "server closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&b[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let cl: usize = head
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + cl {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&b[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + cl]).to_string(),
    )
}

/// Uploads one file of `size` bytes through a OneDrive upload session, `frag` bytes per PUT
/// (rounded down to a multiple of 320 KiB).
fn onedrive(s: &mut dyn Stream, i: usize, size: u64, frag: u64, block: &[u8]) {
    let frag = (frag / (320 * 1024)).max(1) * 320 * 1024;
    let body = b"{\"item\":{\"@microsoft.graph.conflictBehavior\":\"replace\"}}";
    let head = format!(
        "POST /onedrive/v1.0/me/drive/root:/bench-{i}.bin:/createUploadSession HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let (st, resp) = read_response(s);
    assert_eq!(st, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let upload_url = v["uploadUrl"].as_str().unwrap().to_string();
    let path = upload_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|k| rest[k..].to_string()))
        .unwrap();
    let mut off = 0u64;
    while off < size {
        let n = frag.min(size - off);
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {n}\r\nContent-Range: bytes {off}-{}/{size}\r\n\r\n",
            off + n - 1
        );
        let (st, resp) = request(s, head.as_bytes(), n, block);
        off += n;
        let want = if off == size {
            [200u16, 201]
        } else {
            [202, 202]
        };
        assert!(want.contains(&st), "{st} {resp}");
    }
}

/// Uploads one file of `size` bytes through a sequential Dropbox upload session, `body`
/// bytes per append (rounded down to a multiple of 4 MiB).
/// `hashes` maps a body length to its content hash (empty: no `content_hash` sent).
fn dropbox(
    s: &mut dyn Stream,
    i: usize,
    size: u64,
    body: u64,
    block: &[u8],
    hashes: &HashMap<u64, String>,
) {
    let body = (body / (4 << 20)).max(1) * (4 << 20);
    let up = |route: &str, arg: String, n: u64| {
        format!(
            "POST /dropbox/content/2/files/upload_session/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {arg}\r\nContent-Length: {n}\r\n\r\n"
        )
    };
    let (st, resp) = request(s, up("start", "{}".into(), 0).as_bytes(), 0, block);
    assert_eq!(st, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let sid = v["session_id"].as_str().unwrap().to_string();
    let mut off = 0u64;
    while off < size {
        let n = body.min(size - off);
        let mut arg = serde_json::json!({"cursor": {"session_id": sid, "offset": off}});
        if let Some(h) = hashes.get(&n) {
            arg["content_hash"] = h.as_str().into();
        }
        let arg = arg.to_string();
        let (st, resp) = request(s, up("append_v2", arg, n).as_bytes(), n, block);
        assert_eq!(st, 200, "{resp}");
        off += n;
    }
    let arg = serde_json::json!({"cursor": {"session_id": sid, "offset": off}, "commit": {"path": format!("/bench-{i}.bin")}}).to_string();
    let (st, resp) = request(s, up("finish", arg, 0).as_bytes(), 0, block);
    assert_eq!(st, 200, "{resp}");
}

/// The Dropbox content hash of the `n`-byte body [`request`] sends (`block` repeated).
fn body_content_hash(n: u64, block: &[u8]) -> String {
    let mut h = upload_session_emulator::hash::ContentHasher::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        h.update(&block[..k]);
        left -= k as u64;
    }
    h.hex()
}

/// CPU seconds (user + system) used so far by the server's threads (and by live client
/// threads), from `/proc/self/task/*/stat` (Linux; zeros elsewhere).
fn thread_cpu() -> (f64, f64) {
    const TICK: f64 = 100.0; // USER_HZ on Linux
    let mut server = 0.0;
    let mut client = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the comm: state is field 3, utime 14, stime 15 (1-based over the line).
        let ticks = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(14) + ticks(15)) / TICK;
        if comm.starts_with("emulator-server") {
            server += cpu;
        } else if comm.starts_with("bench-client") {
            client += cpu;
        }
    }
    (server, client)
}

/// CPU seconds used by the calling thread (Linux; zero elsewhere).
fn own_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}
