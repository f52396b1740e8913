//! Following a daemon's event stream until a condition holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::time::{Duration, Instant};

use kirc_proto::DaemonView;
use kirc_proto::v1::{self as pb, Backend, BackendState};

/// A subscriber that keeps its own copy of the daemon's state, as every
/// client does.
#[derive(Debug)]
pub struct Watcher {
    stream: tonic::Streaming<pb::Event>,
    pub view: DaemonView,
    pub seq: u64,
    pub epoch: u64,
    /// Every event received, in order.
    pub events: Vec<pb::Event>,
}

impl Watcher {
    pub async fn subscribe(socket: &Path, since: u64, epoch: u64) -> Watcher {
        Self::subscribe_as(socket, since, epoch, false).await
    }

    /// Subscribes as an interactive client (as kirc-tui does): while one is
    /// attached the actor is not "away: no client attached".
    pub async fn interactive(socket: &Path) -> Watcher {
        Self::subscribe_as(socket, 0, 0, true).await
    }

    async fn subscribe_as(socket: &Path, since: u64, epoch: u64, interactive: bool) -> Watcher {
        let mut client = kirc_proto::connect(socket).await.unwrap();
        let stream = client
            .subscribe(pb::SubscribeRequest {
                since,
                epoch,
                interactive,
            })
            .await
            .unwrap()
            .into_inner();
        Watcher {
            stream,
            view: DaemonView::default(),
            seq: since,
            epoch,
            events: Vec::new(),
        }
    }

    /// The next event, checked to follow the previous one.
    pub async fn next(&mut self, timeout: Duration) -> Option<pb::Event> {
        let event = tokio::time::timeout(timeout, self.stream.message())
            .await
            .ok()?
            .unwrap_or_else(|status| panic!("event stream failed: {status}"))?;
        if let Some(pb::event::Kind::Snapshot(snapshot)) = &event.kind {
            self.epoch = snapshot.epoch;
        } else {
            assert_eq!(event.seq, self.seq + 1, "event out of sequence");
        }
        self.seq = event.seq;
        self.view.apply(&event);
        self.events.push(event.clone());
        Some(event)
    }

    /// Applies events until `condition` holds for the status, or panics after
    /// `timeout` naming `what` and the last status.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&pb::Status) -> bool,
    ) -> pb::Status {
        self.wait_for(what, timeout, |view| {
            view.status.as_ref().is_some_and(&condition)
        })
        .await
        .status
        .unwrap_or_default()
    }

    /// Applies events until `condition` holds for the whole view (contacts,
    /// conversations, status), or panics after `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&DaemonView) -> bool,
    ) -> DaemonView {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&self.view) {
                return self.view.clone();
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.next(remaining).await.is_none() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last view: {:#?}",
                    self.view
                );
            }
        }
    }

    /// Reads the stream to its end (the daemon stopped), returning what came.
    pub async fn drain(&mut self, timeout: Duration) -> Vec<pb::Event> {
        let mut events = Vec::new();
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.stream.message()).await {
                Ok(Ok(Some(event))) => events.push(event),
                Ok(Ok(None) | Err(_)) => return events,
                Err(_) => panic!("the event stream did not end within {timeout:?}"),
            }
        }
    }
}

pub fn backend(status: &pb::Status, backend: Backend) -> &pb::BackendStatus {
    status
        .backends
        .iter()
        .find(|entry| entry.backend == backend as i32)
        .unwrap()
}

pub fn is(status: &pb::Status, which: Backend, state: BackendState) -> bool {
    backend(status, which).state == state as i32
}

pub fn all_up(status: &pb::Status) -> bool {
    [Backend::Kafka, Backend::Postgres, Backend::Valkey]
        .into_iter()
        .all(|which| is(status, which, BackendState::Up))
        && status.topics.len() == 4
        && status.topics.iter().all(|topic| topic.present)
}
