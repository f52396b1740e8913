//! The daemon call behind each effect, and what its answer tells `update`.

use std::path::PathBuf;

use kirc_proto::v1 as pb;

use crate::update::{Anchor, Effect, Msg, PAGE};

pub(super) async fn run_effect(
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
