//! Object identities (uids) and timestamps.
//!
//! Kubernetes uids are UUIDs; they are kept as 16 bytes. Anything else a source calls a uid is
//! kept as text. Objects without a uid (offline manifests) and the synthetic Helm release nodes get
//! a name-based UUID (version 5), so the same object always gets the same uid.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroI64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The uid of an object.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Uid {
    /// A canonical (lower-case, hyphenated) UUID.
    Uuid([u8; 16]),
    /// Any other text.
    Text(Box<str>),
}

/// Namespace UUID for name-based uids of objects that have none.
const SYNTHETIC_NAMESPACE: Uuid = Uuid::from_u128(0x5c0f_7a2e_41b8_4c3e_9d6a_2f51_a3b7_e901);

impl Uid {
    /// Parses a uid as given by a source. Only the canonical UUID form is stored as bytes, so that
    /// printing the uid gives back exactly the source's text.
    pub fn parse(s: &str) -> Uid {
        if s.len() == 36
            && !s.bytes().any(|b| b.is_ascii_uppercase())
            && let Ok(u) = Uuid::try_parse(s)
        {
            return Uid::Uuid(*u.as_bytes());
        }
        Uid::Text(s.into())
    }

    /// A deterministic uid derived from `parts` (joined with `/`).
    pub fn synthetic(parts: &[&str]) -> Uid {
        let key = parts.join("/");
        Uid::Uuid(*Uuid::new_v5(&SYNTHETIC_NAMESPACE, key.as_bytes()).as_bytes())
    }

    /// Hands the uid's text form to `f`, without allocating for UUIDs.
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Uid::Uuid(b) => {
                let mut buf = Uuid::encode_buffer();
                f(Uuid::from_bytes(*b).hyphenated().encode_lower(&mut buf))
            }
            Uid::Text(t) => f(t),
        }
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|s| f.write_str(s))
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Ord for Uid {
    /// Text order. UUID bytes compare like their lower-case hex text, so the common case needs no
    /// formatting.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Uid::Uuid(a), Uid::Uuid(b)) => u128::from_be_bytes(*a).cmp(&u128::from_be_bytes(*b)),
            (Uid::Text(a), Uid::Text(b)) => a.cmp(b),
            _ => self.with_str(|a| other.with_str(|b| a.cmp(b))),
        }
    }
}

impl PartialOrd for Uid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Uid {
    /// The text in human-readable formats (JSON); in binary ones (the persistence format), a
    /// UUID is its 16 bytes: no formatting to write, no parsing to read.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Uid::Uuid(b) if !s.is_human_readable() => s.serialize_bytes(b),
            _ => self.with_str(|t| s.serialize_str(t)),
        }
    }
}

impl<'de> Deserialize<'de> for Uid {
    /// Either form [`Serialize`] writes, in any format: text (data written before the binary
    /// form) or 16 bytes.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Uid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a uid: text or 16 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Uid, E> {
                Ok(Uid::parse(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Uid, E> {
                let bytes =
                    <[u8; 16]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Uid::Uuid(bytes))
            }
        }
        d.deserialize_str(V)
    }
}

/// A point in time, whole seconds since the Unix epoch (Kubernetes timestamps have second
/// precision). Zero is not a valid value, which lets `Option<Time>` take 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Time(NonZeroI64);

impl Time {
    /// From seconds since the epoch; `None` for the epoch itself, which no real object has.
    pub fn from_unix(secs: i64) -> Option<Time> {
        NonZeroI64::new(secs).map(Time)
    }

    /// Seconds since the epoch.
    pub fn unix(self) -> i64 {
        self.0.get()
    }

    /// Parses an RFC 3339 timestamp as Kubernetes writes it (`2024-05-01T12:00:00Z`, optionally
    /// with fractional seconds or a numeric offset).
    pub fn parse_rfc3339(s: &str) -> Option<Time> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 {
            return None;
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            rest = &frac[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let (h, m) = rest[1..].split_once(':')?;
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
            }
        };
        let days = days_from_civil(year, month, day);
        Time::from_unix(days * 86_400 + hour * 3600 + min * 60 + sec.min(60) - offset)
    }

    /// RFC 3339 in UTC with second precision, as Kubernetes prints it.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Time {
    /// RFC 3339 in UTC with second precision (`2026-01-01T00:00:00Z`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix();
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl Time {
    /// The RFC 3339 text in a stack buffer, for years 0 to 9999 (every real timestamp).
    fn rfc3339(&self) -> Option<[u8; 20]> {
        let secs = self.unix();
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut b = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, v: i64, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, y, 4);
        put(5, m, 2);
        put(8, d, 2);
        put(11, rem / 3600, 2);
        put(14, (rem % 3600) / 60, 2);
        put(17, rem % 60, 2);
        Some(b)
    }
}

