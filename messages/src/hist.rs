//! herd's latency histogram layout and a strict reader of its V2 bytes.
//!
//! Latency is recorded in microseconds into `Histogram::new(3)` (lowest value 1, 3 significant
//! digits, auto-resizing): 2,048 sub-buckets, so bucket index `i` stands for one value
//! ([`value_at_index`]) and every value has one index ([`index_of`]).
//!
//! The histogram bytes in a batch come off a broker anyone with credentials can publish to.
//! hdrhistogram's own deserializer trusts the header: it resizes its buffer to the payload length
//! the header declares (up to 4 GiB for a 50-byte input) and sizes the counts array after the
//! declared highest value. [`buckets`] never does either: it walks the run-length payload that is
//! actually present and admits only what herd's own recorder can produce.

/// The highest latency herd records, in µs: 2^36 − 1 µs, about 19 h 5 min.
///
/// The agent's recorder clamps every sample to it, so a real batch never carries more. No request
/// herd measures lasts that long: the native engine has a request timeout, the framework tools
/// have theirs, and a request still in flight when the run ends is not recorded at all. Without
/// a bound, a value of 2^63 µs passes decoding and fails only when the second is finalized.
pub const MAX_LATENCY_US: u64 = (1 << 36) - 1;

/// The bucket index of [`MAX_LATENCY_US`] (27,647): no bucket past it is accepted. A label has
/// at most this many + 1 buckets, since the indexes of a V2 payload only increase.
pub const MAX_BUCKET_INDEX: u32 = 27_647;

// Layout of Histogram::new(3): 2048 sub-buckets, half = 1024 (magnitude 10), unit 1.
const HALF_MAG: u32 = 10;
const HALF: u64 = 1 << HALF_MAG;
const SUB_MASK: u64 = 2 * HALF - 1;

/// The value a bucket index stands for in herd's histogram layout (`None` past u64).
pub fn value_at_index(index: u32) -> Option<u64> {
    let index = u64::from(index);
    let bucket = (index >> HALF_MAG) as i64 - 1;
    let mut sub = (index & (HALF - 1)) + HALF;
    let shift = if bucket < 0 {
        sub -= HALF;
        0
    } else {
        bucket as u32
    };
    if shift >= 53 {
        return None;
    }
    Some(sub << shift)
}

/// The bucket index of `value` in herd's histogram layout (the inverse of [`value_at_index`]
/// up to the bucket's resolution).
pub fn index_of(value: u64) -> u32 {
    let pow2ceiling = 64 - (value | SUB_MASK).leading_zeros();
    let bucket = pow2ceiling - (HALF_MAG + 1);
    let sub = value >> bucket;
    (((u64::from(bucket) + 1) << HALF_MAG) + sub - HALF) as u32
}

/// A latency as the recorder stores it: at least 1 µs (the histogram's lowest value), at most
/// [`MAX_LATENCY_US`].
pub fn clamp_latency(us: u64) -> u64 {
    us.clamp(1, MAX_LATENCY_US)
}

/// What is wrong with a latency histogram's bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistError {
    #[error("{len} bytes is shorter than the 40-byte V2 header")]
    TooShort { len: usize },
    #[error("cookie {cookie:#010x} is not an uncompressed HdrHistogram V2 cookie")]
    NotV2 { cookie: u32 },
    #[error(
        "layout (normalizing offset {offset}, {digits} significant digits, lowest value {lowest}, \
         conversion ratio {ratio}) is not herd's (0, 3, 1, 1.0)"
    )]
    Layout {
        offset: u32,
        digits: u32,
        lowest: u64,
        ratio: f64,
    },
    #[error("the header declares {declared} payload bytes, {present} are present")]
    PayloadLength { declared: u32, present: usize },
    #[error("the payload ends inside a number at byte {at}")]
    Truncated { at: usize },
    #[error(
        "bucket index {index} is past {MAX_BUCKET_INDEX}: a latency above {MAX_LATENCY_US} µs, \
         which herd never records"
    )]
    IndexTooHigh { index: u64 },
    #[error("bucket counts add up to more than u64 holds")]
    CountOverflow,
}

