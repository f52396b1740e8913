//! librdkafka's settings, in one place: for clients of the actor's own
//! cluster (from the config) and for producers to a contact's cluster (from
//! the access in its signed profile). Secrets go to librdkafka only;
//! `ClientConfig`'s Debug output would show them, so it is never logged.

use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use secrecy::ExposeSecret;

use crate::config::{KafkaConfig, KafkaSecurity};

/// How long a produce may wait in librdkafka before it fails and the caller
/// retries with its own backoff (and, for peers, a fresh look at the
/// contact's profile).
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every client sets, whoever's cluster it talks to.
fn common(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        .set("socket.keepalive.enable", "true")
        // Chat is small records one at a time: Nagle's algorithm would hold
        // them back waiting for delayed ACKs.
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.max.ms", "10000")
        // A metadata request for a topic that does not exist must never
        // create it with the broker's defaults (librdkafka's producers
        // allow that by default): kircd creates its topics itself, with
        // their partitions, retention and timestamp type.
        .set("allow.auto.create.topics", "false")
        .set(
            "statistics.interval.ms",
            super::context::STATISTICS_INTERVAL_MS,
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// A client of the actor's own cluster.
pub fn client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut client = common(&config.bootstrap_servers, client_id);
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

/// A producer to a contact's cluster, with the write-only credential its
/// profile carries.
pub fn peer_config(access: &wire::KafkaAccess, client_id: &str) -> ClientConfig {
    let mut client = common(&access.bootstrap_servers, client_id);
    client.set("security.protocol", &access.security_protocol);
    if access.security_protocol == "sasl_ssl" {
        client
            .set("sasl.mechanisms", &access.sasl_mechanism)
            .set("sasl.username", &access.username)
            .set("sasl.password", &access.password);
    }
    if !access.ca_pem.is_empty() {
        client.set("ssl.ca.pem", &access.ca_pem);
    }
    producer_settings(&mut client);
    client
}

/// Producer settings shared by the outbox and peer producers: idempotent
/// (no duplicates or reordering from retries), acknowledged by all replicas,
/// sent at once.
pub fn producer_settings(config: &mut ClientConfig) {
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set(
            "message.timeout.ms",
            PRODUCE_TIMEOUT.as_millis().to_string(),
        )
        // An idle daemon keeps at most this much of its own messages in
        // librdkafka's queue; it bounds memory, not throughput.
        .set("queue.buffering.max.kbytes", "16384");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(protocol: &str) -> wire::KafkaAccess {
        wire::KafkaAccess {
            bootstrap_servers: "peer:9093".into(),
            data_in_topic: "x.data-in".into(),
            rpc_in_topic: "x.rpc-in".into(),
            security_protocol: protocol.into(),
            sasl_mechanism: "SCRAM-SHA-256".into(),
            username: "public".into(),
            password: "write-only".into(),
            ca_pem: String::new(),
        }
    }

    #[test]
    fn peer_producers_use_the_profile_credential_and_the_shared_producer_settings() {
        let config = peer_config(&access("sasl_ssl"), "kircd-x-peer");
        assert_eq!(config.get("bootstrap.servers"), Some("peer:9093"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.username"), Some("public"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("socket.nagle.disable"), Some("true"));
        assert_eq!(config.get("ssl.ca.pem"), None, "no CA given, none set");
    }

    #[test]
    fn a_plaintext_peer_gets_no_credential() {
        let config = peer_config(&access("plaintext"), "kircd-x-peer");
        assert_eq!(config.get("sasl.username"), None);
        assert_eq!(config.get("sasl.password"), None);
    }
}
