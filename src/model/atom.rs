//! Interned, reference-counted strings for the values that repeat across a cluster.
//!
//! Namespaces, kind names, label keys and values, image names and the names one object uses to
//! refer to another repeat thousands of times in a large cluster. An [`Atom`] stores each distinct
//! string once, process-wide, and costs 8 bytes per use. Equality and hashing compare pointers,
//! which makes the label and selector indexes cheap; ordering compares the text, so sorted output
//! is alphabetical. A string is freed when its last `Atom` is dropped (the `internment` crate's
//! `ArcIntern`), so churn (pod-template hashes, job names) does not grow memory forever.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use internment::ArcIntern;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An interned string: 8 bytes, pointer equality, text ordering.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(ArcIntern<String>);

impl Atom {
    /// Interns `s`, returning the shared copy.
    pub fn new(s: &str) -> Self {
        if s.is_empty() {
            return Self::empty();
        }
        Atom(ArcIntern::from_ref(s))
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
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Atom::new(&s))
    }
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
