//! The server's control endpoints, TLS, lifecycle and the async API.

mod server_common;

use server_common::{agent, json, read};
use std::time::Duration;
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Fault, FaultPlan, RouteKind, Violation};

fn start() -> upload_session_emulator::server::RunningServer {
    EmulatorServer::start(ServerOptions::default()).expect("server starts")
}

#[test]
fn health_files_violations_snapshot_answer_json() {
    let s = start();
    let a = agent(None);
    let u = s.url();
    assert!(u.starts_with("http://127.0.0.1:"), "{u}");

    let (st, body) = read(a.get(format!("{u}/_emulator/health")).call());
    assert_eq!(st, 200);
    assert_eq!(json(&body), serde_json::json!({"status": "ok"}));

    let (st, body) = read(a.get(format!("{u}/_emulator/files")).call());
    assert_eq!(st, 200);
    assert_eq!(json(&body), serde_json::json!([]));

    let (st, body) = read(a.get(format!("{u}/_emulator/violations")).call());
    assert_eq!(st, 200);
    assert_eq!(json(&body), serde_json::json!({"total": 0, "counts": {}}));

    let (st, body) = read(a.get(format!("{u}/_emulator/snapshot")).call());
    assert_eq!(st, 200);
    let v = json(&body);
    assert_eq!(v["files"], serde_json::json!([]));
    assert_eq!(v["requests"], 0);
    assert_eq!(v["faults_injected"], 0);
}

#[test]
fn unknown_route_is_404_and_counted_then_reset_clears_it() {
    let s = start();
    let a = agent(None);
    let u = s.url();
    let (st, body) = read(a.get(format!("{u}/no/such/route")).call());
    assert_eq!(st, 404, "{body}");
    assert_eq!(s.snapshot().violations.count(Violation::UnknownRoute), 1);

    let (_, body) = read(a.get(format!("{u}/_emulator/violations")).call());
    let v = json(&body);
    assert_eq!(v["total"], 1);
    assert_eq!(v["counts"]["UnknownRoute"], 1);

    let (st, body) = read(a.post(format!("{u}/_emulator/reset")).send_empty());
    assert_eq!(st, 200);
    assert_eq!(json(&body), serde_json::json!({"reset": true}));
    let (_, body) = read(a.get(format!("{u}/_emulator/violations")).call());
    assert_eq!(json(&body)["total"], 0);
    assert_eq!(s.snapshot().requests, 0);
}

#[test]
fn unknown_control_path_is_404_and_wrong_method_405() {
    let s = start();
    let a = agent(None);
    let u = s.url();
    let (st, body) = read(a.get(format!("{u}/_emulator/nope")).call());
    assert_eq!(st, 404);
    assert_eq!(json(&body)["error"], "unknown control endpoint");
    // Control paths are not model routes: nothing counted.
    assert!(s.snapshot().violations.is_empty());

    let resp = a.delete(format!("{u}/_emulator/files")).call().unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    let (st, _) = read(a.post(format!("{u}/_emulator/health")).send_empty());
    assert_eq!(st, 405);
}

