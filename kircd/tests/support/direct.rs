//! What the direct path's tests share: actors with the path on, the state
//! of a path in a status, and waiting for one connection both ways.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::time::Duration;

use kirc_proto::v1::{self as pb, DirectPathState};
use kirc_testkit::{Actor, Daemon, Watcher, befriend};

pub const WAIT: Duration = Duration::from_secs(30);

/// An actor with the direct path on and presence on a short clock
/// (contacts count it offline 1.2 s after it vanishes).
pub async fn direct(name: &str) -> Actor {
    let mut actor = Actor::new(name).await;
    actor
        .direct_path()
        .set("presence.heartbeat", "400ms")
        .set("presence.idle", "10min");
    actor
}

pub fn path_to<'a>(status: &'a pb::Status, contact: &Actor) -> Option<&'a pb::DirectPath> {
    status
        .direct_paths
        .iter()
        .find(|path| path.actor_id == contact.actor_id)
}

pub fn connected(status: &pb::Status, contact: &Actor) -> bool {
    path_to(status, contact).is_some_and(|path| path.state == DirectPathState::Connected as i32)
}

/// The conversation `daemon` has with `contact`.
pub async fn conversation_with(daemon: &Daemon, contact: &Actor) -> String {
    daemon
        .client()
        .await
        .list_contacts(pb::ListContactsRequest {})
        .await
        .unwrap()
        .into_inner()
        .contacts
        .into_iter()
        .find(|known| known.actor_id == contact.actor_id)
        .unwrap()
        .conversation_id
}

pub async fn wait_connected(watch: &mut Watcher, contact: &Actor, what: &str) -> pb::Status {
    watch
        .wait_until(what, WAIT, |status| connected(status, contact))
        .await
}

/// Two daemons made online (a client attached to each) and watched, once
/// they settled on one connection.
pub struct Attached {
    pub clients: (Watcher, Watcher),
    pub alice_watch: Watcher,
    pub bob_watch: Watcher,
    /// The session both show.
    pub session: String,
}

/// Attaches a client to each of two befriended daemons (which makes both
/// online) and waits for the one connection between them.
pub async fn attach_and_connect(
    (alice, alice_daemon): (&Actor, &Daemon),
    (bob, bob_daemon): (&Actor, &Daemon),
) -> Attached {
    let clients = (
        Watcher::interactive(&alice_daemon.socket).await,
        Watcher::interactive(&bob_daemon.socket).await,
    );
    let mut alice_watch = alice_daemon.watch().await;
    let mut bob_watch = bob_daemon.watch().await;
    let session = one_connection(
        (alice, alice_daemon, &mut alice_watch),
        (bob, bob_daemon, &mut bob_watch),
    )
    .await;
    Attached {
        clients,
        alice_watch,
        bob_watch,
        session,
    }
}

/// Two befriended daemons, both online (a client attached to each), with
/// the direct path connected both ways.
pub struct OnlinePair {
    pub alice_daemon: Daemon,
    pub bob_daemon: Daemon,
    pub _clients: (Watcher, Watcher),
    pub alice_watch: Watcher,
    pub bob_watch: Watcher,
    /// Each side's status once connected.
    pub at_alice: pb::Status,
    pub at_bob: pb::Status,
}

pub async fn online_pair(alice: &Actor, bob: &Actor) -> OnlinePair {
    let alice_daemon = Daemon::start(alice).await;
    let bob_daemon = Daemon::start(bob).await;
    befriend((alice, &alice_daemon), (bob, &bob_daemon)).await;
    let attached = attach_and_connect((alice, &alice_daemon), (bob, &bob_daemon)).await;
    let status = |watch: &Watcher| watch.view.status.clone().unwrap_or_default();
    OnlinePair {
        at_alice: status(&attached.alice_watch),
        at_bob: status(&attached.bob_watch),
        alice_daemon,
        bob_daemon,
        _clients: attached.clients,
        alice_watch: attached.alice_watch,
        bob_watch: attached.bob_watch,
    }
}

/// Warm-up messages that spend alice's Kafka budget's burst (a quarter
/// second's worth), which lets the first Kafka copies leave at once; from
/// then on each Kafka copy waits about 100 ms for the budget, far longer
/// than the direct path takes, so "arrived first over the direct path" is
/// a property of the path, not of a race.
pub fn warm_up() -> Vec<String> {
    (0..3).map(|n| format!("warm-up {n}")).collect()
}

/// Every message of `history` after the warm-up arrived first over the
/// direct path.
pub fn assert_paced_ones_went_direct(history: &[pb::ChatMessage]) {
    let first_over: Vec<(&str, bool)> = history
        .iter()
        .filter(|message| !message.outgoing)
        .map(|message| (message.body.as_str(), message.direct))
        .collect();
    assert!(
        first_over[warm_up().len()..]
            .iter()
            .all(|(_, direct)| *direct),
        "every paced message arrived first over the direct path: {first_over:?}"
    );
}

pub fn session(status: &pb::Status, contact: &Actor) -> String {
    path_to(status, contact)
        .map(|path| path.session.clone())
        .unwrap_or_default()
}

/// Waits until both daemons show a connected direct path to each other over
/// the same session, and returns it; on a timeout, shows what both logged
/// of the direct path.
pub async fn one_connection(
    (alice, alice_daemon, alice_watch): (&Actor, &Daemon, &mut Watcher),
    (bob, bob_daemon, bob_watch): (&Actor, &Daemon, &mut Watcher),
) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let at_alice = alice_watch.view.status.clone().unwrap_or_default();
        let at_bob = bob_watch.view.status.clone().unwrap_or_default();
        let (ours, theirs) = (session(&at_alice, bob), session(&at_bob, alice));
        if connected(&at_alice, bob) && connected(&at_bob, alice) && ours == theirs {
            return ours;
        }
        let logged = |daemon: &Daemon| {
            daemon
                .stderr()
                .lines()
                .filter(|line| line.contains("signal") || line.contains("direct"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            std::time::Instant::now() < deadline,
            "no single connection within {WAIT:?}: alice {:?}, bob {:?}\nalice:\n{}\nbob:\n{}",
            path_to(&at_alice, bob),
            path_to(&at_bob, alice),
            logged(alice_daemon),
            logged(bob_daemon),
        );
        tokio::select! {
            _ = alice_watch.next(Duration::from_millis(200)) => {}
            _ = bob_watch.next(Duration::from_millis(200)) => {}
        }
    }
}

pub async fn session_now(daemon: &Daemon, contact: &Actor) -> String {
    session(&daemon.status().await, contact)
}

/// The reason `status` gives for the direct path to `contact`.
pub fn reason(status: &pb::Status, contact: &Actor) -> String {
    path_to(status, contact)
        .map(|path| path.reason.clone())
        .unwrap_or_default()
}
