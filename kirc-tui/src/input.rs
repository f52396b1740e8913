//! The input line: a readline-style editor over a `String`, with a history.
//! Positions are in chars, never in bytes, and the cursor moves and deletes
//! by grapheme clusters, so multi-byte text (an emoji made of several code
//! points, a letter and its combining mark) is edited whole.

use unicode_segmentation::UnicodeSegmentation;

/// How many sent lines the history keeps.
const HISTORY_LIMIT: usize = 500;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    /// Cursor position, in chars from the start.
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing the history; `None` when editing a new line.
    browsing: Option<usize>,
    /// The line being written when history browsing started.
    stash: String,
}

fn byte_index(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(index, _)| index)
}

/// The char positions where graphemes of `text` start, and its length.
fn boundaries(text: &str) -> Vec<usize> {
    let mut at = 0;
    let mut starts = Vec::new();
    for grapheme in text.graphemes(true) {
        starts.push(at);
        at += grapheme.chars().count();
    }
    starts.push(at);
    starts
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// Replaces the whole line, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.len();
    }

    pub fn insert(&mut self, c: char) {
        let at = byte_index(&self.text, self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
        self.browsing = None;
    }

    pub fn insert_str(&mut self, text: &str) {
        let at = byte_index(&self.text, self.cursor);
        self.text.insert_str(at, text);
        self.cursor += text.chars().count();
        self.browsing = None;
    }

    /// The grapheme boundary before the cursor.
    fn previous(&self) -> usize {
        boundaries(&self.text)
            .into_iter()
            .take_while(|at| *at < self.cursor)
            .last()
            .unwrap_or(0)
    }

    /// The grapheme boundary after the cursor.
    fn next(&self) -> usize {
        boundaries(&self.text)
            .into_iter()
            .find(|at| *at > self.cursor)
            .unwrap_or(self.cursor)
    }

    pub fn backspace(&mut self) {
        let to = self.cursor;
        let from = self.previous();
        if from < to {
            self.remove_range(from, to);
        }
    }

    pub fn delete(&mut self) {
        let from = self.cursor;
        let to = self.next();
        if from < to {
            self.remove_range(from, to);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.previous();
    }

    pub fn right(&mut self) {
        self.cursor = self.next();
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.len();
    }

    /// The start of the word before the cursor (Alt+B, Ctrl+W).
    fn word_start(&self) -> usize {
        let chars: Vec<char> = self.text.chars().collect();
        let mut at = self.cursor;
        while at > 0 && !is_word(chars[at - 1]) {
            at -= 1;
        }
        while at > 0 && is_word(chars[at - 1]) {
            at -= 1;
        }
        at
    }

    /// The end of the word after the cursor (Alt+F).
    fn word_end(&self) -> usize {
        let chars: Vec<char> = self.text.chars().collect();
        let mut at = self.cursor;
        while at < chars.len() && !is_word(chars[at]) {
            at += 1;
        }
        while at < chars.len() && is_word(chars[at]) {
            at += 1;
        }
        at
    }

    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    pub fn word_right(&mut self) {
        self.cursor = self.word_end();
    }

    fn remove_range(&mut self, from: usize, to: usize) {
        let start = byte_index(&self.text, from);
        let end = byte_index(&self.text, to);
        self.text.replace_range(start..end, "");
        self.cursor = from;
    }

    /// Ctrl+W: deletes the word before the cursor.
    pub fn delete_word_back(&mut self) {
        let start = self.word_start();
        self.remove_range(start, self.cursor);
    }

    /// Ctrl+U: deletes everything before the cursor.
    pub fn delete_to_start(&mut self) {
        self.remove_range(0, self.cursor);
    }

    /// Ctrl+K: deletes everything from the cursor on.
    pub fn delete_to_end(&mut self) {
        let end = self.len();
        self.remove_range(self.cursor, end);
    }

    /// Takes the line (for sending) and remembers it in the history.
    pub fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
            if self.history.len() > HISTORY_LIMIT {
                self.history.remove(0);
            }
        }
        text
    }

    /// Up: the previous line of the history.
    pub fn history_back(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.stash = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(at) => at - 1,
        };
        self.browsing = Some(next);
        let line = self.history[next].clone();
        self.set(&line);
        self.browsing = Some(next);
    }

    /// Down: the next line of the history, then the line being written.
    pub fn history_forward(&mut self) {
        let Some(at) = self.browsing else { return };
        if at + 1 < self.history.len() {
            let line = self.history[at + 1].clone();
            self.set(&line);
            self.browsing = Some(at + 1);
        } else {
            let stash = std::mem::take(&mut self.stash);
            self.set(&stash);
            self.browsing = None;
        }
    }

    /// The word the cursor is in or after, with its start, for completion.
    pub fn current_word(&self) -> (usize, String) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut start = self.cursor;
        while start > 0 && !chars[start - 1].is_whitespace() {
            start -= 1;
        }
        (start, chars[start..self.cursor].iter().collect())
    }

    /// Replaces the word from `start` to the cursor with `replacement`.
    pub fn replace_word(&mut self, start: usize, replacement: &str) {
        self.remove_range(start, self.cursor);
        self.insert_str(replacement);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Input {
        let mut input = Input::default();
        input.insert_str(text);
        input
    }

    #[test]
    fn emoji_sequences_and_combining_marks_move_and_go_whole() {
        // A family (ZWJ), a heart with its emoji variation selector, a flag,
        // a thumb with a skin tone, an e with a combining accent.
        let mut input = typed("a👨‍👩‍👧‍👦❤️🇫🇷👍🏽e\u{301}");
        input.backspace();
        assert_eq!(input.text(), "a👨‍👩‍👧‍👦❤️🇫🇷👍🏽");
        input.left();
        input.left();
        input.backspace();
        assert_eq!(input.text(), "a👨‍👩‍👧‍👦🇫🇷👍🏽");
        input.home();
        input.right();
        input.delete();
        assert_eq!(input.text(), "a🇫🇷👍🏽");
        input.insert('!');
        assert_eq!(input.text(), "a!🇫🇷👍🏽");
    }

    #[test]
    fn readline_editing() {
        let mut input = typed("hello brave new world");
        input.delete_word_back();
        assert_eq!(input.text(), "hello brave new ");
        input.word_left();
        input.word_left();
        assert_eq!(input.cursor(), 6);
        input.delete_to_end();
        assert_eq!(input.text(), "hello ");
        input.home();
        input.insert_str(">> ");
        assert_eq!(input.text(), ">> hello ");
        input.word_right();
        assert_eq!(input.cursor(), 8);
        input.delete_to_start();
        assert_eq!(input.text(), " ");
        input.end();
        input.backspace();
        input.backspace();
        assert!(input.is_empty());
    }

    #[test]
    fn multibyte_text_is_edited_by_character() {
        let mut input = typed("h\u{e9}llo 👋🏽 שלום");
        input.backspace();
        assert_eq!(input.text(), "h\u{e9}llo 👋🏽 שלו");
        input.home();
        input.right();
        input.delete();
        assert_eq!(input.text(), "hllo 👋🏽 שלו");
        input.end();
        input.delete_word_back();
        assert_eq!(input.text(), "hllo 👋🏽 ");
    }

    #[test]
    fn history_browses_and_restores_the_line_being_written() {
        let mut input = Input::default();
        for line in ["one", "two", "three"] {
            input.insert_str(line);
            input.take();
        }
        input.insert_str("draft");
        input.history_back();
        assert_eq!(input.text(), "three");
        input.history_back();
        input.history_back();
        input.history_back();
        assert_eq!(input.text(), "one");
        input.history_forward();
        assert_eq!(input.text(), "two");
        input.history_forward();
        input.history_forward();
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn current_word_for_completion() {
        let mut input = typed("/msg al");
        assert_eq!(input.current_word(), (5, String::from("al")));
        input.replace_word(5, "alice ");
        assert_eq!(input.text(), "/msg alice ");
    }
}
