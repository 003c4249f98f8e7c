//! Query-string parsing with precise errors: every parameter a handler accepts is named, values
//! are validated, repeated or comma-separated lists are understood, and (in v2) a parameter the
//! endpoint does not know is an error rather than silently ignored.

use super::error::ApiError;

/// The parsed query string of one request.
#[derive(Debug, Default)]
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (the part after `?`).
    pub(super) fn parse(query: Option<&str>) -> Params {
        Params {
            pairs: form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Rejects any parameter outside `allowed` (v2 is strict so that a typo is reported, not
    /// ignored).
    pub(super) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) if allowed.is_empty() => Err(ApiError::bad(format!(
                "unknown parameter {k:?}: this endpoint takes none"
            ))),
            Some((k, _)) => Err(ApiError::bad(format!(
                "unknown parameter {k:?}; allowed: {}",
                allowed.join(", ")
            ))),
        }
    }

    /// A parameter given at most once. An empty value counts as absent.
    pub(super) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad(format!(
                "parameter {name:?} is given more than once"
            )));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// A list: the parameter repeated and/or comma-separated; empty items are dropped.
    pub(super) fn list(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A number in `range`, or `default` when absent.
    pub(super) fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> Result<u32, ApiError> {
        match self.one(name)? {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "parameter {name:?} must be an integer from {} to {}, not {v:?}",
                        range.start(),
                        range.end()
                    ))
                }),
        }
    }
}

/// Whether `s` is a valid namespace name (a DNS-1123 label: lower-case alphanumerics and `-`,
/// starting and ending with an alphanumeric, at most 63 characters).
pub(super) fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A namespace parameter value, checked.
pub(super) fn namespace(value: &str) -> Result<crate::model::Atom, ApiError> {
    if is_namespace_name(value) {
        Ok(crate::model::Atom::new(value))
    } else {
        Err(ApiError::bad(format!(
            "invalid namespace {value:?}: lower-case letters, digits and '-', at most 63 characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_singles_and_numbers() {
        let p = Params::parse(Some("kind=Pod,Service&kind=Node&depth=3&q=&x=1&x=2"));
        assert_eq!(p.list("kind"), ["Pod", "Service", "Node"]);
        assert_eq!(p.one("q").unwrap(), None);
        assert_eq!(p.number("depth", 1..=10, 1).unwrap(), 3);
        assert_eq!(p.number("limit", 1..=10, 7).unwrap(), 7);
        assert!(p.one("x").is_err());
        assert!(p.only(&["kind", "depth", "q", "x"]).is_ok());
        let err = p.only(&["kind"]).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(m) if m.contains("\"depth\"")));
        let p = Params::parse(Some("depth=0&n=abc&m=99999999999"));
        assert!(p.number("depth", 1..=10, 1).is_err());
        assert!(p.number("n", 1..=10, 1).is_err());
        assert!(p.number("m", 1..=10, 1).is_err());
        assert!(
            Params::parse(Some("a=%ZZ")).one("a").is_ok(),
            "bad escapes are kept literally, not a panic"
        );
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert!(is_namespace_name("kube-system"));
        assert!(!is_namespace_name("Kube"));
        assert!(!is_namespace_name("-a"));
        assert!(!is_namespace_name(&"a".repeat(64)));
    }
}
