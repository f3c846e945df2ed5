//! OneDrive protocol constants (onedrive.md §0).

/// Every fragment but the last must be a multiple of this: 320 KiB.
#[cfg(not(fuzzing))]
pub const FRAGMENT_UNIT: u64 = 327_680;
/// Fuzz builds (`--cfg fuzzing`) scale the unit down 1024× (320 bytes), with the
/// emulator's, so that a fuzz input spans many fragments at little cost (fuzz/README.md).
#[cfg(fuzzing)]
pub const FRAGMENT_UNIT: u64 = 320;

/// Largest fragment per request: 60 MiB (192 × 320 KiB).
pub const MAX_FRAGMENT: u64 = 62_914_560;

/// Default fragment size: 10 MiB (32 × 320 KiB), Microsoft's recommendation for fast,
/// stable links.
pub const DEFAULT_FRAGMENT: u64 = 10_485_760;

/// Default read-ahead: fragments read (and hashed) while the one before them travels.
pub const DEFAULT_READ_AHEAD: u32 = 1;

/// Most fragments read ahead.
pub const MAX_READ_AHEAD: u32 = 16;

/// Default largest file: 250 GB (Microsoft's documented limit; configurable).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 250_000_000_000;

/// Graph, global cloud.
pub const GRAPH_GLOBAL: &str = "https://graph.microsoft.com/v1.0";
/// Graph, US Government L4.
pub const GRAPH_US_GOV: &str = "https://graph.microsoft.us/v1.0";
/// Graph, US Government L5 (DOD).
pub const GRAPH_US_DOD: &str = "https://dod-graph.microsoft.us/v1.0";
/// Graph, China (operated by 21Vianet).
pub const GRAPH_CHINA: &str = "https://microsoftgraph.chinacloudapi.cn/v1.0";
