//! The offline file source: it reads Kubernetes objects from a manifest file, from a directory of
//! manifests, or from a saved `kubectl get -A -o json|yaml` dump, so that Astrolabe can serve a
//! cluster's state without a cluster.
//!
//! Every object comes back as a `serde_json::Value` together with the file, document and List
//! item it came from. Every document that is not a usable object comes back as a [`DocError`]
//! that says where it is and what is wrong with it, and the loader goes on with the rest: nothing
//! in the input can make it panic or hang. Only a path that cannot be opened at all is an `Err`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Where an object or an error was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file, as reached from the path given to the loader.
    pub file: PathBuf,
    /// The 0-based index of the YAML document in the file, counting empty documents; a JSON file
    /// is one document.
    pub document: usize,
    /// The 0-based index of the item when the document is a List (or a JSON array). Items of a
    /// List nested inside an item share that item's index; their errors name the nested path.
    pub item: Option<usize>,
}

impl Origin {
    fn new(file: &Path, document: usize) -> Self {
        Origin {
            file: file.to_path_buf(),
            document,
            item: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, "[{item}]")?;
        }
        Ok(())
    }
}

/// One Kubernetes object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub origin: Origin,
    /// A JSON object with string `apiVersion`, string `kind` and a non-empty `metadata.name`.
    pub object: Value,
}

/// A document, List item or file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct DocError {
    pub origin: Origin,
    pub reason: String,
}

/// Everything one load found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileLoad {
    /// The objects in load order: files in sorted path order, then documents, then items.
    pub objects: Vec<Loaded>,
    pub errors: Vec<DocError>,
    /// How many files were read or tried, including those that could not be read.
    pub files: usize,
}

impl FileLoad {
    fn reject(&mut self, origin: Origin, reason: String) {
        tracing::warn!(%origin, %reason, "skipping input that is not a usable Kubernetes object");
        self.errors.push(DocError { origin, reason });
    }
}

/// Why a path could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Loads every object under `path`, a file or a directory.
///
/// A file is read whatever its name. A directory is walked recursively in sorted order, reading
/// the files named `*.yaml`, `*.yml` or `*.json` (in any case) and skipping entries whose names
/// start with `.` and symlinked directories. Problems inside the files are reported in
/// [`FileLoad::errors`]; the result is an `Err` only when `path` does not exist or cannot be
/// opened.
pub fn load_path(path: &Path) -> Result<FileLoad, FileSourceError> {
    let fail = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            FileSourceError::NotFound(path.to_path_buf())
        } else {
            FileSourceError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let metadata = fs::metadata(path).map_err(fail)?;
    let mut load = FileLoad::default();
    if metadata.is_dir() {
        walk(sorted_entries(path).map_err(fail)?, &mut load);
    } else {
        load_file(path, &mut load);
    }
    Ok(load)
}

/// Loads the objects in one file's content; `file` only names it in origins and errors.
///
/// The content is JSON when its first non-whitespace character is `{` or `[`, and YAML otherwise.
pub fn load_str(text: &str, file: &Path) -> FileLoad {
    let mut load = FileLoad {
        files: 1,
        ..FileLoad::default()
    };
    parse_text(text, file, &mut load);
    load
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    Ok(entries)
}

fn walk(entries: Vec<fs::DirEntry>, load: &mut FileLoad) {
    for entry in entries {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        // `DirEntry::file_type` does not follow symlinks, so a symlinked directory is never
        // entered and a symlink loop cannot make the walk endless.
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            match sorted_entries(&path) {
                Ok(children) => walk(children, load),
                Err(err) => load.reject(
                    Origin::new(&path, 0),
                    format!("cannot read directory: {err}"),
                ),
            }
            continue;
        }
        // Only regular files, reached directly or through a symlink, are read: a FIFO named
        // `*.yaml` would block the load forever. When the metadata cannot be read the file is
        // still tried, so that the failure is reported as an error for that file.
        let regular = fs::metadata(&path).map_or(true, |metadata| metadata.is_file());
        if regular && has_manifest_extension(&path) {
            load_file(&path, load);
        }
    }
}

fn has_manifest_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            ["yaml", "yml", "json"]
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

fn load_file(path: &Path, load: &mut FileLoad) {
    load.files += 1;
    let text = fs::read(path)
        .map_err(|err| format!("cannot read file: {err}"))
        .and_then(decode);
    match text {
        Ok(text) => parse_text(&text, path, load),
        Err(reason) => load.reject(Origin::new(path, 0), reason),
    }
}

/// Turns a file's bytes into text. Besides UTF-8 this accepts UTF-16 that starts with a
/// byte-order mark, as kubectl does, because that is what Windows PowerShell writes for
/// `kubectl get -o yaml > file`.
fn decode(bytes: Vec<u8>) -> Result<String, String> {
    let utf16: Option<fn([u8; 2]) -> u16> = match bytes.get(..2) {
        Some([0xFF, 0xFE]) => Some(u16::from_le_bytes),
        Some([0xFE, 0xFF]) => Some(u16::from_be_bytes),
        _ => None,
    };
    if let Some(unit) = utf16 {
        let units = bytes[2..].chunks_exact(2);
        let whole = units.remainder().is_empty();
        let units: Vec<u16> = units.map(|pair| unit([pair[0], pair[1]])).collect();
        return match String::from_utf16(&units) {
            Ok(text) if whole => Ok(text),
            _ => Err("file starts with a UTF-16 byte-order mark but is not valid UTF-16".into()),
        };
    }
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let line = 1 + err.as_bytes()[..offset]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count();
        format!("file is not valid UTF-8 (invalid byte at line {line}, byte offset {offset})")
    })
}

fn parse_text(text: &str, file: &Path, load: &mut FileLoad) {
    // A UTF-8 byte-order mark is not whitespace, so it would hide a JSON file's opening brace.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match text.trim_start().as_bytes().first() {
        Some(b'{' | b'[') => parse_json(text, file, load),
        _ => parse_yaml(text, file, load),
    }
}

fn parse_json(text: &str, file: &Path, load: &mut FileLoad) {
    let origin = Origin::new(file, 0);
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => collect_items(load, &origin, "", items, None),
        Ok(value) => collect_document(load, &origin, value),
        Err(err) => load.reject(origin, format!("invalid JSON: {err}")),
    }
}

