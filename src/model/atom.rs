//! Interned, reference-counted strings for the values that repeat across a cluster.
//!
//! Namespaces, kind names, label keys and values, image names and the names one object uses to
//! refer to another repeat thousands of times in a large cluster. An [`Atom`] stores each distinct
//! string once, process-wide, and costs 8 bytes per use. Equality and hashing compare pointers,
//! which makes the label and selector indexes cheap; ordering compares the text, so sorted output
//! is alphabetical. A string is freed when its last `Atom` is dropped (the `internment` crate's
//! `ArcIntern`), so churn (pod-template hashes, job names) does not grow memory forever; each
//! thread's lookup cache keeps at most 16 K recently used atoms alive on top of that.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use internment::ArcIntern;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Atoms a thread keeps at hand; see [`Atom::new`].
const CACHE_CAPACITY: usize = 16 * 1024;

/// Longer strings are rarely repeated (generated names, long messages) and skip the cache.
const CACHE_MAX_LEN: usize = 64;

thread_local! {
    static CACHE: RefCell<FxHashMap<Box<str>, Atom>> = RefCell::new(FxHashMap::default());
}

/// An interned string: 8 bytes, pointer equality, text ordering.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(ArcIntern<String>);

impl Atom {
    /// Interns `s`, returning the shared copy.
    ///
    /// A small per-thread cache answers the strings a thread sees again and again (namespaces,
    /// label keys, common values) without the interner's shared lock and without the temporary
    /// `String` that `ArcIntern::from_ref` allocates even when the string is already interned.
    /// The cache holds at most 16 K atoms alive (`CACHE_CAPACITY`), and is emptied when full.
    pub fn new(s: &str) -> Self {
        if s.is_empty() {
            return Self::empty();
        }
        if s.len() > CACHE_MAX_LEN {
            return Atom(ArcIntern::from_ref(s));
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(a) = cache.get(s) {
                return a.clone();
            }
            let atom = Atom(ArcIntern::from_ref(s));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(s.into(), atom.clone());
            atom
        })
    }

    /// The empty string, which stands for "cluster-scoped" in namespace fields. Cached because
    /// it is by far the most common atom.
    pub fn empty() -> Self {
        static EMPTY: OnceLock<Atom> = OnceLock::new();
        EMPTY.get_or_init(|| Atom(ArcIntern::from_ref(""))).clone()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Default for Atom {
    fn default() -> Self {
        Self::empty()
    }
}

impl Deref for Atom {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Atom {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Atom::new(s)
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Atom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, |s| Ok(Atom::new(s)))
    }
}

/// Deserialises a string and converts it with `f`, without allocating a `String` when the
/// format can lend the text (MessagePack and JSON from a slice can): decoding a snapshot turns
/// tens of millions of strings into atoms, uids and kinds.
pub(crate) fn from_str_with<'de, D, T>(
    d: D,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> serde::de::Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_is_one_pointer_and_orders_by_text() {
        let a = Atom::new("app");
        let b = Atom::new(&String::from("app"));
        assert_eq!(a, b);
        assert!(Atom::new("alpha") < Atom::new("beta"));
        assert_eq!(Atom::new(""), Atom::empty());
        assert_eq!(&*a, "app");
    }
}
