//! Building blocks: response generators shaped after the specs' examples (so most
//! inputs reach the parsers' interesting branches), a virtual clock origin, the shared
//! source buffer.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A `Result` whose error is ignored: the input ran out, the generators fall back to
/// their first choice.
pub type R<T> = arbitrary::Result<T>;

/// The wall time every run starts at: 2023-11-14T22:13:20Z.
pub fn start_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// The monotonic origin (read once per process; only differences matter).
pub fn origin() -> Instant {
    static O: OnceLock<Instant> = OnceLock::new();
    *O.get_or_init(Instant::now)
}

/// Largest source any target uploads.
pub const MAX_SOURCE: u64 = 7 * 4 * 1024 * 1024 + 65_536;

/// A fixed pseudo-random source buffer; uploads are prefixes of it.
pub fn source(size: u64) -> Bytes {
    static BIG: OnceLock<Bytes> = OnceLock::new();
    let big = BIG.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v = Vec::with_capacity(MAX_SOURCE as usize + 8);
        while (v.len() as u64) < MAX_SOURCE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(MAX_SOURCE as usize);
        Bytes::from(v)
    });
    big.slice(..size.min(MAX_SOURCE) as usize)
}

/// Digests of source prefixes, cached per size: most executions upload one of a few sizes
/// (a corpus entry and its mutants), and hashing hundreds of KiB in an instrumented build
/// costs more than the rest of a run. Bounded: at most [`DIGEST_CACHE`] sizes are kept.
struct Digests {
    qxh: HashMap<u64, String>,
    sha: HashMap<u64, String>,
}

/// Most source sizes whose digests are cached (per digest).
const DIGEST_CACHE: usize = 4096;

fn cached(map: &mut HashMap<u64, String>, size: u64, f: impl FnOnce(&[u8]) -> String) -> String {
    if let Some(v) = map.get(&size) {
        return v.clone();
    }
    let v = f(&source(size));
    if map.len() >= DIGEST_CACHE {
        map.clear();
    }
    map.insert(size, v.clone());
    v
}

thread_local! {
    static DIGESTS: RefCell<Digests> = RefCell::new(Digests { qxh: HashMap::new(), sha: HashMap::new() });
}

/// The QuickXorHash (base64) of `source(size)`.
pub fn source_qxh(size: u64) -> String {
    DIGESTS.with(|d| {
        cached(&mut d.borrow_mut().qxh, size, |b| {
            let mut q = upload_session::onedrive::QuickXorHash::new();
            q.update(b);
            q.base64()
        })
    })
}

/// The SHA-256 (hex) of `source(size)`.
pub fn source_sha256(size: u64) -> String {
    DIGESTS.with(|d| {
        cached(&mut d.borrow_mut().sha, size, |b| {
            let mut s = upload_session::hash::Sha256State::new();
            s.update(b);
            s.hex()
        })
    })
}

/// The Dropbox content hash of `source(size)`: the digests of the whole 4 MiB blocks of
/// the (fixed) source are computed once per process, only the last partial block per call.
pub fn source_content_hash(size: u64) -> String {
    use upload_session::dropbox::{BLOCK_SIZE, block_digests, hash_of_digests};
    static FULL: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let full = FULL.get_or_init(|| {
        let whole = MAX_SOURCE / BLOCK_SIZE * BLOCK_SIZE;
        block_digests(&source(whole))
    });
    let size = size.min(MAX_SOURCE);
    let n = (size / BLOCK_SIZE) as usize;
    let mut d: Vec<[u8; 32]> = full.iter().take(n).copied().collect();
    let tail = source(size).slice(n * BLOCK_SIZE as usize..);
    d.extend(block_digests(&tail));
    hash_of_digests(&d)
}

/// The response targets run one input in this many through a real upload too.
pub const UPLOAD_ONE_IN: u64 = 32;

/// True for one input in [`UPLOAD_ONE_IN`]: FNV-1a of the whole input, so the share does
/// not drift with the corpus (a mutant is chosen afresh).
pub fn selected_for_upload(data: &[u8]) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h % UPLOAD_ONE_IN == 0
}

/// A virtual clock: monotonic `Instant`s from [`origin`] and a wall clock that moves
/// with it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Elapsed virtual time.
    pub elapsed: Duration,
}

impl Clock {
    /// A clock at [`start_wall`].
    pub fn new() -> Self {
        Self {
            elapsed: Duration::ZERO,
        }
    }
    /// Monotonic now.
    pub fn now(&self) -> Instant {
        origin() + self.elapsed
    }
    /// Wall now.
    pub fn wall(&self) -> SystemTime {
        start_wall() + self.elapsed
    }
    /// Moves forward by `d` (saturating at ~100 years).
    pub fn advance(&mut self, d: Duration) {
        self.elapsed = (self.elapsed + d.min(Duration::from_secs(3_153_600_000)))
            .min(Duration::from_secs(3_153_600_000));
    }
    /// Moves forward to `t`.
    pub fn advance_to(&mut self, t: Instant) {
        if let Some(d) = t.checked_duration_since(origin()) {
            if d > self.elapsed {
                self.elapsed = d.min(Duration::from_secs(3_153_600_000));
            }
        }
    }
}