fn parse_yaml(text: &str, file: &Path, load: &mut FileLoad) {
    let mut document = 0;
    for piece in split_documents(text) {
        if let Some(line) = piece.too_deep() {
            let reason = format!(
                "invalid YAML: more than {MAX_OPEN_BRACKETS} flow collections (`[`, `{{`) are open at line {line}"
            );
            load.reject(Origin::new(file, document), reason);
            document += 1;
            continue;
        }
        let documents = serde_yaml_ng::Deserializer::from_str(piece.text);
        for (position, deserializer) in documents.enumerate() {
            let origin = Origin::new(file, document);
            document += 1;
            match piece.parse(deserializer) {
                Ok(value) => collect_document(load, &origin, value),
                Err(err) => {
                    let reason = format!("invalid YAML: {}", piece.describe(position, err));
                    load.reject(origin, reason);
                    // After a syntax error serde_yaml_ng's iterator yields the same error again
                    // and again without end, so the rest of this piece is given up. The pieces
                    // after it have parsers of their own and still load.
                    break;
                }
            }
        }
    }
}

/// libyaml looks at every open flow collection for each token it reads, so a document that
/// opens thousands of `[` or `{` takes quadratic time (160 kB of `{a: ` takes seconds, a few
/// megabytes would take hours). serde_yaml_ng refuses anything nested deeper than 128 levels
/// anyway, so a piece that leaves more than twice that many brackets open is refused before it is
/// parsed, which bounds the work to a few hundred steps per token. Brackets inside strings and
/// comments count too; the margin is for them.
const MAX_OPEN_BRACKETS: usize = 256;

/// How many JSON values one YAML document may turn into: ten per byte of its text, and some room
/// for short documents. Without aliases a document cannot even reach one value per byte;
/// serde_yaml_ng copies an aliased node each time it is used, so the limit is what stops a few
/// kilobytes of aliases to aliases from expanding into gigabytes.
fn value_budget(text: &str) -> usize {
    10_000 + 10 * text.len()
}

/// A slice of a YAML stream that holds at most one document, so that a syntax error in one
/// document cannot take the documents after it down with it.
struct Piece<'a> {
    text: &'a str,
    /// How many lines of the file come before `text`.
    first_line: usize,
}

impl Piece<'_> {
    fn parse(
        &self,
        deserializer: serde_yaml_ng::Deserializer<'_>,
    ) -> Result<Value, serde_yaml_ng::Error> {
        let mut budget = value_budget(self.text);
        JsonSeed {
            budget: &mut budget,
        }
        .deserialize(deserializer)
    }

    /// The line (1-based, in the whole file) where more than [`MAX_OPEN_BRACKETS`] brackets are
    /// open, if that happens.
    fn too_deep(&self) -> Option<usize> {
        let mut open = 0usize;
        for (offset, byte) in self.text.bytes().enumerate() {
            match byte {
                b'[' | b'{' => open += 1,
                b']' | b'}' => open = open.saturating_sub(1),
                _ => continue,
            }
            if open > MAX_OPEN_BRACKETS {
                let before = self.text.as_bytes()[..offset].iter();
                return Some(self.first_line + 1 + before.filter(|&&b| b == b'\n').count());
            }
        }
        None
    }

    /// Describes the error that document `position` of this piece failed with, with the line
    /// numbers it has in the whole file. The parser only knows the piece, so the piece is parsed
    /// again behind as many empty lines as precede it; errors are rare, so this costs little.
    fn describe(&self, position: usize, error: serde_yaml_ng::Error) -> String {
        if self.first_line == 0 {
            return error.to_string();
        }
        let padded = format!("{}{}", "\n".repeat(self.first_line), self.text);
        serde_yaml_ng::Deserializer::from_str(&padded)
            .nth(position)
            .and_then(|deserializer| self.parse(deserializer).err())
            .unwrap_or(error)
            .to_string()
    }
}

/// Cuts a YAML stream into [`Piece`]s where the parser itself would see a document boundary: at
/// each `---` line and after each `...` line (the markers only count at the start of a line, and
/// they end block scalars, quoted scalars and flow collections alike).
///
/// A `---` starts a new piece only when the current piece already holds a document; comments,
/// blank lines and `%` directives before it stay with the document that the `---` opens. That
/// keeps the document count the parser would have for the whole stream.
fn split_documents(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let (mut start, mut first_line, mut has_document) = (0, 0, false);
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let end = offset + line.len();
        if is_marker(line, "---") {
            if has_document {
                pieces.push(Piece {
                    text: &text[start..offset],
                    first_line,
                });
                (start, first_line) = (offset, number);
            }
            has_document = true;
        } else if is_marker(line, "...") {
            // A `...` with no document before it is one the parser skips too.
            if has_document {
                pieces.push(Piece {
                    text: &text[start..end],
                    first_line,
                });
                (start, first_line, has_document) = (end, number + 1, false);
            }
        } else if is_content(line) {
            has_document = true;
        }
        offset = end;
    }
    pieces.push(Piece {
        text: &text[start..],
        first_line,
    });
    pieces
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%'))
}

fn collect_document(load: &mut FileLoad, origin: &Origin, value: Value) {
    // Empty documents are what separators around nothing but comments produce (Helm writes one
    // for every template that renders empty); they hold no object, so they are no error either.
    if !value.is_null() {
        collect(load, origin, "", value, None);
    }
}

/// Accepts `value` as an object, or expands it when it is a List. `path` locates the value
/// inside the item that `origin` names when Lists are nested, and is empty otherwise.
fn collect(
    load: &mut FileLoad,
    origin: &Origin,
    path: &str,
    value: Value,
    defaults: Option<&ItemDefaults>,
) {
    let mut object = match value {
        Value::Object(object) => object,
        other => {
            let subject = if origin.item.is_some() {
                "item"
            } else {
                "document"
            };
            let reason = format!("{subject} is {}, expected a mapping", type_of(&other));
            reject_at(load, origin, path, reason);
            return;
        }
    };
    if let Some(defaults) = defaults {
        defaults.fill(&mut object);
    }
    if let Some(items) = take_list_items(&mut object) {
        let defaults = ItemDefaults::of(&object);
        collect_items(load, origin, path, items, defaults.as_ref());
        return;
    }
    match check_object(&object) {
        Ok(()) => load.objects.push(Loaded {
            origin: origin.clone(),
            object: Value::Object(object),
        }),
        Err(reason) => reject_at(load, origin, path, reason),
    }
}

fn collect_items(
    load: &mut FileLoad,
    origin: &Origin,
    path: &str,
    items: Vec<Value>,
    defaults: Option<&ItemDefaults>,
) {
    for (index, item) in items.into_iter().enumerate() {
        // The first List level is what `Origin::item` records. Deeper levels exist only inside
        // one of its items, so they are spelled out as a path in the error reasons instead.
        if origin.item.is_none() {
            let origin = Origin {
                item: Some(index),
                ..origin.clone()
            };
            collect(load, &origin, "", item, defaults);
        } else if path.is_empty() {
            collect(load, origin, &format!("items[{index}]"), item, defaults);
        } else {
            collect(
                load,
                origin,
                &format!("{path}.items[{index}]"),
                item,
                defaults,
            );
        }
    }
}

