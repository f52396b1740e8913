use super::*;

fn hub(capacity: usize) -> Arc<Hub> {
    Hub::new(
        &[
            (Backend::Kafka, "k:1".into()),
            (Backend::Postgres, "p:1/db".into()),
            (Backend::Valkey, "v:1/0".into()),
        ],
        capacity,
    )
}

fn seqs(events: &[Arc<pb::Event>]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

fn snapshot_epoch(event: &pb::Event) -> u64 {
    match &event.kind {
        Some(Kind::Snapshot(snapshot)) => snapshot.epoch,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn fresh_subscriber_gets_a_snapshot_then_live_events() {
    let hub = hub(16);
    hub.backend_up(Backend::Kafka);
    let mut sub = hub.subscribe(0, 0);
    assert_eq!(sub.backlog.len(), 1);
    assert_eq!(sub.backlog[0].seq, 1);
    let Some(Kind::Snapshot(snapshot)) = &sub.backlog[0].kind else {
        panic!("expected a snapshot");
    };
    let kafka = &snapshot.status.as_ref().unwrap().backends[0];
    assert_eq!(kafka.state, BackendState::Up as i32);

    hub.backend_down(Backend::Postgres, "connection refused".into());
    let event = sub.live.try_recv().unwrap();
    assert_eq!(event.seq, 2);
    assert!(
        matches!(&event.kind, Some(Kind::BackendChanged(status)) if status.last_error == "connection refused")
    );
}

#[test]
fn repeated_identical_failures_publish_once_but_count() {
    let hub = hub(16);
    hub.backend_down(Backend::Valkey, "refused".into());
    hub.backend_down(Backend::Valkey, "refused".into());
    hub.backend_down(Backend::Valkey, "refused".into());
    let sub = hub.subscribe(0, 0);
    assert_eq!(
        sub.backlog[0].seq, 1,
        "one event for three identical failures"
    );
    assert_eq!(
        hub.backend(Backend::Valkey).unwrap().consecutive_failures,
        3
    );
    hub.backend_up(Backend::Valkey);
    assert_eq!(
        hub.backend(Backend::Valkey).unwrap().consecutive_failures,
        0
    );
}

#[test]
fn resuming_subscriber_gets_exactly_the_missed_events() {
    let hub = hub(16);
    let first = hub.subscribe(0, 0);
    let epoch = snapshot_epoch(&first.backlog[0]);
    for round in 0..5 {
        hub.backend_down(Backend::Kafka, format!("error {round}"));
    }
    let resumed = hub.subscribe(2, epoch);
    assert_eq!(seqs(&resumed.backlog), vec![3, 4, 5]);
    let up_to_date = hub.subscribe(5, epoch);
    assert!(up_to_date.backlog.is_empty());
}

#[test]
fn resuming_from_too_far_back_another_run_or_the_future_gives_a_snapshot() {
    let hub = hub(4);
    let epoch = hub.epoch();
    for round in 0..10 {
        hub.backend_down(Backend::Kafka, format!("error {round}"));
    }
    // Events 7..=10 are kept; 6 is the oldest resumable position.
    assert_eq!(seqs(&hub.subscribe(6, epoch).backlog), vec![7, 8, 9, 10]);
    for (since, epoch) in [(5, epoch), (3, epoch ^ 1), (11, epoch)] {
        let sub = hub.subscribe(since, epoch);
        assert_eq!(sub.backlog.len(), 1);
        snapshot_epoch(&sub.backlog[0]);
        assert_eq!(sub.backlog[0].seq, 10);
    }
}

#[test]
fn slow_subscriber_lags_without_stalling_the_publisher() {
    let hub = hub(8);
    let mut slow = hub.subscribe(0, 0);
    let mut fast = hub.subscribe(0, 0);
    for round in 0..100 {
        hub.backend_down(Backend::Kafka, format!("error {round}"));
        assert_eq!(fast.live.try_recv().unwrap().seq, round + 1);
    }
    assert!(matches!(
        slow.live.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(92))
    ));
}

#[test]
fn topics_publish_only_on_change() {
    let hub = hub(8);
    let topics = vec![TopicStatus {
        role: "data-in".into(),
        name: "data-in".into(),
        present: true,
        partitions: 2,
    }];
    hub.set_topics(topics.clone());
    hub.set_topics(topics);
    assert_eq!(hub.subscribe(0, 0).backlog[0].seq, 1);
}

#[test]
fn nothing_is_published_after_shutting_down() {
    let hub = hub(16);
    let mut sub = hub.subscribe(0, 0);
    hub.shutting_down("SIGTERM");
    // What subsystems still do while they stop: presence goes offline, a
    // backend check ends, a message state moves.
    hub.update_status(|status| status.heartbeat_produced_unix_ms = 42);
    hub.backend_down(Backend::Valkey, "refused".into());
    hub.set_inbox(InboxFigures {
        rejected: vec![("stale", 1)],
        ..InboxFigures::default()
    });
    let last = sub.live.try_recv().unwrap();
    assert!(matches!(last.kind, Some(Kind::ShuttingDown(_))));
    assert!(matches!(
        sub.live.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
    // A client attaching now still sees the current state in its snapshot.
    let late = hub.subscribe(0, 0);
    let Some(Kind::Snapshot(snapshot)) = &late.backlog[0].kind else {
        panic!("expected a snapshot");
    };
    assert_eq!(
        snapshot.status.as_ref().unwrap().heartbeat_produced_unix_ms,
        42
    );
}

mod folding {
    //! A client that folds every event with `DaemonView::apply` ends where a
    //! client starting from a fresh snapshot begins: for any sequence of
    //! what the subsystems publish.
    use proptest::prelude::*;

    use super::*;
    use crate::store::ContactState;

    #[derive(Debug, Clone)]
    enum Op {
        Up(usize),
        Down(usize, u8),
        Topics(u8),
        Inbox(u8, u64),
        Contact(u8, bool),
        Message(u8, bool, u64),
        State(u8, u64),
        Read(u8, u64),
        Presence(u8, i32, bool),
        Heartbeat(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize).prop_map(Op::Up),
            (0..3usize, 0..3u8).prop_map(|(backend, error)| Op::Down(backend, error)),
            (0..4u8).prop_map(Op::Topics),
            (0..4u8, 0..100u64).prop_map(|(reason, count)| Op::Inbox(reason, count)),
            (0..4u8, any::<bool>()).prop_map(|(contact, accepted)| Op::Contact(contact, accepted)),
            (0..4u8, any::<bool>(), 1..50u64)
                .prop_map(|(contact, outgoing, seq)| Op::Message(contact, outgoing, seq)),
            (0..4u8, 1..50u64).prop_map(|(contact, seq)| Op::State(contact, seq)),
            (0..4u8, 0..50u64).prop_map(|(contact, seq)| Op::Read(contact, seq)),
            (0..4u8, 0..4i32, any::<bool>())
                .prop_map(|(contact, state, typing)| Op::Presence(contact, state, typing)),
            (0..1_000_000i64).prop_map(Op::Heartbeat),
        ]
    }

    const BACKENDS: [Backend; 3] = [Backend::Kafka, Backend::Postgres, Backend::Valkey];
    const REASONS: [&str; 4] = ["stale", "replay", "undecodable", "stranger"];

    /// Four contacts, made once: signing their profiles is the slow part.
    fn contacts() -> &'static [Arc<Contact>] {
        static CONTACTS: std::sync::OnceLock<Vec<Arc<Contact>>> = std::sync::OnceLock::new();
        CONTACTS.get_or_init(|| {
            let me = crate::testing::identity(9);
            let book = crate::book::ContactBook::new(me);
            (0..4u8)
                .map(|index| {
                    let identity = crate::testing::identity(10 + index);
                    let profile = crate::testing::profile(&identity, &format!("name{index}"), 1);
                    book.admit_verified(&profile, ContactState::Accepted, i64::from(index))
                })
                .collect()
        })
    }

    fn contact(index: u8, accepted: bool) -> Contact {
        Contact {
            state: if accepted {
                ContactState::Accepted
            } else {
                ContactState::Request
            },
            ..Contact::clone(&contacts()[usize::from(index)])
        }
    }

    fn message_id(index: u8, seq: u64) -> Uuid {
        Uuid::from_u128(u128::from(index) << 64 | u128::from(seq))
    }

    fn message(index: u8, outgoing: bool, seq: u64) -> Message {
        let contact = &contacts()[usize::from(index)];
        Message {
            id: message_id(index, seq),
            seq,
            conversation_id: contact.conversation_id,
            sender: Some(contact.actor_id),
            outgoing,
            action: false,
            body: format!("text {seq}"),
            created_at_unix_ms: i64::try_from(seq).unwrap_or(0) * 1000,
            state: MessageState::Received,
            direct: false,
            transfer_id: None,
            channel_seq: None,
            line: None,
            reply_to: None,
            quote: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        }
    }

    fn run(hub: &Hub, op: &Op) {
        match op.clone() {
            Op::Up(backend) => hub.backend_up(BACKENDS[backend]),
            Op::Down(backend, error) => {
                hub.backend_down(BACKENDS[backend], format!("error {error}"))
            }
            Op::Topics(count) => hub.set_topics(
                (0..count)
                    .map(|index| TopicStatus {
                        role: format!("role{index}"),
                        name: format!("topic{index}"),
                        present: index % 2 == 0,
                        partitions: 2,
                    })
                    .collect(),
            ),
            Op::Inbox(reason, count) => hub.set_inbox(InboxFigures {
                rejected: vec![(REASONS[usize::from(reason)], count)],
                redelivered: count / 2,
                quarantine: crate::store::QuarantineFill {
                    rows: count,
                    ..crate::store::QuarantineFill::default()
                },
                log_lines_suppressed: 0,
            }),
            Op::Contact(index, accepted) => hub.contact_changed(&contact(index, accepted)),
            Op::Message(index, outgoing, seq) => {
                hub.message_added(&message(index, outgoing, seq));
            }
            Op::State(index, seq) => hub.message_state_changed(
                message_id(index, seq),
                contacts()[usize::from(index)].conversation_id,
                MessageState::Read,
            ),
            Op::Read(index, seq) => {
                hub.read_marker_moved(contacts()[usize::from(index)].conversation_id, seq, 0);
            }
            Op::Presence(index, state, typing) => hub.set_peer_presence(&PeerPresence {
                actor: contacts()[usize::from(index)].actor_id,
                state: PresenceState::from_code(state),
                text: String::new(),
                typing,
            }),
            Op::Heartbeat(at) => hub.update_status(|status| status.heartbeat_produced_unix_ms = at),
        }
    }

    /// What a client holds, without what is by design not sent as events:
    /// the uptime, and a backend's failure count and last good check (a
    /// repeated identical result makes no event; a snapshot has the latest).
    fn comparable(mut view: DaemonView) -> DaemonView {
        if let Some(status) = &mut view.status {
            status.uptime_ms = 0;
            for backend in &mut status.backends {
                backend.consecutive_failures = 0;
                backend.last_ok_unix_ms = 0;
            }
        }
        view
    }

    proptest! {
        #[test]
        fn events_folded_equal_a_fresh_snapshot(ops in proptest::collection::vec(op(), 0..60)) {
            let hub = hub(4096);
            let mut early = hub.subscribe(0, 0);
            let mut folded = DaemonView::default();
            for event in &early.backlog {
                folded.apply(event);
            }
            for op in &ops {
                run(&hub, op);
            }
            while let Ok(event) = early.live.try_recv() {
                folded.apply(&event);
            }
            let mut fresh = DaemonView::default();
            for event in &hub.subscribe(0, 0).backlog {
                fresh.apply(event);
            }
            prop_assert_eq!(comparable(folded), comparable(fresh));
        }
    }
}
