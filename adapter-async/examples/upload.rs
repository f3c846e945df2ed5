//! Uploads files to OneDrive or Dropbox, resumably and concurrently.
//!
//! ```text
//! cargo run --release -p upload-session-async --example upload-async -- FILE [FILE…|DIR…] [--concurrency N]
//! ```
//!
//! The same flags as the blocking adapter's example, plus `--concurrency N` (files
//! uploaded at once; on Dropbox also the appends in flight per file when the chunk is a
//! multiple of 4 MiB) and `--recursive`:
//! - Several files, or directories: a directory contributes its regular files (only
//!   those directly inside it; with `--recursive`, those of its subdirectories too, at
//!   their relative paths). Each goes to `--dest` (a folder, default `/`) + its name (or
//!   relative path). With a single file argument, `--dest` is the file's destination
//!   path, as in the blocking example.
//! - On Dropbox, several files are uploaded in parallel, their sessions closed, and all
//!   committed together with `finish_batch_v2`.
//! - Without a token, it starts the emulator in-process on 127.0.0.1, uploads there and
//!   checks what the emulator stored. With `--token` (or `ONEDRIVE_TOKEN` /
//!   `DROPBOX_TOKEN`) it uploads to the real service or to `--base-url`.
//! - `--checkpoint FILE` (one file only) saves a checkpoint after every acknowledged
//!   fragment and resumes from it when it exists; the format is the blocking
//!   example's, so either resumes the other's. Ctrl-C stops cleanly, keeping it.
//!
//! Progress goes to stderr; stdout gets one JSON line per file: the uploaded item's
//! metadata plus `local_path`, or `{"local_path": …, "error": …}`. Exit status: 0 only
//! when every file is complete and verified; 1 when any failed; 2 when the arguments do
//! not parse; 130 when interrupted.

use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_session::dropbox::{
    CommitInfo, Committed, DropboxConfig, DropboxUpload, SessionType, WriteMode,
    limits as dropbox_limits,
};
use upload_session::onedrive::{
    ConflictBehavior, OneDriveConfig, OneDriveUpload, Target, limits as onedrive_limits,
    limits::GRAPH_GLOBAL,
};
use upload_session::{AccessToken, SourceFingerprint, UploadMachine};
use upload_session_async::{
    Batch, BatchFile, CancellationToken, Error, Progress, Resumable, Source, Upload,
    resume_or_start, tls_config_with_roots_pem,
};
use upload_session_emulator::Service;
use upload_session_emulator::embedded::Endpoint;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum To {
    Onedrive,
    Dropbox,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Conflict {
    Fail,
    Replace,
    Rename,
}

/// Upload files to OneDrive or Dropbox through resumable upload sessions.
///
/// With no token (no --token, ONEDRIVE_TOKEN or DROPBOX_TOKEN) the uploads go to an
/// emulator started in-process on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "upload-async")]
struct Args {
    /// Files or directories to upload.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The service.
    #[arg(long, value_enum, default_value_t = To::Onedrive)]
    to: To,
    /// One file: its destination path (default `/` + its name). Several files or a
    /// directory: the destination folder (default `/`).
    #[arg(long, value_name = "PATH")]
    dest: Option<String>,
    /// Fragment size, e.g. `10MiB`, `320KiB`, `5242880` (OneDrive: a multiple of 320 KiB;
    /// default 10 MiB. Dropbox: at most 150 MiB; default 8 MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    chunk: Option<u64>,
    /// API base URL (a Graph base, a Dropbox prefix, or a running emulator's origin).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Bearer token (else ONEDRIVE_TOKEN / DROPBOX_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Save a checkpoint here as the upload goes; resume from it when it exists (one
    /// file only).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// What to do when the destination exists.
    #[arg(long, value_enum, default_value_t = Conflict::Fail)]
    conflict: Conflict,
    /// Trust this PEM certificate (for an emulator serving TLS).
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Allow plain http to hosts that are not loopback.
    #[arg(long)]
    allow_http: bool,
    /// Files uploaded at once (Dropbox: also appends in flight per file).
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    /// Include the files of subdirectories of directory arguments.
    #[arg(long)]
    recursive: bool,
}

// Flag parsing and the JSON lines are written again in the blocking adapter's example:
// each example is a standalone binary, and sharing them would need a crate of its own.
/// Parses `10MiB`, `320KiB`, `5MB`, `1G`, `4096`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 10MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB, GiB…)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Where the uploads go (shared with the blocking adapter's example through the
/// emulator's `embedded` module), and the machine configurations for it.
trait Configs {
    fn onedrive(&self) -> OneDriveConfig;
    fn dropbox(&self) -> DropboxConfig;
}

impl Configs for Endpoint {
    fn onedrive(&self) -> OneDriveConfig {
        OneDriveConfig::with_base(self.graph_base(GRAPH_GLOBAL))
    }

    fn dropbox(&self) -> DropboxConfig {
        match self.dropbox_hosts() {
            None => DropboxConfig::default(),
            Some((content, api)) => DropboxConfig::with_hosts(content, api),
        }
    }
}

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    let env = match args.to {
        To::Onedrive => "ONEDRIVE_TOKEN",
        To::Dropbox => "DROPBOX_TOKEN",
    };
    Endpoint::resolve(args.token.clone(), env, args.base_url.as_deref())
}