fn reject_at(load: &mut FileLoad, origin: &Origin, path: &str, reason: String) {
    let reason = if path.is_empty() {
        reason
    } else {
        format!("{path}: {reason}")
    };
    load.reject(origin.clone(), reason);
}

/// Takes the items out of a List: any kind ending in `List` with an `items` sequence, which is
/// how `kubectl get -o json|yaml` prints several objects (`List`, `PodList`, ...).
fn take_list_items(object: &mut Map<String, Value>) -> Option<Vec<Value>> {
    let kind = object.get("kind").and_then(Value::as_str)?;
    if !kind.ends_with("List") {
        return None;
    }
    match object.get_mut("items")? {
        Value::Array(items) => Some(std::mem::take(items)),
        // Go marshals a List whose item slice is nil as `"items": null`; it is an empty List.
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// What a typed List such as `PodList` says about its items: kubectl leaves `apiVersion` and
/// `kind` out of them because the List's own kind and apiVersion already say it.
struct ItemDefaults {
    api_version: Option<String>,
    kind: String,
}

impl ItemDefaults {
    fn of(list: &Map<String, Value>) -> Option<Self> {
        let kind = list.get("kind")?.as_str()?.strip_suffix("List")?;
        // A plain `List` holds items of any kind, so it says nothing about them.
        (!kind.is_empty()).then(|| ItemDefaults {
            api_version: list
                .get("apiVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
            kind: kind.to_owned(),
        })
    }

    fn fill(&self, item: &mut Map<String, Value>) {
        if is_absent(item.get("kind")) {
            item.insert("kind".into(), Value::String(self.kind.clone()));
        }
        if let Some(api_version) = &self.api_version
            && is_absent(item.get("apiVersion"))
        {
            item.insert("apiVersion".into(), Value::String(api_version.clone()));
        }
    }
}

/// Checks what the state server needs of every object, naming every problem found.
fn check_object(object: &Map<String, Value>) -> Result<(), String> {
    let mut problems = Vec::new();
    problems.extend(string_problem(object.get("apiVersion"), "apiVersion"));
    problems.extend(string_problem(object.get("kind"), "kind"));
    match object.get("metadata") {
        Some(Value::Object(metadata)) => problems.extend(name_problem(metadata)),
        None | Some(Value::Null) => problems.push("missing metadata.name".to_owned()),
        Some(other) => problems.push(format!(
            "metadata is {}, expected a mapping",
            type_of(other)
        )),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn name_problem(metadata: &Map<String, Value>) -> Option<String> {
    let problem = string_problem(metadata.get("name"), "metadata.name")?;
    // `generateName` only works with `kubectl create`, where the API server picks the name;
    // offline there is no name to serve the object under, and the hint saves a puzzled look.
    if is_absent(metadata.get("name")) && metadata.get("generateName").is_some_and(Value::is_string)
    {
        return Some(format!(
            "{problem} (only metadata.generateName is set, which the API server turns into a name)"
        ));
    }
    Some(problem)
}

fn string_problem(value: Option<&Value>, field: &str) -> Option<String> {
    match value {
        None | Some(Value::Null) => Some(format!("missing {field}")),
        Some(Value::String(text)) if text.is_empty() => Some(format!("{field} is empty")),
        Some(Value::String(_)) => None,
        Some(other) => Some(format!(
            "{field} is not a string (found {})",
            type_of(other)
        )),
    }
}

/// YAML's `key:` with nothing after it is null, which means the same as leaving the key out.
fn is_absent(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Builds a `serde_json::Value` straight from one YAML node. Going through serde_yaml_ng's own
/// `Value` would double the memory for big documents, and would lose the line and column that
/// serde_yaml_ng attaches to errors raised here (non-string keys, duplicate keys, numbers JSON
/// cannot hold). `budget` is how many more values the document may produce; see
/// [`value_budget`].
struct JsonSeed<'b> {
    budget: &'b mut usize,
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        *self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| de::Error::custom("aliases expand this document to too many values"))?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    // serde_yaml_ng reports a document with no content at all this way.
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "integer {value} does not fit in 64 bits"
        )))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "integer {value} does not fit in 64 bits"
        )))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value).map(Value::Number).ok_or_else(|| {
            E::custom(format_args!(
                "{value} is not a finite number, which JSON cannot hold"
            ))
        })
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(sequence.size_hint().unwrap_or(0));
        while let Some(item) = sequence.next_element_seed(JsonSeed {
            budget: &mut *self.budget,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut mapping: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = mapping.next_key_seed(KeySeed)? {
            let value = mapping.next_value_seed(JsonSeed {
                budget: &mut *self.budget,
            })?;
            match object.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(entry) => {
                    let key = entry.key();
                    return Err(de::Error::custom(format_args!(
                        "duplicate mapping key {key:?}"
                    )));
                }
            }
        }
        if let Some(merged) = object.remove("<<") {
            merge(&mut object, merged).map_err(de::Error::custom)?;
        }
        Ok(Value::Object(object))
    }

    // serde_yaml_ng hands over a node with a local tag (`!Ref x`, `!vault ...`) as an enum named
    // by the tag. Tags mean nothing to Kubernetes, so the tag is dropped and the value kept.
    fn visit_enum<A: EnumAccess<'de>>(self, tagged: A) -> Result<Value, A::Error> {
        let (IgnoredAny, value) = tagged.variant()?;
        value.newtype_variant_seed(self)
    }
}

