//! Byte ranges: half-open ranges of a file, `Content-Range` headers and OneDrive's
//! `nextExpectedRanges` entries.

use std::fmt;

/// A half-open byte range `start..end` of a file (`end` exclusive).
///
/// # Examples
/// ```
/// use upload_session::ByteRange;
/// let r = ByteRange::new(0, 26).unwrap();
/// assert_eq!(r.len(), 26);
/// assert_eq!(r.content_range(128), "bytes 0-25/128");
/// assert!(ByteRange::new(5, 4).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    start: u64,
    end: u64,
}

impl ByteRange {
    /// Returns the range `start..end`, or `None` when `end < start`.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// Returns the empty range at `at`.
    pub fn empty(at: u64) -> Self {
        Self { start: at, end: at }
    }

    /// Returns the range of `len` bytes from `start`, or `None` on overflow.
    pub fn from_len(start: u64, len: u64) -> Option<Self> {
        Some(Self {
            start,
            end: start.checked_add(len)?,
        })
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when `other` lies inside this range.
    pub fn contains(&self, other: &ByteRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Formats the HTTP `Content-Range` of this (non-empty) range of a `total`-byte file:
    /// `bytes START-END/TOTAL` with `END` inclusive and single spaces exactly as
    /// onedrive.md §2.1 requires.
    pub fn content_range(&self, total: u64) -> String {
        format!(
            "bytes {}-{}/{}",
            self.start,
            self.end.saturating_sub(1).max(self.start),
            total
        )
    }
}

impl fmt::Debug for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// One OneDrive `nextExpectedRanges` entry: `"START-"` or `"START-END"` (END inclusive;
/// onedrive.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedRange {
    /// First missing byte.
    pub start: u64,
    /// Last missing byte (inclusive), when given.
    pub end_inclusive: Option<u64>,
}

impl ExpectedRange {
    /// Parses an entry; returns `None` for anything but `digits "-" [digits]` with
    /// `start <= end`.
    ///
    /// # Examples
    /// ```
    /// use upload_session::range::ExpectedRange;
    /// assert_eq!(ExpectedRange::parse("26-").map(|r| r.start), Some(26));
    /// assert_eq!(ExpectedRange::parse("5-9").and_then(|r| r.end_inclusive), Some(9));
    /// for bad in ["", "-9", "42-4", "1-2-3", "x-", "18446744073709551616-"] {
    ///     assert!(ExpectedRange::parse(bad).is_none());
    /// }
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let (a, b) = text.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let start = num(a)?;
        let end_inclusive = if b.is_empty() { None } else { Some(num(b)?) };
        if end_inclusive.is_some_and(|e| e < start) {
            return None;
        }
        Some(Self {
            start,
            end_inclusive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_inclusive_with_exact_spacing() {
        let r = ByteRange::new(327_680, 655_360).unwrap();
        assert_eq!(r.content_range(1_000_000), "bytes 327680-655359/1000000");
        let one = ByteRange::from_len(7, 1).unwrap();
        assert_eq!(one.content_range(8), "bytes 7-7/8");
    }

    #[test]
    fn expected_ranges_parse_both_forms() {
        assert_eq!(
            ExpectedRange::parse("5242880-8255205"),
            Some(ExpectedRange {
                start: 5_242_880,
                end_inclusive: Some(8_255_205)
            })
        );
        assert_eq!(
            ExpectedRange::parse("0-"),
            Some(ExpectedRange {
                start: 0,
                end_inclusive: None
            })
        );
        assert_eq!(ExpectedRange::parse(" 1-"), None);
        assert_eq!(ExpectedRange::parse("+1-"), None);
    }

    #[test]
    fn containment_and_overflow() {
        let outer = ByteRange::new(10, 20).unwrap();
        assert!(outer.contains(&ByteRange::new(10, 20).unwrap()));
        assert!(outer.contains(&ByteRange::new(12, 15).unwrap()));
        assert!(!outer.contains(&ByteRange::new(9, 15).unwrap()));
        assert!(ByteRange::from_len(u64::MAX, 1).is_none());
    }
}
