//! Wall-clock times on the wire, and how they map onto the caller's monotonic clock.
//!
//! The core never reads a clock. Servers speak wall-clock time (OneDrive
//! `expirationDateTime`, `Retry-After` given as an HTTP-date); the caller supplies
//! `now: Instant` on every call and, from time to time, a pairing of an `Instant` with a
//! `SystemTime` ([`WallAnchor`]). Times on the wire are mapped through the newest anchor.
//!
//! Parsers here are total: any input gives `Some` or `None`, never a panic.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A pairing of the caller's monotonic clock with the wall clock at the same moment.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant, UNIX_EPOCH};
/// use upload_session::WallAnchor;
/// let mono = Instant::now();
/// let anchor = WallAnchor::new(mono, UNIX_EPOCH + Duration::from_secs(1_000));
/// let later = anchor.to_instant(UNIX_EPOCH + Duration::from_secs(1_060));
/// assert_eq!(later, mono.checked_add(Duration::from_secs(60)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallAnchor {
    /// The monotonic time of the pairing.
    pub mono: Instant,
    /// The wall-clock time at that moment.
    pub wall: SystemTime,
}

impl WallAnchor {
    /// Returns an anchor pairing `mono` with `wall`.
    pub fn new(mono: Instant, wall: SystemTime) -> Self {
        Self { mono, wall }
    }

    /// Maps a wall-clock time onto the monotonic clock. Times before the anchor map to
    /// the anchor's own instant or earlier (saturating); returns `None` only when the
    /// result does not fit in an `Instant` (far future or past).
    pub fn to_instant(&self, t: SystemTime) -> Option<Instant> {
        match t.duration_since(self.wall) {
            Ok(ahead) => self.mono.checked_add(ahead),
            Err(e) => self.mono.checked_sub(e.duration()),
        }
    }

    /// Returns the wall-clock time at the monotonic time `now` (saturating).
    pub fn wall_at(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.mono) {
            Some(d) => self.wall.checked_add(d).unwrap_or(self.wall),
            None => {
                let back = self.mono.saturating_duration_since(now);
                self.wall.checked_sub(back).unwrap_or(self.wall)
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (valid for years 0..=9999).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Builds a `SystemTime` from UTC fields; `None` if a field is out of range.
fn system_time(
    (year, month, day): (i64, u32, u32),
    (hour, min, sec): (u32, u32, u32),
    nanos: u32,
    offset_secs: i64,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
        || nanos >= 1_000_000_000
    {
        return None;
    }
    // A leap second is folded into the next second.
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(min) * 60
        + i64::from(sec)
        - offset_secs;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
    } else {
        let back = Duration::new(secs.unsigned_abs(), 0).checked_sub(Duration::new(0, nanos))?;
        UNIX_EPOCH.checked_sub(back)
    }
}

/// A tiny cursor over ASCII text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            i: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }
    fn eat_ci(&mut self, word: &str) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        let got = self.s.get(self.i..end)?;
        got.eq_ignore_ascii_case(word.as_bytes())
            .then(|| self.i = end)
    }
    /// Exactly `n` decimal digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            self.i += 1;
        }
        Some(v)
    }
    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with any
/// number of fraction digits (OneDrive sends 0, 3 and 7; onedrive.md §1.4). `T`/`Z` may
/// be lowercase. Returns `None` for anything else.
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upload_session::wallclock::parse_rfc3339;
/// let t = parse_rfc3339("2015-04-17T02:15:08.9815266+00:00").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::new(1_429_236_908, 981_526_600));
/// assert!(parse_rfc3339("2015-02-30T00:00:00Z").is_none());
/// ```
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let mut c = Cursor::new(text.trim());
    let year = c.digits(4)?;
    c.eat(b'-')?;
    let month = c.digits(2)?;
    c.eat(b'-')?;
    let day = c.digits(2)?;
    if c.eat(b'T').is_none() {
        c.eat(b't')?;
    }
    let hour = c.digits(2)?;
    c.eat(b':')?;
    let min = c.digits(2)?;
    c.eat(b':')?;
    let sec = c.digits(2)?;
    let mut nanos = 0u32;
    if c.eat(b'.').is_some() {
        let mut n = 0usize;
        while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
            if n < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            n += 1;
            c.i += 1;
        }
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset = match c.peek()? {
        b'Z' | b'z' => {
            c.i += 1;
            0i64
        }
        sign @ (b'+' | b'-') => {
            c.i += 1;
            let h = c.digits(2)?;
            c.eat(b':')?;
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h) * 3600 + i64::from(m) * 60;
            if sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    if !c.done() {
        return None;
    }
    system_time(
        (i64::from(year), month, day),
        (hour, min, sec),
        nanos,
        offset,
    )
}

