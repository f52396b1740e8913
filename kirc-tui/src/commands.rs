//! Slash commands: the list (for `/help` and completion) and the parser.

/// Every command: name, arguments, what it does.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "msg",
        "<contact> [text]",
        "open the conversation with a contact, and send text if given",
    ),
    ("me", "<action>", "send an action (\"* alice waves\")"),
    (
        "add",
        "<token>",
        "add a contact from their invite token (a channel's token joins it)",
    ),
    (
        "invite",
        "[#channel]",
        "show a token (and QR code) to give a friend; a channel's, in or naming one you own",
    ),
    (
        "create",
        "<#channel> [topic]",
        "create a channel you own and relay",
    ),
    (
        "join",
        "<token | #channel>",
        "join a channel by its token, or open one you are in",
    ),
    ("part", "[reason]", "leave the open channel"),
    (
        "topic",
        "[text]",
        "show the open channel's topic, or set it",
    ),
    ("names", "", "the open channel's members"),
    (
        "kick",
        "<member> [reason]",
        "remove a member from the open channel (operators)",
    ),
    (
        "ban",
        "<member> [reason]",
        "remove a member and refuse their return (operators)",
    ),
    ("unban", "<member>", "lift a ban (operators)"),
    ("op", "<member>", "make a member an operator (operators)"),
    (
        "deop",
        "<member>",
        "take a member's operator status (operators)",
    ),
    (
        "mode",
        "<+m | -m>",
        "moderated mode on or off: only operators speak (operators)",
    ),
    (
        "reply",
        "<text>",
        "answer the selected message (alt-up selects), or the newest from them",
    ),
    (
        "react",
        "<emoji>",
        "react to the selected message, or the newest from them; again takes it back",
    ),
    (
        "edit",
        "[text]",
        "change your selected (or newest) message; without text, edit it in the input line",
    ),
    (
        "delete",
        "",
        "delete your selected (or newest) message for everyone",
    ),
    (
        "versions",
        "",
        "the texts the selected (or newest) message had",
    ),
    (
        "links",
        "",
        "the open conversation's links, newest first: Enter opens, y copies",
    ),
    ("open", "<n>", "open link n of /links (1 is the newest)"),
    ("readall", "", "mark every conversation read"),
    (
        "mute",
        "",
        "no notifications from the open conversation (its count stays)",
    ),
    (
        "unmute",
        "",
        "notifications from the open conversation again",
    ),
    (
        "accept",
        "[contact]",
        "accept a message request (the open one if none is named)",
    ),
    (
        "block",
        "[contact]",
        "block a contact: everything from them is dropped",
    ),
    ("unblock", "<contact>", "unblock a contact"),
    (
        "away",
        "[text]",
        "show contacts you are away, with an optional text",
    ),
    ("back", "", "show contacts you are back"),
    ("contacts", "", "list contacts and message requests"),
    (
        "whois",
        "<contact>",
        "a contact's profile, fingerprint and delivery path",
    ),
    (
        "search",
        "<words>",
        "search all messages; Enter on a result opens it",
    ),
    (
        "send",
        "<path>",
        "offer a file or a folder to the open conversation's contact",
    ),
    (
        "accept-file",
        "",
        "take the file offered in the open conversation (its offer line says which)",
    ),
    (
        "refuse-file",
        "",
        "decline the file offered in the open conversation",
    ),
    (
        "transfers",
        "",
        "every file transfer with its progress; c cancels the selected one",
    ),
    (
        "close",
        "",
        "close the open conversation (it stays in the list)",
    ),
    ("help", "", "every command and key"),
    ("quit", "", "leave kirc-tui (kircd keeps running)"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Msg {
        to: String,
        text: Option<String>,
    },
    Me(String),
    Add(String),
    /// A contact invite, or a channel's (named, or the open one's).
    Invite(Option<String>),
    CreateChannel {
        name: String,
        topic: String,
    },
    Join(String),
    Part(String),
    Topic(Option<String>),
    Names,
    /// Kick, ban, unban, op, deop: the act, the member, the reason.
    Act {
        act: ChannelAct,
        member: String,
        reason: String,
    },
    Moderate(bool),
    Reply(String),
    React(String),
    Edit(Option<String>),
    Delete,
    Versions,
    ReadAll,
    Mute(bool),
    Links,
    Open(usize),
    Accept(Option<String>),
    Block(Option<String>),
    Unblock(String),
    Contacts,
    Whois(String),
    Search(String),
    SendFile(String),
    AnswerFile {
        accept: bool,
    },
    Transfers,
    Away(String),
    Back,
    Close,
    Help,
    Quit,
}