/// Applies a YAML merge key (`<<: *defaults`), which kubectl's YAML library supports: keys
/// written in the mapping itself win, and of several merged mappings the earlier ones win.
fn merge(object: &mut Map<String, Value>, merged: Value) -> Result<(), &'static str> {
    const EXPECTED: &str = "merge key `<<` needs a mapping or a sequence of mappings";
    let sources = match merged {
        Value::Object(source) => vec![source],
        Value::Array(sources) => sources
            .into_iter()
            .map(|source| match source {
                Value::Object(source) => Ok(source),
                _ => Err(EXPECTED),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(EXPECTED),
    };
    for source in sources {
        for (key, value) in source {
            object.entry(key).or_insert(value);
        }
    }
    Ok(())
}

/// Reads a mapping key. JSON keys are strings and Kubernetes objects only ever use string keys,
/// so any other key is an error rather than something to convert silently.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key (Kubernetes objects only have string keys)")
    }

    fn visit_str<E>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }

    fn visit_enum<A: EnumAccess<'de>>(self, tagged: A) -> Result<String, A::Error> {
        let (IgnoredAny, key) = tagged.variant()?;
        key.newtype_variant_seed(KeySeed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The public manifests that the fixture test reads, relative to the crate's root. In the
    /// Astrolabe crate they live in `tests/fixtures/public-manifests`.
    const FIXTURE_ROOT: &str = "tests/fixtures/public-manifests";

    fn load(text: &str) -> FileLoad {
        load_str(text, Path::new("test.yaml"))
    }

    fn names(load: &FileLoad) -> Vec<&str> {
        load.objects
            .iter()
            .map(|loaded| loaded.object["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    fn origins(load: &FileLoad) -> Vec<(usize, Option<usize>)> {
        load.objects
            .iter()
            .map(|loaded| (loaded.origin.document, loaded.origin.item))
            .collect()
    }

    fn errors(load: &FileLoad) -> Vec<(usize, Option<usize>, &str)> {
        load.errors
            .iter()
            .map(|error| {
                let origin = &error.origin;
                (origin.document, origin.item, error.reason.as_str())
            })
            .collect()
    }

    fn config_map(name: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
    }

    #[test]
    fn multi_document_yaml_skips_comments_and_empty_documents() {
        let text = format!(
            "# Source: chart/templates/all.yaml\n---\n{}---\n# Source: chart/templates/empty.yaml\n---\n\n---\nnull\n---\n~\n...\n---\n{}--- # trailing\n",
            config_map("first"),
            config_map("second"),
        );
        let load = load(&text);
        assert_eq!(errors(&load), []);
        assert_eq!(names(&load), ["first", "second"]);
        // Empty documents still count, so indices match the file's `---` sections.
        assert_eq!(origins(&load), [(0, None), (5, None)]);
        assert_eq!(load.files, 1);
        assert_eq!(load.objects[0].object["kind"], "ConfigMap");
    }

    #[test]
    fn a_file_with_only_comments_or_nothing_is_empty_but_fine() {
        for text in [
            "",
            "\n\n",
            "# nothing here\n",
            "---\n",
            "---\n# a\n---\n# b\n",
        ] {
            let load = load(text);
            assert_eq!(load.objects, [], "{text:?}");
            assert_eq!(load.errors, [], "{text:?}");
        }
    }

    #[test]
    fn invalid_document_between_two_valid_ones_is_one_error_with_its_index() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: default\n---\n{}",
            config_map("before"),
            config_map("after"),
        );
        let load = load(&text);
        assert_eq!(names(&load), ["before", "after"]);
        assert_eq!(origins(&load), [(0, None), (2, None)]);
        assert_eq!(errors(&load), [(1, None, "missing metadata.name")]);
        assert_eq!(
            load.errors[0].to_string(),
            "test.yaml#1: missing metadata.name"
        );
    }

    #[test]
    fn documents_that_are_not_mappings_are_errors() {
        let text = "- a\n- b\n---\njust a string\n---\n42\n---\ntrue\n";
        let load = load(text);
        assert_eq!(load.objects, []);
        assert_eq!(
            errors(&load),
            [
                (0, None, "document is a sequence, expected a mapping"),
                (1, None, "document is a string, expected a mapping"),
                (2, None, "document is a number, expected a mapping"),
                (3, None, "document is a boolean, expected a mapping"),
            ]
        );
    }

    #[test]
    fn field_problems_are_named_precisely() {
        let cases = [
            (
                "apiVersion: 1\nkind: Pod\nmetadata: {name: p}\n",
                "apiVersion is not a string (found a number)",
            ),
            ("apiVersion: v1\nmetadata: {name: p}\n", "missing kind"),
            (
                "apiVersion: v1\nkind: ''\nmetadata: {name: p}\n",
                "kind is empty",
            ),
            (
                "apiVersion: v1\nkind: [Pod]\nmetadata: {name: p}\n",
                "kind is not a string (found a sequence)",
            ),
            ("apiVersion: v1\nkind: Pod\n", "missing metadata.name"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n",
                "missing metadata.name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: web\n",
                "metadata is a string, expected a mapping",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: ''}\n",
                "metadata.name is empty",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: 7}\n",
                "metadata.name is not a string (found a number)",
            ),
            (
                "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: migrate-}\n",
                "missing metadata.name (only metadata.generateName is set, which the API server turns into a name)",
            ),
            (
                "replicaCount: 1\nimage: {repository: nginx}\n",
                "missing apiVersion; missing kind; missing metadata.name",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(errors(&load(text)), [(0, None, reason)], "{text}");
        }
    }

    #[test]
    fn list_expands_to_its_items() {
        let text = "\
apiVersion: v1
kind: List
metadata:
  resourceVersion: \"\"
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
- kind: Secret
  metadata: {name: no-api-version}
";
        let load = load(text);
        assert_eq!(names(&load), ["web", "web"]);
        assert_eq!(origins(&load), [(0, Some(0)), (0, Some(1))]);
        assert_eq!(load.objects[1].object["kind"], "Deployment");
        // A plain List says nothing about its items' kinds, so nothing is filled in.
        assert_eq!(errors(&load), [(0, Some(2), "missing apiVersion")]);
        assert_eq!(
            load.errors[0].to_string(),
            "test.yaml#0[2]: missing apiVersion"
        );
    }

    #[test]
    fn typed_list_items_get_kind_and_api_version_from_the_list() {
        let text = "\
apiVersion: apps/v1
kind: DeploymentList
metadata: {resourceVersion: \"12\"}
items:
- metadata: {name: api, namespace: prod}
  spec: {replicas: 2}
- apiVersion: apps/v1beta2
  kind: Deployment
  metadata: {name: legacy}
- metadata: {namespace: prod}
";
        let load = load(text);
        assert_eq!(names(&load), ["api", "legacy"]);
        assert_eq!(
            load.objects[0].object,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "prod"},
                "spec": {"replicas": 2},
            })
        );
        // What an item says itself wins over what the List implies.
        assert_eq!(load.objects[1].object["apiVersion"], "apps/v1beta2");
        assert_eq!(errors(&load), [(0, Some(2), "missing metadata.name")]);
    }

    #[test]
    fn nested_lists_expand_and_name_the_nested_item_in_errors() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: PodList
  items:
  - metadata: {name: pod-a}
  - metadata: {}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
