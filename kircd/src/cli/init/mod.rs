//! `kircd init`: from nothing, or from terraform/'s outputs, to a config on
//! which kircd starts. It gathers the connection settings (the Terraform
//! document, then flags, then questions for what is still open), writes the
//! config and the secret files it points at (owner-only), creates the
//! identity if there is none, and ends with the same checks as `kircd
//! doctor`, each failure with its fix.
//!
//! Secrets never go into the config file: each lands in a file of its own
//! under `secrets/` beside it (mode 0600), which the config names with a
//! `*_file` key.

pub mod prompt;
pub mod terraform;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use terraform::{TERRAFORM_FIELDS, TERRAFORM_FORMAT};

use crate::backends::kafka::Cluster;
use crate::backends::postgres;
use crate::cli::{EXIT_CONFIG, doctor};
use crate::config::{self, Config, Sources};
use crate::crypto::identity::Identity;
use crate::store;
use prompt::Prompter;

/// How kircd authenticates to its own Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaAuth {
    /// No TLS, no authentication: the local stack only.
    Plaintext,
    /// SCRAM over TLS (Aiven's SASL endpoint).
    Sasl,
    /// TLS client certificate (Aiven's default endpoint).
    Certificate,
}

impl KafkaAuth {
    fn protocol(self) -> &'static str {
        match self {
            KafkaAuth::Plaintext => "plaintext",
            KafkaAuth::Sasl => "sasl_ssl",
            KafkaAuth::Certificate => "ssl",
        }
    }

    fn from_protocol(protocol: &str) -> Option<Self> {
        match protocol {
            "plaintext" => Some(KafkaAuth::Plaintext),
            "sasl_ssl" => Some(KafkaAuth::Sasl),
            "ssl" => Some(KafkaAuth::Certificate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KafkaAuth::Plaintext => "plaintext",
            KafkaAuth::Sasl => "sasl",
            KafkaAuth::Certificate => "certificate",
        }
    }
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct InitArgs {
    /// Read the connection settings from terraform/'s outputs: a file holding
    /// `terraform output -json kircd_init` (or `terraform output -json`), or -
    /// for stdin.
    #[arg(long, value_name = "FILE")]
    pub from_terraform: Option<PathBuf>,

    /// Ask for every setting, with the current or usual value as default (the
    /// default when stdin is a terminal and no setting is given).
    #[arg(long, conflicts_with = "non_interactive")]
    pub interactive: bool,

    /// Never ask: use what the flags and the Terraform document give, and keep
    /// the rest of the current config.
    #[arg(long)]
    pub non_interactive: bool,

    /// Your display name (actor.name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// host:port list of your Kafka (kafka.bootstrap_servers).
    #[arg(long, value_name = "HOSTS")]
    pub kafka_bootstrap: Option<String>,

    /// How kircd authenticates to your Kafka.
    #[arg(long, value_enum)]
    pub kafka_auth: Option<KafkaAuth>,

    /// SCRAM mechanism for sasl.
    #[arg(long, value_name = "MECHANISM", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub kafka_sasl_mechanism: Option<String>,

    /// SCRAM user name for sasl.
    #[arg(long, value_name = "USER")]
    pub kafka_username: Option<String>,

    /// File holding the SCRAM password; init copies it to secrets/.
    #[arg(long, value_name = "FILE")]
    pub kafka_password_file: Option<PathBuf>,

    /// PEM CA certificate that signed the brokers' certificates.
    #[arg(long, value_name = "FILE")]
    pub kafka_ca_file: Option<PathBuf>,

    /// PEM client certificate, for certificate.
    #[arg(long, value_name = "FILE")]
    pub kafka_client_cert_file: Option<PathBuf>,

    /// PEM client key, for certificate; init copies it to secrets/.
    #[arg(long, value_name = "FILE")]
    pub kafka_client_key_file: Option<PathBuf>,

    /// Prefix of the four topic names.
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,

    /// Whether kircd creates missing topics (no when terraform/ made them).
    #[arg(long, value_name = "BOOL")]
    pub create_topics: Option<bool>,

    /// PostgreSQL URI; a password in it moves to secrets/.
    #[arg(long, value_name = "URI")]
    pub postgres_url: Option<String>,

    /// Valkey URI; a password in it moves to secrets/.
    #[arg(long, value_name = "URI")]
    pub valkey_url: Option<String>,

    /// The write-only user contacts write to your inbox with.
    #[arg(long, value_name = "USER")]
    pub public_username: Option<String>,

    /// File holding that user's password; init copies it to secrets/.
    #[arg(long, value_name = "FILE")]
    pub public_password_file: Option<PathBuf>,

    /// Replace an existing identity. Your contacts will no longer know you.
    #[arg(long)]
    pub force: bool,

    /// How long each check may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl InitArgs {
    fn gives_settings(&self) -> bool {
        self.name.is_some()
            || self.kafka_bootstrap.is_some()
            || self.kafka_auth.is_some()
            || self.kafka_sasl_mechanism.is_some()
            || self.kafka_username.is_some()
            || self.kafka_password_file.is_some()
            || self.kafka_ca_file.is_some()
            || self.kafka_client_cert_file.is_some()
            || self.kafka_client_key_file.is_some()
            || self.topic_prefix.is_some()
            || self.create_topics.is_some()
            || self.postgres_url.is_some()
            || self.valkey_url.is_some()
            || self.public_username.is_some()
            || self.public_password_file.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{path}: {error}")]
    Read { path: String, error: String },
    #[error(
        "{path} is not valid TOML: {error}\n  fix: correct or remove the file, then run kircd init again"
    )]
    ExistingConfig { path: String, error: String },
    #[error("the Terraform document {source_name}: {error}")]
    Terraform { source_name: String, error: String },
    #[error("{0}")]
    Answer(String),
    #[error("cannot ask: {0}")]
    Prompt(#[from] std::io::Error),
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: String },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// A file init writes, and the config key that names it.
struct PlannedFile {
    key: &'static str,
    path: PathBuf,
    contents: SecretString,
    secret: bool,
}

/// What init will change: config keys to set or remove, and files to write.
#[derive(Default)]
struct Plan {
    set: BTreeMap<&'static str, toml::Value>,
    unset: Vec<&'static str>,
    files: Vec<PlannedFile>,
}

impl Plan {
    fn set(&mut self, key: &'static str, value: impl Into<toml::Value>) {
        self.unset.retain(|unset| *unset != key);
        self.files.retain(|file| file.key != key);
        self.set.insert(key, value.into());
    }

    fn unset(&mut self, key: &'static str) {
        self.set.remove(key);
        self.files.retain(|file| file.key != key);
        if !self.unset.contains(&key) {
            self.unset.push(key);
        }
    }

    fn has(&self, key: &str) -> bool {
        self.set.contains_key(key)
    }

    fn file(&mut self, key: &'static str, path: PathBuf, contents: SecretString, secret: bool) {
        self.set(key, path.to_string_lossy().into_owned());
        self.files.push(PlannedFile {
            key,
            path,
            contents,
            secret,
        });
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    fn kafka_auth(&mut self, auth: KafkaAuth) {
        self.set("kafka.security_protocol", auth.protocol());
        let unused: &[&'static str] = match auth {
            KafkaAuth::Plaintext => &[
                "kafka.sasl_username",
                "kafka.sasl_password_file",
                "kafka.client_cert_file",
                "kafka.client_key_file",
                "kafka.ca_file",
            ],
            KafkaAuth::Sasl => &["kafka.client_cert_file", "kafka.client_key_file"],
            KafkaAuth::Certificate => &["kafka.sasl_username", "kafka.sasl_password_file"],
        };
        for key in unused {
            self.unset(key);
        }
    }
}

/// Where init puts things: the config file, and beside it the CA and the
/// secrets folder.
struct Layout {
    config: PathBuf,
    dir: PathBuf,
    secrets: PathBuf,
}

impl Layout {
    fn new(config: PathBuf) -> Self {
        let dir = config
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Layout {
            secrets: dir.join("secrets"),
            config,
            dir,
        }
    }

    fn secret(&self, name: &str) -> PathBuf {
        self.secrets.join(name)
    }
}

/// The settings in an existing config file, for defaults and for keeping
/// what init does not change.
struct Existing(toml::Table);

impl Existing {
    fn read(path: &Path) -> Result<Self, InitError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                text.parse::<toml::Table>()
                    .map(Existing)
                    .map_err(|err| InitError::ExistingConfig {
                        path: path.display().to_string(),
                        error: err.message().to_owned(),
                    })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Ok(Existing(toml::Table::new()))
            }
            Err(err) => Err(InitError::Read {
                path: path.display().to_string(),
                error: err.to_string(),
            }),
        }
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        let (section, name) = key.split_once('.')?;
        self.0.get(section)?.as_table()?.get(name)
    }

    fn str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// The table with `plan` applied.
    fn merged(&self, plan: &Plan) -> toml::Table {
        let mut table = self.0.clone();
        for key in &plan.unset {
            if let Some((section, name)) = key.split_once('.')
                && let Some(section) = table.get_mut(section).and_then(toml::Value::as_table_mut)
            {
                section.remove(name);
            }
        }
        for (key, value) in &plan.set {
            if let Some((section, name)) = key.split_once('.') {
                let section = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(section) = section.as_table_mut() {
                    section.insert(name.to_owned(), value.clone());
                }
            }
        }
        table.retain(|_, value| value.as_table().is_none_or(|section| !section.is_empty()));
        table
    }
}