#[test]
fn fault_plan_round_trips_and_bad_plans_are_rejected() {
    let s = start();
    let a = agent(None);
    let u = s.url();
    let (st, body) = read(a.get(format!("{u}/_emulator/faults")).call());
    assert_eq!(st, 200);
    let current: FaultPlan = serde_json::from_str(&body).unwrap();
    assert_eq!(current, FaultPlan::none());

    let mut plan = FaultPlan::none().script(
        Some(RouteKind::OneDrivePut),
        2,
        Fault::Reset { keep_prefix: true },
    );
    plan.seed = 42;
    plan.rates.throttle = 0.25;
    plan.rates.retry_after_secs = 3;
    let (st, body) = read(
        a.put(format!("{u}/_emulator/faults"))
            .header("content-type", "application/json")
            .send(serde_json::to_vec(&plan).unwrap()),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(serde_json::from_str::<FaultPlan>(&body).unwrap(), plan);
    let (_, body) = read(a.get(format!("{u}/_emulator/faults")).call());
    assert_eq!(serde_json::from_str::<FaultPlan>(&body).unwrap(), plan);
    assert_eq!(
        s.emulator().lock().unwrap().fault_plan(),
        &plan,
        "the in-process view agrees"
    );

    // Garbage is a 400 and leaves the plan alone.
    let (st, body) = read(a.put(format!("{u}/_emulator/faults")).send("{not json"));
    assert_eq!(st, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("bad fault plan")
    );
    let (st, _) = read(
        a.put(format!("{u}/_emulator/faults"))
            .send(r#"{"rates": {"throttle": "often"}}"#),
    );
    assert_eq!(st, 400);
    // Too large: refused from the head, without reading the body.
    let mut c = server_common::connect(s.local_addr());
    std::io::Write::write_all(
        &mut c,
        b"PUT /_emulator/faults HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n",
    )
    .unwrap();
    let r = server_common::read_all(&mut c, Duration::from_secs(5));
    assert_eq!(r.status(), Some(413), "{}", r.text());
    assert!(r.closed);
    assert_eq!(s.emulator().lock().unwrap().fault_plan(), &plan);

    // A partial plan fills in defaults.
    let (st, body) = read(
        a.put(format!("{u}/_emulator/faults"))
            .send(r#"{"seed": 7}"#),
    );
    assert_eq!(st, 200);
    let p: FaultPlan = serde_json::from_str(&body).unwrap();
    assert_eq!(p.seed, 7);
    assert!(p.scripted.is_empty());
}

#[test]
fn tokens_are_issued_and_expired() {
    let s = start();
    let a = agent(None);
    let u = s.url();
    let (st, body) = read(a.post(format!("{u}/_emulator/tokens")).send_empty());
    assert_eq!(st, 200);
    let t1 = json(&body)["token"].as_str().unwrap().to_string();
    let (_, body) = read(a.post(format!("{u}/_emulator/tokens")).send_empty());
    let t2 = json(&body)["token"].as_str().unwrap().to_string();
    assert_ne!(t1, t2);
    assert!(t1.starts_with("emulator-token-"), "{t1}");
    let (st, body) = read(a.post(format!("{u}/_emulator/tokens/expire")).send_empty());
    assert_eq!(st, 200);
    assert_eq!(json(&body), serde_json::json!({"expired": true}));
}

#[test]
fn discard_streams_a_large_body() {
    let s = start();
    let a = agent(None);
    let n = 32 * 1024 * 1024 + 7;
    let (st, body) = read(
        a.put(format!("{}/_emulator/discard", s.url()))
            .send(vec![0xA5u8; n]),
    );
    assert_eq!(st, 200);
    assert_eq!(json(&body)["received"], n as u64);
}

#[test]
fn tls_handshake_works_with_the_generated_certificate() {
    let s = EmulatorServer::start(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    })
    .unwrap();
    let u = s.url().to_string();
    assert!(u.starts_with("https://127.0.0.1:"), "{u}");
    let pem = s.cert_pem().expect("TLS server has a cert").to_string();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let der = s.cert_der().unwrap();
    let from_pem = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(from_pem.der(), der, "PEM and DER are the same certificate");

    let a = agent(Some(&pem));
    let (st, body) = read(a.get(format!("{u}/_emulator/health")).call());
    assert_eq!(st, 200);
    assert_eq!(json(&body)["status"], "ok");
    // The `localhost` SAN works too.
    let port = s.local_addr().port();
    let (st, _) = read(
        a.get(format!("https://localhost:{port}/_emulator/health"))
            .call(),
    );
    assert_eq!(st, 200);
    // A large body over TLS.
    let (st, body) = read(
        a.post(format!("{u}/_emulator/discard"))
            .send(vec![1u8; 8 << 20]),
    );
    assert_eq!(st, 200);
    assert_eq!(json(&body)["received"], 8u64 << 20);

    // A client that does not trust the certificate fails the handshake.
    let untrusting = agent(None);
    let err = untrusting
        .get(format!("{u}/_emulator/health"))
        .call()
        .expect_err("self-signed cert is not trusted by default");
    assert!(
        matches!(
            err,
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Io(_)
        ),
        "{err:?}"
    );
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = agent(None)
        .get(format!("http://127.0.0.1:{port}/_emulator/health"))
        .call();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // And the server still serves afterwards.
    let (st, _) = read(a.get(format!("{u}/_emulator/health")).call());
    assert_eq!(st, 200);
}

#[test]
fn plain_server_has_no_certificate_and_base_url_is_the_real_one() {
    let s = start();
    assert!(s.cert_pem().is_none() && s.cert_der().is_none());
    assert_eq!(s.emulator().lock().unwrap().config().base_url, s.url());
    let t = EmulatorServer::start(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    })
    .unwrap();
    assert_eq!(t.emulator().lock().unwrap().config().base_url, t.url());
}

#[test]
fn shutdown_closes_the_port_and_drop_does_too() {
    let s = start();
    let addr = s.local_addr();
    let (st, _) = read(
        agent(None)
            .get(format!("{}/_emulator/health", s.url()))
            .call(),
    );
    assert_eq!(st, 200);
    s.shutdown().expect("clean shutdown");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port closed after shutdown"
    );

    let s = start();
    let addr = s.local_addr();
    drop(s);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port closed after drop"
    );
}

#[test]
fn shutdown_waits_for_an_idle_keep_alive_connection_without_hanging() {
    let s = start();
    let a = agent(None);
    // Leaves a pooled keep-alive connection open.
    let (st, _) = read(a.get(format!("{}/_emulator/health", s.url())).call());
    assert_eq!(st, 200);
    let t0 = std::time::Instant::now();
    s.shutdown().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn fixed_port_and_busy_port() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    // Busy port: a clean error, no panic.
    let err = EmulatorServer::start(ServerOptions {
        port,
        ..ServerOptions::default()
    })
    .expect_err("port in use");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(probe);
    let s = EmulatorServer::start(ServerOptions {
        port,
        ..ServerOptions::default()
    })
    .unwrap();
    assert_eq!(s.url(), format!("http://127.0.0.1:{port}"));
}

#[test]
fn async_api_serves_inside_a_callers_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = EmulatorServer::bind(ServerOptions::default()).unwrap();
        let url = server.url().to_string();
        let emu = server.emulator();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        let u = url.clone();
        let (st, body) = tokio::task::spawn_blocking(move || {
            read(
                agent(None)
                    .post(format!("{u}/_emulator/tokens"))
                    .send_empty(),
            )
        })
        .await
        .unwrap();
        assert_eq!(st, 200);
        let token = json(&body)["token"].as_str().unwrap().to_string();
        assert!(!token.is_empty());
        assert_eq!(emu.lock().unwrap().config().base_url, url);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err());
    });
}

#[test]
fn latency_is_added_to_model_responses_only() {
    let s = EmulatorServer::start(ServerOptions {
        latency: Duration::from_millis(300),
        ..ServerOptions::default()
    })
    .unwrap();
    let a = agent(None);
    let t0 = std::time::Instant::now();
    let (st, _) = read(a.get(format!("{}/_emulator/health", s.url())).call());
    assert_eq!(st, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let t0 = std::time::Instant::now();
    let (st, _) = read(a.get(format!("{}/nowhere", s.url())).call());
    assert_eq!(st, 404);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
}
