//! The floor's Kafka and PostgreSQL parts as the benchmarks time them: a
//! raw produce → consume hop, and the pacing of a floor's samples beside a
//! path measured with pauses.

use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};

use std::sync::Arc;

use super::contract::{BareGrpc, ChatPair};
use super::{client, consumer, fresh_topic, pg};

/// Raw produce → consume latency of `count` records of `size` bytes, one at
/// a time: back to back, or one every `rhythm` (see [`Rhythm`]).
pub async fn raw_latency(
    bootstrap: &str,
    count: usize,
    size: usize,
    rhythm: Option<Duration>,
) -> Vec<Duration> {
    let mut hop = RawHop::new(bootstrap, size).await;
    let mut samples = Vec::with_capacity(count);
    let mut rhythm = Rhythm::new(rhythm);
    for _ in 0..count {
        rhythm.wait().await;
        samples.push(hop.sample().await);
    }
    samples
}

/// A plain rdkafka producer and consumer of a fresh topic, to time one
/// record's produce → consume at a time.
pub struct RawHop {
    producer: FutureProducer,
    consumer: StreamConsumer,
    topic: String,
    payload: Vec<u8>,
    sent: usize,
}

impl RawHop {
    /// Records of `size` bytes on a fresh topic, once the consumer has its
    /// partitions.
    pub async fn new(bootstrap: &str, size: usize) -> Self {
        let topic = format!("bench.raw.{}", uuid::Uuid::now_v7());
        fresh_topic(bootstrap, &topic).await;
        let producer: FutureProducer = client(bootstrap).create().unwrap();
        let consumer = consumer(bootstrap, &topic);
        let payload = vec![b'x'; size];
        producer
            .send(
                FutureRecord::to(&topic).key("warm").payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        consumer.recv().await.unwrap();
        RawHop {
            producer,
            consumer,
            topic,
            payload,
            sent: 0,
        }
    }

    /// One record produced and consumed back, timed.
    pub async fn sample(&mut self) -> Duration {
        self.sent += 1;
        let key = self.sent.to_string();
        let start = Instant::now();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(&key)
                    .payload(&self.payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        loop {
            let message = self.consumer.recv().await.unwrap();
            if message.key() == Some(key.as_bytes()) {
                break;
            }
        }
        start.elapsed()
    }
}

/// The floor's parts timed between the settled path's messages: after a
/// message settles, the same pause, a raw hop, the same pause, a one-row
/// commit, the same pause, a round trip on the sending daemon's socket, the
/// same pause, a raw round trip to another process ([`RawEcho`]), the
/// same pause, a gRPC round trip to a server that only answers
/// ([`BareGrpc`]), the same pause, one envelope sealed and opened
/// ([`ChatPair::sample`]), the same pause, a raw hop and a one-row commit
/// started together, the same pause, and the next message. Each part and each message
/// then starts after the same idle pause, at the same minutes of the run:
/// on this VM a part that finds the machine idle is slower (the floor twice
/// as slow after 3 ms), and the ratio must follow neither the pause nor
/// what the VM did in a window of the run the other side did not see.
pub struct FloorBetween {
    hop: RawHop,
    commit: pg::Commits,
    socket: kirc_proto::DaemonClient,
    echo: RawEcho,
    bare: BareGrpc,
    pair: Arc<ChatPair>,
    text: String,
    pause: Duration,
    pub hops: Vec<Duration>,
    pub commits: Vec<Duration>,
    /// Round trips of the cheapest call on the sending daemon's socket
    /// (GetStatus): what the path's call in and event out cost at least,
    /// which the floor of raw clients leaves out.
    pub calls: Vec<Duration>,
    /// Round trips of a few bytes on a raw Unix socket to another process:
    /// what the calls above would cost without HTTP/2, gRPC and the
    /// daemon's runtime.
    pub echoes: Vec<Duration>,
    /// GetStatus round trips to a bare tonic server in another process,
    /// answering the daemon's Status: what a call in and an event out cost
    /// whatever the daemon behind the socket does.
    pub bare_calls: Vec<Duration>,
    /// One envelope sealed by alice and opened by bob: what signing and
    /// encrypting every message costs the path.
    pub envelopes: Vec<Duration>,
    /// A raw hop and a one-row commit started at the same instant, until
    /// both ended: what a write beside a produce (as `SendMessage` does
    /// them) takes on this machine when each is as cheap as it can be.
    pub side_by_side: Vec<Duration>,
}

impl FloorBetween {
    /// The parts on `actor`'s stack and `daemon`'s socket, with records and
    /// envelopes of `text` sealed by `pair`'s sender.
    pub async fn new(
        actor: &kirc_testkit::Actor,
        daemon: &kirc_testkit::Daemon,
        pair: Arc<ChatPair>,
        text: &str,
        pause: Duration,
    ) -> Self {
        let record_size = pair.seal(text).len();
        let mut socket = daemon.client().await;
        let status = socket
            .get_status(kirc_proto::v1::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        FloorBetween {
            hop: RawHop::new(&actor.stack.kafka, record_size).await,
            commit: pg::Commits::new(actor, pg::CommitRow::Floor).await,
            socket,
            echo: RawEcho::start(),
            bare: BareGrpc::start(&status).await,
            pair,
            text: text.to_owned(),
            pause,
            hops: Vec::new(),
            commits: Vec::new(),
            calls: Vec::new(),
            echoes: Vec::new(),
            bare_calls: Vec::new(),
            envelopes: Vec::new(),
            side_by_side: Vec::new(),
        }
    }

    /// The pause before each part and each message.
    pub fn pause(&self) -> Duration {
        self.pause
    }

    /// Times one of each part after a message settled, each after the
    /// pause, and pauses again before the next message.
    pub(super) async fn after_message(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.hops.push(self.hop.sample().await);
        tokio::time::sleep(self.pause).await;
        self.commits.push(self.commit.sample().await);
        tokio::time::sleep(self.pause).await;
        let start = Instant::now();
        self.socket
            .get_status(kirc_proto::v1::GetStatusRequest {})
            .await
            .unwrap();
        self.calls.push(start.elapsed());
        tokio::time::sleep(self.pause).await;
        self.echoes.push(self.echo.sample().await);
        tokio::time::sleep(self.pause).await;
        self.bare_calls.push(self.bare.sample().await);
        tokio::time::sleep(self.pause).await;
        self.envelopes.push(self.pair.sample(&self.text));
        tokio::time::sleep(self.pause).await;
        let start = Instant::now();
        let (hop, commit) = (&mut self.hop, &mut self.commit);
        tokio::join!(hop.sample(), commit.sample());
        self.side_by_side.push(start.elapsed());
        tokio::time::sleep(self.pause).await;
    }

    /// Drops the commits' table and ends the echo and gRPC processes.
    pub async fn finish(self) {
        self.commit.finish().await;
        self.echo.finish().await;
        self.bare.finish().await;
    }
}

/// Set in the environment of the benchmark's own executable started again
/// as [`RawEcho`]'s other process.
const ECHO_CHILD: &str = "KIRC_BENCH_ECHO_CHILD";

/// Serves as [`RawEcho`]'s other process, and exits, when this executable
/// was started as one; returns at once otherwise. A benchmark that times a
/// [`FloorBetween`] calls it first thing in `main`.
pub fn serve_echo_if_asked() {
    use std::io::{Read as _, Write as _};
    if std::env::var_os(ECHO_CHILD).is_none() {
        return;
    }
    // stdin and stdout are the two ends of one socket: what comes in goes
    // back out, until the benchmark closes its end.
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut buffer = [0_u8; 64];
    loop {
        match input.read(&mut buffer) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(read) => {
                if output
                    .write_all(&buffer[..read])
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    std::process::exit(0);
                }
            }
        }
    }
}

/// A raw round trip between two processes on this machine: four bytes
/// written to a Unix socket whose other end is another process (this
/// executable started again, see [`serve_echo_if_asked`]) and read back.
/// Beside the GetStatus round trip on a daemon's socket it shows what of
/// the call in and the event out is the socket and the processes' wake-ups,
/// and what is HTTP/2, gRPC and the runtimes on either side.
pub struct RawEcho {
    child: tokio::process::Child,
    socket: tokio::net::UnixStream,
}

impl RawEcho {
    pub fn start() -> Self {
        use std::os::fd::OwnedFd;
        use std::process::Stdio;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let theirs_out = theirs.try_clone().unwrap();
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(ECHO_CHILD, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        ours.set_nonblocking(true).unwrap();
        RawEcho {
            child,
            socket: tokio::net::UnixStream::from_std(ours).unwrap(),
        }
    }

    pub async fn sample(&mut self) -> Duration {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut back = [0_u8; 4];
        let start = Instant::now();
        self.socket.write_all(b"ping").await.unwrap();
        self.socket.read_exact(&mut back).await.unwrap();
        let elapsed = start.elapsed();
        assert_eq!(&back, b"ping", "the echo process sent back something else");
        elapsed
    }

    /// Closes the socket, which ends the other process.
    async fn finish(self) {
        let RawEcho { mut child, socket } = self;
        drop(socket);
        assert!(child.wait().await.unwrap().success());
    }
}

/// Paces a floor's samples: back to back (`None`), or each starting
/// `rhythm` after the one before, as the settled path's messages did (its
/// [`super::KafkaPath::spacing`]). On this VM the floor's own parts take twice as
/// long once the machine has sat idle between them (a one-row commit 0.21
/// ms back to back, 0.45 ms with 3 ms between commits), so a path measured
/// with pauses is compared with a floor measured with the same pauses.
pub struct Rhythm {
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Rhythm {
    pub fn new(every: Option<Duration>) -> Self {
        Rhythm { every, last: None }
    }

    /// Returns when the next sample is due, and starts counting for the
    /// one after.
    pub async fn wait(&mut self) {
        if let (Some(every), Some(last)) = (self.every, self.last) {
            tokio::time::sleep_until((last + every).into()).await;
        }
        self.last = Some(Instant::now());
    }
}
