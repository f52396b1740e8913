//! A TCP relay on loopback that holds every byte for a fixed time in each
//! direction before passing it on: the distance between kircd and a backend
//! for the distance benchmark. (The usual tool, `tc netem`, needs a kernel
//! built with `CONFIG_NET_SCH_NETEM`, which this machine's is not.) Order is
//! kept and nothing is throttled: a relayed connection behaves like a long
//! link with plenty of bandwidth.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A running relay; it stops, with every connection through it, when
/// dropped.
pub struct Relay {
    pub addr: SocketAddr,
    _stop: DropGuard,
}

/// Listens on `listen` and relays each connection to `upstream`, `one_way`
/// late in each direction (so a round trip through it takes twice that).
pub async fn start(listen: SocketAddr, upstream: SocketAddr, one_way: Duration) -> Relay {
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|err| panic!("cannot listen on {listen} for the relay: {err}"));
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let accepting = stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = accepting.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((client, _)) = accepted else { continue };
            let connection = accepting.child_token();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::select! {
                    () = connection.cancelled() => {}
                    ((), ()) = async {
                        tokio::join!(
                            pump(client_read, server_write, one_way),
                            pump(server_read, client_write, one_way),
                        )
                    } => {}
                }
            });
        }
    });
    Relay {
        addr,
        _stop: stop.drop_guard(),
    }
}

/// Moves bytes from `from` to `to`, each chunk `delay` after it was read;
/// the end of the stream, too.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    // Unbounded: what waits is one delay's worth of traffic.
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let reading = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buffer).await.unwrap_or(0);
            let at = Instant::now() + delay;
            if read == 0 {
                let _ = chunks.send((at, None));
                return;
            }
            if chunks.send((at, Some(buffer[..read].to_vec()))).is_err() {
                return;
            }
        }
    };
    let writing = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reading, writing);
}