/// One file to upload: where it is and where it goes.
struct Job {
    local: PathBuf,
    dest: String,
}

/// Expands the arguments into files and their destinations.
fn jobs(args: &Args) -> Result<Vec<Job>, String> {
    let single = args.files.len() == 1 && args.files[0].is_file();
    if single {
        let f = &args.files[0];
        let dest = match &args.dest {
            Some(d) => d.clone(),
            None => {
                let name = f
                    .file_name()
                    .ok_or_else(|| format!("{} has no file name", f.display()))?;
                format!("/{}", name.to_string_lossy())
            }
        };
        return Ok(vec![Job {
            local: f.clone(),
            dest,
        }]);
    }
    let folder = args
        .dest
        .clone()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let mut out = Vec::new();
    for arg in &args.files {
        if arg.is_dir() {
            let mut found = Vec::new();
            walk(arg, Path::new(""), args.recursive, &mut found)?;
            found.sort();
            for rel in found {
                out.push(Job {
                    local: arg.join(&rel),
                    dest: format!("{folder}/{}", rel.to_string_lossy().replace('\\', "/")),
                });
            }
        } else {
            let name = arg
                .file_name()
                .ok_or_else(|| format!("{} has no file name", arg.display()))?;
            out.push(Job {
                local: arg.clone(),
                dest: format!("{folder}/{}", name.to_string_lossy()),
            });
        }
    }
    if out.is_empty() {
        return Err("no files to upload".into());
    }
    Ok(out)
}

fn walk(root: &Path, rel: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let child = rel.join(entry.file_name());
        if kind.is_file() {
            out.push(child);
        } else if kind.is_dir() && recursive {
            walk(root, &child, recursive, out)?;
        }
    }
    Ok(())
}

/// Progress on stderr: a line per file at most every second, and at its end.
fn progress_printer(label: String) -> impl FnMut(&Progress) + Send + 'static {
    let mut last: Option<Instant> = None;
    move |p| {
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || p.acknowledged == p.total {
            last = Some(Instant::now());
            eprintln!(
                "progress: {label}: {} of {} bytes, {:.1} MiB/s",
                p.acknowledged,
                p.total,
                p.bytes_per_second / (1024.0 * 1024.0)
            );
        }
    }
}

/// The item's metadata without download links, with the local path.
fn line(mut v: serde_json::Value, local: &Path) -> serde_json::Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| !k.to_ascii_lowercase().contains("downloadurl"));
        map.insert(
            "local_path".into(),
            serde_json::Value::String(local.display().to_string()),
        );
    }
    v
}

fn error_line(local: &Path, e: &str) -> serde_json::Value {
    serde_json::json!({"local_path": local.display().to_string(), "error": e})
}

/// What the server reported: the item's JSON, its size, whether its hash matched, and
/// the hash (QuickXorHash or content hash).
type Uploaded = (serde_json::Value, u64, bool, Option<String>);

/// Prints each file's outcome; returns (complete and verified, interrupted).
fn report(
    ep: &Endpoint,
    service: Service,
    jobs: &[Job],
    outcomes: Vec<Result<Uploaded, String>>,
    interrupted: bool,
) -> (bool, bool) {
    let mut all_ok = true;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let size = std::fs::metadata(&job.local).map(|m| m.len()).unwrap_or(0);
        let checked = outcome.and_then(|(raw, reported, verified, hash)| {
            if !verified {
                return Err("the server reported no hash to verify the upload against".into());
            }
            if reported != size {
                return Err(format!(
                    "size mismatch: {size} bytes sent, server says {reported}"
                ));
            }
            if let Some(rec) = ep.stored_at(service, &job.dest) {
                let same_hash = match service {
                    Service::OneDrive => rec.content.quick_xor_hash == hash,
                    Service::Dropbox => rec.content.content_hash == hash,
                };
                if rec.content.size != size || !same_hash {
                    return Err("the emulator's stored file differs from the reported item".into());
                }
                eprintln!(
                    "stored in the emulator as {} ({} bytes, sha256 {})",
                    rec.path,
                    rec.content.size,
                    rec.content.sha256.as_deref().unwrap_or("?")
                );
            }
            Ok(raw)
        });
        match checked {
            Ok(raw) => println!("{}", line(raw, &job.local)),
            Err(e) => {
                all_ok = false;
                eprintln!("{}: {e}", job.local.display());
                println!("{}", error_line(&job.local, &e));
            }
        }
    }
    (all_ok, interrupted)
}