/// Formats a wall-clock time as RFC 3339 UTC, with milliseconds when they are not zero
/// (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.678Z`). Times before 1970 are clamped
/// to the epoch.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let millis = d.subsec_millis();
    if millis == 0 {
        format!("{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn month(c: &mut Cursor<'_>) -> Option<u32> {
    for (i, m) in MONTHS.iter().enumerate() {
        if c.eat_ci(m).is_some() {
            return u32::try_from(i + 1).ok();
        }
    }
    None
}

fn time_of_day(c: &mut Cursor<'_>) -> Option<(u32, u32, u32)> {
    let h = c.digits(2)?;
    c.eat(b':')?;
    let m = c.digits(2)?;
    c.eat(b':')?;
    let s = c.digits(2)?;
    Some((h, m, s))
}

/// Parses an HTTP-date in any of the three formats RFC 9110 §5.6.7 requires recipients
/// to accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
///
/// # Examples
/// ```
/// use upload_session::wallclock::parse_http_date;
/// let a = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
/// assert!(a.is_some());
/// assert_eq!(a, parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"));
/// assert_eq!(a, parse_http_date("Sun Nov  6 08:49:37 1994"));
/// ```
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    // IMF-fixdate and RFC 850 both have a comma after the weekday.
    if let Some(comma) = text.find(',') {
        let (wd, rest) = text.split_at(comma);
        let mut c = Cursor::new(rest);
        c.eat(b',')?;
        if c.spaces() != 1 {
            return None;
        }
        if WEEKDAYS.iter().any(|w| w.eq_ignore_ascii_case(wd)) {
            let day = c.digits(2)?;
            c.eat(b' ')?;
            let mon = month(&mut c)?;
            c.eat(b' ')?;
            let year = c.digits(4)?;
            c.eat(b' ')?;
            let (h, m, s) = time_of_day(&mut c)?;
            c.eat(b' ')?;
            c.eat_ci("GMT")?;
            if !c.done() {
                return None;
            }
            return system_time((i64::from(year), mon, day), (h, m, s), 0, 0);
        }
        if LONG_WEEKDAYS.iter().any(|w| w.eq_ignore_ascii_case(wd)) {
            let day = c.digits(2)?;
            c.eat(b'-')?;
            let mon = month(&mut c)?;
            c.eat(b'-')?;
            let yy = c.digits(2)?;
            c.eat(b' ')?;
            let (h, m, s) = time_of_day(&mut c)?;
            c.eat(b' ')?;
            c.eat_ci("GMT")?;
            if !c.done() {
                return None;
            }
            // RFC 9110: a two-digit year more than 50 years in the future is in the past
            // century; without a clock we use the fixed pivot 1970..2069.
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            return system_time((i64::from(year), mon, day), (h, m, s), 0, 0);
        }
        return None;
    }
    // asctime: `Sun Nov  6 08:49:37 1994`
    let mut c = Cursor::new(text);
    let wd_ok = WEEKDAYS.iter().any(|w| c.eat_ci(w).is_some());
    if !wd_ok {
        return None;
    }
    c.eat(b' ')?;
    let mon = month(&mut c)?;
    c.eat(b' ')?;
    let day = if c.peek() == Some(b' ') {
        c.i += 1;
        c.digits(1)?
    } else {
        c.digits(2)?
    };
    c.eat(b' ')?;
    let (h, m, s) = time_of_day(&mut c)?;
    c.eat(b' ')?;
    let year = c.digits(4)?;
    if !c.done() {
        return None;
    }
    system_time((i64::from(year), mon, day), (h, m, s), 0, 0)
}

