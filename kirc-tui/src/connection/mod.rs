//! The link to kircd: connect, subscribe, forward events, and when the daemon
//! goes away, report it and reconnect with capped backoff, resuming from the
//! last event so that nothing is missed or repeated; and the effects `update`
//! asks for, carried out in order (`calls.rs` has the daemon call of each).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kirc_proto::v1::{self as pb, event::Kind};
use tokio::sync::mpsc;

use crate::state::Link;
use crate::update::{Effect, Msg};

mod calls;

use calls::run_effect;

/// Reconnect delays: from `INITIAL_RETRY`, doubling, capped at `MAX_RETRY`.
const INITIAL_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Where the subscription stands, for resuming after a reconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: u64,
}

impl Position {
    /// Checks that `event` follows this position and advances to it. A
    /// snapshot always fits (it restarts the count); any other event must be
    /// the next one in sequence.
    pub fn advance(&mut self, event: &pb::Event) -> Result<(), String> {
        match &event.kind {
            Some(Kind::Snapshot(snapshot)) => {
                self.epoch = snapshot.epoch;
            }
            _ if event.seq != self.seq + 1 => {
                return Err(format!(
                    "event {} arrived after event {}",
                    event.seq, self.seq
                ));
            }
            _ => {}
        }
        self.seq = event.seq;
        Ok(())
    }
}

/// Runs until `messages` is closed (the app quit).
pub async fn run(socket: PathBuf, messages: mpsc::Sender<Msg>) {
    let mut position = Position::default();
    let mut attempt: u32 = 1;
    let mut retry = INITIAL_RETRY;
    loop {
        if messages
            .send(Msg::Link(Link::Connecting { attempt }))
            .await
            .is_err()
        {
            return;
        }
        let error = match follow(&socket, &mut position, &messages).await {
            Followed::Quit => return,
            Followed::Lost {
                error,
                was_connected,
            } => {
                if was_connected {
                    attempt = 1;
                    retry = INITIAL_RETRY;
                }
                error
            }
        };
        let lost = Msg::Link(Link::Disconnected {
            error,
            since_unix_ms: kirc_proto::unix_ms(SystemTime::now()),
            attempt,
            retry_in_ms: u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
        });
        if messages.send(lost).await.is_err() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
        attempt = attempt.saturating_add(1);
    }
}

enum Followed {
    Quit,
    Lost { error: String, was_connected: bool },
}

async fn follow(
    socket: &std::path::Path,
    position: &mut Position,
    messages: &mpsc::Sender<Msg>,
) -> Followed {
    let lost = |error: String, was_connected: bool| Followed::Lost {
        error,
        was_connected,
    };
    let mut client = match kirc_proto::connect(socket).await {
        Ok(client) => client,
        Err(err) => return lost(err.to_string(), false),
    };
    let request = pb::SubscribeRequest {
        since: position.seq,
        epoch: position.epoch,
        interactive: true,
    };
    let mut stream = match client.subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return lost(format!("subscribe failed: {}", status.message()), false),
    };
    if messages.send(Msg::Link(Link::Connected)).await.is_err() {
        return Followed::Quit;
    }
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                if let Err(gap) = position.advance(&event) {
                    // Never apply out of order: start over from a snapshot.
                    *position = Position::default();
                    return lost(format!("resynchronising: {gap}"), true);
                }
                if messages.send(Msg::Event(Box::new(event))).await.is_err() {
                    return Followed::Quit;
                }
            }
            Ok(None) => return lost(String::from("kircd closed the connection"), true),
            Err(status) => return lost(status.message().to_owned(), true),
        }
    }
}

