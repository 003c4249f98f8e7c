//! Redis: connections (one server, Sentinel, or Cluster, through the redis crate's own support),
//! the key schema, and the commands persistence needs.
//!
//! Keys of one graph share the hash tag of the prefix (`astrolabe:{name}:...`), so they live in
//! one slot: the snapshot switch can be one atomic script even on a Redis Cluster.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:log` | stream | one entry per write batch, in parts encoded in parallel: `b`, `b1`, … = encoded `Batch`es, `c`, `c1`, … = their CRC-32s |
//! | `P:snapseq` | string | counter giving each snapshot a new generation |
//! | `P:generations` | set | the snapshot generations that have keys |
//! | `P:snap:G:manifest` | string | the encoded [`Manifest`] of generation G |
//! | `P:snap:G:chunk:I` | string | chunk I of generation G: encoded objects |
//! | `P:current` | string | the generation recovery reads |

use std::time::Duration;

use redis::{ConnectionLike, IntoConnectionInfo, RedisResult, Value};
use thiserror::Error;

use super::format::{self, FormatError, Manifest};

/// Where Redis is, and how to reach it.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `host:port`, or a `redis://` / `rediss://` URL.
    pub addr: String,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Database number (single server and Sentinel only).
    pub db: i64,
    /// Connect with TLS (also implied by a `rediss://` URL).
    pub tls: bool,
    /// Sentinels (`host:port`); when set, `addr` is not used.
    pub sentinels: Vec<String>,
    /// The master's name at the sentinels.
    pub master_name: String,
    /// Cluster nodes (`host:port`); when set, `addr` is not used.
    pub cluster: Vec<String>,
    /// Key prefix, with its hash tag (`astrolabe:{name}`).
    pub prefix: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addr: "127.0.0.1:6379".into(),
            username: None,
            password: None,
            db: 0,
            tls: false,
            sentinels: Vec::new(),
            master_name: "mymaster".into(),
            cluster: Vec::new(),
            prefix: "astrolabe:{default}".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A failure of a persistence command.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Redis could not be reached, or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Stored data cannot be read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Stored data is not what this service writes there.
    #[error("{0}")]
    Foreign(String),
}

/// A log entry read back: its id and its encoded parts (bytes, crc).
pub(super) type LogEntry = (String, Vec<(Vec<u8>, u32)>);

/// A connection to whichever Redis the configuration names.
pub struct Store {
    conn: Box<dyn ConnectionLike + Send>,
    prefix: String,
    /// A Redis Cluster: the redis crate's cluster connection takes no pipelines (its commands go
    /// one by one, each routed to the slot's node), and no one node answers for the whole.
    cluster: bool,
}

impl RedisConfig {
    /// The connection info for a `host:port` or URL, with the configured credentials, database
    /// and TLS.
    fn info(&self, addr: &str) -> RedisResult<redis::ConnectionInfo> {
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{}://{addr}", if self.tls { "rediss" } else { "redis" })
        };
        let mut info = url.as_str().into_connection_info()?;
        let mut redis = info.redis_settings().clone();
        if let Some(u) = &self.username {
            redis = redis.set_username(u.clone());
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p.clone());
        }
        if self.db != 0 {
            redis = redis.set_db(self.db);
        }
        info = info.set_redis_settings(redis);
        Ok(info)
    }

    /// Opens a connection: to the server, to the master the sentinels name, or to the cluster.
    pub fn connect(&self) -> Result<Store, StoreError> {
        let conn: Box<dyn ConnectionLike + Send> = if !self.cluster.is_empty() {
            let nodes = self
                .cluster
                .iter()
                .map(|a| self.info(a))
                .collect::<RedisResult<Vec<_>>>()?;
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(self.timeout)
                .response_timeout(self.timeout)
                .build()?;
            Box::new(client.get_connection()?)
        } else if !self.sentinels.is_empty() {
            let sentinels = self
                .sentinels
                .iter()
                .map(|a| self.info(a))
                .collect::<RedisResult<Vec<_>>>()?;
            let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(self.info(&self.addr)?.redis_settings().clone());
            let mut client = redis::sentinel::SentinelClient::build(
                sentinels,
                self.master_name.clone(),
                Some(node),
                redis::sentinel::SentinelServerType::Master,
            )?;
            let conn = client.get_connection()?;
            conn.set_read_timeout(Some(self.timeout))?;
            conn.set_write_timeout(Some(self.timeout))?;
            Box::new(conn)
        } else {
            let client = redis::Client::open(self.info(&self.addr)?)?;
            let conn = client.get_connection_with_timeout(self.timeout)?;
            conn.set_read_timeout(Some(self.timeout))?;
            conn.set_write_timeout(Some(self.timeout))?;
            Box::new(conn)
        };
        Ok(Store {
            conn,
            prefix: self.prefix.clone(),
            cluster: !self.cluster.is_empty(),
        })
    }
}

