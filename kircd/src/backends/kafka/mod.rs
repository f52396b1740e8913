//! The actor's own Kafka cluster: client settings for every security mode,
//! the health probe, making sure the four topics exist, and the producer
//! that every send goes through.

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::v1::TopicStatus;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::backends::supervise::Probe;
use crate::config::{KafkaConfig, KafkaSecurity};
use crate::hub::Hub;

pub mod consumer;
mod context;
pub mod own_topics;
mod producer;
pub mod settings;

pub use context::{KafkaContext, restore_lost_brokers};
pub use own_topics::{Feed, OwnTopics};
pub use producer::{AckedProducer, Delivered};
pub use settings::{client_config, peer_config, producer_settings};

/// How long a failed check waits for librdkafka's error event, which says
/// why (refused, TLS, authentication) where the failed request does not.
const ERROR_EVENT_WAIT: Duration = Duration::from_millis(250);

/// A check asks for metadata in attempts this long, looking at the error
/// events in between, so that a refused password ends it early.
const METADATA_ATTEMPT: Duration = Duration::from_millis(500);

/// Retention of each topic kircd creates, by role, in milliseconds; terraform/
/// gives the topics it makes the same figures (a test keeps them in step).
/// Chat envelopes wait in data-in until stored, and in data-out until the
/// contact's cluster acknowledges them, which may be powered off for days;
/// control messages go stale in minutes, so a day keeps the free tier's disk
/// small.
pub const TOPIC_RETENTION_MS: [(&str, u64); 4] = [
    ("data-in", 7 * DAY_MS),
    ("data-out", 14 * DAY_MS),
    ("rpc-in", DAY_MS),
    ("rpc-out", DAY_MS),
];
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The topics whose records carry the broker's append time rather than the
/// producer's: the inboxes, where contacts produce. kircd limits a contact's
/// rate by the minute its records reached the inbox (see
/// `messaging::inbox`), which a contact cannot forge and which spreads a
/// backlog over the minutes it was sent in. terraform/ sets the same.
pub const APPEND_TIME_TOPICS: [&str; 2] = ["data-in", "rpc-in"];

fn retention_ms(role: &str) -> Option<u64> {
    TOPIC_RETENTION_MS
        .iter()
        .find(|(known, _)| *known == role)
        .map(|(_, retention)| *retention)
}

/// Why a check of the cluster failed, as far as librdkafka's error events
/// tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, timed out, name not resolved: the cluster is not there.
    Unreachable,
    /// The broker refused the SCRAM user or password.
    Authentication,
    /// The broker's certificate did not verify against the CA.
    Certificate,
    /// Another TLS failure: a client certificate refused, or TLS spoken to a
    /// plaintext port (or the reverse).
    Tls,
    /// The user lacks a permission.
    Authorization,
    Other,
}

impl Failure {
    pub fn classify(reason: &str) -> Self {
        if reason.contains("SASL authentication") || reason.contains("Authentication failed") {
            Failure::Authentication
        } else if reason.contains("certificate verify failed")
            || reason.contains("broker certificate could not be verified")
        {
            Failure::Certificate
        } else if reason.contains("SSL") || reason.contains("TLS") {
            Failure::Tls
        } else if reason.contains("uthoriz") {
            Failure::Authorization
        } else if reason.contains("Connection refused")
            || reason.contains("Timed out")
            || reason.contains("timed out")
            || reason.contains("no answer")
            || reason.contains("resolve")
            || reason.contains("Broker transport failure")
        {
            Failure::Unreachable
        } else {
            Failure::Other
        }
    }

