//! Each control payload as it comes out of a verified, opened envelope
//! (first byte: which kind), decoded and read as the inbox reads it; and the
//! replay verdict on two marks made of the same bytes.
#![no_main]

use kirc_proto::wire::v1 as wire;
use kircd::transfers::{
    manifest::{self, OfferLimits},
    names,
};
use kircd::transport::marks::{self, Mark, Verdict};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn mark(bytes: &[u8]) -> Option<Mark> {
    let bytes: &[u8; 60] = bytes.get(..60)?.try_into().ok()?;
    Some(Mark {
        message_id: uuid::Uuid::from_slice(&bytes[..16]).ok()?,
        partition: i32::from_le_bytes(bytes[16..20].try_into().ok()?),
        offset: i64::from_le_bytes(bytes[20..28].try_into().ok()?),
        digest: bytes[28..60].try_into().ok()?,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => {
            if let Ok(request) = wire::ContactRequest::decode(payload)
                && let Some(signed) = &request.profile
            {
                let _ = kircd::crypto::profile::verify_profile(signed);
                let _ = kircd::crypto::profile::secret_hash(&request.invite_secret);
            }
        }
        1 => {
            if let Ok(accepted) = wire::ContactAccepted::decode(payload)
                && let Some(signed) = &accepted.profile
            {
                let _ = kircd::crypto::profile::verify_profile(signed);
            }
        }
        2 => {
            if let Ok(receipt) = wire::Receipt::decode(payload) {
                let _ = wire::ReceiptKind::try_from(receipt.kind);
                for id in &receipt.message_ids {
                    let _ = uuid::Uuid::from_slice(id);
                }
            }
        }
        3 => {
            if let Ok(presence) = wire::Presence::decode(payload) {
                let _ = wire::PresenceState::try_from(presence.state);
                let ttl = presence.ttl_seconds.clamp(1, 86_400);
                assert!((1..=86_400).contains(&ttl));
            }
        }
        4 => drop(wire::Typing::decode(payload)),
        5 => drop(wire::Heartbeat::decode(payload)),
        6 => drop(kircd::peers::signal::parse(payload)),
        7 => {
            if let Ok(offer) = wire::FileOffer::decode(payload) {
                let limits = OfferLimits {
                    max_total_bytes: 1 << 40,
                };
                if let Ok(checked) = manifest::check_offer(&offer, limits) {
                    // Whatever the sender wrote, every file lands below the
                    // download folder, and within the limit.
                    assert!(checked.total_bytes <= limits.max_total_bytes);
                    for file in &checked.files {
                        assert!(names::stays_below(&file.path), "{:?}", file.path);
                    }
                }
            }
        }
        8 => {
            if let Ok(answer) = wire::FileAnswer::decode(payload) {
                let _ = wire::FileAnswerKind::try_from(answer.kind);
            }
        }
        9 => {
            if let Ok(range) = wire::ReceiptRange::decode(payload) {
                let _ = wire::ReceiptKind::try_from(range.kind);
                let _ = (
                    uuid::Uuid::from_slice(&range.first),
                    uuid::Uuid::from_slice(&range.last),
                );
            }
        }
        10 => drop(wire::FileFrame::decode(payload)),
        _ => {
            let (Some(applied), Some(record)) = (mark(payload), payload.get(60..).and_then(mark))
            else {
                return;
            };
            let verdict = marks::judge(Some(&applied), &record);
            // Only a newer record applies; the applied one again never does.
            assert_eq!(
                verdict == Verdict::Apply,
                record.message_id > applied.message_id
            );
            assert_eq!(marks::judge(Some(&applied), &applied), Verdict::Redelivered);
            assert_eq!(marks::judge(None, &record), Verdict::Apply);
        }
    }
});
