//! Everything the screen shows, and nothing else. Only `update` changes it;
//! `ui::render` reads it.

use std::collections::{HashMap, HashSet};

use jiff::tz::TimeZone;
use kirc_proto::DaemonView;
use kirc_proto::v1 as pb;

use crate::input::Input;
use crate::keys::Keymap;
use crate::settings::NotifyConfig;

/// The link to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Trying to reach the daemon; `attempt` counts from 1 since the last
    /// success.
    Connecting { attempt: u32 },
    /// Subscribed and receiving events.
    Connected,
    /// Lost or never reached; retrying after `retry_in_ms`.
    Disconnected {
        error: String,
        since_unix_ms: i64,
        attempt: u32,
        retry_in_ms: u64,
    },
}

/// The loaded part of one conversation's history: a contiguous run of
/// messages in `seq` order. Older pages are fetched as the user scrolls up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrollback {
    pub messages: Vec<pb::ChatMessage>,
    pub more_before: bool,
    /// False when the window was opened around an older message (a search
    /// result) and newer ones are not loaded.
    pub reaches_newest: bool,
    /// A page request is on its way.
    pub loading: bool,
    /// Where the view is when scrolled back; `None` follows the newest.
    pub position: Option<Position>,
}

/// A scrolled-back view, anchored to a message so that it stays put while
/// new messages arrive below and old pages load above: the top row on screen
/// is row `row` of the rows drawn for the message with `seq` (its day
/// separator, read marker and wrapped lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub row: usize,
}

impl Scrollback {
    /// A whole conversation's history, from its first message to its
    /// newest, following the newest.
    pub fn whole(messages: Vec<pb::ChatMessage>) -> Self {
        Scrollback {
            messages,
            more_before: false,
            reaches_newest: true,
            loading: false,
            position: None,
        }
    }

    /// Adds a page; messages already held are not added twice.
    pub fn merge(&mut self, page: Vec<pb::ChatMessage>) {
        let known: HashSet<String> = self
            .messages
            .iter()
            .map(|message| message.id.clone())
            .collect();
        self.messages.extend(
            page.into_iter()
                .filter(|message| !known.contains(&message.id)),
        );
        self.messages.sort_by_key(|message| message.seq);
    }
}

/// A panel over the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    /// Every command and key, from line `scroll` on.
    Help {
        scroll: usize,
    },
    Invite {
        token: String,
        expires_at_unix_ms: i64,
    },
    Search {
        query: String,
        results: Vec<pb::ChatMessage>,
        selected: usize,
    },
    Contacts,
    Whois {
        actor_id: String,
    },
    /// Every transfer the daemon shows, most recent first.
    Transfers {
        selected: usize,
    },
    /// The open conversation's links, newest first.
    Links {
        selected: usize,
    },
    /// The texts a message had, oldest first (none once deleted).
    Versions {
        message_id: String,
        versions: Vec<pb::MessageVersion>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    /// A notice about a contact that waits for its confirmation: it goes
    /// once the contact (this actor id) has accepted us, when it is no
    /// longer true.
    pub until_confirmed: Option<String>,
}

/// Tab completion in progress: the word's start and the candidates cycled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub start: usize,
    pub candidates: Vec<String>,
    pub index: usize,
}

#[derive(Debug, Clone)]
pub struct State {
    pub socket: String,
    pub link: Link,
    /// The daemon's state as of the last event; kept while disconnected so
    /// that the screen still shows what was last known.
    pub view: DaemonView,
    /// Why the daemon last said it was stopping, if it did.
    pub daemon_stopping: Option<String>,
    pub time_zone: TimeZone,
    pub keymap: Keymap,
    pub notify: NotifyConfig,
    pub theme: crate::theme::Theme,
    /// Whether the terminal has focus (from focus events; assumed at start).
    pub focused: bool,
    /// The conversation on screen.
    pub open: Option<String>,
    pub scrollbacks: HashMap<String, Scrollback>,
    pub input: Input,
    pub completion: Option<Completion>,
    pub overlay: Option<Overlay>,
    pub notice: Option<Notice>,
    /// A line that looked like a mistyped command, sent as text on a second
    /// Enter.
    pub confirm: Option<String>,
    /// Conversations with an unread message that mentions us.
    pub mentions: HashSet<String>,
    /// The highest `seq` a MarkRead was asked for, per conversation, so that
    /// the same request is not sent twice while the daemon answers.
    pub read_requested: HashMap<String, u64>,
    /// The terminal's size (columns, rows), for paging and wrapping the
    /// same way the screen does.
    pub screen: (u16, u16),
    /// A contact whose conversation opens once the first snapshot arrives
    /// (`--open`).
    pub pending_open: Option<String>,
    /// This TUI's session name (`--session`): its drafts and open
    /// conversation are kept in the daemon's Valkey under it.
    pub session: String,
    /// Whether the session was asked for (once, after the first snapshot).
    pub session_requested: bool,
    /// Unsent text per conversation.
    pub drafts: HashMap<String, String>,
    /// Until when (Unix ms) a contact's typing indicator is believed, so it
    /// goes away even if the daemon's "stopped" never comes.
    pub typing_until: HashMap<String, i64>,
    /// The time of the last tick, for the typing deadlines.
    pub now_unix_ms: i64,
    /// The message under the message cursor (an id of the open
    /// conversation): what the message keys act on.
    pub selected: Option<String>,
    /// What the input line's text will be: a reply, an edit, a reaction.
    pub compose: Option<Compose>,
    pub quit: bool,
}

