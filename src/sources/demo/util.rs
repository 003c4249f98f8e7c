//! Small pure helpers shared by the demo generator: RFC 3339 formatting, base64, cheap
//! deterministic hashing for names and ids, and uid derivation.

use uuid::Uuid;

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Formats unix seconds as an RFC 3339 UTC timestamp in the API server's form
/// (`2026-01-01T00:00:00Z`).
pub(super) fn rfc3339(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days algorithm, so no date crate is needed.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Written by hand: this runs several times per object and format! is comparatively slow.
    let mut out = String::with_capacity(20);
    let mut push = |value: i64, width: u32, sep: char| {
        for i in (0..width).rev() {
            let digit = (value / 10_i64.pow(i)).rem_euclid(10);
            out.push(char::from(b'0' + digit as u8));
        }
        out.push(sep);
    };
    push(year, 4, '-');
    push(month, 2, '-');
    push(day, 2, 'T');
    push(secs / 3600, 2, ':');
    push(secs / 60 % 60, 2, ':');
    push(secs % 60, 2, 'Z');
    out
}

/// Standard base64 with padding, as Kubernetes stores Secret data.
pub(super) fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// FNV-1a: a cheap, stable string hash used to derive realistic-looking but deterministic
/// details (digests, suffixes) without touching the random streams.
pub(super) fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The splitmix64 finaliser, used to spread a seed into well-mixed bits.
pub(super) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` lowercase hex digits derived from `seed` (container ids, image digests, machine ids).
pub(super) fn hex(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut state = seed;
    while out.len() < len {
        state = mix(state);
        for shift in (0..64).step_by(4) {
            if out.len() == len {
                break;
            }
            out.push(char::from_digit(((state >> shift) & 15) as u32, 16).unwrap_or('0'));
        }
    }
    out
}

/// A `len`-character generated-name suffix (like the `x7k2q` of a Pod name) derived from `seed`.
pub(super) fn suffix(seed: u64, len: usize) -> String {
    let mut state = mix(seed);
    (0..len)
        .map(|_| {
            let c = SUFFIX_ALPHABET[(state % SUFFIX_ALPHABET.len() as u64) as usize];
            state /= SUFFIX_ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

/// The uid of an object: a v5 uuid of its identity and incarnation under the cluster's root, so
/// a deleted-and-recreated object (same name, new incarnation) gets a new uid.
pub(super) fn uid(root: &Uuid, kind: &str, namespace: &str, name: &str, inc: u32) -> String {
    let mut key = String::with_capacity(kind.len() + namespace.len() + name.len() + 8);
    for part in [kind, "/", namespace, "/", name, "/"] {
        key.push_str(part);
    }
    key.push_str(itoa(u64::from(inc)).as_str());
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Uuid::new_v5(root, key.as_bytes())
        .hyphenated()
        .encode_lower(&mut buf)
        .to_string()
}

/// Decimal rendering without the formatting machinery (used in hot paths).
pub(super) fn itoa(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| char::from(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(itoa(0), "0");
        assert_eq!(itoa(1_234_567), "1234567");
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn derives_names() {
        assert_eq!(hex(7, 64).len(), 64);
        assert_eq!(suffix(7, 5), suffix(7, 5));
        assert_ne!(suffix(7, 5), suffix(8, 5));
    }
}
