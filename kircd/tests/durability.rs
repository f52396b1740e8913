//! Nothing is lost, duplicated or reordered when a daemon is stopped, killed
//! with SIGKILL, or cannot reach its peer's cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use kirc_proto::v1::{self as pb, MessageState};
use kirc_testkit::{Actor, Daemon, add, befriend, history_all, invite, rejected, send, try_send};

const WAIT: Duration = Duration::from_secs(120);

async fn wait_history(
    daemon: &Daemon,
    conversation: &str,
    what: &str,
    done: impl Fn(&[pb::ChatMessage]) -> bool,
) -> Vec<pb::ChatMessage> {
    kirc_testkit::wait_history(daemon, conversation, what, WAIT, done).await
}

/// Checks that `history` holds each of `sent` exactly once, in that order,
/// among the messages in the given direction.
fn assert_once_in_order(history: &[pb::ChatMessage], sent: &[String], outgoing: bool, label: &str) {
    let ids: Vec<&str> = history
        .iter()
        .filter(|message| message.outgoing == outgoing)
        .map(|message| message.id.as_str())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{label}: a message is duplicated");
    let positions: Vec<usize> = sent
        .iter()
        .map(|id| {
            ids.iter()
                .position(|candidate| candidate == id)
                .unwrap_or_else(|| panic!("{label}: message {id} is lost"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{label}: order broken"
    );
}

#[tokio::test]
async fn messages_to_a_stopped_daemon_wait_and_all_arrive_when_it_starts() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    assert!(bob_daemon.stop().await.success());

    let mut sent = Vec::new();
    for index in 0..200 {
        sent.push(
            send(
                &alice_daemon,
                &bob.actor_id,
                &format!("while you were out {index}"),
            )
            .await,
        );
    }
    let conversation = sent[0].conversation_id.clone();
    let ids: Vec<String> = sent.iter().map(|message| message.id.clone()).collect();
    // bob's broker is up, so they reach it (DELIVERED); nobody is there to
    // store them (never RECEIVED).
    let history = wait_history(&alice_daemon, &conversation, "all delivered", |history| {
        history
            .iter()
            .filter(|message| message.outgoing)
            .all(|message| message.state == MessageState::Delivered as i32)
    })
    .await;
    assert_eq!(history.len(), 200);

    let bob_daemon = Daemon::start(&bob).await;
    let bob_history = wait_history(&bob_daemon, &conversation, "all 200 at bob", |history| {
        history.len() >= 200
    })
    .await;
    assert_once_in_order(&bob_history, &ids, false, "bob");
    wait_history(&alice_daemon, &conversation, "all received", |history| {
        history
            .iter()
            .all(|message| message.state >= MessageState::Received as i32)
    })
    .await;
}

#[tokio::test]
async fn sigkill_of_the_sender_and_then_of_the_receiver_loses_and_duplicates_nothing() {
    const TOTAL: usize = 2000;
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let mut alice_daemon = Daemon::start(&alice).await;
    let mut bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    // alice sends; halfway, her daemon is killed mid-stream. Only messages
    // whose SendMessage returned count as sent.
    let mut returned: Vec<String> = Vec::new();
    let mut conversation = String::new();
    let mut index = 0;
    while index < TOTAL {
        if index == TOTAL / 4 {
            alice_daemon.signal(rustix::process::Signal::KILL);
            alice_daemon.wait().await;
            // Calls fail while she is down…
            assert!(
                try_send(&alice_daemon, &bob.actor_id, "into the void")
                    .await
                    .is_err()
            );
            alice_daemon = Daemon::start(&alice).await;
        }
        if index == TOTAL / 2 {
            // …and bob is killed while he receives.
            bob_daemon.signal(rustix::process::Signal::KILL);
            bob_daemon.wait().await;
        }
        if index == 3 * TOTAL / 4 {
            bob_daemon = Daemon::start(&bob).await;
        }
        let message = send(&alice_daemon, &bob.actor_id, &format!("m{index}")).await;
        conversation = message.conversation_id.clone();
        returned.push(message.id);
        index += 1;
    }

    let waited = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(wait_history(
        &bob_daemon,
        &conversation,
        "every returned message at bob",
        |history| {
            let have: HashSet<&str> = history.iter().map(|message| message.id.as_str()).collect();
            returned.iter().all(|id| have.contains(id.as_str()))
        },
    )))
    .await;
    let bob_history = match waited {
        Ok(history) => history,
        Err(panic) => {
            // What a failure needs to be understood: which messages are
            // missing (by their index in the run), and what both daemons
            // counted and logged.
            let history = history_all(&bob_daemon, &conversation).await;
            let have: HashSet<&str> = history.iter().map(|message| message.id.as_str()).collect();
            let missing: Vec<usize> = (0..returned.len())
                .filter(|index| !have.contains(returned[*index].as_str()))
                .collect();
            eprintln!("missing at bob, by index: {missing:?}");
            eprintln!("bob's status: {:#?}", bob_daemon.status().await);
            eprintln!("alice's status: {:#?}", alice_daemon.status().await);
            eprintln!("bob's log:\n{}", bob_daemon.stderr());
            eprintln!("alice's log:\n{}", alice_daemon.stderr());
            std::panic::resume_unwind(panic);
        }
    };
    assert_once_in_order(&bob_history, &returned, false, "bob");
    let alice_history = history_all(&alice_daemon, &conversation).await;
    assert_once_in_order(&alice_history, &returned, true, "alice");
    // Everything bob shows, alice sent: nothing appears from nowhere.
    let sent_by_alice: HashSet<&str> = alice_history
        .iter()
        .map(|message| message.id.as_str())
        .collect();
    assert!(
        bob_history
            .iter()
            .all(|message| sent_by_alice.contains(message.id.as_str()))
    );
    wait_history(&alice_daemon, &conversation, "all received", |history| {
        history
            .iter()
            .all(|message| message.state >= MessageState::Received as i32)
    })
    .await;
    // What alice's delivery sent again after her crash, and what bob's
    // consumer read again after his, are redeliveries, not attacks.
    let status = bob_daemon.status().await;
    assert_eq!(rejected(&status, "replay"), 0, "{:?}", status.rejected);
    assert!(
        !bob_daemon.stderr().contains("reason=\"replay\""),
        "no replay warning at bob"
    );
}

#[tokio::test]
async fn an_unreachable_peer_cluster_holds_messages_until_its_profile_is_fixed() {
    let alice = Actor::new("alice").await;
    let mut bob = Actor::new("bob").await;
    // bob publishes a wrong port in his profile: nobody can reach him.
    bob.set("public.bootstrap_servers", "127.0.0.1:9");
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let mut alice_watch = alice_daemon.watch().await;
    // alice invites (her address is right); bob adds her.
    add(&bob_daemon, invite(&alice_daemon).await).await;
    alice_watch
        .wait_for("bob at alice", WAIT, |view| {
            view.contact(&bob.actor_id).is_some()
        })
        .await;
    assert!(
        alice_watch
            .view
            .contact(&bob.actor_id)
            .unwrap()
            .delivery_path
            .starts_with("127.0.0.1:9 "),
        "alice has bob's wrong address"
    );

    let mut sent = Vec::new();
    for index in 0..50 {
        sent.push(send(&alice_daemon, &bob.actor_id, &format!("knock {index}")).await);
    }
    let conversation = sent[0].conversation_id.clone();
    let ids: Vec<String> = sent.iter().map(|message| message.id.clone()).collect();
    // They wait, queued; none can be delivered.
    let history = history_all(&alice_daemon, &conversation).await;
    assert!(
        history
            .iter()
            .all(|message| message.state <= MessageState::Queued as i32)
    );

    // bob fixes his profile and restarts: he tells alice, whose delivery
    // worker picks up the new address and delivers everything, in order.
    assert!(bob_daemon.stop().await.success());
    bob.set("public.bootstrap_servers", bob.stack.kafka.clone());
    let bob_daemon = Daemon::start(&bob).await;
    let bob_history = wait_history(&bob_daemon, &conversation, "all 50 at bob", |history| {
        history.iter().filter(|message| !message.outgoing).count() >= 50
    })
    .await;
    assert_once_in_order(&bob_history, &ids, false, "bob");
    wait_history(&alice_daemon, &conversation, "all received", |history| {
        history
            .iter()
            .all(|message| message.state >= MessageState::Received as i32)
    })
    .await;
}

#[tokio::test]
async fn history_pages_and_search_are_right_and_stable() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let mut sent = Vec::new();
    for index in 0..120 {
        let text = if index % 10 == 0 {
            format!("milestone number {index} with a zebra")
        } else {
            format!("plain message {index}")
        };
        sent.push(send(&alice_daemon, &bob.actor_id, &text).await);
    }
    let conversation = sent[0].conversation_id.clone();
    let mut client = alice_daemon.client().await;
    let page =
        |anchor: Option<pb::get_history_request::Anchor>, limit: u32| pb::GetHistoryRequest {
            conversation_id: conversation.clone(),
            anchor,
            limit,
        };
    let bodies =
        |messages: &[pb::ChatMessage]| messages.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    let all: Vec<String> = sent.iter().map(|message| message.body.clone()).collect();

    let latest = client
        .get_history(page(None, 50))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&latest.messages), all[70..]);
    assert!(latest.more_before && !latest.more_after);

    let before = client
        .get_history(page(
            Some(pb::get_history_request::Anchor::Before(sent[70].id.clone())),
            50,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&before.messages), all[20..70]);
    assert!(before.more_before && before.more_after);

    let after = client
        .get_history(page(
            Some(pb::get_history_request::Anchor::After(sent[9].id.clone())),
            5,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&after.messages), all[10..15]);

    let around = client
        .get_history(page(
            Some(pb::get_history_request::Anchor::Around(sent[60].id.clone())),
            11,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&around.messages), all[55..66]);

    let first = client
        .get_history(page(
            Some(pb::get_history_request::Anchor::Before(sent[3].id.clone())),
            50,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&first.messages), all[..3]);
    assert!(!first.more_before);

    // The same page twice is the same page.
    let again = client
        .get_history(page(None, 50))
        .await
        .unwrap()
        .into_inner();
    // (States move on as receipts arrive; the page itself does not.)
    let ids = |messages: &[pb::ChatMessage]| {
        messages
            .iter()
            .map(|m| (m.id.clone(), m.seq))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again.messages), ids(&latest.messages));

    let unknown = client
        .get_history(page(
            Some(pb::get_history_request::Anchor::Before(
                uuid::Uuid::now_v7().to_string(),
            )),
            5,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let found = client
        .search(pb::SearchRequest {
            query: "zebra milestone".into(),
            limit: 0,
            conversation_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let expected: Vec<String> = (0..120)
        .rev()
        .filter(|i| i % 10 == 0)
        .map(|i| format!("milestone number {i} with a zebra"))
        .collect();
    assert_eq!(bodies(&found), expected, "newest first, only matches");
    // Bob finds the same words in his copy once they arrived.
    let bob_found = wait_history(&bob_daemon, &conversation, "bob has all 120", |history| {
        history.len() >= 120
    })
    .await;
    assert_eq!(bob_found.len(), 120);
    let limited = bob_daemon
        .client()
        .await
        .search(pb::SearchRequest {
            query: "zebra".into(),
            limit: 3,
            conversation_id: conversation.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(bodies(&limited), expected[..3]);
}
