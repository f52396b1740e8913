//! Moving the scrollback, and asking for the page before it in time.

use super::*;

pub(super) fn scroll(state: &mut State, action: Action, effects: &mut Vec<Effect>) {
    let Some(conversation) = state.open.clone() else {
        return;
    };
    let page = usize::from(crate::layout::scrollback_rows(state).max(2)) - 1;
    let position = match action {
        Action::ScrollUp => crate::layout::scroll_up(state, &conversation, page),
        Action::ScrollDown => crate::layout::scroll_down(state, &conversation, page),
        Action::ScrollTop => crate::layout::scroll_top(state, &conversation),
        _ => None,
    };
    move_view(state, &conversation, position, page, effects);
}

/// Puts the view of `conversation` at `position` (`None`: the newest), and
/// asks for what it will need: the present again after an old search
/// result, the page before once within `margin` rows of the top of what is
/// loaded.
pub(super) fn move_view(
    state: &mut State,
    conversation: &str,
    position: Option<crate::state::Position>,
    margin: usize,
    effects: &mut Vec<Effect>,
) {
    let Some(scrollback) = state.scrollbacks.get_mut(conversation) else {
        return;
    };
    scrollback.position = position;
    if position.is_none() && !scrollback.reaches_newest {
        // Back from an old search result to the present.
        scrollback.messages.clear();
        scrollback.loading = false;
        effects.extend(load(state, conversation, Anchor::Latest));
        return;
    }
    // Near the top of what is loaded: fetch the page before it.
    let more_before = scrollback.more_before;
    let first = scrollback
        .messages
        .first()
        .map(|message| message.id.clone());
    if more_before
        && crate::layout::near_top(state, conversation, PREFETCH_LINES + margin)
        && let Some(first) = first
    {
        effects.extend(load(state, conversation, Anchor::Before(first)));
    }
}
