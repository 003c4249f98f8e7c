//! The Redis connection flags shared by `serve` and `snapshot`.

use clap::Args;

use crate::persistence::RedisConfig;

/// Where a graph is kept in Redis. Every flag can also be set through its environment variable.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis: `host:port`, or a `redis://` / `rediss://` URL.
    #[arg(long, env = "REDIS_ADDR", default_value = "127.0.0.1:6379")]
    pub redis_addr: String,
    /// Redis ACL user.
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Redis database number.
    #[arg(long, env = "REDIS_DB", default_value_t = 0)]
    pub redis_db: i64,
    /// Connect to Redis with TLS.
    #[arg(long, env = "REDIS_TLS", value_parser = clap::builder::BoolishValueParser::new(),
          default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub redis_tls: bool,
    /// Sentinels (`host:port`, repeatable or comma-separated); Redis is then the master they
    /// name.
    #[arg(long, env = "REDIS_SENTINEL", value_delimiter = ',')]
    pub redis_sentinel: Vec<String>,
    /// The master's name at the sentinels.
    #[arg(long, env = "REDIS_MASTER_NAME", default_value = "mymaster")]
    pub redis_master_name: String,
    /// Redis Cluster nodes (`host:port`, repeatable or comma-separated).
    #[arg(long, env = "REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// The cluster's name: the default key prefix is `astrolabe:{NAME}`, so that several
    /// clusters can share one Redis.
    #[arg(long, env = "ASTROLABE_CLUSTER_NAME", default_value = "default")]
    pub cluster_name: String,
    /// Key prefix; it must contain a `{hash tag}` so that one graph's keys share a slot (one is
    /// added around the whole prefix when it has none).
    #[arg(long, env = "ASTROLABE_REDIS_KEY_PREFIX")]
    pub redis_key_prefix: Option<String>,
}

impl RedisArgs {
    /// The connection these flags describe.
    pub fn config(&self) -> RedisConfig {
        let prefix = match &self.redis_key_prefix {
            Some(p) if p.contains('{') && p.contains('}') => p.clone(),
            Some(p) => format!("{{{p}}}"),
            None => format!("astrolabe:{{{}}}", self.cluster_name),
        };
        RedisConfig {
            addr: self.redis_addr.clone(),
            username: self.redis_username.clone(),
            password: self.redis_password.clone(),
            db: self.redis_db,
            tls: self.redis_tls,
            sentinels: self.redis_sentinel.clone(),
            master_name: self.redis_master_name.clone(),
            cluster: self.redis_cluster.clone(),
            prefix,
            ..RedisConfig::default()
        }
    }

    /// Which Redis, in words, for messages.
    pub fn describe(&self) -> String {
        if !self.redis_cluster.is_empty() {
            format!("the Redis Cluster at {}", self.redis_cluster.join(","))
        } else if !self.redis_sentinel.is_empty() {
            format!(
                "the master {:?} of the sentinels {}",
                self.redis_master_name,
                self.redis_sentinel.join(",")
            )
        } else {
            format!("Redis at {}", self.redis_addr)
        }
    }
}
