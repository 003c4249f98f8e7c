//! Small, total accessors over `serde_json::Value`: a missing or mistyped field reads as absent,
//! because one odd field must not make a whole object unreadable.

use serde_json::Value;

/// The value at `path`, if every step exists.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The string at `path`.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

/// The non-empty string at `path`.
pub(crate) fn nonempty_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    str_at(v, path).filter(|s| !s.is_empty())
}

/// The count at `path`, clamped to `u32` (negative counts read as 0).
pub(crate) fn u32_at(v: &Value, path: &[&str]) -> Option<u32> {
    let n = at(v, path)?.as_i64()?;
    Some(n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// The boolean at `path`, false when absent.
pub(crate) fn flag_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, empty when absent.
pub(crate) fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The `status.conditions[]` entry of `type_`, as (status, reason, message).
pub(crate) fn condition<'a>(v: &'a Value, type_: &str) -> Option<Condition<'a>> {
    list_at(v, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == Some(type_))
        .map(|c| Condition {
            status: str_at(c, &["status"]).unwrap_or(""),
            reason: str_at(c, &["reason"]).unwrap_or(""),
        })
}

/// The fields of a status condition the rules read.
pub(crate) struct Condition<'a> {
    /// "True", "False" or "Unknown".
    pub(crate) status: &'a str,
    /// CamelCase reason.
    pub(crate) reason: &'a str,
}

/// A label or annotation value as text. Kubernetes only allows strings; a hand-written manifest
/// may carry an unquoted number or boolean, which kubectl would reject, and which we read as its
/// text rather than drop.
pub(crate) fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}
