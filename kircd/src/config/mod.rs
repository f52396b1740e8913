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

/// The four topics of an actor (DESIGN §2).
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
    pub invite_ttl: Duration,
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

#[derive(Debug, Clone)]
pub struct Config {
    /// The file the configuration was read from, if any.
    pub file: Option<PathBuf>,
    pub actor_name: String,
    pub identity_file: PathBuf,
    pub public: PublicConfig,
    pub messaging: MessagingConfig,
    pub presence: PresenceConfig,
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

/// One value as read, before typing.
#[derive(Debug, Clone)]
struct Raw {
    value: toml::Value,
    origin: Origin,
}

/// Loads, merges and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();

    let file = match &sources.explicit_file {
        Some(path) => Some(path.clone()),
        None => default_file().filter(|path| path.exists()),
    };
    if let Some(path) = &file {
        read_file(path, &mut raw)?;
    }
    read_env(&sources.env, &mut raw)?;
    for (key, flag, value) in &sources.flags {
        let spec = keys::find(key).ok_or_else(|| ConfigError::UnknownKey {
            key: (*key).to_owned(),
            origin: Origin::Flag(flag),
            fix: String::from("this is a bug in kircd's flag table"),
        })?;
        let origin = Origin::Flag(flag);
        let value = parse_text(spec, value, &origin)?;
        raw.insert(spec.key, Raw { value, origin });
    }
    for spec in KEYS {
        if let Some(entry) = raw.get(spec.key) {
            check_kind(spec, entry)?;
        }
    }
    Values { raw, file }.build()
}

fn read_file(path: &Path, raw: &mut BTreeMap<&'static str, Raw>) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|err: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    let origin = Origin::File(path.to_path_buf());
    for (section, body) in table {
        let toml::Value::Table(body) = body else {
            return Err(unknown_key(&section, origin.clone()));
        };
        for (name, value) in body {
            let dotted = format!("{section}.{name}");
            let spec = keys::find(&dotted).ok_or_else(|| unknown_key(&dotted, origin.clone()))?;
            if spec.secret {
                return Err(ConfigError::Invalid {
                    key: spec.key,
                    origin: origin.clone(),
                    problem: String::from("secrets are not read from the config file"),
                    fix: format!(
                        "remove it; put it in a file named by `{}_file`, or set {}",
                        spec.key,
                        spec.env_var()
                    ),
                });
            }
            raw.insert(
                spec.key,
                Raw {
                    value,
                    origin: origin.clone(),
                },
            );
        }
    }
    Ok(())
}

fn read_env(
    env: &[(String, String)],
    raw: &mut BTreeMap<&'static str, Raw>,
) -> Result<(), ConfigError> {
    let sections: Vec<String> = KEYS
        .iter()
        .map(|spec| format!("KIRC_{}_", spec.section().to_ascii_uppercase()))
        .collect();
    for (name, value) in env {
        if !name.starts_with("KIRC_") {
            continue;
        }
        let origin = Origin::Env(name.clone());
        match KEYS.iter().find(|spec| spec.env_var() == *name) {
            Some(spec) => {
                let value = parse_text(spec, value, &origin)?;
                raw.insert(spec.key, Raw { value, origin });
            }
            // A variable that looks like a config key but is none is almost
            // certainly a typo; other KIRC_ variables belong to other tools.
            None if sections.iter().any(|prefix| name.starts_with(prefix)) => {
                let suggestion = closest(name, KEYS.iter().map(KeySpec::env_var));
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    origin,
                    fix: match suggestion {
                        Some(close) => {
                            format!("did you mean {close}? (`kircd config keys` lists them all)")
                        }
                        None => String::from("`kircd config keys` lists every variable"),
                    },
                });
            }
            None => {}
        }
    }
    Ok(())
}

fn unknown_key(key: &str, origin: Origin) -> ConfigError {
    let fix = match closest(key, KEYS.iter().map(|spec| spec.key.to_owned())) {
        Some(close) => format!("did you mean `{close}`? (`kircd config keys` lists them all)"),
        None => String::from("remove it; `kircd config keys` lists every key"),
    };
    ConfigError::UnknownKey {
        key: key.to_owned(),
        origin,
        fix,
    }
}

