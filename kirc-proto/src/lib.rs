//! The K-IRC protocol crate: generated types for the kircd daemon API
//! (`kirc.v1`, gRPC over a Unix socket) and the one client connector that every
//! local tool uses to reach the daemon.

pub mod v1 {
    //! The daemon API, package `kirc.v1`.
    #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
    tonic::include_proto!("kirc.v1");
}

pub mod wire {
    //! The actor-to-actor wire format, package `kirc.wire.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
        tonic::include_proto!("kirc.wire.v1");
    }
}

mod client;
mod view;

pub use client::{ConnectError, DaemonClient, connect, default_runtime_dir, default_socket_path};

/// The socket API version this crate speaks; bumped with each new package
/// (`kirc.v2`, …). kircd reports it in `Status.api_version`.
pub const API_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch, the time unit of the API.
pub fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub use view::DaemonView;
