//! The formats stored in Redis: snapshot manifests and chunks, and log batches.
//!
//! Every payload is MessagePack with named fields (a field can be added without breaking older
//! data), compressed with LZ4 (object projections repeat field names and values heavily), and
//! checked with a CRC-32 of the compressed bytes. Manifests carry a format version; a version this
//! build does not know is refused, never guessed at.

use std::hash::BuildHasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{Object, Uid};

/// The snapshot and log format this build writes and reads.
/// Version 2 writes uids (UUIDs) and timestamps in their binary forms (16 bytes, seconds since the
/// epoch) instead of text. Version 3 writes an object's field names (and its spec's variant) in
/// short forms (`u` for `uid`, `ns` for `namespace`, ...; see `model::object`): they were nearly
/// a third of every packed object. Versions 1 and 2 (all names long; version 1 all text) are
/// still read.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this build reads.
const OLDEST_FORMAT_VERSION: u32 = 1;

/// Why stored data could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The data was written by a format this build does not know.
    #[error(
        "unknown format version {found} (this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The bytes do not match their checksum.
    #[error("checksum mismatch in {what}: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        /// What was being read.
        what: String,
        /// The checksum stored alongside.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The bytes could not be decompressed or decoded.
    #[error("{what} cannot be decoded: {reason}")]
    Decode {
        /// What was being read.
        what: String,
        /// The decoder's message.
        reason: String,
    },
}

impl FormatError {
    /// A [`FormatError::Decode`] of `what`.
    fn decode(what: &str, reason: impl ToString) -> Self {
        FormatError::Decode {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// One chunk of a snapshot, as listed in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// Objects in the chunk.
    pub objects: u64,
    /// Compressed bytes.
    pub bytes: u64,
    /// CRC-32 of the compressed bytes.
    pub crc32: u32,
}

/// What a snapshot is: written after its chunks, read before them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written.
    pub format: u32,
    /// The snapshot's generation (its keys' suffix).
    pub generation: u64,
    /// Unix milliseconds when the image was taken.
    pub created_ms: u64,
    /// Objects in the image.
    pub objects: u64,
    /// The graph generation of the image: the last change it includes.
    pub graph_generation: u64,
    /// The id of the last log entry the image includes ("0-0" for none): recovery replays the
    /// entries after it.
    pub log_id: String,
    /// The chunks, in order.
    pub chunks: Vec<ChunkInfo>,
}

/// One operation of a log batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The object's state.
    Upsert(Arc<Object>),
    /// The object with this uid is gone.
    Delete(Uid),
}

/// What one part of a log entry holds: coalesced state changes of one write batch. Read as
/// `Batch` (owning its operations); written as `Batch<&[Op]>`, which encodes the same bytes
/// without copying the operations into each part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch<O = Vec<Op>> {
    /// [`FORMAT_VERSION`] when written.
    pub format: u32,
    /// The graph generation after the last change in the batch.
    pub graph_generation: u64,
    /// The operations, at most one per uid.
    pub ops: O,
}

/// A slice that encodes exactly as the slice does, while the encoding thread hands its core to
/// any other thread waiting for it every [`YIELD_EVERY`] items (see [`yield_point`]).
pub struct Yielding<'a, T>(pub &'a [T]);

impl<T: Serialize> Serialize for Yielding<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The iterator's exact length makes the same array header as a slice's.
        s.collect_seq(self.0.iter().enumerate().map(|(i, item)| {
            yield_point(i, YIELD_EVERY);
            item
        }))
    }
}

/// Items encoded between two [`yield_point`]s: about 0.1 ms of work.
pub const YIELD_EVERY: usize = 128;

/// Persistence's long loops (encoding a log entry or a snapshot chunk, taking a snapshot's
/// image) run at the process's own priority, beside the queries. Without a pause, a query thread
/// woken while such a loop runs waits for the scheduler to preempt it, up to the next tick
/// (4 ms here); at these points it gets the core at once. Yielding with nothing waiting costs a
/// system call: well under 1 % of the work between two points.
#[inline]
pub fn yield_point(i: usize, every: usize) {
    if i % every == every - 1 {
        std::thread::yield_now();
    }
}

/// Packed (uncompressed) buffers kept for the next call: growing a fresh multi-megabyte buffer
/// costs more than the packing or unpacking itself (page faults, which also serialise the
/// threads working in parallel).
static BUFFERS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());

fn take_buffer() -> Vec<u8> {
    let mut b = BUFFERS.lock().pop().unwrap_or_default();
    b.clear();
    b
}

/// Hands a buffer back to the pool (such as one that [`index_batch`] unpacked, once its states
/// are decoded).
pub fn recycle(buffer: Vec<u8>) {
    if buffer.capacity() == 0 {
        return;
    }
    let mut pool = BUFFERS.lock();
    if pool.len() < 16 {
        pool.push(buffer);
    }
}

/// LZ4 expands a block at most this many times: a larger size in the prefix is not LZ4's.
const LZ4_MAX_RATIO: usize = 255;