/// Switches the current generation and trims the log entries the new snapshot includes, in one
/// atomic step.
const SWITCH: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2])
return 1
";

impl Store {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    fn chunk_key(&self, generation: u64, i: usize) -> String {
        self.key(&format!("snap:{generation}:chunk:{i}"))
    }

    fn manifest_key(&self, generation: u64) -> String {
        self.key(&format!("snap:{generation}:manifest"))
    }

    /// Checks the connection.
    pub fn ping(&mut self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query(&mut *self.conn)?;
        Ok(())
    }

    /// Which Redis process answers: its `run_id`, new at every start. A reconnect can then tell
    /// a Redis that restarted (and may have lost its last second of writes) from a connection
    /// that broke while Redis kept everything. `None` where it cannot be told: on a Cluster (no
    /// one node answers for the whole), or when `INFO` is refused.
    pub fn run_id(&mut self) -> Option<String> {
        if self.cluster {
            return None;
        }
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut *self.conn)
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
    }

    /// Appends one log entry made of encoded parts (each a `Batch` with its share of the
    /// operations, encoded in parallel): one XADD, so the parts are written together or not at
    /// all. Fields `b`/`c` hold part 0 and its CRC, `b1`/`c1` part 1, and so on. Returns the
    /// entry's id.
    pub fn append(&mut self, parts: &[(Vec<u8>, u32)]) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key("log")).arg("*");
        for (i, (bytes, crc)) in parts.iter().enumerate() {
            let suffix = if i == 0 { String::new() } else { i.to_string() };
            cmd.arg(format!("b{suffix}"))
                .arg(bytes.as_slice())
                .arg(format!("c{suffix}"))
                .arg(*crc);
        }
        let id: String = cmd.query(&mut *self.conn)?;
        Ok(id)
    }

    /// A fresh snapshot generation number.
    pub fn next_generation(&mut self) -> Result<u64, StoreError> {
        let g: u64 = redis::cmd("INCR")
            .arg(self.key("snapseq"))
            .query(&mut *self.conn)?;
        Ok(g)
    }

    /// Starts writing snapshot generation `g`: it is listed (so that a failed write is cleaned
    /// up later), and its chunks and manifest follow ([`Store::write_chunks`],
    /// [`Store::write_manifest`]).
    pub fn begin_snapshot(&mut self, g: u64) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("SADD")
            .arg(self.key("generations"))
            .arg(g)
            .query(&mut *self.conn)?;
        Ok(())
    }

    /// How many chunks one round trip should carry: a few (they are large, and a pipeline is
    /// buffered whole), or one where the connection takes no pipelines.
    pub fn chunks_per_trip(&self) -> usize {
        if self.cluster { 1 } else { 4 }
    }

    /// Writes chunks `start..` of generation `g` in one round trip; returns the bytes written.
    pub fn write_chunks(
        &mut self,
        g: u64,
        start: usize,
        chunks: &[Vec<u8>],
    ) -> Result<u64, StoreError> {
        if !self.cluster {
            let mut pipe = redis::pipe();
            for (offset, bytes) in chunks.iter().enumerate() {
                pipe.cmd("SET")
                    .arg(self.chunk_key(g, start + offset))
                    .arg(bytes)
                    .ignore();
            }
            pipe.query::<()>(&mut *self.conn)?;
        } else {
            for (offset, bytes) in chunks.iter().enumerate() {
                let _: () = redis::cmd("SET")
                    .arg(self.chunk_key(g, start + offset))
                    .arg(bytes)
                    .query(&mut *self.conn)?;
            }
        }
        Ok(chunks.iter().map(|b| b.len() as u64).sum())
    }

    /// Writes a generation's manifest, once all its chunks are written: the generation is then
    /// complete (not yet current); returns the bytes written.
    pub fn write_manifest(&mut self, manifest: &Manifest) -> Result<u64, StoreError> {
        let m = format::encode_manifest(manifest);
        let written = m.len() as u64;
        let _: () = redis::cmd("SET")
            .arg(self.manifest_key(manifest.generation))
            .arg(m)
            .query(&mut *self.conn)?;
        Ok(written)
    }

    /// Makes `generation` current and trims the log up to (and including) `log_id`.
    pub fn switch(&mut self, generation: u64, log_id: &str) -> Result<(), StoreError> {
        let min_id = next_id(log_id);
        let _: i64 = redis::Script::new(SWITCH)
            .key(self.key("current"))
            .key(self.key("log"))
            .arg(generation)
            .arg(min_id)
            .invoke(&mut *self.conn)?;
        Ok(())
    }

    /// Deletes every snapshot generation other than `keep`. Only called after `keep` became
    /// current, so data is never removed before a newer good snapshot exists.
    pub fn remove_other_generations(&mut self, keep: u64) -> Result<usize, StoreError> {
        let generations: Vec<u64> = redis::cmd("SMEMBERS")
            .arg(self.key("generations"))
            .query(&mut *self.conn)?;
        let mut removed = 0;
        for g in generations.into_iter().filter(|g| *g != keep) {
            let mut i = 0;
            loop {
                let n: i64 = redis::cmd("DEL")
                    .arg(self.chunk_key(g, i))
                    .query(&mut *self.conn)?;
                if n == 0 {
                    break;
                }
                i += 1;
            }
            let _: i64 = redis::cmd("DEL")
                .arg(self.manifest_key(g))
                .query(&mut *self.conn)?;
            let _: i64 = redis::cmd("SREM")
                .arg(self.key("generations"))
                .arg(g)
                .query(&mut *self.conn)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The current generation, if one was ever switched in.
    pub fn current(&mut self) -> Result<Option<u64>, StoreError> {
        let v: Option<String> = redis::cmd("GET")
            .arg(self.key("current"))
            .query(&mut *self.conn)?;
        match v {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                StoreError::Foreign(format!(
                    "{} holds {s:?}, not a generation number",
                    self.key("current")
                ))
            }),
        }
    }

    /// The manifest of a generation.
    pub fn manifest(&mut self, generation: u64) -> Result<Manifest, StoreError> {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.manifest_key(generation))
            .query(&mut *self.conn)?;
        let bytes = bytes.ok_or_else(|| {
            StoreError::Foreign(format!(
                "generation {generation} is current but has no manifest"
            ))
        })?;
        Ok(format::decode_manifest(&bytes)?)
    }

    /// Chunk `i` of a generation, raw.
    pub fn chunk(&mut self, generation: u64, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.chunk_key(generation, i))
            .query(&mut *self.conn)?;
        Ok(bytes)
    }

    /// Log entries strictly after `after`, at most `count`: the id and the parts (batch bytes,
    /// crc), in order.
    pub fn log_after(&mut self, after: &str, count: usize) -> Result<Vec<LogEntry>, StoreError> {
        let start = if after == "0-0" {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let v: Value = redis::cmd("XRANGE")
            .arg(self.key("log"))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query(&mut *self.conn)?;
        let foreign =
            || StoreError::Foreign(format!("{} is not a stream of batches", self.key("log")));
        let Value::Array(entries) = v else {
            return Err(foreign());
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let (id, fields): (String, Vec<Value>) =
                redis::from_redis_value(e).map_err(|_| foreign())?;
            // Part i is b{i}/c{i} ("b"/"c" for part 0).
            let mut bytes: Vec<Option<Vec<u8>>> = Vec::new();
            let mut crcs: Vec<Option<u32>> = Vec::new();
            if fields.len() % 2 != 0 {
                return Err(foreign());
            }
            // Taken apart by value: a part is megabytes, not worth a copy.
            let mut fields = fields.into_iter();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                let k: String = redis::from_redis_value(k).map_err(|_| foreign())?;
                let (field, part) = k.split_at(1.min(k.len()));
                let part: usize = if part.is_empty() {
                    0
                } else {
                    match part.parse() {
                        Ok(i) if i > 0 && i < 4096 => i,
                        _ => continue,
                    }
                };
                match field {
                    "b" => {
                        if bytes.len() <= part {
                            bytes.resize(part + 1, None);
                        }
                        bytes[part] =
                            Some(redis::from_redis_value::<Vec<u8>>(v).map_err(|_| foreign())?);
                    }
                    "c" => {
                        if crcs.len() <= part {
                            crcs.resize(part + 1, None);
                        }
                        crcs[part] =
                            Some(redis::from_redis_value::<u32>(v).map_err(|_| foreign())?);
                    }
                    _ => {}
                }
            }
            if bytes.is_empty() || bytes.len() != crcs.len() {
                return Err(foreign());
            }
            let parts = bytes
                .into_iter()
                .zip(crcs)
                .map(|(b, c)| b.zip(c).ok_or_else(foreign))
                .collect::<Result<Vec<_>, _>>()?;
            out.push((id, parts));
        }
        Ok(out)
    }

    /// The id of the newest log entry ("0-0" when empty or absent).
    pub fn last_log_id(&mut self) -> Result<String, StoreError> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(self.key("log"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut *self.conn)?;
        match v {
            Value::Array(entries) => match entries.into_iter().next() {
                None => Ok("0-0".into()),
                Some(e) => {
                    let (id, _): (String, Value) = redis::from_redis_value(e).map_err(|_| {
                        StoreError::Foreign(format!(
                            "{} is not a stream of batches",
                            self.key("log")
                        ))
                    })?;
                    Ok(id)
                }
            },
            _ => Err(StoreError::Foreign(format!(
                "{} is not a stream of batches",
                self.key("log")
            ))),
        }
    }

    /// Warnings about how Redis keeps (or loses) data: nothing written to disk, or keys that
    /// may be evicted. Commands a managed Redis refuses (CONFIG) are skipped, not errors.
    pub fn hygiene(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let info: Option<String> = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut *self.conn)
            .ok();
        let aof = info
            .as_deref()
            .and_then(|i| i.lines().find_map(|l| l.strip_prefix("aof_enabled:")))
            .map(|v| v.trim() == "1");
        let save: Option<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut *self.conn)
            .ok();
        let rdb = save
            .as_ref()
            .map(|v| v.get(1).is_some_and(|s| !s.trim().is_empty()));
        if aof == Some(false) && rdb != Some(true) {
            warnings.push(
                "Redis keeps nothing on disk (no AOF, no RDB save points): a Redis restart loses the persisted graph; \
                 enable appendonly"
                    .to_string(),
            );
        }
        let policy: Option<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut *self.conn)
            .ok();
        if let Some(p) = policy.as_ref().and_then(|v| v.get(1))
            && p != "noeviction"
        {
            warnings.push(format!(
                "Redis maxmemory-policy is {p:?}: it may evict persisted keys; use noeviction"
            ));
        }
        warnings
    }
}

/// The stream id right after `id` (`ms-seq` → `ms-(seq+1)`), for an inclusive trim bound.
fn next_id(id: &str) -> String {
    match id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)))
    {
        Some((ms, seq)) => format!("{ms}-{}", seq + 1),
        None => "0-0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_ids_bound_trims() {
        assert_eq!(next_id("1700000000000-0"), "1700000000000-1");
        assert_eq!(next_id("5-41"), "5-42");
        assert_eq!(next_id("0-0"), "0-1");
        assert_eq!(next_id("junk"), "0-0");
    }
}
