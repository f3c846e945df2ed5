//! The pure half of an adapter's source: range checks, the file stamp, and the window a
//! forward-only reader keeps for retries. Reading and `stat`ing stay in the adapters.

use super::AdapterError;
use bytes::Bytes;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest range read at once. The machines ask for at most one fragment (OneDrive:
/// 60 MiB, Dropbox: 150 MiB); anything larger is refused rather than allocated.
pub const MAX_READ: u64 = 256 * 1024 * 1024;

/// Checks a range the machine asked for against a source of `size` bytes and returns its
/// end (exclusive).
///
/// # Errors
/// [`AdapterError::Source`] (`InvalidInput`) when the range goes past the source or is
/// larger than [`MAX_READ`].
///
/// # Examples
/// ```
/// use upload_session::driver::check_range;
/// assert_eq!(check_range(10, 5, 20).unwrap(), 15);
/// assert!(check_range(10, 11, 20).is_err());
/// assert!(check_range(u64::MAX, 2, 20).is_err());
/// ```
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<u64, AdapterError> {
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= size)
        .ok_or_else(|| {
            AdapterError::Source(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {offset}+{len} is outside the source ({size} bytes)"),
            ))
        })?;
    if len > MAX_READ {
        return Err(AdapterError::Source(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a range of {len} bytes is more than {MAX_READ} at once"),
        )));
    }
    Ok(end)
}

/// [`AdapterError::SourceChanged`] for a source of `size` bytes that ended `got` bytes
/// after `offset`.
pub fn source_ended_early(offset: u64, got: usize, size: u64) -> AdapterError {
    AdapterError::source_changed(format!(
        "it ended at byte {} although it was {size} bytes long",
        offset.saturating_add(got as u64),
    ))
}

/// What a file looked like (from its metadata, which the adapter reads): the basis of
/// both the modification stamp recorded in checkpoints and the change detection during
/// an upload. Both adapters build it the same way, so a checkpoint taken by one resumes
/// in the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, when the platform reports one.
    pub modified: Option<SystemTime>,
    /// Device and inode numbers (Unix), which change when the file is replaced.
    pub device_inode: Option<(u64, u64)>,
}

impl FileStamp {
    /// The modification stamp recorded in checkpoints:
    /// `mtime:<secs>.<nanos>` (or `mtime:unknown`), then `;dev:<d>;ino:<i>` when known.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use upload_session::driver::FileStamp;
    /// let s = FileStamp {
    ///     size: 3,
    ///     modified: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
    ///     device_inode: Some((1, 2)),
    /// };
    /// assert_eq!(s.stamp(), "mtime:1700000000.000000005;dev:1;ino:2");
    /// ```
    pub fn stamp(&self) -> String {
        let mut s = match self
            .modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        {
            Some(d) => format!("mtime:{}.{:09}", d.as_secs(), d.subsec_nanos()),
            None => "mtime:unknown".to_string(),
        };
        if let Some((dev, ino)) = self.device_inode {
            s.push_str(&format!(";dev:{dev};ino:{ino}"));
        }
        s
    }

    /// Compares the file as it is `now` with how it was when the upload started (`self`).
    ///
    /// # Errors
    /// [`AdapterError::SourceChanged`] when the size or any other part differs.
    pub fn check_unchanged(&self, now: &FileStamp) -> Result<(), AdapterError> {
        if now.size != self.size {
            return Err(AdapterError::source_changed(format!(
                "its size went from {} to {} bytes",
                self.size, now.size
            )));
        }
        if now != self {
            return Err(AdapterError::source_changed(
                "it was modified (its modification time changed)",
            ));
        }
        Ok(())
    }
}

/// The bookkeeping of a forward-only reader source: how far the reader was consumed,
/// and the last range read (kept so that a retry of it, or of part of it, needs no
/// rewind).
#[derive(Debug, Default)]
pub struct ForwardWindow {
    pos: u64,
    last: Option<(u64, Bytes)>,
}

/// What to do for one range of a forward-only reader (from [`ForwardWindow::plan`]).
#[derive(Debug)]
pub enum ForwardRead {
    /// The range is (part of) the last one read: here it is, nothing to read.
    Cached(Bytes),
    /// Skip `skip` bytes of the reader, then read `want` bytes, and hand them to
    /// [`ForwardWindow::complete`] with `prefix` (the part of the range already held).
    Read {
        /// Bytes of the range already held, from the last range read.
        prefix: Bytes,
        /// Bytes of the reader to discard first (a resume past its start).
        skip: u64,
        /// Bytes to read after that.
        want: u64,
    },
}

