//! Uploads a file to OneDrive or Dropbox, resumably.
//!
//! ```text
//! cargo run --release -p upload-session-blocking --example upload -- FILE
//! ```
//!
//! - Without a token, it starts the emulator in-process on 127.0.0.1, uploads there,
//!   checks what the emulator stored and prints it: nothing to set up.
//! - With `--token` (or `ONEDRIVE_TOKEN` / `DROPBOX_TOKEN`), it uploads to the real
//!   service, or to `--base-url` (a running emulator, a national cloud).
//! - `--checkpoint FILE` saves a checkpoint after every acknowledged fragment and, when
//!   the file exists, resumes from it. Ctrl-C stops cleanly, keeping the checkpoint.
//!
//! Progress goes to stderr (a bar on a terminal, plain lines otherwise); the uploaded
//! item's metadata goes to stdout as one JSON line. Exit status: 0 only when the upload
//! is complete and verified; 1 when it failed; 2 when the arguments do not parse; 130
//! when interrupted.

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upload_session::dropbox::{
    CommitInfo, Completed as DropboxCompleted, DropboxConfig, DropboxUpload, WriteMode,
    limits as dropbox_limits,
};
use upload_session::onedrive::{
    ConflictBehavior, OneDriveConfig, OneDriveUpload, Target, limits as onedrive_limits,
    limits::GRAPH_GLOBAL,
};
use upload_session::{AccessToken, Event, UploadMachine};
use upload_session_blocking::{
    CancelHandle, Error, Progress, Resumable, Source, Upload, resume_or_start,
};
use upload_session_emulator::server::{EmulatorServer, RunningServer, ServerOptions};
use upload_session_emulator::{DEFAULT_TOKEN, FileRecord, Service};

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

/// Upload a file to OneDrive or Dropbox through resumable upload sessions.
///
/// With no token (no --token, ONEDRIVE_TOKEN or DROPBOX_TOKEN) the upload goes to an
/// emulator started in-process on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "upload")]
struct Args {
    /// The file to upload.
    file: PathBuf,
    /// The service.
    #[arg(long, value_enum, default_value_t = To::Onedrive)]
    to: To,
    /// Destination path in the drive (default: `/` + the file's name).
    #[arg(long, value_name = "PATH")]
    dest: Option<String>,
    /// Fragment size, e.g. `10MiB`, `320KiB`, `5242880` (OneDrive: a multiple of 320 KiB;
    /// default 10 MiB. Dropbox: at most 150 MiB; default 8 MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    chunk: Option<u64>,
    /// API base URL. OneDrive: a Graph base like `https://graph.microsoft.us/v1.0`.
    /// Dropbox: a prefix under which `content/2` and `api/2` live. Either way, the bare
    /// origin of a running emulator (`http://127.0.0.1:8080`).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Bearer token (else ONEDRIVE_TOKEN / DROPBOX_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Save a checkpoint here as the upload goes; resume from it when it exists.
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
}

/// Parses `10MiB`, `320KiB`, `5MB`, `1G`, `4096`: binary (`KiB`, `MiB`, `GiB`) and decimal
/// (`K`/`KB`, `M`/`MB`, `G`/`GB`) suffixes, case-insensitive.
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

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// Where the upload goes.
struct Endpoint {
    /// `--base-url`, or the embedded emulator's origin; `None`: the real service.
    base: Option<String>,
    token: String,
    /// The in-process emulator, when no token was given.
    embedded: Option<RunningServer>,
}

impl Endpoint {
    /// `base` without trailing `/`, and whether it is a bare origin (an emulator).
    fn base(&self) -> Option<(String, bool)> {
        let base = self.base.as_deref()?.trim_end_matches('/').to_string();
        let bare = base
            .parse::<upload_session::http::Uri>()
            .map(|u| u.path().is_empty() || u.path() == "/")
            .unwrap_or(false);
        Some((base, bare))
    }

    fn onedrive(&self) -> OneDriveConfig {
        match self.base() {
            None => OneDriveConfig::with_base(GRAPH_GLOBAL),
            // The emulator's Graph API lives under /onedrive/v1.0.
            Some((b, true)) => OneDriveConfig::with_base(format!("{b}/onedrive/v1.0")),
            Some((b, false)) => OneDriveConfig::with_base(b),
        }
    }