/// The input line writes something other than a new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    /// A reply to the message with this id.
    Reply(String),
    /// New text for our message with this id.
    Edit(String),
    /// A reaction (the line is the emoji) to the message with this id.
    React(String),
}

impl State {
    pub fn new(socket: String, time_zone: TimeZone) -> Self {
        State {
            socket,
            link: Link::Connecting { attempt: 1 },
            view: DaemonView::default(),
            daemon_stopping: None,
            time_zone,
            keymap: Keymap::default(),
            notify: NotifyConfig::default(),
            theme: crate::theme::Theme::default(),
            focused: true,
            open: None,
            scrollbacks: HashMap::new(),
            input: Input::default(),
            completion: None,
            overlay: None,
            notice: None,
            confirm: None,
            mentions: HashSet::new(),
            read_requested: HashMap::new(),
            screen: (80, 24),
            pending_open: None,
            session: String::from("default"),
            session_requested: false,
            drafts: HashMap::new(),
            typing_until: HashMap::new(),
            now_unix_ms: 0,
            selected: None,
            compose: None,
            quit: false,
        }
    }

    /// A loaded message of the open conversation.
    pub fn open_message(&self, id: &str) -> Option<&pb::ChatMessage> {
        self.scrollbacks
            .get(self.open.as_deref()?)?
            .messages
            .iter()
            .find(|message| message.id == id)
    }

    /// The open conversation as the daemon describes it.
    pub fn open_conversation(&self) -> Option<&pb::Conversation> {
        self.open
            .as_deref()
            .and_then(|id| self.view.conversation(id))
    }

    /// The conversations in list order: most recent activity first.
    pub fn conversation_ids(&self) -> Vec<String> {
        self.view
            .conversations
            .iter()
            .map(|conversation| conversation.id.clone())
            .collect()
    }

    /// The transfers of `conversation` that have not ended (offered or
    /// moving), most recent first.
    pub fn unfinished_transfers(&self, conversation: &str) -> Vec<&pb::Transfer> {
        self.view
            .transfers
            .iter()
            .filter(|transfer| {
                transfer.conversation_id == conversation
                    && matches!(
                        transfer.state(),
                        pb::TransferState::Offered | pb::TransferState::Moving
                    )
            })
            .collect()
    }

    /// The newest offer to us in `conversation` still waiting for an
    /// answer: what `/accept-file` and `/refuse-file` answer.
    pub fn offer_to_answer(&self, conversation: &str) -> Option<&pb::Transfer> {
        self.unfinished_transfers(conversation)
            .into_iter()
            .find(|transfer| !transfer.outgoing && transfer.state() == pb::TransferState::Offered)
    }

    /// Whether `actor_id` is typing: the daemon says so and the indicator's
    /// deadline has not passed.
    pub fn is_typing(&self, actor_id: &str) -> bool {
        self.view
            .presence_of(actor_id)
            .is_some_and(|presence| presence.typing)
            && self
                .typing_until
                .get(actor_id)
                .is_some_and(|until| *until > self.now_unix_ms)
    }

    /// The next typing deadline, for the main loop's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.typing_until
            .values()
            .copied()
            .filter(|until| *until > self.now_unix_ms)
            .min()
    }

    /// A contact's display name by actor id, or a short id.
    pub fn name_of(&self, actor_id: &str) -> String {
        if self
            .view
            .status
            .as_ref()
            .is_some_and(|status| status.actor_id == actor_id)
        {
            return self
                .view
                .status
                .as_ref()
                .map(|status| status.display_name.clone())
                .unwrap_or_default();
        }
        // A channel's members need not be contacts: their names come with
        // the roster.
        self.view
            .contact(actor_id)
            .map(|contact| contact.display_name.clone())
            .or_else(|| {
                self.view
                    .conversations
                    .iter()
                    .flat_map(|conversation| &conversation.members)
                    .find(|member| member.actor_id == actor_id)
                    .map(|member| member.display_name.clone())
            })
            .unwrap_or_else(|| actor_id.chars().take(8).collect())
    }
}