- apiVersion: v1
  kind: List
  items:
  - apiVersion: v1
    kind: List
    items:
    - 5
- apiVersion: v1
  kind: ServiceList
  items: null
";
        let load = load(text);
        assert_eq!(names(&load), ["pod-a", "settings"]);
        assert_eq!(origins(&load), [(0, Some(0)), (0, Some(1))]);
        assert_eq!(load.objects[0].object["kind"], "Pod");
        assert_eq!(load.objects[0].object["apiVersion"], "v1");
        assert_eq!(
            errors(&load),
            [
                (0, Some(0), "items[1]: missing metadata.name"),
                (
                    0,
                    Some(2),
                    "items[0].items[0]: item is a number, expected a mapping"
                ),
            ]
        );
    }

    #[test]
    fn a_kind_ending_in_list_without_items_is_an_ordinary_object() {
        let text = "apiVersion: example.com/v1\nkind: AllowList\nmetadata: {name: office}\nspec: {cidrs: [10.0.0.0/8]}\n";
        let load = load(text);
        assert_eq!(errors(&load), []);
        assert_eq!(names(&load), ["office"]);
        assert_eq!(origins(&load), [(0, None)]);
    }

    #[test]
    fn json_object() {
        let text = r#"
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}}
"#;
        let load = load_str(text, Path::new("ns.json"));
        assert_eq!(errors(&load), []);
        assert_eq!(origins(&load), [(0, None)]);
        assert_eq!(load.objects[0].object["metadata"]["labels"]["team"], "a");
        assert_eq!(load.objects[0].origin.to_string(), "ns.json#0");
    }

    #[test]
    fn json_list_as_printed_by_kubectl() {
        let text = r#"{
    "apiVersion": "v1",
    "items": [
        {
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "1"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running"}
        },
        {
            "metadata": {"name": "web-2", "namespace": "shop", "uid": "2"}
        }
    ],
    "kind": "PodList",
    "metadata": {"resourceVersion": "981"}
}"#;
        let load = load_str(text, Path::new("pods.json"));
        assert_eq!(errors(&load), []);
        assert_eq!(names(&load), ["web-1", "web-2"]);
        assert_eq!(origins(&load), [(0, Some(0)), (0, Some(1))]);
        assert_eq!(load.objects[0].object["kind"], "Pod");
        assert_eq!(load.objects[0].object["apiVersion"], "v1");
        assert_eq!(load.objects[0].object["status"]["phase"], "Running");
    }

    #[test]
    fn json_array_of_objects() {
        let text = r#"[
  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
  {"apiVersion": "v1", "kind": "ConfigMap"},
  "stray",
  {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
  ]}
]"#;
        let load = load_str(text, Path::new("array.json"));
        assert_eq!(names(&load), ["a", "b"]);
        assert_eq!(origins(&load), [(0, Some(0)), (0, Some(3))]);
        assert_eq!(
            errors(&load),
            [
                (0, Some(1), "missing metadata.name"),
                (0, Some(2), "item is a string, expected a mapping"),
            ]
        );
    }

    #[test]
    fn json_errors_and_edge_cases() {
        let broken = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \n}\n";
        assert_eq!(
            errors(&load(broken)),
            [(0, None, "invalid JSON: expected value at line 4 column 1")]
        );
        // One value per file: a stream of values (what `jq '.items[]'` prints) is not JSON.
        let stream = r#"{"apiVersion": "v1", "kind": "A", "metadata": {"name": "a"}}
{"apiVersion": "v1", "kind": "B", "metadata": {"name": "b"}}"#;
        let load_stream = load(stream);
        assert_eq!(load_stream.objects, []);
        assert_eq!(
            errors(&load_stream),
            [(
                0,
                None,
                "invalid JSON: trailing characters at line 2 column 1"
            )]
        );
        // The JSON number types are kept, and a byte-order mark does not hide the brace.
        let text = "\u{feff}{\"apiVersion\": \"v1\", \"kind\": \"X\", \"metadata\": {\"name\": \"x\"}, \"spec\": {\"a\": 1, \"b\": 1.0, \"c\": -2}}";
        let load_bom = load(text);
        assert_eq!(errors(&load_bom), []);
        let spec = &load_bom.objects[0].object["spec"];
        assert!(spec["a"].is_u64() && spec["b"].is_f64() && spec["c"].is_i64());
        assert_eq!(load("[]").objects, []);
        assert_eq!(load("[]").errors, []);
    }

    #[test]
    fn yaml_syntax_errors_lose_only_their_own_document() {
        let text = format!(
            "{}---\n{}  labels: [unclosed\n---\n{}---\n{} labels: {{}}\n---\n{}---\nkey: \"unterminated\n---\n{}",
            config_map("one"),
            config_map("flow"),
            config_map("two"),
            config_map("indent"),
            config_map("three"),
            config_map("four"),
        );
        let load = load(&text);
        assert_eq!(names(&load), ["one", "two", "three", "four"]);
        assert_eq!(origins(&load), [(0, None), (2, None), (4, None), (6, None)]);
        let failed: Vec<usize> = load.errors.iter().map(|e| e.origin.document).collect();
        assert_eq!(failed, [1, 3, 5]);
        for error in &load.errors {
            assert!(error.reason.starts_with("invalid YAML: "), "{error}");
        }
        // Lines are counted in the whole file, not in the document.
        assert!(
            load.errors[0].reason.contains("line 11 column 1"),
            "{}",
            load.errors[0]
        );
        assert!(
            load.errors[0]
                .reason
                .contains("flow sequence at line 10 column 11"),
            "{}",
            load.errors[0]
        );
        assert!(
            load.errors[1].reason.contains("line 21 column 2"),
            "{}",
            load.errors[1]
        );
        assert!(
            load.errors[2].reason.contains("line 28 column"),
            "{}",
            load.errors[2]
        );
    }

    #[test]
    fn yaml_syntax_error_in_the_first_and_last_document() {
        let text = format!("a: [\n---\n{}---\nb: {{\n", config_map("middle"));
        let load = load(&text);
        assert_eq!(names(&load), ["middle"]);
        let failed: Vec<usize> = load.errors.iter().map(|e| e.origin.document).collect();
        assert_eq!(failed, [0, 2]);
        assert!(
            load.errors[0].reason.contains("line 2 column 1"),
            "{}",
            load.errors[0]
        );
        assert!(
            load.errors[1].reason.contains("line 9 column 1"),
            "{}",
            load.errors[1]
        );
    }

    #[test]
    fn mapping_keys_must_be_strings() {
        let cases = [
            ("    1: one\n", "integer `1`"),
            ("    true: yes\n", "boolean `true`"),
            ("    ~: nothing\n", "unit value"),
            ("    1.5: half\n", "floating point `1.5`"),
            ("    ? [a, b]\n    : pair\n", "sequence"),
        ];
        for (labels, found) in cases {
            let text = format!(
                "{}---\n{}  labels:\n{labels}",
                config_map("ok"),
                config_map("bad")
            );
            let load = load(&text);
            assert_eq!(names(&load), ["ok"], "{labels}");
            assert_eq!(load.errors.len(), 1, "{labels}");
            let reason = &load.errors[0].reason;
            assert_eq!(load.errors[0].origin.document, 1);
            assert!(
                reason.starts_with("invalid YAML: metadata.labels: invalid type: "),
                "{reason}"
            );
            assert!(reason.contains(found), "{reason}");
            assert!(reason.contains("expected a string key"), "{reason}");
            assert!(reason.contains("at line 11 column "), "{reason}");
        }
        // Keys that YAML 1.2 reads as strings, quoted keys and tagged keys are fine.
        let text = format!(
            "{}  labels:\n    yes: a\n    \"1\": b\n    !custom tagged: c\n",
            config_map("ok")
        );
        let load = load(&text);
        assert_eq!(errors(&load), []);
        assert_eq!(
            load.objects[0].object["metadata"]["labels"],
            json!({"yes": "a", "1": "b", "tagged": "c"})
        );
    }

    #[test]
    fn yaml_scalars_tags_anchors_and_merge_keys_become_json() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: values
  labels: &labels {app: web, tier: front}