    fn dropbox(&self) -> DropboxConfig {
        match self.base() {
            None => DropboxConfig::default(),
            Some((b, bare)) => {
                let prefix = if bare { format!("{b}/dropbox") } else { b };
                DropboxConfig::with_hosts(format!("{prefix}/content/2"), format!("{prefix}/api/2"))
            }
        }
    }
}

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    let env = match args.to {
        To::Onedrive => "ONEDRIVE_TOKEN",
        To::Dropbox => "DROPBOX_TOKEN",
    };
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var(env).ok())
        .filter(|t| !t.is_empty());
    match (token, &args.base_url) {
        (None, None) => {
            let server = EmulatorServer::start(ServerOptions::default())
                .map_err(|e| format!("cannot start the embedded emulator: {e}"))?;
            Ok(Endpoint {
                base: Some(server.url().to_string()),
                token: DEFAULT_TOKEN.to_string(),
                embedded: Some(server),
            })
        }
        (None, Some(_)) => Err(format!("--base-url needs a token (--token or {env})")),
        (Some(token), base) => {
            if let Some(b) = base {
                b.parse::<upload_session::http::Uri>()
                    .map_err(|_| format!("--base-url {b:?} is not a URL"))?;
            }
            Ok(Endpoint {
                base: base.clone(),
                token,
                embedded: None,
            })
        }
    }
}

fn agent(args: &Args) -> Result<Option<ureq::Agent>, String> {
    let Some(path) = &args.ca_cert else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
    let cert = ureq::tls::Certificate::from_pem(&pem)
        .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    Ok(Some(
        ureq::Agent::config_builder().tls_config(tls).build().into(),
    ))
}

/// Progress on stderr: a bar on a terminal, a line at most every second otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl Reporter {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:40.cyan/blue}] {bytes}/{total_bytes} {msg} ({eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            last_line: None,
        }
    }

    fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn progress(&mut self, p: &Progress) {
        let rate = format!("{}/s", human(p.bytes_per_second));
        match &self.bar {
            Some(b) => {
                b.set_position(p.acknowledged);
                b.set_message(rate);
            }
            None => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due || p.acknowledged == p.total {
                    self.last_line = Some(Instant::now());
                    let pct = if p.total == 0 {
                        100.0
                    } else {
                        p.acknowledged as f64 * 100.0 / p.total as f64
                    };
                    eprintln!(
                        "progress: {} of {} bytes ({pct:.1}%), {rate}",
                        p.acknowledged, p.total
                    );
                }
            }
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The item's metadata without pre-authenticated download links.
fn sanitized(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| !k.to_ascii_lowercase().contains("downloadurl"));
    }
    v
}

/// Everything a run needs besides the machine.
struct Job<'a> {
    args: &'a Args,
    cancel: &'a CancelHandle,
    source: Source<'static>,
    size: u64,
    dest: String,
    ep: Endpoint,
    token: AccessToken,
}

/// How a run ended (when it did not fail).
enum Ended<C> {
    Completed(C),
    Interrupted,
}

