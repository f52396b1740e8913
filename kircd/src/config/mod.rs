//! kircd's configuration: a TOML file under the XDG config dir, overridden by
//! `KIRC_*` environment variables, overridden by command-line flags.
//!
//! Loading checks every value against [`keys::KEYS`] and every cross-key rule
//! (a certificate file must exist, a SASL setup needs a user, …) before anything
//! connects or binds, and each error names the key, where its value came from
//! and how to fix it. Secrets are read into [`SecretString`]s and never printed.

pub mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use keys::{KEYS, KeySpec, Kind};

/// Where a value came from, for error messages and `kircd config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the config file {path}: {source}\n  fix: check the path given with --config or KIRC_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` in {origin}\n  fix: {fix}")]
    UnknownKey {
        key: String,
        origin: Origin,
        fix: String,
    },
    #[error("invalid `{key}` (from {origin}): {problem}\n  fix: {fix}")]
    Invalid {
        key: &'static str,
        origin: Origin,
        problem: String,
        fix: String,
    },
}

/// How the actor's own Kafka cluster authenticates kircd.
#[derive(Debug, Clone)]
pub enum KafkaSecurity {
    Plaintext,
    Ssl {
        ca_file: Option<PathBuf>,
        client_cert_file: PathBuf,
        client_key_file: PathBuf,
    },
    SaslSsl {
        ca_file: Option<PathBuf>,
        mechanism: String,
        username: String,
        password: SecretString,
    },
}

/// The four topics of an actor: its inboxes (`data-in`, `rpc-in`), where
/// contacts produce, and its outboxes (`data-out`, `rpc-out`), which its
/// delivery workers drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub data_in: String,
    pub data_out: String,
    pub rpc_in: String,
    pub rpc_out: String,
}

impl TopicNames {
    /// Each topic with its role name, in a stable order.
    pub fn with_roles(&self) -> [(&'static str, &str); 4] {
        [
            ("data-in", &self.data_in),
            ("data-out", &self.data_out),
            ("rpc-in", &self.rpc_in),
            ("rpc-out", &self.rpc_out),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub security: KafkaSecurity,
    pub topics: TopicNames,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Holds credentials: only ever shown through [`PostgresConfig::endpoint`].
    pub url: SecretString,
    pub password: Option<SecretString>,
    pub max_connections: u32,
    /// host:port/database, without credentials.
    pub endpoint: String,
}

#[derive(Debug, Clone)]
pub struct ValkeyConfig {
    /// Holds credentials: only ever shown through [`ValkeyConfig::endpoint`].
    pub url: SecretString,
    pub password: Option<SecretString>,
    pub key_prefix: String,
    /// host:port/db, without credentials.
    pub endpoint: String,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub socket: PathBuf,
    pub event_buffer: usize,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub directory: PathBuf,
    pub file: bool,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// What contacts get in the public profile to reach this actor's inbox.
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub bootstrap_servers: String,
    pub security_protocol: String,
    pub sasl_mechanism: String,
    pub username: Option<String>,
    /// The write-only credential: shared with contacts, yet never logged.
    pub password: Option<SecretString>,
    pub ca_pem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MessagingConfig {
    pub read_receipts: bool,
    /// Whether this kircd advertises and sends receipt ranges.
    pub receipt_ranges: bool,
    pub invite_ttl: Duration,
    /// The most members a channel this actor creates takes.
    pub channel_max_members: usize,
    pub outbox_check_interval: Duration,
    pub quarantine_max_rows: u64,
    pub quarantine_max_bytes: u64,
    pub rejection_log_burst: u32,
    pub rejection_log_interval: Duration,
    pub keep_warm_interval: Duration,
    pub budget_bytes_per_second: u64,
}

#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub heartbeat: Duration,
    pub idle: Duration,
    /// Records per minute one contact may send.
    pub rate_limit: u64,
}

/// Which ICE candidates the direct path may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcePolicy {
    All,
    /// Only through the TURN server.
    Relay,
}

/// The direct path (WebRTC).
#[derive(Debug, Clone)]
pub struct RtcConfig {
    pub enabled: bool,
    pub stun_urls: Vec<String>,
    pub turn: Option<TurnServer>,
    pub ice_policy: IcePolicy,
    pub udp_bind: Vec<std::net::SocketAddr>,
    pub max_peers: usize,
}

/// File transfers.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Absolute.
    pub download_dir: PathBuf,
    pub auto_accept_bytes: u64,
    pub max_offer_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct TurnServer {
    pub url: String,
    pub username: String,
    pub credential: SecretString,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file the configuration was read from, if any.
    pub file: Option<PathBuf>,
    pub actor_name: String,
    pub identity_file: PathBuf,
    pub public: PublicConfig,
    pub messaging: MessagingConfig,
    pub presence: PresenceConfig,
    pub rtc: RtcConfig,
    pub files: FilesConfig,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub valkey: ValkeyConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub health: HealthConfig,
    /// Every key that has a value, with its origin, for `kircd config show`.
    pub values: Vec<(&'static KeySpec, String, Origin)>,
}

/// What to load the configuration from.
#[derive(Debug, Default)]
pub struct Sources {
    /// A config file given explicitly (`--config`, `KIRC_CONFIG`): it must exist.
    pub explicit_file: Option<PathBuf>,
    /// The environment, as (name, value) pairs; only `KIRC_*` names are read.
    pub env: Vec<(String, String)>,
    /// Command-line overrides, by key.
    pub flags: Vec<(&'static str, &'static str, String)>,
}

impl Sources {
    /// The process's own environment and the given flags.
    pub fn from_process(
        explicit_file: Option<PathBuf>,
        flags: Vec<(&'static str, &'static str, String)>,
    ) -> Self {
        Sources {
            explicit_file,
            env: std::env::vars().collect(),
            flags,
        }
    }
}

/// The config file kircd reads when none is given:
/// `$XDG_CONFIG_HOME/kirc/kircd.toml`.
pub fn default_file() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "kirc").map(|dirs| dirs.config_dir().join("kircd.toml"))
}

fn default_log_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "kirc")
        .map(|dirs| {
            dirs.state_dir()
                .unwrap_or_else(|| dirs.data_local_dir())
                .join("logs")
        })
        .unwrap_or_else(|| std::env::temp_dir().join("kirc-logs"))
}

mod load;
mod sections;
mod values;

use load::Raw;
pub use load::load;
pub use sections::redact_url;
use values::Values;

#[cfg(test)]
mod tests;