/// MessagePack (named fields), LZ4-compressed, with the CRC-32 of the compressed bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> (Vec<u8>, u32) {
    let mut packed = take_buffer();
    rmp_serde::encode::write_named(&mut packed, value).expect("our types always serialise");
    let compressed = lz4_flex::compress_prepend_size(&packed);
    let crc = crc32fast::hash(&compressed);
    recycle(packed);
    (compressed, crc)
}

/// The inverse of [`encode`], checking the checksum first.
pub fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    crc: u32,
    what: &str,
) -> Result<T, FormatError> {
    unpacked(bytes, crc, what, |packed| whole(packed))
}

/// The one value `packed` holds, which must be all of it: bytes after the value mean the data
/// is not what was written, even with a good checksum.
fn whole<'de, T: Deserialize<'de>>(packed: &'de [u8]) -> Result<T, String> {
    let mut de = rmp_serde::Deserializer::from_read_ref(packed);
    let value = T::deserialize(&mut de).map_err(|e| e.to_string())?;
    match serde::de::IgnoredAny::deserialize(&mut de) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(value)
        }
        _ => Err("bytes after the value".into()),
    }
}

/// `f` applied to the unpacked (checked, decompressed) bytes; its error is a decoding error.
fn unpacked<R>(
    bytes: &[u8],
    crc: u32,
    what: &str,
    f: impl FnOnce(&[u8]) -> Result<R, String>,
) -> Result<R, FormatError> {
    let packed = unpack(bytes, crc, what)?;
    let r = f(&packed).map_err(|reason| FormatError::decode(what, reason));
    recycle(packed);
    r
}

/// Checks the checksum and decompresses into a pooled buffer.
fn unpack(bytes: &[u8], crc: u32, what: &str) -> Result<Vec<u8>, FormatError> {
    let computed = crc32fast::hash(bytes);
    if computed != crc {
        return Err(FormatError::Checksum {
            what: what.to_string(),
            stored: crc,
            computed,
        });
    }
    let error = |reason: String| FormatError::decode(what, reason);
    let (size, block) =
        lz4_flex::block::uncompressed_size(bytes).map_err(|e| error(e.to_string()))?;
    if size > block.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(error(format!(
            "{size} bytes claimed from {} compressed",
            block.len()
        )));
    }
    let mut packed = take_buffer();
    packed.resize(size, 0);
    match lz4_flex::decompress_into(block, &mut packed) {
        Ok(n) if n == size => Ok(packed),
        Ok(n) => Err(error(format!("{n} bytes decompressed, {size} expected"))),
        Err(e) => Err(error(e.to_string())),
    }
}

/// One object of a snapshot chunk, as [`decode_chunk`] gives it.
#[derive(Debug)]
pub enum ChunkEntry {
    /// The object, decoded.
    Decoded(Arc<Object>),
    /// An object left undecoded because the caller's `skip` knew its uid.
    Skipped,
}

/// [`decode`] for a snapshot chunk (a `Vec<Arc<Object>>`), leaving undecoded the objects whose
/// uid `skip` knows (recovery skips those the log after the snapshot replaced or deleted: at a
/// million objects with the longest log, that can be every object). An object is recognised by
/// its first field, `uid`; any other layout is decoded in full.
pub fn decode_chunk(
    bytes: &[u8],
    crc: u32,
    what: &str,
    skip: impl Fn(&Uid) -> bool,
) -> Result<Vec<ChunkEntry>, FormatError> {
    unpacked(bytes, crc, what, |packed| chunk_entries(packed, skip))
}

fn chunk_entries(packed: &[u8], skip: impl Fn(&Uid) -> bool) -> Result<Vec<ChunkEntry>, String> {
    let mut rest = packed;
    let n = match take_header(&mut rest)? {
        Header::Array(n) => n,
        _ => return Err("a snapshot chunk is not an array".into()),
    };
    let mut out = Vec::with_capacity(n.min(rest.len()));
    for _ in 0..n {
        let element = rest;
        let known = object_uid(rest).is_some_and(|uid| skip(&uid));
        skip_value(&mut rest)?;
        let element = &element[..element.len() - rest.len()];
        out.push(if known {
            ChunkEntry::Skipped
        } else {
            ChunkEntry::Decoded(rmp_serde::from_slice(element).map_err(|e| e.to_string())?)
        });
    }
    if rest.is_empty() {
        Ok(out)
    } else {
        Err(format!("{} bytes after the last object", rest.len()))
    }
}

/// Where one operation of a log part left an object, as [`index_batch`] finds it.
#[derive(Debug)]
pub enum LogOp {
    /// Deleted.
    Deleted,
    /// Upserted; the state is these bytes of the unpacked part, not yet decoded (see
    /// [`decode_state`]). `group`: a hash of the object's namespace (0 where the walk did not
    /// find it), to build the graph from states grouped by namespace.
    At {
        range: std::ops::Range<usize>,
        group: u64,
    },
    /// Upserted; already decoded (a part whose layout the index does not recognise is decoded
    /// in full).
    Decoded(Arc<Object>),
}