impl Job<'_> {
    /// Resumes from `--checkpoint` when it exists, else starts with `start`.
    fn machine<M>(
        &self,
        config: M::Config,
        start: impl FnOnce(
            upload_session::SourceFingerprint,
            M::Config,
            Option<AccessToken>,
        ) -> Result<M, upload_session::BuildError>,
        acknowledged: impl Fn(&M) -> u64,
    ) -> Result<M, String>
    where
        M: Resumable,
        M::Checkpoint: serde::de::DeserializeOwned,
    {
        let Some(path) = &self.args.checkpoint else {
            return start(self.source.fingerprint(), config, Some(self.token.clone()))
                .map_err(|e| e.to_string());
        };
        let prepared = resume_or_start(path, &self.source, config, Some(self.token.clone()), start)
            .map_err(|e| match e {
                Error::Resume(upload_session::ResumeError::SourceChanged) => format!(
                    "{} changed since the checkpoint {} was saved; delete the checkpoint to start over",
                    self.args.file.display(),
                    path.display()
                ),
                e => e.to_string(),
            })?;
        if prepared.resumed {
            eprintln!(
                "resuming from {} ({} of {} bytes acknowledged then)",
                path.display(),
                acknowledged(&prepared.machine),
                self.size
            );
        }
        Ok(prepared.machine)
    }

    /// Drives `machine` with a progress display, Ctrl-C and the checkpoint file.
    fn drive<M>(self, machine: M, chunk: u64) -> Result<(Ended<M::Completed>, Endpoint), String>
    where
        M: UploadMachine,
        M::Checkpoint: serde::Serialize,
    {
        let Job {
            args,
            cancel,
            source,
            size,
            dest,
            ep,
            token,
        } = self;
        eprintln!(
            "uploading {} ({size} bytes) to {} {dest} in chunks of {chunk} bytes{}",
            args.file.display(),
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
        let mut reporter = Reporter::new(size);
        let notes = std::cell::RefCell::new(Vec::<String>::new());
        let mut upload = Upload::new(machine, source)
            .cancel_handle(cancel)
            .allow_insecure_http(args.allow_http)
            .on_event(|e| {
                let line = match e {
                    Event::RetryScheduled {
                        cause,
                        attempt,
                        delay,
                    } => Some(format!("retry {attempt} in {delay:?}: {cause}")),
                    Event::Resynced { expected, server } => Some(format!(
                        "resynced: expected the server at {expected}, it is at {server}"
                    )),
                    Event::SessionRestarted { cause, restarts } => {
                        Some(format!("new upload session (#{restarts}): {cause}"))
                    }
                    _ => None,
                };
                if let Some(l) = line {
                    notes.borrow_mut().push(l);
                }
            })
            .on_progress(|p| {
                for n in notes.borrow_mut().drain(..) {
                    reporter.note(&n);
                }
                reporter.progress(p);
            });
        let mut token_calls = 0;
        upload = upload.token_provider(move || {
            token_calls += 1;
            if token_calls == 1 {
                Ok(token.clone())
            } else {
                Err(
                    "the access token was rejected; get a new one and run again \
                     (with --checkpoint to resume)"
                        .into(),
                )
            }
        });
        if let Some(a) = agent(args)? {
            upload = upload.agent(a);
        }
        if let Some(path) = &args.checkpoint {
            upload = upload.checkpoint_file(path);
        }
        let result = upload.run();
        for n in notes.borrow_mut().drain(..) {
            eprintln!("{n}");
        }
        reporter.done();
        match result {
            Ok(c) => Ok((Ended::Completed(c), ep)),
            Err(Error::Cancelled { checkpoint }) => {
                match checkpoint {
                    Some(p) => eprintln!(
                        "interrupted; checkpoint saved in {} (run the same command to resume)",
                        p.display()
                    ),
                    None => eprintln!(
                        "interrupted (no checkpoint: use --checkpoint FILE to resume later)"
                    ),
                }
                Ok((Ended::Interrupted, ep))
            }
            Err(e) => Err(format!("upload failed: {e}")),
        }
    }
}

/// The file the embedded emulator stored with this id.
fn stored(ep: &Endpoint, service: Service, id: &str) -> Result<Option<FileRecord>, String> {
    let Some(server) = &ep.embedded else {
        return Ok(None);
    };
    let files = server
        .emulator()
        .lock()
        .map_err(|_| "the emulator lock is poisoned".to_string())?
        .files();
    files
        .into_iter()
        .find(|f| f.service == service && f.id == id)
        .map(Some)
        .ok_or_else(|| format!("the emulator has no file with id {id}"))
}

fn onedrive(job: Job<'_>) -> Result<ExitCode, String> {
    let conflict = match job.args.conflict {
        Conflict::Fail => ConflictBehavior::Fail,
        Conflict::Replace => ConflictBehavior::Replace,
        Conflict::Rename => ConflictBehavior::Rename,
    };
    let chunk = job.args.chunk.unwrap_or(onedrive_limits::DEFAULT_FRAGMENT);
    let dest = job.dest.clone();
    let machine = job.machine(
        job.ep.onedrive(),
        |fingerprint, config, token| {
            let mut b = OneDriveUpload::builder(Target::path(dest), fingerprint.size)
                .fingerprint(fingerprint)
                .fragment_size(chunk)
                .conflict(conflict)
                .config(config);
            if let Some(t) = token {
                b = b.access_token(t);
            }
            b.build()
        },
        OneDriveUpload::acknowledged,
    )?;
    let chunk = machine.options().fragment_size.get();
    let size = job.size;
    let (ended, ep) = job.drive(machine, chunk)?;
    let completed = match ended {
        Ended::Completed(c) => c,
        Ended::Interrupted => return Ok(ExitCode::from(130)),
    };
    let item = &completed.item;
    let v = completed.verification;
    if !(v.quick_xor || v.sha256) {
        return Err(format!(
            "uploaded as item {}, but the server reported no hash to verify it against",
            item.id
        ));
    }
    if item.size != Some(size) {
        return Err(format!(
            "size mismatch: {size} bytes sent, server says {:?}",
            item.size
        ));
    }
    if let Some(rec) = stored(&ep, Service::OneDrive, &item.id)? {
        if rec.content.size != size || rec.content.quick_xor_hash != item.quick_xor_hash {
            return Err("the emulator's stored file differs from the reported item".into());
        }
        eprintln!(
            "stored in the emulator as {} ({} bytes, sha256 {})",
            rec.path,
            rec.content.size,
            rec.content.sha256.as_deref().unwrap_or("?")
        );
    }
    eprintln!(
        "done: {size} bytes, verified (QuickXorHash: {}, SHA-256: {}), {} session restart(s)",
        if v.quick_xor { "match" } else { "not reported" },
        if v.sha256 { "match" } else { "not checked" },
        completed.restarts
    );
    println!("{}", sanitized(item.raw.clone()));
    Ok(ExitCode::SUCCESS)
}

