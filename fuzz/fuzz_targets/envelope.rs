//! A record in bob's inbox, from anyone: parsed, its signature checked
//! against alice's key (or, for a contact request, against the profile
//! inside), opened, and its payload decoded, as the inbox does.
#![no_main]

// Shared by all targets; each uses a part.
#[allow(dead_code)]
#[path = "../keys.rs"]
mod keys;

use kirc_proto::wire::v1 as wire;
use kircd::crypto::{envelope, profile};
use kircd::transfers::manifest::{self, OfferLimits};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let keys = keys::keys();
    let Ok((sealed, header)) = envelope::parse(data, keys.bob.id()) else {
        return;
    };
    if header.kind == wire::Kind::ContactRequest {
        if let Ok(payload) = envelope::open_anonymous(&sealed, &keys.bob)
            && let Ok(request) = wire::ContactRequest::decode(payload.as_slice())
            && let Some(signed) = &request.profile
            && let Ok(profile) = profile::verify_profile(signed)
        {
            let _ = envelope::verify(&sealed, &profile.signing_key);
        }
        return;
    }
    if envelope::verify(&sealed, &keys.alice.signing_key()).is_err() {
        return;
    }
    let Ok(payload) = envelope::open(&sealed, &header, &keys.bob_with_alice) else {
        return;
    };
    let payload = payload.as_slice();
    match header.kind {
        // Chat and acts on it: the checks every payload passes.
        wire::Kind::Chat | wire::Kind::MessageAct => {
            if let Ok(chat) = wire::ChatPayload::decode(payload) {
                let _ = kircd::content::Content::from_payload(chat);
            }
        }
        wire::Kind::ContactAccepted => {
            if let Ok(accepted) = wire::ContactAccepted::decode(payload)
                && let Some(signed) = &accepted.profile
            {
                let _ = profile::verify_profile(signed);
            }
        }
        wire::Kind::Receipt => drop(wire::Receipt::decode(payload)),
        wire::Kind::ReceiptRange => drop(wire::ReceiptRange::decode(payload)),
        wire::Kind::Presence => drop(wire::Presence::decode(payload)),
        wire::Kind::Typing => drop(wire::Typing::decode(payload)),
        wire::Kind::Heartbeat => drop(wire::Heartbeat::decode(payload)),
        wire::Kind::Signal => drop(kircd::peers::signal::parse(payload)),
        wire::Kind::FileOffer => {
            if let Ok(offer) = wire::FileOffer::decode(payload) {
                let limits = OfferLimits {
                    max_total_bytes: u64::MAX,
                };
                let _ = manifest::check_offer(&offer, limits);
            }
        }
        wire::Kind::FileAnswer => {
            if let Ok(answer) = wire::FileAnswer::decode(payload) {
                let _ = wire::FileAnswerKind::try_from(answer.kind);
            }
        }
        wire::Kind::ChannelPost => drop(wire::ChannelPost::decode(payload)),
        wire::Kind::ChannelRelay => drop(wire::ChannelRelay::decode(payload)),
        wire::Kind::ChannelCommand => drop(wire::ChannelCommand::decode(payload)),
        wire::Kind::ChannelKey => drop(wire::ChannelKeyForward::decode(payload)),
        wire::Kind::ContactRequest => {}
    }
});