fn describe(e: &Error, interrupted: &mut bool) -> String {
    if let Error::Cancelled { checkpoint } = e {
        *interrupted = true;
        return match checkpoint {
            Some(p) => format!(
                "interrupted; checkpoint saved in {} (run the same command to resume)",
                p.display()
            ),
            None => "interrupted".into(),
        };
    }
    format!("upload failed: {e}")
}

/// Settings every upload gets.
fn equip<M: UploadMachine>(
    upload: Upload<M>,
    args: &Args,
    tls: &Option<rustls::ClientConfig>,
    label: String,
) -> Upload<M> {
    let mut u = upload
        .allow_insecure_http(args.allow_http)
        .on_progress(progress_printer(label));
    if let Some(t) = tls {
        u = u.tls_config(t.clone());
    }
    u
}

/// One file with `--checkpoint`: resume or start, then run.
async fn machine_for<M>(
    args: &Args,
    source: &Source,
    config: M::Config,
    token: AccessToken,
    start: impl FnOnce(
        SourceFingerprint,
        M::Config,
        Option<AccessToken>,
    ) -> Result<M, upload_session::BuildError>,
) -> Result<M, String>
where
    M: Resumable,
    M::Checkpoint: serde::de::DeserializeOwned,
{
    let Some(path) = &args.checkpoint else {
        return start(source.fingerprint(), config, Some(token)).map_err(|e| e.to_string());
    };
    let prepared = resume_or_start(path, source, config, Some(token), start)
        .await
        .map_err(|e| match e {
            Error::Resume(upload_session::ResumeError::SourceChanged) => format!(
                "the file changed since the checkpoint {} was saved; delete the checkpoint to start over",
                path.display()
            ),
            e => e.to_string(),
        })?;
    if prepared.resumed {
        eprintln!("resuming from {}", path.display());
    }
    Ok(prepared.machine)
}

