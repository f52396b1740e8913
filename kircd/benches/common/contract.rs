//! What the socket API's contract and the envelope's security add to any
//! path from one client to another, timed without kircd: a gRPC round trip
//! to a server that does nothing but answer ([`BareGrpc`]), and one
//! envelope sealed, then parsed, verified and opened ([`ChatPair`]).
//! Beside the floor of raw Kafka and PostgreSQL clients they make the floor
//! of a path that must take a gRPC call in, give a gRPC event out, and sign
//! and encrypt what it carries.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use prost::Message as _;
use tonic::codegen::{Body, BoxFuture, Service, StdError};

/// Set in the environment of the benchmark's own executable started again
/// as [`BareGrpc`]'s server: the socket's path.
const GRPC_CHILD: &str = "KIRC_BENCH_GRPC_CHILD";
/// The Status the server answers with, encoded and in base64: the one the
/// daemon answered, so that both round trips carry the same bytes.
const GRPC_STATUS: &str = "KIRC_BENCH_GRPC_STATUS";

/// Serves as [`BareGrpc`]'s server, and never returns, when this executable
/// was started as one; returns at once otherwise. It serves on the
/// benchmark's runtime: the default one, two workers on this machine's two
/// cores, as kircd's.
pub async fn serve_grpc_if_asked() {
    let Some(path) = std::env::var_os(GRPC_CHILD) else {
        return;
    };
    let status = std::env::var(GRPC_STATUS).unwrap();
    let status = base64::engine::general_purpose::STANDARD
        .decode(status)
        .unwrap();
    let status = pb::Status::decode(status.as_slice()).unwrap();
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    // Bound: the benchmark may connect.
    println!("ready");
    tonic::transport::Server::builder()
        .add_service(AnswerStatus(Arc::new(status)))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await
        .unwrap();
    std::process::exit(0);
}

/// `kirc.v1.Daemon` with one method, GetStatus, which answers a fixed
/// Status; every other method is unimplemented. Written as the generated
/// server is, without the generated trait's thirty other methods.
#[derive(Clone)]
struct AnswerStatus(Arc<pb::Status>);

impl tonic::server::NamedService for AnswerStatus {
    const NAME: &'static str = "kirc.v1.Daemon";
}

impl<B> Service<http::Request<B>> for AnswerStatus
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let status = Arc::clone(&self.0);
        Box::pin(async move {
            if request.uri().path() != "/kirc.v1.Daemon/GetStatus" {
                return Ok(tonic::Status::unimplemented("only GetStatus").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Answer(status), request).await)
        })
    }
}

struct Answer(Arc<pb::Status>);

impl tonic::server::UnaryService<pb::GetStatusRequest> for Answer {
    type Response = pb::Status;
    type Future = std::future::Ready<Result<tonic::Response<pb::Status>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<pb::GetStatusRequest>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(pb::Status::clone(&self.0))))
    }
}

/// A gRPC round trip to another process that does nothing but answer:
/// GetStatus through the same client kircd's users have, to this
/// executable started again as a bare tonic server on a Unix socket (see
/// [`serve_grpc_if_asked`]), with the same Status the daemon answers.
/// What a call on kircd's socket costs whatever kircd does.
pub struct BareGrpc {
    child: tokio::process::Child,
    client: kirc_proto::DaemonClient,
    _folder: tempfile::TempDir,
}

impl BareGrpc {
    /// The server started, answering `status`, and a client connected.
    pub async fn start(status: &pb::Status) -> Self {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt as _;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("bare.sock");
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(GRPC_CHILD, &path)
            .env(
                GRPC_STATUS,
                base64::engine::general_purpose::STANDARD.encode(status.encode_to_vec()),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut ready = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut ready)
            .await
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the bare gRPC server did not start");
        let client = kirc_proto::connect(&path).await.unwrap();
        BareGrpc {
            child,
            client,
            _folder: folder,
        }
    }

    /// One GetStatus round trip, timed.
    pub async fn sample(&mut self) -> Duration {
        let start = Instant::now();
        self.client
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap();
        start.elapsed()
    }

    /// Stops the server.
    pub async fn finish(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Alice's and bob's keys, to seal chat envelopes as alice's kircd does
/// and to open them as bob's does: the wire bytes a benchmark produces, the
/// envelope part of the contract's floor, and the ingest's crypto floor.
pub struct ChatPair {
    pub sender: Identity,
    pub recipient: Identity,
    sealing: envelope::PairKey,
    opening: envelope::PairKey,
}

impl ChatPair {
    /// The two actors' identities, as their daemons load them.
    pub fn load(sender: &kirc_testkit::Actor, recipient: &kirc_testkit::Actor) -> Self {
        let load = |actor: &kirc_testkit::Actor| {
            Identity::load(&actor.dir.path().join("identity.key")).unwrap()
        };
        let (sender, recipient) = (load(sender), load(recipient));
        ChatPair {
            sealing: envelope::PairKey::new(&sender, &recipient.box_key()),
            opening: envelope::PairKey::new(&recipient, &sender.box_key()),
            sender,
            recipient,
        }
    }

    /// A chat line sealed by the sender for the recipient (signed, and
    /// encrypted to the pair's key).
    pub fn seal(&self, text: &str) -> Vec<u8> {
        envelope::seal(
            &self.sender,
            self.recipient.id(),
            &self.sealing,
            wire::Kind::Chat,
            envelope::new_message_id(),
            &wire::ChatPayload {
                text: text.to_owned(),
                action: false,
                ..wire::ChatPayload::default()
            }
            .encode_to_vec(),
        )
    }

    /// What the recipient's inbox checks on each record: parse, Ed25519
    /// verify, box open and payload decode.
    pub fn open(&self, bytes: &[u8]) -> wire::ChatPayload {
        let (sealed, header) = envelope::parse(bytes, self.recipient.id()).unwrap();
        envelope::verify(&sealed, &self.sender.signing_key()).unwrap();
        let payload = envelope::open(&sealed, &header, &self.opening).unwrap();
        wire::ChatPayload::decode(payload.as_slice()).unwrap()
    }

    /// One chat line sealed and opened, timed: the path does each once, on
    /// either side.
    pub fn sample(&self, text: &str) -> Duration {
        let start = Instant::now();
        let opened = self.open(&self.seal(text));
        let elapsed = start.elapsed();
        assert_eq!(opened.text, text);
        elapsed
    }

    /// Messages per second that the inbox's per-record checks alone reach
    /// over every core: [`Self::open`] on `count` envelopes sealed
    /// beforehand, with no I/O, store or event around them.
    pub fn crypto_floor(&self, count: usize) -> f64 {
        let records: Vec<Vec<u8>> = (0..count)
            .map(|index| self.seal(&format!("ingest {index}")))
            .collect();
        let start = Instant::now();
        std::thread::scope(|scope| {
            for chunk in records.chunks(count.div_ceil(super::cores()).max(1)) {
                scope.spawn(move || {
                    for bytes in chunk {
                        self.open(bytes);
                    }
                });
            }
        });
        count as f64 / start.elapsed().as_secs_f64()
    }
}