/// The operations of one log part, in order, without decoding the objects they hold: recovery
/// keeps only the last state of each object, so a state that a later one replaces is never
/// decoded (with a few objects changing often, that is nearly all of the log).
#[derive(Debug)]
pub struct BatchIndex {
    /// The graph generation after the batch.
    pub graph_generation: u64,
    /// Each operation's uid and what it left.
    pub ops: Vec<(Uid, LogOp)>,
    /// The part, unpacked (checked and decompressed): where the [`LogOp::At`] states lie. Empty
    /// when the part was decoded in full.
    pub packed: Vec<u8>,
}

/// Indexes one log part written by the writer (a [`Batch`]), refusing unknown format versions.
/// A batch is a map whose `ops` are `{"Upsert": object}` or `{"Delete": uid}`, and an object
/// starts with its `uid`; a part laid out otherwise is decoded in full instead.
pub fn index_batch(bytes: &[u8], crc: u32, what: &str) -> Result<BatchIndex, FormatError> {
    let packed = unpack(bytes, crc, what)?;
    let walked = match walk_batch(&packed) {
        Some(walked) => walked,
        None => {
            let decoded = whole::<Batch>(&packed);
            recycle(packed);
            let b = decoded.map_err(|e| FormatError::decode(what, e))?;
            check_version(b.format)?;
            let ops = b
                .ops
                .into_iter()
                .map(|op| match op {
                    Op::Upsert(o) => (o.uid.clone(), LogOp::Decoded(o)),
                    Op::Delete(uid) => (uid, LogOp::Deleted),
                })
                .collect();
            return Ok(BatchIndex {
                graph_generation: b.graph_generation,
                ops,
                packed: Vec::new(),
            });
        }
    };
    check_version(walked.format.unwrap_or(0))?;
    Ok(BatchIndex {
        graph_generation: walked.graph_generation,
        ops: walked.ops,
        packed,
    })
}

/// Decodes the state at `range` of a part that [`index_batch`] unpacked.
pub fn decode_state(
    packed: &[u8],
    range: std::ops::Range<usize>,
    what: &str,
) -> Result<Arc<Object>, FormatError> {
    let error = |reason: String| FormatError::decode(what, reason);
    let state = packed
        .get(range)
        .ok_or_else(|| error("a state outside its part".into()))?;
    rmp_serde::from_slice(state).map_err(|e| error(e.to_string()))
}

struct WalkedBatch {
    format: Option<u32>,
    graph_generation: u64,
    ops: Vec<(Uid, LogOp)>,
}

/// [`index_batch`]'s walk; `None` for any layout it does not expect.
fn walk_batch(packed: &[u8]) -> Option<WalkedBatch> {
    let mut rest = packed;
    let Ok(Header::Map(fields)) = take_header(&mut rest) else {
        return None;
    };
    let mut out = WalkedBatch {
        format: None,
        graph_generation: 0,
        ops: Vec::new(),
    };
    for _ in 0..fields {
        match take_str(&mut rest)? {
            "format" => out.format = Some(u32::try_from(take_uint(&mut rest)?).ok()?),
            "graph_generation" => out.graph_generation = take_uint(&mut rest)?,
            "ops" => {
                let Ok(Header::Array(n)) = take_header(&mut rest) else {
                    return None;
                };
                out.ops.reserve(n.min(rest.len()));
                for _ in 0..n {
                    let Ok(Header::Map(1)) = take_header(&mut rest) else {
                        return None;
                    };
                    let op = match take_str(&mut rest)? {
                        "Upsert" => {
                            let start = packed.len() - rest.len();
                            let uid = object_uid(rest)?;
                            let group = object_namespace(rest)
                                .map_or(0, |ns| rustc_hash::FxBuildHasher.hash_one(ns));
                            skip_value(&mut rest).ok()?;
                            let range = start..packed.len() - rest.len();
                            (uid, LogOp::At { range, group })
                        }
                        "Delete" => (take_uid(&mut rest)?, LogOp::Deleted),
                        _ => return None,
                    };
                    out.ops.push(op);
                }
            }
            _ => skip_value(&mut rest).ok()?,
        }
    }
    rest.is_empty().then_some(out)
}

/// The uid of the object that `value` starts with: its first field, as the writer lays objects
/// out (named `u`, or `uid` before version 3); `None` for any other layout.
fn object_uid(mut value: &[u8]) -> Option<Uid> {
    match (take_header(&mut value), take_str(&mut value)) {
        (Ok(Header::Map(_)), Some("u" | "uid")) => take_uid(&mut value),
        _ => None,
    }
}

/// Reads a uid in either form `Uid` serialises to: 16 bytes (a UUID) or text.
fn take_uid(rest: &mut &[u8]) -> Option<Uid> {
    if let [0xc4, 16, tail @ ..] = *rest {
        let (bytes, tail) = tail.split_first_chunk::<16>()?;
        *rest = tail;
        return Some(Uid::Uuid(*bytes));
    }
    take_str(rest).map(Uid::parse)
}

/// The namespace of the object that `value` starts with, where it is among the object's first
/// few fields (as the writer lays objects out; named `ns`, or `namespace` before version 3);
/// `None` otherwise.
fn object_namespace(mut value: &[u8]) -> Option<&str> {
    let Ok(Header::Map(fields)) = take_header(&mut value) else {
        return None;
    };
    for _ in 0..fields.min(6) {
        if matches!(take_str(&mut value)?, "ns" | "namespace") {
            return take_str(&mut value);
        }
        skip_value(&mut value).ok()?;
    }
    None
}

