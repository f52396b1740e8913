//! The runtime the `webrtc` crate runs on: tokio's, except that every UDP
//! socket it opens gets large kernel buffers.
//!
//! A data channel's SCTP association may have a whole receive window
//! (1 MiB) in flight, and on a short path it arrives faster than the
//! connection's driver reads it. With the kernel's default 208 KiB receive
//! buffer the excess datagrams are dropped; SCTP then waits for its
//! retransmission timer, which never fires sooner than one second. On
//! loopback that held a 100 MB file transfer to 21–42 MB/s; with 4 MiB
//! buffers it moved at over 100 MB/s with no datagram dropped.
//!
//! The kernel caps what a process may ask for (`net.core.rmem_max` and
//! `net.core.wmem_max`); a smaller buffer than asked is logged once, with
//! the setting that raises it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

/// The kernel buffer asked for each way.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Whether a short buffer was already logged: once per process is enough.
static SHORT_BUFFER_LOGGED: AtomicBool = AtomicBool::new(false);

/// Tokio's runtime for the `webrtc` crate, with large UDP socket buffers.
#[derive(Debug)]
pub struct BufferedRuntime {
    tokio: TokioRuntime,
}

impl BufferedRuntime {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tokio: TokioRuntime,
        })
    }
}

/// The receive and send buffers a socket has after asking for
/// [`SOCKET_BUFFER`] each. Linux reports twice what it grants (the other
/// half is its bookkeeping), so the figures are halved.
fn enlarge_buffers(socket: &std::net::UdpSocket) -> io::Result<(usize, usize)> {
    use rustix::net::sockopt;
    sockopt::set_socket_recv_buffer_size(socket, SOCKET_BUFFER)?;
    sockopt::set_socket_send_buffer_size(socket, SOCKET_BUFFER)?;
    Ok((
        sockopt::socket_recv_buffer_size(socket)? / 2,
        sockopt::socket_send_buffer_size(socket)? / 2,
    ))
}

impl Runtime for BufferedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        match enlarge_buffers(&socket) {
            Ok((received, sent)) if received.min(sent) < SOCKET_BUFFER => {
                if !SHORT_BUFFER_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        receive_bytes = received,
                        send_bytes = sent,
                        asked_bytes = SOCKET_BUFFER,
                        "the kernel gives the direct path smaller UDP buffers than asked, so fast file \
                         transfers may lose packets and slow down; raise the limits with \
                         `sysctl -w net.core.rmem_max={SOCKET_BUFFER} net.core.wmem_max={SOCKET_BUFFER}`"
                    );
                }
            }
            Ok(_) => {}
            // The socket still works with the default buffers.
            Err(err) => tracing::warn!(error = %err, "cannot size a UDP socket's buffers"),
        }
        self.tokio.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.tokio.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.tokio.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.tokio.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.tokio.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.tokio.block_on(future);
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio, with large UDP buffers"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_buffers_at_least_as_large_as_the_kernel_allows() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let default = rustix::net::sockopt::socket_recv_buffer_size(&socket).unwrap() / 2;
        let (received, sent) = enlarge_buffers(&socket).unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok());
        match cap {
            Some(cap) => assert_eq!(received, cap.min(SOCKET_BUFFER)),
            None => assert!(received >= default),
        }
        assert!(sent > 0);
    }
}
