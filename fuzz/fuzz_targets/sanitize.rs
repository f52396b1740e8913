//! Text from a peer, made safe to draw: nothing that moves the cursor or
//! reorders the screen survives, and every character stays one character.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let safe = kirc_tui::ui::sanitize(&text);
    assert_eq!(safe.chars().count(), text.chars().count());
    for c in safe.chars() {
        assert!(!c.is_control(), "{c:?} survived");
        assert!(
            !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
            "{c:?} survived"
        );
    }
});
