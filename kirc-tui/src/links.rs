//! Links in messages: found by `linkify`, and only `http` and `https` ones
//! (a peer's text is opened in a browser: never a file, a script or another
//! program's scheme); the open conversation's links, numbered for `/open`.

use std::ops::Range;

use kirc_proto::v1 as pb;
use linkify::{LinkFinder, LinkKind};

use crate::state::State;

/// The links of `text`: their byte ranges and the URLs.
pub fn find(text: &str) -> Vec<(Range<usize>, String)> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    finder
        .links(text)
        .filter(|link| openable(link.as_str()))
        .map(|link| (link.start()..link.end(), link.as_str().to_owned()))
        .collect()
}

/// Whether a URL may be opened or made a terminal hyperlink.
pub fn openable(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The links of the messages of `conversation` held on screen, newest
/// first, each once: what `/links` lists and `/open <n>` counts.
pub fn of_conversation(state: &State, conversation: &str) -> Vec<String> {
    let Some(scrollback) = state.scrollbacks.get(conversation) else {
        return Vec::new();
    };
    let mut urls: Vec<String> = Vec::new();
    for message in scrollback
        .messages
        .iter()
        .rev()
        .filter(|message| shows_text(message))
    {
        for (_, url) in find(&message.body) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}

/// Whether the message's body is text a reader sees (not a deleted
/// message's nothing, nor a channel's line).
fn shows_text(message: &pb::ChatMessage) -> bool {
    !message.deleted && message.line == pb::ChannelLine::None as i32
}

/// The links of one message, in its order.
pub fn of_message(message: &pb::ChatMessage) -> Vec<String> {
    if !shows_text(message) {
        return Vec::new();
    }
    find(&message.body)
        .into_iter()
        .map(|(_, url)| url)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_links_are_found() {
        let text = "see https://example.com/a?b=c, http://x.org and file:///etc/passwd or javascript:alert(1) ftp://old.net";
        let urls: Vec<String> = find(text).into_iter().map(|(_, url)| url).collect();
        assert_eq!(urls, ["https://example.com/a?b=c", "http://x.org"]);
        let (range, _) = &find(text)[0];
        assert_eq!(&text[range.clone()], "https://example.com/a?b=c");
    }
}