impl ForwardWindow {
    /// A reader nothing was read from.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes consumed from the reader.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Plans the read of `offset..end` (already checked with [`check_range`]). Unless
    /// the answer is [`ForwardRead::Cached`], the last range is forgotten.
    ///
    /// # Errors
    /// [`AdapterError::SourceNotRewindable`] when the range starts before what is held.
    pub fn plan(&mut self, offset: u64, end: u64) -> Result<ForwardRead, AdapterError> {
        if let Some((start, data)) = &self.last {
            let last_end = start.saturating_add(data.len() as u64);
            if offset >= *start && end <= last_end {
                let from = (offset - *start) as usize;
                let to = (end - *start) as usize;
                return Ok(ForwardRead::Cached(data.slice(from..to)));
            }
        }
        let (prefix, read_from) = match self.last.take() {
            // Starts inside the last range and goes on past it.
            Some((start, data)) if offset >= start && offset < self.pos => {
                (data.slice((offset - start) as usize..), self.pos)
            }
            Some((start, _)) if offset < self.pos => {
                return Err(AdapterError::SourceNotRewindable {
                    offset,
                    buffered_from: start,
                });
            }
            None if offset < self.pos => {
                return Err(AdapterError::SourceNotRewindable {
                    offset,
                    buffered_from: self.pos,
                });
            }
            _ => (Bytes::new(), offset),
        };
        Ok(ForwardRead::Read {
            prefix,
            skip: read_from - self.pos,
            want: end.saturating_sub(read_from),
        })
    }

    /// Records that `n` more bytes were consumed from the reader (skipped or read).
    pub fn advance(&mut self, n: u64) {
        self.pos = self.pos.saturating_add(n);
    }

    /// Joins `prefix` and the `fresh` bytes read into the range starting at `offset`,
    /// remembers it as the last range, and returns it.
    pub fn complete(&mut self, offset: u64, prefix: Bytes, fresh: Vec<u8>) -> Bytes {
        let data = if prefix.is_empty() {
            Bytes::from(fresh)
        } else {
            let mut joined = Vec::with_capacity(prefix.len() + fresh.len());
            joined.extend_from_slice(&prefix);
            joined.extend_from_slice(&fresh);
            Bytes::from(joined)
        };
        self.last = Some((offset, data.clone()));
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_window_serves_retries_and_refuses_older_ranges() {
        let mut w = ForwardWindow::new();
        let ForwardRead::Read { prefix, skip, want } = w.plan(0, 4).unwrap() else {
            panic!("nothing is cached yet")
        };
        assert_eq!((prefix.len(), skip, want), (0, 0, 4));
        w.advance(4);
        assert_eq!(&w.complete(0, prefix, b"abcd".to_vec())[..], b"abcd");
        // A retry of part of it.
        let ForwardRead::Cached(b) = w.plan(1, 3).unwrap() else {
            panic!("cached")
        };
        assert_eq!(&b[..], b"bc");
        // Overlapping: the held part plus fresh bytes.
        let ForwardRead::Read { prefix, skip, want } = w.plan(2, 6).unwrap() else {
            panic!("not all cached")
        };
        assert_eq!((&prefix[..], skip, want), (&b"cd"[..], 0, 2));
        w.advance(2);
        assert_eq!(&w.complete(2, prefix, b"ef".to_vec())[..], b"cdef");
        // Before what is held.
        assert!(matches!(
            w.plan(0, 2),
            Err(AdapterError::SourceNotRewindable {
                offset: 0,
                buffered_from: 2
            })
        ));
        // After the window is forgotten, nothing before the position.
        assert!(matches!(
            w.plan(1, 2),
            Err(AdapterError::SourceNotRewindable {
                offset: 1,
                buffered_from: 6
            })
        ));
        // A jump forward skips.
        let ForwardRead::Read { skip, want, .. } = w.plan(10, 12).unwrap() else {
            panic!("not cached")
        };
        assert_eq!((skip, want), (4, 2));
    }

    #[test]
    fn file_stamps_detect_size_and_time_changes() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(5);
        let a = FileStamp {
            size: 3,
            modified: Some(t),
            device_inode: None,
        };
        assert_eq!(a.stamp(), "mtime:5.000000000");
        assert!(a.check_unchanged(&a.clone()).is_ok());
        let bigger = FileStamp {
            size: 4,
            ..a.clone()
        };
        assert!(matches!(
            a.check_unchanged(&bigger),
            Err(AdapterError::SourceChanged { detail }) if detail.contains("from 3 to 4")
        ));
        let touched = FileStamp {
            modified: None,
            ..a.clone()
        };
        assert!(a.check_unchanged(&touched).is_err());
        assert_eq!(touched.stamp(), "mtime:unknown");
    }
}