impl Serialize for Time {
    /// RFC 3339 text in human-readable formats (JSON), formatted on the stack; in binary ones
    /// (the persistence format), seconds since the epoch.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_i64(self.unix());
        }
        match self.rfc3339() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    /// Either form [`Serialize`] writes, in any format: RFC 3339 text (data written before the
    /// binary form, and JSON) or seconds since the epoch.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or seconds since the epoch")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Time, E> {
                Time::parse_rfc3339(v).ok_or_else(|| E::custom("invalid RFC 3339 time"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Time, E> {
                Time::from_unix(v).ok_or_else(|| E::custom("the epoch itself is not a time"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Time, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("a time past year 292 billion"))?;
                self.visit_i64(v)
            }
        }
        d.deserialize_str(V)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Human age as the v1 contract prints it: "45s", "12m", "3h", "20d" (the largest whole unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Age(pub i64);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.max(0);
        match s {
            0..60 => write!(f, "{s}s"),
            60..3600 => write!(f, "{}m", s / 60),
            3600..86_400 => write!(f, "{}h", s / 3600),
            _ => write!(f, "{}d", s / 86_400),
        }
    }
}

impl Serialize for Age {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// [`Age`] as a string.
pub fn format_age(seconds: i64) -> String {
    Age(seconds).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_and_other_text_is_kept() {
        let s = "3f2c1a9e-8b7d-4c6e-a5f4-0123456789ab";
        let uid = Uid::parse(s);
        assert!(matches!(uid, Uid::Uuid(_)));
        assert_eq!(uid.to_string(), s);
        let upper = Uid::parse("3F2C1A9E-8B7D-4C6E-A5F4-0123456789AB");
        assert_eq!(upper.to_string(), "3F2C1A9E-8B7D-4C6E-A5F4-0123456789AB");
        assert_eq!(Uid::parse("abc").to_string(), "abc");
        assert_eq!(Uid::synthetic(&["a", "b"]), Uid::synthetic(&["a", "b"]));
        assert_ne!(Uid::synthetic(&["a", "b"]), Uid::synthetic(&["a/b", ""]));
    }

    #[test]
    fn uid_order_is_text_order() {
        let mut uids: Vec<Uid> = [
            "ffffffff-0000-4000-8000-000000000000",
            "zzz",
            "00000000-0000-4000-8000-000000000000",
            "abc",
        ]
        .iter()
        .map(|s| Uid::parse(s))
        .collect();
        uids.sort();
        let texts: Vec<String> = uids.iter().map(Uid::to_string).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn rfc3339_round_trips() {
        for s in [
            "2026-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2024-02-29T12:30:05Z",
        ] {
            assert_eq!(Time::parse_rfc3339(s).unwrap().to_rfc3339(), s);
        }
        assert_eq!(
            Time::parse_rfc3339("2026-01-01T00:00:00Z").unwrap().unix(),
            1_767_225_600
        );
        assert_eq!(
            Time::parse_rfc3339("2026-01-01T02:00:00.123+02:00")
                .unwrap()
                .unix(),
            1_767_225_600
        );
        assert!(Time::parse_rfc3339("yesterday").is_none());
        assert!(Time::parse_rfc3339("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn serialised_times_are_the_display_text() {
        // Every few hours over four centuries, both sides of 1970, leap days included.
        let mut t = -2_208_988_800i64; // 1900-01-01
        while t < 10_000_000_000 {
            if let Some(time) = Time::from_unix(t) {
                let json = serde_json::to_string(&time).unwrap();
                assert_eq!(json, format!("\"{time}\""));
                assert_eq!(serde_json::from_str::<Time>(&json).unwrap(), time);
            }
            t += 9_999 * 3;
        }
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(format_age(45), "45s");
        assert_eq!(format_age(12 * 60 + 5), "12m");
        assert_eq!(format_age(3 * 3600), "3h");
        assert_eq!(format_age(20 * 86_400 + 5), "20d");
        assert_eq!(format_age(-5), "0s");
    }
}