fn read_secret_file(path: &Path) -> Result<SecretString, InitError> {
    std::fs::read_to_string(path)
        .map(|text| SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()))
        .map_err(|err| InitError::Read {
            path: path.display().to_string(),
            error: err.to_string(),
        })
}

fn read_file(path: &Path) -> Result<SecretString, InitError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|err| InitError::Read {
            path: path.display().to_string(),
            error: err.to_string(),
        })
}

/// Splits the password off a URI, so that it can live in a file of its own.
fn split_password(key: &str, uri: &str) -> Result<(String, Option<SecretString>), InitError> {
    let mut parsed = url::Url::parse(uri)
        .map_err(|err| InitError::Answer(format!("{key}: not a URI ({err})")))?;
    let password = parsed.password().map(|password| {
        SecretString::from(
            percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        )
    });
    if password.is_some() {
        parsed
            .set_password(None)
            .map_err(|()| InitError::Answer(format!("{key}: cannot remove the password")))?;
    }
    Ok((parsed.to_string(), password))
}

/// Sets `url_key` to `uri` without its password, and the password (if any)
/// into its secret file.
fn plan_uri(
    plan: &mut Plan,
    layout: &Layout,
    url_key: &'static str,
    password_key: &'static str,
    secret_name: &str,
    uri: &str,
) -> Result<bool, InitError> {
    let (uri, password) = split_password(url_key, uri)?;
    plan.set(url_key, uri);
    match password {
        Some(password) => {
            plan.file(password_key, layout.secret(secret_name), password, true);
            Ok(true)
        }
        None => Ok(false),
    }
}

