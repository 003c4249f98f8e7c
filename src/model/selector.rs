//! Labels and label selectors: kubectl's selector syntax, `LabelSelector` objects, matching, and
//! the "anchor" a selector is indexed under.
//!
//! The semantics are Kubernetes' (`k8s.io/apimachinery/pkg/labels`) and kube-core's
//! `Expression::matches`, which the tests use as the reference. We keep our own type because the
//! graph matches selectors on its hot path against interned label slices (kube-core matches only a
//! `BTreeMap<String, String>`, which would cost an allocation per candidate) and indexes a selector
//! under one of its requirements, which needs the expressions (kube-core keeps them private).

use std::fmt;

use serde_json::Value;
use smallvec::SmallVec;
use thiserror::Error;

use super::Atom;

/// An object's labels, sorted by key, keys unique.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(Atom, Atom)]>);

impl Labels {
    /// From key/value pairs in any order; a repeated key keeps its last value.
    pub fn from_pairs(mut pairs: Vec<(Atom, Atom)>) -> Labels {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = later.1.clone();
                true
            } else {
                false
            }
        });
        Labels(pairs.into_boxed_slice())
    }

    /// The value of `key`, comparing interned pointers.
    pub fn get(&self, key: &Atom) -> Option<&Atom> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key` given as text.
    pub fn get_str(&self, key: &str) -> Option<&Atom> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &(Atom, Atom)> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label keys to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Labels, A::Error> {
                // Straight into the sorted slice: stored labels are already sorted, which the
                // sort in `from_pairs` checks in one pass.
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(256));
                while let Some(pair) = map.next_entry::<Atom, Atom>()? {
                    pairs.push(pair);
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `key=value`: the key is present with this value.
    Eq(Atom, Atom),
    /// `key!=value`: the key is absent or has another value.
    NotEq(Atom, Atom),
    /// `key in (a,b)`: the key is present with one of the values.
    In(Atom, Box<[Atom]>),
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn(Atom, Box<[Atom]>),
    /// `key`: the key is present.
    Exists(Atom),
    /// `!key`: the key is absent.
    NotExists(Atom),
}

impl Expr {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Expr::Eq(k, v) => labels.get(k) == Some(v),
            Expr::NotEq(k, v) => labels.get(k) != Some(v),
            Expr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Expr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Expr::Exists(k) => labels.get(k).is_some(),
            Expr::NotExists(k) => labels.get(k).is_none(),
        }
    }
}

/// A label selector: the conjunction of its requirements. No requirement selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector(Box<[Expr]>);

/// Where a selector is indexed, so that a Pod finds the selectors that may select it from its own
/// labels instead of trying every selector of its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// Only objects carrying `key=value` for one of these pairs can match.
    Pairs(Atom, SmallVec<[Atom; 1]>),
    /// Only objects carrying the key can match.
    Key(Atom),
    /// Any object may match (empty selector, or only negative requirements).
    All,
}

/// A selector that could not be parsed or converted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid label selector {input:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Selector {
    /// From requirements.
    pub fn new(exprs: Vec<Expr>) -> Selector {
        Selector(exprs.into_boxed_slice())
    }

    /// From the equality map of a Service's `spec.selector` (or `matchLabels`).
    pub fn from_map(map: &serde_json::Map<String, Value>) -> Result<Selector, String> {
        let mut exprs = Vec::with_capacity(map.len());
        for (k, v) in map {
            let v = v
                .as_str()
                .ok_or_else(|| format!("value of {k:?} is not a string"))?;
            exprs.push(Expr::Eq(Atom::new(k), Atom::new(v)));
        }
        exprs.sort_by(|a, b| expr_key(a).cmp(expr_key(b)));
        Ok(Selector::new(exprs))
    }

    /// From a `LabelSelector` object (`matchLabels` and `matchExpressions`).
    pub fn from_label_selector(value: &Value) -> Result<Selector, String> {
        let obj = value.as_object().ok_or("selector is not an object")?;
        let mut exprs = match obj.get("matchLabels") {
            Some(Value::Object(map)) => Selector::from_map(map)?.0.into_vec(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err("matchLabels is not an object".into()),
        };
        match obj.get("matchExpressions") {
            Some(Value::Array(reqs)) => {
                for req in reqs {
                    exprs.push(requirement(req)?);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err("matchExpressions is not a list".into()),
        }
        Ok(Selector::new(exprs))
    }

    /// Parses kubectl's selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
    /// `!a`, joined by commas. Keys and values must be valid label keys and values.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        Parser::new(input).parse().map_err(|reason| SelectorError {
            input: input.to_string(),
            reason,
        })
    }

    /// Whether this selector has no requirement (and so selects everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requirements.
    pub fn exprs(&self) -> &[Expr] {
        &self.0
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|e| e.matches(labels))
    }

    /// The most selective index entry for this selector: an equality, else a set membership, else
    /// a key that must exist.
    pub fn anchor(&self) -> Anchor {
        let mut best = Anchor::All;
        for e in self.0.iter() {
            match e {
                Expr::Eq(k, v) => {
                    return Anchor::Pairs(k.clone(), SmallVec::from_elem(v.clone(), 1));
                }
                Expr::In(k, vs) if !matches!(best, Anchor::Pairs(..)) => {
                    best = Anchor::Pairs(k.clone(), vs.iter().cloned().collect());
                }
                Expr::Exists(k) if matches!(best, Anchor::All) => best = Anchor::Key(k.clone()),
                _ => {}
            }
        }
        best
    }
}

fn expr_key(e: &Expr) -> &str {
    match e {
        Expr::Eq(k, _)
        | Expr::NotEq(k, _)
        | Expr::In(k, _)
        | Expr::NotIn(k, _)
        | Expr::Exists(k)
        | Expr::NotExists(k) => k,
    }
}

fn requirement(req: &Value) -> Result<Expr, String> {
    let key = req
        .get("key")
        .and_then(Value::as_str)
        .ok_or("matchExpressions entry without a key")?;
    let op = req
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("matchExpressions entry without an operator")?;
    let values = || -> Result<Box<[Atom]>, String> {
        let vs = req
            .get("values")
            .and_then(Value::as_array)
            .filter(|vs| !vs.is_empty())
            .ok_or_else(|| format!("operator {op} needs values"))?;
        vs.iter()
            .map(|v| {
                v.as_str()
                    .map(Atom::new)
                    .ok_or("value is not a string".to_string())
            })
            .collect()
    };
    let key = Atom::new(key);
    Ok(match op {
        "In" => Expr::In(key, values()?),
        "NotIn" => Expr::NotIn(key, values()?),
        "Exists" => Expr::Exists(key),
        "DoesNotExist" => Expr::NotExists(key),
        other => return Err(format!("unknown operator {other:?}")),
    })
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |vs: &[Atom]| vs.iter().map(Atom::as_str).collect::<Vec<_>>().join(",");
        match self {
            Expr::Eq(k, v) => write!(f, "{k}={v}"),
            Expr::NotEq(k, v) => write!(f, "{k}!={v}"),
            Expr::In(k, vs) => write!(f, "{k} in ({})", join(vs)),
            Expr::NotIn(k, vs) => write!(f, "{k} notin ({})", join(vs)),
            Expr::Exists(k) => write!(f, "{k}"),
            Expr::NotExists(k) => write!(f, "!{k}"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Ident(&'a str),
    Not,
    Eq,
    NotEq,
    Open,
    Close,
    Comma,
}

/// A recursive-descent parser over kubectl's selector grammar.
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    input: &'a str,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            tokens: Vec::new(),
            pos: 0,
            input,
        }
    }

    fn lex(&mut self) -> Result<(), String> {
        let s = self.input;
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let token = match c {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    i += 1;
                    continue;
                }
                b',' => Token::Comma,
                b'(' => Token::Open,
                b')' => Token::Close,
                b'!' if bytes.get(i + 1) == Some(&b'=') => {
                    i += 1;
                    Token::NotEq
                }
                b'!' => Token::Not,
                b'=' if bytes.get(i + 1) == Some(&b'=') => {
                    i += 1;
                    Token::Eq
                }
                b'=' => Token::Eq,
                b'<' | b'>' => {
                    return Err("the operators < and > are not supported in label selectors".into());
                }
                _ => {
                    let start = i;
                    while i < bytes.len()
                        && !matches!(
                            bytes[i],
                            b' ' | b'\t'
                                | b'\n'
                                | b'\r'
                                | b','
                                | b'('
                                | b')'
                                | b'!'
                                | b'='
                                | b'<'
                                | b'>'
                        )
                    {
                        i += 1;
                    }
                    self.tokens.push(Token::Ident(&s[start..i]));
                    continue;
                }
            };
            self.tokens.push(token);
            i += 1;
        }
        Ok(())
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn parse(mut self) -> Result<Selector, String> {
        self.lex()?;
        let mut exprs = Vec::new();
        if self.tokens.is_empty() {
            return Ok(Selector::default());
        }
        loop {
            exprs.push(self.requirement()?);
            match self.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(t) => return Err(format!("expected ',' or end of input, found {}", show(&t))),
            }
        }
        Ok(Selector::new(exprs))
    }

    fn requirement(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            let key = self.key()?;
            return Ok(Expr::NotExists(key));
        }
        let key = self.key()?;
        match self.peek() {
            None | Some(Token::Comma) => Ok(Expr::Exists(key)),
            Some(Token::Eq) => {
                self.pos += 1;
                Ok(Expr::Eq(key, self.value()?))
            }
            Some(Token::NotEq) => {
                self.pos += 1;
                Ok(Expr::NotEq(key, self.value()?))
            }
            Some(Token::Ident("in")) => {
                self.pos += 1;
                Ok(Expr::In(key, self.set()?))
            }
            Some(Token::Ident("notin")) => {
                self.pos += 1;
                Ok(Expr::NotIn(key, self.set()?))
            }
            Some(t) => Err(format!(
                "expected '=', '!=', 'in' or 'notin' after key {key:?}, found {}",
                show(t)
            )),
        }
    }

    fn key(&mut self) -> Result<Atom, String> {
        match self.next() {
            Some(Token::Ident(k)) => {
                validate_key(k)?;
                Ok(Atom::new(k))
            }
            Some(t) => Err(format!("expected a label key, found {}", show(&t))),
            None => Err("expected a label key, found end of input".into()),
        }
    }

    /// A value after `=`/`!=`; the empty value is allowed (`a=`).
    fn value(&mut self) -> Result<Atom, String> {
        match self.peek() {
            Some(Token::Ident(v)) => {
                let v = *v;
                self.pos += 1;
                validate_value(v)?;
                Ok(Atom::new(v))
            }
            None | Some(Token::Comma) => Ok(Atom::empty()),
            Some(t) => Err(format!("expected a label value, found {}", show(t))),
        }
    }

    fn set(&mut self) -> Result<Box<[Atom]>, String> {
        if self.next() != Some(Token::Open) {
            return Err("expected '(' after 'in' or 'notin'".into());
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Ident(v)) => {
                    validate_value(v)?;
                    values.push(Atom::new(v));
                }
                Some(t) => return Err(format!("expected a value in the set, found {}", show(&t))),
                None => return Err("unclosed '('".into()),
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => break,
                Some(t) => {
                    return Err(format!(
                        "expected ',' or ')' in the set, found {}",
                        show(&t)
                    ));
                }
                None => return Err("unclosed '('".into()),
            }
        }
        values.sort();
        values.dedup();
        Ok(values.into_boxed_slice())
    }
}

fn show(t: &Token<'_>) -> String {
    match t {
        Token::Ident(s) => format!("{s:?}"),
        Token::Not => "'!'".into(),
        Token::Eq => "'='".into(),
        Token::NotEq => "'!='".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Comma => "','".into(),
    }
}

/// A label name or value segment: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lower-case alphanumerics, `-` and `.`, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(format!(
            "invalid label key {k:?}: the prefix must be a DNS subdomain"
        ));
    }
    if !is_label_segment(name) {
        return Err(format!(
            "invalid label key {k:?}: the name must be 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_segment(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (Atom::new(k), Atom::new(v)))
                .collect(),
        )
    }

    #[test]
    fn parses_every_kubectl_form() {
        let s = Selector::parse("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j").unwrap();
        assert_eq!(s.to_string(), "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j");
        assert!(Selector::parse("").unwrap().is_empty());
        assert_eq!(Selector::parse("a=").unwrap().to_string(), "a=");
        assert_eq!(
            Selector::parse("app.kubernetes.io/name=web")
                .unwrap()
                .to_string(),
            "app.kubernetes.io/name=web"
        );
    }

    #[test]
    fn rejects_malformed_selectors_with_a_reason() {
        for bad in [
            "a in x",
            "a in (x",
            "a in ()",
            "=b",
            "a=b=c",
            "a b",
            "a>1",
            "!",
            "a,",
            "-a=b",
            "a=-b",
            "Upper.Case/x=y",
            "a=b)",
        ] {
            let err = Selector::parse(bad).expect_err(bad);
            assert!(!err.reason.is_empty(), "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn matches_like_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let yes = [
            "app=web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "",
        ];
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web)",
            "missing",
            "!app",
            "missing in (x)",
            "app=web,tier=back",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches(&l), "{s} should match");
        }
        for s in no {
            assert!(
                !Selector::parse(s).unwrap().matches(&l),
                "{s} should not match"
            );
        }
    }

    #[test]
    fn converts_label_selector_objects() {
        let s = Selector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,tier in (front,edge),!canary,zone,env notin (dev)"
        );
        assert!(
            Selector::from_label_selector(&json!({}))
                .unwrap()
                .is_empty()
        );
        assert!(
            Selector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
            )
            .is_err()
        );
        assert!(
            Selector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn anchors_prefer_equality_then_sets_then_keys() {
        let a = |s: &str| Selector::parse(s).unwrap().anchor();
        assert_eq!(
            a("x notin (1),y in (a,b),z=c"),
            Anchor::Pairs(Atom::new("z"), SmallVec::from_elem(Atom::new("c"), 1))
        );
        assert!(matches!(a("k,y in (a,b)"), Anchor::Pairs(k, vs) if k == "y" && vs.len() == 2));
        assert_eq!(a("!x,k"), Anchor::Key(Atom::new("k")));
        assert_eq!(a("!x,k!=v"), Anchor::All);
        assert_eq!(a(""), Anchor::All);
    }

    #[test]
    fn later_duplicate_label_keys_win() {
        let l = Labels::from_pairs(vec![
            (Atom::new("a"), Atom::new("1")),
            (Atom::new("a"), Atom::new("2")),
        ]);
        assert_eq!(l.len(), 1);
        assert_eq!(l.get_str("a").map(Atom::as_str), Some("2"));
    }
}
