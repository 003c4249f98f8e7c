//! The formats stored in Redis: snapshot manifests and chunks, and log batches.
//!
//! Every payload is MessagePack with named fields (a field can be added without breaking older
//! data), compressed with LZ4 (object projections repeat field names and values heavily), and
//! checked with a CRC-32 of the compressed bytes. Manifests carry a format version; a version this
//! build does not know is refused, never guessed at.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{Object, Uid};

/// The snapshot and log format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why stored data could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The data was written by a format this build does not know.
    #[error("unknown format version {found} (this build reads version {FORMAT_VERSION})")]
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

/// MessagePack (named fields), LZ4-compressed, with the CRC-32 of the compressed bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> (Vec<u8>, u32) {
    // The packed form only lives until it is compressed: its buffers are kept for the next
    // call, as growing a fresh multi-megabyte buffer costs more than the packing itself (page
    // faults, which also serialise the threads encoding in parallel).
    static BUFFERS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
    let mut packed = BUFFERS.lock().pop().unwrap_or_default();
    packed.clear();
    rmp_serde::encode::write_named(&mut packed, value).expect("our types always serialise");
    let compressed = lz4_flex::compress_prepend_size(&packed);
    let crc = crc32fast::hash(&compressed);
    let mut pool = BUFFERS.lock();
    if pool.len() < 16 {
        pool.push(packed);
    }
    (compressed, crc)
}

/// The inverse of [`encode`], checking the checksum first.
pub fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    crc: u32,
    what: &str,
) -> Result<T, FormatError> {
    let computed = crc32fast::hash(bytes);
    if computed != crc {
        return Err(FormatError::Checksum {
            what: what.to_string(),
            stored: crc,
            computed,
        });
    }
    let packed = lz4_flex::decompress_size_prepended(bytes).map_err(|e| FormatError::Decode {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    rmp_serde::from_slice(&packed).map_err(|e| FormatError::Decode {
        what: what.to_string(),
        reason: e.to_string(),
    })
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
        return Err(FormatError::Decode {
            what: "manifest".into(),
            reason: format!("{} bytes", bytes.len()),
        });
    };
    let m: Manifest = decode(body, u32::from_be_bytes(*crc), "manifest")?;
    check_version(m.format)?;
    Ok(m)
}

/// Reads one part of a log entry, refusing unknown format versions.
pub fn decode_batch(bytes: &[u8], crc: u32, what: &str) -> Result<Batch, FormatError> {
    let b: Batch = decode(bytes, crc, what)?;
    check_version(b.format)?;
    Ok(b)
}

fn check_version(found: u32) -> Result<(), FormatError> {
    if found == FORMAT_VERSION {
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
        .ok_or_else(|| FormatError::Decode {
            what: "snapshot file".into(),
            reason: "not a snapshot file".into(),
        })?;
    let Some((crc, body)) = rest.split_first_chunk::<4>() else {
        return Err(FormatError::Decode {
            what: "snapshot file".into(),
            reason: "truncated".into(),
        });
    };
    let f: SnapshotFile = decode(body, u32::from_be_bytes(*crc), "snapshot file")?;
    check_version(f.format)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relations::Projector;
    use serde_json::json;

    fn object() -> Arc<Object> {
        Arc::new(
            Projector::default()
                .project(&json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "n", "uid": "3f2c1a9e-8b7d-4c6e-a5f4-0123456789ab",
                        "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "r", "uid": "x"}],
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
        // The borrowed form the writer sends is the same bytes.
        let borrowed = Batch {
            format: b.format,
            graph_generation: b.graph_generation,
            ops: b.ops.as_slice(),
        };
        assert_eq!(encode(&borrowed), (bytes, crc));
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
