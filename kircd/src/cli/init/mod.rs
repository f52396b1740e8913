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

mod ask;
mod plan;
pub mod prompt;
pub mod terraform;
mod write;

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
use ask::*;
use plan::*;
use prompt::Prompter;
use write::*;

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
            store::ensure_profile(
                &pool,
                identity.id(),
                &config.actor_name,
                identity.signing_key().as_bytes(),
                identity.box_key().as_bytes(),
            )
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
