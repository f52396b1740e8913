//! Signalling records from contacts (`KIND_SIGNAL` on `rpc-in`): checked
//! here, then handed to the peer manager. They arrive like every control
//! record, signed and sealed by the contact, judged against its mark (a
//! replay or an older copy never reaches this handler); this adds what is
//! particular to signalling: only accepted contacts negotiate, a record
//! older than [`SIGNAL_STALE`] is dropped, and its shape is bounded.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio::sync::mpsc;

use super::negotiation::SessionId;
use crate::book::Contact;
use crate::crypto::envelope::Rejection;
use crate::transport::marks::Stream;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Sender, is_stale};

/// A signalling record older than this is dropped: the negotiation it
/// belongs to has timed out on the other side.
pub const SIGNAL_STALE: Duration = Duration::from_secs(30);

/// An SDP larger than this is refused (ours are about 1 KiB).
const MAX_SDP: usize = 16 * 1024;
/// At most this many candidates per record, each at most this long.
const MAX_CANDIDATES: usize = 32;
const MAX_CANDIDATE: usize = 512;
const MAX_REASON: usize = 256;

/// One signalling step, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Offer(String),
    Answer(String),
    Candidates {
        candidates: Vec<wire::Candidate>,
        end: bool,
    },
    HangUp(String),
}

impl Step {
    /// The step's name, for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Offer(_) => "offer",
            Step::Answer(_) => "answer",
            Step::Candidates { .. } => "candidates",
            Step::HangUp(_) => "hang-up",
        }
    }
}

/// A session id, short, for the log.
pub fn short(session: &SessionId) -> String {
    session[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Debug, Clone)]
pub struct Signal {
    pub from: Arc<Contact>,
    pub session: SessionId,
    pub step: Step,
}

/// The shape of a signalling payload, or why it is malformed.
pub fn parse(payload: &[u8]) -> Option<(SessionId, Step)> {
    let signal = wire::Signal::decode(payload).ok()?;
    let session: SessionId = signal.session_id.as_slice().try_into().ok()?;
    let step = match signal.body? {
        wire::signal::Body::Offer(offer) if offer.sdp.len() <= MAX_SDP => Step::Offer(offer.sdp),
        wire::signal::Body::Answer(answer) if answer.sdp.len() <= MAX_SDP => {
            Step::Answer(answer.sdp)
        }
        wire::signal::Body::Candidates(batch)
            if batch.candidates.len() <= MAX_CANDIDATES
                && batch.candidates.iter().all(|candidate| {
                    candidate.candidate.len() <= MAX_CANDIDATE
                        && candidate.sdp_mid.len() <= MAX_CANDIDATE
                        && candidate.username_fragment.len() <= MAX_CANDIDATE
                }) =>
        {
            Step::Candidates {
                candidates: batch.candidates,
                end: batch.end,
            }
        }
        wire::signal::Body::HangUp(hang_up) if hang_up.reason.len() <= MAX_REASON => {
            Step::HangUp(hang_up.reason)
        }
        _ => return None,
    };
    Some((session, step))
}

/// The payload of a signalling step.
pub fn encode(session: SessionId, step: Step) -> Vec<u8> {
    let body = match step {
        Step::Offer(sdp) => wire::signal::Body::Offer(wire::Description { sdp }),
        Step::Answer(sdp) => wire::signal::Body::Answer(wire::Description { sdp }),
        Step::Candidates { candidates, end } => {
            wire::signal::Body::Candidates(wire::Candidates { candidates, end })
        }
        Step::HangUp(reason) => wire::signal::Body::HangUp(wire::HangUp { reason }),
    };
    wire::Signal {
        session_id: session.to_vec(),
        body: Some(body),
    }
    .encode_to_vec()
}

/// Hands checked signalling to the peer manager.
#[derive(Debug)]
pub struct SignalHandler {
    pub signals: mpsc::Sender<Signal>,
}

