//! Chat stays in order across the two paths. A contact stores messages in
//! the order they arrive, and the direct path is faster than Kafka: a
//! message sent over a data channel while an earlier one is still on its
//! way through Kafka would overtake it (a channel that reopens while the
//! messages sent during the gap are still being delivered). So a message
//! takes the direct path only when no earlier message of the conversation
//! left by Kafka alone and is still unreceived; otherwise it goes by Kafka
//! too, behind the others on the conversation's one partition.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// Per conversation, the sent messages that left by Kafka alone and that the
/// contact has not reported received. A conversation is present once its
/// earlier messages, from before this run, are loaded from the store.
#[derive(Debug, Default)]
pub(super) struct KafkaOnly {
    unreceived: HashMap<Uuid, HashSet<Uuid>>,
}

impl KafkaOnly {
    /// Whether the unreceived messages of `conversation` from before this
    /// run are loaded.
    pub(super) fn is_loaded(&self, conversation: Uuid) -> bool {
        self.unreceived.contains_key(&conversation)
    }

    /// Adds the unreceived messages of `conversation` from the store: those
    /// of an earlier run, whose path is not known, count as Kafka's.
    pub(super) fn load(&mut self, conversation: Uuid, unreceived: impl IntoIterator<Item = Uuid>) {
        self.unreceived
            .entry(conversation)
            .or_default()
            .extend(unreceived);
    }

    /// Decides the path of a new message: true if it may take the direct
    /// path. Either way it counts as Kafka's until [`Self::sent_direct`],
    /// so that a message sent meanwhile does not overtake it.
    pub(super) fn begin(&mut self, conversation: Uuid, message: Uuid) -> bool {
        let unreceived = self.unreceived.entry(conversation).or_default();
        let clear = unreceived.is_empty();
        unreceived.insert(message);
        clear
    }

    /// The direct copy of `message` went out on an open channel, ahead of
    /// anything sent after it.
    pub(super) fn sent_direct(&mut self, conversation: Uuid, message: Uuid) {
        if let Some(unreceived) = self.unreceived.get_mut(&conversation) {
            unreceived.remove(&message);
        }
    }

    /// `message` was never stored (its write failed, or its idempotency
    /// key was taken): nothing waits for it.
    pub(super) fn never_sent(&mut self, conversation: Uuid, message: Uuid) {
        self.sent_direct(conversation, message);
    }

    /// The contact reported `messages` received (or read).
    pub(super) fn received(&mut self, conversation: Uuid, messages: &[Uuid]) {
        if let Some(unreceived) = self.unreceived.get_mut(&conversation) {
            for message in messages {
                unreceived.remove(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaOnly;
    use uuid::Uuid;

    /// One step of a scenario in one conversation.
    enum Step {
        /// Sent, allowed the direct path, and the channel took it.
        Direct(u128),
        /// Sent, allowed the direct path, but no channel took it.
        Unsent(u128),
        /// Sent, and held to Kafka by an earlier message.
        Kafka(u128),
        /// The contact reported these received.
        Received(&'static [u128]),
        /// Unreceived messages of an earlier run, from the store.
        Loaded(&'static [u128]),
    }
    use Step::{Direct, Kafka, Loaded, Received, Unsent};

    fn run(steps: &[Step]) {
        let conversation = Uuid::from_u128(1000);
        let ids = |ns: &[u128]| ns.iter().map(|n| Uuid::from_u128(*n)).collect::<Vec<_>>();
        let mut order = KafkaOnly::default();
        for (index, step) in steps.iter().enumerate() {
            match *step {
                Direct(n) | Unsent(n) | Kafka(n) => {
                    let id = Uuid::from_u128(n);
                    let allowed = order.begin(conversation, id);
                    assert_eq!(
                        allowed,
                        !matches!(step, Kafka(_)),
                        "step {index}: message {n}"
                    );
                    if matches!(step, Direct(_)) {
                        order.sent_direct(conversation, id);
                    }
                }
                Received(ns) => order.received(conversation, &ids(ns)),
                Loaded(ns) => order.load(conversation, ids(ns)),
            }
        }
    }

    #[test]
    fn a_message_takes_the_direct_path_only_behind_nothing_unreceived_by_kafka() {
        // While the channel is open, every message goes direct.
        run(&[Direct(1), Direct(2)]);
        // The channel closed before 1: 2 and 3 follow it by Kafka until all
        // are received.
        run(&[
            Unsent(1),
            Kafka(2),
            Kafka(3),
            Received(&[1, 2]),
            Kafka(4),
            Received(&[3, 4]),
            Direct(5),
        ]);
        // Messages left from an earlier run hold the direct path back too.
        run(&[Loaded(&[7, 8]), Kafka(9), Received(&[7, 8, 9]), Direct(10)]);
        // A receipt for a message that went direct changes nothing.
        run(&[Direct(1), Received(&[1]), Direct(2)]);
    }

    #[test]
    fn conversations_are_independent() {
        let mut order = KafkaOnly::default();
        let (first, second) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(order.begin(first, Uuid::from_u128(10)));
        assert!(order.begin(second, Uuid::from_u128(20)));
        assert!(!order.begin(first, Uuid::from_u128(11)));
        assert!(order.is_loaded(first) && !order.is_loaded(Uuid::from_u128(3)));
    }
}
