//! Dropbox protocol constants (dropbox.md §0).

/// Largest body of one request (start, append, finish): 150 MiB.
pub const MAX_BODY: u64 = 157_286_400;

/// Alignment of concurrent appends (offsets and non-final lengths): 4 MiB.
pub const CONCURRENT_ALIGN: u64 = super::content_hash::BLOCK_SIZE;

/// Largest chunk of a concurrent session: the largest multiple of 4 MiB under the body
/// limit (37 blocks = 148 MiB).
pub const MAX_CONCURRENT_CHUNK: u64 = 155_189_248;

/// Default chunk: 8 MiB (two content-hash blocks; what both official SDK helpers use).
pub const DEFAULT_CHUNK: u64 = 8_388_608;

/// Largest file an upload session can hold: 2^41 − 2^22 bytes.
pub const MAX_FILE_SIZE: u64 = 2_199_019_061_248;

/// Most entries of one `finish_batch_v2` call.
pub const MAX_BATCH: usize = 1000;

/// Default number of concurrent appends in flight.
pub const DEFAULT_PARALLELISM: u32 = 4;

/// Most concurrent appends in flight.
pub const MAX_PARALLELISM: u32 = 64;

/// Default read-ahead: chunks read (and hashed) while the requests before them are in
/// flight, so that hashing overlaps the transfer.
pub const DEFAULT_READ_AHEAD: u32 = 1;

/// Most chunks read ahead.
pub const MAX_READ_AHEAD: u32 = 16;
