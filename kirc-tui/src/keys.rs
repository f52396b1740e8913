//! Key bindings: the actions that can be bound, their defaults, and parsing
//! of `[keys]` in tui.toml. The readline editing keys of the input line are
//! fixed; binding one of them to an action is reported as a conflict.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    NextConversation,
    PreviousConversation,
    ScrollUp,
    ScrollDown,
    ScrollTop,
    ScrollBottom,
    NextUnread,
    NextMention,
    SelectPrevious,
    SelectNext,
    Editor,
    Complete,
    Help,
    Quit,
}

/// Every bindable action: config name, default keys, what it does.
pub const ACTIONS: &[(Action, &str, &[&str], &str)] = &[
    (
        Action::NextConversation,
        "next_conversation",
        &["ctrl-n"],
        "next conversation",
    ),
    (
        Action::PreviousConversation,
        "previous_conversation",
        &["ctrl-p"],
        "previous conversation",
    ),
    (
        Action::ScrollUp,
        "scroll_up",
        &["pageup"],
        "scroll back a page",
    ),
    (
        Action::ScrollDown,
        "scroll_down",
        &["pagedown"],
        "scroll forward a page",
    ),
    (
        Action::ScrollTop,
        "scroll_top",
        &["home"],
        "to the oldest message",
    ),
    (
        Action::ScrollBottom,
        "scroll_bottom",
        &["end"],
        "to the newest message",
    ),
    (
        Action::NextUnread,
        "next_unread",
        &["alt-u"],
        "the next conversation with unread messages",
    ),
    (
        Action::NextMention,
        "next_mention",
        &["alt-m"],
        "the next conversation that mentions you",
    ),
    (
        Action::SelectPrevious,
        "select_previous",
        &["alt-up"],
        "select the message above (the keys for it are below)",
    ),
    (
        Action::SelectNext,
        "select_next",
        &["alt-down"],
        "select the message below",
    ),
    (
        Action::Editor,
        "editor",
        &["ctrl-x"],
        "write the message in $EDITOR",
    ),
    (
        Action::Complete,
        "complete",
        &["tab"],
        "complete a command or contact name",
    ),
    (Action::Help, "help", &["f1"], "show help"),
    (
        Action::Quit,
        "quit",
        &["ctrl-c"],
        "quit (kircd keeps running)",
    ),
];

/// Keys the input line keeps for itself.
pub const EDITING_KEYS: &[(&str, &str)] = &[
    ("ctrl-a", "start of line"),
    ("ctrl-e", "end of line"),
    ("ctrl-w", "delete word"),
    ("ctrl-u", "delete to start"),
    ("ctrl-k", "delete to end"),
    ("alt-b", "word left"),
    ("alt-f", "word right"),
    ("left", "character left"),
    ("right", "character right"),
    ("up", "previous input"),
    ("down", "next input"),
    ("enter", "send"),
    ("alt-enter", "new line"),
    ("backspace", "delete back"),
    ("delete", "delete forward"),
    ("esc", "close the overlay"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("[keys] {action}: unknown action; the actions are: {known}")]
    UnknownAction { action: String, known: String },
    #[error(
        "[keys] {action}: cannot read the key {key:?}; write keys like \"ctrl-n\", \"alt-1\", \"pageup\", \"f2\""
    )]
    BadKey { action: String, key: String },
    #[error("[keys] {key} is bound to both {first} and {second}; give each its own key")]
    Conflict {
        key: String,
        first: String,
        second: String,
    },
    #[error("[keys] {action}: {key} is the input line's \"{editing}\" key; choose another")]
    Reserved {
        action: String,
        key: String,
        editing: &'static str,
    },
}