fn plan_from_document(
    plan: &mut Plan,
    layout: &Layout,
    document: &terraform::Document,
) -> Result<(), InitError> {
    let kafka = &document.kafka;
    let missing = |field: &str| {
        InitError::Answer(format!(
            "the Terraform document has no {field}: run terraform apply again and re-export it"
        ))
    };
    if let Some(bootstrap) = &kafka.bootstrap_servers {
        plan.set("kafka.bootstrap_servers", bootstrap.clone());
    }
    let auth = KafkaAuth::from_protocol(&kafka.security_protocol).ok_or_else(|| {
        InitError::Answer(format!(
            "the Terraform document's kafka.security_protocol `{}` is none of plaintext, ssl, sasl_ssl",
            kafka.security_protocol
        ))
    })?;
    plan.kafka_auth(auth);
    match auth {
        KafkaAuth::Sasl => {
            if let Some(mechanism) = &kafka.sasl_mechanism {
                plan.set("kafka.sasl_mechanism", mechanism.clone());
            }
            plan.set(
                "kafka.sasl_username",
                kafka
                    .username
                    .clone()
                    .ok_or_else(|| missing("kafka.username"))?,
            );
            let password = kafka
                .password
                .clone()
                .ok_or_else(|| missing("kafka.password"))?;
            plan.file(
                "kafka.sasl_password_file",
                layout.secret("kafka-password"),
                SecretString::from(password),
                true,
            );
        }
        KafkaAuth::Certificate => {
            let cert = kafka
                .access_cert
                .clone()
                .ok_or_else(|| missing("kafka.access_cert"))?;
            let key = kafka
                .access_key
                .clone()
                .ok_or_else(|| missing("kafka.access_key"))?;
            plan.file(
                "kafka.client_cert_file",
                layout.dir.join("kafka-client.pem"),
                SecretString::from(cert),
                false,
            );
            plan.file(
                "kafka.client_key_file",
                layout.secret("kafka-client.key"),
                SecretString::from(key),
                true,
            );
        }
        KafkaAuth::Plaintext => {}
    }
    if let Some(ca) = &kafka.ca_pem {
        let path = layout.dir.join("kafka-ca.pem");
        plan.file(
            "kafka.ca_file",
            path.clone(),
            SecretString::from(ca.clone()),
            false,
        );
        plan.set("public.ca_file", path.to_string_lossy().into_owned());
    }
    for (role, key) in [
        ("data_in", "kafka.topic_data_in"),
        ("data_out", "kafka.topic_data_out"),
        ("rpc_in", "kafka.topic_rpc_in"),
        ("rpc_out", "kafka.topic_rpc_out"),
    ] {
        let name = kafka
            .topics
            .get(role)
            .ok_or_else(|| missing(&format!("kafka.topics.{role}")))?;
        plan.set(key, name.clone());
    }
    plan.unset("kafka.topic_prefix");
    // terraform/ made the topics; kircd's user may not create any.
    plan.set("kafka.create_topics", false);
    if let Some(partitions) = kafka.partitions {
        plan.set("kafka.partitions", partitions);
    }
    if let Some(replication) = kafka.replication {
        plan.set("kafka.replication_factor", replication);
    }

    if let Some(public) = &document.public {
        if let Some(bootstrap) = &public.bootstrap_servers {
            plan.set("public.bootstrap_servers", bootstrap.clone());
        }
        plan.set("public.security_protocol", "sasl_ssl");
        if let Some(mechanism) = &public.sasl_mechanism {
            plan.set("public.sasl_mechanism", mechanism.clone());
        }
        plan.set(
            "public.username",
            public
                .username
                .clone()
                .ok_or_else(|| missing("public.username"))?,
        );
        let password = public
            .password
            .clone()
            .ok_or_else(|| missing("public.password"))?;
        plan.file(
            "public.password_file",
            layout.secret("public-password"),
            SecretString::from(password),
            true,
        );
    }

    if !plan_uri(
        plan,
        layout,
        "postgres.url",
        "postgres.password_file",
        "postgres-password",
        &document.postgres.url,
    )? {
        plan.unset("postgres.password_file");
    }
    if !plan_uri(
        plan,
        layout,
        "valkey.url",
        "valkey.password_file",
        "valkey-password",
        &document.valkey.url,
    )? {
        plan.unset("valkey.password_file");
    }
    Ok(())
}

