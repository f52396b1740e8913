//! What a chat payload says — a text (or a /me action), perhaps a reply, or
//! an act on another message (a reaction, an edit, a deletion) — and the
//! checks every payload passes, ours from the API and anyone's from an inbox
//! or a channel. Pure: no I/O.

use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

/// Longest chat text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Longest reaction, in bytes of UTF-8: room for the longest emoji
/// sequences (a family of four with skin tones is 41 bytes).
pub const MAX_EMOJI_BYTES: usize = 64;

/// What an act does to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActKind {
    React(String),
    Unreact(String),
    Edit(String),
    Delete,
}

impl ActKind {
    /// The name it is stored under.
    pub fn name(&self) -> &'static str {
        match self {
            ActKind::React(_) => "react",
            ActKind::Unreact(_) => "unreact",
            ActKind::Edit(_) => "edit",
            ActKind::Delete => "delete",
        }
    }

    /// What it says: the emoji, the new text, or nothing.
    pub fn body(&self) -> &str {
        match self {
            ActKind::React(emoji) | ActKind::Unreact(emoji) => emoji,
            ActKind::Edit(text) => text,
            ActKind::Delete => "",
        }
    }

    /// Whether only the target's own sender may make it.
    pub fn needs_author(&self) -> bool {
        matches!(self, ActKind::Edit(_) | ActKind::Delete)
    }
}

/// An act on the message `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    pub target: Uuid,
    pub kind: ActKind,
}

/// A payload that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Empty for an act.
    pub text: String,
    pub action: bool,
    pub reply_to: Option<Uuid>,
    pub act: Option<Act>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is {0} bytes; the limit is {MAX_TEXT_BYTES}")]
    TooLong(usize),
    #[error(
        "a reaction is a short text without spaces, 1 to {MAX_EMOJI_BYTES} bytes (an emoji, say)"
    )]
    BadEmoji,
    #[error("a message id is 16 bytes")]
    BadId,
    #[error("an act names what it does")]
    NoAct,
    #[error("an act carries no text, /me flag or reply of its own")]
    ActWithText,
}

/// A chat text: not blank, not too long.
pub fn check_text(text: &str) -> Result<(), ContentError> {
    if text.trim().is_empty() {
        return Err(ContentError::Empty);
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ContentError::TooLong(text.len()));
    }
    Ok(())
}

/// A reaction: 1 to [`MAX_EMOJI_BYTES`] bytes, no whitespace or control
/// characters (they would break the line it is shown on).
pub fn check_emoji(emoji: &str) -> Result<(), ContentError> {
    if emoji.is_empty()
        || emoji.len() > MAX_EMOJI_BYTES
        || emoji.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ContentError::BadEmoji);
    }
    Ok(())
}

fn id_of(bytes: &[u8]) -> Result<Option<Uuid>, ContentError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Uuid::from_slice(bytes)
        .map(Some)
        .map_err(|_| ContentError::BadId)
}

impl Content {
    /// A payload as it arrived: every field checked.
    pub fn from_payload(payload: wire::ChatPayload) -> Result<Content, ContentError> {
        let reply_to = id_of(&payload.reply_to)?;
        let Some(act) = payload.act else {
            check_text(&payload.text)?;
            return Ok(Content {
                text: payload.text,
                action: payload.action,
                reply_to,
                act: None,
            });
        };
        if !payload.text.is_empty() || payload.action || reply_to.is_some() {
            return Err(ContentError::ActWithText);
        }
        let target = id_of(&act.target)?.ok_or(ContentError::BadId)?;
        let kind = match act.what.ok_or(ContentError::NoAct)? {
            wire::message_act::What::Reaction(reaction) => {
                check_emoji(&reaction.emoji)?;
                if reaction.remove {
                    ActKind::Unreact(reaction.emoji)
                } else {
                    ActKind::React(reaction.emoji)
                }
            }
            wire::message_act::What::Edit(edit) => {
                check_text(&edit.text)?;
                ActKind::Edit(edit.text)
            }
            wire::message_act::What::Deletion(_) => ActKind::Delete,
        };
        Ok(Content {
            text: String::new(),
            action: false,
            reply_to: None,
            act: Some(Act { target, kind }),
        })
    }

    /// The payload that says this.
    pub fn to_payload(&self) -> wire::ChatPayload {
        wire::ChatPayload {
            text: self.text.clone(),
            action: self.action,
            reply_to: self
                .reply_to
                .map(|id| id.as_bytes().to_vec())
                .unwrap_or_default(),
            act: self.act.as_ref().map(|act| wire::MessageAct {
                target: act.target.as_bytes().to_vec(),
                what: Some(match &act.kind {
                    ActKind::React(emoji) => wire::message_act::What::Reaction(wire::Reaction {
                        emoji: emoji.clone(),
                        remove: false,
                    }),
                    ActKind::Unreact(emoji) => wire::message_act::What::Reaction(wire::Reaction {
                        emoji: emoji.clone(),
                        remove: true,
                    }),
                    ActKind::Edit(text) => {
                        wire::message_act::What::Edit(wire::Edit { text: text.clone() })
                    }
                    ActKind::Delete => wire::message_act::What::Deletion(wire::Deletion {}),
                }),
            }),
        }
    }