/// A histogram's non-zero buckets as (index, count), indexes strictly increasing and at most
/// [`MAX_BUCKET_INDEX`], and the sum of their counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    pub buckets: Vec<(u32, u64)>,
    pub count: u64,
}

/// hdrhistogram's V2 cookie: base 0x1c849303 with the word size (0x10) in bits 4-7.
const V2_COOKIE_BASE: u32 = 0x1c84_9303;
const HEADER: usize = 40;

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// LEB128 with hdrhistogram's 9-byte variant (the 9th byte carries 8 bits).
fn varint(b: &[u8], at: &mut usize) -> Result<u64, HistError> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*at).ok_or(HistError::Truncated { at: *at })?;
        *at += 1;
        if i == 8 {
            return Ok(v | (u64::from(byte) << 56));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Ok(v)
}

/// Reads herd's V2 histogram bytes (as `LabelStats::to_wire` writes them) into buckets. Empty
/// bytes are an empty histogram. Allocates at most one (index, count) pair per payload byte
/// present, and never more than [`MAX_BUCKET_INDEX`] + 1 of them.
pub fn buckets(b: &[u8]) -> Result<Buckets, HistError> {
    if b.is_empty() {
        return Ok(Buckets::default());
    }
    if b.len() < HEADER {
        return Err(HistError::TooShort { len: b.len() });
    }
    // The header is 40 bytes and `b` holds at least that many: these reads are in bounds.
    let cookie = be_u32(b, 0);
    if cookie & !0xf0 != V2_COOKIE_BASE {
        return Err(HistError::NotV2 { cookie });
    }
    let declared = be_u32(b, 4);
    let (offset, digits, lowest) = (be_u32(b, 8), be_u32(b, 12), be_u64(b, 16));
    let ratio = f64::from_bits(be_u64(b, 32));
    if offset != 0 || digits != 3 || lowest != 1 || ratio != 1.0 {
        return Err(HistError::Layout {
            offset,
            digits,
            lowest,
            ratio,
        });
    }
    let payload = &b[HEADER..];
    if usize::try_from(declared).ok() != Some(payload.len()) {
        return Err(HistError::PayloadLength {
            declared,
            present: payload.len(),
        });
    }
    let cap = payload.len().min(MAX_BUCKET_INDEX as usize + 1) / 2;
    let mut out = Buckets {
        buckets: Vec::with_capacity(cap),
        count: 0,
    };
    let (mut at, mut index) = (0usize, 0u64);
    while at < payload.len() {
        let zz = varint(payload, &mut at)?;
        let n = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        if n < 0 {
            // A run of empty buckets; `index` stays far below u64::MAX (each step adds < 2^63).
            index = index.saturating_add(n.unsigned_abs());
            continue;
        }
        if n > 0 {
            if index > u64::from(MAX_BUCKET_INDEX) {
                return Err(HistError::IndexTooHigh { index });
            }
            let n = n as u64;
            out.count = out.count.checked_add(n).ok_or(HistError::CountOverflow)?;
            out.buckets.push((index as u32, n));
        }
        index = index.saturating_add(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_index_is_that_of_the_highest_latency() {
        assert_eq!(index_of(MAX_LATENCY_US), MAX_BUCKET_INDEX);
        assert_eq!(index_of(MAX_LATENCY_US + 1), MAX_BUCKET_INDEX + 1);
        let top = value_at_index(MAX_BUCKET_INDEX).expect("in range");
        assert!(top <= MAX_LATENCY_US && index_of(top) == MAX_BUCKET_INDEX);
    }

    #[test]
    fn latencies_are_clamped_into_the_recorded_range() {
        assert_eq!(clamp_latency(0), 1);
        assert_eq!(clamp_latency(1_234), 1_234);
        assert_eq!(clamp_latency(u64::MAX), MAX_LATENCY_US);
    }
}