/// Picks one of `items` (the first when the input ran out).
pub fn pick<T: Clone>(u: &mut Unstructured<'_>, items: &[T]) -> T {
    let i = u.choose_index(items.len()).unwrap_or(0);
    items[i].clone()
}

/// A short arbitrary string (at most `max` chars).
pub fn short_string(u: &mut Unstructured<'_>, max: usize) -> String {
    let s = <&str>::arbitrary(u).unwrap_or("");
    s.chars().take(max).collect()
}

/// What the generators know about the upload they answer.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// File size.
    pub size: u64,
    /// The byte range the request carries, if any.
    pub range: Option<(u64, u64)>,
    /// The source's QuickXorHash (base64).
    pub qxh: String,
    /// The source's SHA-256 (hex).
    pub sha: String,
    /// The source's Dropbox content hash.
    pub content_hash: String,
    /// A session id / upload URL the server handed out.
    pub session: String,
    /// Number of batch entries the request carries.
    pub entries: usize,
}

/// An interesting number: offsets near the file's edges, alignment units, extremes,
/// wrong types.
pub fn number(u: &mut Unstructured<'_>, ctx: &Ctx) -> Value {
    let (a, b) = ctx.range.unwrap_or((0, ctx.size));
    let choice = u.int_in_range(0u8..=17).unwrap_or(0);
    match choice {
        0 => json!(ctx.size),
        1 => json!(b),
        2 => json!(a),
        3 => json!(0),
        4 => json!(ctx.size.wrapping_add(1)),
        5 => json!(ctx.size.saturating_sub(1)),
        6 => json!(b.wrapping_add(1)),
        7 => json!(a.saturating_sub(1)),
        8 => json!(327_680u64 * u64::from(u.int_in_range(0u8..=8).unwrap_or(1))),
        9 => json!(4_194_304u64 * u64::from(u.int_in_range(0u8..=4).unwrap_or(1))),
        10 => json!(u64::MAX),
        11 => json!(-1),
        12 => json!(1.5),
        13 => json!(1e300),
        14 => json!(ctx.size.to_string()),
        15 => Value::Null,
        16 => json!(i64::MIN),
        _ => json!(u64::arbitrary(u).unwrap_or(7)),
    }
}

/// An RFC 3339 time, past or future, or garbage.
pub fn rfc3339(u: &mut Unstructured<'_>) -> Value {
    json!(pick(
        u,
        &[
            "2100-01-01T00:00:00Z",
            "2023-11-14T22:28:20.1234567Z",
            "2023-11-14T22:13:21+00:00",
            "2000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "2023-02-30T25:61:61Z",
            "garbage",
            "",
            "2023-11-14T22:13:20.5-08:00",
            "1970-01-01T00:00:00Z",
        ]
    ))
}

/// A `Retry-After` value.
pub fn retry_after(u: &mut Unstructured<'_>) -> String {
    let choice = u.int_in_range(0u8..=11).unwrap_or(0);
    match choice {
        0 => "1".into(),
        1 => "0".into(),
        2 => "315360000".into(), // ten years
        3 => "99999999999999999999999".into(),
        4 => "Sun, 06 Nov 1994 08:49:37 GMT".into(),
        5 => "Tue, 14 Nov 2023 22:15:00 GMT".into(),
        6 => "Fri, 31 Dec 9999 23:59:59 GMT".into(),
        7 => "60.0".into(),
        8 => "-5".into(),
        9 => "1e9".into(),
        10 => format!("{}", u.int_in_range(0u32..=4000).unwrap_or(3)),
        _ => short_string(u, 40),
    }
}

/// 0-4 headers: names from the ones the machines read, values shaped or arbitrary.
pub fn headers(u: &mut Unstructured<'_>, resp: &mut Response<Bytes>) {
    let n = u.int_in_range(0u8..=4).unwrap_or(0);
    for _ in 0..n {
        let name = pick(
            u,
            &[
                "retry-after",
                "content-type",
                "date",
                "location",
                "content-length",
                "www-authenticate",
                "request-id",
                "x-dropbox-request-id",
                "ratelimit-reset",
            ],
        );
        let value = match name {
            "retry-after" => retry_after(u),
            "content-type" => (pick(
                u,
                &[
                    "application/json",
                    "text/plain; charset=utf-8",
                    "application/json; charset=utf-8",
                    "text/html",
                    "application/grpc",
                ],
            ))
            .to_string(),
            "date" => (pick(
                u,
                &[
                    "Tue, 14 Nov 2023 22:13:20 GMT",
                    "Sun, 06 Nov 1994 08:49:37 GMT",
                    "Fri, 31 Dec 9999 23:59:59 GMT",
                    "junk",
                ],
            ))
            .to_string(),
            "content-length" => {
                (pick(u, &["10737418240", "0", "-1", "18446744073709551616"])).to_string()
            }
            _ => short_string(u, 64),
        };
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        // Sometimes twice (a duplicated header).
        resp.headers_mut().append(n, v);
    }
}

