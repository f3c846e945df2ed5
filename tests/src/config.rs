//! Emulator configuration: service variants and quirk modes.
//!
//! `Config::default()` is the strict, realistic setup every test should start from:
//! OneDrive for Business with strict 320 KiB alignment, a strict Dropbox with separate
//! content/api hosts, no faults.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which digests the storage computes for every stored byte. All are on by default;
/// a throughput benchmark may switch some off (the skipped ones are `None` in the record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestConfig {
    /// Whole-file SHA-256.
    pub sha256: bool,
    /// OneDrive QuickXorHash.
    pub quick_xor: bool,
    /// Dropbox content hash.
    pub dropbox_content: bool,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            sha256: true,
            quick_xor: true,
            dropbox_content: true,
        }
    }
}

/// Top-level configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Absolute base URL the emulator is reachable at (no trailing slash), used to build
    /// OneDrive `uploadUrl`s. The server overwrites it with its real address.
    pub base_url: String,
    /// Bearer tokens that are valid from the start. More can be issued at run time
    /// ([`crate::Emulator::issue_token`]).
    pub tokens: Vec<String>,
    /// Accept any well-formed bearer token (handy for ad-hoc use of the binary).
    pub accept_any_token: bool,
    /// Keep the bytes of every stored file in memory (small-file tests only).
    pub keep_bytes: bool,
    /// Which digests to compute.
    pub digests: DigestConfig,
    /// Cap on JSON request bodies read into memory (createUploadSession, RPC routes).
    pub max_json_body: usize,
    /// OneDrive options.
    pub onedrive: OneDriveConfig,
    /// Dropbox options.
    pub dropbox: DropboxConfig,
}

/// The default bearer token the emulator accepts.
pub const DEFAULT_TOKEN: &str = "emulator-token";

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:0".to_string(),
            tokens: vec![DEFAULT_TOKEN.to_string()],
            accept_any_token: false,
            keep_bytes: false,
            digests: DigestConfig::default(),
            max_json_body: 4 * 1024 * 1024,
            onedrive: OneDriveConfig::default(),
            dropbox: DropboxConfig::default(),
        }
    }
}

/// OneDrive account flavour (onedrive.md §1.5, §4.2, §11 rules 10, 25, 37).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OneDriveFlavor {
    /// OneDrive for Business / SharePoint: 15-minute sliding expiry, 24 h token cap,
    /// 409 on a second session for the same target.
    Business,
    /// OneDrive Personal: multi-day expiry, a new session on every create.
    Personal,
}

/// Alignment checking (onedrive.md §11 rules 21-22).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alignment {
    /// A non-final fragment must end on a 320 KiB boundary (rule 21).
    Strict,
    /// Unaligned fragments are accepted; if any was unaligned and the file is at least
    /// `fail_threshold` bytes, the final PUT fails with 500 (rule 22).
    Lenient {
        /// Size from which an unaligned upload fails at commit.
        fail_threshold: u64,
    },
}

/// Where a `fail` name conflict is reported (onedrive.md §11 rule 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictAt {
    /// At createUploadSession.
    Create,
    /// At the final fragment (commit).
    Commit,
}

/// Shape of the 202 `nextExpectedRanges` entries (onedrive.md §11 rule 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeStyle {
    /// `"N-"`.
    OpenEnded,
    /// `"N-(TOTAL-1)"`.
    Closed,
}

/// Casing of the inner error key (onedrive.md §11 rule 44).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InnerErrorKey {
    /// Graph's `innerError`.
    CamelCase,
    /// Older `innererror`.
    Lowercase,
}

/// OneDrive options.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OneDriveConfig {
    /// Account flavour.
    pub flavor: OneDriveFlavor,
    /// Alignment mode.
    pub alignment: Alignment,
    /// Largest fragment accepted (62,914,560; SharePoint-lenient mode: 262,144,000).
    pub max_fragment: u64,
    /// Largest file (rule 7), default 250 GB.
    pub max_file_size: u64,
    /// Free quota of each drive (rule 6).
    pub quota: u64,
    /// Where a `fail` conflict is reported.
    pub conflict_at: ConflictAt,
    /// 202 range style.
    pub range_style: RangeStyle,
    /// Quirk (rule 27): the final fragment returns 201 with an uploadSession-shaped body.
    pub final_returns_session_shape: bool,
    /// Error key casing (rule 44).
    pub inner_error_key: InnerErrorKey,
    /// Rule 44 mode: 416 and 504 answers carry an empty, non-JSON body.
    pub empty_error_bodies: bool,
    /// Rule 45: add SharePoint `RateLimit-*` headers to throttling responses.
    pub sharepoint_headers: bool,
    /// Business sliding expiry (rule 25): each accepted fragment sets expiry to now + this.
    pub business_expiry: Duration,
    /// Personal expiry after creation.
    pub personal_expiry: Duration,
    /// Business hard cap after creation (rule 37): 24 h.
    pub business_token_lifetime: Duration,
    /// Largest simple upload (`PUT …:/content`), 250 MB in current Graph docs.
    pub simple_upload_max: u64,
}

impl Default for OneDriveConfig {
    fn default() -> Self {
        Self {
            flavor: OneDriveFlavor::Business,
            alignment: Alignment::Strict,
            max_fragment: 62_914_560,
            max_file_size: 250_000_000_000,
            quota: 1 << 50,
            conflict_at: ConflictAt::Create,
            range_style: RangeStyle::OpenEnded,
            final_returns_session_shape: false,
            inner_error_key: InnerErrorKey::CamelCase,
            empty_error_bodies: false,
            sharepoint_headers: false,
            business_expiry: Duration::from_secs(15 * 60),
            personal_expiry: Duration::from_secs(6 * 24 * 3600),
            business_token_lifetime: Duration::from_secs(24 * 3600),
            simple_upload_max: 250_000_000,
        }
    }
}

/// Dropbox options.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DropboxConfig {
    /// Rule 3: upload routes only on the content host prefix, RPC routes only on the api host prefix.
    pub strict_hosts: bool,
    /// Rule 10 lenient toggle: accept raw UTF-8 in `Dropbox-API-Arg`.
    pub accept_raw_utf8_arg: bool,
    /// Largest request body (rule 27): 157,286,400.
    pub max_body: u64,
    /// Rule 27 optional mode: answer 413 (instead of 409 `payload_too_large`) for bodies
    /// above this size.
    pub http_413_above: Option<u64>,
    /// Largest file (rule 35): 2^41 − 2^22.
    pub max_file_size: u64,
    /// Session lifetime (rule 31): 7 days.
    pub session_lifetime: Duration,
    /// Free space (rule 55); `None` = unlimited.
    pub quota: Option<u64>,
    /// Rule 64: how long a v1 `finish_batch` job stays `in_progress`.
    pub batch_job_duration: Duration,
}

impl Default for DropboxConfig {
    fn default() -> Self {
        Self {
            strict_hosts: true,
            accept_raw_utf8_arg: false,
            max_body: 157_286_400,
            http_413_above: None,
            max_file_size: 2_199_019_061_248,
            session_lifetime: Duration::from_secs(604_800),
            quota: None,
            batch_job_duration: Duration::from_secs(2),
        }
    }
}
