//! The direct path's sessions between real kircd on the local stack: both
//! sides starting at once end in one connection, a route lost for a while
//! comes back by an ICE restart on the same session, and past
//! `rtc.max_peers` the contact in use gets the place while idle ones wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/direct.rs"]
mod support;

use std::time::Duration;

use kirc_testkit::{Actor, Daemon, Watcher, befriend, incoming, send, wait_history};
use support::*;

#[tokio::test]
async fn both_sides_starting_at_once_end_in_one_connection_every_time() {
    let alice = direct("alice").await;
    let bob = direct("bob").await;
    let (alice_daemon, bob_daemon) = tokio::join!(Daemon::start(&alice), Daemon::start(&bob));
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    tokio::join!(alice_daemon.stop(), bob_daemon.stop());
    let mut sessions = Vec::new();
    for _ in 0..8 {
        // Both start, and so see each other online, at the same instant:
        // both offer, and the polite side must yield.
        let (alice_daemon, bob_daemon) = tokio::join!(Daemon::start(&alice), Daemon::start(&bob));
        let Attached {
            clients: _clients,
            session,
            ..
        } = attach_and_connect((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
        assert_eq!(session.len(), 32);
        // Settled: a second session would have replaced it by now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(session_now(&alice_daemon, &bob).await, session);
        assert_eq!(session_now(&bob_daemon, &alice).await, session);
        sessions.push(session);
        tokio::join!(alice_daemon.stop(), bob_daemon.stop());
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 8, "a new session each time");
}

#[tokio::test]
async fn a_route_lost_for_a_while_comes_back_by_an_ice_restart_on_the_same_session() {
    // Presence on a long clock: a daemon stopped for ICE's `disconnected`
    // timeout (5 s) is still counted online, as a suspended laptop or a
    // network that drops out for a few seconds would be.
    let slow_presence = |mut actor: Actor| {
        actor.direct_path().set("presence.heartbeat", "20s");
        actor
    };
    let mut alice = slow_presence(Actor::new("alice").await);
    // Paced, as in the first test: the direct copy leads by far.
    alice.set("kafka.budget_bytes_per_second", 2048);
    let bob = slow_presence(Actor::new("bob").await);
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    let Attached {
        clients: _clients,
        mut alice_watch,
        mut bob_watch,
        session,
    } = attach_and_connect((&alice, &alice_daemon), (&bob, &bob_daemon)).await;

    // Each side in turn stops answering; the other sees the route lost.
    // The side that offered restarts ICE, the other waits for it: in one of
    // the two rounds the side still running is the one that restarts.
    let mut reasons = Vec::new();
    for stopped_is_bob in [true, false] {
        let (stopped, running_watch, stopped_actor) = if stopped_is_bob {
            (&bob_daemon, &mut alice_watch, &bob)
        } else {
            (&alice_daemon, &mut bob_watch, &alice)
        };
        stopped.signal(rustix::process::Signal::STOP);
        let status = running_watch
            .wait_until("the route seen lost", WAIT, |status| {
                reason(status, stopped_actor).starts_with("route lost")
            })
            .await;
        reasons.push(reason(&status, stopped_actor));
        stopped.signal(rustix::process::Signal::CONT);
        let again = one_connection(
            (&alice, &alice_daemon, &mut alice_watch),
            (&bob, &bob_daemon, &mut bob_watch),
        )
        .await;
        assert_eq!(again, session, "the same session, not a new one");
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "route lost; restarting ICE",
            "route lost; waiting for the contact's ICE restart"
        ]
    );
    let restarted = |daemon: &Daemon| daemon.stderr().contains("restarting ICE");
    assert!(restarted(&alice_daemon) || restarted(&bob_daemon));
    for daemon in [&alice_daemon, &bob_daemon] {
        assert!(
            !daemon.stderr().contains("direct path lost"),
            "no session failed: {}",
            daemon.stderr()
        );
    }

    // The channel carries chat again.
    let mut sent = warm_up();
    sent.push(String::from("after the restart"));
    for text in &sent {
        send(&alice_daemon, &bob.name, text).await;
    }
    let conversation = conversation_with(&bob_daemon, &alice).await;
    let history = wait_history(&bob_daemon, &conversation, "all at bob", WAIT, |history| {
        incoming(history).len() >= sent.len()
    })
    .await;
    assert_eq!(incoming(&history), sent, "each once, in order");
    assert_paced_ones_went_direct(&history);
}

/// Watches alice's status for `window`: the direct path to `holder` stays
/// connected on `session` and the one to `waiting` stays closed.
async fn holds_for(
    watch: &mut Watcher,
    window: Duration,
    (holder, session_id): (&Actor, &str),
    waiting: &Actor,
) {
    let until = std::time::Instant::now() + window;
    while std::time::Instant::now() < until {
        watch.next(Duration::from_millis(200)).await;
        let status = watch.view.status.clone().unwrap_or_default();
        assert!(
            connected(&status, holder) && session(&status, holder) == session_id,
            "the place stays with {}: {:?}",
            holder.name,
            status.direct_paths
        );
        assert!(
            !connected(&status, waiting),
            "{} does not take it: {:?}",
            waiting.name,
            status.direct_paths
        );
    }
}

#[tokio::test]
async fn over_the_cap_an_idle_contact_waits_and_one_in_use_takes_the_place() {
    let mut alice = direct("alice").await;
    alice.set("rtc.max_peers", 1);
    let bob = direct("bob").await;
    let carol = direct("carol").await;
    let (alice_daemon, bob_daemon, carol_daemon) = tokio::join!(
        Daemon::start(&alice),
        Daemon::start(&bob),
        Daemon::start(&carol)
    );
    befriend((&alice, &alice_daemon), (&bob, &bob_daemon)).await;
    befriend((&alice, &alice_daemon), (&carol, &carol_daemon)).await;
    let _clients = (
        Watcher::interactive(&alice_daemon.socket).await,
        Watcher::interactive(&bob_daemon.socket).await,
        Watcher::interactive(&carol_daemon.socket).await,
    );
    let mut alice_watch = alice_daemon.watch().await;
    let status = alice_watch
        .wait_until("alice's one direct path", WAIT, |status| {
            connected(status, &bob) || connected(status, &carol)
        })
        .await;
    let (first, second) = if connected(&status, &bob) {
        (&bob, &carol)
    } else {
        (&carol, &bob)
    };
    // Both are online and neither is in use: the one without a place
    // waits, rather than closing the other's connection (which would then
    // close its own, and so on).
    let held = session(&status, first);
    holds_for(
        &mut alice_watch,
        Duration::from_secs(8),
        (first, &held),
        second,
    )
    .await;
    let status = alice_watch.view.status.clone().unwrap_or_default();
    assert!(
        reason(&status, second).starts_with("waiting for a free place"),
        "{:?}",
        path_to(&status, second)
    );

    // Chat with the second makes it the one in use: it takes the place.
    send(&alice_daemon, &second.name, "now you").await;
    let status = alice_watch
        .wait_until("the place goes to the contact in use", WAIT, |status| {
            connected(status, second)
        })
        .await;
    assert!(!connected(&status, first));
    assert_eq!(
        reason(&status, first),
        "closed to make room for a contact in use"
    );
    let held = session(&status, second);
    holds_for(
        &mut alice_watch,
        Duration::from_secs(8),
        (second, &held),
        first,
    )
    .await;
}