/// A status: mostly the ones the specs name, sometimes any valid code.
pub fn status(u: &mut Unstructured<'_>, likely: &[u16]) -> StatusCode {
    let all: &[u16] = &[
        200, 201, 202, 204, 400, 401, 403, 404, 409, 412, 413, 416, 422, 423, 429, 500, 502, 503,
        504, 507, 509, 302, 418,
    ];
    let code = match u.int_in_range(0u8..=9).unwrap_or(0) {
        0..=5 if !likely.is_empty() => likely[u.choose_index(likely.len()).unwrap_or(0)],
        6..=8 => all[u.choose_index(all.len()).unwrap_or(0)],
        _ => u.int_in_range(100u16..=999).unwrap_or(500),
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Builds a response.
pub fn response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

/// Arbitrary JSON (bounded depth).
pub fn any_json(u: &mut Unstructured<'_>, depth: u8) -> Value {
    let choice = u.int_in_range(0u8..=6).unwrap_or(0);
    match choice {
        0 => Value::Null,
        1 => json!(bool::arbitrary(u).unwrap_or(false)),
        2 => json!(i64::arbitrary(u).unwrap_or(0)),
        3 => json!(short_string(u, 32)),
        4 if depth > 0 => {
            let n = u.int_in_range(0u8..=3).unwrap_or(0);
            Value::Array((0..n).map(|_| any_json(u, depth - 1)).collect())
        }
        5 if depth > 0 => {
            let n = u.int_in_range(0u8..=3).unwrap_or(0);
            let mut m = Map::new();
            for _ in 0..n {
                m.insert(short_string(u, 16), any_json(u, depth - 1));
            }
            Value::Object(m)
        }
        _ => json!(
            f64::arbitrary(u)
                .ok()
                .filter(|f| f.is_finite())
                .unwrap_or(0.5)
        ),
    }
}

/// A body that is not shaped JSON: empty, raw bytes, arbitrary JSON, truncated JSON, a
/// huge number, deep nesting.
pub fn odd_body(u: &mut Unstructured<'_>) -> Bytes {
    match u.int_in_range(0u8..=6).unwrap_or(0) {
        0 => Bytes::new(),
        1 => Bytes::from(<Vec<u8>>::arbitrary(u).unwrap_or_default()),
        2 => Bytes::from(any_json(u, 3).to_string()),
        3 => Bytes::from_static(b"{\"nextExpectedRanges\": [\"0-\""),
        4 => Bytes::from("[".repeat(200)),
        5 => Bytes::from_static(b"{\"size\": 1e400, \"id\": \"x\"}"),
        _ => Bytes::from_static(b"<html><body>Bad Gateway</body></html>"),
    }
}

/// Serialises a JSON value, or an odd body for one case in eight.
pub fn body_of(u: &mut Unstructured<'_>, v: Value) -> Bytes {
    if u.ratio(1u8, 8).unwrap_or(false) {
        return odd_body(u);
    }
    Bytes::from(v.to_string())
}

/// True when `FUZZ_TRACE` is set: the machine targets print what they do.
pub fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

/// A literal response in an input (the seed format of the response targets):
///
/// ```text
/// @PHASE STATUS [N]
/// Header-Name: value
/// …
///
/// BODY
/// ```
///
/// `PHASE` names the request it answers (`create`, `fragment`, `status`, `commit`,
/// `metadata` for OneDrive; `start`, `append`, `finish`, `lookup`, `batch` for Dropbox);
/// `N` is the number of batch entries asked for.
#[derive(Debug)]
pub struct Literal {
    /// The phase.
    pub phase: String,
    /// The response.
    pub response: Response<Bytes>,
    /// `N`.
    pub n: usize,
}

impl Literal {
    /// Parses `data` when it starts with `@`.
    pub fn parse(data: &[u8]) -> Option<Literal> {
        let rest = data.strip_prefix(b"@")?;
        let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let first = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let mut words = first.split_whitespace();
        let phase = words.next().unwrap_or("").to_string();
        let status = words
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let n = words
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1usize)
            .min(16);
        let mut pos = (nl + 1).min(rest.len());
        let mut headers = Vec::new();
        loop {
            let line_end = rest[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| pos + i);
            let line = &rest[pos..line_end];
            pos = (line_end + 1).min(rest.len());
            if line.is_empty() || line_end >= rest.len() {
                break;
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = &line[..colon];
                let value = line[colon + 1..].trim_ascii();
                if let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    headers.push((n, v));
                }
            }
        }
        let body = Bytes::copy_from_slice(&rest[pos..]);
        let mut response = response(status, body);
        for (n, v) in headers {
            response.headers_mut().append(n, v);
        }
        Some(Literal { phase, response, n })
    }

    /// A copy of the response.
    pub fn response(&self) -> Response<Bytes> {
        let mut r = response(self.response.status(), self.response.body().clone());
        *r.headers_mut() = self.response.headers().clone();
        r
    }
}
