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
    hub.set_inbox(
        vec![RejectionCount {
            reason: "stale".into(),
            count: 1,
        }],
        pb::InboxCounters::default(),
    );
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
