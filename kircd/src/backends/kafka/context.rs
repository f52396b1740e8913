//! The context every librdkafka client of kircd carries: its callbacks
//! (logs to tracing, the last error, fatal errors, delivery reports,
//! statistics) and the repair of a client that lost every broker.

use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;

use super::producer;

/// How often librdkafka hands each client's statistics to its context,
/// which looks in them for a client that lost every broker. The figure is
/// also how long such a client waits for its repair; the statistics cost a
/// few kilobytes of JSON per client per interval.
pub(super) const STATISTICS_INTERVAL_MS: &str = "5000";

/// librdkafka's callbacks: logs go to tracing, the last client-level error
/// is kept so that a timed-out request can say why, and the statistics are
/// watched for a client that lost every broker.
#[derive(Debug)]
pub struct KafkaContext {
    /// The client's `bootstrap.servers`, given back to it when it lost
    /// every broker.
    bootstrap_servers: String,
    last_error: Mutex<Option<String>>,
    /// Set and notified when librdkafka reports a fatal error: the client
    /// is dead and its owner must replace it. Every waiter is woken (the
    /// own topics' consumer has three readers), and a later one sees the
    /// flag.
    fatal_seen: AtomicBool,
    fatal: tokio::sync::Notify,
    /// Set (and notified) when the client's statistics list no broker to
    /// connect to; see [`restore_lost_brokers`].
    brokers_lost: AtomicBool,
    brokers_lost_signal: tokio::sync::Notify,
}

