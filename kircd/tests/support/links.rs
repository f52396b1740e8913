//! Pairs of WebRTC links in one process on loopback, connected by handing
//! each other's descriptions and candidates across directly: for measuring
//! the connections themselves (their cost, their leaks, their latency)
//! without daemons. Shared by `tests/link_cycles.rs` and `benches/direct.rs`.

use std::time::Duration;

use kircd::config::{IcePolicy, RtcConfig};
use kircd::peers::link::{Link, LinkEvent, LinkSettings, Messages, Tagged};
use tokio::sync::mpsc;

pub fn loopback() -> LinkSettings {
    LinkSettings::new(&RtcConfig {
        enabled: true,
        stun_urls: Vec::new(),
        turn: None,
        ice_policy: IcePolicy::All,
        udp_bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_peers: 32,
    })
}

/// Connected pairs: pair `n` is links `2n` (the offerer) and `2n + 1`, and
/// their events come tagged so.
pub struct Pairs {
    pub links: Vec<(Link, Link)>,
    // Read by the benchmark's latency loop; the cycles test only connects.
    #[allow(dead_code)]
    pub events: mpsc::UnboundedReceiver<(u64, LinkEvent)>,
}

impl Pairs {
    /// `count` pairs, each channel open and proven with one message each
    /// way.
    pub async fn connect(count: usize) -> Pairs {
        let (sender, mut events) = mpsc::unbounded_channel();
        let tagged = |tag| Tagged {
            tag,
            events: sender.clone(),
            messages: Messages::Events,
            files: None,
        };
        let mut links = Vec::new();
        for pair in 0..count {
            let tag = u64::try_from(pair).unwrap() * 2;
            let offerer = Link::new(&loopback(), tagged(tag)).await.unwrap();
            let answerer = Link::new(&loopback(), tagged(tag + 1)).await.unwrap();
            let offer = offerer.offer().await.unwrap();
            let answer = answerer.answer(offer).await.unwrap();
            offerer.accept_answer(answer).await.unwrap();
            links.push((offerer, answerer));
        }
        let mut answered = 0;
        let exchange = async {
            while answered < count {
                let (tag, event) = events.recv().await.unwrap();
                let (this, other) = end(&links, tag);
                match event {
                    LinkEvent::Candidate(Some(candidate)) => {
                        other.add_candidate(candidate).await.unwrap();
                    }
                    // The offerer's channel opens: it speaks first, the
                    // answerer replies.
                    LinkEvent::Open if tag.is_multiple_of(2) => this.send(b"ping").await.unwrap(),
                    LinkEvent::Message(bytes) if &bytes[..] == b"ping" => {
                        this.send(b"pong").await.unwrap();
                    }
                    LinkEvent::Message(bytes) if &bytes[..] == b"pong" => answered += 1,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .expect("every pair connects and carries a message each way");
        Pairs { links, events }
    }

    pub async fn close(self) {
        for (offerer, answerer) in self.links {
            offerer.close().await;
            answerer.close().await;
        }
    }
}

/// The link tagged `tag` and the other end of its pair.
fn end(links: &[(Link, Link)], tag: u64) -> (&Link, &Link) {
    let (offerer, answerer) = &links[usize::try_from(tag / 2).unwrap()];
    if tag.is_multiple_of(2) {
        (offerer, answerer)
    } else {
        (answerer, offerer)
    }
}