/// Reads an unsigned integer value.
fn take_uint(rest: &mut &[u8]) -> Option<u64> {
    let marker = *rest.first()?;
    *rest = &rest[1..];
    match marker {
        0x00..=0x7f => Some(u64::from(marker)),
        0xcc => take_len(rest, 1).ok().map(|n| n as u64),
        0xcd => take_len(rest, 2).ok().map(|n| n as u64),
        0xce => take_len(rest, 4).ok().map(|n| n as u64),
        0xcf => {
            let b = take(rest, 8).ok()?;
            Some(u64::from_be_bytes(b.try_into().ok()?))
        }
        _ => None,
    }
}

/// A MessagePack value's header, where it is a container.
enum Header {
    Array(usize),
    Map(usize),
    /// Any other value; only its marker was read.
    Other,
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err("truncated MessagePack value".into());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_len(rest: &mut &[u8], width: usize) -> Result<usize, String> {
    let b = take(rest, width)?;
    let mut be = [0u8; 8];
    be[8 - width..].copy_from_slice(b);
    usize::try_from(u64::from_be_bytes(be)).map_err(|e| e.to_string())
}

/// Reads the header of the next value (the MessagePack specification's type table): a
/// container's length, or only the marker of anything else (see [`skip_value`]).
fn take_header(rest: &mut &[u8]) -> Result<Header, String> {
    let marker = take(rest, 1)?[0];
    Ok(match marker {
        0x80..=0x8f => Header::Map(usize::from(marker & 0x0f)),
        0x90..=0x9f => Header::Array(usize::from(marker & 0x0f)),
        0xdc => Header::Array(take_len(rest, 2)?),
        0xdd => Header::Array(take_len(rest, 4)?),
        0xde => Header::Map(take_len(rest, 2)?),
        0xdf => Header::Map(take_len(rest, 4)?),
        _ => Header::Other,
    })
}

/// Reads a string value, or `None` when the next value is not one.
fn take_str<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let len = match rest.first()? {
        m @ 0xa0..=0xbf => {
            *rest = &rest[1..];
            usize::from(m & 0x1f)
        }
        0xd9 => {
            *rest = &rest[1..];
            take_len(rest, 1).ok()?
        }
        0xda => {
            *rest = &rest[1..];
            take_len(rest, 2).ok()?
        }
        _ => return None,
    };
    std::str::from_utf8(take(rest, len).ok()?).ok()
}

/// Walks over the next value, nested values included.
///
/// Recovery walks every object of the log and of a snapshot's chunks it does not decode (a
/// million or more), so this reads the markers in place, with one bounds check per marker and
/// one at the end, instead of through [`take_header`].
fn skip_value(rest: &mut &[u8]) -> Result<(), String> {
    let truncated = || "truncated MessagePack value".to_string();
    let buf = *rest;
    let len = |at: usize, width: usize| -> Result<usize, String> {
        let b = buf.get(at..at + width).ok_or_else(truncated)?;
        Ok(b.iter().fold(0usize, |n, &byte| n << 8 | usize::from(byte)))
    };
    let (mut at, mut values) = (0usize, 1usize);
    while values > 0 {
        values -= 1;
        let marker = *buf.get(at).ok_or_else(truncated)?;
        at += 1;
        // Bytes to jump (a value's payload), or values to add (a container's elements).
        let (jump, nested) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (len(at, 1)?.saturating_add(1), 0),
            0xc5 | 0xda => (len(at, 2)?.saturating_add(2), 0),
            0xc6 | 0xdb => (len(at, 4)?.saturating_add(4), 0),
            0xc7 => (len(at, 1)?.saturating_add(2), 0),
            0xc8 => (len(at, 2)?.saturating_add(3), 0),
            0xc9 => (len(at, 4)?.saturating_add(5), 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 | 0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, len(at, 2)?),
            0xdd => (4, len(at, 4)?),
            0xde => (2, len(at, 2)?.saturating_mul(2)),
            0xdf => (4, len(at, 4)?.saturating_mul(2)),
            0xc1 => return Err("invalid MessagePack marker 0xc1".into()),
        };
        // A length past the end fails at the next read or below; every pass moves `at` on by
        // a byte at least, so the loop ends within `buf` whatever the counts say. The sums
        // saturate rather than wrap (a 32-bit length on a 32-bit target).
        at = at.saturating_add(jump);
        values = values.saturating_add(nested);
    }
    *rest = buf.get(at..).ok_or_else(truncated)?;
    Ok(())
}

/// A manifest's bytes: its own checksum comes first, so that a torn or foreign value is caught
/// before anything is trusted.
pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let (body, crc) = encode(m);
    let mut out = crc.to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Reads a manifest written by [`encode_manifest`], refusing unknown format versions.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, FormatError> {
    let Some((crc, body)) = bytes.split_first_chunk::<4>() else {
        return Err(FormatError::decode(
            "manifest",
            format!("{} bytes", bytes.len()),
        ));
    };
    let m: Manifest = decode(body, u32::from_be_bytes(*crc), "manifest")?;
    check_version(m.format)?;
    Ok(m)
}

