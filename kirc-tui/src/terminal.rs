//! What kirc-tui writes to the terminal besides the screen: text for the
//! clipboard (OSC 52, which reaches the local clipboard over SSH, and
//! through tmux with `set -g set-clipboard on`).

use std::io::Write;

use crossterm::clipboard::CopyToClipboard;

/// Puts `text` on the terminal's clipboard.
pub fn copy(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    crossterm::execute!(out, CopyToClipboard::to_clipboard_from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_one_osc_52_sequence_with_the_text_in_base64() {
        let mut written = Vec::new();
        copy(&mut written, "hello ✓").unwrap();
        // "hello ✓" in base64, for the clipboard selection "c".
        assert_eq!(written, b"\x1b]52;c;aGVsbG8g4pyT\x1b\\");
    }
}