fn plan_from_flags(plan: &mut Plan, layout: &Layout, args: &InitArgs) -> Result<(), InitError> {
    if let Some(name) = &args.name {
        plan.set("actor.name", name.clone());
    }
    if let Some(bootstrap) = &args.kafka_bootstrap {
        plan.set("kafka.bootstrap_servers", bootstrap.clone());
    }
    if let Some(auth) = args.kafka_auth {
        plan.kafka_auth(auth);
    }
    if let Some(mechanism) = &args.kafka_sasl_mechanism {
        plan.set("kafka.sasl_mechanism", mechanism.clone());
    }
    if let Some(username) = &args.kafka_username {
        plan.set("kafka.sasl_username", username.clone());
    }
    if let Some(path) = &args.kafka_password_file {
        plan.file(
            "kafka.sasl_password_file",
            layout.secret("kafka-password"),
            read_secret_file(path)?,
            true,
        );
    }
    if let Some(path) = &args.kafka_ca_file {
        let path = absolute(path)?;
        plan.set("kafka.ca_file", path.to_string_lossy().into_owned());
        plan.set("public.ca_file", path.to_string_lossy().into_owned());
    }
    if let Some(path) = &args.kafka_client_cert_file {
        plan.set(
            "kafka.client_cert_file",
            absolute(path)?.to_string_lossy().into_owned(),
        );
    }
    if let Some(path) = &args.kafka_client_key_file {
        plan.file(
            "kafka.client_key_file",
            layout.secret("kafka-client.key"),
            read_file(path)?,
            true,
        );
    }
    if let Some(prefix) = &args.topic_prefix {
        plan.set("kafka.topic_prefix", prefix.clone());
        for key in [
            "kafka.topic_data_in",
            "kafka.topic_data_out",
            "kafka.topic_rpc_in",
            "kafka.topic_rpc_out",
        ] {
            plan.unset(key);
        }
    }
    if let Some(create) = args.create_topics {
        plan.set("kafka.create_topics", create);
    }
    if let Some(uri) = &args.postgres_url {
        plan_uri(
            plan,
            layout,
            "postgres.url",
            "postgres.password_file",
            "postgres-password",
            uri,
        )?;
    }
    if let Some(uri) = &args.valkey_url {
        plan_uri(
            plan,
            layout,
            "valkey.url",
            "valkey.password_file",
            "valkey-password",
            uri,
        )?;
    }
    if let Some(username) = &args.public_username {
        plan.set("public.username", username.clone());
    }
    if let Some(path) = &args.public_password_file {
        plan.file(
            "public.password_file",
            layout.secret("public-password"),
            read_secret_file(path)?,
            true,
        );
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, InitError> {
    std::path::absolute(path).map_err(|err| InitError::Read {
        path: path.display().to_string(),
        error: err.to_string(),
    })
}

/// The value a key has: planned, else in the existing file, else its default.
fn current(plan: &Plan, existing: &Existing, key: &str) -> Option<String> {
    if let Some(value) = plan.set.get(key) {
        return Some(match value {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    }
    if plan.unset.contains(&key) {
        return None;
    }
    existing.str(key).or_else(|| {
        config::keys::KEYS
            .iter()
            .find(|spec| spec.key == key)
            .and_then(|spec| match spec.default {
                config::keys::Default::Str(text) => Some(text.to_owned()),
                config::keys::Default::Int(number) => Some(number.to_string()),
                config::keys::Default::Bool(flag) => Some(flag.to_string()),
                _ => None,
            })
    })
}

fn is_loopback(bootstrap: &str) -> bool {
    bootstrap.split(',').all(|server| {
        let host = server
            .trim()
            .rsplit_once(':')
            .map_or(server, |(host, _)| host);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
    })
}

/// Asks for every setting no flag or document gave.
fn ask<R: std::io::BufRead, W: Write>(
    prompter: &mut Prompter<R, W>,
    plan: &mut Plan,
    existing: &Existing,
    layout: &Layout,
) -> Result<(), InitError> {
    prompter.say("Setting up kircd. Press Enter to keep the value in [brackets].")?;
    if !plan.has("actor.name") {
        let default = current(plan, existing, "actor.name")
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        plan.set(
            "actor.name",
            prompter.ask("Your display name", Some(&default))?,
        );
    }
    if !plan.has("kafka.bootstrap_servers") {
        let default = current(plan, existing, "kafka.bootstrap_servers").unwrap_or_default();
        plan.set(
            "kafka.bootstrap_servers",
            prompter.ask(
                "Kafka bootstrap servers (host:port; Aiven: the service's SASL or SSL endpoint)",
                Some(&default),
            )?,
        );
    }
    let bootstrap = current(plan, existing, "kafka.bootstrap_servers").unwrap_or_default();
    let auth = if plan.has("kafka.security_protocol") {
        current(plan, existing, "kafka.security_protocol")
            .and_then(|protocol| KafkaAuth::from_protocol(&protocol))
            .unwrap_or(KafkaAuth::Plaintext)
    } else {
        let default = existing
            .str("kafka.security_protocol")
            .and_then(|protocol| KafkaAuth::from_protocol(&protocol))
            .unwrap_or(if is_loopback(&bootstrap) {
                KafkaAuth::Plaintext
            } else {
                KafkaAuth::Sasl
            });
        let answer = prompter.choose(
            "Kafka authentication",
            &["plaintext", "sasl", "certificate"],
            default.name(),
        )?;
        let auth = match answer.as_str() {
            "sasl" => KafkaAuth::Sasl,
            "certificate" => KafkaAuth::Certificate,
            _ => KafkaAuth::Plaintext,
        };
        plan.kafka_auth(auth);
        auth
    };
    match auth {
        KafkaAuth::Sasl => {
            if !plan.has("kafka.sasl_mechanism") {
                let default = current(plan, existing, "kafka.sasl_mechanism")
                    .unwrap_or_else(|| "SCRAM-SHA-256".to_owned());
                plan.set(
                    "kafka.sasl_mechanism",
                    prompter.choose(
                        "SCRAM mechanism",
                        &["SCRAM-SHA-256", "SCRAM-SHA-512"],
                        &default,
                    )?,
                );
            }
            if !plan.has("kafka.sasl_username") {
                let default = current(plan, existing, "kafka.sasl_username")
                    .unwrap_or_else(|| "kircd".to_owned());
                plan.set(
                    "kafka.sasl_username",
                    prompter.ask("Kafka user name", Some(&default))?,
                );
            }
            if !plan.has("kafka.sasl_password_file") {
                let has_existing = existing.str("kafka.sasl_password_file").is_some();
                if let Some(password) = prompter.secret(
                    "Kafka password (terraform output -raw kircd_kafka_password)",
                    has_existing,
                )? {
                    plan.file(
                        "kafka.sasl_password_file",
                        layout.secret("kafka-password"),
                        password,
                        true,
                    );
                }
            }
        }
        KafkaAuth::Certificate => {
            for (key, question) in [
                ("kafka.client_cert_file", "Client certificate file (PEM)"),
                ("kafka.client_key_file", "Client key file (PEM)"),
            ] {
                if !plan.has(key) {
                    let default = current(plan, existing, key);
                    let answer = prompter.ask(question, default.as_deref())?;
                    plan.set(
                        key,
                        absolute(Path::new(&answer))?.to_string_lossy().into_owned(),
                    );
                }
            }
        }
        KafkaAuth::Plaintext => {}
    }
    if auth != KafkaAuth::Plaintext && !plan.has("kafka.ca_file") {
        let default = current(plan, existing, "kafka.ca_file").unwrap_or_default();
        let answer = prompter.ask(
            "CA certificate file (PEM; Aiven: the project CA; empty for the system store)",
            Some(&default),
        )?;
        if answer.is_empty() {
            plan.unset("kafka.ca_file");
        } else {
            let path = absolute(Path::new(&answer))?.to_string_lossy().into_owned();
            plan.set("kafka.ca_file", path.clone());
            plan.set("public.ca_file", path);
        }
    }
    let named_topics =
        plan.has("kafka.topic_data_in") || existing.str("kafka.topic_data_in").is_some();
    if !named_topics && !plan.has("kafka.topic_prefix") {
        let default = current(plan, existing, "kafka.topic_prefix").unwrap_or_default();
        plan.set(
            "kafka.topic_prefix",
            prompter.ask(
                "Topic name prefix (empty on a cluster of your own)",
                Some(&default),
            )?,
        );
    }
    if !plan.has("kafka.create_topics") {
        let default = existing
            .bool("kafka.create_topics")
            .unwrap_or(auth == KafkaAuth::Plaintext);
        plan.set(
            "kafka.create_topics",
            prompter.confirm(
                "Should kircd create missing topics? (no when terraform/ made them)",
                default,
            )?,
        );
    }
    for (url_key, password_key, secret_name, question) in [
        (
            "postgres.url",
            "postgres.password_file",
            "postgres-password",
            "PostgreSQL URI (terraform output -raw postgres_uri)",
        ),
        (
            "valkey.url",
            "valkey.password_file",
            "valkey-password",
            "Valkey URI (terraform output -raw valkey_uri)",
        ),
    ] {
        if !plan.has(url_key) {
            let default = current(plan, existing, url_key).unwrap_or_default();
            let answer = prompter.ask(question, Some(&default))?;
            plan_uri(plan, layout, url_key, password_key, secret_name, &answer)?;
        }
    }
    if auth != KafkaAuth::Plaintext {
        if !plan.has("public.username") {
            let default = current(plan, existing, "public.username")
                .unwrap_or_else(|| "kirc-public".to_owned());
            plan.set(
                "public.username",
                prompter.ask(
                    "Write-only user for contacts (terraform output public_username)",
                    Some(&default),
                )?,
            );
        }
        if !plan.has("public.password_file") {
            let has_existing = existing.str("public.password_file").is_some();
            if let Some(password) = prompter.secret(
                "Its password (terraform output -raw public_password)",
                has_existing,
            )? {
                plan.file(
                    "public.password_file",
                    layout.secret("public-password"),
                    password,
                    true,
                );
            }
        }
        if !plan.has("public.security_protocol") {
            plan.set("public.security_protocol", "sasl_ssl");
        }
    }
    Ok(())
}

fn write_error(path: &Path, err: &std::io::Error) -> InitError {
    InitError::Write {
        path: path.display().to_string(),
        error: err.to_string(),
    }
}

/// Creates `dir` (and its parents) if missing; a folder init creates is the
/// owner's alone.
fn private_dir(dir: &Path) -> Result<(), InitError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|err| write_error(dir, &err))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|err| write_error(dir, &err))
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), InitError> {
    crate::files::write_atomically(path, contents, mode).map_err(|err| write_error(path, &err))
}

fn render_config(table: &toml::Table) -> String {
    let body = toml::to_string(table).unwrap_or_default();
    format!(
        "# kircd's settings, written by `kircd init`; `kircd config keys` lists every key.\n\
         # Secrets are not in this file: the *_file keys name owner-only files.\n\n{body}"
    )
}

/// Writes the files and the config, checking first that the result loads.
fn apply(
    plan: &Plan,
    existing: &Existing,
    layout: &Layout,
    sources: &Sources,
) -> Result<(), InitError> {
    private_dir(&layout.dir)?;
    if plan.files.iter().any(|file| file.secret) {
        private_dir(&layout.secrets)?;
    }
    for file in &plan.files {
        let mode = if file.secret { 0o600 } else { 0o644 };
        write_atomically(&file.path, file.contents.expose_secret().as_bytes(), mode)?;
    }
    let text = render_config(&existing.merged(plan));
    let mut candidate = layout.config.as_os_str().to_owned();
    candidate.push(".candidate");
    let candidate = PathBuf::from(candidate);
    write_atomically(&candidate, text.as_bytes(), 0o600)?;
    let checked = config::load(&Sources {
        explicit_file: Some(candidate.clone()),
        env: sources.env.clone(),
        flags: sources.flags.clone(),
    });
    let _ = std::fs::remove_file(&candidate);
    checked?;
    if let Ok(old) = std::fs::read(&layout.config)
        && old != text.as_bytes()
    {
        let mut backup = layout.config.as_os_str().to_owned();
        backup.push(".bak");
        write_atomically(Path::new(&backup), &old, 0o600)?;
    }
    write_atomically(&layout.config, text.as_bytes(), 0o600)
}

/// Gathers the settings and writes the config; returns whether it wrote one.
fn configure(args: &InitArgs, layout: &Layout, sources: &Sources) -> Result<bool, InitError> {
    let existing = Existing::read(&layout.config)?;
    let mut plan = Plan::default();
    if let Some(path) = &args.from_terraform {
        let (source_name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| InitError::Read {
                    path: "stdin".to_owned(),
                    error: err.to_string(),
                })?;
            ("from stdin".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(path).map_err(|err| InitError::Read {
                path: path.display().to_string(),
                error: err.to_string(),
            })?;
            (path.display().to_string(), text)
        };
        let document = terraform::parse(&text).map_err(|err| InitError::Terraform {
            source_name,
            error: err.to_string(),
        })?;
        plan_from_document(&mut plan, layout, &document)?;
    }
    plan_from_flags(&mut plan, layout, args)?;

    let stdin_is_terminal = std::io::stdin().is_terminal();
    let interactive = args.interactive
        || (!args.non_interactive
            && args.from_terraform.is_none()
            && !args.gives_settings()
            && stdin_is_terminal);
    if interactive {
        let stdin = std::io::stdin();
        let mut prompter = Prompter::new(stdin.lock(), std::io::stdout(), stdin_is_terminal);
        ask(&mut prompter, &mut plan, &existing, layout)?;
    }
    if plan.is_empty() {
        return Ok(false);
    }
    apply(&plan, &existing, layout, sources)?;
    Ok(true)
}

/// `kircd init`. `config_path` is where the config lives (or will);
/// `sources` are the environment and flags the config is read with.
pub async fn run(args: InitArgs, config_path: PathBuf, sources: Sources) -> ExitCode {
    let layout = Layout::new(config_path);
    let wrote = match configure(&args, &layout, &sources) {
        Ok(wrote) => wrote,
        Err(err) => {
            eprintln!("kircd init: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let explicit_file = (wrote || layout.config.exists()).then(|| layout.config.clone());
    let config = match config::load(&Sources {
        explicit_file,
        ..sources
    }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("kircd init: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match &config.file {
        Some(path) if wrote => println!("config:      wrote {}", path.display()),
        Some(path) => println!("config:      kept {}", path.display()),
        None => println!("config:      none (defaults: the local stack)"),
    }
    let identity = match ensure_identity(&config, args.force) {
        Ok(identity) => identity,
        Err(err) => {
            eprintln!("kircd init: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("actor id:    {}", identity.id());
    println!("fingerprint: {}", identity.id().fingerprint());
    prepare_topics(&config, args.timeout).await;
    record_profile(&config, &identity, args.timeout).await;

    println!("\nchecks (the same as `kircd doctor`):");
    let checks = doctor::run(&config, args.timeout).await;
    print!("{}", doctor::render(&checks));
    if doctor::passed(&checks) {
        println!("next: kircd service install (or kircd run in a terminal), then kirc-tui");
        ExitCode::SUCCESS
    } else {
        println!(
            "fix each FAIL above (kircd init again, or edit {}), then run kircd doctor",
            config.file.as_ref().map_or_else(
                || layout.config.display().to_string(),
                |path| path.display().to_string()
            )
        );
        ExitCode::FAILURE
    }
}

fn ensure_identity(
    config: &Config,
    force: bool,
) -> Result<Identity, crate::crypto::identity::IdentityError> {
    let path = &config.identity_file;
    if path.exists() && !force {
        let identity = Identity::load(path)?;
        println!("identity:    kept {}", path.display());
        return Ok(identity);
    }
    let identity = Identity::generate();
    identity.save(path, force)?;
    println!("identity:    created {}", path.display());
    Ok(identity)
}

/// Creates missing topics when kircd is allowed to, so that the checks that
/// follow pass on a fresh cluster.
async fn prepare_topics(config: &Config, timeout: Duration) {
    if !config.kafka.create_topics {
        return;
    }
    let Ok(cluster) = Cluster::new(&config.kafka, "kircd-init") else {
        return;
    };
    match cluster.ensure_topics(timeout).await {
        Ok((report, None)) => {
            let missing = report.missing().len();
            if missing == 0 {
                println!("topics:      all four present");
            }
        }
        Ok((_, Some(err))) => println!("topics:      not created ({err})"),
        // The check below reports an unreachable cluster with its fix.
        Err(_) => {}
    }
}

/// Records the profile in PostgreSQL, or says that the daemon will.
async fn record_profile(config: &Config, identity: &Identity, timeout: Duration) {
    let recorded = async {
        let options = postgres::connect_options(&config.postgres).map_err(|err| err.to_string())?;
        let pool = postgres::pool(options, 1, timeout);
        let result = async {
            postgres::MIGRATOR
                .run(&pool)
                .await
                .map_err(|err| err.to_string())?;
            store::ensure_profile(&pool, identity, &config.actor_name)
                .await
                .map_err(|err| err.to_string())
        }
        .await;
        pool.close().await;
        result
    };
    match tokio::time::timeout(timeout * 2, recorded).await {
        Ok(Ok(())) => println!(
            "profile:     {} in {}",
            config.actor_name, config.postgres.endpoint
        ),
        Ok(Err(_)) | Err(_) => println!(
            "profile:     not recorded yet; kircd records it when it first reaches {}",
            config.postgres.endpoint
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_uris() {
        let (uri, password) = split_password(
            "postgres.url",
            "postgres://avnadmin:p%40ss@pg.example:123/defaultdb?sslmode=require",
        )
        .unwrap();
        assert_eq!(
            uri,
            "postgres://avnadmin@pg.example:123/defaultdb?sslmode=require"
        );
        assert_eq!(password.unwrap().expose_secret(), "p@ss");
        let (uri, password) = split_password("valkey.url", "redis://127.0.0.1:16379/0").unwrap();
        assert_eq!(uri, "redis://127.0.0.1:16379/0");
        assert!(password.is_none());
    }

    #[test]
    fn switching_authentication_drops_the_other_modes_keys() {
        let mut plan = Plan::default();
        plan.set("kafka.client_cert_file", "/c.pem");
        plan.kafka_auth(KafkaAuth::Sasl);
        assert!(!plan.has("kafka.client_cert_file"));
        assert!(plan.unset.contains(&"kafka.client_key_file"));
        let existing = Existing(
            "[kafka]\nsasl_username = \"old\"\nclient_cert_file = \"/c.pem\"\n[log]\nlevel = \"debug\"\n"
                .parse()
                .unwrap(),
        );
        let merged = existing.merged(&plan);
        assert_eq!(
            merged["kafka"]["security_protocol"].as_str(),
            Some("sasl_ssl")
        );
        assert!(merged["kafka"].get("client_cert_file").is_none());
        assert_eq!(merged["kafka"]["sasl_username"].as_str(), Some("old"));
        assert_eq!(
            merged["log"]["level"].as_str(),
            Some("debug"),
            "other settings stay"
        );
    }

    #[test]
    fn loopback_servers_are_recognised() {
        assert!(is_loopback("127.0.0.1:19092"));
        assert!(is_loopback("localhost:9092,127.0.0.1:9093"));
        assert!(!is_loopback("kafka-abc.aivencloud.com:12345"));
    }
}
