//! The actor's own Kafka cluster: client settings for every security mode,
//! the health probe, and making sure the four topics exist.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kirc_proto::v1::TopicStatus;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use secrecy::ExposeSecret;

use crate::config::{KafkaConfig, KafkaSecurity};
use crate::hub::Hub;
use crate::supervise::Probe;

/// How long a failed check waits for librdkafka's error event, which says
/// why (refused, TLS, authentication) where the failed request does not.
const ERROR_EVENT_WAIT: Duration = Duration::from_millis(250);

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

fn retention_ms(role: &str) -> Option<u64> {
    TOPIC_RETENTION_MS
        .iter()
        .find(|(known, _)| *known == role)
        .map(|(_, retention)| *retention)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{0}")]
    Unreachable(String),
    #[error("creating topics failed: {0}")]
    CreateTopics(String),
    #[error("the Kafka check was interrupted")]
    Interrupted,
}

impl Error {
    /// What the user can do about it, for `kircd doctor`.
    pub fn fix(&self) -> &'static str {
        let text = self.to_string();
        if text.contains("Connection refused")
            || text.contains("Timed out")
            || text.contains("no answer")
        {
            "check kafka.bootstrap_servers and that the cluster is running (local stack: dev/stack up kafka; Aiven: the service is powered on)"
        } else if text.contains("SASL authentication") || text.contains("Authentication failed") {
            "check kafka.sasl_username and the password (kafka.sasl_password_file or KIRC_KAFKA_SASL_PASSWORD)"
        } else if text.contains("SSL") || text.contains("certificate") {
            "check kafka.ca_file (the CA that signed the broker's certificate) and the client certificate files"
        } else if text.contains("uthoriz") {
            "grant the user the missing permission, or create the topics with terraform and set kafka.create_topics = false"
        } else {
            "see the error above; `kircd doctor` rechecks after each change"
        }
    }
}

/// librdkafka's callbacks: logs go to tracing, and the last client-level
/// error is kept so that a timed-out request can say why.
#[derive(Debug, Default)]
pub struct KafkaContext {
    last_error: Mutex<Option<String>>,
}

impl KafkaContext {
    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka logs every reconnect attempt as an error; the supervisor
        // reports state changes once, so these are detail.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::warn!(target: "librdkafka", facility, "{message}");
            }
            _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        let mut last = self.last_error();
        // "n/n brokers are down" follows the error that says why; keep that.
        let summary = matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        if !(summary && last.is_some()) {
            *last = Some(reason.to_owned());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaContext {}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, (): Self::DeliveryOpaque) {}
}

/// The librdkafka settings shared by every client of the actor's own cluster.
/// Secrets go to librdkafka only; `ClientConfig`'s Debug output would show
/// them, so it is never logged.
pub fn client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", client_id)
        .set("socket.keepalive.enable", "true")
        // Chat is small records one at a time: Nagle's algorithm would hold
        // them back waiting for delayed ACKs.
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.max.ms", "10000")
        .set_log_level(RDKafkaLogLevel::Warning);
    match &config.security {
        KafkaSecurity::Plaintext => {
            client.set("security.protocol", "plaintext");
        }
        KafkaSecurity::Ssl {
            ca_file,
            client_cert_file,
            client_key_file,
        } => {
            client
                .set("security.protocol", "ssl")
                .set(
                    "ssl.certificate.location",
                    client_cert_file.to_string_lossy(),
                )
                .set("ssl.key.location", client_key_file.to_string_lossy());
            if let Some(ca) = ca_file {
                client.set("ssl.ca.location", ca.to_string_lossy());
            }
        }
        KafkaSecurity::SaslSsl {
            ca_file,
            mechanism,
            username,
            password,
        } => {
            client
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanisms", mechanism)
                .set("sasl.username", username)
                .set("sasl.password", password.expose_secret());
            if let Some(ca) = ca_file {
                client.set("ssl.ca.location", ca.to_string_lossy());
            }
        }
    }
    client
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
/// thread of its own, so an idle daemon costs no CPU here.
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
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, Error> {
        let producer = BaseProducer::from_config_and_context(
            &client_config(config, client_id),
            KafkaContext::default(),
        )
        .map_err(Error::Client)?;
        Ok(Cluster {
            producer: Arc::new(producer),
            config: config.clone(),
            client_id: client_id.to_owned(),
        })
    }

    /// Fetches the cluster's metadata and reports the four topics.
    pub async fn inspect(&self, timeout: Duration) -> Result<ClusterReport, Error> {
        let producer = Arc::clone(&self.producer);
        let topics = self.config.topics.clone();
        // fetch_metadata blocks its thread for up to `timeout`.
        tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(None, timeout);
            // Serves the error callback, so that a failure can say why. A
            // failure that came faster than its error event waits a moment
            // for it.
            producer.poll(Duration::ZERO);
            let metadata = match metadata {
                Ok(metadata) => {
                    producer.context().last_error().take();
                    metadata
                }
                Err(err) => {
                    if producer.context().last_error().is_none() {
                        producer.poll(ERROR_EVENT_WAIT);
                    }
                    let reason = producer.context().last_error().clone();
                    return Err(Error::Unreachable(match reason {
                        Some(reason) => reason,
                        None => format!("cannot fetch cluster metadata: {err}"),
                    }));
                }
            };
            let report = topics
                .with_roles()
                .iter()
                .map(|(role, name)| {
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
                brokers: metadata.brokers().len(),
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
        let admin = AdminClient::from_config_and_context(
            &client_config(&self.config, &self.client_id),
            KafkaContext::default(),
        )
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
                match retention {
                    Some(ms) => new.set("retention.ms", ms),
                    None => new,
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
        match self.create_topics(&missing, timeout).await {
            Ok(()) => Ok((self.inspect(timeout).await?, None)),
            Err(err) => Ok((report, Some(err))),
        }
    }
}

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
