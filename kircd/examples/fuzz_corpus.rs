//! Writes the fuzzing seed corpora: real records, made by kircd's own
//! sealing and signing code with the fixed keys of `fuzz/keys.rs`, one file
//! each, into `<folder>/<target>/` (`fuzz/corpus` by default). `dev/fuzz`
//! runs it before the targets.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// Shared with the fuzz targets, which use what this does not.
#[allow(dead_code)]
#[path = "../../fuzz/keys.rs"]
mod keys;

use std::path::Path;

use kirc_proto::wire::v1 as wire;
use kircd::crypto::identity::Identity;
use kircd::crypto::{envelope, profile};
use prost::Message;

fn profile(identity: &Identity, name: &str) -> wire::SignedProfile {
    profile::sign_profile(
        identity,
        &wire::PublicProfile {
            signing_key: identity.signing_key().to_bytes().to_vec(),
            box_key: identity.box_key().as_bytes().to_vec(),
            display_name: name.to_owned(),
            kafka: Some(wire::KafkaAccess {
                bootstrap_servers: "kafka.example:9092".into(),
                data_in_topic: "data-in".into(),
                rpc_in_topic: "rpc-in".into(),
                security_protocol: "sasl_ssl".into(),
                sasl_mechanism: "SCRAM-SHA-256".into(),
                username: "public".into(),
                password: "write-only".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            }),
            updated_at_unix_ms: 1_700_000_000_000,
            features: vec![wire::Feature::ReceiptRanges as i32],
        },
    )
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let folder = dir.join(target);
    std::fs::create_dir_all(&folder).expect("corpus folder");
    std::fs::write(folder.join(name), bytes).expect("corpus file");
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| Path::new("fuzz/corpus").to_path_buf(), Into::into);
    let keys = keys::keys();
    let (alice, bob) = (&keys.alice, &keys.bob);
    let alice_profile = profile(alice, "alice");
    let seal = |kind: wire::Kind, payload: &[u8]| {
        envelope::seal(
            alice,
            bob.id(),
            &keys.alice_with_bob,
            kind,
            envelope::new_message_id(),
            payload,
        )
    };
    let request = wire::ContactRequest {
        profile: Some(alice_profile.clone()),
        invite_secret: vec![7; 16],
        channel_join: Vec::new(),
    }
    .encode_to_vec();
    let accepted = wire::ContactAccepted {
        profile: Some(alice_profile.clone()),
    }
    .encode_to_vec();
    let receipt = wire::Receipt {
        kind: wire::ReceiptKind::Read as i32,
        message_ids: vec![envelope::new_message_id().as_bytes().to_vec(); 3],
    }
    .encode_to_vec();
    let presence = wire::Presence {
        state: wire::PresenceState::Away as i32,
        text: "lunch".into(),
        ttl_seconds: 180,
    }
    .encode_to_vec();
    let typing = wire::Typing { active: true }.encode_to_vec();
    let heartbeat = wire::Heartbeat {}.encode_to_vec();
    let offer = wire::FileOffer {
        transfer_id: vec![3; 16],
        piece_bytes: 256 * 1024,
        files: vec![
            wire::OfferedFile {
                path: vec!["photos".into(), "a.jpg".into()],
                size: 300_000,
                hash: vec![4; 32],
                pieces_hash: vec![5; 32],
            },
            wire::OfferedFile {
                path: vec!["..".into(), "/etc".into(), "\u{202e}gpj.exe".into()],
                size: 0,
                hash: vec![4; 32],
                pieces_hash: vec![5; 32],
            },
        ],
    }
    .encode_to_vec();
    let answer = wire::FileAnswer {
        transfer_id: vec![3; 16],
        kind: wire::FileAnswerKind::Accept as i32,
        resume_from: vec![0, 2],
        reason: String::new(),
    }
    .encode_to_vec();
    let range = wire::ReceiptRange {
        kind: wire::ReceiptKind::Received as i32,
        first: vec![6; 16],
        last: vec![7; 16],
    }
    .encode_to_vec();
    let payloads: [(wire::Kind, &[u8]); 9] = [
        (wire::Kind::ContactRequest, &request),
        (wire::Kind::ContactAccepted, &accepted),
        (wire::Kind::Receipt, &receipt),
        (wire::Kind::Presence, &presence),
        (wire::Kind::Typing, &typing),
        (wire::Kind::Heartbeat, &heartbeat),
        (wire::Kind::FileOffer, &offer),
        (wire::Kind::FileAnswer, &answer),
        (wire::Kind::ReceiptRange, &range),
    ];

    for (index, text) in [
        "hi",
        "",
        "a longer line with ünïcödé ✔ and \u{1b}[31m",
        &"x".repeat(4000),
    ]
    .iter()
    .enumerate()
    {
        let chat = wire::ChatPayload {
            text: (*text).to_owned(),
            action: index == 1,
            ..wire::ChatPayload::default()
        };
        write(
            &dir,
            "envelope",
            &format!("chat-{index}"),
            &seal(wire::Kind::Chat, &chat.encode_to_vec()),
        );
    }
    for (kind, payload) in payloads {
        let sealed = if kind == wire::Kind::ContactRequest {
            envelope::seal_anonymous(
                alice,
                bob.id(),
                &bob.box_key(),
                kind,
                envelope::new_message_id(),
                payload,
            )
        } else {
            seal(kind, payload)
        };
        write(&dir, "envelope", &format!("{kind:?}"), &sealed);
        let mut tagged = vec![kind as u8 - 1];
        tagged.extend_from_slice(payload);
        write(&dir, "control", &format!("{kind:?}"), &tagged);
    }
    let mut marks = vec![11u8];
    marks.extend_from_slice(&[1; 60]);
    marks.extend_from_slice(&[2; 60]);
    write(&dir, "control", "marks", &marks);

    write(&dir, "profile", "alice", &alice_profile.encode_to_vec());
    write(&dir, "profile", "bob", &profile(bob, "bob").encode_to_vec());
    let token = profile::encode_token(&wire::Invite {
        profile: Some(alice_profile),
        secret: vec![9; 16],
        expires_at_unix_ms: keys::NOW_MS + 86_400_000,
    });
    write(&dir, "token", "valid", token.as_bytes());
    write(&dir, "token", "spaced", format!("  {token}\n").as_bytes());

    for (index, text) in [
        "plain",
        "\u{1b}[2J\u{1b}[H escape",
        "\u{202E}evil\u{202C} bidi \u{2066}isolate\u{2069}",
        "tab\there\r\nnewline \u{7}bell",
        "emoji 👩‍💻 and combining e\u{301}",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, "sanitize", &format!("text-{index}"), text.as_bytes());
    }
}