impl KafkaContext {
    /// The context of a client made from `settings`.
    pub fn new(settings: &ClientConfig) -> Self {
        KafkaContext {
            bootstrap_servers: settings
                .get("bootstrap.servers")
                .unwrap_or_default()
                .to_owned(),
            last_error: Mutex::new(None),
            fatal_seen: AtomicBool::new(false),
            fatal: tokio::sync::Notify::new(),
            brokers_lost: AtomicBool::new(false),
            brokers_lost_signal: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once librdkafka reported a fatal error on this client.
    pub async fn failed(&self) {
        let notified = self.fatal.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a report in between wakes it.
        notified.as_mut().enable();
        if self.fatal_seen.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Resolves once the client's statistics showed it without a broker;
    /// its owner then calls [`restore_lost_brokers`].
    pub async fn brokers_lost(&self) {
        self.brokers_lost_signal.notified().await;
    }

    pub(super) fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a client whose statistics list these brokers has lost every
/// broker it could connect to: only librdkafka's own handles are left (the
/// internal one, and the logical group coordinator, which takes its address
/// from a real broker).
fn has_no_broker<'a>(sources: impl IntoIterator<Item = &'a str>) -> bool {
    !sources
        .into_iter()
        .any(|source| source == "configured" || source == "learned")
}

/// Gives a client that lost every broker its bootstrap servers again.
///
/// librdkafka (2.12.1) drops the brokers a metadata response does not list.
/// A restarting KRaft broker that is registered but still fenced answers
/// with its topics and no broker at all, and a client that asks just then
/// drops every broker, bootstrap ones included, and never bootstraps again
/// (confluentinc/librdkafka#5301): each of its requests fails for as long
/// as it lives, and a consumer never rejoins its group. Seen here in about
/// one broker restart in four on a loaded machine. The context notices it in
/// the client's statistics; whoever polls the client calls this after each
/// poll (or on [`KafkaContext::brokers_lost`]), and the client connects to
/// its bootstrap servers as it did when it started.
#[allow(unsafe_code)]
pub fn restore_lost_brokers(client: &Client<KafkaContext>) {
    let context = client.context();
    if !context.brokers_lost.swap(false, Ordering::AcqRel) {
        return;
    }
    let Ok(servers) = CString::new(context.bootstrap_servers.as_str()) else {
        // A list with a NUL byte could not have made the client either.
        return;
    };
    // SAFETY: `client` is borrowed for the call, so its native handle is
    // alive; rd_kafka_brokers_add is safe to call from any thread at any
    // time and copies the list it is given.
    let added =
        unsafe { rdkafka::bindings::rd_kafka_brokers_add(client.native_ptr(), servers.as_ptr()) };
    tracing::warn!(
        added,
        "a Kafka client had lost every broker after a broker restart; it connects to its bootstrap servers again"
    );
}

/// The one part of librdkafka's statistics that kircd reads: where each
/// broker handle came from. Decoding only this skips the rest of the JSON
/// (every topic and partition, a hundred figures each) without building it,
/// which the full `rdkafka::Statistics` does for every client every interval.
#[derive(Debug, serde::Deserialize)]
struct BrokerSources {
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerSource>,
}

#[derive(Debug, serde::Deserialize)]
struct BrokerSource {
    source: String,
}

/// Whether the statistics `json` show a client that lost every broker;
/// `None` if they cannot be read.
fn lost_every_broker(json: &[u8]) -> Option<bool> {
    let sources: BrokerSources = serde_json::from_slice(json).ok()?;
    Some(has_no_broker(
        sources
            .brokers
            .values()
            .map(|broker| broker.source.as_str()),
    ))
}

impl ClientContext for KafkaContext {
    fn stats_raw(&self, statistics: &[u8]) {
        match lost_every_broker(statistics) {
            Some(true) => {
                self.brokers_lost.store(true, Ordering::Release);
                // A permit is kept if nobody waits yet.
                self.brokers_lost_signal.notify_one();
            }
            Some(false) => {}
            None => tracing::debug!(target: "librdkafka", "unreadable statistics"),
        }
    }

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
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::Fatal)) {
            self.fatal_seen.store(true, Ordering::Release);
            self.fatal.notify_waiters();
        }
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
    type DeliveryOpaque = Box<producer::DeliverySender>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, acked: Self::DeliveryOpaque) {
        use rdkafka::Message as _;
        let outcome = match result {
            Ok(record) => Ok((record.partition(), record.offset())),
            Err((err, _record)) => Err(err.clone()),
        };
        // The sender's future may have been dropped (its caller gave up).
        let _ = acked.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::{has_no_broker, lost_every_broker};

    #[test]
    fn the_broker_sources_are_read_from_librdkafkas_statistics() {
        // The shape librdkafka 2.12 emits, cut down to what matters here.
        let live = br#"{"name":"kircd#consumer-1","type":"consumer","ts":1,"brokers":{
            "127.0.0.1:19092/1":{"name":"127.0.0.1:19092/1","nodeid":1,"source":"learned","state":"UP","rtt":{"min":1}},
            "GroupCoordinator":{"name":"GroupCoordinator","nodeid":-1,"source":"logical","state":"UP"}},
            "topics":{"data-in":{"topic":"data-in","partitions":{"0":{"partition":0,"msgq_cnt":0}}}}}"#;
        let lost = br#"{"name":"kircd#consumer-1","brokers":{
            "GroupCoordinator":{"name":"GroupCoordinator","source":"logical"}},"topics":{}}"#;
        assert_eq!(lost_every_broker(live), Some(false));
        assert_eq!(lost_every_broker(lost), Some(true));
        assert_eq!(lost_every_broker(br#"{"name":"x"}"#), Some(true));
        assert_eq!(lost_every_broker(b"not json"), None);
    }

    #[test]
    fn a_client_with_only_librdkafkas_own_handles_has_no_broker() {
        let cases: [(&[&str], bool); 6] = [
            (&[], true),
            (&["internal"], true),
            (&["logical", "internal"], true),
            (&["learned", "logical"], false),
            (&["configured"], false),
            (&["internal", "configured", "learned"], false),
        ];
        for (sources, expected) in cases {
            assert_eq!(
                has_no_broker(sources.iter().copied()),
                expected,
                "{sources:?}"
            );
        }
    }
}