    /// Whether waiting longer cannot change the outcome, so that a check can
    /// report at once instead of at its timeout.
    fn is_settled(self) -> bool {
        matches!(
            self,
            Failure::Authentication | Failure::Certificate | Failure::Authorization
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{reason}")]
    Failed { failure: Failure, reason: String },
    #[error("creating topics failed: {0}")]
    CreateTopics(String),
    #[error("the Kafka check was interrupted")]
    Interrupted,
}

impl Error {
    pub fn failure(&self) -> Failure {
        match self {
            Error::Failed { failure, .. } => *failure,
            Error::Client(err) => Failure::classify(&err.to_string()),
            Error::CreateTopics(text) => Failure::classify(text),
            Error::Interrupted => Failure::Other,
        }
    }

    /// What the user can do about it, for `kircd doctor` and `kircd init`.
    pub fn fix(&self, config: &KafkaConfig) -> String {
        const AIVEN_CA: &str = "on Aiven, the project CA: `terraform output -raw kafka_ca_pem`, or kircd init --from-terraform again";
        let ca_file = match &config.security {
            KafkaSecurity::Plaintext => None,
            KafkaSecurity::Ssl { ca_file, .. } | KafkaSecurity::SaslSsl { ca_file, .. } => {
                ca_file.as_ref()
            }
        };
        match self.failure() {
            Failure::Unreachable => format!(
                "check kafka.bootstrap_servers ({}) and that the cluster runs (local stack: dev/stack up kafka; Aiven: a free Kafka powers off after a day without traffic, power it on in the console)",
                config.bootstrap_servers
            ),
            Failure::Authentication => match &config.security {
                KafkaSecurity::SaslSsl { username, .. } => format!(
                    "the broker refused user `{username}` with the password kircd has: check kafka.sasl_username and the password in kafka.sasl_password_file (or KIRC_KAFKA_SASL_PASSWORD); on Aiven: `terraform output -raw kircd_kafka_password`"
                ),
                _ => "the broker wants SCRAM: set kafka.security_protocol = \"sasl_ssl\" with kafka.sasl_username and kafka.sasl_password_file".to_owned(),
            },
            Failure::Certificate => match ca_file {
                Some(path) => format!(
                    "the broker's certificate is not signed by the CA in kafka.ca_file ({}): point kafka.ca_file at the CA that signed it ({AIVEN_CA})",
                    path.display()
                ),
                None => format!(
                    "kafka.ca_file is unset, so the system's CA store was used, and it does not hold the broker's CA: set kafka.ca_file ({AIVEN_CA})"
                ),
            },
            Failure::Tls => "check kafka.security_protocol against the port (Aiven's ports all speak TLS; the local stack's 19092 does not) and, for ssl, kafka.client_cert_file and kafka.client_key_file".to_owned(),
            Failure::Authorization => "grant kircd's user the missing permission (terraform/ grants read and write on the four topics and the kircd.* consumer groups); with topics made by terraform, set kafka.create_topics = false".to_owned(),
            Failure::Other => "see the error above; `kircd doctor` checks again after each change".to_owned(),
        }
    }
}

/// What a check of the cluster found.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub brokers: usize,
    pub topics: Vec<TopicStatus>,
}

impl ClusterReport {
    pub fn missing(&self) -> Vec<&TopicStatus> {
        self.topics.iter().filter(|topic| !topic.present).collect()
    }
}

/// A light client of the actor's own cluster for checks. It has no polling
/// thread of its own; in the daemon it is the outbox producer's client (see
/// [`Cluster::on_client`]), since every librdkafka client wakes several
/// times a second while idle, whatever it does.
#[derive(Clone)]
pub struct Cluster {
    producer: Arc<BaseProducer<KafkaContext>>,
    config: KafkaConfig,
    client_id: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster client of its own, for the commands that run once.
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, Error> {
        let settings = client_config(config, client_id);
        let producer =
            BaseProducer::from_config_and_context(&settings, KafkaContext::new(&settings))
                .map_err(Error::Client)?;
        Ok(Cluster::on_client(Arc::new(producer), config, client_id))
    }

    /// Checks through a client that already exists (the daemon's outbox
    /// producer): polling it here from another thread than its own is safe,
    /// and serves whatever it has (a delivery report reaches its waiting
    /// send from either thread).
    pub fn on_client(
        producer: Arc<BaseProducer<KafkaContext>>,
        config: &KafkaConfig,
        client_id: &str,
    ) -> Self {
        Cluster {
            producer,
            config: config.clone(),
            client_id: client_id.to_owned(),
        }
    }

    /// Fetches the cluster's metadata and reports the four topics.
    pub async fn inspect(&self, timeout: Duration) -> Result<ClusterReport, Error> {
        let producer = Arc::clone(&self.producer);
        let topics = self.config.topics.clone();
        // fetch_metadata blocks its thread for up to its timeout.
        tokio::task::spawn_blocking(move || {
            // An error event left from an earlier check says nothing about
            // this one.
            producer.context().last_error().take();
            let deadline = std::time::Instant::now() + timeout;
            let metadata = loop {
                let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                let attempt = remaining.min(METADATA_ATTEMPT);
                // The four topics by name, not the whole cluster: a shared
                // cluster (the dev stack holds every test's topics) made
                // parsing all of its metadata every probe most of an idle
                // daemon's CPU.
                let result: Result<Vec<_>, _> = topics
                    .with_roles()
                    .iter()
                    .map(|(_, name)| producer.client().fetch_metadata(Some(name), attempt))
                    .collect();
                // Serves the error and statistics callbacks, so that a
                // failure can say why and a client that lost every broker
                // gets them back.
                producer.poll(Duration::ZERO);
                restore_lost_brokers(producer.client());
                let err = match result {
                    Ok(metadata) => {
                        producer.context().last_error().take();
                        break metadata;
                    }
                    Err(err) => err,
                };
                let reason = producer.context().last_error().clone();
                let failure = reason.as_deref().map(Failure::classify);
                // A refused password or certificate will not change by
                // waiting; anything else may be a cluster still starting.
                if failure.is_some_and(Failure::is_settled) || remaining <= attempt {
                    let reason =
                        match reason {
                            Some(reason) => reason,
                            None => {
                                // A failure that came faster than its error
                                // event waits a moment for it.
                                producer.poll(ERROR_EVENT_WAIT);
                                producer.context().last_error().clone().unwrap_or_else(|| {
                                    format!("cannot fetch cluster metadata: {err}")
                                })
                            }
                        };
                    return Err(Error::Failed {
                        failure: Failure::classify(&reason),
                        reason,
                    });
                }
            };
            let brokers = metadata.first().map_or(0, |one| one.brokers().len());
            let report = topics
                .with_roles()
                .iter()
                .zip(&metadata)
                .map(|((role, name), metadata)| {
                    let found = metadata
                        .topics()
                        .iter()
                        .find(|topic| topic.name() == *name && topic.error().is_none());
                    TopicStatus {
                        role: (*role).to_owned(),
                        name: (*name).to_owned(),
                        present: found.is_some(),
                        partitions: found.map_or(0, |topic| {
                            u32::try_from(topic.partitions().len()).unwrap_or(0)
                        }),
                    }
                })
                .collect();
            Ok(ClusterReport {
                brokers,
                topics: report,
            })
        })
        .await
        .map_err(|_| Error::Interrupted)?
    }