/// What an operator does to a member of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAct {
    Kick,
    Ban,
    Unban,
    Op,
    Deop,
}

/// What a line typed in the input is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Text to send to the open conversation.
    Text(String),
    Command(Command),
    /// A command with missing arguments: its usage.
    Usage(String),
    /// `/something` that is no command: probably a typo.
    Unknown {
        name: String,
        suggestion: Option<&'static str>,
    },
}

fn usage(name: &str) -> Line {
    let args = COMMANDS
        .iter()
        .find(|(command, _, _)| *command == name)
        .map_or("", |(_, args, _)| *args);
    Line::Usage(format!("usage: /{name} {args}"))
}

/// Parses one input line. `//text` sends `/text` literally.
pub fn parse(line: &str) -> Line {
    let Some(rest) = line.strip_prefix('/') else {
        return Line::Text(line.to_owned());
    };
    if rest.starts_with('/') {
        return Line::Text(rest.to_owned());
    }
    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let args = args.trim();
    let name_lower = name.to_ascii_lowercase();
    let arg = || (!args.is_empty()).then(|| args.to_owned());
    let command = match name_lower.as_str() {
        "msg" | "query" => {
            let (to, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if to.is_empty() {
                return usage("msg");
            }
            let text = text.trim_start();
            Command::Msg {
                to: to.to_owned(),
                text: (!text.is_empty()).then(|| text.to_owned()),
            }
        }
        "me" => match arg() {
            Some(action) => Command::Me(action),
            None => return usage("me"),
        },
        "add" => match arg() {
            Some(token) if token.starts_with("kircc1:") => Command::Join(token),
            Some(token) => Command::Add(token),
            None => return usage("add"),
        },
        "invite" => Command::Invite(arg()),
        "create" => {
            let (name, topic) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if name.is_empty() {
                return usage("create");
            }
            Command::CreateChannel {
                name: name.to_owned(),
                topic: topic.trim().to_owned(),
            }
        }
        "join" => match arg() {
            Some(token) => Command::Join(token),
            None => return usage("join"),
        },
        "part" | "leave" => Command::Part(args.to_owned()),
        "topic" => Command::Topic(arg()),
        "names" => Command::Names,
        "kick" | "ban" | "unban" | "op" | "deop" => {
            let (member, reason) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if member.is_empty() {
                return usage(&name_lower);
            }
            let act = match name_lower.as_str() {
                "kick" => ChannelAct::Kick,
                "ban" => ChannelAct::Ban,
                "unban" => ChannelAct::Unban,
                "op" => ChannelAct::Op,
                _ => ChannelAct::Deop,
            };
            Command::Act {
                act,
                member: member.to_owned(),
                reason: reason.trim().to_owned(),
            }
        }
        "mode" => match args {
            "+m" => Command::Moderate(true),
            "-m" => Command::Moderate(false),
            _ => return usage("mode"),
        },
        "reply" => match arg() {
            Some(text) => Command::Reply(text),
            None => return usage("reply"),
        },
        "react" => match arg() {
            Some(emoji) => Command::React(emoji),
            None => return usage("react"),
        },
        "edit" => Command::Edit(arg()),
        "delete" => Command::Delete,
        "versions" => Command::Versions,
        "readall" => Command::ReadAll,
        "mute" => Command::Mute(true),
        "unmute" => Command::Mute(false),
        "links" | "urls" => Command::Links,
        "open" => match args.parse() {
            Ok(number) if number > 0 => Command::Open(number),
            _ => return usage("open"),
        },
        "accept" => Command::Accept(arg()),
        "block" => Command::Block(arg()),
        "unblock" => match arg() {
            Some(contact) => Command::Unblock(contact),
            None => return usage("unblock"),
        },
        "contacts" => Command::Contacts,
        "whois" => match arg() {
            Some(contact) => Command::Whois(contact),
            None => return usage("whois"),
        },
        "search" => match arg() {
            Some(words) => Command::Search(words),
            None => return usage("search"),
        },
        "send" => match arg() {
            Some(path) => Command::SendFile(path),
            None => return usage("send"),
        },
        "accept-file" => Command::AnswerFile { accept: true },
        "refuse-file" => Command::AnswerFile { accept: false },
        "transfers" => Command::Transfers,
        "away" => Command::Away(args.to_owned()),
        "back" => Command::Back,
        "close" => Command::Close,
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        _ => {
            // Two edits (a swap counts as one) is what a typo looks like.
            let suggestion = COMMANDS
                .iter()
                .map(|(command, _, _)| {
                    (strsim::damerau_levenshtein(&name_lower, command), *command)
                })
                .filter(|(distance, _)| *distance <= 2)
                .min_by_key(|(distance, _)| *distance)
                .map(|(_, command)| command);
            return Line::Unknown {
                name: name.to_owned(),
                suggestion,
            };
        }
    };
    Line::Command(command)
}

/// Command names starting with `prefix` (without the slash).
pub fn complete(prefix: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_text() {
        assert_eq!(parse("hello"), Line::Text("hello".into()));
        assert_eq!(parse("//slash"), Line::Text("/slash".into()));
        assert_eq!(
            parse("/msg bob  hi there"),
            Line::Command(Command::Msg {
                to: "bob".into(),
                text: Some("hi there".into())
            })
        );
        assert_eq!(
            parse("/msg bob"),
            Line::Command(Command::Msg {
                to: "bob".into(),
                text: None
            })
        );
        assert_eq!(
            parse("/me waves"),
            Line::Command(Command::Me("waves".into()))
        );
        assert_eq!(parse("/accept"), Line::Command(Command::Accept(None)));
        assert_eq!(parse("/QUIT"), Line::Command(Command::Quit));
        assert_eq!(
            parse("/add kirc1:abc"),
            Line::Command(Command::Add("kirc1:abc".into()))
        );
        assert_eq!(
            parse("/send ~/My Photos"),
            Line::Command(Command::SendFile("~/My Photos".into()))
        );
        assert_eq!(
            parse("/refuse-file"),
            Line::Command(Command::AnswerFile { accept: false })
        );
        assert_eq!(parse("/send"), Line::Usage("usage: /send <path>".into()));
    }

    #[test]
    fn parses_the_channel_commands() {
        let cases = [
            (
                "/create #rust the borrow checker",
                Line::Command(Command::CreateChannel {
                    name: "#rust".into(),
                    topic: "the borrow checker".into(),
                }),
            ),
            (
                "/join kircc1:abc",
                Line::Command(Command::Join("kircc1:abc".into())),
            ),
            (
                "/add kircc1:abc",
                Line::Command(Command::Join("kircc1:abc".into())),
            ),
            ("/invite", Line::Command(Command::Invite(None))),
            (
                "/invite #rust",
                Line::Command(Command::Invite(Some("#rust".into()))),
            ),
            ("/part", Line::Command(Command::Part(String::new()))),
            (
                "/part gone fishing",
                Line::Command(Command::Part("gone fishing".into())),
            ),
            ("/topic", Line::Command(Command::Topic(None))),
            (
                "/topic new one",
                Line::Command(Command::Topic(Some("new one".into()))),
            ),
            ("/names", Line::Command(Command::Names)),
            (
                "/kick bob too loud",
                Line::Command(Command::Act {
                    act: ChannelAct::Kick,
                    member: "bob".into(),
                    reason: "too loud".into(),
                }),
            ),
            (
                "/op carol",
                Line::Command(Command::Act {
                    act: ChannelAct::Op,
                    member: "carol".into(),
                    reason: String::new(),
                }),
            ),
            ("/mode +m", Line::Command(Command::Moderate(true))),
            ("/mode -m", Line::Command(Command::Moderate(false))),
            ("/mode", Line::Usage("usage: /mode <+m | -m>".into())),
            (
                "/kick",
                Line::Usage("usage: /kick <member> [reason]".into()),
            ),
            (
                "/create",
                Line::Usage("usage: /create <#channel> [topic]".into()),
            ),
        ];
        for (typed, expected) in cases {
            assert_eq!(parse(typed), expected, "{typed}");
        }
    }

    #[test]
    fn missing_arguments_give_the_usage() {
        assert_eq!(
            parse("/msg"),
            Line::Usage("usage: /msg <contact> [text]".into())
        );
        assert_eq!(
            parse("/search  "),
            Line::Usage("usage: /search <words>".into())
        );
    }

    #[test]
    fn unknown_commands_suggest_the_closest() {
        assert_eq!(
            parse("/mgs bob hi"),
            Line::Unknown {
                name: "mgs".into(),
                suggestion: Some("msg")
            }
        );
        assert!(matches!(
            parse("/zzzzzz"),
            Line::Unknown {
                suggestion: None,
                ..
            }
        ));
    }

    #[test]
    fn completes_command_names() {
        assert_eq!(complete("bl"), vec!["block"]);
        assert_eq!(complete("c"), vec!["create", "contacts", "close"]);
    }
}