impl ControlHandler for SignalHandler {
    fn stream(&self) -> Stream {
        "signal"
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            // Only an accepted contact negotiates a direct path: a pending
            // request or a contact of ours we have not accepted may write
            // to rpc-in, but opens nothing.
            let contact = match control.sender {
                Sender::Contact(contact) if contact.is_accepted() => contact,
                _ => return Ok(Err(Rejection::Stranger)),
            };
            let Some((session, step)) = parse(&control.payload) else {
                return Ok(Err(Rejection::Malformed));
            };
            if is_stale(control.header.created_at_unix_ms(), SIGNAL_STALE) {
                return Ok(Err(Rejection::Stale));
            }
            // A manager that cannot keep up loses a step of negotiation,
            // which times out and is tried again; the inbox never waits.
            if self
                .signals
                .try_send(Signal {
                    from: contact,
                    session,
                    step,
                })
                .is_err()
            {
                tracing::debug!("signalling dropped: the peer manager is busy or stopped");
            }
            Ok(Ok(()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::Header;
    use crate::store::ContactState;
    use crate::testing::{book, contact, identity};

    /// What the handler makes of `payload` from `from` sent `age` ago, and
    /// what it handed on.
    async fn handled(
        from: &Arc<Contact>,
        me: crate::crypto::identity::ActorId,
        age: Duration,
        payload: Vec<u8>,
    ) -> (Applied, Option<Signal>) {
        let (signals, mut received) = mpsc::channel(4);
        let handler = SignalHandler { signals };
        let sent_at = std::time::SystemTime::now() - age;
        let since_epoch = sent_at.duration_since(std::time::UNIX_EPOCH).unwrap();
        let header = Header {
            message_id: uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                since_epoch.as_secs(),
                since_epoch.subsec_nanos(),
            )),
            sender: from.actor_id,
            recipient: me,
            kind: wire::Kind::Signal,
        };
        let applied = handler
            .handle(Control {
                header: &header,
                sender: Sender::Contact(Arc::clone(from)),
                payload,
            })
            .await
            .unwrap();
        (applied, received.try_recv().ok())
    }

    #[tokio::test]
    async fn only_fresh_well_formed_signalling_from_accepted_contacts_goes_on() {
        let (bob, alice, carol) = (identity(1), identity(2), identity(4));
        let book = book(
            &bob,
            &[
                (&alice, "alice", ContactState::Accepted),
                (&carol, "carol", ContactState::Request),
            ],
        );
        let offer = encode([3; 16], Step::Offer(String::from("v=0")));
        let fresh = Duration::from_secs(1);
        let (applied, passed) =
            handled(&contact(&book, &alice), bob.id(), fresh, offer.clone()).await;
        assert_eq!(applied, Ok(()));
        assert_eq!(passed.unwrap().step, Step::Offer(String::from("v=0")));

        let cases = [
            (
                "from a contact not accepted",
                contact(&book, &carol),
                fresh,
                offer.clone(),
                Rejection::Stranger,
            ),
            (
                "older than the bound",
                contact(&book, &alice),
                SIGNAL_STALE + Duration::from_secs(5),
                offer.clone(),
                Rejection::Stale,
            ),
            (
                "malformed",
                contact(&book, &alice),
                fresh,
                vec![0xff; 8],
                Rejection::Malformed,
            ),
        ];
        for (name, from, age, payload, expected) in cases {
            let (applied, passed) = handled(&from, bob.id(), age, payload).await;
            assert_eq!(applied, Err(expected), "{name}");
            assert!(passed.is_none(), "{name}: handed on");
        }
    }

    #[test]
    fn steps_round_trip_and_bad_shapes_are_refused() {
        let session = [7; 16];
        let steps = [
            Step::Offer(String::from("v=0")),
            Step::Answer(String::from("v=0")),
            Step::Candidates {
                candidates: vec![wire::Candidate {
                    candidate: String::from("candidate:1 1 udp 1 127.0.0.1 5000 typ host"),
                    sdp_mid: String::from("0"),
                    sdp_mline_index: 0,
                    username_fragment: String::new(),
                }],
                end: true,
            },
            Step::HangUp(String::from("offline")),
        ];
        for step in steps {
            assert_eq!(parse(&encode(session, step.clone())), Some((session, step)));
        }

        let short_session = wire::Signal {
            session_id: vec![1; 15],
            body: Some(wire::signal::Body::HangUp(wire::HangUp::default())),
        };
        let no_body = wire::Signal {
            session_id: vec![1; 16],
            body: None,
        };
        let huge_sdp = encode(session, Step::Offer("x".repeat(MAX_SDP + 1)));
        let many = encode(
            session,
            Step::Candidates {
                candidates: vec![wire::Candidate::default(); MAX_CANDIDATES + 1],
                end: false,
            },
        );
        for bad in [
            short_session.encode_to_vec(),
            no_body.encode_to_vec(),
            huge_sdp,
            many,
            vec![0xff, 0xff, 0xff],
        ] {
            assert_eq!(parse(&bad), None);
        }
    }
}