async fn run(args: Args, cancel: CancellationToken) -> Result<ExitCode, String> {
    let jobs = jobs(&args)?;
    if args.checkpoint.is_some() && jobs.len() != 1 {
        return Err("--checkpoint works with a single file".into());
    }
    let ep = endpoint(&args)?;
    let token = AccessToken::new(&ep.token).map_err(|e| format!("token: {e}"))?;
    let tls = match &args.ca_cert {
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| format!("--ca-cert {}: {e}", p.display()))?;
            Some(
                tls_config_with_roots_pem(&pem)
                    .map_err(|e| format!("--ca-cert {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let concurrency = args.concurrency.max(1);
    eprintln!(
        "uploading {} file(s) to {}{}",
        jobs.len(),
        match args.to {
            To::Onedrive => "OneDrive",
            To::Dropbox => "Dropbox",
        },
        match (&ep.embedded, &ep.base) {
            (Some(s), _) => format!(" (the embedded emulator at {})", s.url()),
            (None, Some(b)) => format!(" (at {b})"),
            (None, None) => String::new(),
        },
    );
    let provider_token = token.clone();
    let tried = Arc::new(Mutex::new(0u32));
    let provider = move || {
        let t = provider_token.clone();
        let tried = tried.clone();
        async move {
            let mut n = tried.lock().map_err(|_| "lock".to_string())?;
            *n += 1;
            if *n <= 1 {
                Ok(t)
            } else {
                Err("the access token was rejected; get a new one and run again".to_string())
            }
        }
    };
    let mut interrupted = false;
    let mut sources = Vec::new();
    for job in &jobs {
        sources.push(
            Source::file(&job.local)
                .await
                .map_err(|e| format!("{}: {e}", job.local.display()))?,
        );
    }
    let (all_ok, interrupted) = match args.to {
        To::Onedrive => {
            let conflict = match args.conflict {
                Conflict::Fail => ConflictBehavior::Fail,
                Conflict::Replace => ConflictBehavior::Replace,
                Conflict::Rename => ConflictBehavior::Rename,
            };
            let chunk = args.chunk.unwrap_or(onedrive_limits::DEFAULT_FRAGMENT);
            let mut uploads = Vec::new();
            for (job, source) in jobs.iter().zip(sources) {
                let dest = job.dest.clone();
                let start = move |fp: SourceFingerprint, cfg, tok: Option<AccessToken>| {
                    let mut b = OneDriveUpload::builder(Target::path(dest), fp.size)
                        .fingerprint(fp)
                        .fragment_size(chunk)
                        .conflict(conflict)
                        .config(cfg);
                    if let Some(t) = tok {
                        b = b.access_token(t);
                    }
                    b.build()
                };
                let m = machine_for(&args, &source, ep.onedrive(), token.clone(), start).await?;
                let mut u = equip(Upload::new(m, source), &args, &tls, job.dest.clone());
                if let Some(p) = &args.checkpoint {
                    u = u.checkpoint_file(p);
                }
                uploads.push(u);
            }
            let results = Batch::new()
                .concurrency(concurrency)
                .cancel_token(cancel)
                .token_provider(provider)
                .run(uploads)
                .await;
            let outcomes = results
                .into_iter()
                .map(|r| match r {
                    Ok(c) => Ok((
                        c.item.raw.clone(),
                        c.item.size.unwrap_or(u64::MAX),
                        c.verification.quick_xor || c.verification.sha256,
                        c.item.quick_xor_hash.clone(),
                    )),
                    Err(e) => Err(describe(&e, &mut interrupted)),
                })
                .collect();
            report(&ep, Service::OneDrive, &jobs, outcomes, interrupted)
        }
        To::Dropbox => {
            let chunk = args.chunk.unwrap_or(dropbox_limits::DEFAULT_CHUNK);
            let parallel = concurrency > 1 && chunk % (4 << 20) == 0;
            let commit_for = |dest: &str| -> Result<CommitInfo, String> {
                let c = CommitInfo::new(dest).map_err(|e| e.to_string())?;
                Ok(match args.conflict {
                    Conflict::Fail => c.mode(WriteMode::Add),
                    Conflict::Replace => c.mode(WriteMode::Overwrite),
                    Conflict::Rename => c.mode(WriteMode::Add).autorename(true),
                })
            };
            let session = if parallel {
                SessionType::Concurrent
            } else {
                SessionType::Sequential
            };
            let par = u32::try_from(concurrency.min(64)).unwrap_or(4);
            let results: Vec<Result<Committed, Error>> = if jobs.len() == 1 {
                // One file: commit with finish (resumable with --checkpoint).
                let (job, source) = (&jobs[0], sources.remove(0));
                let commit = commit_for(&job.dest)?;
                let start = move |fp: SourceFingerprint, cfg, tok: Option<AccessToken>| {
                    let mut b = DropboxUpload::builder(commit, fp.size)
                        .fingerprint(fp)
                        .chunk_size(chunk)
                        .session_type(session)
                        .parallelism(par)
                        .config(cfg);
                    if let Some(t) = tok {
                        b = b.access_token(t);
                    }
                    b.build()
                };
                let m = machine_for(&args, &source, ep.dropbox(), token.clone(), start).await?;
                let mut u = equip(Upload::new(m, source), &args, &tls, job.dest.clone());
                if let Some(p) = &args.checkpoint {
                    u = u.checkpoint_file(p);
                }
                let r = u.cancel_token(cancel).token_provider(provider).run().await;
                vec![r.and_then(|c| match c {
                    upload_session::dropbox::Completed::Committed(c) => Ok(*c),
                    _ => Err(Error::Stalled("the session was closed but not committed")),
                })]
            } else {
                let mut files = Vec::new();
                for (job, source) in jobs.iter().zip(sources) {
                    let m = DropboxUpload::builder_for_batch(source.size())
                        .fingerprint(source.fingerprint())
                        .chunk_size(chunk)
                        .session_type(session)
                        .parallelism(par)
                        .config(ep.dropbox())
                        .access_token(token.clone())
                        .build()
                        .map_err(|e| format!("{}: {e}", job.local.display()))?;
                    files.push(BatchFile {
                        upload: equip(Upload::new(m, source), &args, &tls, job.dest.clone()),
                        commit: commit_for(&job.dest)?,
                    });
                }
                let mut batch = Batch::new()
                    .concurrency(concurrency)
                    .cancel_token(cancel)
                    .allow_insecure_http(args.allow_http)
                    .token_provider(provider);
                if let Some(t) = &tls {
                    batch = batch.tls_config(t.clone());
                }
                batch.run_dropbox(files, ep.dropbox()).await
            };
            let outcomes = results
                .into_iter()
                .map(|r| match r {
                    Ok(c) => Ok((
                        c.metadata.raw.clone(),
                        c.metadata.size,
                        c.hash_verified,
                        c.metadata.content_hash.clone(),
                    )),
                    Err(e) => Err(describe(&e, &mut interrupted)),
                })
                .collect();
            report(&ep, Service::Dropbox, &jobs, outcomes, interrupted)
        }
    };
    Ok(if interrupted {
        ExitCode::from(130)
    } else if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
            // A second Ctrl-C: give up at once (checkpoint files are always complete).
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    match run(args, cancel).await {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