/// A parsed `Retry-After` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `delta-seconds`.
    Delay(Duration),
    /// An HTTP-date.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a `Retry-After` value: decimal seconds (huge values saturate) or an
    /// HTTP-date. Returns `None` for anything else.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use upload_session::wallclock::RetryAfter;
    /// assert_eq!(RetryAfter::parse("41"), Some(RetryAfter::Delay(Duration::from_secs(41))));
    /// assert!(matches!(RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(RetryAfter::At(_))));
    /// assert_eq!(RetryAfter::parse("soon"), None);
    /// ```
    pub fn parse(text: &str) -> Option<RetryAfter> {
        let t = text.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            let secs = t.parse::<u64>().unwrap_or(u64::MAX);
            return Some(RetryAfter::Delay(Duration::from_secs(secs)));
        }
        parse_http_date(t).map(RetryAfter::At)
    }

    /// Returns how long to wait from `now_wall`, given the wall clock at the moment the
    /// response arrived. A date in the past means no wait.
    pub fn delay_from(&self, now_wall: SystemTime) -> Duration {
        match *self {
            RetryAfter::Delay(d) => d,
            RetryAfter::At(t) => t.duration_since(now_wall).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn rfc3339_accepts_the_onedrive_shapes() {
        assert_eq!(
            parse_rfc3339("2015-01-29T09:21:55.523Z"),
            Some(at(1_422_523_315, 523_000_000))
        );
        assert_eq!(
            parse_rfc3339("2015-01-29T09:21:55Z"),
            Some(at(1_422_523_315, 0))
        );
        assert_eq!(
            parse_rfc3339("2015-01-29T10:21:55+01:00"),
            Some(at(1_422_523_315, 0))
        );
        assert_eq!(
            parse_rfc3339("2015-01-29T08:21:55.1-01:00"),
            Some(at(1_422_523_315, 100_000_000))
        );
        // more than 9 fraction digits are truncated
        assert_eq!(
            parse_rfc3339("2015-01-29T09:21:55.1234567891Z"),
            Some(at(1_422_523_315, 123_456_789))
        );
        assert_eq!(parse_rfc3339("1970-01-01t00:00:00z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800, 0))
        );
    }

    #[test]
    fn rfc3339_rejects_malformed_text() {
        for bad in [
            "",
            "2015-01-29",
            "2015-01-29T09:21:55",
            "2015-01-29T09:21:55.Z",
            "2015-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2015-01-29T24:00:00Z",
            "2015-01-29T09:21:55+0100",
            "2015-01-29T09:21:55Zjunk",
            "２０１５-01-29T09:21:55Z",
            "2015-01-29T09:21:55+24:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_formats_and_round_trips() {
        let t = at(1_422_523_315, 523_000_000);
        assert_eq!(format_rfc3339(t), "2015-01-29T09:21:55.523Z");
        assert_eq!(format_rfc3339(at(0, 0)), "1970-01-01T00:00:00Z");
        for secs in [
            0u64,
            59,
            951_782_400,
            1_709_164_800,
            4_102_444_800,
            253_402_300_799,
        ] {
            let t = at(secs, 0);
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_centuries() {
        for days in (-800_000i64..2_900_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let want = Some(at(784_111_777, 0));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
        for bad in [
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Funday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "",
            ",",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(
            RetryAfter::parse(" 315 "),
            Some(RetryAfter::Delay(Duration::from_secs(315)))
        );
        assert_eq!(
            RetryAfter::parse("99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(RetryAfter::parse("-1"), None);
        assert_eq!(RetryAfter::parse("1.5"), None);
        let ra = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(ra.delay_from(at(784_111_700, 0)), Duration::from_secs(77));
        assert_eq!(ra.delay_from(at(784_111_800, 0)), Duration::ZERO);
    }

    #[test]
    fn anchor_maps_both_directions() {
        let mono = Instant::now();
        let a = WallAnchor::new(mono, at(1000, 0));
        assert_eq!(
            a.to_instant(at(1010, 0)),
            mono.checked_add(Duration::from_secs(10))
        );
        assert_eq!(
            a.to_instant(at(990, 0)),
            mono.checked_sub(Duration::from_secs(10))
        );
        assert_eq!(a.wall_at(mono + Duration::from_secs(5)), at(1005, 0));
    }
}
