//! `upload-session-emulator`: the emulator as a standalone server on 127.0.0.1.
//!
//! Its first line on stdout is exactly `listening on http://127.0.0.1:PORT` (or `https://`),
//! flushed before the first request is served. SIGINT or SIGTERM stops it gracefully
//! (exit status 0). See the `server` module of the library for the routes and the
//! `/_emulator/` control endpoints, and `--help` for the flags.

#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use upload_session_emulator::config::{
    Alignment, ConflictAt, InnerErrorKey, OneDriveFlavor, RangeStyle,
};
use upload_session_emulator::server::{EmulatorServer, ServerOptions};
use upload_session_emulator::{Config, FaultPlan, FaultRates};

/// A strict emulator of OneDrive and Dropbox upload sessions, served on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "upload-session-emulator", version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve HTTPS with a freshly generated self-signed certificate (SANs 127.0.0.1, localhost).
    #[arg(long)]
    tls: bool,
    /// With --tls: write the certificate (PEM) to this file before printing the first line.
    #[arg(long, value_name = "FILE", requires = "tls")]
    cert_out: Option<PathBuf>,
    /// Delay added before every model response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// SO_RCVBUF of every connection, in bytes (default: the kernel's, auto-tuned). Small
    /// values make stalls hold up writers after a few hundred KiB.
    #[arg(long, value_name = "BYTES")]
    recv_buffer: Option<usize>,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Load a whole fault plan (JSON, as served by GET /_emulator/faults, scripted faults
    /// included); the rate flags and --seed given explicitly override its values.
    #[arg(long, value_name = "FILE")]
    fault_plan: Option<PathBuf>,

    // ---- fault rates (each 0.0..=1.0) ----
    /// Probability of a 429 with Retry-After.
    #[arg(long, value_name = "P", value_parser = rate)]
    throttle_rate: Option<f64>,
    /// Probability of a 503 with Retry-After.
    #[arg(long, value_name = "P", value_parser = rate)]
    unavailable_rate: Option<f64>,
    /// Probability of a 5xx before the request is applied.
    #[arg(long, value_name = "P", value_parser = rate)]
    error_before_rate: Option<f64>,
    /// Probability of a 5xx after the request was applied (mutating routes).
    #[arg(long, value_name = "P", value_parser = rate)]
    error_after_rate: Option<f64>,
    /// Probability of a lost response after applying (mutating routes).
    #[arg(long, value_name = "P", value_parser = rate)]
    lost_response_rate: Option<f64>,
    /// Probability of a connection drop mid-body, prefix discarded (data routes).
    #[arg(long, value_name = "P", value_parser = rate)]
    reset_discard_rate: Option<f64>,
    /// Probability of a connection drop mid-body, prefix kept (OneDrive fragment PUTs).
    #[arg(long, value_name = "P", value_parser = rate)]
    reset_keep_prefix_rate: Option<f64>,
    /// Probability of a transient 404 (OneDrive uploadUrl routes).
    #[arg(long = "transient-404-rate", value_name = "P", value_parser = rate)]
    transient_404_rate: Option<f64>,
    /// Probability of a slow finish (Dropbox finish, OneDrive PUT/commit).
    #[arg(long, value_name = "P", value_parser = rate)]
    slow_finish_rate: Option<f64>,
    /// Probability of Dropbox lock contention (finish and batch routes).
    #[arg(long, value_name = "P", value_parser = rate)]
    lock_contention_rate: Option<f64>,
    /// Probability of a token expiry.
    #[arg(long, value_name = "P", value_parser = rate)]
    expire_token_rate: Option<f64>,
    /// Probability of a socket stall while reading a body.
    #[arg(long, value_name = "P", value_parser = rate)]
    stall_rate: Option<f64>,
    /// Retry-After of random throttles, in seconds (default 1).
    #[arg(long, value_name = "SECS")]
    retry_after_secs: Option<u64>,
    /// Delay of random slow finishes and stalls, in milliseconds (default 200).
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,

    // ---- modes ----
    /// Accept this bearer token (repeatable). When given, replaces the default token
    /// `emulator-token`.
    #[arg(long = "token", value_name = "T")]
    tokens: Vec<String>,
    /// Accept any well-formed bearer token.
    #[arg(long)]
    accept_any_token: bool,
    /// Keep the bytes of stored files in memory (small files only).
    #[arg(long)]
    keep_bytes: bool,
    /// Do not compute SHA-256 of stored files.
    #[arg(long)]
    no_sha256: bool,
    /// Do not compute the QuickXorHash of stored files.
    #[arg(long)]
    no_quick_xor: bool,
    /// Do not compute the Dropbox content hash of stored files.
    #[arg(long)]
    no_content_hash: bool,
    /// OneDrive account flavour.
    #[arg(long, value_enum, default_value_t = Flavor::Business)]
    onedrive_flavor: Flavor,
    /// Accept unaligned OneDrive fragments (rule 22) instead of rejecting them (rule 21).
    #[arg(long)]
    lenient_alignment: bool,
    /// With --lenient-alignment: file size from which an unaligned upload fails at commit.
    #[arg(long, value_name = "BYTES", default_value_t = 100 * 1024 * 1024)]
    lenient_fail_threshold: u64,
    /// Shape of OneDrive `nextExpectedRanges` entries.
    #[arg(long, value_enum, default_value_t = Ranges::Open)]
    range_style: Ranges,
    /// Where a OneDrive `fail` name conflict is reported.
    #[arg(long, value_enum, default_value_t = Conflict::Create)]
    conflict_at: Conflict,
    /// Largest OneDrive fragment accepted, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_fragment: Option<u64>,
    /// Free quota of each OneDrive drive, in bytes.
    #[arg(long, value_name = "BYTES")]
    onedrive_quota: Option<u64>,
    /// Quirk: the final OneDrive fragment returns 201 with an uploadSession-shaped body.
    #[arg(long)]
    final_returns_session_shape: bool,
    /// Use the older lowercase `innererror` key in OneDrive errors.
    #[arg(long)]
    lowercase_inner_error: bool,
    /// OneDrive 416 and 504 answers carry an empty, non-JSON body.
    #[arg(long)]
    empty_error_bodies: bool,
    /// Add SharePoint `RateLimit-*` headers to OneDrive throttling responses.
    #[arg(long)]
    sharepoint_headers: bool,
    /// Dropbox: accept upload and RPC routes on either host prefix.
    #[arg(long)]
    dropbox_lenient_hosts: bool,
    /// Dropbox: accept raw UTF-8 in `Dropbox-API-Arg`.
    #[arg(long)]
    dropbox_accept_raw_utf8_arg: bool,
    /// Dropbox: answer 413 (instead of 409 payload_too_large) above this body size.
    #[arg(long, value_name = "BYTES")]
    dropbox_http_413_above: Option<u64>,
    /// Dropbox: free space in bytes (unlimited by default).
    #[arg(long, value_name = "BYTES")]
    dropbox_quota: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavor {
    Business,
    Personal,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Ranges {
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Conflict {
    Create,
    Commit,
}

fn rate(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability in 0.0..=1.0"))
    }
}

impl Args {
    fn config(&self) -> Config {
        let mut c = Config::default();
        if !self.tokens.is_empty() {
            c.tokens = self.tokens.clone();
        }
        c.accept_any_token = self.accept_any_token;
        c.keep_bytes = self.keep_bytes;
        c.digests.sha256 = !self.no_sha256;
        c.digests.quick_xor = !self.no_quick_xor;
        c.digests.dropbox_content = !self.no_content_hash;
        let od = &mut c.onedrive;
        od.flavor = match self.onedrive_flavor {
            Flavor::Business => OneDriveFlavor::Business,
            Flavor::Personal => OneDriveFlavor::Personal,
        };
        if self.lenient_alignment {
            od.alignment = Alignment::Lenient {
                fail_threshold: self.lenient_fail_threshold,
            };
        }
        od.range_style = match self.range_style {
            Ranges::Open => RangeStyle::OpenEnded,
            Ranges::Closed => RangeStyle::Closed,
        };
        od.conflict_at = match self.conflict_at {
            Conflict::Create => ConflictAt::Create,
            Conflict::Commit => ConflictAt::Commit,
        };
        if let Some(m) = self.max_fragment {
            od.max_fragment = m;
        }
        if let Some(q) = self.onedrive_quota {
            od.quota = q;
        }
        od.final_returns_session_shape = self.final_returns_session_shape;
        if self.lowercase_inner_error {
            od.inner_error_key = InnerErrorKey::Lowercase;
        }
        od.empty_error_bodies = self.empty_error_bodies;
        od.sharepoint_headers = self.sharepoint_headers;
        let db = &mut c.dropbox;
        db.strict_hosts = !self.dropbox_lenient_hosts;
        db.accept_raw_utf8_arg = self.dropbox_accept_raw_utf8_arg;
        db.http_413_above = self.dropbox_http_413_above;
        db.quota = self.dropbox_quota;
        c
    }

    fn fault_plan(&self) -> Result<FaultPlan, String> {
        let mut plan = match &self.fault_plan {
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                serde_json::from_slice::<FaultPlan>(&text)
                    .map_err(|e| format!("bad fault plan in {}: {e}", path.display()))?
            }
            None => FaultPlan::none(),
        };
        if self.fault_plan.is_none() || self.seed != 0 {
            plan.seed = self.seed;
        }
        let r: &mut FaultRates = &mut plan.rates;
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut r.throttle, self.throttle_rate);
        set(&mut r.unavailable, self.unavailable_rate);
        set(&mut r.error_before, self.error_before_rate);
        set(&mut r.error_after, self.error_after_rate);
        set(&mut r.lost_response, self.lost_response_rate);
        set(&mut r.reset_discard, self.reset_discard_rate);
        set(&mut r.reset_keep_prefix, self.reset_keep_prefix_rate);
        set(&mut r.transient_404, self.transient_404_rate);
        set(&mut r.slow_finish, self.slow_finish_rate);
        set(&mut r.lock_contention, self.lock_contention_rate);
        set(&mut r.expire_token, self.expire_token_rate);
        set(&mut r.stall, self.stall_rate);
        if let Some(s) = self.retry_after_secs {
            r.retry_after_secs = s;
        }
        if let Some(d) = self.delay_ms {
            r.delay_ms = d;
        }
        Ok(plan)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = match args.fault_plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("upload-session-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ServerOptions {
        config: args.config(),
        faults,
        port: args.port,
        tls: args.tls,
        latency: Duration::from_millis(args.latency_ms),
        recv_buffer: args.recv_buffer,
    };
    let server = match EmulatorServer::bind(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("upload-session-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&args.cert_out, server.cert_pem()) {
        if let Err(e) = std::fs::write(path, pem) {
            eprintln!(
                "upload-session-emulator: cannot write {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("upload-session-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let signals = shutdown_signal()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.url())?;
        out.flush()?;
        drop(out);
        server.serve(signals).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload-session-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed before the first
/// line is printed, so a signal sent right after it is never missed.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