/// Parses "ctrl-n", "alt-1", "shift-tab", "pageup", "f1", "a" into a key.
pub fn parse_key(text: &str) -> Option<(KeyCode, KeyModifiers)> {
    let text = text.trim().to_ascii_lowercase();
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = text.as_str();
    loop {
        if let Some(after) = rest.strip_prefix("ctrl-") {
            modifiers |= KeyModifiers::CONTROL;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("alt-") {
            modifiers |= KeyModifiers::ALT;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("shift-") {
            modifiers |= KeyModifiers::SHIFT;
            rest = after;
        } else {
            break;
        }
    }
    let code = match rest {
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "tab" if modifiers.contains(KeyModifiers::SHIFT) => {
            modifiers -= KeyModifiers::SHIFT;
            KeyCode::BackTab
        }
        "tab" => KeyCode::Tab,
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "backspace" => KeyCode::Backspace,
        "delete" => KeyCode::Delete,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "space" => KeyCode::Char(' '),
        function if function.len() > 1 && function.starts_with('f') => {
            KeyCode::F(function[1..].parse().ok()?)
        }
        single if single.chars().count() == 1 => KeyCode::Char(single.chars().next()?),
        _ => return None,
    };
    Some((code, modifiers))
}

/// Normalises a key event the way bindings are stored: shifted characters
/// carry no SHIFT flag (terminals disagree on sending it).
fn normalise(code: KeyCode, modifiers: KeyModifiers) -> (KeyCode, KeyModifiers) {
    match code {
        KeyCode::Char(c) => (
            KeyCode::Char(c.to_ascii_lowercase()),
            modifiers - KeyModifiers::SHIFT,
        ),
        other => (other, modifiers),
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<(KeyCode, KeyModifiers), Action>,
    /// What each action is bound to, for /help.
    pub described: Vec<(String, &'static str)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::from_config(&toml::Table::new()).unwrap_or_else(|_| Keymap {
            bindings: HashMap::new(),
            described: Vec::new(),
        })
    }
}

impl Keymap {
    /// Builds the keymap from the `[keys]` table: each action takes a key or
    /// a list of keys; an action left out keeps its default.
    pub fn from_config(keys: &toml::Table) -> Result<Self, KeyError> {
        let known: Vec<&str> = ACTIONS.iter().map(|(_, name, _, _)| *name).collect();
        for action in keys.keys() {
            if !known.contains(&action.as_str()) {
                return Err(KeyError::UnknownAction {
                    action: action.clone(),
                    known: known.join(", "),
                });
            }
        }
        let mut bindings = HashMap::new();
        let mut owners: HashMap<(KeyCode, KeyModifiers), &str> = HashMap::new();
        let mut described = Vec::new();
        for (action, name, defaults, doc) in ACTIONS {
            let chosen: Vec<String> = match keys.get(*name) {
                None => defaults.iter().map(|key| (*key).to_owned()).collect(),
                Some(toml::Value::String(key)) => vec![key.clone()],
                Some(toml::Value::Array(list)) => list
                    .iter()
                    .map(|value| value.as_str().map(str::to_owned).unwrap_or_default())
                    .collect(),
                Some(other) => {
                    return Err(KeyError::BadKey {
                        action: (*name).to_owned(),
                        key: other.to_string(),
                    });
                }
            };
            for key in &chosen {
                let parsed = parse_key(key).ok_or_else(|| KeyError::BadKey {
                    action: (*name).to_owned(),
                    key: key.clone(),
                })?;
                let parsed = normalise(parsed.0, parsed.1);
                if let Some((editing_key, editing)) =
                    EDITING_KEYS.iter().find(|(editing_key, _)| {
                        parse_key(editing_key).map(|k| normalise(k.0, k.1)) == Some(parsed)
                    })
                {
                    return Err(KeyError::Reserved {
                        action: (*name).to_owned(),
                        key: (*editing_key).to_owned(),
                        editing,
                    });
                }
                if let Some(first) = owners.insert(parsed, name) {
                    return Err(KeyError::Conflict {
                        key: key.clone(),
                        first: first.to_owned(),
                        second: (*name).to_owned(),
                    });
                }
                bindings.insert(parsed, *action);
            }
            described.push((chosen.join(", "), *doc));
        }
        Ok(Keymap {
            bindings,
            described,
        })
    }

    pub fn action(&self, key: &KeyEvent) -> Option<Action> {
        self.bindings
            .get(&normalise(key.code, key.modifiers))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_bind_the_documented_keys() {
        let keymap = Keymap::default();
        let key = |code, modifiers| keymap.action(&KeyEvent::new(code, modifiers));
        assert_eq!(
            key(KeyCode::Char('n'), KeyModifiers::CONTROL),
            Some(Action::NextConversation)
        );
        assert_eq!(
            key(KeyCode::PageUp, KeyModifiers::NONE),
            Some(Action::ScrollUp)
        );
        assert_eq!(key(KeyCode::Char('x'), KeyModifiers::NONE), None);
    }

    #[test]
    fn bindings_are_configurable_as_a_key_or_a_list() {
        let keymap = Keymap::from_config(&table(
            "next_conversation = [\"alt-j\", \"ctrl-down\"]\nhelp = \"f2\"",
        ))
        .unwrap();
        assert_eq!(
            keymap.action(&KeyEvent::new(KeyCode::Char('j'), KeyModifiers::ALT)),
            Some(Action::NextConversation)
        );
        assert_eq!(
            keymap.action(&KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE)),
            Some(Action::Help)
        );
        assert_eq!(
            keymap.action(&KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL)),
            None
        );
    }

    #[test]
    fn unknown_bad_conflicting_and_reserved_bindings_are_reported() {
        let err = Keymap::from_config(&table("next_conversaton = \"ctrl-j\"")).unwrap_err();
        assert!(
            err.to_string().contains("next_conversaton: unknown action"),
            "{err}"
        );
        let err = Keymap::from_config(&table("help = \"hyper-x\"")).unwrap_err();
        assert!(
            err.to_string().contains("cannot read the key \"hyper-x\""),
            "{err}"
        );
        let err = Keymap::from_config(&table("help = \"ctrl-n\"")).unwrap_err();
        assert_eq!(
            err,
            KeyError::Conflict {
                key: "ctrl-n".into(),
                first: "next_conversation".into(),
                second: "help".into()
            }
        );
        let err = Keymap::from_config(&table("quit = \"ctrl-w\"")).unwrap_err();
        assert!(err.to_string().contains("delete word"), "{err}");
    }
}
