//! File transfers: `/send`, answering an offer, and the transfers overlay's
//! keys.

use super::*;
use crate::state::Overlay;

fn transfer(id: &str, outgoing: bool, state: pb::TransferState) -> pb::Transfer {
    pb::Transfer {
        transfer_id: id.into(),
        contact_id: BOB.into(),
        conversation_id: "conv-bob".into(),
        outgoing,
        state: state as i32,
        ..pb::Transfer::default()
    }
}

/// The daemon reports `transfer` (newest first in the view).
fn changed(state: &mut State, seq: u64, transfer: pb::Transfer) {
    update(state, event(seq, Kind::TransferChanged(transfer)));
}

#[test]
fn send_offers_the_path_as_typed_to_the_open_conversation() {
    let mut state = state();
    assert!(type_line(&mut state, "/send ~/video.bin").is_empty());
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|notice| notice.error && notice.text.contains("open a conversation"))
    );
    open_bob(&mut state, Vec::new());
    assert_eq!(
        type_line(&mut state, "/send ~/My Photos"),
        vec![Effect::SendFile {
            to: BOB.into(),
            path: "~/My Photos".into()
        }]
    );
}

#[test]
fn accept_file_and_refuse_file_answer_the_newest_offer_to_us_here() {
    let mut state = state();
    open_bob(&mut state, Vec::new());
    assert!(type_line(&mut state, "/accept-file").is_empty());
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|notice| notice.text.contains("no file is offered"))
    );
    // Ours, an older offer to us, and a newer one: the newer is answered.
    changed(
        &mut state,
        2,
        transfer("ours", true, pb::TransferState::Offered),
    );
    changed(
        &mut state,
        3,
        transfer("older", false, pb::TransferState::Offered),
    );
    changed(
        &mut state,
        4,
        transfer("newer", false, pb::TransferState::Offered),
    );
    assert_eq!(
        type_line(&mut state, "/refuse-file"),
        vec![Effect::AnswerTransfer {
            transfer_id: "newer".into(),
            accept: false
        }]
    );
    changed(
        &mut state,
        5,
        transfer("newer", false, pb::TransferState::Refused),
    );
    assert_eq!(
        type_line(&mut state, "/accept-file"),
        vec![Effect::AnswerTransfer {
            transfer_id: "older".into(),
            accept: true
        }]
    );
}

#[test]
fn the_overlay_cancels_accepts_and_refuses_only_what_can_be() {
    let mut state = state();
    changed(
        &mut state,
        2,
        transfer("done", false, pb::TransferState::Complete),
    );
    changed(
        &mut state,
        3,
        transfer("moving", true, pb::TransferState::Moving),
    );
    changed(
        &mut state,
        4,
        transfer("offer", false, pb::TransferState::Offered),
    );
    assert!(type_line(&mut state, "/transfers").is_empty());
    assert_eq!(state.overlay, Some(Overlay::Transfers { selected: 0 }));
    let press = |state: &mut State, c: char| update(state, key(KeyCode::Char(c)));

    // The offer to us (first, the newest).
    assert_eq!(
        press(&mut state, 'a'),
        vec![Effect::AnswerTransfer {
            transfer_id: "offer".into(),
            accept: true
        }]
    );
    assert_eq!(
        press(&mut state, 'c'),
        vec![Effect::CancelTransfer("offer".into())]
    );
    // Ours, moving: cancelled, but not answered.
    update(&mut state, key(KeyCode::Down));
    assert!(press(&mut state, 'a').is_empty());
    assert_eq!(
        press(&mut state, 'c'),
        vec![Effect::CancelTransfer("moving".into())]
    );
    // An ended one: nothing; the selection stops at the last.
    update(&mut state, key(KeyCode::Down));
    update(&mut state, key(KeyCode::Down));
    assert_eq!(state.overlay, Some(Overlay::Transfers { selected: 2 }));
    assert!(press(&mut state, 'c').is_empty());
    assert!(press(&mut state, 'r').is_empty());
    update(&mut state, key(KeyCode::Esc));
    assert_eq!(state.overlay, None);
    assert_eq!(state.input.text(), "", "the overlay's keys typed nothing");
}