fn check_version(found: u32) -> Result<(), FormatError> {
    if (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(FormatError::UnknownVersion { found })
    }
}

/// The first bytes of a snapshot file (`astrolabe snapshot export`).
pub const FILE_MAGIC: &[u8; 8] = b"ASTRSNP1";

/// A snapshot as a file: the objects, and where they came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// [`FORMAT_VERSION`] when written.
    pub format: u32,
    /// Unix milliseconds when exported.
    pub created_ms: u64,
    /// The key prefix exported from.
    pub prefix: String,
    /// The objects.
    pub objects: Vec<Arc<Object>>,
}

/// The bytes of a snapshot file: magic, CRC-32 of the rest, then the encoded [`SnapshotFile`].
pub fn encode_file(f: &SnapshotFile) -> Vec<u8> {
    let (body, crc) = encode(f);
    let mut out = FILE_MAGIC.to_vec();
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Whether `bytes` start like a snapshot file.
pub fn is_file(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_MAGIC)
}

/// Reads a snapshot file, refusing a bad checksum or an unknown format version.
pub fn decode_file(bytes: &[u8]) -> Result<SnapshotFile, FormatError> {
    let rest = bytes
        .strip_prefix(FILE_MAGIC.as_slice())
        .ok_or_else(|| FormatError::decode("snapshot file", "not a snapshot file"))?;
    let Some((crc, body)) = rest.split_first_chunk::<4>() else {
        return Err(FormatError::decode("snapshot file", "truncated"));
    };
    let f: SnapshotFile = decode(body, u32::from_be_bytes(*crc), "snapshot file")?;
    check_version(f.format)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Time;
    use crate::relations::Projector;
    use serde_json::json;

    fn object() -> Arc<Object> {
        Arc::new(
            Projector::default()
                .project(&json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "n", "uid": "3f2c1a9e-8b7d-4c6e-a5f4-0123456789ab",
                        "creationTimestamp": "2024-05-01T12:00:00Z", "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "r", "uid": "x"}],
                        "annotations": {"meta.helm.sh/release-name": "r", "meta.helm.sh/release-namespace": "n"}},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}],
                        "volumes": [{"name": "v", "configMap": {"name": "cm"}}]},
                    "status": {"phase": "Running"}}))
                .unwrap(),
        )
    }

    #[test]
    fn objects_and_batches_round_trip() {
        let b = Batch {
            format: FORMAT_VERSION,
            graph_generation: 7,
            ops: vec![Op::Upsert(object()), Op::Delete(Uid::parse("gone"))],
        };
        let (bytes, crc) = encode(&b);
        assert_eq!(decode::<Batch>(&bytes, crc, "batch").unwrap(), b);
    }

    #[test]
    fn encoding_with_yield_points_makes_the_same_bytes() {
        // The borrowed, yielding forms the writer encodes, with more items than between two
        // yield points, and not a multiple of it.
        let objects = objects(2 * YIELD_EVERY + 5);
        let ops: Vec<Op> = objects.iter().cloned().map(Op::Upsert).collect();
        let yielding = Batch {
            format: FORMAT_VERSION,
            graph_generation: 3,
            ops: Yielding(ops.as_slice()),
        };
        let plain = Batch {
            format: FORMAT_VERSION,
            graph_generation: 3,
            ops: ops.clone(),
        };
        assert_eq!(encode(&yielding), encode(&plain));
        // A snapshot chunk: references to the objects, as the writer holds them.
        let refs: Vec<&Arc<Object>> = objects.iter().collect();
        let (bytes, crc) = encode(&Yielding(refs.as_slice()));
        assert_eq!((bytes.clone(), crc), encode(&objects));
        assert_eq!(
            decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk").unwrap(),
            objects
        );
    }

    #[test]
    fn bytes_after_the_value_are_refused() {
        let value = vec![object(), object()];
        let mut packed = Vec::new();
        rmp_serde::encode::write_named(&mut packed, &value).unwrap();
        let seal = |packed: &[u8]| {
            let compressed = lz4_flex::compress_prepend_size(packed);
            let crc = crc32fast::hash(&compressed);
            (compressed, crc)
        };
        let (bytes, crc) = seal(&packed);
        assert_eq!(
            decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk").unwrap(),
            value
        );
        // A third object after the two-element array, behind a good checksum.
        rmp_serde::encode::write_named(&mut packed, &object()).unwrap();
        let (bytes, crc) = seal(&packed);
        let e = decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk").unwrap_err();
        assert!(e.to_string().contains("bytes after the value"), "{e}");
    }

    /// One value of each MessagePack type, in every width its length or payload can take.
    fn one_of_each_type() -> Vec<Vec<u8>> {
        let mut cases = vec![
            vec![0x05],
            vec![0xe0],
            vec![0xc0],
            vec![0xc2],
            vec![0xc3],
            vec![0xcc, 1],
            vec![0xcd, 0, 1],
            vec![0xce, 0, 0, 0, 1],
            vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![0xd0, 0xff],
            vec![0xd1, 0xff, 0xff],
            vec![0xd2, 0xff, 0xff, 0xff, 0xff],
            vec![0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xca, 0x3f, 0x80, 0, 0],
            vec![0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            vec![0xa3, b'a', b'b', b'c'],
            vec![0xd9, 3, b'a', b'b', b'c'],
            vec![0xda, 0, 3, b'a', b'b', b'c'],
            vec![0xdb, 0, 0, 0, 3, b'a', b'b', b'c'],
            vec![0xc4, 2, 7, 8],
            vec![0xc5, 0, 2, 7, 8],
            vec![0xc6, 0, 0, 0, 2, 7, 8],
            vec![0xc7, 2, 9, 7, 8],
            vec![0xc8, 0, 2, 9, 7, 8],
            vec![0xc9, 0, 0, 0, 2, 9, 7, 8],
        ];
        // fixext 1, 2, 4, 8 and 16: a type byte, then the payload.
        for (marker, n) in [(0xd4, 1), (0xd5, 2), (0xd6, 4), (0xd7, 8), (0xd8, 16)] {
            let mut v = vec![marker, 9];
            v.resize(2 + n, 7);
            cases.push(v);
        }
        // Containers of two scalars (a map: one key and its value), in each width.
        cases.extend([
            vec![0x92, 1, 2],
            vec![0xdc, 0, 2, 1, 2],
            vec![0xdd, 0, 0, 0, 2, 1, 2],
            vec![0x81, 0xa1, b'k', 2],
            vec![0xde, 0, 1, 0xa1, b'k', 2],
            vec![0xdf, 0, 0, 0, 1, 0xa1, b'k', 2],
        ]);
        // And an array holding every case above, nested.
        let mut all = vec![0xdc, 0, u8::try_from(cases.len()).unwrap()];
        cases.iter().for_each(|c| all.extend(c));
        cases.push(all);
        cases
    }

    #[test]
    fn the_walk_steps_over_exactly_one_value_of_any_type() {
        for case in one_of_each_type() {
            // Followed by another value, which the walk must leave.
            let mut bytes = case.clone();
            bytes.push(0x2a);
            let mut rest = &bytes[..];
            skip_value(&mut rest).unwrap_or_else(|e| panic!("{case:x?}: {e}"));
            assert_eq!(rest, [0x2a], "{case:x?}");
            // rmp-serde reads the same value: the walk and the decoder agree on its end.
            let mut reader = &bytes[..];
            let _: serde::de::IgnoredAny = rmp_serde::decode::from_read(&mut reader)
                .unwrap_or_else(|e| panic!("{case:x?}: {e}"));
            assert_eq!(reader, [0x2a], "{case:x?}");
            // Every value cut short is refused.
            for cut in 0..case.len() {
                let mut rest = &case[..cut];
                assert!(skip_value(&mut rest).is_err(), "{case:x?} cut to {cut}");
            }
        }
        let mut rest = &[0xc1][..];
        assert!(skip_value(&mut rest).is_err(), "0xc1 is never used");
    }

    fn objects(n: usize) -> Vec<Arc<Object>> {
        (0..n)
            .map(|i| {
                let mut o = Object::clone(&object());
                o.uid = Uid::parse(&format!("3f2c1a9e-8b7d-4c6e-a5f4-{i:012}"));
                o.name = format!("p{i}").into();
                Arc::new(o)
            })
            .collect()
    }

    #[test]
    fn chunks_decode_with_the_known_objects_skipped() {
        let objects = objects(5);
        let (bytes, crc) = encode(&objects);
        let all = decode_chunk(&bytes, crc, "chunk", |_| false).unwrap();
        assert_eq!(all.len(), 5);
        for (entry, o) in all.iter().zip(&objects) {
            assert!(matches!(entry, ChunkEntry::Decoded(d) if d == o));
        }
        let known = [objects[1].uid.clone(), objects[4].uid.clone()];
        let some = decode_chunk(&bytes, crc, "chunk", |uid| known.contains(uid)).unwrap();
        assert!(matches!(&some[0], ChunkEntry::Decoded(d) if *d == objects[0]));
        assert!(matches!(some[1], ChunkEntry::Skipped));
        assert!(matches!(&some[2], ChunkEntry::Decoded(d) if *d == objects[2]));
        assert!(matches!(&some[3], ChunkEntry::Decoded(d) if *d == objects[3]));
        assert!(matches!(some[4], ChunkEntry::Skipped));
        // Not a chunk, or cut short: an error, not a guess.
        let (bytes, crc) = encode(&7u32);
        assert!(decode_chunk(&bytes, crc, "chunk", |_| false).is_err());
        let mut packed = Vec::new();
        rmp_serde::encode::write_named(&mut packed, &objects).unwrap();
        for cut in [1, packed.len() / 2, packed.len() - 1] {
            let bytes = lz4_flex::compress_prepend_size(&packed[..cut]);
            let crc = crc32fast::hash(&bytes);
            assert!(
                decode_chunk(&bytes, crc, "chunk", |_| false).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn log_parts_are_indexed_and_only_the_states_asked_for_decoded() {
        let objects = objects(3);
        let b = Batch {
            format: FORMAT_VERSION,
            graph_generation: 300,
            ops: vec![
                Op::Upsert(objects[0].clone()),
                Op::Delete(objects[1].uid.clone()),
                Op::Upsert(objects[2].clone()),
            ],
        };
        let (bytes, crc) = encode(&b);
        let index = index_batch(&bytes, crc, "part").unwrap();
        assert_eq!(index.graph_generation, 300);
        let uids: Vec<&Uid> = index.ops.iter().map(|(u, _)| u).collect();
        assert_eq!(uids, [&objects[0].uid, &objects[1].uid, &objects[2].uid]);
        assert!(matches!(index.ops[1].1, LogOp::Deleted));
        let states: Vec<_> = [&index.ops[2].1, &index.ops[0].1]
            .into_iter()
            .map(|op| match op {
                LogOp::At { range, group } => {
                    assert_eq!(*group, rustc_hash::FxBuildHasher.hash_one("n"));
                    decode_state(&index.packed, range.clone(), "part").unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(states, [objects[2].clone(), objects[0].clone()]);
        assert!(decode_state(&index.packed, 0..1 << 30, "part").is_err());
        assert!(decode_state(&index.packed, 1..3, "part").is_err());

        // Another layout of the same batch (fields by position) is decoded in full instead.
        let packed = rmp_serde::to_vec(&b).unwrap();
        let bytes = lz4_flex::compress_prepend_size(&packed);
        let index = index_batch(&bytes, crc32fast::hash(&bytes), "part").unwrap();
        assert_eq!(index.graph_generation, 300);
        assert!(matches!(&index.ops[0].1, LogOp::Decoded(o) if *o == objects[0]));
        assert!(matches!(index.ops[1].1, LogOp::Deleted));

        // An unknown version is refused either way.
        let newer = Batch { format: 99, ..b };
        let (bytes, crc) = encode(&newer);
        assert_eq!(
            index_batch(&bytes, crc, "part").unwrap_err(),
            FormatError::UnknownVersion { found: 99 }
        );
    }

    /// `value` with uids and timestamps as text, as format version 1 wrote them (the field
    /// names are this build's; `testdata/` has the old names).
    fn encode_text<T: Serialize>(value: &T) -> (Vec<u8>, u32) {
        let mut packed = Vec::new();
        let mut s = rmp_serde::Serializer::new(&mut packed)
            .with_struct_map()
            .with_human_readable();
        value.serialize(&mut s).unwrap();
        let compressed = lz4_flex::compress_prepend_size(&packed);
        let crc = crc32fast::hash(&compressed);
        (compressed, crc)
    }

    #[test]
    fn uids_and_times_are_binary_and_version_1_text_is_still_read() {
        let objects = objects(3);
        let text = objects[0].uid.to_string();
        let unpacked = |(bytes, crc): (Vec<u8>, u32)| unpack(&bytes, crc, "x").unwrap();
        let binary = unpacked(encode(&objects));
        let text_form = unpacked(encode_text(&objects));
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(
            contains(&text_form, text.as_bytes()) && contains(&text_form, b"2024-05-01T12:00:00Z")
        );
        assert!(!contains(&binary, text.as_bytes()) && !contains(&binary, b"2024-05-01T12:00:00Z"));
        assert!(
            binary.len() + 3 * 30 <= text_form.len(),
            "{} vs {} bytes",
            binary.len(),
            text_form.len()
        );
        assert_eq!(objects[0].created.map(Time::unix), Some(1_714_564_800));

        // Text uids and times (version 1) decode to the same objects, in full and through the
        // walks.
        let (bytes, crc) = encode_text(&objects);
        assert_eq!(
            decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk").unwrap(),
            objects
        );
        let known = [objects[1].uid.clone()];
        let some = decode_chunk(&bytes, crc, "chunk", |uid| known.contains(uid)).unwrap();
        assert!(matches!(&some[0], ChunkEntry::Decoded(d) if *d == objects[0]));
        assert!(matches!(some[1], ChunkEntry::Skipped));
        let b = Batch {
            format: 1,
            graph_generation: 9,
            ops: vec![
                Op::Upsert(objects[0].clone()),
                Op::Delete(objects[1].uid.clone()),
                Op::Delete(Uid::parse("not-a-uuid")),
            ],
        };
        let (bytes, crc) = encode_text(&b);
        assert_eq!(decode::<Batch>(&bytes, crc, "batch").unwrap(), b);
        let index = index_batch(&bytes, crc, "part").unwrap();
        let uids: Vec<&Uid> = index.ops.iter().map(|(u, _)| u).collect();
        assert_eq!(
            uids,
            [&objects[0].uid, &objects[1].uid, &Uid::parse("not-a-uuid")]
        );
        match &index.ops[0].1 {
            LogOp::At { range, .. } => assert_eq!(
                decode_state(&index.packed, range.clone(), "part").unwrap(),
                objects[0]
            ),
            other => panic!("{other:?}"),
        }

        // JSON keeps the text forms.
        let json = serde_json::to_value(&*objects[0]).unwrap();
        assert_eq!(json["u"], text.as_str());
        assert_eq!(json["c"], "2024-05-01T12:00:00Z");
        assert_eq!(serde_json::from_value::<Object>(json).unwrap(), *objects[0]);
    }

    /// Data that the build before version 3 wrote (`testdata/`, made with that build from 54 demo
    /// objects: every kind and spec variant the demo has, a deleted object, a Helm release, a
    /// claimed volume; then a deletion): a snapshot chunk, a log part, and the same objects as
    /// its JSON (long field names, like the binary form then). Not to be regenerated: it stands
    /// for what older servers left in Redis.
    const CHUNK_V2: &[u8] = include_bytes!("testdata/chunk-v2.lz4");
    const LOG_PART_V2: &[u8] = include_bytes!("testdata/log-part-v2.lz4");
    const OBJECTS_V2_JSON: &str = include_str!("testdata/objects-v2.json");

    /// Every scalar in a JSON document, keys left out, sorted: equal for the same objects whatever
    /// their field names are.
    fn leaves(v: &serde_json::Value) -> Vec<String> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out)),
                other => out.push(other.to_string()),
            }
        }
        let mut out = Vec::new();
        walk(v, &mut out);
        out.sort();
        out
    }

    #[test]
    fn version_2_data_with_long_field_names_is_still_read() {
        let expected: Vec<Arc<Object>> = serde_json::from_str(OBJECTS_V2_JSON).unwrap();
        assert_eq!(expected.len(), 54);
        // No field fell back to a default for want of its old name: the same values, renamed.
        let old: serde_json::Value = serde_json::from_str(OBJECTS_V2_JSON).unwrap();
        let new = serde_json::to_value(&expected).unwrap();
        let (old_leaves, new_leaves) = (leaves(&old), leaves(&new));
        let lost: Vec<_> = old_leaves
            .iter()
            .filter(|l| !new_leaves.contains(l))
            .collect();
        assert!(old_leaves == new_leaves, "lost: {lost:?}");
        assert!(old.to_string().contains("\"resource_version\""));
        assert!(!new.to_string().contains("\"resource_version\""));

        // The snapshot chunk: decoded in full, and walked (uid found under its old name).
        let crc = crc32fast::hash(CHUNK_V2);
        let chunk: Vec<Arc<Object>> = decode(CHUNK_V2, crc, "chunk").unwrap();
        assert_eq!(chunk, expected);
        let known = [expected[3].uid.clone()];
        let entries = decode_chunk(CHUNK_V2, crc, "chunk", |uid| known.contains(uid)).unwrap();
        assert_eq!(entries.len(), expected.len());
        for (i, (entry, o)) in entries.iter().zip(&expected).enumerate() {
            match entry {
                ChunkEntry::Skipped => assert_eq!(i, 3),
                ChunkEntry::Decoded(d) => assert_eq!(d, o),
            }
        }

        // The log part: indexed by the walk (uid and namespace under their old names), and
        // each state decoded from where the walk found it.
        let index = index_batch(LOG_PART_V2, crc32fast::hash(LOG_PART_V2), "part").unwrap();
        assert_eq!(index.graph_generation, 42);
        assert_eq!(index.ops.len(), expected.len() + 1);
        for ((uid, op), o) in index.ops.iter().zip(&expected) {
            assert_eq!(*uid, o.uid);
            match op {
                LogOp::At { range, group } => {
                    let ns = rustc_hash::FxBuildHasher.hash_one(o.namespace.as_str());
                    assert_eq!(*group, ns, "{}", o.name);
                    assert_eq!(
                        decode_state(&index.packed, range.clone(), "part").unwrap(),
                        *o
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(index.ops.last().unwrap().1, LogOp::Deleted));

        // Written again, the same objects take the short names, and far fewer bytes.
        let v2 = unpack(CHUNK_V2, crc32fast::hash(CHUNK_V2), "chunk").unwrap();
        let (bytes, crc) = encode(&expected);
        let v3 = unpack(&bytes, crc, "chunk").unwrap();
        assert!(
            v3.len() * 4 < v2.len() * 3,
            "{} vs {} bytes",
            v3.len(),
            v2.len()
        );
        assert_eq!(
            decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk").unwrap(),
            expected
        );
    }

    #[test]
    fn corruption_and_unknown_versions_are_refused() {
        let (mut bytes, crc) = encode(&vec![object()]);
        bytes[10] ^= 0xff;
        assert!(matches!(
            decode::<Vec<Arc<Object>>>(&bytes, crc, "chunk 0"),
            Err(FormatError::Checksum { .. })
        ));
        let truncated = &encode(&vec![object()]).0[..20];
        let crc = crc32fast::hash(truncated);
        assert!(matches!(
            decode::<Vec<Arc<Object>>>(truncated, crc, "chunk 0"),
            Err(FormatError::Decode { .. })
        ));
        let mut m = Manifest {
            format: 99,
            generation: 1,
            created_ms: 0,
            objects: 0,
            graph_generation: 0,
            log_id: "0-0".into(),
            chunks: vec![],
        };
        assert_eq!(
            decode_manifest(&encode_manifest(&m)),
            Err(FormatError::UnknownVersion { found: 99 })
        );
        m.format = FORMAT_VERSION;
        assert_eq!(decode_manifest(&encode_manifest(&m)).unwrap(), m);
        assert!(decode_manifest(b"not a manifest").is_err());
        assert!(decode_manifest(b"").is_err());
    }
}
