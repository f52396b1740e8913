//! Whether the configured STUN and TURN servers answer, for `kircd doctor`:
//! a STUN binding request to a STUN server (it answers with the address it
//! sees us at), a TURN allocation with the configured credential (it
//! answers with the relayed address it gives us). The direct path itself
//! asks the same servers through its ICE agent; this is the same question
//! asked once, with an answer a person can read.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol as _;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not a STUN or TURN URL")]
    BadUrl(String),
    #[error("only UDP is checked; {0} is not")]
    NotUdp(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Turn(String),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// A STUN or TURN server as its URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub turn: bool,
    /// `host:port`.
    pub address: String,
}

impl ServerUrl {
    /// Reads a `stun:` or `turn:` URL with the ICE agent's own parser;
    /// TLS (`stuns:`, `turns:`) and TCP are refused, since only UDP is
    /// probed.
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        use rtc::ice::url::{ProtoType, SchemeType, Url};
        let parsed = Url::parse_url(url).map_err(|_| ProbeError::BadUrl(url.to_owned()))?;
        let turn = match parsed.scheme {
            SchemeType::Stun => false,
            SchemeType::Turn => true,
            SchemeType::Stuns | SchemeType::Turns => {
                return Err(ProbeError::NotUdp(url.to_owned()));
            }
            _ => return Err(ProbeError::BadUrl(url.to_owned())),
        };
        if parsed.proto != ProtoType::Udp {
            return Err(ProbeError::NotUdp(url.to_owned()));
        }
        // The parser drops an IPv6 address's brackets; host:port needs them.
        let address = if parsed.host.contains(':') {
            format!("[{}]:{}", parsed.host, parsed.port)
        } else {
            format!("{}:{}", parsed.host, parsed.port)
        };
        Ok(ServerUrl { turn, address })
    }
}

/// What a server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A STUN server: the address it sees us at.
    Reflexive(SocketAddr),
    /// A TURN server: the relayed address it allocated for us.
    Relayed(SocketAddr),
}

/// Asks one server, from a socket on `bind` (port 0), within `timeout`. A
/// TURN server is asked for an allocation with `credential` (user name,
/// password), which proves the credential too. Blocking: call it from a
/// blocking task.
pub fn ask(
    server: &ServerUrl,
    credential: Option<(&str, &str)>,
    bind: IpAddr,
    timeout: Duration,
) -> Result<Answer, ProbeError> {
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    let local_addr = socket.local_addr()?;
    let (username, password) = credential.unwrap_or(("", ""));
    let config = ClientConfig {
        stun_serv_addr: if server.turn {
            String::new()
        } else {
            server.address.clone()
        },
        turn_serv_addr: if server.turn {
            server.address.clone()
        } else {
            String::new()
        },
        local_addr,
        transport_protocol: TransportProtocol::UDP,
        username: username.to_owned(),
        password: password.to_owned(),
        // Learned from the server's first answer.
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        allocation_refresh_interval_cap: None,
    };
    let turn_error = |err: rtc::shared::error::Error| ProbeError::Turn(err.to_string());
    let provider =
        rtc::crypto::default_provider().map_err(|err| ProbeError::Turn(err.to_string()))?;
    let mut client = Client::new(config, provider).map_err(turn_error)?;
    if server.turn {
        client.allocate(Instant::now()).map_err(turn_error)?;
    } else {
        client
            .send_binding_request(Instant::now())
            .map_err(turn_error)?;
    }
    let deadline = Instant::now() + timeout;
    let mut buffer = vec![0_u8; 2048];
    let answer = loop {
        while let Some(transmit) = client.poll_write() {
            socket.send_to(&transmit.message, transmit.transport.peer_addr)?;
        }
        if let Some(event) = client.poll_event() {
            match event {
                Event::BindingResponse(_, address) => break Answer::Reflexive(address),
                Event::AllocateResponse(_, address) => break Answer::Relayed(address),
                Event::BindingError(_, err) | Event::AllocateError(_, err) => {
                    return Err(turn_error(err));
                }
                Event::TransactionTimeout(_) => return Err(ProbeError::NoAnswer(timeout)),
                _ => continue,
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::NoAnswer(timeout));
        }
        let wake = client
            .poll_timeout()
            .map_or(deadline, |at| at.min(deadline));
        let wait = wake.saturating_duration_since(now);
        if wait.is_zero() {
            client.handle_timeout(now).map_err(turn_error)?;
            continue;
        }
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buffer) {
            Ok((length, peer_addr)) => client
                .handle_read(TransportMessage {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr,
                        peer_addr,
                        transport_protocol: TransportProtocol::UDP,
                        ecn: None,
                    },
                    message: BytesMut::from(&buffer[..length]),
                })
                .map_err(turn_error)?,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                client.handle_timeout(Instant::now()).map_err(turn_error)?;
            }
            // Among them "connection refused": a port that answered an
            // earlier packet with "unreachable" has no server behind it.
            Err(err) => return Err(ProbeError::Io(err)),
        }
    };
    // Best effort: an allocation left behind expires on the server anyway.
    let _ = client.close();
    while let Some(transmit) = client.poll_write() {
        let _ = socket.send_to(&transmit.message, transmit.transport.peer_addr);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_and_its_port() {
        let parse = |url: &str| ServerUrl::parse(url).map_err(|err| err.to_string());
        assert_eq!(
            parse("stun:stun.l.google.com:19302"),
            Ok(ServerUrl {
                turn: false,
                address: String::from("stun.l.google.com:19302")
            })
        );
        assert_eq!(
            parse("turn:127.0.0.1?transport=udp"),
            Ok(ServerUrl {
                turn: true,
                address: String::from("127.0.0.1:3478")
            })
        );
        assert_eq!(
            parse("turn:[::1]:5000").map(|url| url.address),
            Ok(String::from("[::1]:5000"))
        );
        assert!(parse("turn:example.org:3478?transport=tcp").is_err());
        assert!(parse("turns:example.org").is_err());
        assert!(parse("http://example.org").is_err());
        assert!(parse("stun:").is_err());
    }
}