    /// What is stored as the row's body: the text, or the act's.
    pub fn body(&self) -> &str {
        self.act.as_ref().map_or(&self.text, |act| act.kind.body())
    }

    /// The wire kind a one-to-one copy travels as.
    pub fn kind(&self) -> wire::Kind {
        if self.act.is_some() {
            wire::Kind::MessageAct
        } else {
            wire::Kind::Chat
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(target: &[u8], what: Option<wire::message_act::What>) -> wire::ChatPayload {
        wire::ChatPayload {
            act: Some(wire::MessageAct {
                target: target.to_vec(),
                what,
            }),
            ..wire::ChatPayload::default()
        }
    }

    fn reaction(emoji: &str) -> Option<wire::message_act::What> {
        Some(wire::message_act::What::Reaction(wire::Reaction {
            emoji: emoji.to_owned(),
            remove: false,
        }))
    }

    #[test]
    fn payloads_from_outside_are_checked_field_by_field() {
        let id = [7u8; 16];
        let cases: Vec<(&str, wire::ChatPayload, Result<(), ContentError>)> = vec![
            (
                "text",
                wire::ChatPayload {
                    text: "hi".into(),
                    ..Default::default()
                },
                Ok(()),
            ),
            (
                "blank text",
                wire::ChatPayload::default(),
                Err(ContentError::Empty),
            ),
            (
                "too long",
                wire::ChatPayload {
                    text: "a".repeat(MAX_TEXT_BYTES + 1),
                    ..Default::default()
                },
                Err(ContentError::TooLong(MAX_TEXT_BYTES + 1)),
            ),
            (
                "a reply",
                wire::ChatPayload {
                    text: "yes".into(),
                    reply_to: id.to_vec(),
                    ..Default::default()
                },
                Ok(()),
            ),
            (
                "a reply to a short id",
                wire::ChatPayload {
                    text: "yes".into(),
                    reply_to: vec![1, 2],
                    ..Default::default()
                },
                Err(ContentError::BadId),
            ),
            ("a reaction", act(&id, reaction("👍")), Ok(())),
            (
                "a family emoji with skin tones",
                act(&id, reaction("👨🏻‍👩🏻‍👧🏻‍👦🏻")),
                Ok(()),
            ),
            (
                "a reaction with a space",
                act(&id, reaction("a b")),
                Err(ContentError::BadEmoji),
            ),
            (
                "an empty reaction",
                act(&id, reaction("")),
                Err(ContentError::BadEmoji),
            ),
            (
                "a reaction with a newline",
                act(&id, reaction("x\n")),
                Err(ContentError::BadEmoji),
            ),
            (
                "a long reaction",
                act(&id, reaction(&"x".repeat(MAX_EMOJI_BYTES + 1))),
                Err(ContentError::BadEmoji),
            ),
            (
                "an act on no message",
                act(&[], reaction("👍")),
                Err(ContentError::BadId),
            ),
            (
                "an act that does nothing",
                act(&id, None),
                Err(ContentError::NoAct),
            ),
            (
                "an empty edit",
                act(
                    &id,
                    Some(wire::message_act::What::Edit(wire::Edit {
                        text: " ".into(),
                    })),
                ),
                Err(ContentError::Empty),
            ),
            (
                "an act with text",
                wire::ChatPayload {
                    text: "sneaky".into(),
                    ..act(&id, reaction("👍"))
                },
                Err(ContentError::ActWithText),
            ),
        ];
        for (name, payload, expected) in cases {
            assert_eq!(
                Content::from_payload(payload).map(|_| ()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn every_content_reads_back_from_its_payload() {
        let target = Uuid::from_u128(9);
        let act = |kind| Content {
            text: String::new(),
            action: false,
            reply_to: None,
            act: Some(Act { target, kind }),
        };
        let contents = [
            Content {
                text: "hello".into(),
                action: true,
                reply_to: Some(target),
                act: None,
            },
            act(ActKind::React("🎉".into())),
            act(ActKind::Unreact("🎉".into())),
            act(ActKind::Edit("better".into())),
            act(ActKind::Delete),
        ];
        for content in contents {
            assert_eq!(
                Content::from_payload(content.to_payload()).as_ref(),
                Ok(&content)
            );
        }
    }
}
