//! The link to kircd: connect, subscribe, forward events, and when the daemon
//! goes away, report it and reconnect with capped backoff, resuming from the
//! last event so that nothing is missed or repeated.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kirc_proto::v1::{self as pb, event::Kind};
use tokio::sync::mpsc;

use crate::state::Link;
use crate::update::{Anchor, Effect, Msg, PAGE};

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

async fn run_effect(
    client: &mut kirc_proto::DaemonClient,
    effect: Effect,
) -> Result<Option<Msg>, tonic::Status> {
    Ok(match effect {
        Effect::LoadHistory {
            conversation,
            anchor,
        } => {
            let request_anchor = match &anchor {
                Anchor::Latest => None,
                Anchor::Before(id) => Some(pb::get_history_request::Anchor::Before(id.clone())),
                Anchor::Around(id) => Some(pb::get_history_request::Anchor::Around(id.clone())),
            };
            let page = client
                .get_history(pb::GetHistoryRequest {
                    conversation_id: conversation.clone(),
                    anchor: request_anchor,
                    limit: PAGE,
                })
                .await?
                .into_inner();
            Some(Msg::History {
                conversation,
                page,
                anchor,
            })
        }
        // `execute` sends messages itself, with retries.
        Effect::Send { .. } => None,
        Effect::React {
            message_id,
            emoji,
            remove,
        } => {
            client
                .react(pb::ReactRequest {
                    message_id,
                    emoji,
                    remove,
                })
                .await?;
            None
        }
        Effect::Edit { message_id, text } => {
            client
                .edit_message(pb::EditMessageRequest { message_id, text })
                .await?;
            None
        }
        Effect::Delete(message_id) => {
            client
                .delete_message(pb::MessageRequest { message_id })
                .await?;
            Some(Msg::Done(String::from("deleted for everyone")))
        }
        Effect::SetMuted {
            conversation,
            muted,
        } => {
            client
                .set_muted(pb::SetMutedRequest {
                    conversation_id: conversation,
                    muted,
                })
                .await?;
            Some(Msg::Done(String::from(if muted {
                "muted: no notifications from it, its count stays"
            } else {
                "unmuted"
            })))
        }
        Effect::Versions(message_id) => {
            let versions = client
                .get_message_versions(pb::MessageRequest {
                    message_id: message_id.clone(),
                })
                .await?
                .into_inner()
                .versions;
            Some(Msg::Versions {
                message_id,
                versions,
            })
        }
        Effect::MarkRead {
            conversation,
            up_to,
        } => {
            client
                .mark_read(pb::MarkReadRequest {
                    conversation_id: conversation,
                    up_to,
                })
                .await?;
            None
        }
        Effect::AddContact(token) => {
            let contact = client
                .add_contact(pb::AddContactRequest { token })
                .await?
                .into_inner();
            Some(Msg::Added(contact))
        }
        Effect::CreateInvite => Some(Msg::Invite(
            client
                .create_invite(pb::CreateInviteRequest::default())
                .await?
                .into_inner(),
        )),
        Effect::CreateChannel { name, topic } => {
            client
                .create_channel(pb::CreateChannelRequest {
                    name: name.clone(),
                    topic,
                })
                .await?;
            Some(Msg::Done(format!(
                "created {name}; /invite gives its token to friends"
            )))
        }
        Effect::ChannelInvite(channel) => Some(Msg::Invite(
            client
                .create_channel_invite(pb::ChannelRequest { channel })
                .await?
                .into_inner(),
        )),
        Effect::JoinChannel(token) => {
            client
                .join_channel(pb::JoinChannelRequest { token })
                .await?;
            Some(Msg::Done(String::from(
                "asked the channel's owner to let you in; it shows when they answer",
            )))
        }
        Effect::ChannelAct {
            channel,
            act,
            member,
            text,
        } => {
            client
                .channel_act(pb::ChannelActRequest {
                    channel,
                    act: act as i32,
                    member,
                    text,
                })
                .await?;
            None
        }
        Effect::Accept(contact) => {
            let contact = client
                .accept_contact(pb::ContactRequest { contact })
                .await?
                .into_inner();
            Some(Msg::Done(format!("accepted {}", contact.display_name)))
        }
        Effect::Block(contact) => {
            let contact = client
                .block_contact(pb::ContactRequest { contact })
                .await?
                .into_inner();
            Some(Msg::Done(format!("blocked {}", contact.display_name)))
        }
        Effect::Unblock(contact) => {
            let contact = client
                .unblock_contact(pb::ContactRequest { contact })
                .await?
                .into_inner();
            Some(Msg::Done(format!("unblocked {}", contact.display_name)))
        }
        Effect::Search(query) => {
            let messages = client
                .search(pb::SearchRequest {
                    query: query.clone(),
                    limit: 200,
                    conversation_id: String::new(),
                })
                .await?
                .into_inner()
                .messages;
            Some(Msg::SearchResults { query, messages })
        }
        Effect::SendFile { to, path } => {
            let path = absolute(&path);
            let transfer = client
                .send_file(pb::SendFileRequest {
                    to,
                    path: path.to_string_lossy().into_owned(),
                })
                .await?
                .into_inner();
            let count = transfer.files.len();
            let files = if count == 1 { "file" } else { "files" };
            Some(Msg::Done(format!(
                "offered {} ({count} {files}, {})",
                path.display(),
                kirc_proto::human_bytes(transfer.total_bytes)
            )))
        }
        Effect::AnswerTransfer {
            transfer_id,
            accept,
        } => {
            client
                .answer_transfer(pb::AnswerTransferRequest {
                    transfer_id,
                    accept,
                })
                .await?;
            Some(Msg::Done(String::from(if accept {
                "accepted; the files arrive in your download folder"
            } else {
                "refused"
            })))
        }
        Effect::CancelTransfer(transfer_id) => {
            client
                .cancel_transfer(pb::TransferRequest { transfer_id })
                .await?;
            Some(Msg::Done(String::from("transfer cancelled")))
        }
        Effect::SetPresence { state, text } => {
            let presence = client
                .set_presence(pb::SetPresenceRequest {
                    state: state as i32,
                    text,
                })
                .await?
                .into_inner()
                .presence
                .unwrap_or_default();
            Some(Msg::Done(match presence.state() {
                pb::PresenceState::Away if presence.text.is_empty() => String::from("you are away"),
                pb::PresenceState::Away => format!("you are away: {}", presence.text),
                _ => String::from("you are back"),
            }))
        }
        Effect::Activity => {
            client.report_activity(pb::ReportActivityRequest {}).await?;
            None
        }
        Effect::Typing {
            conversation,
            active,
        } => {
            client
                .report_typing(pb::ReportTypingRequest {
                    conversation_id: conversation,
                    active,
                })
                .await?;
            None
        }
        Effect::LoadSession(name) => match client.get_session(pb::GetSessionRequest { name }).await
        {
            Ok(session) => Some(Msg::Session(session.into_inner())),
            // Without Valkey there is no session to restore: start afresh.
            Err(status) => Some(Msg::Failed(format!(
                "session not restored: {}",
                status.message()
            ))),
        },
        Effect::SaveSession(session) => {
            client.save_session(session).await?;
            None
        }
        // Terminal output: the main loop handles it.
        // The main loop carries these out itself, on the terminal.
        Effect::Notify { .. } | Effect::Copy(_) | Effect::OpenLink(_) | Effect::Editor(_) => None,
    })
}

/// A path as typed in kirc-tui, as kircd must read it: `~` is the home
/// folder, and a relative path is relative to where kirc-tui runs (kircd's
/// own working folder is elsewhere).
fn absolute(typed: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let path = match typed.strip_prefix("~/") {
        Some(rest) => home().map_or_else(|| typed.into(), |home| home.join(rest)),
        None if typed == "~" => home().unwrap_or_else(|| typed.into()),
        None => PathBuf::from(typed),
    };
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map_or(path.clone(), |dir| dir.join(path))
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
