//! The K-IRC daemon as a library: the `kircd` binary is a thin CLI over it,
//! and the integration tests use its wire and crypto code to play peers and
//! attackers. See ARCHITECTURE.md for the map.

pub mod api;
pub mod config;
pub mod contacts;
pub mod daemon;
pub mod doctor;
pub mod envelope;
pub mod hub;
pub mod identity;
pub mod init;
pub mod kafka;
pub mod logging;
pub mod messaging;
pub mod postgres;
pub mod presence;
pub mod service;
pub mod status;
pub mod store;
pub mod supervise;
pub mod systemd;
pub mod traffic;
pub mod valkey;