    /// Creates the given topics with the configured partitions and
    /// replication. A topic that already exists counts as created.
    pub async fn create_topics(
        &self,
        missing: &[&TopicStatus],
        timeout: Duration,
    ) -> Result<(), Error> {
        // The admin client runs a polling thread, so it lives only as long as
        // this call.
        let settings = client_config(&self.config, &self.client_id);
        let admin = AdminClient::from_config_and_context(&settings, KafkaContext::new(&settings))
            .map_err(Error::Client)?;
        // NewTopic borrows its settings, so the retention strings live here.
        let retentions: Vec<Option<String>> = missing
            .iter()
            .map(|topic| retention_ms(&topic.role).map(|ms| ms.to_string()))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .zip(&retentions)
            .map(|(topic, retention)| {
                let new = NewTopic::new(
                    &topic.name,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                );
                let new = match retention {
                    Some(ms) => new.set("retention.ms", ms),
                    None => new,
                };
                if APPEND_TIME_TOPICS.contains(&topic.role.as_str()) {
                    new.set("message.timestamp.type", "LogAppendTime")
                } else {
                    new
                }
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = admin
            .create_topics(new_topics.iter(), &options)
            .await
            .map_err(|err| Error::CreateTopics(err.to_string()))?;
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|result| match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((name, code)) => Some(format!("{name}: {code}")),
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::CreateTopics(failures.join("; ")))
        }
    }

    /// Inspects the cluster and creates missing topics where allowed.
    pub async fn ensure_topics(
        &self,
        timeout: Duration,
    ) -> Result<(ClusterReport, Option<Error>), Error> {
        let report = self.inspect(timeout).await?;
        let missing = report.missing();
        if missing.is_empty() || !self.config.create_topics {
            return Ok((report, None));
        }
        if let Err(err) = self.create_topics(&missing, timeout).await {
            return Ok((report, Some(err)));
        }
        // The controller has the topics once create_topics returns; the
        // broker's metadata catches up a moment later, and only the metadata
        // can say when.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let report = self.inspect(timeout).await?;
            if report.missing().is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok((report, None));
            }
            tokio::time::sleep(METADATA_PROPAGATION_POLL).await;
        }
    }
}

/// How often a check looks again for topics it has just created.
const METADATA_PROPAGATION_POLL: Duration = Duration::from_millis(50);

/// The supervisor's view of the cluster.
#[derive(Debug)]
pub struct KafkaProbe {
    cluster: Cluster,
    hub: Arc<Hub>,
    timeout: Duration,
    /// The missing topics last reported, so that a persisting problem is
    /// logged once rather than at every check.
    reported_missing: Option<Vec<String>>,
}

impl KafkaProbe {
    pub fn new(cluster: Cluster, hub: Arc<Hub>, timeout: Duration) -> Self {
        KafkaProbe {
            cluster,
            hub,
            timeout,
            reported_missing: None,
        }
    }
}

impl Probe for KafkaProbe {
    async fn probe(&mut self) -> Result<(), String> {
        let (report, create_error) = self
            .cluster
            .ensure_topics(self.timeout)
            .await
            .map_err(|err| err.to_string())?;
        let missing: Vec<String> = report
            .missing()
            .iter()
            .map(|topic| topic.name.clone())
            .collect();
        if self.reported_missing.as_ref() != Some(&missing) {
            if missing.is_empty() {
                tracing::info!(topics = ?report.topics.iter().map(|t| &t.name).collect::<Vec<_>>(), "all topics present");
            } else {
                let why = create_error.map_or_else(
                    || String::from("kafka.create_topics is false"),
                    |err| err.to_string(),
                );
                tracing::error!(missing = %missing.join(", "), %why, "topics are missing: create them (terraform/) or let kircd create them");
            }
            self.reported_missing = Some(missing);
        }
        self.hub.set_topics(report.topics);
        Ok(())
    }
}