fn dropbox(job: Job<'_>) -> Result<ExitCode, String> {
    let commit = CommitInfo::new(job.dest.clone()).map_err(|e| e.to_string())?;
    let commit = match job.args.conflict {
        Conflict::Fail => commit.mode(WriteMode::Add),
        Conflict::Replace => commit.mode(WriteMode::Overwrite),
        Conflict::Rename => commit.mode(WriteMode::Add).autorename(true),
    };
    let chunk = job.args.chunk.unwrap_or(dropbox_limits::DEFAULT_CHUNK);
    let machine = job.machine(
        job.ep.dropbox(),
        |fingerprint, config, token| {
            let mut b = DropboxUpload::builder(commit, fingerprint.size)
                .fingerprint(fingerprint)
                .chunk_size(chunk)
                .config(config);
            if let Some(t) = token {
                b = b.access_token(t);
            }
            b.build()
        },
        DropboxUpload::acknowledged,
    )?;
    let chunk = machine.options().chunk_size;
    let size = job.size;
    let (ended, ep) = job.drive(machine, chunk)?;
    let completed = match ended {
        Ended::Completed(c) => c,
        Ended::Interrupted => return Ok(ExitCode::from(130)),
    };
    let DropboxCompleted::Committed(c) = completed else {
        return Err("the session was closed but not committed".into());
    };
    let meta = &c.metadata;
    if !c.hash_verified {
        return Err(format!(
            "uploaded as {}, but the server reported no content hash to verify it against",
            meta.id
        ));
    }
    if meta.size != size {
        return Err(format!(
            "size mismatch: {size} bytes sent, server says {}",
            meta.size
        ));
    }
    if let Some(rec) = stored(&ep, Service::Dropbox, &meta.id)? {
        if rec.content.size != size || rec.content.content_hash != meta.content_hash {
            return Err("the emulator's stored file differs from the reported metadata".into());
        }
        eprintln!(
            "stored in the emulator as {} ({} bytes, sha256 {})",
            rec.path,
            rec.content.size,
            rec.content.sha256.as_deref().unwrap_or("?")
        );
    }
    eprintln!(
        "done: {size} bytes, verified (content hash {}), {} session restart(s)",
        c.content_hash, c.restarts
    );
    println!("{}", sanitized(meta.raw.clone()));
    Ok(ExitCode::SUCCESS)
}

fn run(args: Args, cancel: &CancelHandle) -> Result<ExitCode, String> {
    let source = Source::file(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let dest = match &args.dest {
        Some(d) => d.clone(),
        None => {
            let name = args
                .file
                .file_name()
                .ok_or_else(|| format!("{} has no file name", args.file.display()))?;
            format!("/{}", name.to_string_lossy())
        }
    };
    let ep = endpoint(&args)?;
    let token = AccessToken::new(&ep.token).map_err(|e| format!("token: {e}"))?;
    let job = Job {
        args: &args,
        cancel,
        size: source.size(),
        source,
        dest,
        ep,
        token,
    };
    match args.to {
        To::Onedrive => onedrive(job),
        To::Dropbox => dropbox(job),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cancel = CancelHandle::new();
    let on_signal = cancel.clone();
    let installed = ctrlc::set_handler(move || {
        if on_signal.is_cancelled() {
            // A second Ctrl-C: give up at once (the checkpoint file is always complete).
            std::process::exit(130);
        }
        on_signal.cancel();
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot handle Ctrl-C ({e}); interrupting may lose the last checkpoint");
    }
    match run(args, &cancel) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