/// Carries out the effects `update` returns, one at a time and in order (so
/// that sent messages keep the order they were typed in), each result coming
/// back as a message. Runs until `effects` closes.
pub async fn execute(
    socket: PathBuf,
    mut effects: mpsc::Receiver<Effect>,
    messages: mpsc::Sender<Msg>,
) {
    let mut client: Option<kirc_proto::DaemonClient> = None;
    let mut throttle = Throttle::default();
    while let Some(effect) = effects.recv().await {
        if !throttle.lets_through(&effect) {
            continue;
        }
        if let Effect::Send {
            to,
            text,
            action,
            reply_to,
        } = effect
        {
            let request = pb::SendMessageRequest {
                to,
                text,
                action,
                // One key per typed message: every retry of it names the
                // same message, so a call cut short is never sent twice.
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                reply_to: reply_to.unwrap_or_default(),
            };
            if send(&socket, &mut client, &messages, request)
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let connected = match client.take() {
            Some(connected) => connected,
            None => match kirc_proto::connect(&socket).await {
                Ok(connected) => connected,
                Err(err) => {
                    if messages
                        .send(Msg::Failed(format!("not sent: {err}")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut connected = connected;
        let result = run_effect(&mut connected, effect).await;
        let msg = match result {
            Ok(msg) => {
                client = Some(connected);
                msg
            }
            // The connection may be the problem: a fresh one next time.
            Err(status) => Some(Msg::Failed(status.message().to_owned())),
        };
        if let Some(msg) = msg
            && messages.send(msg).await.is_err()
        {
            return;
        }
    }
}

/// How long a message typed while kircd is unreachable (restarting, say)
/// keeps being retried before the user is told it was not sent.
const SEND_RETRY_FOR: Duration = Duration::from_secs(120);
const SEND_RETRY_MAX_DELAY: Duration = Duration::from_secs(2);

/// Sends one message, retrying while kircd cannot be reached or the call was
/// cut short; its idempotency key makes each retry safe. Later effects wait,
/// so messages keep the order they were typed in. `Err` when the TUI is
/// quitting.
async fn send(
    socket: &std::path::Path,
    client: &mut Option<kirc_proto::DaemonClient>,
    messages: &mpsc::Sender<Msg>,
    request: pb::SendMessageRequest,
) -> Result<(), ()> {
    let deadline = std::time::Instant::now() + SEND_RETRY_FOR;
    let mut delay = Duration::from_millis(100);
    let mut retrying = false;
    loop {
        let connected = match client.take() {
            Some(connected) => Ok(connected),
            None => kirc_proto::connect(socket)
                .await
                .map_err(|err| tonic::Status::unavailable(err.to_string())),
        };
        let result = match connected {
            Ok(mut connected) => {
                let result = connected.send_message(request.clone()).await;
                if result.is_ok() {
                    *client = Some(connected);
                }
                result.map(drop)
            }
            Err(status) => Err(status),
        };
        let msg = match result {
            // The message shows up through its MessageAdded event.
            Ok(()) if retrying => Msg::Done(String::from("sent")),
            Ok(()) => return Ok(()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) && std::time::Instant::now() < deadline =>
            {
                if !retrying {
                    retrying = true;
                    messages
                        .send(Msg::Failed(format!(
                            "not sent yet ({}); retrying",
                            status.message()
                        )))
                        .await
                        .map_err(drop)?;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(SEND_RETRY_MAX_DELAY);
                continue;
            }
            Err(status) => Msg::Failed(format!("not sent: {}", status.message())),
        };
        return messages.send(msg).await.map_err(drop);
    }
}

/// Saves a session directly (at exit, when the executor is being stopped).
pub async fn save_session(socket: &std::path::Path, session: pb::Session) -> Result<(), String> {
    let mut client = kirc_proto::connect(socket)
        .await
        .map_err(|err| err.to_string())?;
    client
        .save_session(session)
        .await
        .map(drop)
        .map_err(|status| status.message().to_owned())
}

/// Keeps chatty effects from flooding the daemon: activity at most every
/// 10 s, "typing" at most every second per conversation (the daemon sends at
/// most one per 3 s anyway). Stops always go through.
#[derive(Debug, Default)]
struct Throttle {
    activity: Option<std::time::Instant>,
    typing: std::collections::HashMap<String, std::time::Instant>,
}

const ACTIVITY_EVERY: Duration = Duration::from_secs(10);
const TYPING_REPORT_EVERY: Duration = Duration::from_secs(1);

impl Throttle {
    fn lets_through(&mut self, effect: &Effect) -> bool {
        let now = std::time::Instant::now();
        match effect {
            Effect::Activity => {
                if self
                    .activity
                    .is_some_and(|last| now.duration_since(last) < ACTIVITY_EVERY)
                {
                    return false;
                }
                self.activity = Some(now);
                true
            }
            Effect::Typing {
                conversation,
                active: true,
            } => {
                if self
                    .typing
                    .get(conversation)
                    .is_some_and(|last| now.duration_since(*last) < TYPING_REPORT_EVERY)
                {
                    return false;
                }
                self.typing.insert(conversation.clone(), now);
                true
            }
            Effect::Typing {
                conversation,
                active: false,
            } => {
                self.typing.remove(conversation);
                true
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> pb::Event {
        pb::Event {
            seq,
            at_unix_ms: 0,
            kind: Some(Kind::ShuttingDown(pb::ShuttingDown::default())),
        }
    }

    #[test]
    fn position_accepts_snapshots_and_consecutive_events_only() {
        let mut position = Position::default();
        let snapshot = pb::Event {
            seq: 10,
            at_unix_ms: 0,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                status: None,
                epoch: 99,
                ..pb::Snapshot::default()
            })),
        };
        position.advance(&snapshot).unwrap();
        assert_eq!(position, Position { seq: 10, epoch: 99 });
        position.advance(&event(11)).unwrap();
        assert!(position.advance(&event(13)).is_err());
        assert!(position.advance(&event(11)).is_err());
        assert_eq!(position.seq, 11);
    }
}