spec:
  replicas: 3
  negative: -7
  ratio: 1.5
  whole: 1.0
  exponent: 1e3
  hex: 0x1F
  quoted: \"3\"
  octal: 0o644
  leadingZero: 0644
  word: yes
  flag: true
  nothing: ~
  empty:
  forcedString: !!str 12
  forcedFloat: !!float 2
  custom: !Ref {name: other}
  text: !vault secret/path
  block: |
    line one
    line two
  selector: *labels
  merged:
    <<: [{a: 1, b: 1}, {b: 2, c: 2}]
    c: 3
  chained:
    <<: &base {x: 1, y: 1}
    z: 1
  overrides:
    <<: *base
    y: 2
";
        let load = load(text);
        assert_eq!(errors(&load), []);
        let spec = &load.objects[0].object["spec"];
        assert_eq!(
            *spec,
            json!({
                "replicas": 3,
                "negative": -7,
                "ratio": 1.5,
                "whole": 1.0,
                "exponent": 1000.0,
                "hex": 31,
                "quoted": "3",
                "octal": 420,
                // YAML 1.2: a leading zero is not octal and `yes` is not a boolean (kubectl's
                // YAML 1.1 parser reads 420 and true here).
                "leadingZero": "0644",
                "word": "yes",
                "flag": true,
                "nothing": null,
                "empty": null,
                "forcedString": "12",
                "forcedFloat": 2.0,
                "custom": {"name": "other"},
                "text": "secret/path",
                "block": "line one\nline two\n",
                "selector": {"app": "web", "tier": "front"},
                "merged": {"a": 1, "b": 1, "c": 3},
                "chained": {"x": 1, "y": 1, "z": 1},
                "overrides": {"x": 1, "y": 2},
            })
        );
        assert!(spec["replicas"].is_u64());
        assert!(spec["negative"].is_i64());
        assert!(spec["whole"].is_f64());
        assert!(spec["forcedFloat"].is_f64());
    }

    #[test]
    fn values_json_cannot_hold_are_errors_for_their_document() {
        let cases = [
            (
                "  size: .inf\n",
                "spec.size: inf is not a finite number, which JSON cannot hold",
            ),
            (
                "  size: .nan\n",
                "spec.size: NaN is not a finite number, which JSON cannot hold",
            ),
            (
                "  size: 123456789012345678901234567890\n",
                "spec.size: integer 123456789012345678901234567890 does not fit in 64 bits",
            ),
            ("  a: 1\n  a: 2\n", "spec: duplicate mapping key \"a\""),
            (
                "  <<: 5\n",
                "spec: merge key `<<` needs a mapping or a sequence of mappings",
            ),
        ];
        for (spec, reason) in cases {
            let text = format!(
                "{}spec:\n{spec}---\n{}",
                config_map("bad"),
                config_map("good")
            );
            let load = load(&text);
            assert_eq!(names(&load), ["good"], "{spec}");
            assert_eq!(load.errors.len(), 1, "{spec}");
            let error = &load.errors[0];
            assert_eq!(error.origin.document, 0);
            assert!(
                error
                    .reason
                    .starts_with(&format!("invalid YAML: {reason} at line ")),
                "{error}"
            );
        }
    }

    #[test]
    fn directive_and_document_end_markers_keep_document_indices() {
        let text = format!(
            "{}...\n%YAML 1.2\n---\n{}...\n# comment\n{}",
            config_map("a"),
            config_map("b"),
            config_map("c"),
        );
        let load = load(&text);
        assert_eq!(errors(&load), []);
        assert_eq!(names(&load), ["a", "b", "c"]);
        assert_eq!(origins(&load), [(0, None), (1, None), (2, None)]);
    }

    #[test]
    fn windows_line_endings_and_markers_with_comments() {
        let text =
            format!("{}--- # next\n{}", config_map("a"), config_map("b")).replace('\n', "\r\n");
        let load = load(&text);
        assert_eq!(errors(&load), []);
        assert_eq!(names(&load), ["a", "b"]);
    }

    #[test]
    fn malformed_input_never_panics_or_hangs() {
        let sample = format!(
            "{}---\napiVersion: v1\nkind: List\nitems:\n- {{kind: Pod, metadata: {{name: \"p\"}}}}\n- &x [1, *x]\n---\n{}  labels: {{a: 'b', c: |\n    d\n",
            config_map("a"),
            config_map("b"),
        );
        // Every prefix of a file, as a write that was cut short would leave it.
        for end in (0..=sample.len()).filter(|&end| sample.is_char_boundary(end)) {
            load(&sample[..end]);
            load(&format!("{{\"a\": [{}", &sample[..end]));
        }
        // And random text made of the characters that matter to YAML.
        let alphabet = b"{}[]:-?&*!|>'\"%@#,\n \t\rab01.~";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(seed % 120) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(char::from(
                    alphabet[(seed % alphabet.len() as u64) as usize],
                ));
            }
            load(&text);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let yaml = format!(
            "{}spec: {}\n---\n{}",
            config_map("deep"),
            "{a: [".repeat(50_000),
            config_map("next")
        );
        let load_yaml = load(&yaml);
        assert_eq!(names(&load_yaml), ["next"]);
        assert_eq!(
            errors(&load_yaml),
            [(
                0,
                None,
                "invalid YAML: more than 256 flow collections (`[`, `{`) are open at line 5"
            )]
        );
        let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            errors(&load(&json)),
            [(
                0,
                None,
                "invalid JSON: recursion limit exceeded at line 1 column 128"
            )]
        );
        let nested = format!(
            "{}spec: {}1{}\n",
            config_map("deep"),
            "[".repeat(200),
            "]".repeat(200)
        );
        let load_nested = load(&nested);
        assert!(
            load_nested.errors[0]
                .reason
                .contains("recursion limit exceeded"),
            "{}",
            load_nested.errors[0]
        );
    }

    #[test]
    fn aliases_cannot_blow_up_time_or_memory() {
        // Aliases to aliases: ten levels of ten copies would be ten billion values.
        let mut text = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n",
        );
        for level in 1..12 {
            let previous = level - 1;
            text.push_str(&format!("l{level}: &l{level} [*l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}, *l{previous}]\n"));
        }
        let nested = load(&text);
        assert_eq!(nested.objects, []);
        assert!(
            nested.errors[0]
                .reason
                .contains("aliases expand this document to too many values"),
            "{}",
            nested.errors[0]
        );
        // One wide anchor used many times: 60 kB that would expand to 60 million values.
        let wide = format!(
            "{}data: &wide [{}]\ncopies: [{}]\n",
            config_map("wide"),
            vec!["x"; 20_000].join(","),
            vec!["*wide"; 3000].join(","),
        );
        let wide = load(&wide);
        assert_eq!(wide.objects, []);
        let reason = &wide.errors[0].reason;
        assert!(reason.starts_with("invalid YAML: copies["), "{reason}");
        assert!(
            reason
                .ends_with("]: aliases expand this document to too many values at line 5 column 7"),
            "{reason}"
        );
        // Ordinary use of anchors is well within the budget.
        let shared = format!(
            "{}data: &block {{{}}}\ncopies: [{}]\n",
            config_map("shared"),
            (0..200)
                .map(|i| format!("k{i}: v"))
                .collect::<Vec<_>>()
                .join(", "),
            vec!["*block"; 20].join(","),
        );
        assert_eq!(errors(&load(&shared)), []);
    }

    #[test]
    fn big_dumps_load() {
        let count = 3000;
        let mut yaml = String::from(
            "apiVersion: v1\nkind: PodList\nmetadata: {resourceVersion: \"1\"}\nitems:\n",
        );
        let mut json_items = Vec::new();
        for index in 0..count {
            yaml.push_str(&format!(
                "- metadata:\n    name: pod-{index}\n    namespace: ns-{ns}\n    labels: {{app: web, index: \"{index}\"}}\n  spec:\n    containers:\n    - name: web\n      image: nginx:1.27\n      ports: [{{containerPort: 80}}]\n  status: {{phase: Running}}\n",
                ns = index % 10,
            ));
            json_items.push(json!({
                "metadata": {"name": format!("pod-{index}"), "namespace": "ns"},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            }));
        }
        let yaml_load = load(&yaml);
        assert_eq!(yaml_load.errors, []);
        assert_eq!(yaml_load.objects.len(), count);
        assert_eq!(yaml_load.objects[count - 1].origin.item, Some(count - 1));
        let json = json!({"apiVersion": "v1", "kind": "PodList", "items": json_items}).to_string();
        let json_load = load(&json);
        assert_eq!(json_load.errors, []);
        assert_eq!(json_load.objects.len(), count);
        assert_eq!(json_load.objects[0].object["kind"], "Pod");
    }

    #[test]
    fn display_formats() {
        let origin = Origin {
            file: PathBuf::from("dump/pods.yaml"),
            document: 2,
            item: None,
        };
        assert_eq!(origin.to_string(), "dump/pods.yaml#2");
        let item = Origin {
            item: Some(5),
            ..origin
        };
        assert_eq!(item.to_string(), "dump/pods.yaml#2[5]");
        let error = DocError {
            origin: item,
            reason: "missing kind".into(),
        };
        assert_eq!(error.to_string(), "dump/pods.yaml#2[5]: missing kind");
        let missing = FileSourceError::NotFound(PathBuf::from("nowhere"));
        assert_eq!(missing.to_string(), "nowhere does not exist");
    }

    fn write(path: &Path, contents: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn relative_origins(load: &FileLoad, root: &Path) -> Vec<String> {
        load.objects
            .iter()
            .map(|loaded| {
                let file = loaded.origin.file.strip_prefix(root).unwrap();
                let name = loaded.object["metadata"]["name"].as_str().unwrap();
                format!("{}#{} {name}", file.display(), loaded.origin.document)
            })
            .collect()
    }

    #[test]
    fn directory_walk_is_recursive_sorted_and_reads_only_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("b.yaml"),
            format!("{}---\n{}", config_map("b1"), config_map("b2")),
        );
        write(&root.join("a.yml"), config_map("a"));
        write(
            &root.join("C.JSON"),
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
        );
        write(&root.join("nested/e.yaml"), config_map("e"));
        write(&root.join("nested/deeper/d.YAML"), config_map("d"));
        write(&root.join("nested/deeper/empty.yaml"), "");
        // Files that are not manifests, hidden files and hidden directories are not read; each of
        // these would be an error if it were.
        write(
            &root.join("README.md"),
            "# Manifests\n\nApply with `kubectl apply -f .`\n",
        );
        write(&root.join("notes.txt"), "not: [yaml\n");
        write(&root.join(".hidden.yaml"), "not: [yaml\n");
        write(&root.join(".git/config.yaml"), "not: [yaml\n");
        write(&root.join("nested/.cache/x.json"), "{");
        // A directory whose name looks like a manifest is still a directory.
        write(&root.join("dir.yaml/f.yaml"), config_map("f"));

        let load = load_path(root).unwrap();
        assert_eq!(load.errors, []);
        assert_eq!(
            relative_origins(&load, root),
            [
                "C.JSON#0 c",
                "a.yml#0 a",
                "b.yaml#0 b1",
                "b.yaml#1 b2",
                "dir.yaml/f.yaml#0 f",
                "nested/deeper/d.YAML#0 d",
                "nested/e.yaml#0 e",
            ]
        );
        assert_eq!(load.files, 7);
        // The order does not depend on anything but the names.
        assert_eq!(load_path(root).unwrap(), load);
    }

    #[test]
    fn invalid_utf8_is_one_error_for_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("a.yaml"), config_map("a"));
        let mut latin1 = config_map("caf").into_bytes();
        latin1.extend_from_slice(b"data:\n  menu: caf\xe9\n");
        write(&root.join("b.yaml"), latin1);
        write(&root.join("c.yaml"), config_map("c"));
        let load = load_path(root).unwrap();
        assert_eq!(names(&load), ["a", "c"]);
        assert_eq!(load.files, 3);
        assert_eq!(
            load.errors,
            [DocError {
                origin: Origin::new(&root.join("b.yaml"), 0),
                reason: "file is not valid UTF-8 (invalid byte at line 6, byte offset 70)".into(),
            }]
        );
    }

    #[test]
    fn utf16_files_with_a_byte_order_mark_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let text = config_map("from-powershell");
        let mut little = vec![0xFF, 0xFE];
        little.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        write(&dir.path().join("le.yaml"), little);
        let mut big = vec![0xFE, 0xFF];
        big.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        write(&dir.path().join("be.yaml"), big);
        write(&dir.path().join("odd.yaml"), [0xFF, 0xFE, b'a']);
        let load = load_path(dir.path()).unwrap();
        assert_eq!(names(&load), ["from-powershell", "from-powershell"]);
        assert_eq!(
            errors(&load),
            [(
                0,
                None,
                "file starts with a UTF-16 byte-order mark but is not valid UTF-16"
            )]
        );
    }

    #[test]
    fn a_single_file_is_read_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("cluster-dump.txt");
        write(
            &json,
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}]}"#,
        );
        let load = load_path(&json).unwrap();
        assert_eq!(names(&load), ["n1"]);
        assert_eq!(load.files, 1);
        assert_eq!(load.objects[0].origin.file, json);
        let yaml = dir.path().join("manifest");
        write(&yaml, config_map("plain"));
        assert_eq!(names(&load_path(&yaml).unwrap()), ["plain"]);
    }

    #[test]
    fn a_nonexistent_path_is_a_hard_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        match load_path(&missing) {
            Err(FileSourceError::NotFound(path)) => assert_eq!(path, missing),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_directories_are_not_followed_and_loops_do_not_hang() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("real/a.yaml"), config_map("a"));
        symlink(root, root.join("real/loop")).unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        symlink(root.join("real"), root.join("alias.yaml")).unwrap();
        // A symlinked file is read like the file it points to; a dangling one cannot be read.
        symlink(root.join("real/a.yaml"), root.join("link.yaml")).unwrap();
        symlink(root.join("gone.yaml"), root.join("dangling.yaml")).unwrap();
        // A socket named like a manifest is not a file to read.
        let _socket = std::os::unix::net::UnixListener::bind(root.join("socket.yaml")).unwrap();

        let load = load_path(root).unwrap();
        assert_eq!(
            relative_origins(&load, root),
            ["link.yaml#0 a", "real/a.yaml#0 a"]
        );
        assert_eq!(load.files, 3);
        assert_eq!(load.errors.len(), 1);
        assert_eq!(
            load.errors[0].origin,
            Origin::new(&root.join("dangling.yaml"), 0)
        );
        assert!(
            load.errors[0].reason.starts_with("cannot read file: "),
            "{}",
            load.errors[0]
        );
        // A symlink given as the path itself is what the user asked for, so it is followed.
        assert_eq!(names(&load_path(&root.join("alias")).unwrap()), ["a"]);
    }

    fn fixture(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(FIXTURE_ROOT)
            .join(relative)
    }

    fn kinds(load: &FileLoad) -> std::collections::BTreeMap<&str, usize> {
        let mut kinds = std::collections::BTreeMap::new();
        for loaded in &load.objects {
            *kinds
                .entry(loaded.object["kind"].as_str().unwrap())
                .or_default() += 1;
        }
        kinds
    }

    #[test]
    fn public_manifests_load_completely() {
        // Counted independently of this loader, with PyYAML and by counting `kind:` lines.
        let expected: [(&str, &[(&str, usize)]); 5] = [
            (
                "online-boutique/release/kubernetes-manifests.yaml",
                &[("Deployment", 12), ("Service", 12), ("ServiceAccount", 11)],
            ),
            (
                "sock-shop/deploy/kubernetes/complete-demo.yaml",
                &[("Deployment", 14), ("Namespace", 1), ("Service", 14)],
            ),
            (
                "sock-shop-2018/deploy/kubernetes/complete-demo.yaml",
                &[("Deployment", 13), ("Service", 13)],
            ),
            (
                "ingress-nginx/deploy/static/provider/cloud/deploy.yaml",
                &[
                    ("ClusterRole", 2),
                    ("ClusterRoleBinding", 2),
                    ("ConfigMap", 1),
                    ("Deployment", 1),
                    ("IngressClass", 1),
                    ("Job", 2),
                    ("Namespace", 1),
                    ("Role", 2),
                    ("RoleBinding", 2),
                    ("Service", 2),
                    ("ServiceAccount", 2),
                    ("ValidatingWebhookConfiguration", 1),
                ],
            ),
            (
                "otel-helm/charts/opentelemetry-demo/examples/public-hosted-ingress/rendered/component.yaml",
                &[
                    ("ConfigMap", 1),
                    ("Deployment", 25),
                    ("Ingress", 1),
                    ("Service", 22),
                ],
            ),
        ];
        for (file, kinds_expected) in expected {
            let load = load_path(&fixture(file)).unwrap();
            assert_eq!(load.errors, [], "{file}");
            assert_eq!(
                kinds(&load),
                kinds_expected.iter().copied().collect(),
                "{file}"
            );
            // Every document of these files is one object, in order.
            let documents: Vec<usize> = load.objects.iter().map(|o| o.origin.document).collect();
            let count = kinds_expected.iter().map(|(_, n)| n).sum::<usize>();
            assert_eq!(documents, (0..count).collect::<Vec<_>>(), "{file}");
        }

        // The whole tree: the only documents that are not objects are Helm values files, and the
        // hidden `.github` directory is not read.
        let root = fixture("");
        let load = load_path(&root).unwrap();
        assert!(load.objects.len() >= 306, "{}", load.objects.len());
        for error in &load.errors {
            assert_eq!(
                error.origin.file.file_name().unwrap(),
                "values.yaml",
                "{error}"
            );
            assert_eq!(
                error.reason,
                "missing apiVersion; missing kind; missing metadata.name"
            );
        }
        assert!(load.objects.iter().all(|o| {
            !o.origin
                .file
                .starts_with(root.join("online-boutique/.github"))
        }));
    }
}