fn closest(wrong: &str, candidates: impl Iterator<Item = String>) -> Option<String> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(wrong, &candidate), candidate))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Turns an environment variable's or flag's text into the key's TOML type.
fn parse_text(
    spec: &'static KeySpec,
    text: &str,
    origin: &Origin,
) -> Result<toml::Value, ConfigError> {
    let invalid = |problem: String, fix: String| ConfigError::Invalid {
        key: spec.key,
        origin: origin.clone(),
        problem,
        fix,
    };
    Ok(match spec.kind {
        Kind::Str | Kind::Path | Kind::Duration { .. } | Kind::Choice(_) => {
            toml::Value::String(text.to_owned())
        }
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => {
                return Err(invalid(
                    format!("`{text}` is not a boolean"),
                    String::from("use true or false"),
                ));
            }
        },
        Kind::Int { min, max } => toml::Value::Integer(text.trim().parse().map_err(|_| {
            invalid(
                format!("`{text}` is not a whole number"),
                format!("use a number from {min} to {max}"),
            )
        })?),
    })
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks a value against its key's kind (type, range, choices).
fn check_kind(spec: &'static KeySpec, raw: &Raw) -> Result<(), ConfigError> {
    let invalid = |problem: String, fix: String| ConfigError::Invalid {
        key: spec.key,
        origin: raw.origin.clone(),
        problem,
        fix,
    };
    let shown = || {
        if spec.secret {
            String::from("[redacted]")
        } else {
            raw.value.to_string()
        }
    };
    match (spec.kind, &raw.value) {
        (Kind::Str | Kind::Path, toml::Value::String(_))
        | (Kind::Bool, toml::Value::Boolean(_)) => Ok(()),
        (Kind::Int { min, max }, toml::Value::Integer(n)) => {
            if (min..=max).contains(n) {
                Ok(())
            } else {
                Err(invalid(
                    format!("{n} is out of range"),
                    format!("use a number from {min} to {max}"),
                ))
            }
        }
        (Kind::Duration { min, max }, toml::Value::String(text)) => {
            let duration = humantime::parse_duration(text).map_err(|err| {
                invalid(
                    format!("`{text}` is not a duration ({err})"),
                    String::from("write it like \"500ms\", \"10s\" or \"6h\""),
                )
            })?;
            if duration < min || duration > max {
                return Err(invalid(
                    format!("{text} is out of range"),
                    format!(
                        "use a duration from {} to {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ));
            }
            Ok(())
        }
        (Kind::Choice(choices), toml::Value::String(text)) => {
            if choices.contains(&text.as_str()) {
                Ok(())
            } else {
                Err(invalid(
                    format!("`{text}` is not one of the choices"),
                    format!("use one of: {}", choices.join(", ")),
                ))
            }
        }
        (kind, value) => {
            let wanted = match kind {
                Kind::Str | Kind::Path | Kind::Choice(_) => "a string",
                Kind::Bool => "true or false",
                Kind::Int { .. } => "a whole number",
                Kind::Duration { .. } => "a duration string like \"10s\"",
            };
            Err(invalid(
                format!("{} is {}", shown(), type_name(value)),
                format!("write {wanted}"),
            ))
        }
    }
}

/// Typed access to checked raw values, with defaults.
struct Values {
    raw: BTreeMap<&'static str, Raw>,
    file: Option<PathBuf>,
}

impl Values {
    fn spec(key: &'static str) -> &'static KeySpec {
        // Every key this module asks for is in KEYS; the unit test
        // `every_key_is_read` pins that.
        keys::find(key).unwrap_or_else(|| panic!("config key {key} missing from KEYS"))
    }

    fn origin(&self, key: &'static str) -> Origin {
        self.raw
            .get(key)
            .map_or(Origin::Default, |raw| raw.origin.clone())
    }

    fn opt_str(&self, key: &'static str) -> Option<String> {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::String(text)) => Some(text.clone()),
            _ => match Self::spec(key).default {
                keys::Default::Str(text) => Some(text.to_owned()),
                _ => None,
            },
        }
    }

    fn str(&self, key: &'static str) -> String {
        self.opt_str(key).unwrap_or_default()
    }

    fn opt_path(&self, key: &'static str) -> Option<PathBuf> {
        self.opt_str(key)
            .filter(|text| !text.is_empty())
            .map(PathBuf::from)
    }

    fn bool(&self, key: &'static str) -> bool {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::Boolean(value)) => *value,
            _ => matches!(Self::spec(key).default, keys::Default::Bool(true)),
        }
    }

    fn int(&self, key: &'static str) -> i64 {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::Integer(value)) => *value,
            _ => match Self::spec(key).default {
                keys::Default::Int(value) => value,
                _ => 0,
            },
        }
    }

    fn duration(&self, key: &'static str) -> Duration {
        // check_kind has parsed every present value; defaults are pinned by
        // the unit test `defaults_load`.
        self.opt_str(key)
            .and_then(|text| humantime::parse_duration(&text).ok())
            .unwrap_or_default()
    }

    fn invalid(
        &self,
        key: &'static str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            key,
            origin: self.origin(key),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A secret from its environment variable or from its `_file` key.
    fn secret(
        &self,
        key: &'static str,
        file_key: &'static str,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(value) = self.opt_str(key) {
            return Ok(Some(SecretString::from(value)));
        }
        let Some(path) = self.opt_path(file_key) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            self.invalid(
                file_key,
                format!("cannot read {}: {err}", path.display()),
                "point it at a readable file that holds only the secret",
            )
        })?;
        Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )))
    }

    fn existing_file(&self, key: &'static str, what: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self.opt_path(key) else {
            return Ok(None);
        };
        match std::fs::File::open(&path) {
            Ok(_) => Ok(Some(path)),
            Err(err) => Err(self.invalid(
                key,
                format!("cannot read the {what} {}: {err}", path.display()),
                format!("point `{key}` at an existing, readable {what}"),
            )),
        }
    }

    fn required_file(
        &self,
        key: &'static str,
        what: &str,
        protocol: &str,
    ) -> Result<PathBuf, ConfigError> {
        self.existing_file(key, what)?.ok_or_else(|| {
            self.invalid(
                key,
                format!("is required when kafka.security_protocol is {protocol}"),
                format!("set `{key}` to the {what}"),
            )
        })
    }

    fn build(self) -> Result<Config, ConfigError> {
        let actor_name = self
            .opt_str("actor.name")
            .filter(|name| !name.trim().is_empty())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| String::from("me"));
        let kafka = self.kafka()?;
        let public = self.public(&kafka)?;
        let postgres = self.postgres()?;
        let valkey = self.valkey()?;
        let api = self.api()?;
        let log = self.log()?;
        let health = self.health()?;
        let values = KEYS
            .iter()
            .filter_map(|spec| {
                let raw = self.raw.get(spec.key)?;
                let shown = if spec.secret {
                    String::from("[redacted]")
                } else if spec.key.ends_with(".url") {
                    redact_url(&raw.value.as_str().map(str::to_owned).unwrap_or_default())
                } else {
                    raw.value.to_string()
                };
                Some((spec, shown, raw.origin.clone()))
            })
            .collect();
        Ok(Config {
            file: self.file.clone(),
            actor_name,
            identity_file: self
                .opt_path("identity.file")
                .unwrap_or_else(crate::crypto::identity::default_path),
            public,
            messaging: MessagingConfig {
                read_receipts: self.bool("messaging.read_receipts"),
                invite_ttl: self.duration("messaging.invite_ttl"),
                outbox_check_interval: self.duration("messaging.outbox_check_interval"),
                // The key table bounds these to non-negative values that fit.
                quarantine_max_rows: u64::try_from(self.int("messaging.quarantine_max_rows"))
                    .unwrap_or(0),
                quarantine_max_bytes: u64::try_from(self.int("messaging.quarantine_max_bytes"))
                    .unwrap_or(0),
                rejection_log_burst: u32::try_from(self.int("messaging.rejection_log_burst"))
                    .unwrap_or(0),
                rejection_log_interval: self.duration("messaging.rejection_log_interval"),
                keep_warm_interval: self.duration("kafka.keep_warm_interval"),
                budget_bytes_per_second: u64::try_from(self.int("kafka.budget_bytes_per_second"))
                    .unwrap_or(192_000),
            },
            presence: PresenceConfig {
                heartbeat: self.duration("presence.heartbeat"),
                idle: self.duration("presence.idle"),
                rate_limit: u64::try_from(self.int("presence.rate_limit")).unwrap_or(3000),
            },
            kafka,
            postgres,
            valkey,
            api,
            log,
            health,
            values,
        })
    }

    fn kafka(&self) -> Result<KafkaConfig, ConfigError> {
        let bootstrap_servers = self.str("kafka.bootstrap_servers");
        for server in bootstrap_servers.split(',').map(str::trim) {
            let port = server.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if server.is_empty() || !matches!(port, Some(Ok(_))) {
                return Err(self.invalid(
                    "kafka.bootstrap_servers",
                    format!("`{server}` is not host:port"),
                    "write host:port pairs separated by commas, e.g. kafka-x.aivencloud.com:12345",
                ));
            }
        }
        let protocol = self.str("kafka.security_protocol");
        let security = match protocol.as_str() {
            "ssl" => KafkaSecurity::Ssl {
                ca_file: self.existing_file("kafka.ca_file", "CA certificate")?,
                client_cert_file: self.required_file(
                    "kafka.client_cert_file",
                    "client certificate",
                    "ssl",
                )?,
                client_key_file: self.required_file(
                    "kafka.client_key_file",
                    "client key",
                    "ssl",
                )?,
            },
            "sasl_ssl" => {
                let username = self
                    .opt_str("kafka.sasl_username")
                    .filter(|name| !name.is_empty());
                let username = username.ok_or_else(|| {
                    self.invalid(
                        "kafka.sasl_username",
                        "is required when kafka.security_protocol is sasl_ssl",
                        "set it to the SCRAM user name (Aiven: the service user)",
                    )
                })?;
                let password = self
                    .secret("kafka.sasl_password", "kafka.sasl_password_file")?
                    .ok_or_else(|| {
                        self.invalid(
                            "kafka.sasl_password",
                            "no SCRAM password given",
                            "set kafka.sasl_password_file to a file holding it, or KIRC_KAFKA_SASL_PASSWORD",
                        )
                    })?;
                KafkaSecurity::SaslSsl {
                    ca_file: self.existing_file("kafka.ca_file", "CA certificate")?,
                    mechanism: self.str("kafka.sasl_mechanism"),
                    username,
                    password,
                }
            }
            _ => {
                for key in [
                    "kafka.sasl_username",
                    "kafka.client_cert_file",
                    "kafka.client_key_file",
                ] {
                    if self.raw.contains_key(key) {
                        return Err(self.invalid(
                            key,
                            "is set but kafka.security_protocol is plaintext, so it would be ignored",
                            "set kafka.security_protocol to ssl or sasl_ssl, or remove the key",
                        ));
                    }
                }
                KafkaSecurity::Plaintext
            }
        };
        let prefix = self.str("kafka.topic_prefix");
        let topic = |key: &'static str, role: &str| -> Result<String, ConfigError> {
            let name = self
                .opt_str(key)
                .unwrap_or_else(|| format!("{prefix}{role}"));
            check_topic_name(&name).map_err(|problem| {
                self.invalid(
                    key,
                    format!("`{name}` is not a valid topic name: {problem}"),
                    "use at most 249 of the characters a-z A-Z 0-9 . _ -",
                )
            })?;
            Ok(name)
        };
        let topics = TopicNames {
            data_in: topic("kafka.topic_data_in", "data-in")?,
            data_out: topic("kafka.topic_data_out", "data-out")?,
            rpc_in: topic("kafka.topic_rpc_in", "rpc-in")?,
            rpc_out: topic("kafka.topic_rpc_out", "rpc-out")?,
        };
        let roles = topics.with_roles();
        for (index, (role, name)) in roles.iter().enumerate() {
            if let Some((other, _)) = roles[..index].iter().find(|(_, other)| other == name) {
                return Err(self.invalid(
                    "kafka.topic_prefix",
                    format!("{other} and {role} would both be the topic `{name}`"),
                    "give each of the four topics its own name",
                ));
            }
        }
        Ok(KafkaConfig {
            bootstrap_servers,
            security,
            topics,
            create_topics: self.bool("kafka.create_topics"),
            partitions: i32::try_from(self.int("kafka.partitions")).unwrap_or(2),
            replication_factor: i32::try_from(self.int("kafka.replication_factor")).unwrap_or(-1),
        })
    }

    fn public(&self, kafka: &KafkaConfig) -> Result<PublicConfig, ConfigError> {
        let own_protocol = match kafka.security {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl { .. } => "ssl",
            KafkaSecurity::SaslSsl { .. } => "sasl_ssl",
        };
        let security_protocol = self
            .opt_str("public.security_protocol")
            .unwrap_or_else(|| own_protocol.to_owned());
        let username = self
            .opt_str("public.username")
            .filter(|name| !name.is_empty());
        let password = self.secret("public.password", "public.password_file")?;
        if security_protocol == "sasl_ssl" && (username.is_none() || password.is_none()) {
            return Err(self.invalid(
                "public.username",
                "contacts need a user and password to write to your inbox over sasl_ssl",
                "set public.username and public.password_file to the write-only user (terraform/ creates it)",
            ));
        }
        let ca_pem = match self.existing_file("public.ca_file", "CA certificate")? {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|err| {
                self.invalid(
                    "public.ca_file",
                    format!("cannot read {}: {err}", path.display()),
                    "point it at a PEM file",
                )
            })?),
            None => None,
        };
        Ok(PublicConfig {
            bootstrap_servers: self
                .opt_str("public.bootstrap_servers")
                .unwrap_or_else(|| kafka.bootstrap_servers.clone()),
            security_protocol,
            sasl_mechanism: self.str("public.sasl_mechanism"),
            username,
            password,
            ca_pem,
        })
    }

    fn postgres(&self) -> Result<PostgresConfig, ConfigError> {
        let url = self.str("postgres.url");
        let options = sqlx::postgres::PgConnectOptions::from_str(&url).map_err(|err| {
            self.invalid(
                "postgres.url",
                format!(
                    "not a PostgreSQL URI: {}",
                    redact_error(&err.to_string(), &url)
                ),
                "write postgres://user@host:port/database (add ?sslmode=require for Aiven)",
            )
        })?;
        let database = options.get_database().unwrap_or("").to_owned();
        if database.is_empty() {
            return Err(self.invalid(
                "postgres.url",
                "names no database",
                "end the URI with /<database>, one database per actor",
            ));
        }
        let endpoint = format!("{}:{}/{}", options.get_host(), options.get_port(), database);
        Ok(PostgresConfig {
            url: SecretString::from(url),
            password: self.secret("postgres.password", "postgres.password_file")?,
            max_connections: u32::try_from(self.int("postgres.max_connections")).unwrap_or(4),
            endpoint,
        })
    }

    fn valkey(&self) -> Result<ValkeyConfig, ConfigError> {
        let url = self.str("valkey.url");
        let info =
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|err| {
                self.invalid(
                    "valkey.url",
                    format!("not a Valkey URI: {}", redact_error(&err.to_string(), &url)),
                    "write redis://host:port/db, or rediss://… for TLS",
                )
            })?;
        let endpoint = format!("{}/{}", info.addr(), info.redis_settings().db());
        Ok(ValkeyConfig {
            url: SecretString::from(url),
            password: self.secret("valkey.password", "valkey.password_file")?,
            key_prefix: self.str("valkey.key_prefix"),
            endpoint,
        })
    }

    fn api(&self) -> Result<ApiConfig, ConfigError> {
        let socket = self
            .opt_path("api.socket")
            .unwrap_or_else(kirc_proto::default_socket_path);
        if !socket.is_absolute() {
            return Err(self.invalid(
                "api.socket",
                "is not an absolute path",
                "write the full path, from /",
            ));
        }
        // sun_path holds 108 bytes with the trailing NUL.
        if socket.as_os_str().len() > 107 {
            return Err(self.invalid(
                "api.socket",
                "is longer than the 107 bytes a Unix socket path may have",
                "choose a shorter path",
            ));
        }
        Ok(ApiConfig {
            socket,
            event_buffer: usize::try_from(self.int("api.event_buffer")).unwrap_or(4096),
        })
    }

    fn log(&self) -> Result<LogConfig, ConfigError> {
        let level = self.str("log.level");
        tracing_subscriber::EnvFilter::try_new(&level).map_err(|err| {
            self.invalid(
                "log.level",
                format!("`{level}` is not a log filter ({err})"),
                "use error, warn, info, debug or trace, or directives like kircd=debug,rdkafka=warn",
            )
        })?;
        Ok(LogConfig {
            level,
            directory: self
                .opt_path("log.directory")
                .unwrap_or_else(default_log_dir),
            file: self.bool("log.file"),
        })
    }

    fn health(&self) -> Result<HealthConfig, ConfigError> {
        let health = HealthConfig {
            probe_interval: self.duration("health.probe_interval"),
            probe_timeout: self.duration("health.probe_timeout"),
            retry_initial: self.duration("health.retry_initial"),
            retry_max: self.duration("health.retry_max"),
        };
        if health.retry_initial > health.retry_max {
            return Err(self.invalid(
                "health.retry_initial",
                "is longer than health.retry_max",
                "make health.retry_initial at most health.retry_max",
            ));
        }
        Ok(health)
    }
}

fn check_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 249 {
        return Err("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are reserved");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err("it has a character other than a-z A-Z 0-9 . _ -");
    }
    Ok(())
}

/// A URL with its user info (user name and password) removed, for display.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("[redacted]");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A parser's error message with the (secret-bearing) input cut out, in case
/// the parser quoted it.
fn redact_error(message: &str, input: &str) -> String {
    if input.is_empty() {
        message.to_owned()
    } else {
        message.replace(input, &redact_url(input))
    }
}

#[cfg(test)]
mod tests;
